//! Singular values, values only, in f64, by a two-stage reduction to bidiagonal form
//! (Großer and Lang; the scheme of PLASMA's and MAGMA's `gebrd` two-stage routines):
//!
//! 1. dense to upper band of width [`BAND`]: alternating blocked Householder QR of a column
//!    panel and LQ of a row panel, each applied to the trailing matrix as a block reflector
//!    `I - V T Vᵀ` by three matrix products (faer's kernel). Unlike the one-stage Golub-Kahan
//!    reduction (LAPACK's `dgebrd`, faer's `bidiag`), where half of the 8n³/3 flops are
//!    matrix-vector products bound by memory bandwidth, all of the O(n³) work here is
//!    matrix-matrix products;
//! 2. band to bidiagonal by bulge chasing with Householder reflectors of length [`BAND`] on
//!    small blocks near the diagonal (O(n²·BAND) flops, in cache);
//! 3. the bidiagonal's singular values by the implicitly shifted Golub-Kahan QR iteration
//!    ([`bidiagonal_values`]).
//!
//! Every step is an orthogonal transformation (or a deflation below u·max|B|), so
//! each computed σ_i is within a modest multiple of n·u·σ_1 of the exact one, as for LAPACK's
//! `dgesdd` (u = 2^-53). Matrices with at most [`SMALL`] columns skip the first stage: the
//! second stage with a band as wide as the matrix is the one-stage Golub-Kahan reduction,
//! which is the cheaper one while the matrix stays in cache.
//!
//! The matrix is scaled by a power of two (exactly) so that its largest entry lies in
//! [1/2, 1): no sum of squares overflows, whatever the range of the finite input.

use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, MatMut, MatRef, Par};

use crate::matrix::Matrix;

/// Width of the band of the first stage (and length of the second stage's reflectors).
pub(crate) const BAND: usize = 24;

/// Matrices with at most this many columns are reduced in one stage.
pub(crate) const SMALL: usize = 96;

/// A column-major matrix with a padded leading dimension.
#[derive(Clone)]
pub(crate) struct ColMajor {
    pub(super) data: Vec<f64>,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) ld: usize,
}

impl ColMajor {
    /// A zero `rows x cols` matrix.
    pub(crate) fn zeros(rows: usize, cols: usize) -> ColMajor {
        // A power-of-two stride maps a row's entries to a few cache sets.
        let mut ld = rows.next_multiple_of(8).max(8);
        if ld.is_multiple_of(256) {
            ld += 8;
        }
        ColMajor {
            data: vec![0.0; ld * cols],
            rows,
            cols,
            ld,
        }
    }

    /// Sets entry (i, j).
    #[cfg(test)]
    pub(crate) fn set(&mut self, i: usize, j: usize, x: f64) {
        self.data[i + j * self.ld] = x;
    }

    /// `mᵀ` (cols x rows): the row-major data of `m`, copied a column at a time.
    pub(crate) fn from_row_major_transposed(m: &Matrix) -> ColMajor {
        let (rows, cols) = m.shape();
        let mut out = ColMajor::zeros(cols, rows);
        for (r, row) in m.data().chunks_exact(cols.max(1)).take(rows).enumerate() {
            out.data[r * out.ld..r * out.ld + cols].copy_from_slice(row);
        }
        out
    }

    /// A copy of a faer view.
    pub(crate) fn from_ref(m: MatRef<'_, f64>) -> ColMajor {
        let mut out = ColMajor::zeros(m.nrows(), m.ncols());
        out.view_mut().copy_from(m);
        out
    }

    pub(crate) fn view_mut(&mut self) -> MatMut<'_, f64> {
        MatMut::from_column_major_slice_with_stride_mut(
            &mut self.data,
            self.rows,
            self.cols,
            self.ld,
        )
    }

    /// The matrix itself as a faer view.
    #[cfg(test)]
    pub(crate) fn as_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice_with_stride(&self.data, self.rows, self.cols, self.ld)
    }
}

with_avx_copy! {
    /// Singular values, descending, of `a` (destroyed). `None` when an entry is not finite or
    /// the tridiagonal iteration does not converge. On x86-64 CPUs with AVX the reductions run
    /// compiled for AVX (see `with_avx_copy`).
    pub(crate) fn singular_values(a: ColMajor, par: Par) -> Option<Vec<f64>> = singular_values_portable
}

