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

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{CheckpointError, SourceFormat, TensorMeta, TensorStore, shards};
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
    maps: Vec<Mmap>,
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
            let io = |source| CheckpointError::Io {
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(io)?;
            // SAFETY: the map is read-only and bytes are only copied out after bounds checks;
            // as for every memory-mapped reader, truncation by another process while mapped is
            // outside what this reader can defend against.
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            let entries = index_file(path, &map)?;
            let file_index = store.maps.len();
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
                        first: store.files[prev].clone(),
                        second: path.clone(),
                    });
                }
                owner.insert(name.clone(), file_index);
                store.tensors.push(TensorMeta {
                    name,
                    stored_name: None,
                    dtype,
                    shape,
                    file: file_index,
                });
                store.views.push(view);
            }
            store.files.push(path.clone());
            store.maps.push(map);
        }
        Ok(store)
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

/// A restricted unpickler: pickle opcodes are interpreted into plain values, and the only
/// globals it resolves are torch's tensor-rebuild functions, storage types and dtypes, and
/// `collections.OrderedDict`. Nothing is imported or called.
pub mod unpickle {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use crate::dtype::DType;

    /// Nesting depth followed when collecting tensors out of nested dicts.
    const MAX_DEPTH: usize = 32;

    /// A storage as named by a persistent id.
    #[derive(Debug, PartialEq)]
    pub struct StorageRef {
        /// The zip entry `data/<key>` holding its bytes.
        pub key: String,
        /// Number of elements of the storage's own type.
        pub numel: u64,
        /// Bytes per element of the storage's own type (1 for `UntypedStorage`).
        pub elem_size: usize,
        /// The element type of a typed storage, `None` for `UntypedStorage`.
        pub dtype: Option<DType>,
    }

    /// A tensor rebuilt by one of torch's rebuild functions: a view into a storage.
    #[derive(Debug)]
    pub struct TensorRef {
        pub storage: Rc<StorageRef>,
        pub dtype: DType,
        pub offset: u64,
        pub size: Vec<u64>,
        pub stride: Vec<u64>,
        /// torch's negative bit (`_neg_view`): the values are the negated stored ones.
        pub neg: bool,
        /// Why the tensor cannot be read, reported with its name once it is known.
        pub problem: Option<String>,
    }

