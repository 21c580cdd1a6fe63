//! Unit tests of the GGUF reader: format validation, name mapping from the registry, configuration.

use super::format::MAX_ARRAY_DEPTH;
use super::*;
use crate::config::ModelConfig;
use crate::dtype::DType;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn s(v: &str) -> GgufValue {
    GgufValue::Str(v.into())
}

fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    match GgufStore::open(&path) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("m.gguf"), "{e}");
            e
        }
    }
}

fn written(metadata: &[(&str, GgufValue)], tensors: &[(&str, u32, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_file(&path, metadata, tensors).unwrap();
    std::fs::read(path).unwrap()
}

fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, GgufStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    let store = GgufStore::open(&path).unwrap();
    (dir, store)
}

/// A header: magic, version, tensor count, metadata count.
fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

#[test]
fn reads_metadata_of_every_type_and_a_tensor() {
    let md = vec![
        ("general.architecture", s("test")),
        ("u8", GgufValue::U8(7)),
        ("i8", GgufValue::I8(-7)),
        ("u16", GgufValue::U16(700)),
        ("i16", GgufValue::I16(-700)),
        ("u32", GgufValue::U32(70000)),
        ("i32", GgufValue::I32(-70000)),
        ("u64", GgufValue::U64(1 << 40)),
        ("i64", GgufValue::I64(-(1 << 40))),
        ("f32", GgufValue::F32(1e-5)),
        ("f64", GgufValue::F64(0.1)),
        ("bool", GgufValue::Bool(true)),
        (
            "arr",
            GgufValue::Array(vec![
                GgufValue::Array(vec![s("a"), s("b")]),
                GgufValue::Array(vec![]),
            ]),
        ),
    ];
    let bytes = written(
        &md,
        &[("w", 0, vec![3, 2], f32_bytes(&[1., 2., 3., 4., 5., 6.]))],
    );
    let (_d, store) = open_bytes(&bytes);
    for (k, v) in &md {
        assert_eq!(store.get(k), Some(v), "{k}");
    }
    assert_eq!(store.get("f32").unwrap().as_f64(), Some(1e-5));
    assert_eq!(store.tensors()[0].shape, vec![2, 3]);
    assert_eq!(store.read(0).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    let e = store.config(None).unwrap_err().to_string();
    assert!(e.contains("`test` is not supported"), "{e}");
}

#[test]
fn rejects_bad_headers() {
    assert!(open_err(b"GGUF").contains("too short"));
    let mut b = header(3, 0, 0);
    b[0] = b'X';
    assert!(open_err(&b).contains("magic"));
    assert!(open_err(&header(1, 0, 0)).contains("version 1"));
    assert!(open_err(&header(7, 0, 0)).contains("version 7"));
    assert!(open_err(&header(3u32.swap_bytes(), 0, 0)).contains("big-endian"));
    assert!(open_err(&header(3, u64::MAX, 0)).contains("tensors"));
    assert!(open_err(&header(3, 0, 1 << 40)).contains("metadata entries"));
}

#[test]
fn rejects_absurd_lengths_in_metadata() {
    let good = written(&[("k", s("value"))], &[]);
    // Truncations anywhere are errors.
    for cut in 24..24 + (8 + 1) + 4 + (8 + 5) {
        let _ = open_err(&good[..cut]);
    }
    // A string length far past the end.
    let mut b = header(3, 0, 1);
    b.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
    b.extend_from_slice(&[0; 32]);
    assert!(open_err(&b).contains("runs past the end"));
    // Arrays claiming 2^40 elements (over the cap) and 2^20 (more than the file holds).
    let array = |n: u64| {
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b
    };
    let e = open_err(&array(1 << 40));
    assert!(
        e.contains("`k`") && e.contains("over the limit of 16777216 elements"),
        "{e}"
    );
    assert!(open_err(&array(1 << 20)).contains("cannot fit"));
    // Unknown value type, bad bool, deep nesting.
    let mut b = header(3, 0, 1);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'k');
    b.extend_from_slice(&13u32.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    assert!(open_err(&b).contains("unknown value type 13"));
    let mut bad_bool = written(&[("k", GgufValue::Bool(true))], &[]);
    bad_bool[24 + 8 + 1 + 4] = 2; // header, key length, key, value type

    assert!(open_err(&bad_bool).contains("neither 0 nor 1"));
    let mut deep = GgufValue::Array(vec![GgufValue::U8(1)]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = GgufValue::Array(vec![deep]);
    }
    assert!(open_err(&written(&[("k", deep)], &[])).contains("nested deeper"));
    let dup = written(&[("k", GgufValue::U8(1)), ("k", GgufValue::U8(2))], &[]);
    assert!(open_err(&dup).contains("appears twice"));
}

#[test]
fn rejects_bad_tensor_infos() {
    let w = |name, ty, ne: Vec<u64>, bytes| written(&[], &[(name, ty, ne, bytes)]);
    // Data past the end: drop the last bytes of a valid file.
    let good = w("w", 0, vec![8], f32_bytes(&[0.0; 8]));
    let e = open_err(&good[..good.len() - 4]);
    assert!(e.contains("`w`") && e.contains("past the end"), "{e}");
    let e = open_err(&w("w", 16, vec![256], vec![0; 66]));
    assert!(e.contains("`w`") && e.contains("IQ2_XXS"), "{e}");
    let e = open_err(&w("w", 99, vec![1], vec![0; 4]));
    assert!(e.contains("`w`") && e.contains("unknown (99)"), "{e}");
    let e = open_err(&w("w", 2, vec![16], vec![0; 18]));
    assert!(e.contains("block size 32"), "{e}");
    let e = open_err(&w("w", 0, vec![1, 1, 1, 1, 1], vec![0; 4]));
    assert!(e.contains("5 dimensions"), "{e}");
    let e = open_err(&w("w", 0, vec![1 << 62, 1 << 62], vec![0; 4]));
    assert!(
        e.contains("`w`") && e.contains("describe more data than"),
        "{e}"
    );
    // A tensor without data (a zero dimension) whose other dimension the file could not hold.
    let e = open_err(&w("w", 0, vec![0, 1 << 40], vec![]));
    assert!(
        e.contains("`w`") && e.contains("describe more data than"),
        "{e}"
    );
    let (_dir, empty) = open_bytes(&w("w", 0, vec![0, 3], vec![]));
    assert_eq!(empty.tensors()[0].shape, vec![3, 0]);
    let e = open_err(&w("w", 0, vec![u64::MAX], vec![0; 4]));
    assert!(e.contains("`w`"), "{e}");
    // Misaligned offsets, overlaps and duplicates, by editing the offsets of a valid file.
    let two = written(
        &[],
        &[
            ("a", 0, vec![8], f32_bytes(&[1.0; 8])),
            ("b", 0, vec![8], f32_bytes(&[2.0; 8])),
        ],
    );
    let b_offset_at = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4);
    let mut misaligned = two.clone();
    misaligned[b_offset_at] = 4;
    assert!(open_err(&misaligned).contains("not a multiple of the alignment"));
    let mut overlap = two.clone();
    overlap[b_offset_at] = 0;
    assert!(open_err(&overlap).contains("overlap"));
    let mut dup = two.clone();
    dup[24 + (8 + 1 + 4 + 8 + 4 + 8) + 8] = b'a';
    assert!(open_err(&dup).contains("appears twice"));
    let (_d, store) = open_bytes(&two);
    assert_eq!(store.read(1).unwrap(), vec![2.0; 8]);
}

#[test]
fn alignment_must_be_a_power_of_two() {
    let e = open_err(&written(&[("general.alignment", GgufValue::U32(24))], &[]));
    assert!(e.contains("power of two"), "{e}");
}

#[test]
fn integer_tensors_are_indexed_but_not_read() {
    let (_d, store) = open_bytes(&written(&[], &[("ids", 26, vec![2], vec![0; 8])]));
    assert_eq!(store.tensors()[0].dtype, DType::I32);
    let e = store.read(0).unwrap_err().to_string();
    assert!(e.contains("`ids`") && e.contains("I32"), "{e}");
}

fn arch_file(arch: &str, extra: &[(&str, GgufValue)], tensors: &[(&str, Vec<u64>)]) -> Vec<u8> {
    let mut md = vec![("general.architecture", s(arch))];
    md.extend(extra.iter().cloned());
    let data: Vec<(String, Vec<u64>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, ne)| {
            let count: u64 = ne.iter().product();
            let values: Vec<f32> = (0..count).map(|i| i as f32).collect();
            (n.to_string(), ne.clone(), f32_bytes(&values))
        })
        .collect();
    let t: Vec<(&str, u32, Vec<u64>, Vec<u8>)> = data
        .iter()
        .map(|(n, ne, b)| (n.as_str(), 0, ne.clone(), b.clone()))
        .collect();
    written(&md, &t)
}

