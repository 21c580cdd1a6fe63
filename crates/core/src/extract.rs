//! The extract stage's engine: a model's layers, one at a time, to spectra and metrics.
//!
//! For each layer the matrices asked for are assembled from the canonical [`LayerAttention`]:
//! whole-layer W_Q, W_K, W_V, W_O; per-head W_Q^h, W_K^g, W_V^g, W_O^h; and the per-head
//! circuits OV^h = W_O^h W_V^{g(h)} and QK^h = (W_Q^h)^T W_K^{g(h)}, which are handed to the
//! backend as factor pairs (never multiplied out). Each per-head matrix is copied out once and
//! the same [`Matrix`] serves its own job and every circuit that uses it, so that a backend can
//! reduce it once (the faer backend shares its thin QR). The whole layer goes to the backend as
//! one batch so that it can parallelise or batch on a GPU.
//!
//! [`analyse_model`] is a pipeline, so that the backend's threads never wait for reading,
//! metrics or the end of a layer: a reader thread reads and decodes the next layer while the
//! backend computes the spectra of the layers before it ([`SvdBackend::batches_in_flight`]
//! of them at once, each handed over by an analysis thread of its own, so that a layer's jobs
//! start while the last jobs of the one before finish), and a metrics thread computes
//! finished layers' metrics meanwhile. At most `batches_in_flight + 1` layers' weights are in
//! memory at once (those being analysed and the next one, read ahead). Before reading a layer the reader hints its tensors and the next layer's to the
//! checkpoint ([`Checkpoint::prefetch`]): a store read over the network fetches them in the
//! background, merged and concurrently; local stores ignore the hint.
//!
//! [`analyse_layer`] is one layer; [`analyse_model`] is the per-layer loop; [`extract_unit`]
//! turns a located model ([`ModelSource`]) into its dataset [`Unit`] (its `models/` row with
//! provenance, and its `matrices/` and `spectra/` rows), which
//! [`DatasetDir::write_unit`](crate::dataset::DatasetDir::write_unit) writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::arch::{ArchError, Architecture};
use crate::attention::{FoldOutcome, LayerAttention};
use crate::checkpoint::Checkpoint;
use crate::dataset::{FileRecord, MatrixKey, MatrixRow, ModelRow, SpectrumRow, Unit};
use crate::kind::MatrixKind;
use crate::matrix::Matrix;
use crate::pipeline::{ModelEntry, hex};
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
    #[error("layer {layer}: {problem}")]
    Geometry { layer: usize, problem: String },
    #[error("the model has no layers")]
    NoLayers,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

/// A matrix to analyse, borrowed from the layer (whole-layer) or from its [`HeadMatrices`].
enum Item<'a> {
    /// A matrix and the shape to record for it (W_Q^h is handed over transposed).
    Dense(&'a Matrix, (usize, usize)),
    Product(&'a Matrix, &'a Matrix),
}

/// A layer's per-head matrices, each copied out once and shared by its per-head job and the
/// circuits that use it (the backend reduces a shared factor once): (W_Q^h)^T, W_K^g, W_V^g,
/// W_O^h. Only the ones the plan needs are made.
struct HeadMatrices {
    /// (W_Q^h)^T, [d_model, d_head]: the left factor of QK^h, and W_Q^h's singular values.
    q_t: Vec<Matrix>,
    k: Vec<Matrix>,
    v: Vec<Matrix>,
    o: Vec<Matrix>,
}

impl HeadMatrices {
    fn new(layer: &LayerAttention, plan: &Plan) -> HeadMatrices {
        let g = layer.geometry;
        let has = |k: MatrixKind| plan.kinds.contains(&k);
        let per_head = |k: MatrixKind| plan.per_head && has(k);
        let make = |needed: bool, n: usize, f: &dyn Fn(usize) -> Matrix| {
            if needed {
                (0..n).map(f).collect()
            } else {
                Vec::new()
            }
        };
        HeadMatrices {
            q_t: make(
                per_head(MatrixKind::WQ) || has(MatrixKind::QK),
                g.n_heads,
                &|h| layer.q_head(h).transpose(),
            ),
            k: make(
                per_head(MatrixKind::WK) || has(MatrixKind::QK),
                g.n_kv_heads,
                &|h| layer.k_head(h),
            ),
            v: make(
                per_head(MatrixKind::WV) || has(MatrixKind::OV),
                g.n_kv_heads,
                &|h| layer.v_head(h),
            ),
            o: make(
                per_head(MatrixKind::WO) || has(MatrixKind::OV),
                g.n_heads,
                &|h| layer.o_head(h),
            ),
        }
    }
}

