//! Loading a dataset directory: each table is a directory of Parquet files, read with the
//! parquet crate's Arrow reader. `models/`, `matrices/` and `spectra/` are required; the
//! failures, hypothesis and aggregate tables are read when present.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use attn_spectra::dataset::{self, schema::METRIC_COLUMNS};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::ReportError;
use crate::columns::{
    bools, display_cell, float_lists, floats, ints, ints_not_null, optional, required, strings,
    strings_not_null, timestamps_us,
};

/// The aggregate tables written by `pipeline run aggregate`, in the order they are shown.
pub const AGGREGATES: &[&str] = &["model_summary", "lab_summary", "layer_profile"];

/// One row of `models/`. Columns other than the identifying ones and the geometry are
/// optional so that the report reads datasets from older or newer writers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub model: String,
    pub revision: String,
    pub commit: Option<String>,
    pub lab: Option<String>,
    pub heritage: Option<String>,
    pub architecture: String,
    pub n_layers: i64,
    pub d_model: i64,
    pub n_heads: i64,
    pub n_kv_heads: Option<i64>,
    pub d_head: Option<i64>,
    pub source_format: Option<String>,
    pub source_dtype: Option<String>,
    pub fold_ln: Option<bool>,
    pub backend: Option<String>,
    pub precision: Option<String>,
    pub config_sha256: Option<String>,
    pub tool_version: Option<String>,
    pub extracted_at_us: Option<i64>,
    pub identical_to: Option<String>,
    /// The file the row was read from.
    pub file: PathBuf,
}

/// One row of `matrices/`: a matrix and its metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixRow {
    pub model: String,
    pub revision: String,
    pub layer: i64,
    pub head: Option<i64>,
    pub kind: String,
    pub rows: Option<i64>,
    pub cols: Option<i64>,
    /// Aligned with [`METRIC_COLUMNS`]; `None` for null, NaN or an absent column.
    pub metrics: Vec<Option<f64>>,
}

impl MatrixRow {
    /// A metric by column name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        METRIC_COLUMNS
            .iter()
            .position(|m| *m == name)
            .and_then(|i| self.metrics[i])
    }
}

/// The singular values of one whole-layer matrix (`spectra/` rows with a null head).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpectrum {
    pub model: String,
    pub revision: String,
    pub layer: i64,
    pub kind: String,
    pub singular_values: Vec<f64>,
}

/// One row of `failures/`.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub model: String,
    pub revision: String,
    pub stage: String,
    pub error: String,
}

/// One row of `hypothesis/`.
#[derive(Clone, Debug, PartialEq)]
pub struct HypothesisRow {
    pub metric: String,
    pub kind: String,
    pub group_a: String,
    pub group_b: String,
    pub n_a: i64,
    pub n_b: i64,
    pub mean_a: Option<f64>,
    pub mean_b: Option<f64>,
    pub alternative: String,
    pub u_statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub p_two_sided: Option<f64>,
    pub rank_biserial: Option<f64>,
    pub p_permutation: Option<f64>,
    pub verdict: String,
    /// Holm- and BH-adjusted p (absent in datasets written before they existed).
    pub p_holm: Option<f64>,
    pub p_bh: Option<f64>,
    pub cohens_d: Option<f64>,
    /// Models per group for 80 % power at alpha for the observed effect.
    pub models_per_group_80: Option<i64>,
}

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
    pub models: Vec<ModelInfo>,
    pub matrices: Vec<MatrixRow>,
    /// Whole-layer spectra only (per-head spectra are not needed by the report).
    pub spectra: Vec<LayerSpectrum>,
    pub failures: Vec<Failure>,
    /// `None` when `hypothesis/` is absent.
    pub hypothesis: Option<Vec<HypothesisRow>>,
    /// The aggregate tables present, in [`AGGREGATES`] order.
    pub aggregates: Vec<TextTable>,
    /// The aggregate tables absent.
    pub missing_aggregates: Vec<String>,
}

/// The Parquet files of a table directory, sorted by name; `None` when the directory does
/// not exist. Hidden files (temporaries of an interrupted writer) are skipped.
pub fn table_files(dir: &Path, table: &str) -> Result<Option<Vec<PathBuf>>, ReportError> {
    let path = dir.join(table);
    if !path.is_dir() {
        return Ok(None);
    }
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && name.ends_with(".parquet") && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(Some(files))
}

