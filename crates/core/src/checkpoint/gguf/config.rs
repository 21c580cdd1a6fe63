//! The model configuration of a GGUF file, in `config.json` terms, from its metadata and the
//! registry entry of its architecture.

use serde_json::{Map, Value};

use super::GgufStore;
use super::format::{GgufValue, corrupt};
use crate::arch::spec::{self, GgufMetadata};
use crate::checkpoint::CheckpointError;
use crate::config::ModelConfig;

impl GgufMetadata for GgufStore {
    fn arch_uint(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
        self.uint(&format!("{}.{key}", self.architecture()?))
    }

    fn arch_float(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        self.float(&format!("{}.{key}", self.architecture()?))
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.has_stored(name)
    }
}

impl GgufStore {
    /// The model configuration in `config.json` terms, built from the metadata on top of
    /// `base` (a `config.json` next to the file) when given: GGUF values win where both have one.
    pub fn config(&self, base: Option<&ModelConfig>) -> Result<ModelConfig, CheckpointError> {
        let arch_name = self.architecture()?.to_string();
        let (spec, names) = spec::find_gguf(&arch_name).ok_or_else(|| {
            corrupt(
                self.path(),
                format!(
                    "architecture `{arch_name}` is not supported (supported: {})",
                    spec::gguf_supported().join(", ")
                ),
            )
        })?;
        let a = arch_name.as_str();
        let key = |k: &str| format!("{a}.{k}");
        let mut c: Map<String, Value> = base.map(|b| b.raw().clone()).unwrap_or_default();
        let mut set = |k: &str, v: Value| {
            c.insert(k.to_string(), v);
        };
        set("model_type", spec.model_type.into());
        let d = self.positive(&key("embedding_length"))?;
        let n_head = self.positive(&key("attention.head_count"))?;
        let n_layer = self.positive(&key("block_count"))?;
        let n_kv = self.uint(&key("attention.head_count_kv"))?;
        set("hidden_size", d.into());
        set("num_attention_heads", n_head.into());
        set("num_hidden_layers", n_layer.into());
        set("num_key_value_heads", n_kv.unwrap_or(n_head).into());
        // The entry's own names for the dimensions (GPT-2's n_embd, MPT's d_model, ...).
        let k = &spec.keys;
        for (keys, v) in [(k.d_model, d), (k.n_heads, n_head), (k.n_layers, n_layer)] {
            if let Some(first) = keys.first() {
                set(first, v.into());
            }
        }
        let head_dim = self.uint(&key("attention.key_length"))?;
        if let Some(hd) = head_dim {
            set("head_dim", hd.into());
        }
        let ffn = self.uint(&key("feed_forward_length"))?;
        if let Some(f) = ffn {
            set("intermediate_size", f.into());
        }
        let ctx = self.uint(&key("context_length"))?;
        if let Some(n) = ctx {
            set("max_position_embeddings", n.into());
        }
        if let Some(theta) = self.float(&key("rope.freq_base"))? {
            set("rope_theta", theta.into());
        }
        let rms_eps = self.float(&key("attention.layer_norm_rms_epsilon"))?;
        if let Some(eps) = rms_eps {
            set("rms_norm_eps", eps.into());
        }
        let ln_eps = self.float(&key("attention.layer_norm_epsilon"))?;
        let vocab = match self.uint(&key("vocab_size"))? {
            Some(v) => Some(v),
            None => match self.stored.iter().find(|t| t.name == "token_embd.weight") {
                Some(t) => t.shape().first().copied(),
                None => match self.get("tokenizer.ggml.tokens") {
                    Some(GgufValue::Array(items)) => Some(items.len()),
                    _ => None,
                },
            },
        };
        if let Some(v) = vocab {
            set("vocab_size", v.into());
        }
        set(
            "tie_word_embeddings",
            (!self.has_stored("output.weight")).into(),
        );
        let rot_dims = self.uint(&key("rope.dimension_count"))?;
        let head = head_dim.unwrap_or(d / n_head);
        let rotary_fraction = rot_dims
            .filter(|_| head > 0)
            .map(|r| r as f64 / head as f64);
        let gc = &names.config;
        for (config_key, value) in [
            (gc.layer_norm_eps, ln_eps.map(Value::from)),
            (gc.rotary_fraction, rotary_fraction.map(Value::from)),
            (gc.context, ctx.map(Value::from)),
            (gc.feed_forward, ffn.map(Value::from)),
        ] {
            if let (Some(k), Some(v)) = (config_key, value) {
                set(k, v);
            }
        }
        for (gguf_key, config_key) in gc.flags {
            if let Some(b) = self.boolean(&key(gguf_key))? {
                set(config_key, b.into());
            }
        }
        if let Some(extra) = gc.extra {
            extra(self, &mut c)?;
        }
        ModelConfig::from_value(self.path(), Value::Object(c)).map_err(CheckpointError::from)
    }
}
