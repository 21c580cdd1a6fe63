//! The spectral engine: full singular-value spectra of attention matrices and the metrics
//! computed from them.
//!
//! # Jobs and backends
//!
//! A [`Job`] is one matrix whose spectrum is wanted: either a dense [`Matrix`]
//! ([`Job::Dense`]) or a *circuit* given by its two factors ([`Job::Product`]), such as
//! OV^h = W_O^h · W_V^g (`[d, d_head] · [d_head, d]`) or QK^h = (W_Q^h)^T · W_K^g. A circuit's
//! spectrum is always computed in factored form — thin QR of `left` and of `right^T`, then the
//! SVD of the small core `R_l · R_r^T` — and never by forming the `m x n` product; it has
//! `min(m, n, k)` singular values (`d_head` for circuits), the remaining ones being exactly 0.
//!
//! An [`SvdBackend`] turns a batch of jobs into spectra: for each job, **all**
//! `min(rows, cols)` singular values (`min(m, n, k)` for a product), in descending order, as
//! `f64` even when computed in `f32` ([`Precision`]). The backend decides how to parallelise
//! and batch. [`FaerBackend`] is the pure-Rust default; a libtorch backend (CPU and CUDA) lives
//! in the `attn-spectra-torch` crate so that this crate does not depend on libtorch.
//! [`validate_jobs`] holds the input checks that every backend runs first.
//!
//! # Metrics
//!
//! [`metrics`] (and [`metrics_for_shape`], which also knows the matrix shape) computes one
//! [`Metrics`] row from a spectrum `σ_1 >= σ_2 >= ... >= σ_r >= 0`. Its field names are the
//! Parquet column names.
//!
//! | field | definition |
//! | --- | --- |
//! | `spectral_norm` | σ_1 |
//! | `frobenius_norm` | sqrt(Σ σ_i²) |
//! | `nuclear_norm` | Σ σ_i |
//! | `stable_rank` | ‖W‖_F² / σ_1² = Σ σ_i² / σ_1² |
//! | `effective_rank` | Roy & Vetterli (2007): exp(−Σ p_i ln p_i), p_i = σ_i / Σ σ_j, terms with p_i = 0 contribute 0 |
//! | `condition_number` | σ_1 / σ_r, `+inf` when σ_r = 0 |
//! | `alpha`, `alpha_xmin`, `alpha_ks`, `num_pl_spikes` | WeightWatcher's default power-law fit of the eigenvalues λ_i = σ_i² (below) |
//! | `log_norm` | log10 Σ λ_i |
//! | `log_spectral_norm` | log10 λ_max |
//! | `alpha_weighted` | alpha · log10 λ_max |
//! | `entropy` | WeightWatcher's `matrix_entropy` (below) |
//! | `mp_edge`, `spectral_norm_over_mp`, `mp_softrank` | the Marchenko-Pastur baseline ([`baseline`]); NaN for circuits |
//!
//! **Caution:** WeightWatcher's own `spectral_norm` column is λ_max = σ_1², and its `norm` is
//! Σ λ_i = ‖W‖_F². Ours are σ_1 and sqrt(Σ λ_i); `log_norm` and `log_spectral_norm` are on
//! the eigenvalues, exactly as WeightWatcher defines them.
//!
//! ## The power-law fit (WeightWatcher 0.7.7 defaults, `pl_package="ww"`, `xmax=None`, `fix_fingers=False`)
//!
//! The eigenvalues λ_i = σ_i² are used as they are (no normalisation). Only λ > 1e-5 enter
//! the fit (WeightWatcher's `EVALS_THRESH`; it uses 1e-4 when CUDA is visible to its own
//! process, which we do not imitate). Sorted ascending, they are x_0 <= ... <= x_{N-1}.
//!
//! * N >= 20 (WeightWatcher's `fit_power_law_standard`): each index i in 0..N-1 (every
//!   eigenvalue except the largest; tied values are separate candidates) is a candidate
//!   x_min = x_i with tail x_i..x_{N-1} of size n = N − i. Its exponent is the continuous MLE
//!   α_i = 1 + n / Σ_{j>=i} ln(x_j / x_i). When α_i > 1 its Kolmogorov–Smirnov distance is
//!   D_i = max_{j>=i} |1 − (x_j / x_i)^(1−α_i) − (j − i)/n| (the fitted CDF against the
//!   empirical CDF 0, 1/n, ..., (n−1)/n, evaluated at the tail points only); otherwise
//!   D_i = 1. The chosen candidate is the first index with the smallest D_i.
//! * 2 <= N < 20 (WeightWatcher's `fit_powerlaw_smallN` inside its `WWFit` constructor):
//!   candidates need a tail of at least 8 and S_i = Σ_{j>=i} ln(x_j / x_i) > 1e-12; their
//!   exponent is bias-corrected, α_i = 1 + (n − 1) / S_i, and D_i is as above. The function
//!   picks a candidate by an objective J_i = D_i − 0.868 / sqrt(n), but the constructor then
//!   overwrites that choice with the first index of the smallest D (non-candidates keep
//!   D = 1), so that is what WeightWatcher reports and what we do. With no candidate the
//!   whole set is the tail (i = 0) with the bias-corrected exponent; when even that has
//!   S_0 <= 1e-12 (all values equal) WeightWatcher reports the placeholder α = 0, D = 1,
//!   which we report as no fit.
//! * N <= 1: WeightWatcher's fit fails (it reports −1); we report no fit.
//!
//! `alpha` is α_i, `alpha_xmin` is x_i, `alpha_ks` is D_i, and `num_pl_spikes` counts all
//! eigenvalues >= x_i (so tied values below index i are counted, as WeightWatcher counts them).
//! Without a fit the float fields are NaN and `num_pl_spikes` is −1 (WeightWatcher's sentinel).
//! The `powerlaw` package's `Fit` is not what WeightWatcher runs by default and is not used.
//!
//! WeightWatcher's `analyze()` also skips whole layers with fewer than 8 eigenvalues
//! (`min_evals`); we compute every spectrum and leave such filtering to the caller.
//!
//! ## Matrix entropy
//!
//! WeightWatcher's `matrix_entropy(σ, N)` with N the larger dimension of the matrix:
//! rank = #{σ_i > σ_1 · N · ε} with ε = 2^−52 (`np.linalg.matrix_rank`'s tolerance),
//! p_i = λ_i / Σ λ_j + 1e-10, entropy = −Σ p_i ln p_i / ln(rank + 1e-10). (WeightWatcher uses
//! 6e-5 instead of 1e-10 when CUDA is visible to it; we use its CPU constant.) [`metrics`]
//! does not know N and takes N = r, the number of singular values; [`metrics_for_shape`]
//! takes the real shape. For a product job pass the product's shape: the circuit's extra
//! `max(m, n) − min(m, n, k)` zero singular values are not in its spectrum, so every metric of
//! a circuit is that of its rank-k part (its condition number is σ_1 / σ_k, not infinity).
//!
//! # The accuracy contract
//!
//! Every backend promises, per [`Precision`], that every singular value it returns is within
//! [`Precision::tolerance`] · σ_1 of LAPACK's values computed in f64: 1e-6 for `f32`, 1e-12
//! for `f64`. "f32" names the accuracy asked for (and allows cheaper algorithms), not the
//! arithmetic: an f32 SVD does not meet 1e-6 on 1024² matrices (faer's and LAPACK's sgesdd
//! reach a few 1e-6·σ_1), so the faer backend computes in f64 throughout. Tested against LAPACK
//! on ill-conditioned (1e8), rank-deficient, all-zero, post-LayerNorm OPT-350m-like and
//! seed-shaped matrices and a circuit (`crates/core/tests/spectral_golden.rs`,
//! `tests/fixtures/spectral/contract.json`).
//!
//! # Algorithms in [`FaerBackend`] ([`DenseAlgorithm::Auto`], the default)
//!
//! * Dense jobs: the eigenvalues of the smaller Gram matrix, formed and solved in f64 (about
//!   pq² + 4q³/3 flops against the SVD's 4pq² − 4q³/3), with a proved a-posteriori error
//!   bound ([`gram_spectrum`]); they are kept when the bound meets the contract of the
//!   precision asked for, otherwise the job is redone by the f64 values-only SVD of
//!   [`bidiagonal`] (a two-stage reduction: dense to band by blocked Householder transforms,
//!   all matrix-matrix products, then band to bidiagonal by bulge chasing; 0.5-0.6x faer's
//!   one-stage SVD on a 1024² matrix). In f32
//!   the Gram path is tried for every dense job (random and typical weights pass: bound about
//!   1e-8·σ_1 on a 768² Gaussian); in f64 the SVD runs directly, since the bound cannot reach
//!   1e-12·σ_1 unless the matrix is nearly orthogonal (see [`DenseAlgorithm::Auto`]).
//! * Product jobs: thin Householder QR of `left` and `right^T`, the `k x k` core `R_l R_r^T`,
//!   and its values-only SVD ([`bidiagonal`]), in f64. In f32, factors shared within a batch
//!   are reduced instead to the Cholesky factors of their `k x k` Gram matrices (formed in
//!   f64; a per-head job takes its values from the same Gram matrix), and the core
//!   `L_l^T L_r` is kept when a proved bound meets the contract (`GramFactor` in
//!   [`faer_backend`]); otherwise thin QRs.
//! * Jobs of a batch run in parallel on the backend's own rayon pool, one thread per job,
//!   largest first ([`JobParallelism::Auto`]), each queued by itself, so that batches
//!   submitted at once from several threads interleave ([`SvdBackend::batches_in_flight`]); [`FaerBackend::spectra_with_methods`] also says
//!   which algorithm produced each spectrum ([`Method`]).
//!
//! Figures: README, "Benchmarks".

