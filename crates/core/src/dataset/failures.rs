//! `failures/`: one row per model that could not be processed. Schema, row type and
//! conversions.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{Schema, SchemaRef};

use super::columns::{ColumnError, Columns, utc_micros, utf8};
use super::{DatasetError, TableRow};

/// One row of `failures/`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureRow {
    pub model: String,
    pub revision: String,
    /// The stage that failed (`extract`).
    pub stage: String,
    /// The error with its causes.
    pub error: String,
    /// Microseconds since the Unix epoch (UTC).
    pub failed_at_us: i64,
}

impl TableRow for FailureRow {
    const TABLE: &'static str = "failures";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("model", false),
            utf8("revision", false),
            utf8("stage", false),
            utf8("error", false),
            utc_micros("failed_at"),
        ]))
    }

    fn to_batch(rows: &[FailureRow]) -> Result<RecordBatch, DatasetError> {
        let s = |f: fn(&FailureRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            s(|r| &r.model),
            s(|r| &r.revision),
            s(|r| &r.stage),
            s(|r| &r.error),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.failed_at_us))
                    .with_timezone("UTC"),
            ),
        ];
        super::batch(Self::TABLE, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<FailureRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let (model, revision, stage, error, at) = (
            c.strings("model")?,
            c.strings("revision")?,
            c.strings("stage")?,
            c.strings("error")?,
            c.timestamps_us("failed_at")?,
        );
        Ok((0..c.len())
            .map(|r| FailureRow {
                model: model[r].clone(),
                revision: revision[r].clone(),
                stage: stage[r].clone(),
                error: error[r].clone(),
                failed_at_us: at[r],
            })
            .collect())
    }
}
