//! Eigenvalues of a real symmetric tridiagonal matrix, values only, by the root-free QL/QR
//! iteration of Pal, Walker and Kahan (B. N. Parlett, *The Symmetric Eigenvalue Problem*,
//! SIAM 1998, §8.15): the algorithm of LAPACK's `dsterf`, the values-only kernel of `dsyev`.
//!
//! The Gram path of the faer backend tridiagonalises W^T W with faer and hands the tridiagonal
//! matrix to [`eigenvalues`]; faer's own values-only tridiagonal QR spent a third of that
//! path's time (a `hypot` per off-diagonal entry at every sweep), this iteration works on the
//! squared off-diagonal entries and needs one division per entry and sweep and no square root.

/// Unit roundoff of f64, u = 2^-53.
const U: f64 = f64::EPSILON / 2.0;

/// Most sweeps the iteration may spend per eigenvalue before it gives up (LAPACK's `MAXIT`).
const MAX_SWEEPS_PER_VALUE: usize = 30;

/// The eigenvalues, ascending, of the symmetric tridiagonal matrix with diagonal `d` (length
/// n) and off-diagonal `e` (length at least n − 1; destroyed). `None` when an entry is not
/// finite or the iteration did not converge in 30·n sweeps.
pub fn eigenvalues(d: &[f64], e: &mut [f64]) -> Option<Vec<f64>> {
    let n = d.len();
    let mut d = d.to_vec();
    if n <= 1 {
        return d.iter().all(|x| x.is_finite()).then_some(d);
    }
    let e = &mut e[..n - 1];
    if !d.iter().chain(e.iter()).all(|x| x.is_finite()) {
        return None;
    }
    let max_sweeps = MAX_SWEEPS_PER_VALUE * n;
    let mut sweeps = 0usize;
    // Blocks whose entries are out of [SMALL, BIG] in magnitude are scaled by a power of two
    // first, so that squares of the off-diagonal entries neither overflow nor underflow.
    let big = (1.0 / f64::MIN_POSITIVE).sqrt() / 3.0;
    let small = f64::MIN_POSITIVE.sqrt() / (U * U);
    let mut start = 0;
    while start < n {
        if start > 0 {
            e[start - 1] = 0.0;
        }
        // The unreduced block start..=end: split at negligible off-diagonal entries.
        let mut end = start;
        while end + 1 < n {
            if e[end].abs() <= d[end].abs().sqrt() * d[end + 1].abs().sqrt() * U {
                e[end] = 0.0;
                break;
            }
            end += 1;
        }
        let (block_start, block_end) = (start, end);
        start = end + 1;
        if block_end == block_start {
            continue;
        }
        let norm = d[block_start..=block_end]
            .iter()
            .chain(&e[block_start..block_end])
            .fold(0.0f64, |a, x| a.max(x.abs()));
        if norm == 0.0 {
            continue;
        }
        let scale = if norm > big {
            pow2_at_most(big / norm)
        } else if norm < small {
            pow2_at_most(small / norm)
        } else {
            1.0
        };
        for x in d[block_start..=block_end].iter_mut() {
            *x *= scale;
        }
        for x in e[block_start..block_end].iter_mut() {
            *x *= scale;
            *x *= *x;
        }
        // QL deflates from the top, so it should start where the diagonal entry is the
        // smaller; when that is the bottom, QR is wanted, and QR on the block is QL on the
        // block reversed (the same operations, mirrored). The eigenvalues are sorted at the end
        // and `e` is destroyed, so nothing needs reversing back.
        if d[block_end].abs() < d[block_start].abs() {
            d[block_start..=block_end].reverse();
            e[block_start..block_end].reverse();
        }
        let converged = sweep_ql(&mut d, e, block_start, block_end, &mut sweeps, max_sweeps);
        for x in d[block_start..=block_end].iter_mut() {
            *x /= scale;
        }
        if !converged {
            return None;
        }
    }
    d.sort_by(f64::total_cmp);
    d.iter().all(|x| x.is_finite()).then_some(d)
}

