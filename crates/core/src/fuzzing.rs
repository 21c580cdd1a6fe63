//! Byte-slice entry points into every reader of untrusted bytes, for the fuzz targets in
//! `fuzz/` (cargo-fuzz, nightly) and for the stable tests that replay their corpora
//! (`tests/fixtures/fuzz/<target>/`) in `cargo test`.
//!
//! Each function runs the code the tool runs on a file with these bytes: the same parser,
//! the same validation and the same decoding (the stores are built from owned bytes instead
//! of a memory map), then reads what the tool would read
//! next (every tensor, the configuration, the architecture and its layers). Nothing here
//! parses anything itself. Each returns the reader's own typed error; the replay tests assert
//! that every corpus input returns without panicking, and that each committed regression
//! input returns the error it was fixed to give.

use std::path::{Path, PathBuf};

use crate::arch::{ArchError, Architecture};
use crate::checkpoint::gguf::{self, GgufStore, GgufValue};
use crate::checkpoint::pickle::PickleStore;
use crate::checkpoint::safetensors::SafetensorsStore;
use crate::checkpoint::{Checkpoint, CheckpointError, TensorStore};
use crate::config::ModelConfig;
use crate::dtype::DType;

/// The fuzz targets, which are also the names of their corpus directories under
/// `tests/fixtures/fuzz/`.
pub const TARGETS: [&str; 9] = [
    "safetensors",
    "safetensors_index",
    "config",
    "pytorch",
    "pickle",
    "gguf",
    "gguf_framed",
    "gguf_blocks",
    "hub_response",
];

/// Any reader's error, for callers that drive several readers in one input.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Arch(#[from] ArchError),
}

/// Reads every tensor of `store` as [`Checkpoint::read`] would; returns how many were read,
/// or the first error. Tensors of a dtype that is never read as weights (integers) are
/// skipped, as the tool skips them.
fn read_all(store: &dyn TensorStore) -> Result<usize, CheckpointError> {
    let mut first = None;
    for i in 0..store.tensors().len() {
        match store.read(i) {
            Ok(_) | Err(CheckpointError::UnsupportedDType { .. }) => {}
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(store.tensors().len()), Err)
}

/// A safetensors file (`model.safetensors`): the 8-byte header length, the JSON header with
/// every claim validated, then every tensor decoded. Returns the number of tensors.
pub fn safetensors(data: &[u8]) -> Result<usize, CheckpointError> {
    let store = SafetensorsStore::from_bytes(Path::new("model.safetensors"), data.to_vec())?;
    read_all(&store)
}

/// A shard index (`model.safetensors.index.json`): parsed as the local reader and the Hub
/// client parse it. Returns the number of shards it names.
pub fn safetensors_index(data: &[u8]) -> Result<usize, CheckpointError> {
    let (names, _) =
        crate::checkpoint::parse_shard_index(Path::new("model.safetensors.index.json"), data)?;
    Ok(names.len())
}

/// A `config.json` through the architecture registry: parsed, then the architecture detected
/// and its geometry resolved and checked.
pub fn config(data: &[u8]) -> Result<Architecture, ArchError> {
    let config = ModelConfig::from_slice(Path::new("config.json"), data)?;
    Architecture::detect(&config)
}

/// A PyTorch `torch.save` zip archive (`pytorch_model.bin`): the zip directory, the restricted
/// unpickler over `data.pkl`, every view checked against its storage, then every tensor
/// decoded. Returns the number of tensors.
pub fn pytorch(data: &[u8]) -> Result<usize, CheckpointError> {
    let store = PickleStore::from_bytes(Path::new("pytorch_model.bin"), data.to_vec())?;
    read_all(&store)
}

/// Storages [`pickle`] puts next to the pickle: keys `0` to `3`, each 64 bytes of small
/// floats, so that a mutated pickle's persistent ids find zip entries to point into.
const PICKLE_STORAGES: usize = 4;
const PICKLE_STORAGE_BYTES: usize = 64;

/// A valid `torch.save` zip archive around `pickle` as its `archive/data.pkl`, with
/// `archive/byteorder` and the storages `archive/data/0` to `archive/data/3`: the structure-
/// aware input of the `pickle` target, so that mutations reach the unpickler instead of the
/// zip reader.
pub fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let mut put = |name: &str, bytes: &[u8]| {
        zip.start_file(name, opts).expect("in-memory zip");
        zip.write_all(bytes).expect("in-memory zip");
    };
    put("archive/data.pkl", pickle);
    put("archive/byteorder", b"little");
    let floats: Vec<u8> = (0..PICKLE_STORAGE_BYTES / 4)
        .flat_map(|i| (i as f32 / 16.0).to_le_bytes())
        .collect();
    for key in 0..PICKLE_STORAGES {
        put(&format!("archive/data/{key}"), &floats);
    }
    zip.finish().expect("in-memory zip");
    out.into_inner()
}

