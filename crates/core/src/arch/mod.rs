//! The architecture registry: from a model's `config.json` to its attention weights per layer.
//!
//! [`Architecture::detect`] looks up the config's `model_type` in the table of
//! [`spec::SPECS`], reads the dimensions under that architecture's config keys, and resolves
//! config-dependent layouts. [`Architecture::layer`] then reads one layer's attention tensors
//! from a [`Checkpoint`], checks every shape against the configuration, undoes fused and
//! interleaved layouts, and returns a [`LayerAttention`] in canonical layout.

pub mod spec;

use std::path::PathBuf;

pub use spec::{ArchSpec, Layout, Norm, QkNorm, Qkv, Storage};

use crate::attention::{LayerAttention, PreNorm, ProjectionSource};
use crate::checkpoint::{Checkpoint, CheckpointError, TensorMeta};
use crate::config::{ConfigError, ModelConfig};
pub use crate::geometry::Geometry;
use crate::matrix::Matrix;

/// Errors detecting an architecture or reading its attention weights.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error(
        "unknown model_type `{model_type}` in {config}; supported: {}{hint}",
        supported.join(", ")
    )]
    UnknownModelType {
        model_type: String,
        config: PathBuf,
        supported: Vec<&'static str>,
        /// Which registry entry to copy, when the model looks like one (may be empty).
        hint: String,
    },
    #[error("model_type `{model_type}` in {config} is not supported: {reason}")]
    Refused {
        model_type: String,
        config: PathBuf,
        reason: &'static str,
    },
    #[error(
        "{config}: quantization_config.quant_method is `{method}`: {format} weights are not \
         supported; use the unquantised checkpoint (FP8 safetensors with quant_method `fp8`, \
         `fbgemm_fp8` or `compressed-tensors` float-quantized are read)"
    )]
    Quantised {
        config: PathBuf,
        method: String,
        format: &'static str,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("model config {config}: {problem}")]
    Geometry { config: PathBuf, problem: String },
    #[error(transparent)]
    ShapeMismatch(Box<ShapeMismatch>),
    #[error("layer {layer} is out of range: {config} declares {n_layers} layers")]
    LayerOutOfRange {
        layer: usize,
        n_layers: usize,
        config: PathBuf,
    },
}

/// A tensor whose shape contradicts the model configuration.
#[derive(Debug, thiserror::Error)]
#[error(
    "tensor `{tensor}` in {file} has shape {shape:?}, but {config} implies {expected:?} ({reason})"
)]
pub struct ShapeMismatch {
    pub tensor: String,
    pub file: PathBuf,
    pub shape: Vec<usize>,
    pub expected: Vec<usize>,
    pub config: PathBuf,
    pub reason: String,
}

/// A detected architecture with its resolved layout.
#[derive(Clone, Debug)]
pub struct Architecture {
    spec: &'static ArchSpec,
    layout: Layout,
    config_path: PathBuf,
}

impl Architecture {
    /// Detects the architecture from `config.model_type` and resolves its dimensions.
    pub fn detect(config: &ModelConfig) -> Result<Architecture, ArchError> {
        let model_type = config.model_type()?;
        if let Some((_, reason)) = spec::REFUSED.iter().find(|(t, _)| *t == model_type) {
            return Err(ArchError::Refused {
                model_type: model_type.to_string(),
                config: config.path().to_path_buf(),
                reason,
            });
        }
        let method = config
            .object("quantization_config")
            .and_then(|q| q.get("quant_method"))
            .and_then(|m| m.as_str());
        if let Some(method) = method {
            let lower = method.to_ascii_lowercase();
            if let Some((_, format)) = spec::REFUSED_QUANTISATION.iter().find(|(m, _)| *m == lower)
            {
                return Err(ArchError::Quantised {
                    config: config.path().to_path_buf(),
                    method: method.to_string(),
                    format,
                });
            }
        }
        let spec = spec::find(model_type).ok_or_else(|| ArchError::UnknownModelType {
            model_type: model_type.to_string(),
            config: config.path().to_path_buf(),
            supported: spec::supported(),
            hint: spec::suggest(config, None),
        })?;
        let k = &spec.keys;
        let d_model = config.usize_req("the model width", k.d_model)?;
        let n_heads = config.usize_req("the number of attention heads", k.n_heads)?;
        let n_layers = config.usize_req("the number of layers", k.n_layers)?;
        let n_kv_heads = config.usize_opt(k.n_kv_heads)?.unwrap_or(n_heads);
        let geometry_error = |problem: String| ArchError::Geometry {
            config: config.path().to_path_buf(),
            problem,
        };
        let d_head = match config.usize_opt(k.head_dim)? {
            Some(d) => d,
            None if n_heads > 0 && d_model.is_multiple_of(n_heads) => d_model / n_heads,
            None => {
                return Err(geometry_error(format!(
                    "width {d_model} is not divisible by {n_heads} heads and no head_dim is given"
                )));
            }
        };
        let mut layout = Layout {
            geometry: Geometry {
                n_layers,
                d_model,
                n_heads,
                n_kv_heads,
                d_head,
            },
            qkv: spec.qkv,
            norm: spec.norm,
        };
        if let Some(adjust) = spec.adjust {
            adjust(config, &mut layout)?;
        }
        layout.geometry.check().map_err(geometry_error)?;
        Ok(Architecture {
            spec,
            layout,
            config_path: config.path().to_path_buf(),
        })
    }

