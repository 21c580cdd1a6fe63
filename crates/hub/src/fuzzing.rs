//! A byte-slice entry point into the Hub client's handling of HTTP responses, for the
//! `hub_response` fuzz target in `fuzz/` (cargo-fuzz, nightly) and for the stable test that
//! replays its corpus (`tests/fixtures/fuzz/hub_response/`) in `cargo test`.
//!
//! An input is a request and a response: 16 bytes giving the byte range asked for (`start`
//! and a length, little-endian `u64`s; the length is taken modulo 2^20), then an HTTP response
//! head (`HTTP/1.1 206 ...`, header lines, an empty line) and the body. The response goes
//! through the code the client runs on a real one: as the answer to a HEAD (size, ETag,
//! commit; whether the ETag may name a cache blob) and as the answer to the ranged GET
//! ([`Transport::read_range`]: status, `Content-Range`, body length). The framing is the
//! harness's own; everything it feeds is the client's.

use std::path::{Component, Path};
use std::sync::OnceLock;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::cache;
use crate::error::HubError;
use crate::options::HubOptions;
use crate::transport::{Attempt, Transport, parse_meta};

/// What the client made of one response.
#[derive(Debug)]
pub struct Outcome {
    /// As a HEAD answer: the file's ETag and size.
    pub meta: Result<(String, u64), HubError>,
    /// As the answer to the ranged GET: the bytes and the total size.
    pub range: Result<(Vec<u8>, Option<u64>), HubError>,
}

/// One transport for the whole process (it owns a runtime; no request is ever sent).
fn transport() -> &'static Transport {
    static T: OnceLock<Transport> = OnceLock::new();
    T.get_or_init(|| {
        Transport::new(&HubOptions::new("http://127.0.0.1:9", "/nonexistent"))
            .expect("a transport without network access")
    })
}

/// Splits the harness's framing; `None` when the input is too short or has no status line.
fn frame(data: &[u8]) -> Option<((u64, u64), reqwest::Response)> {
    let (range, rest) = data.split_at_checked(16)?;
    let start = u64::from_le_bytes(range[..8].try_into().ok()?);
    let len = u64::from_le_bytes(range[8..].try_into().ok()?) % (1 << 20);
    let end = start.checked_add(len)?;
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next()?;
    let code = std::str::from_utf8(status_line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse::<u16>()
        .ok()?;
    let mut resp = http::Response::builder().status(code);
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    if let Some(h) = resp.headers_mut() {
        *h = headers;
    }
    let resp = resp.body(body.to_vec()).ok()?;
    Some(((start, end), reqwest::Response::from(resp)))
}

/// Feeds one framed response to the client's HEAD and ranged-GET handling; `None` when the
/// input does not frame.
///
/// Checks the contracts the rest of the client relies on, panicking (a fuzzer crash) when one
/// is broken: an ETag accepted as a blob name is one plain path component, and a ranged GET's
/// bytes are never more than were asked for, nor fewer unless the file ends first.
pub fn response(data: &[u8]) -> Option<Outcome> {
    let ((start, end), resp) = frame(data)?;
    let (model, file) = ("org/model", "model.safetensors");
    let meta = parse_meta(model, file, resp.headers()).and_then(|m| {
        if !cache::etag_is_safe(&m.etag) {
            return Err(HubError::Malformed {
                model: model.into(),
                what: format!("HEAD {file}"),
                problem: format!("ETag `{}` cannot name a cache blob", m.etag),
            });
        }
        let parts: Vec<_> = Path::new(&m.etag).components().collect();
        assert!(
            matches!(parts[..], [Component::Normal(_)]),
            "ETag `{}` accepted as a blob name is not one plain path component",
            m.etag
        );
        Ok((m.etag, m.size))
    });
    let t = transport();
    let range = t
        .block_on(t.read_range(model, "main", file, resp, (start, end), &|_| {}))
        .map_err(|a| match a {
            Attempt::Fatal(e) => e,
            Attempt::Transient(message) => HubError::Http {
                model: model.into(),
                what: file.into(),
                message,
            },
        });
    if let Ok((bytes, total)) = &range {
        let n = bytes.len() as u64;
        assert!(
            n <= end - start,
            "{n} bytes for a {}-byte range",
            end - start
        );
        if n < end - start {
            assert!(
                total.is_some_and(|t| t < end && n == t.saturating_sub(start)),
                "{n} bytes for a {}-byte range, total {total:?}",
                end - start
            );
        }
    }
    Some(Outcome { meta, range })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<(std::path::PathBuf, Vec<u8>)> {
        attn_spectra::fuzzing::corpus_inputs("hub_response").unwrap()
    }

    #[test]
    fn fuzz_corpus_hub_response_replays() {
        for (path, bytes) in corpus() {
            let r = std::panic::catch_unwind(|| {
                let _ = response(&bytes);
            });
            assert!(r.is_ok(), "{} panicked", path.display());
        }
    }

    /// Each regression input (one that broke a contract before its fix) with the words its
    /// ranged-GET error must contain.
    const REGRESSIONS: &[(&str, &[&str])] = &[(
        "416-without-total.http",
        &[
            "model.safetensors",
            "HTTP 416",
            "without a Content-Range total",
        ],
    )];

    #[test]
    fn fuzz_regressions_give_their_errors() {
        let checked =
            attn_spectra::fuzzing::check_regressions("hub_response", REGRESSIONS, |name, bytes| {
                let o = response(bytes).expect("frames");
                o.range.expect_err(name).to_string()
            });
        assert_eq!(
            checked,
            REGRESSIONS.len(),
            "a listed regression file is missing"
        );
    }

    /// The seeds are answers a Hub gives: each frames, its HEAD reading gives an ETag that
    /// names a blob, and its range reading succeeds.
    #[test]
    fn fuzz_seeds_are_read() {
        let seeds: Vec<_> = corpus()
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("/corpus/seed-"))
            .collect();
        assert!(!seeds.is_empty());
        for (p, b) in seeds {
            let o = response(&b).unwrap_or_else(|| panic!("{} does not frame", p.display()));
            assert!(o.meta.is_ok(), "{}: {:?}", p.display(), o.meta);
            assert!(o.range.is_ok(), "{}: {:?}", p.display(), o.range);
        }
    }
}
