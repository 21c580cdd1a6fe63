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

// ---------------------------------------------------------------------------------------
// The study's further statistics against statsmodels, SciPy, NumPy and WeightWatcher:
// tests/fixtures/stats_study/*.json, written by scripts/fixtures/make_study_golden.py.

mod study {
    use std::path::Path;

    use attn_spectra::spectral::baseline::mp_baseline;
    use attn_spectra::stats::Alternative;
    use attn_spectra::stats::multiplicity::{benjamini_hochberg, holm};
    use attn_spectra::stats::power::{
        cohens_d, models_per_group_t, noncentral_t_cdf, t_test_power,
    };
    use attn_spectra::stats::regression::{
        BOOTSTRAP_RESAMPLES, Covariate, PERMUTATIONS, size_controlled_test,
    };
    use serde_json::Value;

    fn fixture(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/stats_study")
            .join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn f(v: &Value) -> f64 {
        v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
    }

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(f).collect()
    }

    fn close(got: f64, want: f64, rel: f64, what: &str) {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1e-300),
            "{what}: got {got:e}, reference {want:e} (relative difference {:e})",
            ((got - want) / want).abs()
        );
    }

    fn alternative(s: &str) -> Alternative {
        match s {
            "smaller" | "less" => Alternative::Less,
            "larger" | "greater" => Alternative::Greater,
            "two-sided" => Alternative::TwoSided,
            other => panic!("unknown alternative {other}"),
        }
    }

    #[test]
    fn holm_and_bh_match_statsmodels_and_scipy() {
        let fx = fixture("multiplicity.json");
        let families = fx["families"].as_object().unwrap();
        assert!(families.len() >= 5);
        for (name, fam) in families {
            let p = floats(&fam["p"]);
            let h = holm(&p).unwrap();
            let b = benjamini_hochberg(&p).unwrap();
            for (i, (w_h, w_b)) in floats(&fam["holm"])
                .iter()
                .zip(floats(&fam["bh"]))
                .enumerate()
            {
                assert!(
                    (h[i] - w_h).abs() <= 1e-15,
                    "{name}[{i}] Holm: {} vs {w_h}",
                    h[i]
                );
                assert!(
                    (b[i] - w_b).abs() <= 1e-15,
                    "{name}[{i}] BH: {} vs {w_b}",
                    b[i]
                );
            }
        }
    }

    #[test]
    fn size_controlled_test_matches_statsmodels_and_numpy() {
        let fx = fixture("size_controlled.json");
        assert_eq!(fx["permutations"].as_u64(), Some(PERMUTATIONS));
        assert_eq!(
            fx["bootstrap_resamples"].as_u64(),
            Some(BOOTSTRAP_RESAMPLES)
        );
        let cases = fx["cases"].as_object().unwrap();
        assert!(cases.len() >= 4);
        for (name, case) in cases {
            let y = floats(&case["y"]);
            let in_a: Vec<bool> = case["in_a"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_bool().unwrap())
                .collect();
            let candidates: Vec<Covariate> = case["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| Covariate {
                    name: c["name"].as_str().unwrap().to_string(),
                    values: floats(&c["values"]),
                })
                .collect();
            for (key, want_p) in case["p_value"].as_object().unwrap() {
                let r = size_controlled_test(
                    &y,
                    &in_a,
                    &candidates,
                    alternative(key),
                    f(&case["ci_level"]),
                )
                .unwrap();
                let what = format!("{name} {key}");
                let used: Vec<String> = case["covariates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(r.covariates, used, "{what}: covariates");
                assert_eq!(r.df_residual as u64, case["df_residual"].as_u64().unwrap());
                close(
                    r.coefficient,
                    f(&case["coefficient"]),
                    1e-9,
                    &format!("{what} beta"),
                );
                close(
                    r.std_error,
                    f(&case["std_error"]),
                    1e-9,
                    &format!("{what} se"),
                );
                close(
                    r.t_statistic,
                    f(&case["t_statistic"]),
                    1e-9,
                    &format!("{what} t"),
                );
                // The same permutations: the counts agree exactly.
                assert_eq!(r.p_value, f(want_p), "{what}: Freedman-Lane p");
                close(
                    r.ci_low,
                    f(&case["ci_low"]),
                    1e-9,
                    &format!("{what} CI low"),
                );
                close(
                    r.ci_high,
                    f(&case["ci_high"]),
                    1e-9,
                    &format!("{what} CI high"),
                );
            }
        }
    }

    #[test]
    fn power_matches_statsmodels() {
        let fx = fixture("power.json");
        for c in fx["nct_cdf"].as_array().unwrap() {
            let got = noncentral_t_cdf(f(&c["t"]), f(&c["df"]), f(&c["ncp"]));
            // Probabilities: 1e-10 absolute (AS 243 stops at an error bound of 1e-12; SciPy
            // uses Boost's series).
            assert!(
                (got - f(&c["cdf"])).abs() < 1e-10,
                "nct.cdf {c}: got {got:e}"
            );
        }
        for c in fx["power"].as_array().unwrap() {
            let got = t_test_power(
                f(&c["effect_size"]),
                f(&c["nobs1"]),
                f(&c["ratio"]),
                f(&c["alpha"]),
                alternative(c["alternative"].as_str().unwrap()),
            );
            assert!(
                (got - f(&c["power"])).abs() < 1e-10,
                "power {c}: got {got:e}"
            );
        }
        let solves = fx["solve_power"].as_array().unwrap();
        assert!(solves.len() >= 7);
        for c in solves {
            let got = models_per_group_t(
                f(&c["effect_size"]),
                f(&c["alpha"]),
                0.8,
                alternative(c["alternative"].as_str().unwrap()),
            )
            .unwrap_or_else(|| panic!("no solution for {c}"));
            // statsmodels' solve_power stops about 1e-8 relative from the root; the same power
            // function solved by brentq to the last bits agrees to 1e-9.
            close(got, f(&c["nobs1"]), 1e-7, &format!("solve_power {c}"));
            close(got, f(&c["nobs1_tight"]), 1e-9, &format!("brentq {c}"));
        }
        for g in fx["cohens_d"].as_array().unwrap() {
            let got = cohens_d(&floats(&g["a"]), &floats(&g["b"])).unwrap();
            close(got, f(&g["cohens_d"]), 1e-12, "Cohen's d");
        }
    }

    #[test]
    fn mp_baseline_matches_weightwatcher_with_the_frobenius_scale() {
        let fx = fixture("mp_baseline.json");
        let mats = fx["matrices"].as_object().unwrap();
        assert!(mats.len() >= 4);
        for (name, m) in mats {
            let b = mp_baseline(
                m["rows"].as_u64().unwrap() as usize,
                m["cols"].as_u64().unwrap() as usize,
                f(&m["spectral_norm"]),
                f(&m["frobenius_norm"]),
            );
            close(b.mp_edge, f(&m["mp_edge"]), 1e-12, &format!("{name} edge"));
            close(
                b.mp_softrank,
                f(&m["mp_softrank"]),
                1e-12,
                &format!("{name} softrank"),
            );
            close(
                b.spectral_norm_over_mp,
                f(&m["spectral_norm"]) / f(&m["mp_edge"]),
                1e-12,
                &format!("{name} ratio"),
            );
        }
    }
}
