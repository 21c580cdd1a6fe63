//! Datasets in an object store (`--out s3://...`), against a real S3-compatible server:
//! moto's standalone server, a separate process speaking the S3 REST API over HTTP, which
//! `scripts/s3_server.sh` installs from PyPI into a venv outside the clone
//! (`/var/cache/attn-spectra/venv-s3`, or `$ATTN_SPECTRA_S3_VENV`).
//!
//! Each test starts its own server on a free 127.0.0.1 port and fails, saying why, when it
//! cannot. The tests are `#[ignore]`d because they need that venv: `.ci/run` runs the script
//! and then `cargo test --test it -- --ignored s3`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attn_spectra::dataset::{DatasetDir, MatrixRow, ModelRow, SpectrumRow};

use crate::common::{root, text};

/// A moto server process, killed when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
    _log_dir: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        let venv = std::env::var_os("ATTN_SPECTRA_S3_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/attn-spectra/venv-s3"));
        let server = venv.join("bin/moto_server");
        assert!(
            server.is_file(),
            "{} is missing: run scripts/s3_server.sh to install moto's S3 server",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("moto.log");
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log_dir.path().join("moto.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let err =
                    std::fs::read_to_string(log_dir.path().join("moto.err")).unwrap_or_default();
                panic!("moto_server exited ({status}) before listening on port {port}:\n{err}");
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("moto_server did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _log_dir: log_dir,
        }
    }

    /// Creates a bucket (moto accepts unsigned requests).
    fn create_bucket(&self, bucket: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).unwrap();
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "creating bucket {bucket}: {response}"
        );
    }

    /// `pipeline` with the S3 variables pointing at this server (and no others inherited).
    fn pipeline(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(cwd)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
        cmd
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.pipeline(cwd, args).output().unwrap()
    }

    /// The dataset at `url` as this process sees it, through the core crate's reader.
    fn dataset(&self, url: &str) -> DatasetDir {
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        DatasetDir::in_store(url, Arc::new(store)).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(out: &Output, what: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "{what}: {stdout}\n{stderr}");
    stderr
}

