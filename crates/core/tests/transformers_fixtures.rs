//! Proof against transformers itself: for every architecture, the per-head matrices this
//! crate reads from a checkpoint equal those that Hugging Face transformers computes when it
//! runs the model's attention module (tests/fixtures/arch, made by
//! scripts/fixtures/make_arch_fixtures.py; see tests/fixtures/README.md).

use std::path::{Path, PathBuf};

use attn_spectra::arch::QkNorm;
use attn_spectra::attention::PreNorm;
use attn_spectra::checkpoint::TensorStore;
use attn_spectra::checkpoint::safetensors::SafetensorsStore;
use attn_spectra::{Architecture, Checkpoint, Matrix};

/// Every case the fixture script writes; a missing directory fails the test.
const CASES: &[&str] = &[
    "gpt2",
    "gpt_neo",
    "gptj",
    "gpt_neox",
    "opt",
    "opt_post_ln",
    "bloom",
    "bloom_n_embed",
    "llama",
    "mistral",
    "qwen2",
    "gemma",
    "phi",
    "falcon_new",
    "falcon_mq",
    "falcon_classic",
    "mpt",
    "bert",
    // Architectures of 2024-2026 (issue 13).
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "gemma2",
    "gemma3_text",
    "smollm3",
    "granite",
    "olmo",
    "olmo2",
    "cohere",
    "cohere2",
    "stablelm",
    "starcoder2",
    "exaone4",
    "glm4",
    "apertus",
    "ministral",
    "llama4_text",
    "phi3",
    "gpt_bigcode",
    "gpt_bigcode_mha",
    "dbrx",
    "persimmon",
    "gpt_oss",
];

const RTOL: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch")
}

/// Expected tensors of one case, by name, with their shapes.
struct Expected {
    store: SafetensorsStore,
}

impl Expected {
    fn open(dir: &Path) -> Expected {
        let store = SafetensorsStore::open_files(&[dir.join("expected.safetensors")])
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Expected { store }
    }

    fn get(&self, name: &str) -> Option<(Vec<usize>, Vec<f64>)> {
        let i = self.store.tensors().iter().position(|t| t.name == name)?;
        Some((
            self.store.tensors()[i].shape.clone(),
            self.store.read(i).unwrap(),
        ))
    }

    fn req(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        self.get(name)
            .unwrap_or_else(|| panic!("expected.safetensors lacks `{name}`"))
    }
}

/// Max |a - b| relative to max |b| must be under RTOL.
fn assert_close(case: &str, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{case}: {what}: length");
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= RTOL * scale,
        "{case}: {what}: max abs error {err:e} exceeds {RTOL} x {scale:e}"
    );
}

/// Slice `[i]` of an expected tensor whose first axis indexes heads.
fn head_slice(t: &(Vec<usize>, Vec<f64>), i: usize) -> &[f64] {
    let per: usize = t.0[1..].iter().product();
    &t.1[i * per..(i + 1) * per]
}