fn by_name<'a>(store: &'a GgufStore, name: &str) -> (usize, &'a TensorMeta) {
    store
        .tensors()
        .iter()
        .enumerate()
        .find(|(_, t)| t.name == name)
        .unwrap_or_else(|| panic!("no `{name}`"))
}

#[test]
fn llama_names_shapes_and_config() {
    let u32v = GgufValue::U32;
    let bytes = arch_file(
        "llama",
        &[
            ("llama.embedding_length", u32v(8)),
            ("llama.block_count", u32v(1)),
            ("llama.attention.head_count", u32v(2)),
            ("llama.attention.head_count_kv", u32v(1)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                GgufValue::F32(1e-5),
            ),
            ("llama.rope.freq_base", GgufValue::F32(10000.0)),
        ],
        &[
            ("token_embd.weight", vec![8, 5]),
            ("blk.0.attn_q.weight", vec![8, 8]),
            ("blk.0.attn_k.weight", vec![8, 4]),
            ("blk.0.attn_output.weight", vec![8, 8]),
            ("blk.0.attn_norm.weight", vec![8]),
            ("rope_freqs.weight", vec![2]),
        ],
    );
    let (_d, store) = open_bytes(&bytes);
    let (_, q) = by_name(&store, "model.layers.0.self_attn.q_proj.weight");
    assert_eq!(q.stored_name(), "blk.0.attn_q.weight");
    let (k_i, k) = by_name(&store, "model.layers.0.self_attn.k_proj.weight");
    assert_eq!(k.shape, vec![4, 8]);
    assert_eq!(store.read(k_i).unwrap()[9], 9.0);
    by_name(&store, "model.layers.0.input_layernorm.weight");
    by_name(&store, "model.embed_tokens.weight");
    by_name(&store, "rope_freqs.weight");
    let c = store.config(None).unwrap();
    assert_eq!(c.model_type().unwrap(), "llama");
    let raw = c.raw();
    assert_eq!(raw["hidden_size"], 8);
    assert_eq!(raw["num_key_value_heads"], 1);
    assert_eq!(raw["vocab_size"], 5);
    assert_eq!(raw["rms_norm_eps"], 1e-5);
    assert_eq!(raw["rope_theta"], 10000.0);
    assert_eq!(raw["tie_word_embeddings"], true);
    // config.json values survive unless GGUF has its own.
    let base = ModelConfig::from_slice(
        Path::new("config.json"),
        br#"{"hidden_size": 99, "architectures": ["LlamaForCausalLM"]}"#,
    )
    .unwrap();
    let c = store.config(Some(&base)).unwrap();
    assert_eq!(c.raw()["hidden_size"], 8);
    assert_eq!(c.raw()["architectures"][0], "LlamaForCausalLM");
}

