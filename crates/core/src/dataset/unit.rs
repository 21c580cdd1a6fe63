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
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::ObjectStore;

use super::files::{self, parquet_files, read_batches, read_metadata, write_parquet_atomic};
use super::store::{Location, LocationError, Remote, parse_location};
use super::{
    DatasetError, FAILURES, FailureRow, MATRICES, MODELS, MatrixRow, ModelRow, SPECTRA,
    SpectrumRow, TableRow, file_stem,
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

/// A dataset: where its tables live (a local directory or an object store prefix, see
/// [`super::store`]), how units are written, how rows are read. Every reader and writer of a
/// dataset goes through it, so the protocol is the same on a disk and in a bucket.
#[derive(Clone, Debug)]
pub struct DatasetDir {
    location: Location,
}

impl PartialEq for DatasetDir {
    fn eq(&self, other: &DatasetDir) -> bool {
        match (&self.location, &other.location) {
            (Location::Local(a), Location::Local(b)) => a == b,
            (Location::Remote(a), Location::Remote(b)) => a.url() == b.url(),
            _ => false,
        }
    }
}

impl From<&Path> for DatasetDir {
    fn from(path: &Path) -> DatasetDir {
        DatasetDir::new(path)
    }
}

impl From<PathBuf> for DatasetDir {
    fn from(path: PathBuf) -> DatasetDir {
        DatasetDir::new(path)
    }
}

impl From<&PathBuf> for DatasetDir {
    fn from(path: &PathBuf) -> DatasetDir {
        DatasetDir::new(path)
    }
}

impl From<&DatasetDir> for DatasetDir {
    fn from(ds: &DatasetDir) -> DatasetDir {
        ds.clone()
    }
}

impl std::fmt::Display for DatasetDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote(r) => f.write_str(r.url()),
        }
    }
}

/// One file's path (or URL) and its record batches.
pub type FileBatches = (PathBuf, Vec<RecordBatch>);

/// `table/stem.parquet`: a file's place relative to the dataset.
fn rel(table: &str, stem: &str) -> String {
    format!("{table}/{stem}.parquet")
}

