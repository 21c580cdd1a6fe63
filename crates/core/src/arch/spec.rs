//! The architecture table: one [`ArchSpec`] per `config.json` `model_type`.
//!
//! Adding an architecture is one entry in [`SPECS`]: which config keys hold the dimensions,
//! where each layer's tensors live (matched by suffix, so model prefixes don't matter), how
//! Q, K and V are stored (separate, fused in blocks, or fused and grouped per KV head),
//! whether weights are `nn.Linear` [out, in] or GPT-2's `Conv1D` [in, out], and which norm
//! precedes attention. Settings that depend on the config (Falcon's three fused layouts,
//! OPT's post-LayerNorm variant) go in the entry's `adjust` function.

use super::{ArchError, Geometry};
use crate::config::ModelConfig;

/// How a weight matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `nn.Linear`: [out_features, in_features].
    Linear,
    /// GPT-2's `Conv1D`: [in_features, out_features].
    Conv1D,
}

/// How the Q, K and V projections are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qkv {
    /// Three tensors (names relative to the layer prefix, without `.weight`).
    Separate {
        q: &'static str,
        k: &'static str,
        v: &'static str,
    },
    /// One tensor whose output rows are Q (n_heads·d_head) | K (n_kv·d_head) | V (n_kv·d_head).
    Blocks(&'static str),
    /// One tensor whose output rows, viewed as [n_kv, n_heads/n_kv + 2, d_head], hold for each
    /// KV group its query heads, then its K head, then its V head. With n_kv = n_heads this is
    /// GPT-NeoX's and BLOOM's [n_heads, 3, d_head] interleave; with n_kv = 1 it is Q | K | V.
    Grouped(&'static str),
}

/// The norm applied to the attention input (names relative to the layer prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// LayerNorm with `.weight` and optional `.bias`.
    LayerNorm(&'static str),
    /// RMSNorm with `.weight`, applied as x̂ · w.
    RmsNorm(&'static str),
    /// RMSNorm applied as x̂ · (1 + w) (Gemma).
    RmsNormPlusOne(&'static str),
    /// Post-LayerNorm: no norm before attention.
    Post,
}

impl Norm {
    /// A short name for reports ("layernorm", "rmsnorm", "rmsnorm_plus_one", "none").
    pub fn kind(&self) -> &'static str {
        match self {
            Norm::LayerNorm(_) => "layernorm",
            Norm::RmsNorm(_) => "rmsnorm",
            Norm::RmsNormPlusOne(_) => "rmsnorm_plus_one",
            Norm::Post => "none",
        }
    }
}

/// Config keys, tried in order; the first present wins.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    pub d_model: &'static [&'static str],
    pub n_heads: &'static [&'static str],
    /// Empty, or none present: as many KV heads as query heads.
    pub n_kv_heads: &'static [&'static str],
    pub n_layers: &'static [&'static str],
    /// Empty, or none present: d_model / n_heads.
    pub head_dim: &'static [&'static str],
}

/// The per-model settings an entry resolves to; `adjust` may change them.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub geometry: Geometry,
    pub qkv: Qkv,
    pub norm: Norm,
}

/// A config-dependent change to an entry's layout.
pub type Adjust = fn(&ModelConfig, &mut Layout) -> Result<(), ArchError>;

/// One architecture.
#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    /// `model_type` in config.json.
    pub model_type: &'static str,
    /// One line for `pipeline inspect` and the docs.
    pub summary: &'static str,
    pub keys: Keys,
    /// Layer prefix with `{}` for the layer index, e.g. `h.{}.`.
    pub layer: &'static str,
    pub qkv: Qkv,
    /// Output projection (relative to the layer prefix, without `.weight`).
    pub out: &'static str,
    pub storage: Storage,
    pub norm: Norm,
    /// Config-dependent changes to the layout.
    pub adjust: Option<Adjust>,
}

const HF_KEYS: Keys = Keys {
    d_model: &["hidden_size"],
    n_heads: &["num_attention_heads"],
    n_kv_heads: &["num_key_value_heads"],
    n_layers: &["num_hidden_layers"],
    head_dim: &["head_dim"],
};

const LLAMA_QKV: Qkv = Qkv::Separate {
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
};

