//! Choosing the SVD backend named on the command line or in the pipeline file.
//!
//! `faer` is always available. `torch-cpu` and `torch-cuda` need a build with the `torch`
//! cargo feature (libtorch through tch); `auto` picks CUDA when that build sees a GPU, and
//! faer otherwise.

use anyhow::{Result, bail};
use attn_spectra::spectral::{FaerBackend, SvdBackend};

/// A backend and the name it is recorded under in the `models/` table.
pub struct Selected {
    pub backend: Box<dyn SvdBackend>,
    pub name: String,
}

pub fn select(name: &str, threads: usize) -> Result<Selected> {
    let faer = || -> Result<Selected> {
        Ok(Selected {
            backend: Box::new(FaerBackend::new(threads)?),
            name: "faer".into(),
        })
    };
    match name {
        "faer" => faer(),
        "auto" => auto(threads).map_or_else(faer, Ok),
        "torch-cpu" | "torch-cuda" => torch(name, threads),
        other => bail!("unknown backend `{other}`; expected auto, faer, torch-cpu or torch-cuda"),
    }
}

fn auto(_threads: usize) -> Option<Selected> {
    None
}

fn torch(name: &str, _threads: usize) -> Result<Selected> {
    bail!(
        "backend `{name}` needs libtorch: this `pipeline` was built without the `torch` feature \
         (rebuild with `cargo build --release --features torch`, see README: Enabling CUDA)"
    )
}