/// A pickle inside a valid `torch.save` archive ([`torch_zip`]), read as [`pytorch`] reads
/// an archive.
pub fn pickle(data: &[u8]) -> Result<usize, CheckpointError> {
    pytorch(&torch_zip(data))
}

/// A GGUF file: header, metadata, tensor infos and their names and layouts, the configuration
/// built from the metadata and the architecture detected from it, every layer's attention read
/// as extraction reads it (stopping at the first error, as extraction does), and every tensor
/// dequantised. Returns the number of tensors.
pub fn gguf(data: &[u8]) -> Result<usize, FuzzError> {
    let path = Path::new("model.gguf");
    let store = GgufStore::from_bytes(path, data.to_vec())?;
    let n = read_all(&store)?;
    let config = store.config(None)?;
    let ckpt = Checkpoint::from_parts(path, config, Box::new(store));
    let arch = Architecture::detect_in(&ckpt)?;
    for layer in 0..arch.geometry().n_layers {
        arch.layer(&ckpt, layer)?;
    }
    Ok(n)
}

/// Reads fuzz input front to back for [`gguf_file`]: each call takes the bytes it needs and
/// gives zeros once the input is used up, so every input builds a file.
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    /// A string of up to 31 bytes (lossy UTF-8).
    fn string(&mut self) -> String {
        let n = (self.u8() % 32) as usize;
        let n = n.min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
    /// `table[b % len]` for a byte `b` below `below`, else a string drawn from the input.
    fn pick(&mut self, table: &[&str], below: u8) -> String {
        match self.u8() {
            b if b < below && !table.is_empty() => table[b as usize % table.len()].to_string(),
            _ => self.string(),
        }
    }
    /// A metadata value; arrays nest at most `depth` more levels.
    fn value(&mut self, depth: u32) -> GgufValue {
        let ty = self.u8() % 13;
        self.typed_value(ty, depth)
    }
    fn typed_value(&mut self, ty: u8, depth: u32) -> GgufValue {
        match ty {
            0 => GgufValue::U8(self.u8()),
            1 => GgufValue::I8(self.u8() as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes())),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes())),
            4 => GgufValue::U32(u32::from_le_bytes(self.bytes())),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes())),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes())),
            7 => GgufValue::Bool(self.u8() & 1 == 1),
            8 => GgufValue::Str(self.string()),
            9 if depth > 0 => {
                // Elements of one type, as GGUF stores them.
                let elem = self.u8() % 13;
                let n = self.u8() % 16;
                GgufValue::Array((0..n).map(|_| self.typed_value(elem, depth - 1)).collect())
            }
            9 => GgufValue::Array(Vec::new()),
            10 => GgufValue::U64(u64::from_le_bytes(self.bytes())),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes())),
            _ => GgufValue::F64(f64::from_le_bytes(self.bytes())),
        }
    }
}

