//! A mock Hugging Face Hub on 127.0.0.1, for tests (feature `mock`).
//!
//! It serves model repositories from a directory tree `<root>/<org>/<name>/<revision>/<files>`
//! (each `<revision>` directory is a branch or tag; its commit sha is derived from the model,
//! the revision name and the files' contents, so two branches with identical files still have
//! different commits, as on the Hub) and mimics the parts of the Hub that Python's
//! `huggingface_hub` and [`crate::Hub`] use:
//!
//! - `GET /api/models/{org}/{name}[/revision/{rev}]`: the repo info JSON with `sha` and
//!   `siblings` (with `size` and `lfs` when `?blobs=true`).
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}`: small files are answered directly with
//!   `ETag` (the git blob sha1), `X-Repo-Commit`, `Content-Length` and `Accept-Ranges`; LFS
//!   files (`.safetensors`, `.bin`, `.gguf`, ...) with a `302` to a second listener, the "CDN",
//!   carrying `X-Linked-Etag` (the sha256), `X-Linked-Size` and `X-Repo-Commit`, as the real
//!   Hub does. Because the CDN listens on another port, a client that forwards the
//!   `Authorization` header across the redirect is caught by [`MockHub::requests`].
//! - `Range` requests are answered with `206 Partial Content` (or `416`).
//!
//! Faults are scripted per file ([`FaultKind`]): an HTTP status (a 503, say) on the next GETs
//! of the file's bytes or on its HEAD, a connection dropped after some bytes, corrupted bytes,
//! or a stall before the response. A repo can be gated behind a bearer token
//! ([`MockHub::gate`]). Every request is recorded ([`RecordedRequest`]).
//!
//! The server is bounded: it binds 127.0.0.1 only, handles one request per connection
//! (answering `Connection: close`), times out idle connections after a few seconds, and stops
//! when the [`MockHub`] is dropped. Nothing in it opens a connection to anything else.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Which listener saw a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The Hub itself (API and `resolve` URLs).
    Hub,
    /// The CDN that LFS files are redirected to.
    Cdn,
}

/// One request as the mock saw it, and what it answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Order of arrival, from 0.
    pub id: u64,
    pub origin: Origin,
    pub method: String,
    /// The percent-decoded path, without the query.
    pub path: String,
    pub query: Option<String>,
    /// The `Range` header, verbatim.
    pub range: Option<String>,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    pub status: u16,
    /// Body bytes actually written to the socket.
    pub body_bytes: u64,
}

impl RecordedRequest {
    /// Whether this request was for `file` of `model` (through `resolve` or the CDN).
    pub fn is_for(&self, model: &str, file: &str) -> bool {
        let resolve = self.path.starts_with(&format!("/{model}/resolve/"));
        let cdn = self.path.starts_with(&format!("/cdn/{model}/"));
        (resolve || cdn) && self.path.ends_with(&format!("/{file}"))
    }
}

/// A scripted fault on one file.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Answer GETs of the file's bytes with this status and a short body.
    Status(u16),
    /// Answer HEADs of the file's `resolve` URL with this status.
    HeadStatus(u16),
    /// Send the headers (with the full `Content-Length`) and this many body bytes of a GET,
    /// then close the connection.
    DropAfter(u64),
    /// Send the bytes of a GET with the first byte flipped.
    Corrupt,
    /// Wait this long before answering a GET.
    Stall(Duration),
    /// Send this many bytes more than the file holds in answer to a whole-file GET.
    Oversize(u64),
}

#[derive(Clone, Debug)]
struct Fault {
    model: String,
    file: String,
    kind: FaultKind,
    remaining: usize,
}

struct State {
    root: PathBuf,
    cdn_base: Mutex<String>,
    faults: Mutex<Vec<Fault>>,
    gates: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
    /// Connections being served.
    open: AtomicUsize,
    /// Whether the repo info lists `siblings`.
    siblings: AtomicBool,
}

/// Connections served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(origin: Origin, state: Arc<State>) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("mock-hub-{origin:?}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    if state.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        state.open.fetch_sub(1, Ordering::SeqCst);
                        let _ = conn.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        continue;
                    }
                    let conn_state = Arc::clone(&state);
                    let spawned = std::thread::Builder::new()
                        .name("mock-hub-conn".into())
                        .spawn(move || {
                            handle(conn, origin, &conn_state);
                            conn_state.open.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        state.open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The mock Hub: two listeners on 127.0.0.1 (the Hub and its CDN) serving a directory tree.
pub struct MockHub {
    state: Arc<State>,
    hub: Listener,
    cdn: Listener,
}

impl MockHub {
    /// Serves the repositories under `root` (`<root>/<org>/<name>/<revision>/<files>`).
    pub fn start(root: impl Into<PathBuf>) -> std::io::Result<MockHub> {
        let state = Arc::new(State {
            root: root.into(),
            cdn_base: Mutex::new(String::new()),
            faults: Mutex::new(Vec::new()),
            gates: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            siblings: AtomicBool::new(true),
        });
        let cdn = Listener::start(Origin::Cdn, Arc::clone(&state))?;
        *lock(&state.cdn_base) = format!("http://{}", cdn.addr);
        let hub = Listener::start(Origin::Hub, Arc::clone(&state))?;
        Ok(MockHub { state, hub, cdn })
    }

    /// The Hub's base URL, to use as `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub.addr)
    }

    /// The CDN's base URL.
    pub fn cdn_endpoint(&self) -> String {
        format!("http://{}", self.cdn.addr)
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Writes `bytes` as `file` of `model` at `revision` in the served tree.
    pub fn put_file(
        &self,
        model: &str,
        revision: &str,
        file: &str,
        bytes: &[u8],
    ) -> std::io::Result<PathBuf> {
        let path = self.state.root.join(model).join(revision).join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        Ok(path)
    }

    /// Requires `Authorization: Bearer <token>` for `model` (API and `resolve` URLs): without
    /// it the Hub answers 401, with another token 403.
    pub fn gate(&self, model: &str, token: &str) {
        lock(&self.state.gates).insert(model.to_string(), token.to_string());
    }

    /// Scripts `kind` for the next `times` matching requests for `file` of `model`.
    pub fn inject(&self, model: &str, file: &str, kind: FaultKind, times: usize) {
        lock(&self.state.faults).push(Fault {
            model: model.to_string(),
            file: file.to_string(),
            kind,
            remaining: times,
        });
    }

    /// Whether the repo info JSON lists the repo's files (`siblings`); the real Hub can leave
    /// them out (with `expand`), and clients must then probe for files.
    pub fn list_siblings(&self, on: bool) {
        self.state.siblings.store(on, Ordering::SeqCst);
    }

    /// The commit sha the mock serves for `model` at `revision` (a branch, tag or sha).
    pub fn commit_of(&self, model: &str, revision: &str) -> Option<String> {
        resolve_revision(&self.state.root, model, revision).map(|r| r.commit)
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.log).clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }
}

