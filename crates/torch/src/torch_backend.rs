//! [`TorchBackend`]: batched singular values on libtorch, on the CPU or a CUDA device.

use std::collections::BTreeMap;

use attn_spectra::Matrix;
use attn_spectra::spectral::{
    Job, Precision, SpectralError, SvdBackend, gram_bound, gram_range_ok, validate_jobs,
};
use tch::{Device, Kind, Tensor};

/// The cuSOLVER routine for singular values on CUDA (tch always passes a driver name to
/// `linalg_svdvals`, so the choice is explicit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CudaDriver {
    /// Jacobi SVD (`gesvdj`), the default. A batch whose result is not finite is redone with
    /// `gesvd`.
    #[default]
    Gesvdj,
    /// QR-iteration SVD (`gesvd`).
    Gesvd,
}

impl CudaDriver {
    pub fn name(self) -> &'static str {
        match self {
            CudaDriver::Gesvdj => "gesvdj",
            CudaDriver::Gesvd => "gesvd",
        }
    }
}

/// Largest batch tensor built at once, in bytes of matrix data.
const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 30;

/// The libtorch backend. Jobs of equal shape (dense `rows x cols`, or products `m x k x n`) are
/// stacked into batches of at most 1 GiB; each batch is one tensor on the device.
///
/// It keeps the accuracy contract of [`Precision::tolerance`] as the faer backend does, and by
/// the same means: everything is computed in f64; with [`Precision::F32`] a dense batch first
/// gets the eigenvalues of its Gram matrices (batched `matmul` and `linalg_eigvalsh` in f64),
/// each kept when the proved bound of `attn_spectra::spectral::gram_spectrum` (computed here
/// by [`gram_bound`] from the same Collatz–Wielandt estimate, on the device) meets 1e-6·σ_1;
/// the rest, and every dense job in f64, get the f64 SVD. Circuits: thin QRs and the core's
/// SVD in f64.
pub struct TorchBackend {
    device: Device,
    name: String,
    driver: CudaDriver,
    max_batch_bytes: usize,
    /// CPU only: sub-batches run on this many threads at once.
    threads: usize,
}

impl TorchBackend {
    /// libtorch on the CPU with `threads` threads (0: one per core). Each batch is split into
    /// `threads` sub-batches that run at once, each single-threaded: libtorch's intra-op thread
    /// count is set to 1 (a process-wide setting). Measured on a shared 2-core machine, MKL's
    /// own threading inside one SVD was up to 10 times slower than this.
    pub fn cpu(threads: usize) -> TorchBackend {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        tch::set_num_threads(1);
        TorchBackend {
            device: Device::Cpu,
            name: "torch-cpu".into(),
            driver: CudaDriver::default(),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            threads,
        }
    }

    /// libtorch on CUDA device `ordinal`; an error when libtorch sees no such device.
    pub fn cuda(ordinal: usize) -> Result<TorchBackend, crate::BackendError> {
        if !cuda_available() {
            return Err(crate::BackendError::NoCuda {
                detail: cuda_unavailable_detail(),
            });
        }
        let count = tch::Cuda::device_count();
        if ordinal as i64 >= count {
            return Err(crate::BackendError::NoCuda {
                detail: format!("device {ordinal} requested, {count} present"),
            });
        }
        Ok(TorchBackend {
            device: Device::Cuda(ordinal),
            name: "torch-cuda".into(),
            driver: CudaDriver::default(),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            threads: 1,
        })
    }

    /// Chooses the cuSOLVER routine (CUDA only; ignored on the CPU).
    pub fn with_cuda_driver(mut self, driver: CudaDriver) -> TorchBackend {
        self.driver = driver;
        self
    }

