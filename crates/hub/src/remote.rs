//! Reading safetensors weights on the Hub without downloading them: [`Hub::open_remote`] and
//! [`RemoteSafetensorsStore`].
//!
//! `config.json` (and a shard index) are small and are fetched into the cache. Of each weight
//! file only the 8-byte header length and the JSON header are read at open, with `Range`
//! requests, and validated with `attn_spectra::checkpoint::safetensors::{header_length,
//! parse_header}` exactly as a local file's would be; a tensor's bytes are requested only when
//! it is read. [`Traffic`] counts the bytes received against the weight files' total size.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use attn_spectra::checkpoint::safetensors::{header_length, parse_header};
use attn_spectra::checkpoint::{SourceFormat, TensorMeta, TensorStore};
use attn_spectra::dtype::decode_f64;
use attn_spectra::{Checkpoint, CheckpointError, ModelConfig};
use reqwest::Url;

use crate::cache::{self, RepoCache};
use crate::error::HubError;
use crate::fetch::{Ctx, describe_listing, read_index};
use crate::transport::{Transport, retry_fatal};
use crate::{Hub, validate_model_id, validate_revision};

/// Bytes received by a remote store, against the size of its weight files.
#[derive(Debug, Default)]
pub struct Traffic {
    downloaded: AtomicU64,
    requests: AtomicU64,
    total: AtomicU64,
}

impl Traffic {
    /// Body bytes received from the weight files so far (headers and tensors).
    pub fn bytes_downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Ranged requests sent to the weight files so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The total size of the weight files.
    pub fn weight_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
    }
}

/// One file of a remotely read model, as the Hub describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path within the repo.
    pub name: String,
    pub size: u64,
    /// Hex sha256: of the cached copy for `config.json` and a shard index, the LFS ETag for
    /// weight files; `None` for a weight file stored in git, whose sha256 only a full
    /// download would tell.
    pub sha256: Option<String>,
}

/// The tensors of safetensors files on the Hub, read by byte range.
pub struct RemoteSafetensorsStore {
    transport: Arc<Transport>,
    model: String,
    commit: String,
    names: Vec<String>,
    urls: Vec<Url>,
    files: Vec<PathBuf>,
    /// Name, size and sha256 of each weight file.
    records: Vec<RemoteFile>,
    tensors: Vec<TensorMeta>,
    /// Absolute byte range of each tensor in its file.
    ranges: Vec<(u64, u64)>,
    traffic: Arc<Traffic>,
}

