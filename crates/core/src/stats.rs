//! Two-sample tests for the study's hypothesis (group A's metric tends to be smaller than
//! group B's): the Mann-Whitney U test, an exact permutation test on the difference of
//! means, and the rank-biserial correlation as effect size.
//!
//! Every p-value reproduces SciPy 1.17 (the seed notebook called
//! `scipy.stats.mannwhitneyu(a, b, alternative='less')`); `scripts/fixtures/make_stats_golden.py`
//! writes the reference values in `tests/fixtures/stats/`.
//!
//! # Mann-Whitney U
//!
//! `u_a` is U of group A: the number of pairs (a_i, b_j) with a_i > b_j, ties counting one
//! half (SciPy's `statistic`, computed from the midranks as R_A - n_A (n_A + 1) / 2).
//! The alternative speaks of group A: [`Alternative::Less`] means A tends to be smaller than
//! B. The p-value method follows SciPy's `method='auto'`: the exact null distribution when
//! the data have no ties and at least one group has at most 8 values, otherwise the normal
//! approximation with tie correction and continuity correction.
//!
//! statrs 0.19's `stats_tests::mannwhitneyu` gives U (used here), but differs from SciPy in
//! ways that matter for this study, so the p-values are computed here:
//! - its exact p-value is wrong whenever `x` is not the larger sample
//!   (n_x <= n_y): it returns 1 - P(U >= u) instead of P(U >= u). For the seed's design,
//!   3 EleutherAI models against 4 others with every A value below every B value, it
//!   reports p = 34/35 for `Less` where SciPy reports 1/35;
//! - its exact path enumerates all C(n_x + n_y, min) subsets, which explodes for a small
//!   sample against a large one (SciPy counts with a recurrence; so does this module);
//! - its normal approximation returns 1 - cdf(z), which loses all precision below about
//!   1e-16 (it returns 0 where SciPy returns e.g. 1e-20); this module uses the survival
//!   function directly, as SciPy does (statrs' erfc then agrees with SciPy's Cephes `ndtr`
//!   to about 4e-11 relative).
//!
//! # Rank-biserial correlation
//!
//! r = 2 U_A / (n_A n_B) - 1 = P(A > B) - P(A < B) over all pairs (ties count in neither).
//! It lies in [-1, 1]; it is positive when group A tends to be larger, negative when A tends
//! to be smaller (so the study's hypothesis predicts r < 0), and -1 when every A value lies
//! below every B value.
//!
//! # Permutation test
//!
//! [`permutation_test_mean_diff`] reproduces
//! `scipy.stats.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis) - np.mean(y, axis),
//! permutation_type='independent', vectorized=True, n_resamples=np.inf, alternative=...)`:
//! every one of the C(n_A + n_B, n_A) relabelings is enumerated, the observed labelling
//! among them (it counts), and a relabeled statistic counts as at least as extreme when it is
//! within SciPy's tolerance 100 eps |observed| of the observed one (so theoretically equal
//! statistics that differ in the last bits count as ties). Means are summed in NumPy's
//! pairwise order so that the statistics are bit-for-bit the ones SciPy compares. Above
//! [`EXACT_PERMUTATION_LIMIT`] relabelings the test is a seeded Monte Carlo over
//! [`MONTE_CARLO_RESAMPLES`] random relabelings with SciPy's p = (count + 1) / (R + 1); the
//! result says which was done. (SciPy's own default, `n_resamples=9999`, switches to Monte
//! Carlo above 9,999 relabelings; with the exact enumeration up to a million, this module
//! agrees with it wherever SciPy is exact.)

pub mod multiplicity;
pub mod power;
pub mod regression;

use std::fmt;
use std::str::FromStr;

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::stats_tests::mannwhitneyu::{MannWhitneyUMethod, mannwhitneyu};

/// Errors of the two-sample tests. Callers add which metric and matrix kind they tested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("group {group} is empty: a two-sample test needs at least one value in each group")]
    EmptyGroup { group: Group },
    #[error("value {index} of group {group} is {value}: the tests need finite values")]
    NonFinite {
        group: Group,
        index: usize,
        value: f64,
    },
    #[error("unknown alternative `{0}` (expected less, greater or two-sided)")]
    UnknownAlternative(String),
}

/// Which of the two samples a value or an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    A,
    B,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::A => "A",
            Group::B => "B",
        })
    }
}

/// The alternative hypothesis, always about group A relative to group B. Serialised in
/// SciPy's spelling (`less`, `greater`, `two-sided`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alternative {
    /// A tends to be smaller than B (the seed's H1: EleutherAI < Others).
    #[default]
    Less,
    /// A tends to be larger than B.
    Greater,
    /// A and B differ in either direction.
    TwoSided,
}

