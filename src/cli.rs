//! Command-line definitions of `pipeline` (clap). Only parsing lives here; each subcommand's
//! behaviour is in its own module under `commands/`.

use std::path::PathBuf;

use attn_spectra::shard::Shard;
use attn_spectra::spectral::{BackendChoice, Precision};
use clap::{Args, Parser, Subcommand};

/// `pipeline --version`: the version and the optional features this binary was built with.
#[cfg(feature = "torch")]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: torch; backends: faer, torch-cpu, torch-cuda)"
);
#[cfg(not(feature = "torch"))]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (features: none; backends: faer; build with --features torch for libtorch)"
);

/// Spectral analysis of transformer attention weights, from checkpoints to Parquet datasets.
///
/// Typical use: `pipeline run all` (the study in pipelines/labs.toml), or step by step
/// `pipeline run fetch | extract | aggregate | test | report --pipeline FILE`, then ad-hoc
/// `pipeline sql "SELECT ..."` over the dataset.
#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the demo (a pipeline file and seven tiny random checkpoints carried inside this
    /// binary) into DIR and run it: fetch-free extract, aggregate, test and report. The quickest
    /// way to see what the tool makes; no clone of the repository or network needed.
    Demo(DemoArgs),
    /// Show how a checkpoint's attention weights are read: the detected architecture and
    /// dimensions, and for each projection the file, tensor, dtype, shape and slice.
    Inspect(InspectArgs),
    /// Run a stage of a pipeline file (or `all` of them in order).
    Run(RunArgs),
    /// List every unit (model x revision) of a pipeline file with its index, its status in
    /// the dataset (done, todo, failed, other-config: done under another configuration) and
    /// its size where known locally (source files, Hugging Face cache; no network). How to
    /// size a sweep's array and see what is missing.
    Plan(PlanArgs),
    /// Run SQL (DataFusion) over a dataset: every table directory (models, matrices, spectra,
    /// failures, hypothesis, the aggregate results) is registered under its name, so
    /// `SELECT kind, avg(spectral_norm) FROM matrices GROUP BY kind` and
    /// `SELECT unnest(singular_values) FROM spectra` work. A bad query exits with code 2.
    Sql(SqlArgs),
}

/// The stages of a pipeline, in the order `all` runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Download what extraction needs (config, attention-bearing weight files) from the Hub.
    Fetch,
    /// Compute spectra and metrics of every model into models/, matrices/ and spectra/.
    Extract,
    /// Run the SQL files in sql/ over the dataset and store each result as a table.
    Aggregate,
    /// Run the Dampener-vs-Expander hypothesis test into hypothesis/.
    Test,
    /// Draw the figures and write the report and the seed-compatible JSON.
    Report,
    /// fetch, extract, aggregate, test and report, in order.
    All,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which stage to run.
    #[arg(value_enum)]
    pub stage: Stage,
    /// The pipeline file.
    #[arg(long, short, default_value = "pipelines/labs.toml")]
    pub pipeline: PathBuf,
    /// The dataset: a directory, or an object store URL (s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix, file:///path) with credentials from the standard variables
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, ...; see the
    /// README). With an object store URL the report is written locally, to
    /// data/<pipeline name>/report/ [default: data/<pipeline name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Recompute models whose outputs already exist for the same configuration.
    #[arg(long)]
    pub force: bool,
    /// Override the pipeline's backend: auto, faer, torch-cpu or torch-cuda.
    #[arg(long)]
    pub backend: Option<BackendChoice>,
    /// Override the pipeline's precision: f64 or f32.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Worker threads for the SVDs (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Use the local Hugging Face cache only (like HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Read safetensors weights from the Hub with HTTP range requests instead of downloading
    /// whole files: only the attention tensors' bytes are fetched.
    #[arg(long)]
    pub remote: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Take only shard K of N (for `fetch` and `extract`): the units (model x revision, in
    /// file order, numbered from 0) whose index mod N is K, K numbered from 0. `auto` reads a
    /// Slurm array task's SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (or _MIN/_MAX), or
    /// a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with ATTN_SPECTRA_SHARD_COUNT. Shards
    /// can write into one dataset at the same time; run aggregate, test and report after all
    /// of them.
    #[arg(long, value_name = "K/N|auto", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

/// `--shard K/N` or `--shard auto` (from the scheduler's environment); a bad value is a
/// usage error (exit code 2) before anything is written.
fn parse_shard(arg: &str) -> Result<Shard, String> {
    Shard::parse(arg, |name| std::env::var(name).ok()).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The pipeline file.
    #[arg(long, short, default_value = "pipelines/labs.toml")]
    pub pipeline: PathBuf,
    /// The dataset: a directory or an object store URL (s3://bucket/prefix, gs://, az://,
    /// file://) [default: data/<pipeline name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How to print the units.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PlanFormat,
    /// Show only shard K of N (as `pipeline run extract --shard` would take it).
    #[arg(long, value_name = "K/N|auto", value_parser = parse_shard, conflicts_with = "shards")]
    pub shard: Option<Shard>,
    /// Add a column saying which of N shards each unit goes to.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,
    /// The backend the run will use (it is part of the configuration hash) [default: the
    /// pipeline's].
    #[arg(long)]
    pub backend: Option<BackendChoice>,
    /// The precision the run will use [default: the pipeline's].
    #[arg(long)]
    pub precision: Option<Precision>,
}

/// Output formats of `pipeline plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// An aligned text table and a summary line.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of units.
    Json,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo: the pipeline file goes to DIR/pipelines/demo.toml, the
    /// checkpoints under DIR/tests/fixtures/, the dataset and report to DIR/data/demo.
    #[arg(default_value = "attn-spectra-demo")]
    pub dir: PathBuf,
    /// Overwrite demo files in DIR that differ from the binary's copy, and recompute the
    /// dataset.
    #[arg(long)]
    pub force: bool,
    /// Worker threads for the SVDs (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A checkpoint directory (config.json plus safetensors or pytorch_model.bin files) or a
    /// .gguf file.
    #[arg(required_unless_present = "architectures")]
    pub path: Option<PathBuf>,
    /// List every supported model_type with its attention layout and GGUF name instead.
    #[arg(long, conflicts_with = "path")]
    pub architectures: bool,
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

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run (several `;`-separated statements allowed; the last one's result is
    /// shown). Omit it and give --file instead to run a .sql file.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub query: Option<String>,
    /// Read the SQL from this file instead.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// The dataset: a directory or an object store URL (s3://bucket/prefix, gs://, az://,
    /// file://) [default: data/<name of the --pipeline file>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The pipeline file whose dataset to query, when --out is not given.
    #[arg(long, short, default_value = "pipelines/labs.toml")]
    pub pipeline: PathBuf,
    /// How to print or save the result.
    #[arg(long, value_enum, default_value = "table")]
    pub format: SqlFormat,
    /// Write the result to this file instead of standard output (required for parquet).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// Output formats of `pipeline sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON lines, one object per row.
    Json,
    /// A Parquet file (needs -o).
    Parquet,
}
