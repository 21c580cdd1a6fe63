//! Typed views of the columns of the SQL result tables, which the report shows as text
//! ([`crate::load::TextTable`]), tolerant of the encodings DataFusion chooses (`Utf8View` or
//! `LargeUtf8`, `Int64` counts, `Float32`). Every error names the file and the column. The
//! core tables are read through `attn_spectra::dataset`, which owns their columns.

use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_schema::{DataType, TimeUnit};

use crate::ReportError;

fn bad(path: &Path, column: &str, problem: impl Into<String>) -> ReportError {
    ReportError::Column {
        path: path.to_path_buf(),
        column: column.to_string(),
        problem: problem.into(),
    }
}

/// Strings from a Utf8, LargeUtf8 or Utf8View column.
pub fn strings(a: &dyn Array, path: &Path, name: &str) -> Result<Vec<Option<String>>, ReportError> {
    let own = |v: Option<&str>| v.map(str::to_string);
    Ok(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(own).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(own).collect(),
        DataType::Utf8View => a.as_string_view().iter().map(own).collect(),
        other => return Err(bad(path, name, format!("is {other}, expected text"))),
    })
}

/// Integers from any integer column.
pub fn ints(a: &dyn Array, path: &Path, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
    macro_rules! collect {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|x| x as i64))
                .collect()
        };
    }
    Ok(match a.data_type() {
        DataType::Int8 => collect!(Int8Type),
        DataType::Int16 => collect!(Int16Type),
        DataType::Int32 => collect!(Int32Type),
        DataType::Int64 => collect!(Int64Type),
        DataType::UInt8 => collect!(UInt8Type),
        DataType::UInt16 => collect!(UInt16Type),
        DataType::UInt32 => collect!(UInt32Type),
        DataType::UInt64 => a
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map(|x| i64::try_from(x).unwrap_or(i64::MAX)))
            .collect(),
        other => return Err(bad(path, name, format!("is {other}, expected an integer"))),
    })
}

/// Numbers from a float or integer column; NaN becomes `None` (as the dataset writer stores it).
pub fn floats(a: &dyn Array, path: &Path, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
    let v: Vec<Option<f64>> = match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Null => vec![None; a.len()],
        t if t.is_integer() => ints(a, path, name)?
            .into_iter()
            .map(|v| v.map(|x| x as f64))
            .collect(),
        other => return Err(bad(path, name, format!("is {other}, expected a number"))),
    };
    Ok(v.into_iter().map(|x| x.filter(|f| !f.is_nan())).collect())
}

/// Timestamps as microseconds since the Unix epoch.
pub fn timestamps_us(
    a: &dyn Array,
    path: &Path,
    name: &str,
) -> Result<Vec<Option<i64>>, ReportError> {
    macro_rules! scaled {
        ($t:ty, $f:expr) => {
            a.as_primitive::<$t>().iter().map(|v| v.map($f)).collect()
        };
    }
    Ok(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            scaled!(TimestampSecondType, |x: i64| x.saturating_mul(1_000_000))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scaled!(TimestampMillisecondType, |x: i64| x.saturating_mul(1000))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scaled!(TimestampMicrosecondType, |x: i64| x)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled!(TimestampNanosecondType, |x: i64| x / 1000)
        }
        other => return Err(bad(path, name, format!("is {other}, expected a timestamp"))),
    })
}

/// One cell as display text, for tables whose columns the report does not know in advance.
pub fn display_cell(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return String::new();
    }
    let p = Path::new("");
    // Each helper below sees the one-row slice, so the cell is at index 0.
    let s = |v: Result<Vec<Option<String>>, ReportError>| {
        v.ok()
            .and_then(|v| v.into_iter().next().flatten())
            .unwrap_or_default()
    };
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            s(strings(&a.slice(i, 1), p, ""))
        }
        DataType::Float32 | DataType::Float64 => floats(&a.slice(i, 1), p, "")
            .ok()
            .and_then(|v| v[0])
            .map(crate::document::number)
            .unwrap_or_else(|| "NaN".into()),
        t if t.is_integer() => ints(&a.slice(i, 1), p, "")
            .ok()
            .and_then(|v| v[0])
            .map(|x| x.to_string())
            .unwrap_or_default(),
        DataType::Boolean => a.as_boolean().value(i).to_string(),
        DataType::Timestamp(..) => timestamps_us(&a.slice(i, 1), p, "")
            .ok()
            .and_then(|v| v[0])
            .map(crate::time::iso8601)
            .unwrap_or_default(),
        other => format!("({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Float32Array, Int64Array, LargeStringArray, StringViewArray};
    use std::sync::Arc;

    #[test]
    fn text_in_every_encoding() {
        let p = Path::new("t.parquet");
        let a: ArrayRef = Arc::new(LargeStringArray::from(vec![Some("a"), None]));
        assert_eq!(strings(&a, p, "c").unwrap(), vec![Some("a".into()), None]);
        let a: ArrayRef = Arc::new(StringViewArray::from(vec!["x"]));
        assert_eq!(strings(&a, p, "c").unwrap(), vec![Some("x".to_string())]);
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let e = strings(&a, p, "lab").unwrap_err().to_string();
        assert!(e.contains("t.parquet") && e.contains("`lab`"), "{e}");
    }

    #[test]
    fn floats_widen_and_drop_nan() {
        let p = Path::new("t.parquet");
        let a: ArrayRef = Arc::new(Float32Array::from(vec![Some(0.5), Some(f32::NAN), None]));
        assert_eq!(floats(&a, p, "x").unwrap(), vec![Some(0.5), None, None]);
        let a: ArrayRef = Arc::new(Int64Array::from(vec![3]));
        assert_eq!(floats(&a, p, "x").unwrap(), vec![Some(3.0)]);
        assert_eq!(display_cell(&a, 0), "3");
    }

    #[test]
    fn cells_display_every_row() {
        let a: ArrayRef = Arc::new(StringViewArray::from(vec!["a", "b"]));
        assert_eq!(display_cell(&a, 1), "b");
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(7)]));
        assert_eq!(display_cell(&a, 2), "7");
        assert_eq!(display_cell(&a, 1), "");
        let a: ArrayRef = Arc::new(Float32Array::from(vec![0.5, 0.25]));
        assert_eq!(display_cell(&a, 1), "0.2500");
    }
}