/// `pipeline sql --format json` rows.
fn sql_json(server: &S3Server, cwd: &Path, out: &str, query: &str) -> Vec<serde_json::Value> {
    let result = server.run(cwd, &["sql", "--out", out, "--format", "json", query]);
    let (stdout, stderr) = text(&result);
    assert!(result.status.success(), "{query} on {out}: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The demo pipeline with its checkpoints' paths made absolute, restricted to the models at
/// `keep` (indices into demo.toml's list), written to `dir/<file>`.
fn demo_subset(dir: &Path, file: &str, keep: &[usize]) -> PathBuf {
    let text = std::fs::read_to_string(root().join("pipelines/demo.toml")).unwrap();
    let fixtures = root().join("tests/fixtures");
    let text = text.replace(
        "source = \"../tests/fixtures",
        &format!("source = \"{}", fixtures.display()),
    );
    let mut parts = text.split("[[models]]");
    let head = parts.next().unwrap().to_string();
    let models: Vec<&str> = parts.collect();
    let last = models.last().unwrap();
    let (last_model, test) = last.split_at(last.find("[test]").unwrap());
    let mut models: Vec<String> = models.iter().map(|m| m.to_string()).collect();
    *models.last_mut().unwrap() = last_model.to_string();
    let mut out = head;
    for &i in keep {
        out.push_str("[[models]]");
        out.push_str(&models[i]);
    }
    out.push_str(test);
    let path = dir.join(file);
    std::fs::write(&path, out).unwrap();
    path
}

/// Two `run extract` processes write halves of the demo into one bucket at the same time;
/// the whole pipeline then finds every unit done (resume against the bucket); aggregate,
/// test and report read the bucket; the rows equal those of a local run.
#[test]
#[ignore = "needs scripts/s3_server.sh (moto's S3 server in a venv)"]
fn s3_two_writers_then_readers_equal_a_local_run() {
    let started = Instant::now();
    let server = S3Server::start();
    eprintln!("moto started in {:.2} s", started.elapsed().as_secs_f64());
    server.create_bucket("spectra");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let all = demo_subset(cwd, "all.toml", &[0, 1, 2, 3, 4, 5, 6]);
    let half_a = demo_subset(cwd, "a.toml", &[0, 2, 4, 6]);
    let half_b = demo_subset(cwd, "b.toml", &[1, 3, 5]);
    let url = "s3://spectra/runs/demo";
    let extract = |file: &Path| {
        server
            .pipeline(
                cwd,
                &[
                    "run",
                    "extract",
                    "--pipeline",
                    file.to_str().unwrap(),
                    "--out",
                    url,
                    "--threads",
                    "1",
                    "--quiet",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (extract(&half_a), extract(&half_b));
    let stderr_a = ok(&a.wait_with_output().unwrap(), "extract a.toml");
    let stderr_b = ok(&b.wait_with_output().unwrap(), "extract b.toml");
    assert!(
        stderr_a.contains("4 extracted, 0 up to date, 0 failed -> s3://spectra/runs/demo"),
        "{stderr_a}"
    );
    assert!(
        stderr_b.contains("3 extracted, 0 up to date, 0 failed"),
        "{stderr_b}"
    );
    let all_s = all.to_str().unwrap();
    let stderr = ok(
        &server.run(
            cwd,
            &[
                "run",
                "extract",
                "--pipeline",
                all_s,
                "--out",
                url,
                "--quiet",
            ],
        ),
        "extract all.toml",
    );
    assert!(stderr.contains("0 extracted, 7 up to date"), "{stderr}");
    for stage in ["aggregate", "test", "report"] {
        ok(
            &server.run(
                cwd,
                &["run", stage, "--pipeline", all_s, "--out", url, "--quiet"],
            ),
            stage,
        );
    }
    // The report of a dataset in a bucket is written locally, to data/<name>/report/.
    let report = cwd.join("data/demo/report/report.md");
    let report_text = std::fs::read_to_string(&report).unwrap();
    // The aggregate and test tables went to the bucket.
    let ds = server.dataset(url);
    let tables = ds.tables().unwrap();
    for t in [
        "models",
        "matrices",
        "spectra",
        "hypothesis",
        "hypothesis_size",
        "model_summary",
        "lab_summary",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
    assert_eq!(ds.read::<ModelRow>().unwrap().unwrap().len(), 7);

    // The same stages on a local directory.
    let local = cwd.join("local");
    let local_s = local.to_str().unwrap();
    for stage in ["extract", "aggregate", "test", "report"] {
        ok(
            &server.run(
                cwd,
                &[
                    "run",
                    stage,
                    "--pipeline",
                    all_s,
                    "--out",
                    local_s,
                    "--threads",
                    "1",
                    "--quiet",
                ],
            ),
            stage,
        );
    }
    let queries = [
        "SELECT * EXCLUDE (extracted_at) FROM models ORDER BY model",
        "SELECT * FROM matrices ORDER BY model, layer, kind, head",
        "SELECT * FROM spectra ORDER BY model, layer, kind, head",
        "SELECT * FROM hypothesis ORDER BY metric, kind",
        "SELECT * FROM hypothesis_size ORDER BY metric, kind",
        "SELECT * FROM model_summary ORDER BY 1, 2",
        "SELECT * FROM lab_summary ORDER BY 1, 2",
    ];
    for q in queries {
        let remote = sql_json(&server, cwd, url, q);
        assert!(!remote.is_empty(), "{q}: no rows");
        assert_eq!(remote, sql_json(&server, cwd, local_s, q), "{q}");
    }
    // The reports say the same, but for the dataset's name and the time.
    let local_report = std::fs::read_to_string(local.join("report/report.md")).unwrap();
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.contains(url) && !l.contains(local_s) && !l.contains("Generated"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip(&report_text).len(), strip(&local_report).len());
    eprintln!("s3 round trip in {:.1} s", started.elapsed().as_secs_f64());
}

/// A run killed (SIGKILL) while it writes to the bucket leaves only whole objects: every
/// object readers list is a complete Parquet file, no unit has a models/ object without its
/// other two; the next run completes the dataset, equal to an uninterrupted local run.
#[test]
#[ignore = "needs scripts/s3_server.sh (moto's S3 server in a venv)"]
fn s3_killed_writer_leaves_no_partial_object_and_resumes() {
    let server = S3Server::start();
    server.create_bucket("killed");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let ckpt = cwd.join("ckpt");
    crate::run::write_gpt2_like(&ckpt, 256, 12, 8, 7);
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
    let file = cwd.join("killed.toml");
    std::fs::write(&file, toml).unwrap();
    let url = "s3://killed/ds";
    let args = |out: &str| -> Vec<String> {
        [
            "run",
            "extract",
            "--pipeline",
            file.to_str().unwrap(),
            "--out",
            out,
            "--threads",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    let args_s = args(url);
    let args_ref: Vec<&str> = args_s.iter().map(String::as_str).collect();
    let mut child = server
        .pipeline(cwd, &args_ref)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ds = server.dataset(url);
    let start = Instant::now();
    // Kill as soon as the first unit's spectra/ object is in place: the run is then between
    // that upload and the next ones.
    loop {
        if ds.table_file_names("spectra").unwrap().is_some() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a unit was written"
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no unit written"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed: make the checkpoint bigger"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Every listed object reads as Parquet; models/ only where spectra/ and matrices/ are.
    let models = ds.read::<ModelRow>().unwrap().unwrap_or_default();
    let matrices = ds.read::<MatrixRow>().unwrap().unwrap_or_default();
    let spectra = ds.read::<SpectrumRow>().unwrap().unwrap();
    assert!(
        models.len() < n_models,
        "{} units done before the kill",
        models.len()
    );
    for m in &models {
        assert!(
            matrices.iter().any(|r| r.key.model == m.model),
            "{}",
            m.model
        );
        assert!(
            spectra.iter().any(|r| r.key.model == m.model),
            "{}",
            m.model
        );
    }
    let done = models.len();

    // The next run resumes against the bucket and completes it.
    let out = server.run(cwd, &args_ref);
    let stderr = ok(&out, "resumed run");
    assert!(
        stderr.contains(&format!("{} extracted, {done} up to date", n_models - done)),
        "{stderr}"
    );
    let clean = cwd.join("clean");
    ok(
        &server.run(
            cwd,
            &args(clean.to_str().unwrap())
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
        "clean run",
    );
    for q in [
        "SELECT model, layer, head, kind, rows, cols, spectral_norm, stable_rank, alpha \
         FROM matrices ORDER BY model, layer, kind, head",
        "SELECT model, layer, head, kind, singular_values FROM spectra \
         ORDER BY model, layer, kind, head",
    ] {
        let remote = sql_json(&server, cwd, url, q);
        assert!(!remote.is_empty());
        assert_eq!(
            remote,
            sql_json(&server, cwd, clean.to_str().unwrap(), q),
            "{q}"
        );
    }
}

/// Bad locations: an unknown scheme, missing credentials, a bucket that does not exist.
/// Each is a usage error (exit code 2) naming the flag and what to set, and writes nothing.
#[test]
#[ignore = "needs scripts/s3_server.sh (moto's S3 server in a venv)"]
fn s3_bad_locations_are_usage_errors() {
    let server = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let demo = demo_subset(cwd, "demo.toml", &[0]);
    let demo = demo.to_str().unwrap();
    let check = |out: Output, needles: &[&str]| {
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "`{n}` not in: {stderr}");
        }
        let written: Vec<_> = std::fs::read_dir(cwd)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "demo.toml")
            .collect();
        assert!(written.is_empty(), "{written:?}");
    };
    check(
        server.run(
            cwd,
            &[
                "run",
                "extract",
                "--pipeline",
                demo,
                "--out",
                "ftp://host/x",
            ],
        ),
        &["--out ftp://host/x", "unknown URL scheme `ftp://`", "s3://"],
    );
    check(
        server.run(cwd, &["sql", "--out", "ftp://host/x", "SELECT 1"]),
        &["--out ftp://host/x", "unknown URL scheme"],
    );
    let out = server
        .pipeline(
            cwd,
            &[
                "run",
                "extract",
                "--pipeline",
                demo,
                "--out",
                "s3://spectra/x",
            ],
        )
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    check(
        out,
        &[
            "--out s3://spectra/x",
            "no credentials for S3",
            "AWS_ACCESS_KEY_ID",
        ],
    );
    let out = server
        .pipeline(
            cwd,
            &[
                "run",
                "extract",
                "--pipeline",
                demo,
                "--out",
                "s3://spectra/x",
            ],
        )
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    check(out, &["AWS_SECRET_ACCESS_KEY"]);
    // Google and Azure: refused before any request when no credential source is set (HOME
    // without gcloud's application default credentials).
    let out = server
        .pipeline(
            cwd,
            &["run", "extract", "--pipeline", demo, "--out", "gs://b/x"],
        )
        .env("HOME", cwd.join("no-home"))
        .output()
        .unwrap();
    check(
        out,
        &[
            "--out gs://b/x",
            "no credentials for Google Cloud Storage",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ],
    );
    check(
        server.run(
            cwd,
            &["run", "extract", "--pipeline", demo, "--out", "az://c/x"],
        ),
        &[
            "--out az://c/x",
            "no credentials for Azure Blob Storage",
            "AZURE_STORAGE_ACCOUNT_KEY",
        ],
    );
    check(
        server.run(
            cwd,
            &[
                "run",
                "extract",
                "--pipeline",
                demo,
                "--out",
                "s3://no-such-bucket/x",
            ],
        ),
        &[
            "--out s3://no-such-bucket/x",
            "the bucket `no-such-bucket` does not exist",
        ],
    );
    check(
        server.run(cwd, &["sql", "--out", "s3://no-such-bucket/x", "SELECT 1"]),
        &["the bucket `no-such-bucket` does not exist"],
    );
}
