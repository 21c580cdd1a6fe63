//! The pure-Rust [`SvdBackend`]: Gram-matrix eigenvalues in f64 under a proved error bound
//! ([`gram_spectrum`]) where it meets the precision's accuracy contract, the two-stage
//! values-only SVD of [`super::bidiagonal`] in f64 otherwise (faer's kernels underneath),
//! factored circuits whose thin QRs a batch shares with its per-head jobs; parallel across the
//! jobs of a batch on a private rayon pool.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
#[cfg(feature = "f32-arithmetic")]
use faer::linalg::evd;
#[cfg(feature = "f32-arithmetic")]
use faer::linalg::evd::ComputeEigenvectors;
use faer::linalg::matmul::triangular::{self as tri, BlockStructure};
use faer::linalg::qr::no_pivoting::factor as qr;
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::{Accum, Mat, MatRef, Par};

use super::{Job, Precision, SpectralError, SvdBackend, bidiagonal, symmetric, validate_jobs};
use crate::matrix::Matrix;

/// How [`FaerBackend`] computes the spectrum of a dense job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenseAlgorithm {
    /// The default: meets the accuracy contract of the precision asked for
    /// ([`Precision::tolerance`]) at the least cost. In f32 the Gram path of
    /// [`DenseAlgorithm::GramChecked`] is tried for every dense job, and the f64 SVD runs when
    /// its bound is not met. In f64 the SVD runs directly: the bound is at least
    /// γ_p·ρ(|W|^T|W|) / (2σ_min) with ρ >= σ_1², i.e. about p·u·κ/2 · (ρ/σ_1²) · σ_1, which
    /// stays above 1e-12·σ_1 for any p >= 64 unless κ is near 1 (2.5e-12 on a Gaussian
    /// per-head 64 x 1024 matrix, κ = 1.6), so trying it would only add its cost.
    #[default]
    Auto,
    /// Values-only SVD (bidiagonalisation + bidiagonal QR) in the requested precision. In
    /// f32 it does **not** meet the f32 contract (a few 1e-6·σ_1 on 1024² matrices):
    /// for benchmarks only. f32 arithmetic needs the `f32-arithmetic` feature (faer's f32
    /// solvers double the core crate's compile time); without it this and
    /// [`DenseAlgorithm::Gram`] compute in f64 at either precision.
    Svd,
    /// Eigenvalues of the smaller Gram matrix (W^T W or W W^T), square-rooted, in the
    /// requested precision, unchecked: singular values below sqrt(ε)·σ_1 are noise. For
    /// benchmarks only.
    Gram,
    /// Gram eigenvalues computed in f64 whatever the precision, kept only when their proved
    /// error bound ([`gram_spectrum`]) meets the precision's contract; otherwise the f64 SVD.
    GramChecked,
}

/// Which algorithm produced a spectrum (see [`FaerBackend::spectra_with_methods`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Gram eigenvalues in f64, kept because their proved bound met the contract.
    Gram,
    /// Values-only SVD in f64 (directly, or because the Gram bound was not met).
    SvdF64,
    /// Factored product (thin QRs, SVD of the small core) in f64.
    ProductF64,
    /// The thin QR of a dense matrix that a product of the same batch shares (its triangular
    /// factor serves both), then the SVD of that q x q factor, in f64.
    QrF64,
    /// The same thin QR, then the checked Gram path on its q x q triangular factor, its bound
    /// widened by the QR's backward error (f32 contract only).
    QrGram,
    /// Factored product from the Cholesky factors of its two factors' k x k Gram matrices
    /// (the core L_lᵀ L_r and its SVD), in f64, kept because its proved bound met the contract
    /// (f32 contract only; see [`GramFactor`]).
    GramProduct,
    /// A benchmark-only algorithm that carries no contract ([`DenseAlgorithm::Svd`] or
    /// [`DenseAlgorithm::Gram`] in f32, or the unchecked Gram path in f64).
    Unchecked,
}

/// Unit roundoff of f64, u = 2^-53.
const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;

/// c in the symmetric eigensolver's backward-error model |Δλ| <= c · q · ε · ‖G‖₂ (see
/// [`gram_spectrum`]).
pub const EVD_BACKWARD_C: f64 = 4.0;

/// Matrices whose largest |entry| lies outside this range skip the Gram path (squares would
/// underflow or overflow; the bound assumes neither).
const GRAM_RANGE: (f64, f64) = (1e-100, 1e100);

/// Gram eigenvalues in f64 with a proved bound on their error.
#[derive(Clone, Debug, PartialEq)]
pub struct GramSpectrum {
    /// σ̂_i = sqrt(max(λ̂_i, 0)), descending.
    pub values: Vec<f64>,
    /// A bound on max_i |σ̂_i − σ_i| against the exact singular values.
    pub error_bound: f64,
}

impl GramSpectrum {
    /// True when the bound guarantees every value within `tol · σ_1` of the exact one
    /// (σ_1 >= σ̂_1 − bound, so `bound <= tol · (σ̂_1 − bound)` suffices).
    pub fn meets(&self, tol: f64) -> bool {
        self.meets_widened(tol, 0.0)
    }

    /// [`GramSpectrum::meets`] with the bound widened by `extra` (another error source).
    fn meets_widened(&self, tol: f64, extra: f64) -> bool {
        let first = self.values.first().copied().unwrap_or(0.0);
        let bound = self.error_bound + extra;
        bound <= tol * (first - bound).max(0.0)
    }
}

/// The singular values of `m` from the eigenvalues of its smaller Gram matrix, computed in
/// f64, with a bound on their error; `None` when the entries are out of the range the bound
/// covers (|w| beyond 1e-100..1e100), or the eigensolver fails.
///
/// # The bound
///
/// Let `m` be `p x q` after transposing to tall (p >= q), G = m^T m (q x q), u = 2^-53,
/// ε = 2u, γ_p = p·u / (1 − p·u).
///
/// 1. *Forming G.* Each entry is a dot product of length p, so, whatever the summation order
///    and with or without FMA (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
///    ed., §3.1, eq. 3.5), Ĝ = G + D with |D| <= γ_p |m|^T |m| entrywise. Hence
///    ‖D‖₂ <= ‖ |D| ‖₂ <= γ_p ρ(|m|^T |m|). The Perron root ρ of that non-negative matrix is
///    bounded from above by Collatz–Wielandt: ρ <= max_j (|m|^T |m| x)_j / x_j for every
///    positive x; we take the least of three power-iteration vectors starting at x = 1 (the
///    first is the ∞-norm), computed in O(pq) and inflated by (1 + 2(p+q+2)u) for the
///    rounding of those non-negative sums. (The engine stops after the first or second
///    iterate when the bound already meets the contract: every iterate is an upper bound.)
/// 2. *The eigensolver.* Householder tridiagonalisation (two-stage, [`super::symmetric`]:
///    orthogonal transformations only) followed by the root-free QL/QR iteration
///    ([`super::tridiagonal`], LAPACK's `dsterf`, the values-only path of `dsyev`) is normwise
///    backward stable: the computed eigenvalues are exact for Ĝ + F with ‖F‖₂ <= c·q·ε·‖Ĝ‖₂
///    (Golub & Van Loan, *Matrix Computations*, 4th ed., §8.3.6, state ‖F‖₂ ≈ u‖Ĝ‖₂; LAPACK's
///    Users' Guide, §4.7, writes p(n)·ε·‖A‖₂ with p(n) "a modestly growing function of n"). We
///    take c = [`EVD_BACKWARD_C`] = 4 per dimension, 8q times the textbook estimate. This term
///    is the one assumption of the bound; the tests check the whole bound against LAPACK on
///    ill-conditioned, rank-deficient and random matrices. ‖Ĝ‖₂ <= max|λ̂| / (1 − c·q·ε).
/// 3. *Weyl.* Every computed eigenvalue λ̂_i is within E = γ_p ρ + c·q·ε·‖Ĝ‖₂ of the exact
///    λ_i = σ_i² (both sorted).
/// 4. *Square roots.* With σ̂_i = sqrt(max(λ̂_i, 0)): |σ̂_i − σ_i| = |λ̂⁺_i − λ_i| / (σ̂_i + σ_i)
///    <= E / (σ̂_i + sqrt(max(λ̂_i − E, 0))), and always <= sqrt(E). The bound is the
///    largest of these over i (the smallest σ̂ dominates), plus 2u·σ̂_1 for the square root.
///
/// So the error in σ_i is about E / (2σ_i): tiny for the large singular values, and the
/// smallest one decides. With ρ typically 10–200 σ_1² for weight matrices and p ~ 1000,
/// E ≈ 1e-11·σ_1², so the f32 contract (1e-6) holds when σ_min >= ~1e-5·σ_1, and the f64
/// contract (1e-12) essentially never for square matrices.
pub fn gram_spectrum(m: &Matrix) -> Option<GramSpectrum> {
    gram_checked(m, Par::Seq, |_| false)
}

