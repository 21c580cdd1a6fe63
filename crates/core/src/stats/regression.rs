//! The size-controlled lab test: ordinary least squares of a per-model metric on size
//! covariates and a lab indicator, a Freedman-Lane permutation test of the lab effect, and a
//! residual-bootstrap confidence interval for the lab coefficient.
//!
//! # Model
//!
//! y_i = b_0 + sum_k c_k z_ik + beta a_i + e_i, where y_i is one model's metric (its mean over
//! layers), z_ik its size covariates and a_i = 1 when the model is in group A, else 0. beta is
//! the lab effect: how much larger group A's metric is than group B's at equal size. The fit is
//! a Householder QR least-squares solve (as LAPACK's `dgels`); standard errors are
//! sqrt(s^2 [(X'X)^-1]_jj) with s^2 = RSS / (n - p), as statsmodels' `OLS(...).fit()` reports them.
//!
//! Candidate covariates are added in the order given and kept only when the design stays of
//! full column rank (a covariate constant over the models, or a linear combination of the
//! intercept, the lab indicator and the covariates already kept, is left out) and at least
//! [`MIN_RESIDUAL_DF`] residual degrees of freedom remain. [`SizeControlled::covariates`]
//! names the ones used.
//!
//! # Freedman-Lane permutation test
//!
//! Freedman & Lane (1983), as recommended by Anderson & Legendre (1999) and Winkler et al.
//! (2014, NeuroImage 92:381): fit the reduced model without the lab indicator (y on intercept
//! and covariates), keep its fitted values f and residuals r; for each permutation pi, form
//! y* = f + r_pi, fit the full model to y* and take the t-statistic of beta. The p-value
//! counts the permuted statistics at least as extreme as the observed t, the observed
//! labelling included: p = (count + 1) / (R + 1) over [`PERMUTATIONS`] random permutations
//! drawn with a seeded generator ([`FREEDMAN_LANE_SEED`]; SplitMix64 and a Fisher-Yates
//! shuffle of the residual vector in place, continuing from the previous permutation).
//! "At least as extreme" is t* <= t for `less`, t* >= t for `greater` and |t*| >= |t| for
//! `two-sided`, each with a tolerance of 1e-9 max(1, |t|) so that statistics equal in exact
//! arithmetic count as ties. A permuted fit without residual variance (t* not finite) does not
//! count.
//!
//! # Bootstrap interval
//!
//! A residual bootstrap of the full model (Efron & Tibshirani 1993, section 9.5; the design is
//! fixed, so every resample has a defined lab coefficient, which resampling models could not
//! promise with a handful per lab): y* = fitted + r*, r* drawn with replacement from the full
//! model's raw residuals, [`BOOTSTRAP_RESAMPLES`] times with the seed [`BOOTSTRAP_SEED`]
//! (n draws of an index below n per resample). The interval is the percentile interval of the
//! resampled beta at (1 - level)/2 and (1 + level)/2, with NumPy's default (linear)
//! interpolation between order statistics.

use super::{Alternative, SplitMix64};

/// Random permutations of the Freedman-Lane test.
pub const PERMUTATIONS: u64 = 9_999;

/// Seed of the Freedman-Lane permutations.
pub const FREEDMAN_LANE_SEED: u64 = 0x5EED_F12E_E0AA_0001;

/// Resamples of the residual bootstrap.
pub const BOOTSTRAP_RESAMPLES: u64 = 9_999;

/// Seed of the residual bootstrap.
pub const BOOTSTRAP_SEED: u64 = 0x5EED_B007_0000_0001;

/// The fewest residual degrees of freedom the full model keeps when covariates are chosen.
pub const MIN_RESIDUAL_DF: usize = 2;

/// Relative tolerance of the rank check: a column whose QR diagonal is below this fraction of
/// its norm is a linear combination of the columns before it.
const RANK_TOLERANCE: f64 = 1e-9;

