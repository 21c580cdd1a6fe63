//! The report stage end to end: a dataset made by the real extract engine and dataset writers
//! over the repository's fixture checkpoints (the demo pipeline), then `write_report`.
//! Figures are decoded and measured, the HTML is checked to be self-contained, and the seed
//! JSON is checked against the seed notebook's structure and against numbers recomputed here
//! from the singular values in `spectra/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use attn_spectra::dataset::aggregates::{MODEL_SUMMARY, model_summary};
use attn_spectra::dataset::{
    self, DatasetDir, FailureRow, FileRecord, HypothesisRow, SpectrumRow, UnitMeta,
};
use attn_spectra::extract::{ModelSource, Plan, Provenance, extract_unit};
use attn_spectra::pipeline::Pipeline;
use attn_spectra::spectral::{FaerBackend, Precision};
use attn_spectra::{Architecture, Checkpoint};
use attn_spectra_report::{ReportOptions, ReportOutputs, write_report};
use base64::Engine as _;
use serde_json::Value;

/// 2026-01-05T11:54:56.123456Z.
const STAMP: i64 = 1_767_614_096_123_456;

/// The demo pipeline with each model at one revision: the seven models of the seed's layout
/// (the demo's second training step of the pythia-like fixture, which only adds a trajectory,
/// is left out here; tests/it's run-all and trajectory tests cover it).
fn demo_pipeline() -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml");
    let mut p = Pipeline::load(&path).unwrap();
    p.models.retain(|m| m.revision != "step1000");
    assert_eq!(p.models.len(), 7);
    p
}

/// Runs the extract engine over the demo pipeline's fixture checkpoints into `out`, writing
/// models/, matrices/ and spectra/ as `pipeline run extract` does.
fn extract_demo(p: &Pipeline, out: &Path) {
    let plan = Plan {
        kinds: p.analysis.kinds.clone(),
        per_head: p.analysis.per_head,
        fold_ln: p.analysis.fold_ln,
        precision: Precision::F64,
    };
    extract_with(p, &plan, out);
}

fn extract_with(p: &Pipeline, plan: &Plan, out: &Path) {
    let backend = FaerBackend::new(1).unwrap();
    let ds = DatasetDir::new(out);
    for m in &p.models {
        let ckpt = Checkpoint::open(m.source.as_ref().unwrap()).unwrap();
        let arch = Architecture::detect(ckpt.config()).unwrap();
        let provenance = Provenance {
            commit: None,
            files: vec![FileRecord {
                name: "model.safetensors".into(),
                sha256: None,
                size: 1,
            }],
            identical_to: None,
        };
        let source = ModelSource {
            entry: m,
            ckpt: &ckpt,
            arch: &arch,
            provenance: &provenance,
        };
        let mut unit = extract_unit(&source, plan, &backend, "faer", &mut |_| {}).unwrap();
        // Fixed values, for deterministic reports.
        unit.model.extracted_at_us = STAMP;
        unit.model.config_sha256 = "0".repeat(64);
        unit.model.tool_version = "test".into();
        ds.write_unit(&unit, &UnitMeta::new(p, "test".into()))
            .unwrap();
    }
}

fn report(ds: &Path, out: &Path) -> ReportOutputs {
    let opts = ReportOptions::from_pipeline(&demo_pipeline(), STAMP).unwrap();
    write_report(ds, out, &opts).unwrap()
}

/// Decodes a PNG: (width, height, RGB pixels).
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn hex_rgb(s: &str) -> [u8; 3] {
    let b = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
    [b(1), b(3), b(5)]
}

/// Whole-layer singular values per (model, kind, layer), read back through the dataset
/// module (not the report's loader).
fn whole_layer_spectra(ds: &Path) -> BTreeMap<(String, String, i32), Vec<f64>> {
    DatasetDir::new(ds)
        .read_where(|s: &SpectrumRow| s.key.head.is_none())
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                (
                    s.key.model,
                    s.key.kind.name().to_string(),
                    s.key.layer as i32,
                ),
                s.singular_values,
            )
        })
        .collect()
}

