//! What every stage of `pipeline run` needs: the pipeline, where its dataset lives, the
//! options and the display. Built once by `commands::run` and handed to each stage.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use attn_spectra::dataset::DatasetDir;
use attn_spectra::pipeline::{ModelEntry, Pipeline};

use crate::cli::RunArgs;
use crate::progress::Progress;

/// The pipeline, its dataset, the options, the display.
pub struct Context<'a> {
    pub pipeline: Pipeline,
    /// The dataset: a local directory or an object store prefix (`--out s3://...`).
    pub out: DatasetDir,
    /// Where `run report` writes: `<dataset>/report/` for a local dataset, and
    /// `data/<pipeline name>/report/` (local) for one in an object store.
    pub report_dir: PathBuf,
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

    /// Loads the pipeline file and opens the dataset (`--out`, or `data/<pipeline name>`):
    /// creates a local directory, or checks that an object store's bucket exists.
    pub fn new(args: &'a RunArgs) -> Result<Context<'a>> {
        let pipeline = Pipeline::load(&args.pipeline)?;
        let out = match &args.out {
            Some(out) => open_out(out)?,
            None => DatasetDir::new(PathBuf::from("data").join(&pipeline.name)),
        };
        out.probe().with_context(|| format!("--out {out}"))?;
        let report_dir = match out.local_root() {
            Some(root) => root.join("report"),
            None => PathBuf::from("data").join(&pipeline.name).join("report"),
        };
        Ok(Context {
            pipeline,
            out,
            report_dir,
            args,
            progress: Progress::new(args.quiet),
        })
    }
}

/// The dataset named by `--out` (a path or a URL); a bad URL is an error naming the flag.
pub fn open_out(out: &std::path::Path) -> Result<DatasetDir> {
    DatasetDir::from_arg(out).with_context(|| format!("--out {}", out.display()))
}
