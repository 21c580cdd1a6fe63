//! Random-matrix baselines: where a matrix's spectrum would end if its entries were i.i.d.
//! noise of the same overall scale (the Marchenko-Pastur bulk edge), and how far the largest
//! singular value lies beyond it.
//!
//! For an N x M matrix (N >= M) with i.i.d. entries of variance s^2, the eigenvalues of
//! W^T W fill the Marchenko-Pastur bulk up to lambda_+ = s^2 (sqrt(N) + sqrt(M))^2 as N, M
//! grow with M / N fixed (Marchenko & Pastur 1967). The scale s^2 is estimated from the
//! Frobenius norm, s^2 = ||W||_F^2 / (N M) (the entry variance of any matrix with that
//! norm, zero mean assumed). The bulk edge in singular-value units is therefore
//!
//!   `mp_edge` = s (sqrt(N) + sqrt(M)) = ||W||_F (1/sqrt(N) + 1/sqrt(M)),
//!
//! `spectral_norm_over_mp` = sigma_1 / `mp_edge` (1 for noise at large sizes; above 1 means
//! the top direction stands out of the bulk), and
//!
//!   `mp_softrank` = lambda_+ / lambda_max = (`mp_edge` / sigma_1)^2,
//!
//! WeightWatcher 0.7.7's definition (`WeightWatcher.mp_fit` in `weightwatcher/weightwatcher.py`:
//! `mp_softrank = bulk_max / lambda_max` with `bulk_max = (s1 * (1 + 1/np.sqrt(Q)))**2` on
//! eigenvalues rescaled by `Wscale**2 = M / sum(evals)`, Q = N / M). The one difference:
//! WeightWatcher fits s1 (in its rescaled units) to a kernel density estimate of the
//! eigenvalues by a grid search (`RMT_Util.fit_density_with_range`), while here s1 = 1, the
//! Frobenius estimate, which needs no fit and is the same for every backend. The golden test
//! runs WeightWatcher's `mp_fit` with s1 = 1 and checks both values.
//!
//! Only single weight matrices have this baseline. The OV and QK circuits are products of two
//! matrices, whose singular values follow a different law (Fuss-Catalan for products of
//! i.i.d. factors), and their rank is at most d_head: their baseline columns are NaN.

/// The Marchenko-Pastur baseline of one matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MpBaseline {
    /// The bulk edge in singular-value units.
    pub mp_edge: f64,
    /// sigma_1 / `mp_edge`.
    pub spectral_norm_over_mp: f64,
    /// (`mp_edge` / sigma_1)^2.
    pub mp_softrank: f64,
}

impl MpBaseline {
    /// All NaN: no baseline (circuits, empty or invalid spectra).
    pub const NONE: MpBaseline = MpBaseline {
        mp_edge: f64::NAN,
        spectral_norm_over_mp: f64::NAN,
        mp_softrank: f64::NAN,
    };
}

/// The baseline of a `rows x cols` matrix with largest singular value `spectral_norm` and
/// Frobenius norm `frobenius_norm`; [`MpBaseline::NONE`] when a size is zero or a norm is not
/// finite and positive.
pub fn mp_baseline(
    rows: usize,
    cols: usize,
    spectral_norm: f64,
    frobenius_norm: f64,
) -> MpBaseline {
    let valid = |x: f64| x.is_finite() && x > 0.0;
    if rows == 0 || cols == 0 || !valid(spectral_norm) || !valid(frobenius_norm) {
        return MpBaseline::NONE;
    }
    let edge = frobenius_norm * (1.0 / (rows as f64).sqrt() + 1.0 / (cols as f64).sqrt());
    let ratio = spectral_norm / edge;
    MpBaseline {
        mp_edge: edge,
        spectral_norm_over_mp: ratio,
        mp_softrank: 1.0 / (ratio * ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_and_rectangular_edges() {
        // A 4 x 4 matrix with ||W||_F = 4 (s = 1): edge 2 sqrt(4) = 4.
        let b = mp_baseline(4, 4, 2.0, 4.0);
        assert!((b.mp_edge - 4.0).abs() < 1e-15);
        assert!((b.spectral_norm_over_mp - 0.5).abs() < 1e-15);
        assert!((b.mp_softrank - 4.0).abs() < 1e-14);
        // 9 x 1 with ||W||_F = 3 (s = 1): edge sqrt(9) + 1 = 4; symmetric in the shape.
        assert!((mp_baseline(9, 1, 3.0, 3.0).mp_edge - 4.0).abs() < 1e-15);
        assert_eq!(mp_baseline(1, 9, 3.0, 3.0), mp_baseline(9, 1, 3.0, 3.0));
    }

    #[test]
    fn degenerate_inputs_have_no_baseline() {
        assert!(mp_baseline(0, 4, 1.0, 1.0).mp_edge.is_nan());
        assert!(mp_baseline(4, 4, 0.0, 0.0).mp_softrank.is_nan());
        assert!(mp_baseline(4, 4, f64::NAN, 1.0).mp_edge.is_nan());
    }
}
