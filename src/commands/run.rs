//! `pipeline run STAGE`: loads the pipeline file once and runs one stage, or all in order.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use attn_spectra::pipeline::Pipeline;

use crate::cli::{RunArgs, Stage};
use crate::commands::extract;
use crate::progress::Progress;

/// What every stage needs: the pipeline, where its dataset lives, the options, the display.
pub struct Context<'a> {
    pub pipeline: Pipeline,
    pub out: PathBuf,
    pub args: &'a RunArgs,
    pub progress: Progress,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.pipeline)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("data").join(&pipeline.name));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the dataset directory {}", out.display()))?;
    let ctx = Context {
        pipeline,
        out,
        args,
        progress: Progress::new(args.quiet),
    };
    match args.stage {
        Stage::Extract => extract::run(&ctx),
        Stage::Fetch | Stage::Aggregate | Stage::Test | Stage::Report | Stage::All => {
            anyhow::bail!("stage {:?} is not available yet", args.stage)
        }
    }
}
