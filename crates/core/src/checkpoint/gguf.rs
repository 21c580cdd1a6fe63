//! GGUF files (llama.cpp's format, versions 2 and 3): validated, memory-mapped, dequantised to
//! `f64` on demand, with tensors exposed under their Hugging Face names.
//!
//! # Layout and validation
//!
//! A GGUF file is a header (`GGUF`, version, tensor count, metadata count), metadata key/value
//! pairs (integers, floats, bools, strings and arrays of them), tensor infos (name, dimensions,
//! ggml type, offset) and, after padding to `general.alignment` (32 by default), the tensor data.
//! Every count, length, dimension and offset is checked against the file before it is trusted:
//! counts must fit in the bytes left, strings and arrays must lie inside the file, a tensor's
//! first dimension must be a whole number of its type's blocks, its bytes must lie inside the
//! data section, offsets must be aligned and no two tensors may overlap. A malformed file is an
//! error naming the file (and tensor), never a panic or an out-of-bounds read.
//!
//! # Shapes
//!
//! GGUF lists dimensions innermost first (`ne[0]` is the length of a row). Shapes here are in
//! PyTorch order, the reverse: a GGUF `attn_q.weight` with `ne = [576, 192]` is a `[192, 576]`
//! matrix, the `[out_features, in_features]` of the Hugging Face `nn.Linear` it came from.
//!
//! # Types
//!
//! F32, F16, BF16, F64 and the block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
//! Q6_K and Q8_K are dequantised as ggml and gguf-py do, in `f32`, then widened ([`quants`]).
//! Integer tensors are indexed but not read as weights. Any other ggml type (the IQ and TQ
//! families, MXFP4, Q8_1) is an error when the file is opened, naming the tensor and the type.
//!
//! # Configuration
//!
//! [`GgufStore::config`] maps the metadata onto a [`ModelConfig`] in `config.json` terms:
//! `general.architecture` gives `model_type` (llama, qwen2, gemma, phi2 -> phi, falcon, gpt2,
//! gptneox -> gpt_neox, bloom, mpt; llama.cpp writes Mistral models as `llama`), and
//! `<arch>.embedding_length`, `.block_count`, `.attention.head_count`, `.head_count_kv`,
//! `.attention.key_length`, `.feed_forward_length`, `.context_length`, the norm epsilon and
//! `.rope.freq_base` give the dimensions. `f32` metadata values are converted to the shortest
//! decimal that round-trips (`1e-5`, not `9.999999747378752e-6`), which is what the converter
//! read from `config.json`. Other architectures (starcoder, gemma2, phi3, ...) open as a store
//! but have no configuration: [`GgufStore::config`] says the architecture is unsupported.
//!
//! # Tensor names and layouts
//!
//! Tensors of the supported architectures are exposed under the names the Hugging Face
//! checkpoint uses (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.q_proj.weight` for the
//! llama family), the GGUF name kept in [`TensorMeta::stored_name`]; other tensors keep their
//! GGUF name. Where llama.cpp's converter (`convert_hf_to_gguf.py`) changed a tensor, reading it
//! undoes the change when that can be done exactly, so the values are the Hugging Face ones:
//!
//! - **gpt_neox, bloom**: the converter reorders the fused `query_key_value` from Hugging Face's
//!   per-head interleaving `[q_0 k_0 v_0 q_1 k_1 v_1 ...]` into `[Q; K; V]`; the rows (and bias
//!   elements) are put back in per-head order.
//! - **falcon**: the converter regroups `query_key_value` from kv groups
//!   `[q.. k v][q.. k v]...` into `[Q; K; V]`; the rows are put back in group order (the
//!   identity for multi-query Falcon-7B).
//! - **gpt2**: `c_attn`, `c_proj` and `c_fc` are `Conv1D` weights stored `[in, out]`; the
//!   converter transposes them, so they are transposed back.
//! - **phi2**: a fused `attn_qkv` (converted from Microsoft's original `Wqkv`) is `[Q; K; V]`;
//!   Hugging Face's `phi` has separate `q_proj`, `k_proj`, `v_proj`, which are exposed as row
//!   ranges of it.
//! - **gemma**: the converter adds 1 to every `norm.weight` (Gemma's RMSNorm scales by `1 + w`);
//!   1 is subtracted back. The stored value was rounded to `f32` after the addition, so the
//!   result can differ from the original weight by up to half an `f32` ulp of `1 + w` (about
//!   6e-8).
//! - **mpt**: `Wqkv` is stored unchanged (`[Q; K; V]`, as Hugging Face's MPT splits it). MPT files
//!   with grouped key/value heads have no Hugging Face equivalent and are rejected.
//!
//! One change is *not* undone: for `llama` files the converter permutes the rows of W_Q and W_K
//! within each head (`LlamaModel.permute`: Hugging Face's rotate-half layout to the interleaved
//! pairs llama.cpp's rotary embedding expects). The permutation is a fixed reordering of the
//! `head_dim` output rows of each head's W_Q^h and W_K^g, the same for Q and K, so per-head and
//! whole-layer singular values, norms and the QK circuits `W_Q^h^T W_K^g` (where the permutation
//! cancels) are unaffected; only row-level comparisons against the Hugging Face tensors see it.
//! (Qwen2 and Gemma use the NeoX rotary layout and are not permuted.)

pub mod quants;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::{Map, Value};

use super::{CheckpointError, SourceFormat, TensorMeta, TensorStore};
use crate::config::ModelConfig;
use crate::dtype::DType;

/// Alignment of the data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's maximum number of dimensions.
const MAX_DIMS: u32 = 4;
/// Nesting depth of metadata arrays accepted.
const MAX_ARRAY_DEPTH: usize = 4;

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

    fn type_name(&self) -> &'static str {
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
fn ggml_type(id: u32) -> Option<(DType, usize, usize)> {
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
struct StoredTensor {
    name: String,
    dtype: DType,
    /// Dimensions as written, innermost first.
    ne: Vec<usize>,
    /// Absolute byte range in the file.
    range: (usize, usize),
}

impl StoredTensor {
    /// The shape in PyTorch order (reversed `ne`).
    fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().copied().collect()
    }
}

/// How an exposed tensor's values derive from a stored tensor's.
#[derive(Clone, Debug, PartialEq)]
enum Layout {
    /// The stored values as they are.
    AsStored,
    /// Runs `(first row, row count)` of the stored matrix (or elements of a vector), in order.
    Rows(Vec<(usize, usize)>),
    /// The transpose of the stored matrix.
    Transposed,
    /// The stored values plus a constant.
    Shift(f64),
}

