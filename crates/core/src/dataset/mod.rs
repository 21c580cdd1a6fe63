//! The dataset on disk, and the one module that writes and reads it: one directory per
//! table, one Parquet file per model and revision.
//!
//! ```text
//! <out>/models/EleutherAI--pythia-160m@main.parquet
//! <out>/matrices/EleutherAI--pythia-160m@main.parquet
//! <out>/spectra/EleutherAI--pythia-160m@main.parquet
//! <out>/failures/...            <out>/hypothesis/result.parquet     <out>/<sql result>/...
//! ```
//!
//! DataFusion, DuckDB, polars and pandas each read a table directory as one table.
//!
//! - Each table has one row type, with its Arrow schema and its `to_batch`/`from_batch`
//!   next to each other ([`TableRow`]): [`ModelRow`] (`models/`), [`MatrixRow`]
//!   (`matrices/`), [`SpectrumRow`] (`spectra/`), [`FailureRow`] (`failures/`),
//!   [`HypothesisRow`] (`hypothesis/`), [`HypothesisSizeRow`] (`hypothesis_size/`). Adding a column is a change to that one file (a
//!   metric column of `matrices/` is a change to [`crate::spectral::Metric`] only).
//! - [`unit`] owns the write protocol of one model (a *unit*: its `spectra/`, `matrices/`
//!   and `models/` files, their key-value metadata, the order that makes `models/` mark the
//!   unit complete, and the configuration hash a resumed run compares).
//! - [`files`] owns atomic writes, temporary names and listing a table's files;
//!   [`DatasetDir`] reads rows back.
//! - [`store`] owns where a dataset lives: a local directory or an object store prefix
//!   (`s3://`, `gs://`, `az://`); [`DatasetDir`] writes and reads either the same way.
//! - [`aggregates`] names the SQL result tables and the columns other crates read from them.
//!
//! No other crate matches a column of these tables by name.

pub mod aggregates;
mod columns;
pub mod failures;
pub mod files;
pub mod hypothesis;
pub mod hypothesis_size;
pub mod matrices;
pub mod models;
pub mod store;
pub mod unit;

use std::path::{Path, PathBuf};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;

pub use columns::ColumnError;
pub use failures::FailureRow;
pub use files::{read_metadata, remove_stale_temporaries, write_atomic_with, write_parquet_atomic};
pub use hypothesis::HypothesisRow;
pub use hypothesis_size::HypothesisSizeRow;
pub use matrices::{MatrixKey, MatrixRow, SpectrumRow};
pub use models::{FileRecord, ModelRow};
pub use store::LocationError;
pub use unit::{DatasetDir, Unit, UnitMeta, UnitStatus, UnitWriteError, UnitWriter};

/// Errors writing or reading dataset files; each names the file or table.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot read Parquet file {path}: {source}")]
    ReadArrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("object store, {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot build table `{table}`: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path} (table `{table}`): {source}")]
    Column {
        path: PathBuf,
        table: String,
        #[source]
        source: ColumnError,
    },
}

/// One table's row type: its directory, schema and conversions to and from Arrow.
pub trait TableRow: Sized {
    /// The table's directory name.
    const TABLE: &'static str;
    /// The table's Arrow schema: the contract with downstream notebooks.
    fn schema() -> SchemaRef;
    /// The rows as one batch of [`TableRow::schema`].
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, DatasetError>;
    /// The rows of a batch, its columns found by name and cast to the schema's types.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError>;
}

/// The table directories of a dataset.
pub const MODELS: &str = ModelRow::TABLE;
pub const MATRICES: &str = MatrixRow::TABLE;
pub const SPECTRA: &str = SpectrumRow::TABLE;
pub const FAILURES: &str = FailureRow::TABLE;
pub const HYPOTHESIS: &str = HypothesisRow::TABLE;
pub const HYPOTHESIS_SIZE: &str = HypothesisSizeRow::TABLE;