/// Whether the mock stores `file` in LFS (and so redirects it to the CDN).
pub fn is_lfs(file: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".gguf",
        ".pt",
        ".pth",
        ".h5",
        ".msgpack",
    ]
    .iter()
    .any(|ext| file.ends_with(ext))
}

/// The git blob id of `bytes` (sha1 of `blob <len>\0` and the bytes), the ETag the Hub gives
/// files stored in git.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

/// The sha256 of `bytes` in hex, the ETag of an LFS file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

struct Revision {
    name: String,
    dir: PathBuf,
    commit: String,
}

/// Every file under `dir`, as `/`-separated relative paths, sorted.
fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    out
}

fn revision_commit(model: &str, name: &str, dir: &Path) -> String {
    let mut h = Sha1::new();
    h.update(format!("mock-commit\0{model}\0{name}\0").as_bytes());
    for f in list_files(dir) {
        let bytes = std::fs::read(dir.join(&f)).unwrap_or_default();
        h.update(format!("{f}\0{}\n", sha256_hex(&bytes)).as_bytes());
    }
    hex(&h.finalize())
}

fn revisions(root: &Path, model: &str) -> Option<Vec<Revision>> {
    let dir = repo_dir(root, model)?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).ok()?.flatten() {
        if e.path().is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            let commit = revision_commit(model, &name, &e.path());
            out.push(Revision {
                name,
                dir: e.path(),
                commit,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

/// The repo directory of `model` (`org/name`, both plain names), if it exists.
fn repo_dir(root: &Path, model: &str) -> Option<PathBuf> {
    let (org, name) = model.split_once('/')?;
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\']);
    if !plain(org) || !plain(name) {
        return None;
    }
    let dir = root.join(org).join(name);
    dir.is_dir().then_some(dir)
}

fn resolve_revision(root: &Path, model: &str, revision: &str) -> Option<Revision> {
    revisions(root, model)?
        .into_iter()
        .find(|r| r.name == revision || r.commit == revision)
}

/// A file path inside a revision directory, refusing anything that could leave it.
fn safe_file(dir: &Path, file: &str) -> Option<PathBuf> {
    if file.is_empty()
        || file
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains('\\'))
    {
        return None;
    }
    let p = dir.join(file);
    p.is_file().then_some(p)
}

struct Request {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes.
    drop_after: Option<u64>,
    stall: Option<Duration>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            drop_after: None,
            stall: None,
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    fn error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "error": message }).to_string();
        Response::new(status, body)
            .header("Content-Type", "application/json")
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request head (no body: the mock only serves GET and HEAD).
fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        path: raw_path.to_string(),
        query,
        headers,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn handle(mut conn: TcpStream, origin: Origin, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    let resp = match origin {
        Origin::Hub => route_hub(&req, state),
        Origin::Cdn => route_cdn(&req, state),
    };
    let head_only = req.method == "HEAD";
    let limit = if head_only {
        0
    } else {
        resp.drop_after
            .map_or(resp.body.len(), |n| (n as usize).min(resp.body.len()))
    };
    // Recorded before answering, with the body bytes about to be sent, so that a client that
    // has its answer always finds the request in the log (corrected below if a write fails).
    let id = state.next_id.fetch_add(1, Ordering::SeqCst);
    lock(&state.log).push(RecordedRequest {
        id,
        origin,
        method: req.method.clone(),
        path: percent_decode(&req.path),
        query: req.query.clone(),
        range: req.header("Range").map(str::to_string),
        authorization: req.header("Authorization").map(str::to_string),
        status: resp.status,
        body_bytes: limit as u64,
    });
    if let Some(d) = resp.stall {
        std::thread::sleep(d);
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let has_len = resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Content-Length"));
    for (k, v) in &resp.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if !has_len {
        let _ = write!(head, "Content-Length: {}\r\n", resp.body.len());
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut written = 0u64;
    let mut ok = conn.write_all(head.as_bytes()).is_ok();
    for chunk in resp.body[..limit].chunks(64 * 1024) {
        if !ok {
            break;
        }
        ok = conn.write_all(chunk).is_ok();
        if ok {
            written += chunk.len() as u64;
        }
    }
    let _ = conn.flush();
    if written != limit as u64
        && let Some(r) = lock(&state.log).iter_mut().rev().find(|r| r.id == id)
    {
        r.body_bytes = written;
    }
    let _ = conn.shutdown(Shutdown::Both);
}

/// Path segments, percent-decoded, with empty ones dropped.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// The gate check: `None` when the request may proceed.
fn check_gate(req: &Request, state: &State, model: &str) -> Option<Response> {
    let gates = lock(&state.gates);
    let token = gates.get(model)?;
    match req.header("Authorization") {
        Some(v) if v == format!("Bearer {token}") => None,
        Some(_) => Some(Response::error(
            403,
            "GatedRepo",
            &format!(
                "Access to model {model} is restricted and you are not in the authorized list."
            ),
        )),
        None => Some(Response::error(
            401,
            "GatedRepo",
            &format!(
                "Access to model {model} is restricted. You must have access to it and be authenticated to access it."
            ),
        )),
    }
}

/// Takes one use of a matching fault.
fn take_fault(
    state: &State,
    model: &str,
    file: &str,
    want: impl Fn(&FaultKind) -> bool,
) -> Option<FaultKind> {
    let mut faults = lock(&state.faults);
    let f = faults
        .iter_mut()
        .find(|f| f.remaining > 0 && f.model == model && f.file == file && want(&f.kind))?;
    f.remaining -= 1;
    Some(f.kind.clone())
}

fn route_hub(req: &Request, state: &State) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "MethodNotAllowed", "only GET and HEAD are served");
    }
    let seg = segments(&req.path);
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["api", "models", org, name] => api_info(req, state, &format!("{org}/{name}"), "main"),
        ["api", "models", org, name, "revision", rev] => {
            api_info(req, state, &format!("{org}/{name}"), rev)
        }
        [org, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            resolve(req, state, &format!("{org}/{name}"), rev, &file.join("/"))
        }
        _ => Response::error(404, "NotFound", "no such route in the mock Hub"),
    }
}

