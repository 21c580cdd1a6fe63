//! Rows of the dataset's tables and their conversion to Arrow record batches.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    StructBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};

use super::{DatasetError, schema};
use crate::extract::MatrixResult;

/// One file of a model, as recorded in `models.files`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord {
    pub name: String,
    /// Known when the Hub gave it (LFS files) or the file sits in the HF cache under its
    /// sha256; never computed by reading a whole model.
    pub sha256: Option<String>,
    pub size: u64,
}

/// One row of `models/`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRow {
    pub model: String,
    pub revision: String,
    pub commit: Option<String>,
    pub lab: Option<String>,
    pub heritage: Option<String>,
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub source_format: String,
    pub source_dtype: String,
    pub fold_ln: bool,
    pub backend: String,
    pub precision: String,
    pub files: Vec<FileRecord>,
    pub config_sha256: String,
    pub tool_version: String,
    /// Microseconds since the Unix epoch (UTC).
    pub extracted_at_us: i64,
    /// Another revision of the same model whose files are byte-identical, when known.
    pub identical_to: Option<String>,
}

/// One row of `failures/`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureRow {
    pub model: String,
    pub revision: String,
    pub stage: String,
    pub error: String,
    pub failed_at_us: i64,
}

fn arrow_err(table: &str) -> impl Fn(arrow_schema::ArrowError) -> DatasetError + '_ {
    move |source| DatasetError::Arrow {
        table: table.to_string(),
        source,
    }
}

fn i32_of(table: &str, what: &str, v: usize) -> Result<i32, DatasetError> {
    i32::try_from(v).map_err(|_| DatasetError::Arrow {
        table: table.to_string(),
        source: arrow_schema::ArrowError::InvalidArgumentError(format!("{what} {v} exceeds int32")),
    })
}

