//! `pipeline run fetch`: download what extraction needs for every Hub model of the pipeline
//! into the Hugging Face cache (models with a local `source` are skipped); with `--shard`, of
//! that shard's units only.

use anyhow::{Result, bail};

use crate::context::Context;
use attn_spectra_hub::Hubs;

pub fn run(ctx: &Context) -> Result<()> {
    let mut hubs = Hubs::new(ctx.args.offline, !ctx.args.quiet);
    let mut failures = Vec::new();
    let (mut fetched_n, mut bytes) = (0, 0u64);
    for (_, model) in ctx.units() {
        if model.source.is_some() {
            ctx.progress.println(format!(
                "  local    {}: source {}",
                model.id,
                model
                    .source
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
            continue;
        }
        match hubs.fetch(model) {
            Ok(f) => {
                fetched_n += 1;
                bytes += f.bytes_downloaded;
                let same = f
                    .identical_to
                    .as_deref()
                    .map(|r| format!("; files byte-identical to revision `{r}`"))
                    .unwrap_or_default();
                ctx.progress.println(format!(
                    "  fetched  {}@{} -> commit {} ({} files, {:.1} MB, {:.1} MB downloaded){same}",
                    model.id,
                    model.revision,
                    &f.commit[..f.commit.len().min(12)],
                    f.files.len(),
                    f.total_bytes() as f64 / 1e6,
                    f.bytes_downloaded as f64 / 1e6,
                ));
            }
            Err(e) => {
                ctx.progress
                    .println(format!("  FAILED   {}@{}: {e:#}", model.id, model.revision));
                failures.push(format!("{}@{}: {e:#}", model.id, model.revision));
            }
        }
    }
    ctx.progress.println(format!(
        "fetch: {fetched_n} model(s) in the cache, {:.1} MB downloaded, {} failed",
        bytes as f64 / 1e6,
        failures.len()
    ));
    if !failures.is_empty() {
        bail!(
            "{} model(s) could not be fetched:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}
