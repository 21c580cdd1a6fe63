//! Golden tests of the spectral engine against tests/fixtures/spectral, made by
//! scripts/fixtures/make_spectral_golden.py from numpy/scipy (LAPACK) and WeightWatcher 0.7.7,
//! and the accuracy contract (`contract.json`, made by scripts/fixtures/make_contract_golden.py
//! from LAPACK dgesdd in f64).
//!
//! Tolerances: spectra to 1e-10 relative to σ_1 in f64 (1e-5 in f32); metrics fed the same
//! singular values as WeightWatcher to 1e-10 relative (alpha, xmin, D, norms, entropy) and
//! `num_pl_spikes` exactly; metrics fed our own spectra to 1e-8 relative for alpha.

use std::path::PathBuf;

use attn_spectra::Matrix;
use attn_spectra::spectral::{
    DenseAlgorithm, FaerBackend, Job, Method, Precision, SvdBackend, fit_power_law, gram_spectrum,
    metrics_for_shape,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/spectral")
}

fn load(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A number; the script writes non-finite values as the strings "inf", "-inf" and "nan".
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("not a number: {other}"),
        },
        _ => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn matrix_case(case: &Value) -> Matrix {
    let rows = case["rows"].as_u64().unwrap() as usize;
    let cols = case["cols"].as_u64().unwrap() as usize;
    let bytes = std::fs::read(fixture_dir().join(case["file"].as_str().unwrap())).unwrap();
    let data: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Matrix::from_vec(rows, cols, data).unwrap()
}

/// A matrix of contract.json: raw little-endian f64, or bfloat16 bits widened to f64.
fn contract_matrix(v: &Value) -> Matrix {
    let rows = v["rows"].as_u64().unwrap() as usize;
    let cols = v["cols"].as_u64().unwrap() as usize;
    let file = v["file"].as_str().unwrap();
    let bytes = std::fs::read(fixture_dir().join(file)).unwrap();
    let data: Vec<f64> = if file.ends_with(".bf16") {
        bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
            .collect()
    } else {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    Matrix::from_vec(rows, cols, data).unwrap()
}

/// The largest |got − want| over the spectrum, relative to LAPACK's σ_1.
fn max_rel_error(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.first().copied().unwrap_or(0.0).max(f64::MIN_POSITIVE);
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0, f64::max)
}

/// The accuracy contract (README, "Accuracy"): every singular value within
/// `Precision::tolerance() · σ_1` of LAPACK's f64 values, in both precisions, with the default
/// algorithm choice, on ill-conditioned (1e8), rank-deficient, zero, post-LayerNorm
/// OPT-350m-like and seed-shaped random matrices and on a circuit; and the fast path is taken
/// where it is meant to be.
#[test]
fn accuracy_contract_holds_against_lapack_f64() {
    let fixture = load("contract.json");
    assert_eq!(Precision::F32.tolerance(), 1e-6);
    assert_eq!(Precision::F64.tolerance(), 1e-12);
    let backend = FaerBackend::new(2).unwrap();
    assert_eq!(backend.dense_algorithm(), DenseAlgorithm::Auto);
    let cases = fixture["cases"].as_array().unwrap();
    let mats: Vec<Matrix> = cases.iter().map(contract_matrix).collect();
    let jobs: Vec<Job> = mats.iter().map(Job::Dense).collect();
    for precision in [Precision::F32, Precision::F64] {
        let out = backend.spectra_with_methods(&jobs, precision).unwrap();
        for (case, (sv, method)) in cases.iter().zip(&out) {
            let name = case["name"].as_str().unwrap();
            let lapack = floats(&case["lapack_singular_values"]);
            let err = max_rel_error(sv, &lapack);
            assert!(
                err <= precision.tolerance(),
                "{name} {precision} ({method:?}): max |Δσ|/σ_1 = {err:.2e} > {:.0e}",
                precision.tolerance()
            );
            // Which path. f32: the Gram fast path wherever its bound proves the contract —
            // random weights of the seed's shapes and a per-head shape (bound ~1e-8 and 2e-12
            // of σ_1), and even the small condition-1e8 and rank-deficient matrices, where
            // sqrt(E) ~ 5e-7·σ_1 bounds every value; not the OPT-like projection (1024², near-
            // dead channels: bound 1.04e-6 > 1e-6), which falls back to the f64 SVD. f64: the
            // bound never reaches 1e-12 here (2.5e-12 on the per-head shape), so the SVD.
            let expected = match (name, precision) {
                ("opt350m_like_1024", _) | (_, Precision::F64) => Method::SvdF64,
                (_, Precision::F32) => Method::Gram,
            };
            assert_eq!(*method, expected, "{name} {precision}");
        }
    }
    for case in fixture["circuits"].as_array().unwrap() {
        let (left, right) = (
            contract_matrix(&case["left"]),
            contract_matrix(&case["right"]),
        );
        let lapack = floats(&case["lapack_singular_values"]);
        for precision in [Precision::F32, Precision::F64] {
            let out = backend
                .spectra_with_methods(
                    &[Job::Product {
                        left: &left,
                        right: &right,
                    }],
                    precision,
                )
                .unwrap();
            // f32: from the Cholesky factors of the two factors' Gram matrices, under their
            // bound; f64: thin QRs.
            let expected = match precision {
                Precision::F32 => Method::GramProduct,
                Precision::F64 => Method::ProductF64,
            };
            assert_eq!(out[0].1, expected, "circuit {precision}");
            let err = max_rel_error(&out[0].0, &lapack);
            assert!(
                err <= precision.tolerance(),
                "circuit {precision}: {err:.2e}"
            );
        }
    }
}

