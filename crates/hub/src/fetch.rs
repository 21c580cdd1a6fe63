//! [`Hub::fetch`]: choosing the files of a checkpoint, downloading each one into the cache
//! with a verified, resumable download, and answering offline requests from the cache.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use attn_spectra::CheckpointError;
use indicatif::ProgressBar;
use reqwest::header::RANGE;
use reqwest::{StatusCode, Url};

use crate::cache::{self, Landed, RepoCache, Verdict};
use crate::error::HubError;
use crate::progress::file_bar;
use crate::transport::{Attempt, FileMeta, content_range, transient};
use crate::{
    FetchedModel, FileRecord, Hub, Want, validate_file_name, validate_model_id, validate_revision,
};

/// Weight layouts in the order they are looked for.
const WEIGHTS: [(&str, bool); 4] = [
    ("model.safetensors", false),
    ("model.safetensors.index.json", true),
    ("pytorch_model.bin", false),
    ("pytorch_model.bin.index.json", true),
];

const EXPECTED_WEIGHTS: &str = "model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json";

/// How long to wait for another process's lock on a blob.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// The model and revision a fetch is about.
pub(crate) struct Ctx<'a> {
    pub model: &'a str,
    pub revision: &'a str,
    pub cache: RepoCache,
}

/// A shard index's `weight_map`, read from a downloaded index file.
pub(crate) fn read_index(
    model: &str,
    name: &str,
    path: &Path,
) -> Result<(Vec<String>, std::collections::HashMap<String, String>), HubError> {
    let bytes = std::fs::read(path).map_err(|e| HubError::io(path, e))?;
    attn_spectra::checkpoint::parse_shard_index(Path::new(name), &bytes).map_err(|e| match e {
        CheckpointError::Index { problem, .. } => HubError::Index {
            model: model.to_string(),
            file: name.to_string(),
            problem,
        },
        other => other.into(),
    })
}

impl Hub {
    /// Fetches `want` of `model_id` at `revision` into the cache (or, offline, finds it there).
    pub fn fetch(
        &self,
        model_id: &str,
        revision: &str,
        want: Want,
    ) -> Result<FetchedModel, HubError> {
        validate_model_id(model_id)?;
        validate_revision(model_id, revision)?;
        if let Want::Gguf(name) = &want {
            validate_file_name(model_id, name)?;
            if !name.ends_with(".gguf") {
                return Err(HubError::BadFileName {
                    model: model_id.to_string(),
                    file: name.clone(),
                    problem: "a GGUF file name must end in `.gguf`",
                });
            }
        }
        let ctx = Ctx {
            model: model_id,
            revision,
            cache: RepoCache::new(&self.opts.cache_dir, model_id),
        };
        if self.opts.offline {
            return self.fetch_offline(&ctx, &want);
        }
        self.transport.block_on(self.fetch_online(&ctx, &want))
    }

    /// Resolves the revision to a commit and lists the repo's files
    /// (`/api/models/{id}/revision/{rev}`), with the retry policy.
    pub(crate) async fn resolve(
        &self,
        model: &str,
        revision: &str,
    ) -> Result<(String, Option<Vec<String>>), HubError> {
        let info = self.transport.repo_info(model, revision).await?;
        let commit = info.sha.ok_or_else(|| HubError::Malformed {
            model: model.to_string(),
            what: format!("repo info at {revision}"),
            problem: "no commit sha".into(),
        })?;
        if !cache::is_commit_sha(&commit) {
            return Err(HubError::Malformed {
                model: model.to_string(),
                what: format!("repo info at {revision}"),
                problem: format!("`{commit}` is not a commit sha"),
            });
        }
        let listing = info
            .siblings
            .map(|s| s.into_iter().map(|f| f.rfilename).collect());
        Ok((commit.to_ascii_lowercase(), listing))
    }