#[test]
fn gemma_norms_lose_the_added_one() {
    let bytes = arch_file(
        "gemma",
        &[],
        &[
            ("blk.0.attn_norm.weight", vec![4]),
            ("output_norm.weight", vec![4]),
        ],
    );
    let (_d, store) = open_bytes(&bytes);
    let (i, _) = by_name(&store, "model.layers.0.input_layernorm.weight");
    assert_eq!(store.read(i).unwrap(), vec![-1., 0., 1., 2.]);
    let (i, _) = by_name(&store, "model.norm.weight");
    assert_eq!(store.read(i).unwrap(), vec![-1., 0., 1., 2.]);
}

/// Stored row r of a fused tensor holds values r*cols..(r+1)*cols; the first value of each
/// exposed row therefore names the stored row it came from.
fn first_of_rows(values: &[f64], cols: usize) -> Vec<usize> {
    values.chunks(cols).map(|r| r[0] as usize / cols).collect()
}

#[test]
fn fused_qkv_layouts_are_restored() {
    let u32v = GgufValue::U32;
    // gpt_neox: 2 heads of width 2, d = 4: stored [Q0 Q1 K0 K1 V0 V1] (rows of 2).
    let bytes = arch_file(
        "gptneox",
        &[
            ("gptneox.embedding_length", u32v(4)),
            ("gptneox.attention.head_count", u32v(2)),
        ],
        &[
            ("blk.0.attn_qkv.weight", vec![4, 12]),
            ("blk.0.attn_qkv.bias", vec![12]),
        ],
    );
    let (_d, store) = open_bytes(&bytes);
    let (i, t) = by_name(&store, "gpt_neox.layers.0.attention.query_key_value.weight");
    assert_eq!(t.shape, vec![12, 4]);
    let rows = first_of_rows(&store.read(i).unwrap(), 4);
    assert_eq!(rows, vec![0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);
    let (i, _) = by_name(&store, "gpt_neox.layers.0.attention.query_key_value.bias");
    let bias: Vec<usize> = store.read(i).unwrap().iter().map(|&v| v as usize).collect();
    assert_eq!(bias, vec![0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);

    // falcon: 4 heads, 2 kv heads, head width 1, d = 4: stored [Q0..Q3 K0 K1 V0 V1];
    // Hugging Face groups [Q0 Q1 K0 V0][Q2 Q3 K1 V1].
    let bytes = arch_file(
        "falcon",
        &[
            ("falcon.embedding_length", u32v(4)),
            ("falcon.attention.head_count", u32v(4)),
            ("falcon.attention.head_count_kv", u32v(2)),
            ("falcon.block_count", u32v(1)),
        ],
        &[
            ("blk.0.attn_qkv.weight", vec![4, 8]),
            ("blk.0.attn_norm_2.weight", vec![4]),
            ("blk.0.attn_norm.weight", vec![4]),
        ],
    );
    let (_d, store) = open_bytes(&bytes);
    let (i, _) = by_name(
        &store,
        "transformer.h.0.self_attention.query_key_value.weight",
    );
    let rows = first_of_rows(&store.read(i).unwrap(), 4);
    assert_eq!(rows, vec![0, 1, 4, 6, 2, 3, 5, 7]);
    by_name(&store, "transformer.h.0.ln_attn.weight");
    by_name(&store, "transformer.h.0.ln_mlp.weight");
    let c = store.config(None).unwrap();
    assert_eq!(c.raw()["new_decoder_architecture"], true);
    assert_eq!(c.raw()["num_kv_heads"], 2);

    // gpt2: Conv1D weights come back transposed to [in, out].
    let bytes = arch_file(
        "gpt2",
        &[
            ("gpt2.embedding_length", u32v(2)),
            ("gpt2.attention.head_count", u32v(1)),
        ],
        &[("blk.0.attn_qkv.weight", vec![2, 6])],
    );
    let (_d, store) = open_bytes(&bytes);
    let (i, t) = by_name(&store, "transformer.h.0.attn.c_attn.weight");
    assert_eq!(t.shape, vec![2, 6]);
    assert_eq!(
        store.read(i).unwrap(),
        vec![0., 2., 4., 6., 8., 10., 1., 3., 5., 7., 9., 11.]
    );

    // phi2: a fused attn_qkv is split into q_proj, k_proj, v_proj.
    let bytes = arch_file(
        "phi2",
        &[
            ("phi2.embedding_length", u32v(2)),
            ("phi2.attention.head_count", u32v(2)),
        ],
        &[("blk.0.attn_qkv.weight", vec![2, 6])],
    );
    let (_d, store) = open_bytes(&bytes);
    let (i, t) = by_name(&store, "model.layers.0.self_attn.k_proj.weight");
    assert_eq!(t.shape, vec![2, 2]);
    assert_eq!(t.stored_name(), "blk.0.attn_qkv.weight");
    assert_eq!(store.read(i).unwrap(), vec![4., 5., 6., 7.]);
}

#[test]
fn unmappable_fused_layouts_are_rejected() {
    let u32v = GgufValue::U32;
    let bytes = arch_file(
        "bloom",
        &[
            ("bloom.embedding_length", u32v(4)),
            ("bloom.attention.head_count", u32v(2)),
        ],
        &[("blk.0.attn_qkv.weight", vec![4, 10])],
    );
    let e = open_err(&bytes);
    assert!(
        e.contains("blk.0.attn_qkv.weight") && e.contains("faithfully"),
        "{e}"
    );
    let bytes = arch_file(
        "mpt",
        &[
            ("mpt.embedding_length", u32v(4)),
            ("mpt.attention.head_count", u32v(2)),
            ("mpt.attention.head_count_kv", u32v(1)),
        ],
        &[("blk.0.attn_qkv.weight", vec![4, 8])],
    );
    assert!(open_err(&bytes).contains("no Hugging Face equivalent"));
    let bytes = arch_file(
        "falcon",
        &[
            ("falcon.embedding_length", u32v(4)),
            ("falcon.attention.head_count", u32v(4)),
            ("falcon.tensor_data_layout", s("other")),
        ],
        &[("blk.0.attn_qkv.weight", vec![4, 6])],
    );
    assert!(open_err(&bytes).contains("tensor_data_layout"));
}
/// For every fused architecture, the registry's canonical W_Q, W_K, W_V (read through the
/// Hugging Face names and layouts restored here) must be exactly GGUF's Q, K and V row
/// blocks: llama.cpp stores all of them as [Q; K; V].
#[test]
fn registry_reads_fused_architectures_back_to_gguf_blocks() {
    use crate::arch::Architecture;
    use crate::checkpoint::Checkpoint;
    use crate::matrix::Matrix;
    let u32v = GgufValue::U32;
    let cases: Vec<(&str, usize, usize, usize, bool)> = vec![
        // (arch, d, heads, kv heads, second attention norm)
        ("gptneox", 8, 2, 2, false),
        ("bloom", 8, 2, 2, false),
        ("falcon", 8, 4, 2, true),
        ("falcon", 8, 4, 1, false),
        ("mpt", 8, 2, 2, false),
        ("gpt2", 8, 2, 2, false),
        ("phi2", 8, 2, 2, false),
    ];
    for (arch, d, n_head, n_kv, norm2) in cases {
        let hd = d / n_head;
        let rows = (n_head + 2 * n_kv) * hd;
        let key = |k: &str| format!("{arch}.{k}");
        let (k_embd, k_heads, k_kv, k_blocks) = (
            key("embedding_length"),
            key("attention.head_count"),
            key("attention.head_count_kv"),
            key("block_count"),
        );
        let md = [
            (k_embd.as_str(), u32v(d as u32)),
            (k_heads.as_str(), u32v(n_head as u32)),
            (k_kv.as_str(), u32v(n_kv as u32)),
            (k_blocks.as_str(), u32v(1)),
        ];
        let mut tensors = vec![
            ("blk.0.attn_qkv.weight", vec![d as u64, rows as u64]),
            ("blk.0.attn_output.weight", vec![d as u64, d as u64]),
            ("blk.0.attn_norm.weight", vec![d as u64]),
            ("blk.0.attn_norm.bias", vec![d as u64]),
        ];
        if norm2 {
            tensors.push(("blk.0.attn_norm_2.weight", vec![d as u64]));
            tensors.push(("blk.0.attn_norm_2.bias", vec![d as u64]));
        }
        let bytes = arch_file(arch, &md, &tensors);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        let ckpt = Checkpoint::open(&path).unwrap();
        let a = Architecture::detect(ckpt.config()).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let layer = a.layer(&ckpt, 0).unwrap_or_else(|e| panic!("{arch}: {e}"));
        // Stored row r of attn_qkv holds the values r*d .. r*d + d.
        let block = |first: usize, count: usize| {
            Matrix::from_fn(count, d, |r, c| ((first + r) * d + c) as f64)
        };
        assert_eq!(layer.w_q, block(0, n_head * hd), "{arch} W_Q");
        assert_eq!(layer.w_k, block(n_head * hd, n_kv * hd), "{arch} W_K");
        assert_eq!(
            layer.w_v,
            block((n_head + n_kv) * hd, n_kv * hd),
            "{arch} W_V"
        );
        let o = Matrix::from_fn(d, d, |r, c| (r * d + c) as f64);
        assert_eq!(layer.w_o, o, "{arch} W_O");
    }
}

/// Every registry entry with GGUF names: a one-layer file with llama.cpp's names opens, gets a
/// configuration the registry detects, and its attention reads back as the stored blocks
/// (llama.cpp stores fused QKV as [Q; K; V]; separate tensors as they are).
#[test]
fn every_registry_gguf_entry_reads_back() {
    use crate::arch::Architecture;
    use crate::arch::spec::{Norm, Qkv, SPECS, Storage};
    use crate::checkpoint::Checkpoint;
    use crate::matrix::Matrix;
    let u32v = GgufValue::U32;
    let mut checked = 0;
    for spec in SPECS {
        let Some(names) = spec.gguf else { continue };
        let arch = names.arch;
        let fused = !matches!(spec.qkv, Qkv::Separate { .. });
        let d = 8;
        // Query/key-value heads the entry's Hugging Face layout can express.
        let (n_head, n_kv) = if spec.storage == Storage::Conv1D || (fused && !names.fused_kv_groups)
        {
            (4, 4)
        } else if spec.model_type == "gpt_bigcode" {
            (4, 1)
        } else {
            (4, 2)
        };
        // A head width apart from d / n_head where the entry reads head_dim from the config.
        let hd = if spec.keys.head_dim.contains(&"head_dim") {
            3
        } else {
            d / n_head
        };
        let key = |k: &str| format!("{arch}.{k}");
        let (k_embd, k_heads, k_kv, k_blocks, k_len) = (
            key("embedding_length"),
            key("attention.head_count"),
            key("attention.head_count_kv"),
            key("block_count"),
            key("attention.key_length"),
        );
        let mut md = vec![
            (k_embd.as_str(), u32v(d as u32)),
            (k_heads.as_str(), u32v(n_head as u32)),
            (k_kv.as_str(), u32v(n_kv as u32)),
            (k_blocks.as_str(), u32v(1)),
        ];
        if hd != d / n_head {
            md.push((k_len.as_str(), u32v(hd as u32)));
        }
        let (q_rows, kv_rows) = (n_head * hd, n_kv * hd);
        let mut tensors = vec![("blk.0.attn_output.weight", vec![q_rows as u64, d as u64])];
        if fused {
            tensors.push((
                "blk.0.attn_qkv.weight",
                vec![d as u64, (q_rows + 2 * kv_rows) as u64],
            ));
        } else {
            tensors.push(("blk.0.attn_q.weight", vec![d as u64, q_rows as u64]));
            tensors.push(("blk.0.attn_k.weight", vec![d as u64, kv_rows as u64]));
            tensors.push(("blk.0.attn_v.weight", vec![d as u64, kv_rows as u64]));
        }
        if !matches!(spec.norm, Norm::Post | Norm::LayerNormNoParams) {
            tensors.push(("blk.0.attn_norm.weight", vec![d as u64]));
        }
        let bytes = arch_file(arch, &md, &tensors);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(ckpt.config().model_type().unwrap(), spec.model_type);
        let a = Architecture::detect(ckpt.config()).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let g = a.geometry();
        assert_eq!(
            (g.n_heads, g.n_kv_heads, g.d_head),
            (n_head, n_kv, hd),
            "{arch}"
        );
        let layer = a.layer(&ckpt, 0).unwrap_or_else(|e| panic!("{arch}: {e}"));
        // Stored row r of a tensor holds the values r*d .. r*d + d.
        let block = |first: usize, count: usize| {
            Matrix::from_fn(count, d, |r, c| ((first + r) * d + c) as f64)
        };
        let (q, k, v) = if fused {
            (0, q_rows, q_rows + kv_rows)
        } else {
            (0, 0, 0)
        };
        assert_eq!(layer.w_q, block(q, q_rows), "{arch} W_Q");
        assert_eq!(layer.w_k, block(k, kv_rows), "{arch} W_K");
        assert_eq!(layer.w_v, block(v, kv_rows), "{arch} W_V");
        let o = Matrix::from_fn(d, q_rows, |r, c| (r * q_rows + c) as f64);
        assert_eq!(layer.w_o, o, "{arch} W_O");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} GGUF entries");
}

#[test]
fn gguf_architecture_names_are_unique_and_listed_when_unsupported() {
    let archs = crate::arch::spec::gguf_supported();
    let mut sorted = archs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), archs.len(), "{archs:?}");
    let bytes = arch_file("rwkv6", &[], &[]);
    let (_d, store) = open_bytes(&bytes);
    let e = store.config(None).unwrap_err().to_string();
    assert!(
        e.contains("rwkv6") && e.contains("qwen3") && e.contains("gemma2"),
        "{e}"
    );
}