/// The Gram path's proved bound is never below its actual error against LAPACK (plus LAPACK's
/// own spread), on every contract case, including those where the bound rejects the path.
#[test]
fn gram_error_bound_covers_the_actual_error() {
    let fixture = load("contract.json");
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let m = contract_matrix(case);
        let lapack = floats(&case["lapack_singular_values"]);
        let spread = case["lapack_spread"].as_f64().unwrap();
        let g = gram_spectrum(&m).unwrap();
        let sigma1 = lapack[0];
        let actual = max_rel_error(&g.values, &lapack) * sigma1;
        assert!(
            actual <= g.error_bound + 4.0 * spread * sigma1 + f64::MIN_POSITIVE,
            "{name}: actual {actual:e} > bound {:e}",
            g.error_bound
        );
        // (The bound is a worst case: 1e2–1e5 times the actual error on these matrices.)
    }
}

fn inline_matrix(v: &Value) -> Matrix {
    let rows = v["rows"].as_u64().unwrap() as usize;
    let cols = v["cols"].as_u64().unwrap() as usize;
    Matrix::from_vec(rows, cols, floats(&v["data"])).unwrap()
}

#[track_caller]
fn assert_spectrum(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: number of singular values");
    let scale = want.first().copied().unwrap_or(0.0).max(f64::MIN_POSITIVE);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{name}: sigma_{i} = {g}, expected {w} (tolerance {tol} x sigma_1 = {scale})"
        );
    }
}

#[track_caller]
fn assert_rel(name: &str, what: &str, got: f64, want: f64, tol: f64) {
    if want.is_infinite() || got.is_infinite() {
        assert_eq!(got, want, "{name}: {what}");
        return;
    }
    assert!(
        (got - want).abs() <= tol * want.abs().max(1e-300),
        "{name}: {what} = {got}, expected {want} (relative tolerance {tol})"
    );
}

#[test]
fn dense_spectra_match_construction_and_lapack() {
    let fixture = load("matrices.json");
    for alg in [
        DenseAlgorithm::Auto,
        DenseAlgorithm::Svd,
        DenseAlgorithm::GramChecked,
    ] {
        let backend = FaerBackend::new(2).unwrap().with_dense_algorithm(alg);
        let cases = fixture["cases"].as_array().unwrap();
        let mats: Vec<Matrix> = cases.iter().map(matrix_case).collect();
        let jobs: Vec<Job> = mats.iter().map(Job::Dense).collect();
        let f64s = backend.spectra(&jobs, Precision::F64).unwrap();
        let f32s = backend.spectra(&jobs, Precision::F32).unwrap();
        for ((case, sv), sv32) in cases.iter().zip(&f64s).zip(&f32s) {
            let name = format!("{} ({alg:?})", case["name"].as_str().unwrap());
            let lapack = floats(&case["lapack_singular_values"]);
            assert_spectrum(&name, sv, &lapack, 1e-10);
            if let Some(exact) = case.get("exact_singular_values") {
                assert_spectrum(&name, sv, &floats(exact), 1e-10);
            }
            assert_spectrum(&format!("{name} f32"), sv32, &lapack, 1e-5);
        }
    }
}