impl std::fmt::Debug for RemoteSafetensorsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSafetensorsStore")
            .field("model", &self.model)
            .field("commit", &self.commit)
            .field("files", &self.names)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl RemoteSafetensorsStore {
    /// Reads and validates the headers of `shards` of `model` at `commit`. With `index` (the
    /// index file's name and weight map), every tensor it maps must be in the shard it names.
    async fn open(
        transport: Arc<Transport>,
        model: &str,
        commit: &str,
        shards: &[String],
        index: Option<(&str, &HashMap<String, String>)>,
    ) -> Result<RemoteSafetensorsStore, HubError> {
        let traffic = Arc::new(Traffic::default());
        let mut store = RemoteSafetensorsStore {
            transport: Arc::clone(&transport),
            model: model.to_string(),
            commit: commit.to_string(),
            names: Vec::new(),
            urls: Vec::new(),
            files: Vec::new(),
            records: Vec::new(),
            tensors: Vec::new(),
            ranges: Vec::new(),
            traffic: Arc::clone(&traffic),
        };
        let mut owner: HashMap<String, usize> = HashMap::new();
        for shard in shards {
            let url = transport.resolve_url(model, commit, shard)?;
            let display = PathBuf::from(url.as_str());
            // The HEAD gives the LFS ETag, the file's sha256, for the model's provenance.
            let meta = transport.head_file(model, commit, shard).await?;
            let (first8, total) = store.range(shard, &url, (0, 8)).await?;
            let total = total.ok_or_else(|| HubError::Malformed {
                model: model.to_string(),
                what: shard.clone(),
                problem: "no file size in Content-Range".into(),
            })?;
            if meta.size != total {
                return Err(HubError::Malformed {
                    model: model.to_string(),
                    what: shard.clone(),
                    problem: format!(
                        "its HEAD announced {} bytes, a range request {total}",
                        meta.size
                    ),
                });
            }
            store.records.push(RemoteFile {
                name: shard.clone(),
                size: total,
                sha256: cache::is_hex(&meta.etag, 64).then(|| meta.etag.to_ascii_lowercase()),
            });
            traffic.total.fetch_add(total, Ordering::Relaxed);
            let n = header_length(&display, &first8, total)?;
            let json = if n == 0 {
                Vec::new()
            } else {
                store.range(shard, &url, (8, 8 + n)).await?.0
            };
            let data_start = 8 + n;
            let entries = parse_header(&display, &json, total - data_start)?;
            let file = store.files.len();
            for e in entries {
                if let Some(&prev) = owner.get(&e.name) {
                    return Err(CheckpointError::DuplicateTensor {
                        name: e.name,
                        first: store.files[prev].clone(),
                        second: display,
                    }
                    .into());
                }
                owner.insert(e.name.clone(), file);
                store
                    .ranges
                    .push((data_start + e.range.0 as u64, data_start + e.range.1 as u64));
                store.tensors.push(TensorMeta {
                    name: e.name,
                    stored_name: None,
                    dtype: e.dtype,
                    shape: e.shape,
                    file,
                });
            }
            store.names.push(shard.clone());
            store.urls.push(url);
            store.files.push(display);
        }
        if let Some((index_name, map)) = index {
            for (tensor, shard) in map {
                let ok = owner.get(tensor).is_some_and(|&f| store.names[f] == *shard);
                if !ok {
                    return Err(HubError::Index {
                        model: model.to_string(),
                        file: index_name.to_string(),
                        problem: format!("maps `{tensor}` to {shard}, which does not hold it"),
                    });
                }
            }
        }
        Ok(store)
    }

    /// Counters of the bytes this store received.
    pub fn traffic(&self) -> Arc<Traffic> {
        Arc::clone(&self.traffic)
    }

    /// Name, size and sha256 of each weight file, in the order opened.
    pub fn file_records(&self) -> &[RemoteFile] {
        &self.records
    }

    /// The absolute byte range of tensor `index` in its file.
    pub fn byte_range(&self, index: usize) -> Option<(u64, u64)> {
        self.ranges.get(index).copied()
    }

    /// One ranged GET under the retry policy.
    async fn range(
        &self,
        file: &str,
        url: &Url,
        range: (u64, u64),
    ) -> Result<(Vec<u8>, Option<u64>), HubError> {
        let t: &Transport = &self.transport;
        let traffic: &Traffic = &self.traffic;
        let (model, commit) = (self.model.as_str(), self.commit.as_str());
        let count = move |n: u64| traffic.add(n);
        let r = retry_fatal(t, || {
            traffic.requests.fetch_add(1, Ordering::Relaxed);
            t.get_range(model, commit, file, url, range, &count)
        })
        .await;
        match r {
            Ok(inner) => inner,
            Err((attempts, last)) => Err(HubError::DownloadFailed {
                model: self.model.clone(),
                file: format!("{file} bytes {}..{}", range.0, range.1),
                attempts,
                last,
            }),
        }
    }
}

impl TensorStore for RemoteSafetensorsStore {
    fn format(&self) -> SourceFormat {
        SourceFormat::Safetensors
    }

    fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    fn read(&self, index: usize) -> Result<Vec<f64>, CheckpointError> {
        let meta = self
            .tensors
            .get(index)
            .ok_or_else(|| CheckpointError::TensorNotFound {
                name: format!("#{index}"),
                files: self.files.clone(),
            })?;
        let path = &self.files[meta.file];
        if !meta.dtype.is_plain_float() {
            return Err(CheckpointError::UnsupportedDType {
                tensor: meta.name.clone(),
                file: path.clone(),
                dtype: meta.dtype,
            });
        }
        let (begin, end) = self.ranges[index];
        let bytes = if begin == end {
            Vec::new()
        } else {
            let got = self.transport.block_on(self.range(
                &self.names[meta.file],
                &self.urls[meta.file],
                (begin, end),
            ));
            got.map_err(|e| CheckpointError::Io {
                path: path.clone(),
                source: std::io::Error::other(format!("reading tensor `{}`: {e}", meta.name)),
            })?
            .0
        };
        if bytes.len() as u64 != end - begin {
            return Err(CheckpointError::Safetensors {
                file: path.clone(),
                problem: format!(
                    "tensor `{}`: {} bytes arrived for a {}-byte range",
                    meta.name,
                    bytes.len(),
                    end - begin
                ),
            });
        }
        let mut out = Vec::new();
        decode_f64(meta.dtype, &bytes, &mut out).ok_or_else(|| CheckpointError::Safetensors {
            file: path.clone(),
            problem: format!(
                "tensor `{}`: {} bytes are not a whole number of {} elements",
                meta.name,
                bytes.len(),
                meta.dtype
            ),
        })?;
        Ok(out)
    }
}