/// `$vis fn $name(args) -> ret`, which runs `$portable` (an `#[inline(always)]` function, so
/// that it and the kernels it inlines are compiled into each copy) compiled for AVX on x86-64
/// CPUs that have it, and as built for the target's baseline (SSE2) everywhere else. The
/// reductions of `symmetric.rs` and `bidiagonal.rs` are vector code but not matrix products
/// (which faer dispatches at run time itself); no FMA is enabled and no operation is
/// reordered (Rust floats have no fast-math), so both copies compute the same values; the
/// tests of each module check both against faer's.
macro_rules! with_avx_copy {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $portable:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx") {
                #[target_feature(enable = "avx")]
                fn avx($($arg: $ty),*) -> $ret {
                    $portable($($arg),*)
                }
                // SAFETY: the CPU has AVX, the one feature `avx` is compiled for beyond the
                // target's baseline.
                return unsafe { avx($($arg),*) };
            }
            $portable($($arg),*)
        }
    };
}

pub mod baseline;
mod bidiagonal;
mod faer_backend;
mod metrics;
mod symmetric;
mod tridiagonal;

pub use faer_backend::{
    DenseAlgorithm, EVD_BACKWARD_C, FaerBackend, GramSpectrum, JobParallelism, Method, gram_bound,
    gram_range_ok, gram_spectrum,
};
pub use metrics::{
    ENTROPY_EPSILON, EVALS_THRESH, Metric, Metrics, PowerLawFit, SMALL_N_CUTOFF, fit_power_law,
    metrics, metrics_for_shape,
};