/// [`gram_spectrum`], stopping the power iterations of the bound on ρ early once `enough`
/// holds for the spectrum and bound so far (each iterate is an upper bound; later ones are
/// tighter).
fn gram_checked(
    m: &Matrix,
    par: Par,
    enough: impl Fn(&GramSpectrum) -> bool,
) -> Option<GramSpectrum> {
    let (rows, cols) = m.shape();
    let (p, q) = (rows.max(cols), rows.min(cols));
    if q == 0 {
        return Some(GramSpectrum {
            values: Vec::new(),
            error_bound: 0.0,
        });
    }
    let max_abs = m.max_abs();
    if max_abs == 0.0 {
        return Some(GramSpectrum {
            values: vec![0.0; q],
            error_bound: 0.0,
        });
    }
    if !gram_range_ok(max_abs) {
        return None;
    }
    let lambda = gram_eigenvalues(m, par)?;
    let rho = abs_gram_spectral_radius_bound(m, |rho| {
        gram_bound(&lambda, rho, p, q).is_some_and(|g| enough(&g))
    });
    gram_bound(&lambda, rho, p, q)
}

/// True when the largest |entry| of a matrix is in the range the Gram bound covers (see
/// [`gram_spectrum`]; zero matrices are exact and handled apart).
pub fn gram_range_ok(max_abs: f64) -> bool {
    (GRAM_RANGE.0..=GRAM_RANGE.1).contains(&max_abs)
}

/// Steps 2–4 of [`gram_spectrum`]'s bound, for any backend: from the computed Gram eigenvalues
/// `lambda` (descending, unclamped) of a `p x q` matrix (p >= q, inner dimension p) and an upper
/// bound `rho` on ρ(|m|^T |m|) computed with non-negative sums (it is inflated here for their
/// rounding), the square-rooted values and their error bound. `None` when the bound is not
/// finite.
pub fn gram_bound(lambda: &[f64], rho: f64, p: usize, q: usize) -> Option<GramSpectrum> {
    let rho = rho * (1.0 + 2.0 * (p + q + 2) as f64 * UNIT_ROUNDOFF);
    let pu = p as f64 * UNIT_ROUNDOFF;
    let eta = EVD_BACKWARD_C * q as f64 * f64::EPSILON;
    if eta >= 1.0 || pu >= 1.0 {
        return None;
    }
    let gamma = pu / (1.0 - pu);
    let lambda_abs_max = lambda.iter().fold(0.0f64, |a, l| a.max(l.abs()));
    let e = gamma * rho + eta * lambda_abs_max / (1.0 - eta);
    if !e.is_finite() {
        return None;
    }
    let values: Vec<f64> = lambda.iter().map(|l| l.max(0.0).sqrt()).collect();
    let first = values.first().copied().unwrap_or(0.0);
    let root_e = e.sqrt();
    let error_bound = lambda
        .iter()
        .zip(&values)
        .map(|(l, s)| {
            let denom = s + (l - e).max(0.0).sqrt();
            if denom > 0.0 {
                (e / denom).min(root_e)
            } else {
                root_e
            }
        })
        .fold(0.0f64, f64::max)
        + 2.0 * UNIT_ROUNDOFF * first;
    Some(GramSpectrum {
        values,
        error_bound,
    })
}

/// An upper bound on ρ(|m|^T |m|) = ‖ |m| ‖₂² by Collatz–Wielandt (see [`gram_spectrum`]):
/// the least over up to three power iterations, fewer when `enough` holds for the bound so far.
fn abs_gram_spectral_radius_bound(m: &Matrix, mut enough: impl FnMut(f64) -> bool) -> f64 {
    let (rows, cols) = m.shape();
    let data = m.data();
    let mut x = vec![1.0f64; cols];
    let mut r = vec![0.0f64; rows];
    let mut y = vec![0.0f64; cols];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        for (ri, row) in r.iter_mut().zip(data.chunks_exact(cols)) {
            *ri = abs_dot(row, &x);
        }
        y.fill(0.0);
        for (ri, row) in r.iter().zip(data.chunks_exact(cols)) {
            for (yj, a) in y.iter_mut().zip(row) {
                *yj += a.abs() * ri;
            }
        }
        let ratio = y.iter().zip(&x).fold(0.0f64, |acc, (y, x)| acc.max(y / x));
        best = best.min(ratio);
        if enough(best) {
            break;
        }
        let ymax = y.iter().fold(0.0f64, |a, b| a.max(*b));
        if ymax == 0.0 || !ymax.is_finite() {
            break;
        }
        // The next vector must stay positive for the Collatz–Wielandt bound to hold.
        for (xj, yj) in x.iter_mut().zip(&y) {
            *xj = (yj / ymax).max(1e-30);
        }
    }
    // (gram_bound inflates it for the rounding of these non-negative sums.)
    best
}

/// Σ_j |a_j|·x_j with eight partial sums, so that the loop vectorises (any order of these
/// non-negative sums has the rounding bound [`gram_bound`] allows for).
fn abs_dot(a: &[f64], x: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (x8, x_rest) = x.split_at(a8.len());
    for (a, x) in a8.chunks_exact(8).zip(x8.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += a[k].abs() * x[k];
        }
    }
    let rest: f64 = a_rest.iter().zip(x_rest).map(|(a, x)| a.abs() * x).sum();
    acc.iter().sum::<f64>() + rest
}

/// How [`FaerBackend`] spreads a batch over its threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobParallelism {
    /// Jobs in parallel, each single-threaded, when there are at least as many jobs as
    /// threads; otherwise one job at a time using all threads. The default.
    #[default]
    Auto,
    /// Always one job at a time, each using all threads (faer's own parallelism).
    WithinJobs,
}

/// The faer backend. Jobs of a batch run in parallel on a private rayon pool of `threads`
/// threads, each job single-threaded; a batch with fewer jobs than threads runs its jobs one
/// after another, each using all threads. No other thread pool is touched: batches run at
/// once from several threads share the pool's threads (no oversubscription), which is how a
/// caller keeps them busy across batches ([`SvdBackend::batches_in_flight`]).
pub struct FaerBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    dense: DenseAlgorithm,
    parallelism: JobParallelism,
}

