//! Sharded checkpoints, shared by the safetensors and PyTorch readers: where a directory's
//! weights are (a shard index, one file, or `prefix*-of-*suffix` shards), the shard files an
//! index names (plain file names inside the directory only), and the check that every tensor
//! the index maps is in the shard it names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CheckpointError;

/// The largest shard index read: 64 MiB (those of models with 100,000 tensors are about
/// 10 MB).
pub(crate) const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Where a checkpoint directory keeps one format's weights.
pub(crate) enum Layout {
    /// A shard index (`*.index.json`); read it with [`ShardIndex::read`].
    Index(PathBuf),
    /// One file, or shards found by name (sorted).
    Files(Vec<PathBuf>),
    /// None of this format.
    Nothing,
}

/// File names of one format: `model.safetensors.index.json`, `model.safetensors`, and shards
/// `model-*-of-*.safetensors`.
pub(crate) struct Names {
    pub index: &'static str,
    pub single: &'static str,
    pub shard_prefix: &'static str,
    pub shard_suffix: &'static str,
}

/// safetensors files as transformers writes them.
pub(crate) const SAFETENSORS: Names = Names {
    index: "model.safetensors.index.json",
    single: "model.safetensors",
    shard_prefix: "model-",
    shard_suffix: ".safetensors",
};

/// PyTorch pickles as transformers writes them.
pub(crate) const PYTORCH: Names = Names {
    index: "pytorch_model.bin.index.json",
    single: "pytorch_model.bin",
    shard_prefix: "pytorch_model-",
    shard_suffix: ".bin",
};

/// Finds the weights of `names` in `dir`: the index if present, else the single file, else
/// every shard.
pub(crate) fn locate(dir: &Path, names: &Names) -> Result<Layout, CheckpointError> {
    let index = dir.join(names.index);
    if index.is_file() {
        return Ok(Layout::Index(index));
    }
    let single = dir.join(names.single);
    if single.is_file() {
        return Ok(Layout::Files(vec![single]));
    }
    let io = |source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(names.shard_prefix)
            && name.contains("-of-")
            && name.ends_with(names.shard_suffix)
        {
            shards.push(entry.path());
        }
    }
    shards.sort();
    Ok(if shards.is_empty() {
        Layout::Nothing
    } else {
        Layout::Files(shards)
    })
}

/// A shard index: which file holds each tensor.
pub(crate) struct ShardIndex {
    path: PathBuf,
    weight_map: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: HashMap<String, String>,
}

impl ShardIndex {
    fn bad(&self, problem: String) -> CheckpointError {
        bad(&self.path, problem)
    }

    /// Reads the index at `path` and returns it with the shard files it names (sorted,
    /// deduplicated, each a plain file name that exists in `dir`).
    pub(crate) fn read(
        dir: &Path,
        path: &Path,
    ) -> Result<(ShardIndex, Vec<PathBuf>), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_INDEX_BYTES {
            return Err(bad(
                path,
                format!(
                    "it is {size} bytes, over the limit of {MAX_INDEX_BYTES} bytes for a shard \
                     index (those of the largest models are a few megabytes)"
                ),
            ));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let (index, names) = ShardIndex::parse(path, &bytes)?;
        let mut paths = Vec::new();
        for name in names {
            let shard = dir.join(&name);
            if !shard.is_file() {
                return Err(index.bad(format!(
                    "names shard {name}, which is not in {}",
                    dir.display()
                )));
            }
            paths.push(shard);
        }
        Ok((index, paths))
    }

    /// Parses an index's JSON and returns it with the shard file names it names (sorted,
    /// deduplicated, each a plain file name: no `/` or `\`, not empty, not starting with
    /// `.`); an empty `weight_map` is an error. `path` is only used in messages.
    pub(crate) fn parse(
        path: &Path,
        json: &[u8],
    ) -> Result<(ShardIndex, Vec<String>), CheckpointError> {
        let raw: RawIndex = serde_json::from_slice(json)
            .map_err(|e| bad(path, format!("not a shard index: {e}")))?;
        let index = ShardIndex {
            path: path.to_path_buf(),
            weight_map: raw.weight_map,
        };
        let mut names: Vec<&String> = index.weight_map.values().collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(index.bad("its weight_map is empty".into()));
        }
        for name in &names {
            if name.contains(['/', '\\']) || name.starts_with('.') || name.is_empty() {
                return Err(index.bad(format!("shard name `{name}` is not a plain file name")));
            }
        }
        let names = names.into_iter().cloned().collect();
        Ok((index, names))
    }

    /// The index's `weight_map`: tensor name -> shard file name.
    pub(crate) fn weight_map(&self) -> &HashMap<String, String> {
        &self.weight_map
    }

    /// Checks that every tensor the index maps is held by the shard it names; `held` lists
    /// (tensor name, file holding it) for every tensor of the opened shards.
    pub(crate) fn check<'a>(
        &self,
        held: impl IntoIterator<Item = (&'a str, &'a Path)>,
    ) -> Result<(), CheckpointError> {
        let by_name: HashMap<&str, &Path> = held.into_iter().collect();
        for (tensor, shard) in &self.weight_map {
            match by_name.get(tensor.as_str()) {
                Some(file) if file.file_name().is_some_and(|n| n == shard.as_str()) => {}
                Some(file) => {
                    return Err(self.bad(format!(
                        "maps `{tensor}` to {shard}, but it is in {}",
                        file.display()
                    )));
                }
                None => {
                    return Err(self.bad(format!(
                        "maps `{tensor}` to {shard}, which does not hold it"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn bad(path: &Path, problem: String) -> CheckpointError {
    CheckpointError::Index {
        file: path.to_path_buf(),
        problem,
    }
}
