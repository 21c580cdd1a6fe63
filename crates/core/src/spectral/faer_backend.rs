//! The pure-Rust [`SvdBackend`]: faer's values-only SVD (and, on request, Gram-matrix
//! eigenvalues), parallel across the jobs of a batch on a private rayon pool.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::linalg::matmul::triangular::{self as tri, BlockStructure};
use faer::linalg::qr::no_pivoting::factor as qr;
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use super::{Job, Precision, SpectralError, SvdBackend, validate_jobs};
use crate::matrix::Matrix;

/// How [`FaerBackend`] computes the spectrum of a dense job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DenseAlgorithm {
    /// Values-only SVD (bidiagonalisation + bidiagonal divide and conquer). The default.
    #[default]
    Svd,
    /// Eigenvalues of the smaller Gram matrix (W^T W or W W^T), square-rooted. Absolute
    /// eigenvalue errors are about ε·σ_1², so σ_i carries an error near ε·σ_1²/(2σ_i):
    /// singular values far below σ_1 lose accuracy, and those below sqrt(ε)·σ_1 are noise.
    /// Computed in the job's precision.
    Gram,
    /// [`DenseAlgorithm::Gram`], computed in `f64` whatever the requested precision, with an
    /// accuracy check: the Gram result is kept only when every eigenvalue satisfies
    /// λ_min >= λ_max · (q · ε_64 / tol)², q the Gram size and tol = 1e-11 (the error bound
    /// q·ε·σ_1²/(2σ_min) then stays below tol·σ_1/2); otherwise the job is redone with
    /// [`DenseAlgorithm::Svd`].
    GramChecked,
}

/// The relative tolerance (to σ_1) that [`DenseAlgorithm::GramChecked`] guarantees.
const GRAM_TOL: f64 = 1e-11;

/// The faer backend. Jobs of a batch run in parallel on a private rayon pool of `threads`
/// threads, each job single-threaded; a batch with fewer jobs than threads runs its jobs one
/// after another, each using all threads. No other thread pool is touched, so there is no
/// oversubscription as long as the caller does not run several batches at once.
pub struct FaerBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    dense: DenseAlgorithm,
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
        })
    }

    /// Chooses the algorithm for dense jobs (for benchmarks; the default is the SVD).
    pub fn with_dense_algorithm(mut self, dense: DenseAlgorithm) -> FaerBackend {
        self.dense = dense;
        self
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn dense_algorithm(&self) -> DenseAlgorithm {
        self.dense
    }

    fn one(
        &self,
        index: usize,
        job: &Job,
        precision: Precision,
        par: Par,
    ) -> Result<Vec<f64>, SpectralError> {
        let (rows, cols) = job.shape();
        let fail = |what: &'static str| SpectralError::NoConvergence {
            job: index,
            backend: "faer".into(),
            what,
            rows,
            cols,
            precision,
        };
        if precision == Precision::F32 {
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
                    precision,
                });
            }
        }
        match (*job, precision, self.dense) {
            (Job::Product { left, right }, Precision::F64, _) => {
                product_values::<f64>(left, right, par).ok_or_else(|| fail("SVD of the core"))
            }
            (Job::Product { left, right }, Precision::F32, _) => {
                product_values::<f32>(left, right, par).ok_or_else(|| fail("SVD of the core"))
            }
            (Job::Dense(m), _, DenseAlgorithm::GramChecked) => match gram_values::<f64>(m, par) {
                Some(sv) if gram_is_accurate(&sv, m.rows().min(m.cols())) => Ok(sv),
                _ => match precision {
                    Precision::F64 => dense_values::<f64>(m, par),
                    Precision::F32 => dense_values::<f32>(m, par),
                }
                .ok_or_else(|| fail("SVD")),
            },
            (Job::Dense(m), Precision::F64, DenseAlgorithm::Svd) => {
                dense_values::<f64>(m, par).ok_or_else(|| fail("SVD"))
            }
            (Job::Dense(m), Precision::F32, DenseAlgorithm::Svd) => {
                dense_values::<f32>(m, par).ok_or_else(|| fail("SVD"))
            }
            (Job::Dense(m), Precision::F64, DenseAlgorithm::Gram) => {
                gram_values::<f64>(m, par).ok_or_else(|| fail("Gram eigenvalues"))
            }
            (Job::Dense(m), Precision::F32, DenseAlgorithm::Gram) => {
                gram_values::<f32>(m, par).ok_or_else(|| fail("Gram eigenvalues"))
            }
        }
    }
}