/// [`singular_values`] for the target's baseline; inlined into each compiled copy, with the
/// reductions it calls.
#[inline(always)]
fn singular_values_portable(mut a: ColMajor, par: Par) -> Option<Vec<f64>> {
    if a.rows < a.cols {
        let mut t = ColMajor::zeros(a.cols, a.rows);
        for j in 0..a.cols {
            for i in 0..a.rows {
                t.data[j + i * t.ld] = a.data[i + j * a.ld];
            }
        }
        a = t;
    }
    let (m, n) = (a.rows, a.cols);
    if n == 0 {
        return Some(Vec::new());
    }
    // O(mn) before O(mn²): `f64::max` skips NaN, so finiteness is checked entry by entry.
    let mut max_abs = 0.0f64;
    for j in 0..n {
        for x in &a.data[j * a.ld..j * a.ld + m] {
            if !x.is_finite() {
                return None;
            }
            max_abs = max_abs.max(x.abs());
        }
    }
    if max_abs == 0.0 {
        return Some(vec![0.0; n]);
    }
    // max_abs = f · 2^e with f in [1/2, 1): scale by 2^-e (in two steps, so that neither
    // factor overflows or underflows on its own).
    let e_exp = max_abs.log2().floor() as i32 + 1;
    let (s1, s2) = (2f64.powi(-e_exp / 2), 2f64.powi(-e_exp + e_exp / 2));
    for j in 0..n {
        for x in &mut a.data[j * a.ld..j * a.ld + m] {
            *x = *x * s1 * s2;
        }
    }
    let band = if n <= SMALL {
        // One stage: the first column's reflector, then the chase with a band as wide as
        // the matrix is the Golub-Kahan reduction.
        let ld = a.ld;
        if m > n {
            // Tall: its R factor first (the chase works on the leading n x n block).
            let mut tau = vec![0.0; n];
            panel_qr(&mut a.data, ld, m, n, &mut tau);
            for j in 0..n {
                a.data[j * ld + j + 1..j * ld + m].fill(0.0);
            }
        } else {
            reflect_col(&mut a.data, ld, 0, 0, m, n - 1, &mut vec![0.0; m]);
        }
        n.saturating_sub(1).max(1)
    } else {
        dense_to_band(&mut a, BAND, par);
        BAND
    };
    band_to_bidiagonal(&mut a.data, a.ld, n, band);
    let mut d: Vec<f64> = (0..n).map(|i| a.data[i + i * a.ld]).collect();
    let mut e: Vec<f64> = (0..n - 1).map(|i| a.data[i + (i + 1) * a.ld]).collect();
    bidiagonal_values(&mut d, &mut e)?;
    let (u1, u2) = (2f64.powi(e_exp / 2), 2f64.powi(e_exp - e_exp / 2));
    let mut out: Vec<f64> = d.iter().map(|x| x.abs() * u1 * u2).collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out.iter().all(|x| x.is_finite()).then_some(out)
}

/// (c, s, r) with c = y/r, s = z/r, r = √(y² + z²); (1, 0, y) when both are zero.
#[inline]
fn givens(y: f64, z: f64) -> (f64, f64, f64) {
    let mut r = (y * y + z * z).sqrt();
    if r < 1e-150 {
        // Squares near or below the underflow threshold: the careful hypot.
        r = y.hypot(z);
        if r == 0.0 {
            return (1.0, 0.0, y);
        }
    }
    (y / r, z / r, r)
}

