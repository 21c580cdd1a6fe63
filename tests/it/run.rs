//! `pipeline run` stages and `pipeline sql` on the demo pipeline (the repository's fixture
//! checkpoints), and a real run killed mid-way and resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attn_spectra::DType;
use attn_spectra::checkpoint::safetensors::write_file;

use crate::common::{pipeline, root, text};

fn demo() -> PathBuf {
    root().join("pipelines/demo.toml")
}

/// `pipeline sql` over `dir`, as JSON lines parsed into values.
fn sql_json(dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = pipeline(&[
        "sql",
        "--out",
        dir.to_str().unwrap(),
        "--format",
        "json",
        query,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "sql {query}: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
        let pick = |inside: bool| -> Vec<f64> {
            (0..n)
                .filter(|i| (mask >> i & 1 == 1) == inside)
                .map(|i| pooled[i])
                .collect()
        };
        splits += 1;
        if u(&pick(true), &pick(false)) <= observed {
            at_most += 1;
        }
    }
    (observed, f64::from(at_most) / f64::from(splits))
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

#[test]
fn run_all_on_the_demo_pipeline_writes_every_table_and_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("demo");
    // From the repository root with a relative pipeline path (the README's command).
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(root())
        .args(["run", "all", "--pipeline", "pipelines/demo.toml", "--out"])
        .arg(&out_dir)
        .arg("--quiet")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The test's verdicts in the seed's words, and where everything went.
    assert!(stdout.contains("HYPOTHESIS TEST"), "{stdout}");
    assert!(
        stdout.contains("smallest attainable one-sided p"),
        "{stdout}"
    );
    // The multiplicity-corrected verdicts, the power statement and the size-controlled test.
    assert!(stdout.contains("Holm p = "), "{stdout}");
    assert!(stdout.contains("Sample size: "), "{stdout}");
    assert!(stdout.contains("SIZE-CONTROLLED TEST"), "{stdout}");
    for table in [
        "models",
        "matrices",
        "spectra",
        "hypothesis",
        "hypothesis_size",
        "model_summary",
        "lab_summary",
        "layer_profile",
        "trajectory",
    ] {
        let dir = out_dir.join(table);
        assert!(
            !files_with_suffix(&dir, ".parquet").is_empty(),
            "{table}/ has no Parquet file"
        );
        assert!(stdout.contains(&dir.display().to_string()), "{stdout}");
    }
    let report = out_dir.join("report");
    for f in ["report.md", "report.html"] {
        assert!(report.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
    assert_eq!(
        files_with_suffix(&report, ".json").len(),
        1,
        "one seed JSON in {}",
        report.display()
    );
    let pngs = files_with_suffix(&report.join("figures"), ".png");
    assert!(pngs.len() >= 4, "{pngs:?}");

    // Seven fixture models, the pythia-like one at two revisions: one file per unit (model
    // and revision) in each core table.
    let models = sql_json(
        &out_dir,
        "SELECT model, revision, lab, architecture FROM models ORDER BY model, revision",
    );
    assert_eq!(models.len(), 8, "{models:?}");
    assert_eq!(
        files_with_suffix(&out_dir.join("matrices"), ".parquet").len(),
        8
    );

    // Internal consistency the SQL can check: the largest singular value of each spectrum
    // is the matrix's spectral norm, and a spectrum holds min(rows, cols) values (d_head for
    // circuits).
    let bad = sql_json(
        &out_dir,
        "WITH s AS (SELECT model, revision, layer, head, kind, \
                array_length(singular_values) AS n, singular_values[1] AS top FROM spectra) \
         SELECT m.model, m.layer, m.head, m.kind, m.rows, m.cols, s.n, s.top, m.spectral_norm \
         FROM matrices m JOIN s ON m.model = s.model AND m.revision = s.revision \
              AND m.layer = s.layer AND m.kind = s.kind \
              AND (m.head = s.head OR (m.head IS NULL AND s.head IS NULL)) \
         JOIN models d ON d.model = m.model AND d.revision = m.revision \
         WHERE abs(s.top - m.spectral_norm) > 1e-12 * m.spectral_norm \
            OR (m.kind IN ('OV', 'QK') AND s.n <> d.d_head) \
            OR (m.kind NOT IN ('OV', 'QK') AND s.n <> CASE WHEN m.rows < m.cols THEN m.rows ELSE m.cols END)",
    );
    assert!(bad.is_empty(), "inconsistent rows: {bad:?}");
    let joined = sql_json(&out_dir, "SELECT count(*) AS n FROM matrices");
    let spectra = sql_json(&out_dir, "SELECT count(*) AS n FROM spectra");
    assert_eq!(joined, spectra);

    // unnest works and yields every singular value.
    let total = sql_json(
        &out_dir,
        "SELECT sum(array_length(singular_values)) AS n FROM spectra",
    );
    let unnested = sql_json(
        &out_dir,
        "SELECT count(*) AS n FROM (SELECT unnest(singular_values) AS s FROM spectra)",
    );
    assert_eq!(total[0]["n"], unnested[0]["n"]);

    // The hypothesis table: the seed's two tests are there, with 3 EleutherAI fixture models
    // against 4 others. U and the exact one-sided p are recomputed here from the per-layer
    // spectral norms in matrices/, by enumerating all C(7, 3) = 35 splits of the model means;
    // the pythia-like model counts once, at its largest training step (step143000).
    let h = sql_json(
        &out_dir,
        "SELECT metric, kind, n_a, n_b, u_statistic, p_value FROM hypothesis \
         WHERE metric = 'spectral_norm' AND kind IN ('W_V', 'W_O') ORDER BY kind",
    );
    assert_eq!(h.len(), 2, "{h:?}");
    for row in &h {
        let kind = row["kind"].as_str().unwrap();
        assert_eq!(
            (row["n_a"].as_i64(), row["n_b"].as_i64()),
            (Some(3), Some(4))
        );
        let means = sql_json(
            &out_dir,
            &format!(
                "SELECT d.lab, m.model, m.layer, m.spectral_norm FROM matrices m \
                 JOIN models d ON d.model = m.model AND d.revision = m.revision \
                 WHERE m.kind = '{kind}' AND m.head IS NULL AND m.revision <> 'step1000' \
                 ORDER BY m.model, m.layer"
            ),
        );
        let mut per_model: std::collections::BTreeMap<(bool, String), Vec<f64>> =
            Default::default();
        for r in &means {
            let eleuther = r["lab"].as_str() == Some("EleutherAI");
            per_model
                .entry((eleuther, r["model"].as_str().unwrap().to_string()))
                .or_default()
                .push(r["spectral_norm"].as_f64().unwrap());
        }
        let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        let group = |a: bool| -> Vec<f64> {
            per_model
                .iter()
                .filter(|((e, _), _)| *e == a)
                .map(|(_, v)| mean(v))
                .collect()
        };
        let (u, p) = exact_less(&group(true), &group(false));
        let (got_u, got_p) = (
            row["u_statistic"].as_f64().unwrap(),
            row["p_value"].as_f64().unwrap(),
        );
        assert!(
            (got_u - u).abs() < 1e-9,
            "{kind}: U {got_u}, recomputed {u}"
        );
        assert!(
            (got_p - p).abs() < 1e-12,
            "{kind}: p {got_p}, recomputed {p}"
        );
    }

    // The report cross-checks its own W_V means against model_summary's, by the column name
    // the shipped SQL writes.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("`model_summary.w_v_mean` agrees with the W_V Mean above for 8 model(s)"),
        "the report's model_summary cross-check did not run:\n{md}"
    );

    // A second run resumes, from another directory with an absolute pipeline path: nothing
    // is recomputed.
    let again = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(tmp.path())
        .args(["run", "extract", "--pipeline"])
        .arg(demo())
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("0 extracted, 8 up to date"),
        "resumed run: {stderr}"
    );
}

#[test]
fn sql_reports_errors_with_exit_code_2_and_writes_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("d");
    let out = pipeline(&[
        "run",
        "extract",
        "--pipeline",
        demo().to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let dir = out_dir.to_str().unwrap();

    let bad = pipeline(&["sql", "--out", dir, "SELECT no_such_column FROM matrices"]);
    let (_, stderr) = text(&bad);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no_such_column"), "{stderr}");
    let syntax = pipeline(&["sql", "--out", dir, "SELEC 1"]);
    assert_eq!(syntax.status.code(), Some(2), "{}", text(&syntax).1);
    let missing = pipeline(&["sql", "--out", dir, "SELECT * FROM no_such_table"]);
    let (_, stderr) = text(&missing);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no_such_table"), "{stderr}");

    let query = "SELECT model, count(*) AS n FROM matrices GROUP BY model ORDER BY model";
    let table = pipeline(&["sql", "--out", dir, query]);
    let (stdout, _) = text(&table);
    assert!(table.status.success());
    assert!(
        stdout.contains("| model") && stdout.contains("fixture/gpt2-like"),
        "{stdout}"
    );
    let csv = pipeline(&["sql", "--out", dir, "--format", "csv", query]);
    let (stdout, _) = text(&csv);
    assert_eq!(stdout.lines().next(), Some("model,n"));
    assert_eq!(stdout.lines().count(), 8, "{stdout}");

    let parquet = tmp.path().join("r.parquet");
    let needs_file = pipeline(&["sql", "--out", dir, "--format", "parquet", query]);
    assert_ne!(needs_file.status.code(), Some(0));
    let to_file = pipeline(&[
        "sql",
        "--out",
        dir,
        "--format",
        "parquet",
        "-o",
        parquet.to_str().unwrap(),
        query,
    ]);
    assert!(to_file.status.success(), "{}", text(&to_file).1);
    let bytes = std::fs::read(&parquet).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");

    // A SQL file.
    let file = tmp.path().join("q.sql");
    std::fs::write(&file, format!("{query};\n")).unwrap();
    let from_file = pipeline(&[
        "sql",
        "--out",
        dir,
        "--format",
        "csv",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(text(&from_file).0, text(&csv).0);
}

/// Random-weight GPT-2-style checkpoint, big enough that extracting it takes a noticeable time.
pub(crate) fn write_gpt2_like(dir: &Path, d: usize, layers: usize, heads: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "model_type": "gpt2", "n_embd": d, "n_head": heads, "n_layer": layers,
        "n_positions": 16, "vocab_size": 16, "layer_norm_epsilon": 1e-5,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut state = seed;
    let mut random = |n: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 * n);
        for _ in 0..n {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((state >> 40) as f32) / (1u64 << 24) as f32 - 0.5;
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        bytes
    };
    let mut tensors = Vec::new();
    let names: Vec<(String, Vec<usize>)> = (0..layers)
        .flat_map(|l| {
            [
                (format!("h.{l}.ln_1.weight"), vec![d]),
                (format!("h.{l}.ln_1.bias"), vec![d]),
                (format!("h.{l}.attn.c_attn.weight"), vec![d, 3 * d]),
                (format!("h.{l}.attn.c_attn.bias"), vec![3 * d]),
                (format!("h.{l}.attn.c_proj.weight"), vec![d, d]),
                (format!("h.{l}.attn.c_proj.bias"), vec![d]),
            ]
        })
        .collect();
    for (name, shape) in &names {
        let n = shape.iter().product();
        tensors.push((name.as_str(), DType::F32, shape.clone(), random(n)));
    }
    write_file(&dir.join("model.safetensors"), &tensors).unwrap();
}

#[test]
fn a_killed_extract_leaves_no_partial_file_and_resumes_to_the_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    write_gpt2_like(&ckpt, 256, 12, 8, 7);
    let n_models = 6;
    let mut toml = String::from(
        "name = \"killed\"\n[analysis]\nkinds = [\"W_Q\", \"W_K\", \"W_V\", \"W_O\", \"OV\", \"QK\"]\n\
         per_head = true\nprecision = \"f64\"\nbackend = \"faer\"\n",
    );
    for i in 0..n_models {
        toml.push_str(&format!(
            "[[models]]\nid = \"local/m{i}\"\nsource = \"ckpt\"\nlab = \"L{}\"\n",
            i % 2
        ));
    }
    let file = tmp.path().join("killed.toml");
    std::fs::write(&file, toml).unwrap();
    let resumed = tmp.path().join("resumed");
    let args = |out: &Path| -> Vec<String> {
        [
            "run",
            "extract",
            "--pipeline",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threads",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };

    // Start a run and kill it (SIGKILL) as soon as the first model's files are in place.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args(&resumed))
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let models_dir = resumed.join("models");
    loop {
        if !files_with_suffix(&models_dir, ".parquet").is_empty() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a model was written"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no model written"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed: make the checkpoint bigger"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Every visible Parquet file is complete (DataFusion reads them all), and fewer than all
    // models are done.
    let done = sql_json(&resumed, "SELECT count(*) AS n FROM models")[0]["n"]
        .as_i64()
        .unwrap();
    assert!(done >= 1 && done < n_models, "{done} models after the kill");
    for table in ["models", "matrices", "spectra"] {
        for f in files_with_suffix(&resumed.join(table), ".parquet") {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                "partial file {}",
                f.display()
            );
        }
    }

    // The next run resumes: the finished models are skipped, the rest computed.
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args(&resumed))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} extracted, {done} up to date", n_models - done)),
        "{stderr}"
    );
    // No temporary file survives the resumed run.
    for table in ["models", "matrices", "spectra"] {
        let stale: Vec<_> = std::fs::read_dir(resumed.join(table))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(stale.is_empty(), "{stale:?}");
    }

    // Same dataset as an uninterrupted run.
    let clean = tmp.path().join("clean");
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args(&clean))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let q = "SELECT model, layer, head, kind, rows, cols, spectral_norm, stable_rank, alpha \
             FROM matrices ORDER BY model, layer, kind, head";
    let a = sql_json(&resumed, q);
    let b = sql_json(&clean, q);
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b);
    let s = "SELECT model, layer, head, kind, singular_values FROM spectra \
             ORDER BY model, layer, kind, head";
    assert_eq!(sql_json(&resumed, s), sql_json(&clean, s));
}