    /// As [`Architecture::detect`] on the checkpoint's config; for an unknown `model_type`, the
    /// error's hint also looks at the checkpoint's tensor names.
    pub fn detect_in(ckpt: &Checkpoint) -> Result<Architecture, ArchError> {
        match Architecture::detect(ckpt.config()) {
            Err(ArchError::UnknownModelType {
                model_type,
                config,
                supported,
                ..
            }) => {
                let names: Vec<&str> = ckpt.tensors().iter().map(|t| t.name.as_str()).collect();
                Err(ArchError::UnknownModelType {
                    model_type,
                    config,
                    supported,
                    hint: spec::suggest(ckpt.config(), Some(&names)),
                })
            }
            other => other,
        }
    }

    pub fn spec(&self) -> &'static ArchSpec {
        self.spec
    }

    pub fn model_type(&self) -> &'static str {
        self.spec.model_type
    }

    pub fn geometry(&self) -> &Geometry {
        &self.layout.geometry
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Reads layer `layer`'s attention weights from `ckpt`.
    pub fn layer(&self, ckpt: &Checkpoint, layer: usize) -> Result<LayerAttention, ArchError> {
        let g = self.layout.geometry;
        if layer >= g.n_layers {
            return Err(ArchError::LayerOutOfRange {
                layer,
                n_layers: g.n_layers,
                config: self.config_path.clone(),
            });
        }
        let reader = LayerReader {
            ckpt,
            prefix: self.spec.layer.replace("{}", &layer.to_string()),
            storage: self.spec.storage,
            config: &self.config_path,
            sources: Vec::new(),
        };
        reader.read(
            layer,
            g,
            self.layout.qkv,
            self.spec.out,
            self.layout.norm,
            self.spec.qk_norm,
        )
    }
}

impl Architecture {
    /// Hints `layer`'s and the next layer's tensors ([`Architecture::layer_tensors`]) to the
    /// checkpoint's store, which reads them over the network meanwhile, merged and
    /// concurrently (local stores ignore it): the extract reader's look-ahead, also given for
    /// layer 0 when a model is located ahead of its extraction, so that the requests are the same.
    pub fn prefetch_from(&self, ckpt: &Checkpoint, layer: usize) {
        let mut wanted = self.layer_tensors(ckpt, layer);
        wanted.extend(self.layer_tensors(ckpt, layer + 1));
        ckpt.prefetch(&wanted);
    }

    /// The tensors [`Architecture::layer`] reads for `layer` (projection weights and biases,
    /// the pre-attention norm's gain and bias), as far as the checkpoint holds them; names it
    /// cannot resolve are left out (reading the layer reports them). A hint for
    /// [`Checkpoint::prefetch`], never a substitute for reading.
    pub fn layer_tensors<'c>(&self, ckpt: &'c Checkpoint, layer: usize) -> Vec<&'c TensorMeta> {
        if layer >= self.layout.geometry.n_layers {
            return Vec::new();
        }
        let prefix = self.spec.layer.replace("{}", &layer.to_string());
        let mut names: Vec<&str> = match self.layout.qkv {
            Qkv::Separate { q, k, v } => vec![q, k, v],
            Qkv::Blocks(n) | Qkv::Grouped(n) => vec![n],
        };
        names.push(self.spec.out);
        match self.layout.norm {
            Norm::LayerNorm(n) | Norm::RmsNorm(n) | Norm::RmsNormPlusOne(n) => names.push(n),
            Norm::LayerNormNoParams | Norm::Post => {}
        }
        names
            .iter()
            .flat_map(|n| [format!("{prefix}{n}.weight"), format!("{prefix}{n}.bias")])
            .filter_map(|name| ckpt.find(&name).ok().flatten())
            .collect()
    }
}

