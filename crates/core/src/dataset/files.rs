//! Files of a dataset: atomic writes under temporary names, the temporaries an interrupted
//! writer leaves, listing a table's files, and reading Parquet files back.
//!
//! A file is written as `.<name>.tmp-<host>-<pid>` in its final directory, synced, and
//! renamed over `<name>`. The host and process id in the temporary name say whose it is:
//! [`remove_stale_temporaries`] removes only temporaries of this host whose process is
//! provably gone, never those of another live writer (two runs on one dataset, or one on
//! another machine sharing the directory). A temporary of another host is never removed:
//! its process cannot be checked from here, so a pid that happens to be free on this host
//! says nothing about it. This is what lets the shards of a sweep (Slurm array tasks on
//! several nodes, Kubernetes pods) write into one shared dataset directory: each starts
//! with this cleanup and removes only its own host's dead writers' files. Host names must
//! therefore differ between machines (or containers with separate process namespaces)
//! sharing a dataset, as cluster nodes' and pods' names do.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::DatasetError;

/// The marker between a file's name and its owner in a temporary name.
const TMP_MARK: &str = ".tmp-";

/// This machine's name as it appears in temporary names: `[A-Za-z0-9.]` kept, anything else
/// (and `-`, the separator before the pid) as `_`.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The temporary name under which this process writes `name`.
pub fn temporary_name(name: &str) -> String {
    format!(".{name}{TMP_MARK}{}-{}", host(), std::process::id())
}

/// The owner of a temporary file name: (host, pid); `None` for other names. Temporaries of
/// older writers (`.<name>.tmp-<pid>`, no host) have an unknown host.
pub fn temporary_owner(file_name: &str) -> Option<(Option<String>, u32)> {
    if !file_name.starts_with('.') {
        return None;
    }
    let (_, owner) = file_name.rsplit_once(TMP_MARK)?;
    match owner.rsplit_once('-') {
        Some((host, pid)) => Some((Some(host.to_string()), pid.parse().ok()?)),
        None => Some((None, owner.parse().ok()?)),
    }
}

/// Whether a process `pid` runs on this machine, when that can be known: `Some(false)` only
/// when it provably does not.
fn process_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        Some(proc.join(pid.to_string()).exists())
    } else {
        None
    }
}

/// The writer settings of every dataset file: Snappy, with `metadata` as key-value metadata.
fn writer_properties(metadata: &[(String, String)]) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build()
}

/// Writes `batches` as Parquet into `sink` and hands it back.
fn write_parquet_to<W: Write + Send>(
    path: &Path,
    sink: W,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
) -> Result<W, DatasetError> {
    let pq = |source| DatasetError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(sink, schema, Some(writer_properties(metadata))).map_err(pq)?;
    for batch in batches {
        writer.write(batch).map_err(pq)?;
    }
    writer.into_inner().map_err(pq)
}

/// `batches` as the bytes of one Parquet file (for an object store, where a file is sent
/// whole); `path` names it in errors.
pub fn encode_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
) -> Result<Vec<u8>, DatasetError> {
    write_parquet_to(path, Vec::new(), schema, batches, metadata)
}