/// Every supported architecture.
pub static SPECS: &[ArchSpec] = &[
    ArchSpec {
        model_type: "gpt2",
        summary: "GPT-2: fused c_attn Q|K|V stored as Conv1D [in, out]",
        keys: Keys {
            d_model: &["n_embd", "hidden_size"],
            n_heads: &["n_head", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layer", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Blocks("attn.c_attn"),
        out: "attn.c_proj",
        storage: Storage::Conv1D,
        norm: Norm::LayerNorm("ln_1"),
        adjust: None,
    },
    ArchSpec {
        model_type: "gpt_neo",
        summary: "GPT-Neo: separate projections under an extra `.attention.` level",
        keys: Keys {
            d_model: &["hidden_size"],
            n_heads: &["num_heads", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["num_layers", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Separate {
            q: "attn.attention.q_proj",
            k: "attn.attention.k_proj",
            v: "attn.attention.v_proj",
        },
        out: "attn.attention.out_proj",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("ln_1"),
        adjust: None,
    },
    ArchSpec {
        model_type: "gptj",
        summary: "GPT-J: separate projections, parallel attention and MLP",
        keys: Keys {
            d_model: &["n_embd", "hidden_size"],
            n_heads: &["n_head", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layer", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Separate {
            q: "attn.q_proj",
            k: "attn.k_proj",
            v: "attn.v_proj",
        },
        out: "attn.out_proj",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("ln_1"),
        adjust: None,
    },
    ArchSpec {
        model_type: "gpt_neox",
        summary: "GPT-NeoX / Pythia: fused query_key_value interleaved per head [n_heads, 3, d_head, d]",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: Qkv::Grouped("attention.query_key_value"),
        out: "attention.dense",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "opt",
        summary: "OPT: separate projections; post-LayerNorm when do_layer_norm_before is false (opt-350m)",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: Qkv::Separate {
            q: "self_attn.q_proj",
            k: "self_attn.k_proj",
            v: "self_attn.v_proj",
        },
        out: "self_attn.out_proj",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("self_attn_layer_norm"),
        adjust: Some(adjust_opt),
    },
    ArchSpec {
        model_type: "bloom",
        summary: "BLOOM: fused query_key_value interleaved per head [n_heads, 3, d_head, d]",
        keys: Keys {
            d_model: &["hidden_size", "n_embed"],
            n_heads: &["n_head", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layer", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Grouped("self_attention.query_key_value"),
        out: "self_attention.dense",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "llama",
        summary: "Llama: separate projections, grouped-query attention, RMSNorm",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: LLAMA_QKV,
        out: "self_attn.o_proj",
        storage: Storage::Linear,
        norm: Norm::RmsNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "mistral",
        summary: "Mistral: as Llama",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: LLAMA_QKV,
        out: "self_attn.o_proj",
        storage: Storage::Linear,
        norm: Norm::RmsNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "qwen2",
        summary: "Qwen2: as Llama, with Q/K/V biases",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: LLAMA_QKV,
        out: "self_attn.o_proj",
        storage: Storage::Linear,
        norm: Norm::RmsNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "gemma",
        summary: "Gemma: as Llama, head_dim independent of hidden_size, RMSNorm applied as 1 + w",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: LLAMA_QKV,
        out: "self_attn.o_proj",
        storage: Storage::Linear,
        norm: Norm::RmsNormPlusOne("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "phi",
        summary: "Phi-1/1.5/2: separate projections with biases, output `dense`, LayerNorm",
        keys: HF_KEYS,
        layer: "layers.{}.",
        qkv: LLAMA_QKV,
        out: "self_attn.dense",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("input_layernorm"),
        adjust: None,
    },
    ArchSpec {
        model_type: "falcon",
        summary: "Falcon: fused query_key_value; grouped per KV head (new_decoder_architecture), \
                  Q|K|V (multi_query) or per-head interleave (classic)",
        keys: Keys {
            d_model: &["hidden_size"],
            n_heads: &["num_attention_heads", "n_head"],
            n_kv_heads: &[],
            n_layers: &["num_hidden_layers", "n_layer"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Grouped("self_attention.query_key_value"),
        out: "self_attention.dense",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("input_layernorm"),
        adjust: Some(adjust_falcon),
    },
    ArchSpec {
        model_type: "mpt",
        summary: "MPT: fused Wqkv Q|K|V blocks",
        keys: Keys {
            d_model: &["d_model", "hidden_size"],
            n_heads: &["n_heads", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layers", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "blocks.{}.",
        qkv: Qkv::Blocks("attn.Wqkv"),
        out: "attn.out_proj",
        storage: Storage::Linear,
        norm: Norm::LayerNorm("norm_1"),
        adjust: None,
    },
    ArchSpec {
        model_type: "bert",
        summary: "BERT: post-LayerNorm encoder; query/key/value and attention.output.dense",
        keys: HF_KEYS,
        layer: "layer.{}.",
        qkv: Qkv::Separate {
            q: "attention.self.query",
            k: "attention.self.key",
            v: "attention.self.value",
        },
        out: "attention.output.dense",
        storage: Storage::Linear,
        norm: Norm::Post,
        adjust: None,
    },
];

/// OPT: `do_layer_norm_before = false` (opt-350m) puts the LayerNorm after attention.
fn adjust_opt(config: &ModelConfig, layout: &mut Layout) -> Result<(), ArchError> {
    if !config.bool_or("do_layer_norm_before", true)? {
        layout.norm = Norm::Post;
    }
    Ok(())
}

/// Falcon's three fused layouts, all expressed as [`Qkv::Grouped`]:
/// - `new_decoder_architecture`: `num_kv_heads` groups of [n_heads/n_kv queries, K, V];
/// - `multi_query` (and not new): one group, Q | K | V;
/// - neither: per-head interleave [n_heads, 3, d_head].
///
/// The new architecture normalises the attention input with `ln_attn` when it keeps two
/// norms in parallel (`num_ln_in_parallel_attn`, default 2 for it).
fn adjust_falcon(config: &ModelConfig, layout: &mut Layout) -> Result<(), ArchError> {
    let g = &mut layout.geometry;
    let new_arch = config.bool_or("new_decoder_architecture", false)?;
    g.n_kv_heads = if new_arch {
        config.usize_opt(&["num_kv_heads"])?.unwrap_or(g.n_heads)
    } else if config.bool_or("multi_query", true)? {
        1
    } else {
        g.n_heads
    };
    let parallel = config.bool_or("parallel_attn", true)?;
    let num_ln = config.usize_opt(&["num_ln_in_parallel_attn"])?;
    let num_ln = num_ln.unwrap_or(if new_arch { 2 } else { 1 });
    if parallel && num_ln == 2 {
        layout.norm = Norm::LayerNorm("ln_attn");
    }
    Ok(())
}

/// The entry for `model_type`.
pub fn find(model_type: &str) -> Option<&'static ArchSpec> {
    SPECS.iter().find(|s| s.model_type == model_type)
}

/// The supported `model_type` values, in table order.
pub fn supported() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.model_type).collect()
}