#[test]
fn metrics_match_independent_numpy_values() {
    let fixture = load("matrices.json");
    let backend = FaerBackend::new(1).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let m = matrix_case(case);
        let sv = backend.spectra(&[Job::Dense(&m)], Precision::F64).unwrap();
        let got = metrics_for_shape(&sv[0], m.rows(), m.cols());
        let ind = &case["independent"];
        assert_rel(
            name,
            "spectral_norm",
            got.spectral_norm,
            num(&ind["spectral_norm"]),
            1e-12,
        );
        assert_rel(
            name,
            "frobenius_norm",
            got.frobenius_norm,
            num(&ind["frobenius_norm"]),
            1e-12,
        );
        assert_rel(
            name,
            "nuclear_norm",
            got.nuclear_norm,
            num(&ind["nuclear_norm"]),
            1e-12,
        );
        assert_rel(
            name,
            "stable_rank",
            got.stable_rank,
            num(&ind["stable_rank"]),
            1e-11,
        );
        assert_rel(
            name,
            "effective_rank",
            got.effective_rank,
            num(&ind["effective_rank"]),
            1e-9,
        );
        assert_rel(name, "log_norm", got.log_norm, num(&ind["log_norm"]), 1e-12);
        assert_rel(
            name,
            "log_spectral_norm",
            got.log_spectral_norm,
            num(&ind["log_spectral_norm"]),
            1e-12,
        );
        // Condition numbers are only meaningful where the smallest singular value is well
        // above rounding noise (not for the exactly rank-deficient cases).
        let lapack = floats(&case["lapack_singular_values"]);
        if *lapack.last().unwrap() > 1e-8 * lapack[0] {
            assert_rel(
                name,
                "condition_number",
                got.condition_number,
                num(&ind["condition_number"]),
                1e-8,
            );
        }
    }
}

#[test]
fn metrics_match_weightwatcher_analyze() {
    let fixture = load("matrices.json");
    let backend = FaerBackend::new(1).unwrap();
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let Some(ww) = case.get("weightwatcher") else {
            continue;
        };
        let name = case["name"].as_str().unwrap();
        assert_eq!(ww["status"], "success", "{name}");
        let m = matrix_case(case);
        // The very singular values WeightWatcher squared (scipy.linalg.svd).
        let lapack = floats(&case["lapack_singular_values"]);
        let got = metrics_for_shape(&lapack, m.rows(), m.cols());
        assert_rel(name, "alpha", got.alpha, num(&ww["alpha"]), 1e-10);
        assert_rel(name, "alpha_xmin", got.alpha_xmin, num(&ww["xmin"]), 1e-12);
        assert_rel(name, "alpha_ks", got.alpha_ks, num(&ww["D"]), 1e-10);
        assert_eq!(
            got.num_pl_spikes,
            ww["num_pl_spikes"].as_i64().unwrap(),
            "{name}: num_pl_spikes"
        );
        assert_rel(name, "log_norm", got.log_norm, num(&ww["log_norm"]), 1e-12);
        assert_rel(
            name,
            "log_spectral_norm",
            got.log_spectral_norm,
            num(&ww["log_spectral_norm"]),
            1e-12,
        );
        assert_rel(
            name,
            "alpha_weighted",
            got.alpha_weighted,
            num(&ww["alpha_weighted"]),
            1e-10,
        );
        assert_rel(name, "entropy", got.entropy, num(&ww["entropy"]), 1e-10);
        assert_rel(
            name,
            "stable_rank",
            got.stable_rank,
            num(&ww["stable_rank"]),
            1e-12,
        );
        // WeightWatcher's spectral_norm is lambda_max = sigma_1^2.
        assert_rel(
            name,
            "spectral_norm^2",
            got.spectral_norm * got.spectral_norm,
            num(&ww["spectral_norm"]),
            1e-12,
        );

        // End to end: our own spectrum gives the same fit.
        let sv = backend.spectra(&[Job::Dense(&m)], Precision::F64).unwrap();
        let own = metrics_for_shape(&sv[0], m.rows(), m.cols());
        assert_rel(name, "alpha (own SVD)", own.alpha, num(&ww["alpha"]), 1e-8);
        assert_eq!(own.num_pl_spikes, got.num_pl_spikes, "{name}: own SVD");
        assert_rel(
            name,
            "entropy (own SVD)",
            own.entropy,
            num(&ww["entropy"]),
            1e-8,
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} WeightWatcher rows");
}

