//! Where a pipeline model's checkpoint comes from: a local `source`, the Hugging Face cache
//! (fetching what is missing), or the Hub itself read by HTTP range (`--remote`); and what is
//! known of its provenance (commit, files with their sha256, byte-identical revisions).
//! [`locate_ahead`] locates a run's models one ahead of the computation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::Scope;

use attn_spectra::dataset::FileRecord;
use attn_spectra::extract::Provenance;
use attn_spectra::pipeline::ModelEntry;
use attn_spectra::{Architecture, Checkpoint};

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

    /// Hub access through `hub` (its own endpoint, cache and options) instead of the
    /// environment's.
    pub fn with_hub(hub: Hub) -> Hubs {
        Hubs {
            offline: hub.opts.offline,
            progress: hub.opts.progress,
            hub: Some(hub),
        }
    }

    /// Whether downloads draw progress bars from now on.
    pub fn set_progress(&mut self, on: bool) {
        self.progress = on;
        if let Some(hub) = &mut self.hub {
            hub.opts.progress = on;
            hub.bars = crate::progress::bars_enabled(on);
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

/// Locates `models` in order on a thread of `scope`, one ahead of the caller: while the caller
/// computes one unit, the next is located (its files fetched into the cache, or with `remote`
/// its headers read from the Hub) and its first two layers' tensors are hinted to its store
/// ([`Checkpoint::prefetch`]), so that a remote checkpoint downloads them meanwhile. The
/// channel is a rendezvous: one located unit waits, never more. The results arrive in the
/// order of `models`, one per model; the thread stops when the receiver is dropped.
///
/// Download bars are drawn for the first model only: later ones download behind the caller's
/// own progress bars.
pub fn locate_ahead<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    mut hubs: Hubs,
    models: Vec<&'env ModelEntry>,
    remote: bool,
) -> mpsc::Receiver<Result<Located, HubError>> {
    let (tx, rx) = mpsc::sync_channel(0);
    scope.spawn(move || {
        let progress = hubs.progress;
        for (i, model) in models.into_iter().enumerate() {
            hubs.set_progress(progress && i == 0);
            let located = hubs.locate(model, remote);
            if let Ok(located) = &located {
                located.prefetch_first_layers();
            }
            if tx.send(located).is_err() {
                return;
            }
        }
    });
    rx
}

impl Located {
    /// Hints layers 0 and 1's tensors to the checkpoint's store (local stores ignore it): the
    /// same hint the extract's reader gives before reading layer 0, so that the requests are
    /// merged as they would be without looking ahead. A config the registry does not know
    /// hints nothing: extracting the model reports it.
    pub fn prefetch_first_layers(&self) {
        if let Ok(arch) = Architecture::detect(self.ckpt.config()) {
            arch.prefetch_from(&self.ckpt, 0);
        }
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