fn api_info(req: &Request, state: &State, model: &str, rev: &str) -> Response {
    if let Some(r) = check_gate(req, state, model) {
        return r;
    }
    let Some(revs) = revisions(&state.root, model) else {
        return Response::error(404, "RepoNotFound", "Repository not found");
    };
    let Some(r) = revs.into_iter().find(|r| r.name == rev || r.commit == rev) else {
        return Response::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let blobs = req
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "blobs=true"));
    let siblings: Vec<serde_json::Value> = list_files(&r.dir)
        .into_iter()
        .map(|f| {
            if !blobs {
                return serde_json::json!({ "rfilename": f });
            }
            let bytes = std::fs::read(r.dir.join(&f)).unwrap_or_default();
            let mut v = serde_json::json!({
                "rfilename": f,
                "size": bytes.len(),
                "blobId": git_blob_sha1(&bytes),
            });
            if is_lfs(&f) {
                v["lfs"] = serde_json::json!({
                    "sha256": sha256_hex(&bytes),
                    "size": bytes.len(),
                    "pointerSize": 134,
                });
            }
            v
        })
        .collect();
    let siblings = if state.siblings.load(Ordering::SeqCst) {
        serde_json::Value::Array(siblings)
    } else {
        serde_json::Value::Null
    };
    let gated = lock(&state.gates).contains_key(model);
    let (org, _) = model.split_once('/').unwrap_or(("", model));
    let body = serde_json::json!({
        "_id": format!("mock-{}", &r.commit[..24]),
        "id": model,
        "modelId": model,
        "author": org,
        "sha": r.commit,
        "lastModified": "2024-01-01T00:00:00.000Z",
        "createdAt": "2023-01-01T00:00:00.000Z",
        "private": false,
        "gated": if gated { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "library_name": "transformers",
        "siblings": siblings,
    });
    Response::new(200, body.to_string()).header("Content-Type", "application/json")
}