use std::fmt;
use std::str::FromStr;

use crate::matrix::Matrix;

/// The floating-point precision a backend computes in. Results are always returned as `f64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Single-precision accuracy: every singular value within 1e-6·σ_1 (see
    /// [`Precision::tolerance`]). The faer backend meets it with f64 arithmetic on a cheaper
    /// algorithm where it can prove the bound, so "f32" names the accuracy asked for, not the
    /// arithmetic used.
    F32,
    /// Double precision (the default): every singular value within 1e-12·σ_1.
    #[default]
    F64,
}

impl Precision {
    /// The accuracy contract of this precision, relative to σ_1: every singular value a
    /// backend returns is within `tolerance() · σ_1` of LAPACK's values computed in f64
    /// (`1e-6` for [`Precision::F32`], `1e-12` for [`Precision::F64`]). See [`FaerBackend`]
    /// for how the faer backend meets it.
    pub fn tolerance(self) -> f64 {
        match self {
            Precision::F32 => 1e-6,
            Precision::F64 => 1e-12,
        }
    }

    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = SpectralError;

    /// Parses `"f32"` or `"f64"` (case-insensitive).
    fn from_str(s: &str) -> Result<Precision, SpectralError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(SpectralError::UnknownPrecision(s.to_string())),
        }
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Which spectral backend to use: the one list of names that pipeline files (`[analysis]
/// backend`) and `--backend` accept. The backends themselves live in this module (faer) and
/// in the `attn-spectra-torch` crate (libtorch), which also resolves `auto`.
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
    /// Every choice, in the order they are listed.
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Auto,
        BackendChoice::Faer,
        BackendChoice::TorchCpu,
        BackendChoice::TorchCuda,
    ];

    /// `auto`, `faer`, `torch-cpu` or `torch-cuda`.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Faer => "faer",
            BackendChoice::TorchCpu => "torch-cpu",
            BackendChoice::TorchCuda => "torch-cuda",
        }
    }

    /// The names, comma-separated (for messages).
    pub fn names() -> String {
        BackendChoice::ALL.map(BackendChoice::name).join(", ")
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = SpectralError;

    /// Parses a name of [`BackendChoice::ALL`] (case-insensitive, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<BackendChoice, SpectralError> {
        let wanted = s.trim().to_ascii_lowercase();
        BackendChoice::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| SpectralError::UnknownBackend(s.to_string()))
    }
}

