//! The dataset on disk: one directory per table, one Parquet file per model and revision.
//!
//! ```text
//! <out>/models/EleutherAI--pythia-160m@main.parquet
//! <out>/matrices/EleutherAI--pythia-160m@main.parquet
//! <out>/spectra/EleutherAI--pythia-160m@main.parquet
//! <out>/failures/...            <out>/hypothesis/...     <out>/<sql result>/...
//! ```
//!
//! DataFusion, DuckDB, polars and pandas each read a table directory as one table. Files are
//! written under a hidden temporary name and renamed into place, so a killed run leaves no
//! partial Parquet file: a table file either exists whole or not at all. For a model, the
//! `models/` row is written last and marks the model complete.

pub mod rows;
pub mod schema;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

/// Errors writing or reading dataset files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot build table `{table}`: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// The table directories of a dataset.
pub const MODELS: &str = "models";
pub const MATRICES: &str = "matrices";
pub const SPECTRA: &str = "spectra";
pub const FAILURES: &str = "failures";
pub const HYPOTHESIS: &str = "hypothesis";
pub const HYPOTHESIS_SIZE: &str = "hypothesis_size";

/// The file stem for a model and revision: `org--name@revision`, with any character outside
/// `[A-Za-z0-9._-]` replaced by `_` (Hub ids use `/`, which becomes `--` as in the HF cache).
pub fn file_stem(model: &str, revision: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let model = model.split('/').map(clean).collect::<Vec<_>>().join("--");
    format!("{model}@{}", clean(revision))
}

/// The path of a table file: `<out>/<table>/<stem>.parquet`.
pub fn table_file(out: &Path, table: &str, stem: &str) -> PathBuf {
    out.join(table).join(format!("{stem}.parquet"))
}

/// Writes `batches` to `path` as one Parquet file, atomically: the bytes go to a hidden
/// temporary file in the same directory, which is synced and then renamed over `path`.
/// `metadata` becomes the file's key-value metadata.
pub fn write_parquet_atomic(
    path: &Path,
    schema: Arc<arrow_schema::Schema>,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    write_atomic_with(path, io, |file| {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        let pq = |source| DatasetError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq)?;
        for batch in batches {
            writer.write(batch).map_err(pq)?;
        }
        let mut file = writer.into_inner().map_err(pq)?;
        file.flush().map_err(io)?;
        Ok(file)
    })
}

/// Writes the file `path` atomically: `write` fills a hidden temporary file in the same
/// directory (created if needed) and hands it back; it is then synced and renamed over
/// `path`. On any error the temporary file is removed and `path` is left as it was.
/// `io` turns I/O errors into the caller's error type.
pub fn write_atomic_with<E>(
    path: &Path,
    io: impl Fn(std::io::Error) -> E,
    write: impl FnOnce(File) -> Result<File, E>,
) -> Result<(), E> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(&io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = File::create(&tmp).map_err(&io)?;
        let file = write(file)?;
        file.sync_all().map_err(&io)?;
        std::fs::rename(&tmp, path).map_err(&io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files left by a killed writer under `out`'s table directories.
/// Returns how many were removed.
pub fn remove_stale_temporaries(out: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let Ok(tables) = std::fs::read_dir(out) else {
        return Ok(0);
    };
    for table in tables.flatten() {
        if !table.path().is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(table.path())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".parquet.tmp-") {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The key-value metadata of a Parquet file, or `None` if it cannot be read as Parquet.
pub fn read_metadata(path: &Path) -> Option<Vec<(String, String)>> {
    let file = File::open(path).ok()?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).ok()?;
    use parquet::file::reader::FileReader;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .clone();
    Some(
        kv.into_iter()
            .map(|k| (k.key, k.value.unwrap_or_default()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array};
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn stems_are_safe_file_names() {
        assert_eq!(
            file_stem("EleutherAI/pythia-160m", "step1000"),
            "EleutherAI--pythia-160m@step1000"
        );
        assert_eq!(file_stem("gpt2", "main"), "gpt2@main");
        assert_eq!(file_stem("a b/c", "refs/pr/1"), "a_b--c@refs_pr_1");
    }

    #[test]
    fn atomic_write_leaves_only_the_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = table_file(dir.path(), MATRICES, "m@main");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef],
        )
        .unwrap();
        write_parquet_atomic(&path, schema, &[batch], &[("k".into(), "v".into())]).unwrap();
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["m@main.parquet"]);
        let meta = read_metadata(&path).unwrap();
        assert!(meta.contains(&("k".to_string(), "v".to_string())));
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SPECTRA)).unwrap();
        std::fs::write(
            dir.path().join(SPECTRA).join(".x@main.parquet.tmp-42"),
            b"partial",
        )
        .unwrap();
        std::fs::write(dir.path().join(SPECTRA).join("y@main.parquet"), b"kept").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(dir.path().join(SPECTRA).join("y@main.parquet").exists());
    }
}
