//! Opening a model checkpoint on disk and reading single tensors from it.
//!
//! A [`Checkpoint`] is a model configuration plus a [`TensorStore`]: an index of the tensors in
//! the model's files (memory-mapped where the format allows) that reads one tensor at a time,
//! converted to `f64`. Nothing is read until a tensor is asked for, so analysing the attention
//! of a model never touches its MLP or embedding weights.
//!
//! Tensor names are matched by suffix on `.` boundaries ([`Checkpoint::find`]), because Hub
//! files differ in whether they carry the model prefix (`transformer.h.0.attn.c_attn.weight`
//! against `h.0.attn.c_attn.weight`).

mod fp8;
pub mod gguf;
pub mod pickle;
pub mod safetensors;
mod shards;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ModelConfig};
use crate::dtype::DType;
use crate::matrix::Matrix;

/// Errors opening a checkpoint or reading a tensor from it. Each names the file and tensor.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },
    #[error("no weights found in {dir}: expected {expected}")]
    NoWeights {
        dir: PathBuf,
        expected: &'static str,
    },
    #[error("corrupt safetensors file {file}: {problem}")]
    Safetensors { file: PathBuf, problem: String },
    #[error("corrupt PyTorch checkpoint {file}: {problem}")]
    Pickle { file: PathBuf, problem: String },
    #[error("corrupt GGUF file {file}: {problem}")]
    Gguf { file: PathBuf, problem: String },
    #[error(
        "{dir} holds several GGUF files ({}); open the one wanted by its path",
        display_paths(files)
    )]
    SeveralGguf { dir: PathBuf, files: Vec<PathBuf> },
    #[error("bad shard index {file}: {problem}")]
    Index { file: PathBuf, problem: String },
    #[error("tensor `{name}` not found; searched {}", display_paths(files))]
    TensorNotFound { name: String, files: Vec<PathBuf> },
    #[error("tensor name `{name}` is ambiguous: it matches {candidates:?}")]
    AmbiguousTensor {
        name: String,
        candidates: Vec<String>,
    },
    #[error("tensor `{name}` appears twice: in {first} and in {second}")]
    DuplicateTensor {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("tensor `{tensor}` in {file} has dtype {dtype}, which cannot be read as weights")]
    UnsupportedDType {
        tensor: String,
        file: PathBuf,
        dtype: DType,
    },
    #[error("tensor `{tensor}` in {file} has shape {shape:?}; expected a {expected}")]
    BadRank {
        tensor: String,
        file: PathBuf,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error(
        "tensor `{tensor}` in {file} holds {count} NaN or infinite values (first at flat index {first}: {value})"
    )]
    NonFinite {
        tensor: String,
        file: PathBuf,
        count: usize,
        first: usize,
        value: f64,
    },
    #[error("FP8 tensor `{tensor}` in {file}: {problem}")]
    Fp8 {
        tensor: String,
        file: PathBuf,
        problem: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "no files".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The on-disk format of a checkpoint's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    Safetensors,
    PytorchBin,
    Gguf,
}

impl SourceFormat {
    /// The name used in the `models/` table and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Safetensors => "safetensors",
            SourceFormat::PytorchBin => "pytorch_bin",
            SourceFormat::Gguf => "gguf",
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a checkpoint: its name, type, shape and the file holding it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorMeta {
    /// The name under which it is looked up (the stored name, or for GGUF the
    /// Hugging Face name it corresponds to).
    pub name: String,
    /// The name as stored in the file, where it differs from `name`.
    pub stored_name: Option<String>,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Index into [`TensorStore::files`].
    pub file: usize,
}

impl TensorMeta {
    /// Number of elements (product of the shape).
    ///
    /// Zero when any dimension is zero, whatever the others (whose product alone could
    /// overflow: readers bound the dimensions of tensors that hold data by the file's size).
    pub fn numel(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        self.shape.iter().product()
    }

