//! Reading safetensors weights on the Hub without downloading them: [`Hub::open_remote`] and
//! [`RemoteSafetensorsStore`].
//!
//! `config.json` (and a shard index) are small and are fetched into the cache. Of each weight
//! file only the 8-byte header length and the JSON header are read at open, with `Range`
//! requests, and validated with `attn_spectra::checkpoint::safetensors::{header_length,
//! parse_header}` exactly as a local file's would be; a tensor's bytes are requested only when
//! it is read. [`Traffic`] counts the bytes received against the weight files' total size.
//!
//! The extract stage hints which tensors it will read next ([`TensorStore::prefetch`]: the
//! current layer's and the next one's). The store then merges their byte ranges within each
//! file, bridging gaps of at most [`MERGE_GAP`] bytes (downloaded and dropped) into runs of at
//! most [`MAX_RUN`] bytes, and fetches the runs in the background with at most [`IN_FLIGHT`]
//! requests at once, so that a layer costs one or a few round trips and the next layer
//! downloads while this one is analysed. A read takes its bytes from its run (waiting for it
//! if need be); a tensor not hinted is requested alone, as before. A new hint drops whatever
//! earlier hints fetched and nobody read, so at most two layers' runs are held.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

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

/// Byte ranges of one file whose gap is at most this many bytes are fetched by one request:
/// up to 1 MiB downloaded and dropped per merge, against a round trip saved.
pub const MERGE_GAP: u64 = 1 << 20;

/// A merged request grows to at most this many bytes (a tensor larger than that is one
/// request of its own), so that a large layer still goes out as several requests in flight.
pub const MAX_RUN: u64 = 64 << 20;

/// Prefetch requests one store keeps in flight at once.
pub const IN_FLIGHT: usize = 4;

/// The answer to one merged request: its bytes, or the error that ended it.
type Fetched = Result<Arc<Vec<u8>>, String>;

/// One merged byte range of one file, fetched in the background.
struct Run {
    file: usize,
    range: (u64, u64),
    slot: Mutex<Option<Fetched>>,
    ready: Condvar,
}

impl Run {
    fn fill(&self, answer: Fetched) {
        let mut slot = lock(&self.slot);
        if slot.is_none() {
            *slot = Some(answer);
        }
        self.ready.notify_all();
    }