/// Singular values (in `d`, unsorted, signed) of the upper bidiagonal matrix with diagonal `d`
/// and superdiagonal `e` (destroyed), by the implicitly shifted QR iteration of Golub and Kahan
/// (Golub and Van Loan, *Matrix Computations*, 4th ed., Algorithm 8.6.2), values only. Entries
/// below u·max|B| are set to zero (deflation, or a split where a diagonal entry is
/// negligible), which perturbs every singular value by at most √n·u·max|B| (Weyl).
/// `None` when the iteration does not converge in 30·n sweeps.
pub(crate) fn bidiagonal_values(d: &mut [f64], e: &mut [f64]) -> Option<()> {
    let n = d.len();
    if n <= 1 {
        return Some(());
    }
    let e = &mut e[..n - 1];
    if !d.iter().chain(e.iter()).all(|x| x.is_finite()) {
        return None;
    }
    let bmax = d.iter().chain(e.iter()).fold(0.0f64, |m, x| m.max(x.abs()));
    let tol = f64::EPSILON / 2.0 * bmax;
    let max_sweeps = 30 * n;
    let mut sweeps = 0;
    let mut hi = n - 1;
    while hi > 0 {
        if e[hi - 1].abs() <= tol {
            e[hi - 1] = 0.0;
            hi -= 1;
            continue;
        }
        let mut lo = hi - 1;
        while lo > 0 && e[lo - 1].abs() > tol {
            lo -= 1;
        }
        if lo > 0 {
            e[lo - 1] = 0.0;
        }
        // A negligible diagonal entry: zero it and rotate its row's (or, for the last one,
        // its column's) off-diagonal entry out of the block, which splits there.
        if let Some(i) = (lo..=hi).find(|&i| d[i].abs() <= tol) {
            d[i] = 0.0;
            if i < hi {
                let mut f = e[i];
                e[i] = 0.0;
                for j in i + 1..=hi {
                    let (c, s, r) = givens(d[j], f);
                    d[j] = r;
                    if j < hi {
                        f = -s * e[j];
                        e[j] *= c;
                    }
                }
            } else {
                let mut f = e[hi - 1];
                e[hi - 1] = 0.0;
                for k in (lo..hi).rev() {
                    let (c, s, r) = givens(d[k], f);
                    d[k] = r;
                    if k > lo {
                        f = -s * e[k - 1];
                        e[k - 1] *= c;
                    }
                }
            }
            continue;
        }
        sweeps += 1;
        if sweeps > max_sweeps {
            return None;
        }
        // Wilkinson's shift: the eigenvalue of BᵀB's trailing 2 x 2 block nearer its last
        // diagonal entry.
        let t00 = d[hi - 1] * d[hi - 1]
            + if hi - 1 > lo {
                e[hi - 2] * e[hi - 2]
            } else {
                0.0
            };
        let t11 = d[hi] * d[hi] + e[hi - 1] * e[hi - 1];
        let t01 = d[hi - 1] * e[hi - 1];
        let half = 0.5 * (t00 - t11);
        let root = half.hypot(t01);
        let denom = half + if half < 0.0 { -root } else { root };
        let mu = if denom == 0.0 {
            t11
        } else {
            t11 - t01 * t01 / denom
        };
        // The bulge chase: a right rotation on columns (k, k+1), which puts a bulge at
        // (k+1, k), then a left one on rows (k, k+1), which moves it to (k, k+2).
        let mut y = d[lo] * d[lo] - mu;
        let mut z = d[lo] * e[lo];
        for k in lo..hi {
            let (c, s, r) = givens(y, z);
            if k > lo {
                e[k - 1] = r;
            }
            let (dk, ek) = (d[k], e[k]);
            let dk = c * dk + s * ek;
            e[k] = c * ek - s * d[k];
            let bulge = s * d[k + 1];
            d[k + 1] *= c;
            let (c, s, r) = givens(dk, bulge);
            d[k] = r;
            let ek = e[k];
            e[k] = c * ek + s * d[k + 1];
            d[k + 1] = c * d[k + 1] - s * ek;
            if k + 1 < hi {
                y = e[k];
                z = s * e[k + 1];
                e[k + 1] *= c;
            }
        }
    }
    Some(())
}

/// Σ a_i b_i with eight partial sums (the loop vectorises).
#[inline(always)]
pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// y += alpha · x.
#[inline(always)]
pub(super) fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Householder reflector `I - tau v vᵀ` (v[0] = 1) that maps x to (beta, 0, ..., 0): returns
/// (tau, beta) and leaves v[1..] in x[1..]. tau = 0 when x[1..] is zero already.
#[inline(always)]
pub(super) fn householder(x: &mut [f64]) -> (f64, f64) {
    let alpha = x[0];
    let tail = dot(&x[1..], &x[1..]);
    if tail == 0.0 {
        return (0.0, alpha);
    }
    let norm = (alpha * alpha + tail).sqrt();
    let beta = if alpha >= 0.0 { -norm } else { norm };
    let tau = (beta - alpha) / beta;
    let scale = 1.0 / (alpha - beta);
    for v in &mut x[1..] {
        *v *= scale;
    }
    x[0] = 1.0;
    (tau, beta)
}

