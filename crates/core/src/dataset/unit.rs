//! The write protocol of one model's outputs (a *unit*), and reading a dataset back.
//!
//! A unit is the `spectra/`, `matrices/` and `models/` files of one model and revision, all
//! named by [`file_stem`](super::file_stem) and all carrying the same Parquet key-value
//! metadata ([`UnitMeta`]: the pipeline file and its text, the tool version and the
//! configuration hash). [`DatasetDir::write_unit`] removes the old `models/` file first,
//! writes `spectra/` and `matrices/`, and writes `models/` last: a `models/` file therefore
//! marks a complete unit, and a killed run leaves at worst a unit without one, which the next
//! run redoes. [`DatasetDir::is_complete`] is the resume check: all three files present
//! with the expected configuration hash. A model that fails gets a `failures/` file under
//! the same stem instead ([`DatasetDir::write_failure`]), removed when the model later
//! succeeds. [`DatasetDir::unit_status`] says which of these states a unit is in (what
//! `pipeline plan` prints).
//!
//! Concurrent writers (the shards of a sweep, on one machine or many sharing the directory)
//! never write the same unit, and each file is written under a temporary name unique to its
//! host and process and renamed into place, so they cannot clash; see [`files`] for the
//! cleanup of temporaries that killed writers leave.

use std::path::{Path, PathBuf};

use super::files::{self, parquet_files, read_batches, read_metadata, write_parquet_atomic};
use super::{
    DatasetError, FAILURES, FailureRow, MATRICES, MODELS, MatrixRow, ModelRow, SPECTRA,
    SpectrumRow, TableRow, file_stem, table_file,
};

/// Parquet key-value metadata keys of a unit's files.
pub const META_PIPELINE_FILE: &str = "attn_spectra.pipeline_file";
pub const META_PIPELINE: &str = "attn_spectra.pipeline";
pub const META_TOOL_VERSION: &str = "attn_spectra.tool_version";
pub const META_CONFIG_HASH: &str = "attn_spectra.config_hash";

/// The key-value metadata of a unit's files.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitMeta {
    /// The pipeline file, as it was named.
    pub pipeline_file: String,
    /// The pipeline file's text.
    pub pipeline: String,
    pub tool_version: String,
    /// Identical hashes mean identical outputs: a resumed run skips the unit.
    pub config_hash: String,
}

impl UnitMeta {
    /// The metadata for a unit of `pipeline` with configuration hash `config_hash`, written
    /// by this version of the tool.
    pub fn new(pipeline: &crate::pipeline::Pipeline, config_hash: String) -> UnitMeta {
        UnitMeta {
            pipeline_file: pipeline.path.display().to_string(),
            pipeline: pipeline.text.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            config_hash,
        }
    }

    fn key_values(&self) -> Vec<(String, String)> {
        vec![
            (META_PIPELINE_FILE.into(), self.pipeline_file.clone()),
            (META_PIPELINE.into(), self.pipeline.clone()),
            (META_TOOL_VERSION.into(), self.tool_version.clone()),
            (META_CONFIG_HASH.into(), self.config_hash.clone()),
        ]
    }
}

/// The state of one unit in a dataset, for a given configuration hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitStatus {
    /// Complete with this configuration hash: a run skips it.
    Done,
    /// Not complete, and no failure recorded for this configuration: a run extracts it.
    Todo,
    /// Its last extraction with this configuration failed (the `failures/` row's error); a
    /// run tries again.
    Failed(String),
    /// Complete, but under another configuration hash (another analysis setting, backend,
    /// precision or tool version): a run recomputes it.
    OtherConfig,
}

impl UnitStatus {
    /// The status as one word: `done`, `todo`, `failed`, `other-config`.
    pub fn name(&self) -> &'static str {
        match self {
            UnitStatus::Done => "done",
            UnitStatus::Todo => "todo",
            UnitStatus::Failed(_) => "failed",
            UnitStatus::OtherConfig => "other-config",
        }
    }
}