/// A model read remotely: its configuration and a checkpoint whose tensors come by range.
pub struct RemoteCheckpoint {
    pub model_id: String,
    pub revision: String,
    pub commit: String,
    pub checkpoint: Checkpoint,
    /// The files read: `config.json`, the shard index if any, then the weight files.
    pub files: Vec<RemoteFile>,
    traffic: Arc<Traffic>,
}

impl std::fmt::Debug for RemoteCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCheckpoint")
            .field("model_id", &self.model_id)
            .field("revision", &self.revision)
            .field("commit", &self.commit)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl RemoteCheckpoint {
    pub fn config(&self) -> &ModelConfig {
        self.checkpoint.config()
    }

    /// Bytes received from the weight files so far.
    pub fn bytes_downloaded(&self) -> u64 {
        self.traffic.bytes_downloaded()
    }

    /// The total size of the weight files.
    pub fn weight_bytes(&self) -> u64 {
        self.traffic.weight_bytes()
    }

    /// The shared counters (they keep counting as the checkpoint is read).
    pub fn traffic(&self) -> Arc<Traffic> {
        Arc::clone(&self.traffic)
    }
}

impl Hub {
    /// Opens `model_id` at `revision` for remote reading: `config.json` (and a shard index)
    /// are fetched into the cache, the safetensors headers are read by range, and tensors are
    /// downloaded only when read.
    pub fn open_remote(
        &self,
        model_id: &str,
        revision: &str,
    ) -> Result<RemoteCheckpoint, HubError> {
        validate_model_id(model_id)?;
        validate_revision(model_id, revision)?;
        if self.opts.offline {
            return Err(HubError::OfflineRemote {
                model: model_id.to_string(),
            });
        }
        let ctx = Ctx {
            model: model_id,
            revision,
            cache: RepoCache::new(&self.opts.cache_dir, model_id),
        };
        self.transport.block_on(self.open_remote_async(&ctx))
    }

    async fn open_remote_async(&self, ctx: &Ctx<'_>) -> Result<RemoteCheckpoint, HubError> {
        let (commit, listing) = self.resolve(ctx.model, ctx.revision).await?;
        let counter = AtomicU64::new(0);
        let small = |f: crate::FileRecord| RemoteFile {
            name: f.name,
            size: f.size,
            sha256: Some(f.sha256),
        };
        let mut files = vec![small(
            self.ensure_file(ctx, &commit, "config.json", &counter)
                .await?,
        )];
        let config = ModelConfig::load(&ctx.cache.snapshot(&commit, "config.json"))
            .map_err(CheckpointError::from)?;
        let has = |f: &str| listing.as_ref().map(|l| l.iter().any(|x| x == f));
        let single = "model.safetensors";
        let index_name = "model.safetensors.index.json";
        let use_index = match (has(single), has(index_name)) {
            (Some(true), _) => false,
            (_, Some(true)) => true,
            (Some(false), Some(false)) => {
                return Err(HubError::RemoteUnsupported {
                    model: ctx.model.to_string(),
                    revision: ctx.revision.to_string(),
                    found: describe_listing(listing.as_deref()),
                });
            }
            _ => match self.transport.head_file(ctx.model, &commit, single).await {
                Ok(_) => false,
                Err(HubError::FileNotFound { .. }) => true,
                Err(e) => return Err(e),
            },
        };
        let store = if use_index {
            files.push(small(
                self.ensure_file(ctx, &commit, index_name, &counter).await?,
            ));
            let (shards, map) = read_index(
                ctx.model,
                index_name,
                &ctx.cache.snapshot(&commit, index_name),
            )?;
            RemoteSafetensorsStore::open(
                Arc::clone(&self.transport),
                ctx.model,
                &commit,
                &shards,
                Some((index_name, &map)),
            )
            .await?
        } else {
            RemoteSafetensorsStore::open(
                Arc::clone(&self.transport),
                ctx.model,
                &commit,
                &[single.to_string()],
                None,
            )
            .await?
        };
        if !cache::is_commit_sha(ctx.revision) {
            ctx.cache.write_ref(ctx.revision, &commit)?;
        }
        let traffic = store.traffic();
        files.extend_from_slice(store.file_records());
        let root = format!("{}/{}/tree/{commit}", self.transport.endpoint, ctx.model);
        let checkpoint = Checkpoint::from_parts(Path::new(&root), config, Box::new(store));
        Ok(RemoteCheckpoint {
            model_id: ctx.model.to_string(),
            revision: ctx.revision.to_string(),
            commit,
            checkpoint,
            files,
            traffic,
        })
    }
}
