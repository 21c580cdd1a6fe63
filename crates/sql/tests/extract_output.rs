//! The SQL layer on what the real extract engine writes: the tiny transformers checkpoints of
//! tests/fixtures/arch, extracted by `attn_spectra::extract::extract_unit` and written by
//! `attn_spectra::dataset::DatasetDir::write_unit`, as `pipeline run extract` does. The shipped SQL files
//! and the hypothesis test must run on that output, and their numbers must equal the ones
//! computed directly from the engine's results (independently of SQL).

use std::path::Path;

use attn_spectra::dataset::{DatasetDir, UnitMeta};
use attn_spectra::extract::{MatrixResult, ModelSource, Plan, Provenance, extract_unit};
use attn_spectra::pipeline::ModelEntry;
use attn_spectra::spectral::{FaerBackend, Metric, Precision};
use attn_spectra::{Architecture, Checkpoint, MatrixKind};
use attn_spectra_sql::{Dataset, TestPlan, aggregate, run_tests};

/// (fixture, model id, lab)
const MODELS: &[(&str, &str, &str)] = &[
    ("gpt_neox", "EleutherAI/tiny-neox", "EleutherAI"),
    ("gpt_neo", "EleutherAI/tiny-neo", "EleutherAI"),
    ("opt", "facebook/tiny-opt", "Meta"),
    ("bloom", "bigscience/tiny-bloom", "BigScience"),
    ("gpt2", "openai/tiny-gpt2", "OpenAI"),
];

/// Extracts each fixture into a unit and writes it as the extract stage does; returns the
/// engine's results per model id (as the units carry them) for the comparisons.
fn extract(out: &Path) -> Vec<(String, Vec<MatrixResult>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch");
    let backend = FaerBackend::new(1).unwrap();
    let plan = Plan {
        kinds: MatrixKind::ALL.to_vec(),
        per_head: true,
        fold_ln: false,
        precision: Precision::F64,
    };
    let ds = DatasetDir::new(out);
    let meta = UnitMeta {
        pipeline_file: "test".into(),
        pipeline: String::new(),
        tool_version: "test".into(),
        config_hash: "test".into(),
    };
    let mut all = Vec::new();
    for (dir, id, lab) in MODELS {
        let entry = ModelEntry {
            id: id.to_string(),
            revision: "main".into(),
            source: Some(root.join(dir)),
            gguf: None,
            lab: Some(lab.to_string()),
            heritage: None,
            color: None,
            marker: None,
        };
        let ckpt = Checkpoint::open(&root.join(dir)).unwrap();
        let arch = Architecture::detect(ckpt.config()).unwrap();
        let provenance = Provenance::local(&ckpt, |_| None).unwrap();
        let source = ModelSource {
            entry: &entry,
            ckpt: &ckpt,
            arch: &arch,
            provenance: &provenance,
        };
        let unit = extract_unit(&source, &plan, &backend, "faer", &mut |_| {}).unwrap();
        ds.write_unit(&unit, &meta).unwrap();
        let results = unit
            .matrices
            .iter()
            .zip(&unit.spectra)
            .map(|(m, s)| MatrixResult {
                layer: m.key.layer,
                head: m.key.head,
                kind: m.key.kind,
                rows: m.rows,
                cols: m.cols,
                singular_values: s.singular_values.clone(),
                metrics: m.metrics,
            })
            .collect();
        all.push((id.to_string(), results));
    }
    all
}

fn whole_layer(results: &[MatrixResult], kind: MatrixKind) -> Vec<f64> {
    results
        .iter()
        .filter(|r| r.kind == kind && r.head.is_none())
        .map(|r| r.singular_values[0])
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{what}: SQL gives {got}, the engine's results give {want}"
    );
}