impl DatasetDir {
    /// The dataset in the local directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> DatasetDir {
        DatasetDir {
            location: Location::Local(root.into()),
        }
    }

    /// The dataset at `location`: a local path, or a `file://`, `s3://`, `gs://` or `az://`
    /// URL (see [`super::store`]). Nothing is read or written; [`DatasetDir::probe`] checks
    /// that a bucket exists.
    pub fn open(location: &str) -> Result<DatasetDir, LocationError> {
        Ok(DatasetDir {
            location: parse_location(location)?,
        })
    }

    /// Like [`DatasetDir::open`], for a command-line argument: a path that is not valid
    /// UTF-8 is a local path.
    pub fn from_arg(arg: &Path) -> Result<DatasetDir, LocationError> {
        match arg.to_str() {
            Some(s) => DatasetDir::open(s),
            None => Ok(DatasetDir::new(arg)),
        }
    }

    /// The dataset at `url` (`scheme://bucket/prefix`) in `store`, the store of that bucket
    /// (tests use object_store's in-memory store).
    pub fn in_store(url: &str, store: Arc<dyn ObjectStore>) -> Result<DatasetDir, LocationError> {
        Ok(DatasetDir {
            location: Location::Remote(Arc::new(Remote::new(url, store)?)),
        })
    }

    /// The local directory of the dataset; `None` for an object store.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.location {
            Location::Local(p) => Some(p),
            Location::Remote(_) => None,
        }
    }

    /// The object store of the dataset's bucket, with the URL it is registered under
    /// (`scheme://bucket`); `None` for a local directory.
    pub fn object_store(&self) -> Option<(String, Arc<dyn ObjectStore>)> {
        match &self.location {
            Location::Local(_) => None,
            Location::Remote(r) => Some((r.base().to_string(), r.store())),
        }
    }

    /// The dataset's path or URL, for messages (also `ds.display()`).
    pub fn display(&self) -> String {
        self.to_string()
    }

    /// Makes the dataset ready for writing and reading: creates a local directory; checks
    /// that an object store's bucket exists and can be listed.
    pub fn probe(&self) -> Result<(), LocationError> {
        match &self.location {
            Location::Local(p) => std::fs::create_dir_all(p).map_err(|e| LocationError::Invalid {
                location: p.display().to_string(),
                message: format!("cannot create the dataset directory: {e}"),
            }),
            Location::Remote(r) => r.probe(),
        }
    }

    /// The directory (path or URL) of `table`, for messages.
    pub fn table_location(&self, table: &str) -> String {
        match &self.location {
            Location::Local(p) => p.join(table).display().to_string(),
            Location::Remote(r) => r.url_of(table),
        }
    }

    /// The URL of `table` in an object store (`s3://bucket/prefix/table/`), as DataFusion
    /// lists it; `None` for a local directory.
    pub fn table_url(&self, table: &str) -> Option<String> {
        match &self.location {
            Location::Local(_) => None,
            Location::Remote(r) => Some(format!("{}/", r.url_of(table))),
        }
    }

    /// The directory of `table` in a local dataset.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        match &self.location {
            Location::Local(p) => p.join(table),
            Location::Remote(r) => PathBuf::from(r.url_of(table)),
        }
    }

    /// The file (path or URL) of `table` for a model and revision.
    pub fn unit_file(&self, table: &str, model: &str, revision: &str) -> PathBuf {
        self.path_of(&rel(table, &file_stem(model, revision)))
    }

    fn path_of(&self, rel: &str) -> PathBuf {
        match &self.location {
            Location::Local(p) => p.join(rel),
            Location::Remote(r) => PathBuf::from(r.url_of(rel)),
        }
    }

    /// The key-value metadata of the Parquet file `rel`, `None` when it is missing or not
    /// Parquet. From an object store only the file's footer is fetched.
    fn metadata_of(&self, rel: &str) -> Option<Vec<(String, String)>> {
        match &self.location {
            Location::Local(p) => read_metadata(&p.join(rel)),
            Location::Remote(r) => {
                let (tail, size) = r.get_suffix(rel, 64 * 1024).ok()??;
                let need = files::footer_metadata_len(&tail)? + 8;
                if need as u64 > size {
                    return None;
                }
                let tail = if need <= tail.len() {
                    tail
                } else {
                    r.get_suffix(rel, need as u64).ok()??.0
                };
                files::metadata_from_footer(&tail)
            }
        }
    }

    /// Writes `batches` as the Parquet file `rel`, whole or not at all.
    fn write_parquet(
        &self,
        rel: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        metadata: &[(String, String)],
    ) -> Result<(), DatasetError> {
        match &self.location {
            Location::Local(p) => write_parquet_atomic(&p.join(rel), schema, batches, metadata),
            Location::Remote(r) => {
                let bytes = files::encode_parquet(
                    &PathBuf::from(r.url_of(rel)),
                    schema,
                    batches,
                    metadata,
                )?;
                r.put(rel, bytes)
            }
        }
    }

    /// Removes the file `rel`; a missing one is not an error.
    fn remove(&self, rel: &str) -> Result<(), DatasetError> {
        match &self.location {
            Location::Local(p) => {
                let path = p.join(rel);
                match std::fs::remove_file(&path) {
                    Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                        Err(DatasetError::Io { path, source })
                    }
                    _ => Ok(()),
                }
            }
            Location::Remote(r) => r.delete(rel),
        }
    }

    /// True when the unit of `model`@`revision` is complete with configuration hash `hash`:
    /// its three files exist and carry it.
    pub fn is_complete(&self, model: &str, revision: &str, hash: &str) -> bool {
        let stem = file_stem(model, revision);
        [MODELS, MATRICES, SPECTRA].iter().all(|table| {
            self.metadata_of(&rel(table, &stem))
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
        let stem = file_stem(model, revision);
        let hash_of = |table: &str| {
            self.metadata_of(&rel(table, &stem)).and_then(|kv| {
                kv.into_iter()
                    .find(|(k, _)| k == META_CONFIG_HASH)
                    .map(|(_, v)| v)
            })
        };
        if hash_of(FAILURES).as_deref() == Some(hash) {
            let error = self
                .read_file_batches(FAILURES, &format!("{stem}.parquet"))
                .ok()
                .and_then(|batches| {
                    batches
                        .iter()
                        .find_map(|b| FailureRow::from_batch(b).ok()?.into_iter().next())
                })
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
    /// `matrices/` are written, and `models/` last; each file atomically (an object in one
    /// PUT or a completed multipart upload). A `failures/` file of the same model is removed
    /// once the unit is complete.
    pub fn write_unit(&self, unit: &Unit, meta: &UnitMeta) -> Result<(), DatasetError> {
        let stem = file_stem(&unit.model.model, &unit.model.revision);
        let kv = meta.key_values();
        self.remove(&rel(MODELS, &stem))?;
        self.write_parquet(
            &rel(SPECTRA, &stem),
            SpectrumRow::schema(),
            &[SpectrumRow::to_batch(&unit.spectra)?],
            &kv,
        )?;
        self.write_parquet(
            &rel(MATRICES, &stem),
            MatrixRow::schema(),
            &[MatrixRow::to_batch(&unit.matrices)?],
            &kv,
        )?;
        self.write_parquet(
            &rel(MODELS, &stem),
            ModelRow::schema(),
            &[ModelRow::to_batch(std::slice::from_ref(&unit.model))?],
            &kv,
        )?;
        self.remove(&rel(FAILURES, &stem))
    }

    /// Records that a model failed: its `failures/` file.
    pub fn write_failure(&self, row: &FailureRow, meta: &UnitMeta) -> Result<(), DatasetError> {
        self.write_parquet(
            &rel(FAILURES, &file_stem(&row.model, &row.revision)),
            FailureRow::schema(),
            &[FailureRow::to_batch(std::slice::from_ref(row))?],
            &meta.key_values(),
        )
    }

    /// Writes a whole table as the one file `<table>/<stem>.parquet` (the `hypothesis/`
    /// table), with `metadata` as its key-value metadata; returns its path or URL.
    pub fn write_table<R: TableRow>(
        &self,
        stem: &str,
        rows: &[R],
        metadata: &[(String, String)],
    ) -> Result<PathBuf, DatasetError> {
        self.write_batches(R::TABLE, stem, R::schema(), &[R::to_batch(rows)?], metadata)
    }

    /// Writes `batches` as the one file `<table>/<stem>.parquet` of a table without a row
    /// type (an SQL result); returns its path or URL.
    pub fn write_batches(
        &self,
        table: &str,
        stem: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        metadata: &[(String, String)],
    ) -> Result<PathBuf, DatasetError> {
        let rel = rel(table, stem);
        self.write_parquet(&rel, schema, batches, metadata)?;
        Ok(self.path_of(&rel))
    }

    /// Removes the temporaries of this machine's killed writers (see [`files`]). An object
    /// store has none: an object appears whole or not at all.
    pub fn remove_stale_temporaries(&self) -> Result<usize, DatasetError> {
        match &self.location {
            Location::Local(root) => {
                files::remove_stale_temporaries(root).map_err(|source| DatasetError::Io {
                    path: root.clone(),
                    source,
                })
            }
            Location::Remote(_) => Ok(0),
        }
    }

    /// The names of the Parquet files of `table`, sorted; `None` when the table does not
    /// exist. Hidden files (temporaries of a writer) are never listed.
    pub fn table_file_names(&self, table: &str) -> Result<Option<Vec<String>>, DatasetError> {
        let names = match &self.location {
            Location::Local(p) => parquet_files(&p.join(table))?.map(|files| {
                files
                    .iter()
                    .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
                    .collect::<Vec<_>>()
            }),
            Location::Remote(r) => r.list(table)?.map(|names| {
                names
                    .into_iter()
                    .filter(|n| !n.starts_with('.') && n.ends_with(".parquet"))
                    .collect()
            }),
        };
        Ok(names)
    }

    /// The Parquet files (paths or URLs) of `table`, sorted; `None` when the table does not
    /// exist.
    pub fn table_files(&self, table: &str) -> Result<Option<Vec<PathBuf>>, DatasetError> {
        Ok(self.table_file_names(table)?.map(|names| {
            names
                .iter()
                .map(|n| self.path_of(&format!("{table}/{n}")))
                .collect()
        }))
    }

    /// The tables present: directories (or prefixes) that are not hidden, sorted.
    pub fn tables(&self) -> Result<Vec<String>, DatasetError> {
        let mut names = match &self.location {
            Location::Local(p) => {
                let entries = match std::fs::read_dir(p) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(source) => {
                        return Err(DatasetError::Read {
                            path: p.clone(),
                            source,
                        });
                    }
                };
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            }
            Location::Remote(r) => r.dirs()?,
        };
        names.retain(|n: &String| !n.starts_with('.'));
        names.sort();
        Ok(names)
    }

    /// All record batches of the file `name` of `table`.
    pub fn read_file_batches(
        &self,
        table: &str,
        name: &str,
    ) -> Result<Vec<RecordBatch>, DatasetError> {
        let rel = format!("{table}/{name}");
        match &self.location {
            Location::Local(p) => read_batches(&p.join(rel)),
            Location::Remote(r) => {
                let url = PathBuf::from(r.url_of(&rel));
                let bytes = r.get(&rel)?.ok_or_else(|| DatasetError::Read {
                    path: url.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
                })?;
                files::batches_from_bytes(&url, bytes)
            }
        }
    }

    /// The batches of every file of `table`, with the file's path or URL, in file order;
    /// `None` when the table does not exist.
    pub fn read_table_batches(
        &self,
        table: &str,
    ) -> Result<Option<Vec<FileBatches>>, DatasetError> {
        let Some(names) = self.table_file_names(table)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let batches = self.read_file_batches(table, &name)?;
            out.push((self.path_of(&format!("{table}/{name}")), batches));
        }
        Ok(Some(out))
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
        let Some(names) = self.table_file_names(R::TABLE)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for name in names {
            let path = self.path_of(&format!("{}/{name}", R::TABLE));
            for batch in self.read_file_batches(R::TABLE, &name)? {
                let rows = R::from_batch(&batch).map_err(|source| DatasetError::Column {
                    path: path.clone(),
                    table: R::TABLE.to_string(),
                    source,
                })?;
                out.extend(rows.into_iter().filter(|r| keep(r)));
            }
        }
        Ok(Some(out))
    }
}

/// A unit that [`UnitWriter`] could not write.
#[derive(Debug, thiserror::Error)]
#[error("{model}@{revision}: {source}")]
pub struct UnitWriteError {
    pub model: String,
    pub revision: String,
    #[source]
    pub source: DatasetError,
}

/// Writes units with [`DatasetDir::write_unit`] on a background thread, so that encoding and
/// uploading one unit overlaps with computing the next. The queue is bounded: `submit` waits
/// while `queue` units are waiting to be written, so memory stays bounded by the units in
/// flight. Errors come back from [`UnitWriter::finish`], one per unit; a unit that failed to
/// be written is not complete and the next run redoes it.
pub struct UnitWriter {
    tx: Option<std::sync::mpsc::SyncSender<(Unit, UnitMeta)>>,
    thread: Option<std::thread::JoinHandle<Vec<UnitWriteError>>>,
}

impl DatasetDir {
    /// A background writer of this dataset's units with a queue of `queue` units (at least 1).
    pub fn unit_writer(&self, queue: usize) -> UnitWriter {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Unit, UnitMeta)>(queue.max(1));
        let ds = self.clone();
        let thread = std::thread::Builder::new()
            .name("attn-spectra-writer".into())
            .spawn(move || {
                let mut errors = Vec::new();
                for (unit, meta) in rx {
                    if let Err(source) = ds.write_unit(&unit, &meta) {
                        errors.push(UnitWriteError {
                            model: unit.model.model.clone(),
                            revision: unit.model.revision.clone(),
                            source,
                        });
                    }
                }
                errors
            })
            .expect("cannot start the dataset writer thread");
        UnitWriter {
            tx: Some(tx),
            thread: Some(thread),
        }
    }
}

