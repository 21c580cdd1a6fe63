//! `pipeline run report`: figures (PNG and SVG), the Markdown and HTML report and the seed
//! notebook's JSON, written into `<dataset>/report/` (for a dataset in an object store, into
//! the local `data/<pipeline name>/report/`).

use anyhow::Result;
use attn_spectra_report::{ReportOptions, ReportOutputs, time, write_report};

use crate::context::Context;

pub fn run(ctx: &Context) -> Result<ReportOutputs> {
    let opts = ReportOptions::from_pipeline(&ctx.pipeline, time::now_us())?;
    let out = write_report(&ctx.out, &ctx.report_dir, &opts)?;
    for note in &out.notes {
        ctx.progress.println(format!("  note: {note}"));
    }
    ctx.progress.println(format!(
        "report: {} figures, {}, {}, {}",
        out.figures.len(),
        out.markdown.display(),
        out.html.display(),
        out.json.display()
    ));
    Ok(out)
}
