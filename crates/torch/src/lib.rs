//! The libtorch backend of the attn-spectra spectral engine, and the choice of backend the CLI
//! offers (`auto|faer|torch-cpu|torch-cuda`).
//!
//! With the `libtorch` feature, [`TorchBackend`] implements
//! [`attn_spectra::spectral::SvdBackend`] on libtorch (through tch 0.24, libtorch 2.11) on the
//! CPU or a CUDA device: same-shape jobs are stacked into one batched tensor, rectangular
//! matrices are first reduced to their square R factor by a batched QR, and circuits
//! ([`Job::Product`](attn_spectra::spectral::Job)) are computed in factored form (batched QR of
//! both factors, SVD of the small core). Without the feature this crate still builds: it offers
//! [`BackendChoice`] and [`make_backend`], and the torch choices report that libtorch is not
//! linked. The default workspace build therefore never needs libtorch.
//!
//! # Building with libtorch
//!
//! ```sh
//! PATH=/path/to/venv-with-torch-2.11/bin:$PATH LIBTORCH_USE_PYTORCH=1 \
//!     cargo build -p attn-spectra-torch --features libtorch
//! ```
//!
//! This crate's build script puts libtorch's lib dir on the rpath of its own tests, examples
//! and benches and links `libtorch_cuda.so` with `--no-as-needed` when it exists (otherwise
//! the linker drops it and tch never sees CUDA). Binaries of other packages get neither: they
//! need libtorch on their library path (`LD_LIBRARY_PATH`, or an rpath from their own build
//! script, which can read the directory from `DEP_ATTN_SPECTRA_TORCH_LIBTORCH_LIB`).
//! [`TorchBackend::cuda`] also `dlopen`s `libtorch_cuda.so` before its first CUDA query, so CUDA
//! is found even when the linker dropped the library.

use attn_spectra::spectral::{FaerBackend, SpectralError, SvdBackend};

#[cfg(feature = "libtorch")]
mod torch_backend;

#[cfg(feature = "libtorch")]
pub use torch_backend::{CudaDriver, TorchBackend};

pub use attn_spectra::spectral::BackendChoice;

/// The concrete backend `choice` stands for in this build (resolves `auto`: `torch-cuda`
/// when libtorch is linked and sees a CUDA device, otherwise `faer`).
pub fn resolve(choice: BackendChoice) -> BackendChoice {
    match choice {
        BackendChoice::Auto if cuda_available() => BackendChoice::TorchCuda,
        BackendChoice::Auto => BackendChoice::Faer,
        other => other,
    }
}

/// Errors choosing or starting a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend {backend} needs libtorch, but this build does not link it (rebuild with the `torch` cargo feature)"
    )]
    NotBuilt { backend: &'static str },
    #[error("backend torch-cuda: libtorch sees no CUDA device ({detail})")]
    NoCuda { detail: String },
    #[error(transparent)]
    Spectral(#[from] SpectralError),
}

/// Whether this build links libtorch (the `libtorch` feature).
pub fn libtorch_linked() -> bool {
    cfg!(feature = "libtorch")
}

/// Whether libtorch is linked and sees at least one CUDA device.
pub fn cuda_available() -> bool {
    #[cfg(feature = "libtorch")]
    {
        torch_backend::cuda_available()
    }
    #[cfg(not(feature = "libtorch"))]
    {
        false
    }
}

/// Starts the backend `choice` stands for. `threads` is the CPU thread count for `faer` and
/// `torch-cpu` (0: one per core); `torch-cuda` uses device 0.
pub fn make_backend(
    choice: BackendChoice,
    threads: usize,
) -> Result<Box<dyn SvdBackend>, BackendError> {
    match resolve(choice) {
        BackendChoice::Faer | BackendChoice::Auto => Ok(Box::new(FaerBackend::new(threads)?)),
        #[cfg(feature = "libtorch")]
        BackendChoice::TorchCpu => Ok(Box::new(TorchBackend::cpu(threads))),
        #[cfg(feature = "libtorch")]
        BackendChoice::TorchCuda => Ok(Box::new(TorchBackend::cuda(0)?)),
        #[cfg(not(feature = "libtorch"))]
        other => Err(BackendError::NotBuilt {
            backend: other.name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name() {
        for c in BackendChoice::ALL {
            assert_eq!(c.name().parse::<BackendChoice>().unwrap(), c);
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(
            " Torch-CUDA ".parse::<BackendChoice>().unwrap(),
            BackendChoice::TorchCuda
        );
        let err = "gpu".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(err.contains("`gpu`") && err.contains("torch-cuda"), "{err}");
    }

    #[test]
    fn auto_resolves_to_a_concrete_backend() {
        let r = resolve(BackendChoice::Auto);
        assert!(r == BackendChoice::Faer || r == BackendChoice::TorchCuda);
        assert_eq!(r == BackendChoice::TorchCuda, cuda_available());
        let b = make_backend(BackendChoice::Faer, 1).unwrap();
        assert_eq!(b.name(), "faer");
    }

    #[cfg(not(feature = "libtorch"))]
    #[test]
    fn torch_choices_fail_clearly_without_libtorch() {
        for c in [BackendChoice::TorchCpu, BackendChoice::TorchCuda] {
            let err = make_backend(c, 1).err().unwrap().to_string();
            assert!(err.contains(c.name()) && err.contains("`torch`"), "{err}");
        }
        assert_eq!(resolve(BackendChoice::Auto), BackendChoice::Faer);
    }
}
