//! `models/`: one row per model and revision, written last for a model (it marks the model
//! complete). Schema, row type and conversions.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

use super::columns::{ColumnError, Columns, int32, int64, list_item, utc_micros, utf8};
use super::{DatasetError, TableRow, i32_of};

/// One file of a model, as recorded in `models.files`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord {
    pub name: String,
    /// Known when the Hub gave it (LFS files) or the file sits in the HF cache under its
    /// sha256; never computed by reading a whole model.
    pub sha256: Option<String>,
    pub size: u64,
}

/// One row of `models/`. `identical_to` names another revision of the same model whose files
/// are byte-identical (some Pythia step branches serve the final checkpoint), when the Hub
/// fetch found one.
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
    /// Whether the pre-attention norm gain was folded into W_Q/W_K/W_V (false when asked for
    /// on a model without a pre-attention norm: nothing was folded).
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

/// The struct of one entry of `models.files`.
fn file_fields() -> Fields {
    Fields::from(vec![
        utf8("name", false),
        utf8("sha256", true),
        int64("size", false),
    ])
}

impl TableRow for ModelRow {
    const TABLE: &'static str = "models";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("model", false),
            utf8("revision", false),
            utf8("commit", true),
            utf8("lab", true),
            utf8("heritage", true),
            utf8("architecture", false),
            int32("n_layers", false),
            int32("d_model", false),
            int32("n_heads", false),
            int32("n_kv_heads", false),
            int32("d_head", false),
            utf8("source_format", false),
            utf8("source_dtype", false),
            Field::new("fold_ln", DataType::Boolean, false),
            utf8("backend", false),
            utf8("precision", false),
            Field::new(
                "files",
                DataType::List(Arc::new(Field::new(
                    "item",
                    DataType::Struct(file_fields()),
                    true,
                ))),
                false,
            ),
            utf8("config_sha256", false),
            utf8("tool_version", false),
            utc_micros("extracted_at"),
            utf8("identical_to", true),
        ]))
    }

    fn to_batch(rows: &[ModelRow]) -> Result<RecordBatch, DatasetError> {
        let t = Self::TABLE;
        let s = |f: fn(&ModelRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let so = |f: fn(&ModelRow) -> Option<&str>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let i = |what: &str, f: fn(&ModelRow) -> usize| -> Result<ArrayRef, DatasetError> {
            let v = rows
                .iter()
                .map(|r| i32_of(t, what, f(r)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Arc::new(Int32Array::from(v)))
        };
        let mut files = ListBuilder::new(StructBuilder::from_fields(file_fields(), 0))
            .with_field(list_item(&Self::schema(), "files"));
        for row in rows {
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
        }
        let columns: Vec<ArrayRef> = vec![
            s(|r| &r.model),
            s(|r| &r.revision),
            so(|r| r.commit.as_deref()),
            so(|r| r.lab.as_deref()),
            so(|r| r.heritage.as_deref()),
            s(|r| &r.architecture),
            i("n_layers", |r| r.n_layers)?,
            i("d_model", |r| r.d_model)?,
            i("n_heads", |r| r.n_heads)?,
            i("n_kv_heads", |r| r.n_kv_heads)?,
            i("d_head", |r| r.d_head)?,
            s(|r| &r.source_format),
            s(|r| &r.source_dtype),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.fold_ln))
                    .collect::<BooleanArray>(),
            ),
            s(|r| &r.backend),
            s(|r| &r.precision),
            Arc::new(files.finish()),
            s(|r| &r.config_sha256),
            s(|r| &r.tool_version),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.extracted_at_us))
                    .with_timezone("UTC"),
            ),
            so(|r| r.identical_to.as_deref()),
        ];
        super::batch(t, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<ModelRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let (model, revision, commit) = (
            c.strings("model")?,
            c.strings("revision")?,
            c.opt_strings("commit")?,
        );
        let (lab, heritage, architecture) = (
            c.opt_strings("lab")?,
            c.opt_strings("heritage")?,
            c.strings("architecture")?,
        );
        let (n_layers, d_model, n_heads, n_kv_heads, d_head) = (
            c.usizes("n_layers")?,
            c.usizes("d_model")?,
            c.usizes("n_heads")?,
            c.usizes("n_kv_heads")?,
            c.usizes("d_head")?,
        );
        let (source_format, source_dtype, fold_ln) = (
            c.strings("source_format")?,
            c.strings("source_dtype")?,
            c.bools("fold_ln")?,
        );
        let (backend, precision) = (c.strings("backend")?, c.strings("precision")?);
        let files = c.struct_lists("files")?;
        let (config_sha256, tool_version, extracted_at, identical_to) = (
            c.strings("config_sha256")?,
            c.strings("tool_version")?,
            c.timestamps_us("extracted_at")?,
            c.opt_strings("identical_to")?,
        );
        let file_schema = Arc::new(Schema::new(file_fields()));
        let mut out = Vec::with_capacity(c.len());
        for (r, files) in files.iter().enumerate() {
            let batch = RecordBatch::from(files);
            let fc = Columns::new(&batch, file_schema.clone());
            let (names, sha, sizes) = (
                fc.strings("name")?,
                fc.opt_strings("sha256")?,
                fc.i64s("size")?,
            );
            let files = names
                .into_iter()
                .zip(sha)
                .zip(sizes)
                .map(|((name, sha256), size)| FileRecord {
                    name,
                    sha256,
                    size: u64::try_from(size).unwrap_or(0),
                })
                .collect();
            out.push(ModelRow {
                model: model[r].clone(),
                revision: revision[r].clone(),
                commit: commit[r].clone(),
                lab: lab[r].clone(),
                heritage: heritage[r].clone(),
                architecture: architecture[r].clone(),
                n_layers: n_layers[r],
                d_model: d_model[r],
                n_heads: n_heads[r],
                n_kv_heads: n_kv_heads[r],
                d_head: d_head[r],
                source_format: source_format[r].clone(),
                source_dtype: source_dtype[r].clone(),
                fold_ln: fold_ln[r],
                backend: backend[r].clone(),
                precision: precision[r].clone(),
                files,
                config_sha256: config_sha256[r].clone(),
                tool_version: tool_version[r].clone(),
                extracted_at_us: extracted_at[r],
                identical_to: identical_to[r].clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) fn example(model: &str) -> ModelRow {
    ModelRow {
        model: model.into(),
        revision: "main".into(),
        commit: Some("c".repeat(40)),
        lab: Some("Lab".into()),
        heritage: None,
        architecture: "gpt2".into(),
        n_layers: 2,
        d_model: 8,
        n_heads: 2,
        n_kv_heads: 2,
        d_head: 4,
        source_format: "safetensors".into(),
        source_dtype: "F32".into(),
        fold_ln: false,
        backend: "faer".into(),
        precision: "f64".into(),
        files: vec![
            FileRecord {
                name: "config.json".into(),
                sha256: None,
                size: 10,
            },
            FileRecord {
                name: "model.safetensors".into(),
                sha256: Some("a".repeat(64)),
                size: 1234,
            },
        ],
        config_sha256: "0".repeat(64),
        tool_version: "0.1.0".into(),
        extracted_at_us: 1_767_614_096_123_456,
        identical_to: Some("step1".into()),
    }
}