fn check_case(case: &str) {
    let dir = fixtures().join(case);
    assert!(dir.is_dir(), "fixture {} is missing", dir.display());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
    let arch = Architecture::detect(ckpt.config()).unwrap_or_else(|e| panic!("{case}: {e}"));
    let g = *arch.geometry();
    for (key, got) in [
        ("n_layers", g.n_layers),
        ("d_model", g.d_model),
        ("n_heads", g.n_heads),
        ("n_kv_heads", g.n_kv_heads),
        ("d_head", g.d_head),
    ] {
        assert_eq!(meta[key].as_u64(), Some(got as u64), "{case}: {key}");
    }
    // Models that normalise q and k after the projections (the fixture script bypasses those
    // norms while measuring) must have that recorded by their registry entry.
    let bypassed = meta["notes"].as_array().is_some_and(|n| {
        n.iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with("q/k norms")))
    });
    let qk_norm = arch.spec().qk_norm;
    assert!(
        !bypassed || qk_norm != QkNorm::None,
        "{case}: the model normalises q and k but its registry entry does not say so"
    );
    let expected = Expected::open(&dir);
    for i in 0..g.n_layers {
        let layer = arch
            .layer(&ckpt, i)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        if bypassed && !matches!(qk_norm, QkNorm::PerHeadL2) {
            for name in ["q_norm", "k_norm"] {
                assert!(
                    layer.sources.iter().any(|s| s.projection == name),
                    "{case}: layer {i}: the {name} gain is not recorded"
                );
            }
        }
        let p = format!("layers.{i}");
        let map = expected.req(&format!("{p}.head_to_kv"));
        let want_map: Vec<usize> = map.1.iter().map(|&x| x as usize).collect();
        assert_eq!(
            g.head_to_kv(),
            Some(want_map),
            "{case}: layer {i} head -> kv map"
        );

        let (q, k, v, o) = (
            expected.req(&format!("{p}.q")),
            expected.req(&format!("{p}.k")),
            expected.req(&format!("{p}.v")),
            expected.req(&format!("{p}.o")),
        );
        assert_eq!(q.0, vec![g.n_heads, g.d_head, g.d_model], "{case}: q shape");
        assert_eq!(o.0, vec![g.n_heads, g.d_model, g.d_head], "{case}: o shape");
        for h in 0..g.n_heads {
            let what = format!("layer {i} W_Q head {h}");
            assert_close(case, &what, layer.q_head(h).data(), head_slice(&q, h));
            let what = format!("layer {i} W_O head {h}");
            assert_close(case, &what, layer.o_head(h).data(), head_slice(&o, h));
        }
        for kv in 0..g.n_kv_heads {
            let what = format!("layer {i} W_K kv head {kv}");
            assert_close(case, &what, layer.k_head(kv).data(), head_slice(&k, kv));
            let what = format!("layer {i} W_V kv head {kv}");
            assert_close(case, &what, layer.v_head(kv).data(), head_slice(&v, kv));
        }
        for (name, got) in [
            ("q_bias", &layer.b_q),
            ("k_bias", &layer.b_k),
            ("v_bias", &layer.b_v),
            ("o_bias", &layer.b_o),
        ] {
            match (expected.get(&format!("{p}.{name}")), got) {
                (Some(want), Some(got)) => {
                    assert_close(case, &format!("layer {i} {name}"), got, &want.1)
                }
                (None, None) => {}
                (want, got) => panic!(
                    "{case}: layer {i} {name}: transformers has {}, we have {}",
                    if want.is_some() { "one" } else { "none" },
                    if got.is_some() { "one" } else { "none" }
                ),
            }
        }
        match (&layer.norm, expected.get(&format!("{p}.norm_gain"))) {
            (PreNorm::None, None) => {}
            (PreNorm::LayerNorm { gain, bias }, Some(want)) => {
                assert_close(case, &format!("layer {i} norm gain"), gain, &want.1);
                match (bias, expected.get(&format!("{p}.norm_bias"))) {
                    (Some(b), Some(w)) => {
                        assert_close(case, &format!("layer {i} norm bias"), b, &w.1)
                    }
                    (None, None) => {}
                    _ => panic!("{case}: layer {i}: norm bias presence differs"),
                }
            }
            (PreNorm::RmsNorm { gain }, Some(want)) => {
                assert_close(case, &format!("layer {i} norm gain"), gain, &want.1)
            }
            (ours, theirs) => panic!(
                "{case}: layer {i}: pre-attention norm differs: ours {ours:?}, transformers {}",
                if theirs.is_some() {
                    "has one"
                } else {
                    "has none"
                }
            ),
        }
        check_folding(case, &layer, &expected, i);
    }
}

/// Folding the gain must give W diag(gain): checked against the expected matrices times the
/// expected gain, an independent route to the same numbers.
fn check_folding(case: &str, layer: &attn_spectra::LayerAttention, expected: &Expected, i: usize) {
    let Some((_, gain)) = expected.get(&format!("layers.{i}.norm_gain")) else {
        return;
    };
    let mut folded = layer.clone();
    folded.fold_norm();
    let g = layer.geometry;
    let q = expected.req(&format!("layers.{i}.q"));
    for h in 0..g.n_heads {
        let mut want = Matrix::from_vec(g.d_head, g.d_model, head_slice(&q, h).to_vec()).unwrap();
        want.scale_columns(&gain);
        assert_close(
            case,
            &format!("layer {i} folded W_Q head {h}"),
            folded.q_head(h).data(),
            want.data(),
        );
    }
}

#[test]
fn every_architecture_matches_transformers() {
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = std::panic::catch_unwind(|| check_case(case)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{case}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_registered_architecture_has_a_fixture() {
    for model_type in attn_spectra::arch::spec::supported() {
        let covered = CASES.iter().any(|case| {
            let cfg = fixtures().join(case).join("config.json");
            std::fs::read_to_string(&cfg)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .is_some_and(|v| v["model_type"] == model_type)
        });
        assert!(
            covered,
            "no transformers fixture covers model_type `{model_type}`"
        );
    }
}

/// README's table of architectures and its count match the registry.
#[test]
fn readme_lists_every_registered_architecture() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let types = attn_spectra::arch::spec::supported();
    for t in &types {
        assert!(
            readme.contains(&format!("| `{t}` |")),
            "README's table of architectures lacks `{t}`"
        );
    }
    let rows = readme
        .lines()
        .skip_while(|l| !l.starts_with("| model_type |"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .count();
    assert_eq!(rows, types.len(), "README's table has {rows} rows");
    assert!(
        readme.contains(&format!("knows {} `model_type`s", types.len())),
        "README's count of architectures is not {}",
        types.len()
    );
    assert!(readme.contains(&format!("transformers for {}\narchitectures", types.len())));
}
