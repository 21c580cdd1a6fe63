//! Sweeps: a pipeline file with revision lists and ranges, `pipeline plan`, and `pipeline run
//! extract --shard` run as concurrent processes into one dataset, compared with a
//! single-process run of the same pipeline; and the usage errors of `--shard` (exit code 2,
//! nothing written).
//!
//! The checkpoints are the repository's fixtures as local `source`s, so each revision of a
//! model is the same weights under another name: what is checked is which units exist, that
//! no unit is lost, duplicated or mixed up between concurrent writers, and that the rows
//! equal the single-process run's.

use std::path::Path;
use std::process::{Command, Stdio};

use attn_spectra::dataset::{DatasetDir, MatrixRow, ModelRow, SpectrumRow};

use crate::common::{pipeline, root, text};

/// A sweep over three fixture models: 2 + 4 + 1 = 7 units.
fn sweep_pipeline(dir: &Path) -> std::path::PathBuf {
    let fixtures = root().join("tests/fixtures/arch");
    let text = format!(
        r#"name = "sweep"
[analysis]
per_head = true
[[models]]
id = "fixture/pythia-like"
source = "{gpt_neox}"
lab = "EleutherAI"
revisions = ["main", "step0"]
[[models]]
id = "fixture/opt-like"
source = "{opt}"
lab = "Meta"
revisions = ["main", {{ format = "step{{}}", from = 1000, to = 3000, step = 1000 }}]
[[models]]
id = "fixture/gpt2-like"
source = "{gpt2}"
lab = "OpenAI"
"#,
        gpt_neox = fixtures.join("gpt_neox").display(),
        opt = fixtures.join("opt").display(),
        gpt2 = fixtures.join("gpt2").display(),
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A dataset's rows, comparable across runs: every `matrices/` and `spectra/` row and every
/// `models/` row without its extraction time, each as its debug text, sorted.
pub fn dataset_rows(dir: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ds = DatasetDir::new(dir);
    let mut models: Vec<String> = ds
        .read::<ModelRow>()
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|mut m| {
            m.extracted_at_us = 0;
            format!("{m:?}")
        })
        .collect();
    let mut matrices: Vec<String> = ds
        .read::<MatrixRow>()
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let mut spectra: Vec<String> = ds
        .read::<SpectrumRow>()
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    models.sort();
    matrices.sort();
    spectra.sort();
    (models, matrices, spectra)
}

/// `pipeline plan --format json` as values.
fn plan_json(pipeline_file: &Path, out: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "plan",
        "--pipeline",
        pipeline_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(extra);
    let o = pipeline(&args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "plan: {stderr}");
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout).unwrap()
}