impl UnitWriter {
    /// Queues a unit to be written; waits while the queue is full.
    pub fn submit(&self, unit: Unit, meta: UnitMeta) {
        if let Some(tx) = &self.tx {
            // The receiver lives until `finish`: sending cannot fail before.
            let _ = tx.send((unit, meta));
        }
    }

    /// Waits until every queued unit is written; returns those that could not be.
    pub fn finish(mut self) -> Vec<UnitWriteError> {
        self.tx.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(errors)) => errors,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Vec::new(),
        }
    }
}

impl Drop for UnitWriter {
    /// Dropped without `finish` (an error elsewhere): the queued units are still written.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

    /// The protocol on `ds`: failures, a unit, the resume check, reading back.
    fn round_trip_on(ds: &DatasetDir) {
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
        assert_eq!(ds.read::<FailureRow>().unwrap().unwrap_or_default(), vec![]);
        assert_eq!(
            ds.read::<ModelRow>().unwrap().unwrap(),
            vec![u.model.clone()]
        );
        assert_eq!(ds.read::<MatrixRow>().unwrap().unwrap(), u.matrices);
        assert_eq!(ds.read::<SpectrumRow>().unwrap().unwrap(), u.spectra);
        assert_eq!(ds.read::<super::super::HypothesisRow>().unwrap(), None);
        let models = rel(MODELS, &file_stem("org/m", "main"));
        let kv = ds.metadata_of(&models).unwrap();
        assert!(kv.contains(&(META_PIPELINE_FILE.into(), "p.toml".into())));
        assert!(kv.contains(&(META_PIPELINE.into(), "name = \"p\"".into())));
        // (An emptied local `failures/` directory stays; an object store has no directories.)
        let tables = ds.tables().unwrap();
        assert!(
            [MATRICES, MODELS, SPECTRA]
                .iter()
                .all(|t| tables.contains(&t.to_string())),
            "{tables:?}"
        );
        // A unit without its models/ file is not complete.
        ds.remove(&models).unwrap();
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

    #[test]
    fn a_unit_round_trips_and_marks_itself_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        round_trip_on(&ds);
        assert!(!ds.unit_file(MODELS, "org/m", "main").exists());
        assert!(ds.unit_file(SPECTRA, "org/m", "main").exists());
    }