/// Errors of the regression and the size-controlled test.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegressionError {
    #[error("{what} has {got} values, expected {expected} (one per model)")]
    Length {
        what: String,
        got: usize,
        expected: usize,
    },
    #[error("{what}: value {index} is {value}; the regression needs finite values")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    #[error("group {0} has no model: the lab effect needs models in both groups")]
    EmptyGroup(&'static str),
    #[error(
        "{n} models leave fewer than {MIN_RESIDUAL_DF} residual degrees of freedom for intercept and lab: add models"
    )]
    TooFewModels { n: usize },
    #[error("the design matrix is rank deficient (column {column} depends on the ones before it)")]
    RankDeficient { column: String },
    #[error(
        "the full model fits the values exactly (no residual variance): the t-statistic is undefined"
    )]
    NoResidualVariance,
    #[error("confidence level must lie in (0, 1), not {0}")]
    Level(f64),
}

/// A least-squares fit (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Ols {
    pub coefficients: Vec<f64>,
    pub std_errors: Vec<f64>,
    pub t_values: Vec<f64>,
    pub fitted: Vec<f64>,
    pub residuals: Vec<f64>,
    /// n - p.
    pub df_residual: usize,
}

/// The QR factorisation of a fixed design, reused for many right-hand sides.
struct Qr {
    n: usize,
    p: usize,
    /// Householder vectors, one per column (length n, zero above the diagonal).
    v: Vec<Vec<f64>>,
    /// R, row-major p x p (upper triangle).
    r: Vec<f64>,
    /// The diagonal of (R'R)^-1 = (X'X)^-1.
    xtx_inv_diag: Vec<f64>,
}

impl Qr {
    /// Factorises the n x p design given by columns; `names` only label the error.
    fn new(columns: &[Vec<f64>], names: &[String]) -> Result<Qr, RegressionError> {
        let p = columns.len();
        let n = columns.first().map_or(0, Vec::len);
        let mut a: Vec<Vec<f64>> = columns.to_vec();
        let mut v = Vec::with_capacity(p);
        for j in 0..p {
            let original = columns[j].iter().map(|x| x * x).sum::<f64>().sqrt();
            let norm: f64 = a[j]
                .get(j..)
                .unwrap_or(&[])
                .iter()
                .map(|x| x * x)
                .sum::<f64>()
                .sqrt();
            if j >= n || original == 0.0 || norm <= RANK_TOLERANCE * original {
                return Err(RegressionError::RankDeficient {
                    column: names.get(j).cloned().unwrap_or_else(|| j.to_string()),
                });
            }
            let alpha = if a[j][j] > 0.0 { -norm } else { norm };
            let mut h = vec![0.0; n];
            h[j] = a[j][j] - alpha;
            h[j + 1..n].copy_from_slice(&a[j][j + 1..n]);
            let hh: f64 = h.iter().map(|x| x * x).sum();
            for col in a.iter_mut().skip(j) {
                let dot: f64 = h.iter().zip(col.iter()).map(|(x, y)| x * y).sum();
                let f = 2.0 * dot / hh;
                for (c, hv) in col.iter_mut().zip(&h) {
                    *c -= f * hv;
                }
            }
            v.push(h);
        }
        let mut r = vec![0.0; p * p];
        for i in 0..p {
            for j in i..p {
                r[i * p + j] = a[j][i];
            }
        }
        // R^-1 by back substitution, column by column; (X'X)^-1 = R^-1 R^-T.
        let mut rinv = vec![0.0; p * p];
        for c in 0..p {
            for i in (0..=c).rev() {
                let mut s = if i == c { 1.0 } else { 0.0 };
                for k in i + 1..=c {
                    s -= r[i * p + k] * rinv[k * p + c];
                }
                rinv[i * p + c] = s / r[i * p + i];
            }
        }
        let xtx_inv_diag = (0..p)
            .map(|i| (i..p).map(|c| rinv[i * p + c].powi(2)).sum())
            .collect();
        Ok(Qr {
            n,
            p,
            v,
            r,
            xtx_inv_diag,
        })
    }

