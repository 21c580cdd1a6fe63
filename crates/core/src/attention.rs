//! One layer's attention projections in a canonical layout, split per head.
//!
//! Whatever the checkpoint's layout (fused, interleaved, Conv1D, grouped), the architecture
//! registry hands over a [`LayerAttention`] in which
//! - `w_q` is [n_heads·d_head, d_model] with the rows of query head h at `h·d_head..`,
//! - `w_k` and `w_v` are [n_kv_heads·d_head, d_model] with the rows of KV head g at `g·d_head..`,
//! - `w_o` is [d_model, n_heads·d_head] with the columns of query head h at `h·d_head..`,
//!
//! all in the PyTorch `nn.Linear` convention y = W x + b. Query head h reads KV head
//! `h / (n_heads / n_kv_heads)` (grouped-query attention; multi-query when n_kv_heads = 1).

use std::path::PathBuf;

use crate::dtype::DType;
use crate::geometry::Geometry;
use crate::matrix::Matrix;

/// The pre-attention normalisation of a layer, as the model applies it.
#[derive(Clone, Debug, PartialEq)]
pub enum PreNorm {
    /// LayerNorm: x̂ · gain + bias (bias absent in some models).
    LayerNorm {
        gain: Vec<f64>,
        bias: Option<Vec<f64>>,
    },
    /// RMSNorm: x̂ · gain. For Gemma the stored weight w is applied as 1 + w; `gain` already
    /// holds the applied value.
    RmsNorm { gain: Vec<f64> },
    /// Post-LayerNorm models (BERT, OPT with `do_layer_norm_before = false`): the attention
    /// input is the residual stream itself, so there is no gain to fold.
    None,
}

/// Where one projection's weights come from, for `pipeline inspect` and provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionSource {
    /// "W_Q", "W_K", "W_V", "W_O", "b_Q", ... or "norm".
    pub projection: &'static str,
    pub tensor: String,
    /// The name as stored in the file, when it differs (GGUF).
    pub stored_name: Option<String>,
    pub file: PathBuf,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// How the projection is cut out of the tensor, in words.
    pub slice: String,
}

/// What folding the norm gain did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldOutcome {
    /// W_Q, W_K and W_V columns were scaled by the gain (and a LayerNorm bias folded into the biases).
    Folded,
    /// The model is post-LayerNorm: there is no pre-attention gain, nothing was changed.
    NoPreAttentionNorm,
    /// Already folded earlier.
    AlreadyFolded,
}

/// A head index beyond what a per-head vector holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("head {head} of size {d_head} is outside a bias of {len} values")]
pub struct HeadOutOfRange {
    pub head: usize,
    pub d_head: usize,
    pub len: usize,
}

/// One layer's attention weights in canonical layout.
#[derive(Clone, Debug)]
pub struct LayerAttention {
    pub layer: usize,
    pub geometry: Geometry,
    pub w_q: Matrix,
    pub w_k: Matrix,
    pub w_v: Matrix,
    pub w_o: Matrix,
    pub b_q: Option<Vec<f64>>,
    pub b_k: Option<Vec<f64>>,
    pub b_v: Option<Vec<f64>>,
    pub b_o: Option<Vec<f64>>,
    pub norm: PreNorm,
    pub sources: Vec<ProjectionSource>,
    folded: bool,
}

impl LayerAttention {
    /// Assembles a layer; shapes must already have been checked against `geometry`.
    pub(crate) fn new(
        layer: usize,
        geometry: Geometry,
        (w_q, w_k, w_v, w_o): (Matrix, Matrix, Matrix, Matrix),
        [b_q, b_k, b_v, b_o]: [Option<Vec<f64>>; 4],
        norm: PreNorm,
        sources: Vec<ProjectionSource>,
    ) -> LayerAttention {
        let g = &geometry;
        debug_assert_eq!(w_q.shape(), (g.n_heads * g.d_head, g.d_model));
        debug_assert_eq!(w_k.shape(), (g.n_kv_heads * g.d_head, g.d_model));
        debug_assert_eq!(w_v.shape(), (g.n_kv_heads * g.d_head, g.d_model));
        debug_assert_eq!(w_o.shape(), (g.d_model, g.n_heads * g.d_head));
        LayerAttention {
            layer,
            geometry,
            w_q,
            w_k,
            w_v,
            w_o,
            b_q,
            b_k,
            b_v,
            b_o,
            norm,
            sources,
            folded: false,
        }
    }

