//! PyTorch `.bin` state dicts (`torch.save` zip archives), single or sharded, read without
//! executing the pickle.
//!
//! Since PyTorch 1.6 `torch.save` writes a zip archive whose entries sit under one directory
//! (`archive/` or the file's stem): `data.pkl` is a pickle of the state dict, in which every
//! tensor is a call of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and
//! every storage is a *persistent id* `("storage", torch.FloatStorage, key, location, numel)`
//! whose bytes are the uncompressed entry `data/<key>`.
//!
//! Python's `pickle` would import and call whatever globals the file names, so a malicious
//! checkpoint can run code when loaded. This module never does that: it interprets the pickle
//! opcodes itself ([`unpickle`]), builds plain values, and knows only the handful of globals a
//! state dict needs — the tensor-rebuild functions (`_rebuild_tensor_v2`, `_rebuild_tensor_v3`,
//! `_rebuild_parameter`, `_rebuild_parameter_with_state`, `torch._tensor._rebuild_from_type_v2`),
//! the storage types, torch dtypes (for `_rebuild_tensor_v3`) and `collections.OrderedDict`. Any
//! other global (`os.system`, `builtins.eval`, ...) is an error naming it and the file; any
//! opcode outside protocols 2 to 4's data opcodes is an error naming it.
//!
//! Tensors are views: a storage offset and strides into a storage that several tensors may
//! share. Every view is checked against its storage's size when the file is opened; reading a
//! non-contiguous view gathers its elements in row-major order. Tensor bytes are read from the
//! memory-mapped file only when a tensor is asked for, straight out of the stored zip entry.
//!
//! Files in the legacy (PyTorch < 1.6) format, a bare pickle stream starting with torch's magic
//! number, are recognised and rejected with instructions to convert them.

pub mod unpickle;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use super::{CheckpointError, FileBytes, SourceFormat, TensorMeta, TensorStore, shards};
use crate::dtype::{DType, decode_f64};

/// The legacy format's first bytes: `PROTO 2`, `LONG1` of 10 bytes, torch's magic number
/// 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Largest `data.pkl` accepted. A state dict's pickle is a few bytes per tensor.
const MAX_PICKLE: u64 = 1 << 30;

/// Where one tensor's elements are: a view into a storage (a stored zip entry).
#[derive(Clone, Debug)]
struct View {
    /// Absolute byte range of the storage's zip entry in the mapped file.
    data: (usize, usize),
    /// Offset of the first element, in elements.
    offset: usize,
    /// Strides in elements, one per dimension.
    stride: Vec<usize>,
    /// The tensor carries torch's negative bit: its values are the negated stored ones.
    neg: bool,
}

/// The tensors of one or more PyTorch zip checkpoints.
pub struct PickleStore {
    files: Vec<PathBuf>,
    maps: Vec<FileBytes>,
    tensors: Vec<TensorMeta>,
    views: Vec<View>,
}