    /// The globals the unpickler resolves.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Global {
        OrderedDict,
        RebuildTensorV2,
        RebuildTensorV3,
        RebuildParameter,
        RebuildParameterWithState,
        RebuildFromTypeV2,
        TensorClass,
        ParameterClass,
        /// A typed storage class (`torch.FloatStorage`), `Err` with its name when its element
        /// type is not one this crate reads (complex, quantised).
        Storage(Result<DType, &'static str>),
        UntypedStorage,
        /// A torch dtype (`torch.float8_e4m3fn`), argument of `_rebuild_tensor_v3`.
        Dtype(Result<DType, &'static str>),
    }

    /// A pickled value.
    #[derive(Clone, Debug)]
    enum Value {
        None,
        Bool(bool),
        Int(i64),
        /// An integer outside `i64`: only ever compared, never used.
        BigInt,
        // Floats and bytes only appear in metadata, which is never interpreted.
        Float(#[allow(dead_code)] f64),
        Str(Rc<str>),
        Bytes(#[allow(dead_code)] Rc<[u8]>),
        Tuple(Rc<[Value]>),
        List(Rc<RefCell<Vec<Value>>>),
        Dict(Rc<RefCell<Vec<(Value, Value)>>>),
        Global(Global),
        Storage(Rc<StorageRef>),
        Tensor(Rc<TensorRef>),
    }

    impl Value {
        fn kind(&self) -> &'static str {
            match self {
                Value::None => "None",
                Value::Bool(_) => "a bool",
                Value::Int(_) | Value::BigInt => "an int",
                Value::Float(_) => "a float",
                Value::Str(_) => "a str",
                Value::Bytes(_) => "bytes",
                Value::Tuple(_) => "a tuple",
                Value::List(_) => "a list",
                Value::Dict(_) => "a dict",
                Value::Global(_) => "a class or function",
                Value::Storage(_) => "a storage",
                Value::Tensor(_) => "a tensor",
            }
        }
    }

    /// The root object of a pickle, opaque outside this module.
    pub struct Root(Value);

    fn resolve_global(module: &str, name: &str) -> Option<Global> {
        use DType::*;
        let storage = |d| Some(Global::Storage(Ok(d)));
        let unreadable = |n| Some(Global::Storage(Err(n)));
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch._tensor", "Tensor") => Global::TensorClass,
            ("torch.nn.parameter", "Parameter") => Global::ParameterClass,
            ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => {
                Global::UntypedStorage
            }
            ("torch", s) if s.ends_with("Storage") => {
                return match s {
                    "DoubleStorage" => storage(F64),
                    "FloatStorage" => storage(F32),
                    "HalfStorage" => storage(F16),
                    "BFloat16Storage" => storage(BF16),
                    "LongStorage" => storage(I64),
                    "IntStorage" => storage(I32),
                    "ShortStorage" => storage(I16),
                    "CharStorage" => storage(I8),
                    "ByteStorage" => storage(U8),
                    "BoolStorage" => storage(Bool),
                    "ComplexDoubleStorage" => unreadable("torch.ComplexDoubleStorage"),
                    "ComplexFloatStorage" => unreadable("torch.ComplexFloatStorage"),
                    "QInt8Storage" => unreadable("torch.QInt8Storage"),
                    "QInt32Storage" => unreadable("torch.QInt32Storage"),
                    "QUInt8Storage" => unreadable("torch.QUInt8Storage"),
                    "QUInt4x2Storage" => unreadable("torch.QUInt4x2Storage"),
                    "QUInt2x4Storage" => unreadable("torch.QUInt2x4Storage"),
                    _ => None,
                };
            }
            ("torch", d) => {
                let dtype = match d {
                    "float64" | "double" => Ok(F64),
                    "float32" | "float" => Ok(F32),
                    "float16" | "half" => Ok(F16),
                    "bfloat16" => Ok(BF16),
                    "int64" | "long" => Ok(I64),
                    "int32" | "int" => Ok(I32),
                    "int16" | "short" => Ok(I16),
                    "int8" => Ok(I8),
                    "uint64" => Ok(U64),
                    "uint32" => Ok(U32),
                    "uint16" => Ok(U16),
                    "uint8" => Ok(U8),
                    "bool" => Ok(Bool),
                    "float8_e4m3fn" => Ok(F8_E4M3),
                    "float8_e5m2" => Ok(F8_E5M2),
                    "float8_e4m3fnuz" => Err("torch.float8_e4m3fnuz"),
                    "float8_e5m2fnuz" => Err("torch.float8_e5m2fnuz"),
                    "float8_e8m0fnu" => Err("torch.float8_e8m0fnu"),
                    "float4_e2m1fn_x2" => Err("torch.float4_e2m1fn_x2"),
                    "complex32" => Err("torch.complex32"),
                    "complex64" | "cfloat" => Err("torch.complex64"),
                    "complex128" | "cdouble" => Err("torch.complex128"),
                    _ => return None,
                };
                Global::Dtype(dtype)
            }
            _ => return None,
        })
    }