    /// W_Q^h: [d_head, d_model].
    pub fn q_head(&self, h: usize) -> Matrix {
        self.w_q
            .row_block(h * self.geometry.d_head, self.geometry.d_head)
    }

    /// W_K^g: [d_head, d_model].
    pub fn k_head(&self, g: usize) -> Matrix {
        self.w_k
            .row_block(g * self.geometry.d_head, self.geometry.d_head)
    }

    /// W_V^g: [d_head, d_model].
    pub fn v_head(&self, g: usize) -> Matrix {
        self.w_v
            .row_block(g * self.geometry.d_head, self.geometry.d_head)
    }

    /// W_O^h: [d_model, d_head].
    pub fn o_head(&self, h: usize) -> Matrix {
        self.w_o
            .col_block(h * self.geometry.d_head, self.geometry.d_head)
    }

    /// The slice of a per-output bias belonging to head `h` (or KV head): `Ok(None)` when
    /// there is no bias, an error when the bias has no head `h` of `d_head` values.
    pub fn head_bias(
        bias: &Option<Vec<f64>>,
        h: usize,
        d_head: usize,
    ) -> Result<Option<&[f64]>, HeadOutOfRange> {
        let Some(b) = bias.as_deref() else {
            return Ok(None);
        };
        let slice = h
            .checked_mul(d_head)
            .and_then(|start| Some(start..start.checked_add(d_head)?))
            .and_then(|range| b.get(range));
        match slice {
            Some(s) if d_head > 0 => Ok(Some(s)),
            _ => Err(HeadOutOfRange {
                head: h,
                d_head,
                len: b.len(),
            }),
        }
    }

    /// The KV head read by query head `h`; `None` when `h` is not a query head of the layer.
    pub fn kv_of(&self, h: usize) -> Option<usize> {
        self.geometry.kv_of(h)
    }

    /// Whether [`LayerAttention::fold_norm`] has been applied.
    pub fn is_folded(&self) -> bool {
        self.folded
    }

    /// Folds the pre-attention norm into W_Q, W_K and W_V: their columns are scaled by the
    /// gain, and a LayerNorm bias β is moved into the projection biases (b ← b + W β, with W
    /// the unscaled weight), so that W' x̂ + b' equals what the model computes from x̂.
    pub fn fold_norm(&mut self) -> FoldOutcome {
        if self.folded {
            return FoldOutcome::AlreadyFolded;
        }
        let (gain, beta) = match &self.norm {
            PreNorm::None => return FoldOutcome::NoPreAttentionNorm,
            PreNorm::LayerNorm { gain, bias } => (gain.clone(), bias.clone()),
            PreNorm::RmsNorm { gain } => (gain.clone(), None),
        };
        for (w, b) in [
            (&mut self.w_q, &mut self.b_q),
            (&mut self.w_k, &mut self.b_k),
            (&mut self.w_v, &mut self.b_v),
        ] {
            if let Some(beta) = &beta {
                let shift = w.mul_vec(beta);
                match b {
                    Some(b) => b.iter_mut().zip(&shift).for_each(|(x, s)| *x += s),
                    None => *b = Some(shift),
                }
            }
            w.scale_columns(&gain);
        }
        self.folded = true;
        FoldOutcome::Folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out-of-range heads are errors, never out-of-bounds slices.
    #[test]
    fn head_bias_checks_its_range() {
        let bias = Some(vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            LayerAttention::head_bias(&bias, 1, 2).unwrap(),
            Some(&[3.0, 4.0][..])
        );
        assert_eq!(LayerAttention::head_bias(&None, 7, 2).unwrap(), None);
        let err = LayerAttention::head_bias(&bias, 2, 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "head 2 of size 2 is outside a bias of 4 values"
        );
        assert!(LayerAttention::head_bias(&bias, usize::MAX, 2).is_err());
        assert!(LayerAttention::head_bias(&bias, 0, 0).is_err());
    }
}
