//! The extract stage's engine: a model's layers, one at a time, to spectra and metrics.
//!
//! For each layer the matrices asked for are assembled from the canonical [`LayerAttention`]:
//! whole-layer W_Q, W_K, W_V, W_O; per-head W_Q^h, W_K^g, W_V^g, W_O^h; and the per-head
//! circuits OV^h = W_O^h W_V^{g(h)} and QK^h = (W_Q^h)^T W_K^{g(h)}, which are handed to the
//! backend as factor pairs (never multiplied out). The whole layer goes to the backend as one
//! batch so that it can parallelise or batch on a GPU; the layer's weights are dropped before
//! the next layer is read, so memory stays near one layer's attention weights.

use crate::arch::{ArchError, Architecture};
use crate::attention::LayerAttention;
use crate::checkpoint::Checkpoint;
use crate::kind::MatrixKind;
use crate::matrix::Matrix;
use crate::spectral::{Job, Metrics, Precision, SpectralError, SvdBackend, metrics_for_shape};

/// Errors of the extract engine, naming the layer at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error("layer {layer}: {source}")]
    Spectral {
        layer: usize,
        #[source]
        source: SpectralError,
    },
    #[error("layer {layer}: backend {backend} returned {got} spectra for {want} matrices")]
    BackendCount {
        layer: usize,
        backend: String,
        got: usize,
        want: usize,
    },
}

/// What to compute for each layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub kinds: Vec<MatrixKind>,
    /// Per-head W_Q^h, W_K^g, W_V^g, W_O^h besides the whole-layer matrices.
    pub per_head: bool,
    pub fold_ln: bool,
    pub precision: Precision,
}

/// The spectrum and metrics of one matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixResult {
    pub layer: usize,
    /// Query head for W_Q, W_O, OV, QK; KV head for W_K, W_V; `None` for whole-layer matrices.
    pub head: Option<usize>,
    pub kind: MatrixKind,
    pub rows: usize,
    pub cols: usize,
    /// All singular values, descending.
    pub singular_values: Vec<f64>,
    pub metrics: Metrics,
}

/// A matrix to analyse: owned per-head copies or borrowed whole-layer matrices.
enum Item<'a> {
    Borrowed(&'a Matrix),
    Owned(Matrix),
    Product(Matrix, Matrix),
}

/// Analyses one layer.
pub fn analyse_layer(
    layer: &LayerAttention,
    plan: &Plan,
    backend: &dyn SvdBackend,
) -> Result<Vec<MatrixResult>, ExtractError> {
    let g = layer.geometry;
    let mut items: Vec<(MatrixKind, Option<usize>, Item)> = Vec::new();
    for &kind in &plan.kinds {
        let whole = match kind {
            MatrixKind::WQ => Some(&layer.w_q),
            MatrixKind::WK => Some(&layer.w_k),
            MatrixKind::WV => Some(&layer.w_v),
            MatrixKind::WO => Some(&layer.w_o),
            MatrixKind::OV | MatrixKind::QK => None,
        };
        if let Some(m) = whole {
            items.push((kind, None, Item::Borrowed(m)));
        }
        let heads = if kind.indexed_by_kv_head() {
            g.n_kv_heads
        } else {
            g.n_heads
        };
        for h in 0..heads {
            let item = match kind {
                MatrixKind::OV => Item::Product(layer.o_head(h), layer.v_head(layer.kv_of(h))),
                MatrixKind::QK => {
                    Item::Product(layer.q_head(h).transpose(), layer.k_head(layer.kv_of(h)))
                }
                _ if !plan.per_head => continue,
                MatrixKind::WQ => Item::Owned(layer.q_head(h)),
                MatrixKind::WK => Item::Owned(layer.k_head(h)),
                MatrixKind::WV => Item::Owned(layer.v_head(h)),
                MatrixKind::WO => Item::Owned(layer.o_head(h)),
            };
            items.push((kind, Some(h), item));
        }
    }
    let jobs: Vec<Job> = items
        .iter()
        .map(|(_, _, item)| match item {
            Item::Borrowed(m) => Job::Dense(m),
            Item::Owned(m) => Job::Dense(m),
            Item::Product(l, r) => Job::Product { left: l, right: r },
        })
        .collect();
    let spectra =
        backend
            .spectra(&jobs, plan.precision)
            .map_err(|source| ExtractError::Spectral {
                layer: layer.layer,
                source,
            })?;
    if spectra.len() != jobs.len() {
        return Err(ExtractError::BackendCount {
            layer: layer.layer,
            backend: backend.name().to_string(),
            got: spectra.len(),
            want: jobs.len(),
        });
    }
    Ok(items
        .iter()
        .zip(jobs.iter())
        .zip(spectra)
        .map(|(((kind, head, _), job), sv)| {
            let (rows, cols) = job.shape();
            MatrixResult {
                layer: layer.layer,
                head: *head,
                kind: *kind,
                rows,
                cols,
                metrics: match job {
                    Job::Dense(_) => metrics_for_shape(&sv, rows, cols),
                    Job::Product { .. } => metrics_for_shape(&sv, rows, cols).without_baseline(),
                },
                singular_values: sv,
            }
        })
        .collect())
}

/// Analyses every layer of a model, reading one layer at a time. `on_layer` is called after
/// each layer with the layer as read (its index, and the tensors it came from), for progress
/// bars and provenance: reading a layer again for those would read its weights twice, which
/// for a checkpoint read remotely means downloading them twice.
pub fn analyse_model(
    ckpt: &Checkpoint,
    arch: &Architecture,
    plan: &Plan,
    backend: &dyn SvdBackend,
    on_layer: &mut dyn FnMut(&LayerAttention),
) -> Result<Vec<MatrixResult>, ExtractError> {
    let mut out = Vec::new();
    for i in 0..arch.geometry().n_layers {
        let mut layer = arch.layer(ckpt, i)?;
        if plan.fold_ln {
            layer.fold_norm();
        }
        out.extend(analyse_layer(&layer, plan, backend)?);
        on_layer(&layer);
    }
    Ok(out)
}

/// How many matrices [`analyse_layer`] produces per layer for this geometry and plan.
pub fn matrices_per_layer(g: &crate::arch::Geometry, plan: &Plan) -> usize {
    plan.kinds
        .iter()
        .map(|k| {
            let heads = if k.indexed_by_kv_head() {
                g.n_kv_heads
            } else {
                g.n_heads
            };
            match k {
                MatrixKind::OV | MatrixKind::QK => heads,
                _ if plan.per_head => 1 + heads,
                _ => 1,
            }
        })
        .sum()
}
