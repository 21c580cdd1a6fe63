//! `pipeline run test`: the Dampener-vs-Expander test of the pipeline's `[test]` section
//! (Mann-Whitney U, rank-biserial effect size, exact permutation test, Holm/BH-adjusted p-values,
//! the models per group needed for 80 % power) over per-model means, written to `hypothesis/`,
//! and the size-controlled test written to `hypothesis_size/`; both printed.

use anyhow::Result;
use attn_spectra_sql::{render_size_text, render_text, run_size_tests, run_tests};

use crate::context::Context;

pub fn run(ctx: &Context) -> Result<()> {
    let plan = &ctx.pipeline.test;
    let rows = run_tests(&ctx.out, plan)?;
    println!("{}", render_text(&rows, plan.alpha));
    let size_rows = run_size_tests(&ctx.out, plan)?;
    println!("{}", render_size_text(&size_rows, plan.alpha));
    ctx.progress.println(format!(
        "test: {} results -> {}",
        rows.len(),
        ctx.out.table_location(attn_spectra::dataset::HYPOTHESIS)
    ));
    ctx.progress.println(format!(
        "test: {} size-controlled results -> {}",
        size_rows.len(),
        ctx.out
            .table_location(attn_spectra::dataset::HYPOTHESIS_SIZE)
    ));
    Ok(())
}