/// The reflector `I - tau v vᵀ` on rows r0..r1 (at least two) that annihilates column c below
/// row r0: its vector goes to `v[..r1 - r0]` (v[0] = 1), the column becomes (beta, 0, ..., 0),
/// and tau is returned (0 when the column was zero below r0 already).
#[inline(always)]
pub(super) fn column_reflector(
    a: &mut [f64],
    ld: usize,
    c: usize,
    r0: usize,
    r1: usize,
    v: &mut [f64],
) -> f64 {
    let v = &mut v[..r1 - r0];
    v.copy_from_slice(&a[r0 + c * ld..r1 + c * ld]);
    let (tau, beta) = householder(v);
    a[r0 + c * ld] = beta;
    a[r0 + 1 + c * ld..r1 + c * ld].fill(0.0);
    tau
}

/// Applies `I - tau v vᵀ` from the left to rows r0..r0+len(v) of the columns `cols`.
#[inline(always)]
pub(super) fn apply_left(
    a: &mut [f64],
    ld: usize,
    r0: usize,
    v: &[f64],
    tau: f64,
    cols: std::ops::Range<usize>,
) {
    let r1 = r0 + v.len();
    for j in cols {
        let col = &mut a[r0 + j * ld..r1 + j * ld];
        let s = dot(v, col);
        axpy(-tau * s, v, col);
    }
}

/// Applies `I - tau v vᵀ` from the right to columns c0..c0+len(v) of the rows `rows`, with
/// `w` (at least `rows.len()` long) as scratch: w = A v, then A -= tau w vᵀ.
#[inline(always)]
pub(super) fn apply_right(
    a: &mut [f64],
    ld: usize,
    rows: std::ops::Range<usize>,
    c0: usize,
    v: &[f64],
    tau: f64,
    w: &mut [f64],
) {
    let w = &mut w[..rows.len()];
    w.fill(0.0);
    for (k, &vk) in v.iter().enumerate() {
        let col = &a[rows.start + (c0 + k) * ld..rows.end + (c0 + k) * ld];
        axpy(vk, col, w);
    }
    for (k, &vk) in v.iter().enumerate() {
        let col = &mut a[rows.start + (c0 + k) * ld..rows.end + (c0 + k) * ld];
        axpy(-tau * vk, w, col);
    }
}

/// Left reflector on rows r0..r1 of column c, annihilating its entries below row r0, applied
/// to columns c+1..=c_last.
#[inline(always)]
fn reflect_col(
    a: &mut [f64],
    ld: usize,
    c: usize,
    r0: usize,
    r1: usize,
    c_last: usize,
    v: &mut [f64],
) {
    if r1 <= r0 + 1 {
        return;
    }
    let tau = column_reflector(a, ld, c, r0, r1, v);
    if tau != 0.0 {
        apply_left(a, ld, r0, &v[..r1 - r0], tau, c + 1..c_last + 1);
    }
}

/// Right reflector on columns c0..c1 of row r, annihilating its entries right of column c0,
/// applied to rows r+1..=r_last.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn reflect_row(
    a: &mut [f64],
    ld: usize,
    r: usize,
    c0: usize,
    c1: usize,
    r_last: usize,
    v: &mut [f64],
    w: &mut [f64],
) {
    if c1 <= c0 + 1 {
        return;
    }
    let len = c1 - c0;
    let v = &mut v[..len];
    for (k, x) in v.iter_mut().enumerate() {
        *x = a[r + (c0 + k) * ld];
    }
    let (tau, beta) = householder(v);
    a[r + c0 * ld] = beta;
    for k in 1..len {
        a[r + (c0 + k) * ld] = 0.0;
    }
    if tau != 0.0 && r_last > r {
        apply_right(a, ld, r + 1..r_last + 1, c0, v, tau, w);
    }
}

/// Reduces the upper band matrix of width `b` in the leading n x n block of `a` (zero below
/// the diagonal) to upper bidiagonal form by bulge chasing: sweep i makes row i bidiagonal by
/// one right reflector, then chases the bulge down the band, a left reflector annihilating
/// the first column of each bulge and a right reflector the part of a row outside the band.
/// The rest of each bulge lies in the next sweep's path and is annihilated there.
#[inline(always)]
fn band_to_bidiagonal(a: &mut [f64], ld: usize, n: usize, b: usize) {
    if n < 2 {
        return;
    }
    let mut v = vec![0.0; b + 1];
    let mut w = vec![0.0; 2 * b + 1];
    for i in 0..n - 1 {
        let c1 = (i + b).min(n - 1) + 1;
        reflect_row(a, ld, i, i + 1, c1, (i + b).min(n - 1), &mut v, &mut w);
        let mut j = i + 1;
        loop {
            let r1 = (j + b).min(n);
            if r1 <= j + 1 {
                break;
            }
            reflect_col(a, ld, j, j, r1, (j + 2 * b - 1).min(n - 1), &mut v);
            let (c0, c1) = (j + b, (j + 2 * b).min(n));
            if c1 <= c0 + 1 {
                break;
            }
            reflect_row(a, ld, j, c0, c1, (j + 2 * b - 1).min(n - 1), &mut v, &mut w);
            j += b;
        }
    }
}

