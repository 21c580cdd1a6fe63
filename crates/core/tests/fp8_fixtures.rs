//! FP8 checkpoints (scripts/fixtures/make_fp8_fixtures.py -> tests/fixtures/fp8/): the weights
//! read are the dequantised ones, equal to the reference dequantisation the script computed
//! with torch, and unknown or broken FP8 layouts are errors naming the tensor and config entry.

use std::path::{Path, PathBuf};

use attn_spectra::checkpoint::TensorStore;
use attn_spectra::checkpoint::safetensors::SafetensorsStore;
use attn_spectra::{Architecture, Checkpoint, DType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fp8")
}

#[test]
fn fp8_weights_read_as_the_reference_dequantisation() {
    for (case, dtype) in [
        ("block_e4m3", DType::F8_E4M3),
        ("channel_e4m3", DType::F8_E4M3),
        ("tensor_e5m2", DType::F8_E5M2),
    ] {
        let dir = fixtures().join(case);
        let ckpt = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{case}: {e}"));
        let exp = SafetensorsStore::open_files(&[dir.join("expected.safetensors")]).unwrap();
        assert_eq!(exp.tensors().len(), 4, "{case}");
        for (j, t) in exp.tensors().iter().enumerate() {
            let meta = ckpt.require(&t.name).unwrap().clone();
            assert_eq!(meta.dtype, dtype, "{case} {}", t.name);
            // Exact: an FP8 value times an f32 scale is exact in f64 on both sides.
            assert_eq!(
                ckpt.read(&meta).unwrap(),
                exp.read(j).unwrap(),
                "{case} {}",
                t.name
            );
        }
        let arch = Architecture::detect(ckpt.config()).unwrap();
        let layer = arch.layer(&ckpt, 0).unwrap();
        let q = exp
            .tensors()
            .iter()
            .position(|t| t.name.ends_with("q_proj.weight"))
            .unwrap();
        assert_eq!(layer.w_q.data(), &exp.read(q).unwrap()[..], "{case} W_Q");
    }
}

/// A copy of a fixture with its config.json or scale changed.
fn altered(
    case: &str,
    edit: impl Fn(&mut serde_json::Value),
    drop_scales: bool,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join(case);
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let store = SafetensorsStore::open_files(&[src.join("model.safetensors")]).unwrap();
    let mut tensors = Vec::new();
    for t in store.tensors() {
        if drop_scales && t.name.contains("weight_scale") {
            continue;
        }
        let bytes = raw_bytes(&src.join("model.safetensors"), &t.name);
        tensors.push((t.name.clone(), t.dtype, t.shape.clone(), bytes));
    }
    let refs: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    attn_spectra::checkpoint::safetensors::write_file(&dir.path().join("model.safetensors"), &refs)
        .unwrap();
    dir
}

/// The stored bytes of one tensor, from the safetensors header.
fn raw_bytes(file: &Path, name: &str) -> Vec<u8> {
    let all = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(all[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&all[8..8 + n]).unwrap();
    let offs = &header[name]["data_offsets"];
    let (a, b) = (
        offs[0].as_u64().unwrap() as usize,
        offs[1].as_u64().unwrap() as usize,
    );
    all[8 + n + a..8 + n + b].to_vec()
}

fn read_q_err(dir: &Path) -> String {
    let ckpt = Checkpoint::open(dir).unwrap();
    let meta = ckpt
        .require("layers.0.self_attn.q_proj.weight")
        .unwrap()
        .clone();
    ckpt.read(&meta).unwrap_err().to_string()
}

#[test]
fn unknown_or_broken_fp8_layouts_are_errors() {
    let dir = altered(
        "block_e4m3",
        |c| {
            c.as_object_mut().unwrap().remove("quantization_config");
        },
        false,
    );
    let e = read_q_err(dir.path());
    assert!(
        e.contains("q_proj.weight") && e.contains("no `quantization_config`"),
        "{e}"
    );

    let dir = altered(
        "block_e4m3",
        |c| c["quantization_config"]["quant_method"] = "mystery".into(),
        false,
    );
    let e = read_q_err(dir.path());
    assert!(
        e.contains("q_proj.weight")
            && e.contains("quantization_config.quant_method")
            && e.contains("mystery"),
        "{e}"
    );

    let dir = altered(
        "block_e4m3",
        |c| c["quantization_config"]["weight_block_size"] = serde_json::json!([8, 8]),
        false,
    );
    let e = read_q_err(dir.path());
    assert!(
        e.contains("weight_scale_inv") && e.contains("weight_block_size") && e.contains("[3, 3]"),
        "{e}"
    );

    let dir = altered("channel_e4m3", |_| {}, true);
    let e = read_q_err(dir.path());
    assert!(
        e.contains("q_proj.weight_scale") && e.contains("missing"),
        "{e}"
    );

    let dir = altered(
        "tensor_e5m2",
        |c| c["quantization_config"]["format"] = "pack-quantized".into(),
        false,
    );
    let e = read_q_err(dir.path());
    assert!(e.contains("format") && e.contains("pack-quantized"), "{e}");
}
