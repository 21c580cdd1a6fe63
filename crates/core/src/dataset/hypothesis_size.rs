//! `hypothesis_size/`: one row per tested metric and matrix kind of the size-controlled test
//! (OLS on size covariates and a lab indicator, Freedman-Lane permutation p-value, bootstrap
//! interval of the lab coefficient; see [`crate::stats::regression`]), written by
//! `pipeline run test` as `hypothesis_size/result.parquet`. Schema, row type and conversions.
//! When the test could not run for a metric and kind, its numeric columns are NaN (null for
//! `permutations`), the verdict is [`NOT_TESTED`] and `note` says why.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};

use super::columns::{ColumnError, Columns, float64, int64, utf8};
use super::{DatasetError, TableRow};

/// The stem of the table's one file.
pub const FILE_STEM: &str = "result";
/// Key-value metadata keys besides the hypothesis table's: the permutation and bootstrap
/// counts and seeds.
pub const META_PERMUTATIONS: &str = "permutations";
pub const META_PERMUTATION_SEED: &str = "permutation_seed";
pub const META_BOOTSTRAP_RESAMPLES: &str = "bootstrap_resamples";
pub const META_BOOTSTRAP_SEED: &str = "bootstrap_seed";

/// The verdict of a row whose test could not be run.
pub const NOT_TESTED: &str = "NOT TESTED";

/// One row of `hypothesis_size/`.
#[derive(Debug, Clone, PartialEq)]
pub struct HypothesisSizeRow {
    pub metric: String,
    pub kind: String,
    pub group_a: String,
    pub group_b: String,
    pub n_a: i64,
    pub n_b: i64,
    pub alternative: String,
    /// The covariates used, joined by `+` (empty when none could be used).
    pub covariates: String,
    /// Group A minus group B at equal size covariates.
    pub lab_coefficient: f64,
    pub lab_std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    pub t_statistic: f64,
    /// The Freedman-Lane permutation p-value.
    pub p_value: f64,
    pub permutations: Option<i64>,
    pub p_holm: f64,
    pub p_bh: f64,
    pub verdict: String,
    /// Why the test could not be run.
    pub note: Option<String>,
}

impl TableRow for HypothesisSizeRow {
    const TABLE: &'static str = "hypothesis_size";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("metric", false),
            utf8("kind", false),
            utf8("group_a", false),
            utf8("group_b", false),
            int64("n_a", false),
            int64("n_b", false),
            utf8("alternative", false),
            utf8("covariates", false),
            float64("lab_coefficient"),
            float64("lab_std_error"),
            float64("ci_low"),
            float64("ci_high"),
            float64("ci_level"),
            float64("t_statistic"),
            float64("p_value"),
            int64("permutations", true),
            float64("p_holm"),
            float64("p_bh"),
            utf8("verdict", false),
            utf8("note", true),
        ]))
    }

    fn to_batch(rows: &[HypothesisSizeRow]) -> Result<RecordBatch, DatasetError> {
        let s = |f: fn(&HypothesisSizeRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let i = |f: fn(&HypothesisSizeRow) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let x = |f: fn(&HypothesisSizeRow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
        let columns = vec![
            s(|r| &r.metric),
            s(|r| &r.kind),
            s(|r| &r.group_a),
            s(|r| &r.group_b),
            i(|r| r.n_a),
            i(|r| r.n_b),
            s(|r| &r.alternative),
            s(|r| &r.covariates),
            x(|r| r.lab_coefficient),
            x(|r| r.lab_std_error),
            x(|r| r.ci_low),
            x(|r| r.ci_high),
            x(|r| r.ci_level),
            x(|r| r.t_statistic),
            x(|r| r.p_value),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.permutations))),
            x(|r| r.p_holm),
            x(|r| r.p_bh),
            s(|r| &r.verdict),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.note.as_deref()),
            )),
        ];
        super::batch(Self::TABLE, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<HypothesisSizeRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let (metric, kind, group_a, group_b) = (
            c.strings("metric")?,
            c.strings("kind")?,
            c.strings("group_a")?,
            c.strings("group_b")?,
        );
        let (n_a, n_b, alternative, covariates) = (
            c.i64s("n_a")?,
            c.i64s("n_b")?,
            c.strings("alternative")?,
            c.strings("covariates")?,
        );
        let (coef, se, lo, hi, level, t, p) = (
            c.f64s("lab_coefficient")?,
            c.f64s("lab_std_error")?,
            c.f64s("ci_low")?,
            c.f64s("ci_high")?,
            c.f64s("ci_level")?,
            c.f64s("t_statistic")?,
            c.f64s("p_value")?,
        );
        let (perms, holm, bh, verdict, note) = (
            c.opt_i64s("permutations")?,
            c.f64s("p_holm")?,
            c.f64s("p_bh")?,
            c.strings("verdict")?,
            c.opt_strings("note")?,
        );
        Ok((0..c.len())
            .map(|r| HypothesisSizeRow {
                metric: metric[r].clone(),
                kind: kind[r].clone(),
                group_a: group_a[r].clone(),
                group_b: group_b[r].clone(),
                n_a: n_a[r],
                n_b: n_b[r],
                alternative: alternative[r].clone(),
                covariates: covariates[r].clone(),
                lab_coefficient: coef[r],
                lab_std_error: se[r],
                ci_low: lo[r],
                ci_high: hi[r],
                ci_level: level[r],
                t_statistic: t[r],
                p_value: p[r],
                permutations: perms[r],
                p_holm: holm[r],
                p_bh: bh[r],
                verdict: verdict[r].clone(),
                note: note[r].clone(),
            })
            .collect())
    }
}
