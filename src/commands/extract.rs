//! `pipeline run extract`: every model of the pipeline to models/, matrices/ and spectra/.
//!
//! Models are processed one after another, each layer by layer
//! (`attn_spectra::extract::extract_unit`) and written as one unit
//! (`attn_spectra::dataset::DatasetDir::write_unit`, on a background thread: `UnitWriter`, so
//! that writing or uploading a unit overlaps with computing the next). While a model computes,
//! the next one is located on another thread (`attn_spectra_hub::locate::locate_ahead`: its
//! files fetched into the cache, or with `--remote` its headers and first two layers downloaded).
//! A model whose unit is
//! complete with the same configuration hash is skipped (a resumed run), unless `--force`. A model that fails
//! gets a row in failures/ and the run goes on; the stage fails at the end, listing the
//! failures. With `--shard K/N` only that shard's units are taken
//! (`attn_spectra::shard`); shards may write into one dataset at the same time.

use std::time::Instant;

use anyhow::{Result, bail};
use attn_spectra::Architecture;
use attn_spectra::dataset::{FAILURES, FailureRow, UnitMeta, UnitWriter, now_us};
use attn_spectra::extract::{ModelSource, Plan, extract_unit, matrices_per_layer};
use attn_spectra::pipeline::ModelEntry;
use attn_spectra_hub::locate::locate_ahead;
use attn_spectra_hub::{Hubs, Located};

use crate::backend;
use crate::context::Context;

/// What one extract run did.
pub struct Summary {
    /// Models extracted by this run.
    pub extracted: usize,
    /// Models skipped because their outputs were up to date.
    pub up_to_date: usize,
    /// "model@revision: error" of each model that failed.
    pub failed: Vec<String>,
}

impl Summary {
    /// Whether the dataset now holds a complete unit for at least one model of the pipeline.
    pub fn produced_something(&self) -> bool {
        self.extracted + self.up_to_date > 0
    }
}

/// Runs the stage and fails when a model failed.
pub fn run(ctx: &Context) -> Result<()> {
    let summary = extract(ctx)?;
    fail_on(ctx, &summary)
}

/// The error listing the failed models, if any.
pub fn fail_on(ctx: &Context, summary: &Summary) -> Result<()> {
    if !summary.failed.is_empty() {
        bail!(
            "{} model(s) failed (see {}):\n  {}",
            summary.failed.len(),
            ctx.out.table_location(FAILURES),
            summary.failed.join("\n  ")
        );
    }
    Ok(())
}