impl serde::Serialize for BackendChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One matrix whose singular values are wanted.
#[derive(Clone, Copy, Debug)]
pub enum Job<'a> {
    /// A dense matrix.
    Dense(&'a Matrix),
    /// The product `left · right` with `left` `[m, k]` and `right` `[k, n]`, `k` small
    /// (a per-head circuit). Computed in factored form; it has `min(m, n, k)` singular values.
    Product { left: &'a Matrix, right: &'a Matrix },
}

impl Job<'_> {
    /// The shape `(rows, cols)` of the matrix whose spectrum this job asks for (the product's
    /// shape for [`Job::Product`]).
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Job::Dense(m) => m.shape(),
            Job::Product { left, right } => (left.rows(), right.cols()),
        }
    }

    /// How many singular values the backend returns for this job: `min(rows, cols)` for a
    /// dense matrix, `min(m, n, k)` for a product.
    pub fn num_singular_values(&self) -> usize {
        match self {
            Job::Dense(m) => m.rows().min(m.cols()),
            Job::Product { left, right } => left.rows().min(right.cols()).min(left.cols()),
        }
    }
}

/// Computes full singular-value spectra for batches of jobs.
pub trait SvdBackend: Send + Sync {
    /// A short name for logs and benchmark tables (`"faer"`, `"torch-cuda"`, ...).
    fn name(&self) -> &str;

    /// For each job, all its singular values in descending order (see [`Job`] for how many).
    fn spectra(&self, jobs: &[Job], precision: Precision) -> Result<Vec<Vec<f64>>, SpectralError>;

    /// How many batches a caller should keep in flight at once (calling [`SvdBackend::spectra`]
    /// from as many threads) to keep the backend busy: with more than one, the next batch's
    /// jobs start while the last jobs of the one before finish. 1 unless the backend says
    /// otherwise.
    fn batches_in_flight(&self) -> usize {
        1
    }
}

/// Errors of the spectral engine. Each names the job (its index in the batch) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SpectralError {
    #[error("unknown precision `{0}`: expected `f32` or `f64`")]
    UnknownPrecision(String),
    #[error("unknown backend `{0}`: expected one of {names}", names = BackendChoice::names())]
    UnknownBackend(String),
    #[error(
        "job {job}: {operand} matrix ({rows}x{cols}) holds {count} NaN or infinite values (first at ({row}, {col}): {value})"
    )]
    NonFinite {
        job: usize,
        operand: &'static str,
        rows: usize,
        cols: usize,
        count: usize,
        row: usize,
        col: usize,
        value: f64,
    },
    #[error(
        "job {job}: product factors do not chain: left is {left_rows}x{left_cols}, right is {right_rows}x{right_cols}"
    )]
    ShapeMismatch {
        job: usize,
        left_rows: usize,
        left_cols: usize,
        right_rows: usize,
        right_cols: usize,
    },
    #[error(
        "job {job}: {what} of a {rows}x{cols} matrix did not converge ({backend}, {precision})"
    )]
    NoConvergence {
        job: usize,
        backend: String,
        what: &'static str,
        rows: usize,
        cols: usize,
        precision: Precision,
    },
    #[error("job {job}: {rows}x{cols} matrix has values beyond the range of {precision}")]
    OutOfRange {
        job: usize,
        rows: usize,
        cols: usize,
        precision: Precision,
    },
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
}

