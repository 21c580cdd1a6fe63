//! The extract stage's engine: a model's layers, one at a time, to spectra and metrics.
//!
//! For each layer the matrices asked for are assembled from the canonical [`LayerAttention`]:
//! whole-layer W_Q, W_K, W_V, W_O; per-head W_Q^h, W_K^g, W_V^g, W_O^h; and the per-head
//! circuits OV^h = W_O^h W_V^{g(h)} and QK^h = (W_Q^h)^T W_K^{g(h)}, which are handed to the
//! backend as factor pairs (never multiplied out). The whole layer goes to the backend as one
//! batch so that it can parallelise or batch on a GPU.
//!
//! [`analyse_model`] is a three-stage pipeline, so that the backend's threads never wait for
//! reading or metrics: a reader thread reads and decodes layer i+1 while the backend computes
//! layer i's spectra, and a metrics thread computes layer i−1's metrics meanwhile. At most
//! two layers' weights are in memory at once (the one being analysed and the next one, read
//! ahead).

use std::sync::mpsc;

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

/// One layer's spectra, waiting for their metrics.
struct LayerSpectra {
    layer: usize,
    /// (kind, head, rows, cols) of each matrix, in the order of `spectra`.
    meta: Vec<(MatrixKind, Option<usize>, usize, usize)>,
    spectra: Vec<Vec<f64>>,
}

impl LayerSpectra {
    /// The metrics of every spectrum.
    fn finish(self) -> Vec<MatrixResult> {
        let layer = self.layer;
        self.meta
            .into_iter()
            .zip(self.spectra)
            .map(|((kind, head, rows, cols), sv)| MatrixResult {
                layer,
                head,
                kind,
                rows,
                cols,
                metrics: metrics_for_shape(&sv, rows, cols),
                singular_values: sv,
            })
            .collect()
    }
}

/// Analyses one layer.
pub fn analyse_layer(
    layer: &LayerAttention,
    plan: &Plan,
    backend: &dyn SvdBackend,
) -> Result<Vec<MatrixResult>, ExtractError> {
    Ok(layer_spectra(layer, plan, backend)?.finish())
}

/// The spectra of one layer's matrices (the backend's part of [`analyse_layer`]).
fn layer_spectra(
    layer: &LayerAttention,
    plan: &Plan,
    backend: &dyn SvdBackend,
) -> Result<LayerSpectra, ExtractError> {
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
    let meta = items
        .iter()
        .zip(&jobs)
        .map(|((kind, head, _), job)| {
            let (rows, cols) = job.shape();
            (*kind, *head, rows, cols)
        })
        .collect();
    Ok(LayerSpectra {
        layer: layer.layer,
        meta,
        spectra,
    })
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
    let n_layers = arch.geometry().n_layers;
    std::thread::scope(|scope| {
        // Reader: layer i+1 is read and decoded while layer i's spectra are computed. A
        // rendezvous channel: a read layer waits in `send` until the analysis takes it, so the
        // reader is at most one layer ahead and at most two layers' weights are in memory.
        let (layers_tx, layers_rx) = mpsc::sync_channel::<Result<LayerAttention, ArchError>>(0);
        scope.spawn(move || {
            for i in 0..n_layers {
                let layer = arch.layer(ckpt, i).map(|mut layer| {
                    if plan.fold_ln {
                        layer.fold_norm();
                    }
                    layer
                });
                let failed = layer.is_err();
                // A closed channel means the analysis stopped: stop reading.
                if layers_tx.send(layer).is_err() || failed {
                    return;
                }
            }
        });
        // Metrics: layer i's metrics are computed while layer i+1's spectra are.
        let (spectra_tx, spectra_rx) = mpsc::channel::<LayerSpectra>();
        let metrics = scope.spawn(move || {
            spectra_rx
                .into_iter()
                .flat_map(LayerSpectra::finish)
                .collect::<Vec<_>>()
        });
        let mut failure = None;
        for layer in layers_rx {
            let step = layer.map_err(ExtractError::from).and_then(|layer| {
                let spectra = layer_spectra(&layer, plan, backend)?;
                on_layer(&layer);
                Ok(spectra)
            });
            match step {
                // The metrics thread only ends after `spectra_tx` is dropped.
                Ok(spectra) => spectra_tx.send(spectra).expect("metrics thread alive"),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        drop(spectra_tx);
        let out = match metrics.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match failure {
            Some(err) => Err(err),
            None => Ok(out),
        }
    })
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::spectral::FaerBackend;

    fn fixture(name: &str) -> Checkpoint {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch");
        Checkpoint::open(&root.join(name)).unwrap()
    }

    fn plan() -> Plan {
        Plan {
            kinds: MatrixKind::ALL.to_vec(),
            per_head: true,
            fold_ln: true,
            precision: Precision::F64,
        }
    }

    #[test]
    fn pipelined_model_equals_layer_by_layer() {
        let backend = FaerBackend::new(2).unwrap();
        for name in ["llama", "opt_post_ln", "gpt_neox"] {
            let ckpt = fixture(name);
            let arch = Architecture::detect(ckpt.config()).unwrap();
            let plan = plan();
            let mut seen = Vec::new();
            let got =
                analyse_model(&ckpt, &arch, &plan, &backend, &mut |l| seen.push(l.layer)).unwrap();
            let n = arch.geometry().n_layers;
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{name}");
            let mut want = Vec::new();
            for i in 0..n {
                let mut layer = arch.layer(&ckpt, i).unwrap();
                layer.fold_norm();
                want.extend(analyse_layer(&layer, &plan, &backend).unwrap());
            }
            // Debug strings: metrics without a power-law fit are NaN, and NaN != NaN.
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{name}");
            assert_eq!(got.len(), n * matrices_per_layer(arch.geometry(), &plan));
        }
    }
}
