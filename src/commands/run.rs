//! `pipeline run STAGE`: loads the pipeline file once and runs one stage, or all of them in
//! order (`all`), ending with a list of where everything went.

use anyhow::{Result, bail};
use attn_spectra::dataset::{
    FAILURES, HYPOTHESIS, HYPOTHESIS_SIZE, MATRICES, MODELS, SPECTRA, aggregates,
};

use crate::cli::{RunArgs, Stage};
use crate::commands::{Usage, aggregate, extract, fetch, report, test};
use crate::context::Context;

pub fn run(args: &RunArgs) -> Result<()> {
    if let Some(shard) = args.shard
        && !matches!(args.stage, Stage::Fetch | Stage::Extract)
    {
        // Checked before the dataset directory is created: a usage error writes nothing.
        return Err(Usage(format!(
            "`--shard {shard}` applies to `run fetch` and `run extract` only: aggregate, test and report read every unit, so run them once after all shards"
        ))
        .into());
    }
    let ctx = Context::new(args)?;
    match args.stage {
        Stage::Fetch => fetch::run(&ctx),
        Stage::Extract => extract::run(&ctx),
        Stage::Aggregate => aggregate::run(&ctx),
        Stage::Test => test::run(&ctx),
        Stage::Report => report::run(&ctx).map(|_| ()),
        Stage::All => all(&ctx),
    }
}

/// fetch, extract, aggregate, test, report. A model that fails to fetch or extract does not
/// stop the others (it gets a row in failures/ and is left out of the statistics); the run
/// still exits non-zero at the end. Any other error stops the run at its stage.
fn all(ctx: &Context) -> Result<()> {
    let mut failed: Vec<String> = Vec::new();
    let step = |name: &str| ctx.progress.println(format!("== {name}"));
    let has_hub_models = ctx.pipeline.models.iter().any(|m| m.source.is_none());
    if has_hub_models {
        step("fetch");
        if let Err(e) = fetch::run(ctx) {
            failed.push(format!("fetch: {e:#}"));
        }
    }
    step("extract");
    let extracted = extract::extract(ctx)?;
    if let Err(e) = extract::fail_on(ctx, &extracted) {
        // Failed models are in failures/; go on when at least one model of this pipeline
        // has complete outputs (extracted now or up to date), never on the strength of
        // tables an older run left.
        if !extracted.produced_something() {
            return Err(e);
        }
        failed.push(format!("extract: {e:#}"));
    }
    step("aggregate");
    aggregate::run(ctx)?;
    step("test");
    test::run(ctx)?;
    step("report");
    let report = report::run(ctx)?;
    println!("\nDone. Dataset: {}", ctx.out.display());
    let core = [
        MODELS,
        MATRICES,
        SPECTRA,
        FAILURES,
        HYPOTHESIS,
        HYPOTHESIS_SIZE,
    ];
    for table in core
        .iter()
        .chain(aggregates::TABLES)
        .chain(&[aggregates::TRAJECTORY])
    {
        if ctx.out.table_file_names(table)?.is_some() {
            println!("  {:<14} {}", table, ctx.out.table_location(table));
        }
    }
    println!("  {:<14} {}", "report", report.markdown.display());
    println!("  {:<14} {}", "html", report.html.display());
    println!("  {:<14} {}", "seed JSON", report.json.display());
    if let Some(first) = report.figures.first() {
        let figures = first.png.parent().unwrap_or(&ctx.report_dir);
        println!(
            "  {:<14} {} ({} figures, PNG and SVG)",
            "figures",
            figures.display(),
            report.figures.len()
        );
    }
    println!(
        "  {:<14} pipeline sql --out {} \"SELECT * FROM model_summary\"",
        "query with",
        ctx.out.display()
    );
    if !failed.is_empty() {
        bail!("the run finished with failures:\n  {}", failed.join("\n  "));
    }
    Ok(())
}
