//! Power, said plainly: how many models per group a test would need to detect the observed
//! effect with a given probability.
//!
//! # Method
//!
//! The effect size is Cohen's d of the two groups, (mean_A - mean_B) / s_pooled, with
//! s_pooled^2 = ((n_A - 1) s_A^2 + (n_B - 1) s_B^2) / (n_A + n_B - 2) ([`cohens_d`]).
//! [`t_test_power`] is the power of the two-sample t-test with pooled variance, exactly
//! statsmodels' `TTestIndPower().power(effect_size, nobs1, alpha, ratio, alternative)`
//! (statsmodels 0.15, `statsmodels/stats/power.py`): with n_2 = ratio n_1, df = n_1 + n_2 - 2
//! and noncentrality d sqrt(n_1 n_2 / (n_1 + n_2)), the probability that the noncentral t
//! exceeds the central t's critical value (both tails for `two-sided`, at alpha / 2 each).
//! [`models_per_group_t`] solves it for the (real) n_1 with ratio 1 that gives the wanted
//! power, as `TTestIndPower().solve_power(..., nobs1=None)` does.
//!
//! The study's test is Mann-Whitney's, not the t-test. Its asymptotic relative efficiency
//! against the t-test is 3/pi ~ 0.955 for normal data (Lehmann 1975, *Nonparametrics*,
//! ch. 2; Noether's method), so the Mann-Whitney test needs about pi/3 ~ 1.047 times the
//! t-test's sample: [`PowerStatement::models_per_group`] is ceil(n_t pi / 3). This is the
//! usual planning rule (e.g. G*Power's "A.R.E." option); it is an approximation for
//! non-normal data and for very small groups, and the report says so.
//!
//! # Accuracy
//!
//! The noncentral t CDF is Lenth's algorithm AS 243 (Applied Statistics 38:185, 1989) as R's
//! `pnt` implements it (error bound 1e-12), on statrs' regularised incomplete beta; the central
//! t quantile is found by bisection on statrs' t CDF. The golden test compares with
//! statsmodels/SciPy (Boost's noncentral t) to 1e-9 relative.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::ln_gamma;

use super::Alternative;

/// The power the models-per-group figure is computed for.
pub const TARGET_POWER: f64 = 0.8;

/// The asymptotic relative efficiency of the Mann-Whitney test against the t-test for normal
/// data, 3 / pi.
pub const MWU_ARE_NORMAL: f64 = 3.0 / std::f64::consts::PI;

/// The largest group size searched; beyond it the effect is called undetectable.
pub const MAX_MODELS_PER_GROUP: f64 = 1e9;

