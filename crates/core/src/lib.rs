//! attn-spectra: spectral analysis of transformer attention weights.
//!
//! This crate is the domain of the `pipeline` tool. Data flows through it in this order:
//!
//! 1. [`checkpoint`] opens a model on disk (safetensors, PyTorch `.bin`, GGUF), memory-maps
//!    its files and reads single tensors on demand, converted to `f64`.
//! 2. [`arch`] knows, per `config.json` `model_type`, which tensors hold the attention
//!    projections and how fused layouts interleave heads; it yields one
//!    [`attention::LayerAttention`] per layer in a canonical layout.
//! 3. [`attention`] splits a layer into per-head matrices (W_Q^h, W_K^g, W_V^g, W_O^h) and
//!    the grouped-query map h -> g, and optionally folds the pre-attention norm gain.
//! 4. [`spectral`] computes full singular-value spectra of those matrices and of the OV/QK
//!    circuits (in factored form) through a [`spectral::SvdBackend`], and their metrics.
//! 5. [`dataset`] writes the tables; [`stats`] holds the two-sample tests run over them.
//!
//! Heavy optional parts (libtorch through tch, DataFusion) live in other crates of the
//! workspace so that this one builds and tests quickly.

pub mod arch;
pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod dtype;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod geometry;
pub mod kind;
pub mod matrix;
pub mod pipeline;
pub mod shard;
pub mod spectral;
pub mod stats;
pub mod sweep;

pub use arch::{ArchError, Architecture};
pub use attention::LayerAttention;
pub use checkpoint::{Checkpoint, CheckpointError};
pub use config::ModelConfig;
pub use dtype::DType;
pub use geometry::Geometry;
pub use kind::MatrixKind;
pub use matrix::Matrix;

#[cfg(test)]
mod profile_tests {
    /// The dev profile builds this crate without overflow checks or debug assertions (speed);
    /// the test profile turns both back on for these unit tests, the fuzz corpus replays among
    /// them (Cargo.toml, `[profile.test.package.attn-spectra]`).
    #[test]
    fn unit_tests_run_with_overflow_checks_and_debug_assertions() {
        let debug_assert = std::panic::catch_unwind(|| debug_assert!(std::hint::black_box(false)));
        assert!(
            debug_assert.is_err(),
            "debug assertions are off in the unit tests"
        );
        let max = std::hint::black_box(u8::MAX);
        let add = std::panic::catch_unwind(|| max + std::hint::black_box(1u8));
        assert!(add.is_err(), "overflow checks are off in the unit tests");
    }
}