/// An exposed tensor: which stored tensor it reads and how.
#[derive(Clone, Debug)]
struct Plan {
    stored: usize,
    layout: Layout,
}

/// The architectures whose configuration and tensor names are mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Gemma,
    Phi2,
    Falcon,
    Gpt2,
    GptNeox,
    Bloom,
    Mpt,
}

impl Arch {
    fn parse(name: &str) -> Option<Arch> {
        Some(match name {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            "gemma" => Arch::Gemma,
            "phi2" => Arch::Phi2,
            "falcon" => Arch::Falcon,
            "gpt2" => Arch::Gpt2,
            "gptneox" => Arch::GptNeox,
            "bloom" => Arch::Bloom,
            "mpt" => Arch::Mpt,
            _ => return None,
        })
    }

    /// The Hugging Face `model_type`.
    fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma => "gemma",
            Arch::Phi2 => "phi",
            Arch::Falcon => "falcon",
            Arch::Gpt2 => "gpt2",
            Arch::GptNeox => "gpt_neox",
            Arch::Bloom => "bloom",
            Arch::Mpt => "mpt",
        }
    }

    fn llama_family(self) -> bool {
        matches!(
            self,
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Gemma
        )
    }
}

const SUPPORTED_ARCHS: &str =
    "llama, mistral, qwen2, gemma, phi2, falcon, gpt2, gptneox, bloom, mpt";

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

fn corrupt(file: &Path, problem: impl Into<String>) -> CheckpointError {
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

/// A memory-mapped GGUF file: its metadata, its tensors and their Hugging Face names.
pub struct GgufStore {
    files: Vec<PathBuf>,
    map: Mmap,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    stored: Vec<StoredTensor>,
    tensors: Vec<TensorMeta>,
    plans: Vec<Plan>,
}

impl fmt::Debug for GgufStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufStore")
            .field("file", &self.files[0])
            .field("version", &self.version)
            .field("tensors", &self.stored.len())
            .finish()
    }
}