/// Cohen's d of `a` against `b` with the pooled standard deviation; `None` when it is
/// undefined (fewer than three values in all, or no variance within the groups).
pub fn cohens_d(a: &[f64], b: &[f64]) -> Option<f64> {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() || a.len() + b.len() < 3 {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let ss = |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>();
    let pooled = ((ss(a, ma) + ss(b, mb)) / (na + nb - 2.0)).sqrt();
    let d = (ma - mb) / pooled;
    (pooled > 0.0 && d.is_finite()).then_some(d)
}

/// P(T <= t) for the noncentral t with `df` degrees of freedom and noncentrality `ncp`
/// (AS 243, as R's `pnt`).
pub fn noncentral_t_cdf(t: f64, df: f64, ncp: f64) -> f64 {
    if df.is_nan() || df <= 0.0 || t.is_nan() || ncp.is_nan() {
        return f64::NAN;
    }
    if ncp == 0.0 {
        return central_t_cdf(t, df);
    }
    if t.is_infinite() {
        return if t < 0.0 { 0.0 } else { 1.0 };
    }
    let (negdel, tt, del) = if t >= 0.0 {
        (false, t, ncp)
    } else {
        if ncp > 40.0 {
            return 0.0;
        }
        (true, -t, -ncp)
    };
    let normal = Normal::standard();
    if df > 4e5 || del * del > 2.0 * std::f64::consts::LN_2 * 1021.0 {
        // Abramowitz & Stegun 26.7.10.
        let s = 1.0 / (4.0 * df);
        let z = (tt * (1.0 - s) - del) / (1.0 + tt * tt * 2.0 * s).sqrt();
        let lower = normal.cdf(z);
        return if negdel { 1.0 - lower } else { lower };
    }
    let x = t * t / (t * t + df);
    let mut tnc = 0.0;
    if x > 0.0 {
        let lambda = del * del;
        let mut p = 0.5 * (-0.5 * lambda).exp();
        if p == 0.0 {
            return if negdel { 1.0 } else { 0.0 };
        }
        let mut q = (2.0 / std::f64::consts::PI).sqrt() * p * del;
        let mut s = 0.5 - p;
        if s < 1e-7 {
            s = -0.5 * (-0.5 * lambda).exp_m1();
        }
        let mut a = 0.5;
        let b = 0.5 * df;
        let rxb = (df / (t * t + df)).powf(b);
        let albeta = 0.5 * std::f64::consts::PI.ln() + ln_gamma(b) - ln_gamma(0.5 + b);
        let mut xodd = beta_reg(a, b, x);
        let mut godd = 2.0 * rxb * (a * x.ln() - albeta).exp();
        let bx = b * x;
        let mut xeven = if bx < f64::EPSILON { bx } else { 1.0 - rxb };
        let mut geven = bx * rxb;
        tnc = p * xodd + q * xeven;
        for it in 1..=1000 {
            a += 1.0;
            xodd -= godd;
            xeven -= geven;
            godd *= x * (a + b - 1.0) / a;
            geven *= x * (a + b - 0.5) / (a + 0.5);
            p *= lambda / (2 * it) as f64;
            q *= lambda / (2 * it + 1) as f64;
            tnc += p * xodd + q * xeven;
            s -= p;
            if s < -1e-10 || (s <= 0.0 && it > 1) {
                break;
            }
            if (2.0 * s * (xodd - godd)).abs() < 1e-12 {
                break;
            }
        }
    }
    tnc += normal.cdf(-del);
    let tnc = tnc.min(1.0);
    if negdel { 1.0 - tnc } else { tnc }
}

fn central_t_cdf(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.cdf(t),
        Err(_) => f64::NAN,
    }
}

