//! [`TorchBackend`]: batched singular values on libtorch, on the CPU or a CUDA device.

use std::collections::BTreeMap;

use attn_spectra::Matrix;
use attn_spectra::spectral::{Job, Precision, SpectralError, SvdBackend, validate_jobs};
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
        kind: Kind,
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
                self.dense_batch(&mats, kind)
            }
            Shape::Product(..) => {
                let pairs: Vec<(&Matrix, &Matrix)> = indices
                    .iter()
                    .filter_map(|&i| match jobs[i] {
                        Job::Product { left, right } => Some((left, right)),
                        Job::Dense(_) => None,
                    })
                    .collect();
                self.product_batch(&pairs, kind)
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

    fn dense_batch(&self, mats: &[&Matrix], kind: Kind) -> Result<Vec<Vec<f64>>, tch::TchError> {
        let (rows, cols) = mats[0].shape();
        let t = stack(mats, kind, self.device)?.f_view([
            mats.len() as i64,
            rows as i64,
            cols as i64,
        ])?;
        let t = if rows < cols {
            t.f_transpose(-2, -1)?
        } else {
            t
        };
        let s = self.with_fallback(|d| self.svdvals(&t, d))?;
        split(&s, mats.len())
    }

    fn product_batch(
        &self,
        pairs: &[(&Matrix, &Matrix)],
        kind: Kind,
    ) -> Result<Vec<Vec<f64>>, tch::TchError> {
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
        let kind = match precision {
            Precision::F32 => Kind::Float,
            Precision::F64 => Kind::Double,
        };
        let elem = if kind == Kind::Float { 4 } else { 8 };
        if precision == Precision::F32 {
            let too_big = |m: &Matrix| m.max_abs() > f32::MAX as f64;
            for (i, job) in jobs.iter().enumerate() {
                let big = match job {
                    Job::Dense(m) => too_big(m),
                    Job::Product { left, right } => too_big(left) || too_big(right),
                };
                if big {
                    let (rows, cols) = job.shape();
                    return Err(SpectralError::OutOfRange {
                        job: i,
                        rows,
                        cols,
                        precision,
                    });
                }
            }
        }

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
                                    self.run(shape, p, jobs, kind)
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
                    self.run(shape, chunk, jobs, kind)
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
