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
//! # Configuration and names, from the architecture registry
//!
//! Which `general.architecture` values are read, the `model_type` each becomes, the Hugging
//! Face names of its tensors and the configuration keys are all taken from the registry entry
//! ([`crate::arch::spec::SPECS`], field `gguf`): adding an architecture is one entry there for
//! safetensors, PyTorch and GGUF alike. [`GgufStore::config`] (`gguf/config.rs`) maps the
//! metadata onto a [`ModelConfig`](crate::config::ModelConfig) in `config.json` terms: `<arch>.embedding_length`,
//! `.block_count`, `.attention.head_count`, `.head_count_kv`, `.attention.key_length`,
//! `.feed_forward_length`, `.context_length`, the norm epsilon and `.rope.freq_base` give the
//! dimensions, under the entry's own config keys too. `f32` metadata values are converted to the
//! shortest decimal that round-trips (`1e-5`, not `9.999999747378752e-6`), which is what the
//! converter read from `config.json`. Other architectures open as a store (tensors under their
//! GGUF names) but have no configuration: [`GgufStore::config`] says the architecture is
//! unsupported and lists the supported ones.
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

//!
//! # Files
//!
//! `gguf/format.rs` parses and validates the bytes, `gguf/quants.rs` dequantises the block
//! types, `gguf/names.rs` maps tensor names and layouts from the registry, `gguf/config.rs`
//! builds the configuration, and `gguf/writer.rs` writes small files for tests.

mod config;
mod format;
mod names;
pub mod quants;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use format::{GgufValue, gguf_files_in, is_gguf_path};
use format::{StoredTensor, corrupt, parse};
use names::{Layout, Plan};
pub use writer::{to_bytes, write_file};

/// `(block elements, block bytes)` of a ggml type id this reader handles.
pub(crate) fn ggml_type_layout(id: u32) -> Option<(usize, usize)> {
    format::ggml_type(id).map(|(_, block, bytes)| (block, bytes))
}

use super::{CheckpointError, FileBytes, SourceFormat, TensorMeta, TensorStore};

/// A memory-mapped GGUF file: its metadata, its tensors and their Hugging Face names.
pub struct GgufStore {
    files: Vec<PathBuf>,
    map: FileBytes,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    /// Position of each key in `metadata`: look-ups are made per tensor, and a linear search
    /// would make opening a file quadratic in its size.
    metadata_index: HashMap<String, usize>,
    stored: Vec<StoredTensor>,
    /// Position of each stored tensor's name in `stored`, for the same reason.
    stored_index: HashMap<String, usize>,
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
        Self::from_file_bytes(path, FileBytes::map(path)?)
    }

    /// A GGUF file given as bytes, validated and exposed exactly as [`GgufStore::open`] does
    /// for a mapped file; `path` is only used in messages.
    pub(crate) fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GgufStore, CheckpointError> {
        Self::from_file_bytes(path, FileBytes::Owned(bytes))
    }

    fn from_file_bytes(path: &Path, map: FileBytes) -> Result<GgufStore, CheckpointError> {
        let (version, metadata, stored) = parse(path, &map)?;
        // Keys and names are unique (checked by `parse`).
        let metadata_index = metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let stored_index = stored
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let mut store = GgufStore {
            files: vec![path.to_path_buf()],
            map,
            version,
            metadata,
            metadata_index,
            stored,
            stored_index,
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
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
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
        self.stored_index.contains_key(name)
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
        let numel = if t.ne.contains(&0) {
            0
        } else {
            t.ne.iter().product()
        };
        let mut out = Vec::with_capacity(numel);
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
