//! The demo carried inside the binary: the repository's `pipelines/demo.toml` and the tiny
//! random checkpoints it points at (`tests/fixtures/arch/...`), embedded at build time by
//! `build.rs`. [`write`] lays them out under a directory with the repository's own layout, so
//! the pipeline file's relative `source` paths resolve unchanged and `pipeline demo` runs the
//! same demo as `pipeline run all --pipeline pipelines/demo.toml` in a clone.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The demo pipeline file, relative to the demo directory.
pub const PIPELINE: &str = "pipelines/demo.toml";

/// Why the demo could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file the demo would write is already there with other content.
    #[error(
        "{} already exists and differs from the demo's copy; choose another directory or pass --force to overwrite the demo's files",
        path.display()
    )]
    Conflict { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every embedded file: its path relative to the demo directory, and its bytes.
pub fn files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    ASSETS.iter().copied()
}

/// What [`write`] did.
#[derive(Debug)]
pub struct Written {
    /// The demo pipeline file under the demo directory.
    pub pipeline: PathBuf,
    /// Files written (new or overwritten).
    pub written: usize,
    /// Files that were already there with the same bytes.
    pub unchanged: usize,
}

/// Writes the demo pipeline and its checkpoints under `dir`. Files already there with the
/// same bytes are left alone, so running the demo again is cheap. A file there with other
/// bytes is a [`DemoError::Conflict`] unless `force`; conflicts are found before anything is
/// written, and each file is written atomically, so no half-written demo is left behind.
pub fn write(dir: &Path, force: bool) -> Result<Written, DemoError> {
    let mut todo = Vec::new();
    let mut unchanged = 0;
    for (rel, bytes) in files() {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => unchanged += 1,
            Ok(_) if !force => return Err(DemoError::Conflict { path }),
            Ok(_) => todo.push((path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => todo.push((path, bytes)),
            Err(source) => return Err(DemoError::Io { path, source }),
        }
    }
    let written = todo.len();
    for (path, bytes) in todo {
        let io = |source| DemoError::Io {
            path: path.clone(),
            source,
        };
        attn_spectra::dataset::write_atomic_with(&path, io, |mut file| {
            std::io::Write::write_all(&mut file, bytes).map_err(io)?;
            Ok(file)
        })?;
    }
    Ok(Written {
        pipeline: dir.join(PIPELINE),
        written,
        unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository root, where the embedded files came from.
    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn embeds_the_demo_pipeline_and_every_checkpoint_it_names() {
        let names: Vec<&str> = files().map(|(rel, _)| rel).collect();
        assert!(names.contains(&PIPELINE));
        // Every `source` of the repository's demo file has its config and weights embedded.
        let text = std::fs::read_to_string(repo().join(PIPELINE)).unwrap();
        let sources: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("source = \""))
            .map(|s| s.trim_end_matches('"'))
            .collect();
        assert!(sources.len() >= 7, "the demo has seven models: {sources:?}");
        for source in sources {
            let dir = source.trim_start_matches("../");
            assert!(
                names.contains(&format!("{dir}/config.json").as_str()),
                "{dir}/config.json is not embedded"
            );
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(&format!("{dir}/")) && n.ends_with(".safetensors")),
                "no weights of {dir} are embedded"
            );
        }
        // The probe outputs of the fixtures are test data, not part of a checkpoint.
        assert!(!names.iter().any(|n| n.ends_with("expected.safetensors")));
    }

    #[test]
    fn writes_byte_identical_copies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), false).unwrap();
        assert_eq!(first.written, files().count());
        assert_eq!(first.pipeline, dir.path().join(PIPELINE));
        for (rel, _) in files() {
            let ours = std::fs::read(dir.path().join(rel)).unwrap();
            let repo = std::fs::read(repo().join(rel)).unwrap();
            assert!(ours == repo, "{rel} differs from the repository's file");
        }
        let again = write(dir.path(), false).unwrap();
        assert_eq!((again.written, again.unchanged), (0, files().count()));
    }

    #[test]
    fn a_changed_file_is_a_conflict_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join(PIPELINE);
        std::fs::create_dir_all(pipeline.parent().unwrap()).unwrap();
        std::fs::write(&pipeline, "name = \"mine\"\n").unwrap();
        let err = write(dir.path(), false).unwrap_err();
        assert!(
            matches!(&err, DemoError::Conflict { path } if *path == pipeline),
            "{err}"
        );
        assert!(err.to_string().contains("--force"));
        // Only the user's file is there: the conflict was found before any write.
        let count = walk(dir.path());
        assert_eq!(count, 1);
        assert_eq!(
            std::fs::read_to_string(&pipeline).unwrap(),
            "name = \"mine\"\n"
        );
        let forced = write(dir.path(), true).unwrap();
        assert_eq!(forced.written, files().count());
        assert_ne!(
            std::fs::read_to_string(&pipeline).unwrap(),
            "name = \"mine\"\n"
        );
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() { walk(&p) } else { 1 }
            })
            .sum()
    }
}
