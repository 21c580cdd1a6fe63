//! Where a pipeline model's checkpoint comes from: a local `source`, the Hugging Face cache
//! (fetching what is missing), or the Hub itself read by HTTP range (`--remote`); and what is
//! known of its provenance (commit, files with their sha256, byte-identical revisions).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use attn_spectra::Checkpoint;
use attn_spectra::dataset::FileRecord;
use attn_spectra::extract::Provenance;
use attn_spectra::pipeline::ModelEntry;

use crate::{FetchedModel, Hub, HubError, HubOptions, Traffic, Want};

/// A model's checkpoint and what is known of its provenance.
pub struct Located {
    pub ckpt: Checkpoint,
    pub provenance: Provenance,
    /// For `--remote`: the bytes downloaded so far and the total weight bytes, read after
    /// extraction.
    pub remote: Option<Arc<Traffic>>,
}

/// Hub access for one run, created on first use (a run over local sources never builds a
/// client).
pub struct Hubs {
    offline: bool,
    progress: bool,
    hub: Option<Hub>,
}

impl Hubs {
    pub fn new(offline: bool, progress: bool) -> Hubs {
        Hubs {
            offline,
            progress,
            hub: None,
        }
    }

    /// The client, configured from HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE and
    /// HF_HUB_OFFLINE (or `offline`).
    pub fn hub(&mut self) -> Result<&Hub, HubError> {
        if self.hub.is_none() {
            let mut opts = HubOptions::from_env();
            opts.offline |= self.offline;
            opts.progress = self.progress;
            self.hub = Some(Hub::new(opts)?);
        }
        Ok(self.hub.as_ref().expect("just created"))
    }

    /// Fetches (or finds in the cache) the files of a Hub model.
    pub fn fetch(&mut self, model: &ModelEntry) -> Result<FetchedModel, HubError> {
        let want = match &model.gguf {
            Some(name) => Want::Gguf(name.clone()),
            None => Want::Auto,
        };
        self.hub()?.fetch(&model.id, &model.revision, want)
    }

    /// Opens a model: its local `source`, or its Hub files (fetched into the cache if
    /// missing), or with `remote` its safetensors read by range from the Hub.
    pub fn locate(&mut self, model: &ModelEntry, remote: bool) -> Result<Located, HubError> {
        if let Some(path) = &model.source {
            let ckpt = Checkpoint::open(path)?;
            let provenance = Provenance::local(&ckpt, cached_blob_sha256)?;
            return Ok(Located {
                ckpt,
                provenance,
                remote: None,
            });
        }
        if remote && model.gguf.is_none() {
            let r = self.hub()?.open_remote(&model.id, &model.revision)?;
            let traffic = r.traffic();
            // The checkpoint's files are URLs: their names, sizes and sha256 come from the Hub.
            let files = r
                .files
                .iter()
                .map(|f| FileRecord {
                    name: f.name.clone(),
                    sha256: f.sha256.clone(),
                    size: f.size,
                })
                .collect();
            return Ok(Located {
                ckpt: r.checkpoint,
                provenance: Provenance {
                    commit: Some(r.commit),
                    files,
                    identical_to: None,
                },
                remote: Some(traffic),
            });
        }
        let fetched = self.fetch(model)?;
        let path: PathBuf = match &model.gguf {
            Some(name) => fetched.path(name),
            None => fetched.dir.clone(),
        };
        let ckpt = Checkpoint::open(&path)?;
        Ok(Located {
            ckpt,
            provenance: Provenance {
                commit: Some(fetched.commit.clone()),
                files: fetched
                    .files
                    .iter()
                    .map(|f| FileRecord {
                        name: f.name.clone(),
                        sha256: Some(f.sha256.clone()),
                        size: f.size,
                    })
                    .collect(),
                identical_to: fetched.identical_to.clone(),
            },
            remote: None,
        })
    }
}

/// The bytes of `model`@`revision`'s files in the Hugging Face cache at `cache_dir` (the
/// snapshot its ref, or the commit it names, points to), without the network; `None` when
/// the cache has no snapshot of it. Counts what is cached, which may be fewer files than the
/// checkpoint has.
pub fn cached_bytes(cache_dir: &Path, model: &str, revision: &str) -> Option<u64> {
    let repo = crate::cache::RepoCache::new(cache_dir, model);
    let commit = if crate::cache::is_commit_sha(revision) {
        revision.to_string()
    } else {
        repo.read_ref(revision)?
    };
    let dir = repo.snapshot_dir(&commit);
    let mut total = 0u64;
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            // metadata() follows the snapshot's links to their blobs.
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    Some(total)
}

/// The sha256 of a file that is a link into a Hugging Face cache's `blobs/` (LFS blobs are
/// named by their sha256), without reading it; `None` for any other file.
pub fn cached_blob_sha256(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    let blob = target.file_name()?.to_str()?.to_string();
    let in_blobs = target.parent()?.file_name()? == "blobs";
    (in_blobs && blob.len() == 64 && blob.chars().all(|c| c.is_ascii_hexdigit())).then_some(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn cached_bytes_follow_the_ref_to_the_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = crate::cache::RepoCache::new(tmp.path(), "org/m");
        let commit = "c".repeat(40);
        assert_eq!(cached_bytes(tmp.path(), "org/m", "main"), None);
        repo.write_ref("main", &commit).unwrap();
        let snap = repo.snapshot_dir(&commit);
        std::fs::create_dir_all(snap.join("sub")).unwrap();
        std::fs::create_dir_all(tmp.path().join("blobs")).unwrap();
        std::fs::write(tmp.path().join("blobs/b"), vec![1u8; 10]).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("blobs/b"), snap.join("w.safetensors")).unwrap();
        std::fs::write(snap.join("sub/config.json"), b"{}").unwrap();
        assert_eq!(cached_bytes(tmp.path(), "org/m", "main"), Some(12));
        assert_eq!(cached_bytes(tmp.path(), "org/m", &commit), Some(12));
        assert_eq!(cached_bytes(tmp.path(), "org/m", "step1"), None);
    }

    #[cfg(unix)]
    #[test]
    fn blob_links_give_their_sha256() {
        let tmp = tempfile::tempdir().unwrap();
        let sha = "ab".repeat(32);
        std::fs::create_dir_all(tmp.path().join("blobs")).unwrap();
        std::fs::create_dir_all(tmp.path().join("snapshots/c")).unwrap();
        std::fs::write(tmp.path().join("blobs").join(&sha), b"w").unwrap();
        let link = tmp.path().join("snapshots/c/model.safetensors");
        std::os::unix::fs::symlink(format!("../../blobs/{sha}"), &link).unwrap();
        assert_eq!(cached_blob_sha256(&link), Some(sha.clone()));
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert_eq!(cached_blob_sha256(&plain), None);
        let short = tmp.path().join("snapshots/c/short");
        std::os::unix::fs::symlink("../../blobs/abc", &short).unwrap();
        assert_eq!(cached_blob_sha256(&short), None);
    }
}