/// Metadata keys [`gguf_file`] draws after `<architecture>.`: those the configuration and
/// the tensor-name mapping read.
const GGUF_ARCH_KEYS: [&str; 13] = [
    "block_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "feed_forward_length",
    "context_length",
    "rope.freq_base",
    "rope.dimension_count",
    "attention.layer_norm_rms_epsilon",
    "attention.layer_norm_epsilon",
    "tensor_data_layout",
];
/// Keys [`gguf_file`] draws without the architecture's prefix (`general.alignment`, which
/// moves every tensor, is drawn by one byte value only, so that most files keep theirs).
const GGUF_OTHER_KEYS: [&str; 3] = ["general.name", "general.file_type", "tokenizer.ggml.tokens"];
/// Per-layer tensor names (`blk.N.<part>.weight` or `.bias`) [`gguf_file`] draws.
const GGUF_LAYER_PARTS: [&str; 13] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "attn_qkv",
    "attn_norm",
    "attn_norm_2",
    "attn_q_norm",
    "attn_k_norm",
    "ffn_up",
    "ffn_down",
    "ffn_gate",
    "ffn_norm",
];
/// Tensor names outside the layers.
const GGUF_TOP_TENSORS: [&str; 4] = [
    "token_embd.weight",
    "output.weight",
    "output_norm.weight",
    "rope_freqs.weight",
];
/// ggml type ids [`gguf_file`] draws (F32 first), before falling back to any `u32`.
const GGUF_TYPE_IDS: [u32; 17] = [0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 15, 24, 26, 28, 30];
/// Tensor data [`gguf_file`] writes at most; larger tensors get no bytes (and the file ends
/// before their data).
const GGUF_FRAMED_MAX_TENSOR_BYTES: u64 = 1 << 18;

/// A valid GGUF file whose metadata and tensor infos are drawn from `data`: the structure-
/// aware input of the `gguf_framed` target. The framing (magic, version, counts, string and
/// array lengths, type tags, tensor offsets and alignment) is always right, so mutations
/// reach what the metadata and the tensor infos say instead of breaking the frame: the
/// architecture, keys and values, head counts, tensor names, shapes and types.
///
/// The input, read front to back (zeros once it runs out): the architecture (a byte below
/// 240 picks one of the registry's GGUF architectures, else a string follows: a length byte,
/// then that many bytes); a byte: the number of metadata entries (mod 32); each entry a key (a
/// byte below 200 picks `<architecture>.<key>` from [`GGUF_ARCH_KEYS`], below 239 one of
/// [`GGUF_OTHER_KEYS`], 239 `general.alignment`, else a string) and a value (a type byte mod 13, then its
/// little-endian bytes; strings as above; arrays: element type, a count mod 16, elements,
/// nested at most twice); a byte: the number of tensors (mod 24); each tensor a name (a byte
/// below 200: `blk.<byte mod 4>.<part>.<weight or bias by a byte's low bit>` from
/// [`GGUF_LAYER_PARTS`], below 240 one of [`GGUF_TOP_TENSORS`], else a string), a byte: the
/// number of dimensions (below 192: 1 or 2 by the byte mod 2, else 1 to 4 by the byte mod 4;
/// 254: none, 255: five), each dimension a byte
/// (1 to 64 by the byte mod 64, or 1 where that would take the tensor past 2^15 elements; 255:
/// a `u32` follows), and a type (a byte picks from
/// [`GGUF_TYPE_IDS`]; 255: a `u32` follows); a drawn small row
/// length is rounded up to whole blocks of the type. Each tensor's
/// data is the bytes its shape and type need, cycling through the input's bytes with their
/// top two bits cleared (finite values), when that is at
/// most 256 KiB (else none). A key or tensor name drawn twice keeps its first entry.
pub fn gguf_file(data: &[u8]) -> Vec<u8> {
    let mut d = Draw(data);
    let supported = crate::arch::spec::gguf_supported();
    let arch = d.pick(&supported, 240);
    let mut metadata = vec![(
        "general.architecture".to_string(),
        GgufValue::Str(arch.clone()),
    )];
    for _ in 0..d.u8() % 32 {
        let key = match d.u8() {
            b if b < 200 => format!(
                "{arch}.{}",
                GGUF_ARCH_KEYS[b as usize % GGUF_ARCH_KEYS.len()]
            ),
            b if b < 239 => GGUF_OTHER_KEYS[b as usize % GGUF_OTHER_KEYS.len()].to_string(),
            239 => "general.alignment".to_string(),
            _ => d.string(),
        };
        let value = d.value(2);
        // Duplicate keys are refused on opening; keep the first, so that inputs explore values.
        if metadata.iter().all(|(k, _)| *k != key) {
            metadata.push((key, value));
        }
    }
    let mut tensors: Vec<(String, u32, Vec<u64>, Vec<u8>)> = Vec::new();
    for _ in 0..d.u8() % 24 {
        let name = match d.u8() {
            b if b < 200 => {
                let layer = d.u8() % 4;
                let suffix = if d.u8() & 1 == 0 { "weight" } else { "bias" };
                let part = GGUF_LAYER_PARTS[b as usize % GGUF_LAYER_PARTS.len()];
                format!("blk.{layer}.{part}.{suffix}")
            }
            b if b < 240 => GGUF_TOP_TENSORS[b as usize % GGUF_TOP_TENSORS.len()].to_string(),
            _ => d.string(),
        };
        let rank = match d.u8() {
            254 => 0,
            255 => 5,
            b if b < 192 => 1 + b % 2,
            b => 1 + b % 4,
        };
        let (mut dims, mut elements) = (Vec::new(), 1u64);
        for _ in 0..rank {
            let dim = match d.u8() {
                255 => u64::from(u32::from_le_bytes(d.bytes())),
                // Small dimensions keep a tensor within 2^15 elements (its data within the cap).
                b => match u64::from(b % 64) + 1 {
                    x if elements.saturating_mul(x) > 1 << 15 => 1,
                    x => x,
                },
            };
            elements = elements.saturating_mul(dim);
            dims.push(dim);
        }
        let ty = match d.u8() {
            255 => u32::from_le_bytes(d.bytes()),
            b => GGUF_TYPE_IDS[b as usize % GGUF_TYPE_IDS.len()],
        };
        let layout = gguf::ggml_type_layout(ty);
        // Rows of whole blocks, when the row length is a drawn small number.
        if let (Some((block, _)), Some(first)) = (layout, dims.first_mut())
            && *first <= 64
        {
            *first = first.div_ceil(block as u64) * block as u64;
        }
        let size = layout.and_then(|(block, bytes)| {
            let elements = dims.iter().try_fold(1u64, |n, &x| n.checked_mul(x))?;
            (elements / block as u64).checked_mul(bytes as u64)
        });
        let bytes = match size {
            Some(n) if n <= GGUF_FRAMED_MAX_TENSOR_BYTES && !data.is_empty() => {
                // Top two bits cleared: finite values in every float type and block scale (the
                // `gguf` target reaches the non-finite ones).
                data.iter()
                    .map(|b| b & 0x3F)
                    .cycle()
                    .take(n as usize)
                    .collect()
            }
            Some(n) if n <= GGUF_FRAMED_MAX_TENSOR_BYTES => vec![0; n as usize],
            _ => Vec::new(),
        };
        if tensors.iter().all(|(n, ..)| *n != name) {
            tensors.push((name, ty, dims, bytes));
        }
    }
    gguf::to_bytes(&metadata, &tensors)
}