/// Reads the tensors of one layer and records where each came from.
struct LayerReader<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
    storage: Storage,
    config: &'a PathBuf,
    sources: Vec<ProjectionSource>,
}

/// Row indices of Q, K and V within a fused tensor's canonical [rows, d_model] form.
struct RowPlan {
    q: Vec<usize>,
    k: Vec<usize>,
    v: Vec<usize>,
    q_slice: String,
    k_slice: String,
    v_slice: String,
}

impl RowPlan {
    fn blocks(g: &Geometry) -> RowPlan {
        let (q, kv) = (g.n_heads * g.d_head, g.n_kv_heads * g.d_head);
        RowPlan {
            q: (0..q).collect(),
            k: (q..q + kv).collect(),
            v: (q + kv..q + 2 * kv).collect(),
            q_slice: format!("output rows 0..{q} (Q block)"),
            k_slice: format!("output rows {q}..{} (K block)", q + kv),
            v_slice: format!("output rows {}..{} (V block)", q + kv, q + 2 * kv),
        }
    }

    fn grouped(g: &Geometry) -> RowPlan {
        let rep = g.n_heads / g.n_kv_heads;
        let per_group = (rep + 2) * g.d_head;
        let rows = |group: usize, slot: usize| {
            let start = group * per_group + slot * g.d_head;
            start..start + g.d_head
        };
        let mut plan = RowPlan {
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            q_slice: String::new(),
            k_slice: String::new(),
            v_slice: String::new(),
        };
        for group in 0..g.n_kv_heads {
            for j in 0..rep {
                plan.q.extend(rows(group, j));
            }
            plan.k.extend(rows(group, rep));
            plan.v.extend(rows(group, rep + 1));
        }
        let view = format!(
            "output rows viewed as [n_kv={}, {}+2, d_head={}]",
            g.n_kv_heads, rep, g.d_head
        );
        plan.q_slice = format!("{view}, [:, 0..{rep}] (queries of each group)");
        plan.k_slice = format!("{view}, [:, {rep}] (key of each group)");
        plan.v_slice = format!("{view}, [:, {}] (value of each group)", rep + 1);
        plan
    }

    fn total(&self) -> usize {
        self.q.len() + self.k.len() + self.v.len()
    }
}

fn gather_rows(m: &Matrix, rows: &[usize]) -> Matrix {
    // Whole rows at a time (a copy each), not entry by entry.
    let mut data = Vec::with_capacity(rows.len() * m.cols());
    for &r in rows {
        data.extend_from_slice(m.row(r));
    }
    Matrix::from_vec(rows.len(), m.cols(), data).expect("rows.len() rows of m.cols() entries")
}

fn gather(v: &[f64], rows: &[usize]) -> Vec<f64> {
    rows.iter().map(|&r| v[r]).collect()
}