/// Householder QR, unblocked, of the `p x k` panel (column-major, leading dimension `ld`,
/// p >= 1): R in its upper triangle, the reflectors' vectors (unit first entry implicit)
/// below it, their coefficients in `tau`.
#[inline(always)]
pub(super) fn panel_qr(panel: &mut [f64], ld: usize, p: usize, k: usize, tau: &mut [f64]) {
    for j in 0..k.min(p) {
        let (left, right) = panel.split_at_mut(((j + 1) * ld).min(panel.len()));
        let col = &mut left[j * ld + j..j * ld + p];
        // tau = 0 leaves the column as it was (nothing to annihilate).
        let (t, beta) = householder(col);
        tau[j] = t;
        if t == 0.0 {
            continue;
        }
        for c in 0..k - j - 1 {
            let other = &mut right[c * ld + j..c * ld + p];
            let s = dot(col, other);
            axpy(-t * s, col, other);
        }
        col[0] = beta;
    }
}

/// Copies the reflectors of a factored panel into `v` (p x k, unit lower trapezoidal,
/// explicit), zeroes them in the panel, and forms the upper triangular T of
/// `H_0 H_1 ... H_{k-1} = I - V T Vᵀ` (LAPACK's `dlarft`, forward, columnwise).
#[allow(clippy::too_many_arguments)]
pub(super) fn take_reflectors(
    panel: &mut [f64],
    ld: usize,
    p: usize,
    k: usize,
    tau: &[f64],
    v: &mut [f64],
    t: &mut [f64],
    par: Par,
) {
    let k = k.min(p);
    for j in 0..k {
        let dst = &mut v[j * p..(j + 1) * p];
        dst[..j].fill(0.0);
        dst[j] = 1.0;
        dst[j + 1..].copy_from_slice(&panel[j * ld + j + 1..j * ld + p]);
        panel[j * ld + j + 1..j * ld + p].fill(0.0);
    }
    // VᵀV, then T column by column: T[..j, j] = -tau_j T[..j, ..j] (Vᵀ v_j)[..j].
    let vv = MatRef::from_column_major_slice(&v[..p * k], p, k);
    let mut g = vec![0.0; k * k];
    matmul(
        MatMut::from_column_major_slice_mut(&mut g, k, k),
        Accum::Replace,
        vv.transpose(),
        vv,
        1.0,
        par,
    );
    t[..k * k].fill(0.0);
    for j in 0..k {
        t[j + j * k] = tau[j];
        for i in 0..j {
            let mut s = 0.0;
            for l in i..j {
                s += t[i + l * k] * g[l + j * k];
            }
            t[i + j * k] = -tau[j] * s;
        }
    }
}

