//! Shared helpers of the mock-Hub tests: tiny checkpoints written with
//! `attn_spectra::checkpoint::safetensors::write_file`, a served tree and a cache per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use attn_spectra::DType;
use attn_spectra::checkpoint::safetensors::write_file;
use attn_spectra_hub::mock::MockHub;
use attn_spectra_hub::{Hub, HubOptions};
use sha2::{Digest, Sha256};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub hub: MockHub,
    pub cache: PathBuf,
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let hub = MockHub::start(dir.path().join("served")).unwrap();
    let cache = dir.path().join("cache");
    Env { dir, hub, cache }
}

impl Env {
    /// Options for the mock: no bars, quick retries, short timeouts.
    pub fn opts(&self) -> HubOptions {
        let mut o = HubOptions::new(self.hub.endpoint(), &self.cache);
        o.progress = false;
        o.max_attempts = 4;
        o.retry_base_delay = Duration::from_millis(10);
        o.connect_timeout = Duration::from_secs(5);
        o.read_timeout = Duration::from_secs(5);
        o
    }

    pub fn client(&self) -> Hub {
        Hub::new(self.opts()).unwrap()
    }

    /// The served copy of a file.
    pub fn served(&self, model: &str, revision: &str, file: &str) -> PathBuf {
        self.hub.root().join(model).join(revision).join(file)
    }

    pub fn served_bytes(&self, model: &str, revision: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.served(model, revision, file)).unwrap()
    }

    /// `config.json` of a tiny llama-like model.
    pub fn put_config(&self, model: &str, revision: &str) {
        let cfg = serde_json::json!({
            "model_type": "llama",
            "hidden_size": 8,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "num_hidden_layers": 1,
        });
        self.hub
            .put_file(model, revision, "config.json", cfg.to_string().as_bytes())
            .unwrap();
    }

    /// A safetensors file holding `tensors` (name, values, rows, cols) as F32.
    pub fn put_safetensors(
        &self,
        model: &str,
        revision: &str,
        file: &str,
        tensors: &[(&str, Vec<f32>, usize, usize)],
    ) -> PathBuf {
        let path = self.served(model, revision, file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let list: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, v, r, c)| (*n, DType::F32, vec![*r, *c], f32_bytes(v)))
            .collect();
        write_file(&path, &list).unwrap();
        path
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `n` distinct values from `seed` (exactly representable in f32).
pub fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| seed + i as f32 * 0.25).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The safetensors header length of a file, read straight from its first 8 bytes.
pub fn header_len(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

pub const Q: &str = "model.layers.0.self_attn.q_proj.weight";
pub const K: &str = "model.layers.0.self_attn.k_proj.weight";
pub const V: &str = "model.layers.0.self_attn.v_proj.weight";
pub const O: &str = "model.layers.0.self_attn.o_proj.weight";
pub const MLP: &str = "model.layers.0.mlp.up_proj.weight";

/// A one-file model on `revision`: q/k/v/o (8x8) and an MLP matrix (32x8), values from `seed`.
pub fn put_single(env: &Env, model: &str, revision: &str, seed: f32) -> PathBuf {
    env.put_config(model, revision);
    env.put_safetensors(
        model,
        revision,
        "model.safetensors",
        &[
            (Q, values(64, seed), 8, 8),
            (K, values(64, seed + 100.0), 8, 8),
            (V, values(64, seed + 200.0), 8, 8),
            (O, values(64, seed + 300.0), 8, 8),
            (MLP, values(256, seed + 400.0), 32, 8),
        ],
    )
}