/// The largest power of two not above `x` (x > 0, finite, normal).
fn pow2_at_most(x: f64) -> f64 {
    f64::from_bits(x.to_bits() & 0xfff0_0000_0000_0000)
}

/// The root-free QL iteration on the block lo..=hi, whose off-diagonal entries `e` are
/// squared; deflates from the top. False when the sweep budget ran out.
fn sweep_ql(
    d: &mut [f64],
    e: &mut [f64],
    lo: usize,
    hi: usize,
    sweeps: &mut usize,
    max_sweeps: usize,
) -> bool {
    let mut l = lo;
    while l <= hi {
        // Deflate at the first negligible off-diagonal entry below l.
        let mut m = l;
        while m < hi && e[m].abs() > U * U * (d[m] * d[m + 1]).abs() {
            m += 1;
        }
        if m < hi {
            e[m] = 0.0;
        }
        if m == l {
            l += 1;
            continue;
        }
        if m == l + 1 {
            let (a, b) = eigenvalues_2x2(d[l], e[l].sqrt(), d[l + 1]);
            d[l] = a;
            d[l + 1] = b;
            e[l] = 0.0;
            l += 2;
            continue;
        }
        if *sweeps == max_sweeps {
            return false;
        }
        *sweeps += 1;
        let p = d[l];
        let shift = wilkinson_shift(p, e[l].sqrt(), d[l + 1]);
        let mut c = 1.0;
        let mut s = 0.0;
        let mut gamma = d[m] - shift;
        let mut pp = gamma * gamma;
        for i in (l..m).rev() {
            let bb = e[i];
            let r = pp + bb;
            if i != m - 1 {
                e[i + 1] = s * r;
            }
            let old_c = c;
            c = pp / r;
            s = bb / r;
            // γ²/c as γ²·(r/pp): this quotient is formed beside c's, off the chain of
            // dependent operations from one step to the next (one division on it, not two).
            let r_over_pp = r / pp;
            let old_gamma = gamma;
            let alpha = d[i];
            gamma = c * (alpha - shift) - s * old_gamma;
            d[i + 1] = old_gamma + (alpha - gamma);
            pp = if c == 0.0 {
                old_c * bb
            } else if r_over_pp <= f64::MAX {
                gamma * gamma * r_over_pp
            } else {
                // pp/r near underflow (c subnormal): the quotient overflowed.
                gamma * gamma / c
            };
        }
        e[l] = s * pp;
        d[l] = shift + gamma;
    }
    true
}

/// The eigenvalue of [[p, b], [b, q]] nearer to p (Wilkinson's shift), b > 0.
fn wilkinson_shift(p: f64, b: f64, q: f64) -> f64 {
    let sigma = (q - p) / (2.0 * b);
    let r = sigma.hypot(1.0);
    p - b / (sigma + r.copysign(sigma))
}