impl Alternative {
    /// SciPy's spelling: `less`, `greater`, `two-sided`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alternative::Less => "less",
            Alternative::Greater => "greater",
            Alternative::TwoSided => "two-sided",
        }
    }

    /// The relation H1 states between A and B: `<`, `>` or `!=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Alternative::Less => "<",
            Alternative::Greater => ">",
            Alternative::TwoSided => "!=",
        }
    }

    fn statrs(self) -> statrs::stats_tests::Alternative {
        match self {
            Alternative::Less => statrs::stats_tests::Alternative::Less,
            Alternative::Greater => statrs::stats_tests::Alternative::Greater,
            Alternative::TwoSided => statrs::stats_tests::Alternative::TwoSided,
        }
    }
}

impl fmt::Display for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Alternative {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Read with [`FromStr`]'s rules, so a pipeline file and a JSON plan accept the same names.
impl<'de> serde::Deserialize<'de> for Alternative {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Alternative, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Alternative {
    type Err = StatsError;

    /// Accepts SciPy's spellings and `two_sided`/`twosided`.
    fn from_str(s: &str) -> Result<Self, StatsError> {
        match s.to_ascii_lowercase().as_str() {
            "less" => Ok(Alternative::Less),
            "greater" => Ok(Alternative::Greater),
            "two-sided" | "two_sided" | "twosided" => Ok(Alternative::TwoSided),
            _ => Err(StatsError::UnknownAlternative(s.to_string())),
        }
    }
}

/// How a Mann-Whitney p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MwuMethod {
    /// The exact null distribution of U (no ties, one group of at most 8).
    Exact,
    /// The normal approximation with tie and continuity correction.
    Asymptotic,
}

impl MwuMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MwuMethod::Exact => "exact",
            MwuMethod::Asymptotic => "asymptotic",
        }
    }
}

/// The result of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of group A: pairs with a > b, ties counting one half.
    pub u_a: f64,
    /// The p-value for the requested alternative.
    pub p_value: f64,
    /// The two-sided p-value, whatever the requested alternative.
    pub p_two_sided: f64,
    /// 2 U_A / (n_A n_B) - 1: negative when A tends to be smaller.
    pub rank_biserial: f64,
    pub method: MwuMethod,
}

/// The largest exact null distribution computed, in cells n_A n_B + 1 (a small group
/// against several million values); beyond it the normal approximation is used even where
/// SciPy would still be exact.
const EXACT_MWU_MAX_CELLS: usize = 50_000_000;

fn validate(a: &[f64], b: &[f64]) -> Result<(), StatsError> {
    for (group, values) in [(Group::A, a), (Group::B, b)] {
        if values.is_empty() {
            return Err(StatsError::EmptyGroup { group });
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFinite {
                group,
                index,
                value,
            });
        }
    }
    Ok(())
}

/// The Mann-Whitney U test of `a` against `b` (see the module documentation for U, the
/// method choice and the alternative).
pub fn mann_whitney(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
) -> Result<MannWhitney, StatsError> {
    validate(a, b)?;
    let (n1, n2) = (a.len(), b.len());
    // U of x from statrs: its ranking uses midranks for ties, as SciPy's does. Its p-value
    // is not used (see the module documentation). statrs fails only for an empty or
    // incomparable (NaN) sample, both rejected above.
    let (u_a, _) = mannwhitneyu(
        a,
        b,
        MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
        alternative.statrs(),
    )
    .map_err(|_| StatsError::EmptyGroup {
        group: if a.is_empty() { Group::A } else { Group::B },
    })?;

    let tie_counts = tie_counts(a, b);
    let ties = tie_counts.iter().any(|&t| t > 1);
    let cells = n1.saturating_mul(n2).saturating_add(1);
    let method = if (n1 > 8 && n2 > 8) || ties || cells > EXACT_MWU_MAX_CELLS {
        MwuMethod::Asymptotic
    } else {
        MwuMethod::Exact
    };
    let exact = (method == MwuMethod::Exact).then(|| UNullDistribution::new(n1, n2));
    let p_for = |alt: Alternative| -> f64 {
        let mn = (n1 * n2) as f64;
        let (u, factor) = match alt {
            Alternative::Greater => (u_a, 1.0),
            Alternative::Less => (mn - u_a, 1.0),
            Alternative::TwoSided => (u_a.max(mn - u_a), 2.0),
        };
        let sf = match &exact {
            Some(dist) => dist.sf(u),
            None => asymptotic_sf(u, n1, n2, &tie_counts),
        };
        (sf * factor).clamp(0.0, 1.0)
    };
    Ok(MannWhitney {
        u_a,
        p_value: p_for(alternative),
        p_two_sided: p_for(Alternative::TwoSided),
        rank_biserial: rank_biserial(u_a, n1, n2),
        method,
    })
}

