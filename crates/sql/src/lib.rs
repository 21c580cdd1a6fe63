//! DataFusion SQL over an attn-spectra dataset, and the statistics run on it.
//!
//! - [`Dataset`] opens a dataset directory as a DataFusion session with every table directory
//!   registered under its name (`models`, `matrices`, `spectra`, `failures`, `hypothesis` and
//!   the SQL result tables), for `pipeline sql "SELECT ..."`; [`output`] prints or saves the
//!   result as a table, CSV, JSON lines or Parquet.
//! - [`aggregate()`] runs the `sql/*.sql` files in name order and stores each result as a
//!   table of the dataset (`pipeline run aggregate`).
//! - [`hypothesis`] runs the two-sample tests of a [`TestPlan`] over per-model means computed
//!   by SQL and writes `hypothesis/` (`pipeline run test`).
//!
//! SQL lives in `.sql` files only: the shipped aggregate files under `sql/` at the repository
//! root (also embedded, see [`SHIPPED_SQL`]) and this crate's `queries/`.
//!
//! DataFusion is built trimmed (the `parquet`, `sql` and `nested_expressions` features): the
//! SQL core, aggregate and window functions, array functions such as `unnest`,
//! `array_length` and `array_element` (`singular_values[1]`), and the core scalar functions
//! (`coalesce`, `nullif`, casts, arithmetic). Math (`sqrt`, `ln`, `round`), string, regex and
//! date functions are not built in.

pub mod aggregate;
pub mod dataset;
pub mod hypothesis;
pub mod output;
pub mod size;

use std::path::PathBuf;

pub use aggregate::{SHIPPED_SQL, SqlFile, aggregate, aggregate_files, read_sql_dir};
pub use attn_spectra::pipeline::TestPlan;
pub use dataset::{Dataset, QueryResult};
pub use hypothesis::{TestOutcome, render_text, run_tests, write_hypothesis};
pub use output::OutputFormat;
pub use size::{render_size_text, run_size_tests};

/// The version written into the metadata of every table this crate writes.
pub const TOOL_VERSION: &str = concat!("attn-spectra ", env!("CARGO_PKG_VERSION"));

/// Errors of this crate; each names the SQL, file, table or test at fault.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The SQL was rejected or failed; `message` is DataFusion's own. The CLI maps this to
    /// exit code 2.
    #[error("SQL error: {message}\n  in: {sql}")]
    Query { sql: String, message: String },
    /// An aggregate file failed; the run stopped there.
    #[error("{file}: {source}")]
    File {
        file: PathBuf,
        #[source]
        source: Box<SqlError>,
    },
    #[error("dataset {dir} has no matrices/ table: run `pipeline run extract` first")]
    NoMatrices { dir: PathBuf },
    #[error("cannot open table `{table}` at {path}: {message}")]
    Table {
        table: String,
        path: PathBuf,
        message: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] attn_spectra::dataset::DatasetError),
    #[error("cannot write the result as {format}: {message}")]
    Output { format: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("hypothesis test of {metric} on {kind}: {message}")]
    Test {
        metric: String,
        kind: String,
        message: String,
    },
    #[error("cannot start the query runtime: {0}")]
    Runtime(std::io::Error),
}

impl SqlError {
    /// True for errors in the user's SQL (a syntax error, an unknown table or column, a
    /// failed query): `pipeline sql` exits with code 2 for these.
    pub fn is_query_error(&self) -> bool {
        match self {
            SqlError::Query { .. } => true,
            SqlError::File { source, .. } => source.is_query_error(),
            _ => false,
        }
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