    /// The same protocol in an object store (object_store's in-memory store), with the
    /// pipeline text large enough that the resume check's first footer read is too short.
    #[test]
    fn a_unit_round_trips_in_an_object_store() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let ds = DatasetDir::in_store("s3://bucket/runs/a", store.clone()).unwrap();
        round_trip_on(&ds);
        let mut big = meta("h3");
        big.pipeline = "#".repeat(200_000);
        ds.write_unit(&unit("org/big"), &big).unwrap();
        assert!(ds.is_complete("org/big", "main", "h3"));
        assert_eq!(
            ds.table_files(MODELS).unwrap().unwrap(),
            [PathBuf::from(
                "s3://bucket/runs/a/models/org--big@main.parquet"
            )]
        );
        // Another prefix of the same bucket is another dataset.
        let other = DatasetDir::in_store("s3://bucket/runs/b", store).unwrap();
        assert_eq!(other.read::<ModelRow>().unwrap(), None);
        assert_eq!(other.tables().unwrap(), Vec::<String>::new());
        assert_eq!(ds.to_string(), "s3://bucket/runs/a");
    }

    /// The background writer writes every queued unit and reports the ones it could not.
    #[test]
    fn the_background_writer_writes_every_unit() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = DatasetDir::new(tmp.path());
        let writer = ds.unit_writer(1);
        for i in 0..4 {
            writer.submit(unit(&format!("org/m{i}")), meta("h"));
        }
        assert!(writer.finish().is_empty());
        for i in 0..4 {
            assert!(ds.is_complete(&format!("org/m{i}"), "main", "h"));
        }
        // A dataset where `models` is a file, not a directory: that unit's write fails.
        let bad = tmp.path().join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(MODELS), b"").unwrap();
        let writer = DatasetDir::new(&bad).unit_writer(2);
        writer.submit(unit("org/x"), meta("h"));
        let errors = writer.finish();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("org/x@main: "),
            "{}",
            errors[0]
        );
    }

    /// A file that is not Parquet never counts as complete, locally or in a bucket.
    #[test]
    fn a_truncated_object_is_not_complete() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let ds = DatasetDir::in_store("s3://bucket", store.clone()).unwrap();
        ds.write_unit(&unit("org/m"), &meta("h")).unwrap();
        let models = rel(MODELS, &file_stem("org/m", "main"));
        let Location::Remote(r) = &ds.location else {
            unreachable!()
        };
        let bytes = r.get(&models).unwrap().unwrap();
        r.put(&models, bytes[..bytes.len() / 2].to_vec()).unwrap();
        assert!(!ds.is_complete("org/m", "main", "h"));
        let err = ds.read::<ModelRow>().unwrap_err().to_string();
        assert!(
            err.contains("s3://bucket/models/org--m@main.parquet"),
            "{err}"
        );
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