/// Both eigenvalues of [[a, b], [b, c]], the larger in magnitude first, without cancellation
/// in the smaller.
fn eigenvalues_2x2(a: f64, b: f64, c: f64) -> (f64, f64) {
    let sum = a + c;
    let rt = (a - c).hypot(2.0 * b);
    let (big, small) = if a.abs() > c.abs() { (a, c) } else { (c, a) };
    if sum == 0.0 {
        return (0.5 * rt, -0.5 * rt);
    }
    let first = 0.5 * (sum + rt.copysign(sum));
    // det = a·c − b², formed as (big/first)·small − (b/first)·b.
    let second = (big / first) * small - (b / first) * b;
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eigenvalues of the tridiagonal matrix by faer's dense symmetric eigensolver.
    fn dense_reference(d: &[f64], e: &[f64]) -> Vec<f64> {
        let n = d.len();
        let m = faer::Mat::<f64>::from_fn(n, n, |i, j| {
            if i == j {
                d[i]
            } else if i == j + 1 {
                e[j]
            } else if j == i + 1 {
                e[i]
            } else {
                0.0
            }
        });
        let mut v: Vec<f64> = m
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .expect("faer converges");
        v.sort_by(f64::total_cmp);
        v
    }

    fn check(d: &[f64], e: &[f64], tol: f64) {
        let mut ee = e.to_vec();
        let got = eigenvalues(d, &mut ee).expect("converges");
        let want = dense_reference(d, e);
        let norm = want.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(1e-300);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tol * norm,
                "{g} against {w} (norm {norm}) for d = {d:?}, e = {e:?}"
            );
        }
        assert_eq!(got.len(), d.len());
    }

    use super::super::test_stream as stream;

    #[test]
    fn matches_a_dense_eigensolver_on_random_matrices() {
        for (seed, n) in [(1u64, 1usize), (2, 2), (3, 3), (4, 10), (5, 64), (6, 257)] {
            let mut r = stream(seed);
            let d: Vec<f64> = (0..n).map(|_| r()).collect();
            let e: Vec<f64> = (0..n.saturating_sub(1)).map(|_| r()).collect();
            check(&d, &e, 1e-13);
        }
    }

    #[test]
    fn matches_the_closed_form_of_toeplitz_matrices() {
        // diag a, off-diagonal b: λ_k = a + 2b·cos(kπ/(n+1)), k = 1..n.
        for (n, a, b) in [(5usize, 2.0, -1.0), (100, 0.0, 1.0), (1000, 3.0, 0.5)] {
            let mut e = vec![b; n - 1];
            let got = eigenvalues(&vec![a; n], &mut e).expect("converges");
            let mut want: Vec<f64> = (1..=n)
                .map(|k| a + 2.0 * b * (k as f64 * std::f64::consts::PI / (n + 1) as f64).cos())
                .collect();
            want.sort_by(f64::total_cmp);
            let norm = a.abs() + 2.0 * b.abs();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-14 * n as f64 * norm,
                    "n = {n}: {g} against {w}"
                );
            }
        }
    }

    #[test]
    fn handles_splits_zeros_and_repeated_values() {
        // Exact zeros on the off-diagonal split the matrix; zero diagonal; a repeated value.
        check(&[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 0.0], 1e-14);
        check(&[0.0; 6], &[1.0; 5], 1e-14);
        check(&[2.0; 5], &[0.0; 4], 0.0);
        check(&[0.0; 5], &[0.0; 4], 0.0);
        // The Golub–Kahan form of a bidiagonal matrix with an exact zero singular value.
        check(&[0.0; 6], &[3.0, 1.0, 0.0, 2.0, 1e-30], 1e-14);
        // Graded: entries from 1 down to 1e-12 (the QR direction is taken).
        let d: Vec<f64> = (0..8).map(|i| 10f64.powi(-i)).collect();
        let e: Vec<f64> = (0..7).map(|i| 0.5 * 10f64.powi(-i)).collect();
        check(&d, &e, 1e-14);
        let dr: Vec<f64> = d.iter().rev().copied().collect();
        let er: Vec<f64> = e.iter().rev().copied().collect();
        check(&dr, &er, 1e-14);
    }

    #[test]
    fn scales_entries_near_overflow_and_underflow() {
        for scale in [1e200, 1e-200, 1e300, 1e-300] {
            let d: Vec<f64> = [1.0, -2.0, 3.0, 0.5].iter().map(|x| x * scale).collect();
            let e: Vec<f64> = [1.0, 0.25, 2.0].iter().map(|x| x * scale).collect();
            let mut ee = e.clone();
            let got = eigenvalues(&d, &mut ee).expect("converges");
            let unit: Vec<f64> = d.iter().map(|x| x / scale).collect();
            let ue: Vec<f64> = e.iter().map(|x| x / scale).collect();
            let want = dense_reference(&unit, &ue);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g / scale - w).abs() <= 1e-13 * 3.0,
                    "{g} against {w}·{scale}"
                );
            }
        }
    }

    #[test]
    fn refuses_non_finite_entries() {
        assert!(eigenvalues(&[1.0, f64::NAN], &mut [1.0]).is_none());
        assert!(eigenvalues(&[1.0, 2.0], &mut [f64::INFINITY]).is_none());
        assert!(eigenvalues(&[f64::INFINITY], &mut []).is_none());
        assert_eq!(eigenvalues(&[], &mut []), Some(vec![]));
    }
}