    /// Whether `file` exists at `commit`: from the listing, or by asking.
    async fn has_file(
        &self,
        ctx: &Ctx<'_>,
        commit: &str,
        listing: Option<&Vec<String>>,
        file: &str,
    ) -> Result<bool, HubError> {
        if let Some(l) = listing {
            return Ok(l.iter().any(|f| f == file));
        }
        match self.transport.head_file(ctx.model, commit, file).await {
            Ok(_) => Ok(true),
            Err(HubError::FileNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn fetch_online(&self, ctx: &Ctx<'_>, want: &Want) -> Result<FetchedModel, HubError> {
        let (commit, listing) = self.resolve(ctx.model, ctx.revision).await?;
        let counter = AtomicU64::new(0);
        let mut records = Vec::new();
        match want {
            Want::Auto => {
                records.push(
                    self.ensure_file(ctx, &commit, "config.json", &counter)
                        .await?,
                );
                let mut chosen = None;
                for (name, is_index) in WEIGHTS {
                    if self.has_file(ctx, &commit, listing.as_ref(), name).await? {
                        chosen = Some((name, is_index));
                        break;
                    }
                }
                let Some((name, is_index)) = chosen else {
                    return Err(HubError::NoWeights {
                        model: ctx.model.to_string(),
                        revision: ctx.revision.to_string(),
                        expected: EXPECTED_WEIGHTS,
                        found: describe_listing(listing.as_deref()),
                    });
                };
                records.push(self.ensure_file(ctx, &commit, name, &counter).await?);
                if is_index {
                    let (shards, _) =
                        read_index(ctx.model, name, &ctx.cache.snapshot(&commit, name))?;
                    for shard in shards {
                        records.push(self.ensure_file(ctx, &commit, &shard, &counter).await?);
                    }
                }
            }
            Want::Gguf(name) => {
                if self
                    .has_file(ctx, &commit, listing.as_ref(), "config.json")
                    .await?
                {
                    records.push(
                        self.ensure_file(ctx, &commit, "config.json", &counter)
                            .await?,
                    );
                }
                if !self.has_file(ctx, &commit, listing.as_ref(), name).await? {
                    return Err(HubError::FileNotFound {
                        model: ctx.model.to_string(),
                        revision: ctx.revision.to_string(),
                        file: name.clone(),
                    });
                }
                records.push(self.ensure_file(ctx, &commit, name, &counter).await?);
            }
        }
        if !cache::is_commit_sha(ctx.revision) {
            ctx.cache.write_ref(ctx.revision, &commit)?;
        }
        self.finish(ctx, commit, records, counter.load(Ordering::Relaxed))
    }

    fn finish(
        &self,
        ctx: &Ctx<'_>,
        commit: String,
        files: Vec<FileRecord>,
        bytes_downloaded: u64,
    ) -> Result<FetchedModel, HubError> {
        let landed: Vec<Landed<'_>> = files
            .iter()
            .map(|f| Landed {
                name: &f.name,
                size: f.size,
                etag: &f.etag,
                sha256: &f.sha256,
            })
            .collect();
        let identical_to = cache::identical_revision(&ctx.cache, &commit, ctx.revision, &landed)?;
        Ok(FetchedModel {
            model_id: ctx.model.to_string(),
            revision: ctx.revision.to_string(),
            dir: ctx.cache.snapshot_dir(&commit),
            commit,
            files,
            bytes_downloaded,
            identical_to,
        })
    }

    /// Makes sure `file` at `commit` is in the cache, verified, and linked from the snapshot.
    pub(crate) async fn ensure_file(
        &self,
        ctx: &Ctx<'_>,
        commit: &str,
        file: &str,
        counter: &AtomicU64,
    ) -> Result<FileRecord, HubError> {
        validate_file_name(ctx.model, file)?;
        let meta = self.transport.head_file(ctx.model, commit, file).await?;
        if !cache::etag_is_safe(&meta.etag) {
            return Err(HubError::Malformed {
                model: ctx.model.to_string(),
                what: file.to_string(),
                problem: format!("ETag `{}` cannot name a cache blob", meta.etag),
            });
        }
        if let Some(c) = &meta.commit
            && !c.eq_ignore_ascii_case(commit)
        {
            return Err(HubError::Malformed {
                model: ctx.model.to_string(),
                what: file.to_string(),
                problem: format!("asked for commit {commit}, the Hub answered for {c}"),
            });
        }
        let blob = ctx.cache.blob(&meta.etag);
        let record = |sha256: String| FileRecord {
            name: file.to_string(),
            size: meta.size,
            sha256,
            etag: meta.etag.clone(),
        };
        // Already cached (for this or another revision)?
        if std::fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == meta.size) {
            ctx.cache.link(commit, file, &meta.etag)?;
            return Ok(record(cache::cached_sha256(&blob, &meta.etag)?));
        }
        let bar = file_bar(self.bars, file, meta.size);
        let sha256 = self
            .own_download(ctx, commit, file, &meta, &bar, counter)
            .await;
        match sha256 {
            Ok(s) => {
                bar.finish_and_clear();
                Ok(record(s))
            }
            Err(e) => {
                bar.abandon();
                Err(e)
            }
        }
    }

    /// Downloads `file` into `blobs/<etag>.incomplete` with retries, resuming a partial file
    /// by `Range`, verifies it and moves it into place under the blob lock.
    async fn own_download(
        &self,
        ctx: &Ctx<'_>,
        commit: &str,
        file: &str,
        meta: &FileMeta,
        bar: &ProgressBar,
        counter: &AtomicU64,
    ) -> Result<String, HubError> {
        let url = self.transport.resolve_url(ctx.model, commit, file)?;
        let incomplete = ctx.cache.incomplete(&meta.etag);
        let blob = ctx.cache.blob(&meta.etag);
        if let Some(parent) = incomplete.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        let _lock = ctx.cache.lock(&meta.etag, LOCK_WAIT)?;
        let attempts = self.transport.max_attempts;
        let mut last: Option<HubError> = None;
        let mut last_msg: Option<String> = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.transport.backoff(attempt)).await;
            }
            let got = self
                .download_to(
                    ctx,
                    commit,
                    file,
                    &url,
                    &incomplete,
                    meta.size,
                    bar,
                    counter,
                )
                .await;
            match got {
                Ok(()) => match cache::verify(&incomplete, meta.size, &meta.etag)? {
                    Verdict::Good { sha256 } => {
                        std::fs::rename(&incomplete, &blob).map_err(|e| HubError::io(&blob, e))?;
                        ctx.cache.link(commit, file, &meta.etag)?;
                        return Ok(sha256);
                    }
                    bad => {
                        let _ = std::fs::remove_file(&incomplete);
                        let e = mismatch(ctx, file, meta, bad);
                        last_msg = Some(e.to_string());
                        last = Some(e);
                    }
                },
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(m)) => {
                    last_msg = Some(m);
                    last = None;
                }
            }
        }
        Err(match last {
            Some(e @ (HubError::ChecksumMismatch { .. } | HubError::SizeMismatch { .. })) => e,
            _ => HubError::DownloadFailed {
                model: ctx.model.to_string(),
                file: file.to_string(),
                attempts,
                last: last_msg.unwrap_or_else(|| "no attempt made".into()),
            },
        })
    }

    /// One GET of the rest of `file` into `path`, from the length `path` already has.
    #[allow(clippy::too_many_arguments)]
    async fn download_to(
        &self,
        ctx: &Ctx<'_>,
        commit: &str,
        file: &str,
        url: &Url,
        path: &Path,
        size: u64,
        bar: &ProgressBar,
        counter: &AtomicU64,
    ) -> Result<(), Attempt> {
        let io = |e: std::io::Error| Attempt::Fatal(HubError::io(path, e));
        let mut have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if have > size {
            std::fs::File::create(path).map_err(io)?;
            have = 0;
        }
        if have == size {
            if !path.exists() {
                std::fs::File::create(path).map_err(io)?;
            }
            return Ok(());
        }
        let mut rb = self.transport.auth(self.transport.client.get(url.clone()));
        if have > 0 {
            rb = rb.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = rb.send().await.map_err(|e| transient(&e))?;
        let status = resp.status();
        let mut out = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let start = content_range(&resp).map(|(a, _, _)| a);
                if start != Some(have) {
                    std::fs::File::create(path).map_err(io)?;
                    return Err(Attempt::Transient(format!(
                        "asked to resume {file} at byte {have}, the server answered from {start:?}"
                    )));
                }
                OpenOptions::new().append(true).open(path).map_err(io)?
            }
            StatusCode::OK => {
                have = 0;
                std::fs::File::create(path).map_err(io)?
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                std::fs::File::create(path).map_err(io)?;
                return Err(Attempt::Transient(format!(
                    "resuming {file} at byte {have} was refused (HTTP 416); restarting"
                )));
            }
            _ => {
                return Err(self
                    .transport
                    .status_error(ctx.model, commit, Some(file), &resp));
            }
        };
        bar.set_position(have);
        let mut landed = have;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transient(&e))? {
            // Disk use is bounded by the size the HEAD announced, whatever the body's length.
            landed += chunk.len() as u64;
            if landed > size {
                return Err(Attempt::Fatal(HubError::Malformed {
                    model: ctx.model.to_string(),
                    what: file.to_string(),
                    problem: format!(
                        "the download sent more than the {size} bytes its HEAD announced"
                    ),
                }));
            }
            out.write_all(&chunk).map_err(io)?;
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            bar.inc(chunk.len() as u64);
        }
        out.flush().map_err(io)?;
        Ok(())
    }

    /// Finds `want` of the model in the cache without touching the network.
    fn fetch_offline(&self, ctx: &Ctx<'_>, want: &Want) -> Result<FetchedModel, HubError> {
        let commit = if cache::is_commit_sha(ctx.revision) {
            ctx.revision.to_ascii_lowercase()
        } else {
            ctx.cache
                .read_ref(ctx.revision)
                .ok_or_else(|| HubError::RevisionNotCached {
                    model: ctx.model.to_string(),
                    revision: ctx.revision.to_string(),
                    cache: ctx.cache.cache_dir.clone(),
                })?
        };
        let cached = |f: &str| ctx.cache.snapshot(&commit, f).is_file();
        let miss = |f: &str| HubError::NotCached {
            model: ctx.model.to_string(),
            revision: ctx.revision.to_string(),
            file: f.to_string(),
            cache: ctx.cache.cache_dir.clone(),
        };
        let mut names: Vec<String> = Vec::new();
        match want {
            Want::Auto => {
                if !cached("config.json") {
                    return Err(miss("config.json"));
                }
                names.push("config.json".into());
                let Some((name, is_index)) = WEIGHTS.iter().find(|(n, _)| cached(n)) else {
                    return Err(miss(&format!("the weights ({EXPECTED_WEIGHTS})")));
                };
                names.push(name.to_string());
                if *is_index {
                    let (shards, _) =
                        read_index(ctx.model, name, &ctx.cache.snapshot(&commit, name))?;
                    for s in shards {
                        if !cached(&s) {
                            return Err(miss(&s));
                        }
                        names.push(s);
                    }
                }
            }
            Want::Gguf(name) => {
                if cached("config.json") {
                    names.push("config.json".into());
                }
                if !cached(name) {
                    return Err(miss(name));
                }
                names.push(name.clone());
            }
        }
        let mut records = Vec::new();
        for name in names {
            let p = ctx.cache.snapshot(&commit, &name);
            let size = std::fs::metadata(&p)
                .map_err(|e| HubError::io(&p, e))?
                .len();
            let (etag, sha256) = match cache::blob_name(&p) {
                Some(etag) => {
                    let sha = cache::cached_sha256(&p, &etag)?;
                    (etag, sha)
                }
                None => {
                    let sha = cache::digest_file(&p, false)?.sha256;
                    (sha.clone(), sha)
                }
            };
            records.push(FileRecord {
                name,
                size,
                sha256,
                etag,
            });
        }
        self.finish(ctx, commit, records, 0)
    }
}

