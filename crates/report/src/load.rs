//! Loading a dataset (a directory or an object store prefix) for the report, through the dataset module of the core crate
//! (`attn_spectra::dataset`, which owns the tables' row types and reading them back).
//! `models/` and `matrices/` are required; spectra, failures, hypothesis and the aggregate
//! tables are read when present. The aggregate tables are SQL results with columns of their
//! own, read as text.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use attn_spectra::dataset::{
    DatasetDir, FailureRow, HypothesisRow, MatrixRow, ModelRow, SpectrumRow, TableRow, aggregates,
};

use crate::ReportError;
use crate::columns::{display_cell, floats};

/// The aggregate tables written by `pipeline run aggregate`, in the order they are shown.
pub const AGGREGATES: &[&str] = aggregates::TABLES;

/// A table whose columns the report does not interpret: shown as text.
#[derive(Clone, Debug, PartialEq)]
pub struct TextTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Numbers by column for the rows, where the column is numeric.
    pub numbers: Vec<Vec<Option<f64>>>,
}

impl TextTable {
    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Everything the report reads from a dataset directory.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub dir: PathBuf,
    pub models: Vec<ModelRow>,
    pub matrices: Vec<MatrixRow>,
    /// Whole-layer spectra only (per-head spectra are not needed by the report).
    pub spectra: Vec<SpectrumRow>,
    pub failures: Vec<FailureRow>,
    /// `None` when `hypothesis/` is absent.
    pub hypothesis: Option<Vec<HypothesisRow>>,
    /// The aggregate tables present, in [`AGGREGATES`] order.
    pub aggregates: Vec<TextTable>,
    /// The aggregate tables absent.
    pub missing_aggregates: Vec<String>,
}

/// Reads a table of unknown columns as text (the columns of its first file; later files'
/// extra columns are ignored, missing ones left empty).
pub fn read_text_table(
    name: &str,
    files: &[(PathBuf, Vec<RecordBatch>)],
) -> Result<TextTable, ReportError> {
    let mut table = TextTable {
        name: name.to_string(),
        columns: Vec::new(),
        rows: Vec::new(),
        numbers: Vec::new(),
    };
    for (path, batches) in files {
        for batch in batches {
            if table.columns.is_empty() {
                table.columns = batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
            }
            let cols: Vec<_> = table
                .columns
                .iter()
                .map(|c| batch.column_by_name(c))
                .collect();
            let nums: Vec<Option<Vec<Option<f64>>>> = table
                .columns
                .iter()
                .zip(&cols)
                .map(|(c, a)| a.and_then(|a| floats(a.as_ref(), path, c).ok()))
                .collect();
            for r in 0..batch.num_rows() {
                table.rows.push(
                    cols.iter()
                        .map(|a| a.map(|a| display_cell(a.as_ref(), r)).unwrap_or_default())
                        .collect(),
                );
                table
                    .numbers
                    .push(nums.iter().map(|n| n.as_ref().and_then(|n| n[r])).collect());
            }
        }
    }
    Ok(table)
}

fn required<R: TableRow>(ds: &DatasetDir) -> Result<Vec<R>, ReportError> {
    match ds.read::<R>()? {
        Some(rows) if !rows.is_empty() => Ok(rows),
        _ => Err(ReportError::MissingTable {
            dir: PathBuf::from(ds.to_string()),
            table: R::TABLE.to_string(),
        }),
    }
}

/// Loads a dataset (a directory or an object store prefix).
pub fn load(d: &DatasetDir) -> Result<Dataset, ReportError> {
    if let Some(dir) = d.local_root()
        && !dir.is_dir()
    {
        return Err(ReportError::NotADataset {
            dir: dir.to_path_buf(),
        });
    }
    let mut ds = Dataset {
        dir: PathBuf::from(d.to_string()),
        models: required::<ModelRow>(d)?,
        matrices: required::<MatrixRow>(d)?,
        spectra: d
            .read_where(|s: &SpectrumRow| s.key.head.is_none())?
            .unwrap_or_default(),
        failures: d.read::<FailureRow>()?.unwrap_or_default(),
        hypothesis: match d.table_files(HypothesisRow::TABLE)? {
            Some(files) if !files.is_empty() => d.read::<HypothesisRow>()?,
            _ => None,
        },
        ..Dataset::default()
    };
    for name in AGGREGATES {
        match d.read_table_batches(name)? {
            Some(files) if !files.is_empty() => {
                ds.aggregates.push(read_text_table(name, &files)?);
            }
            _ => ds.missing_aggregates.push(name.to_string()),
        }
    }
    Ok(ds)
}
