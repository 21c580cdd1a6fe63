//! Eigenvalues, values only, in f64, of a symmetric matrix given by its lower triangle (the
//! Gram path's solver), by a two-stage tridiagonalisation (Bischof, Lang and Sun's successive
//! band reduction; the scheme of LAPACK's `dsytrd_2stage`):
//!
//! 1. dense to lower band of width [`BAND`]: blocked Householder QR of each column panel below
//!    the band, applied to the trailing matrix from both sides as `A - V Wᵀ - W Vᵀ` (LAPACK's
//!    `dsytrd` update, with `W = X - ½ V Tᵀ Vᵀ X`, `X = A V T`), all matrix-matrix products on
//!    the lower triangle;
//! 2. band to tridiagonal by bulge chasing with reflectors of length [`BAND`] applied from both
//!    sides to small blocks near the diagonal (O(n²·BAND) flops, in cache);
//! 3. the tridiagonal's eigenvalues by the root-free QL/QR iteration of
//!    [`super::tridiagonal`].
//!
//! Every step is orthogonal or backward stable: each eigenvalue is within a modest multiple of
//! n·u·‖A‖ of the exact one (u = 2^-53), as for LAPACK's `dsyev`. Matrices of at most
//! [`super::bidiagonal::SMALL`] rows skip the first stage (the chase with a band as wide as
//! the matrix is the one-stage Householder tridiagonalisation).

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self as tri, BlockStructure};
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, MatRef, Par};

use super::bidiagonal::{
    ColMajor, SMALL, apply_left, apply_right, axpy, column_reflector, dot, panel_qr,
    take_reflectors,
};

/// Width of the band of the first stage.
pub(crate) const BAND: usize = 16;

with_avx_copy! {
    /// Eigenvalues, ascending, of the symmetric matrix whose lower triangle is `a` (square; the
    /// strict upper triangle is ignored and destroyed). `None` when an entry is not finite or
    /// the tridiagonal iteration does not converge. On x86-64 CPUs with AVX the panel
    /// factorisations and the bulge chase (about a quarter of the f32 extract's CPU time) run
    /// compiled for AVX (see `with_avx_copy`).
    pub(crate) fn eigenvalues(a: ColMajor, par: Par) -> Option<Vec<f64>> = eigenvalues_portable
}

/// [`eigenvalues`] for the target's baseline; inlined into each compiled copy, with the
/// kernels it calls.
#[inline(always)]
fn eigenvalues_portable(mut a: ColMajor, par: Par) -> Option<Vec<f64>> {
    let n = a.rows;
    debug_assert_eq!(a.rows, a.cols);
    if n == 0 {
        return Some(Vec::new());
    }
    // O(n²) before O(n³): nothing is reduced that the iteration would reject.
    for j in 0..n {
        if !a.data[j + j * a.ld..n + j * a.ld]
            .iter()
            .all(|x| x.is_finite())
        {
            return None;
        }
    }
    let band = if n <= SMALL {
        n.saturating_sub(1).max(1)
    } else {
        dense_to_band(&mut a, BAND, par);
        BAND
    };
    band_to_tridiagonal(&mut a.data, a.ld, n, band);
    let diagonal: Vec<f64> = (0..n).map(|i| a.data[i + i * a.ld]).collect();
    let mut off: Vec<f64> = (0..n)
        .map(|i| {
            if i + 1 < n {
                a.data[i + 1 + i * a.ld]
            } else {
                0.0
            }
        })
        .collect();
    super::tridiagonal::eigenvalues(&diagonal, &mut off)
}

/// The lower Cholesky factor L (L Lᵀ = A) of the symmetric matrix whose lower triangle is `a`,
/// in place (outer-product form: each column is scaled, then subtracted from the trailing
/// columns; the same operations as the inner-product forms in another order, so Higham's
/// backward error bound |ΔA| <= γ_{n+1} |L||Lᵀ| holds). `None` at the first pivot that is not
/// positive and finite; the strict upper triangle is not read.
pub(crate) fn cholesky_lower(a: &mut ColMajor) -> Option<()> {
    let (n, ld) = (a.rows, a.ld);
    for j in 0..n {
        let d = a.data[j + j * ld];
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let r = d.sqrt();
        a.data[j + j * ld] = r;
        for x in &mut a.data[j + 1 + j * ld..n + j * ld] {
            *x /= r;
        }
        let (done, rest) = a.data.split_at_mut((j + 1) * ld);
        let col = &done[j * ld..j * ld + n];
        for c in j + 1..n {
            let f = col[c];
            if f != 0.0 {
                let start = (c - j - 1) * ld;
                axpy(-f, &col[c..n], &mut rest[start + c..start + n]);
            }
        }
    }
    Some(())
}

