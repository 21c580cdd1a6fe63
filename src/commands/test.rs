//! `pipeline run test`: the Dampener-vs-Expander test of the pipeline's `[test]` section
//! (Mann-Whitney U, rank-biserial effect size, exact permutation test) over per-model means,
//! written to `hypothesis/` and printed in the seed notebook's words.

use anyhow::Result;
use attn_spectra_sql::{render_text, run_tests};

use crate::context::Context;

pub fn run(ctx: &Context) -> Result<()> {
    let plan = &ctx.pipeline.test;
    let rows = run_tests(&ctx.out, plan)?;
    println!("{}", render_text(&rows, plan.alpha));
    ctx.progress.println(format!(
        "test: {} results -> {}",
        rows.len(),
        ctx.out.join(attn_spectra::dataset::HYPOTHESIS).display()
    ));
    Ok(())
}
