//! The GGUF reader against files written by gguf-py (scripts/fixtures/make_gguf_fixtures.py ->
//! tests/fixtures/gguf/), with gguf-py's own dequantisation as the expected values.

use std::path::{Path, PathBuf};

use attn_spectra::checkpoint::gguf::{GgufStore, GgufValue};
use attn_spectra::checkpoint::safetensors::SafetensorsStore;
use attn_spectra::checkpoint::{SourceFormat, TensorStore};
use attn_spectra::{Architecture, Checkpoint, CheckpointError, DType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf")
}

fn expected(file: &str) -> SafetensorsStore {
    SafetensorsStore::open_files(&[fixtures().join(file)]).unwrap()
}

#[test]
fn every_type_dequantises_exactly_as_gguf_py() {
    let store = GgufStore::open(&fixtures().join("quants.gguf")).unwrap();
    let exp = expected("quants_expected.safetensors");
    let types = [
        ("F32", DType::F32),
        ("F64", DType::F64),
        ("F16", DType::F16),
        ("BF16", DType::BF16),
        ("Q4_0", DType::Q4_0),
        ("Q4_1", DType::Q4_1),
        ("Q5_0", DType::Q5_0),
        ("Q5_1", DType::Q5_1),
        ("Q8_0", DType::Q8_0),
        ("Q2_K", DType::Q2_K),
        ("Q3_K", DType::Q3_K),
        ("Q4_K", DType::Q4_K),
        ("Q5_K", DType::Q5_K),
        ("Q6_K", DType::Q6_K),
        ("Q8_K", DType::Q8_K),
    ];
    assert_eq!(store.tensors().len(), types.len());
    for (name, dtype) in types {
        let name = format!("t.{name}");
        let i = store
            .tensors()
            .iter()
            .position(|t| t.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let meta = &store.tensors()[i];
        assert_eq!(meta.dtype, dtype, "{name}");
        assert_eq!(meta.shape, vec![3, 512], "{name}: PyTorch order");
        let j = exp.tensors().iter().position(|t| t.name == name).unwrap();
        let got = store.read(i).unwrap();
        let want = exp.read(j).unwrap();
        // Bit-identical: both sides compute each block in f32.
        let diffs = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diffs, 0, "{name}: {diffs} of {} values differ", want.len());
    }
}

#[test]
fn tiny_llama_opens_with_hugging_face_names_and_config() {
    let path = fixtures().join("tiny_llama.gguf");
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.format(), SourceFormat::Gguf);
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("tiny_llama_config.json")).unwrap())
            .unwrap();
    let raw = ckpt.config().raw();
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&raw[k], v, "config key {k}");
    }
    let exp = expected("tiny_llama_expected.safetensors");
    assert_eq!(exp.tensors().len(), 12);
    for (j, t) in exp.tensors().iter().enumerate() {
        let meta = ckpt.require(&t.name).unwrap().clone();
        assert_eq!(meta.shape, t.shape, "{}", t.name);
        assert!(meta.stored_name.is_some(), "{} keeps its GGUF name", t.name);
        assert_eq!(
            ckpt.read(&meta).unwrap(),
            exp.read(j).unwrap(),
            "{}",
            t.name
        );
    }
    let q = ckpt
        .require("model.layers.1.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q.stored_name(), "blk.1.attn_q.weight");
    assert_eq!(q.dtype, DType::Q8_0);

    let arch = Architecture::detect(ckpt.config()).unwrap();
    let g = arch.geometry();
    assert_eq!(
        (g.n_layers, g.d_model, g.n_heads, g.n_kv_heads, g.d_head),
        (2, 64, 4, 2, 16)
    );
    let layer = arch.layer(&ckpt, 1).unwrap();
    let k = ckpt
        .require("model.layers.1.self_attn.k_proj.weight")
        .unwrap();
    assert_eq!(layer.w_k, ckpt.read_matrix(k).unwrap());

    let store = GgufStore::open(&path).unwrap();
    assert_eq!(store.version(), 3);
    assert_eq!(store.get("general.alignment"), Some(&GgufValue::U32(64)));
    assert_eq!(store.get("test.i64"), Some(&GgufValue::I64(-(1 << 40))));
    assert_eq!(store.get("test.f64"), Some(&GgufValue::F64(0.1)));
    assert_eq!(store.get("test.flag"), Some(&GgufValue::Bool(true)));
    let nested = store.get("test.nested").unwrap().to_json(10);
    assert_eq!(nested, serde_json::json!([[1, 2], [3]]));
    let Some(GgufValue::Array(tokens)) = store.get("tokenizer.ggml.tokens") else {
        panic!("tokens")
    };
    assert_eq!(tokens[31], GgufValue::Str("tok31".into()));
}

#[test]
fn version_2_files_read_the_same() {
    let mut bytes = std::fs::read(fixtures().join("tiny_llama.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v2.gguf");
    std::fs::write(&path, bytes).unwrap();
    let v2 = GgufStore::open(&path).unwrap();
    let v3 = GgufStore::open(&fixtures().join("tiny_llama.gguf")).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.tensors(), v3.tensors());
    assert_eq!(v2.read(3).unwrap(), v3.read(3).unwrap());
}

#[test]
fn directories_with_one_gguf_file_open_and_config_json_is_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(fixtures().join("tiny_llama.gguf"), dir.join("model.gguf")).unwrap();
    let ckpt = Checkpoint::open(dir).unwrap();
    assert_eq!(ckpt.config().raw()["hidden_size"], 64);
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 4096, "torch_dtype": "bfloat16"}"#,
    )
    .unwrap();
    let ckpt = Checkpoint::open(dir).unwrap();
    assert_eq!(ckpt.config().raw()["hidden_size"], 64, "GGUF wins");
    assert_eq!(ckpt.config().raw()["torch_dtype"], "bfloat16");
    std::fs::copy(fixtures().join("quants.gguf"), dir.join("other.gguf")).unwrap();
    let err = Checkpoint::open(dir).unwrap_err();
    assert!(matches!(err, CheckpointError::SeveralGguf { .. }), "{err}");
    // An unsupported architecture opens as a store but has no configuration.
    let e = Checkpoint::open(&fixtures().join("quants.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`quanttest` is not supported"), "{e}");
}

/// Truncations and byte flips of a real file are errors or valid reads, never panics.
#[test]
fn corrupted_files_give_errors_not_panics() {
    let bytes = std::fs::read(fixtures().join("tiny_llama.gguf")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    for cut in (0..bytes.len()).step_by(61) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = GgufStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("m.gguf"), "{e}");
    }
    // Flips in the header, metadata and tensor infos, which end at byte 2112 (the data are just
    // values).
    for pos in (0..2112).step_by(5) {
        for flip in [0x01u8, 0x80] {
            let mut data = bytes.clone();
            data[pos] ^= flip;
            std::fs::write(&path, &data).unwrap();
            if let Ok(store) = GgufStore::open(&path) {
                for i in 0..store.tensors().len() {
                    let _ = store.read(i);
                }
                let _ = store.config(None);
            }
        }
    }
}
