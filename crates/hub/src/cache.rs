//! The Hugging Face cache layout, shared with Python's `huggingface_hub` (and Rust's `hf-hub`):
//!
//! ```text
//! <cache>/models--<org>--<name>/
//!     blobs/<etag>                  file contents, named by ETag (sha256 for LFS files,
//!                                   the git blob sha1 for files stored in git)
//!     blobs/<etag>.incomplete       a download in progress (resumed from its length)
//!     refs/<revision>               the commit sha a branch or tag pointed to
//!     snapshots/<commit>/<file>     relative symlinks to ../../blobs/<etag>
//! <cache>/.locks/models--<org>--<name>/<etag>.lock
//! ```
//!
//! The few path rules are restated here; `scripts/check_hub_interop.py` checks them against
//! Python's `huggingface_hub`, which reads this crate's cache and writes one this crate reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::HubError;

/// The repo folder name: `models--org--name`.
pub(crate) fn repo_folder(model: &str) -> String {
    std::iter::once("models")
        .chain(model.split('/'))
        .collect::<Vec<_>>()
        .join("--")
}

/// Whether `s` is a full commit sha (40 hex digits).
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether an ETag can name a blob file: it becomes a path component, so only plain names.
pub(crate) fn etag_is_safe(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && !etag.starts_with('.')
        && etag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Paths of one model's cache folder.
#[derive(Clone, Debug)]
pub(crate) struct RepoCache {
    pub cache_dir: PathBuf,
    pub folder: String,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, model: &str) -> RepoCache {
        RepoCache {
            cache_dir: cache_dir.to_path_buf(),
            folder: repo_folder(model),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.cache_dir.join(&self.folder)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir().join("blobs").join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir().join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir().join("snapshots").join(commit)
    }

    pub fn snapshot(&self, commit: &str, file: &str) -> PathBuf {
        let mut p = self.snapshot_dir(commit);
        for part in file.split('/') {
            p.push(part);
        }
        p
    }

    pub fn ref_path(&self, revision: &str) -> PathBuf {
        let mut p = self.dir().join("refs");
        for part in revision.split('/') {
            p.push(part);
        }
        p
    }

    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.cache_dir
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    /// The commit a cached ref points to.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let s = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let s = s.trim();
        is_commit_sha(s).then(|| s.to_string())
    }

    /// Records that `revision` (a branch or tag) points to `commit`, as Python does (no newline).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        let path = self.ref_path(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        if self.read_ref(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        std::fs::write(&path, commit).map_err(|e| HubError::io(&path, e))
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink (a copy
    /// where symlinks are not available).
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let pointer = self.snapshot(commit, file);
        let parent = pointer.parent().expect("snapshot paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        if blob_name(&pointer).as_deref() == Some(etag) && pointer.is_file() {
            return Ok(pointer);
        }
        match std::fs::remove_file(&pointer) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HubError::io(&pointer, e)),
        }
        let depth = file.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &pointer).map_err(|e| HubError::io(&pointer, e))?;
        #[cfg(not(unix))]
        std::fs::copy(self.blob(etag), &pointer).map_err(|e| HubError::io(&pointer, e))?;
        Ok(pointer)
    }

    /// Takes the lock Python's `huggingface_hub` takes before writing a blob, waiting up to `wait`.
    pub fn lock(&self, etag: &str, wait: Duration) -> Result<File, HubError> {
        let path = self.lock_path(etag);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        let file = File::create(&path).map_err(|e| HubError::io(&path, e))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(HubError::Locked { path }),
                Err(std::fs::TryLockError::Error(e)) => return Err(HubError::io(&path, e)),
            }
        }
    }

    /// Every ref and the commit it points to, sorted by name.
    pub fn refs(&self) -> Vec<(String, String)> {
        let root = self.dir().join("refs");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let (Ok(rel), Ok(s)) =
                    (p.strip_prefix(&root), std::fs::read_to_string(&p))
                {
                    let name = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    if is_commit_sha(s.trim()) {
                        out.push((name, s.trim().to_string()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The commits with a snapshot folder.
    pub fn snapshots(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.dir().join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }
}

/// The blob a snapshot pointer links to (its file name, which is the ETag).
pub(crate) fn blob_name(pointer: &Path) -> Option<String> {
    let target = std::fs::read_link(pointer).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Hashes of a file's contents.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Digests {
    pub size: u64,
    pub sha256: String,
    /// The git blob id (sha1 of `blob <len>\0` and the contents), when asked for.
    pub git_sha1: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `path` once and hashes it.
pub(crate) fn digest_file(path: &Path, with_git_sha1: bool) -> Result<Digests, HubError> {
    let mut f = File::open(path).map_err(|e| HubError::io(path, e))?;
    let size = f.metadata().map_err(|e| HubError::io(path, e))?.len();
    let mut sha = Sha256::new();
    let mut git = with_git_sha1.then(|| {
        let mut h = Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        h
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        sha.update(&buf[..n]);
        if let Some(g) = git.as_mut() {
            g.update(&buf[..n]);
        }
    }
    Ok(Digests {
        size: total,
        sha256: hex(&sha.finalize()),
        git_sha1: git.map(|g| hex(&g.finalize())),
    })
}

/// How a file that landed compares with what the Hub announced.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Good {
        sha256: String,
    },
    WrongSize {
        actual: u64,
    },
    WrongHash {
        algorithm: &'static str,
        actual: String,
    },
}

/// Checks a file against the announced size and ETag: a 64-hex ETag is the sha256 of an LFS
/// file, a 40-hex one the git blob sha1 of a file stored in git; other ETags are not hashes and
/// only the size is checked.
pub(crate) fn verify(path: &Path, size: u64, etag: &str) -> Result<Verdict, HubError> {
    let len = std::fs::metadata(path)
        .map_err(|e| HubError::io(path, e))?
        .len();
    if len != size {
        return Ok(Verdict::WrongSize { actual: len });
    }
    let git = is_hex(etag, 40);
    let d = digest_file(path, git)?;
    if d.size != size {
        return Ok(Verdict::WrongSize { actual: d.size });
    }
    if is_hex(etag, 64) && !d.sha256.eq_ignore_ascii_case(etag) {
        return Ok(Verdict::WrongHash {
            algorithm: "sha256",
            actual: d.sha256,
        });
    }
    if let Some(g) = d.git_sha1
        && !g.eq_ignore_ascii_case(etag)
    {
        return Ok(Verdict::WrongHash {
            algorithm: "git blob sha1",
            actual: g,
        });
    }
    Ok(Verdict::Good { sha256: d.sha256 })
}

/// The sha256 of a cached file: an LFS blob is named by it (and was verified when it landed),
/// anything else is hashed.
pub(crate) fn cached_sha256(path: &Path, etag: &str) -> Result<String, HubError> {
    if is_hex(etag, 64) {
        return Ok(etag.to_ascii_lowercase());
    }
    Ok(digest_file(path, false)?.sha256)
}

/// A cached file of a fetched revision, to compare other revisions against.
pub(crate) struct Landed<'a> {
    pub name: &'a str,
    pub size: u64,
    pub etag: &'a str,
    pub sha256: &'a str,
}

/// Another revision in the cache whose copies of `files` are byte-identical: a ref other than
/// `revision` pointing to the same commit, or a snapshot of another commit holding the same
/// contents (named by a ref pointing to it where there is one). `main` is preferred, then refs
/// by name, then bare commits.
pub(crate) fn identical_revision(
    cache: &RepoCache,
    commit: &str,
    revision: &str,
    files: &[Landed<'_>],
) -> Result<Option<String>, HubError> {
    if files.is_empty() {
        return Ok(None);
    }
    let refs = cache.refs();
    let mut by_commit: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, c) in &refs {
        by_commit.entry(c.as_str()).or_default().push(name.as_str());
    }
    let mut candidates: Vec<String> = by_commit
        .get(commit)
        .into_iter()
        .flatten()
        .filter(|n| **n != revision)
        .map(|n| n.to_string())
        .collect();
    let mut hashes: HashMap<PathBuf, String> = HashMap::new();
    for other in cache.snapshots() {
        if other == commit {
            continue;
        }
        let mut same = true;
        for f in files {
            let p = cache.snapshot(&other, f.name);
            let Ok(meta) = std::fs::metadata(&p) else {
                same = false;
                break;
            };
            if meta.len() != f.size {
                same = false;
                break;
            }
            if blob_name(&p).as_deref() == Some(f.etag) {
                continue;
            }
            let canonical = std::fs::canonicalize(&p).unwrap_or(p.clone());
            let sha = match hashes.get(&canonical) {
                Some(s) => s.clone(),
                None => {
                    let s = digest_file(&p, false)?.sha256;
                    hashes.insert(canonical, s.clone());
                    s
                }
            };
            if sha != f.sha256 {
                same = false;
                break;
            }
        }
        if same {
            match by_commit.get(other.as_str()) {
                Some(names) => candidates.extend(names.iter().map(|n| n.to_string())),
                None => candidates.push(other.clone()),
            }
        }
    }
    candidates.sort_by_key(|n| (n != "main", is_commit_sha(n), n.clone()));
    Ok(candidates.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_match_huggingface_hub() {
        assert_eq!(
            repo_folder("EleutherAI/pythia-70m"),
            "models--EleutherAI--pythia-70m"
        );
        assert_eq!(repo_folder("gpt2"), "models--gpt2");
    }

    #[test]
    fn etags_that_could_escape_the_blob_folder_are_refused() {
        assert!(etag_is_safe(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
        assert!(!etag_is_safe("../x"));
        assert!(!etag_is_safe(".."));
        assert!(!etag_is_safe("a/b"));
        assert!(!etag_is_safe(""));
    }

    #[test]
    fn verify_checks_size_then_the_hash_the_etag_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `printf 'hello\n' | sha256sum` and `| git hash-object --stdin`.
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let git = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(
            verify(&p, 6, sha).unwrap(),
            Verdict::Good { sha256: sha.into() }
        );
        assert_eq!(
            verify(&p, 6, git).unwrap(),
            Verdict::Good { sha256: sha.into() }
        );
        assert_eq!(
            verify(&p, 7, sha).unwrap(),
            Verdict::WrongSize { actual: 6 }
        );
        let other = "0".repeat(64);
        assert!(matches!(
            verify(&p, 6, &other).unwrap(),
            Verdict::WrongHash {
                algorithm: "sha256",
                ..
            }
        ));
        assert!(matches!(
            verify(&p, 6, &"0".repeat(40)).unwrap(),
            Verdict::WrongHash {
                algorithm: "git blob sha1",
                ..
            }
        ));
        // A weak, non-hash ETag: only the size is checked.
        assert_eq!(
            verify(&p, 6, "v1").unwrap(),
            Verdict::Good { sha256: sha.into() }
        );
    }

    #[test]
    fn links_refs_and_identical_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RepoCache::new(dir.path(), "org/m");
        std::fs::create_dir_all(cache.dir().join("blobs")).unwrap();
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        std::fs::write(cache.blob(sha), b"hello\n").unwrap();
        let (c1, c2, c3) = ("1".repeat(40), "2".repeat(40), "3".repeat(40));
        let p = cache.link(&c1, "sub/w.bin", sha).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            PathBuf::from(format!("../../../blobs/{sha}"))
        );
        cache.link(&c2, "sub/w.bin", sha).unwrap();
        cache.write_ref("main", &c1).unwrap();
        cache.write_ref("step1", &c2).unwrap();
        assert_eq!(std::fs::read_to_string(cache.ref_path("main")).unwrap(), c1);
        let files = [Landed {
            name: "sub/w.bin",
            size: 6,
            etag: sha,
            sha256: sha,
        }];
        assert_eq!(
            identical_revision(&cache, &c2, "step1", &files)
                .unwrap()
                .as_deref(),
            Some("main")
        );
        // A copy (not a link) with the same bytes in a third, unnamed commit also counts.
        std::fs::create_dir_all(cache.snapshot_dir(&c3).join("sub")).unwrap();
        std::fs::write(cache.snapshot(&c3, "sub/w.bin"), b"hello\n").unwrap();
        assert_eq!(
            identical_revision(&cache, &c1, "main", &files)
                .unwrap()
                .as_deref(),
            Some("step1")
        );
        std::fs::write(cache.snapshot(&c3, "sub/w.bin"), b"hellO\n").unwrap();
        std::fs::remove_file(cache.ref_path("step1")).unwrap();
        assert_eq!(
            identical_revision(&cache, &c1, "main", &files)
                .unwrap()
                .as_deref(),
            Some(c2.as_str())
        );
    }
}
