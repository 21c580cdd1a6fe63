//! Adjusted p-values for a family of tests: Holm's step-down and Benjamini-Hochberg's
//! step-up procedure.
//!
//! Both take the raw p-values of one family (in `pipeline run test`, the rows of one
//! hypothesis table written by one run) and return one adjusted p-value per input, in input
//! order; a test is rejected at level alpha when its adjusted p-value is below alpha.
//!
//! - [`holm`] controls the family-wise error rate (the chance of any false rejection) under
//!   any dependence between the tests. With the p-values sorted ascending,
//!   p_(1) <= ... <= p_(m): adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)). This is
//!   `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`.
//! - [`benjamini_hochberg`] controls the false discovery rate (the expected share of false
//!   rejections among the rejections) for independent or positively dependent tests:
//!   adj_(i) = min(1, min_{j >= i} m p_(j) / j). This is
//!   `scipy.stats.false_discovery_control(p, method="bh")`.
//!
//! Ties keep their input order (a stable sort); the adjusted values of tied p-values are
//! equal whatever the order, so the result does not depend on it.

/// Errors of the adjustments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MultiplicityError {
    #[error("p-value {index} of the family is {value}: adjusted p-values need values in [0, 1]")]
    OutOfRange { index: usize, value: f64 },
}

fn check(p: &[f64]) -> Result<Vec<usize>, MultiplicityError> {
    if let Some((index, &value)) = p
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return Err(MultiplicityError::OutOfRange { index, value });
    }
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    Ok(order)
}

/// Holm's step-down adjusted p-values, in input order (see the module documentation).
pub fn holm(p: &[f64]) -> Result<Vec<f64>, MultiplicityError> {
    let order = check(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    Ok(out)
}

/// Benjamini-Hochberg's step-up adjusted p-values, in input order (see the module
/// documentation).
pub fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>, MultiplicityError> {
    let order = check(p)?;
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        out[i] = running.min(1.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_family() {
        // Sorted 0.01, 0.02, 0.03, 0.5 (input order shuffled). Holm: 4*0.01 = 0.04,
        // max(0.04, 3*0.02 = 0.06), max(0.06, 2*0.03 = 0.06), max(0.06, 0.5) -> 0.04, 0.06,
        // 0.06, 0.5. BH: 0.5*4/4 = 0.5, 0.03*4/3 = 0.04, min(0.04, 0.02*4/2 = 0.04),
        // min(0.04, 0.01*4) -> 0.04, 0.04, 0.04, 0.5.
        let p = [0.03, 0.5, 0.01, 0.02];
        let h = holm(&p).unwrap();
        let want = [0.06, 0.5, 0.04, 0.06];
        for (g, w) in h.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{h:?}");
        }
        let b = benjamini_hochberg(&p).unwrap();
        let want = [0.04, 0.5, 0.04, 0.04];
        for (g, w) in b.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{b:?}");
        }
    }

    #[test]
    fn empty_family_and_bad_values() {
        assert_eq!(holm(&[]).unwrap(), Vec::<f64>::new());
        let err = benjamini_hochberg(&[0.1, f64::NAN]).unwrap_err();
        assert!(matches!(
            err,
            MultiplicityError::OutOfRange { index: 1, .. }
        ));
        assert!(err.to_string().contains("NaN"), "{err}");
        assert!(holm(&[1.5]).is_err());
    }
}
