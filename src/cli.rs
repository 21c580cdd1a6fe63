//! Command-line definitions of `pipeline` (clap). Only parsing lives here; each subcommand's
//! behaviour is in its own module under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Spectral analysis of transformer attention weights, from checkpoints to Parquet datasets.
///
/// Typical use: `pipeline run all` (the study in pipelines/labs.toml), or step by step
/// `pipeline run fetch | extract | aggregate | test | report --pipeline FILE`, then ad-hoc
/// `pipeline sql "SELECT ..."` over the dataset.
#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show how a checkpoint's attention weights are read: the detected architecture and
    /// dimensions, and for each projection the file, tensor, dtype, shape and slice.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A checkpoint directory (config.json plus safetensors or pytorch_model.bin files) or a
    /// .gguf file.
    pub path: PathBuf,
    /// Which layer to show in detail.
    #[arg(long, default_value_t = 0)]
    pub layer: usize,
    /// Read every layer, checking shapes and finiteness, instead of only the one shown.
    #[arg(long)]
    pub check: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