    /// Coefficients, and the residual sum of squares, for the right-hand side y.
    fn solve(&self, y: &[f64]) -> (Vec<f64>, f64) {
        let (n, p) = (self.n, self.p);
        let mut qty = y.to_vec();
        for h in &self.v {
            let hh: f64 = h.iter().map(|x| x * x).sum();
            let dot: f64 = h.iter().zip(&qty).map(|(x, y)| x * y).sum();
            let f = 2.0 * dot / hh;
            for (q, hv) in qty.iter_mut().zip(h) {
                *q -= f * hv;
            }
        }
        let rss = qty[p..n].iter().map(|x| x * x).sum();
        let mut b = vec![0.0; p];
        for i in (0..p).rev() {
            let row = &self.r[i * p..(i + 1) * p];
            let s = qty[i] - (i + 1..p).map(|k| row[k] * b[k]).sum::<f64>();
            b[i] = s / row[i];
        }
        (b, rss)
    }

    /// The t-statistic of coefficient `j` for the right-hand side y.
    fn t_value(&self, y: &[f64], j: usize) -> f64 {
        let (b, rss) = self.solve(y);
        let s2 = rss / (self.n - self.p) as f64;
        b[j] / (s2 * self.xtx_inv_diag[j]).sqrt()
    }
}

fn fitted(columns: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = columns.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| columns.iter().zip(b).map(|(c, bj)| c[i] * bj).sum())
        .collect()
}

/// Ordinary least squares of `y` on the design given by `columns` (include an intercept
/// column of ones yourself); `names` label the columns in errors.
pub fn ols(columns: &[Vec<f64>], names: &[String], y: &[f64]) -> Result<Ols, RegressionError> {
    for (name, c) in names.iter().zip(columns) {
        check_values(name, c, y.len())?;
    }
    check_values("y", y, y.len())?;
    if y.len() <= columns.len() {
        return Err(RegressionError::TooFewModels { n: y.len() });
    }
    let qr = Qr::new(columns, names)?;
    let (b, rss) = qr.solve(y);
    let df = y.len() - columns.len();
    let s2 = rss / df as f64;
    let se: Vec<f64> = qr.xtx_inv_diag.iter().map(|d| (s2 * d).sqrt()).collect();
    let fit = fitted(columns, &b);
    let residuals = y.iter().zip(&fit).map(|(y, f)| y - f).collect();
    Ok(Ols {
        t_values: b.iter().zip(&se).map(|(b, s)| b / s).collect(),
        coefficients: b,
        std_errors: se,
        fitted: fit,
        residuals,
        df_residual: df,
    })
}

fn check_values(what: &str, v: &[f64], n: usize) -> Result<(), RegressionError> {
    if v.len() != n {
        return Err(RegressionError::Length {
            what: what.to_string(),
            got: v.len(),
            expected: n,
        });
    }
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(RegressionError::NonFinite {
            what: what.to_string(),
            index,
            value,
        });
    }
    Ok(())
}

/// A size covariate: its name (e.g. `log_params`) and one value per model.
#[derive(Debug, Clone, PartialEq)]
pub struct Covariate {
    pub name: String,
    pub values: Vec<f64>,
}

/// The result of [`size_controlled_test`].
#[derive(Debug, Clone, PartialEq)]
pub struct SizeControlled {
    /// The covariates kept in the model, in order.
    pub covariates: Vec<String>,
    /// beta: group A minus group B at equal size covariates.
    pub coefficient: f64,
    pub std_error: f64,
    /// The observed t-statistic of beta.
    pub t_statistic: f64,
    /// The Freedman-Lane permutation p-value for the alternative.
    pub p_value: f64,
    pub permutations: u64,
    /// The percentile bootstrap interval of beta.
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    pub bootstrap_resamples: u64,
    pub df_residual: usize,
}

