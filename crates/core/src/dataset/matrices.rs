//! `matrices/` and `spectra/`: one row per analysed matrix, with its shape and metrics, or
//! with all its singular values. Schemas, row types and conversions.
//!
//! `head` is the KV-head index for kinds W_K and W_V and the query-head index for W_Q, W_O,
//! OV and QK; it is null for whole-layer matrices. The metric columns follow
//! [`Metric::ALL`] (the spectral module owns them): `num_pl_spikes` is Int64, every other
//! metric Float64. NaN metrics (no power-law fit, say) are stored as null so that SQL
//! aggregates skip them, and WeightWatcher's `num_pl_spikes` sentinel −1 as null too; an
//! infinite condition number stays infinite.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::columns::{ColumnError, Columns, float64, int32, int64, list_item, utf8};
use super::{DatasetError, TableRow, i32_of};
use crate::kind::MatrixKind;
use crate::spectral::{Metric, Metrics};

/// The identifying columns shared by `matrices/` and `spectra/`.
fn keys() -> Vec<Field> {
    vec![
        utf8("model", false),
        utf8("revision", false),
        int32("layer", false),
        int32("head", true),
        utf8("kind", false),
    ]
}

/// Which matrix a row is about.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixKey {
    pub model: String,
    pub revision: String,
    pub layer: usize,
    /// Query head for W_Q, W_O, OV, QK; KV head for W_K, W_V; `None` for whole-layer matrices.
    pub head: Option<usize>,
    pub kind: MatrixKind,
}

fn key_columns<R>(
    table: &str,
    rows: &[R],
    key: fn(&R) -> &MatrixKey,
) -> Result<Vec<ArrayRef>, DatasetError> {
    let layer = rows
        .iter()
        .map(|r| i32_of(table, "layer", key(r).layer))
        .collect::<Result<Vec<_>, _>>()?;
    let head = rows
        .iter()
        .map(|r| key(r).head.map(|h| i32_of(table, "head", h)).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &key(r).model),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &key(r).revision),
        )),
        Arc::new(Int32Array::from(layer)),
        Arc::new(Int32Array::from(head)),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| key(r).kind.name()),
        )),
    ])
}

fn read_keys(c: &Columns) -> Result<Vec<MatrixKey>, ColumnError> {
    let (model, revision) = (c.strings("model")?, c.strings("revision")?);
    let (layer, head, kind) = (
        c.usizes("layer")?,
        c.opt_usizes("head")?,
        c.strings("kind")?,
    );
    (0..c.len())
        .map(|r| {
            Ok(MatrixKey {
                model: model[r].clone(),
                revision: revision[r].clone(),
                layer: layer[r],
                head: head[r],
                kind: kind[r].parse().map_err(|problem| ColumnError {
                    column: "kind".into(),
                    problem,
                })?,
            })
        })
        .collect()
}

/// One row of `matrices/`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixRow {
    pub key: MatrixKey,
    pub rows: usize,
    pub cols: usize,
    pub metrics: Metrics,
}

impl MatrixRow {
    /// A metric's value, `None` where it is unknown (NaN, or no power-law fit).
    pub fn metric(&self, m: Metric) -> Option<f64> {
        let v = self.metrics.value(m);
        let unknown = v.is_nan() || (m.is_count() && v < 0.0);
        (!unknown).then_some(v)
    }
}

impl TableRow for MatrixRow {
    const TABLE: &'static str = "matrices";

    fn schema() -> SchemaRef {
        let mut fields = keys();
        fields.push(int32("rows", false));
        fields.push(int32("cols", false));
        for m in Metric::ALL {
            fields.push(if m.is_count() {
                int64(m.name(), true)
            } else {
                float64(m.name())
            });
        }
        Arc::new(Schema::new(fields))
    }

    fn to_batch(rows: &[MatrixRow]) -> Result<RecordBatch, DatasetError> {
        let t = Self::TABLE;
        let mut columns = key_columns(t, rows, |r| &r.key)?;
        for (what, f) in [
            ("rows", (|r: &MatrixRow| r.rows) as fn(&MatrixRow) -> usize),
            ("cols", |r: &MatrixRow| r.cols),
        ] {
            let v = rows
                .iter()
                .map(|r| i32_of(t, what, f(r)))
                .collect::<Result<Vec<_>, _>>()?;
            columns.push(Arc::new(Int32Array::from(v)));
        }
        for m in Metric::ALL {
            if m.is_count() {
                columns.push(Arc::new(
                    rows.iter()
                        .map(|r| r.metric(m).map(|v| v as i64))
                        .collect::<Int64Array>(),
                ));
            } else {
                columns.push(Arc::new(
                    rows.iter()
                        .map(|r| {
                            let v = r.metrics.value(m);
                            (!v.is_nan()).then_some(v)
                        })
                        .collect::<Float64Array>(),
                ));
            }
        }
        super::batch(t, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<MatrixRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let keys = read_keys(&c)?;
        let (nrows, ncols) = (c.usizes("rows")?, c.usizes("cols")?);
        let mut metrics = vec![Metrics::unknown(); c.len()];
        for m in Metric::ALL {
            if m.is_count() {
                for (slot, v) in metrics.iter_mut().zip(c.opt_i64s(m.name())?) {
                    slot.set(m, v.unwrap_or(-1) as f64);
                }
            } else {
                for (slot, v) in metrics.iter_mut().zip(c.f64s(m.name())?) {
                    slot.set(m, v);
                }
            }
        }
        Ok(keys
            .into_iter()
            .zip(metrics)
            .enumerate()
            .map(|(r, (key, metrics))| MatrixRow {
                key,
                rows: nrows[r],
                cols: ncols[r],
                metrics,
            })
            .collect())
    }
}

/// One row of `spectra/`: all singular values of a matrix, descending.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectrumRow {
    pub key: MatrixKey,
    pub singular_values: Vec<f64>,
}

impl TableRow for SpectrumRow {
    const TABLE: &'static str = "spectra";

    fn schema() -> SchemaRef {
        let mut fields = keys();
        fields.push(Field::new(
            "singular_values",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            false,
        ));
        Arc::new(Schema::new(fields))
    }

    fn to_batch(rows: &[SpectrumRow]) -> Result<RecordBatch, DatasetError> {
        let t = Self::TABLE;
        let mut columns = key_columns(t, rows, |r| &r.key)?;
        let mut sv = ListBuilder::new(Float64Builder::new())
            .with_field(list_item(&Self::schema(), "singular_values"));
        for r in rows {
            sv.values().append_slice(&r.singular_values);
            sv.append(true);
        }
        columns.push(Arc::new(sv.finish()));
        super::batch(t, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<SpectrumRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let keys = read_keys(&c)?;
        let sv = c.f64_lists("singular_values")?;
        Ok(keys
            .into_iter()
            .zip(sv)
            .map(|(key, singular_values)| SpectrumRow {
                key,
                singular_values,
            })
            .collect())
    }
}
