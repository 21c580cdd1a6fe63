//! The HTTP side of [`crate::Hub`]: a tokio runtime to drive async code from synchronous
//! callers, the repo-info API, `resolve` URLs, HEAD metadata, ranged GETs, and the retry policy
//! (exponential backoff on 5xx, 408, 429, timeouts and broken connections; a Hub that cannot be
//! reached at all, refused or not found by DNS, ends the attempts at once with a hint).
//!
//! TLS is rustls with the `ring` crypto provider (installed as the process default when the
//! first client is built), so no C crypto library is compiled.
//!
//! The token is sent only to the Hub's own URLs; when the Hub redirects a file to its CDN
//! (another host), reqwest drops the `Authorization` header, as browsers and Python do.

use std::future::Future;
use std::time::Duration;

use reqwest::header::{
    ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, LOCATION, RANGE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use crate::error::HubError;
use crate::options::HubOptions;

/// The user agent of every request.
pub(crate) const USER_AGENT: &str = concat!("attn-spectra-hub/", env!("CARGO_PKG_VERSION"));

/// The repo-info API's answer, as far as it is used.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RepoInfo {
    pub sha: Option<String>,
    pub siblings: Option<Vec<Sibling>>,
}

/// One file of a [`RepoInfo`] listing.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Sibling {
    pub rfilename: String,
}

/// The outcome of one try: worth retrying, or final.
#[derive(Debug)]
pub(crate) enum Attempt {
    Transient(String),
    Fatal(HubError),
}

impl From<HubError> for Attempt {
    fn from(e: HubError) -> Attempt {
        Attempt::Fatal(e)
    }
}

/// A tokio runtime that may be dropped anywhere (even inside another runtime).
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What a HEAD on a `resolve` URL tells about a file.
#[derive(Clone, Debug)]
pub(crate) struct FileMeta {
    /// The ETag without quotes or weak prefix: the sha256 for LFS files.
    pub etag: String,
    pub size: u64,
    pub commit: Option<String>,
}

/// Shared HTTP state of a [`crate::Hub`] and its remote stores.
pub(crate) struct Transport {
    rt: Rt,
    pub client: reqwest::Client,
    no_redirect: reqwest::Client,
    token: Option<String>,
    pub endpoint: String,
    pub max_attempts: usize,
    pub base_delay: Duration,
}