    /// Reads bytes of the pickle with bounds checks.
    struct Reader<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let end = self
                .pos
                .checked_add(n)
                .filter(|&e| e <= self.data.len())
                .ok_or_else(|| {
                    format!(
                        "truncated: {n} bytes wanted at byte {} of {}",
                        self.pos,
                        self.data.len()
                    )
                })?;
            let out = &self.data[self.pos..end];
            self.pos = end;
            Ok(out)
        }
        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }
        fn u16(&mut self) -> Result<u16, String> {
            Ok(u16::from_le_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            ))
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            ))
        }
        fn u64(&mut self) -> Result<u64, String> {
            Ok(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            ))
        }
        fn len32(&mut self) -> Result<usize, String> {
            Ok(self.u32()? as usize)
        }
        fn len64(&mut self) -> Result<usize, String> {
            usize::try_from(self.u64()?).map_err(|_| "length too large".to_string())
        }
        fn line(&mut self) -> Result<&'a str, String> {
            let rest = &self.data[self.pos..];
            let n = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("truncated: unterminated GLOBAL line")?;
            let line = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?;
            self.pos += n + 1;
            Ok(line)
        }
    }

    fn utf8(bytes: &[u8]) -> Result<Value, String> {
        std::str::from_utf8(bytes)
            .map(|s| Value::Str(Rc::from(s)))
            .map_err(|_| "string is not valid UTF-8".to_string())
    }

    /// Decodes a little-endian two's-complement integer of `bytes.len()` bytes.
    fn long(bytes: &[u8]) -> Value {
        if bytes.is_empty() {
            return Value::Int(0);
        }
        if bytes.len() > 8 {
            return Value::BigInt;
        }
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buf))
    }

    /// Names of the opcodes, for messages.
    fn opcode_name(op: u8) -> &'static str {
        match op {
            b'(' => "MARK",
            b'.' => "STOP",
            b'0' => "POP",
            b'1' => "POP_MARK",
            b'2' => "DUP",
            b'F' => "FLOAT",
            b'I' => "INT",
            b'L' => "LONG",
            b'P' => "PERSID",
            b'S' => "STRING",
            b'V' => "UNICODE",
            b'i' => "INST",
            b'o' => "OBJ",
            b'g' => "GET",
            b'p' => "PUT",
            0x81 => "NEWOBJ",
            0x82 => "EXT1",
            0x83 => "EXT2",
            0x84 => "EXT4",
            0x90 => "EMPTY_SET",
            0x91 => "ADDITEMS",
            0x92 => "FROZENSET",
            0x96 => "BYTEARRAY8",
            0x97 => "NEXT_BUFFER",
            0x98 => "READONLY_BUFFER",
            _ => "unknown",
        }
    }

    struct Machine {
        stack: Vec<Value>,
        marks: Vec<usize>,
        memo: HashMap<u64, Value>,
        storages: HashMap<String, Rc<StorageRef>>,
    }

    impl Machine {
        fn pop(&mut self) -> Result<Value, String> {
            if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
                return Err("pops past a MARK".into());
            }
            self.stack
                .pop()
                .ok_or_else(|| "stack underflow".to_string())
        }
        fn top(&mut self) -> Result<&mut Value, String> {
            if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
                return Err("reads past a MARK".into());
            }
            self.stack
                .last_mut()
                .ok_or_else(|| "stack underflow".to_string())
        }
        fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
            let m = self.marks.pop().ok_or("no MARK on the stack")?;
            Ok(self.stack.split_off(m))
        }
        fn memo_get(&self, i: u64) -> Result<Value, String> {
            self.memo
                .get(&i)
                .cloned()
                .ok_or_else(|| format!("memo entry {i} is empty"))
        }
        fn memo_put(&mut self, i: u64) -> Result<(), String> {
            let v = self.top()?.clone();
            self.memo.insert(i, v);
            Ok(())
        }
    }

    fn uint(v: &Value, what: &str) -> Result<u64, String> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            Value::Bool(b) => Ok(*b as u64),
            Value::Int(i) => Err(format!("{what} should be a non-negative int, found {i}")),
            Value::BigInt => Err(format!("{what} is an integer beyond 64 bits")),
            other => Err(format!(
                "{what} should be a non-negative int, found {}",
                other.kind()
            )),
        }
    }

    fn uint_tuple(v: &Value, what: &str) -> Result<Vec<u64>, String> {
        match v {
            Value::Tuple(items) => items.iter().map(|x| uint(x, what)).collect(),
            Value::List(items) => items.borrow().iter().map(|x| uint(x, what)).collect(),
            other => Err(format!(
                "{what} should be a tuple of ints, found {}",
                other.kind()
            )),
        }
    }

    /// Builds the tensor of `_rebuild_tensor_v2/v3`; `dtype` is given for v3.
    fn rebuild_tensor(args: &[Value], dtype: Option<&Value>) -> Result<Value, String> {
        let Value::Storage(storage) = &args[0] else {
            return Err(format!(
                "tensor rebuild expects a storage, found {}",
                args[0].kind()
            ));
        };
        let offset = uint(&args[1], "storage offset")?;
        let size = uint_tuple(&args[2], "size")?;
        let stride = uint_tuple(&args[3], "stride")?;
        let mut problem = None;
        let dtype = match (dtype, storage.dtype) {
            (None, Some(d)) => d,
            (None, None) => {
                return Err("_rebuild_tensor_v2 of an untyped storage".into());
            }
            (Some(Value::Global(Global::Dtype(Ok(d)))), _) => *d,
            (Some(Value::Global(Global::Dtype(Err(name)))), _) => {
                problem = Some(format!(
                    "has dtype {name}, which this reader cannot represent"
                ));
                DType::U8
            }
            (Some(other), _) => {
                return Err(format!(
                    "_rebuild_tensor_v3 expects a dtype, found {}",
                    other.kind()
                ));
            }
        };
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            dtype,
            offset,
            size,
            stride,
            neg: false,
            problem,
        })))
    }

    /// Applies tensor metadata (`{"neg": bool, "conj": bool}`) to a rebuilt tensor; the
    /// conjugate bit is a no-op on real values.
    fn apply_metadata(tensor: Value, metadata: Option<&Value>) -> Result<Value, String> {
        let Value::Tensor(t) = tensor else {
            return Ok(tensor);
        };
        let Some(Value::Dict(items)) = metadata else {
            return match metadata {
                None | Some(Value::None) => Ok(Value::Tensor(t)),
                Some(other) => Err(format!(
                    "tensor metadata should be a dict, found {}",
                    other.kind()
                )),
            };
        };
        let mut t = Rc::try_unwrap(t).unwrap_or_else(|rc| TensorRef {
            storage: rc.storage.clone(),
            dtype: rc.dtype,
            offset: rc.offset,
            size: rc.size.clone(),
            stride: rc.stride.clone(),
            neg: rc.neg,
            problem: rc.problem.clone(),
        });
        for (k, v) in items.borrow().iter() {
            match (k, v) {
                (Value::Str(k), Value::Bool(b)) if &**k == "neg" => t.neg = *b,
                (Value::Str(k), Value::Bool(_)) if &**k == "conj" => {}
                (Value::Str(k), _) => {
                    t.problem = Some(format!(
                        "carries tensor metadata `{k}`, which is not supported"
                    ));
                }
                _ => return Err("tensor metadata keys should be strings".into()),
            }
        }
        Ok(Value::Tensor(Rc::new(t)))
    }

    /// Calls an allowed global: the REDUCE opcode.
    fn call(func: &Value, args: &Value) -> Result<Value, String> {
        let Value::Global(g) = func else {
            return Err(format!(
                "REDUCE calls {}, not a known function",
                func.kind()
            ));
        };
        let Value::Tuple(args) = args else {
            return Err(format!("REDUCE arguments are {}, not a tuple", args.kind()));
        };
        let arity = |lo: usize, hi: usize, name: &str| {
            if args.len() < lo || args.len() > hi {
                Err(format!("{name} called with {} arguments", args.len()))
            } else {
                Ok(())
            }
        };
        match g {
            Global::OrderedDict => {
                arity(0, 1, "OrderedDict")?;
                let mut items = Vec::new();
                if let Some(arg) = args.first() {
                    let pairs: Vec<Value> = match arg {
                        Value::List(l) => l.borrow().clone(),
                        Value::Tuple(t) => t.to_vec(),
                        other => {
                            return Err(format!("OrderedDict of {}", other.kind()));
                        }
                    };
                    for p in pairs {
                        match p {
                            Value::Tuple(kv) if kv.len() == 2 => {
                                items.push((kv[0].clone(), kv[1].clone()))
                            }
                            _ => return Err("OrderedDict of something other than pairs".into()),
                        }
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(items))))
            }
            Global::RebuildTensorV2 => {
                arity(6, 7, "_rebuild_tensor_v2")?;
                let t = rebuild_tensor(args, None)?;
                apply_metadata(t, args.get(6))
            }
            Global::RebuildTensorV3 => {
                arity(7, 8, "_rebuild_tensor_v3")?;
                let t = rebuild_tensor(args, Some(&args[6]))?;
                apply_metadata(t, args.get(7))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let (lo, name) = if *g == Global::RebuildParameter {
                    (3, "_rebuild_parameter")
                } else {
                    (4, "_rebuild_parameter_with_state")
                };
                arity(lo, lo, name)?;
                match &args[0] {
                    t @ Value::Tensor(_) => Ok(t.clone()),
                    other => Err(format!("{name} of {}", other.kind())),
                }
            }
            Global::RebuildFromTypeV2 => {
                arity(4, 4, "_rebuild_from_type_v2")?;
                match &args[1] {
                    Value::Global(Global::TensorClass | Global::ParameterClass) => {}
                    other => {
                        return Err(format!(
                            "_rebuild_from_type_v2 into {}, not torch.Tensor or Parameter",
                            other.kind()
                        ));
                    }
                }
                match &args[0] {
                    Value::Global(
                        Global::RebuildTensorV2
                        | Global::RebuildTensorV3
                        | Global::RebuildParameter
                        | Global::RebuildParameterWithState,
                    ) => call(&args[0], &args[2]),
                    other => Err(format!("_rebuild_from_type_v2 calls {}", other.kind())),
                }
            }
            other => Err(format!(
                "REDUCE calls {other:?}, which is not callable here"
            )),
        }
    }

    /// Turns a persistent id `("storage", StorageType, key, location, numel)` into a storage.
    fn persistent_load(
        pid: Value,
        storages: &mut HashMap<String, Rc<StorageRef>>,
    ) -> Result<Value, String> {
        let Value::Tuple(items) = pid else {
            return Err(format!("persistent id is {}, not a tuple", pid.kind()));
        };
        let [
            Value::Str(tag),
            kind,
            Value::Str(key),
            Value::Str(_location),
            numel,
        ] = &items[..]
        else {
            return Err(
                "persistent id is not (\"storage\", type, key, location, numel)".to_string(),
            );
        };
        if &**tag != "storage" {
            return Err(format!("persistent id of kind `{tag}`, not `storage`"));
        }
        let numel = uint(numel, "storage size")?;
        let (dtype, elem_size) = match kind {
            Value::Global(Global::Storage(Ok(d))) => (
                Some(*d),
                d.element_size().expect("storage dtypes have a size"),
            ),
            Value::Global(Global::Storage(Err(name))) => {
                return Err(format!(
                    "storage `{key}` has type {name}, which this reader cannot read"
                ));
            }
            Value::Global(Global::UntypedStorage) => (None, 1),
            other => return Err(format!("storage type is {}", other.kind())),
        };
        let storage = StorageRef {
            key: key.to_string(),
            numel,
            elem_size,
            dtype,
        };
        if let Some(prev) = storages.get(&storage.key) {
            if **prev != storage {
                return Err(format!(
                    "storage `{key}` is named twice with different types or sizes"
                ));
            }
            return Ok(Value::Storage(prev.clone()));
        }
        let rc = Rc::new(storage);
        storages.insert(rc.key.clone(), rc.clone());
        Ok(Value::Storage(rc))
    }

    /// Interprets a pickle, resolving only the allowed globals. Errors say what and where.
    pub fn unpickle(data: &[u8]) -> Result<Root, String> {
        let mut r = Reader { data, pos: 0 };
        let mut m = Machine {
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            storages: HashMap::new(),
        };
        loop {
            let at = r.pos;
            let op = r
                .u8()
                .map_err(|_| "ends without a STOP opcode".to_string())?;
            let step = (|| -> Result<bool, String> {
                match op {
                    0x80 => {
                        let v = r.u8()?;
                        if !(2..=5).contains(&v) {
                            return Err(format!("pickle protocol {v} is not supported"));
                        }
                    }
                    0x95 => {
                        r.u64()?; // FRAME: a length hint only
                    }
                    b'.' => return Ok(true),
                    b'(' => m.marks.push(m.stack.len()),
                    b'0' => {
                        m.pop()?;
                    }
                    b'1' => {
                        m.pop_mark()?;
                    }
                    b'2' => {
                        let v = m.top()?.clone();
                        m.stack.push(v);
                    }
                    b'N' => m.stack.push(Value::None),
                    0x88 => m.stack.push(Value::Bool(true)),
                    0x89 => m.stack.push(Value::Bool(false)),
                    b'J' => {
                        let v = i32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                        m.stack.push(Value::Int(v as i64));
                    }
                    b'K' => {
                        let v = r.u8()?;
                        m.stack.push(Value::Int(v as i64));
                    }
                    b'M' => {
                        let v = r.u16()?;
                        m.stack.push(Value::Int(v as i64));
                    }
                    0x8a => {
                        let n = r.u8()? as usize;
                        let v = long(r.take(n)?);
                        m.stack.push(v);
                    }
                    0x8b => {
                        let n = r.len32()?;
                        let v = long(r.take(n)?);
                        m.stack.push(v);
                    }
                    b'G' => {
                        let v = f64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
                        m.stack.push(Value::Float(v));
                    }
                    b'X' => {
                        let n = r.len32()?;
                        let v = utf8(r.take(n)?)?;
                        m.stack.push(v);
                    }
                    0x8c => {
                        let n = r.u8()? as usize;
                        let v = utf8(r.take(n)?)?;
                        m.stack.push(v);
                    }
                    0x8d => {
                        let n = r.len64()?;
                        let v = utf8(r.take(n)?)?;
                        m.stack.push(v);
                    }
                    b'T' | b'U' => {
                        let n = if op == b'T' {
                            r.len32()?
                        } else {
                            r.u8()? as usize
                        };
                        let v = utf8(r.take(n)?)?;
                        m.stack.push(v);
                    }
                    b'B' | b'C' | 0x8e => {
                        let n = match op {
                            b'B' => r.len32()?,
                            b'C' => r.u8()? as usize,
                            _ => r.len64()?,
                        };
                        let v = Value::Bytes(Rc::from(r.take(n)?));
                        m.stack.push(v);
                    }
                    b')' => m.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                    b't' => {
                        let items = m.pop_mark()?;
                        m.stack.push(Value::Tuple(Rc::from(items)));
                    }
                    0x85..=0x87 => {
                        let n = (op - 0x84) as usize;
                        let mut items = Vec::with_capacity(n);
                        for _ in 0..n {
                            items.push(m.pop()?);
                        }
                        items.reverse();
                        m.stack.push(Value::Tuple(Rc::from(items)));
                    }
                    b']' => m.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                    b'l' => {
                        let items = m.pop_mark()?;
                        m.stack.push(Value::List(Rc::new(RefCell::new(items))));
                    }
                    b'a' => {
                        let v = m.pop()?;
                        match m.top()? {
                            Value::List(l) => l.borrow_mut().push(v),
                            other => return Err(format!("APPEND to {}", other.kind())),
                        }
                    }
                    b'e' => {
                        let items = m.pop_mark()?;
                        match m.top()? {
                            Value::List(l) => l.borrow_mut().extend(items),
                            other => return Err(format!("APPENDS to {}", other.kind())),
                        }
                    }
                    b'}' => m.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                    b'd' => {
                        let items = m.pop_mark()?;
                        let pairs = pairs(items)?;
                        m.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                    }
                    b's' => {
                        let v = m.pop()?;
                        let k = m.pop()?;
                        match m.top()? {
                            Value::Dict(d) => d.borrow_mut().push((k, v)),
                            other => return Err(format!("SETITEM on {}", other.kind())),
                        }
                    }
                    b'u' => {
                        let items = m.pop_mark()?;
                        let new = pairs(items)?;
                        match m.top()? {
                            Value::Dict(d) => d.borrow_mut().extend(new),
                            other => return Err(format!("SETITEMS on {}", other.kind())),
                        }
                    }
                    b'h' => {
                        let i = r.u8()? as u64;
                        let v = m.memo_get(i)?;
                        m.stack.push(v);
                    }
                    b'j' => {
                        let i = r.u32()? as u64;
                        let v = m.memo_get(i)?;
                        m.stack.push(v);
                    }
                    b'q' => {
                        let i = r.u8()? as u64;
                        m.memo_put(i)?;
                    }
                    b'r' => {
                        let i = r.u32()? as u64;
                        m.memo_put(i)?;
                    }
                    0x94 => {
                        let i = m.memo.len() as u64;
                        m.memo_put(i)?;
                    }
                    b'c' => {
                        let module = r.line()?;
                        let name = r.line()?;
                        let g =
                            resolve_global(module, name).ok_or_else(|| forbidden(module, name))?;
                        m.stack.push(Value::Global(g));
                    }
                    0x93 => {
                        let name = m.pop()?;
                        let module = m.pop()?;
                        let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                            return Err("STACK_GLOBAL of non-strings".into());
                        };
                        let g =
                            resolve_global(module, name).ok_or_else(|| forbidden(module, name))?;
                        m.stack.push(Value::Global(g));
                    }
                    b'R' => {
                        let args = m.pop()?;
                        let func = m.pop()?;
                        let v = call(&func, &args)?;
                        m.stack.push(v);
                    }
                    b'b' => {
                        let _state = m.pop()?;
                        match m.top()? {
                            // An OrderedDict's instance attributes (`_metadata` of state_dict).
                            Value::Dict(_) => {}
                            other => return Err(format!("BUILD on {}", other.kind())),
                        }
                    }
                    b'Q' => {
                        let pid = m.pop()?;
                        let v = persistent_load(pid, &mut m.storages)?;
                        m.stack.push(v);
                    }
                    other => {
                        return Err(format!(
                            "pickle opcode 0x{other:02x} ({}) is not supported by this restricted \
                             reader",
                            opcode_name(other)
                        ));
                    }
                }
                Ok(false)
            })();
            match step {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return Err(format!("{e} (opcode at byte {at})")),
            }
        }
        let root = m.stack.pop().ok_or("STOP with an empty stack")?;
        Ok(Root(root))
    }

    fn forbidden(module: &str, name: &str) -> String {
        format!(
            "the pickle refers to the global `{module}.{name}`, which a state dict never needs; \
             refusing to load it (only torch's tensor-rebuild functions, storage types and dtypes \
             and collections.OrderedDict are allowed, and nothing is ever executed)"
        )
    }

    fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
        if !items.len().is_multiple_of(2) {
            return Err("odd number of items for a dict".into());
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    /// The tensors of a state dict, named by their keys; nested dicts of string keys are
    /// flattened with `.` (a checkpoint saved as `{"model": state_dict}`), other values ignored.
    pub fn state_dict_tensors(root: &Root) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
        let Value::Dict(_) = &root.0 else {
            return Err(format!(
                "the pickle holds {}, not a state dict (a dict of tensors)",
                root.0.kind()
            ));
        };
        let mut out = Vec::new();
        collect(&root.0, "", 0, &mut out)?;
        Ok(out)
    }

    fn collect(
        v: &Value,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, Rc<TensorRef>)>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("dicts nested deeper than {MAX_DEPTH} levels"));
        }
        let Value::Dict(items) = v else {
            return Ok(());
        };
        for (k, v) in items.borrow().iter() {
            let Value::Str(k) = k else { continue };
            let name = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Tensor(t) => out.push((name, t.clone())),
                Value::Dict(_) => collect(v, &name, depth + 1, out)?,
                _ => {}
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn err(bytes: &[u8]) -> String {
            match unpickle(bytes) {
                Ok(_) => panic!("expected an error"),
                Err(e) => e,
            }
        }

        #[test]
        fn rejects_unknown_globals_by_name() {
            // PROTO 2, GLOBAL 'os system', STRING arg, TUPLE1, REDUCE, STOP
            let mut p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
            assert!(err(&p).contains("`os.system`"));
            p = b"\x80\x02cbuiltins\neval\n.".to_vec();
            assert!(err(&p).contains("`builtins.eval`"));
            p = b"\x80\x04\x8c\x0b__builtin__\x8c\x04exec\x93.".to_vec();
            assert!(err(&p).contains("`__builtin__.exec`"));
            p = b"\x80\x02ctorch\nload\n.".to_vec();
            assert!(err(&p).contains("`torch.load`"));
        }

        #[test]
        fn rejects_unsupported_opcodes_and_truncation() {
            assert!(err(b"\x80\x02i__main__\nX\n.").contains("INST"));
            assert!(err(b"\x80\x02\x81.").contains("NEWOBJ"));
            assert!(err(b"\x80\x02").contains("without a STOP"));
            assert!(err(b"\x80\x02X\xff\x00\x00\x00ab.").contains("truncated"));
            assert!(err(b"\x80\x09.").contains("protocol 9"));
            assert!(err(b"\x80\x020.").contains("underflow"));
            assert!(err(b"\x80\x02h\x05.").contains("memo entry 5"));
            assert!(err(b"\x80\x02(0.").contains("MARK"));
            assert!(err(b"\x80\x02K\x00K\x01K\x02s.").contains("SETITEM on an int"));
        }

        #[test]
        fn builds_plain_values() {
            // {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'z')}
            let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bC\x02xyX\x01\x00\x00\x00z\x86u.";
            let Root(v) = unpickle(p).unwrap();
            let Value::Dict(d) = v else { panic!() };
            let d = d.borrow();
            assert_eq!(d.len(), 2);
            let Value::List(l) = &d[0].1 else { panic!() };
            let l = l.borrow();
            assert!(matches!(l[0], Value::Int(1)));
            assert!(matches!(l[1], Value::Int(-2)));
            assert!(matches!(l[2], Value::Float(x) if x == 3.5));
            assert!(matches!(l[3], Value::None));
            assert!(matches!(l[4], Value::Bool(true)));
            let Value::Tuple(t) = &d[1].1 else { panic!() };
            assert!(matches!(&t[0], Value::Bytes(b) if &b[..] == b"xy"));
        }

        #[test]
        fn decodes_long1() {
            assert!(matches!(long(&[0xff]), Value::Int(-1)));
            assert!(matches!(long(&[0x00, 0x01]), Value::Int(256)));
            assert!(matches!(long(&[0; 10]), Value::BigInt));
            assert!(matches!(long(&[]), Value::Int(0)));
        }

        #[test]
        fn self_referencing_lists_do_not_loop() {
            // l = []; l.append(l); {'x': l}
            let p = b"\x80\x02}(X\x01\x00\x00\x00x]q\x00h\x00au.";
            let root = unpickle(p).unwrap();
            assert!(state_dict_tensors(&root).unwrap().is_empty());
            // d = {}; d['d'] = d: nested dicts recurse until the depth limit.
            let p = b"\x80\x02}q\x00X\x01\x00\x00\x00dh\x00s.";
            let root = unpickle(p).unwrap();
            assert!(
                state_dict_tensors(&root)
                    .unwrap_err()
                    .contains("nested deeper")
            );
        }

        #[test]
        fn top_level_must_be_a_dict() {
            let root = unpickle(b"\x80\x02K\x01.").unwrap();
            assert!(
                state_dict_tensors(&root)
                    .unwrap_err()
                    .contains("not a state dict")
            );
        }
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