/// `run all` goes on after failed models only when this run has outputs for at least one
/// model: a matrices/ table left by an earlier run is no such proof.
#[test]
fn run_all_stops_when_no_model_of_the_pipeline_was_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("d");
    // An earlier run left a complete dataset here.
    let out = pipeline(&[
        "run",
        "extract",
        "--pipeline",
        demo().to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    // Now a pipeline whose only model cannot be read.
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let file = tmp.path().join("broken.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"broken\"\n[[models]]\nid = \"org/broken\"\nsource = \"{}\"\n",
            broken.display()
        ),
    )
    .unwrap();
    let out = pipeline(&[
        "run",
        "all",
        "--pipeline",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("org/broken"), "{stderr}");
    // It stopped at extract: no aggregate table, no report from the old tables.
    assert!(
        !out_dir.join("model_summary").exists(),
        "{stdout}\n{stderr}"
    );
    assert!(!out_dir.join("report").exists(), "{stdout}\n{stderr}");
}

/// Extracts the demo pipeline with `backend` into a fresh directory.
fn extract_demo(dir: &Path, backend: &str) -> std::process::Output {
    pipeline(&[
        "run",
        "extract",
        "--pipeline",
        demo().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--backend",
        backend,
        "--quiet",
    ])
}

#[cfg(not(feature = "torch"))]
#[test]
fn torch_backends_need_the_torch_feature() {
    let tmp = tempfile::tempdir().unwrap();
    for backend in ["torch-cpu", "torch-cuda"] {
        let out = extract_demo(tmp.path(), backend);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(
            stderr.contains(backend) && stderr.contains("`torch` cargo feature"),
            "{stderr}"
        );
    }
    let out = extract_demo(tmp.path(), "gpu");
    assert!(text(&out).1.contains("unknown backend `gpu`"));
}

/// The libtorch CPU backend against faer on every spectrum of the demo pipeline: agreement to
/// 1e-6 relative to σ_1 in f64 (issue 3's contract), and the backend recorded in models/.
#[cfg(feature = "torch")]
#[test]
fn torch_cpu_backend_agrees_with_faer_on_the_demo_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let (faer, torch) = (tmp.path().join("faer"), tmp.path().join("torch"));
    for (dir, backend) in [(&faer, "faer"), (&torch, "torch-cpu")] {
        let out = extract_demo(dir, backend);
        assert!(out.status.success(), "{backend}: {}", text(&out).1);
        let b = sql_json(dir, "SELECT DISTINCT backend FROM models");
        assert_eq!(b, vec![serde_json::json!({ "backend": backend })]);
    }
    let q = "SELECT model, layer, head, kind, singular_values FROM spectra \
             ORDER BY model, layer, kind, head";
    let (a, b) = (sql_json(&faer, q), sql_json(&torch, q));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 100);
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x["model"], &x["layer"], &x["head"], &x["kind"]),
            (&y["model"], &y["layer"], &y["head"], &y["kind"])
        );
        let (sx, sy) = (
            x["singular_values"].as_array().unwrap(),
            y["singular_values"].as_array().unwrap(),
        );
        assert_eq!(sx.len(), sy.len(), "{x}");
        let scale = sx[0].as_f64().unwrap().max(f64::MIN_POSITIVE);
        for (p, q) in sx.iter().zip(sy) {
            worst = worst.max((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() / scale);
        }
    }
    assert!(
        worst < 1e-6,
        "torch-cpu vs faer: {worst:e} relative to sigma_1"
    );
}