impl FaerBackend {
    /// A backend with `threads` worker threads (0: one per available core).
    pub fn new(threads: usize) -> Result<FaerBackend, SpectralError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("faer-svd-{i}"))
            .build()
            .map_err(|e| SpectralError::Backend {
                backend: "faer".into(),
                message: format!("cannot start {threads} threads: {e}"),
            })?;
        Ok(FaerBackend {
            pool,
            threads,
            dense: DenseAlgorithm::default(),
            parallelism: JobParallelism::default(),
        })
    }

    /// Chooses the algorithm for dense jobs (for benchmarks; the default is
    /// [`DenseAlgorithm::Auto`]).
    pub fn with_dense_algorithm(mut self, dense: DenseAlgorithm) -> FaerBackend {
        self.dense = dense;
        self
    }

    /// Chooses how a batch is spread over the threads (for benchmarks).
    pub fn with_parallelism(mut self, parallelism: JobParallelism) -> FaerBackend {
        self.parallelism = parallelism;
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn dense_algorithm(&self) -> DenseAlgorithm {
        self.dense
    }

    /// Like [`SvdBackend::spectra`], and which algorithm produced each spectrum.
    ///
    /// Jobs are started largest first (by an estimate of their flops) and handed to the
    /// threads one at a time, so that small per-head jobs fill the gaps at the end of a batch.
    ///
    /// With [`DenseAlgorithm::Auto`], the factors of thin products (inner dimension k at most
    /// both outer ones, as in every attention circuit) are reduced once per batch: the thin QR
    /// of each distinct factor (the same [`Matrix`] by address, however many circuits and
    /// dense jobs name it) runs in a first pass, alongside the dense jobs; a dense job whose
    /// matrix is such a factor takes its values from the SVD of the k x k triangular factor
    /// ([`Method::QrF64`]), and the circuits of the second pass only multiply two k x k
    /// factors and take the SVD of the core.
    pub fn spectra_with_methods(
        &self,
        jobs: &[Job],
        precision: Precision,
    ) -> Result<Vec<(Vec<f64>, Method)>, SpectralError> {
        validate_jobs(jobs)?;
        let shared = if self.dense == DenseAlgorithm::Auto {
            SharedFactors::of(jobs)
        } else {
            SharedFactors::default()
        };
        // First pass: every dense job, and the factors no dense job reduces.
        let mut first: Vec<Task> = (0..jobs.len())
            .filter(|&i| matches!(jobs[i], Job::Dense(_)))
            .map(Task::Job)
            .collect();
        first.extend(
            (0..shared.factors.len())
                .filter(|&f| shared.dense_of[f].is_none())
                .map(Task::Factor),
        );
        let mut out: Vec<Option<(Vec<f64>, Method)>> = vec![None; jobs.len()];
        let mut factors: Vec<Option<Factor>> = std::iter::repeat_with(|| None)
            .take(shared.factors.len())
            .collect();
        let done = self.run_tasks(
            &first,
            |t| self.task_cost(jobs, &shared, t),
            |t, par| self.first_pass(jobs, &shared, t, precision, par),
        );
        for (task, result) in first.iter().zip(done) {
            let (values, r) = result?;
            match *task {
                Task::Job(i) => {
                    out[i] = values;
                    if let Some(f) = shared.factor_of_dense(i) {
                        factors[f] = r;
                    }
                }
                Task::Factor(f) => factors[f] = r,
            }
        }
        // Second pass: the products.
        let second: Vec<Task> = (0..jobs.len())
            .filter(|&i| matches!(jobs[i], Job::Product { .. }))
            .map(Task::Job)
            .collect();
        let done = self.run_tasks(
            &second,
            |t| self.task_cost(jobs, &shared, t),
            |t, par| {
                let Task::Job(i) = *t else {
                    unreachable!("the second pass holds products only")
                };
                let cores = shared
                    .product_factors(i)
                    .and_then(|(l, r)| Some((factors[l].as_ref()?, factors[r].as_ref()?)));
                self.product(i, &jobs[i], cores, precision, par)
            },
        );
        for (task, result) in second.iter().zip(done) {
            if let Task::Job(i) = *task {
                out[i] = Some(result?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Runs `tasks` on the pool: in parallel, largest first by `cost`, each single-threaded,
    /// when there are at least as many as threads ([`JobParallelism::Auto`]); otherwise one
    /// after another, each using every thread. Results in the order of `tasks`.
    fn run_tasks<R: Send>(
        &self,
        tasks: &[Task],
        cost: impl Fn(&Task) -> f64 + Sync,
        work: impl Fn(&Task, Par) -> R + Sync,
    ) -> Vec<R> {
        if tasks.len() >= self.threads && self.parallelism == JobParallelism::Auto {
            let mut order: Vec<usize> = (0..tasks.len()).collect();
            order.sort_by(|a, b| cost(&tasks[*b]).total_cmp(&cost(&tasks[*a])));
            // Each task is queued on the pool by itself, in this order, from the calling
            // thread, which waits without taking work: the tasks of batches run at once from
            // several threads are taken one by one in the order they were queued, and no
            // thread of the pool ever waits on another batch's task.
            let (tx, rx) = std::sync::mpsc::channel();
            self.pool.in_place_scope_fifo(|scope| {
                for &i in &order {
                    let (tx, work) = (tx.clone(), &work);
                    scope.spawn_fifo(move |_| {
                        let r = work(&tasks[i], Par::Seq);
                        // The receiver lives until the scope has ended.
                        let _ = tx.send((i, r));
                    });
                }
            });
            drop(tx);
            let mut done: Vec<(usize, R)> = rx.into_iter().collect();
            done.sort_by_key(|(i, _)| *i);
            done.into_iter().map(|(_, r)| r).collect()
        } else {
            let par = if self.threads > 1 {
                Par::rayon(self.threads)
            } else {
                Par::Seq
            };
            self.pool
                .install(|| tasks.iter().map(|t| work(t, par)).collect())
        }
    }

    fn task_cost(&self, jobs: &[Job], shared: &SharedFactors, task: &Task) -> f64 {
        match *task {
            Task::Job(i) => cost(&jobs[i]),
            Task::Factor(f) => {
                let m = shared.factors[f].0;
                let (p, q) = (m.rows().max(m.cols()) as f64, m.rows().min(m.cols()) as f64);
                2.0 * p * q * q
            }
        }
    }

    /// A task of the first pass: a dense job's values (and the triangular factor of its
    /// matrix when a product shares it), or a shared factor's triangular factor alone.
    fn first_pass(
        &self,
        jobs: &[Job],
        shared: &SharedFactors,
        task: &Task,
        precision: Precision,
        par: Par,
    ) -> FirstPass {
        match *task {
            Task::Factor(f) => {
                let (m, transposed) = shared.factors[f];
                let gram = (precision == Precision::F32)
                    .then(|| gram_factor(m, transposed, par))
                    .flatten()
                    .and_then(|(_, factor)| factor);
                Ok((None, Some(Factor::gram_or_qr(gram, m, transposed, par))))
            }
            Task::Job(i) => {
                if let Some(f) = shared.factor_of_dense(i)
                    && let Job::Dense(m) = jobs[i]
                {
                    let transposed = shared.factors[f].1;
                    // f32: the Gram path on the factor itself, which also gives the Cholesky
                    // factor its circuits use; the thin QR only where its bound fails.
                    if precision == Precision::F32
                        && let Some((values, factor)) = gram_factor(m, transposed, par)
                        && values.meets(precision.tolerance())
                    {
                        let factor = Factor::gram_or_qr(factor, m, transposed, par);
                        return Ok((Some((values.values, Method::Gram)), Some(factor)));
                    }
                    let r = thin_r(m, transposed, par);
                    if precision == Precision::F32
                        && let Some(values) = triangular_gram(m, r.as_ref(), precision, par)
                    {
                        return Ok((Some((values, Method::QrGram)), Some(Factor::Qr(r))));
                    }
                    let values = singular_values(r.as_ref(), par).ok_or_else(|| {
                        self.no_convergence(i, &jobs[i], precision, "SVD of the triangular factor")
                    })?;
                    return Ok((Some((values, Method::QrF64)), Some(Factor::Qr(r))));
                }
                self.one(i, &jobs[i], precision, par)
                    .map(|v| (Some(v), None))
            }
        }
    }

    /// A product job: from its two shared factors when there are (`cores`), else on its own.
    /// Two triangular factors give the core R_l R_rᵀ; two Gram factors give the core L_lᵀ L_r,
    /// kept when its bound meets the contract ([`gram_product`]); any other case (a bound
    /// not met, one factor of each kind) is computed on its own.
    fn product(
        &self,
        index: usize,
        job: &Job,
        cores: Option<(&Factor, &Factor)>,
        precision: Precision,
        par: Par,
    ) -> JobResult {
        if let Some((Factor::Gram(l), Factor::Gram(r))) = cores
            && let Some(g) = gram_product(l, r, par)
            && g.meets(precision.tolerance())
        {
            return Ok((g.values, Method::GramProduct));
        }
        match cores {
            Some((Factor::Qr(rl), Factor::Qr(rr))) => core_values(rl.as_ref(), rr.as_ref(), par)
                .map(|v| (v, Method::ProductF64))
                .ok_or_else(|| self.no_convergence(index, job, precision, "SVD of the core")),
            _ => self.one(index, job, precision, par),
        }
    }

    fn no_convergence(
        &self,
        index: usize,
        job: &Job,
        precision: Precision,
        what: &'static str,
    ) -> SpectralError {
        let (rows, cols) = job.shape();
        SpectralError::NoConvergence {
            job: index,
            backend: "faer".into(),
            what,
            rows,
            cols,
            precision,
        }
    }

    fn one(
        &self,
        index: usize,
        job: &Job,
        precision: Precision,
        par: Par,
    ) -> Result<(Vec<f64>, Method), SpectralError> {
        let fail = |what: &'static str| self.no_convergence(index, job, precision, what);
        // Only the benchmark algorithms compute in f32, and only in a build with the
        // `f32-arithmetic` feature; everything else runs in f64.
        #[cfg(feature = "f32-arithmetic")]
        if precision == Precision::F32
            && matches!(self.dense, DenseAlgorithm::Svd | DenseAlgorithm::Gram)
        {
            return f32_benchmark_job(job, self.dense, par, index, fail);
        }
        let m = match *job {
            Job::Product { left, right } => {
                return product_values::<f64>(left, right, par)
                    .map(|v| (v, Method::ProductF64))
                    .ok_or_else(|| fail("SVD of the core"));
            }
            Job::Dense(m) => m,
        };
        let try_gram = match self.dense {
            DenseAlgorithm::Auto => precision == Precision::F32,
            DenseAlgorithm::GramChecked => true,
            DenseAlgorithm::Svd => false,
            DenseAlgorithm::Gram => {
                let values = gram_eigenvalues(m, par)
                    .map(|l| l.into_iter().map(|x| x.max(0.0).sqrt()).collect());
                return values
                    .map(|v| (v, Method::Unchecked))
                    .ok_or_else(|| fail("Gram eigenvalues"));
            }
        };
        if try_gram
            && let Some(g) = gram_checked(m, par, |g| g.meets(precision.tolerance()))
            && g.meets(precision.tolerance())
        {
            return Ok((g.values, Method::Gram));
        }
        dense_values_f64(m, par)
            .map(|v| (v, Method::SvdF64))
            .ok_or_else(|| fail("SVD"))
    }
}

/// A benchmark algorithm's job in f32 arithmetic ([`DenseAlgorithm::Svd`] or
/// [`DenseAlgorithm::Gram`] at [`Precision::F32`]): faer's f32 SVD, f32 Gram eigensolver or
/// f32 factored product, unchecked. Behind the `f32-arithmetic` feature: these f32
/// instantiations of faer's solvers took two thirds of the core crate's compile time.
#[cfg(feature = "f32-arithmetic")]
fn f32_benchmark_job(
    job: &Job,
    dense: DenseAlgorithm,
    par: Par,
    index: usize,
    fail: impl Fn(&'static str) -> SpectralError,
) -> JobResult {
    let (rows, cols) = job.shape();
    let too_big = |m: &Matrix| m.max_abs() > f32::MAX as f64;
    let out_of_range = match job {
        Job::Dense(m) => too_big(m),
        Job::Product { left, right } => too_big(left) || too_big(right),
    };
    if out_of_range {
        return Err(SpectralError::OutOfRange {
            job: index,
            rows,
            cols,
            precision: Precision::F32,
        });
    }
    let (values, what) = match (*job, dense) {
        (Job::Product { left, right }, _) => {
            (product_values::<f32>(left, right, par), "SVD of the core")
        }
        (Job::Dense(m), DenseAlgorithm::Svd) => (dense_values_f32(m, par), "SVD"),
        (Job::Dense(m), _) => (gram_values_f32(m, par), "Gram eigenvalues"),
    };
    values
        .map(|v| (v, Method::Unchecked))
        .ok_or_else(|| fail(what))
}

/// One job's spectrum and the algorithm that produced it, or its error.
type JobResult = Result<(Vec<f64>, Method), SpectralError>;

/// A first-pass result: the job's values (none for a factor alone) and the factor it reduced
/// (none for a dense job no product shares).
type FirstPass = Result<(Option<(Vec<f64>, Method)>, Option<Factor>), SpectralError>;

/// A shared factor of thin products, reduced once per batch.
enum Factor {
    /// The k x k triangular factor of its thin Householder QR.
    Qr(Mat<f64>),
    /// The Cholesky factor of its k x k Gram matrix, with the bounds [`gram_product`] needs
    /// (f32 contract only).
    Gram(GramFactor),
}

impl Factor {
    /// The Gram factor when there is one, else the thin QR's triangular factor of `m` (as
    /// products use it: transposed for a right factor).
    fn gram_or_qr(gram: Option<GramFactor>, m: &Matrix, transposed: bool, par: Par) -> Factor {
        match gram {
            Some(g) => Factor::Gram(g),
            None => Factor::Qr(thin_r(m, transposed, par)),
        }
    }
}

/// A unit of work of [`FaerBackend::spectra_with_methods`]: a job by index, or the thin QR of
/// a shared factor by index into [`SharedFactors::factors`].
#[derive(Clone, Copy, Debug)]
enum Task {
    Job(usize),
    Factor(usize),
}

/// The distinct factors of a batch's thin products, by address, and which jobs name them.
#[derive(Default)]
struct SharedFactors<'a> {
    /// Each factor: its matrix, and whether products use its transpose (a right factor
    /// `right`, k x n, enters as `rightᵀ`). A square matrix used on both sides is two factors.
    factors: Vec<(&'a Matrix, bool)>,
    /// For each factor, the first dense job whose matrix it is.
    dense_of: Vec<Option<usize>>,
    /// For each job, its (left, right) factor indices when it is a thin product.
    products: Vec<Option<(usize, usize)>>,
    /// For each job, its factor index when it is a dense job whose matrix is a factor.
    dense: Vec<Option<usize>>,
}

impl<'a> SharedFactors<'a> {
    /// Thin products (k <= both outer dimensions, k > 0): for them σ(LR) = σ(R_L R_Rᵀ) with
    /// R_L, R_R the k x k triangular factors of the thin QRs of L and Rᵀ.
    fn of(jobs: &[Job<'a>]) -> SharedFactors<'a> {
        let mut shared = SharedFactors {
            products: vec![None; jobs.len()],
            dense: vec![None; jobs.len()],
            ..SharedFactors::default()
        };
        let mut index = std::collections::HashMap::<(*const Matrix, bool), usize>::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Job::Product { left, right } = *job {
                let k = left.cols();
                if k == 0 || left.rows() < k || right.cols() < k {
                    continue;
                }
                let mut id = |m: &'a Matrix, transposed: bool| {
                    *index
                        .entry((std::ptr::from_ref(m), transposed))
                        .or_insert_with(|| {
                            shared.factors.push((m, transposed));
                            shared.factors.len() - 1
                        })
                };
                shared.products[i] = Some((id(left, false), id(right, true)));
            }
        }
        shared.dense_of = vec![None; shared.factors.len()];
        for (i, job) in jobs.iter().enumerate() {
            let Job::Dense(m) = *job else { continue };
            let key = |transposed| (std::ptr::from_ref(m), transposed);
            if let Some(&f) = index.get(&key(false)).or_else(|| index.get(&key(true)))
                && shared.dense_of[f].is_none()
            {
                shared.dense_of[f] = Some(i);
                shared.dense[i] = Some(f);
            }
        }
        shared
    }

    fn factor_of_dense(&self, job: usize) -> Option<usize> {
        self.dense.get(job).copied().flatten()
    }

    fn product_factors(&self, job: usize) -> Option<(usize, usize)> {
        self.products.get(job).copied().flatten()
    }
}

/// The singular values of `m` from the checked Gram path applied to its q x q triangular
/// factor `r` (q x q Gram matrix, inner dimension q instead of p), when the bound, widened by
/// the QR's backward error, meets `precision`'s contract; `None` otherwise.
///
/// Householder QR is columnwise backward stable: `r` is the exact factor of m + Δm with
/// ‖Δm‖_F <= γ̃_{pq} ‖m‖_F (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
/// ed., Thm. 19.4), so by Weyl the singular values of `r` are within that of m's. We take
/// γ̃_{pq} = 4·p·q·u and ‖m‖_F = ‖r‖_F (1 + p·q·u) for the norm's own rounding.
fn triangular_gram(
    m: &Matrix,
    r: MatRef<'_, f64>,
    precision: Precision,
    par: Par,
) -> Option<Vec<f64>> {
    let (p, q) = (m.rows().max(m.cols()), m.rows().min(m.cols()));
    let rm = Matrix::from_fn(r.nrows(), r.ncols(), |i, j| r[(i, j)]);
    let pq_u = (p * q) as f64 * UNIT_ROUNDOFF;
    let qr_error = 4.0 * pq_u * r.norm_l2() * (1.0 + pq_u);
    let tol = precision.tolerance();
    let meets = |g: &GramSpectrum| g.meets_widened(tol, qr_error);
    let g = gram_checked(&rm, par, meets)?;
    meets(&g).then_some(g.values)
}

/// The Gram path of a shared factor of thin products (p x q as products use it, `mᵀ` when
/// `transposed`; q <= p): the eigenvalues of its q x q Gram matrix Ĝ in f64 under [`gram_spectrum`]'s bound (its own
/// singular values), and the lower Cholesky factor of Ĝ with the bounds that
/// [`gram_product`] needs, `None` when the factorisation breaks down (Ĝ not numerically
/// positive definite). `None` altogether for a zero matrix, entries beyond the Gram range, or
/// an eigensolver failure.
fn gram_factor(
    m: &Matrix,
    transposed: bool,
    par: Par,
) -> Option<(GramSpectrum, Option<GramFactor>)> {
    let (rows, cols) = m.shape();
    let (p, q) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let max_abs = m.max_abs();
    if q == 0 || p < q || max_abs == 0.0 || !gram_range_ok(max_abs) {
        return None;
    }
    let g = gram_lower_of(m, transposed, par);
    let mut l = g.clone();
    let mut lambda = symmetric::eigenvalues(g, par)?;
    lambda.reverse();
    // Every iterate: the circuits' bound uses it too.
    let rho = abs_gram_spectral_radius_bound(m, |_| false);
    let spectrum = gram_bound(&lambda, rho, p, q)?;
    let factor = symmetric::cholesky_lower(&mut l).and_then(|()| {
        let u = UNIT_ROUNDOFF;
        let gamma = |n: usize| {
            let nu = n as f64 * u;
            (nu < 1.0).then(|| nu / (1.0 - nu))
        };
        // ‖Ĝ − AᵀA‖₂ <= γ_p ρ(|A|ᵀ|A|) (step 1 of `gram_spectrum`).
        let gram_error = gamma(p)? * rho * (1.0 + 2.0 * (p + q + 2) as f64 * u);
        // Σ l_ij² over the lower triangle, rounded up for its own q(q+1)/2 additions.
        let mut fro2 = 0.0;
        for j in 0..q {
            fro2 += l.data[j + j * l.ld..q + j * l.ld]
                .iter()
                .map(|x| x * x)
                .sum::<f64>();
        }
        let fro2 = fro2 * (1.0 + gamma(q * q + 1)?);
        // Cholesky (Higham, Thm. 10.3): L̂L̂ᵀ = Ĝ + ΔG, |ΔG| <= γ_{q+1} |L̂||L̂ᵀ|, so
        // ‖ΔG‖₂ <= γ_{q+1} ‖ |L̂| ‖₂² <= γ_{q+1} ‖L̂‖_F².
        let chol_error = gamma(q + 1)? * fro2;
        let eta = EVD_BACKWARD_C * q as f64 * f64::EPSILON;
        if eta >= 1.0 {
            return None;
        }
        let g_norm = lambda.iter().fold(0.0f64, |a, x| a.max(x.abs())) / (1.0 - eta);
        let factor = GramFactor {
            l: Mat::from_fn(q, q, |i, j| if i >= j { l.data[i + j * l.ld] } else { 0.0 }),
            delta: gram_error + chol_error,
            gram_norm: g_norm + gram_error,
            l_norm2: g_norm + chol_error,
            l_fro: fro2.sqrt(),
        };
        [factor.delta, factor.gram_norm, factor.l_norm2, factor.l_fro]
            .iter()
            .all(|x| x.is_finite())
            .then_some(factor)
    });
    Some((spectrum, factor))
}

/// The lower Cholesky factor L̂ of the computed Gram matrix Ĝ of a factor A of thin products
/// (A p x k in its tall orientation), for the f32 contract's circuits: L̂L̂ᵀ = AᵀA + E with
/// ‖E‖₂ <= `delta`.
///
/// # The bound of a product ([`gram_product`])
///
/// For a thin product C = A_l A_rᵀ (the job `left · right` with A_l = left, A_r = rightᵀ),
/// let G = AᵀA and L̂L̂ᵀ = G + E for each factor, ‖E‖₂ <= δ. The core K = L̂_lᵀ L̂_r has
/// σ_i(K)² = λ_i(L̂_lᵀ (G_r + E_r) L̂_l). By Weyl, that is within ‖L̂_l‖₂² δ_r of
/// λ_i(L̂_lᵀ G_r L̂_l) = λ_i(G_r^½ (G_l + E_l) G_r^½), which is within ‖G_r‖₂ δ_l of
/// λ_i(G_r^½ G_l G_r^½) = σ_i(C)². So |σ_i(K)² − σ_i(C)²| <= E₁ = ‖L̂_l‖₂² δ_r + ‖G_r‖₂ δ_l,
/// and |σ_i(K) − σ_i(C)| <= E₁ / (σ_i(K) + σ_i(C)), at most sqrt(E₁) (as step 4 of
/// [`gram_spectrum`]). The computed core is within γ_k ‖L̂_l‖_F ‖L̂_r‖_F of K (Frobenius), and
/// its SVD in f64 is taken to be exact for a perturbation of at most c·k·ε·‖K̂‖₂ (the same
/// assumption, c = [`EVD_BACKWARD_C`], as the eigensolver's); together, F. Each computed σ̃_i
/// is then within F + E₁ / (s + sqrt(max(s² − E₁, 0))) of σ_i(C), s = max(σ̃_i − F, 0).
///
/// E is the Gram matrix's rounding (γ_p ρ(|A|ᵀ|A|), step 1 of [`gram_spectrum`]) plus the
/// Cholesky factorisation's backward error (Higham, *Accuracy and Stability of Numerical
/// Algorithms*, 2nd ed., Thm. 10.3: |ΔG| <= γ_{k+1} |L̂||L̂ᵀ|, which holds for any symmetric
/// matrix on which the factorisation runs to completion): both about p·u·‖A‖², so the error
/// of σ_i(C) is about p·u·‖A_l‖²‖A_r‖² / σ_i(C). The f32 contract holds unless the circuit
/// is nearly rank-deficient; the f64 one, never (it is not tried).
struct GramFactor {
    /// L̂ (k x k, lower triangular).
    l: Mat<f64>,
    /// A bound on ‖L̂L̂ᵀ − AᵀA‖₂.
    delta: f64,
    /// A bound on ‖AᵀA‖₂.
    gram_norm: f64,
    /// A bound on ‖L̂‖₂² = ‖L̂L̂ᵀ‖₂.
    l_norm2: f64,
    /// A bound on ‖L̂‖_F.
    l_fro: f64,
}

/// The singular values of the thin product `left · right` from the Gram factors of `left`
/// (`l`) and `rightᵀ` (`r`), with the bound of [`GramFactor`]; `None` when the core's SVD
/// does not converge or the bound is not finite.
fn gram_product(l: &GramFactor, r: &GramFactor, par: Par) -> Option<GramSpectrum> {
    let k = l.l.nrows();
    let mut core = Mat::<f64>::zeros(k, k);
    faer::linalg::matmul::matmul(
        core.as_mut(),
        Accum::Replace,
        l.l.transpose(),
        r.l.as_ref(),
        1.0,
        par,
    );
    let values = singular_values(core.as_ref(), par)?;
    let first = values.first().copied().unwrap_or(0.0);
    let ku = k as f64 * UNIT_ROUNDOFF;
    let eta = EVD_BACKWARD_C * k as f64 * f64::EPSILON;
    if ku >= 1.0 || eta >= 1.0 {
        return None;
    }
    let f = ku / (1.0 - ku) * l.l_fro * r.l_fro + eta * first / (1.0 - eta);
    let e1 = l.l_norm2 * r.delta + r.gram_norm * l.delta;
    if !(f.is_finite() && e1.is_finite()) {
        return None;
    }
    let root = e1.sqrt();
    let error_bound = values
        .iter()
        .map(|v| {
            let s = (v - f).max(0.0);
            let denom = s + (s * s - e1).max(0.0).sqrt();
            f + if denom > 0.0 {
                (e1 / denom).min(root)
            } else {
                root
            }
        })
        .fold(0.0f64, f64::max);
    Some(GramSpectrum {
        values,
        error_bound,
    })
}

/// The triangular factor of the thin QR of a shared factor as products use it: `m` itself
/// (a left factor, m x k), or `mᵀ` when `transposed` (a right factor, k x n, enters as its
/// n x k transpose). Its singular values are `m`'s.
fn thin_r(m: &Matrix, transposed: bool, par: Par) -> Mat<f64> {
    let a = view(m);
    let tall = if !transposed {
        a.to_owned()
    } else {
        // Row-major `m` is column-major `m^T`: a contiguous copy.
        a.transpose().to_owned()
    };
    r_factor(tall, par)
}

/// A rough flop count of a job, to start the largest first.
fn cost(job: &Job) -> f64 {
    match job {
        Job::Dense(m) => {
            let (p, q) = (m.rows().max(m.cols()) as f64, m.rows().min(m.cols()) as f64);
            p * q * q
        }
        Job::Product { left, right } => {
            let k = left.cols() as f64;
            (left.rows() + right.cols()) as f64 * k * k
        }
    }
}

impl SvdBackend for FaerBackend {
    fn name(&self) -> &str {
        "faer"
    }

    /// Two when jobs run in parallel ([`JobParallelism::Auto`], more than one thread): a
    /// batch's last jobs leave threads idle that the next batch's first jobs can take. A
    /// batch's tasks are dealt one at a time, so two batches interleave on the pool.
    fn batches_in_flight(&self) -> usize {
        if self.threads > 1 && self.parallelism == JobParallelism::Auto {
            2
        } else {
            1
        }
    }

    fn spectra(&self, jobs: &[Job], precision: Precision) -> Result<Vec<Vec<f64>>, SpectralError> {
        Ok(self
            .spectra_with_methods(jobs, precision)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }
}

/// f32 and f64 as faer scalars convertible to and from `f64`.
trait Real: faer::traits::RealField + Copy + Send + Sync {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// Values-only SVD in this type's arithmetic, descending; `None` when it does not
    /// converge.
    fn svd_values(a: MatRef<'_, Self>, par: Par) -> Option<Vec<f64>>;
}

impl Real for f64 {
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn svd_values(a: MatRef<'_, f64>, par: Par) -> Option<Vec<f64>> {
        bidiagonal::singular_values(bidiagonal::ColMajor::from_ref(a), par)
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn svd_values(a: MatRef<'_, f32>, par: Par) -> Option<Vec<f64>> {
        faer_singular_values(a, par)
    }
}

/// A column-major copy of `m` if it is tall, of `m^T` if it is wide: always `p x q`, p >= q,
/// with the same singular values as `m`.
#[cfg(feature = "f32-arithmetic")]
fn tall_copy<T: Real>(m: &Matrix) -> Mat<T> {
    let (rows, cols) = m.shape();
    let data = m.data();
    if rows >= cols {
        Mat::from_fn(rows, cols, |i, j| T::from_f64(data[i * cols + j]))
    } else {
        // Row-major `m` is column-major `m^T`: copy it column by column.
        let mut out = Mat::<T>::zeros(cols, rows);
        for r in 0..rows {
            let dst = out.col_as_slice_mut(r);
            for (d, s) in dst.iter_mut().zip(&data[r * cols..(r + 1) * cols]) {
                *d = T::from_f64(*s);
            }
        }
        out
    }
}

/// Singular values (descending, as f64) of a column-major matrix in `T`'s arithmetic: the
/// two-stage reduction of [`bidiagonal`] in f64, faer's SVD in f32; `None` when the SVD does
/// not converge.
fn singular_values<T: Real>(a: MatRef<'_, T>, par: Par) -> Option<Vec<f64>> {
    T::svd_values(a, par)
}

/// faer's values-only SVD, descending, as f64.
fn faer_singular_values<T: Real>(a: MatRef<'_, T>, par: Par) -> Option<Vec<f64>> {
    let (m, n) = a.shape();
    let k = m.min(n);
    if k == 0 {
        return Some(Vec::new());
    }
    let mut s = Diag::<T>::zeros(k);
    let mut mem = MemBuffer::new(svd::svd_scratch::<T>(
        m,
        n,
        ComputeSvdVectors::No,
        ComputeSvdVectors::No,
        par,
        Default::default(),
    ));
    svd::svd(
        a,
        s.as_mut(),
        None,
        None,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    let mut out: Vec<f64> = s.column_vector().iter().map(|x| x.to_f64().abs()).collect();
    // faer returns them sorted; sort anyway so that the contract never depends on it.
    out.sort_by(|a, b| b.total_cmp(a));
    out.iter().all(|x| x.is_finite()).then_some(out)
}

/// The row-major `m` as a faer view, no copy.
fn view(m: &Matrix) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(m.data(), m.rows(), m.cols())
}

/// f64 values-only SVD of `m`: row-major `m` is column-major `mᵀ`, which has the same
/// singular values and is copied column by column (the reduction works in place).
fn dense_values_f64(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    bidiagonal::singular_values(bidiagonal::ColMajor::from_row_major_transposed(m), par)
}

#[cfg(feature = "f32-arithmetic")]
fn dense_values_f32(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    if m.rows().min(m.cols()) == 0 {
        return Some(Vec::new());
    }
    let a = tall_copy::<f32>(m);
    singular_values(a.as_ref(), par)
}

/// Eigenvalues (descending, unclamped) of the smaller Gram matrix of `m`, in f64, formed from
/// `m` (lower triangle only) and solved by the two-stage tridiagonalisation of
/// [`super::symmetric`].
fn gram_eigenvalues(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    let q = m.rows().min(m.cols());
    if q == 0 {
        return Some(Vec::new());
    }
    let mut out = symmetric::eigenvalues(gram_lower(m, par), par)?;
    out.reverse();
    Some(out)
}

/// The lower triangle of the smaller Gram matrix of `m` (q x q, q = min(rows, cols) > 0), in
/// f64 (its strict upper triangle is zero).
fn gram_lower(m: &Matrix, par: Par) -> bidiagonal::ColMajor {
    gram_lower_of(m, m.rows() <= m.cols(), par)
}

/// The lower triangle of `m mᵀ` (`wwt`) or `mᵀ m`, in f64 (its strict upper triangle is zero).
fn gram_lower_of(m: &Matrix, wwt: bool, par: Par) -> bidiagonal::ColMajor {
    let q = if wwt { m.rows() } else { m.cols() };
    // The product kernel is twice as fast when its left operand is row-major and its right
    // one column-major (1024², one thread: 0.025 s against 0.050 s): W Wᵀ of the row-major
    // view has that layout, and is the smaller Gram matrix of a square or wide W (a square
    // W's two Gram matrices have the same eigenvalues). A tall W needs WᵀW: from a
    // column-major copy (p·q copied, against p·q² flops), Wᵀ is row-major.
    let a = view(m);
    let column_major;
    let (lhs, rhs) = if !wwt {
        column_major = a.to_owned();
        (column_major.transpose(), column_major.as_ref())
    } else {
        (a, a.transpose())
    };
    let mut g = bidiagonal::ColMajor::zeros(q, q);
    tri::matmul(
        g.view_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        lhs,
        BlockStructure::Rectangular,
        rhs,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    g
}

/// Eigenvalues, descending, of the symmetric matrix whose lower triangle is `g`.
#[cfg(feature = "f32-arithmetic")]
fn symmetric_eigenvalues<T: Real>(g: MatRef<'_, T>, par: Par) -> Option<Vec<f64>> {
    let q = g.nrows();
    let mut s = Diag::<T>::zeros(q);
    let mut mem = MemBuffer::new(evd::self_adjoint_evd_scratch::<T>(
        q,
        ComputeEigenvectors::No,
        par,
        Default::default(),
    ));
    evd::self_adjoint_evd(
        g,
        s.as_mut(),
        None,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    let mut out: Vec<f64> = s.column_vector().iter().map(|x| x.to_f64()).collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out.iter().all(|x| x.is_finite()).then_some(out)
}

/// Square roots of the eigenvalues of the smaller Gram matrix formed and solved in f32
/// (the unchecked benchmark path), descending.
#[cfg(feature = "f32-arithmetic")]
fn gram_values_f32(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    let q = m.rows().min(m.cols());
    if q == 0 {
        return Some(Vec::new());
    }
    let a = tall_copy::<f32>(m);
    let mut g = Mat::<f32>::zeros(q, q);
    tri::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        a.as_ref(),
        BlockStructure::Rectangular,
        1.0f32,
        par,
    );
    symmetric_eigenvalues(g.as_ref(), par)
        .map(|l| l.into_iter().map(|x| x.max(0.0).sqrt()).collect())
}

/// The upper-trapezoidal R factor (`min(p, q) x q`) of the thin QR of a `p x q` matrix.
fn r_factor<T: Real>(mut a: Mat<T>, par: Par) -> Mat<T> {
    let (p, q) = a.shape();
    let k = p.min(q);
    let bs = qr::recommended_block_size::<T>(p, q);
    let mut coeff = Mat::<T>::zeros(bs, k);
    let mut mem = MemBuffer::new(qr::qr_in_place_scratch::<T>(
        p,
        q,
        bs,
        par,
        Default::default(),
    ));
    qr::qr_in_place(
        a.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    Mat::from_fn(
        k,
        q,
        |i, j| if i <= j { a[(i, j)] } else { T::from_f64(0.0) },
    )
}

/// Singular values of `left · right` from R_l R_r^T, with `left = Q_l R_l` and
/// `right^T = Q_r R_r` (thin QRs).
fn product_values<T: Real>(left: &Matrix, right: &Matrix, par: Par) -> Option<Vec<f64>> {
    let (m, k) = left.shape();
    let n = right.cols();
    if m.min(n).min(k) == 0 {
        return Some(Vec::new());
    }
    let ld = left.data();
    let l = Mat::from_fn(m, k, |i, j| T::from_f64(ld[i * k + j]));
    // Row-major `right` (k x n) is column-major `right^T` (n x k).
    let rd = right.data();
    let mut rt = Mat::<T>::zeros(n, k);
    for c in 0..k {
        for (d, s) in rt
            .col_as_slice_mut(c)
            .iter_mut()
            .zip(&rd[c * n..(c + 1) * n])
        {
            *d = T::from_f64(*s);
        }
    }
    core_values(r_factor(l, par).as_ref(), r_factor(rt, par).as_ref(), par)
}

/// The singular values of a factored product L R from the triangular factors of L = Q_L R_L
/// and Rᵀ = Q_R R_R: those of the small core R_L R_Rᵀ. `None` when its SVD does not converge.
fn core_values<T: Real>(rl: MatRef<'_, T>, rr: MatRef<'_, T>, par: Par) -> Option<Vec<f64>> {
    let mut core = Mat::<T>::zeros(rl.nrows(), rr.nrows());
    faer::linalg::matmul::matmul(
        core.as_mut(),
        Accum::Replace,
        rl,
        rr.transpose(),
        T::from_f64(1.0),
        par,
    );
    singular_values(core.as_ref(), par)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_matrix(rows: usize, cols: usize, s: &[f64]) -> Matrix {
        Matrix::from_fn(rows, cols, |r, c| if r == c { s[r] } else { 0.0 })
    }

    #[test]
    fn diagonal_spectra_in_every_mode() {
        let tall = diag_matrix(5, 3, &[1.0, 3.0, 2.0]);
        let wide = tall.transpose();
        for alg in [
            DenseAlgorithm::Auto,
            DenseAlgorithm::Svd,
            DenseAlgorithm::Gram,
            DenseAlgorithm::GramChecked,
        ] {
            for threads in [1, 3] {
                let b = FaerBackend::new(threads).unwrap().with_dense_algorithm(alg);
                for p in [Precision::F64, Precision::F32] {
                    let out = b
                        .spectra(&[Job::Dense(&tall), Job::Dense(&wide)], p)
                        .unwrap();
                    for sv in out {
                        assert_eq!(sv.len(), 3);
                        for (a, e) in sv.iter().zip([3.0, 2.0, 1.0]) {
                            assert!((a - e).abs() < 1e-6, "{alg:?} {p}: {sv:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn product_of_rank_one_factors() {
        // left = u a^T, right = b v^T with unit u, v: the product is (a.b) u v^T.
        let left = Matrix::from_vec(3, 2, vec![0.6, 0.0, 0.8, 0.0, 0.0, 0.0]).unwrap();
        let right = Matrix::from_vec(2, 4, vec![2.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0]).unwrap();
        let b = FaerBackend::new(1).unwrap();
        let out = b
            .spectra(
                &[Job::Product {
                    left: &left,
                    right: &right,
                }],
                Precision::F64,
            )
            .unwrap();
        assert_eq!(out[0].len(), 2);
        assert!((out[0][0] - 2.0).abs() < 1e-14, "{:?}", out[0]);
        assert!(out[0][1].abs() < 1e-14);
    }

    /// A pseudo-random matrix with entries in [-1, 1).
    fn noise(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut r = super::super::test_stream(seed);
        Matrix::from_fn(rows, cols, |_, _| r())
    }

    #[test]
    fn shared_factors_give_the_values_of_each_job_alone() {
        // An attention-like batch: per-head matrices that circuits share by address, one right
        // factor shared by two circuits (grouped-query attention), a rank-deficient factor, a
        // factor beyond the Gram path's range, a product that is not thin (k above an outer
        // dimension) and a whole-layer matrix.
        let q_t = noise(48, 8, 1);
        let k = noise(8, 48, 2);
        let v = noise(8, 48, 3);
        let o1 = noise(48, 8, 4);
        let o2 = noise(48, 8, 5);
        let deficient = noise(48, 3, 6).matmul(&noise(3, 8, 7));
        let whole = noise(48, 48, 8);
        let wide_left = noise(4, 8, 9);
        let huge = noise(48, 8, 10);
        let huge =
            Matrix::from_vec(48, 8, huge.data().iter().map(|x| x * 1e150).collect()).unwrap();
        let jobs = [
            Job::Dense(&whole),
            Job::Dense(&q_t),
            Job::Dense(&k),
            Job::Dense(&v),
            Job::Dense(&o1),
            Job::Dense(&deficient),
            Job::Dense(&huge),
            Job::Product {
                left: &q_t,
                right: &k,
            },
            Job::Product {
                left: &o1,
                right: &v,
            },
            Job::Product {
                left: &o2,
                right: &v,
            },
            Job::Product {
                left: &deficient,
                right: &v,
            },
            Job::Product {
                left: &wide_left,
                right: &v,
            },
            Job::Product {
                left: &huge,
                right: &k,
            },
        ];
        for threads in [1, 2] {
            let b = FaerBackend::new(threads).unwrap();
            for precision in [Precision::F64, Precision::F32] {
                let batch = b.spectra_with_methods(&jobs, precision).unwrap();
                let methods: Vec<Method> = batch.iter().map(|(_, m)| *m).collect();
                // f64: the thin QR of every factor. f32: the Gram path on every factor, and
                // circuits from their Gram factors where both have one and the bound holds.
                let (dense, whole_method, circuit) = if precision == Precision::F64 {
                    (Method::QrF64, Method::SvdF64, Method::ProductF64)
                } else {
                    (Method::Gram, Method::Gram, Method::GramProduct)
                };
                assert_eq!(
                    methods,
                    [
                        whole_method,
                        dense,
                        dense,
                        dense,
                        dense,
                        // Rank 3 of 8: the Gram path on the 48 x 8 factor still meets the f32
                        // contract (its bound for an exact zero is sqrt(E), below 1e-6 σ_1).
                        dense,
                        // Beyond the Gram path's range: the SVD of the factor.
                        Method::QrF64,
                        circuit,
                        circuit,
                        // o2 is a factor of circuits only.
                        circuit,
                        // The rank-3 factor's Gram matrix has no Cholesky factor (or a bound
                        // far too wide): thin QRs.
                        Method::ProductF64,
                        // Not thin: on its own.
                        Method::ProductF64,
                        // One factor beyond the Gram range: thin QRs.
                        Method::ProductF64,
                    ],
                    "{precision}, {threads} threads"
                );
                for (i, (values, _)) in batch.iter().enumerate() {
                    // The same job alone: no factor is shared, so it takes its own path.
                    let alone = &b.spectra(&jobs[i..=i], Precision::F64).unwrap()[0];
                    assert_eq!(values.len(), alone.len(), "job {i}");
                    // f64 everywhere but the Gram path in f32, which keeps the f32 contract.
                    let tol = match methods[i] {
                        Method::QrGram | Method::Gram | Method::GramProduct => {
                            precision.tolerance()
                        }
                        _ => 1e-13,
                    } * alone[0];
                    for (a, e) in values.iter().zip(alone) {
                        assert!((a - e).abs() <= tol, "job {i} ({precision}): {a} vs {e}");
                    }
                }
            }
        }
    }

    /// `rows x cols` with singular values `s` (and zeros): U diag(s) Vᵀ, U and V orthonormal
    /// columns from the QR of noise.
    fn with_singular_values(rows: usize, cols: usize, s: &[f64], seed: u64) -> Matrix {
        let k = s.len();
        let q = |n: usize, seed: u64| {
            let a = noise(n, k, seed);
            Mat::from_fn(n, k, |i, j| a.data()[i * k + j])
                .qr()
                .compute_thin_Q()
        };
        let (u, v) = (q(rows, seed), q(cols, seed + 1));
        Matrix::from_fn(rows, cols, |i, j| {
            (0..k).map(|t| u[(i, t)] * s[t] * v[(j, t)]).sum()
        })
    }

    /// Square factors: a circuit uses `left` as it is and `right` transposed, whichever shape
    /// they have, and a square matrix on both sides of circuits is reduced both ways.
    #[test]
    fn square_factors_enter_products_the_right_way_round() {
        let (a, b) = (noise(8, 8, 21), noise(8, 8, 22));
        let jobs = [
            Job::Dense(&a),
            Job::Product {
                left: &a,
                right: &b,
            },
            Job::Product {
                left: &b,
                right: &a,
            },
            Job::Dense(&b),
        ];
        let backend = FaerBackend::new(2).unwrap();
        for precision in [Precision::F64, Precision::F32] {
            let got = backend.spectra(&jobs, precision).unwrap();
            for (i, job) in jobs.iter().enumerate() {
                let want = match *job {
                    Job::Dense(m) => dense_values_f64(m, Par::Seq).unwrap(),
                    Job::Product { left, right } => {
                        dense_values_f64(&left.matmul(right), Par::Seq).unwrap()
                    }
                };
                for (g, w) in got[i].iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-9 * want[0],
                        "job {i} ({precision}): {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The circuit bound from Gram factors is an upper bound on the error, from well- to
    /// ill-conditioned and rank-deficient factors; where it cannot prove the f32 contract the
    /// backend computes the circuit from thin QRs instead.
    #[test]
    fn gram_product_bound_holds_and_the_backend_falls_back_when_it_is_not_met() {
        let graded = |k: usize, kappa: f64| -> Vec<f64> {
            (0..k)
                .map(|i| kappa.powf(-(i as f64) / (k - 1) as f64))
                .collect()
        };
        let mut bounded = 0;
        let backend = FaerBackend::new(1).unwrap();
        for (seed, kappa) in [1.0, 1e2, 1e4, 1e6, 1e8].into_iter().enumerate() {
            let seed = 100 + 10 * seed as u64;
            let left = with_singular_values(1024, 8, &graded(8, kappa), seed);
            let right = with_singular_values(96, 8, &graded(8, kappa.sqrt()), seed + 5).transpose();
            let exact = product_values::<f64>(&left, &right, Par::Seq).unwrap();
            let factors = (
                gram_factor(&left, false, Par::Seq).and_then(|(_, f)| f),
                gram_factor(&right, true, Par::Seq).and_then(|(_, f)| f),
            );
            if let (Some(l), Some(r)) = &factors {
                let g = gram_product(l, r, Par::Seq).unwrap();
                let worst = g
                    .values
                    .iter()
                    .zip(&exact)
                    .map(|(a, e)| (a - e).abs())
                    .fold(0.0f64, f64::max);
                // The reference's own error is about 1e-15·σ_1.
                assert!(
                    worst <= g.error_bound + 1e-13 * exact[0],
                    "kappa {kappa:e}: error {worst:e} above the bound {:e}",
                    g.error_bound
                );
                bounded += 1;
            }
            let jobs = [
                Job::Dense(&left),
                Job::Dense(&right),
                Job::Product {
                    left: &left,
                    right: &right,
                },
            ];
            let out = backend.spectra_with_methods(&jobs, Precision::F32).unwrap();
            for (a, e) in out[2].0.iter().zip(&exact) {
                assert!(
                    (a - e).abs() <= 1e-6 * exact[0],
                    "kappa {kappa:e}: {a} vs {e}"
                );
            }
            // Bounds (σ_1 0.1-1): 3.6e-13 at kappa 1, 1.5e-8 at 1e4, 3.6e-7 at 1e6 and 1e8,
            // where 1e-6·σ_1 is 1.3e-7 and 1.2e-7.
            if kappa <= 1e4 {
                assert_eq!(out[2].1, Method::GramProduct, "kappa {kappa:e}");
            } else {
                assert_eq!(out[2].1, Method::ProductF64, "kappa {kappa:e}");
            }
        }
        assert!(bounded >= 3, "only {bounded} cases had both Gram factors");
        // Rank 32 of 64 (a head's shape): exact zeros are beyond what the Gram factors of
        // 1024-long columns can resolve to 1e-6·σ_1.
        let mut s = graded(64, 10.0);
        s[32..].fill(0.0);
        let deficient = with_singular_values(1024, 64, &s, 7);
        let right = with_singular_values(1024, 64, &graded(64, 10.0), 8).transpose();
        let jobs = [Job::Product {
            left: &deficient,
            right: &right,
        }];
        let shared = [Job::Dense(&deficient), Job::Dense(&right), jobs[0]];
        let out = backend
            .spectra_with_methods(&shared, Precision::F32)
            .unwrap();
        assert_eq!(out[2].1, Method::ProductF64);
        let exact = backend.spectra(&jobs, Precision::F64).unwrap();
        for (a, e) in out[2].0.iter().zip(&exact[0]) {
            assert!((a - e).abs() <= 1e-6 * exact[0][0], "{a} vs {e}");
        }
    }

    #[test]
    fn empty_and_bad_jobs() {
        let b = FaerBackend::new(2).unwrap();
        let e = Matrix::zeros(0, 4);
        let out = b.spectra(&[Job::Dense(&e)], Precision::F64).unwrap();
        assert!(out[0].is_empty());
        assert!(b.spectra(&[], Precision::F64).unwrap().is_empty());
    }

    #[cfg(feature = "f32-arithmetic")]
    #[test]
    fn f32_arithmetic_refuses_values_beyond_f32() {
        let big = Matrix::from_vec(1, 2, vec![1e300, 1.0]).unwrap();
        let f32_svd = FaerBackend::new(2)
            .unwrap()
            .with_dense_algorithm(DenseAlgorithm::Svd);
        let err = f32_svd
            .spectra(&[Job::Dense(&big)], Precision::F32)
            .unwrap_err();
        assert!(matches!(err, SpectralError::OutOfRange { job: 0, .. }));
    }

    #[test]
    fn checked_gram_falls_back_to_the_svd_for_rank_deficient_matrices() {
        // 40 x 8 of rank 2: six exact zeros, which the Gram path would only resolve to about
        // sqrt(eps) sigma_1; its bound says so, and the f64 SVD runs instead.
        let a = Matrix::from_fn(40, 2, |r, c| ((r * 7 + c * 3) % 11) as f64 - 5.0);
        let b = Matrix::from_fn(2, 8, |r, c| ((r * 5 + c * 2) % 7) as f64 - 3.0);
        let w = a.matmul(&b);
        let backend = FaerBackend::new(1)
            .unwrap()
            .with_dense_algorithm(DenseAlgorithm::GramChecked);
        let out = backend
            .spectra_with_methods(&[Job::Dense(&w)], Precision::F64)
            .unwrap();
        assert_eq!(out[0].1, Method::SvdF64);
        let sv = &out[0].0;
        assert_eq!(sv.len(), 8);
        for s in &sv[2..] {
            assert!(*s <= 1e-13 * sv[0], "{sv:?}");
        }
        let gram = FaerBackend::new(1)
            .unwrap()
            .with_dense_algorithm(DenseAlgorithm::Gram);
        let g = &gram.spectra(&[Job::Dense(&w)], Precision::F64).unwrap()[0];
        assert!(g[2..].iter().any(|s| *s > 1e-13 * sv[0]), "{g:?}");
    }

    #[test]
    fn gram_bound_follows_the_conditioning() {
        let diag = |n: usize, s: &[f64]| {
            Matrix::from_fn(
                n,
                n,
                |r, c| if r == c { s[r.min(s.len() - 1)] } else { 0.0 },
            )
        };
        // Well conditioned: within the f64 contract.
        let g = gram_spectrum(&diag(2, &[2.0, 1.0])).unwrap();
        assert_eq!(g.values, vec![2.0, 1.0]);
        assert!(g.meets(1e-12), "{g:?}");
        // σ_min = 1e-6 σ_1: E ≈ 6e-14, so the bound near E / (2e-6) ≈ 3e-8 meets f32 only.
        let mut s = vec![1.0; 63];
        s.push(1e-6);
        let g = gram_spectrum(&diag(64, &s)).unwrap();
        assert!(g.meets(1e-6) && !g.meets(1e-12), "{g:?}");
        assert!(g.error_bound > 1e-9 && g.error_bound < 1e-7, "{g:?}");
        // An exact zero: the bound is sqrt(E), never E / 0.
        let g = gram_spectrum(&diag(2, &[1.0, 0.0])).unwrap();
        assert!(g.error_bound.is_finite() && g.error_bound >= 1e-8, "{g:?}");
        assert!(!g.meets(1e-12));
        // The zero matrix is exact; out-of-range entries are refused.
        let g = gram_spectrum(&Matrix::zeros(3, 5)).unwrap();
        assert_eq!((g.values, g.error_bound), (vec![0.0; 3], 0.0));
        assert!(gram_spectrum(&diag(2, &[1e200, 1.0])).is_none());
    }

    #[test]
    fn abs_gram_bound_is_an_upper_bound_and_tight_for_nonnegative_matrices() {
        // For a non-negative matrix |m| = m and ρ(m^T m) = σ_1².
        let m = Matrix::from_fn(7, 5, |r, c| ((r * 3 + c * 5) % 7) as f64 + 0.5);
        let s1 = FaerBackend::new(1)
            .unwrap()
            .spectra(&[Job::Dense(&m)], Precision::F64)
            .unwrap()[0][0];
        let rho = abs_gram_spectral_radius_bound(&m, |_| false);
        assert!(rho >= s1 * s1 * (1.0 - 1e-15), "{rho} < {}", s1 * s1);
        assert!(rho <= s1 * s1 * 1.01, "{rho} vs {}", s1 * s1);
    }

    #[test]
    fn methods_follow_the_contract() {
        // A well-conditioned square matrix: Gram in f32, the f64 SVD in f64 (square).
        let w = Matrix::from_fn(40, 40, |r, c| {
            if r == c {
                2.0
            } else {
                0.01 * ((r * 7 + c * 3) % 5) as f64
            }
        });
        let b = FaerBackend::new(1).unwrap();
        let m32 = b
            .spectra_with_methods(&[Job::Dense(&w)], Precision::F32)
            .unwrap();
        let m64 = b
            .spectra_with_methods(&[Job::Dense(&w)], Precision::F64)
            .unwrap();
        assert_eq!(m32[0].1, Method::Gram);
        assert_eq!(m64[0].1, Method::SvdF64);
        for (a, e) in m32[0].0.iter().zip(&m64[0].0) {
            assert!((a - e).abs() <= 1e-6 * m64[0].0[0], "{a} vs {e}");
        }
        // Out of f32 range: the contract path computes in f64 and is not limited by it.
        let big = Matrix::from_vec(1, 2, vec![1e300, 1.0]).unwrap();
        let out = b
            .spectra_with_methods(&[Job::Dense(&big)], Precision::F32)
            .unwrap();
        assert_eq!(out[0].1, Method::SvdF64);
        assert!((out[0].0[0] / 1e300 - 1.0).abs() < 1e-15);
    }
}
