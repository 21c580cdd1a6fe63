//! `pipeline run extract`: every model of the pipeline to models/, matrices/ and spectra/.
//!
//! Models are processed one after another, each layer by layer. A model whose three table
//! files exist with the same configuration hash is skipped (a resumed run), unless `--force`.
//! A model that fails gets a row in failures/ and the run goes on; the stage fails at the end,
//! listing the failures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use attn_spectra::dataset::rows::{self, FailureRow, FileRecord, ModelRow};
use attn_spectra::dataset::{self, FAILURES, MATRICES, MODELS, SPECTRA, schema};
use attn_spectra::extract::{Plan, analyse_model, matrices_per_layer};
use attn_spectra::pipeline::{ModelEntry, hex};
use attn_spectra::spectral::Precision;
use attn_spectra::{Architecture, Checkpoint, LayerAttention};
use sha2::{Digest, Sha256};

use crate::backend;
use crate::commands::run::Context;
use crate::source::{self, Hubs};

/// Parquet key-value metadata keys.
pub const META_PIPELINE_FILE: &str = "attn_spectra.pipeline_file";
pub const META_PIPELINE: &str = "attn_spectra.pipeline";
pub const META_TOOL_VERSION: &str = "attn_spectra.tool_version";
pub const META_CONFIG_HASH: &str = "attn_spectra.config_hash";