fn resolve(req: &Request, state: &State, model: &str, rev: &str, file: &str) -> Response {
    if let Some(r) = check_gate(req, state, model) {
        return r;
    }
    if revisions(&state.root, model).is_none() {
        return Response::error(404, "RepoNotFound", "Repository not found");
    }
    let Some(r) = resolve_revision(&state.root, model, rev) else {
        return Response::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    };
    let Some(path) = safe_file(&r.dir, file) else {
        return Response::error(
            404,
            "EntryNotFound",
            &format!("{file} does not exist on \"{rev}\""),
        )
        .header("X-Repo-Commit", r.commit.clone());
    };
    if req.method == "HEAD"
        && let Some(FaultKind::HeadStatus(s)) = take_fault(state, model, file, |k| {
            matches!(k, FaultKind::HeadStatus(_))
        })
    {
        return Response::new(s, format!("mock fault: HTTP {s}"));
    }
    let bytes = std::fs::read(&path).unwrap_or_default();
    if is_lfs(file) {
        let sha = sha256_hex(&bytes);
        let pointer = format!(
            "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {}\n",
            bytes.len()
        );
        let location = format!("{}/cdn/{model}/{}/{file}", lock(&state.cdn_base), r.commit);
        let body = format!("Found. Redirecting to {location}");
        return Response::new(302, body)
            .header("Location", location)
            .header("ETag", format!("\"{}\"", git_blob_sha1(pointer.as_bytes())))
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("X-Repo-Commit", r.commit.clone());
    }
    let etag = git_blob_sha1(&bytes);
    content(req, state, model, file, bytes)
        .header("ETag", format!("\"{etag}\""))
        .header("X-Repo-Commit", r.commit)
}