    /// Caps the matrix data of one batch tensor (at least one matrix is always taken).
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> TorchBackend {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The spectra of the jobs `indices` (all of shape `shape`) as one batch.
    fn run(
        &self,
        shape: Shape,
        indices: &[usize],
        jobs: &[Job],
        precision: Precision,
    ) -> Result<Vec<Vec<f64>>, tch::TchError> {
        match shape {
            Shape::Dense(..) => {
                let mats: Vec<&Matrix> = indices
                    .iter()
                    .filter_map(|&i| match jobs[i] {
                        Job::Dense(m) => Some(m),
                        Job::Product { .. } => None,
                    })
                    .collect();
                self.dense_batch(&mats, precision)
            }
            Shape::Product(..) => {
                let pairs: Vec<(&Matrix, &Matrix)> = indices
                    .iter()
                    .filter_map(|&i| match jobs[i] {
                        Job::Product { left, right } => Some((left, right)),
                        Job::Dense(_) => None,
                    })
                    .collect();
                self.product_batch(&pairs)
            }
        }
    }

    fn error(&self, first_job: usize, count: usize, e: tch::TchError) -> SpectralError {
        SpectralError::Backend {
            backend: self.name.clone(),
            message: format!("jobs {first_job}..{}: {e}", first_job + count),
        }
    }

    /// Singular values of a batch `[b, p, q]`, p >= q, as `[b, q]`.
    fn svdvals(&self, t: &Tensor, driver: CudaDriver) -> Result<Tensor, tch::TchError> {
        // A tall batch is reduced to its R factor first: the SVD then works on q x q, and on
        // the CPU `svd(compute_uv = false)` only fills q x q zero matrices for U and V.
        let (p, q) = (t.size()[1], t.size()[2]);
        let square = if p > q {
            Tensor::f_linalg_qr(t, "r")?.1
        } else {
            t.shallow_clone()
        };
        match self.device {
            Device::Cpu => Ok(square.f_svd(true, false)?.1),
            _ => Tensor::f_linalg_svdvals(&square, driver.name()),
        }
    }

    /// Runs `f` with the configured driver and, for gesvdj on CUDA, again with gesvd when the
    /// result is not finite.
    fn with_fallback(
        &self,
        f: impl Fn(CudaDriver) -> Result<Tensor, tch::TchError>,
    ) -> Result<Tensor, tch::TchError> {
        let s = f(self.driver)?;
        if self.device != Device::Cpu
            && self.driver == CudaDriver::Gesvdj
            && !bool::try_from(s.f_isfinite()?.f_all()?)?
        {
            return f(CudaDriver::Gesvd);
        }
        Ok(s)
    }

    fn dense_batch(
        &self,
        mats: &[&Matrix],
        precision: Precision,
    ) -> Result<Vec<Vec<f64>>, tch::TchError> {
        let (rows, cols) = mats[0].shape();
        let (p, q) = (rows.max(cols), rows.min(cols));
        let t = stack(mats, Kind::Double, self.device)?.f_view([
            mats.len() as i64,
            rows as i64,
            cols as i64,
        ])?;
        // Tall: [b, p, q], p >= q.
        let t = if rows < cols {
            t.f_transpose(-2, -1)?
        } else {
            t
        };
        let mut out: Vec<Option<Vec<f64>>> = vec![None; mats.len()];
        if precision == Precision::F32 {
            let candidates: Vec<i64> = (0..mats.len())
                .filter(|&i| {
                    let a = mats[i].max_abs();
                    a == 0.0 || gram_range_ok(a)
                })
                .map(|i| i as i64)
                .collect();
            if !candidates.is_empty() {
                let index = Tensor::f_from_slice(&candidates)?.f_to_device(self.device)?;
                let tc = t.f_index_select(0, &index)?;
                let g = tc.f_transpose(-2, -1)?.f_matmul(&tc)?;
                let lambda = to_host(&g.f_linalg_eigvalsh("L")?)?; // ascending per job
                let rho = to_host(&abs_gram_rho_bound(&tc.f_abs()?)?)?;
                for (j, &i) in candidates.iter().enumerate() {
                    let mut l: Vec<f64> = lambda[j * q..(j + 1) * q].to_vec();
                    l.reverse();
                    if let Some(gs) = gram_bound(&l, rho[j], p, q)
                        && gs.meets(precision.tolerance())
                    {
                        out[i as usize] = Some(gs.values);
                    }
                }
            }
        }
        let rest: Vec<i64> = (0..mats.len())
            .filter(|&i| out[i].is_none())
            .map(|i| i as i64)
            .collect();
        if !rest.is_empty() {
            let tr = if rest.len() == mats.len() {
                t
            } else {
                t.f_index_select(0, &Tensor::f_from_slice(&rest)?.f_to_device(self.device)?)?
            };
            let s = self.with_fallback(|d| self.svdvals(&tr, d))?;
            for (&i, sv) in rest.iter().zip(split(&s, rest.len())?) {
                out[i as usize] = Some(sv);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn product_batch(&self, pairs: &[(&Matrix, &Matrix)]) -> Result<Vec<Vec<f64>>, tch::TchError> {
        let kind = Kind::Double;
        let b = pairs.len() as i64;
        let (m, k) = pairs[0].0.shape();
        let n = pairs[0].1.cols();
        let lefts: Vec<&Matrix> = pairs.iter().map(|p| p.0).collect();
        let rights: Vec<&Matrix> = pairs.iter().map(|p| p.1).collect();
        let l = stack(&lefts, kind, self.device)?.f_view([b, m as i64, k as i64])?;
        let rt = stack(&rights, kind, self.device)?
            .f_view([b, k as i64, n as i64])?
            .f_transpose(-2, -1)?;
        let rl = Tensor::f_linalg_qr(&l, "r")?.1; // [b, min(m, k), k]
        let rr = Tensor::f_linalg_qr(&rt, "r")?.1; // [b, min(n, k), k]
        let core = rl.f_matmul(&rr.f_transpose(-2, -1)?)?;
        let core = if core.size()[1] < core.size()[2] {
            core.f_transpose(-2, -1)?
        } else {
            core
        };
        let s = self.with_fallback(|d| self.svdvals(&core, d))?;
        split(&s, pairs.len())
    }
}

/// Concatenates the matrices' data into one host tensor of `kind` on `device` (flat).
fn stack(mats: &[&Matrix], kind: Kind, device: Device) -> Result<Tensor, tch::TchError> {
    let total: usize = mats.iter().map(|m| m.data().len()).sum();
    let host = if kind == Kind::Float {
        let mut buf: Vec<f32> = Vec::with_capacity(total);
        for m in mats {
            buf.extend(m.data().iter().map(|x| *x as f32));
        }
        Tensor::f_from_slice(&buf)?
    } else {
        let mut buf: Vec<f64> = Vec::with_capacity(total);
        for m in mats {
            buf.extend_from_slice(m.data());
        }
        Tensor::f_from_slice(&buf)?
    };
    host.f_to_device(device)
}

/// An upper bound, per job, on ρ(|A|^T |A|) for a batch `abs_t = |A|` of shape `[b, p, q]`: the
/// least Collatz–Wielandt ratio max_j (M x)_j / x_j over three power-iteration vectors from
/// x = 1 (see `attn_spectra::spectral::gram_spectrum`). Returns `[b]`.
fn abs_gram_rho_bound(abs_t: &Tensor) -> Result<Tensor, tch::TchError> {
    let size = abs_t.size();
    let (b, q) = (size[0], size[2]);
    let mut x = Tensor::f_ones([b, q, 1], (Kind::Double, abs_t.device()))?;
    let abs_tt = abs_t.f_transpose(-2, -1)?;
    let mut best: Option<Tensor> = None;
    for _ in 0..3 {
        let y = abs_tt.f_matmul(&abs_t.f_matmul(&x)?)?; // [b, q, 1]
        let ratio = y.f_div(&x)?.f_amax([1i64, 2].as_slice(), false)?; // [b]
        best = Some(match best {
            None => ratio,
            Some(prev) => prev.f_minimum(&ratio)?,
        });
        let ymax = y
            .f_amax([1i64, 2].as_slice(), true)?
            .f_clamp_min(f64::MIN_POSITIVE)?;
        // The next vector must stay positive for the bound to hold.
        x = y.f_div(&ymax)?.f_clamp_min(1e-30)?;
    }
    Ok(best.expect("three iterations"))
}

/// A tensor's values on the host, flattened, as f64.
fn to_host(t: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    let flat = t
        .f_to_kind(Kind::Double)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_view([-1])?;
    Vec::<f64>::try_from(&flat)
}

/// Splits a `[b, r]` tensor of singular values into `b` descending `f64` vectors.
fn split(s: &Tensor, b: usize) -> Result<Vec<Vec<f64>>, tch::TchError> {
    let flat = s
        .f_to_kind(Kind::Double)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_view([-1])?;
    let values = Vec::<f64>::try_from(&flat)?;
    let r = values.len().checked_div(b).unwrap_or(0);
    Ok(values
        .chunks(r.max(1))
        .take(b)
        .map(|c| {
            let mut v: Vec<f64> = c.iter().map(|x| x.abs()).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            v
        })
        .chain(std::iter::repeat_with(Vec::new))
        .take(b)
        .collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Dense(usize, usize),
    Product(usize, usize, usize),
}

impl SvdBackend for TorchBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn spectra(&self, jobs: &[Job], precision: Precision) -> Result<Vec<Vec<f64>>, SpectralError> {
        validate_jobs(jobs)?;
        let _guard = tch::no_grad_guard();
        // The contract is met in f64 whatever the precision (see [`TorchBackend`]).
        let elem = 8;

        let mut groups: BTreeMap<Shape, Vec<usize>> = BTreeMap::new();
        let mut out: Vec<Vec<f64>> = vec![Vec::new(); jobs.len()];
        for (i, job) in jobs.iter().enumerate() {
            if job.num_singular_values() == 0 {
                continue;
            }
            let shape = match job {
                Job::Dense(m) => Shape::Dense(m.rows(), m.cols()),
                Job::Product { left, right } => {
                    Shape::Product(left.rows(), left.cols(), right.cols())
                }
            };
            groups.entry(shape).or_default().push(i);
        }

        for (shape, indices) in groups {
            let bytes_per_job = match shape {
                Shape::Dense(r, c) => r * c * elem,
                Shape::Product(m, k, n) => (m + n) * k * elem,
            };
            let per_batch = (self.max_batch_bytes / bytes_per_job.max(1)).max(1);
            for chunk in indices.chunks(per_batch) {
                let result = if self.device == Device::Cpu && self.threads > 1 && chunk.len() > 1 {
                    let part = chunk.len().div_ceil(self.threads);
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = chunk
                            .chunks(part)
                            .map(|p| {
                                scope.spawn(move || {
                                    let _guard = tch::no_grad_guard();
                                    self.run(shape, p, jobs, precision)
                                })
                            })
                            .collect();
                        let mut all = Vec::with_capacity(chunk.len());
                        for h in handles {
                            all.extend(h.join().expect("torch worker thread panicked")?);
                        }
                        Ok(all)
                    })
                } else {
                    self.run(shape, chunk, jobs, precision)
                }
                .map_err(|e| self.error(chunk[0], chunk.len(), e))?;
                for (&i, sv) in chunk.iter().zip(result) {
                    if sv.len() != jobs[i].num_singular_values()
                        || sv.iter().any(|x| !x.is_finite())
                    {
                        let (rows, cols) = jobs[i].shape();
                        return Err(SpectralError::NoConvergence {
                            job: i,
                            backend: self.name.clone(),
                            what: "SVD",
                            rows,
                            cols,
                            precision,
                        });
                    }
                    out[i] = sv;
                }
            }
        }
        Ok(out)
    }
}

/// Loads libtorch_cuda.so (once) so that its CUDA hooks register before libtorch's first CUDA
/// query; a no-op when the linker already made it a dependency, or when it is not found.
fn load_torch_cuda() {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{CString, c_char, c_int, c_void};
        use std::sync::Once;
        static ONCE: Once = Once::new();
        unsafe extern "C" {
            fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        }
        const RTLD_NOW: c_int = 2;
        const RTLD_GLOBAL: c_int = 0x100;
        ONCE.call_once(|| {
            let mut candidates = vec!["libtorch_cuda.so".to_string()];
            if let Some(dir) = option_env!("ATTN_SPECTRA_LIBTORCH_LIB") {
                candidates.push(format!("{dir}/libtorch_cuda.so"));
            }
            for c in candidates {
                let Ok(name) = CString::new(c) else { continue };
                // SAFETY: `name` is a valid NUL-terminated string; dlopen has no other
                // preconditions, and a failure only returns null.
                let handle = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
                if !handle.is_null() {
                    break;
                }
            }
        });
    }
}

/// Whether libtorch sees a CUDA device (after trying to load libtorch_cuda.so).
pub(crate) fn cuda_available() -> bool {
    load_torch_cuda();
    tch::Cuda::is_available()
}

fn cuda_unavailable_detail() -> String {
    let lib = option_env!("ATTN_SPECTRA_LIBTORCH_LIB").unwrap_or("?");
    let cuda_lib = std::path::Path::new(lib).join("libtorch_cuda.so");
    if cuda_lib.exists() {
        format!(
            "libtorch at {lib} has CUDA support; no GPU or driver is visible ({} devices)",
            tch::Cuda::device_count()
        )
    } else {
        format!("libtorch at {lib} has no libtorch_cuda.so (a CPU-only build?)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_diagonal_and_product_spectra() {
        let b = TorchBackend::cpu(1);
        let d = Matrix::from_fn(5, 3, |r, c| if r == c { [1.0, 3.0, 2.0][r] } else { 0.0 });
        let w = d.transpose();
        let left = Matrix::from_vec(3, 2, vec![0.6, 0.0, 0.8, 0.0, 0.0, 0.0]).unwrap();
        let right = Matrix::from_vec(2, 4, vec![2.0, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0]).unwrap();
        for p in [Precision::F64, Precision::F32] {
            let out = b
                .spectra(
                    &[
                        Job::Dense(&d),
                        Job::Dense(&w),
                        Job::Product {
                            left: &left,
                            right: &right,
                        },
                    ],
                    p,
                )
                .unwrap();
            for sv in &out[..2] {
                for (a, e) in sv.iter().zip([3.0, 2.0, 1.0]) {
                    assert!((a - e).abs() < 1e-6, "{p}: {sv:?}");
                }
            }
            assert_eq!(out[2].len(), 2);
            assert!((out[2][0] - 2.0).abs() < 1e-6 && out[2][1].abs() < 1e-6);
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_the_job() {
        let b = TorchBackend::cpu(1);
        let ok = Matrix::zeros(2, 2);
        let nan = Matrix::from_vec(1, 2, vec![1.0, f64::NAN]).unwrap();
        let err = b
            .spectra(&[Job::Dense(&ok), Job::Dense(&nan)], Precision::F64)
            .unwrap_err();
        assert!(err.to_string().starts_with("job 1:"), "{err}");
        let empty = Matrix::zeros(0, 3);
        let out = b.spectra(&[Job::Dense(&empty)], Precision::F64).unwrap();
        assert!(out[0].is_empty());
    }
}
