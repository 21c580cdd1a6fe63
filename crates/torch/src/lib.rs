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

use std::fmt;
use std::str::FromStr;

use attn_spectra::spectral::{FaerBackend, SpectralError, SvdBackend};

#[cfg(feature = "libtorch")]
mod torch_backend;

#[cfg(feature = "libtorch")]
pub use torch_backend::{CudaDriver, TorchBackend};

/// Which spectral backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// `torch-cuda` when libtorch is linked and sees a CUDA device, otherwise `faer`.
    #[default]
    Auto,
    /// Pure Rust (faer), on the CPU.
    Faer,
    /// libtorch on the CPU.
    TorchCpu,
    /// libtorch on CUDA device 0.
    TorchCuda,
}

impl BackendChoice {
    /// The names accepted by [`FromStr`], in order.
    pub const NAMES: [&'static str; 4] = ["auto", "faer", "torch-cpu", "torch-cuda"];

    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Faer => "faer",
            BackendChoice::TorchCpu => "torch-cpu",
            BackendChoice::TorchCuda => "torch-cuda",
        }
    }

    /// The concrete backend `self` stands for here (resolves `Auto`).
    pub fn resolve(self) -> BackendChoice {
        match self {
            BackendChoice::Auto if cuda_available() => BackendChoice::TorchCuda,
            BackendChoice::Auto => BackendChoice::Faer,
            other => other,
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<BackendChoice, BackendError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "faer" => Ok(BackendChoice::Faer),
            "torch-cpu" => Ok(BackendChoice::TorchCpu),
            "torch-cuda" => Ok(BackendChoice::TorchCuda),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

/// Errors choosing or starting a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}`: expected one of auto, faer, torch-cpu, torch-cuda")]
    Unknown(String),
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
    match choice.resolve() {
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
        for name in BackendChoice::NAMES {
            let c: BackendChoice = name.parse().unwrap();
            assert_eq!(c.name(), name);
            assert_eq!(c.to_string(), name);
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
        let r = BackendChoice::Auto.resolve();
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
        assert_eq!(BackendChoice::Auto.resolve(), BackendChoice::Faer);
    }
}
