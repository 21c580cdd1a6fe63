//! Helpers shared by the integration tests: running the binary and locating fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A fixture checkpoint directory under tests/fixtures/arch.
pub fn arch_fixture(case: &str) -> PathBuf {
    root().join("tests/fixtures/arch").join(case)
}

/// Runs `pipeline` with `args` and returns its output.
pub fn pipeline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .output()
        .expect("run the pipeline binary")
}

/// Stdout and stderr as strings.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