/// r = 2 U_A / (n_A n_B) - 1 (see the module documentation for the sign).
pub fn rank_biserial(u_a: f64, n_a: usize, n_b: usize) -> f64 {
    2.0 * u_a / (n_a as f64 * n_b as f64) - 1.0
}

/// The smallest one-sided p-value the exact Mann-Whitney test can reach with these group
/// sizes: 1 / C(n_A + n_B, n_A) (1/35 for 3 against 4). `None` when a group is empty.
pub fn smallest_exact_p(n_a: usize, n_b: usize) -> Option<f64> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    Some(1.0 / binomial(n_a + n_b, n_a))
}

/// C(n, k) as f64 (exact while it is below 2^53).
fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (1..=k).fold(1.0, |acc, i| acc * (n - k + i) as f64 / i as f64)
}

/// The sizes of the groups of equal values in the pooled sample (each at least 1).
fn tie_counts(a: &[f64], b: &[f64]) -> Vec<usize> {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let mut counts = Vec::new();
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        while j < pooled.len() && pooled[j] == pooled[i] {
            j += 1;
        }
        counts.push(j - i);
        i = j;
    }
    counts
}

/// P(U >= u) under the normal approximation with tie correction and continuity correction
/// (SciPy's `_get_mwu_z` and `ndtr(-z)`).
fn asymptotic_sf(u: f64, n1: usize, n2: usize, tie_counts: &[usize]) -> f64 {
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let mu = n1f * n2f / 2.0;
    let tie_term: f64 = tie_counts
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let variance = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let numerator = u - mu - 0.5;
    // All values tied: no variance; z is +-infinity, as in SciPy.
    let z = if variance > 0.0 {
        numerator / variance.sqrt()
    } else if numerator > 0.0 {
        f64::INFINITY
    } else if numerator < 0.0 {
        f64::NEG_INFINITY
    } else {
        f64::NAN
    };
    if z.is_nan() {
        return f64::NAN;
    }
    Normal::standard().sf(z)
}

/// The exact null distribution of U for group sizes m and n (no ties): the coefficients
/// of the Gaussian binomial [m+n choose m]_q, built as the product over i = 1..=k of
/// (1 - q^(n'+i)) / (1 - q^i) with k = min(m, n), n' = max(m, n). Counts are f64, exact
/// while below 2^53 (C(m+n, m) of that size needs samples far beyond this study's).
struct UNullDistribution {
    counts: Vec<f64>,
    total: f64,
}

impl UNullDistribution {
    fn new(m: usize, n: usize) -> UNullDistribution {
        let (k, big) = (m.min(n), m.max(n));
        let len = k * big + 1;
        let mut c = vec![0.0; len];
        c[0] = 1.0;
        for i in 1..=k {
            // Divide by (1 - q^i): prefix sums with stride i, degrees up to i * big.
            let top = i * big;
            for u in i..=top {
                c[u] += c[u - i];
            }
            // Multiply by (1 - q^(big + i)), from the top down.
            let step = big + i;
            for u in (step..=top).rev() {
                c[u] -= c[u - step];
            }
        }
        let total = c.iter().sum();
        UNullDistribution { counts: c, total }
    }

    /// P(U >= u).
    fn sf(&self, u: f64) -> f64 {
        let from = u.ceil().max(0.0) as usize;
        if from >= self.counts.len() {
            return 0.0;
        }
        self.counts[from..].iter().sum::<f64>() / self.total
    }
}

/// The most relabelings [`permutation_test_mean_diff`] enumerates before it switches to
/// Monte Carlo: C(n_A + n_B, n_A) <= 1,000,000 (10 against 10 is 184,756; 12 against 12
/// is 2,704,156).
pub const EXACT_PERMUTATION_LIMIT: u64 = 1_000_000;

/// The number of random relabelings of the Monte Carlo permutation test.
pub const MONTE_CARLO_RESAMPLES: u64 = 99_999;

/// The seed of the Monte Carlo permutation test (its results are reproducible).
pub const MONTE_CARLO_SEED: u64 = 0x5EED_A77E_0000_0001;