/// The t such that P(T > t) = p for the central t with `df` degrees of freedom (SciPy's
/// `t.isf`), by bisection to the last representable bit.
pub fn central_t_isf(p: f64, df: f64) -> f64 {
    let Ok(dist) = StudentsT::new(0.0, 1.0, df) else {
        return f64::NAN;
    };
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (-1.0f64, 1.0f64);
    while dist.sf(lo) < p {
        lo *= 2.0;
    }
    while dist.sf(hi) > p {
        hi *= 2.0;
    }
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if dist.sf(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The power of the pooled-variance two-sample t-test (statsmodels' `TTestIndPower.power`;
/// `Less` is statsmodels' `smaller`, `Greater` its `larger`).
pub fn t_test_power(
    effect_size: f64,
    nobs1: f64,
    ratio: f64,
    alpha: f64,
    alternative: Alternative,
) -> f64 {
    let nobs2 = nobs1 * ratio;
    let df = nobs1 - 1.0 + nobs2 - 1.0;
    let nobs = 1.0 / (1.0 / nobs1 + 1.0 / nobs2);
    let nc = effect_size * nobs.sqrt();
    let alpha_ = if alternative == Alternative::TwoSided {
        alpha / 2.0
    } else {
        alpha
    };
    let mut power = 0.0;
    if alternative != Alternative::Less {
        let crit_upp = central_t_isf(alpha_, df);
        power += 1.0 - noncentral_t_cdf(crit_upp, df, nc);
    }
    if alternative != Alternative::Greater {
        let crit_low = -central_t_isf(alpha_, df);
        power += noncentral_t_cdf(crit_low, df, nc);
    }
    power
}

/// The (real) group size n_1 = n_2 at which the t-test reaches `power` for this effect size
/// (statsmodels' `TTestIndPower().solve_power(effect_size, None, alpha, power, 1,
/// alternative)`); `None` when the effect is zero, points against the one-sided alternative,
/// or needs more than [`MAX_MODELS_PER_GROUP`]. The search starts at 2 models per group (the
/// fewest with a variance); 2.0 is returned when that already suffices.
pub fn models_per_group_t(
    effect_size: f64,
    alpha: f64,
    power: f64,
    alternative: Alternative,
) -> Option<f64> {
    let valid = |x: f64| x > 0.0 && x < 1.0;
    if !effect_size.is_finite() || !valid(alpha) || !valid(power) {
        return None;
    }
    let f = |n: f64| t_test_power(effect_size, n, 1.0, alpha, alternative) - power;
    let (mut lo, mut hi) = (2.0f64, MAX_MODELS_PER_GROUP);
    if f(lo) >= 0.0 {
        return Some(lo);
    }
    if f(hi).is_nan() || f(hi) < 0.0 {
        return None;
    }
    // Bisection on log n (power increases with n for an effect in the tested direction).
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) >= 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi / lo - 1.0 < 1e-13 {
            break;
        }
    }
    Some(0.5 * (lo + hi))
}

/// The power statement of one comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerStatement {
    /// Cohen's d of A against B.
    pub cohens_d: f64,
    /// Models per group for the t-test at [`TARGET_POWER`] (real, as statsmodels solves it).
    pub models_per_group_t: f64,
    /// Models per group for the Mann-Whitney test: ceil(n_t pi / 3).
    pub models_per_group: u64,
}

/// The power statement for the observed groups at level `alpha`; `None` when the effect is
/// undefined, zero, against the alternative or undetectably small.
pub fn power_statement(
    a: &[f64],
    b: &[f64],
    alpha: f64,
    alternative: Alternative,
) -> Option<PowerStatement> {
    let d = cohens_d(a, b)?;
    let n_t = models_per_group_t(d, alpha, TARGET_POWER, alternative)?;
    Some(PowerStatement {
        cohens_d: d,
        models_per_group_t: n_t,
        models_per_group: (n_t / MWU_ARE_NORMAL).ceil() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn central_limits() {
        // ncp = 0 is the central t: symmetric around 0.
        assert!((noncentral_t_cdf(0.0, 5.0, 0.0) - 0.5).abs() < 1e-15);
        // The noncentral t at t = 0 is Phi(-ncp).
        let phi = Normal::standard().cdf(-1.3);
        assert!((noncentral_t_cdf(0.0, 7.0, 1.3) - phi).abs() < 1e-14);
        // Reflection: P(T <= t; ncp) = 1 - P(T <= -t; -ncp).
        let l = noncentral_t_cdf(1.7, 9.0, 0.8);
        let r = noncentral_t_cdf(-1.7, 9.0, -0.8);
        assert!((l + r - 1.0).abs() < 1e-12, "{l} {r}");
    }

    #[test]
    fn quantile_inverts_the_cdf() {
        let t = central_t_isf(0.05, 10.0);
        // t_{0.95, 10} = 1.812461... (tables).
        assert!((t - 1.812_461_122_811_676).abs() < 1e-9, "{t}");
    }

    #[test]
    fn effect_against_the_alternative_has_no_size() {
        assert_eq!(models_per_group_t(0.8, 0.05, 0.8, Alternative::Less), None);
        assert_eq!(
            models_per_group_t(0.0, 0.05, 0.8, Alternative::TwoSided),
            None
        );
        assert!(models_per_group_t(-0.8, 0.05, 0.8, Alternative::Less).is_some());
        assert_eq!(cohens_d(&[1.0, 1.0], &[2.0, 2.0]), None);
    }
}