/// Writes `batches` to `path` as one Parquet file, atomically: the bytes go to a hidden
/// temporary file in the same directory, which is synced and then renamed over `path`.
/// `metadata` becomes the file's key-value metadata.
pub fn write_parquet_atomic(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
) -> Result<(), DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    write_atomic_with(path, io, |file| {
        let mut file = write_parquet_to(path, file, schema, batches, metadata)?;
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
    let tmp = dir.join(temporary_name(&name));
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

/// Removes the temporary files that killed writers of this machine left under `out`'s table
/// directories: those whose process is gone. Temporaries of live processes, of other
/// machines and of older writers (whose owner is unknown) are left alone; readers never read
/// them. Returns how many were removed.
pub fn remove_stale_temporaries(out: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let Ok(tables) = std::fs::read_dir(out) else {
        return Ok(0);
    };
    let me = host();
    for table in tables.flatten() {
        if !table.path().is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(table.path())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((Some(host), pid)) = temporary_owner(&name) else {
                continue;
            };
            if host == me && pid != std::process::id() && process_alive(pid) == Some(false) {
                // Another writer of this host (a shard started beside this one) may be
                // removing the same file now: its absence is what both want.
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

/// The Parquet files of the table directory `dir`, sorted by name; `None` when the directory
/// does not exist. Hidden files (temporaries of a writer) are never listed.
pub fn parquet_files(dir: &Path) -> Result<Option<Vec<PathBuf>>, DatasetError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let io = |source| DatasetError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && name.ends_with(".parquet") && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(Some(files))
}

/// All record batches of one Parquet file.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, DatasetError> {
    let pq = |source| DatasetError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .build()
        .map_err(pq)?;
    reader
        .map(|b| {
            b.map_err(|source| DatasetError::ReadArrow {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}

/// All record batches of a Parquet file held in memory (`path` names it in errors).
pub fn batches_from_bytes(path: &Path, bytes: Bytes) -> Result<Vec<RecordBatch>, DatasetError> {
    let pq = |source| DatasetError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(pq)?
        .build()
        .map_err(pq)?;
    reader
        .map(|b| {
            b.map_err(|source| DatasetError::ReadArrow {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}

/// The key-value metadata of a Parquet file, or `None` if it cannot be read as Parquet.
pub fn read_metadata(path: &Path) -> Option<Vec<(String, String)>> {
    let file = File::open(path).ok()?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).ok()?;
    use parquet::file::reader::FileReader;
    key_values(reader.metadata())
}

fn key_values(meta: &parquet::file::metadata::ParquetMetaData) -> Option<Vec<(String, String)>> {
    let kv = meta.file_metadata().key_value_metadata()?.clone();
    Some(
        kv.into_iter()
            .map(|k| (k.key, k.value.unwrap_or_default()))
            .collect(),
    )
}

/// The length of the metadata a Parquet file's last bytes `tail` announce (its footer: the
/// metadata length and `PAR1`); `None` when `tail` does not end like a Parquet file.
pub fn footer_metadata_len(tail: &[u8]) -> Option<usize> {
    let n = tail.len();
    if n < 8 || &tail[n - 4..] != b"PAR1" {
        return None;
    }
    let len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().ok()?);
    usize::try_from(len).ok()
}

/// The key-value metadata from the last bytes of a Parquet file (at least its metadata and
/// footer), or `None` if they are not Parquet.
pub fn metadata_from_footer(tail: &[u8]) -> Option<Vec<(String, String)>> {
    let len = footer_metadata_len(tail)?;
    let end = tail.len() - 8;
    let start = end.checked_sub(len)?;
    let meta =
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[start..end]).ok()?;
    key_values(&meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn atomic_write_leaves_only_the_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("matrices").join("m@main.parquet");
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
        assert_eq!(
            parquet_files(path.parent().unwrap()).unwrap().unwrap(),
            vec![path.clone()]
        );
    }

    #[test]
    fn temporary_names_carry_host_and_pid() {
        let name = temporary_name("x@main.parquet");
        assert!(name.starts_with(".x@main.parquet.tmp-"), "{name}");
        let (h, pid) = temporary_owner(&name).unwrap();
        assert_eq!(h.as_deref(), Some(host().as_str()));
        assert_eq!(pid, std::process::id());
        assert_eq!(temporary_owner(".x@main.parquet.tmp-42"), Some((None, 42)));
        assert_eq!(temporary_owner("x@main.parquet"), None);
    }

    /// Only temporaries of this host whose process is gone are removed: not a live
    /// process's (this one's, or its parent's), not another host's, not an older writer's.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_dead_processes_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("spectra");
        std::fs::create_dir_all(&table).unwrap();
        // A process that has exited: a child we started and waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = host();
        let live_parent = std::os::unix::process::parent_id();
        let files = [
            (format!(".a@main.parquet.tmp-{me}-{dead}"), false),
            (
                format!(".b@main.parquet.tmp-{me}-{}", std::process::id()),
                true,
            ),
            (format!(".c@main.parquet.tmp-{me}-{live_parent}"), true),
            (format!(".d@main.parquet.tmp-elsewhere-{dead}"), true),
            (format!(".e@main.parquet.tmp-{dead}"), true),
            ("y@main.parquet".to_string(), true),
        ];
        for (name, _) in &files {
            std::fs::write(table.join(name), b"partial").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        for (name, kept) in &files {
            assert_eq!(table.join(name).exists(), *kept, "{name}");
        }
    }
}
