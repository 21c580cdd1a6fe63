//! attn-spectra-hub: fetching model checkpoints from the Hugging Face Hub into the cache that
//! Python's `huggingface_hub` shares, and reading safetensors weights remotely by byte range.
//!
//! [`Hub::fetch`] downloads only the files a checkpoint needs ([`Want`]): `config.json` and the
//! weights (`model.safetensors`, or `model.safetensors.index.json` and its shards, failing
//! those the PyTorch `.bin` equivalents), or one named `.gguf` file. The files land in the
//! standard layout (`models--org--name/{blobs,refs,snapshots/<commit>/...}`, see [`cache`]) so
//! that [`FetchedModel::dir`] opens with `attn_spectra::Checkpoint::open`, and so that Python
//! and this crate reuse each other's downloads. [`Hub::open_remote`] instead reads the
//! safetensors header and then single tensors with HTTP `Range` requests
//! ([`RemoteSafetensorsStore`]), downloading only what is read.
//!
//! # Downloads
//!
//! The crate speaks to the Hub itself (reqwest with rustls; no Xet client, since the Hub serves
//! every file, Xet-backed ones included, through its `resolve` URLs):
//! - a revision (branch, tag or sha) resolves to its commit and file listing through the
//!   `/api/models/{id}/revision/{rev}` endpoint;
//! - every file is first HEADed (size and ETag at the commit), then downloaded into
//!   `blobs/<etag>.incomplete` under the same lock file Python takes, verified (its size, and
//!   its sha256 against an LFS ETag or its git blob sha1 against the ETag of a file stored in
//!   git; a bad file is deleted) and renamed into place;
//! - it retries with exponential backoff on 5xx, 408, 429, timeouts and broken connections,
//!   resuming an `.incomplete` file with a `Range` request; a Hub that cannot be reached at all
//!   (connection refused, unknown host) ends the attempts at once with a hint;
//! - it writes `refs/<revision>` and the snapshot links in the format Python's
//!   `huggingface_hub` uses (checked against it by `scripts/check_hub_interop.py`) and answers
//!   offline requests from the cache;
//! - it reads remote tensors with its own ranged GETs.
//!
//! # Tokens
//!
//! [`HubOptions::token`] is sent as a bearer token to the Hub's own URLs only. The Hub
//! redirects LFS files to a CDN on another host; reqwest drops `Authorization` on such
//! redirects. The token is redacted from `Debug` output and never part of an error. Without
//! `HF_TOKEN`, [`HubOptions::from_env`] reads the token file Python's `huggingface_hub` login
//! writes (`HF_TOKEN_PATH`, else `$HF_HOME/token`), unless `HF_HUB_DISABLE_IMPLICIT_TOKEN` is
//! set.
//!
//! # Limits
//!
//! - A blob already in the cache with the announced size is trusted (an LFS blob is named by
//!   its sha256 and was verified when it landed); it is not hashed again on every fetch.
//! - Each remote tensor read is one ranged GET on the `resolve` URL, which the Hub redirects to
//!   its CDN: two round trips per tensor.
//!
//! # Checking against other clients
//!
//! The examples `mock_hub` (serves a tree as a mock Hub) and `hub_fetch` (fetches with the
//! environment's settings), with `scripts/check_hub_interop.py`, check the mock and the cache
//! layout against Python's `huggingface_hub`: Python downloads from the mock, reads this
//! crate's cache offline, and this crate reads Python's.

pub mod cache;
mod error;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod locate;
#[cfg(feature = "mock")]
pub mod mock;
mod options;
mod progress;
mod remote;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use cache::is_commit_sha;
pub use error::HubError;
pub use locate::{Hubs, Located};
pub use options::{DEFAULT_ENDPOINT, HubOptions};
pub use remote::{
    IN_FLIGHT, MAX_RUN, MERGE_GAP, RemoteCheckpoint, RemoteFile, RemoteSafetensorsStore, Traffic,
    merge_ranges,
};

use transport::Transport;

/// Which files of a model to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// `config.json` and the weights: `model.safetensors`, or `model.safetensors.index.json`
    /// and the shards it names; failing those `pytorch_model.bin`, or
    /// `pytorch_model.bin.index.json` and its shards.
    Auto,
    /// One `.gguf` file (and `config.json` when the repo has one).
    Gguf(String),
}

/// One file of a fetched model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Path within the repo (`model-00001-of-00002.safetensors`).
    pub name: String,
    pub size: u64,
    /// Hex sha256 of the contents.
    pub sha256: String,
    /// The Hub's ETag (the blob's name in the cache): the sha256 for LFS files, the git blob
    /// sha1 for files stored in git.
    pub etag: String,
}

