//! Typed access to the columns of a record batch, for the tables' `from_batch`, and the small
//! field builders their schemas share.
//!
//! A column is looked up by the name of its schema field and cast to the field's type first,
//! so files from other writers (DataFusion's `Utf8View`, `Int64` counts, `LargeUtf8`) read
//! the same as the extract stage's own. A missing column is an error when its field is not
//! nullable and all nulls otherwise (files from older writers); extra columns are ignored.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};

/// A column of a batch that cannot be read as the table's schema says.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column `{column}` {problem}")]
pub struct ColumnError {
    pub column: String,
    pub problem: String,
}

pub(crate) fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

pub(crate) fn int32(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int32, nullable)
}

pub(crate) fn int64(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int64, nullable)
}

pub(crate) fn float64(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

pub(crate) fn utc_micros(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

/// The item field of a list column of `schema`.
pub(crate) fn list_item(schema: &SchemaRef, name: &str) -> Arc<Field> {
    match schema.field_with_name(name).map(|f| f.data_type()) {
        Ok(DataType::List(item)) => item.clone(),
        _ => panic!("the schema's `{name}` is a list column"),
    }
}

/// The columns of one batch read against a table schema.
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
    schema: SchemaRef,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(batch: &'a RecordBatch, schema: SchemaRef) -> Columns<'a> {
        Columns { batch, schema }
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.num_rows()
    }

    fn bad(name: &str, problem: impl Into<String>) -> ColumnError {
        ColumnError {
            column: name.to_string(),
            problem: problem.into(),
        }
    }

    /// The column `name` cast to its schema type; `None` when absent and nullable.
    fn array(&self, name: &str) -> Result<Option<ArrayRef>, ColumnError> {
        let field = self
            .schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("`{name}` is a column of the table's schema"));
        let Some(array) = self.batch.column_by_name(name) else {
            return if field.is_nullable() {
                Ok(None)
            } else {
                Err(Self::bad(name, "is missing"))
            };
        };
        let array = if array.data_type() == field.data_type() {
            array.clone()
        } else {
            arrow_cast::cast(array, field.data_type()).map_err(|e| {
                Self::bad(
                    name,
                    format!(
                        "is {}, expected {}: {e}",
                        array.data_type(),
                        field.data_type()
                    ),
                )
            })?
        };
        if !field.is_nullable() && array.null_count() > 0 {
            return Err(Self::bad(name, "holds nulls"));
        }
        Ok(Some(array))
    }

    fn each<T>(
        &self,
        name: &str,
        read: impl Fn(&ArrayRef, usize) -> T,
    ) -> Result<Vec<Option<T>>, ColumnError> {
        Ok(match self.array(name)? {
            Some(a) => (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| read(&a, i)))
                .collect(),
            None => (0..self.len()).map(|_| None).collect(),
        })
    }

    fn required<T>(values: Vec<Option<T>>, name: &str) -> Result<Vec<T>, ColumnError> {
        values
            .into_iter()
            .map(|v| v.ok_or_else(|| Self::bad(name, "holds nulls")))
            .collect()
    }

    pub(crate) fn opt_strings(&self, name: &str) -> Result<Vec<Option<String>>, ColumnError> {
        self.each(name, |a, i| a.as_string::<i32>().value(i).to_string())
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, ColumnError> {
        Self::required(self.opt_strings(name)?, name)
    }

    pub(crate) fn opt_i32s(&self, name: &str) -> Result<Vec<Option<i32>>, ColumnError> {
        self.each(name, |a, i| a.as_primitive::<Int32Type>().value(i))
    }

    /// Non-negative Int32 values as indices or counts.
    pub(crate) fn opt_usizes(&self, name: &str) -> Result<Vec<Option<usize>>, ColumnError> {
        self.opt_i32s(name)?
            .into_iter()
            .map(|v| {
                v.map(|v| usize::try_from(v).map_err(|_| Self::bad(name, format!("holds {v}"))))
                    .transpose()
            })
            .collect()
    }

    pub(crate) fn usizes(&self, name: &str) -> Result<Vec<usize>, ColumnError> {
        Self::required(self.opt_usizes(name)?, name)
    }

    pub(crate) fn opt_i64s(&self, name: &str) -> Result<Vec<Option<i64>>, ColumnError> {
        self.each(name, |a, i| a.as_primitive::<Int64Type>().value(i))
    }

    pub(crate) fn i64s(&self, name: &str) -> Result<Vec<i64>, ColumnError> {
        Self::required(self.opt_i64s(name)?, name)
    }

    /// Floats, null read as NaN.
    pub(crate) fn f64s(&self, name: &str) -> Result<Vec<f64>, ColumnError> {
        Ok(self
            .each(name, |a, i| a.as_primitive::<Float64Type>().value(i))?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    }

    pub(crate) fn bools(&self, name: &str) -> Result<Vec<bool>, ColumnError> {
        Self::required(self.each(name, |a, i| a.as_boolean().value(i))?, name)
    }

    pub(crate) fn timestamps_us(&self, name: &str) -> Result<Vec<i64>, ColumnError> {
        Self::required(
            self.each(name, |a, i| {
                a.as_primitive::<TimestampMicrosecondType>().value(i)
            })?,
            name,
        )
    }

    /// A list of floats per row (null items read as NaN).
    pub(crate) fn f64_lists(&self, name: &str) -> Result<Vec<Vec<f64>>, ColumnError> {
        let lists = self.each(name, |a, i| {
            let v = a.as_list::<i32>().value(i);
            let v = v.as_primitive::<Float64Type>();
            (0..v.len())
                .map(|j| if v.is_null(j) { f64::NAN } else { v.value(j) })
                .collect::<Vec<f64>>()
        })?;
        Self::required(lists, name)
    }

    /// A list of structs per row, as the list's struct array.
    pub(crate) fn struct_lists(
        &self,
        name: &str,
    ) -> Result<Vec<arrow_array::StructArray>, ColumnError> {
        let lists = self.each(name, |a, i| a.as_list::<i32>().value(i).as_struct().clone())?;
        Self::required(lists, name)
    }
}
