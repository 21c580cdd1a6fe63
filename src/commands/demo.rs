//! `pipeline demo [DIR]`: writes the demo carried in the binary (`attn_spectra_demo`) into DIR
//! and runs it as `pipeline run all --pipeline DIR/pipelines/demo.toml --out DIR/data/demo`.

use anyhow::Result;

use crate::cli::{DemoArgs, RunArgs, Stage};

pub fn run(args: &DemoArgs) -> Result<()> {
    let written = attn_spectra_demo::write(&args.dir, args.force)?;
    if !args.quiet {
        println!(
            "Demo files in {} ({} written, {} already there)",
            args.dir.display(),
            written.written,
            written.unchanged
        );
    }
    let run = RunArgs {
        stage: Stage::All,
        pipeline: written.pipeline,
        out: Some(args.dir.join("data").join("demo")),
        force: args.force,
        backend: None,
        precision: None,
        threads: args.threads,
        offline: true,
        remote: false,
        quiet: args.quiet,
        shard: None,
    };
    crate::commands::run::run(&run)
}
