//! What every stage of `pipeline run` needs: the pipeline, where its dataset lives, the
//! options and the display. Built once by `commands::run` and handed to each stage.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use attn_spectra::pipeline::{ModelEntry, Pipeline};

use crate::cli::RunArgs;
use crate::progress::Progress;

/// The pipeline, its dataset directory, the options, the display.
pub struct Context<'a> {
    pub pipeline: Pipeline,
    pub out: PathBuf,
    pub args: &'a RunArgs,
    pub progress: Progress,
}

impl<'a> Context<'a> {
    /// The units this run takes, with their indices: all of the pipeline's, or those of
    /// `--shard`.
    pub fn units(&self) -> impl Iterator<Item = (usize, &ModelEntry)> {
        let shard = self.args.shard;
        self.pipeline
            .models
            .iter()
            .enumerate()
            .filter(move |(i, _)| shard.is_none_or(|s| s.contains(*i)))
    }

    /// Loads the pipeline file and creates the dataset directory (`--out`, or
    /// `data/<pipeline name>`).
    pub fn new(args: &'a RunArgs) -> Result<Context<'a>> {
        let pipeline = Pipeline::load(&args.pipeline)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(&pipeline.name));
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create the dataset directory {}", out.display()))?;
        Ok(Context {
            pipeline,
            out,
            args,
            progress: Progress::new(args.quiet),
        })
    }
}
