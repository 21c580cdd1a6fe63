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
use crate::checkpoint::gguf::{self, GgufStore};
use crate::checkpoint::pickle::PickleStore;
use crate::checkpoint::safetensors::SafetensorsStore;
use crate::checkpoint::{Checkpoint, CheckpointError, TensorStore};
use crate::config::ModelConfig;
use crate::dtype::DType;

/// The fuzz targets, which are also the names of their corpus directories under
/// `tests/fixtures/fuzz/`.
pub const TARGETS: [&str; 8] = [
    "safetensors",
    "safetensors_index",
    "config",
    "pytorch",
    "pickle",
    "gguf",
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
        let mut listed = 0;
        // hub_response's regressions are asserted by attn_spectra_hub's own tests.
        for target in TARGETS.into_iter().filter(|&t| t != "hub_response") {
            let dir = corpus_dir(target).join("regressions");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let (_, _, words) = REGRESSIONS
                    .iter()
                    .find(|(t, f, _)| *t == target && *f == name)
                    .unwrap_or_else(|| {
                        panic!("{} has no expected error in REGRESSIONS", path.display())
                    });
                let bytes = std::fs::read(&path).unwrap();
                let err = run(target, &bytes).expect_err(&name);
                for w in *words {
                    assert!(
                        err.contains(w),
                        "{}: `{w}` missing from: {err}",
                        path.display()
                    );
                }
                listed += 1;
            }
        }
        assert_eq!(
            listed,
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
        ok("gguf", &|b| {
            GgufStore::from_bytes(Path::new("x"), b.to_vec()).is_ok()
        });
    }
}