#[test]
fn power_law_fits_match_weightwatcher() {
    let fixture = load("powerlaw_fits.json");
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let evals = floats(&case["eigenvalues"]);
        let ww = &case["weightwatcher"];
        let fit = fit_power_law(&evals);
        if ww["status"] == "failed" {
            assert!(
                fit.alpha.is_nan() && fit.xmin.is_nan() && fit.ks_distance.is_nan(),
                "{name}"
            );
            assert_eq!(fit.num_pl_spikes, -1, "{name}");
        } else if num(&ww["alpha"]).is_infinite() {
            // A flat tail: the MLE is infinite.
            assert_eq!(fit.alpha, f64::INFINITY, "{name}");
            assert_rel(name, "xmin", fit.xmin, num(&ww["xmin"]), 0.0);
            assert_rel(name, "D", fit.ks_distance, num(&ww["D"]), 1e-12);
        } else {
            assert_rel(name, "alpha", fit.alpha, num(&ww["alpha"]), 1e-10);
            assert_rel(name, "xmin", fit.xmin, num(&ww["xmin"]), 0.0);
            assert_rel(name, "D", fit.ks_distance, num(&ww["D"]), 1e-10);
        }
        if ww["status"] != "failed" {
            assert_eq!(
                fit.num_pl_spikes,
                ww["num_pl_spikes"].as_i64().unwrap(),
                "{name}: num_pl_spikes"
            );
        }
        if !case["weightwatcher_entropy"].is_null() {
            let want = num(&case["weightwatcher_entropy"]);
            let sv = floats(&case["singular_values"]);
            let n = case["entropy_N"].as_u64().unwrap() as usize;
            let got = metrics_for_shape(&sv, n, sv.len());
            assert_rel(name, "entropy", got.entropy, want, 1e-10);
        }
    }
}

#[test]
fn products_match_numpy_svd_of_the_explicit_product() {
    let fixture = load("products.json");
    let backend = FaerBackend::new(2).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let pairs: Vec<(Matrix, Matrix)> = cases
        .iter()
        .map(|c| (inline_matrix(&c["left"]), inline_matrix(&c["right"])))
        .collect();
    let jobs: Vec<Job> = pairs
        .iter()
        .map(|(l, r)| Job::Product { left: l, right: r })
        .collect();
    let got64 = backend.spectra(&jobs, Precision::F64).unwrap();
    let got32 = backend.spectra(&jobs, Precision::F32).unwrap();
    for ((case, g64), g32) in cases.iter().zip(&got64).zip(&got32) {
        let name = case["name"].as_str().unwrap();
        let want = floats(&case["singular_values"]);
        assert_spectrum(name, g64, &want, 1e-10);
        assert_spectrum(&format!("{name} f32"), g32, &want, 1e-5);
    }
}

/// A small deterministic generator (splitmix64 + Box–Muller) for the algorithm comparison.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next_f64(), self.next_f64());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn matrix(&mut self, rows: usize, cols: usize) -> Matrix {
        Matrix::from_fn(rows, cols, |_, _| self.normal())
    }
}

#[test]
fn circuits_match_the_dense_svd_of_the_formed_product() {
    let mut rng = Rng(7);
    let backend = FaerBackend::new(2).unwrap();
    // (m, k, n): circuits are [d, d_head] x [d_head, d]; also k > min(m, n) and scaled factors.
    for (m, k, n, scale) in [
        (96, 16, 80, 1.0),
        (64, 8, 64, 1e-3),
        (10, 24, 12, 1.0),
        (128, 32, 128, 50.0),
    ] {
        let left = rng.matrix(m, k);
        let mut right = rng.matrix(k, n);
        right.scale_columns(&vec![scale; n]);
        let product = left.matmul(&right);
        let out = backend
            .spectra(
                &[
                    Job::Product {
                        left: &left,
                        right: &right,
                    },
                    Job::Dense(&product),
                ],
                Precision::F64,
            )
            .unwrap();
        let (factored, dense) = (&out[0], &out[1]);
        let r = m.min(n).min(k);
        assert_eq!(factored.len(), r);
        let name = format!("{m}x{k}x{n}");
        assert_spectrum(&name, factored, &dense[..r], 1e-10);
        for s in &dense[r..] {
            assert!(*s <= 1e-10 * dense[0], "{name}: rank beyond k: {s}");
        }
    }
}
