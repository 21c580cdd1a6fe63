//! Where the Hub is, who we are to it and where the cache lives: [`HubOptions`], read from the
//! same environment variables as Python's `huggingface_hub`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The default Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the Hub and where to cache what is fetched.
///
/// The token is never printed: the `Debug` impl redacts it, and no error message includes it.
#[derive(Clone)]
pub struct HubOptions {
    /// The Hub's base URL (`HF_ENDPOINT`), without a trailing slash.
    pub endpoint: String,
    /// An access token (`HF_TOKEN`), sent as `Authorization: Bearer` to the Hub only.
    pub token: Option<String>,
    /// The cache directory shared with Python (`HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Use the cache only (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Draw a progress bar per file on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Attempts per request or file download before giving up (at least 1).
    pub max_attempts: usize,
    /// The first retry waits this long; each further one twice as long (capped at 30 s).
    pub retry_base_delay: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the next bytes of a response.
    pub read_timeout: Duration,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl HubOptions {
    /// Options for `endpoint` and `cache_dir`, with no token, online, with progress bars and
    /// the default retry policy (5 attempts from 500 ms) and timeouts (10 s to connect, 60 s
    /// between bytes).
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> HubOptions {
        HubOptions {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            token: None,
            cache_dir: cache_dir.into(),
            offline: false,
            progress: true,
            max_attempts: 5,
            retry_base_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// Reads the options from the environment, as Python's `huggingface_hub` does:
    /// `HF_ENDPOINT`; `HF_TOKEN`; `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE`
    /// (`1`, `true`, `yes` or `on`). Without `HF_TOKEN` the token is read from the file
    /// `huggingface-cli login` writes, `HF_TOKEN_PATH`, else `$HF_HOME/token` (`HF_HOME`
    /// defaulting to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`), unless
    /// `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set.
    pub fn from_env() -> HubOptions {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`HubOptions::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> HubOptions {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let hf_home = if let Some(h) = set("HF_HOME") {
            PathBuf::from(h)
        } else if let Some(x) = set("XDG_CACHE_HOME") {
            PathBuf::from(x).join("huggingface")
        } else {
            let home = set("HOME").unwrap_or_else(|| ".".to_string());
            PathBuf::from(home).join(".cache").join("huggingface")
        };
        let cache_dir = set("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let mut opts = HubOptions::new(endpoint, cache_dir);
        opts.token = set("HF_TOKEN").map(|t| t.trim().to_string()).or_else(|| {
            if set("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_some() {
                return None;
            }
            let path = set("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| hf_home.join("token"));
            // Read at most a few KiB: a token is ~40 bytes; anything else there is ignored.
            let text = std::fs::read(&path).ok().filter(|b| b.len() <= 4096)?;
            let token = String::from_utf8(text).ok()?.trim().to_string();
            (!token.is_empty()).then_some(token)
        });
        opts.offline = set("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(vars: &[(&str, &str)]) -> HubOptions {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubOptions::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let o = opts(&[("HOME", "/home/u")]);
        assert_eq!(o.endpoint, "https://huggingface.co");
        assert_eq!(o.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(o.token.is_none() && !o.offline);
    }

    #[test]
    fn cache_precedence() {
        let o = opts(&[("HOME", "/h"), ("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]);
        assert_eq!(o.cache_dir, PathBuf::from("/c"));
        let o = opts(&[("HOME", "/h"), ("HF_HOME", "/hf"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(o.cache_dir, PathBuf::from("/hf/hub"));
        let o = opts(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(o.cache_dir, PathBuf::from("/x/huggingface/hub"));
    }

    #[test]
    fn endpoint_token_offline() {
        let o = opts(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", "hf_secret"),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(o.endpoint, "http://127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("hf_secret"));
        assert!(o.offline);
        assert!(!opts(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(opts(&[("HF_HUB_OFFLINE", "TRUE")]).offline);
        assert!(opts(&[("HF_TOKEN", "")]).token.is_none());
    }

    #[test]
    fn the_login_token_file_is_read_unless_disabled_or_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
        let o = opts(&[("HF_HOME", home)]);
        assert_eq!(o.token.as_deref(), Some("hf_from_file"));
        let o = opts(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")]);
        assert_eq!(o.token.as_deref(), Some("hf_env"));
        let o = opts(&[("HF_HOME", home), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]);
        assert!(o.token.is_none());
        let other = dir.path().join("elsewhere");
        std::fs::write(&other, "hf_path\n").unwrap();
        let o = opts(&[
            ("HF_HOME", "/nonexistent"),
            ("HF_TOKEN_PATH", other.to_str().unwrap()),
        ]);
        assert_eq!(o.token.as_deref(), Some("hf_path"));
        assert!(opts(&[("HF_HOME", "/nonexistent")]).token.is_none());
    }

    #[test]
    fn debug_redacts_the_token() {
        let o = opts(&[("HF_TOKEN", "hf_secret_value")]);
        let s = format!("{o:?}");
        assert!(!s.contains("hf_secret_value"), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
    }
}
