//! The GGUF container: header, metadata values, tensor infos and the checks that make every
//! count, length, dimension and offset safe to trust before it is used.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::quants;
use crate::checkpoint::CheckpointError;
use crate::dtype::DType;

/// Alignment of the data section when `general.alignment` is absent.
pub(super) const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's maximum number of dimensions.
const MAX_DIMS: u32 = 4;
/// Nesting depth of metadata arrays accepted.
pub(super) const MAX_ARRAY_DEPTH: usize = 4;
/// Elements of one metadata array accepted: 64 times the largest tokenizer vocabularies
/// (262,144 tokens) and merge lists written so far. An element takes 1 to 12 bytes in the
/// file and 32 bytes in memory, so this bounds an array to 512 MiB in memory.
pub(super) const MAX_ARRAY_LEN: u64 = 1 << 24;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as a non-negative integer, for any integer type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, for the float types; `f32` values become the shortest decimal
    /// that round-trips (`1e-5` rather than `9.999999747378752e-6`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => format!("{v}").parse().ok(),
            GgufValue::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as JSON; arrays longer than `max_array` become `{"array_len": n}`.
    pub fn to_json(&self, max_array: usize) -> Value {
        match self {
            GgufValue::F32(_) | GgufValue::F64(_) => self
                .as_f64()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .unwrap_or(Value::Null),
            GgufValue::Bool(b) => Value::Bool(*b),
            GgufValue::Str(s) => Value::String(s.clone()),
            GgufValue::I8(v) => (*v).into(),
            GgufValue::I16(v) => (*v).into(),
            GgufValue::I32(v) => (*v).into(),
            GgufValue::I64(v) => (*v).into(),
            GgufValue::Array(items) if items.len() > max_array => {
                serde_json::json!({ "array_len": items.len() })
            }
            GgufValue::Array(items) => {
                Value::Array(items.iter().map(|v| v.to_json(max_array)).collect())
            }
            other => other.as_u64().map(Value::from).unwrap_or(Value::Null),
        }
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "uint8",
            GgufValue::I8(_) => "int8",
            GgufValue::U16(_) => "uint16",
            GgufValue::I16(_) => "int16",
            GgufValue::U32(_) => "uint32",
            GgufValue::I32(_) => "int32",
            GgufValue::U64(_) => "uint64",
            GgufValue::I64(_) => "int64",
            GgufValue::F32(_) => "float32",
            GgufValue::F64(_) => "float64",
            GgufValue::Bool(_) => "bool",
            GgufValue::Str(_) => "string",
            GgufValue::Array(_) => "array",
        }
    }
}

impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json(8))
    }
}

/// The name of a ggml type id, for messages.
fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2 (removed from ggml)",
        5 => "Q4_3 (removed from ggml)",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        31..=33 => "Q4_0_4_4/Q4_0_4_8/Q4_0_8_8 (removed from ggml)",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36..=38 => "IQ4_NL_4_4/4_8/8_8 (removed from ggml)",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        _ => "unknown",
    }
}

/// The [`DType`] and `(block elements, block bytes)` of the ggml types this reader handles.
pub(super) fn ggml_type(id: u32) -> Option<(DType, usize, usize)> {
    let dtype = match id {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::Q4_0,
        3 => DType::Q4_1,
        6 => DType::Q5_0,
        7 => DType::Q5_1,
        8 => DType::Q8_0,
        10 => DType::Q2_K,
        11 => DType::Q3_K,
        12 => DType::Q4_K,
        13 => DType::Q5_K,
        14 => DType::Q6_K,
        15 => DType::Q8_K,
        24 => return Some((DType::I8, 1, 1)),
        25 => return Some((DType::I16, 1, 2)),
        26 => return Some((DType::I32, 1, 4)),
        27 => return Some((DType::I64, 1, 8)),
        28 => DType::F64,
        30 => DType::BF16,
        _ => return None,
    };
    let (block, size) = quants::block_layout(dtype)?;
    Some((dtype, block, size))
}