/// Reduces the lower triangle to a lower band of width `b` (zero below it).
#[inline(always)]
fn dense_to_band(a: &mut ColMajor, b: usize, par: Par) {
    let (n, ld) = (a.rows, a.ld);
    let mut tau = vec![0.0; b];
    let mut v = vec![0.0; n * b];
    let mut t = vec![0.0; b * b];
    let mut y = vec![0.0; n * b];
    let mut x = vec![0.0; n * b];
    let mut z = vec![0.0; b * b];
    let mut mm = vec![0.0; b * b];
    let mut vw = vec![0.0; 2 * n * b];
    let mut wv = vec![0.0; 2 * n * b];
    let mut k = 0;
    while k + b < n {
        let p = n - k - b;
        let off = (k + b) + k * ld;
        panel_qr(&mut a.data[off..], ld, p, b, &mut tau);
        take_reflectors(&mut a.data[off..], ld, p, b, &tau, &mut v, &mut t, par);
        let kk = b.min(p);
        let vm = MatRef::from_column_major_slice(&v[..p * kk], p, kk);
        let tm = MatRef::from_column_major_slice(&t[..kk * kk], kk, kk);
        let mut a22 = a.view_mut().submatrix_mut(k + b, k + b, p, p);
        // Y = A22 V from the lower triangle: (L + strict Lᵀ) V.
        let mut ym = MatMut::from_column_major_slice_mut(&mut y[..p * kk], p, kk);
        tri::matmul(
            ym.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            a22.rb(),
            BlockStructure::TriangularLower,
            vm,
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        tri::matmul(
            ym.rb_mut(),
            BlockStructure::Rectangular,
            Accum::Add,
            a22.rb().transpose(),
            BlockStructure::StrictTriangularUpper,
            vm,
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        // X = Y T; W = X - ½ V (Tᵀ (Vᵀ X)), kept in x.
        let mut xm = MatMut::from_column_major_slice_mut(&mut x[..p * kk], p, kk);
        matmul(xm.rb_mut(), Accum::Replace, ym.rb(), tm, 1.0, par);
        let mut zm = MatMut::from_column_major_slice_mut(&mut z[..kk * kk], kk, kk);
        matmul(
            zm.rb_mut(),
            Accum::Replace,
            vm.transpose(),
            xm.rb(),
            1.0,
            par,
        );
        let mut mmm = MatMut::from_column_major_slice_mut(&mut mm[..kk * kk], kk, kk);
        matmul(
            mmm.rb_mut(),
            Accum::Replace,
            tm.transpose(),
            zm.rb(),
            1.0,
            par,
        );
        matmul(xm.rb_mut(), Accum::Add, vm, mmm.rb(), -0.5, par);
        // A22 -= [V W] [W V]ᵀ, lower triangle only: one product of inner dimension 2b.
        for j in 0..kk {
            vw[j * p..(j + 1) * p].copy_from_slice(&v[j * p..(j + 1) * p]);
            vw[(kk + j) * p..(kk + j + 1) * p].copy_from_slice(&x[j * p..(j + 1) * p]);
            wv[j * p..(j + 1) * p].copy_from_slice(&x[j * p..(j + 1) * p]);
            wv[(kk + j) * p..(kk + j + 1) * p].copy_from_slice(&v[j * p..(j + 1) * p]);
        }
        tri::matmul(
            a22.rb_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            MatRef::from_column_major_slice(&vw[..2 * kk * p], p, 2 * kk),
            BlockStructure::Rectangular,
            MatRef::from_column_major_slice(&wv[..2 * kk * p], p, 2 * kk).transpose(),
            BlockStructure::Rectangular,
            -1.0,
            par,
        );
        k += b;
    }
}

/// Reduces the symmetric lower band of width `b` in the lower triangle of the n x n matrix
/// `a` to tridiagonal form. Sweep i annihilates column i below its subdiagonal by a reflector
/// on rows i+1..=i+b, applied from both sides; the block below that it fills (the bulge) has
/// its first column annihilated by the next reflector, b rows further down, and so on to the
/// end. The rest of each bulge lies in the next sweep's path and is annihilated there.
#[inline(always)]
fn band_to_tridiagonal(a: &mut [f64], ld: usize, n: usize, b: usize) {
    if n < 3 {
        return;
    }
    let mut v = vec![0.0; b + 1];
    let mut w = vec![0.0; b + 1];
    let mut e = vec![0.0; b + 1];
    for i in 0..n - 2 {
        let (mut c, mut s0, mut s1) = (i, i + 1, (i + 1 + b).min(n));
        while s1 >= s0 + 2 {
            let len = s1 - s0;
            let tau = column_reflector(a, ld, c, s0, s1, &mut v);
            let v = &v[..len];
            if tau != 0.0 {
                // From the left: the rest of the old bulge, columns c+1..s0.
                apply_left(a, ld, s0, v, tau, c + 1..s0);
                // Both sides of the diagonal block (lower triangle): p = τ D v,
                // w = p - ½τ (pᵀv) v, D -= v wᵀ + w vᵀ.
                let w = &mut w[..len];
                w.fill(0.0);
                for j in 0..len {
                    let col = &a[s0 + j + (s0 + j) * ld..s1 + (s0 + j) * ld];
                    // Column j of D from its diagonal down: D[j.., j].
                    w[j] += col[0] * v[j] + dot(&col[1..], &v[j + 1..]);
                    axpy(v[j], &col[1..], &mut w[j + 1..]);
                }
                for x in w.iter_mut() {
                    *x *= tau;
                }
                let alpha = -0.5 * tau * dot(w, v);
                axpy(alpha, v, w);
                for j in 0..len {
                    let col = &mut a[s0 + j + (s0 + j) * ld..s1 + (s0 + j) * ld];
                    axpy(-w[j], &v[j..], col);
                    axpy(-v[j], &w[j..], col);
                }
                // From the right: the block below, rows s1..s1+b.
                apply_right(a, ld, s1..(s1 + b).min(n), s0, v, tau, &mut e);
            }
            (c, s0, s1) = (s0, s1, (s1 + b).min(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graded_rank_deficient_gram_matrices() {
        // Q diag(λ) Qᵀ with λ from 1 down to 1e-16 (a Gram matrix of condition 1e8 in σ) and
        // exact zeros; Q a product of three reflectors. Backward stability promises absolute
        // errors of order n·u·λ_1.
        for n in [50, 150] {
            let lambda: Vec<f64> = (0..n)
                .map(|i| {
                    if i < 5 {
                        0.0
                    } else {
                        10f64.powf(-16.0 * (n - 1 - i) as f64 / (n - 6) as f64)
                    }
                })
                .collect();
            let mut full =
                faer::Mat::<f64>::from_fn(n, n, |i, j| if i == j { lambda[i] } else { 0.0 });
            let mut state = 99u64;
            for _ in 0..3 {
                let u: Vec<f64> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                    })
                    .collect();
                let uu = dot(&u, &u);
                // H A H with H = I - 2 u uᵀ / uᵀu.
                let au: Vec<f64> = (0..n)
                    .map(|i| (0..n).map(|j| full[(i, j)] * u[j]).sum())
                    .collect();
                let k = 2.0 / uu;
                let c = k * k * dot(&u, &au) / 2.0;
                for i in 0..n {
                    for j in 0..n {
                        full[(i, j)] += -k * (au[i] * u[j] + u[i] * au[j]) + 2.0 * c * u[i] * u[j];
                    }
                }
            }
            let got = eigenvalues(ColMajor::from_ref(full.as_ref()), Par::Seq).unwrap();
            for (g, w) in got.iter().zip(&lambda) {
                assert!((g - w).abs() <= 1e-14, "n = {n}: {g} vs {w}");
            }
        }
    }

    fn noise_sym(n: usize, seed: u64) -> (ColMajor, faer::Mat<f64>) {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut full = faer::Mat::<f64>::zeros(n, n);
        for j in 0..n {
            for i in j..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let x = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                full[(i, j)] = x;
                full[(j, i)] = x;
            }
        }
        let mut a = ColMajor::from_ref(full.as_ref());
        // Garbage in the strict upper triangle: it must be ignored.
        for j in 1..n {
            for i in 0..j {
                a.set(i, j, f64::NAN);
            }
        }
        (a, full)
    }

    #[test]
    fn agrees_with_faer_on_every_size() {
        for n in [1, 2, 3, 5, 40, 96, 97, 120, 121, 200, 257] {
            let (a, full) = noise_sym(n, n as u64);
            let mut want: Vec<f64> = full
                .as_ref()
                .self_adjoint_eigenvalues(faer::Side::Lower)
                .unwrap();
            want.sort_by(f64::total_cmp);
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            // Both compiled copies: `eigenvalues` runs the AVX one where the CPU has AVX.
            for (copy, eig) in [
                (
                    "dispatched",
                    eigenvalues as fn(ColMajor, Par) -> Option<Vec<f64>>,
                ),
                ("portable", eigenvalues_portable),
            ] {
                let got = eig(a.clone(), Par::Seq).unwrap();
                assert_eq!(got.len(), n);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-13 * scale,
                        "{copy}, n = {n}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