    /// The name as it appears in the file.
    pub fn stored_name(&self) -> &str {
        self.stored_name.as_deref().unwrap_or(&self.name)
    }
}

/// An index of the tensors in a model's files that reads single tensors on demand.
pub trait TensorStore: Send + Sync {
    /// The files' format.
    fn format(&self) -> SourceFormat;
    /// Every weight file of the model, in a stable order.
    fn files(&self) -> &[PathBuf];
    /// Every tensor, in a stable order.
    fn tensors(&self) -> &[TensorMeta];
    /// Reads tensor `index` (into [`TensorStore::tensors`]) converted to `f64`, row-major.
    fn read(&self, index: usize) -> Result<Vec<f64>, CheckpointError>;
    /// A hint that tensors `indices` will be read soon, and no others held back before: a
    /// store reading over a network may start fetching them (merged, concurrently) and drop
    /// what it prefetched for earlier hints and was never read. Reads return the same bytes
    /// with or without hints. Local stores ignore it.
    fn prefetch(&self, indices: &[usize]) {
        let _ = indices;
    }
}

/// A model on disk: its configuration and its tensors.
pub struct Checkpoint {
    root: PathBuf,
    config: ModelConfig,
    store: Box<dyn TensorStore>,
    by_name: HashMap<String, usize>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("root", &self.root)
            .field("format", &self.store.format())
            .field("files", &self.store.files())
            .field("tensors", &self.store.tensors().len())
            .finish()
    }
}

const EXPECTED_WEIGHTS: &str = "model.safetensors, model.safetensors.index.json, model-*-of-*.safetensors, \
pytorch_model.bin, pytorch_model.bin.index.json, pytorch_model-*-of-*.bin, or exactly one .gguf file \
(a .gguf file may also be opened by its own path)";

impl Checkpoint {
    /// Opens a checkpoint: a directory holding `config.json` and its weights, or a `.gguf` file.
    ///
    /// In a directory, weights are looked for in this order:
    /// 1. safetensors: `model.safetensors.index.json` (sharded), `model.safetensors`,
    ///    `model-*-of-*.safetensors` shards without an index;
    /// 2. PyTorch zip checkpoints: `pytorch_model.bin.index.json`, `pytorch_model.bin`,
    ///    `pytorch_model-*-of-*.bin` shards without an index;
    /// 3. a single `*.gguf` file (several are an error: open the one wanted by its path).
    ///
    /// safetensors and PyTorch checkpoints need `config.json`. For GGUF it is optional: the
    /// configuration is built from the GGUF metadata ([`gguf::GgufStore::config`]), on top of
    /// `config.json` when there is one, the GGUF values winning wherever both say something.
    pub fn open(path: &Path) -> Result<Checkpoint, CheckpointError> {
        if !path.exists() {
            return Err(CheckpointError::NotFound {
                path: path.to_path_buf(),
            });
        }
        if path.is_file() {
            if !gguf::is_gguf_path(path) {
                return Err(CheckpointError::NoWeights {
                    dir: path.to_path_buf(),
                    expected: EXPECTED_WEIGHTS,
                });
            }
            let store = gguf::GgufStore::open(path)?;
            let config = store.config(None)?;
            return Ok(Checkpoint::from_parts(path, config, Box::new(store)));
        }
        if let Some(st) = safetensors::SafetensorsStore::open_dir(path)? {
            let config = ModelConfig::load(&path.join("config.json"))?;
            return Ok(Checkpoint::from_parts(path, config, Box::new(st)));
        }
        if let Some(pt) = pickle::PickleStore::open_dir(path)? {
            let config = ModelConfig::load(&path.join("config.json"))?;
            return Ok(Checkpoint::from_parts(path, config, Box::new(pt)));
        }
        let ggufs = gguf::gguf_files_in(path)?;
        match ggufs.as_slice() {
            [] => Err(CheckpointError::NoWeights {
                dir: path.to_path_buf(),
                expected: EXPECTED_WEIGHTS,
            }),
            [one] => {
                let store = gguf::GgufStore::open(one)?;
                let config_path = path.join("config.json");
                let base = if config_path.is_file() {
                    Some(ModelConfig::load(&config_path)?)
                } else {
                    None
                };
                let config = store.config(base.as_ref())?;
                Ok(Checkpoint::from_parts(path, config, Box::new(store)))
            }
            _ => Err(CheckpointError::SeveralGguf {
                dir: path.to_path_buf(),
                files: ggufs,
            }),
        }
    }