fn route_cdn(req: &Request, state: &State) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "MethodNotAllowed", "only GET and HEAD are served");
    }
    let seg = segments(&req.path);
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let ["cdn", org, name, commit, file @ ..] = seg.as_slice() else {
        return Response::new(404, "no such object");
    };
    let model = format!("{org}/{name}");
    let file = file.join("/");
    let found = revisions(&state.root, &model)
        .and_then(|revs| revs.into_iter().find(|r| &r.commit == commit))
        .and_then(|r| safe_file(&r.dir, &file));
    let Some(path) = found else {
        return Response::new(404, "no such object");
    };
    let bytes = std::fs::read(&path).unwrap_or_default();
    let sha = sha256_hex(&bytes);
    content(req, state, &model, &file, bytes).header("ETag", format!("\"{sha}\""))
}

/// Parses a single `bytes=` range against a body of `len` bytes: `Some(Ok((start, end)))`
/// with `end` exclusive, `Some(Err(()))` when unsatisfiable, `None` when absent or malformed
/// (then the whole body is sent, as servers do).
fn parse_range(header: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len)));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        len
    } else {
        b.parse::<u64>().ok()?.saturating_add(1).min(len)
    };
    if start >= len || start >= end {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

/// The bytes of a file, honouring `Range` and the scripted faults for GETs.
fn content(req: &Request, state: &State, model: &str, file: &str, mut bytes: Vec<u8>) -> Response {
    let len = bytes.len() as u64;
    let mut drop_after = None;
    let mut stall = None;
    if req.method == "GET"
        && let Some(kind) = take_fault(state, model, file, |k| {
            !matches!(k, FaultKind::HeadStatus(_))
        })
    {
        match kind {
            FaultKind::Status(s) => return Response::new(s, format!("mock fault: HTTP {s}")),
            FaultKind::DropAfter(n) => drop_after = Some(n),
            FaultKind::Corrupt => {
                if let Some(b) = bytes.first_mut() {
                    *b ^= 0xff;
                }
            }
            FaultKind::Stall(d) => stall = Some(d),
            FaultKind::Oversize(n) if req.header("Range").is_none() => {
                bytes.extend(std::iter::repeat_n(0u8, n as usize));
            }
            FaultKind::HeadStatus(_) | FaultKind::Oversize(_) => {}
        }
    }
    let mut resp = match parse_range(req.header("Range"), len) {
        Some(Err(())) => {
            return Response::new(416, "range not satisfiable")
                .header("Content-Range", format!("bytes */{len}"));
        }
        Some(Ok((start, end))) => Response::new(206, bytes[start as usize..end as usize].to_vec())
            .header("Content-Range", format!("bytes {start}-{}/{len}", end - 1)),
        None => Response::new(200, bytes),
    };
    resp.drop_after = drop_after;
    resp.stall = stall;
    resp.header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let addr = addr.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        conn.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(out[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (status, headers, out[end + 4..].to_vec())
    }

    fn header<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
        h.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin` and the empty blob's well-known id.
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            git_blob_sha1(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        // `printf 'abc' | sha256sum` (FIPS 180-2 example).
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(parse_range(Some("bytes=0-7"), 100), Some(Ok((0, 8))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Some(Ok((90, 100))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Some(Ok((90, 100))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Some(Ok((50, 100))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Some(Err(())));
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Some(Err(())));
        assert_eq!(parse_range(Some("items=0-1"), 100), None);
        assert_eq!(parse_range(None, 100), None);
    }

    #[test]
    fn serves_files_redirects_lfs_and_records_requests() {
        let dir = tempfile::tempdir().unwrap();
        let hub = MockHub::start(dir.path()).unwrap();
        hub.put_file("org/m", "main", "config.json", b"{\"a\":1}")
            .unwrap();
        hub.put_file("org/m", "main", "model.safetensors", b"0123456789")
            .unwrap();
        let commit = hub.commit_of("org/m", "main").unwrap();
        assert_eq!(commit.len(), 40);

        let (s, h, body) = get(&hub.endpoint(), "/org/m/resolve/main/config.json", &[]);
        assert_eq!(s, 200);
        assert_eq!(body, b"{\"a\":1}");
        assert_eq!(header(&h, "X-Repo-Commit"), Some(commit.as_str()));
        let etag = format!("\"{}\"", git_blob_sha1(b"{\"a\":1}"));
        assert_eq!(header(&h, "ETag"), Some(etag.as_str()));

        let (s, h, _) = get(
            &hub.endpoint(),
            "/org/m/resolve/main/model.safetensors",
            &[],
        );
        assert_eq!(s, 302);
        assert_eq!(header(&h, "X-Linked-Size"), Some("10"));
        let location = header(&h, "Location").unwrap().to_string();
        assert!(location.starts_with(&hub.cdn_endpoint()), "{location}");
        let (s, h, body) = get(
            &hub.cdn_endpoint(),
            &location[hub.cdn_endpoint().len()..],
            &[("Range", "bytes=2-4")],
        );
        assert_eq!((s, body.as_slice()), (206, b"234".as_slice()));
        assert_eq!(header(&h, "Content-Range"), Some("bytes 2-4/10"));

        let (s, _, _) = get(&hub.endpoint(), "/org/m/resolve/nope/config.json", &[]);
        assert_eq!(s, 404);
        let (s, h, _) = get(&hub.endpoint(), "/org/m/resolve/main/missing.json", &[]);
        assert_eq!(s, 404);
        assert_eq!(header(&h, "X-Error-Code"), Some("EntryNotFound"));
        let (s, _, _) = get(&hub.endpoint(), "/org/m/resolve/main/..%2F..%2Fsecret", &[]);
        assert_eq!(s, 404);

        let log = hub.requests();
        assert_eq!(log.len(), 6);
        assert_eq!(log[2].origin, Origin::Cdn);
        assert_eq!(log[2].range.as_deref(), Some("bytes=2-4"));
        assert_eq!(log[2].body_bytes, 3);
        assert!(log[1].is_for("org/m", "model.safetensors"));
    }

    #[test]
    fn api_info_gates_and_faults() {
        let dir = tempfile::tempdir().unwrap();
        let hub = MockHub::start(dir.path()).unwrap();
        hub.put_file("org/m", "main", "config.json", b"{}").unwrap();
        hub.put_file("org/m", "step1", "config.json", b"{}")
            .unwrap();
        let (s, _, body) = get(&hub.endpoint(), "/api/models/org/m/revision/step1", &[]);
        assert_eq!(s, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["sha"], hub.commit_of("org/m", "step1").unwrap());
        assert_ne!(
            hub.commit_of("org/m", "step1"),
            hub.commit_of("org/m", "main")
        );
        assert_eq!(v["siblings"][0]["rfilename"], "config.json");

        hub.gate("org/m", "tok");
        assert_eq!(get(&hub.endpoint(), "/api/models/org/m", &[]).0, 401);
        assert_eq!(
            get(
                &hub.endpoint(),
                "/api/models/org/m",
                &[("Authorization", "Bearer x")]
            )
            .0,
            403
        );
        assert_eq!(
            get(
                &hub.endpoint(),
                "/api/models/org/m",
                &[("Authorization", "Bearer tok")]
            )
            .0,
            200
        );

        hub.inject("org/m", "config.json", FaultKind::Status(503), 1);
        let auth = [("Authorization", "Bearer tok")];
        assert_eq!(
            get(&hub.endpoint(), "/org/m/resolve/main/config.json", &auth).0,
            503
        );
        assert_eq!(
            get(&hub.endpoint(), "/org/m/resolve/main/config.json", &auth).0,
            200
        );
        hub.inject("org/m", "config.json", FaultKind::DropAfter(1), 1);
        let (s, _, body) = get(&hub.endpoint(), "/org/m/resolve/main/config.json", &auth);
        assert_eq!((s, body.len()), (200, 1));
    }
}
