//! A sweep on a real Slurm cluster: `deploy/slurm/submit.sh` submits a 4-task array of
//! `pipeline run extract --shard auto` and the aggregate/test/report job after it
//! (`--dependency=afterok`), over fixture checkpoints served at several revisions by the mock
//! Hub (started in this process; the tasks reach it on 127.0.0.1, so the cluster must be this
//! machine). The dataset must equal a single-process run of the same pipeline, row for row.
//! Then a task is killed with SIGKILL while it downloads, the dataset lacks exactly that
//! task's units, and submitting the sweep again completes it to the same rows.
//!
//! Needs a running cluster: `scripts/slurm_cluster.sh` (as root) starts a single-node one;
//! `.ci/run` does that and runs this test with `--ignored`. Run without a cluster, the test
//! fails, saying so; it is never skipped as passed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use attn_spectra_hub::mock::{FaultKind, MockHub};

use crate::common::{root, text};
use crate::sweep::dataset_rows;

/// Runs a Slurm client command; panics with its output when it fails.
fn slurm(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{cmd}` ({e}): this test needs a Slurm cluster; start one with scripts/slurm_cluster.sh (as root)"
        )
    });
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {stdout}{stderr}\nthis test needs a Slurm cluster; start one with scripts/slurm_cluster.sh (as root)",
        args.join(" ")
    );
    stdout
}

/// Waits until none of `jobs` is in the queue (at most `limit`).
fn wait_for(jobs: &[&str], limit: Duration) {
    let started = Instant::now();
    loop {
        let queued = slurm("squeue", &["-h", "-o", "%i %T", "-j", &jobs.join(",")]);
        if queued.trim().is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "Slurm jobs {jobs:?} still queued after {limit:?}:\n{queued}\n{}",
            slurm("sinfo", &[])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The final state of a job (or array task) from `scontrol`, e.g. `COMPLETED`.
fn job_state(job: &str) -> String {
    let out = slurm("scontrol", &["show", "job", "-o", job]);
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("?")
        .to_string()
}

struct Sweep {
    dir: tempfile::TempDir,
    mock: MockHub,
    pipeline: PathBuf,
}

impl Sweep {
    /// Three Hub models, each at revisions step1..step3 written as a range, every revision a
    /// different fixture checkpoint: 9 units, plus `org/slow` (one revision) as unit 0.
    fn new() -> Sweep {
        // Under /tmp (not a private temporary of this user) so that slurmd's tasks see it.
        let dir = tempfile::Builder::new()
            .prefix("attn-slurm-")
            .tempdir_in("/tmp")
            .unwrap();
        let mock = MockHub::start(dir.path().join("served")).unwrap();
        let serve = |model: &str, revision: &str, fixture: &str| {
            let src = root().join("tests/fixtures/arch").join(fixture);
            for entry in std::fs::read_dir(&src).unwrap() {
                let p = entry.unwrap().path();
                if p.is_file() {
                    let name = p.file_name().unwrap().to_str().unwrap();
                    mock.put_file(model, revision, name, &std::fs::read(&p).unwrap())
                        .unwrap();
                }
            }
        };
        serve("org/slow", "main", "gpt2");
        for (model, fixtures) in [
            ("org/a", ["gpt_neox", "gptj", "gpt_neo"]),
            ("org/b", ["opt", "opt_post_ln", "gpt2"]),
            ("org/c", ["bloom", "gpt2", "gpt_neox"]),
        ] {
            for (i, f) in fixtures.iter().enumerate() {
                serve(model, &format!("step{}", i + 1), f);
            }
        }
        let pipeline = dir.path().join("sweep.toml");
        std::fs::write(
            &pipeline,
            r#"name = "slurm-sweep"
[[models]]
id = "org/slow"
lab = "Other"
[[models]]
id = "org/a"
lab = "EleutherAI"
revisions = { format = "step{}", from = 1, to = 3 }
[[models]]
id = "org/b"
lab = "Meta"
revisions = { format = "step{}", from = 1, to = 3 }
[[models]]
id = "org/c"
lab = "BigScience"
revisions = ["step1", { format = "step{}", from = 2, to = 3 }]
"#,
        )
        .unwrap();
        Sweep {
            dir,
            mock,
            pipeline,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A command with the mock Hub's endpoint and an own cache `hf` (shared by the tasks).
    fn command(&self, program: &Path, hf: &str) -> Command {
        let mut cmd = Command::new(program);
        for var in [
            "HF_TOKEN",
            "HF_TOKEN_PATH",
            "HF_HUB_OFFLINE",
            "HF_HUB_CACHE",
            "XDG_CACHE_HOME",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HF_ENDPOINT", self.mock.endpoint())
            .env("HF_HOME", self.path(hf));
        cmd
    }

    /// Submits the sweep (`deploy/slurm/submit.sh`): returns the array's and the follow-up
    /// job's ids.
    fn submit(&self, out: &str, hf: &str) -> (String, String) {
        let mut cmd = self.command(&root().join("deploy/slurm/submit.sh"), hf);
        cmd.arg(&self.pipeline)
            .arg(self.path(out))
            .args(["4", "4"])
            .env("PIPELINE_BIN", env!("CARGO_BIN_EXE_pipeline"))
            .env("TASK_ARGS", "--cpus-per-task=1")
            .env("SBATCH_ARGS", "--time=10")
            .env("LOG_DIR", self.path("logs"));
        let o = cmd.output().unwrap();
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "submit.sh: {stdout}{stderr}");
        let ids: Vec<&str> = stdout
            .lines()
            .next()
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .collect();
        // "extract array: <id> (4 tasks, at most 4 at once); aggregate/test/report: <id>"
        (ids[0].to_string(), ids[ids.len() - 1].to_string())
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.path("logs")) {
            for e in entries.flatten() {
                all.push_str(&format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        all
    }
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm_cluster.sh"]
fn slurm_array_of_shards_makes_the_single_process_dataset() {
    let state = slurm("sinfo", &["-h", "-N", "-o", "%T"]);
    assert!(
        ["idle", "mixed", "allocated", "completing"].contains(&state.trim()),
        "the Slurm node is `{}`, not idle: start the cluster with scripts/slurm_cluster.sh",
        state.trim()
    );
    let s = Sweep::new();

    // The reference: one process, its own cache.
    let o = s
        .command(Path::new(env!("CARGO_BIN_EXE_pipeline")), "hf-single")
        .args(["run", "extract", "--quiet", "--threads", "1", "--pipeline"])
        .arg(&s.pipeline)
        .arg("--out")
        .arg(s.path("single"))
        .output()
        .unwrap();
    assert!(o.status.success(), "single run: {}", text(&o).1);
    let single = dataset_rows(&s.path("single"));
    assert_eq!(single.0.len(), 10, "10 units");

    // The array and its follow-up job.
    let (array, finish) = s.submit("sharded", "hf-sharded");
    wait_for(&[&array, &finish], Duration::from_secs(300));
    for k in 0..4 {
        let task = format!("{array}_{k}");
        assert_eq!(job_state(&task), "COMPLETED", "{task}\n{}", s.logs());
    }
    assert_eq!(job_state(&finish), "COMPLETED", "{}", s.logs());
    assert_eq!(dataset_rows(&s.path("sharded")), single, "{}", s.logs());
    // The follow-up job ran aggregate, test and report over every unit.
    for made in [
        "model_summary",
        "hypothesis",
        "report/report.md",
        "report/report.html",
    ] {
        assert!(
            s.path("sharded").join(made).exists(),
            "{made}\n{}",
            s.logs()
        );
    }
    let logs = s.logs();
    assert!(
        logs.contains("10 units: 10 done, 0 todo"),
        "the follow-up job's plan line: {logs}"
    );

    // A task killed with SIGKILL while it downloads: org/slow is unit 0, the first of
    // shard 0, and its weights stall at the mock Hub.
    std::fs::remove_dir_all(s.path("logs")).unwrap();
    s.mock.inject(
        "org/slow",
        "model.safetensors",
        FaultKind::Stall(Duration::from_secs(120)),
        1,
    );
    s.mock.clear_requests();
    let (array, finish) = s.submit("killed", "hf-killed");
    let started = Instant::now();
    while !s
        .mock
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.is_for("org/slow", "model.safetensors"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "task 0 never asked for org/slow's weights\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    slurm(
        "scancel",
        &["--full", "--signal=KILL", &format!("{array}_0")],
    );
    wait_for(&[&array], Duration::from_secs(120));
    // The follow-up job never runs after a failed task: afterok is not satisfied.
    let _ = Command::new("scancel").arg(&finish).output();
    assert_ne!(job_state(&format!("{array}_0")), "COMPLETED");
    for k in 1..4 {
        assert_eq!(
            job_state(&format!("{array}_{k}")),
            "COMPLETED",
            "{}",
            s.logs()
        );
    }
    // Shard 0's units (0, 4, 8) are missing, every other unit is there; no partial file is
    // visible to readers.
    let (models, _, _) = dataset_rows(&s.path("killed"));
    assert_eq!(models.len(), 7, "{models:?}");
    for m in &models {
        assert!(!m.contains("\"org/slow\""), "{m}");
    }
    // Submitting the sweep again completes the dataset: only shard 0 computes anything.
    std::fs::remove_dir_all(s.path("logs")).unwrap();
    let (array, finish) = s.submit("killed", "hf-killed");
    wait_for(&[&array, &finish], Duration::from_secs(300));
    assert_eq!(job_state(&finish), "COMPLETED", "{}", s.logs());
    assert_eq!(dataset_rows(&s.path("killed")), single, "{}", s.logs());
}