impl Transport {
    pub fn new(opts: &HubOptions) -> Result<Transport, HubError> {
        // reqwest is built without a default provider; an Err only says one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("attn-spectra-hub")
            .enable_all()
            .build()
            .map_err(|e| HubError::Setup(format!("tokio runtime: {e}")))?;
        let build = |redirects: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .connect_timeout(opts.connect_timeout)
                .read_timeout(opts.read_timeout);
            if !redirects {
                b = b.redirect(reqwest::redirect::Policy::none());
            }
            b.build()
                .map_err(|e| HubError::Setup(format!("HTTP client: {e}")))
        };
        Url::parse(&opts.endpoint)
            .map_err(|e| HubError::Setup(format!("endpoint `{}`: {e}", opts.endpoint)))?;
        Ok(Transport {
            rt: Rt(Some(rt)),
            client: build(true)?,
            no_redirect: build(false)?,
            token: opts.token.clone(),
            endpoint: opts.endpoint.trim_end_matches('/').to_string(),
            max_attempts: opts.max_attempts.max(1),
            base_delay: opts.retry_base_delay,
        })
    }

    /// Runs `f` to completion from synchronous code. Inside another tokio runtime (where
    /// blocking on this one would panic) it is driven from a scoped helper thread.
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self
            .rt
            .0
            .as_ref()
            .expect("runtime lives as long as the transport");
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(f))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            rt.block_on(f)
        }
    }

    /// Starts `f` on the runtime without waiting for it.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let rt = self
            .rt
            .0
            .as_ref()
            .expect("runtime lives as long as the transport");
        drop(rt.spawn(f));
    }

    pub fn token_set(&self) -> bool {
        self.token.is_some()
    }

    /// Adds the bearer token (requests built here only ever go to the Hub's own URLs), and
    /// asks for the bytes as stored: sizes and ranges refer to them, not to a compressed form.
    pub fn auth(&self, rb: RequestBuilder) -> RequestBuilder {
        let rb = rb.header(ACCEPT_ENCODING, "identity");
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, format!("Bearer {t}")),
            None => rb,
        }
    }

    /// `{endpoint}/{model}/resolve/{revision}/{file}`, the revision as one encoded segment.
    pub fn resolve_url(&self, model: &str, revision: &str, file: &str) -> Result<Url, HubError> {
        let mut url = Url::parse(&self.endpoint)
            .map_err(|e| HubError::Setup(format!("endpoint `{}`: {e}", self.endpoint)))?;
        {
            let mut segs = url.path_segments_mut().map_err(|()| {
                HubError::Setup(format!("endpoint `{}` cannot be a base URL", self.endpoint))
            })?;
            segs.pop_if_empty();
            segs.extend(model.split('/'));
            segs.push("resolve");
            segs.push(revision);
            segs.extend(file.split('/'));
        }
        Ok(url)
    }

    /// `GET {endpoint}/api/models/{model}/revision/{revision}`: the commit a revision resolves
    /// to and the repo's files, with retries.
    pub async fn repo_info(&self, model: &str, revision: &str) -> Result<RepoInfo, HubError> {
        let mut url = Url::parse(&self.endpoint)
            .map_err(|e| HubError::Setup(format!("endpoint `{}`: {e}", self.endpoint)))?;
        {
            let mut segs = url.path_segments_mut().map_err(|()| {
                HubError::Setup(format!("endpoint `{}` cannot be a base URL", self.endpoint))
            })?;
            segs.pop_if_empty();
            segs.extend(["api", "models"]);
            segs.extend(model.split('/'));
            segs.push("revision");
            segs.push(revision);
        }
        let once = || async {
            let resp = self
                .auth(self.client.get(url.clone()))
                .send()
                .await
                .map_err(|e| transient(&e))?;
            if !resp.status().is_success() {
                return Err(self.status_error(model, revision, None, &resp));
            }
            let body = resp.bytes().await.map_err(|e| transient(&e))?;
            serde_json::from_slice::<RepoInfo>(&body).map_err(|e| {
                Attempt::Fatal(HubError::Malformed {
                    model: model.to_string(),
                    what: format!("repo info at {revision}"),
                    problem: format!("not the JSON the Hub answers: {e}"),
                })
            })
        };
        let r = retry_fatal(self, once).await;
        r.map_err(|(attempts, last)| HubError::Http {
            model: model.to_string(),
            what: "repo info".into(),
            message: format!("{last} (after {attempts} attempts)"),
        })
        .and_then(|x| x)
    }

    /// The delay before retry number `retry` (1-based): base, 2 base, 4 base, ... up to 30 s.
    pub fn backoff(&self, retry: usize) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(16);
        self.base_delay
            .saturating_mul(factor)
            .min(Duration::from_secs(30))
    }

    /// HEAD on a file's `resolve` URL, following only relative redirects (so that an LFS
    /// file's own headers, not the CDN's, are read), with retries.
    pub async fn head_file(
        &self,
        model: &str,
        revision: &str,
        file: &str,
    ) -> Result<FileMeta, HubError> {
        let url = self.resolve_url(model, revision, file)?;
        let r = retry_fatal(self, || self.head_once(model, revision, file, url.clone())).await;
        r.map_err(|(attempts, last)| HubError::Http {
            model: model.to_string(),
            what: format!("HEAD {file}"),
            message: format!("{last} (after {attempts} attempts)"),
        })
        .and_then(|x| x)
    }

    async fn head_once(
        &self,
        model: &str,
        revision: &str,
        file: &str,
        mut url: Url,
    ) -> Result<FileMeta, Attempt> {
        let malformed = |problem: String| {
            Attempt::Fatal(HubError::Malformed {
                model: model.to_string(),
                what: format!("HEAD {file}"),
                problem,
            })
        };
        for _ in 0..10 {
            let resp = self
                .auth(self.no_redirect.head(url.clone()))
                .send()
                .await
                .map_err(|e| transient(&e))?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
                && loc.starts_with('/')
                && !loc.starts_with("//")
            {
                url = url
                    .join(loc)
                    .map_err(|e| malformed(format!("bad Location `{loc}`: {e}")))?;
                continue;
            }
            if !(status.is_success() || status.is_redirection()) {
                return Err(self.status_error(model, revision, Some(file), &resp));
            }
            return parse_meta(model, file, resp.headers()).map_err(Attempt::Fatal);
        }
        Err(malformed("too many redirects".into()))
    }

    /// Maps an unsuccessful status to what it means for `model`.
    pub fn status_error(
        &self,
        model: &str,
        revision: &str,
        file: Option<&str>,
        resp: &Response,
    ) -> Attempt {
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Attempt::Fatal(HubError::Gated {
                model: model.to_string(),
                status: status.as_u16(),
                token_sent: self.token_set(),
            }),
            StatusCode::NOT_FOUND => Attempt::Fatal(match (code, file) {
                ("RepoNotFound", _) => HubError::ModelNotFound {
                    model: model.to_string(),
                    endpoint: self.endpoint.clone(),
                },
                ("RevisionNotFound", _) | (_, None) => HubError::RevisionNotFound {
                    model: model.to_string(),
                    revision: revision.to_string(),
                },
                (_, Some(f)) => HubError::FileNotFound {
                    model: model.to_string(),
                    revision: revision.to_string(),
                    file: f.to_string(),
                },
            }),
            s if is_transient_status(s) => Attempt::Transient(format!("HTTP {s}")),
            s => Attempt::Fatal(HubError::Http {
                model: model.to_string(),
                what: file.unwrap_or("repo info").to_string(),
                message: format!("HTTP {s}"),
            }),
        }
    }

    /// GET of bytes `start..end` (`end` exclusive) of `url`, requiring a `206` for exactly that
    /// range; returns the bytes and the file's total size from `Content-Range`. `count` is told
    /// every body byte received.
    pub async fn get_range(
        &self,
        model: &str,
        revision: &str,
        file: &str,
        url: &Url,
        (start, end): (u64, u64),
        count: &(dyn Fn(u64) + Sync),
    ) -> Result<(Vec<u8>, Option<u64>), Attempt> {
        let resp = self
            .auth(self.client.get(url.clone()))
            .header(RANGE, format!("bytes={start}-{}", end.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| transient(&e))?;
        self.read_range(model, revision, file, resp, (start, end), count)
            .await
    }

    /// The answer to [`Transport::get_range`]'s request for bytes `start..end`: its body when
    /// it is a `206` for exactly that range, `start..end` or, where the file ends before `end`
    /// (its total size in `Content-Range`), `start..total`. A body longer than what was asked
    /// is malformed; a shorter one, a transient failure (retried).
    pub(crate) async fn read_range(
        &self,
        model: &str,
        revision: &str,
        file: &str,
        mut resp: Response,
        (start, end): (u64, u64),
        count: &(dyn Fn(u64) + Sync),
    ) -> Result<(Vec<u8>, Option<u64>), Attempt> {
        let status = resp.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            // Only a range starting at or past the end of the file is unsatisfiable: the
            // answer must say where the file ends.
            let total = content_range(&resp).and_then(|(_, _, t)| t);
            return match total {
                Some(t) if t <= start => Ok((Vec::new(), total)),
                _ => Err(Attempt::Fatal(HubError::Malformed {
                    model: model.to_string(),
                    what: file.to_string(),
                    problem: format!(
                        "HTTP 416 (range not satisfiable) for bytes {start}-{end} without a \
                         Content-Range total at or before {start} (it gave {total:?})"
                    ),
                })),
            };
        }
        if status == StatusCode::OK {
            // The whole file would follow: refuse rather than download it.
            return Err(Attempt::Fatal(HubError::NoRangeSupport {
                model: model.to_string(),
                file: file.to_string(),
                status: 200,
            }));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(self.status_error(model, revision, Some(file), &resp));
        }
        let (first, _, total) = content_range(&resp).ok_or_else(|| {
            Attempt::Fatal(HubError::Malformed {
                model: model.to_string(),
                what: file.to_string(),
                problem: "206 response without a valid Content-Range".into(),
            })
        })?;
        if first != start {
            return Err(Attempt::Fatal(HubError::Malformed {
                model: model.to_string(),
                what: file.to_string(),
                problem: format!("asked for bytes from {start}, got a range from {first}"),
            }));
        }
        let want = end.saturating_sub(start);
        // Where the file ends inside the range, only its rest can come.
        let expect = match total {
            Some(t) if t < end => t.saturating_sub(start),
            _ => want,
        };
        let mut out = Vec::with_capacity(expect.min(1 << 30) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(|e| transient(&e))? {
            count(chunk.len() as u64);
            if out.len() as u64 + chunk.len() as u64 > expect {
                return Err(Attempt::Fatal(HubError::Malformed {
                    model: model.to_string(),
                    what: file.to_string(),
                    problem: format!(
                        "range {start}-{end}: more than the {expect} bytes asked for arrived"
                    ),
                }));
            }
            out.extend_from_slice(&chunk);
        }
        if out.len() as u64 != expect {
            return Err(Attempt::Transient(format!(
                "range {start}-{end} of {file}: {} of {expect} bytes arrived",
                out.len()
            )));
        }
        Ok((out, total))
    }
}