fn utc(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// The `models/` batch for one model.
pub fn models_batch(row: &ModelRow) -> Result<RecordBatch, DatasetError> {
    let t = "models";
    let s = |v: &str| -> ArrayRef { Arc::new(arrow_array::StringArray::from(vec![v])) };
    let so = |v: &Option<String>| -> ArrayRef {
        Arc::new(arrow_array::StringArray::from(vec![v.as_deref()]))
    };
    let i = |what: &str, v: usize| -> Result<ArrayRef, DatasetError> {
        Ok(Arc::new(arrow_array::Int32Array::from(vec![i32_of(
            t, what, v,
        )?])))
    };
    let mut files = ListBuilder::new(StructBuilder::from_fields(schema::file_struct_fields(), 0))
        .with_field(
            match schema::models()
                .field_with_name("files")
                .map(|f| f.data_type().clone())
            {
                Ok(arrow_schema::DataType::List(f)) => f,
                _ => unreachable!("models.files is a list"),
            },
        );
    for f in &row.files {
        let st = files.values();
        st.field_builder::<StringBuilder>(0)
            .expect("name")
            .append_value(&f.name);
        st.field_builder::<StringBuilder>(1)
            .expect("sha256")
            .append_option(f.sha256.as_deref());
        st.field_builder::<Int64Builder>(2)
            .expect("size")
            .append_value(i64::try_from(f.size).unwrap_or(i64::MAX));
        st.append(true);
    }
    files.append(true);
    let mut fold = BooleanBuilder::new();
    fold.append_value(row.fold_ln);
    let columns: Vec<ArrayRef> = vec![
        s(&row.model),
        s(&row.revision),
        so(&row.commit),
        so(&row.lab),
        so(&row.heritage),
        s(&row.architecture),
        i("n_layers", row.n_layers)?,
        i("d_model", row.d_model)?,
        i("n_heads", row.n_heads)?,
        i("n_kv_heads", row.n_kv_heads)?,
        i("d_head", row.d_head)?,
        s(&row.source_format),
        s(&row.source_dtype),
        Arc::new(fold.finish()),
        s(&row.backend),
        s(&row.precision),
        Arc::new(files.finish()),
        s(&row.config_sha256),
        s(&row.tool_version),
        utc(vec![row.extracted_at_us]),
        so(&row.identical_to),
    ];
    RecordBatch::try_new(schema::models(), columns).map_err(arrow_err(t))
}

/// The `matrices/` batch for one model.
pub fn matrices_batch(
    model: &str,
    revision: &str,
    results: &[MatrixResult],
) -> Result<RecordBatch, DatasetError> {
    let t = "matrices";
    let n = results.len();
    let mut model_b = StringBuilder::new();
    let mut rev_b = StringBuilder::new();
    let mut layer_b = Int32Builder::with_capacity(n);
    let mut head_b = Int32Builder::with_capacity(n);
    let mut kind_b = StringBuilder::new();
    let mut rows_b = Int32Builder::with_capacity(n);
    let mut cols_b = Int32Builder::with_capacity(n);
    for r in results {
        model_b.append_value(model);
        rev_b.append_value(revision);
        layer_b.append_value(i32_of(t, "layer", r.layer)?);
        head_b.append_option(r.head.map(|h| i32_of(t, "head", h)).transpose()?);
        kind_b.append_value(r.kind.name());
        rows_b.append_value(i32_of(t, "rows", r.rows)?);
        cols_b.append_value(i32_of(t, "cols", r.cols)?);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(model_b.finish()),
        Arc::new(rev_b.finish()),
        Arc::new(layer_b.finish()),
        Arc::new(head_b.finish()),
        Arc::new(kind_b.finish()),
        Arc::new(rows_b.finish()),
        Arc::new(cols_b.finish()),
    ];
    for name in schema::METRIC_COLUMNS {
        if *name == "num_pl_spikes" {
            // WeightWatcher's sentinel -1 (no fit) is stored as null.
            let mut b = Int64Builder::with_capacity(n);
            for r in results {
                let v = r.metrics.num_pl_spikes;
                b.append_option((v >= 0).then_some(v));
            }
            columns.push(Arc::new(b.finish()));
        } else {
            // NaN (no power-law fit, say) is stored as null so that SQL aggregates skip it;
            // an infinite condition number stays infinite.
            let mut b = Float64Builder::with_capacity(n);
            for r in results {
                let v = r
                    .metrics
                    .get(name)
                    .expect("every float metric column has a field");
                b.append_option((!v.is_nan()).then_some(v));
            }
            columns.push(Arc::new(b.finish()));
        }
    }
    RecordBatch::try_new(schema::matrices(), columns).map_err(arrow_err(t))
}

/// The `spectra/` batch for one model.
pub fn spectra_batch(
    model: &str,
    revision: &str,
    results: &[MatrixResult],
) -> Result<RecordBatch, DatasetError> {
    let t = "spectra";
    let mut model_b = StringBuilder::new();
    let mut rev_b = StringBuilder::new();
    let mut layer_b = Int32Builder::new();
    let mut head_b = Int32Builder::new();
    let mut kind_b = StringBuilder::new();
    let item = match schema::spectra()
        .field_with_name("singular_values")
        .map(|f| f.data_type().clone())
    {
        Ok(arrow_schema::DataType::List(f)) => f,
        _ => unreachable!("spectra.singular_values is a list"),
    };
    let mut sv_b = ListBuilder::new(Float64Builder::new()).with_field(item);
    for r in results {
        model_b.append_value(model);
        rev_b.append_value(revision);
        layer_b.append_value(i32_of(t, "layer", r.layer)?);
        head_b.append_option(r.head.map(|h| i32_of(t, "head", h)).transpose()?);
        kind_b.append_value(r.kind.name());
        sv_b.values().append_slice(&r.singular_values);
        sv_b.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(model_b.finish()),
        Arc::new(rev_b.finish()),
        Arc::new(layer_b.finish()),
        Arc::new(head_b.finish()),
        Arc::new(kind_b.finish()),
        Arc::new(sv_b.finish()),
    ];
    RecordBatch::try_new(schema::spectra(), columns).map_err(arrow_err(t))
}

/// The `failures/` batch.
pub fn failures_batch(rows: &[FailureRow]) -> Result<RecordBatch, DatasetError> {
    let t = "failures";
    let strings = |f: &dyn Fn(&FailureRow) -> &str| -> ArrayRef {
        Arc::new(arrow_array::StringArray::from(
            rows.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| &r.model),
        strings(&|r| &r.revision),
        strings(&|r| &r.stage),
        strings(&|r| &r.error),
        utc(rows.iter().map(|r| r.failed_at_us).collect()),
    ];
    RecordBatch::try_new(schema::failures(), columns).map_err(arrow_err(t))
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