/// All record batches of one Parquet file.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, ReportError> {
    let pq = |source| ReportError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .build()
        .map_err(pq)?;
    reader
        .map(|b| {
            b.map_err(|source| ReportError::Arrow {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}

fn required_table(dir: &Path, table: &str) -> Result<Vec<PathBuf>, ReportError> {
    match table_files(dir, table)? {
        Some(files) if !files.is_empty() => Ok(files),
        _ => Err(ReportError::MissingTable {
            dir: dir.to_path_buf(),
            table: table.to_string(),
        }),
    }
}

fn read_models(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<ModelInfo>,
) -> Result<(), ReportError> {
    let s = |name: &str| strings_not_null(required(batch, path, name)?, path, name);
    let i = |name: &str| ints_not_null(required(batch, path, name)?, path, name);
    let os = |name: &str| -> Result<Vec<Option<String>>, ReportError> {
        match optional(batch, name) {
            Some(a) => strings(a, path, name),
            None => Ok(vec![None; batch.num_rows()]),
        }
    };
    let oi = |name: &str| -> Result<Vec<Option<i64>>, ReportError> {
        match optional(batch, name) {
            Some(a) => ints(a, path, name),
            None => Ok(vec![None; batch.num_rows()]),
        }
    };
    let model = s("model")?;
    let revision = s("revision")?;
    let architecture = s("architecture")?;
    let n_layers = i("n_layers")?;
    let d_model = i("d_model")?;
    let n_heads = i("n_heads")?;
    let (commit, lab, heritage) = (os("commit")?, os("lab")?, os("heritage")?);
    let (n_kv, d_head) = (oi("n_kv_heads")?, oi("d_head")?);
    let (format, dtype) = (os("source_format")?, os("source_dtype")?);
    let (backend, precision) = (os("backend")?, os("precision")?);
    let (config, tool, identical) = (
        os("config_sha256")?,
        os("tool_version")?,
        os("identical_to")?,
    );
    let fold = match optional(batch, "fold_ln") {
        Some(a) => bools(a, path, "fold_ln")?,
        None => vec![None; batch.num_rows()],
    };
    let at = match optional(batch, "extracted_at") {
        Some(a) => timestamps_us(a, path, "extracted_at")?,
        None => vec![None; batch.num_rows()],
    };
    for r in 0..batch.num_rows() {
        if n_layers[r] < 0 || n_layers[r] > 100_000 {
            return Err(ReportError::Column {
                path: path.to_path_buf(),
                column: "n_layers".into(),
                problem: format!("{} is not a layer count", n_layers[r]),
            });
        }
        out.push(ModelInfo {
            model: model[r].clone(),
            revision: revision[r].clone(),
            commit: commit[r].clone(),
            lab: lab[r].clone(),
            heritage: heritage[r].clone(),
            architecture: architecture[r].clone(),
            n_layers: n_layers[r],
            d_model: d_model[r],
            n_heads: n_heads[r],
            n_kv_heads: n_kv[r],
            d_head: d_head[r],
            source_format: format[r].clone(),
            source_dtype: dtype[r].clone(),
            fold_ln: fold[r],
            backend: backend[r].clone(),
            precision: precision[r].clone(),
            config_sha256: config[r].clone(),
            tool_version: tool[r].clone(),
            extracted_at_us: at[r],
            identical_to: identical[r].clone(),
            file: path.to_path_buf(),
        });
    }
    Ok(())
}

fn read_matrices(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<MatrixRow>,
) -> Result<(), ReportError> {
    let s = |name: &str| strings_not_null(required(batch, path, name)?, path, name);
    let model = s("model")?;
    let revision = s("revision")?;
    let kind = s("kind")?;
    let layer = ints_not_null(required(batch, path, "layer")?, path, "layer")?;
    let head = ints(required(batch, path, "head")?, path, "head")?;
    let oi = |name: &str| -> Result<Vec<Option<i64>>, ReportError> {
        match optional(batch, name) {
            Some(a) => ints(a, path, name),
            None => Ok(vec![None; batch.num_rows()]),
        }
    };
    let (rows, cols) = (oi("rows")?, oi("cols")?);
    let metrics: Vec<Vec<Option<f64>>> = METRIC_COLUMNS
        .iter()
        .map(|m| match optional(batch, m) {
            Some(a) => floats(a, path, m),
            None => Ok(vec![None; batch.num_rows()]),
        })
        .collect::<Result<_, _>>()?;
    for r in 0..batch.num_rows() {
        out.push(MatrixRow {
            model: model[r].clone(),
            revision: revision[r].clone(),
            layer: layer[r],
            head: head[r],
            kind: kind[r].clone(),
            rows: rows[r],
            cols: cols[r],
            metrics: metrics.iter().map(|m| m[r]).collect(),
        });
    }
    Ok(())
}

fn read_spectra(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<LayerSpectrum>,
) -> Result<(), ReportError> {
    let head = ints(required(batch, path, "head")?, path, "head")?;
    let whole: Vec<usize> = (0..batch.num_rows())
        .filter(|r| head[*r].is_none())
        .collect();
    if whole.is_empty() {
        return Ok(());
    }
    let s = |name: &str| strings_not_null(required(batch, path, name)?, path, name);
    let model = s("model")?;
    let revision = s("revision")?;
    let kind = s("kind")?;
    let layer = ints_not_null(required(batch, path, "layer")?, path, "layer")?;
    let sv = float_lists(
        required(batch, path, "singular_values")?,
        path,
        "singular_values",
    )?;
    for r in whole {
        out.push(LayerSpectrum {
            model: model[r].clone(),
            revision: revision[r].clone(),
            layer: layer[r],
            kind: kind[r].clone(),
            singular_values: sv[r].clone().unwrap_or_default(),
        });
    }
    Ok(())
}

fn read_failures(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<Failure>,
) -> Result<(), ReportError> {
    let s = |name: &str| strings_not_null(required(batch, path, name)?, path, name);
    let (model, revision, stage, error) = (s("model")?, s("revision")?, s("stage")?, s("error")?);
    for r in 0..batch.num_rows() {
        out.push(Failure {
            model: model[r].clone(),
            revision: revision[r].clone(),
            stage: stage[r].clone(),
            error: error[r].clone(),
        });
    }
    Ok(())
}

fn read_hypothesis(
    path: &Path,
    batch: &RecordBatch,
    out: &mut Vec<HypothesisRow>,
) -> Result<(), ReportError> {
    let s = |name: &str| strings_not_null(required(batch, path, name)?, path, name);
    let i = |name: &str| ints_not_null(required(batch, path, name)?, path, name);
    let f = |name: &str| floats(required(batch, path, name)?, path, name);
    let (metric, kind, group_a, group_b) = (s("metric")?, s("kind")?, s("group_a")?, s("group_b")?);
    let (n_a, n_b) = (i("n_a")?, i("n_b")?);
    let (mean_a, mean_b) = (f("mean_a")?, f("mean_b")?);
    let alternative = s("alternative")?;
    let (u, p, p2) = (f("u_statistic")?, f("p_value")?, f("p_two_sided")?);
    let (rb, pp) = (f("rank_biserial")?, f("p_permutation")?);
    let verdict = s("verdict")?;
    let n = batch.num_rows();
    let of = |name: &str| match optional(batch, name) {
        Some(a) => floats(a, path, name),
        None => Ok(vec![None; n]),
    };
    let (p_holm, p_bh, d) = (of("p_holm")?, of("p_bh")?, of("cohens_d")?);
    let n80 = match optional(batch, "models_per_group_80") {
        Some(a) => ints(a, path, "models_per_group_80")?,
        None => vec![None; n],
    };
    for r in 0..n {
        out.push(HypothesisRow {
            metric: metric[r].clone(),
            kind: kind[r].clone(),
            group_a: group_a[r].clone(),
            group_b: group_b[r].clone(),
            n_a: n_a[r],
            n_b: n_b[r],
            mean_a: mean_a[r],
            mean_b: mean_b[r],
            alternative: alternative[r].clone(),
            u_statistic: u[r],
            p_value: p[r],
            p_two_sided: p2[r],
            rank_biserial: rb[r],
            p_permutation: pp[r],
            verdict: verdict[r].clone(),
            p_holm: p_holm[r],
            p_bh: p_bh[r],
            cohens_d: d[r],
            models_per_group_80: n80[r],
        });
    }
    Ok(())
}

/// Reads a table of unknown columns as text (the columns of its first file; later files'
/// extra columns are ignored, missing ones left empty).
pub fn read_text_table(name: &str, files: &[PathBuf]) -> Result<TextTable, ReportError> {
    let mut table = TextTable {
        name: name.to_string(),
        columns: Vec::new(),
        rows: Vec::new(),
        numbers: Vec::new(),
    };
    for path in files {
        for batch in read_batches(path)? {
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

fn each_batch<T>(
    files: &[PathBuf],
    out: &mut Vec<T>,
    read: fn(&Path, &RecordBatch, &mut Vec<T>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    for path in files {
        for batch in read_batches(path)? {
            read(path, &batch, out)?;
        }
    }
    Ok(())
}

/// Loads a dataset directory.
pub fn load(dir: &Path) -> Result<Dataset, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NotADataset {
            dir: dir.to_path_buf(),
        });
    }
    let mut ds = Dataset {
        dir: dir.to_path_buf(),
        ..Dataset::default()
    };
    each_batch(
        &required_table(dir, dataset::MODELS)?,
        &mut ds.models,
        read_models,
    )?;
    each_batch(
        &required_table(dir, dataset::MATRICES)?,
        &mut ds.matrices,
        read_matrices,
    )?;
    if let Some(files) = table_files(dir, dataset::SPECTRA)? {
        each_batch(&files, &mut ds.spectra, read_spectra)?;
    }
    if let Some(files) = table_files(dir, dataset::FAILURES)? {
        each_batch(&files, &mut ds.failures, read_failures)?;
    }
    if let Some(files) = table_files(dir, dataset::HYPOTHESIS)?
        && !files.is_empty()
    {
        let mut rows = Vec::new();
        each_batch(&files, &mut rows, read_hypothesis)?;
        ds.hypothesis = Some(rows);
    }
    for name in AGGREGATES {
        match table_files(dir, name)? {
            Some(files) if !files.is_empty() => {
                ds.aggregates.push(read_text_table(name, &files)?);
            }
            _ => ds.missing_aggregates.push(name.to_string()),
        }
    }
    Ok(ds)
}
