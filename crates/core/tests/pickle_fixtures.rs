//! The PyTorch `.bin` reader against files written by `torch.save` itself
//! (scripts/fixtures/make_pickle_fixtures.py -> tests/fixtures/pickle/), whose expected values
//! torch materialised into `expected.safetensors`.

use std::path::{Path, PathBuf};

use attn_spectra::checkpoint::pickle::PickleStore;
use attn_spectra::checkpoint::safetensors::SafetensorsStore;
use attn_spectra::checkpoint::{SourceFormat, TensorStore};
use attn_spectra::{Checkpoint, CheckpointError, DType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickle")
}

/// Every tensor of `expected` (a safetensors file torch wrote) must read back exactly from `store`.
fn assert_matches_expected(store: &dyn TensorStore, expected: &Path) -> usize {
    let exp = SafetensorsStore::open_files(&[expected.to_path_buf()]).unwrap();
    for (i, want) in exp.tensors().iter().enumerate() {
        let j = store
            .tensors()
            .iter()
            .position(|t| t.name == want.name)
            .unwrap_or_else(|| panic!("tensor `{}` missing", want.name));
        assert_eq!(
            store.tensors()[j].shape,
            want.shape,
            "shape of `{}`",
            want.name
        );
        let got = store.read(j).unwrap();
        let want_values = exp.read(i).unwrap();
        assert_eq!(got, want_values, "values of `{}`", want.name);
    }
    exp.tensors().len()
}

#[test]
fn reads_every_dtype_view_and_shared_storage() {
    for file in ["state_dict.bin", "archive.bin"] {
        let store = PickleStore::open_files(&[fixtures().join(file)]).unwrap();
        let n = assert_matches_expected(&store, &fixtures().join("expected.safetensors"));
        assert_eq!(n, 9, "float tensors compared in {file}");
        let dtype = |name: &str| {
            store
                .tensors()
                .iter()
                .find(|t| t.name == name)
                .unwrap()
                .dtype
        };
        assert_eq!(dtype("layer.weight"), DType::F32);
        assert_eq!(dtype("half"), DType::F16);
        assert_eq!(dtype("bf16"), DType::BF16);
        assert_eq!(dtype("double"), DType::F64);
        assert_eq!(dtype("position_ids"), DType::I64);
        assert_eq!(dtype("fp8"), DType::F8_E4M3);
        // Integer and float8 tensors are indexed but not read as weights.
        for name in ["position_ids", "fp8"] {
            let i = store.tensors().iter().position(|t| t.name == name).unwrap();
            let e = store.read(i).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(file), "{e}");
        }
    }
}

#[test]
fn reads_protocol_4_pickles() {
    let store = PickleStore::open_files(&[fixtures().join("protocol4.bin")]).unwrap();
    assert_eq!(store.tensors()[0].shape, vec![2, 3]);
    assert_eq!(store.read(0).unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn opens_sharded_checkpoints_through_their_index() {
    let dir = fixtures().join("sharded");
    let store = PickleStore::open_dir(&dir).unwrap().unwrap();
    assert_eq!(store.files().len(), 2);
    assert_matches_expected(&store, &dir.join("expected.safetensors"));
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert_eq!(ckpt.format(), SourceFormat::PytorchBin);
    let a = ckpt.require("a").unwrap().clone();
    assert_eq!(ckpt.read_matrix(&a).unwrap().shape(), (2, 3));
}

#[test]
fn shard_index_must_agree_with_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("sharded");
    for f in [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    std::fs::write(
        tmp.path().join("pytorch_model.bin.index.json"),
        r#"{"weight_map": {"model.a": "pytorch_model-00002-of-00002.bin"}}"#,
    )
    .unwrap();
    let e = PickleStore::open_dir(tmp.path()).err().unwrap().to_string();
    assert!(e.contains("maps `model.a`"), "{e}");
    std::fs::remove_file(tmp.path().join("pytorch_model.bin.index.json")).unwrap();
    let store = PickleStore::open_dir(tmp.path()).unwrap().unwrap();
    assert_eq!(
        store.tensors().len(),
        2,
        "unindexed shards are found by name"
    );
}

#[test]
fn legacy_format_is_named_with_a_conversion_hint() {
    let path = fixtures().join("legacy.bin");
    let e = PickleStore::open_files(std::slice::from_ref(&path))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("legacy.bin") && e.contains("legacy") && e.contains("torch.save"),
        "{e}"
    );
}

#[test]
fn malicious_pickle_is_refused_without_running_it() {
    let path = fixtures().join("malicious.bin");
    let err = PickleStore::open_files(std::slice::from_ref(&path))
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::Pickle { .. }));
    let e = err.to_string();
    // os.system pickles as `posix.system` on Linux.
    assert!(
        e.contains("malicious.bin") && e.contains("`posix.system`") && e.contains("refusing"),
        "{e}"
    );
}

/// Truncations and byte flips of a real file are errors or valid reads, never panics.
#[test]
fn corrupted_files_give_errors_not_panics() {
    let bytes = std::fs::read(fixtures().join("state_dict.bin")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pytorch_model.bin");
    let try_open = |data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        if let Ok(store) = PickleStore::open_files(std::slice::from_ref(&path)) {
            for i in 0..store.tensors().len() {
                let _ = store.read(i);
            }
        }
    };
    for cut in (0..bytes.len()).step_by(97) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(PickleStore::open_files(std::slice::from_ref(&path)).is_err());
    }
    for pos in (0..bytes.len()).step_by(11) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut data = bytes.clone();
            data[pos] ^= flip;
            try_open(&data);
        }
    }
}