/// The size-controlled test of the lab effect on `y` (see the module documentation).
/// `in_a[i]` says whether model i is in group A; `candidates` are tried in order.
pub fn size_controlled_test(
    y: &[f64],
    in_a: &[bool],
    candidates: &[Covariate],
    alternative: Alternative,
    ci_level: f64,
) -> Result<SizeControlled, RegressionError> {
    let n = y.len();
    check_values("y", y, n)?;
    if in_a.len() != n {
        return Err(RegressionError::Length {
            what: "group membership".into(),
            got: in_a.len(),
            expected: n,
        });
    }
    for c in candidates {
        check_values(&c.name, &c.values, n)?;
    }
    if !in_a.iter().any(|&a| a) {
        return Err(RegressionError::EmptyGroup("A"));
    }
    if in_a.iter().all(|&a| a) {
        return Err(RegressionError::EmptyGroup("B"));
    }
    if !(ci_level > 0.0 && ci_level < 1.0) {
        return Err(RegressionError::Level(ci_level));
    }
    if n < 2 + MIN_RESIDUAL_DF {
        return Err(RegressionError::TooFewModels { n });
    }

    // Columns: intercept, covariates..., lab (last).
    let lab: Vec<f64> = in_a.iter().map(|&a| if a { 1.0 } else { 0.0 }).collect();
    let mut reduced = vec![vec![1.0; n]];
    let mut names = vec!["intercept".to_string()];
    for c in candidates {
        if n < reduced.len() + 2 + MIN_RESIDUAL_DF {
            break;
        }
        let mut trial = reduced.clone();
        trial.push(c.values.clone());
        trial.push(lab.clone());
        let mut trial_names = names.clone();
        trial_names.push(c.name.clone());
        trial_names.push("lab".into());
        if Qr::new(&trial, &trial_names).is_ok() {
            reduced.push(c.values.clone());
            names.push(c.name.clone());
        }
    }
    let mut full = reduced.clone();
    full.push(lab);
    let mut full_names = names.clone();
    full_names.push("lab".into());
    let j = full.len() - 1;

    let full_qr = Qr::new(&full, &full_names)?;
    let fit = ols(&full, &full_names, y)?;
    let t_obs = fit.t_values[j];
    let mean_y = y.iter().sum::<f64>() / n as f64;
    let tss: f64 = y.iter().map(|v| (v - mean_y).powi(2)).sum();
    let rss: f64 = fit.residuals.iter().map(|r| r * r).sum();
    if !t_obs.is_finite() || rss <= 1e-24 * tss {
        return Err(RegressionError::NoResidualVariance);
    }

    // Freedman-Lane.
    let red = ols(&reduced, &names, y)?;
    let tol = 1e-9 * t_obs.abs().max(1.0);
    let extreme = |t: f64| match alternative {
        Alternative::Less => t <= t_obs + tol,
        Alternative::Greater => t >= t_obs - tol,
        Alternative::TwoSided => t.abs() >= t_obs.abs() - tol,
    };
    let mut rng = SplitMix64(FREEDMAN_LANE_SEED);
    let mut e = red.residuals.clone();
    let mut ystar = vec![0.0; n];
    let mut count = 0u64;
    for _ in 0..PERMUTATIONS {
        for i in (1..n).rev() {
            let k = rng.below(i as u64 + 1) as usize;
            e.swap(i, k);
        }
        for (i, ys) in ystar.iter_mut().enumerate() {
            *ys = red.fitted[i] + e[i];
        }
        let t = full_qr.t_value(&ystar, j);
        if t.is_finite() && extreme(t) {
            count += 1;
        }
    }
    let p_value = (count + 1) as f64 / (PERMUTATIONS + 1) as f64;

    // Residual bootstrap.
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut betas = Vec::with_capacity(BOOTSTRAP_RESAMPLES as usize);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for (i, ys) in ystar.iter_mut().enumerate() {
            let k = rng.below(n as u64) as usize;
            *ys = fit.fitted[i] + fit.residuals[k];
        }
        betas.push(full_qr.solve(&ystar).0[j]);
    }
    betas.sort_by(f64::total_cmp);
    let ci_low = percentile_linear(&betas, (1.0 - ci_level) / 2.0);
    let ci_high = percentile_linear(&betas, (1.0 + ci_level) / 2.0);

    Ok(SizeControlled {
        covariates: names[1..].to_vec(),
        coefficient: fit.coefficients[j],
        std_error: fit.std_errors[j],
        t_statistic: t_obs,
        p_value,
        permutations: PERMUTATIONS,
        ci_low,
        ci_high,
        ci_level,
        bootstrap_resamples: BOOTSTRAP_RESAMPLES,
        df_residual: fit.df_residual,
    })
}