/// A GGUF file built by [`gguf_file`] from `data`, read as [`gguf`] reads a file.
pub fn gguf_framed(data: &[u8]) -> Result<usize, FuzzError> {
    gguf(&gguf_file(data))
}

/// The block types [`gguf_blocks`] chooses from by the input's first byte.
const BLOCK_TYPES: [DType; 15] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::Q8_K,
];

/// Every GGUF block decoder on raw blocks: the first byte picks the type, the rest (cut to
/// whole blocks) is dequantised. Returns the number of values.
pub fn gguf_blocks(data: &[u8]) -> Option<usize> {
    let (&pick, rest) = data.split_first()?;
    let dtype = BLOCK_TYPES[pick as usize % BLOCK_TYPES.len()];
    let (_, block_bytes) = gguf::quants::block_layout(dtype)?;
    let whole = rest.len() - rest.len() % block_bytes;
    let mut out = Vec::new();
    gguf::quants::dequantize(dtype, &rest[..whole], &mut out)?;
    Some(out.len())
}

/// `tests/fixtures/fuzz/<target>/` in this repository (for the replay tests of this crate and
/// of `attn_spectra_hub`).
#[doc(hidden)]
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/fuzz")
        .join(target)
}

/// Every file under [`corpus_dir`]`(target)` (corpus and regressions) with its bytes, sorted by
/// path. An empty or missing directory is an error, so that a replay test over a missing
/// corpus fails instead of passing over nothing.
#[doc(hidden)]
pub fn corpus_inputs(target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let dir = corpus_dir(target);
    let mut paths = Vec::new();
    walk(&dir, &mut paths)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    if paths.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no fuzz inputs under {}", dir.display()),
        ));
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(&p).map(|b| (p, b)))
        .collect()
}