#[test]
fn trajectory_table_and_figure_for_a_model_at_two_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("steps");
    for stage in ["extract", "aggregate", "report"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .current_dir(root())
            .args(["run", stage, "--pipeline", "pipelines/demo.toml", "--out"])
            .arg(&out_dir)
            .arg("--quiet")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stage}: {stdout}\n{stderr}");
    }
    // The demo's pythia-like fixture is its one model at two revisions: two revisions x six
    // kinds x two layers, steps parsed from the revision names.
    let rows = sql_json(
        &out_dir,
        "SELECT revision, step, kind, layer, depth, spectral_norm FROM trajectory \
         ORDER BY kind, layer, step",
    );
    assert_eq!(rows.len(), 2 * 6 * 2, "{rows:?}");
    let steps: Vec<i64> = rows.iter().map(|r| r["step"].as_i64().unwrap()).collect();
    assert_eq!(&steps[..2], &[1000, 143000]);
    assert!(
        rows.iter()
            .all(|r| r["depth"].as_f64() == Some(r["layer"].as_f64().unwrap()))
    );
    // The perturbed checkpoint's spectra differ from the original's.
    assert_ne!(rows[0]["spectral_norm"], rows[1]["spectral_norm"]);
    // The Marchenko-Pastur columns: set for single matrices, NaN (stored as null) for circuits.
    let mp = sql_json(
        &out_dir,
        "SELECT kind, count(*) AS n, \
         sum(CASE WHEN mp_edge IS NULL OR isnan(mp_edge) THEN 1 ELSE 0 END) AS nan \
         FROM matrices GROUP BY kind ORDER BY kind",
    );
    for r in &mp {
        let circuit = matches!(r["kind"].as_str(), Some("OV" | "QK"));
        let want = if circuit { r["n"].clone() } else { 0.into() };
        assert_eq!(r["nan"], want, "{r}");
    }
    let figures = files_with_suffix(&out_dir.join("report/figures"), ".png");
    assert!(
        figures.iter().any(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("trajectory_fixture--pythia-like")),
        "{figures:?}"
    );
}