    /// Builds a checkpoint from a configuration and an already opened store.
    pub fn from_parts(root: &Path, config: ModelConfig, store: Box<dyn TensorStore>) -> Checkpoint {
        let by_name = store
            .tensors()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Checkpoint {
            root: root.to_path_buf(),
            config,
            store,
            by_name,
        }
    }

    /// The directory or file the checkpoint was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn format(&self) -> SourceFormat {
        self.store.format()
    }

    pub fn files(&self) -> &[PathBuf] {
        self.store.files()
    }

    pub fn tensors(&self) -> &[TensorMeta] {
        self.store.tensors()
    }

    /// The file holding `meta`; `None` when `meta` is not a tensor of this checkpoint (a
    /// hand-built [`TensorMeta`] whose file index is out of range).
    pub fn file_of(&self, meta: &TensorMeta) -> Option<&Path> {
        self.store.files().get(meta.file).map(PathBuf::as_path)
    }

    /// The file holding `meta` for messages: the checkpoint's root when `meta` is not one of
    /// its tensors.
    pub(crate) fn file_for_message(&self, meta: &TensorMeta) -> PathBuf {
        self.file_of(meta)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone())
    }

    /// The tensor whose name is `suffix` or ends with `.` + `suffix`.
    ///
    /// `Ok(None)` when none matches; an error when several do (a multimodal checkpoint with
    /// two towers, say), naming them.
    pub fn find(&self, suffix: &str) -> Result<Option<&TensorMeta>, CheckpointError> {
        if let Some(&i) = self.by_name.get(suffix) {
            return Ok(Some(&self.store.tensors()[i]));
        }
        let dotted = format!(".{suffix}");
        let mut hits = self
            .store
            .tensors()
            .iter()
            .filter(|t| t.name.ends_with(&dotted));
        let first = hits.next();
        let rest: Vec<&TensorMeta> = hits.collect();
        if rest.is_empty() {
            return Ok(first);
        }
        let mut candidates: Vec<String> = rest.iter().map(|t| t.name.clone()).collect();
        candidates.insert(0, first.map(|t| t.name.clone()).unwrap_or_default());
        Err(CheckpointError::AmbiguousTensor {
            name: suffix.to_string(),
            candidates,
        })
    }

    /// Like [`Checkpoint::find`], but a missing tensor is an error naming it and the files searched.
    pub fn require(&self, suffix: &str) -> Result<&TensorMeta, CheckpointError> {
        self.find(suffix)?
            .ok_or_else(|| CheckpointError::TensorNotFound {
                name: suffix.to_string(),
                files: self.store.files().to_vec(),
            })
    }

    /// Tells the store that `metas` will be read soon ([`TensorStore::prefetch`]); tensors
    /// that are not this checkpoint's are ignored.
    pub fn prefetch(&self, metas: &[&TensorMeta]) {
        let indices: Vec<usize> = metas
            .iter()
            .filter_map(|m| self.by_name.get(&m.name).copied())
            .collect();
        self.store.prefetch(&indices);
    }

    /// Reads a tensor as `f64`; NaN or infinite values are an error naming the tensor.
    pub fn read(&self, meta: &TensorMeta) -> Result<Vec<f64>, CheckpointError> {
        let index =
            *self
                .by_name
                .get(&meta.name)
                .ok_or_else(|| CheckpointError::TensorNotFound {
                    name: meta.name.clone(),
                    files: self.store.files().to_vec(),
                })?;
        let mut data = self.store.read(index)?;
        if matches!(meta.dtype, DType::F8_E4M3 | DType::F8_E5M2) {
            fp8::dequantise(self, meta, &mut data)?;
        }
        if !crate::matrix::all_finite(&data)
            && let Some(first) = data.iter().position(|x| !x.is_finite())
        {
            return Err(CheckpointError::NonFinite {
                tensor: meta.name.clone(),
                file: self.file_for_message(meta),
                count: data.iter().filter(|x| !x.is_finite()).count(),
                first,
                value: data[first],
            });
        }
        Ok(data)
    }

    /// Reads a 2-D tensor as a matrix of its stored shape.
    pub fn read_matrix(&self, meta: &TensorMeta) -> Result<Matrix, CheckpointError> {
        if meta.shape.len() != 2 {
            return Err(self.bad_rank(meta, "2-D matrix"));
        }
        let data = self.read(meta)?;
        Matrix::from_vec(meta.shape[0], meta.shape[1], data)
            .ok_or_else(|| self.bad_rank(meta, "2-D matrix"))
    }

    /// Reads a 1-D tensor (a bias or a norm gain).
    pub fn read_vector(&self, meta: &TensorMeta) -> Result<Vec<f64>, CheckpointError> {
        if meta.shape.len() != 1 {
            return Err(self.bad_rank(meta, "1-D vector"));
        }
        self.read(meta)
    }

    fn bad_rank(&self, meta: &TensorMeta, expected: &'static str) -> CheckpointError {
        CheckpointError::BadRank {
            tensor: meta.name.clone(),
            file: self.file_for_message(meta),
            shape: meta.shape.clone(),
            expected,
        }
    }
}

