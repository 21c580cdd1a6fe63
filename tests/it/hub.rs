//! `pipeline run fetch|extract` on Hub ids, against the mock Hugging Face Hub of
//! `attn_spectra_hub::mock` started in this process on 127.0.0.1 (`HF_ENDPOINT`), with the
//! cache in a temporary `HF_HOME`.
//!
//! The mock serves the committed fixtures: safetensors checkpoints (one file, and sharded),
//! PyTorch `.bin` checkpoints (one file, and sharded), a GGUF repo, a branch `step1000` whose
//! shards hold the main weights doubled, and a branch `step143000` byte-identical to `main`.
//! Expected values come from outside the code under test: the fixture bytes (sha256), the
//! mock's own commits, the mock's request log, the same checkpoints run as local `source`s
//! (for the `.bin` and GGUF ones, through the other reader: safetensors files that a different
//! writer produced), and exact scalings of the weights.
//!
//! The Parquet outputs are read back as `pipeline sql --format json` would print them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attn_spectra::DType;
use attn_spectra::checkpoint::safetensors::write_file;
use attn_spectra_hub::mock::{FaultKind, MockHub, Origin, RecordedRequest};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{arch_fixture, root, text};

/// Environment variables of the Hugging Face clients that the parent's environment must not
/// leak into a test run.
const HF_VARS: &[&str] = &[
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "XDG_CACHE_HOME",
];

/// A mock Hub and a scratch directory (the served tree, caches, pipelines, outputs).
struct Env {
    dir: tempfile::TempDir,
    mock: MockHub,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockHub::start(dir.path().join("served")).unwrap();
        Env { dir, mock }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Serves `bytes` as `file` of `model` at `revision`.
    fn serve(&self, model: &str, revision: &str, file: &str, bytes: &[u8]) {
        self.mock.put_file(model, revision, file, bytes).unwrap();
    }