fn corrupt(file: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Pickle {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

impl PickleStore {
    /// Opens the PyTorch weights of a checkpoint directory, or `None` when it has none.
    ///
    /// With `pytorch_model.bin.index.json` the shards it names are opened and every tensor it
    /// maps must be in the shard it names. Otherwise `pytorch_model.bin`, otherwise every
    /// `pytorch_model-*-of-*.bin` shard.
    pub fn open_dir(dir: &Path) -> Result<Option<PickleStore>, CheckpointError> {
        match shards::locate(dir, &shards::PYTORCH)? {
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

    /// Opens the given files as one store. A tensor present in two files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<PickleStore, CheckpointError> {
        let mut store = PickleStore {
            files: Vec::new(),
            maps: Vec::new(),
            tensors: Vec::new(),
            views: Vec::new(),
        };
        let mut owner: HashMap<String, usize> = HashMap::new();
        for path in paths {
            store.add(&mut owner, path, FileBytes::map(path)?)?;
        }
        Ok(store)
    }

    /// One `torch.save` archive given as bytes, indexed exactly as
    /// [`PickleStore::open_files`] indexes a mapped file; `path` is only used in messages.
    pub(crate) fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<PickleStore, CheckpointError> {
        let mut store = PickleStore {
            files: Vec::new(),
            maps: Vec::new(),
            tensors: Vec::new(),
            views: Vec::new(),
        };
        store.add(&mut HashMap::new(), path, FileBytes::Owned(bytes))?;
        Ok(store)
    }

    /// Indexes one archive and adds its tensors; `owner` maps every tensor name seen so far
    /// to its file.
    fn add(
        &mut self,
        owner: &mut HashMap<String, usize>,
        path: &Path,
        map: FileBytes,
    ) -> Result<(), CheckpointError> {
        let entries = index_file(path, &map)?;
        let file_index = self.maps.len();
        for Indexed {
            name,
            dtype,
            shape,
            view,
        } in entries
        {
            if let Some(&prev) = owner.get(&name) {
                return Err(CheckpointError::DuplicateTensor {
                    name,
                    first: self.files[prev].clone(),
                    second: path.to_path_buf(),
                });
            }
            owner.insert(name.clone(), file_index);
            self.tensors.push(TensorMeta {
                name,
                stored_name: None,
                dtype,
                shape,
                file: file_index,
            });
            self.views.push(view);
        }
        self.files.push(path.to_path_buf());
        self.maps.push(map);
        Ok(())
    }
}

/// A stored (uncompressed) zip entry's absolute byte range, or `None` when the archive has no
/// entry of that name.
fn stored_entry(
    file: &Path,
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    file_len: usize,
) -> Result<Option<(usize, usize)>, CheckpointError> {
    let Some(index) = archive.index_for_name(name) else {
        return Ok(None);
    };
    let entry = archive
        .by_index_raw(index)
        .map_err(|e| corrupt(file, format!("zip entry `{name}`: {e}")))?;
    if entry.encrypted() {
        return Err(corrupt(file, format!("zip entry `{name}` is encrypted")));
    }
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(corrupt(
            file,
            format!(
                "zip entry `{name}` is compressed ({}); torch.save writes uncompressed archives, \
                 so re-save the state dict with torch.save",
                entry.compression()
            ),
        ));
    }
    let (size, packed) = (entry.size(), entry.compressed_size());
    let start = entry
        .data_start()
        .ok_or_else(|| corrupt(file, format!("zip entry `{name}` has no data offset")))?;
    if size != packed {
        return Err(corrupt(
            file,
            format!("stored zip entry `{name}` claims {size} bytes but occupies {packed}"),
        ));
    }
    let end = start
        .checked_add(size)
        .filter(|&e| e <= file_len as u64)
        .ok_or_else(|| {
            corrupt(
                file,
                format!(
                    "zip entry `{name}` ({size} bytes at {start}) runs past the end of the \
                     {file_len}-byte file"
                ),
            )
        })?;
    Ok(Some((start as usize, end as usize)))
}

/// Product of `dims` with overflow checks.
fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// True when `stride` is the row-major layout of `shape` (dimensions of size 1 are free).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

/// One tensor of an indexed archive.
struct Indexed {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    view: View,
}

/// Indexes one `torch.save` zip archive: every tensor's name, dtype, shape and view.
fn index_file(path: &Path, map: &[u8]) -> Result<Vec<Indexed>, CheckpointError> {
    if map.len() >= 14 && map[0] == 0x80 && map[2..4] == [0x8a, 0x0a] && map[4..14] == LEGACY_MAGIC
    {
        return Err(corrupt(
            path,
            "this is the legacy PyTorch (< 1.6) serialization format, a bare pickle stream, which \
             this reader does not parse. Convert it once with PyTorch: python -c \"import torch; \
             torch.save(torch.load('IN.bin', weights_only=True), 'OUT.bin')\" writes the zip \
             format (or save it as safetensors)",
        ));
    }
    if !map.starts_with(b"PK\x03\x04") {
        let what = if map.first() == Some(&0x80) {
            "a bare pickle stream, not a torch.save zip archive"
        } else {
            "not a torch.save zip archive"
        };
        return Err(corrupt(path, what));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(map))
        .map_err(|e| corrupt(path, format!("not a readable zip archive: {e}")))?;
    let mut prefixes: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok())
        .filter_map(|n| n.strip_suffix("/data.pkl").map(str::to_string))
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .collect();
    prefixes.sort();
    let prefix = match prefixes.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(corrupt(
                path,
                "the zip archive has no `<dir>/data.pkl` record, so it was not written by torch.save",
            ));
        }
        many => {
            return Err(corrupt(
                path,
                format!("the zip archive holds several pickles: {many:?}"),
            ));
        }
    };
    if let Some((s, e)) = stored_entry(
        path,
        &mut archive,
        &format!("{prefix}/byteorder"),
        map.len(),
    )? {
        let order = &map[s..e];
        if order != b"little" {
            return Err(corrupt(
                path,
                format!(
                    "byte order is `{}`; only little-endian checkpoints are supported",
                    String::from_utf8_lossy(order)
                ),
            ));
        }
    }
    let pkl_name = format!("{prefix}/data.pkl");
    let (s, e) = stored_entry(path, &mut archive, &pkl_name, map.len())?
        .ok_or_else(|| corrupt(path, format!("zip entry `{pkl_name}` cannot be read")))?;
    if (e - s) as u64 > MAX_PICKLE {
        return Err(corrupt(
            path,
            format!("`{pkl_name}` is {} bytes, over the limit", e - s),
        ));
    }
    let root =
        unpickle::unpickle(&map[s..e]).map_err(|p| corrupt(path, format!("{pkl_name}: {p}")))?;
    let found = unpickle::state_dict_tensors(&root).map_err(|p| corrupt(path, p))?;

    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut out = Vec::with_capacity(found.len());
    let mut entries: HashMap<String, (usize, usize)> = HashMap::new();
    for (name, t) in &found {
        if seen.insert(name.as_str(), ()).is_some() {
            return Err(corrupt(
                path,
                format!("tensor `{name}` appears twice in the state dict"),
            ));
        }
        let bad = |problem: String| corrupt(path, format!("tensor `{name}`: {problem}"));
        if let Some(problem) = &t.problem {
            return Err(bad(problem.clone()));
        }
        let dtype = t.dtype;
        let elem = dtype
            .element_size()
            .ok_or_else(|| bad(format!("dtype {dtype} has no element size")))?;
        let key = &t.storage.key;
        if key.is_empty() || key.contains('/') || key.contains('\\') || key.contains("..") {
            return Err(bad(format!("storage key `{key}` is not a plain name")));
        }
        let range = match entries.get(key) {
            Some(&r) => r,
            None => {
                let entry = format!("{prefix}/data/{key}");
                let r = stored_entry(path, &mut archive, &entry, map.len())?.ok_or_else(|| {
                    bad(format!("its storage `{key}` has no zip entry `{entry}`"))
                })?;
                entries.insert(key.clone(), r);
                r
            }
        };
        let bytes = range.1 - range.0;
        let storage_elem = t.storage.elem_size;
        let claimed = usize::try_from(t.storage.numel)
            .ok()
            .and_then(|n| n.checked_mul(storage_elem))
            .ok_or_else(|| {
                bad(format!(
                    "storage `{key}` size {} overflows",
                    t.storage.numel
                ))
            })?;
        if claimed != bytes {
            return Err(bad(format!(
                "storage `{key}` holds {bytes} bytes, but the pickle says {} elements of {storage_elem} bytes",
                t.storage.numel
            )));
        }
        if bytes % elem != 0 {
            return Err(bad(format!(
                "storage `{key}` holds {bytes} bytes, not a whole number of {dtype} elements"
            )));
        }
        let storage_numel = bytes / elem;
        let to_usize = |v: &[u64], what: &str| -> Result<Vec<usize>, CheckpointError> {
            v.iter()
                .map(|&x| usize::try_from(x).map_err(|_| bad(format!("{what} {v:?} too large"))))
                .collect()
        };
        let shape = to_usize(&t.size, "size")?;
        let mut stride = to_usize(&t.stride, "stride")?;
        let offset = usize::try_from(t.offset)
            .map_err(|_| bad(format!("storage offset {} too large", t.offset)))?;
        if shape.len() != stride.len() {
            return Err(bad(format!(
                "size {shape:?} and stride {stride:?} differ in rank"
            )));
        }
        let numel =
            checked_numel(&shape).ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        // The stride of a dimension of size 1 is never followed; zero keeps the index walk in
        // range whatever the file says.
        for (s, &n) in stride.iter_mut().zip(&shape) {
            if n == 1 {
                *s = 0;
            }
        }
        if numel > storage_numel {
            // Only a view that repeats elements (a stride of 0, as `expand` makes) can be
            // larger than its storage; reading it would allocate out of proportion to the file.
            return Err(bad(format!(
                "view (size {shape:?}, stride {stride:?}) has {numel} elements, more than the \
                 {storage_numel} its storage `{key}` holds; such broadcast views are refused \
                 (save the tensor with .contiguous() or .clone() first)"
            )));
        }
        if numel > 0 {
            let last = shape
                .iter()
                .zip(&stride)
                .try_fold(offset, |acc, (&n, &s)| {
                    acc.checked_add((n - 1).checked_mul(s)?)
                })
                .ok_or_else(|| bad(format!("view size {shape:?} stride {stride:?} overflows")))?;
            if last >= storage_numel {
                return Err(bad(format!(
                    "view (offset {offset}, size {shape:?}, stride {stride:?}) reaches element \
                     {last} of storage `{key}`, which holds {storage_numel}"
                )));
            }
        }
        out.push(Indexed {
            name: name.clone(),
            dtype,
            shape,
            view: View {
                data: range,
                offset,
                stride,
                neg: t.neg,
            },
        });
    }
    Ok(out)
}