fn mismatch(ctx: &Ctx<'_>, file: &str, meta: &FileMeta, v: Verdict) -> HubError {
    match v {
        Verdict::WrongSize { actual } => HubError::SizeMismatch {
            model: ctx.model.to_string(),
            file: file.to_string(),
            expected: meta.size,
            actual,
        },
        Verdict::WrongHash { algorithm, actual } => HubError::ChecksumMismatch {
            model: ctx.model.to_string(),
            file: file.to_string(),
            algorithm,
            expected: meta.etag.clone(),
            actual,
        },
        Verdict::Good { .. } => HubError::Malformed {
            model: ctx.model.to_string(),
            what: file.to_string(),
            problem: "a verified file was reported as a mismatch".into(),
        },
    }
}

/// The weight-like files of a listing, for error messages.
pub(crate) fn describe_listing(listing: Option<&[String]>) -> String {
    let Some(l) = listing else {
        return "no file listing".into();
    };
    let weights: Vec<&str> = l
        .iter()
        .map(String::as_str)
        .filter(|f| {
            [
                ".safetensors",
                ".bin",
                ".gguf",
                ".pt",
                ".pth",
                ".h5",
                ".msgpack",
                ".json",
            ]
            .iter()
            .any(|e| f.ends_with(e))
        })
        .take(12)
        .collect();
    if weights.is_empty() {
        format!("{} files, none of them weights", l.len())
    } else {
        weights.join(", ")
    }
}