/// Extracts every model; failures are recorded, not returned as errors.
pub fn extract(ctx: &Context) -> Result<Summary> {
    let p = &ctx.pipeline;
    let ds = ctx.out.clone();
    let removed = ds.remove_stale_temporaries()?;
    if removed > 0 {
        ctx.progress.println(format!(
            "removed {removed} partial file(s) left by an interrupted run"
        ));
    }
    let choice = ctx.args.backend.unwrap_or(p.analysis.backend);
    let selected = backend::select(choice, ctx.args.threads)?;
    let plan = Plan {
        kinds: p.analysis.kinds.clone(),
        per_head: p.analysis.per_head,
        fold_ln: p.analysis.fold_ln,
        precision: ctx.args.precision.unwrap_or(p.analysis.precision),
    };
    let units: Vec<_> = ctx.units().collect();
    if let Some(shard) = ctx.args.shard {
        ctx.progress.println(format!(
            "shard {shard}: {} of the pipeline's {} units (those whose index mod {} is {})",
            units.len(),
            p.models.len(),
            shard.n,
            shard.k
        ));
    }
    let models_bar = ctx.progress.bar(units.len() as u64, "models");
    let mut summary = Summary {
        extracted: 0,
        up_to_date: 0,
        failed: Vec::new(),
    };
    // Units are written (uploaded, for an object store) on a background thread while the
    // next model computes; at most one more unit waits in the queue.
    let writer = ds.unit_writer(1);
    // Units already complete under this configuration are skipped first, so that the models
    // located ahead are the ones this run computes.
    let mut todo = Vec::new();
    for (_, model) in units {
        let meta = UnitMeta::new(p, p.unit_hash(model, &selected.name, plan.precision));
        if !ctx.args.force && ds.is_complete(&model.id, &model.revision, &meta.config_hash) {
            summary.up_to_date += 1;
            ctx.progress.println(format!(
                "  skipped  {}@{} (outputs exist for this configuration; --force recomputes)",
                model.id, model.revision
            ));
            models_bar.inc(1);
        } else {
            todo.push((model, meta));
        }
    }
    std::thread::scope(|scope| -> Result<()> {
        let hubs = Hubs::new(ctx.args.offline, !ctx.args.quiet);
        let ahead = todo.iter().map(|(model, _)| *model).collect();
        let located = locate_ahead(scope, hubs, ahead, ctx.args.remote);
        for (model, meta) in &todo {
            models_bar.set_message(format!("{}@{}", model.id, model.revision));
            let started = Instant::now();
            let outcome = match located.recv() {
                Ok(found) => found.map_err(anyhow::Error::from).and_then(|found| {
                    extract_model(ctx, &writer, found, model, &plan, &selected, meta)
                }),
                Err(_) => bail!(
                    "the thread locating models stopped before {}@{}",
                    model.id,
                    model.revision
                ),
            };
            match outcome {
                Ok(done) => {
                    summary.extracted += 1;
                    ctx.progress.println(format!(
                        "  done     {}@{}: {done} in {:.1} s",
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
                        failed_at_us: now_us(),
                    };
                    ds.write_failure(&row, meta)?;
                    summary
                        .failed
                        .push(format!("{}@{}: {message}", model.id, model.revision));
                }
            }
            models_bar.inc(1);
        }
        Ok(())
    })?;
    models_bar.finish_and_clear();
    for err in writer.finish() {
        let message = format!(
            "cannot write its outputs: {:#}",
            anyhow::Error::new(err.source)
        );
        ctx.progress.println(format!(
            "  FAILED   {}@{}: {message}",
            err.model, err.revision
        ));
        summary.extracted -= 1;
        summary
            .failed
            .push(format!("{}@{}: {message}", err.model, err.revision));
    }
    ctx.progress.println(format!(
        "extract: {} extracted, {} up to date, {} failed -> {}",
        summary.extracted,
        summary.up_to_date,
        summary.failed.len(),
        ctx.out.display()
    ));
    Ok(summary)
}

/// Extracts one located model and hands its unit to the writer; returns a line saying what
/// was done.
fn extract_model(
    ctx: &Context,
    writer: &UnitWriter,
    located: Located,
    model: &ModelEntry,
    plan: &Plan,
    selected: &backend::Selected,
    meta: &UnitMeta,
) -> Result<String> {
    let arch = Architecture::detect(located.ckpt.config())?;
    let g = *arch.geometry();
    let layer_bar = ctx.progress.bar(g.n_layers as u64, "layers");
    layer_bar.set_message(format!(
        "{} ({} matrices per layer)",
        arch.model_type(),
        matrices_per_layer(&g, plan)
    ));
    let source = ModelSource {
        entry: model,
        ckpt: &located.ckpt,
        arch: &arch,
        provenance: &located.provenance,
    };
    let unit = extract_unit(
        &source,
        plan,
        selected.backend.as_ref(),
        &selected.name,
        &mut |_| layer_bar.inc(1),
    )?;
    layer_bar.finish_and_clear();
    let mut done = format!(
        "{}, {} layers, {} matrices",
        arch.model_type(),
        g.n_layers,
        unit.matrices.len()
    );
    if plan.fold_ln && !unit.model.fold_ln {
        done.push_str("; fold_ln not applied (the model has no pre-attention norm)");
    }
    writer.submit(unit, meta.clone());
    if let Some(r) = &located.provenance.identical_to {
        done.push_str(&format!("; its files are byte-identical to revision `{r}`"));
    }
    if let Some(traffic) = &located.remote {
        done.push_str(&format!(
            "; remote: {:.1} MB of {:.1} MB of weights downloaded ({:.1}%)",
            traffic.bytes_downloaded() as f64 / 1e6,
            traffic.weight_bytes() as f64 / 1e6,
            100.0 * traffic.bytes_downloaded() as f64 / traffic.weight_bytes().max(1) as f64
        ));
    }
    Ok(done)
}
