//! Starting the SVD backend chosen on the command line or in the pipeline file.
//!
//! `faer` is always available. `torch-cpu` and `torch-cuda` need a build with the `torch`
//! cargo feature (libtorch through tch, see `attn-spectra-torch`); `auto` picks CUDA when that
//! build sees a GPU, and faer otherwise.

use anyhow::Result;
use attn_spectra::spectral::{BackendChoice, SvdBackend};
use attn_spectra_torch::{make_backend, resolve};

/// A backend and the name it is recorded under in the `models/` table.
pub struct Selected {
    pub backend: Box<dyn SvdBackend>,
    pub name: String,
}

/// Starts the backend `choice` stands for with `threads` CPU threads (0: one per core).
pub fn select(choice: BackendChoice, threads: usize) -> Result<Selected> {
    let resolved = resolve(choice);
    let backend = make_backend(resolved, threads)?;
    Ok(Selected {
        backend,
        name: resolved.name().to_string(),
    })
}