/// Checks every input under [`corpus_dir`]`(target)/regressions`: `expected` must list it with
/// the words its error names, and `error_of` (the reader's error for those bytes, or a panic
/// when it reads them without one) must contain each word. Returns how many files it checked,
/// so that a test can assert that no listed file is missing. A missing directory checks none.
#[doc(hidden)]
pub fn check_regressions(
    target: &str,
    expected: &[(&str, &[&str])],
    error_of: impl Fn(&str, &[u8]) -> String,
) -> usize {
    let dir = corpus_dir(target).join("regressions");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut checked = 0;
    for entry in entries {
        let path = entry.expect("a readable regressions directory").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (_, words) = expected
            .iter()
            .find(|(f, _)| *f == name)
            .unwrap_or_else(|| panic!("{} has no expected error", path.display()));
        let bytes = std::fs::read(&path).expect("a readable regression input");
        let err = error_of(&name, &bytes);
        for w in *words {
            assert!(
                err.contains(w),
                "{}: `{w}` missing from: {err}",
                path.display()
            );
        }
        checked += 1;
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        corpus_inputs(target).unwrap()
    }

    /// Runs `f` on every input of `target`, naming the input when it panics.
    fn replay<T, E: std::fmt::Display>(target: &str, f: impl Fn(&[u8]) -> Result<T, E>) {
        for (path, bytes) in inputs(target) {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // The outcome (Ok or a typed error) is the reader's; only a panic fails.
                f(&bytes).err().map(|e| e.to_string())
            }));
            if let Err(panic) = r {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{} panicked: {msg}", path.display());
            }
        }
    }

    #[test]
    fn fuzz_corpus_safetensors_replays() {
        replay("safetensors", safetensors);
    }

    #[test]
    fn fuzz_corpus_safetensors_index_replays() {
        replay("safetensors_index", safetensors_index);
    }

    #[test]
    fn fuzz_corpus_config_replays() {
        replay("config", config);
    }

    #[test]
    fn fuzz_corpus_pytorch_replays() {
        replay("pytorch", pytorch);
    }

    #[test]
    fn fuzz_corpus_pickle_replays() {
        replay("pickle", pickle);
    }

    #[test]
    fn fuzz_corpus_gguf_replays() {
        replay("gguf", gguf);
    }

    #[test]
    fn fuzz_corpus_gguf_framed_replays() {
        replay("gguf_framed", gguf_framed);
    }

    /// The frame holds whatever the input: at least half of pseudo-random inputs (61 % when
    /// written; the others break a rule of what the entries say, such as an alignment that is
    /// not a power of two) give a file whose header, metadata and tensor infos open (so mutations reach what they say, not the framing), and
    /// the files stay small.
    #[test]
    fn gguf_file_frames_random_input() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let (mut opened, n) = (0, 500);
        for _ in 0..n {
            let len = (state >> 56) as usize * 4;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let file = gguf_file(&input);
            assert!(
                file.len() <= 24 * (1 << 18) + 64 * 1024,
                "{} bytes",
                file.len()
            );
            if GgufStore::from_bytes(Path::new("model.gguf"), file).is_ok() {
                opened += 1;
            }
        }
        assert!(opened * 2 >= n, "only {opened} of {n} framed files opened");
    }

    #[test]
    fn fuzz_corpus_gguf_blocks_replays() {
        replay("gguf_blocks", |d| gguf_blocks(d).ok_or("no whole block"));
    }

    /// `target`'s entry point on `data`: `Err` with the error's message, `Ok` otherwise.
    fn run(target: &str, data: &[u8]) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        match target {
            "safetensors" => safetensors(data).map(drop).map_err(|x| e(&x)),
            "safetensors_index" => safetensors_index(data).map(drop).map_err(|x| e(&x)),
            "config" => config(data).map(drop).map_err(|x| e(&x)),
            "pytorch" => pytorch(data).map(drop).map_err(|x| e(&x)),
            "pickle" => pickle(data).map(drop).map_err(|x| e(&x)),
            "gguf" => gguf(data).map(drop).map_err(|x| e(&x)),
            "gguf_framed" => gguf_framed(data).map(drop).map_err(|x| e(&x)),
            "gguf_blocks" => gguf_blocks(data).map(drop).ok_or_else(|| "no block".into()),
            other => panic!("unknown target {other}"),
        }
    }

    /// Each regression input (an input that crashed, hung or allocated without bound before
    /// its fix) with the error it must give now: (target, file, words of the message).
    const REGRESSIONS: &[(&str, &str, &[&str])] = &[
        (
            "config",
            "deep-nesting.json",
            &["config.json", "recursion limit exceeded"],
        ),
        (
            "config",
            "huge-layer-count.json",
            &["config.json", "1099511627776 layers", "limit of 1048576"],
        ),
        (
            "gguf",
            "zero-size-huge-rows.gguf",
            &[
                "model.gguf",
                "blk.0.attn_qkv.weight",
                "describe more data than",
            ],
        ),
        (
            "pickle",
            "broadcast-view.pkl",
            &[
                "pytorch_model.bin",
                "`w`",
                "more than the 16",
                "broadcast views are refused",
            ],
        ),
        (
            "pickle",
            "deep-tuples.pkl",
            &["pytorch_model.bin", "a tuple, not a state dict"],
        ),
        (
            "pickle",
            "long-names.pkl",
            &["pytorch_model.bin", "units of work", "per byte of pickle"],
        ),
        (
            "pickle",
            "ordereddict-reuse.pkl",
            &["pytorch_model.bin", "units of work", "per byte of pickle"],
        ),
        (
            "pickle",
            "self-append-leak.pkl",
            &["pytorch_model.bin", "0x96 (BYTEARRAY8) is not supported"],
        ),
        (
            "pickle",
            "rank-100.pkl",
            &[
                "pytorch_model.bin",
                "100 dimensions, more than the 64 accepted",
            ],
        ),
        (
            "pytorch",
            "broadcast-view.bin",
            &[
                "pytorch_model.bin",
                "`w`",
                "more than the 16",
                "broadcast views are refused",
            ],
        ),
        (
            "safetensors",
            "deep-nesting.safetensors",
            &["model.safetensors", "recursion limit exceeded"],
        ),
    ];

    /// Every file under `tests/fixtures/fuzz/*/regressions/` has an entry in [`REGRESSIONS`],
    /// and gives that error (not merely no panic).
    #[test]
    fn fuzz_regressions_give_their_errors() {
        // hub_response's regressions are asserted by attn_spectra_hub's own tests.
        let checked: usize = TARGETS
            .into_iter()
            .filter(|&t| t != "hub_response")
            .map(|target| {
                let expected: Vec<(&str, &[&str])> = REGRESSIONS
                    .iter()
                    .filter(|(t, _, _)| *t == target)
                    .map(|&(_, f, w)| (f, w))
                    .collect();
                check_regressions(target, &expected, |name, bytes| {
                    run(target, bytes).expect_err(name)
                })
            })
            .sum();
        assert_eq!(
            checked,
            REGRESSIONS.len(),
            "a listed regression file is missing"
        );
    }

    /// The seeds are real files: each reads without error (a broken entry point would make
    /// every input an error and the fuzzer would explore nothing).
    #[test]
    fn fuzz_seeds_are_read() {
        let ok = |target: &str, f: &dyn Fn(&[u8]) -> bool| {
            let seeds: Vec<_> = inputs(target)
                .into_iter()
                .filter(|(p, _)| p.to_string_lossy().contains("/corpus/seed-"))
                .collect();
            assert!(!seeds.is_empty(), "{target}: no seed-* inputs");
            for (p, b) in seeds {
                assert!(f(&b), "{target}: seed {} does not read", p.display());
            }
        };
        ok("safetensors", &|b| safetensors(b).is_ok());
        ok("safetensors_index", &|b| safetensors_index(b).is_ok());
        ok("config", &|b| config(b).is_ok());
        ok("pytorch", &|b| pytorch(b).is_ok());
        ok("gguf_framed", &|b| gguf_framed(b).is_ok());
        ok("gguf", &|b| {
            GgufStore::from_bytes(Path::new("x"), b.to_vec()).is_ok()
        });
    }
}