/// The seed notebook's `compute_spectral_signature` for one matrix's singular values:
/// (spectral norm, Frobenius norm, effective rank).
fn seed_signature(s: &[f64]) -> (f64, f64, f64) {
    let max = s.iter().copied().fold(0.0, f64::max);
    let fro = s.iter().map(|x| x * x).sum::<f64>().sqrt();
    let total: f64 = s.iter().sum();
    let entropy: f64 = -s
        .iter()
        .map(|x| {
            let p = x / total;
            p * (p + 1e-10).ln()
        })
        .sum::<f64>();
    (max, fro, entropy.exp())
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

const RESULT_BASE_KEYS: [&str; 7] = [
    "model", "lab", "expected", "color", "marker", "arch", "n_layers",
];
const SUMMARY_KEYS: [&str; 8] = [
    "Model", "Lab", "Expected", "Layers", "W_V Mean", "W_V Std", "W_O Mean", "W_O Std",
];

/// Checks the JSON against the seed notebook's structure and recomputes its numbers.
fn check_seed_json(text: &str, ds: &Path, p: &Pipeline) {
    let doc: Value = serde_json::from_str(text).unwrap();
    // Top-level keys, in the order the seed writes them.
    let order = [
        "experiment",
        "date",
        "hypothesis",
        "models_tested",
        "results",
        "summary",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(&format!("\n  \"{k}\": ")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let obj = doc.as_object().unwrap();
    assert_eq!(obj.len(), order.len());
    assert_eq!(doc["experiment"], "Restriction Map Spectral Analysis");
    assert_eq!(doc["date"], "2026-01-05T11:54:56.123456+00:00");
    assert!(doc["hypothesis"].as_str().unwrap().contains("EleutherAI"));
    assert_eq!(doc["models_tested"], 7);

    let spectra = whole_layer_spectra(ds);
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    for (res, m) in results.iter().zip(&p.models) {
        let r = res.as_object().unwrap();
        let mut want: Vec<String> = RESULT_BASE_KEYS.iter().map(|s| s.to_string()).collect();
        for kind in ["W_V", "W_O", "W_Q", "W_K"] {
            for suffix in [
                "spectral_norm",
                "frobenius_norm",
                "effective_rank",
                "mean_spectral",
                "std_spectral",
            ] {
                want.push(format!("{kind}_{suffix}"));
            }
        }
        let mut got: Vec<String> = r.keys().cloned().collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", m.id);
        assert_eq!(r["model"], m.id.as_str());
        assert_eq!(r["lab"], m.lab.as_deref().unwrap());
        assert_eq!(r["expected"], m.heritage.as_deref().unwrap());
        assert_eq!(
            r["color"].as_str().unwrap(),
            m.color.as_deref().unwrap().to_uppercase()
        );
        assert_eq!(r["marker"], m.marker.as_deref().unwrap());
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(m.source.as_ref().unwrap().join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(r["arch"], config["model_type"]);
        let n = r["n_layers"].as_u64().unwrap() as usize;
        let config_layers = ["num_hidden_layers", "n_layer", "num_layers"]
            .iter()
            .find_map(|k| config[*k].as_u64())
            .unwrap() as usize;
        assert_eq!(n, config_layers, "{}", m.id);
        for kind in ["W_V", "W_O", "W_Q", "W_K"] {
            let list = |suffix: &str| -> Vec<f64> {
                r[&format!("{kind}_{suffix}")]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            };
            let (sn, fro, er) = (
                list("spectral_norm"),
                list("frobenius_norm"),
                list("effective_rank"),
            );
            assert_eq!(sn.len(), n);
            assert_eq!(fro.len(), n);
            assert_eq!(er.len(), n);
            for layer in 0..n {
                let s = &spectra[&(m.id.clone(), kind.to_string(), layer as i32)];
                let (w_sn, w_fro, w_er) = seed_signature(s);
                assert!(close(sn[layer], w_sn, 1e-12), "{} {kind} {layer}", m.id);
                assert!(close(fro[layer], w_fro, 1e-12), "{} {kind} {layer}", m.id);
                assert!(close(er[layer], w_er, 1e-8), "{} {kind} {layer}", m.id);
            }
            let mean = sn.iter().sum::<f64>() / n as f64;
            let std = (sn.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let got_mean = r[&format!("{kind}_mean_spectral")].as_f64().unwrap();
            let got_std = r[&format!("{kind}_std_spectral")].as_f64().unwrap();
            assert!(close(got_mean, mean, 1e-12), "{} {kind}", m.id);
            assert!((got_std - std).abs() <= 1e-12 * mean, "{} {kind}", m.id);
        }
    }

    let summary = doc["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 7);
    for (s, res) in summary.iter().zip(results) {
        let s = s.as_object().unwrap();
        let mut keys: Vec<&str> = s.keys().map(String::as_str).collect();
        keys.sort();
        let mut want = SUMMARY_KEYS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        let id = res["model"].as_str().unwrap();
        assert_eq!(s["Model"], id.rsplit('/').next().unwrap());
        assert_eq!(s["Lab"], res["lab"]);
        assert_eq!(s["Expected"], res["expected"]);
        assert_eq!(s["Layers"], res["n_layers"]);
        assert_eq!(s["W_V Mean"], res["W_V_mean_spectral"]);
        assert_eq!(s["W_V Std"], res["W_V_std_spectral"]);
        assert_eq!(s["W_O Mean"], res["W_O_mean_spectral"]);
        assert_eq!(s["W_O Std"], res["W_O_std_spectral"]);
    }
}

fn check_html_is_self_contained(html: &str) -> usize {
    let lower = html.to_lowercase();
    assert!(!lower.contains("http://") && !lower.contains("https://"));
    assert!(!lower.contains("<link") && !lower.contains("<script"));
    assert!(!lower.contains("url("));
    let mut images = 0;
    for (i, _) in lower.match_indices("src=") {
        let rest = &html[i + 5..];
        assert!(
            rest.starts_with("data:image/png;base64,"),
            "external src: {}",
            &rest[..rest.len().min(60)]
        );
        let b64: String = rest["data:image/png;base64,".len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let (w, h, px) = decode_png(&png);
        assert!(w > 0 && h > 0 && !px.is_empty());
        images += 1;
    }
    images
}

#[test]
fn report_on_a_dataset_that_only_went_through_extract() {
    let p = demo_pipeline();
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("demo");
    extract_demo(&p, &ds);
    let out_dir = tmp.path().join("report");
    let out = report(&ds, &out_dir);

    // Every file listed exists, and nothing else (no temporaries) was left.
    for f in &out.files {
        assert!(f.is_file(), "{}", f.display());
    }
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .chain(std::fs::read_dir(out_dir.join("figures")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    on_disk.sort();
    let mut listed = out.files.clone();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert_eq!(
        out.json.file_name().unwrap(),
        "restriction_map_spectral_20260105_115456.json"
    );

    // Figures: 3 grids, the densities and one heat map per model.
    let names: Vec<&str> = out.figures.iter().map(|f| f.name.as_str()).collect();
    for want in ["spectral_norm", "stable_rank", "circuits", "esd_w_v"] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert_eq!(
        names.iter().filter(|n| n.starts_with("ov_heads_")).count(),
        7
    );
    for f in &out.figures {
        let (w, h, px) = decode_png(&std::fs::read(&f.png).unwrap());
        assert_eq!((w, h), (f.width, f.height), "{}", f.name);
        let first = px[0];
        let other = px.iter().filter(|p| **p != first).count();
        assert!(other > px.len() / 50, "{} is nearly one colour", f.name);
        let svg = std::fs::read_to_string(&f.svg).unwrap();
        assert!(svg.starts_with("<svg"), "{}", f.name);
        assert!(
            svg.contains(&format!("width=\"{}\"", f.width)),
            "{}",
            f.name
        );
    }
    let grid = out
        .figures
        .iter()
        .find(|f| f.name == "spectral_norm")
        .unwrap();
    assert_eq!((grid.width, grid.height), (1400, 1200));
    // Each model's pipeline colour is drawn (its markers are filled with it).
    let (_, _, px) = decode_png(&std::fs::read(&grid.png).unwrap());
    for m in &p.models {
        let c = hex_rgb(m.color.as_deref().unwrap());
        assert!(px.contains(&c), "{} colour {:?} not in the figure", m.id, c);
    }
    // Text was rendered with the embedded font: dark pixels exist in the title band.
    let dark_title = px[..1400 * 40]
        .iter()
        .filter(|p| p.iter().all(|c| *c < 80))
        .count();
    assert!(dark_title > 200, "title band has {dark_title} dark pixels");

    // HTML.
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert_eq!(check_html_is_self_contained(&html), out.figures.len());
    assert!(
        html.contains("SPECTRAL SIGNATURE SUMMARY") || html.contains("Spectral signature summary")
    );

    // Markdown: the missing tables are noted, the caveats are there.
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("`hypothesis/` is not in the dataset"), "{md}");
    assert!(md.contains("`model_summary/`"), "{md}");
    assert!(md.contains("random weights"), "{md}");
    // 3 EleutherAI against 4 others: 1/C(7,3) = 1/35 = 0.0286.
    assert!(md.contains("1/C(7, 3) = 0.0286"), "{md}");
    for m in &p.models {
        assert!(md.contains(m.id.rsplit('/').next().unwrap()));
    }
    assert!(out.notes.iter().any(|n| n.contains("hypothesis")));

    check_seed_json(&std::fs::read_to_string(&out.json).unwrap(), &ds, &p);
}

#[test]
fn hypothesis_and_aggregate_tables_are_shown() {
    let p = demo_pipeline();
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("demo");
    extract_demo(&p, &ds);

    // A hypothesis table as `pipeline run test` writes it.
    let row = HypothesisRow {
        metric: "spectral_norm".into(),
        kind: "W_V".into(),
        group_a: "lab in (EleutherAI)".into(),
        group_b: "others".into(),
        n_a: 3,
        n_b: 4,
        mean_a: 1.0,
        mean_b: 2.0,
        alternative: "less".into(),
        u_statistic: 0.0,
        p_value: 0.0285714,
        p_two_sided: 0.0571429,
        rank_biserial: 1.0,
        p_permutation: 0.0285714,
        verdict: "SUPPORTED (p < 0.05)".into(),
        p_holm: 0.0285714,
        p_bh: 0.0285714,
        cohens_d: -2.5,
        models_per_group_80: Some(4),
    };
    DatasetDir::new(&ds)
        .write_table("hypothesis", &[row], &[])
        .unwrap();

    // A model_summary table whose W_V mean is recomputed here from spectra/, written with
    // DataFusion's string type as `pipeline run aggregate` may.
    let spectra = whole_layer_spectra(&ds);
    let ids: Vec<&str> = p.models.iter().map(|m| m.id.as_str()).collect();
    let wv_mean: Vec<f64> = ids
        .iter()
        .map(|id| {
            let s: Vec<f64> = spectra
                .iter()
                .filter(|((m, k, _), _)| m == id && k == "W_V")
                .map(|(_, sv)| sv.iter().copied().fold(0.0, f64::max))
                .collect();
            s.iter().sum::<f64>() / s.len() as f64
        })
        .collect();
    let sch = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new(
            model_summary::MODEL,
            arrow_schema::DataType::Utf8View,
            false,
        ),
        arrow_schema::Field::new(
            model_summary::W_V_MEAN,
            arrow_schema::DataType::Float64,
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        sch.clone(),
        vec![
            Arc::new(arrow_array::StringViewArray::from(ids.clone())),
            Arc::new(Float64Array::from(wv_mean)),
        ],
    )
    .unwrap();
    dataset::write_parquet_atomic(
        &ds.join(MODEL_SUMMARY).join("part-0.parquet"),
        sch,
        &[batch],
        &[],
    )
    .unwrap();

    let out = report(&ds, &tmp.path().join("report"));
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(
        md.contains("| spectral_norm | W_V | lab in (EleutherAI) (n=3) | others (n=4) |"),
        "{md}"
    );
    assert!(md.contains("SUPPORTED (p < 0.05)"));
    // The power statement and the adjusted p-values.
    assert!(md.contains("about **4 models per group**"), "{md}");
    assert!(md.contains("p (Holm)"), "{md}");
    // Smallest attainable p for 3 against 4, one-sided: 1/35.
    assert!(md.contains("1/C(7, 3) = 1/35 = 0.0286"), "{md}");
    assert!(
        md.contains("agrees with the W_V Mean above for 7 model(s)"),
        "{md}"
    );
    assert!(
        md.contains("`lab_summary/`"),
        "missing tables are still named: {md}"
    );
    assert!(!md.contains("`hypothesis/` is not in the dataset"));
}

#[test]
fn a_dataset_without_models_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("models")).unwrap();
    let opts = ReportOptions::new("x");
    let e = write_report(tmp.path(), &tmp.path().join("out"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("models/") && e.contains(&tmp.path().display().to_string()),
        "{e}"
    );
}

/// Only W_V and W_O, no per-head matrices, no spectra/, one failed model: the report still
/// comes out, with the missing parts left out and said so.
#[test]
fn a_partial_dataset_still_gives_a_report() {
    let mut p = demo_pipeline();
    p.models.truncate(3);
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("partial");
    let plan = Plan {
        kinds: vec![attn_spectra::MatrixKind::WV, attn_spectra::MatrixKind::WO],
        per_head: false,
        fold_ln: false,
        precision: Precision::F64,
    };
    extract_with(&p, &plan, &ds);
    std::fs::remove_dir_all(ds.join("spectra")).unwrap();
    let failure = FailureRow {
        model: "org/broken".into(),
        revision: "main".into(),
        stage: "extract".into(),
        error: "config.json: unknown model_type `mystery`".into(),
        failed_at_us: STAMP,
    };
    DatasetDir::new(&ds)
        .write_failure(&failure, &UnitMeta::new(&p, "test".into()))
        .unwrap();

    let out = report(&ds, &tmp.path().join("report"));
    let names: Vec<&str> = out.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["spectral_norm", "stable_rank"]);
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("figure `circuits` left out"))
    );
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("density figure left out"))
    );
    assert!(out.notes.iter().any(|n| n.contains("heat maps left out")));
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("1 model(s) failed"), "{md}");
    assert!(md.contains("unknown model_type `mystery`"), "{md}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out.json).unwrap()).unwrap();
    assert_eq!(doc["models_tested"], 3);
    for r in doc["results"].as_array().unwrap() {
        let r = r.as_object().unwrap();
        assert!(r.contains_key("W_V_spectral_norm") && r.contains_key("W_O_mean_spectral"));
        assert!(
            !r.keys()
                .any(|k| k.starts_with("W_Q") || k.starts_with("W_K"))
        );
    }
    for f in &out.figures {
        let (w, h, _) = decode_png(&std::fs::read(&f.png).unwrap());
        assert_eq!((w, h), (1400, 1200));
    }
}