/// Parses a shard index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`):
/// the shard file names it names (sorted, deduplicated, each a plain file name) and its
/// `weight_map` (tensor name -> shard). An empty map or a name with a path in it is an error
/// naming `path`, which is only used in messages. The one parser of shard indexes, for local
/// checkpoints and for the Hub client alike.
pub fn parse_shard_index(
    path: &Path,
    json: &[u8],
) -> Result<(Vec<String>, HashMap<String, String>), CheckpointError> {
    let (index, names) = shards::ShardIndex::parse(path, json)?;
    Ok((names, index.weight_map().clone()))
}

/// The bytes of one weight file: memory-mapped when opened from disk, owned when a reader is
/// handed bytes directly ([`crate::fuzzing`]). Readers see `&[u8]` either way, so both run the
/// same parsing and decoding code.
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Memory-maps `path` read-only.
    pub(crate) fn map(path: &Path) -> Result<FileBytes, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and its bytes are only ever copied out after bounds
        // checks. As with every memory-mapped reader (safetensors, candle), a file truncated
        // by another process while mapped is outside what this reader can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(FileBytes::Mapped(map))
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// Drops the pages of `len` bytes at `offset` of a read-only file mapping from this process's
/// resident set, once the tensor stored there has been decoded into owned memory. They stay in
/// the page cache, and a later read faults them in again with the same bytes, so only memory
/// use changes: resident memory stays near one layer's weights however big the model. Best
/// effort (Unix only; an error just leaves the pages resident). Owned bytes are left alone.
pub(crate) fn release_pages(bytes: &FileBytes, offset: usize, len: usize) {
    let FileBytes::Mapped(map) = bytes else {
        return;
    };
    #[cfg(unix)]
    if len > 0 && offset.checked_add(len).is_some_and(|end| end <= map.len()) {
        // SAFETY: the mapping is read-only and backed by the file, so dropping its pages
        // cannot change what any borrow of it reads: the kernel refills them from the file.
        let _ =
            unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    }
    #[cfg(not(unix))]
    let _ = (map, offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::safetensors::write_file;

    /// A hand-built tensor description that is not the checkpoint's gives `None` and
    /// errors, never an out-of-bounds index.
    #[test]
    fn foreign_tensor_metas_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
        let bytes: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        write_file(
            &dir.path().join("model.safetensors"),
            &[("w", DType::F32, vec![2], bytes)],
        )
        .unwrap();
        let ckpt = Checkpoint::open(dir.path()).unwrap();
        let real = ckpt.require("w").unwrap().clone();
        assert!(ckpt.file_of(&real).is_some());
        let foreign = TensorMeta {
            file: 7,
            shape: vec![1, 2],
            ..real.clone()
        };
        assert_eq!(ckpt.file_of(&foreign), None);
        // The wrong rank is reported, naming the checkpoint instead of a file.
        let err = ckpt.read_vector(&foreign).unwrap_err().to_string();
        assert!(err.contains("1-D vector"), "{err}");
        let missing = TensorMeta {
            name: "nope".into(),
            ..real
        };
        assert!(ckpt.read(&missing).is_err());
    }
}