/// One model's rows (made from the extract engine's results by
/// [`extract_unit`](crate::extract::extract_unit)).
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub model: ModelRow,
    pub matrices: Vec<MatrixRow>,
    pub spectra: Vec<SpectrumRow>,
}

/// A dataset directory: where its tables live, how units are written, how rows are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetDir {
    root: PathBuf,
}

impl DatasetDir {
    pub fn new(root: impl Into<PathBuf>) -> DatasetDir {
        DatasetDir { root: root.into() }
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `table`.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.root.join(table)
    }

    /// The file of `table` for a model and revision.
    pub fn unit_file(&self, table: &str, model: &str, revision: &str) -> PathBuf {
        table_file(&self.root, table, &file_stem(model, revision))
    }

    /// True when the unit of `model`@`revision` is complete with configuration hash `hash`:
    /// its three files exist and carry it.
    pub fn is_complete(&self, model: &str, revision: &str, hash: &str) -> bool {
        [MODELS, MATRICES, SPECTRA].iter().all(|table| {
            read_metadata(&self.unit_file(table, model, revision))
                .is_some_and(|kv| kv.iter().any(|(k, v)| k == META_CONFIG_HASH && v == hash))
        })
    }

    /// The state of the unit of `model`@`revision` for configuration hash `hash`: done
    /// ([`DatasetDir::is_complete`]), failed under this hash, complete under another hash
    /// (its three files present, each with one), or to do.
    pub fn unit_status(&self, model: &str, revision: &str, hash: &str) -> UnitStatus {
        if self.is_complete(model, revision, hash) {
            return UnitStatus::Done;
        }
        let hash_of = |table: &str| {
            read_metadata(&self.unit_file(table, model, revision)).and_then(|kv| {
                kv.into_iter()
                    .find(|(k, _)| k == META_CONFIG_HASH)
                    .map(|(_, v)| v)
            })
        };
        let failure = self.unit_file(FAILURES, model, revision);
        if hash_of(FAILURES).as_deref() == Some(hash) {
            let error = read_rows::<FailureRow>(&failure)
                .ok()
                .and_then(|rows| rows.into_iter().next())
                .map(|r| r.error)
                .unwrap_or_default();
            return UnitStatus::Failed(error);
        }
        if [MODELS, MATRICES, SPECTRA]
            .iter()
            .all(|table| hash_of(table).is_some())
        {
            return UnitStatus::OtherConfig;
        }
        UnitStatus::Todo
    }