impl TensorStore for PickleStore {
    fn format(&self) -> SourceFormat {
        SourceFormat::PytorchBin
    }

    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    fn read(&self, index: usize) -> Result<Vec<f64>, CheckpointError> {
        let meta = &self.tensors[index];
        let view = &self.views[index];
        let path = &self.files[meta.file];
        if !meta.dtype.is_plain_float() {
            return Err(CheckpointError::UnsupportedDType {
                tensor: meta.name.clone(),
                file: path.clone(),
                dtype: meta.dtype,
            });
        }
        let elem = meta.dtype.element_size().expect("plain floats have a size");
        // The view was checked against the storage when the file was opened.
        let storage = &self.maps[meta.file][view.data.0..view.data.1];
        let numel = meta.numel();
        let mut out = Vec::with_capacity(numel);
        let failed = || {
            corrupt(
                path,
                format!(
                    "tensor `{}`: cannot decode its {} bytes",
                    meta.name, meta.dtype
                ),
            )
        };
        if numel == 0 {
        } else if is_contiguous(&meta.shape, &view.stride) {
            let start = view.offset * elem;
            decode_f64(meta.dtype, &storage[start..start + numel * elem], &mut out)
                .ok_or_else(failed)?;
        } else {
            // Walk the view in row-major order with an odometer over its indices.
            let rank = meta.shape.len();
            let mut idx = vec![0usize; rank];
            let mut at = view.offset;
            for _ in 0..numel {
                decode_f64(meta.dtype, &storage[at * elem..(at + 1) * elem], &mut out)
                    .ok_or_else(failed)?;
                for d in (0..rank).rev() {
                    idx[d] += 1;
                    at += view.stride[d];
                    if idx[d] < meta.shape[d] {
                        break;
                    }
                    at -= view.stride[d] * meta.shape[d];
                    idx[d] = 0;
                }
            }
        }
        if view.neg {
            out.iter_mut().for_each(|x| *x = -*x);
        }
        super::release_pages(
            &self.maps[meta.file],
            view.data.0,
            view.data.1 - view.data.0,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A protocol-2 pickle of `{name: _rebuild_tensor_v2(storage, offset, size, stride, False,
    /// OrderedDict())}` for each (name, key, storage numel, offset, size, stride), written the way
    /// torch.save writes it.
    /// (name, storage key, storage numel, offset, size, stride)
    type Spec<'a> = (&'a str, &'a str, u64, u64, &'a [u64], &'a [u64]);

    fn state_dict_pickle(tensors: &[Spec]) -> Vec<u8> {
        fn unicode(out: &mut Vec<u8>, s: &str) {
            out.push(b'X');
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn int(out: &mut Vec<u8>, v: u64) {
            if let Ok(small) = i32::try_from(v) {
                out.push(b'J');
                out.extend_from_slice(&small.to_le_bytes());
            } else {
                out.extend_from_slice(&[0x8a, 8]); // LONG1 of 8 bytes
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        fn tuple(out: &mut Vec<u8>, vs: &[u64]) {
            out.push(b'(');
            for &v in vs {
                int(out, v);
            }
            out.push(b't');
        }
        let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
        for (name, key, numel, offset, size, stride) in tensors {
            unicode(&mut p, name);
            p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            unicode(&mut p, "storage");
            p.extend_from_slice(b"ctorch\nFloatStorage\n");
            unicode(&mut p, key);
            unicode(&mut p, "cpu");
            int(&mut p, *numel);
            p.extend_from_slice(b"tQ");
            int(&mut p, *offset);
            tuple(&mut p, size);
            tuple(&mut p, stride);
            p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
        }
        p.extend_from_slice(b"u.");
        p
    }

    /// A zip archive of stored entries.
    fn archive(path: &Path, entries: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn open(entries: &[(&str, &[u8])]) -> Result<(tempfile::TempDir, PickleStore), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        archive(&path, entries);
        match PickleStore::open_files(&[path]) {
            Ok(store) => Ok((dir, store)),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn crafted_archives_read_views_and_reject_bad_ones() {
        let data = f32s(&[0., 1., 2., 3., 4., 5.]);
        // A [2, 2] view at offset 1 with strides (1, 2): elements 1, 3, 2, 4.
        let pkl = state_dict_pickle(&[("w", "0", 6, 1, &[2, 2], &[1, 2])]);
        let (_d, store) = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)]).unwrap();
        assert_eq!(store.read(0).unwrap(), vec![1., 3., 2., 4.]);
        // A size-1 dimension's stride is never followed, however large.
        let pkl = state_dict_pickle(&[("w", "0", 6, 2, &[1, 3], &[4_000_000_000, 1])]);
        let (_d, store) = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)]).unwrap();
        assert_eq!(store.read(0).unwrap(), vec![2., 3., 4.]);

        let pkl = state_dict_pickle(&[("w", "0", 6, 3, &[2, 2], &[2, 1])]);
        let e = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)])
            .err()
            .unwrap();
        assert!(e.contains("`w`") && e.contains("reaches element 6"), "{e}");
        let pkl = state_dict_pickle(&[("w", "0", 7, 0, &[2], &[1])]);
        let e = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)])
            .err()
            .unwrap();
        assert!(
            e.contains("holds 24 bytes") && e.contains("7 elements"),
            "{e}"
        );
        let pkl = state_dict_pickle(&[("w", "1", 6, 0, &[2], &[1])]);
        let e = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)])
            .err()
            .unwrap();
        assert!(
            e.contains("`w`") && e.contains("no zip entry `w/data/1`"),
            "{e}"
        );
        let pkl = state_dict_pickle(&[("w", "../0", 6, 0, &[2], &[1])]);
        let e = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)])
            .err()
            .unwrap();
        assert!(e.contains("not a plain name"), "{e}");
        let pkl = state_dict_pickle(&[("w", "0", 6, 0, &[2], &[1]), ("w", "0", 6, 0, &[2], &[1])]);
        let e = open(&[("w/data.pkl", &pkl), ("w/data/0", &data)])
            .err()
            .unwrap();
        assert!(e.contains("appears twice"), "{e}");
        let pkl = state_dict_pickle(&[("w", "0", 6, 0, &[2], &[1])]);
        let e = open(&[
            ("w/data.pkl", &pkl),
            ("w/data/0", &data),
            ("w/byteorder", b"big"),
        ])
        .err()
        .unwrap();
        assert!(e.contains("little-endian"), "{e}");
        let e = open(&[("a/data.pkl", &pkl), ("b/data.pkl", &pkl)])
            .err()
            .unwrap();
        assert!(e.contains("several pickles"), "{e}");
        let e = open(&[("data.pkl", &pkl)]).err().unwrap();
        assert!(e.contains("no `<dir>/data.pkl`"), "{e}");
    }

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert!(is_contiguous(&[], &[]));
    }

    #[test]
    fn rejects_non_zip_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pytorch_model.bin");
        std::fs::write(&p, b"hello").unwrap();
        let e = PickleStore::open_files(std::slice::from_ref(&p))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("not a torch.save zip archive") && e.contains("pytorch_model.bin"),
            "{e}"
        );
        let mut legacy = vec![0x80, 0x02, 0x8a, 0x0a];
        legacy.extend_from_slice(&LEGACY_MAGIC);
        legacy.push(b'.');
        std::fs::write(&p, &legacy).unwrap();
        let e = PickleStore::open_files(std::slice::from_ref(&p))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("legacy") && e.contains("torch.save"), "{e}");
        std::fs::write(&p, b"PK\x03\x04 truncated").unwrap();
        let e = PickleStore::open_files(&[p]).err().unwrap().to_string();
        assert!(e.contains("zip"), "{e}");
    }
}
