//! The two-sample tests against SciPy 1.17: tests/fixtures/stats/*.json, written by
//! scripts/fixtures/make_stats_golden.py (scipy.stats.mannwhitneyu with its default method='auto',
//! scipy.stats.permutation_test on mean(a) - mean(b) with every relabeling enumerated, and
//! the rank-biserial correlation as the mean of sign(a_i - b_j) over all pairs).
//!
//! Tolerance: 1e-12, absolute for p-values (which lie in [0, 1]) and relative to the value
//! for U and the mean difference. The exact p-values are ratios of integer counts, so they
//! agree to the last bit or two. The asymptotic ones pass through the normal survival
//! function, where statrs' erfc and SciPy's Cephes `ndtr` differ by up to about 4e-11
//! relative (1.6e-12 absolute at p = 0.0395 in larger_ties_10v10), so 1e-10 there.

use std::path::{Path, PathBuf};

use attn_spectra::stats::{
    Alternative, MwuMethod, mann_whitney, permutation_test_mean_diff, smallest_exact_p,
};
use serde_json::Value;

const TOL: f64 = 1e-12;

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stats");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "expected the golden cases in {}",
        dir.display()
    );
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

fn values(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(got: f64, want: f64, scale: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL * scale,
        "{what}: got {got:e}, SciPy says {want:e} (difference {:e})",
        (got - want).abs()
    );
}

const ALTERNATIVES: [(&str, Alternative); 3] = [
    ("less", Alternative::Less),
    ("greater", Alternative::Greater),
    ("two-sided", Alternative::TwoSided),
];

#[test]
fn mann_whitney_matches_scipy() {
    for (name, case) in fixtures() {
        let (a, b) = (values(&case["a"]), values(&case["b"]));
        for (key, alt) in ALTERNATIVES {
            let want = &case["mann_whitney"][key];
            let got = mann_whitney(&a, &b, alt).unwrap();
            let what = format!("{name} {key}");
            let u = want["u"].as_f64().unwrap();
            close(got.u_a, u, u.abs().max(1.0), &format!("{what} U"));
            let p_scale = if got.method == MwuMethod::Asymptotic {
                100.0
            } else {
                1.0
            };
            close(
                got.p_value,
                want["p"].as_f64().unwrap(),
                p_scale,
                &format!("{what} p"),
            );
            close(
                got.p_two_sided,
                case["mann_whitney"]["two-sided"]["p"].as_f64().unwrap(),
                p_scale,
                &format!("{what} two-sided p"),
            );
            close(
                got.rank_biserial,
                case["rank_biserial"].as_f64().unwrap(),
                1.0,
                &format!("{what} rank-biserial"),
            );
            let method = match case["method"].as_str().unwrap() {
                "exact" => MwuMethod::Exact,
                "asymptotic" => MwuMethod::Asymptotic,
                other => panic!("{name}: unknown method {other}"),
            };
            assert_eq!(got.method, method, "{what}: method");
        }
    }
}

#[test]
fn permutation_test_matches_scipy() {
    let mut checked = 0;
    for (name, case) in fixtures() {
        let (a, b) = (values(&case["a"]), values(&case["b"]));
        for (key, alt) in ALTERNATIVES {
            let Some(want) = case["permutation"].get(key) else {
                continue;
            };
            let got = permutation_test_mean_diff(&a, &b, alt).unwrap();
            let what = format!("{name} {key}");
            assert!(got.exact, "{what}: expected an exact test");
            assert_eq!(
                got.resamples,
                want["relabelings"].as_u64().unwrap(),
                "{what}: relabelings"
            );
            let stat = want["statistic"].as_f64().unwrap();
            close(
                got.statistic,
                stat,
                stat.abs().max(1e-300),
                &format!("{what} statistic"),
            );
            close(
                got.p_value,
                want["p"].as_f64().unwrap(),
                1.0,
                &format!("{what} p"),
            );
            checked += 1;
        }
    }
    assert!(checked >= 27, "only {checked} permutation cases checked");
}

#[test]
fn seed_design_cannot_go_below_one_in_35() {
    let case = fixtures()
        .into_iter()
        .find(|(n, _)| n == "seed_3v4_separated")
        .unwrap()
        .1;
    let p = case["mann_whitney"]["less"]["p"].as_f64().unwrap();
    close(smallest_exact_p(3, 4).unwrap(), p, 1.0, "1/C(7,3)");
}