    /// Writes a unit: the old `models/` file is removed first, then `spectra/` and
    /// `matrices/` are written, and `models/` last; each file atomically. A `failures/` file
    /// of the same model is removed once the unit is complete.
    pub fn write_unit(&self, unit: &Unit, meta: &UnitMeta) -> Result<(), DatasetError> {
        let (model, revision) = (&unit.model.model, &unit.model.revision);
        let kv = meta.key_values();
        let models_file = self.unit_file(MODELS, model, revision);
        if let Err(source) = std::fs::remove_file(&models_file)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(DatasetError::Io {
                path: models_file,
                source,
            });
        }
        write_parquet_atomic(
            &self.unit_file(SPECTRA, model, revision),
            SpectrumRow::schema(),
            &[SpectrumRow::to_batch(&unit.spectra)?],
            &kv,
        )?;
        write_parquet_atomic(
            &self.unit_file(MATRICES, model, revision),
            MatrixRow::schema(),
            &[MatrixRow::to_batch(&unit.matrices)?],
            &kv,
        )?;
        write_parquet_atomic(
            &models_file,
            ModelRow::schema(),
            &[ModelRow::to_batch(std::slice::from_ref(&unit.model))?],
            &kv,
        )?;
        let failure = self.unit_file(FAILURES, model, revision);
        if let Err(source) = std::fs::remove_file(&failure)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(DatasetError::Io {
                path: failure,
                source,
            });
        }
        Ok(())
    }

    /// Records that a model failed: its `failures/` file.
    pub fn write_failure(&self, row: &FailureRow, meta: &UnitMeta) -> Result<(), DatasetError> {
        write_parquet_atomic(
            &self.unit_file(FAILURES, &row.model, &row.revision),
            FailureRow::schema(),
            &[FailureRow::to_batch(std::slice::from_ref(row))?],
            &meta.key_values(),
        )
    }

    /// Writes a whole table as the one file `<table>/<stem>.parquet` (the `hypothesis/`
    /// table), with `metadata` as its key-value metadata.
    pub fn write_table<R: TableRow>(
        &self,
        stem: &str,
        rows: &[R],
        metadata: &[(String, String)],
    ) -> Result<PathBuf, DatasetError> {
        let path = table_file(&self.root, R::TABLE, stem);
        write_parquet_atomic(&path, R::schema(), &[R::to_batch(rows)?], metadata)?;
        Ok(path)
    }

    /// Removes the temporaries of this machine's killed writers (see [`files`]).
    pub fn remove_stale_temporaries(&self) -> Result<usize, DatasetError> {
        files::remove_stale_temporaries(&self.root).map_err(|source| DatasetError::Io {
            path: self.root.clone(),
            source,
        })
    }

    /// The Parquet files of `table`, sorted; `None` when its directory does not exist.
    pub fn table_files(&self, table: &str) -> Result<Option<Vec<PathBuf>>, DatasetError> {
        parquet_files(&self.table_dir(table))
    }

    /// The rows of table `R` from all its files, in file order; `None` when its directory
    /// does not exist.
    pub fn read<R: TableRow>(&self) -> Result<Option<Vec<R>>, DatasetError> {
        self.read_where(|_: &R| true)
    }

    /// Like [`DatasetDir::read`], keeping only the rows `keep` accepts (batch by batch, so
    /// the rows left out are never all in memory).
    pub fn read_where<R: TableRow>(
        &self,
        keep: impl Fn(&R) -> bool,
    ) -> Result<Option<Vec<R>>, DatasetError> {
        let Some(files) = self.table_files(R::TABLE)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for path in files {
            out.extend(read_rows::<R>(&path)?.into_iter().filter(|r| keep(r)));
        }
        Ok(Some(out))
    }
}

