//! Where a pipeline model's checkpoint comes from: a local `source`, the Hugging Face cache
//! (fetching what is missing), or the Hub itself read by HTTP range (`--remote`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use attn_spectra::Checkpoint;
use attn_spectra::dataset::rows::FileRecord;
use attn_spectra::pipeline::ModelEntry;
use attn_spectra_hub::{FetchedModel, Hub, HubOptions, Want};

/// A model's checkpoint and what is known of its provenance.
pub struct Located {
    pub ckpt: Checkpoint,
    /// The resolved Hub commit; `None` for local sources.
    pub commit: Option<String>,
    /// Files with sha256 where the Hub gave it; `None`: take them from the checkpoint.
    pub files: Option<Vec<FileRecord>>,
    /// Another revision whose files are byte-identical.
    pub identical_to: Option<String>,
    /// For `--remote`: (bytes downloaded so far, total weight bytes), read after extraction.
    pub remote: Option<std::sync::Arc<attn_spectra_hub::Traffic>>,
}

/// Hub access for one run, created on first use.
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
    /// HF_HUB_OFFLINE (or `--offline`).
    pub fn hub(&mut self) -> Result<&Hub> {
        if self.hub.is_none() {
            let mut opts = HubOptions::from_env();
            opts.offline |= self.offline;
            opts.progress = self.progress;
            self.hub = Some(Hub::new(opts)?);
        }
        Ok(self.hub.as_ref().expect("just created"))
    }

    /// Fetches (or finds in the cache) the files of a Hub model.
    pub fn fetch(&mut self, model: &ModelEntry) -> Result<FetchedModel> {
        let want = match &model.gguf {
            Some(name) => Want::Gguf(name.clone()),
            None => Want::Auto,
        };
        Ok(self.hub()?.fetch(&model.id, &model.revision, want)?)
    }
}

/// Opens a model: its local `source`, or its Hub files (fetched into the cache if missing),
/// or with `remote` its safetensors read by range from the Hub.
pub fn locate(model: &ModelEntry, hubs: &mut Hubs, remote: bool) -> Result<Located> {
    if let Some(path) = &model.source {
        return Ok(Located {
            ckpt: Checkpoint::open(path)?,
            commit: None,
            files: None,
            identical_to: None,
            remote: None,
        });
    }
    if remote && model.gguf.is_none() {
        let r = hubs.hub()?.open_remote(&model.id, &model.revision)?;
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
            commit: Some(r.commit),
            files: Some(files),
            identical_to: None,
            remote: Some(traffic),
        });
    }
    let fetched = hubs.fetch(model)?;
    let path: PathBuf = match &model.gguf {
        Some(name) => fetched.path(name),
        None => fetched.dir.clone(),
    };
    let ckpt = Checkpoint::open(&path).with_context(|| {
        format!(
            "opening the cached files of {}@{}",
            model.id, model.revision
        )
    })?;
    Ok(Located {
        ckpt,
        commit: Some(fetched.commit.clone()),
        files: Some(
            fetched
                .files
                .iter()
                .map(|f| FileRecord {
                    name: f.name.clone(),
                    sha256: Some(f.sha256.clone()),
                    size: f.size,
                })
                .collect(),
        ),
        identical_to: fetched.identical_to.clone(),
        remote: None,
    })
}