    fn wait(&self) -> Fetched {
        let mut slot = lock(&self.slot);
        loop {
            if let Some(answer) = slot.as_ref() {
                return answer.clone();
            }
            slot = self
                .ready
                .wait(slot)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Answers a run that its task dropped unanswered (a panic), so that no reader waits forever.
struct Answer(Arc<Run>);

impl Drop for Answer {
    fn drop(&mut self) {
        self.0
            .fill(Err("the background request ended without an answer".into()));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The prefetch state of a store: which run holds each hinted tensor, the runs waiting for a
/// request, and how many background workers are sending them.
#[derive(Default)]
struct Prefetch {
    held: HashMap<usize, Arc<Run>>,
    queue: VecDeque<Arc<Run>>,
    workers: usize,
}

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
    prefetch: Arc<Mutex<Prefetch>>,
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
            prefetch: Arc::default(),
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
        fetch_range(
            &self.transport,
            &self.traffic,
            (&self.model, &self.commit),
            (file, url),
            range,
        )
        .await
    }

    /// Starts the background workers for queued runs, up to [`IN_FLIGHT`] at once.
    fn start_workers(&self, state: &mut Prefetch) {
        let more = IN_FLIGHT
            .saturating_sub(state.workers)
            .min(state.queue.len());
        for _ in 0..more {
            state.workers += 1;
            let worker = Worker {
                transport: Arc::clone(&self.transport),
                traffic: Arc::clone(&self.traffic),
                model: self.model.clone(),
                commit: self.commit.clone(),
                names: self.names.clone(),
                urls: self.urls.clone(),
                prefetch: Arc::clone(&self.prefetch),
            };
            self.transport.spawn(worker.run());
        }
    }
}

/// One ranged GET under the retry policy, counted in `traffic`.
async fn fetch_range(
    t: &Transport,
    traffic: &Traffic,
    (model, commit): (&str, &str),
    (file, url): (&str, &Url),
    range: (u64, u64),
) -> Result<(Vec<u8>, Option<u64>), HubError> {
    let count = move |n: u64| traffic.add(n);
    let r = retry_fatal(t, || {
        traffic.requests.fetch_add(1, Ordering::Relaxed);
        t.get_range(model, commit, file, url, range, &count)
    })
    .await;
    match r {
        Ok(inner) => inner,
        Err((attempts, last)) => Err(HubError::DownloadFailed {
            model: model.to_string(),
            file: format!("{file} bytes {}..{}", range.0, range.1),
            attempts,
            last,
        }),
    }
}

/// A background task sending queued runs' requests until the queue is empty.
struct Worker {
    transport: Arc<Transport>,
    traffic: Arc<Traffic>,
    model: String,
    commit: String,
    names: Vec<String>,
    urls: Vec<Url>,
    prefetch: Arc<Mutex<Prefetch>>,
}

impl Worker {
    async fn run(self) {
        loop {
            let run = {
                let mut state = lock(&self.prefetch);
                match state.queue.pop_front() {
                    Some(run) => run,
                    None => {
                        state.workers -= 1;
                        return;
                    }
                }
            };
            // Every tensor of the run was dropped by a newer hint: nobody will read it.
            if Arc::strong_count(&run) == 1 {
                continue;
            }
            let answer = Answer(Arc::clone(&run));
            let got = fetch_range(
                &self.transport,
                &self.traffic,
                (&self.model, &self.commit),
                (&self.names[run.file], &self.urls[run.file]),
                run.range,
            )
            .await;
            answer.0.fill(
                got.map(|(bytes, _)| Arc::new(bytes))
                    .map_err(|e| e.to_string()),
            );
        }
    }
}

/// Merges the byte ranges of one file's tensors (sorted by start) into runs: a range joins
/// the run before it when the gap is at most [`MERGE_GAP`] and the run stays within
/// [`MAX_RUN`]. Returns each run's range and the positions (into `ranges`) it covers.
pub fn merge_ranges(ranges: &[(u64, u64)]) -> Vec<((u64, u64), Vec<usize>)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i]);
    let mut runs: Vec<((u64, u64), Vec<usize>)> = Vec::new();
    for i in order {
        let (begin, end) = ranges[i];
        match runs.last_mut() {
            Some(((start, stop), members))
                if begin <= stop.saturating_add(MERGE_GAP)
                    && end.max(*stop) - *start <= MAX_RUN =>
            {
                *stop = end.max(*stop);
                members.push(i);
            }
            _ => runs.push(((begin, end), vec![i])),
        }
    }
    runs
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
        let run = lock(&self.prefetch).held.remove(&index);
        let bytes = if begin == end {
            Vec::new()
        } else if let Some(run) = run {
            let whole = run.wait().map_err(|e| CheckpointError::Io {
                path: path.clone(),
                source: std::io::Error::other(format!("reading tensor `{}`: {e}", meta.name)),
            })?;
            let (lo, hi) = ((begin - run.range.0) as usize, (end - run.range.0) as usize);
            match whole.get(lo..hi) {
                Some(b) => b.to_vec(),
                None => whole
                    .get(lo.min(whole.len())..)
                    .unwrap_or_default()
                    .to_vec(),
            }
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

    fn prefetch(&self, indices: &[usize]) {
        let mut state = lock(&self.prefetch);
        state.held.retain(|i, _| indices.contains(i));
        // Per file, the plain-float tensors with bytes that no earlier hint is fetching.
        let mut by_file: Vec<Vec<usize>> = vec![Vec::new(); self.files.len()];
        for &i in indices {
            let Some(meta) = self.tensors.get(i) else {
                continue;
            };
            let (begin, end) = self.ranges[i];
            if begin < end
                && meta.dtype.is_plain_float()
                && !state.held.contains_key(&i)
                && !by_file[meta.file].contains(&i)
            {
                by_file[meta.file].push(i);
            }
        }
        for (file, wanted) in by_file.into_iter().enumerate() {
            let ranges: Vec<(u64, u64)> = wanted.iter().map(|&i| self.ranges[i]).collect();
            for (range, members) in merge_ranges(&ranges) {
                let run = Arc::new(Run {
                    file,
                    range,
                    slot: Mutex::new(None),
                    ready: Condvar::new(),
                });
                for m in members {
                    state.held.insert(wanted[m], Arc::clone(&run));
                }
                state.queue.push_back(run);
            }
        }
        self.start_workers(&mut state);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_ranges_merge_and_far_or_long_ones_do_not() {
        // Adjacent, then a gap of exactly MERGE_GAP, then one byte more.
        let a = (0, 100);
        let b = (100, 200);
        let c = (200 + MERGE_GAP, 300 + MERGE_GAP);
        let d = (300 + 2 * MERGE_GAP + 1, 400 + 2 * MERGE_GAP);
        // Given out of order: runs come sorted, members name positions in the input.
        let runs = merge_ranges(&[c, a, d, b]);
        assert_eq!(
            runs,
            [
                ((0, 300 + MERGE_GAP), vec![1, 3, 0]),
                ((300 + 2 * MERGE_GAP + 1, 400 + 2 * MERGE_GAP), vec![2]),
            ]
        );
        // A run stops growing at MAX_RUN; a tensor longer than that is a run alone.
        let big = (0, MAX_RUN + 10);
        let after = (MAX_RUN + 10, MAX_RUN + 20);
        assert_eq!(merge_ranges(&[big, after]).len(), 2);
        let half = MAX_RUN / 2;
        let runs = merge_ranges(&[(0, half), (half, 2 * half), (2 * half, 2 * half + 1)]);
        assert_eq!(
            runs,
            [
                ((0, 2 * half), vec![0, 1]),
                ((2 * half, 2 * half + 1), vec![2])
            ]
        );
        assert!(merge_ranges(&[]).is_empty());
    }
}