/// The rows of one file of table `R`.
pub fn read_rows<R: TableRow>(path: &Path) -> Result<Vec<R>, DatasetError> {
    let mut out = Vec::new();
    for batch in read_batches(path)? {
        out.extend(
            R::from_batch(&batch).map_err(|source| DatasetError::Column {
                path: path.to_path_buf(),
                table: R::TABLE.to_string(),
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatrixKind;
    use crate::dataset::MatrixKey;
    use crate::spectral::metrics_for_shape;

    fn meta(hash: &str) -> UnitMeta {
        UnitMeta {
            pipeline_file: "p.toml".into(),
            pipeline: "name = \"p\"".into(),
            tool_version: "t".into(),
            config_hash: hash.into(),
        }
    }

    fn unit(model: &str) -> Unit {
        let key = MatrixKey {
            model: model.into(),
            revision: "main".into(),
            layer: 0,
            head: None,
            kind: MatrixKind::WV,
        };
        Unit {
            model: super::super::models::example(model),
            matrices: vec![MatrixRow {
                key: key.clone(),
                rows: 2,
                cols: 2,
                // Finite baseline columns: NaN would not compare equal after the round trip.
                metrics: metrics_for_shape(&[2.0, 1.0], 2, 2),
            }],
            spectra: vec![SpectrumRow {
                key,
                singular_values: vec![2.0, 1.0],
            }],
        }
    }

    #[test]
    fn a_unit_round_trips_and_marks_itself_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        let u = unit("org/m");
        assert!(!ds.is_complete("org/m", "main", "h1"));
        let failure = FailureRow {
            model: "org/m".into(),
            revision: "main".into(),
            stage: "extract".into(),
            error: "earlier".into(),
            failed_at_us: 0,
        };
        ds.write_failure(&failure, &meta("h0")).unwrap();
        assert_eq!(ds.read::<FailureRow>().unwrap().unwrap(), vec![failure]);
        ds.write_unit(&u, &meta("h1")).unwrap();
        assert!(ds.is_complete("org/m", "main", "h1"));
        assert!(!ds.is_complete("org/m", "main", "h2"));
        // The earlier failure is gone once the unit is complete.
        assert_eq!(ds.read::<FailureRow>().unwrap().unwrap(), vec![]);
        assert_eq!(
            ds.read::<ModelRow>().unwrap().unwrap(),
            vec![u.model.clone()]
        );
        assert_eq!(ds.read::<MatrixRow>().unwrap().unwrap(), u.matrices);
        assert_eq!(ds.read::<SpectrumRow>().unwrap().unwrap(), u.spectra);
        assert_eq!(ds.read::<super::super::HypothesisRow>().unwrap(), None);
        let kv = read_metadata(&ds.unit_file(MODELS, "org/m", "main")).unwrap();
        assert!(kv.contains(&(META_PIPELINE_FILE.into(), "p.toml".into())));
        // A unit without its models/ file is not complete.
        std::fs::remove_file(ds.unit_file(MODELS, "org/m", "main")).unwrap();
        assert!(!ds.is_complete("org/m", "main", "h1"));
    }

    #[test]
    fn unit_status_tells_done_todo_failed_and_other_config() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        assert_eq!(ds.unit_status("org/m", "main", "h1"), UnitStatus::Todo);
        let failure = FailureRow {
            model: "org/m".into(),
            revision: "main".into(),
            stage: "extract".into(),
            error: "boom".into(),
            failed_at_us: 0,
        };
        ds.write_failure(&failure, &meta("h1")).unwrap();
        assert_eq!(
            ds.unit_status("org/m", "main", "h1"),
            UnitStatus::Failed("boom".into())
        );
        // A failure under another configuration is no verdict on this one.
        assert_eq!(ds.unit_status("org/m", "main", "h2"), UnitStatus::Todo);
        ds.write_unit(&unit("org/m"), &meta("h1")).unwrap();
        assert_eq!(ds.unit_status("org/m", "main", "h1"), UnitStatus::Done);
        assert_eq!(
            ds.unit_status("org/m", "main", "h2"),
            UnitStatus::OtherConfig
        );
        assert_eq!(ds.unit_status("org/m", "step1", "h1"), UnitStatus::Todo);
        // Without its models/ file (killed before the last write) the unit is to do.
        std::fs::remove_file(ds.unit_file(MODELS, "org/m", "main")).unwrap();
        assert_eq!(ds.unit_status("org/m", "main", "h1"), UnitStatus::Todo);
        assert_eq!(ds.unit_status("org/m", "main", "h2"), UnitStatus::Todo);
    }

    /// Two models whose names differ only in characters outside `[A-Za-z0-9._-]` get
    /// separate files.
    #[test]
    fn colliding_names_keep_their_own_files() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        ds.write_unit(&unit("a b/c"), &meta("h")).unwrap();
        ds.write_unit(&unit("a_b/c"), &meta("h")).unwrap();
        let mut models: Vec<String> = ds
            .read::<ModelRow>()
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|m| m.model)
            .collect();
        models.sort();
        assert_eq!(models, ["a b/c", "a_b/c"]);
    }

    #[test]
    fn a_bad_file_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        std::fs::create_dir_all(ds.table_dir(MODELS)).unwrap();
        let bad = ds.table_dir(MODELS).join("x@main.parquet");
        std::fs::write(&bad, b"not parquet").unwrap();
        let err = ds.read::<ModelRow>().unwrap_err().to_string();
        assert!(err.contains("x@main.parquet"), "{err}");
    }
}