#[test]
fn shipped_sql_and_tests_run_on_extract_output() {
    let dir = tempfile::tempdir().unwrap();
    let engine = extract(dir.path());
    aggregate(
        dir.path(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql"),
    )
    .unwrap();
    let dataset = Dataset::open(dir.path()).unwrap();

    // model_summary: mean and population std over layers of the largest singular value of
    // the whole-layer W_V and W_O.
    let batches = dataset
        .query("SELECT model, w_v_mean, w_v_std, w_o_mean FROM model_summary ORDER BY model")
        .unwrap();
    let mut seen = 0;
    for batch in &batches {
        let col = |i: usize| batch.column(i);
        let models = col(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap_or_else(|| panic!("{:?}", batch.schema()));
        let float = |i: usize| {
            col(i)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap()
                .clone()
        };
        let (v_mean, v_std, o_mean) = (float(1), float(2), float(3));
        for row in 0..batch.num_rows() {
            let model = models.value(row);
            let results = &engine.iter().find(|(id, _)| id == model).unwrap().1;
            let v = whole_layer(results, MatrixKind::WV);
            let o = whole_layer(results, MatrixKind::WO);
            let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
            let m = mean(&v);
            let std = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt();
            close(v_mean.value(row), m, &format!("{model} W_V mean"));
            close(v_std.value(row), std, &format!("{model} W_V std"));
            close(o_mean.value(row), mean(&o), &format!("{model} W_O mean"));
            seen += 1;
        }
    }
    assert_eq!(seen, MODELS.len());

    // layer_profile covers every kind in both scopes, with depth from 0 to 1.
    let batches = dataset
        .query(
            "SELECT count(DISTINCT kind) AS kinds, count(DISTINCT scope) AS scopes, \
             min(depth) AS lo, max(depth) AS hi FROM layer_profile",
        )
        .unwrap();
    let b = &batches[0];
    let int = |i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    let float = |i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!(int(0), 6);
    assert_eq!(int(1), 2);
    assert_eq!(float(2), 0.0);
    assert_eq!(float(3), 1.0);

    // The default test runs: 2 EleutherAI models against 3 others. Each row's U and exact
    // p are recomputed here from the engine's results, by enumerating all C(5, 2) = 10 ways
    // to split the five model means into groups of 2 and 3.
    let plan = TestPlan::default();
    let tests = run_tests(dir.path(), &plan).unwrap();
    assert_eq!(tests.len(), 12);
    for t in &tests {
        let r = &t.row;
        let (metric, kind): (Metric, MatrixKind) =
            (r.metric.parse().unwrap(), r.kind.parse().unwrap());
        let mean_of = |id: &str| {
            let results = &engine.iter().find(|(m, _)| m == id).unwrap().1;
            let v: Vec<f64> = results
                .iter()
                .filter(|x| x.kind == kind && x.head.is_some() == kind.is_circuit())
                .map(|x| x.metrics.value(metric))
                .filter(|v| !v.is_nan())
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (a, b): (Vec<f64>, Vec<f64>) = (
            MODELS[..2].iter().map(|(_, id, _)| mean_of(id)).collect(),
            MODELS[2..].iter().map(|(_, id, _)| mean_of(id)).collect(),
        );
        let (u, p) = exact_less(&a, &b);
        let what = format!("{} {}", r.metric, r.kind);
        assert_eq!((r.n_a, r.n_b), (2, 3), "{what}");
        close(r.u_statistic, u, &format!("{what} U"));
        close(r.p_value, p, &format!("{what} exact p"));
        let verdict = if p < plan.alpha {
            "SUPPORTED"
        } else {
            "NOT SUPPORTED"
        };
        assert_eq!(r.verdict, verdict, "{what}");
    }
}

/// U of group A (pairs a > b, ties one half) and the exact one-sided p for H1: A < B, by
/// enumerating every split of the pooled values into groups of A's and B's sizes.
fn exact_less(a: &[f64], b: &[f64]) -> (f64, f64) {
    let u = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .flat_map(|x| b.iter().map(move |y| (x, y)))
            .map(|(x, y)| match x.partial_cmp(y).unwrap() {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
            .sum()
    };
    let observed = u(a, b);
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let n = pooled.len();
    let (mut at_most, mut splits) = (0u32, 0u32);
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != a.len() {
            continue;
        }
        let (ga, gb): (Vec<f64>, Vec<f64>) = (
            (0..n)
                .filter(|i| mask >> i & 1 == 1)
                .map(|i| pooled[i])
                .collect(),
            (0..n)
                .filter(|i| mask >> i & 1 == 0)
                .map(|i| pooled[i])
                .collect(),
        );
        splits += 1;
        if u(&ga, &gb) <= observed {
            at_most += 1;
        }
    }
    (observed, f64::from(at_most) / f64::from(splits))
}
