//! `pipeline demo`: the demo carried inside the binary, run from a directory with no clone of
//! the repository, gives the same dataset as the repository's demo pipeline.

use std::path::Path;
use std::process::Command;

use crate::common::{root, text};

/// Runs `pipeline` in `cwd` with `args`.
fn pipeline_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run the pipeline binary")
}

/// Every whole-layer and per-head matrix's metrics of a dataset, as `pipeline sql` prints them.
fn matrices(cwd: &Path, dataset: &Path) -> String {
    let out = pipeline_in(
        cwd,
        &[
            "sql",
            "--out",
            dataset.to_str().unwrap(),
            "--format",
            "csv",
            "SELECT model, layer, head, kind, rows, cols, spectral_norm, stable_rank, alpha \
             FROM matrices ORDER BY model, layer, head, kind",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "sql: {stderr}");
    stdout
}

#[test]
fn demo_runs_outside_the_repository_and_matches_the_repository_demo() {
    let tmp = tempfile::tempdir().unwrap();
    // A relative DIR, resolved against a working directory that is not the repository.
    let out = pipeline_in(tmp.path(), &["demo", "here", "--quiet"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let dir = tmp.path().join("here");
    assert!(stdout.contains("Done. Dataset: here/data/demo"), "{stdout}");
    for file in ["data/demo/report/report.md", "data/demo/report/report.html"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(stdout.contains("report.md"), "{stdout}");

    // The same numbers as the repository's own demo pipeline, extracted independently.
    let reference = tmp.path().join("reference");
    let out = pipeline_in(
        &root(),
        &[
            "run",
            "extract",
            "--pipeline",
            "pipelines/demo.toml",
            "--quiet",
            "--out",
            reference.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let ours = matrices(tmp.path(), &dir.join("data/demo"));
    assert!(ours.lines().count() > 100, "{ours}");
    assert_eq!(ours, matrices(tmp.path(), &reference));

    // A second run reuses everything; a changed demo file is refused with exit code 2 and
    // the flag that would overwrite it.
    let again = pipeline_in(tmp.path(), &["demo", "here", "--quiet"]);
    assert!(again.status.success(), "{}", text(&again).1);
    std::fs::write(dir.join("pipelines/demo.toml"), "name = \"mine\"\n").unwrap();
    let clash = pipeline_in(tmp.path(), &["demo", "here", "--quiet"]);
    let (_, stderr) = text(&clash);
    assert_eq!(clash.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pipelines/demo.toml") && stderr.contains("--force"),
        "{stderr}"
    );
}

#[test]
fn version_names_the_enabled_features() {
    let out = pipeline_in(&root(), &["--version"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with(&format!("pipeline {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let features = stdout
        .split("features: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default();
    assert_eq!(
        features.contains("torch"),
        cfg!(feature = "torch"),
        "{stdout}"
    );
    assert_eq!(
        features.contains("cloud"),
        cfg!(feature = "cloud"),
        "{stdout}"
    );
}
