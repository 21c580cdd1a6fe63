//! Memory-mapped safetensors files, single or sharded, validated before any tensor is read.
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON mapping
//! tensor names to `{dtype, shape, data_offsets}`, then the data. Every claim of the header is
//! checked against the file before it is trusted: the header must fit in the file, each
//! tensor's byte range must lie inside the data section, its length must equal the product of
//! its shape times its element size, no two tensors may overlap, and no name may appear twice.
//! A corrupt file is therefore an error naming the file and the tensor, never a panic or an
//! out-of-bounds read.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{CheckpointError, FileBytes, SourceFormat, TensorMeta, TensorStore, shards};
use crate::dtype::{DType, decode_f64, fp8_to_f64};

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

/// One memory-mapped safetensors file and the byte ranges of its tensors.
struct MappedFile {
    path: PathBuf,
    map: FileBytes,
    /// Start of the data section (8 + header length).
    data_start: usize,
}

/// The tensors of one or more safetensors files.
pub struct SafetensorsStore {
    files: Vec<PathBuf>,
    maps: Vec<MappedFile>,
    tensors: Vec<TensorMeta>,
    /// Byte range of each tensor within its file's data section.
    ranges: Vec<(usize, usize)>,
}

/// A header entry as written in the JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header's top-level object, kept as an ordered list so duplicate names are seen.
struct RawHeader(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawHeader, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(RawHeader(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl MappedFile {
    fn open(path: &Path) -> Result<MappedFile, CheckpointError> {
        Ok(MappedFile {
            path: path.to_path_buf(),
            map: FileBytes::map(path)?,
            data_start: 0,
        })
    }

    fn corrupt(&self, problem: impl Into<String>) -> CheckpointError {
        CheckpointError::Safetensors {
            file: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// Parses and validates the header of the mapped file.
    fn parse(&mut self) -> Result<Vec<HeaderEntry>, CheckpointError> {
        let len = self.map.len() as u64;
        let n = header_length(&self.path, &self.map[..self.map.len().min(8)], len)?;
        let data_start = 8 + n as usize;
        let entries = parse_header(&self.path, &self.map[8..data_start], len - 8 - n)?;
        self.data_start = data_start;
        Ok(entries)
    }
}

/// One validated tensor entry of a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range within the data section (after the 8-byte length and the header).
    pub range: (usize, usize),
}

fn corrupt(file: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Safetensors {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

/// Validates the 8-byte header length `first8` of a file of `file_len` bytes and returns it.
///
/// Shared by the memory-mapped reader and readers that fetch byte ranges over HTTP.
pub fn header_length(file: &Path, first8: &[u8], file_len: u64) -> Result<u64, CheckpointError> {
    let Ok(bytes) = <[u8; 8]>::try_from(first8) else {
        return Err(corrupt(
            file,
            format!("file is {file_len} bytes, too short for the 8-byte header length"),
        ));
    };
    let n = u64::from_le_bytes(bytes);
    if n > MAX_HEADER {
        return Err(corrupt(
            file,
            format!("header length {n} exceeds the limit of {MAX_HEADER} bytes"),
        ));
    }
    if 8 + n > file_len {
        return Err(corrupt(
            file,
            format!("header length {n} runs past the end of the file ({file_len} bytes)"),
        ));
    }
    Ok(n)
}

/// Parses and validates a header's JSON against a data section of `data_len` bytes.
///
/// Every entry's byte range must lie inside the data section and match its dtype and shape,
/// no two entries may overlap and no name may appear twice; `file` is only used in messages.
pub fn parse_header(
    file: &Path,
    json: &[u8],
    data_len: u64,
) -> Result<Vec<HeaderEntry>, CheckpointError> {
    let bad = |problem: String| corrupt(file, problem);
    let header: RawHeader = serde_json::from_slice(json)
        .map_err(|e| bad(format!("header is not a JSON object of tensors: {e}")))?;
    let mut seen = HashMap::new();
    let mut out: Vec<HeaderEntry> = Vec::with_capacity(header.0.len());
    for (name, value) in header.0 {
        if seen.insert(name.clone(), ()).is_some() {
            return Err(bad(format!(
                "tensor `{name}` is listed twice in the header"
            )));
        }
        if name == "__metadata__" {
            if !value.is_object() {
                return Err(bad("`__metadata__` must be an object".into()));
            }
            continue;
        }
        let entry: RawEntry = serde_json::from_value(value)
            .map_err(|e| bad(format!("tensor `{name}`: bad header entry: {e}")))?;
        let dtype = DType::from_safetensors(&entry.dtype)
            .ok_or_else(|| bad(format!("tensor `{name}`: unknown dtype `{}`", entry.dtype)))?;
        let (begin, end) = entry.data_offsets;
        if begin > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}`: data offsets [{begin}, {end}] lie outside the {data_len}-byte data section"
            )));
        }
        let elem = dtype
            .element_size()
            .expect("safetensors dtypes have a size") as u64;
        let expected = entry
            .shape
            .iter()
            .try_fold(elem, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                bad(format!(
                    "tensor `{name}`: shape {:?} overflows",
                    entry.shape
                ))
            })?;
        if expected != end - begin {
            return Err(bad(format!(
                "tensor `{name}`: {} bytes for dtype {dtype} and shape {:?}, which need {expected}",
                end - begin,
                entry.shape
            )));
        }
        let shape = entry
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                bad(format!(
                    "tensor `{name}`: shape {:?} too large",
                    entry.shape
                ))
            })?;
        let range = (
            usize::try_from(begin)
                .map_err(|_| bad(format!("tensor `{name}`: offset too large")))?,
            usize::try_from(end).map_err(|_| bad(format!("tensor `{name}`: offset too large")))?,
        );
        out.push(HeaderEntry {
            name,
            dtype,
            shape,
            range,
        });
    }
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by_key(|&i| out[i].range);
    for w in order.windows(2) {
        let (a, b) = (&out[w[0]], &out[w[1]]);
        if b.range.0 < a.range.1 {
            return Err(bad(format!(
                "tensors `{}` [{}, {}] and `{}` [{}, {}] overlap",
                a.name, a.range.0, a.range.1, b.name, b.range.0, b.range.1
            )));
        }
    }
    Ok(out)
}

impl SafetensorsStore {
    /// Opens the given files as one store. A tensor present in two files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<SafetensorsStore, CheckpointError> {
        let mut store = SafetensorsStore {
            files: Vec::new(),
            maps: Vec::new(),
            tensors: Vec::new(),
            ranges: Vec::new(),
        };
        let mut owner: HashMap<String, usize> = HashMap::new();
        for path in paths {
            store.add(&mut owner, MappedFile::open(path)?)?;
        }
        Ok(store)
    }

    /// One file given as bytes, read exactly as [`SafetensorsStore::open_files`] reads a
    /// mapped file; `path` is only used in messages.
    pub(crate) fn from_bytes(
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<SafetensorsStore, CheckpointError> {
        let mut store = SafetensorsStore {
            files: Vec::new(),
            maps: Vec::new(),
            tensors: Vec::new(),
            ranges: Vec::new(),
        };
        let file = MappedFile {
            path: path.to_path_buf(),
            map: FileBytes::Owned(bytes),
            data_start: 0,
        };
        store.add(&mut HashMap::new(), file)?;
        Ok(store)
    }

    /// Parses `mapped`'s header and adds its tensors; `owner` maps every tensor name seen so
    /// far to its file.
    fn add(
        &mut self,
        owner: &mut HashMap<String, usize>,
        mut mapped: MappedFile,
    ) -> Result<(), CheckpointError> {
        let entries = mapped.parse()?;
        let file = self.maps.len();
        for HeaderEntry {
            name,
            dtype,
            shape,
            range,
        } in entries
        {
            if let Some(&prev) = owner.get(&name) {
                return Err(CheckpointError::DuplicateTensor {
                    name,
                    first: self.files[prev].clone(),
                    second: mapped.path.clone(),
                });
            }
            owner.insert(name.clone(), file);
            self.tensors.push(TensorMeta {
                name,
                stored_name: None,
                dtype,
                shape,
                file,
            });
            self.ranges.push(range);
        }
        self.files.push(mapped.path.clone());
        self.maps.push(mapped);
        Ok(())
    }

    /// Opens the safetensors weights of a checkpoint directory, or `None` when it has none.
    ///
    /// With `model.safetensors.index.json` the shards it names are opened, and every tensor
    /// it maps must be in the shard it names. Otherwise `model.safetensors`, otherwise every
    /// `model-*-of-*.safetensors` shard.
    pub fn open_dir(dir: &Path) -> Result<Option<SafetensorsStore>, CheckpointError> {
        match shards::locate(dir, &shards::SAFETENSORS)? {
            shards::Layout::Index(path) => {
                let (index, paths) = shards::ShardIndex::read(dir, &path)?;
                let store = Self::open_files(&paths)?;
                index.check(
                    store
                        .tensors
                        .iter()
                        .map(|t| (t.name.as_str(), store.files[t.file].as_path())),
                )?;
                Ok(Some(store))
            }
            shards::Layout::Files(paths) => Self::open_files(&paths).map(Some),
            shards::Layout::Nothing => Ok(None),
        }
    }
}

impl TensorStore for SafetensorsStore {
    fn format(&self) -> SourceFormat {
        SourceFormat::Safetensors
    }

    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    /// FP8 tensors (F8_E4M3, F8_E5M2) are returned as stored, without their scales:
    /// [`super::Checkpoint::read`] applies the scales the model's config names.
    fn read(&self, index: usize) -> Result<Vec<f64>, CheckpointError> {
        let meta = &self.tensors[index];
        let mapped = &self.maps[meta.file];
        if matches!(meta.dtype, DType::F8_E4M3 | DType::F8_E5M2) {
            let (begin, end) = self.ranges[index];
            let bytes = &mapped.map[mapped.data_start + begin..mapped.data_start + end];
            let out = bytes
                .iter()
                .map(|&b| fp8_to_f64(meta.dtype, b).expect("an FP8 dtype"))
                .collect();
            super::release_pages(&mapped.map, mapped.data_start + begin, end - begin);
            return Ok(out);
        }
        if !meta.dtype.is_plain_float() {
            return Err(CheckpointError::UnsupportedDType {
                tensor: meta.name.clone(),
                file: mapped.path.clone(),
                dtype: meta.dtype,
            });
        }
        let (begin, end) = self.ranges[index];
        // Ranges were validated against the data section when the header was parsed.
        let bytes = &mapped.map[mapped.data_start + begin..mapped.data_start + end];
        let mut out = Vec::new();
        decode_f64(meta.dtype, bytes, &mut out).ok_or_else(|| {
            mapped.corrupt(format!(
                "tensor `{}`: {} bytes are not a whole number of {} elements",
                meta.name,
                bytes.len(),
                meta.dtype
            ))
        })?;
        super::release_pages(&mapped.map, mapped.data_start + begin, end - begin);
        Ok(out)
    }
}

/// Writes a safetensors file: used by tests and fixture tools to build small checkpoints.
///
/// `tensors` are (name, dtype, shape, little-endian bytes); they are laid out in the order given.
pub fn write_file(
    path: &Path,
    tensors: &[(&str, DType, Vec<usize>, Vec<u8>)],
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": shape,
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn raw_file(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
        let path = dir.join("model.safetensors");
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        std::fs::write(&path, out).unwrap();
        path
    }

    fn open_err(dir: &Path, header: &str, data: &[u8]) -> String {
        let path = raw_file(dir, header, data);
        match SafetensorsStore::open_files(&[path]) {
            Ok(_) => panic!("expected an error for header {header}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_written_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_file(
            &path,
            &[
                (
                    "a",
                    DType::F32,
                    vec![2, 2],
                    f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
                ),
                ("b", DType::F64, vec![1], 0.5f64.to_le_bytes().to_vec()),
            ],
        )
        .unwrap();
        let store = SafetensorsStore::open_files(&[path]).unwrap();
        assert_eq!(store.tensors().len(), 2);
        assert_eq!(store.read(0).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(store.read(1).unwrap(), vec![0.5]);
    }

    #[test]
    fn rejects_short_files_and_long_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, [1, 2, 3]).unwrap();
        let e = SafetensorsStore::open_files(std::slice::from_ref(&path))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("too short") && e.contains("model.safetensors"),
            "{e}"
        );
        let mut bytes = 1000u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, bytes).unwrap();
        let e = SafetensorsStore::open_files(&[path])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("past the end"), "{e}");
    }

    #[test]
    fn rejects_offsets_outside_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 4],
        );
        assert!(e.contains("`w`") && e.contains("outside"), "{e}");
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
            &[0; 4],
        );
        assert!(e.contains("outside"), "{e}");
    }

    #[test]
    fn rejects_size_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        assert!(e.contains("need 6"), "{e}");
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        assert!(e.contains("overflows"), "{e}");
    }

    #[test]
    fn rejects_overlaps_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_err(
            dir.path(),
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            &[0; 12],
        );
        assert!(
            e.contains("overlap") && e.contains("`a`") && e.contains("`b`"),
            "{e}"
        );
        let e = open_err(
            dir.path(),
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            &[0; 8],
        );
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn rejects_bad_json_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open_err(dir.path(), "{not json", &[]).contains("not a JSON object"));
        assert!(open_err(dir.path(), "[]", &[]).contains("not a JSON object"));
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
            &[0; 16],
        );
        assert!(e.contains("unknown dtype"), "{e}");
        let e = open_err(
            dir.path(),
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#,
            &[0; 4],
        );
        assert!(e.contains("bad header entry"), "{e}");
    }

    #[test]
    fn integer_tensors_are_indexed_but_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = raw_file(
            dir.path(),
            r#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        let store = SafetensorsStore::open_files(&[path]).unwrap();
        let e = store.read(0).unwrap_err().to_string();
        assert!(e.contains("I64") && e.contains("`ids`"), "{e}");
    }

    #[test]
    fn shard_index_must_agree_with_shards() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_file(
            &d.join("model-00001-of-00002.safetensors"),
            &[("a", DType::F32, vec![1], f32_bytes(&[1.0]))],
        )
        .unwrap();
        write_file(
            &d.join("model-00002-of-00002.safetensors"),
            &[("b", DType::F32, vec![1], f32_bytes(&[2.0]))],
        )
        .unwrap();
        let index = |a: &str, b: &str| {
            std::fs::write(
                d.join("model.safetensors.index.json"),
                format!(r#"{{"metadata":{{}},"weight_map":{{"a":"{a}","b":"{b}"}}}}"#),
            )
            .unwrap()
        };
        index(
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        );
        let store = SafetensorsStore::open_dir(d).unwrap().unwrap();
        assert_eq!(store.files().len(), 2);
        index(
            "model-00002-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        );
        let e = SafetensorsStore::open_dir(d).err().unwrap().to_string();
        assert!(e.contains("maps `a`"), "{e}");
        index("../x.safetensors", "model-00002-of-00002.safetensors");
        let e = SafetensorsStore::open_dir(d).err().unwrap().to_string();
        assert!(e.contains("not a plain file name"), "{e}");
        std::fs::remove_file(d.join("model.safetensors.index.json")).unwrap();
        let store = SafetensorsStore::open_dir(d).unwrap().unwrap();
        assert_eq!(
            store.tensors().len(),
            2,
            "unindexed shards are found by name"
        );
    }
}