/// Runs `op` under the retry policy; fatal errors come back as `Ok(Err(e))`.
pub(crate) async fn retry_fatal<T, F, Fut>(
    t: &Transport,
    mut op: F,
) -> Result<Result<T, HubError>, (usize, String)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = String::new();
    for attempt in 1..=t.max_attempts {
        if attempt > 1 {
            tokio::time::sleep(t.backoff(attempt - 1)).await;
        }
        match op().await {
            Ok(v) => return Ok(Ok(v)),
            Err(Attempt::Fatal(e)) => return Ok(Err(e)),
            Err(Attempt::Transient(m)) => last = m,
        }
    }
    Err((t.max_attempts, last))
}

pub(crate) fn is_transient_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

/// A reqwest error as a retryable failure, described without its URL's query (signed CDN
/// URLs carry credentials there); or, when the server cannot be reached at all (connection
/// refused, host or network unreachable, no such host), a final [`HubError::Unreachable`]:
/// retrying would only add minutes of waiting to the same answer.
pub(crate) fn transient(e: &reqwest::Error) -> Attempt {
    if let Some(cause) = unreachable_cause(e) {
        let host = e
            .url()
            .map(|u| {
                let mut u = u.clone();
                u.set_query(None);
                u.set_path("");
                u.to_string()
            })
            .unwrap_or_else(|| "the Hub".into());
        return Attempt::Fatal(HubError::Unreachable {
            host: host.trim_end_matches('/').to_string(),
            cause,
        });
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke off mid-body"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    Attempt::Transient(msg)
}

/// Why a connection could not be made at all, when that is the failure: refused, unreachable,
/// or a name the resolver does not know. Timeouts are not in this class: they may pass.
fn unreachable_cause(e: &reqwest::Error) -> Option<String> {
    use std::io::ErrorKind;
    if !e.is_connect() || e.is_timeout() {
        return None;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
            )
        {
            return Some(io.to_string());
        }
        let text = s.to_string();
        if text.starts_with("dns error") {
            let detail = s.source().map(|d| format!(": {d}")).unwrap_or_default();
            return Some(format!("{text}{detail}"));
        }
        source = s.source();
    }
    None
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn normalize_etag(raw: &str) -> String {
    raw.trim()
        .strip_prefix("W/")
        .unwrap_or(raw.trim())
        .trim_matches('"')
        .to_string()
}

/// A HEAD response's size, ETag and commit (`X-Linked-*` headers first: those of an LFS file).
pub(crate) fn parse_meta(
    model: &str,
    file: &str,
    headers: &HeaderMap,
) -> Result<FileMeta, HubError> {
    let bad = |problem: &str| HubError::Malformed {
        model: model.to_string(),
        what: file.to_string(),
        problem: problem.to_string(),
    };
    let etag = header_str(headers, "x-linked-etag")
        .or_else(|| header_str(headers, ETAG.as_str()))
        .map(normalize_etag)
        .ok_or_else(|| bad("no ETag header"))?;
    let size = header_str(headers, "x-linked-size")
        .or_else(|| header_str(headers, CONTENT_LENGTH.as_str()))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| bad("no X-Linked-Size or Content-Length header"))?;
    let commit = header_str(headers, "x-repo-commit").map(|s| s.trim().to_string());
    Ok(FileMeta { etag, size, commit })
}

/// `Content-Range: bytes a-b/total` (or `bytes */total`) as `(a, b, total)`.
pub(crate) fn content_range(resp: &Response) -> Option<(u64, u64, Option<u64>)> {
    parse_content_range(header_str(resp.headers(), CONTENT_RANGE.as_str())?)
}

pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some((0, 0, total));
    }
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 0-7/100"),
            Some((0, 7, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 8-9/*"), Some((8, 9, None)));
        assert_eq!(parse_content_range("bytes */100"), Some((0, 0, Some(100))));
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn etags_are_normalized_like_python() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }

    #[test]
    fn resolve_urls_encode_revision_as_one_segment() {
        let t = Transport::new(&HubOptions::new("http://127.0.0.1:9/", "/tmp/x")).unwrap();
        let u = t
            .resolve_url("org/m", "refs/pr/1", "sub dir/w.bin")
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/org/m/resolve/refs%2Fpr%2F1/sub%20dir/w.bin"
        );
        assert_eq!(t.backoff(1), Duration::from_millis(500));
        assert_eq!(t.backoff(3), Duration::from_millis(2000));
        assert_eq!(t.backoff(40), Duration::from_secs(30));
    }
}