/// Reduces the m x n (m >= n) matrix to upper band form of width `b`: the leading n x n block
/// holds the band, everything else is zero.
#[inline(always)]
fn dense_to_band(a: &mut ColMajor, b: usize, par: Par) {
    let (m, n, ld) = (a.rows, a.cols, a.ld);
    let mut tau = vec![0.0; b];
    let mut v = vec![0.0; m.max(n) * b];
    let mut t = vec![0.0; b * b];
    let mut w = vec![0.0; m.max(n) * b];
    let mut w2 = vec![0.0; m.max(n) * b];
    let mut p_buf = vec![0.0; n * b];
    let mut k = 0;
    while k < n {
        let kb = b.min(n - k);
        // Left: QR of the column panel, Qᵀ applied to the columns right of it.
        let p = m - k;
        let off = k + k * ld;
        panel_qr(&mut a.data[off..], ld, p, kb, &mut tau);
        take_reflectors(&mut a.data[off..], ld, p, kb, &tau, &mut v, &mut t, par);
        let rest = n - k - kb;
        let kk = kb.min(p);
        if rest > 0 {
            let vm = MatRef::from_column_major_slice(&v[..p * kk], p, kk);
            let tm = MatRef::from_column_major_slice(&t[..kk * kk], kk, kk);
            let mut c = a.view_mut().submatrix_mut(k, k + kb, p, rest);
            let mut wm = MatMut::from_column_major_slice_mut(&mut w[..kk * rest], kk, rest);
            matmul(
                wm.rb_mut(),
                Accum::Replace,
                vm.transpose(),
                c.rb(),
                1.0,
                par,
            );
            let mut w2m = MatMut::from_column_major_slice_mut(&mut w2[..kk * rest], kk, rest);
            matmul(
                w2m.rb_mut(),
                Accum::Replace,
                tm.transpose(),
                wm.rb(),
                1.0,
                par,
            );
            matmul(c.rb_mut(), Accum::Add, vm, w2m.rb(), -1.0, par);
        } else {
            break;
        }
        // Right: LQ of the row panel (QR of its transpose), Q applied to the rows below it.
        let q = rest;
        let lk = kb.min(q);
        for r in 0..kb {
            for c in 0..q {
                p_buf[c + r * q] = a.data[(k + r) + (k + kb + c) * ld];
            }
        }
        panel_qr(&mut p_buf, q, q, kb, &mut tau);
        for r in 0..kb {
            for c in 0..q {
                // Rᵀ: row r of the row panel is column r of R, zero below its diagonal.
                a.data[(k + r) + (k + kb + c) * ld] = if c <= r { p_buf[c + r * q] } else { 0.0 };
            }
        }
        take_reflectors(&mut p_buf, q, q, kb, &tau, &mut v, &mut t, par);
        let below = m - k - kb;
        if below > 0 {
            let vm = MatRef::from_column_major_slice(&v[..q * lk], q, lk);
            let tm = MatRef::from_column_major_slice(&t[..lk * lk], lk, lk);
            let mut c = a.view_mut().submatrix_mut(k + kb, k + kb, below, q);
            let mut wm = MatMut::from_column_major_slice_mut(&mut w[..below * lk], below, lk);
            matmul(wm.rb_mut(), Accum::Replace, c.rb(), vm, 1.0, par);
            let mut w2m = MatMut::from_column_major_slice_mut(&mut w2[..below * lk], below, lk);
            matmul(w2m.rb_mut(), Accum::Replace, wm.rb(), tm, 1.0, par);
            matmul(c.rb_mut(), Accum::Add, w2m.rb(), vm.transpose(), -1.0, par);
        }
        k += kb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> ColMajor {
        let mut a = ColMajor::zeros(rows, cols);
        for j in 0..cols {
            for i in 0..rows {
                a.set(i, j, f(i, j));
            }
        }
        a
    }

    fn reference(a: &ColMajor) -> Vec<f64> {
        let s = a.as_ref().singular_values().unwrap();
        let mut s: Vec<f64> = s.into_iter().collect();
        s.sort_by(|a, b| b.total_cmp(a));
        s
    }

    fn noise(rows: usize, cols: usize, seed: u64) -> ColMajor {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        from_fn(rows, cols, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
    }

    /// `U diag(s) Vᵀ` (rows x cols) with U, V products of three Householder reflectors.
    fn with_values(rows: usize, cols: usize, s: &[f64], seed: u64) -> ColMajor {
        let mut a = from_fn(rows, cols, |i, j| if i == j { s[i] } else { 0.0 });
        for k in 0..3 {
            let u = noise(rows, 1, seed + k);
            let u: Vec<f64> = (0..rows).map(|i| u.data[i]).collect();
            let uu = dot(&u, &u);
            for j in 0..cols {
                let col = &mut a.data[j * a.ld..j * a.ld + rows];
                let t = 2.0 * dot(&u, col) / uu;
                axpy(-t, &u, col);
            }
            let v = noise(cols, 1, seed + 10 + k);
            let v: Vec<f64> = (0..cols).map(|i| v.data[i]).collect();
            let vv = dot(&v, &v);
            for i in 0..rows {
                let t = 2.0 * (0..cols).map(|j| a.data[i + j * a.ld] * v[j]).sum::<f64>() / vv;
                for (j, vj) in v.iter().enumerate() {
                    a.data[i + j * a.ld] -= t * vj;
                }
            }
        }
        a
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "{what}: σ_{i} = {g}, want {w}");
        }
    }

    #[test]
    fn ill_conditioned_and_rank_deficient_matrices_meet_the_f64_contract() {
        // Condition number 1e8 (geometric), exact zeros, a cluster, in both stages' sizes
        // and shapes; the known values are the reference. The contract is 1e-12·σ_1.
        for &(m, n) in &[
            (60, 60),
            (80, 50),
            (50, 80),
            (150, 150),
            (170, 130),
            (130, 170),
        ] {
            let q = m.min(n);
            let mut s: Vec<f64> = (0..q)
                .map(|i| 10f64.powf(-8.0 * i as f64 / (q - 1) as f64))
                .collect();
            for x in s.iter_mut().skip(q - 7) {
                *x = 0.0;
            }
            for x in s.iter_mut().take(5) {
                *x = 1.0;
            }
            let a = with_values(m, n, &s, (m * 7 + n) as u64);
            let got = singular_values(a, Par::Seq).unwrap();
            assert_close(&got, &s, 1e-13, &format!("{m}x{n}"));
        }
    }

    #[test]
    fn scaling_keeps_extreme_magnitudes_finite() {
        for scale in [1e300, 1e-300] {
            let s = [3.0 * scale, 2.0 * scale, scale, 0.0];
            let a = with_values(6, 4, &s, 3);
            let got = singular_values(a, Par::Seq).unwrap();
            assert_close(&got, &s, 1e-13 * s[0], &format!("scale {scale:e}"));
        }
        let mut bad = noise(5, 5, 1);
        bad.set(2, 3, f64::NAN);
        assert!(singular_values(bad, Par::Seq).is_none());
        let mut bad = noise(200, 150, 1);
        bad.set(199, 0, f64::INFINITY);
        assert!(singular_values(bad, Par::Seq).is_none());
        assert_eq!(
            singular_values(ColMajor::zeros(3, 2), Par::Seq),
            Some(vec![0.0, 0.0])
        );
        assert_eq!(
            singular_values(ColMajor::zeros(3, 0), Par::Seq),
            Some(vec![])
        );
    }

    #[test]
    fn bidiagonal_iteration_splits_at_zero_diagonal_entries() {
        // Zeros on the diagonal at the start, inside and at the end (each takes its own
        // rotation path), against faer's SVD of the same dense bidiagonal matrix.
        let n = 12;
        for zeros in [vec![0], vec![5], vec![n - 1], vec![0, 4, 5, n - 1]] {
            let mut d: Vec<f64> = (0..n).map(|i| 1.0 + 0.37 * i as f64).collect();
            let mut e: Vec<f64> = (0..n - 1).map(|i| 0.5 - 0.11 * i as f64).collect();
            for &z in &zeros {
                d[z] = 0.0;
            }
            let dense = from_fn(n, n, |i, j| {
                if i == j {
                    d[i]
                } else if j == i + 1 {
                    e[i]
                } else {
                    0.0
                }
            });
            let want = reference(&dense);
            bidiagonal_values(&mut d, &mut e).unwrap();
            let mut got: Vec<f64> = d.iter().map(|x| x.abs()).collect();
            got.sort_by(|a, b| b.total_cmp(a));
            assert_close(&got, &want, 1e-14 * want[0], &format!("zeros at {zeros:?}"));
        }
    }

    #[test]
    fn agrees_with_faer_on_every_shape() {
        // Both compiled copies: `singular_values` runs the AVX one where the CPU has AVX.
        for &(m, n) in &[
            (1, 1),
            (2, 1),
            (1, 3),
            (5, 5),
            (40, 17),
            (96, 96),
            (97, 97),
            (130, 100),
            (100, 130),
            (200, 97),
            (257, 257),
            (300, 49),
            (49, 300),
        ] {
            let a = noise(m, n, (m * 1000 + n) as u64);
            let want = reference(&a);
            for (copy, svd) in [
                (
                    "dispatched",
                    singular_values as fn(ColMajor, Par) -> Option<Vec<f64>>,
                ),
                ("portable", singular_values_portable),
            ] {
                let got = svd(a.clone(), Par::Seq).unwrap();
                assert_eq!(got.len(), want.len());
                let tol = 1e-13 * want[0];
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= tol, "{copy}, {m}x{n}: {g} vs {w}");
                }
            }
        }
    }
}
