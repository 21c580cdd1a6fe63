//! The Arrow schemas of the dataset's tables: the contract with downstream notebooks.
//!
//! Column names and types are stable; snapshot tests pin them. `head` is the KV-head index
//! for kinds W_K and W_V and the query-head index for W_Q, W_O, OV and QK; it is null for
//! whole-layer matrices.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The metric columns of `matrices/`, in order, after the identifying columns.
/// `num_pl_spikes` is Int64; every other metric is Float64.
pub const METRIC_COLUMNS: &[&str] = &[
    "spectral_norm",
    "frobenius_norm",
    "nuclear_norm",
    "stable_rank",
    "effective_rank",
    "condition_number",
    "alpha",
    "alpha_xmin",
    "alpha_ks",
    "num_pl_spikes",
    "log_norm",
    "log_spectral_norm",
    "alpha_weighted",
    "entropy",
    "mp_edge",
    "spectral_norm_over_mp",
    "mp_softrank",
];

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn i32f(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Int32, nullable)
}

fn f64f(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

/// The struct of one entry of `models.files`.
pub fn file_struct_fields() -> Fields {
    Fields::from(vec![
        utf8("name", false),
        utf8("sha256", true),
        Field::new("size", DataType::Int64, false),
    ])
}

/// `models/`: one row per model and revision. `identical_to` names another revision of the
/// same model whose files are byte-identical (some Pythia step branches serve the final
/// checkpoint), when the Hub fetch found one.
pub fn models() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("model", false),
        utf8("revision", false),
        utf8("commit", true),
        utf8("lab", true),
        utf8("heritage", true),
        utf8("architecture", false),
        i32f("n_layers", false),
        i32f("d_model", false),
        i32f("n_heads", false),
        i32f("n_kv_heads", false),
        i32f("d_head", false),
        utf8("source_format", false),
        utf8("source_dtype", false),
        Field::new("fold_ln", DataType::Boolean, false),
        utf8("backend", false),
        utf8("precision", false),
        Field::new(
            "files",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(file_struct_fields()),
                true,
            ))),
            false,
        ),
        utf8("config_sha256", false),
        utf8("tool_version", false),
        Field::new(
            "extracted_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8("identical_to", true),
    ]))
}

/// The identifying columns shared by `matrices/` and `spectra/`.
fn matrix_keys() -> Vec<Field> {
    vec![
        utf8("model", false),
        utf8("revision", false),
        i32f("layer", false),
        i32f("head", true),
        utf8("kind", false),
    ]
}

/// `matrices/`: one row per matrix, with its shape and metrics.
pub fn matrices() -> SchemaRef {
    let mut fields = matrix_keys();
    fields.push(i32f("rows", false));
    fields.push(i32f("cols", false));
    for m in METRIC_COLUMNS {
        fields.push(if *m == "num_pl_spikes" {
            Field::new(*m, DataType::Int64, true)
        } else {
            f64f(m)
        });
    }
    Arc::new(Schema::new(fields))
}

/// `spectra/`: one row per matrix with all its singular values, descending.
pub fn spectra() -> SchemaRef {
    let mut fields = matrix_keys();
    fields.push(Field::new(
        "singular_values",
        DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// `failures/`: one row per model that could not be processed.
pub fn failures() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("model", false),
        utf8("revision", false),
        utf8("stage", false),
        utf8("error", false),
        Field::new(
            "failed_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// `hypothesis/`: one row per tested metric and matrix kind.
pub fn hypothesis() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("metric", false),
        utf8("kind", false),
        utf8("group_a", false),
        utf8("group_b", false),
        Field::new("n_a", DataType::Int64, false),
        Field::new("n_b", DataType::Int64, false),
        f64f("mean_a"),
        f64f("mean_b"),
        utf8("alternative", false),
        f64f("u_statistic"),
        f64f("p_value"),
        f64f("p_two_sided"),
        f64f("rank_biserial"),
        f64f("p_permutation"),
        utf8("verdict", false),
        f64f("p_holm"),
        f64f("p_bh"),
        f64f("cohens_d"),
        Field::new("models_per_group_80", DataType::Int64, true),
    ]))
}

/// `hypothesis_size/`: one row per tested metric and matrix kind of the size-controlled test
/// (OLS on size covariates and a lab indicator, Freedman-Lane permutation p-value, bootstrap
/// interval of the lab coefficient; see `attn_spectra::stats::regression`). The numeric columns
/// are null, and `note` says why, when the test could not be run for that metric and kind.
pub fn hypothesis_size() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("metric", false),
        utf8("kind", false),
        utf8("group_a", false),
        utf8("group_b", false),
        Field::new("n_a", DataType::Int64, false),
        Field::new("n_b", DataType::Int64, false),
        utf8("alternative", false),
        utf8("covariates", false),
        f64f("lab_coefficient"),
        f64f("lab_std_error"),
        f64f("ci_low"),
        f64f("ci_high"),
        f64f("ci_level"),
        f64f("t_statistic"),
        f64f("p_value"),
        Field::new("permutations", DataType::Int64, true),
        f64f("p_holm"),
        f64f("p_bh"),
        utf8("verdict", false),
        utf8("note", true),
    ]))
}
