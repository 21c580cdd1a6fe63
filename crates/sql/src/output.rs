//! Writing query results for `pipeline sql "SELECT ..." [--format table|csv|json|parquet]
//! [-o FILE]`.
//!
//! - `table`: the pretty-printed grid of `arrow`'s pretty printer (header even for zero rows);
//! - `csv`: RFC 4180 CSV with a header line; nulls are empty fields; list and struct
//!   columns cannot be written (select `unnest(...)` or single elements instead);
//! - `json`: newline-delimited JSON, one object per row with every column present (nulls as
//!   `null`), so `jq`, pandas (`read_json(lines=True)`) and DuckDB read it directly; lists
//!   are JSON arrays. An empty result writes nothing;
//! - `parquet`: a Parquet file, which needs `-o FILE` (it is written atomically).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use arrow::csv::WriterBuilder as CsvWriterBuilder;
use arrow::json::writer::{LineDelimited, WriterBuilder as JsonWriterBuilder};
use arrow::util::pretty::pretty_format_batches_with_schema;

use crate::{QueryResult, Result, SqlError, TOOL_VERSION};

/// The output formats of `pipeline sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
    Parquet,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
            OutputFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = SqlError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" | "jsonl" | "ndjson" => Ok(OutputFormat::Json),
            "parquet" => Ok(OutputFormat::Parquet),
            _ => Err(SqlError::Invalid(format!(
                "unknown output format `{s}` (expected table, csv, json or parquet)"
            ))),
        }
    }
}

fn output_error(format: OutputFormat, e: impl fmt::Display) -> SqlError {
    SqlError::Output {
        format: format.to_string(),
        message: e.to_string(),
    }
}

/// Writes `result` to `out` as `format`. Parquet cannot go to a stream: use
/// [`write_file`].
pub fn write(result: &QueryResult, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    let err = |e: &dyn fmt::Display| output_error(format, e);
    match format {
        OutputFormat::Table => {
            let grid = pretty_format_batches_with_schema(result.schema.clone(), &result.batches)
                .map_err(|e| err(&e))?;
            writeln!(out, "{grid}").map_err(|e| err(&e))?;
        }
        OutputFormat::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut *out);
            if result.batches.is_empty() {
                // The header alone.
                let empty = arrow::array::RecordBatch::new_empty(result.schema.clone());
                writer.write(&empty).map_err(|e| err(&e))?;
            }
            for batch in &result.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut writer = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut *out);
            for batch in &result.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.finish().map_err(|e| err(&e))?;
        }
        OutputFormat::Parquet => {
            return Err(err(&"Parquet output needs a file: give -o FILE"));
        }
    }
    out.flush().map_err(|e| err(&e))
}

/// Writes `result` to the file `path` as `format`. Parquet files are written atomically,
/// with the query text and the tool version in their key-value metadata.
pub fn write_file(
    result: &QueryResult,
    format: OutputFormat,
    path: &Path,
    sql: &str,
) -> Result<()> {
    if format == OutputFormat::Parquet {
        let metadata = vec![
            ("sql".to_string(), sql.trim().to_string()),
            ("tool_version".to_string(), TOOL_VERSION.to_string()),
        ];
        attn_spectra::dataset::write_parquet_atomic(
            path,
            result.schema.clone(),
            &result.batches,
            &metadata,
        )?;
        return Ok(());
    }
    let io = |source| SqlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    write(result, format, &mut out)
}

/// `result` as a string in a text format (not Parquet).
pub fn to_string(result: &QueryResult, format: OutputFormat) -> Result<String> {
    let mut buf = Vec::new();
    write(result, format, &mut buf)?;
    String::from_utf8(buf).map_err(|e| output_error(format, e))
}
