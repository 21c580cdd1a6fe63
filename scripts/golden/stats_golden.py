#!/usr/bin/env python3
"""Golden values for crates/core/src/stats.rs, computed by SciPy.

Writes tests/fixtures/stats/<case>.json: for each case the two samples, and for each
alternative SciPy's Mann-Whitney U (statistic = U of the first sample) and p-value, the
method SciPy's method='auto' picks, the exact permutation-test p-value of mean(a) - mean(b),
and the rank-biserial correlation computed independently of U, as the mean over all pairs
of sign(a_i - b_j).

Needs: scipy==1.17.1, numpy==2.4.6 (see scripts/requirements-fixtures.txt).
Run: python scripts/golden/stats_golden.py   (from the repository root)
"""

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from scipy.stats._mannwhitneyu import _mwu_choose_method

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "stats"
ALTERNATIVES = ["less", "greater", "two-sided"]

rng = np.random.default_rng(20240607)

CASES = {
    # The seed's design: 3 EleutherAI models against 4 others, no ties, A entirely below B:
    # the smallest attainable one-sided p, 1/35.
    "seed_3v4_separated": ([1.62, 1.71, 1.55], [2.40, 1.98, 3.10, 2.25]),
    # 3 against 4 interleaved, no ties.
    "interleaved_3v4": ([1.2, 3.4, 2.2], [1.9, 2.8, 4.1, 0.7]),
    # Equal sizes (statrs' exact path is wrong whenever n_x <= n_y).
    "equal_sizes_4v4": ([0.31, 0.12, 0.55, 0.48], [0.62, 0.29, 0.71, 0.90]),
    # Ties within and across the groups: the tie-corrected normal approximation.
    "ties_4v5": ([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]),
    # Every value equal: no variance; p = 1 (and the permutation statistic is 0).
    "all_equal_3v4": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]),
    # One against many.
    "one_vs_many_1v6": ([0.35], [0.10, 0.52, 0.71, 0.93, 1.14, 0.27]),
    # A small group against a larger one, no ties: still the exact distribution.
    "small_vs_large_8v12": (
        list(np.round(rng.normal(1.0, 0.3, 8), 6)),
        list(np.round(rng.normal(1.3, 0.3, 12), 6)),
    ),
    # Both groups above 8: the normal approximation without ties.
    "larger_12v15": (
        list(np.round(rng.normal(2.0, 0.5, 12), 6)),
        list(np.round(rng.normal(2.6, 0.5, 15), 6)),
    ),
    # Decimal values whose relabeled mean differences are theoretically equal but differ in
    # the last bits: SciPy's 100-eps tolerance counts them as ties of the observed statistic.
    "decimal_near_ties_3v3": ([0.1, 0.2, 0.6], [0.3, 0.4, 0.5]),
    # Both groups over 8 with ties.
    "larger_ties_10v10": (
        [1, 2, 2, 3, 3, 3, 4, 5, 6, 6],
        [2, 3, 4, 4, 5, 5, 6, 7, 7, 8],
    ),
}


def mean_diff(x, y, axis):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def brute_force_permutation(a, b, alt):
    """SciPy refuses samples of one observation; for those, the same test by direct
    enumeration with itertools and np.mean, counting like SciPy (observed included,
    tolerance 100 eps |observed|)."""
    pooled = np.array(a + b)
    n, k = len(pooled), len(a)
    observed = np.mean(np.array(a)) - np.mean(np.array(b))
    gamma = abs(100 * np.finfo(float).eps * observed)
    null = []
    for c in itertools.combinations(range(n), k):
        rest = [i for i in range(n) if i not in c]
        null.append(np.mean(pooled[list(c)]) - np.mean(pooled[rest]))
    null = np.array(null)
    less = np.count_nonzero(null <= observed + gamma) / len(null)
    greater = np.count_nonzero(null >= observed - gamma) / len(null)
    p = {"less": less, "greater": greater, "two-sided": 2 * min(less, greater)}[alt]
    return float(observed), float(min(p, 1.0))


def rank_biserial(a, b):
    s = Fraction(0)
    for x in a:
        for y in b:
            s += (x > y) - (x < y)
    return float(s / (len(a) * len(b)))


def has_ties(a, b):
    pooled = list(a) + list(b)
    return len(set(pooled)) < len(pooled)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (a, b) in CASES.items():
        a = [float(v) for v in a]
        b = [float(v) for v in b]
        case = {
            "scipy": scipy.__version__,
            "numpy": np.__version__,
            "a": a,
            "b": b,
            "method": _mwu_choose_method(len(a), len(b), has_ties(a, b)),
            "rank_biserial": rank_biserial(a, b),
            "mann_whitney": {},
            "permutation": {},
        }
        n_relabelings = scipy.special.comb(len(a) + len(b), len(a), exact=True)
        for alt in ALTERNATIVES:
            res = stats.mannwhitneyu(a, b, alternative=alt)
            case["mann_whitney"][alt] = {
                "u": float(res.statistic),
                "p": float(res.pvalue),
            }
            if min(len(a), len(b)) < 2:
                statistic, p = brute_force_permutation(a, b, alt)
                case["permutation"][alt] = {
                    "statistic": statistic,
                    "p": p,
                    "relabelings": n_relabelings,
                    "source": "itertools enumeration (scipy needs two or more per sample)",
                }
            elif n_relabelings <= 1_000_000:
                perm = stats.permutation_test(
                    (np.array(a), np.array(b)),
                    mean_diff,
                    permutation_type="independent",
                    vectorized=True,
                    n_resamples=np.inf,
                    alternative=alt,
                )
                case["permutation"][alt] = {
                    "statistic": float(perm.statistic),
                    "p": float(perm.pvalue),
                    "relabelings": n_relabelings,
                }
        (OUT / f"{name}.json").write_text(json.dumps(case, indent=1) + "\n")
        print(name, case["method"], {k: v["p"] for k, v in case["mann_whitney"].items()})


if __name__ == "__main__":
    main()
