//! `pipeline run aggregate`: runs the SQL files of `sql/` over the dataset (DataFusion) and
//! stores each result as a table of the dataset, stopping at the first failing statement.

use std::path::Path;

use anyhow::Result;
use attn_spectra_sql::aggregate::shipped_files;
use attn_spectra_sql::{aggregate, aggregate_files};

use crate::context::Context;

/// The SQL directory: `sql/` in the working directory (the repository's, or the user's own),
/// otherwise the files compiled into the binary.
pub fn run(ctx: &Context) -> Result<()> {
    let dir = Path::new("sql");
    let tables = if dir.is_dir() {
        ctx.progress
            .println(format!("aggregate: the SQL files of {}", dir.display()));
        aggregate(&ctx.out, dir)?
    } else {
        ctx.progress
            .println("aggregate: the built-in copy of sql/ (no sql/ directory here)");
        aggregate_files(&ctx.out, &shipped_files())?
    };
    for t in &tables {
        ctx.progress.println(format!(
            "  {:<16} {:>6} rows -> {}",
            t.table,
            t.rows,
            t.path.display()
        ));
    }
    Ok(())
}