#[test]
fn concurrent_shards_make_the_single_process_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_pipeline(tmp.path());
    let single = tmp.path().join("single");
    let sharded = tmp.path().join("sharded");

    // The plan before any run: 7 units in file order, all to do, sizes from the sources.
    let units = plan_json(&file, &sharded, &["--shards", "3"]);
    let listed: Vec<(u64, u64, String, String, String)> = units
        .iter()
        .map(|u| {
            (
                u["index"].as_u64().unwrap(),
                u["shard"].as_u64().unwrap(),
                u["model"].as_str().unwrap().to_string(),
                u["revision"].as_str().unwrap().to_string(),
                u["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected_units = [
        ("fixture/pythia-like", "main"),
        ("fixture/pythia-like", "step0"),
        ("fixture/opt-like", "main"),
        ("fixture/opt-like", "step1000"),
        ("fixture/opt-like", "step2000"),
        ("fixture/opt-like", "step3000"),
        ("fixture/gpt2-like", "main"),
    ];
    assert_eq!(listed.len(), expected_units.len());
    for (i, (got, want)) in listed.iter().zip(expected_units).enumerate() {
        assert_eq!(
            got,
            &(
                i as u64,
                i as u64 % 3,
                want.0.to_string(),
                want.1.to_string(),
                "todo".to_string()
            )
        );
    }
    let gpt2_bytes = std::fs::read_dir(root().join("tests/fixtures/arch/gpt2"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    assert_eq!(units[6]["bytes"].as_u64(), Some(gpt2_bytes));
    assert_eq!(units[6]["bytes_from"].as_str(), Some("source"));

    // Three shards at the same time, into one dataset.
    let children: Vec<_> = (0..3)
        .map(|k| {
            Command::new(env!("CARGO_BIN_EXE_pipeline"))
                .args(["run", "extract", "--threads", "1", "--pipeline"])
                .arg(&file)
                .arg("--out")
                .arg(&sharded)
                .arg("--shard")
                .arg(format!("{k}/3"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "shard {k}/3: {stdout}{stderr}");
        let expected = [3, 2, 2][k];
        assert!(
            stderr.contains(&format!("{expected} extracted, 0 up to date, 0 failed")),
            "shard {k}/3 takes units {k}, {}, ...: {stderr}",
            k + 3
        );
    }

    let o = pipeline(&[
        "run",
        "extract",
        "--quiet",
        "--threads",
        "1",
        "--pipeline",
        file.to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);

    let a = dataset_rows(&single);
    let b = dataset_rows(&sharded);
    assert_eq!(a.0.len(), 7);
    assert!(!a.1.is_empty() && a.1.len() == a.2.len());
    assert_eq!(
        a, b,
        "the sharded dataset differs from the single-process one"
    );
    // Nothing but the units' files: no temporaries left by any shard.
    for table in ["models", "matrices", "spectra"] {
        let names: Vec<String> = std::fs::read_dir(sharded.join(table))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 7, "{table}: {names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    // The plan now: everything done; in f32 (another configuration) everything other-config.
    let units = plan_json(&file, &sharded, &[]);
    assert!(units.iter().all(|u| u["status"] == "done"), "{units:?}");
    let units = plan_json(&file, &sharded, &["--precision", "f32", "--shard", "1/3"]);
    assert_eq!(
        units
            .iter()
            .map(|u| (u["index"].as_u64().unwrap(), u["status"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [(1, "other-config"), (4, "other-config")]
    );
    // A shard rerun skips its units; one unit deleted is redone by its shard alone.
    std::fs::remove_file(sharded.join("models/fixture--opt-like@step2000.parquet")).unwrap();
    let units = plan_json(&file, &sharded, &[]);
    assert_eq!(units[4]["status"], "todo");
    let o = pipeline(&[
        "run",
        "extract",
        "--pipeline",
        file.to_str().unwrap(),
        "--out",
        sharded.to_str().unwrap(),
        "--shard",
        "1/3",
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 extracted, 1 up to date, 0 failed"),
        "{stderr}"
    );
    assert_eq!(dataset_rows(&sharded), a);

    // The table and CSV forms list the same units.
    let o = pipeline(&[
        "plan",
        "--pipeline",
        file.to_str().unwrap(),
        "--out",
        sharded.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let (stdout, _) = text(&o);
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    assert!(stdout.starts_with("index,model,revision,status,bytes,bytes_from,error\n"));
    assert!(
        stdout.contains("\n3,fixture/opt-like,step1000,done,"),
        "{stdout}"
    );
    let o = pipeline(&[
        "plan",
        "--pipeline",
        file.to_str().unwrap(),
        "--out",
        sharded.to_str().unwrap(),
    ]);
    let (stdout, _) = text(&o);
    assert!(
        stdout.contains("7 units: 7 done, 0 todo, 0 failed, 0 other-config"),
        "{stdout}"
    );
}

/// Bad `--shard` values and bad sweeps are usage errors (exit code 2) naming the flag,
/// variable or key, and write nothing.
#[test]
fn bad_shards_and_sweeps_are_usage_errors_that_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_pipeline(tmp.path());
    let out = tmp.path().join("out");
    let run = |shard: &str, stage: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        cmd.args(["run", stage, "--pipeline"])
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .arg("--shard")
            .arg(shard);
        for var in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_MAX",
            "JOB_COMPLETION_INDEX",
            "ATTN_SPECTRA_SHARD_COUNT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        cmd.output().unwrap()
    };
    for (shard, stage, env, words) in [
        ("5/4", "extract", &[][..], "--shard 5/4"),
        ("0/0", "extract", &[][..], "--shard 0/0"),
        ("x", "extract", &[][..], "--shard x"),
        (
            "auto",
            "extract",
            &[][..],
            "SLURM_ARRAY_TASK_ID (Slurm job array) or JOB_COMPLETION_INDEX",
        ),
        (
            "auto",
            "extract",
            &[("JOB_COMPLETION_INDEX", "1")][..],
            "ATTN_SPECTRA_SHARD_COUNT",
        ),
        (
            "auto",
            "extract",
            &[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ][..],
            "Slurm task 4",
        ),
        ("0/2", "aggregate", &[][..], "run extract"),
        ("0/2", "all", &[][..], "run extract"),
    ] {
        let o = run(shard, stage, env);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{shard} {stage}: {stderr}");
        assert!(stderr.contains(words), "{shard} {stage}: {stderr}");
        assert!(!out.exists(), "{shard} {stage} wrote {}", out.display());
    }
    // A bad range in the file: the key and the file named, exit code 1 as for any bad
    // pipeline file, nothing written.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"bad\"\n[[models]]\nid = \"a\"\nrevisions = { format = \"step{}\", from = 10, to = 0 }\n",
    )
    .unwrap();
    for args in [vec!["run", "extract", "--out"], vec!["plan", "--out"]] {
        let mut args: Vec<&str> = args;
        args.extend([out.to_str().unwrap(), "--pipeline", bad.to_str().unwrap()]);
        let o = pipeline(&args);
        let (_, stderr) = text(&o);
        assert!(!o.status.success());
        assert!(
            stderr.contains("bad.toml") && stderr.contains("`models[0].revisions.from`"),
            "{stderr}"
        );
        assert!(!out.exists());
    }
}
