//! The errors of fetching from the Hub. Each names the model, revision or file at fault and
//! says what to do about it; none ever contains the token.

use std::path::PathBuf;

use attn_spectra::CheckpointError;

/// What went wrong talking to the Hub or the cache.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid model id `{model}`: {problem}; expected `org/name` as in the model's Hub URL")]
    BadModelId {
        model: String,
        problem: &'static str,
    },
    #[error(
        "invalid revision `{revision}` for {model}: {problem}; give a branch, tag or commit sha"
    )]
    BadRevision {
        model: String,
        revision: String,
        problem: &'static str,
    },
    #[error("invalid file name `{file}` for {model}: {problem}")]
    BadFileName {
        model: String,
        file: String,
        problem: &'static str,
    },
    #[error("model {model} was not found on {endpoint}: check the model id (`org/name`)")]
    ModelNotFound { model: String, endpoint: String },
    #[error("revision `{revision}` of {model} was not found: check the branch, tag or commit sha")]
    RevisionNotFound { model: String, revision: String },
    #[error(
        "{file} was not found in {model} at revision {revision}: check the file name and the revision"
    )]
    FileNotFound {
        model: String,
        revision: String,
        file: String,
    },
    #[error("{model} is gated or private and the Hub refused access (HTTP {status}): {}", gated_hint(*.token_sent))]
    Gated {
        model: String,
        status: u16,
        token_sent: bool,
    },
    #[error(
        "{file} of {model} at revision {revision} is not cached in {} (offline mode): run `pipeline run fetch` online first, or unset HF_HUB_OFFLINE",
        cache.display()
    )]
    NotCached {
        model: String,
        revision: String,
        file: String,
        cache: PathBuf,
    },
    #[error(
        "revision {revision} of {model} is not cached in {} (offline mode, no refs/{revision}): run `pipeline run fetch` online first, give a cached commit sha, or unset HF_HUB_OFFLINE",
        cache.display()
    )]
    RevisionNotCached {
        model: String,
        revision: String,
        cache: PathBuf,
    },
    #[error(
        "{model} needs the network to be read remotely, but offline mode (HF_HUB_OFFLINE) is on: fetch it first, or unset HF_HUB_OFFLINE"
    )]
    OfflineRemote { model: String },
    #[error(
        "{model} at revision {revision} has no weights this tool reads: expected {expected}; the repo has {found}"
    )]
    NoWeights {
        model: String,
        revision: String,
        expected: &'static str,
        found: String,
    },
    #[error(
        "{model} at revision {revision} cannot be read remotely: that needs safetensors weights (model.safetensors or model.safetensors.index.json) and the repo has {found}; fetch it instead"
    )]
    RemoteUnsupported {
        model: String,
        revision: String,
        found: String,
    },
    #[error(
        "checksum mismatch for {file} of {model}: expected {algorithm} {expected}, got {actual}; the download is corrupt, run the fetch again"
    )]
    ChecksumMismatch {
        model: String,
        file: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "size mismatch for {file} of {model}: the Hub announced {expected} bytes, {actual} arrived; run the fetch again"
    )]
    SizeMismatch {
        model: String,
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "download of {file} from {model} failed after {attempts} attempts ({last}); check the network and run the fetch again: the partial file is kept and resumed"
    )]
    DownloadFailed {
        model: String,
        file: String,
        attempts: usize,
        last: String,
    },
    #[error(
        "the server does not honour byte ranges for {file} of {model} (HTTP {status} to a Range request), so it cannot be read remotely: fetch the model instead"
    )]
    NoRangeSupport {
        model: String,
        file: String,
        status: u16,
    },
    #[error("request for {what} of {model} failed: {message}")]
    Http {
        model: String,
        what: String,
        message: String,
    },
    #[error("the Hub's answer for {what} of {model} is malformed: {problem}")]
    Malformed {
        model: String,
        what: String,
        problem: String,
    },
    #[error("bad shard index {file} of {model}: {problem}")]
    Index {
        model: String,
        file: String,
        problem: String,
    },
    #[error("cache I/O on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cache entry {} is locked by another download; retry when it has finished", path.display())]
    Locked { path: PathBuf },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Provenance(#[from] attn_spectra::extract::ExtractError),
    #[error("cannot set up the Hub client: {0}")]
    Setup(String),
}

fn gated_hint(token_sent: bool) -> &'static str {
    if token_sent {
        "the token in HF_TOKEN was refused; make sure its account has been granted access to the model on the Hub"
    } else {
        "accept the model's terms on the Hub and set HF_TOKEN to an access token of that account"
    }
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> HubError {
        HubError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = HubError::Gated {
            model: "org/m".into(),
            status: 401,
            token_sent: false,
        };
        let s = e.to_string();
        assert!(
            s.contains("org/m") && s.contains("gated") && s.contains("set HF_TOKEN"),
            "{s}"
        );
        let e = HubError::NotCached {
            model: "org/m".into(),
            revision: "step1".into(),
            file: "config.json".into(),
            cache: "/c".into(),
        };
        let s = e.to_string();
        for part in [
            "config.json",
            "org/m",
            "step1",
            "not cached",
            "pipeline run fetch",
            "HF_HUB_OFFLINE",
        ] {
            assert!(s.contains(part), "{part} missing from {s}");
        }
        let e = HubError::ChecksumMismatch {
            model: "org/m".into(),
            file: "model.safetensors".into(),
            algorithm: "sha256",
            expected: "aa".into(),
            actual: "bb".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("model.safetensors") && s.contains("expected sha256 aa, got bb"),
            "{s}"
        );
    }
}