/// The q-quantile of sorted values with NumPy's default (linear) interpolation.
fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("x{i}")).collect()
    }

    #[test]
    fn exact_line_has_known_coefficients() {
        // y = 1 + 2x + small alternating noise: the slope and intercept are close to 2 and 1.
        let x: Vec<f64> = (0..6).map(f64::from).collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, x)| 1.0 + 2.0 * x + if i % 2 == 0 { 0.01 } else { -0.01 })
            .collect();
        let fit = ols(&[vec![1.0; 6], x], &names(2), &y).unwrap();
        assert!((fit.coefficients[1] - 2.0).abs() < 0.01, "{fit:?}");
        assert!((fit.coefficients[0] - 1.0).abs() < 0.02, "{fit:?}");
        assert_eq!(fit.df_residual, 4);
        let sum: f64 = fit.residuals.iter().sum();
        assert!(
            sum.abs() < 1e-12,
            "residuals of a fit with intercept sum to 0"
        );
    }

    #[test]
    fn collinear_covariates_are_left_out() {
        let y = [1.0, 2.0, 1.5, 3.0, 2.5, 4.0, 3.2, 2.2];
        let in_a = [true, true, true, false, false, false, false, false];
        let x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let candidates = [
            Covariate {
                name: "constant".into(),
                values: vec![3.0; 8],
            },
            Covariate {
                name: "x".into(),
                values: x.clone(),
            },
            Covariate {
                name: "2x".into(),
                values: x.iter().map(|v| 2.0 * v).collect(),
            },
        ];
        let r = size_controlled_test(&y, &in_a, &candidates, Alternative::Less, 0.95).unwrap();
        assert_eq!(r.covariates, vec!["x".to_string()]);
        assert_eq!(r.df_residual, 5);
        assert!(
            r.ci_low <= r.coefficient && r.coefficient <= r.ci_high,
            "{r:?}"
        );
        assert!(r.p_value > 0.0 && r.p_value <= 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let y = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            size_controlled_test(&y, &[false; 5], &[], Alternative::Less, 0.95).unwrap_err(),
            RegressionError::EmptyGroup("A")
        );
        assert!(matches!(
            size_controlled_test(&y, &[true, false, false], &[], Alternative::Less, 0.95),
            Err(RegressionError::Length { .. })
        ));
        assert_eq!(
            size_controlled_test(&y[..3], &[true, false, false], &[], Alternative::Less, 0.95)
                .unwrap_err(),
            RegressionError::TooFewModels { n: 3 }
        );
        let mut bad = y.to_vec();
        bad[2] = f64::INFINITY;
        assert!(matches!(
            size_controlled_test(
                &bad,
                &[true, true, false, false, false],
                &[],
                Alternative::Less,
                0.95
            ),
            Err(RegressionError::NonFinite { index: 2, .. })
        ));
        // y equal to the lab indicator: an exact fit.
        assert_eq!(
            size_controlled_test(
                &[1.0, 1.0, 0.0, 0.0, 0.0],
                &[true, true, false, false, false],
                &[],
                Alternative::Less,
                0.95
            )
            .unwrap_err(),
            RegressionError::NoResidualVariance
        );
    }

    #[test]
    fn numpy_linear_percentile() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile_linear(&v, 0.5), 3.0);
        assert_eq!(percentile_linear(&v, 0.125), 1.5);
        assert_eq!(percentile_linear(&v, 1.0), 5.0);
    }
}