/// One layer's spectra, waiting for their metrics.
struct LayerSpectra {
    layer: usize,
    /// (kind, head, rows, cols, is a circuit) of each matrix, in the order of `spectra`.
    meta: Vec<(MatrixKind, Option<usize>, usize, usize, bool)>,
    spectra: Vec<Vec<f64>>,
}

impl LayerSpectra {
    /// The metrics of every spectrum (circuits without the random-matrix baseline: a product
    /// of two matrices does not follow the Marchenko-Pastur law).
    fn finish(self) -> Vec<MatrixResult> {
        let layer = self.layer;
        self.meta
            .into_iter()
            .zip(self.spectra)
            .map(|((kind, head, rows, cols, circuit), sv)| {
                let metrics = metrics_for_shape(&sv, rows, cols);
                MatrixResult {
                    layer,
                    head,
                    kind,
                    rows,
                    cols,
                    metrics: if circuit {
                        metrics.without_baseline()
                    } else {
                        metrics
                    },
                    singular_values: sv,
                }
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
    let heads = HeadMatrices::new(layer, plan);
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
            items.push((kind, None, Item::Dense(m, m.shape())));
        }
        let n_heads = if kind.indexed_by_kv_head() {
            g.n_kv_heads
        } else {
            g.n_heads
        };
        for h in 0..n_heads {
            let kv = || {
                layer.kv_of(h).ok_or_else(|| ExtractError::Geometry {
                    layer: layer.layer,
                    problem: g
                        .check()
                        .err()
                        .unwrap_or_else(|| format!("query head {h} has no KV head")),
                })
            };
            let item = match kind {
                MatrixKind::OV => Item::Product(&heads.o[h], &heads.v[kv()?]),
                MatrixKind::QK => Item::Product(&heads.q_t[h], &heads.k[kv()?]),
                _ if !plan.per_head => continue,
                MatrixKind::WQ => {
                    let q_t = &heads.q_t[h];
                    Item::Dense(q_t, (q_t.cols(), q_t.rows()))
                }
                MatrixKind::WK => Item::Dense(&heads.k[h], heads.k[h].shape()),
                MatrixKind::WV => Item::Dense(&heads.v[h], heads.v[h].shape()),
                MatrixKind::WO => Item::Dense(&heads.o[h], heads.o[h].shape()),
            };
            items.push((kind, Some(h), item));
        }
    }
    let jobs: Vec<Job> = items
        .iter()
        .map(|(_, _, item)| match *item {
            Item::Dense(m, _) => Job::Dense(m),
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
        .map(|((kind, head, item), job)| {
            let ((rows, cols), circuit) = match item {
                Item::Dense(_, shape) => (*shape, false),
                Item::Product(..) => (job.shape(), true),
            };
            (*kind, *head, rows, cols, circuit)
        })
        .collect();
    Ok(LayerSpectra {
        layer: layer.layer,
        meta,
        spectra,
    })
}

/// A model's analysis: every matrix's result, and what was found on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelAnalysis {
    pub results: Vec<MatrixResult>,
    /// The stored dtype of layer 0's attention projections (`F32`, or `mixed(BF16,F32)`).
    pub source_dtype: String,
    /// Whether the pre-attention norm was folded: `plan.fold_ln` and every layer has a
    /// pre-attention norm (a post-LayerNorm model has none, and nothing is folded).
    pub fold_ln_applied: bool,
}

/// Analyses every layer of a model: a reader thread reads layer i+1 (and folds its norm if
/// the plan asks) while the backend computes the spectra of the layers before it
/// ([`analyse_layer`]'s jobs), and a metrics thread turns finished spectra into metrics.
/// [`SvdBackend::batches_in_flight`] analysis threads each take the next layer read and hand
/// it to the backend, so that a layer's jobs start while the last jobs of the one before
/// finish; results are put back in layer order. `on_layer` is called after each layer's
/// spectra, in layer order, with its index, for progress bars. The first failing layer (by
/// index, among those started) is the error; no layer is started after a failure. Provenance
/// (the stored dtype) is taken from layer 0 as read: reading a layer again would read its
/// weights twice, which for a checkpoint read remotely means downloading them twice.
pub fn analyse_model(
    ckpt: &Checkpoint,
    arch: &Architecture,
    plan: &Plan,
    backend: &dyn SvdBackend,
    on_layer: &mut dyn FnMut(usize),
) -> Result<ModelAnalysis, ExtractError> {
    let n_layers = arch.geometry().n_layers;
    let workers = backend.batches_in_flight().max(1);
    // Set by the first failing layer: no analysis thread starts another.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Reader: a rendezvous channel, so a read layer waits in `send` until an analysis
        // thread takes it: at most `workers + 1` layers' weights are in memory.
        type Read = Result<(LayerAttention, bool), ArchError>;
        let (layers_tx, layers_rx) = mpsc::sync_channel::<(usize, Read)>(0);
        scope.spawn(move || {
            for i in 0..n_layers {
                arch.prefetch_from(ckpt, i);
                let layer = arch.layer(ckpt, i).map(|mut layer| {
                    let folded = plan.fold_ln && layer.fold_norm() == FoldOutcome::Folded;
                    (layer, folded)
                });
                let failed = layer.is_err();
                // A closed channel means the analysis stopped: stop reading.
                if layers_tx.send((i, layer)).is_err() || failed {
                    return;
                }
            }
        });
        // Analysis: each thread takes the next layer read and computes its spectra. The
        // receiver is dropped with the last of them, which stops the reader.
        let layers_rx = std::sync::Arc::new(std::sync::Mutex::new(layers_rx));
        let (done_tx, done_rx) = mpsc::channel::<(usize, Result<Analysed, ExtractError>)>();
        for _ in 0..workers {
            let (layers_rx, done_tx, stop) = (layers_rx.clone(), done_tx.clone(), &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // The guard lives to the end of this statement only.
                    let Some((i, read)) = layers_rx.lock().ok().and_then(|rx| rx.recv().ok())
                    else {
                        return;
                    };
                    let step = read
                        .map_err(ExtractError::from)
                        .and_then(|(layer, folded)| {
                            Ok(Analysed {
                                spectra: layer_spectra(&layer, plan, backend)?,
                                folded,
                                dtype: (i == 0).then(|| projection_dtype(&layer)),
                            })
                        });
                    let failed = step.is_err();
                    if failed {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if done_tx.send((i, step)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop((layers_rx, done_tx));
        // Metrics: a layer's metrics are computed while the next layers' spectra are.
        let (spectra_tx, spectra_rx) = mpsc::channel::<LayerSpectra>();
        let metrics = scope.spawn(move || {
            spectra_rx
                .into_iter()
                .flat_map(LayerSpectra::finish)
                .collect::<Vec<_>>()
        });
        let mut failure: Option<(usize, ExtractError)> = None;
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut source_dtype = None;
        let mut folded_everywhere = true;
        // Ends when every analysis thread has ended (each holds a sender).
        for (i, step) in done_rx {
            match step {
                Ok(done) => {
                    pending.insert(i, done);
                }
                Err(err) => {
                    if failure.as_ref().is_none_or(|(first, _)| i < *first) {
                        failure = Some((i, err));
                    }
                }
            }
            // In layer order, up to the first failure.
            while failure.as_ref().is_none_or(|(first, _)| next < *first)
                && let Some(done) = pending.remove(&next)
            {
                folded_everywhere &= done.folded;
                source_dtype = source_dtype.or(done.dtype);
                on_layer(done.spectra.layer);
                // The metrics thread only ends after `spectra_tx` is dropped.
                spectra_tx.send(done.spectra).expect("metrics thread alive");
                next += 1;
            }
        }
        drop(spectra_tx);
        let results = match metrics.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some((_, err)) = failure {
            return Err(err);
        }
        // Every layer was analysed unless a thread panicked (the scope then re-raises it).
        debug_assert!(next == n_layers || pending.is_empty());
        Ok(ModelAnalysis {
            results,
            source_dtype: source_dtype.ok_or(ExtractError::NoLayers)?,
            fold_ln_applied: plan.fold_ln && folded_everywhere,
        })
    })
}

/// A layer's spectra as an analysis thread hands them back: whether its norm was folded, and
/// the stored dtype when it is layer 0.
struct Analysed {
    spectra: LayerSpectra,
    folded: bool,
    dtype: Option<String>,
}

/// The stored dtype of a layer's attention weights (its projections), or `mixed(...)`.
pub fn projection_dtype(layer: &LayerAttention) -> String {
    let mut names: Vec<&str> = layer
        .sources
        .iter()
        .filter(|s| s.projection.starts_with("W_"))
        .map(|s| s.dtype.name())
        .collect();
    names.sort();
    names.dedup();
    match names.as_slice() {
        [one] => one.to_string(),
        many => format!("mixed({})", many.join(",")),
    }
}

/// What is known of where a model's files came from: filled by whoever located the
/// checkpoint (the Hub crate knows the cache layout and the Hub's answers).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// The resolved Hub commit; `None` for local sources.
    pub commit: Option<String>,
    /// The model's files (config first), with sha256 where known.
    pub files: Vec<FileRecord>,
    /// Another revision whose files are byte-identical.
    pub identical_to: Option<String>,
}

impl Provenance {
    /// The provenance of a local checkpoint: its config and weight files with their sizes;
    /// `sha256_of` gives a file's sha256 when it is known without reading the file.
    pub fn local(
        ckpt: &Checkpoint,
        sha256_of: impl Fn(&Path) -> Option<String>,
    ) -> Result<Provenance, ExtractError> {
        let mut files = Vec::new();
        let mut paths: Vec<PathBuf> = ckpt.files().to_vec();
        let config = ckpt.config().path().to_path_buf();
        if config.is_file() {
            paths.insert(0, config);
        }
        for path in paths {
            let size = std::fs::metadata(&path)
                .map_err(|source| ExtractError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            let name = path
                .strip_prefix(ckpt.root())
                .unwrap_or(&path)
                .display()
                .to_string();
            files.push(FileRecord {
                name,
                sha256: sha256_of(&path),
                size,
            });
        }
        Ok(Provenance {
            commit: None,
            files,
            identical_to: None,
        })
    }
}

/// A model to extract: its pipeline entry, checkpoint, architecture and provenance.
pub struct ModelSource<'a> {
    pub entry: &'a ModelEntry,
    pub ckpt: &'a Checkpoint,
    pub arch: &'a Architecture,
    pub provenance: &'a Provenance,
}

/// Extracts one model into a dataset unit ([`Unit`]): analyses every layer
/// ([`analyse_model`]) and assembles its `models/` row. `backend_name` is the name the
/// backend is recorded under (the resolved choice, never `auto`).
pub fn extract_unit(
    source: &ModelSource,
    plan: &Plan,
    backend: &dyn SvdBackend,
    backend_name: &str,
    on_layer: &mut dyn FnMut(usize),
) -> Result<Unit, ExtractError> {
    let (entry, ckpt, arch) = (source.entry, source.ckpt, source.arch);
    let analysis = analyse_model(ckpt, arch, plan, backend, on_layer)?;
    let g = arch.geometry();
    let row = ModelRow {
        model: entry.id.clone(),
        revision: entry.revision.clone(),
        commit: source.provenance.commit.clone(),
        lab: entry.lab.clone(),
        heritage: entry.heritage.clone(),
        architecture: arch.model_type().to_string(),
        n_layers: g.n_layers,
        d_model: g.d_model,
        n_heads: g.n_heads,
        n_kv_heads: g.n_kv_heads,
        d_head: g.d_head,
        source_format: ckpt.format().name().to_string(),
        source_dtype: analysis.source_dtype,
        fold_ln: analysis.fold_ln_applied,
        backend: backend_name.to_string(),
        precision: plan.precision.name().to_string(),
        files: source.provenance.files.clone(),
        config_sha256: config_sha256(ckpt)?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        extracted_at_us: crate::dataset::now_us(),
        identical_to: source.provenance.identical_to.clone(),
    };
    Ok(into_unit(row, analysis.results))
}

/// The unit of `model` from the engine's results: one `matrices/` and one `spectra/` row per
/// result (the singular values move, they are not copied).
pub fn into_unit(model: ModelRow, results: Vec<MatrixResult>) -> Unit {
    let mut matrices = Vec::with_capacity(results.len());
    let mut spectra = Vec::with_capacity(results.len());
    for r in results {
        let key = MatrixKey {
            model: model.model.clone(),
            revision: model.revision.clone(),
            layer: r.layer,
            head: r.head,
            kind: r.kind,
        };
        matrices.push(MatrixRow {
            key: key.clone(),
            rows: r.rows,
            cols: r.cols,
            metrics: r.metrics,
        });
        spectra.push(SpectrumRow {
            key,
            singular_values: r.singular_values,
        });
    }
    Unit {
        model,
        matrices,
        spectra,
    }
}

/// sha256 of config.json, or of the configuration derived from a GGUF file's metadata.
pub fn config_sha256(ckpt: &Checkpoint) -> Result<String, ExtractError> {
    let path = ckpt.config().path();
    let bytes = if path.is_file() && path.extension().is_some_and(|e| e == "json") {
        std::fs::read(path).map_err(|source| ExtractError::Io {
            path: path.to_path_buf(),
            source,
        })?
    } else {
        serde_json::to_vec(ckpt.config().raw()).map_err(|e| ExtractError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?
    };
    Ok(hex(&Sha256::digest(&bytes)))
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
    use super::*;
    use crate::spectral::FaerBackend;

    fn extract_fixture(dir: &str, fold_ln: bool) -> Unit {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch");
        let entry = ModelEntry {
            id: format!("fixture/{dir}"),
            revision: "main".into(),
            source: Some(root.join(dir)),
            gguf: None,
            lab: None,
            heritage: None,
            color: None,
            marker: None,
        };
        let ckpt = Checkpoint::open(&root.join(dir)).unwrap();
        let arch = Architecture::detect(ckpt.config()).unwrap();
        let provenance = Provenance::local(&ckpt, |_| None).unwrap();
        let plan = Plan {
            kinds: vec![MatrixKind::WV],
            per_head: false,
            fold_ln,
            precision: Precision::F64,
        };
        let source = ModelSource {
            entry: &entry,
            ckpt: &ckpt,
            arch: &arch,
            provenance: &provenance,
        };
        let backend = FaerBackend::new(1).unwrap();
        extract_unit(&source, &plan, &backend, "faer", &mut |_| {}).unwrap()
    }

    /// The pipelined loop gives exactly what analysing layer after layer gives.
    #[test]
    fn pipelined_model_equals_layer_by_layer() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch");
        let backend = FaerBackend::new(2).unwrap();
        for name in ["llama", "opt_post_ln", "gpt_neox"] {
            let ckpt = Checkpoint::open(&root.join(name)).unwrap();
            let arch = Architecture::detect(ckpt.config()).unwrap();
            let plan = Plan {
                kinds: MatrixKind::ALL.to_vec(),
                per_head: true,
                fold_ln: true,
                precision: Precision::F64,
            };
            let mut seen = Vec::new();
            let got = analyse_model(&ckpt, &arch, &plan, &backend, &mut |l| seen.push(l)).unwrap();
            let n = arch.geometry().n_layers;
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{name}");
            let mut want = Vec::new();
            for i in 0..n {
                let mut layer = arch.layer(&ckpt, i).unwrap();
                layer.fold_norm();
                want.extend(analyse_layer(&layer, &plan, &backend).unwrap());
            }
            // Debug strings: metrics without a power-law fit are NaN, and NaN != NaN.
            assert_eq!(format!("{:?}", got.results), format!("{want:?}"), "{name}");
            assert_eq!(
                got.results.len(),
                n * matrices_per_layer(arch.geometry(), &plan)
            );
        }
    }

    /// A backend that fails every batch whose first matrix starts with one of `bad` (so, a
    /// chosen set of layers, whatever thread hands them over), two batches in flight.
    struct FailingLayers {
        inner: FaerBackend,
        bad: Vec<f64>,
    }

    impl SvdBackend for FailingLayers {
        fn name(&self) -> &str {
            "failing"
        }
        fn spectra(
            &self,
            jobs: &[Job],
            precision: Precision,
        ) -> Result<Vec<Vec<f64>>, SpectralError> {
            if let Some(Job::Dense(m)) = jobs.first()
                && self.bad.contains(&m.data()[0])
            {
                return Err(SpectralError::NoConvergence {
                    job: 0,
                    backend: "failing".into(),
                    what: "test",
                    rows: m.rows(),
                    cols: m.cols(),
                    precision,
                });
            }
            self.inner.spectra(jobs, precision)
        }
        fn batches_in_flight(&self) -> usize {
            2
        }
    }

    /// With layers analysed two at a time, the error is the first failing layer's, progress is
    /// reported for the layers before it only, and the run ends (no thread waits forever).
    #[test]
    fn the_first_failing_layer_is_the_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arch");
        let ckpt = Checkpoint::open(&root.join("llama")).unwrap();
        let arch = Architecture::detect(ckpt.config()).unwrap();
        let n = arch.geometry().n_layers;
        assert_eq!(n, 2, "the fixture's layers");
        let plan = Plan {
            kinds: MatrixKind::ALL.to_vec(),
            per_head: false,
            fold_ln: false,
            precision: Precision::F64,
        };
        let first = |i: usize| arch.layer(&ckpt, i).unwrap().w_q.data()[0];
        // Both layers are in flight at once: the failure of layer 1 may arrive first.
        for (bad, want) in [(vec![1], 1), (vec![1, 0], 0), (vec![0], 0)] {
            let backend = FailingLayers {
                inner: FaerBackend::new(2).unwrap(),
                bad: bad.iter().map(|&i| first(i)).collect(),
            };
            let mut seen = Vec::new();
            let err = analyse_model(&ckpt, &arch, &plan, &backend, &mut |l| seen.push(l))
                .expect_err("a layer fails");
            match err {
                ExtractError::Spectral { layer, .. } => assert_eq!(layer, want, "{bad:?}"),
                other => panic!("{bad:?}: {other}"),
            }
            assert_eq!(seen, (0..want).collect::<Vec<_>>(), "{bad:?}");
        }
    }

    /// `models.fold_ln` records what was done: asked for on a post-LayerNorm model (no
    /// pre-attention gain), nothing is folded and the row says so.
    #[test]
    fn fold_ln_is_recorded_as_applied_only_when_it_was() {
        assert!(extract_fixture("gpt2", true).model.fold_ln);
        assert!(!extract_fixture("gpt2", false).model.fold_ln);
        let post = extract_fixture("opt_post_ln", true);
        assert!(!post.model.fold_ln);
        // And the weights were indeed left alone: the same spectra as without folding.
        let plain = extract_fixture("opt_post_ln", false);
        assert_eq!(post.spectra, plain.spectra);
    }

    /// The unit's rows carry the model's identity and provenance, one matrices row and one
    /// spectra row per analysed matrix.
    #[test]
    fn a_unit_holds_the_model_and_its_matrices() {
        let u = extract_fixture("gpt2", false);
        assert_eq!(u.model.model, "fixture/gpt2");
        assert_eq!(u.model.architecture, "gpt2");
        assert_eq!(u.model.source_format, "safetensors");
        assert_eq!(u.model.backend, "faer");
        assert_eq!(u.model.files[0].name, "config.json");
        assert_eq!(u.matrices.len(), u.model.n_layers);
        assert_eq!(u.spectra.len(), u.matrices.len());
        assert!(u.matrices.iter().all(|m| m.key.kind == MatrixKind::WV));
        assert_eq!(u.model.config_sha256.len(), 64);
    }
}
