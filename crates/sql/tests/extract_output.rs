//! The SQL layer on what the real extract engine writes: the tiny transformers checkpoints of
//! tests/fixtures/arch, extracted by `attn_spectra::extract::extract_unit` and written by
//! `attn_spectra::dataset::DatasetDir::write_unit`, as `pipeline run extract` does. The shipped SQL files
//! and the hypothesis test must run on that output, and their numbers must equal the ones
//! computed directly from the engine's results (independently of SQL).

use std::path::Path;

use attn_spectra::dataset::{DatasetDir, UnitMeta};
use attn_spectra::extract::{MatrixResult, ModelSource, Plan, Provenance, extract_unit};
use attn_spectra::pipeline::ModelEntry;
use attn_spectra::spectral::{FaerBackend, Precision};
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

    // The default test runs: 2 EleutherAI models against 3 others.
    let rows = run_tests(dir.path(), &TestPlan::default()).unwrap();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.row.n_a == 2 && r.row.n_b == 3));
    // With 2 against 3 models the smallest one-sided p is 1/10: never below 0.05.
    assert!(rows.iter().all(|r| r.row.p_value >= 0.1 - 1e-12));
    assert!(rows.iter().all(|r| r.row.verdict == "NOT SUPPORTED"));
}