impl GgufStore {
    /// Opens and validates a GGUF file.
    pub fn open(path: &Path) -> Result<GgufStore, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and bytes are only copied out after bounds checks; as for
        // every memory-mapped reader, truncation by another process while mapped is outside what
        // this reader can defend against.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (version, metadata, stored) = parse(path, &map)?;
        let mut store = GgufStore {
            files: vec![path.to_path_buf()],
            map,
            version,
            metadata,
            stored,
            tensors: Vec::new(),
            plans: Vec::new(),
        };
        store.expose()?;
        Ok(store)
    }

    fn path(&self) -> &Path {
        &self.files[0]
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata key and value, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, CheckpointError> {
        match self.get("general.architecture") {
            Some(GgufValue::Str(s)) => Ok(s),
            Some(other) => Err(self.bad_key("general.architecture", "a string", other)),
            None => Err(corrupt(self.path(), "no `general.architecture` metadata")),
        }
    }

    fn bad_key(&self, key: &str, expected: &str, found: &GgufValue) -> CheckpointError {
        corrupt(
            self.path(),
            format!(
                "metadata `{key}` should be {expected}, found {} {found}",
                found.type_name()
            ),
        )
    }

    /// A non-negative integer under `key`, `None` when absent.
    fn uint(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad_key(key, "a non-negative integer", v)),
        }
    }

    /// A positive integer under `key`, an error naming it when absent.
    fn positive(&self, key: &str) -> Result<usize, CheckpointError> {
        match self.uint(key)? {
            Some(n) if n > 0 => Ok(n),
            Some(_) => {
                Err(self.bad_key(key, "a positive integer", self.get(key).expect("present")))
            }
            None => Err(corrupt(self.path(), format!("no `{key}` metadata"))),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad_key(key, "a float", v)),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, CheckpointError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad_key(key, "a bool", v)),
        }
    }

    fn has_stored(&self, name: &str) -> bool {
        self.stored.iter().any(|t| t.name == name)
    }

    /// Head counts and widths of an architecture with a fused QKV tensor.
    fn heads(&self, arch: &str) -> Result<(usize, usize, usize, usize), CheckpointError> {
        let d = self.positive(&format!("{arch}.embedding_length"))?;
        let n_head = self.positive(&format!("{arch}.attention.head_count"))?;
        let n_kv = self
            .uint(&format!("{arch}.attention.head_count_kv"))?
            .unwrap_or(n_head);
        if n_kv == 0 || !d.is_multiple_of(n_head) || !n_head.is_multiple_of(n_kv) {
            return Err(corrupt(
                self.path(),
                format!(
                    "{arch}: embedding length {d}, {n_head} heads and {n_kv} key/value heads do \
                     not divide evenly"
                ),
            ));
        }
        Ok((d, n_head, n_kv, d / n_head))
    }

    /// Builds the exposed tensors: Hugging Face names and layouts for the supported
    /// architectures, GGUF names otherwise.
    fn expose(&mut self) -> Result<(), CheckpointError> {
        let arch_name = match self.get("general.architecture") {
            Some(GgufValue::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let arch = Arch::parse(&arch_name);
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, t) in self.stored.clone().iter().enumerate() {
            let mapped = match arch {
                Some(a) => self.map_tensor(a, &arch_name, t)?,
                None => Vec::new(),
            };
            let entries = if mapped.is_empty() {
                vec![(t.name.clone(), Layout::AsStored, None)]
            } else {
                mapped
                    .into_iter()
                    .map(|(n, l)| (n, l, Some(t.name.clone())))
                    .collect()
            };
            for (name, layout, stored_name) in entries {
                let shape = layout_shape(&t.shape(), &layout);
                if let Some(&prev) = seen.get(&name) {
                    return Err(corrupt(
                        self.path(),
                        format!(
                            "tensors `{}` and `{}` both map to `{name}`",
                            self.stored[self.plans[prev].stored].name, t.name
                        ),
                    ));
                }
                seen.insert(name.clone(), self.tensors.len());
                self.tensors.push(TensorMeta {
                    name,
                    stored_name,
                    dtype: t.dtype,
                    shape,
                    file: 0,
                });
                self.plans.push(Plan { stored: i, layout });
            }
        }
        Ok(())
    }

    /// The Hugging Face name(s) and layout(s) of stored tensor `t`; empty when unmapped.
    fn map_tensor(
        &self,
        arch: Arch,
        arch_name: &str,
        t: &StoredTensor,
    ) -> Result<Vec<(String, Layout)>, CheckpointError> {
        let (base, suffix) = match t.name.rsplit_once('.') {
            Some((b, s)) if s == "weight" || s == "bias" => (b, s),
            _ => return Ok(Vec::new()),
        };
        let is_weight = suffix == "weight";
        let one = |hf: String, layout: Layout| Ok(vec![(format!("{hf}.{suffix}"), layout)]);
        let (block, part) = match base.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
            Some((n, part)) if n.parse::<usize>().is_ok() => (Some(n), part),
            _ => (None, base),
        };
        let Some(n) = block else {
            let hf = match (arch, part) {
                (a, "token_embd") if a.llama_family() => "model.embed_tokens",
                (a, "output_norm") if a.llama_family() => "model.norm",
                (Arch::Phi2, "token_embd") => "model.embed_tokens",
                (Arch::Phi2, "output_norm") => "model.final_layernorm",
                (Arch::Falcon, "token_embd") | (Arch::Bloom, "token_embd") => {
                    "transformer.word_embeddings"
                }
                (Arch::Bloom, "token_embd_norm") => "transformer.word_embeddings_layernorm",
                (Arch::Falcon | Arch::Gpt2 | Arch::Bloom, "output_norm") => "transformer.ln_f",
                (Arch::Gpt2 | Arch::Mpt, "token_embd") => "transformer.wte",
                (Arch::Gpt2 | Arch::Mpt, "position_embd") => "transformer.wpe",
                (Arch::Mpt, "output_norm") => "transformer.norm_f",
                (Arch::GptNeox, "token_embd") => "gpt_neox.embed_in",
                (Arch::GptNeox, "output_norm") => "gpt_neox.final_layer_norm",
                (Arch::GptNeox, "output") => "embed_out",
                (_, "output") => "lm_head",
                _ => return Ok(Vec::new()),
            };
            let layout = if arch == Arch::Gemma && part == "output_norm" && is_weight {
                Layout::Shift(-1.0)
            } else {
                Layout::AsStored
            };
            return one(hf.to_string(), layout);
        };
        let two_d = t.ne.len() == 2;
        match arch {
            a if a.llama_family() => {
                let module = match part {
                    "attn_norm" => "input_layernorm",
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "ffn_norm" => "post_attention_layernorm",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    _ => return Ok(Vec::new()),
                };
                let layout = if a == Arch::Gemma && part.ends_with("_norm") && is_weight {
                    Layout::Shift(-1.0)
                } else {
                    Layout::AsStored
                };
                one(format!("model.layers.{n}.{module}"), layout)
            }
            Arch::Phi2 => {
                let prefix = format!("model.layers.{n}");
                if part == "attn_qkv" {
                    let (_, n_head, n_kv, hd) = self.heads(arch_name)?;
                    let rows = [n_head * hd, n_kv * hd, n_kv * hd];
                    self.check_rows(t, rows.iter().sum())?;
                    let mut start = 0;
                    let mut out = Vec::new();
                    for (proj, len) in ["q_proj", "k_proj", "v_proj"].iter().zip(rows) {
                        out.push((
                            format!("{prefix}.self_attn.{proj}.{suffix}"),
                            Layout::Rows(vec![(start, len)]),
                        ));
                        start += len;
                    }
                    return Ok(out);
                }
                let module = match part {
                    "attn_norm" => "input_layernorm",
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.dense",
                    "ffn_up" => "mlp.fc1",
                    "ffn_down" => "mlp.fc2",
                    _ => return Ok(Vec::new()),
                };
                one(format!("{prefix}.{module}"), Layout::AsStored)
            }
            Arch::Falcon => {
                let prefix = format!("transformer.h.{n}");
                let module = match part {
                    "attn_norm" if self.has_stored(&format!("blk.{n}.attn_norm_2.weight")) => {
                        "ln_attn"
                    }
                    "attn_norm" => "input_layernorm",
                    "attn_norm_2" => "ln_mlp",
                    "attn_qkv" => {
                        if let Some(layout) = self.get("falcon.tensor_data_layout")
                            && layout.as_str() != Some("jploski")
                        {
                            return Err(corrupt(
                                self.path(),
                                format!(
                                    "falcon.tensor_data_layout is {layout}; only llama.cpp's \
                                     `jploski` QKV layout can be mapped back to Hugging Face's"
                                ),
                            ));
                        }
                        let (_, n_head, n_kv, hd) = self.heads(arch_name)?;
                        self.check_rows(t, (n_head + 2 * n_kv) * hd)?;
                        let r = n_head / n_kv;
                        let mut runs = Vec::new();
                        for g in 0..n_kv {
                            runs.push((g * r * hd, r * hd));
                            runs.push(((n_head + g) * hd, hd));
                            runs.push(((n_head + n_kv + g) * hd, hd));
                        }
                        return one(
                            format!("{prefix}.self_attention.query_key_value"),
                            Layout::Rows(runs),
                        );
                    }
                    "attn_output" => "self_attention.dense",
                    "ffn_up" => "mlp.dense_h_to_4h",
                    "ffn_down" => "mlp.dense_4h_to_h",
                    _ => return Ok(Vec::new()),
                };
                one(format!("{prefix}.{module}"), Layout::AsStored)
            }
            Arch::GptNeox | Arch::Bloom => {
                let prefix = if arch == Arch::GptNeox {
                    format!("gpt_neox.layers.{n}")
                } else {
                    format!("transformer.h.{n}")
                };
                let attn = if arch == Arch::GptNeox {
                    "attention"
                } else {
                    "self_attention"
                };
                let module = match part {
                    "attn_norm" => "input_layernorm".to_string(),
                    "attn_qkv" => {
                        let (d, n_head, n_kv, hd) = self.heads(arch_name)?;
                        if n_kv != n_head {
                            return Err(corrupt(
                                self.path(),
                                format!(
                                    "tensor `{}`: {arch_name} with {n_kv} key/value heads for \
                                     {n_head} heads has no Hugging Face fused layout",
                                    t.name
                                ),
                            ));
                        }
                        self.check_rows(t, 3 * d)?;
                        let runs = (0..n_head)
                            .flat_map(|h| [(h * hd, hd), (d + h * hd, hd), (2 * d + h * hd, hd)])
                            .collect();
                        return one(
                            format!("{prefix}.{attn}.query_key_value"),
                            Layout::Rows(runs),
                        );
                    }
                    "attn_output" => format!("{attn}.dense"),
                    "ffn_norm" => "post_attention_layernorm".to_string(),
                    "ffn_up" => "mlp.dense_h_to_4h".to_string(),
                    "ffn_down" => "mlp.dense_4h_to_h".to_string(),
                    _ => return Ok(Vec::new()),
                };
                one(format!("{prefix}.{module}"), Layout::AsStored)
            }
            Arch::Gpt2 => {
                let (module, conv1d) = match part {
                    "attn_norm" => ("ln_1", false),
                    "attn_qkv" => ("attn.c_attn", true),
                    "attn_output" => ("attn.c_proj", true),
                    "ffn_norm" => ("ln_2", false),
                    "ffn_up" => ("mlp.c_fc", true),
                    "ffn_down" => ("mlp.c_proj", true),
                    _ => return Ok(Vec::new()),
                };
                let layout = if conv1d && is_weight {
                    if !two_d {
                        return Err(corrupt(
                            self.path(),
                            format!("tensor `{}` should be a matrix", t.name),
                        ));
                    }
                    Layout::Transposed
                } else {
                    Layout::AsStored
                };
                one(format!("transformer.h.{n}.{module}"), layout)
            }
            Arch::Mpt => {
                let module = match part {
                    "attn_norm" => "norm_1",
                    "attn_qkv" => {
                        let (d, n_head, n_kv, _) = self.heads(arch_name)?;
                        if n_kv != n_head {
                            return Err(corrupt(
                                self.path(),
                                format!(
                                    "tensor `{}`: MPT with {n_kv} key/value heads for {n_head} \
                                     heads has no Hugging Face equivalent",
                                    t.name
                                ),
                            ));
                        }
                        self.check_rows(t, 3 * d)?;
                        "attn.Wqkv"
                    }
                    "attn_output" => "attn.out_proj",
                    "ffn_norm" => "norm_2",
                    "ffn_up" => "ffn.up_proj",
                    "ffn_down" => "ffn.down_proj",
                    _ => return Ok(Vec::new()),
                };
                one(format!("transformer.blocks.{n}.{module}"), Layout::AsStored)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A fused tensor must have `rows` rows (a matrix) or elements (a bias vector).
    fn check_rows(&self, t: &StoredTensor, rows: usize) -> Result<(), CheckpointError> {
        let have = t.shape()[0];
        if t.ne.len() > 2 || have != rows {
            return Err(corrupt(
                self.path(),
                format!(
                    "tensor `{}` has shape {:?}; the head counts in the metadata need {rows} rows, \
                     so its fused layout cannot be mapped faithfully",
                    t.name,
                    t.shape()
                ),
            ));
        }
        Ok(())
    }

    /// The model configuration in `config.json` terms, built from the metadata on top of
    /// `base` (a `config.json` next to the file) when given: GGUF values win where both have one.
    pub fn config(&self, base: Option<&ModelConfig>) -> Result<ModelConfig, CheckpointError> {
        let arch_name = self.architecture()?.to_string();
        let arch = Arch::parse(&arch_name).ok_or_else(|| {
            corrupt(
                self.path(),
                format!(
                    "architecture `{arch_name}` is not supported (supported: {SUPPORTED_ARCHS})"
                ),
            )
        })?;
        let a = arch_name.as_str();
        let key = |k: &str| format!("{a}.{k}");
        let mut c: Map<String, Value> = base.map(|b| b.raw().clone()).unwrap_or_default();
        let mut set = |k: &str, v: Value| {
            c.insert(k.to_string(), v);
        };
        set("model_type", arch.model_type().into());
        let d = self.positive(&key("embedding_length"))?;
        let n_head = self.positive(&key("attention.head_count"))?;
        let n_layer = self.positive(&key("block_count"))?;
        let n_kv = self.uint(&key("attention.head_count_kv"))?;
        set("hidden_size", d.into());
        set("num_attention_heads", n_head.into());
        set("num_hidden_layers", n_layer.into());
        set("num_key_value_heads", n_kv.unwrap_or(n_head).into());
        let head_dim = self.uint(&key("attention.key_length"))?;
        if let Some(hd) = head_dim {
            set("head_dim", hd.into());
        }
        let ffn = self.uint(&key("feed_forward_length"))?;
        if let Some(f) = ffn {
            set("intermediate_size", f.into());
        }
        let ctx = self.uint(&key("context_length"))?;
        if let Some(n) = ctx {
            set("max_position_embeddings", n.into());
        }
        if let Some(theta) = self.float(&key("rope.freq_base"))? {
            set("rope_theta", theta.into());
        }
        let rms_eps = self.float(&key("attention.layer_norm_rms_epsilon"))?;
        if let Some(eps) = rms_eps {
            set("rms_norm_eps", eps.into());
        }
        let ln_eps = self.float(&key("attention.layer_norm_epsilon"))?;
        let vocab = match self.uint(&key("vocab_size"))? {
            Some(v) => Some(v),
            None => match self.stored.iter().find(|t| t.name == "token_embd.weight") {
                Some(t) => t.shape().first().copied(),
                None => match self.get("tokenizer.ggml.tokens") {
                    Some(GgufValue::Array(items)) => Some(items.len()),
                    _ => None,
                },
            },
        };
        if let Some(v) = vocab {
            set("vocab_size", v.into());
        }
        set(
            "tie_word_embeddings",
            (!self.has_stored("output.weight")).into(),
        );
        let rot_dims = self.uint(&key("rope.dimension_count"))?;
        let head = head_dim.unwrap_or(d / n_head);
        let rotary_fraction = rot_dims
            .filter(|_| head > 0)
            .map(|r| r as f64 / head as f64);
        match arch {
            Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Gemma => {}
            Arch::Phi2 => {
                if let Some(f) = rotary_fraction {
                    set("partial_rotary_factor", f.into());
                }
                if let Some(eps) = ln_eps {
                    set("layer_norm_eps", eps.into());
                }
            }
            Arch::Falcon => {
                let kv = n_kv.unwrap_or(1);
                set("num_kv_heads", kv.into());
                set("multi_query", (kv == 1).into());
                set("new_decoder_architecture", (kv > 1).into());
                set("parallel_attn", true.into());
                set("alibi", false.into());
                set("bias", self.has_stored("blk.0.attn_qkv.bias").into());
                // Falcon-40B style blocks normalise attention and MLP inputs separately.
                let two_norms = self.has_stored("blk.0.attn_norm_2.weight");
                set(
                    "num_ln_in_parallel_attn",
                    if two_norms { 2 } else { 1 }.into(),
                );
                if let Some(eps) = ln_eps {
                    set("layer_norm_epsilon", eps.into());
                }
            }
            Arch::Gpt2 => {
                set("n_embd", d.into());
                set("n_head", n_head.into());
                set("n_layer", n_layer.into());
                if let Some(n) = ctx {
                    set("n_positions", n.into());
                }
                if let Some(f) = ffn {
                    set("n_inner", f.into());
                }
                if let Some(eps) = ln_eps {
                    set("layer_norm_epsilon", eps.into());
                }
            }
            Arch::GptNeox => {
                if let Some(f) = rotary_fraction {
                    set("rotary_pct", f.into());
                }
                if let Some(p) = self.boolean(&key("use_parallel_residual"))? {
                    set("use_parallel_residual", p.into());
                }
                if let Some(eps) = ln_eps {
                    set("layer_norm_eps", eps.into());
                }
            }
            Arch::Bloom => {
                set("n_head", n_head.into());
                set("n_layer", n_layer.into());
                if let Some(eps) = ln_eps {
                    set("layer_norm_epsilon", eps.into());
                }
            }
            Arch::Mpt => {
                set("d_model", d.into());
                set("n_heads", n_head.into());
                set("n_layers", n_layer.into());
                if let Some(n) = ctx {
                    set("max_seq_len", n.into());
                }
                if let Some(eps) = ln_eps {
                    set("layer_norm_epsilon", eps.into());
                }
                let mut attn = Map::new();
                attn.insert(
                    "alibi".into(),
                    (!self.has_stored("position_embd.weight")).into(),
                );
                if let Some(b) = self.float(&key("attention.max_alibi_bias"))? {
                    attn.insert("alibi_bias_max".into(), b.into());
                }
                if let Some(clip) = self.float(&key("attention.clamp_kqv"))? {
                    attn.insert("clip_qkv".into(), clip.into());
                }
                set("attn_config", Value::Object(attn));
            }
        }
        ModelConfig::from_value(self.path(), Value::Object(c)).map_err(CheckpointError::from)
    }

    /// Dequantises stored tensor `i` to `f64` in its stored (row-major PyTorch) order.
    fn dequantize(&self, i: usize, exposed: &str) -> Result<Vec<f64>, CheckpointError> {
        let t = &self.stored[i];
        let is_float = t.dtype.is_plain_float() || quants::block_layout(t.dtype).is_some();
        if !is_float {
            return Err(CheckpointError::UnsupportedDType {
                tensor: exposed.to_string(),
                file: self.path().to_path_buf(),
                dtype: t.dtype,
            });
        }
        // The range was validated against the file and the type's block size when opened.
        let bytes = &self.map[t.range.0..t.range.1];
        let mut out = Vec::with_capacity(t.ne.iter().product());
        quants::dequantize(t.dtype, bytes, &mut out).ok_or_else(|| {
            corrupt(
                self.path(),
                format!(
                    "tensor `{}`: {} bytes are not whole {} blocks",
                    t.name,
                    bytes.len(),
                    t.dtype
                ),
            )
        })?;
        Ok(out)
    }
}

/// The PyTorch-order shape of a stored tensor of `shape` read through `layout`.
fn layout_shape(shape: &[usize], layout: &Layout) -> Vec<usize> {
    match layout {
        Layout::AsStored | Layout::Shift(_) => shape.to_vec(),
        Layout::Transposed => shape.iter().rev().copied().collect(),
        Layout::Rows(runs) => {
            let mut s = shape.to_vec();
            s[0] = runs.iter().map(|r| r.1).sum();
            s
        }
    }
}

/// Parses and validates the header, metadata and tensor infos of `map`.
#[allow(clippy::type_complexity)]
fn parse(
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

impl TensorStore for GgufStore {
    fn format(&self) -> SourceFormat {
        SourceFormat::Gguf
    }

    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    fn read(&self, index: usize) -> Result<Vec<f64>, CheckpointError> {
        let plan = &self.plans[index];
        let meta = &self.tensors[index];
        let t = &self.stored[plan.stored];
        let values = self.dequantize(plan.stored, &meta.name)?;
        Ok(match &plan.layout {
            Layout::AsStored => values,
            Layout::Shift(s) => values.into_iter().map(|v| v + s).collect(),
            Layout::Transposed => {
                let shape = t.shape();
                let (rows, cols) = (shape[0], shape[1]);
                let mut out = vec![0.0; values.len()];
                for r in 0..rows {
                    for c in 0..cols {
                        out[c * rows + r] = values[r * cols + c];
                    }
                }
                out
            }
            Layout::Rows(runs) => {
                let row_len: usize = t.shape()[1..].iter().product();
                let mut out = Vec::with_capacity(meta.numel());
                // Runs were checked against the row count when the file was opened.
                for &(start, len) in runs {
                    out.extend_from_slice(&values[start * row_len..(start + len) * row_len]);
                }
                out
            }
        })
    }
}

/// Writes a GGUF file: used by tests to build small, possibly malformed, files.
///
/// `metadata` values are written with their own types; `tensors` are (name, ggml type id, ne
/// innermost first, bytes), laid out in order at the default alignment.
pub fn write_file(
    path: &Path,
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, u32, Vec<u64>, Vec<u8>)],
) -> std::io::Result<()> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn type_id(v: &GgufValue) -> u32 {
        match v {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::Str(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }
    fn value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(*x as u8),
            GgufValue::Str(s) => string(out, s),
            GgufValue::Array(items) => {
                let elem = items.first().map(type_id).unwrap_or(0);
                out.extend_from_slice(&elem.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    value(out, item);
                }
            }
        }
    }
    let align = DEFAULT_ALIGNMENT as usize;
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        string(&mut out, k);
        out.extend_from_slice(&type_id(v).to_le_bytes());
        value(&mut out, v);
    }
    let mut offset = 0usize;
    for (name, ty, ne, bytes) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
        for n in ne {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += bytes.len().div_ceil(align) * align;
    }
    out.resize(out.len().div_ceil(align) * align, 0);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(align) * align, 0);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn s(v: &str) -> GgufValue {
        GgufValue::Str(v.into())
    }

    fn open_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        match GgufStore::open(&path) {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("m.gguf"), "{e}");
                e
            }
        }
    }

    fn written(
        metadata: &[(&str, GgufValue)],
        tensors: &[(&str, u32, Vec<u64>, Vec<u8>)],
    ) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        write_file(&path, metadata, tensors).unwrap();
        std::fs::read(path).unwrap()
    }

    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, GgufStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        let store = GgufStore::open(&path).unwrap();
        (dir, store)
    }

    /// A header: magic, version, tensor count, metadata count.
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b
    }

    #[test]
    fn reads_metadata_of_every_type_and_a_tensor() {
        let md = vec![
            ("general.architecture", s("test")),
            ("u8", GgufValue::U8(7)),
            ("i8", GgufValue::I8(-7)),
            ("u16", GgufValue::U16(700)),
            ("i16", GgufValue::I16(-700)),
            ("u32", GgufValue::U32(70000)),
            ("i32", GgufValue::I32(-70000)),
            ("u64", GgufValue::U64(1 << 40)),
            ("i64", GgufValue::I64(-(1 << 40))),
            ("f32", GgufValue::F32(1e-5)),
            ("f64", GgufValue::F64(0.1)),
            ("bool", GgufValue::Bool(true)),
            (
                "arr",
                GgufValue::Array(vec![
                    GgufValue::Array(vec![s("a"), s("b")]),
                    GgufValue::Array(vec![]),
                ]),
            ),
        ];
        let bytes = written(
            &md,
            &[("w", 0, vec![3, 2], f32_bytes(&[1., 2., 3., 4., 5., 6.]))],
        );
        let (_d, store) = open_bytes(&bytes);
        for (k, v) in &md {
            assert_eq!(store.get(k), Some(v), "{k}");
        }
        assert_eq!(store.get("f32").unwrap().as_f64(), Some(1e-5));
        assert_eq!(store.tensors()[0].shape, vec![2, 3]);
        assert_eq!(store.read(0).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
        let e = store.config(None).unwrap_err().to_string();
        assert!(e.contains("`test` is not supported"), "{e}");
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(open_err(b"GGUF").contains("too short"));
        let mut b = header(3, 0, 0);
        b[0] = b'X';
        assert!(open_err(&b).contains("magic"));
        assert!(open_err(&header(1, 0, 0)).contains("version 1"));
        assert!(open_err(&header(7, 0, 0)).contains("version 7"));
        assert!(open_err(&header(3u32.swap_bytes(), 0, 0)).contains("big-endian"));
        assert!(open_err(&header(3, u64::MAX, 0)).contains("tensors"));
        assert!(open_err(&header(3, 0, 1 << 40)).contains("metadata entries"));
    }

    #[test]
    fn rejects_absurd_lengths_in_metadata() {
        let good = written(&[("k", s("value"))], &[]);
        // Truncations anywhere are errors.
        for cut in 24..24 + (8 + 1) + 4 + (8 + 5) {
            let _ = open_err(&good[..cut]);
        }
        // A string length far past the end.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
        b.extend_from_slice(&[0; 32]);
        assert!(open_err(&b).contains("runs past the end"));
        // An array claiming 2^40 elements.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(open_err(&b).contains("cannot fit"));
        // Unknown value type, bad bool, deep nesting.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&13u32.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        assert!(open_err(&b).contains("unknown value type 13"));
        let mut bad_bool = written(&[("k", GgufValue::Bool(true))], &[]);
        bad_bool[24 + 8 + 1 + 4] = 2; // header, key length, key, value type

        assert!(open_err(&bad_bool).contains("neither 0 nor 1"));
        let mut deep = GgufValue::Array(vec![GgufValue::U8(1)]);
        for _ in 0..MAX_ARRAY_DEPTH {
            deep = GgufValue::Array(vec![deep]);
        }
        assert!(open_err(&written(&[("k", deep)], &[])).contains("nested deeper"));
        let dup = written(&[("k", GgufValue::U8(1)), ("k", GgufValue::U8(2))], &[]);
        assert!(open_err(&dup).contains("appears twice"));
    }

    #[test]
    fn rejects_bad_tensor_infos() {
        let w = |name, ty, ne: Vec<u64>, bytes| written(&[], &[(name, ty, ne, bytes)]);
        // Data past the end: drop the last bytes of a valid file.
        let good = w("w", 0, vec![8], f32_bytes(&[0.0; 8]));
        let e = open_err(&good[..good.len() - 4]);
        assert!(e.contains("`w`") && e.contains("past the end"), "{e}");
        let e = open_err(&w("w", 16, vec![256], vec![0; 66]));
        assert!(e.contains("`w`") && e.contains("IQ2_XXS"), "{e}");
        let e = open_err(&w("w", 99, vec![1], vec![0; 4]));
        assert!(e.contains("`w`") && e.contains("unknown (99)"), "{e}");
        let e = open_err(&w("w", 2, vec![16], vec![0; 18]));
        assert!(e.contains("block size 32"), "{e}");
        let e = open_err(&w("w", 0, vec![1, 1, 1, 1, 1], vec![0; 4]));
        assert!(e.contains("5 dimensions"), "{e}");
        let e = open_err(&w("w", 0, vec![1 << 62, 1 << 62], vec![0; 4]));
        assert!(e.contains("overflow"), "{e}");
        let e = open_err(&w("w", 0, vec![u64::MAX], vec![0; 4]));
        assert!(e.contains("`w`"), "{e}");
        // Misaligned offsets, overlaps and duplicates, by editing the offsets of a valid file.
        let two = written(
            &[],
            &[
                ("a", 0, vec![8], f32_bytes(&[1.0; 8])),
                ("b", 0, vec![8], f32_bytes(&[2.0; 8])),
            ],
        );
        let b_offset_at = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4);
        let mut misaligned = two.clone();
        misaligned[b_offset_at] = 4;
        assert!(open_err(&misaligned).contains("not a multiple of the alignment"));
        let mut overlap = two.clone();
        overlap[b_offset_at] = 0;
        assert!(open_err(&overlap).contains("overlap"));
        let mut dup = two.clone();
        dup[24 + (8 + 1 + 4 + 8 + 4 + 8) + 8] = b'a';
        assert!(open_err(&dup).contains("appears twice"));
        let (_d, store) = open_bytes(&two);
        assert_eq!(store.read(1).unwrap(), vec![2.0; 8]);
    }

    #[test]
    fn alignment_must_be_a_power_of_two() {
        let e = open_err(&written(&[("general.alignment", GgufValue::U32(24))], &[]));
        assert!(e.contains("power of two"), "{e}");
    }

    #[test]
    fn integer_tensors_are_indexed_but_not_read() {
        let (_d, store) = open_bytes(&written(&[], &[("ids", 26, vec![2], vec![0; 8])]));
        assert_eq!(store.tensors()[0].dtype, DType::I32);
        let e = store.read(0).unwrap_err().to_string();
        assert!(e.contains("`ids`") && e.contains("I32"), "{e}");
    }

    fn arch_file(arch: &str, extra: &[(&str, GgufValue)], tensors: &[(&str, Vec<u64>)]) -> Vec<u8> {
        let mut md = vec![("general.architecture", s(arch))];
        md.extend(extra.iter().cloned());
        let data: Vec<(String, Vec<u64>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, ne)| {
                let count: u64 = ne.iter().product();
                let values: Vec<f32> = (0..count).map(|i| i as f32).collect();
                (n.to_string(), ne.clone(), f32_bytes(&values))
            })
            .collect();
        let t: Vec<(&str, u32, Vec<u64>, Vec<u8>)> = data
            .iter()
            .map(|(n, ne, b)| (n.as_str(), 0, ne.clone(), b.clone()))
            .collect();
        written(&md, &t)
    }

    fn by_name<'a>(store: &'a GgufStore, name: &str) -> (usize, &'a TensorMeta) {
        store
            .tensors()
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name)
            .unwrap_or_else(|| panic!("no `{name}`"))
    }

    #[test]
    fn llama_names_shapes_and_config() {
        let u32v = GgufValue::U32;
        let bytes = arch_file(
            "llama",
            &[
                ("llama.embedding_length", u32v(8)),
                ("llama.block_count", u32v(1)),
                ("llama.attention.head_count", u32v(2)),
                ("llama.attention.head_count_kv", u32v(1)),
                (
                    "llama.attention.layer_norm_rms_epsilon",
                    GgufValue::F32(1e-5),
                ),
                ("llama.rope.freq_base", GgufValue::F32(10000.0)),
            ],
            &[
                ("token_embd.weight", vec![8, 5]),
                ("blk.0.attn_q.weight", vec![8, 8]),
                ("blk.0.attn_k.weight", vec![8, 4]),
                ("blk.0.attn_output.weight", vec![8, 8]),
                ("blk.0.attn_norm.weight", vec![8]),
                ("rope_freqs.weight", vec![2]),
            ],
        );
        let (_d, store) = open_bytes(&bytes);
        let (_, q) = by_name(&store, "model.layers.0.self_attn.q_proj.weight");
        assert_eq!(q.stored_name(), "blk.0.attn_q.weight");
        let (k_i, k) = by_name(&store, "model.layers.0.self_attn.k_proj.weight");
        assert_eq!(k.shape, vec![4, 8]);
        assert_eq!(store.read(k_i).unwrap()[9], 9.0);
        by_name(&store, "model.layers.0.input_layernorm.weight");
        by_name(&store, "model.embed_tokens.weight");
        by_name(&store, "rope_freqs.weight");
        let c = store.config(None).unwrap();
        assert_eq!(c.model_type().unwrap(), "llama");
        let raw = c.raw();
        assert_eq!(raw["hidden_size"], 8);
        assert_eq!(raw["num_key_value_heads"], 1);
        assert_eq!(raw["vocab_size"], 5);
        assert_eq!(raw["rms_norm_eps"], 1e-5);
        assert_eq!(raw["rope_theta"], 10000.0);
        assert_eq!(raw["tie_word_embeddings"], true);
        // config.json values survive unless GGUF has its own.
        let base = ModelConfig::from_slice(
            Path::new("config.json"),
            br#"{"hidden_size": 99, "architectures": ["LlamaForCausalLM"]}"#,
        )
        .unwrap();
        let c = store.config(Some(&base)).unwrap();
        assert_eq!(c.raw()["hidden_size"], 8);
        assert_eq!(c.raw()["architectures"][0], "LlamaForCausalLM");
    }

    #[test]
    fn gemma_norms_lose_the_added_one() {
        let bytes = arch_file(
            "gemma",
            &[],
            &[
                ("blk.0.attn_norm.weight", vec![4]),
                ("output_norm.weight", vec![4]),
            ],
        );
        let (_d, store) = open_bytes(&bytes);
        let (i, _) = by_name(&store, "model.layers.0.input_layernorm.weight");
        assert_eq!(store.read(i).unwrap(), vec![-1., 0., 1., 2.]);
        let (i, _) = by_name(&store, "model.norm.weight");
        assert_eq!(store.read(i).unwrap(), vec![-1., 0., 1., 2.]);
    }

    /// Stored row r of a fused tensor holds values r*cols..(r+1)*cols; the first value of each
    /// exposed row therefore names the stored row it came from.
    fn first_of_rows(values: &[f64], cols: usize) -> Vec<usize> {
        values.chunks(cols).map(|r| r[0] as usize / cols).collect()
    }

    #[test]
    fn fused_qkv_layouts_are_restored() {
        let u32v = GgufValue::U32;
        // gpt_neox: 2 heads of width 2, d = 4: stored [Q0 Q1 K0 K1 V0 V1] (rows of 2).
        let bytes = arch_file(
            "gptneox",
            &[
                ("gptneox.embedding_length", u32v(4)),
                ("gptneox.attention.head_count", u32v(2)),
            ],
            &[
                ("blk.0.attn_qkv.weight", vec![4, 12]),
                ("blk.0.attn_qkv.bias", vec![12]),
            ],
        );
        let (_d, store) = open_bytes(&bytes);
        let (i, t) = by_name(&store, "gpt_neox.layers.0.attention.query_key_value.weight");
        assert_eq!(t.shape, vec![12, 4]);
        let rows = first_of_rows(&store.read(i).unwrap(), 4);
        assert_eq!(rows, vec![0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);
        let (i, _) = by_name(&store, "gpt_neox.layers.0.attention.query_key_value.bias");
        let bias: Vec<usize> = store.read(i).unwrap().iter().map(|&v| v as usize).collect();
        assert_eq!(bias, vec![0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);

        // falcon: 4 heads, 2 kv heads, head width 1, d = 4: stored [Q0..Q3 K0 K1 V0 V1];
        // Hugging Face groups [Q0 Q1 K0 V0][Q2 Q3 K1 V1].
        let bytes = arch_file(
            "falcon",
            &[
                ("falcon.embedding_length", u32v(4)),
                ("falcon.attention.head_count", u32v(4)),
                ("falcon.attention.head_count_kv", u32v(2)),
                ("falcon.block_count", u32v(1)),
            ],
            &[
                ("blk.0.attn_qkv.weight", vec![4, 8]),
                ("blk.0.attn_norm_2.weight", vec![4]),
                ("blk.0.attn_norm.weight", vec![4]),
            ],
        );
        let (_d, store) = open_bytes(&bytes);
        let (i, _) = by_name(
            &store,
            "transformer.h.0.self_attention.query_key_value.weight",
        );
        let rows = first_of_rows(&store.read(i).unwrap(), 4);
        assert_eq!(rows, vec![0, 1, 4, 6, 2, 3, 5, 7]);
        by_name(&store, "transformer.h.0.ln_attn.weight");
        by_name(&store, "transformer.h.0.ln_mlp.weight");
        let c = store.config(None).unwrap();
        assert_eq!(c.raw()["new_decoder_architecture"], true);
        assert_eq!(c.raw()["num_kv_heads"], 2);

        // gpt2: Conv1D weights come back transposed to [in, out].
        let bytes = arch_file(
            "gpt2",
            &[
                ("gpt2.embedding_length", u32v(2)),
                ("gpt2.attention.head_count", u32v(1)),
            ],
            &[("blk.0.attn_qkv.weight", vec![2, 6])],
        );
        let (_d, store) = open_bytes(&bytes);
        let (i, t) = by_name(&store, "transformer.h.0.attn.c_attn.weight");
        assert_eq!(t.shape, vec![2, 6]);
        assert_eq!(
            store.read(i).unwrap(),
            vec![0., 2., 4., 6., 8., 10., 1., 3., 5., 7., 9., 11.]
        );

        // phi2: a fused attn_qkv is split into q_proj, k_proj, v_proj.
        let bytes = arch_file(
            "phi2",
            &[
                ("phi2.embedding_length", u32v(2)),
                ("phi2.attention.head_count", u32v(2)),
            ],
            &[("blk.0.attn_qkv.weight", vec![2, 6])],
        );
        let (_d, store) = open_bytes(&bytes);
        let (i, t) = by_name(&store, "model.layers.0.self_attn.k_proj.weight");
        assert_eq!(t.shape, vec![2, 2]);
        assert_eq!(t.stored_name(), "blk.0.attn_qkv.weight");
        assert_eq!(store.read(i).unwrap(), vec![4., 5., 6., 7.]);
    }

    #[test]
    fn unmappable_fused_layouts_are_rejected() {
        let u32v = GgufValue::U32;
        let bytes = arch_file(
            "bloom",
            &[
                ("bloom.embedding_length", u32v(4)),
                ("bloom.attention.head_count", u32v(2)),
            ],
            &[("blk.0.attn_qkv.weight", vec![4, 10])],
        );
        let e = open_err(&bytes);
        assert!(
            e.contains("blk.0.attn_qkv.weight") && e.contains("faithfully"),
            "{e}"
        );
        let bytes = arch_file(
            "mpt",
            &[
                ("mpt.embedding_length", u32v(4)),
                ("mpt.attention.head_count", u32v(2)),
                ("mpt.attention.head_count_kv", u32v(1)),
            ],
            &[("blk.0.attn_qkv.weight", vec![4, 8])],
        );
        assert!(open_err(&bytes).contains("no Hugging Face equivalent"));
        let bytes = arch_file(
            "falcon",
            &[
                ("falcon.embedding_length", u32v(4)),
                ("falcon.attention.head_count", u32v(4)),
                ("falcon.tensor_data_layout", s("other")),
            ],
            &[("blk.0.attn_qkv.weight", vec![4, 6])],
        );
        assert!(open_err(&bytes).contains("tensor_data_layout"));
    }
    /// For every fused architecture, the registry's canonical W_Q, W_K, W_V (read through the
    /// Hugging Face names and layouts restored here) must be exactly GGUF's Q, K and V row
    /// blocks: llama.cpp stores all of them as [Q; K; V].
    #[test]
    fn registry_reads_fused_architectures_back_to_gguf_blocks() {
        use crate::arch::Architecture;
        use crate::checkpoint::Checkpoint;
        use crate::matrix::Matrix;
        let u32v = GgufValue::U32;
        let cases: Vec<(&str, usize, usize, usize, bool)> = vec![
            // (arch, d, heads, kv heads, second attention norm)
            ("gptneox", 8, 2, 2, false),
            ("bloom", 8, 2, 2, false),
            ("falcon", 8, 4, 2, true),
            ("falcon", 8, 4, 1, false),
            ("mpt", 8, 2, 2, false),
            ("gpt2", 8, 2, 2, false),
            ("phi2", 8, 2, 2, false),
        ];
        for (arch, d, n_head, n_kv, norm2) in cases {
            let hd = d / n_head;
            let rows = (n_head + 2 * n_kv) * hd;
            let key = |k: &str| format!("{arch}.{k}");
            let (k_embd, k_heads, k_kv, k_blocks) = (
                key("embedding_length"),
                key("attention.head_count"),
                key("attention.head_count_kv"),
                key("block_count"),
            );
            let md = [
                (k_embd.as_str(), u32v(d as u32)),
                (k_heads.as_str(), u32v(n_head as u32)),
                (k_kv.as_str(), u32v(n_kv as u32)),
                (k_blocks.as_str(), u32v(1)),
            ];
            let mut tensors = vec![
                ("blk.0.attn_qkv.weight", vec![d as u64, rows as u64]),
                ("blk.0.attn_output.weight", vec![d as u64, d as u64]),
                ("blk.0.attn_norm.weight", vec![d as u64]),
                ("blk.0.attn_norm.bias", vec![d as u64]),
            ];
            if norm2 {
                tensors.push(("blk.0.attn_norm_2.weight", vec![d as u64]));
                tensors.push(("blk.0.attn_norm_2.bias", vec![d as u64]));
            }
            let bytes = arch_file(arch, &md, &tensors);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.gguf");
            std::fs::write(&path, bytes).unwrap();
            let ckpt = Checkpoint::open(&path).unwrap();
            let a = Architecture::detect(ckpt.config()).unwrap_or_else(|e| panic!("{arch}: {e}"));
            let layer = a.layer(&ckpt, 0).unwrap_or_else(|e| panic!("{arch}: {e}"));
            // Stored row r of attn_qkv holds the values r*d .. r*d + d.
            let block = |first: usize, count: usize| {
                Matrix::from_fn(count, d, |r, c| ((first + r) * d + c) as f64)
            };
            assert_eq!(layer.w_q, block(0, n_head * hd), "{arch} W_Q");
            assert_eq!(layer.w_k, block(n_head * hd, n_kv * hd), "{arch} W_K");
            assert_eq!(
                layer.w_v,
                block((n_head + n_kv) * hd, n_kv * hd),
                "{arch} W_V"
            );
            let o = Matrix::from_fn(d, d, |r, c| (r * d + c) as f64);
            assert_eq!(layer.w_o, o, "{arch} W_O");
        }
    }
}