/// The core tables (written by extract and test) and their schemas.
pub fn core_tables() -> [(&'static str, SchemaRef); 6] {
    [
        (MODELS, ModelRow::schema()),
        (MATRICES, MatrixRow::schema()),
        (SPECTRA, SpectrumRow::schema()),
        (FAILURES, FailureRow::schema()),
        (HYPOTHESIS, HypothesisRow::schema()),
        (HYPOTHESIS_SIZE, HypothesisSizeRow::schema()),
    ]
}

/// A record batch of `table`, or an error naming the table.
fn batch(
    table: &str,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, DatasetError> {
    RecordBatch::try_new(schema, columns).map_err(|source| DatasetError::Arrow {
        table: table.to_string(),
        source,
    })
}

/// A count or index as Int32, or an error naming the table and column.
fn i32_of(table: &str, what: &str, v: usize) -> Result<i32, DatasetError> {
    i32::try_from(v).map_err(|_| DatasetError::Arrow {
        table: table.to_string(),
        source: arrow_schema::ArrowError::InvalidArgumentError(format!("{what} {v} exceeds int32")),
    })
}

/// Escapes `s` for a file name: `[A-Za-z0-9._-]` kept, any other byte as `%XX`; a `-` that
/// starts or ends `s` or follows another `-` is escaped too, so `s` never holds `--`.
fn escape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &b) in bytes.iter().enumerate() {
        let plain = b.is_ascii_alphanumeric()
            || b == b'.'
            || b == b'_'
            || (b == b'-' && i > 0 && i + 1 < bytes.len() && bytes[i - 1] != b'-');
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file stem for a model and revision: `org--name@revision`. Hub ids keep their
/// spelling (`/` becomes `--`, as in the Hugging Face cache); any other character outside
/// `[A-Za-z0-9._-]` is escaped as `%XX` (`refs/pr/1` becomes `refs%2Fpr%2F1`), so that
/// different (model, revision) pairs never share a file: the stem is injective. A leading
/// `.` is escaped too (hidden files are temporaries).
pub fn file_stem(model: &str, revision: &str) -> String {
    let model = model.split('/').map(escape).collect::<Vec<_>>().join("--");
    let stem = format!("{model}@{}", escape(revision));
    match stem.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => stem,
    }
}

/// The path of a table file: `<out>/<table>/<stem>.parquet`.
pub fn table_file(out: &Path, table: &str, stem: &str) -> PathBuf {
    out.join(table).join(format!("{stem}.parquet"))
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stems_keep_hub_ids_readable() {
        assert_eq!(
            file_stem("EleutherAI/pythia-160m", "step1000"),
            "EleutherAI--pythia-160m@step1000"
        );
        assert_eq!(file_stem("gpt2", "main"), "gpt2@main");
        assert_eq!(
            file_stem("Qwen/Qwen2.5-0.5B", "v1.0_rc"),
            "Qwen--Qwen2.5-0.5B@v1.0_rc"
        );
        assert_eq!(file_stem("a b/c", "refs/pr/1"), "a%20b--c@refs%2Fpr%2F1");
    }

    /// Names that the former `_` replacement mapped to one file get different stems.
    #[test]
    fn stems_are_injective() {
        let pairs = [
            ("a b/c", "main"),
            ("a_b/c", "main"),
            ("a/b", "main"),
            ("a--b", "main"),
            ("a-/b", "main"),
            ("a/-b", "main"),
            ("a", "b@main"),
            ("a@b", "main"),
            ("x", "refs/pr/1"),
            ("x", "refs_pr_1"),
            ("x", "refs%2Fpr%2F1"),
            (".hidden", "main"),
            ("%2Ehidden", "main"),
            ("a//b", "main"),
            ("a/", "main"),
            ("a", "main"),
        ];
        let stems: std::collections::BTreeSet<String> =
            pairs.iter().map(|(m, r)| file_stem(m, r)).collect();
        assert_eq!(stems.len(), pairs.len(), "{stems:?}");
        for s in &stems {
            assert!(!s.starts_with('.'), "{s}");
            assert!(!s.contains('/'), "{s}");
        }
    }

    /// Rows survive `to_batch` and `from_batch` (compared by their Debug text, in which
    /// NaN equals NaN).
    fn round_trip<R: TableRow + std::fmt::Debug>(rows: Vec<R>) {
        let batch = R::to_batch(&rows).unwrap();
        assert_eq!(batch.schema(), R::schema());
        let back = R::from_batch(&batch).unwrap();
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
    }

    #[test]
    fn every_table_round_trips() {
        use crate::kind::MatrixKind;
        use crate::spectral::{Metric, Metrics, metrics};
        let mut none = models::example("org/b");
        none.files.clear();
        none.commit = None;
        round_trip(vec![models::example("org/a"), none]);
        let key = |head, kind| MatrixKey {
            model: "m".into(),
            revision: "main".into(),
            layer: 3,
            head,
            kind,
        };
        let mut unknown = Metrics::unknown();
        unknown.set(Metric::ConditionNumber, f64::INFINITY);
        round_trip(vec![
            MatrixRow {
                key: key(None, MatrixKind::WQ),
                rows: 8,
                cols: 4,
                metrics: metrics(&[3.0, 2.0, 1.0, 0.5]),
            },
            MatrixRow {
                key: key(Some(1), MatrixKind::OV),
                rows: 8,
                cols: 8,
                metrics: unknown,
            },
        ]);
        round_trip(vec![
            SpectrumRow {
                key: key(Some(0), MatrixKind::WV),
                singular_values: vec![2.0, 1.0],
            },
            SpectrumRow {
                key: key(None, MatrixKind::QK),
                singular_values: vec![],
            },
        ]);
        round_trip(vec![FailureRow {
            model: "m".into(),
            revision: "r".into(),
            stage: "extract".into(),
            error: "boom".into(),
            failed_at_us: 7,
        }]);
        round_trip(vec![HypothesisRow {
            metric: "alpha".into(),
            kind: "W_V".into(),
            group_a: "A".into(),
            group_b: "Others".into(),
            n_a: 3,
            n_b: 4,
            mean_a: 1.5,
            mean_b: 2.5,
            alternative: "less".into(),
            u_statistic: 2.0,
            p_value: 0.05,
            p_two_sided: 0.1,
            rank_biserial: -0.6,
            p_permutation: 0.06,
            verdict: "NOT SUPPORTED".into(),
            p_holm: 0.6,
            p_bh: 0.3,
            cohens_d: -1.2,
            models_per_group_80: Some(13),
        }]);
        let size = |note: Option<&str>| HypothesisSizeRow {
            metric: "alpha".into(),
            kind: "OV".into(),
            group_a: "A".into(),
            group_b: "Others".into(),
            n_a: 3,
            n_b: 4,
            alternative: "less".into(),
            covariates: "log_attn_params".into(),
            lab_coefficient: -0.5,
            lab_std_error: 0.2,
            ci_low: -0.9,
            ci_high: -0.1,
            ci_level: 0.95,
            t_statistic: -2.5,
            p_value: 0.01,
            permutations: note.is_none().then_some(9999),
            p_holm: 0.1,
            p_bh: 0.05,
            verdict: "NOT SUPPORTED".into(),
            note: note.map(str::to_string),
        };
        round_trip(vec![size(None), size(Some("too few models"))]);
    }

    /// NaN metrics and the no-fit sentinel are stored as null, as the schema documents.
    #[test]
    fn unknown_metrics_are_null() {
        use arrow_array::Array;
        let row = MatrixRow {
            key: MatrixKey {
                model: "m".into(),
                revision: "main".into(),
                layer: 0,
                head: None,
                kind: crate::MatrixKind::WV,
            },
            rows: 2,
            cols: 2,
            metrics: crate::spectral::Metrics::unknown(),
        };
        let batch = MatrixRow::to_batch(&[row]).unwrap();
        for m in crate::spectral::Metric::ALL {
            assert!(batch.column_by_name(m.name()).unwrap().is_null(0), "{m}");
        }
    }

    /// Columns are found by name and cast: a file whose strings are Utf8View and whose
    /// extra columns are unknown still reads; a missing non-nullable column names itself.
    #[test]
    fn batches_from_other_writers() {
        let rows = vec![FailureRow {
            model: "m".into(),
            revision: "r".into(),
            stage: "extract".into(),
            error: "e".into(),
            failed_at_us: 1,
        }];
        let batch = FailureRow::to_batch(&rows).unwrap();
        let mut fields: Vec<arrow_schema::Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            if f.name() == "model" {
                fields.push(
                    f.as_ref()
                        .clone()
                        .with_data_type(arrow_schema::DataType::Utf8View),
                );
                columns.push(arrow_cast::cast(c, &arrow_schema::DataType::Utf8View).unwrap());
            } else {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
        fields.push(arrow_schema::Field::new(
            "extra",
            arrow_schema::DataType::Int32,
            true,
        ));
        columns.push(Arc::new(arrow_array::Int32Array::from(vec![Some(1)])));
        let other = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(fields.clone())),
            columns.clone(),
        )
        .unwrap();
        assert_eq!(FailureRow::from_batch(&other).unwrap(), rows);
        let without = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(fields[1..].to_vec())),
            columns[1..].to_vec(),
        )
        .unwrap();
        let err = FailureRow::from_batch(&without).unwrap_err().to_string();
        assert!(err.contains("`model`") && err.contains("missing"), "{err}");
    }
}