/// The result of [`permutation_test_mean_diff`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PermutationTest {
    /// mean(A) - mean(B).
    pub statistic: f64,
    pub p_value: f64,
    /// The number of relabelings compared: all of them when `exact`, else the Monte Carlo
    /// resamples.
    pub resamples: u64,
    pub exact: bool,
}

/// The permutation test of the difference of means, mean(A) - mean(B), over relabelings of
/// the pooled sample into groups of the original sizes (see the module documentation).
pub fn permutation_test_mean_diff(
    a: &[f64],
    b: &[f64],
    alternative: Alternative,
) -> Result<PermutationTest, StatsError> {
    validate(a, b)?;
    let (n_a, n) = (a.len(), a.len() + b.len());
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let observed = numpy_mean(a) - numpy_mean(b);
    let gamma = (100.0 * f64::EPSILON * observed).abs();
    let mut less = 0u64;
    let mut greater = 0u64;
    let mut tally = |stat: f64| {
        if stat <= observed + gamma {
            less += 1;
        }
        if stat >= observed - gamma {
            greater += 1;
        }
    };

    let relabelings = binomial_u64(n, n_a);
    let (resamples, exact) = match relabelings {
        Some(count) if count <= EXACT_PERMUTATION_LIMIT => {
            // Every subset of pooled indices for group A, in itertools.combinations order;
            // each group keeps the pooled order, as SciPy's partitions do.
            let mut chosen: Vec<usize> = (0..n_a).collect();
            let mut xs = Vec::with_capacity(n_a);
            let mut ys = Vec::with_capacity(n - n_a);
            loop {
                xs.clear();
                ys.clear();
                let mut next = 0;
                for (i, &v) in pooled.iter().enumerate() {
                    if next < n_a && chosen[next] == i {
                        xs.push(v);
                        next += 1;
                    } else {
                        ys.push(v);
                    }
                }
                tally(numpy_mean(&xs) - numpy_mean(&ys));
                if !next_combination(&mut chosen, n) {
                    break;
                }
            }
            (count, true)
        }
        _ => {
            let mut rng = SplitMix64(MONTE_CARLO_SEED);
            let mut perm = pooled.clone();
            for _ in 0..MONTE_CARLO_RESAMPLES {
                // Fisher-Yates shuffle; the first n_a values form group A.
                for i in (1..n).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    perm.swap(i, j);
                }
                tally(numpy_mean(&perm[..n_a]) - numpy_mean(&perm[n_a..]));
            }
            (MONTE_CARLO_RESAMPLES, false)
        }
    };
    let adjustment = if exact { 0 } else { 1 };
    let p = |count: u64| (count + adjustment) as f64 / (resamples + adjustment) as f64;
    let p_value = match alternative {
        Alternative::Less => p(less),
        Alternative::Greater => p(greater),
        Alternative::TwoSided => 2.0 * p(less).min(p(greater)),
    };
    Ok(PermutationTest {
        statistic: observed,
        p_value: p_value.clamp(0.0, 1.0),
        resamples,
        exact,
    })
}

/// C(n, k), or `None` when it does not fit in u64.
fn binomial_u64(n: usize, k: usize) -> Option<u64> {
    let k = k.min(n - k) as u128;
    let n = n as u128;
    let mut acc: u128 = 1;
    for i in 1..=k {
        // acc * (n - k + i) / i is exact at every step (it is C(n - k + i, i)).
        acc = acc.checked_mul(n - k + i)? / i;
        if acc > u64::MAX as u128 {
            return None;
        }
    }
    Some(acc as u64)
}

/// Advances `c` (sorted indices into 0..n) to the next k-subset in lexicographic order;
/// `false` after the last one.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    let Some(i) = (0..k).rev().find(|&i| c[i] != i + n - k) else {
        return false;
    };
    c[i] += 1;
    for j in i + 1..k {
        c[j] = c[j - 1] + 1;
    }
    true
}

/// The mean as `numpy.mean` computes it for a contiguous f64 array: NumPy's pairwise sum
/// (blocks of 8 partial sums up to 128 values, halves above), divided by the count.
fn numpy_mean(x: &[f64]) -> f64 {
    numpy_pairwise_sum(x) / x.len() as f64
}