pub fn run(ctx: &Context) -> Result<()> {
    let p = &ctx.pipeline;
    let removed = dataset::remove_stale_temporaries(&ctx.out)
        .with_context(|| format!("cleaning {}", ctx.out.display()))?;
    if removed > 0 {
        ctx.progress.println(format!(
            "removed {removed} partial file(s) left by an interrupted run"
        ));
    }
    let backend_name = ctx.args.backend.as_deref().unwrap_or(&p.analysis.backend);
    let selected = backend::select(backend_name, ctx.args.threads)?;
    let precision: Precision = ctx
        .args
        .precision
        .as_deref()
        .unwrap_or(&p.analysis.precision)
        .parse()?;
    let plan = Plan {
        kinds: p.analysis.kinds.clone(),
        per_head: p.analysis.per_head,
        fold_ln: p.analysis.fold_ln,
        precision,
    };
    let mut hubs = Hubs::new(ctx.args.offline, !ctx.args.quiet);
    let models_bar = ctx.progress.bar(p.models.len() as u64, "models");
    let mut failures = Vec::new();
    let (mut done, mut skipped) = (0, 0);
    for model in &p.models {
        let stem = dataset::file_stem(&model.id, &model.revision);
        let hash = config_hash(ctx, model, &selected.name, precision);
        models_bar.set_message(format!("{}@{}", model.id, model.revision));
        if !ctx.args.force && is_complete(&ctx.out, &stem, &hash) {
            skipped += 1;
            ctx.progress.println(format!(
                "  skipped  {}@{} (outputs exist for this configuration; --force recomputes)",
                model.id, model.revision
            ));
            models_bar.inc(1);
            continue;
        }
        let started = Instant::now();
        match extract_model(ctx, &mut hubs, model, &plan, &selected, &stem, &hash) {
            Ok(summary) => {
                done += 1;
                let _ = std::fs::remove_file(dataset::table_file(&ctx.out, FAILURES, &stem));
                ctx.progress.println(format!(
                    "  done     {}@{}: {summary} in {:.1} s",
                    model.id,
                    model.revision,
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(err) => {
                let message = format!("{err:#}");
                ctx.progress.println(format!(
                    "  FAILED   {}@{}: {message}",
                    model.id, model.revision
                ));
                let row = FailureRow {
                    model: model.id.clone(),
                    revision: model.revision.clone(),
                    stage: "extract".into(),
                    error: message.clone(),
                    failed_at_us: rows::now_us(),
                };
                dataset::write_parquet_atomic(
                    &dataset::table_file(&ctx.out, FAILURES, &stem),
                    schema::failures(),
                    &[rows::failures_batch(std::slice::from_ref(&row))?],
                    &metadata(ctx, &hash),
                )?;
                failures.push(format!("{}@{}: {message}", model.id, model.revision));
            }
        }
        models_bar.inc(1);
    }
    models_bar.finish_and_clear();
    ctx.progress.println(format!(
        "extract: {done} extracted, {skipped} up to date, {} failed -> {}",
        failures.len(),
        ctx.out.display()
    ));
    if !failures.is_empty() {
        bail!(
            "{} model(s) failed (see {}):\n  {}",
            failures.len(),
            ctx.out.join(FAILURES).display(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The configuration hash also covers the backend and precision actually used.
fn config_hash(ctx: &Context, model: &ModelEntry, backend: &str, precision: Precision) -> String {
    let base = ctx.pipeline.config_hash(model);
    hex(&Sha256::digest(
        format!("{base}/{backend}/{precision}").as_bytes(),
    ))
}

fn metadata(ctx: &Context, hash: &str) -> Vec<(String, String)> {
    vec![
        (
            META_PIPELINE_FILE.into(),
            ctx.pipeline.path.display().to_string(),
        ),
        (META_PIPELINE.into(), ctx.pipeline.text.clone()),
        (META_TOOL_VERSION.into(), env!("CARGO_PKG_VERSION").into()),
        (META_CONFIG_HASH.into(), hash.into()),
    ]
}

/// True when all three table files of a model exist and carry `hash`.
fn is_complete(out: &Path, stem: &str, hash: &str) -> bool {
    [MODELS, MATRICES, SPECTRA].iter().all(|table| {
        dataset::read_metadata(&dataset::table_file(out, table, stem))
            .is_some_and(|kv| kv.iter().any(|(k, v)| k == META_CONFIG_HASH && v == hash))
    })
}

#[allow(clippy::too_many_arguments)]
fn extract_model(
    ctx: &Context,
    hubs: &mut Hubs,
    model: &ModelEntry,
    plan: &Plan,
    selected: &backend::Selected,
    stem: &str,
    hash: &str,
) -> Result<String> {
    let located = source::locate(model, hubs, ctx.args.remote)?;
    let ckpt = &located.ckpt;
    let arch = Architecture::detect(ckpt.config())?;
    let g = *arch.geometry();
    let layer_bar = ctx.progress.bar(g.n_layers as u64, "layers");
    layer_bar.set_message(format!(
        "{} ({} matrices per layer)",
        arch.model_type(),
        matrices_per_layer(&g, plan)
    ));
    // The stored dtype is taken from layer 0 as the analysis reads it (never read twice).
    let mut dtype = None;
    let results = analyse_model(ckpt, &arch, plan, selected.backend.as_ref(), &mut |layer| {
        if dtype.is_none() {
            dtype = Some(source_dtype(layer));
        }
        layer_bar.inc(1)
    })?;
    layer_bar.finish_and_clear();
    let source_dtype = dtype.with_context(|| format!("{} has no layers", model.id))?;
    let row = ModelRow {
        model: model.id.clone(),
        revision: model.revision.clone(),
        commit: located.commit.clone(),
        lab: model.lab.clone(),
        heritage: model.heritage.clone(),
        architecture: arch.model_type().to_string(),
        n_layers: g.n_layers,
        d_model: g.d_model,
        n_heads: g.n_heads,
        n_kv_heads: g.n_kv_heads,
        d_head: g.d_head,
        source_format: ckpt.format().name().to_string(),
        source_dtype,
        fold_ln: plan.fold_ln,
        backend: selected.name.clone(),
        precision: plan.precision.name().to_string(),
        files: match &located.files {
            Some(files) => files.clone(),
            None => file_records(ckpt)?,
        },
        config_sha256: config_sha256(ckpt)?,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        extracted_at_us: rows::now_us(),
        identical_to: located.identical_to.clone(),
    };
    let meta = metadata(ctx, hash);
    // The models/ row marks a model complete, so it goes first out and last in.
    let models_file = dataset::table_file(&ctx.out, MODELS, stem);
    if models_file.exists() {
        std::fs::remove_file(&models_file)
            .with_context(|| format!("removing {}", models_file.display()))?;
    }
    dataset::write_parquet_atomic(
        &dataset::table_file(&ctx.out, SPECTRA, stem),
        schema::spectra(),
        &[rows::spectra_batch(&model.id, &model.revision, &results)?],
        &meta,
    )?;
    dataset::write_parquet_atomic(
        &dataset::table_file(&ctx.out, MATRICES, stem),
        schema::matrices(),
        &[rows::matrices_batch(&model.id, &model.revision, &results)?],
        &meta,
    )?;
    dataset::write_parquet_atomic(
        &models_file,
        schema::models(),
        &[rows::models_batch(&row)?],
        &meta,
    )?;
    let mut summary = format!(
        "{}, {} layers, {} matrices",
        arch.model_type(),
        g.n_layers,
        results.len()
    );
    if let Some(r) = &located.identical_to {
        summary.push_str(&format!("; its files are byte-identical to revision `{r}`"));
    }
    if let Some(traffic) = &located.remote {
        summary.push_str(&format!(
            "; remote: {:.1} MB of {:.1} MB of weights downloaded ({:.1}%)",
            traffic.bytes_downloaded() as f64 / 1e6,
            traffic.weight_bytes() as f64 / 1e6,
            100.0 * traffic.bytes_downloaded() as f64 / traffic.weight_bytes().max(1) as f64
        ));
    }
    Ok(summary)
}

/// The stored dtype of a layer's attention weights (its projections), or `mixed(...)`.
fn source_dtype(layer: &LayerAttention) -> String {
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

/// The model's files: name, size, and sha256 when the Hugging Face cache stores the file
/// under it (LFS blobs are named by their sha256). Whole weight files are never read to hash them.
fn file_records(ckpt: &Checkpoint) -> Result<Vec<FileRecord>> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = ckpt.files().to_vec();
    let config = ckpt.config().path().to_path_buf();
    if config.is_file() {
        paths.insert(0, config);
    }
    for path in paths {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let name = path
            .strip_prefix(ckpt.root())
            .unwrap_or(&path)
            .display()
            .to_string();
        let sha256 = std::fs::read_link(&path).ok().and_then(|target| {
            let blob = target.file_name()?.to_str()?.to_string();
            let in_blobs = target.parent()?.file_name()? == "blobs";
            (in_blobs && blob.len() == 64 && blob.chars().all(|c| c.is_ascii_hexdigit()))
                .then_some(blob)
        });
        out.push(FileRecord { name, sha256, size });
    }
    Ok(out)
}

/// sha256 of config.json, or of the configuration derived from a GGUF file's metadata.
fn config_sha256(ckpt: &Checkpoint) -> Result<String> {
    let path = ckpt.config().path();
    let bytes = if path.is_file() && path.extension().is_some_and(|e| e == "json") {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    } else {
        serde_json::to_vec(ckpt.config().raw())?
    };
    Ok(hex(&Sha256::digest(&bytes)))
}
