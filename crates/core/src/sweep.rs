//! The units of a sweep and their state in a dataset: what `pipeline plan` prints.
//!
//! A unit is one (model, revision) of a pipeline file, at its index in
//! [`Pipeline::models`]; its state comes from the dataset's own resume check
//! ([`DatasetDir::unit_status`]) for the configuration hash a run would use
//! ([`Pipeline::unit_hash`]); its size, where it is known without the network, from its local
//! `source` or from what the caller finds in the Hugging Face cache.

use std::path::Path;

use serde::Serialize;

use crate::dataset::{DatasetDir, UnitStatus};
use crate::pipeline::{ModelEntry, Pipeline};
use crate::shard::Shard;

/// One unit of a sweep and its state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedUnit {
    /// The unit's index among the pipeline's units (what shards are cut from).
    pub index: usize,
    /// The shard of `shards` this unit belongs to, when a shard count was given.
    pub shard: Option<usize>,
    pub model: String,
    pub revision: String,
    /// `done`, `todo`, `failed` or `other-config` ([`UnitStatus::name`]).
    pub status: &'static str,
    /// For a failed unit, the recorded error.
    pub error: Option<String>,
    /// Bytes of its checkpoint files, where known without the network.
    pub bytes: Option<u64>,
    /// Where `bytes` comes from: `source` (the local files) or `cache` (the files of this
    /// revision in the Hugging Face cache, which may be fewer than the checkpoint's).
    pub bytes_from: Option<&'static str>,
}

/// The units of `pipeline` (all, or those of `only`) with their state in `ds`.
/// `unit_hash` gives the configuration hash a run would compare for a unit, `cached_bytes`
/// the bytes of a Hub unit's files already in the local cache (`None` when none are).
/// `shards` numbers each unit's shard in a split into that many shards.
pub fn plan(
    pipeline: &Pipeline,
    ds: &DatasetDir,
    only: Option<Shard>,
    shards: Option<usize>,
    unit_hash: impl Fn(&ModelEntry) -> String,
    cached_bytes: impl Fn(&ModelEntry) -> Option<u64>,
) -> Vec<PlannedUnit> {
    pipeline
        .models
        .iter()
        .enumerate()
        .filter(|(i, _)| only.is_none_or(|s| s.contains(*i)))
        .map(|(index, m)| {
            let status = ds.unit_status(&m.id, &m.revision, &unit_hash(m));
            let (bytes, bytes_from) = match &m.source {
                Some(path) => (local_bytes(path), Some("source")),
                None => match cached_bytes(m) {
                    Some(b) => (Some(b), Some("cache")),
                    None => (None, None),
                },
            };
            PlannedUnit {
                index,
                shard: shards.filter(|n| *n > 0).map(|n| index % n),
                model: m.id.clone(),
                revision: m.revision.clone(),
                status: status.name(),
                error: match status {
                    UnitStatus::Failed(e) => Some(e),
                    _ => None,
                },
                bytes,
                bytes_from: bytes.and(bytes_from),
            }
        })
        .collect()
}

/// How many units of each status, in the order done, todo, failed, other-config.
pub fn counts(units: &[PlannedUnit]) -> [(&'static str, usize); 4] {
    ["done", "todo", "failed", "other-config"]
        .map(|s| (s, units.iter().filter(|u| u.status == s).count()))
}

/// The bytes of a local checkpoint: a file's size, or the sum of a directory's files (not
/// recursive, as checkpoints are flat); `None` when it cannot be read.
pub fn local_bytes(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some(meta.len());
    }
    let mut total = 0u64;
    for entry in std::fs::read_dir(path).ok()? {
        let meta = std::fs::metadata(entry.ok()?.path()).ok()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_carry_index_shard_status_and_local_size() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("ckpt");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("config.json"), b"{}").unwrap();
        std::fs::write(src.join("model.safetensors"), vec![0u8; 100]).unwrap();
        let text = "name = \"t\"\n[[models]]\nid = \"local\"\nsource = \"ckpt\"\nrevisions = [\"a\", \"b\"]\n[[models]]\nid = \"org/hub\"\nrevisions = { format = \"step{}\", from = 0, to = 2 }\n";
        let p = Pipeline::parse(&tmp.path().join("t.toml"), text).unwrap();
        let ds = DatasetDir::new(tmp.path().join("out"));
        let hash = |m: &ModelEntry| p.config_hash(m);
        let cached = |m: &ModelEntry| (m.revision == "step1").then_some(7);
        let all = plan(&p, &ds, None, Some(2), hash, cached);
        assert_eq!(all.len(), 5);
        assert_eq!(
            all.iter().map(|u| (u.index, u.shard)).collect::<Vec<_>>(),
            [
                (0, Some(0)),
                (1, Some(1)),
                (2, Some(0)),
                (3, Some(1)),
                (4, Some(0))
            ]
        );
        assert!(all.iter().all(|u| u.status == "todo"));
        assert_eq!(
            (all[0].bytes, all[0].bytes_from),
            (Some(102), Some("source"))
        );
        assert_eq!((all[2].bytes, all[2].bytes_from), (None, None));
        assert_eq!((all[3].bytes, all[3].bytes_from), (Some(7), Some("cache")));
        assert_eq!(counts(&all)[1], ("todo", 5));
        let one = plan(&p, &ds, Some(Shard::new(1, 2).unwrap()), None, hash, cached);
        assert_eq!(
            one.iter().map(|u| u.index).collect::<Vec<_>>(),
            [1, 3],
            "shard 1/2 takes the odd units"
        );
    }
}
