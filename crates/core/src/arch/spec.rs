//! The architecture table: one [`ArchSpec`] per `config.json` `model_type`.
//!
//! Adding an architecture is one entry in [`SPECS`]: which config keys hold the dimensions,
//! where each layer's tensors live (matched by suffix, so model prefixes don't matter), how
//! Q, K and V are stored (separate, fused in blocks, or fused and grouped per KV head),
//! whether weights are `nn.Linear` [out, in] or GPT-2's `Conv1D` [in, out], and which norm
//! precedes attention. Settings that depend on the config (Falcon's three fused layouts,
//! OPT's post-LayerNorm variant) go in the entry's `adjust` function.
//!
//! The same entry says how llama.cpp names the architecture in GGUF files ([`GgufNames`]):
//! its `general.architecture`, the Hugging Face prefix of its tensors, the names of the tensors
//! around attention, and the configuration keys; the GGUF reader
//! ([`crate::checkpoint::gguf`]) derives every attention tensor's name and layout from the
//! entry's `qkv`, `out`, `storage` and `norm`, so there is no second table.

use serde_json::{Map, Value};

use super::{ArchError, Geometry};
use crate::checkpoint::CheckpointError;
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
    /// LayerNorm without learned gain or bias (OLMo): the gain is 1.
    LayerNormNoParams,
    /// No norm before attention: post-LayerNorm models (BERT), and models that normalise the
    /// attention output instead (OLMo 2, EXAONE 4).
    Post,
}

/// A normalisation of the queries and keys after W_Q and W_K, inside the attention logits.
///
/// It is not linear, so it cannot be folded into the projections: the tool reports W_Q^h and
/// W_K^g as they are and records (in the layer's sources and in `pipeline inspect`) that the
/// model normalises them. Names are relative to the layer prefix, without `.weight`; a gain
/// that is absent from a checkpoint (a config that turns the norm off) is simply not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// RMSNorm over each head's d_head outputs, one gain vector shared by the heads (Qwen3,
    /// Gemma 3, EXAONE 4, Apertus).
    PerHeadRms {
        q: &'static str,
        k: &'static str,
    },
    /// RMSNorm over the whole projection's outputs, all heads at once (OLMo 2).
    WholeRms {
        q: &'static str,
        k: &'static str,
    },
    /// LayerNorm over each head's outputs, when the config enables it (Cohere `use_qk_norm`,
    /// StableLM `qk_layernorm`, Persimmon `qk_layernorm`).
    PerHeadLayerNorm {
        q: &'static str,
        k: &'static str,
    },
    /// Parameter-free L2 normalisation of each head's query and key (Llama 4, on its rotary
    /// layers when `use_qk_norm`).
    PerHeadL2,
}

impl QkNorm {
    /// A short description for `pipeline inspect` and the sources of each layer.
    pub fn describe(&self) -> &'static str {
        match self {
            QkNorm::None => "none",
            QkNorm::PerHeadRms { .. } => {
                "per-head RMSNorm of q and k after the projections (not folded)"
            }
            QkNorm::WholeRms { .. } => "RMSNorm of the whole q and k projections (not folded)",
            QkNorm::PerHeadLayerNorm { .. } => {
                "per-head LayerNorm of q and k after the projections when the config enables it (not folded)"
            }
            QkNorm::PerHeadL2 => {
                "parameter-free L2 norm of each head's q and k on rotary layers (not folded)"
            }
        }
    }
}