/// A model revision in the cache.
#[derive(Clone, Debug)]
pub struct FetchedModel {
    pub model_id: String,
    /// The revision asked for (branch, tag or sha).
    pub revision: String,
    /// The commit sha it resolved to.
    pub commit: String,
    /// The snapshot directory, `.../models--org--name/snapshots/<commit>`.
    pub dir: PathBuf,
    /// The files fetched, `config.json` first.
    pub files: Vec<FileRecord>,
    /// Bytes that came over the network for this call (0 when all was cached).
    pub bytes_downloaded: u64,
    /// Another revision of the model in the cache whose copies of these files are
    /// byte-identical (some Pythia step branches serve the final checkpoint's files).
    pub identical_to: Option<String>,
}

impl FetchedModel {
    /// The local path of one fetched file.
    pub fn path(&self, file: &str) -> PathBuf {
        file.split('/')
            .fold(self.dir.clone(), |p, part| p.join(part))
    }

    /// Total size of the fetched files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A client for one Hub and one cache directory.
pub struct Hub {
    opts: HubOptions,
    transport: Arc<Transport>,
    bars: bool,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("options", &self.opts).finish()
    }
}

impl Hub {
    /// A client with `opts`. Builds the HTTP clients and a small tokio runtime; sends nothing.
    pub fn new(opts: HubOptions) -> Result<Hub, HubError> {
        let transport = Arc::new(Transport::new(&opts)?);
        let bars = progress::bars_enabled(opts.progress);
        Ok(Hub {
            opts,
            transport,
            bars,
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &HubOptions {
        &self.opts
    }
}

/// Checks a model id: `org/name` (or a bare legacy `name`) of letters, digits, `-`, `_` and
/// `.`, as the Hub allows.
pub(crate) fn validate_model_id(model: &str) -> Result<(), HubError> {
    let bad = |problem| {
        Err(HubError::BadModelId {
            model: model.to_string(),
            problem,
        })
    };
    if model.is_empty() || model.len() > 96 {
        return bad("it must be 1 to 96 characters long");
    }
    let parts: Vec<&str> = model.split('/').collect();
    if parts.len() > 2 {
        return bad("it has more than one `/`");
    }
    for p in &parts {
        if p.is_empty() {
            return bad("a part is empty");
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return bad("only letters, digits, `-`, `_` and `.` are allowed");
        }
        if p.starts_with(['-', '.']) || p.ends_with(['-', '.']) {
            return bad("a part starts or ends with `-` or `.`");
        }
    }
    if model.contains("--") || model.contains("..") {
        return bad("`--` and `..` are not allowed");
    }
    Ok(())
}

/// Checks a revision: a branch, tag or sha usable as a URL segment and a `refs/` path.
pub(crate) fn validate_revision(model: &str, revision: &str) -> Result<(), HubError> {
    let bad = |problem| {
        Err(HubError::BadRevision {
            model: model.to_string(),
            revision: revision.to_string(),
            problem,
        })
    };
    if revision.is_empty() || revision.len() > 255 {
        return bad("it must be 1 to 255 characters long");
    }
    if revision
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return bad("it contains whitespace, control characters or `\\`");
    }
    if revision
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return bad("it has an empty, `.` or `..` path part");
    }
    Ok(())
}

/// Checks a file name within a repo: relative, `/`-separated, nothing leaving the snapshot.
pub(crate) fn validate_file_name(model: &str, file: &str) -> Result<(), HubError> {
    let bad = |problem| {
        Err(HubError::BadFileName {
            model: model.to_string(),
            file: file.to_string(),
            problem,
        })
    };
    if file.is_empty() || file.len() > 1024 {
        return bad("it must be 1 to 1024 characters long");
    }
    if file.contains('\\') || file.chars().any(char::is_control) {
        return bad("it contains `\\` or control characters");
    }
    if file
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return bad("it has an empty, `.` or `..` path part");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_follow_hub_rules() {
        for ok in ["EleutherAI/pythia-70m", "gpt2", "org/name.v1_2"] {
            assert!(validate_model_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a/b/c", "/x", "x/", "a/../b", "a--b/c", "a/b c", "-a/b", "a/b.",
        ] {
            let e = validate_model_id(bad).unwrap_err().to_string();
            assert!(e.contains("invalid model id"), "{bad}: {e}");
        }
    }

    #[test]
    fn revisions_and_file_names_cannot_escape() {
        for ok in ["main", "step1000", "refs/pr/1", "v1.0", &"a".repeat(40)] {
            assert!(validate_revision("m", ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a//b", "a b", "a\\b", "x/.."] {
            assert!(validate_revision("m", bad).is_err(), "{bad}");
        }
        for ok in ["model.safetensors", "sub/model.gguf"] {
            assert!(validate_file_name("m", ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "/etc/passwd", "a//b", "a\\b"] {
            assert!(validate_file_name("m", bad).is_err(), "{bad}");
        }
    }
}