/// Checks every job before any work: product factors chain and every value is finite.
///
/// Backends call this first so that bad input yields an error naming the job, never a panic
/// or a NaN spectrum.
pub fn validate_jobs(jobs: &[Job]) -> Result<(), SpectralError> {
    fn finite(job: usize, operand: &'static str, m: &Matrix) -> Result<(), SpectralError> {
        match m.first_non_finite() {
            None => Ok(()),
            Some((row, col, value)) => Err(SpectralError::NonFinite {
                job,
                operand,
                rows: m.rows(),
                cols: m.cols(),
                count: m.count_non_finite(),
                row,
                col,
                value,
            }),
        }
    }
    // A matrix that several jobs name (a per-head matrix and its circuits) is scanned once.
    let mut checked = std::collections::HashSet::<*const Matrix>::new();
    let mut finite = |job: usize, operand: &'static str, m: &Matrix| {
        if checked.contains(&std::ptr::from_ref(m)) {
            return Ok(());
        }
        finite(job, operand, m)?;
        checked.insert(std::ptr::from_ref(m));
        Ok(())
    };
    for (i, job) in jobs.iter().enumerate() {
        match job {
            Job::Dense(m) => finite(i, "dense", m)?,
            Job::Product { left, right } => {
                if left.cols() != right.rows() {
                    return Err(SpectralError::ShapeMismatch {
                        job: i,
                        left_rows: left.rows(),
                        left_cols: left.cols(),
                        right_rows: right.rows(),
                        right_cols: right.cols(),
                    });
                }
                finite(i, "left", left)?;
                finite(i, "right", right)?;
            }
        }
    }
    Ok(())
}

/// A reproducible stream of numbers in [-1, 1) (xorshift64) for the spectral modules' tests.
#[cfg(test)]
fn test_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_and_defaults_to_f64() {
        assert_eq!(Precision::default(), Precision::F64);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert_eq!(" F64 ".parse::<Precision>().unwrap(), Precision::F64);
        let err = "f16".parse::<Precision>().unwrap_err().to_string();
        assert!(err.contains("`f16`"), "{err}");
        assert_eq!(Precision::F32.to_string(), "f32");
    }

    #[test]
    fn job_shapes_and_counts() {
        let a = Matrix::zeros(10, 3);
        let b = Matrix::zeros(3, 7);
        let w = Matrix::zeros(4, 9);
        assert_eq!(Job::Dense(&w).num_singular_values(), 4);
        let p = Job::Product {
            left: &a,
            right: &b,
        };
        assert_eq!(p.shape(), (10, 7));
        assert_eq!(p.num_singular_values(), 3);
    }

    #[test]
    fn validation_names_the_job() {
        let good = Matrix::zeros(2, 2);
        let mut data = vec![0.0; 6];
        data[4] = f64::NAN;
        let bad = Matrix::from_vec(2, 3, data).unwrap();
        let err = validate_jobs(&[
            Job::Dense(&good),
            Job::Product {
                left: &good,
                right: &bad,
            },
        ])
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("job 1: right matrix (2x3)"), "{msg}");
        assert!(msg.contains("(1, 1)"), "{msg}");

        // A matrix named by several jobs is scanned once, and the first job naming it fails.
        let err = validate_jobs(&[
            Job::Dense(&good),
            Job::Dense(&bad),
            Job::Product {
                left: &good,
                right: &bad,
            },
        ])
        .unwrap_err();
        assert!(
            matches!(err, SpectralError::NonFinite { job: 1, .. }),
            "{err}"
        );

        let a = Matrix::zeros(4, 3);
        let err = validate_jobs(&[Job::Product {
            left: &a,
            right: &good,
        }])
        .unwrap_err();
        assert!(matches!(err, SpectralError::ShapeMismatch { job: 0, .. }));
    }
}