impl SvdBackend for FaerBackend {
    fn name(&self) -> &str {
        "faer"
    }

    fn spectra(&self, jobs: &[Job], precision: Precision) -> Result<Vec<Vec<f64>>, SpectralError> {
        validate_jobs(jobs)?;
        self.pool.install(|| {
            if jobs.len() >= self.threads {
                jobs.par_iter()
                    .enumerate()
                    .map(|(i, job)| self.one(i, job, precision, Par::Seq))
                    .collect()
            } else {
                let par = if self.threads > 1 {
                    Par::rayon(self.threads)
                } else {
                    Par::Seq
                };
                jobs.iter()
                    .enumerate()
                    .map(|(i, job)| self.one(i, job, precision, par))
                    .collect()
            }
        })
    }
}

/// f32 and f64 as faer scalars convertible to and from `f64`.
trait Real: faer::traits::RealField + Copy + Send + Sync {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f64 {
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// A column-major copy of `m` if it is tall, of `m^T` if it is wide: always `p x q`, p >= q,
/// with the same singular values as `m`.
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

/// Singular values (descending, as f64) of a column-major matrix; `None` when the SVD does
/// not converge.
fn singular_values<T: Real>(a: MatRef<'_, T>, par: Par) -> Option<Vec<f64>> {
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

fn dense_values<T: Real>(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    if m.rows().min(m.cols()) == 0 {
        return Some(Vec::new());
    }
    let a = tall_copy::<T>(m);
    singular_values(a.as_ref(), par)
}

/// Square roots of the eigenvalues of the smaller Gram matrix, descending.
fn gram_values<T: Real>(m: &Matrix, par: Par) -> Option<Vec<f64>> {
    let q = m.rows().min(m.cols());
    if q == 0 {
        return Some(Vec::new());
    }
    let a = tall_copy::<T>(m);
    let mut g = Mat::<T>::zeros(q, q);
    tri::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        a.as_ref(),
        BlockStructure::Rectangular,
        T::from_f64(1.0),
        par,
    );
    let mut s = Diag::<T>::zeros(q);
    let mut mem = MemBuffer::new(evd::self_adjoint_evd_scratch::<T>(
        q,
        ComputeEigenvectors::No,
        par,
        Default::default(),
    ));
    evd::self_adjoint_evd(
        g.as_ref(),
        s.as_mut(),
        None,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    let mut out: Vec<f64> = s
        .column_vector()
        .iter()
        .map(|x| x.to_f64().max(0.0).sqrt())
        .collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out.iter().all(|x| x.is_finite()).then_some(out)
}

/// The accuracy criterion of [`DenseAlgorithm::GramChecked`] on its f64 result.
fn gram_is_accurate(sv_desc: &[f64], q: usize) -> bool {
    let (Some(first), Some(last)) = (sv_desc.first(), sv_desc.last()) else {
        return true;
    };
    let ratio = q as f64 * f64::EPSILON / GRAM_TOL;
    *last >= first * ratio && *first > 0.0
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
    let rl = r_factor(l, par);
    let rr = r_factor(rt, par);
    let mut core = Mat::<T>::zeros(rl.nrows(), rr.nrows());
    faer::linalg::matmul::matmul(
        core.as_mut(),
        Accum::Replace,
        rl.as_ref(),
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

    #[test]
    fn empty_and_bad_jobs() {
        let b = FaerBackend::new(2).unwrap();
        let e = Matrix::zeros(0, 4);
        let out = b.spectra(&[Job::Dense(&e)], Precision::F64).unwrap();
        assert!(out[0].is_empty());
        let big = Matrix::from_vec(1, 2, vec![1e300, 1.0]).unwrap();
        let err = b.spectra(&[Job::Dense(&big)], Precision::F32).unwrap_err();
        assert!(matches!(err, SpectralError::OutOfRange { job: 0, .. }));
        assert!(b.spectra(&[], Precision::F64).unwrap().is_empty());
    }

    #[test]
    fn gram_check_rejects_ill_conditioned_spectra() {
        assert!(gram_is_accurate(&[2.0, 1.0], 2));
        assert!(!gram_is_accurate(&[1.0, 1e-6], 64));
        assert!(!gram_is_accurate(&[1.0, 0.0], 2));
    }
}