    /// Serves every file of the directory `src` (flat) as `model` at `revision`.
    fn serve_dir(&self, model: &str, revision: &str, src: &Path) {
        for entry in std::fs::read_dir(src).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                let name = p.file_name().unwrap().to_str().unwrap();
                self.serve(model, revision, name, &std::fs::read(&p).unwrap());
            }
        }
    }

    /// The directory the mock serves `model` at `revision` from.
    fn served_dir(&self, model: &str, revision: &str) -> PathBuf {
        self.mock.root().join(model).join(revision)
    }

    fn served_bytes(&self, model: &str, revision: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.served_dir(model, revision).join(file)).unwrap()
    }

    /// Runs `pipeline` with the Hub at the mock, the cache under `home`, and `vars` set.
    fn run(&self, home: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        for v in HF_VARS {
            cmd.env_remove(v);
        }
        cmd.env("HF_ENDPOINT", self.mock.endpoint())
            .env("HF_HOME", self.path(home))
            .env("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
            .args(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run the pipeline binary")
    }

    /// `pipeline run STAGE --pipeline FILE --out OUT --quiet EXTRA...`.
    fn stage(
        &self,
        stage: &str,
        home: &str,
        pipeline: &Path,
        out: &str,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Output {
        let out = self.path(out);
        let mut args = vec![
            "run",
            stage,
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        self.run(home, &args, vars)
    }

    /// Writes a pipeline file `name.toml` with `models` (TOML tables, without the header).
    fn pipeline(&self, name: &str, models: &[String]) -> PathBuf {
        let mut text = format!(
            "name = \"{name}\"\n\n[analysis]\nkinds = [\"W_Q\", \"W_K\", \"W_V\", \"W_O\", \"OV\", \"QK\"]\nper_head = true\nbackend = \"faer\"\nprecision = \"f64\"\n"
        );
        for m in models {
            text.push_str("\n[[models]]\n");
            text.push_str(m);
        }
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A `[[models]]` table for a Hub id.
fn hub_model(id: &str, revision: &str, gguf: Option<&str>) -> String {
    let mut s = format!("id = \"{id}\"\nrevision = \"{revision}\"\n");
    if let Some(g) = gguf {
        s.push_str(&format!("gguf = \"{g}\"\n"));
    }
    s
}

/// A `[[models]]` table for a local checkpoint under the same id and revision.
fn local_model(id: &str, revision: &str, source: &Path) -> String {
    format!(
        "id = \"{id}\"\nrevision = \"{revision}\"\nsource = '{}'\n",
        source.display()
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rows of `sql` over the dataset in `out`, as `pipeline sql --format json` writes them
/// (NDJSON, through the same `attn-spectra-sql` engine and writer, run in process).
fn query(out: &Path, sql: &str) -> Vec<Value> {
    let dataset = attn_spectra_sql::Dataset::open(out)
        .unwrap_or_else(|e| panic!("opening {}: {e}", out.display()));
    let result = dataset
        .query_result(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let json = attn_spectra_sql::output::to_string(&result, attn_spectra_sql::OutputFormat::Json)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    json.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Asserts that a run succeeded and returns its stderr (where `pipeline run` reports).
fn ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    stderr
}

/// Asserts that a run failed with exit code 1 and returns stdout and stderr together.
fn failed(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail:\n{stdout}\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

/// JSON values equal, numbers within a relative `tol` (of the larger magnitude).
fn close(a: &Value, b: &Value, tol: f64) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= tol * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(p, q, tol))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| close(v, w, tol)))
        }
        _ => a == b,
    }
}

fn hub_models() -> Vec<String> {
    vec![
        hub_model(GPT2, "main", None),
        hub_model(NEOX, "main", None),
        hub_model(NEOX, "step1000", None),
        hub_model(NEOX, "step143000", None),
        hub_model(OPT_BIN, "main", None),
        hub_model(PHI_BIN, "main", None),
        hub_model(GGUF, "main", Some("tiny_llama.gguf")),
    ]
}

const GPT2: &str = "org/gpt2";
const NEOX: &str = "org/neox";
const OPT_BIN: &str = "org/opt-bin";
const PHI_BIN: &str = "org/phi-bin";
const GGUF: &str = "org/tiny-gguf";

const NEOX_SHARDS: [&str; 4] = [
    "model-00001-of-00004.safetensors",
    "model-00002-of-00004.safetensors",
    "model-00003-of-00004.safetensors",
    "model-00004-of-00004.safetensors",
];

/// The bytes of a safetensors file with every F32 value doubled (an exact scaling), the
/// header untouched. Parsed here from the format's definition, not with the crate's reader.
fn doubled_safetensors(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut out = bytes.to_vec();
    let data = 8 + n;
    let mut doubled = 0;
    for (name, t) in &header {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(t["dtype"], "F32", "{name}: the fixture is stored in F32");
        let a = data + t["data_offsets"][0].as_u64().unwrap() as usize;
        let b = data + t["data_offsets"][1].as_u64().unwrap() as usize;
        for chunk in out[a..b].chunks_exact_mut(4) {
            let x = f32::from_le_bytes(chunk.try_into().unwrap()) * 2.0;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        doubled += 1;
    }
    assert!(doubled > 0);
    out
}

/// Serves every model of [`hub_models`], plus files the fetch must leave alone.
fn populate(env: &Env) {
    // One safetensors file; the fixture's expected.safetensors and meta.json ride along, as
    // extra files of a repo do, and must not be fetched.
    env.serve_dir(GPT2, "main", &arch_fixture("gpt2"));
    // Sharded safetensors, a branch with different weights and one byte-identical to main.
    env.serve_dir(NEOX, "main", &arch_fixture("gpt_neox"));
    std::fs::remove_file(env.served_dir(NEOX, "main").join("expected.safetensors")).unwrap();
    for f in ["config.json", "model.safetensors.index.json"] {
        let bytes = env.served_bytes(NEOX, "main", f);
        env.serve(NEOX, "step1000", f, &bytes);
    }
    for shard in NEOX_SHARDS {
        let bytes = env.served_bytes(NEOX, "main", shard);
        env.serve(NEOX, "step1000", shard, &doubled_safetensors(&bytes));
    }
    env.serve_dir(NEOX, "step143000", &env.served_dir(NEOX, "main"));
    // PyTorch .bin: sharded (OPT) and one file (Phi).
    env.serve_dir(
        OPT_BIN,
        "main",
        &root().join("tests/fixtures/hub/opt_bin_sharded"),
    );
    env.serve_dir(PHI_BIN, "main", &root().join("tests/fixtures/hub/phi_bin"));
    // A GGUF repo with two .gguf files and no config.json; the pipeline names one.
    let gguf = root().join("tests/fixtures/gguf");
    for f in ["tiny_llama.gguf", "quants.gguf"] {
        env.serve(GGUF, "main", f, &std::fs::read(gguf.join(f)).unwrap());
    }
}

/// The files each model's row must list: (model, revision) -> {name -> (sha256, size)} of the
/// served bytes.
fn expected_files(env: &Env) -> BTreeMap<(String, String), BTreeMap<String, (String, u64)>> {
    let mut wanted: Vec<(&str, &str, Vec<&str>)> = vec![
        (GPT2, "main", vec!["config.json", "model.safetensors"]),
        (
            OPT_BIN,
            "main",
            vec![
                "config.json",
                "pytorch_model.bin.index.json",
                "pytorch_model-00001-of-00002.bin",
                "pytorch_model-00002-of-00002.bin",
            ],
        ),
        (PHI_BIN, "main", vec!["config.json", "pytorch_model.bin"]),
        (GGUF, "main", vec!["tiny_llama.gguf"]),
    ];
    let mut neox = vec!["config.json", "model.safetensors.index.json"];
    neox.extend(NEOX_SHARDS);
    for rev in ["main", "step1000", "step143000"] {
        wanted.push((NEOX, rev, neox.clone()));
    }
    wanted
        .into_iter()
        .map(|(m, r, files)| {
            let files = files
                .into_iter()
                .map(|f| {
                    let bytes = env.served_bytes(m, r, f);
                    (f.to_string(), (sha256_hex(&bytes), bytes.len() as u64))
                })
                .collect();
            ((m.to_string(), r.to_string()), files)
        })
        .collect()
}

/// The `files` column of one models/ row as {name -> (sha256, size)}.
fn files_of(row: &Value) -> BTreeMap<String, (String, u64)> {
    row["files"]
        .as_array()
        .unwrap_or_else(|| panic!("files: {row}"))
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                (
                    f["sha256"].as_str().unwrap_or("<null>").to_string(),
                    f["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn by_model_revision(rows: Vec<Value>) -> BTreeMap<(String, String), Value> {
    rows.into_iter()
        .map(|r| {
            let key = (
                r["model"].as_str().unwrap().to_string(),
                r["revision"].as_str().unwrap().to_string(),
            );
            (key, r)
        })
        .collect()
}

#[test]
fn extract_from_the_hub_records_commits_files_revisions_and_identical_branches() {
    let env = Env::new();
    populate(&env);
    let pipeline = env.pipeline("hub", &hub_models());
    let out = env.stage("extract", "hf", &pipeline, "out", &[], &[]);
    let log = ok(&out, "run extract");
    assert!(log.contains("7 extracted, 0 up to date, 0 failed"), "{log}");

    let rows = by_model_revision(query(
        &env.path("out"),
        "SELECT model, revision, commit, files, identical_to, architecture, source_format FROM models",
    ));
    let expected = expected_files(&env);
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let formats = [
        (GPT2, "gpt2", "safetensors"),
        (NEOX, "gpt_neox", "safetensors"),
        (OPT_BIN, "opt", "pytorch_bin"),
        (PHI_BIN, "phi", "pytorch_bin"),
        (GGUF, "llama", "gguf"),
    ];
    for ((model, revision), row) in &rows {
        let commit = env.mock.commit_of(model, revision).unwrap();
        assert_eq!(row["commit"], commit.as_str(), "{model}@{revision}");
        assert_eq!(
            files_of(row),
            expected[&(model.clone(), revision.clone())],
            "{model}@{revision}: files, sha256 and sizes"
        );
        let (_, arch, format) = formats.iter().find(|(m, _, _)| m == model).unwrap();
        assert_eq!(row["architecture"], *arch, "{model}");
        assert_eq!(row["source_format"], *format, "{model}");
        let identical = if (model.as_str(), revision.as_str()) == (NEOX, "step143000") {
            Value::from("main")
        } else {
            Value::Null
        };
        assert_eq!(row["identical_to"], identical, "{model}@{revision}");
    }
    // Distinct commits for the three branches, although two hold the same bytes.
    let commits: BTreeSet<&str> = ["main", "step1000", "step143000"]
        .iter()
        .map(|r| {
            rows[&(NEOX.to_string(), r.to_string())]["commit"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(commits.len(), 3);
    assert!(
        log.contains(&format!("done     {NEOX}@step143000: gpt_neox, 2 layers, "))
            && log.contains("its files are byte-identical to revision `main`"),
        "{log}"
    );
    assert_eq!(
        log.matches("byte-identical").count(),
        1,
        "only step143000 is flagged: {log}"
    );

    // Files the pipeline does not need were never requested.
    let requests = env.mock.requests();
    for (model, file) in [
        (GPT2, "expected.safetensors"),
        (GPT2, "meta.json"),
        (NEOX, "meta.json"),
        (GGUF, "quants.gguf"),
    ] {
        assert!(
            !requests.iter().any(|r| r.is_for(model, file)),
            "{model}/{file} was requested"
        );
    }
    // The cache holds the served bytes under the resolved commit.
    for ((model, revision), files) in &expected {
        let commit = env.mock.commit_of(model, revision).unwrap();
        let snap = env
            .path("hf/hub")
            .join(format!("models--{}", model.replace('/', "--")))
            .join("snapshots")
            .join(&commit);
        for (name, (sha, _)) in files {
            let bytes = std::fs::read(snap.join(name)).unwrap();
            assert_eq!(
                &sha256_hex(&bytes),
                sha,
                "{model}@{revision}: cached {name}"
            );
        }
    }

    // step1000 holds main's weights doubled: its singular values are exactly twice main's
    // for the projections and four times for the OV and QK circuits.
    let spectra = query(
        &env.path("out"),
        &format!(
            "SELECT revision, layer, head, kind, singular_values FROM spectra WHERE model = '{NEOX}' AND revision IN ('main', 'step1000') ORDER BY layer, kind, head, revision"
        ),
    );
    let mut main: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut step: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &spectra {
        let key = format!("{}/{}/{}", r["layer"], r["kind"], r["head"]);
        let sv: Vec<f64> = r["singular_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        match r["revision"].as_str().unwrap() {
            "main" => main.insert(key, sv),
            _ => step.insert(key, sv),
        };
    }
    assert!(main.len() > 20, "{} matrices", main.len());
    assert_eq!(
        main.keys().collect::<Vec<_>>(),
        step.keys().collect::<Vec<_>>()
    );
    for (key, a) in &main {
        let factor = if key.contains("OV") || key.contains("QK") {
            4.0
        } else {
            2.0
        };
        let b = &step[key];
        assert_eq!(a.len(), b.len(), "{key}");
        let scale = a[0] * factor;
        assert!(scale > 0.0, "{key}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x * factor - y).abs() <= 1e-12 * scale,
                "{key}: main {x} x {factor} != step1000 {y}"
            );
        }
    }

    // A second run finds everything up to date and sends no file downloads.
    env.mock.clear_requests();
    let again = env.stage("extract", "hf", &pipeline, "out", &[], &[]);
    let log = ok(&again, "second run extract");
    assert!(log.contains("0 extracted, 7 up to date, 0 failed"), "{log}");
    assert!(env.mock.requests().is_empty(), "{:?}", env.mock.requests());
}

/// The matrices/ and spectra/ rows of `out`, in a fixed order.
fn tables(out: &Path) -> (Vec<Value>, Vec<Value>) {
    let order = "ORDER BY model, revision, layer, kind, head";
    (
        query(out, &format!("SELECT * FROM matrices {order}")),
        query(out, &format!("SELECT * FROM spectra {order}")),
    )
}

fn assert_same_rows(hub: &[Value], local: &[Value], table: &str) {
    assert_eq!(hub.len(), local.len(), "{table}: row counts");
    for (h, l) in hub.iter().zip(local) {
        assert!(
            close(h, l, 1e-12),
            "{table}: the Hub row\n{h}\ndiffers from the local row\n{l}"
        );
    }
}

#[test]
fn spectra_from_the_hub_equal_spectra_from_local_sources() {
    let env = Env::new();
    populate(&env);
    let hub = env.pipeline("hub", &hub_models());
    ok(
        &env.stage("extract", "hf", &hub, "hub-out", &[], &[]),
        "extract from the Hub",
    );
    // The same ids and revisions from local checkpoints. The .bin models come from the
    // safetensors the .bin files were converted from (tests/fixtures/README.md, `hub/`), the GGUF one
    // from the committed file, the branches from the directories the mock serves.
    let local = env.pipeline(
        "local",
        &[
            local_model(GPT2, "main", &arch_fixture("gpt2")),
            local_model(NEOX, "main", &arch_fixture("gpt_neox")),
            local_model(NEOX, "step1000", &env.served_dir(NEOX, "step1000")),
            local_model(NEOX, "step143000", &arch_fixture("gpt_neox")),
            local_model(OPT_BIN, "main", &arch_fixture("opt")),
            local_model(PHI_BIN, "main", &arch_fixture("phi")),
            local_model(
                GGUF,
                "main",
                &root().join("tests/fixtures/gguf/tiny_llama.gguf"),
            ),
        ],
    );
    env.mock.clear_requests();
    ok(
        &env.stage("extract", "hf-unused", &local, "local-out", &[], &[]),
        "extract from local sources",
    );
    assert!(
        env.mock.requests().is_empty(),
        "local sources reached the Hub"
    );

    let (hub_m, hub_s) = tables(&env.path("hub-out"));
    let (local_m, local_s) = tables(&env.path("local-out"));
    let models: BTreeSet<(&str, &str)> = hub_m
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["revision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(models.len(), 7, "{models:?}");
    assert_same_rows(&hub_m, &local_m, "matrices");
    assert_same_rows(&hub_s, &local_s, "spectra");

    // Local sources record no commit and the checkpoint's own files.
    let local_models = by_model_revision(query(
        &env.path("local-out"),
        "SELECT model, revision, commit FROM models",
    ));
    assert!(local_models.values().all(|r| r["commit"].is_null()));
}

/// A deterministic pseudo-random F32 matrix (values exactly representable).
fn noise(rows: usize, cols: usize, seed: u64) -> (Vec<usize>, Vec<u8>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut bytes = Vec::with_capacity(rows * cols * 4);
    for _ in 0..rows * cols {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = ((state >> 40) as i32 - (1 << 23)) as f32 / (1 << 23) as f32;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    (vec![rows, cols], bytes)
}

#[test]
fn remote_extract_downloads_only_the_attention_bytes() {
    let env = Env::new();
    let model = "org/big-mlp";
    // A Llama-like checkpoint whose MLP and embedding dwarf the attention weights.
    let (d, heads, kv, layers, ffn, vocab) = (64usize, 4usize, 2usize, 2usize, 2048usize, 1024);
    let d_head = d / heads;
    let config = serde_json::json!({
        "model_type": "llama",
        "hidden_size": d,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "num_hidden_layers": layers,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-6,
    });
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut attention = BTreeSet::new();
    let mut seed = 1;
    let mut push = |name: String, (shape, bytes): (Vec<usize>, Vec<u8>), attn: bool| {
        if attn {
            attention.insert(name.clone());
        }
        tensors.push((name, shape, bytes));
    };
    push(
        "model.embed_tokens.weight".into(),
        noise(vocab, d, 999),
        false,
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}.");
        // In name order, as transformers writes them: the three MLP matrices (1.5 MiB, more
        // than the 1 MiB the remote reader bridges) lie between the norm and the attention.
        let mut next = || {
            seed += 1;
            seed
        };
        for (name, shape, attn) in [
            ("input_layernorm.weight", (1, d), true),
            ("mlp.down_proj.weight", (d, ffn), false),
            ("mlp.gate_proj.weight", (ffn, d), false),
            ("mlp.up_proj.weight", (ffn, d), false),
            ("post_attention_layernorm.weight", (1, d), false),
            ("self_attn.k_proj.weight", (kv * d_head, d), true),
            ("self_attn.o_proj.weight", (d, d), true),
            ("self_attn.q_proj.weight", (d, d), true),
            ("self_attn.v_proj.weight", (kv * d_head, d), true),
        ] {
            push(format!("{p}{name}"), noise(shape.0, shape.1, next()), attn);
        }
    }
    // Norm gains are vectors.
    let tensors: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, shape, b)| {
            let shape = if n.ends_with("layernorm.weight") {
                vec![d]
            } else {
                shape.clone()
            };
            (n.as_str(), DType::F32, shape, b.clone())
        })
        .collect();
    let local = env.path("local-big");
    std::fs::create_dir_all(&local).unwrap();
    write_file(&local.join("model.safetensors"), &tensors).unwrap();
    std::fs::write(local.join("config.json"), config.to_string()).unwrap();
    env.serve_dir(model, "main", &local);

    // The byte ranges of the tensors, from the file's own header.
    let file = std::fs::read(local.join("model.safetensors")).unwrap();
    let file_len = file.len() as u64;
    let n = u64::from_le_bytes(file[..8].try_into().unwrap());
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&file[8..8 + n as usize]).unwrap();
    let span_of = |name: &str| {
        let o = &header[name]["data_offsets"];
        (
            8 + n + o[0].as_u64().unwrap(),
            8 + n + o[1].as_u64().unwrap(),
        )
    };
    let header_ranges = ["bytes=0-7".to_string(), format!("bytes=8-{}", 8 + n - 1)];

    let pipeline = env.pipeline("remote", &[hub_model(model, "main", None)]);
    let out = env.stage("extract", "hf", &pipeline, "out", &["--remote"], &[]);
    let log = ok(&out, "run extract --remote");

    let requests = env.mock.requests();
    let weight: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.is_for(model, "model.safetensors") && r.origin == Origin::Cdn)
        .collect();
    assert!(!weight.is_empty());
    // The header is requested once; the attention tensors (projections and pre-attention
    // norm gains) come in merged runs: each tensor inside exactly one request, and no byte of
    // any other tensor requested.
    let mut header_reads: BTreeMap<String, usize> = BTreeMap::new();
    let mut data: Vec<(u64, u64)> = Vec::new();
    for r in &weight {
        let range = r
            .range
            .clone()
            .unwrap_or_else(|| panic!("a GET without Range: {r:?}"));
        assert_eq!(r.status, 206, "{r:?}");
        if header_ranges.contains(&range) {
            *header_reads.entry(range).or_default() += 1;
            continue;
        }
        let (a, b) = range
            .strip_prefix("bytes=")
            .and_then(|x| x.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected Range {range}"));
        data.push((a.parse().unwrap(), b.parse::<u64>().unwrap() + 1));
    }
    assert_eq!(
        header_reads,
        header_ranges
            .iter()
            .map(|h| (h.clone(), 1))
            .collect::<BTreeMap<String, usize>>(),
        "header reads"
    );
    for name in header.keys().filter(|k| *k != "__metadata__") {
        let (a, b) = span_of(name);
        let holding = data.iter().filter(|&&(s, e)| s <= a && b <= e).count();
        let touching = data.iter().filter(|&&(s, e)| s < b && a < e).count();
        if attention.contains(name) {
            assert_eq!((holding, touching), (1, 1), "{name} in {data:?}");
        } else {
            assert_eq!(touching, 0, "{name} ({a}..{b}) was requested: {data:?}");
        }
    }
    // Per layer, the norm gain and the four projections were 5 requests each; merged, the
    // runs are layer 0's norm, layer 0's projections with layer 1's norm (adjacent), and
    // layer 1's projections.
    assert_eq!(data.len(), 3, "{data:?}");
    let received: u64 = weight.iter().map(|r| r.body_bytes).sum();
    let attention_bytes: u64 = attention
        .iter()
        .map(|t| {
            let o = &header[t.as_str()]["data_offsets"];
            o[1].as_u64().unwrap() - o[0].as_u64().unwrap()
        })
        .sum();
    assert_eq!(received, 8 + n + attention_bytes);
    assert!(
        received * 10 < file_len,
        "{received} of {file_len} bytes downloaded"
    );
    // The weights never landed in the cache.
    let cached: Vec<String> = walk(&env.path("hf/hub"))
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 100_000))
        .map(|p| p.display().to_string())
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
    // The run reports what it received against the total, in the mock's own count.
    let report = format!(
        "remote: {:.1} MB of {:.1} MB of weights downloaded ({:.1}%)",
        received as f64 / 1e6,
        file_len as f64 / 1e6,
        100.0 * received as f64 / file_len as f64
    );
    assert!(log.contains(&report), "expected `{report}` in\n{log}");

    // The models/ row: the mock's commit, and the Hub's files with their sizes and sha256.
    let rows = query(
        &env.path("out"),
        "SELECT model, revision, commit, files, source_format FROM models",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["commit"],
        env.mock.commit_of(model, "main").unwrap().as_str()
    );
    let expected: BTreeMap<String, (String, u64)> = ["config.json", "model.safetensors"]
        .iter()
        .map(|f| {
            let b = std::fs::read(local.join(f)).unwrap();
            (f.to_string(), (sha256_hex(&b), b.len() as u64))
        })
        .collect();
    assert_eq!(files_of(&rows[0]), expected);

    // The same checkpoint read from disk gives the same spectra.
    let local_pipeline = env.pipeline("remote-local", &[local_model(model, "main", &local)]);
    ok(
        &env.stage("extract", "hf", &local_pipeline, "local-out", &[], &[]),
        "extract the local copy",
    );
    let (rm, rs) = tables(&env.path("out"));
    let (lm, ls) = tables(&env.path("local-out"));
    assert!(rm.len() > 10);
    assert_same_rows(&rm, &lm, "matrices");
    assert_same_rows(&rs, &ls, "spectra");
}

/// Every file under `dir` (following no links).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn offline_runs_use_the_cache_only_and_name_what_is_missing() {
    let env = Env::new();
    populate(&env);
    let models = vec![
        hub_model(GPT2, "main", None),
        hub_model(OPT_BIN, "main", None),
        hub_model(GGUF, "main", Some("tiny_llama.gguf")),
    ];
    let pipeline = env.pipeline("offline", &models);

    // A cold cache: the run fails without a request, naming each model and the way out.
    let cold = env.stage(
        "extract",
        "cold",
        &pipeline,
        "cold-out",
        &["--offline"],
        &[],
    );
    let msg = failed(&cold, "offline extract on a cold cache");
    for m in [GPT2, OPT_BIN, GGUF] {
        assert!(
            msg.contains(&format!("FAILED   {m}@main")) && msg.contains(&format!("{m}@main: ")),
            "{m}: {msg}"
        );
    }
    assert!(msg.contains("offline mode"), "{msg}");
    assert!(msg.contains("pipeline run fetch"), "{msg}");
    assert!(env.mock.requests().is_empty(), "{:?}", env.mock.requests());

    // Fetch online, then extract offline (flag, then environment): no request reaches the Hub.
    let fetched = env.stage("fetch", "hf", &pipeline, "out", &[], &[]);
    let log = ok(&fetched, "run fetch");
    assert!(log.contains("fetch: 3 model(s) in the cache"), "{log}");
    for m in [GPT2, OPT_BIN, GGUF] {
        let commit = env.mock.commit_of(m, "main").unwrap();
        assert!(
            log.contains(&format!("fetched  {m}@main -> commit {}", &commit[..12])),
            "{m}: {log}"
        );
    }
    env.mock.clear_requests();
    let offline = env.stage("extract", "hf", &pipeline, "out", &["--offline"], &[]);
    let log = ok(&offline, "run extract --offline");
    assert!(log.contains("3 extracted"), "{log}");
    let again = env.stage(
        "extract",
        "hf",
        &pipeline,
        "out",
        &["--force"],
        &[("HF_HUB_OFFLINE", "1")],
    );
    ok(&again, "run extract with HF_HUB_OFFLINE=1");
    assert!(env.mock.requests().is_empty(), "{:?}", env.mock.requests());
    let rows = query(
        &env.path("out"),
        "SELECT model, revision, commit FROM models",
    );
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let m = r["model"].as_str().unwrap();
        assert_eq!(r["commit"], env.mock.commit_of(m, "main").unwrap().as_str());
    }

    // `--remote` cannot work offline, and says so.
    let remote = env.stage(
        "extract",
        "hf",
        &env.pipeline("offline-remote", &[hub_model(GPT2, "main", None)]),
        "remote-out",
        &["--offline", "--remote"],
        &[],
    );
    let msg = failed(&remote, "offline remote extract");
    assert!(msg.contains(GPT2) && msg.contains("offline mode"), "{msg}");
    assert!(env.mock.requests().is_empty());
}

#[test]
fn a_gated_repo_needs_the_token_and_never_shows_it() {
    let env = Env::new();
    let model = "org/gated";
    let token = "hf_mockSecretToken0123456789";
    env.serve_dir(model, "main", &arch_fixture("gpt2"));
    env.mock.gate(model, token);
    // A public model rides along, so that the failed runs still have a dataset to query.
    env.serve_dir(GPT2, "main", &arch_fixture("gpt2"));
    let pipeline = env.pipeline(
        "gated",
        &[
            hub_model(GPT2, "main", None),
            hub_model(model, "main", None),
        ],
    );

    let none = env.stage("extract", "hf", &pipeline, "out-none", &[], &[]);
    let msg = failed(&none, "gated repo without a token");
    assert!(
        msg.contains(model) && msg.contains("gated or private") && msg.contains("HTTP 401"),
        "{msg}"
    );
    let failures = query(&env.path("out-none"), "SELECT model, error FROM failures");
    assert_eq!(failures.len(), 1);
    assert!(failures[0]["error"].as_str().unwrap().contains("gated"));

    let wrong = "hf_wrongTokenABCDEF";
    let bad = env.stage(
        "extract",
        "hf",
        &pipeline,
        "out-wrong",
        &[],
        &[("HF_TOKEN", wrong)],
    );
    let msg = failed(&bad, "gated repo with a wrong token");
    assert!(msg.contains("HTTP 403"), "{msg}");
    assert!(!msg.contains(wrong), "the token leaked: {msg}");
    let failures = query(&env.path("out-wrong"), "SELECT error FROM failures");
    assert!(!failures[0]["error"].as_str().unwrap().contains(wrong));

    let good = env.stage(
        "extract",
        "hf",
        &pipeline,
        "out",
        &[],
        &[("HF_TOKEN", token)],
    );
    let msg = ok(&good, "gated repo with the token");
    let (stdout, _) = text(&good);
    assert!(!msg.contains(token) && !stdout.contains(token), "{msg}");
    let rows = query(
        &env.path("out"),
        &format!("SELECT model, commit, files FROM models WHERE model = '{model}'"),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["commit"],
        env.mock.commit_of(model, "main").unwrap().as_str()
    );
    let weights = std::fs::read(arch_fixture("gpt2").join("model.safetensors")).unwrap();
    assert_eq!(
        files_of(&rows[0])["model.safetensors"].0,
        sha256_hex(&weights)
    );
    // The token went to the Hub only, never to the CDN the weights are redirected to.
    let requests = env.mock.requests();
    let bearer = format!("Bearer {token}");
    assert!(requests.iter().any(|r| r.origin == Origin::Hub
        && r.status == 200
        && r.authorization.as_deref() == Some(bearer.as_str())));
    assert!(
        requests
            .iter()
            .filter(|r| r.origin == Origin::Cdn)
            .all(|r| r.authorization.is_none()),
        "{requests:?}"
    );
    // Nothing in the dataset holds the token either.
    for p in walk(&env.path("out")) {
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{}",
            p.display()
        );
    }
}

/// The cached copy of `file` of `model` at `revision`, read through the snapshot link.
fn cached(env: &Env, home: &str, model: &str, revision: &str, file: &str) -> Vec<u8> {
    let commit = env.mock.commit_of(model, revision).unwrap();
    std::fs::read(
        env.path(home)
            .join("hub")
            .join(format!("models--{}", model.replace('/', "--")))
            .join("snapshots")
            .join(commit)
            .join(file),
    )
    .unwrap()
}

#[test]
fn a_503_and_a_dropped_connection_are_recovered() {
    let env = Env::new();
    populate(&env);
    let weights = std::fs::read(arch_fixture("gpt2").join("model.safetensors")).unwrap();
    let shard = NEOX_SHARDS[1];
    let shard_bytes = env.served_bytes(NEOX, "main", shard);
    // The first GET of gpt2's weights answers 503; the first GET of a neox shard stops
    // halfway through the body.
    env.mock
        .inject(GPT2, "model.safetensors", FaultKind::Status(503), 1);
    let half = shard_bytes.len() as u64 / 2;
    env.mock.inject(NEOX, shard, FaultKind::DropAfter(half), 1);
    let pipeline = env.pipeline(
        "faults",
        &[hub_model(GPT2, "main", None), hub_model(NEOX, "main", None)],
    );
    let out = env.stage("extract", "hf", &pipeline, "out", &[], &[]);
    let log = ok(&out, "run extract with faults");
    assert!(log.contains("2 extracted, 0 up to date, 0 failed"), "{log}");

    let requests = env.mock.requests();
    let gets = |model: &str, file: &str| -> Vec<(u16, u64, Option<String>)> {
        requests
            .iter()
            .filter(|r| r.is_for(model, file) && r.method == "GET" && r.origin == Origin::Cdn)
            .map(|r| (r.status, r.body_bytes, r.range.clone()))
            .collect()
    };
    let g = gets(GPT2, "model.safetensors");
    assert_eq!(g.first().map(|x| x.0), Some(503), "{g:?}");
    assert!(g.iter().any(|x| x.0 == 200 || x.0 == 206), "{g:?}");
    let s = gets(NEOX, shard);
    assert_eq!(s.first().map(|x| (x.0, x.1)), Some((200, half)), "{s:?}");
    assert!(s.len() >= 2, "{s:?}");

    // What landed is the served bytes, and the spectra are those of the fixtures.
    assert_eq!(
        cached(&env, "hf", GPT2, "main", "model.safetensors"),
        weights
    );
    assert_eq!(cached(&env, "hf", NEOX, "main", shard), shard_bytes);
    let local = env.pipeline(
        "faults-local",
        &[
            local_model(GPT2, "main", &arch_fixture("gpt2")),
            local_model(NEOX, "main", &arch_fixture("gpt_neox")),
        ],
    );
    ok(
        &env.stage("extract", "hf", &local, "local-out", &[], &[]),
        "local extract",
    );
    let (hm, _) = tables(&env.path("out"));
    let (lm, _) = tables(&env.path("local-out"));
    assert!(!hm.is_empty());
    assert_same_rows(&hm, &lm, "matrices");
}
