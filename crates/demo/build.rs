//! Embeds the demo: reads `pipelines/demo.toml` (the one demo pipeline of the repository, so
//! the repository and the binary cannot drift apart), finds the checkpoint directory of every
//! model's `source`, and generates `assets.rs`: a table of every file the demo needs, by its
//! path relative to the repository root, with its bytes embedded by `include_bytes!`.
//! Test-only files beside a fixture checkpoint (`expected.safetensors`, `meta.json`: the
//! transformers probe's outputs) are left out.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// Files that sit beside a fixture checkpoint but are not part of it.
const TEST_ONLY: [&str; 2] = ["expected.safetensors", "meta.json"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../..");
    let pipeline_rel = Path::new("pipelines/demo.toml");
    let pipeline = root.join(pipeline_rel);
    println!("cargo:rerun-if-changed={}", pipeline.display());
    let text = std::fs::read_to_string(&pipeline)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", pipeline.display()));
    let doc: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", pipeline.display()));

    let mut files: Vec<PathBuf> = vec![pipeline_rel.to_path_buf()];
    let models = doc
        .get("models")
        .and_then(|m| m.as_array())
        .unwrap_or_else(|| panic!("{} has no [[models]]", pipeline.display()));
    for model in models {
        let Some(source) = model.get("source").and_then(|s| s.as_str()) else {
            panic!(
                "every model of {} needs a local `source` to be embedded",
                pipeline.display()
            );
        };
        let dir = normalise(&pipeline_rel.parent().unwrap().join(source));
        let abs = root.join(&dir);
        println!("cargo:rerun-if-changed={}", abs.display());
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&abs)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", abs.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !TEST_ONLY.contains(&name.as_ref())
            })
            .collect();
        entries.sort();
        for path in entries {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(dir.join(path.file_name().unwrap()));
        }
    }
    files.sort();
    files.dedup();

    let mut out = String::from(
        "/// Every demo file: its path relative to the repository root, and its bytes.\n",
    );
    out.push_str("pub(crate) static ASSETS: &[(&str, &[u8])] = &[\n");
    for rel in &files {
        let rel_s = rel.to_str().expect("demo paths are UTF-8");
        let abs = std::fs::canonicalize(root.join(rel)).expect("demo file exists");
        writeln!(
            out,
            "    ({rel_s:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("assets.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

/// `a/b/../c` -> `a/c`, without touching the file system; refuses to climb above the root.
fn normalise(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().unwrap_or_else(|| {
                    panic!("demo source {} leaves the repository", path.display())
                });
            }
            _ => panic!("demo source {} must be a relative path", path.display()),
        }
    }
    parts.iter().collect()
}