/// A tensor as stored in the file.
#[derive(Clone, Debug)]
pub(super) struct StoredTensor {
    pub(super) name: String,
    pub(super) dtype: DType,
    /// Dimensions as written, innermost first.
    pub(super) ne: Vec<usize>,
    /// Absolute byte range in the file.
    pub(super) range: (usize, usize),
}

impl StoredTensor {
    /// The shape in PyTorch order (reversed `ne`).
    pub(super) fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().copied().collect()
    }
}

/// Reads the header, metadata and tensor infos with bounds checks.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, problem: impl Into<String>) -> CheckpointError {
        corrupt(self.path, problem)
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CheckpointError> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what}: {n} bytes wanted at offset {} but the file is {} bytes",
                self.pos,
                self.data.len()
            )));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CheckpointError> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], CheckpointError> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(self.err(format!(
                "{what}: string length {len} at offset {} runs past the end of the file",
                self.pos - 8
            )));
        }
        self.take(len as usize, what)
    }

    fn utf8(&mut self, what: &str) -> Result<String, CheckpointError> {
        let bytes = self.string(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue, CheckpointError> {
        let what = format!("metadata `{key}`");
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>(&what)?[0]),
            1 => GgufValue::I8(self.array::<1>(&what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => match self.array::<1>(&what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.err(format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            8 => GgufValue::Str(String::from_utf8_lossy(self.string(&what)?).into_owned()),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
                    )));
                }
                let elem = self.u32(&what)?;
                let n = self.u64(&what)?;
                // Every element takes at least one byte (eight for strings and arrays).
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => {
                        return Err(self.err(format!("{what}: unknown array element type {other}")));
                    }
                };
                if n > MAX_ARRAY_LEN {
                    return Err(self.err(format!(
                        "{what}: array of {n} elements, over the limit of {MAX_ARRAY_LEN} \
                         elements per metadata array"
                    )));
                }
                if n > (self.remaining() / min) as u64 {
                    return Err(self.err(format!(
                        "{what}: array of {n} elements cannot fit in the {} bytes left",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(self.err(format!("{what}: unknown value type {other}"))),
        })
    }
}

pub(super) fn corrupt(file: &Path, problem: impl Into<String>) -> CheckpointError {
    CheckpointError::Gguf {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

/// True for a path ending in `.gguf` (any case) or a file starting with the GGUF magic.
pub fn is_gguf_path(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// The `*.gguf` files directly inside `dir`, sorted.
pub fn gguf_files_in(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Parses and validates the header, metadata and tensor infos of `map`.
#[allow(clippy::type_complexity)]
pub(super) fn parse(
    path: &Path,
    map: &[u8],
) -> Result<(u32, Vec<(String, GgufValue)>, Vec<StoredTensor>), CheckpointError> {
    let mut c = Cursor {
        data: map,
        pos: 0,
        path,
    };
    if map.len() < 24 {
        return Err(c.err(format!(
            "file is {} bytes, too short for a GGUF header",
            map.len()
        )));
    }
    let magic = c.array::<4>("magic")?;
    if &magic != b"GGUF" {
        let hint = match &magic {
            b"lmgg" | b"fmgg" | b"tjgg" | b"algg" => {
                " (an older GGML/GGMF/GGJT file; convert it to GGUF with llama.cpp)"
            }
            _ => "",
        };
        return Err(c.err(format!("does not start with the GGUF magic{hint}")));
    }
    let version = c.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(c.err("is a big-endian GGUF file, which is not supported"));
    }
    if version == 1 {
        return Err(c.err("is GGUF version 1, which is not supported (only 2 and 3)"));
    }
    if version != 2 && version != 3 {
        return Err(c.err(format!(
            "has GGUF version {version}; only 2 and 3 are supported"
        )));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // A key/value pair takes at least 13 bytes, a tensor info at least 24.
    if n_kv > (c.remaining() / 13) as u64 {
        return Err(c.err(format!(
            "claims {n_kv} metadata entries, more than the file could hold"
        )));
    }
    if n_tensors > (c.remaining() / 24) as u64 {
        return Err(c.err(format!(
            "claims {n_tensors} tensors, more than the file could hold"
        )));
    }
    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv as usize);
    let mut keys: HashMap<String, ()> = HashMap::new();
    for _ in 0..n_kv {
        let k = c.utf8("metadata key")?;
        let ty = c.u32("metadata type")?;
        let v = c.value(ty, &k, 0)?;
        if keys.insert(k.clone(), ()).is_some() {
            return Err(c.err(format!("metadata key `{k}` appears twice")));
        }
        metadata.push((k, v));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 20 => a,
            _ => {
                return Err(c.err(format!(
                    "general.alignment is {v}; it must be a power of two up to 2^20"
                )));
            }
        },
    };
    struct Info {
        name: String,
        ty: u32,
        ne: Vec<u64>,
        offset: u64,
    }
    let mut infos = Vec::with_capacity(n_tensors as usize);
    let mut names: HashMap<String, ()> = HashMap::new();
    for _ in 0..n_tensors {
        let name = c.utf8("tensor name")?;
        let what = format!("tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err(format!(
                "{what} has {n_dims} dimensions; GGUF allows 1 to {MAX_DIMS}"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(c.u64(&what)?);
        }
        let ty = c.u32(&what)?;
        let offset = c.u64(&what)?;
        if names.insert(name.clone(), ()).is_some() {
            return Err(c.err(format!("{what} appears twice")));
        }
        infos.push(Info {
            name,
            ty,
            ne,
            offset,
        });
    }
    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = map.len() as u64;
    let mut stored = Vec::with_capacity(infos.len());
    for info in infos {
        let name = info.name;
        let bad = |problem: String| corrupt(path, format!("tensor `{name}`: {problem}"));
        let (dtype, block, size) = ggml_type(info.ty).ok_or_else(|| {
            bad(format!(
                "ggml type {} ({}) is not supported; this reader dequantises F32, F16, BF16, F64, \
                 Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K",
                ggml_type_name(info.ty),
                info.ty
            ))
        })?;
        let ne = info
            .ne
            .iter()
            .map(|&n| usize::try_from(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad(format!("dimensions {:?} too large", info.ne)))?;
        if !ne[0].is_multiple_of(block) {
            return Err(bad(format!(
                "row length {} is not a multiple of the {dtype} block size {block}",
                ne[0]
            )));
        }
        // Every dimension is bounded by the file's size, also in a tensor with a zero
        // dimension (which holds no data): its other dimensions, each counted at least once,
        // must fit in the file too, so no count derived from them can exceed its size.
        let mut span = ((ne[0] / block).max(1) as u64).checked_mul(size as u64);
        for &n in &ne[1..] {
            span = span.and_then(|b| b.checked_mul((n as u64).max(1)));
        }
        if span.is_none_or(|b| b > file_len) {
            return Err(bad(format!(
                "dimensions {:?} describe more data than the {file_len}-byte file holds",
                info.ne
            )));
        }
        let mut nbytes = ((ne[0] / block) as u64).checked_mul(size as u64);
        for &n in &ne[1..] {
            nbytes = nbytes.and_then(|b| b.checked_mul(n as u64));
        }
        let nbytes = nbytes.ok_or_else(|| bad(format!("dimensions {:?} overflow", info.ne)))?;
        if !info.offset.is_multiple_of(alignment) {
            return Err(bad(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                info.offset
            )));
        }
        let start = data_start
            .checked_add(info.offset)
            .ok_or_else(|| bad(format!("data offset {} overflows", info.offset)))?;
        let end = start
            .checked_add(nbytes)
            .filter(|&e| e <= file_len)
            .ok_or_else(|| {
                bad(format!(
                    "its {nbytes} bytes at offset {start} run past the end of the {file_len}-byte file"
                ))
            })?;
        stored.push(StoredTensor {
            name,
            dtype,
            ne,
            range: (start as usize, end as usize),
        });
    }
    let mut order: Vec<usize> = (0..stored.len()).collect();
    order.sort_by_key(|&i| stored[i].range);
    for w in order.windows(2) {
        let (a, b) = (&stored[w[0]], &stored[w[1]]);
        if b.range.0 < a.range.1 {
            return Err(corrupt(
                path,
                format!("tensors `{}` and `{}` overlap", a.name, b.name),
            ));
        }
    }
    Ok((version, metadata, stored))
}