fn numpy_pairwise_sum(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 8 {
        x.iter().fold(0.0, |acc, &v| acc + v)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&x[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += x[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[whole..] {
            res += v;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        numpy_pairwise_sum(&x[..half]) + numpy_pairwise_sum(&x[half..])
    }
}

/// A small deterministic generator (SplitMix64) for the Monte Carlo relabelings.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..bound (bound > 0), without modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let v = self.next();
            if v < zone {
                return v % bound;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_design_smallest_p_is_one_in_35() {
        // Three values all below four others: U_A = 0, exact p = 1/35 (counted by hand: one
        // of the C(7, 3) = 35 equally likely rank sets has U = 0).
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0, 7.0], Alternative::Less).unwrap();
        assert_eq!(r.u_a, 0.0);
        assert_eq!(r.method, MwuMethod::Exact);
        assert!((r.p_value - 1.0 / 35.0).abs() < 1e-15);
        assert!((r.p_two_sided - 2.0 / 35.0).abs() < 1e-15);
        assert_eq!(r.rank_biserial, -1.0);
        assert!((smallest_exact_p(3, 4).unwrap() - 1.0 / 35.0).abs() < 1e-15);
    }

    #[test]
    fn statrs_exact_p_differs_from_scipy_for_the_smaller_x() {
        // Documents the statrs 0.19 behaviour this module works around: with x the smaller
        // sample its exact p-value is 1 - P(U >= u). If this fails, statrs has changed and
        // the module documentation should be revisited.
        let (u, p) = mannwhitneyu(
            &[1.0, 2.0, 3.0],
            &[4.0, 5.0, 6.0, 7.0],
            MannWhitneyUMethod::Exact,
            statrs::stats_tests::Alternative::Less,
        )
        .unwrap();
        assert_eq!(u, 0.0);
        assert!((p - 34.0 / 35.0).abs() < 1e-15);
    }

    #[test]
    fn null_distribution_counts_match_hand_enumeration() {
        // U for 2 against 2: rank sets {1,2}:0 {1,3}:1 {1,4}:2 {2,3}:2 {2,4}:3 {3,4}:4.
        let d = UNullDistribution::new(2, 2);
        assert_eq!(d.counts, vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        assert_eq!(d.total, 6.0);
        // The counts are symmetric and sum to C(m+n, m) for uneven sizes too.
        let d = UNullDistribution::new(3, 5);
        assert_eq!(d.total, 56.0);
        let rev: Vec<f64> = d.counts.iter().rev().copied().collect();
        assert_eq!(d.counts, rev);
    }

    #[test]
    fn empty_and_non_finite_groups_are_errors() {
        assert_eq!(
            mann_whitney(&[], &[1.0], Alternative::Less).unwrap_err(),
            StatsError::EmptyGroup { group: Group::A }
        );
        assert_eq!(
            permutation_test_mean_diff(&[1.0], &[], Alternative::Less).unwrap_err(),
            StatsError::EmptyGroup { group: Group::B }
        );
        let err = mann_whitney(&[1.0, f64::NAN], &[2.0], Alternative::Less).unwrap_err();
        assert!(matches!(
            err,
            StatsError::NonFinite {
                group: Group::A,
                index: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("NaN"), "{err}");
    }

    #[test]
    fn alternatives_parse_in_scipy_spelling() {
        assert_eq!(
            "two-sided".parse::<Alternative>(),
            Ok(Alternative::TwoSided)
        );
        assert_eq!("LESS".parse::<Alternative>(), Ok(Alternative::Less));
        assert!("smaller".parse::<Alternative>().is_err());
    }

    #[test]
    fn numpy_pairwise_sum_order() {
        // 1e16 + 1 + ... shows the summation order: NumPy adds the eight partial sums
        // pairwise, so the eight 1.0s after 1e16 are summed among themselves first.
        let mut x = vec![1e16];
        x.extend(std::iter::repeat_n(1.0, 15));
        // r[0] = 1e16 + 1 = 1e16 (rounding), r[1..8] = 2 each -> 1e16 + 14.
        assert_eq!(numpy_pairwise_sum(&x), 1e16 + 14.0);
    }

    #[test]
    fn monte_carlo_beyond_the_exact_limit() {
        let a: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..12).map(|i| i as f64 + 0.5).collect();
        let r = permutation_test_mean_diff(&a, &b, Alternative::TwoSided).unwrap();
        assert!(!r.exact);
        assert_eq!(r.resamples, MONTE_CARLO_RESAMPLES);
        // Seeded: the same result every time.
        assert_eq!(
            r,
            permutation_test_mean_diff(&a, &b, Alternative::TwoSided).unwrap()
        );
    }

    #[test]
    fn binomials() {
        assert_eq!(binomial_u64(7, 3), Some(35));
        assert_eq!(binomial_u64(24, 12), Some(2_704_156));
        assert_eq!(binomial_u64(200, 100), None);
        assert_eq!(binomial(7, 3), 35.0);
    }
}