impl Norm {
    /// A short name for reports ("layernorm", "rmsnorm", "rmsnorm_plus_one",
    /// "layernorm_no_params", "none").
    pub fn kind(&self) -> &'static str {
        match self {
            Norm::LayerNorm(_) => "layernorm",
            Norm::RmsNorm(_) => "rmsnorm",
            Norm::RmsNormPlusOne(_) => "rmsnorm_plus_one",
            Norm::LayerNormNoParams => "layernorm_no_params",
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
    /// What the model does to queries and keys after W_Q and W_K, recorded, not applied.
    pub qk_norm: QkNorm,
    /// How llama.cpp's GGUF files name this architecture; `None` when it has no GGUF mapping.
    pub gguf: Option<GgufNames>,
}

/// How llama.cpp (`convert_hf_to_gguf.py`) names an architecture's tensors and metadata.
///
/// Attention tensors are derived from the entry itself: `blk.N.attn_norm` is the entry's norm,
/// `attn_q`/`attn_k`/`attn_v` its separate projections, `attn_qkv` its fused tensor (always
/// `[Q; K; V]` in GGUF, restored to the entry's `qkv` layout, or split when the entry has
/// separate projections), `attn_output` its `out`. Conv1D entries have their weights transposed
/// back; entries whose norm is applied as `1 + w` have the converter's added 1 subtracted from
/// every `*_norm` weight.
#[derive(Clone, Copy, Debug)]
pub struct GgufNames {
    /// The `general.architecture` value.
    pub arch: &'static str,
    /// The Hugging Face name prefix in front of the entry's `layer` (`model.` for
    /// `model.layers.3.`).
    pub root: &'static str,
    /// Tensors outside the layers: (GGUF name without `.weight`/`.bias`, Hugging Face name).
    pub globals: &'static [(&'static str, &'static str)],
    /// Layer tensors besides the attention ones above (MLP, further norms): (GGUF part after
    /// `blk.N.`, Hugging Face module after the layer prefix).
    pub layer: &'static [(&'static str, &'static str)],
    /// Whether the Hugging Face fused layout exists with fewer key/value heads than query
    /// heads (Falcon's groups); if not, such a GGUF `attn_qkv` is refused.
    pub fused_kv_groups: bool,
    /// (GGUF part, Hugging Face module): when a layer has this GGUF tensor, its `attn_norm` is
    /// that module instead of the entry's norm (Falcon-40B's `attn_norm_2` -> `ln_attn`).
    pub split_attn_norm: Option<(&'static str, &'static str)>,
    /// (metadata key after `<arch>.`, required value): `attn_qkv` is mapped only when the key
    /// is absent or has this value (Falcon's `tensor_data_layout`, `jploski`).
    pub qkv_layout: Option<(&'static str, &'static str)>,
    pub config: GgufConfig,
}

/// Configuration keys a GGUF file's metadata fills beyond the dimensions (which go under the
/// entry's `keys` and the usual Hugging Face names).
#[derive(Clone, Copy, Debug)]
pub struct GgufConfig {
    /// Config key for `<arch>.attention.layer_norm_epsilon`.
    pub layer_norm_eps: Option<&'static str>,
    /// Config key for the rotary fraction `<arch>.rope.dimension_count / head_dim`.
    pub rotary_fraction: Option<&'static str>,
    /// Further config key for `<arch>.context_length`.
    pub context: Option<&'static str>,
    /// Further config key for `<arch>.feed_forward_length`.
    pub feed_forward: Option<&'static str>,
    /// Booleans copied when present: (metadata key after `<arch>.`, config key).
    pub flags: &'static [(&'static str, &'static str)],
    /// Anything that needs computing.
    pub extra: Option<GgufExtra>,
}

/// The GGUF metadata and tensor names, as a configuration hook sees them.
pub trait GgufMetadata {
    /// An unsigned integer under `<arch>.{key}`.
    fn arch_uint(&self, key: &str) -> Result<Option<usize>, CheckpointError>;
    /// A float under `<arch>.{key}`.
    fn arch_float(&self, key: &str) -> Result<Option<f64>, CheckpointError>;
    /// Whether the file stores a tensor of this GGUF name.
    fn has_tensor(&self, name: &str) -> bool;
}

/// A configuration hook: adds keys computed from the metadata.
pub type GgufExtra = fn(&dyn GgufMetadata, &mut Map<String, Value>) -> Result<(), CheckpointError>;

const NO_GGUF_CONFIG: GgufConfig = GgufConfig {
    layer_norm_eps: None,
    rotary_fraction: None,
    context: None,
    feed_forward: None,
    flags: &[],
    extra: None,
};

/// `model.embed_tokens`, `model.norm`, `lm_head`.
const LLAMA_GGUF_GLOBALS: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// A pre-norm Llama MLP block.
const LLAMA_GGUF_LAYER: &[(&str, &str)] = &[
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// A Llama-like architecture in GGUF: `model.layers.N.`, the Llama MLP and top-level names.
const fn llama_gguf(arch: &'static str) -> Option<GgufNames> {
    Some(GgufNames {
        arch,
        root: "model.",
        globals: LLAMA_GGUF_GLOBALS,
        layer: LLAMA_GGUF_LAYER,
        fused_kv_groups: false,
        split_attn_norm: None,
        qkv_layout: None,
        config: NO_GGUF_CONFIG,
    })
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

/// The Llama layout that most recent decoders share; entries below change what differs.
const LLAMA: ArchSpec = ArchSpec {
    model_type: "llama",
    summary: "Llama: separate projections, grouped-query attention, RMSNorm",
    keys: HF_KEYS,
    layer: "layers.{}.",
    qkv: LLAMA_QKV,
    out: "self_attn.o_proj",
    storage: Storage::Linear,
    norm: Norm::RmsNorm("input_layernorm"),
    adjust: None,
    qk_norm: QkNorm::None,
    gguf: llama_gguf("llama"),
};

/// Qwen3's, Gemma 3's, EXAONE 4's and Apertus' per-head `q_norm` / `k_norm`.
const QK_RMS: QkNorm = QkNorm::PerHeadRms {
    q: "self_attn.q_norm",
    k: "self_attn.k_norm",
};

/// Qwen3 in GGUF: the Llama names plus the q/k norms.
const QWEN3_GGUF_LAYER: &[(&str, &str)] = &[
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

/// Gemma 2/3 in GGUF: four norms per layer.
const GEMMA2_GGUF_LAYER: &[(&str, &str)] = &[
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

/// OLMo 2 and EXAONE 4 in GGUF: norms after attention and MLP, q/k norms.
const POST_NORM_GGUF_LAYER: &[(&str, &str)] = &[
    ("post_attention_norm", "post_attention_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

/// A Llama-like GGUF architecture with its own layer names.
const fn gguf_with(
    arch: &'static str,
    layer: &'static [(&'static str, &'static str)],
) -> Option<GgufNames> {
    Some(GgufNames {
        arch,
        root: "model.",
        globals: LLAMA_GGUF_GLOBALS,
        layer,
        fused_kv_groups: false,
        split_attn_norm: None,
        qkv_layout: None,
        config: NO_GGUF_CONFIG,
    })
}

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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "gpt2",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.wte"),
                ("position_embd", "transformer.wpe"),
                ("output_norm", "transformer.ln_f"),
                ("output", "lm_head"),
            ],
            layer: &[
                ("ffn_norm", "ln_2"),
                ("ffn_up", "mlp.c_fc"),
                ("ffn_down", "mlp.c_proj"),
            ],
            fused_kv_groups: false,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_epsilon"),
                context: Some("n_positions"),
                feed_forward: Some("n_inner"),
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: None,
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
        qk_norm: QkNorm::None,
        gguf: None,
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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "gptneox",
            root: "gpt_neox.",
            globals: &[
                ("token_embd", "gpt_neox.embed_in"),
                ("output_norm", "gpt_neox.final_layer_norm"),
                ("output", "embed_out"),
            ],
            layer: &[
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_up", "mlp.dense_h_to_4h"),
                ("ffn_down", "mlp.dense_4h_to_h"),
            ],
            fused_kv_groups: false,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_eps"),
                rotary_fraction: Some("rotary_pct"),
                flags: &[("use_parallel_residual", "use_parallel_residual")],
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: None,
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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "bloom",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.word_embeddings"),
                ("token_embd_norm", "transformer.word_embeddings_layernorm"),
                ("output_norm", "transformer.ln_f"),
                ("output", "lm_head"),
            ],
            layer: &[
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_up", "mlp.dense_h_to_4h"),
                ("ffn_down", "mlp.dense_4h_to_h"),
            ],
            fused_kv_groups: false,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_epsilon"),
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: llama_gguf("llama"),
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
        qk_norm: QkNorm::None,
        gguf: llama_gguf("mistral"),
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
        qk_norm: QkNorm::None,
        gguf: llama_gguf("qwen2"),
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
        qk_norm: QkNorm::None,
        gguf: llama_gguf("gemma"),
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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "phi2",
            root: "model.",
            globals: &[
                ("token_embd", "model.embed_tokens"),
                ("output_norm", "model.final_layernorm"),
                ("output", "lm_head"),
            ],
            layer: &[("ffn_up", "mlp.fc1"), ("ffn_down", "mlp.fc2")],
            fused_kv_groups: false,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_eps"),
                rotary_fraction: Some("partial_rotary_factor"),
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "falcon",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.word_embeddings"),
                ("output_norm", "transformer.ln_f"),
                ("output", "lm_head"),
            ],
            layer: &[
                ("attn_norm_2", "ln_mlp"),
                ("ffn_up", "mlp.dense_h_to_4h"),
                ("ffn_down", "mlp.dense_4h_to_h"),
            ],
            fused_kv_groups: true,
            split_attn_norm: Some(("attn_norm_2", "ln_attn")),
            qkv_layout: Some(("tensor_data_layout", "jploski")),
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_epsilon"),
                extra: Some(gguf_falcon),
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: Some(GgufNames {
            arch: "mpt",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.wte"),
                ("position_embd", "transformer.wpe"),
                ("output_norm", "transformer.norm_f"),
                ("output", "lm_head"),
            ],
            layer: &[
                ("ffn_norm", "norm_2"),
                ("ffn_up", "ffn.up_proj"),
                ("ffn_down", "ffn.down_proj"),
            ],
            fused_kv_groups: false,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_epsilon"),
                context: Some("max_seq_len"),
                extra: Some(gguf_mpt),
                ..NO_GGUF_CONFIG
            },
        }),
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
        qk_norm: QkNorm::None,
        gguf: None,
    },
    ArchSpec {
        model_type: "qwen3",
        summary: "Qwen3: as Llama, per-head RMSNorm of q and k (recorded, not folded), head_dim from the config",
        qk_norm: QK_RMS,
        gguf: gguf_with("qwen3", QWEN3_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "qwen2_moe",
        summary: "Qwen2-MoE: Qwen2 attention (Q/K/V biases); the experts are MLP, not attention",
        gguf: gguf_with("qwen2moe", &[("ffn_norm", "post_attention_layernorm")]),
        ..LLAMA
    },
    ArchSpec {
        model_type: "qwen3_moe",
        summary: "Qwen3-MoE: Qwen3 attention (per-head q/k RMSNorm recorded); the experts are MLP",
        qk_norm: QK_RMS,
        gguf: gguf_with(
            "qwen3moe",
            &[
                ("ffn_norm", "post_attention_layernorm"),
                ("attn_q_norm", "self_attn.q_norm"),
                ("attn_k_norm", "self_attn.k_norm"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "mixtral",
        summary: "Mixtral: Mistral attention; the experts are MLP (llama.cpp writes Mixtral GGUF as `llama`)",
        gguf: None,
        ..LLAMA
    },
    ArchSpec {
        model_type: "gemma2",
        summary: "Gemma 2: as Gemma (RMSNorm as 1 + w, head_dim apart from hidden_size); sliding and \
                  global layers alike",
        norm: Norm::RmsNormPlusOne("input_layernorm"),
        gguf: gguf_with("gemma2", GEMMA2_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "gemma3_text",
        summary: "Gemma 3 (text): as Gemma 2, plus per-head RMSNorm (1 + w) of q and k (recorded, not folded)",
        norm: Norm::RmsNormPlusOne("input_layernorm"),
        qk_norm: QK_RMS,
        gguf: gguf_with("gemma3", GEMMA2_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "smollm3",
        summary: "SmolLM3: as Llama (some layers without rotary embedding)",
        gguf: gguf_with("smollm3", LLAMA_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "granite",
        summary: "Granite: as Llama; attention_multiplier replaces 1/sqrt(d_head) in the logits",
        gguf: gguf_with("granite", LLAMA_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "olmo",
        summary: "OLMo: as Llama, LayerNorm without learned parameters before attention (gain 1)",
        norm: Norm::LayerNormNoParams,
        gguf: gguf_with("olmo", LLAMA_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "olmo2",
        summary: "OLMo 2: as Llama, no norm before attention (RMSNorm after it), RMSNorm over the whole \
                  q and k projections (recorded, not folded)",
        norm: Norm::Post,
        qk_norm: QkNorm::WholeRms {
            q: "self_attn.q_norm",
            k: "self_attn.k_norm",
        },
        gguf: gguf_with("olmo2", POST_NORM_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "cohere",
        summary: "Cohere (Command R): as Llama, mean-centring LayerNorm without bias, optional per-head \
                  LayerNorm of q and k (use_qk_norm, recorded)",
        norm: Norm::LayerNorm("input_layernorm"),
        qk_norm: QkNorm::PerHeadLayerNorm {
            q: "self_attn.q_norm",
            k: "self_attn.k_norm",
        },
        gguf: gguf_with(
            "command-r",
            &[
                ("ffn_gate", "mlp.gate_proj"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "cohere2",
        summary: "Cohere 2 (Command R7B): as Cohere, sliding and global layers alike",
        norm: Norm::LayerNorm("input_layernorm"),
        gguf: gguf_with(
            "cohere2",
            &[
                ("ffn_gate", "mlp.gate_proj"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "stablelm",
        summary: "StableLM: as Llama with LayerNorm (bias), optional Q/K/V biases, optional per-head \
                  LayerNorm of q and k (qk_layernorm, recorded)",
        norm: Norm::LayerNorm("input_layernorm"),
        qk_norm: QkNorm::PerHeadLayerNorm {
            q: "self_attn.q_layernorm",
            k: "self_attn.k_layernorm",
        },
        gguf: gguf_with("stablelm", LLAMA_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "starcoder2",
        summary: "StarCoder2: as Llama with LayerNorm (bias) and biases on all four projections (use_bias)",
        norm: Norm::LayerNorm("input_layernorm"),
        gguf: gguf_with(
            "starcoder2",
            &[
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_up", "mlp.c_fc"),
                ("ffn_down", "mlp.c_proj"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "exaone4",
        summary: "EXAONE 4: as Llama, no norm before attention (RMSNorm after it), per-head RMSNorm of \
                  q and k (recorded, not folded)",
        norm: Norm::Post,
        qk_norm: QK_RMS,
        gguf: gguf_with("exaone4", POST_NORM_GGUF_LAYER),
        ..LLAMA
    },
    ArchSpec {
        model_type: "glm4",
        summary: "GLM-4: as Llama with Q/K/V biases (attention_bias), extra norms after attention and MLP",
        gguf: gguf_with(
            "glm4",
            &[
                ("post_attention_norm", "post_self_attn_layernorm"),
                ("ffn_norm", "post_attention_layernorm"),
                ("post_ffw_norm", "post_mlp_layernorm"),
                ("ffn_up", "mlp.gate_up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "apertus",
        summary: "Apertus: as Llama, pre-attention RMSNorm `attention_layernorm`, per-head RMSNorm of q \
                  and k (recorded, not folded)",
        norm: Norm::RmsNorm("attention_layernorm"),
        qk_norm: QK_RMS,
        gguf: gguf_with(
            "apertus",
            &[
                ("ffn_norm", "feedforward_layernorm"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
                ("attn_q_norm", "self_attn.q_norm"),
                ("attn_k_norm", "self_attn.k_norm"),
            ],
        ),
        ..LLAMA
    },
    ArchSpec {
        model_type: "ministral",
        summary: "Ministral: as Mistral (sliding and global layers alike)",
        gguf: None,
        ..LLAMA
    },
    ArchSpec {
        model_type: "llama4_text",
        summary: "Llama 4 (text): as Llama; parameter-free L2 norm of q and k on rotary layers \
                  (use_qk_norm, recorded); the MoE feed-forward is not attention",
        qk_norm: QkNorm::PerHeadL2,
        gguf: gguf_with("llama4", &[("ffn_norm", "post_attention_layernorm")]),
        ..LLAMA
    },
    ArchSpec {
        model_type: "phi3",
        summary: "Phi-3 / Phi-4: fused qkv_proj rows Q | K | V with grouped-query attention, RMSNorm",
        qkv: Qkv::Blocks("self_attn.qkv_proj"),
        gguf: Some(GgufNames {
            arch: "phi3",
            root: "model.",
            globals: LLAMA_GGUF_GLOBALS,
            layer: &[
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_up", "mlp.gate_up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ],
            fused_kv_groups: true,
            split_attn_norm: None,
            qkv_layout: None,
            config: NO_GGUF_CONFIG,
        }),
        ..LLAMA
    },
    ArchSpec {
        model_type: "gpt_bigcode",
        summary: "GPT-BigCode (StarCoder, SantaCoder): fused c_attn, Q | K | V with one key/value head \
                  (multi_query, the default) or per-head interleave [n_heads, 3, d_head]; nn.Linear",
        keys: Keys {
            d_model: &["n_embd", "hidden_size"],
            n_heads: &["n_head", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layer", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "h.{}.",
        qkv: Qkv::Grouped("attn.c_attn"),
        out: "attn.c_proj",
        norm: Norm::LayerNorm("ln_1"),
        adjust: Some(adjust_gpt_bigcode),
        gguf: Some(GgufNames {
            arch: "starcoder",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.wte"),
                ("position_embd", "transformer.wpe"),
                ("output_norm", "transformer.ln_f"),
                ("output", "lm_head"),
            ],
            layer: &[
                ("ffn_norm", "ln_2"),
                ("ffn_up", "mlp.c_fc"),
                ("ffn_down", "mlp.c_proj"),
            ],
            fused_kv_groups: true,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                layer_norm_eps: Some("layer_norm_epsilon"),
                context: Some("n_positions"),
                feed_forward: Some("n_inner"),
                extra: Some(gguf_starcoder),
                ..NO_GGUF_CONFIG
            },
        }),
        ..LLAMA
    },
    ArchSpec {
        model_type: "dbrx",
        summary: "DBRX: fused Wqkv rows Q | K | V with attn_config.kv_n_heads key/value heads, \
                  LayerNorm without bias; the experts are MLP",
        keys: Keys {
            d_model: &["d_model", "hidden_size"],
            n_heads: &["n_heads", "num_attention_heads"],
            n_kv_heads: &[],
            n_layers: &["n_layers", "num_hidden_layers"],
            head_dim: &[],
        },
        layer: "blocks.{}.",
        qkv: Qkv::Blocks("norm_attn_norm.attn.Wqkv"),
        out: "norm_attn_norm.attn.out_proj",
        norm: Norm::LayerNorm("norm_attn_norm.norm_1"),
        adjust: Some(adjust_dbrx),
        gguf: Some(GgufNames {
            arch: "dbrx",
            root: "transformer.",
            globals: &[
                ("token_embd", "transformer.wte"),
                ("output_norm", "transformer.norm_f"),
                ("output", "lm_head"),
            ],
            layer: &[("attn_output_norm", "norm_attn_norm.norm_2")],
            fused_kv_groups: true,
            split_attn_norm: None,
            qkv_layout: None,
            config: GgufConfig {
                extra: Some(gguf_dbrx),
                ..NO_GGUF_CONFIG
            },
        }),
        ..LLAMA
    },
    ArchSpec {
        model_type: "persimmon",
        summary: "Persimmon: fused query_key_value interleaved per head [n_heads, 3, d_head], LayerNorm; \
                  per-head LayerNorm of q and k (qk_layernorm, recorded, not folded)",
        qkv: Qkv::Grouped("self_attn.query_key_value"),
        out: "self_attn.dense",
        norm: Norm::LayerNorm("input_layernorm"),
        qk_norm: QkNorm::PerHeadLayerNorm {
            q: "self_attn.q_layernorm",
            k: "self_attn.k_layernorm",
        },
        gguf: None,
        ..LLAMA
    },
    ArchSpec {
        model_type: "gpt_oss",
        summary: "GPT-OSS: as Llama with Q/K/V/O biases; its attention sinks (self_attn.sinks, one \
                  logit per head) are per-head scalars, not projections, and are not analysed",
        gguf: gguf_with(
            "gpt-oss",
            &[("post_attention_norm", "post_attention_layernorm")],
        ),
        ..LLAMA
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

/// GPT-BigCode: `multi_query` (default true) means one key/value head, else one per head.
fn adjust_gpt_bigcode(config: &ModelConfig, layout: &mut Layout) -> Result<(), ArchError> {
    let g = &mut layout.geometry;
    g.n_kv_heads = if config.bool_or("multi_query", true)? {
        1
    } else {
        g.n_heads
    };
    Ok(())
}

/// DBRX keeps the number of key/value heads in `attn_config.kv_n_heads` (default 1).
fn adjust_dbrx(config: &ModelConfig, layout: &mut Layout) -> Result<(), ArchError> {
    let kv = match config
        .object("attn_config")
        .and_then(|a| a.get("kv_n_heads"))
    {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| ArchError::Geometry {
                config: config.path().to_path_buf(),
                problem: format!("attn_config.kv_n_heads should be a positive integer, found {v}"),
            })?,
    };
    layout.geometry.n_kv_heads = kv;
    Ok(())
}

/// StarCoder (GPT-BigCode) in GGUF: multi-query when there is one key/value head.
fn gguf_starcoder(m: &dyn GgufMetadata, c: &mut Map<String, Value>) -> Result<(), CheckpointError> {
    let kv = m.arch_uint("attention.head_count_kv")?;
    c.insert("multi_query".into(), (kv == Some(1)).into());
    Ok(())
}

/// DBRX in GGUF: the key/value heads go under `attn_config`.
fn gguf_dbrx(m: &dyn GgufMetadata, c: &mut Map<String, Value>) -> Result<(), CheckpointError> {
    let mut attn = Map::new();
    if let Some(kv) = m.arch_uint("attention.head_count_kv")? {
        attn.insert("kv_n_heads".into(), kv.into());
    }
    if let Some(clip) = m.arch_float("attention.clamp_kqv")? {
        attn.insert("clip_qkv".into(), clip.into());
    }
    c.insert("attn_config".into(), Value::Object(attn));
    Ok(())
}

/// Falcon in GGUF: the fused layout follows from the number of key/value heads, the bias and
/// the second norm from the tensors present.
fn gguf_falcon(m: &dyn GgufMetadata, c: &mut Map<String, Value>) -> Result<(), CheckpointError> {
    let kv = m.arch_uint("attention.head_count_kv")?.unwrap_or(1);
    c.insert("num_kv_heads".into(), kv.into());
    c.insert("multi_query".into(), (kv == 1).into());
    c.insert("new_decoder_architecture".into(), (kv > 1).into());
    c.insert("parallel_attn".into(), true.into());
    c.insert("alibi".into(), false.into());
    c.insert("bias".into(), m.has_tensor("blk.0.attn_qkv.bias").into());
    // Falcon-40B style blocks normalise attention and MLP inputs separately.
    let two_norms = m.has_tensor("blk.0.attn_norm_2.weight");
    c.insert(
        "num_ln_in_parallel_attn".into(),
        if two_norms { 2 } else { 1 }.into(),
    );
    Ok(())
}

/// MPT in GGUF: ALiBi unless the file has learned positions, its bias maximum and QKV clip.
fn gguf_mpt(m: &dyn GgufMetadata, c: &mut Map<String, Value>) -> Result<(), CheckpointError> {
    let mut attn = Map::new();
    attn.insert(
        "alibi".into(),
        (!m.has_tensor("position_embd.weight")).into(),
    );
    if let Some(b) = m.arch_float("attention.max_alibi_bias")? {
        attn.insert("alibi_bias_max".into(), b.into());
    }
    if let Some(clip) = m.arch_float("attention.clamp_kqv")? {
        attn.insert("clip_qkv".into(), clip.into());
    }
    c.insert("attn_config".into(), Value::Object(attn));
    Ok(())
}

/// The entry whose GGUF `general.architecture` is `arch`, with its GGUF names.
pub fn find_gguf(arch: &str) -> Option<(&'static ArchSpec, &'static GgufNames)> {
    SPECS
        .iter()
        .find_map(|s| s.gguf.as_ref().filter(|g| g.arch == arch).map(|g| (s, g)))
}

/// The GGUF `general.architecture` values the registry maps, in table order.
pub fn gguf_supported() -> Vec<&'static str> {
    SPECS
        .iter()
        .filter_map(|s| s.gguf.map(|g| g.arch))
        .collect()
}

/// The entry for `model_type`.
pub fn find(model_type: &str) -> Option<&'static ArchSpec> {
    SPECS.iter().find(|s| s.model_type == model_type)
}

/// What to tell a user whose `model_type` is not in the table: which entry to copy when its
/// config (and, when known, its tensor names) look like an entry's. Never a guess that is
/// acted on: an unknown `model_type` stays an error.
pub fn suggest(config: &ModelConfig, tensors: Option<&[&str]>) -> String {
    let has = |suffix: &str| tensors.is_some_and(|t| t.iter().any(|n| n.ends_with(suffix)));
    let llama_keys = ["hidden_size", "num_attention_heads", "num_hidden_layers"]
        .iter()
        .all(|k| config.raw().contains_key(*k));
    let copy = |entry: &str, why: &str| {
        format!(
            "; {why}: if its attention really is laid out like `{entry}`'s, add an entry to \
             crates/core/src/arch/spec.rs copying `{entry}` (`ArchSpec {{ model_type: \"...\", \
             ..LLAMA }}` for Llama-like models) and a fixture case to \
             scripts/fixtures/make_arch_fixtures.py; the tool does not guess layouts"
        )
    };
    let separate = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .iter()
        .all(|p| has(&format!("self_attn.{p}.weight")));
    if tensors.is_some() && separate {
        let qk = has("self_attn.q_norm.weight");
        let entry = if qk { "qwen3" } else { "llama" };
        let why = if qk {
            "its tensors look Llama-like with per-head q/k norms (self_attn.{q,k,v,o}_proj, q_norm)"
        } else {
            "its tensors look Llama-like (self_attn.{q,k,v,o}_proj)"
        };
        return copy(entry, why);
    }
    if tensors.is_some() && has("self_attn.qkv_proj.weight") {
        return copy(
            "phi3",
            "its tensors have a fused self_attn.qkv_proj like Phi-3's",
        );
    }
    if tensors.is_none() && llama_keys {
        return copy("llama", "its config has Llama's keys");
    }
    String::new()
}

/// Architectures the tool knows and refuses, with the reason (shown instead of numbers).
pub static REFUSED: &[(&str, &str)] = &[
    (
        "deepseek_v2",
        "multi-head latent attention (MLA): keys and values of all heads come from one low-rank \
         latent (kv_a_proj_with_mqa, an RMSNorm kv_a_layernorm, then kv_b_proj), queries possibly \
         through another (q_a_proj, q_a_layernorm, q_b_proj), and each head's key has a rotary part \
         shared by all heads; per-head W_Q, W_K, W_V are linear maps of the layer input only with \
         the latent norm's normalisation left out, a definition this version does not compute yet \
         (see README, Architectures)",
    ),
    (
        "deepseek_v3",
        "multi-head latent attention (MLA), as deepseek_v2: per-head W_Q, W_K, W_V pass through \
         a normalised low-rank latent and a shared rotary key part; this version does not compute \
         them yet (see README, Architectures)",
    ),
];

/// Quantisation methods (`quantization_config.quant_method`) whose weights are packed integers.
pub static REFUSED_QUANTISATION: &[(&str, &str)] = &[
    (
        "bitsandbytes",
        "bitsandbytes 8-bit (I8) or 4-bit (packed U8 with absmax)",
    ),
    (
        "gptq",
        "GPTQ (int4/int8 packed into I32 `qweight` with `scales` and `qzeros`)",
    ),
    (
        "awq",
        "AWQ (int4 packed into I32 `qweight` with `scales` and `qzeros`)",
    ),
    ("aqlm", "AQLM (additive codebooks)"),
    ("hqq", "HQQ (packed low-bit weights)"),
    ("eetq", "EETQ (int8)"),
    ("quanto", "quanto (int8/int4/fp8 via optimum-quanto)"),
    ("torchao", "torchao (packed tensor subclasses)"),
    ("bitnet", "BitNet (ternary packed U8)"),
    ("mxfp4", "MXFP4 (packed 4-bit floats with block scales)"),
];

/// The supported `model_type` values, in table order.
pub fn supported() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.model_type).collect()
}