impl LayerReader<'_> {
    fn meta(&self, name: &str) -> Result<&TensorMeta, ArchError> {
        Ok(self.ckpt.require(&format!("{}{name}", self.prefix))?)
    }

    fn meta_opt(&self, name: &str) -> Result<Option<&TensorMeta>, ArchError> {
        Ok(self.ckpt.find(&format!("{}{name}", self.prefix))?)
    }

    fn record(&mut self, projection: &'static str, meta: &TensorMeta, slice: String) {
        self.sources.push(ProjectionSource {
            projection,
            tensor: meta.name.clone(),
            stored_name: meta.stored_name.clone(),
            file: self.ckpt.file_for_message(meta),
            dtype: meta.dtype,
            shape: meta.shape.clone(),
            slice,
        });
    }

    fn mismatch(&self, meta: &TensorMeta, expected: Vec<usize>, reason: String) -> ArchError {
        ArchError::ShapeMismatch(Box::new(ShapeMismatch {
            tensor: meta.name.clone(),
            file: self.ckpt.file_for_message(meta),
            shape: meta.shape.clone(),
            expected,
            config: self.config.clone(),
            reason,
        }))
    }

    /// Reads `{name}.weight` as a canonical [out, in] matrix of the expected shape.
    fn weight(
        &self,
        name: &str,
        out: usize,
        inp: usize,
        reason: &str,
    ) -> Result<(Matrix, &TensorMeta), ArchError> {
        let meta = self.meta(&format!("{name}.weight"))?;
        let stored = match self.storage {
            Storage::Linear => vec![out, inp],
            Storage::Conv1D => vec![inp, out],
        };
        if meta.shape != stored {
            return Err(self.mismatch(meta, stored, reason.to_string()));
        }
        let m = self.ckpt.read_matrix(meta)?;
        let m = match self.storage {
            Storage::Linear => m,
            Storage::Conv1D => m.transpose(),
        };
        Ok((m, meta))
    }

    /// Reads `{name}.bias` if present; it must have `len` elements.
    fn bias(
        &self,
        name: &str,
        len: usize,
        reason: &str,
    ) -> Result<Option<(Vec<f64>, &TensorMeta)>, ArchError> {
        let Some(meta) = self.meta_opt(&format!("{name}.bias"))? else {
            return Ok(None);
        };
        if meta.shape != [len] {
            return Err(self.mismatch(meta, vec![len], reason.to_string()));
        }
        Ok(Some((self.ckpt.read_vector(meta)?, meta)))
    }

    fn storage_note(&self) -> &'static str {
        match self.storage {
            Storage::Linear => "",
            Storage::Conv1D => "; stored [in, out] (Conv1D), transposed",
        }
    }

    fn read(
        mut self,
        layer: usize,
        g: Geometry,
        qkv: Qkv,
        out: &str,
        norm: Norm,
        qk_norm: QkNorm,
    ) -> Result<LayerAttention, ArchError> {
        let (d, dh) = (g.d_model, g.d_head);
        let (q_rows, kv_rows) = (g.n_heads * dh, g.n_kv_heads * dh);
        let note = self.storage_note();
        let (w_q, w_k, w_v, b_q, b_k, b_v) = match qkv {
            Qkv::Separate { q, k, v } => {
                let mut parts = Vec::new();
                for (name, rows, proj, bproj, what) in [
                    (
                        q,
                        q_rows,
                        "W_Q",
                        "b_Q",
                        format!("n_heads={} x d_head={dh}", g.n_heads),
                    ),
                    (
                        k,
                        kv_rows,
                        "W_K",
                        "b_K",
                        format!("n_kv_heads={} x d_head={dh}", g.n_kv_heads),
                    ),
                    (
                        v,
                        kv_rows,
                        "W_V",
                        "b_V",
                        format!("n_kv_heads={} x d_head={dh}", g.n_kv_heads),
                    ),
                ] {
                    let reason = format!("{what} outputs from d_model={d}");
                    let (w, meta) = self.weight(name, rows, d, &reason)?;
                    let meta = meta.clone();
                    self.record(proj, &meta, format!("whole tensor{note}"));
                    let b = match self.bias(name, rows, &reason)? {
                        Some((b, bmeta)) => {
                            let bmeta = bmeta.clone();
                            self.record(bproj, &bmeta, "whole tensor".into());
                            Some(b)
                        }
                        None => None,
                    };
                    parts.push((w, b));
                }
                let mut it = parts.into_iter();
                let (w_q, b_q) = it.next().expect("three parts");
                let (w_k, b_k) = it.next().expect("three parts");
                let (w_v, b_v) = it.next().expect("three parts");
                (w_q, w_k, w_v, b_q, b_k, b_v)
            }
            Qkv::Blocks(name) | Qkv::Grouped(name) => {
                let plan = match qkv {
                    Qkv::Blocks(_) => RowPlan::blocks(&g),
                    _ => RowPlan::grouped(&g),
                };
                let reason = format!(
                    "(n_heads={} + 2 x n_kv_heads={}) x d_head={dh} fused outputs from d_model={d}",
                    g.n_heads, g.n_kv_heads
                );
                let (fused, meta) = self.weight(name, plan.total(), d, &reason)?;
                let meta = meta.clone();
                self.record("W_Q", &meta, format!("{}{note}", plan.q_slice));
                self.record("W_K", &meta, format!("{}{note}", plan.k_slice));
                self.record("W_V", &meta, format!("{}{note}", plan.v_slice));
                let bias = match self.bias(name, plan.total(), &reason)? {
                    Some((b, bmeta)) => {
                        let bmeta = bmeta.clone();
                        self.record("b_QKV", &bmeta, "split like the weight".into());
                        Some(b)
                    }
                    None => None,
                };
                (
                    gather_rows(&fused, &plan.q),
                    gather_rows(&fused, &plan.k),
                    gather_rows(&fused, &plan.v),
                    bias.as_ref().map(|b| gather(b, &plan.q)),
                    bias.as_ref().map(|b| gather(b, &plan.k)),
                    bias.as_ref().map(|b| gather(b, &plan.v)),
                )
            }
        };
        let reason = format!(
            "d_model={d} outputs from n_heads={} x d_head={dh}",
            g.n_heads
        );
        let (w_o, o_meta) = self.weight(out, d, q_rows, &reason)?;
        let o_meta = o_meta.clone();
        self.record(
            "W_O",
            &o_meta,
            format!("whole tensor; head h = input columns h*{dh}..(h+1)*{dh}{note}"),
        );
        let b_o = match self.bias(out, d, &reason)? {
            Some((b, bmeta)) => {
                let bmeta = bmeta.clone();
                self.record("b_O", &bmeta, "whole tensor".into());
                Some(b)
            }
            None => None,
        };
        let pre = self.norm(norm, d)?;
        self.qk_norm(qk_norm)?;
        Ok(LayerAttention::new(
            layer,
            g,
            (w_q, w_k, w_v, w_o),
            [b_q, b_k, b_v, b_o],
            pre,
            self.sources,
        ))
    }

    /// Records the query/key norm gains the model applies after the projections (present only
    /// when the config enables them); they are not applied to the reported matrices.
    fn qk_norm(&mut self, qk_norm: QkNorm) -> Result<(), ArchError> {
        let (q, k) = match qk_norm {
            QkNorm::PerHeadRms { q, k }
            | QkNorm::WholeRms { q, k }
            | QkNorm::PerHeadLayerNorm { q, k } => (q, k),
            QkNorm::None | QkNorm::PerHeadL2 => return Ok(()),
        };
        for (projection, name) in [("q_norm", q), ("k_norm", k)] {
            if let Some(meta) = self.meta_opt(&format!("{name}.weight"))? {
                let meta = meta.clone();
                self.record(projection, &meta, qk_norm.describe().to_string());
            }
        }
        Ok(())
    }

    fn norm(&mut self, norm: Norm, d: usize) -> Result<PreNorm, ArchError> {
        let (name, plus_one) = match norm {
            Norm::Post => return Ok(PreNorm::None),
            Norm::LayerNormNoParams => {
                return Ok(PreNorm::LayerNorm {
                    gain: vec![1.0; d],
                    bias: None,
                });
            }
            Norm::LayerNorm(n) | Norm::RmsNorm(n) => (n, false),
            Norm::RmsNormPlusOne(n) => (n, true),
        };
        let reason = format!("one gain per d_model={d} input");
        let meta = self.meta(&format!("{name}.weight"))?.clone();
        if meta.shape != [d] {
            return Err(self.mismatch(&meta, vec![d], reason));
        }
        let mut gain = self.ckpt.read_vector(&meta)?;
        let how = if plus_one {
            "gain = 1 + weight"
        } else {
            "gain = weight"
        };
        self.record("norm", &meta, format!("{} ({how})", norm.kind()));
        if plus_one {
            gain.iter_mut().for_each(|w| *w += 1.0);
        }
        Ok(match norm {
            Norm::LayerNorm(_) => {
                let bias = match self.meta_opt(&format!("{name}.bias"))? {
                    Some(bmeta) => {
                        let bmeta = bmeta.clone();
                        if bmeta.shape != [d] {
                            return Err(self.mismatch(&bmeta, vec![d], reason));
                        }
                        self.record("norm_bias", &bmeta, "layernorm bias".into());
                        Some(self.ckpt.read_vector(&bmeta)?)
                    }
                    None => None,
                };
                PreNorm::LayerNorm { gain, bias }
            }
            _ => PreNorm::RmsNorm { gain },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::safetensors::write_file;
    use crate::dtype::DType;
    use std::path::Path;

    fn f32s(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
        v.into_iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// (tensor name, shape, value of each flat index)
    type Spec<'a> = (&'a str, Vec<usize>, &'a dyn Fn(usize) -> f32);

    /// A checkpoint directory with `config` and F32 tensors.
    fn ckpt(dir: &Path, config: serde_json::Value, tensors: &[Spec]) -> Checkpoint {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let owned: Vec<(&str, DType, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, f)| {
                (
                    *n,
                    DType::F32,
                    s.clone(),
                    f32s((0..s.iter().product()).map(f)),
                )
            })
            .collect();
        write_file(&dir.join("model.safetensors"), &owned).unwrap();
        Checkpoint::open(dir).unwrap()
    }

    #[test]
    fn neox_rows_interleave_per_head() {
        // 2 heads of d_head 2, d_model 4: fused rows viewed as [head, (q|k|v), d_head].
        // Each element holds its fused row index, so the split can be read off directly.
        let dir = tempfile::tempdir().unwrap();
        let d = 4;
        let cfg = serde_json::json!({"model_type": "gpt_neox", "hidden_size": d, "num_attention_heads": 2, "num_hidden_layers": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                (
                    "gpt_neox.layers.0.attention.query_key_value.weight",
                    vec![12, d],
                    &|i| (i / d) as f32,
                ),
                (
                    "gpt_neox.layers.0.attention.dense.weight",
                    vec![d, d],
                    &|i| i as f32,
                ),
                ("gpt_neox.layers.0.input_layernorm.weight", vec![d], &|_| {
                    1.0
                }),
            ],
        );
        let arch = Architecture::detect(c.config()).unwrap();
        let l = arch.layer(&c, 0).unwrap();
        let first_col = |m: &Matrix| (0..m.rows()).map(|r| m.get(r, 0)).collect::<Vec<_>>();
        // Head 0 owns fused rows 0..6 (q 0,1 | k 2,3 | v 4,5); head 1 owns rows 6..12.
        assert_eq!(first_col(&l.w_q), vec![0., 1., 6., 7.]);
        assert_eq!(first_col(&l.w_k), vec![2., 3., 8., 9.]);
        assert_eq!(first_col(&l.w_v), vec![4., 5., 10., 11.]);
        assert_eq!(l.geometry.head_to_kv(), Some(vec![0, 1]));
    }

    #[test]
    fn falcon_new_architecture_groups_queries_per_kv_head() {
        // 4 query heads over 2 KV heads (d_head 1): rows per group are [q, q, k, v].
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "falcon", "hidden_size": 4, "num_attention_heads": 4,
            "num_kv_heads": 2, "new_decoder_architecture": true, "num_hidden_layers": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                (
                    "transformer.h.0.self_attention.query_key_value.weight",
                    vec![8, 4],
                    &|i| (i / 4) as f32,
                ),
                (
                    "transformer.h.0.self_attention.dense.weight",
                    vec![4, 4],
                    &|i| i as f32,
                ),
                ("transformer.h.0.ln_attn.weight", vec![4], &|_| 1.0),
                ("transformer.h.0.ln_attn.bias", vec![4], &|_| 0.0),
            ],
        );
        let arch = Architecture::detect(c.config()).unwrap();
        assert_eq!(arch.geometry().n_kv_heads, 2);
        let l = arch.layer(&c, 0).unwrap();
        let col = |m: &Matrix| (0..m.rows()).map(|r| m.get(r, 0)).collect::<Vec<_>>();
        assert_eq!(col(&l.w_q), vec![0., 1., 4., 5.]);
        assert_eq!(col(&l.w_k), vec![2., 6.]);
        assert_eq!(col(&l.w_v), vec![3., 7.]);
        assert_eq!(l.geometry.head_to_kv(), Some(vec![0, 0, 1, 1]));
    }

    #[test]
    fn gpt2_conv1d_is_transposed_and_split_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "gpt2", "n_embd": 2, "n_head": 1, "n_layer": 1});
        // c_attn stored [in=2, out=6]: element (i, o) = 10*o + i.
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                ("h.0.attn.c_attn.weight", vec![2, 6], &|n| {
                    (10 * (n % 6) + n / 6) as f32
                }),
                ("h.0.attn.c_attn.bias", vec![6], &|n| n as f32),
                ("h.0.attn.bias", vec![1, 1, 4, 4], &|_| 1.0),
                ("h.0.attn.c_proj.weight", vec![2, 2], &|n| n as f32),
                ("h.0.ln_1.weight", vec![2], &|_| 1.0),
            ],
        );
        let l = Architecture::detect(c.config())
            .unwrap()
            .layer(&c, 0)
            .unwrap();
        assert_eq!(l.w_q.data(), &[0., 1., 10., 11.]);
        assert_eq!(l.w_v.data(), &[40., 41., 50., 51.]);
        assert_eq!(l.b_k.as_deref(), Some(&[2., 3.][..]));
        // c_proj stored [in, out]: canonical W_O is its transpose.
        assert_eq!(l.w_o.data(), &[0., 2., 1., 3.]);
    }

    #[test]
    fn fold_norm_scales_columns_and_moves_layernorm_bias() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "gptj", "n_embd": 2, "n_head": 1, "n_layer": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                ("h.0.attn.q_proj.weight", vec![2, 2], &|n| {
                    [1., 2., 3., 4.][n]
                }),
                ("h.0.attn.k_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.attn.v_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.attn.out_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.ln_1.weight", vec![2], &|n| [2., 3.][n]),
                ("h.0.ln_1.bias", vec![2], &|n| [1., -1.][n]),
            ],
        );
        let mut l = Architecture::detect(c.config())
            .unwrap()
            .layer(&c, 0)
            .unwrap();
        assert_eq!(l.fold_norm(), crate::attention::FoldOutcome::Folded);
        assert_eq!(l.w_q.data(), &[2., 6., 6., 12.]);
        // b = W beta with the unscaled W: [1-2, 3-4].
        assert_eq!(l.b_q.as_deref(), Some(&[-1., -1.][..]));
        assert_eq!(l.fold_norm(), crate::attention::FoldOutcome::AlreadyFolded);
    }

    #[test]
    fn post_ln_models_have_nothing_to_fold() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "opt", "hidden_size": 2, "num_attention_heads": 1,
            "num_hidden_layers": 1, "do_layer_norm_before": false, "word_embed_proj_dim": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                (
                    "model.decoder.layers.0.self_attn.q_proj.weight",
                    vec![2, 2],
                    &|_| 1.0,
                ),
                (
                    "model.decoder.layers.0.self_attn.k_proj.weight",
                    vec![2, 2],
                    &|_| 1.0,
                ),
                (
                    "model.decoder.layers.0.self_attn.v_proj.weight",
                    vec![2, 2],
                    &|_| 1.0,
                ),
                (
                    "model.decoder.layers.0.self_attn.out_proj.weight",
                    vec![2, 2],
                    &|_| 1.0,
                ),
                (
                    "model.decoder.layers.0.self_attn_layer_norm.weight",
                    vec![2],
                    &|_| 5.0,
                ),
            ],
        );
        let mut l = Architecture::detect(c.config())
            .unwrap()
            .layer(&c, 0)
            .unwrap();
        assert_eq!(l.norm, PreNorm::None);
        assert_eq!(
            l.fold_norm(),
            crate::attention::FoldOutcome::NoPreAttentionNorm
        );
        assert_eq!(l.w_q.data(), &[1.; 4]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "llama", "hidden_size": 4, "num_attention_heads": 2,
            "num_key_value_heads": 1, "num_hidden_layers": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                (
                    "model.layers.0.self_attn.q_proj.weight",
                    vec![4, 4],
                    &|_| 1.0,
                ),
                (
                    "model.layers.0.self_attn.k_proj.weight",
                    vec![4, 4],
                    &|_| 1.0,
                ),
            ],
        );
        let arch = Architecture::detect(c.config()).unwrap();
        let e = arch.layer(&c, 0).unwrap_err().to_string();
        assert!(
            e.contains("self_attn.k_proj.weight") && e.contains("[4, 4]") && e.contains("[2, 4]"),
            "{e}"
        );
        assert!(
            e.contains("config.json") && e.contains("n_kv_heads=1"),
            "{e}"
        );
        let e = arch.layer(&c, 3).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");

        let bad = ModelConfig::from_value(
            Path::new("x/config.json"),
            serde_json::json!({"model_type": "rwkv"}),
        )
        .unwrap();
        let e = Architecture::detect(&bad).unwrap_err().to_string();
        assert!(
            e.contains("rwkv") && e.contains("gpt_neox") && e.contains("x/config.json"),
            "{e}"
        );

        let bad = ModelConfig::from_value(
            Path::new("c.json"),
            serde_json::json!({"model_type": "llama", "hidden_size": 6, "num_attention_heads": 4, "num_hidden_layers": 1}),
        )
        .unwrap();
        assert!(
            Architecture::detect(&bad)
                .unwrap_err()
                .to_string()
                .contains("not divisible")
        );
        let bad = ModelConfig::from_value(
            Path::new("c.json"),
            serde_json::json!({"model_type": "llama", "hidden_size": 6, "num_attention_heads": 3, "num_key_value_heads": 2, "num_hidden_layers": 1}),
        )
        .unwrap();
        assert!(
            Architecture::detect(&bad)
                .unwrap_err()
                .to_string()
                .contains("cannot be grouped")
        );
    }

    #[test]
    fn unknown_llama_like_types_name_the_entry_to_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "newlab", "hidden_size": 2, "num_attention_heads": 1,
            "num_hidden_layers": 1});
        let w: &dyn Fn(usize) -> f32 = &|_| 1.0;
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                ("model.layers.0.self_attn.q_proj.weight", vec![2, 2], w),
                ("model.layers.0.self_attn.k_proj.weight", vec![2, 2], w),
                ("model.layers.0.self_attn.v_proj.weight", vec![2, 2], w),
                ("model.layers.0.self_attn.o_proj.weight", vec![2, 2], w),
            ],
        );
        let e = Architecture::detect_in(&c).unwrap_err().to_string();
        assert!(
            e.contains("newlab") && e.contains("look Llama-like") && e.contains("copying `llama`"),
            "{e}"
        );
        assert!(
            e.contains("qwen3") && e.contains("gpt_oss"),
            "lists every type: {e}"
        );
        // From the config alone, the keys are the hint.
        let e = Architecture::detect(c.config()).unwrap_err().to_string();
        assert!(e.contains("config has Llama's keys"), "{e}");
        // Nothing Llama-like: no hint.
        let bad = ModelConfig::from_value(
            Path::new("c.json"),
            serde_json::json!({"model_type": "rwkv", "n_embd": 4}),
        )
        .unwrap();
        let e = Architecture::detect(&bad).unwrap_err().to_string();
        assert!(!e.contains("copying"), "{e}");
    }

    #[test]
    fn refused_families_and_quantisations_say_why() {
        let c =
            |v: serde_json::Value| ModelConfig::from_value(Path::new("m/config.json"), v).unwrap();
        let e = Architecture::detect(&c(serde_json::json!({"model_type": "deepseek_v3"})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deepseek_v3") && e.contains("latent") && e.contains("m/config.json"),
            "{e}"
        );
        let e = Architecture::detect(&c(serde_json::json!({"model_type": "llama",
            "quantization_config": {"quant_method": "gptq", "bits": 4}})))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("gptq") && e.contains("GPTQ") && e.contains("qweight"),
            "{e}"
        );
        let e = Architecture::detect(&c(serde_json::json!({"model_type": "llama",
            "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": true}})))
        .unwrap_err()
        .to_string();
        assert!(e.contains("bitsandbytes 8-bit (I8) or 4-bit"), "{e}");
    }

    #[test]
    fn model_types_are_unique() {
        let mut types = spec::supported();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n);
    }

    #[test]
    fn missing_tensor_names_files_searched() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "bert", "hidden_size": 2, "num_attention_heads": 1, "num_hidden_layers": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[("embeddings.word_embeddings.weight", vec![3, 2], &|_| 1.0)],
        );
        let e = Architecture::detect(c.config())
            .unwrap()
            .layer(&c, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("layer.0.attention.self.query.weight") && e.contains("model.safetensors"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_weights_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"model_type": "gptj", "n_embd": 2, "n_head": 1, "n_layer": 1});
        let c = ckpt(
            dir.path(),
            cfg,
            &[
                ("h.0.attn.q_proj.weight", vec![2, 2], &|n| {
                    if n == 3 { f32::NAN } else { 1.0 }
                }),
                ("h.0.attn.k_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.attn.v_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.attn.out_proj.weight", vec![2, 2], &|_| 1.0),
                ("h.0.ln_1.weight", vec![2], &|_| 1.0),
            ],
        );
        let e = Architecture::detect(c.config())
            .unwrap()
            .layer(&c, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("h.0.attn.q_proj.weight") && e.contains("NaN"),
            "{e}"
        );
    }
}
