//! `hypothesis/`: one row per tested metric and matrix kind, written by `pipeline run test`
//! as `hypothesis/result.parquet`. Schema, row type, conversions and the file's metadata keys.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};

use super::columns::{ColumnError, Columns, float64, int64, utf8};
use super::{DatasetError, TableRow};

/// The stem of the table's one file.
pub const FILE_STEM: &str = "result";
/// Key-value metadata keys of `hypothesis/result.parquet`: the test plan (JSON), the SQL file
/// that computed the per-model means, and the tool version.
pub const META_TEST_PLAN: &str = "test_plan";
pub const META_SQL_FILE: &str = "sql_file";
pub const META_TOOL_VERSION: &str = "tool_version";

/// One row of `hypothesis/`.
#[derive(Debug, Clone, PartialEq)]
pub struct HypothesisRow {
    pub metric: String,
    pub kind: String,
    pub group_a: String,
    pub group_b: String,
    pub n_a: i64,
    pub n_b: i64,
    pub mean_a: f64,
    pub mean_b: f64,
    /// `less`, `greater` or `two-sided`.
    pub alternative: String,
    /// U of group A.
    pub u_statistic: f64,
    /// The Mann-Whitney p-value for `alternative`.
    pub p_value: f64,
    pub p_two_sided: f64,
    pub rank_biserial: f64,
    /// The permutation test of mean(A) - mean(B) for `alternative`.
    pub p_permutation: f64,
    /// [`SUPPORTED`] when `p_holm` < alpha, else [`NOT_SUPPORTED`].
    pub verdict: String,
    /// `p_value` adjusted by Holm's method over the rows of one run.
    pub p_holm: f64,
    /// `p_value` adjusted by Benjamini-Hochberg over the rows of one run.
    pub p_bh: f64,
    /// Cohen's d of A against B (pooled standard deviation); NaN when undefined.
    pub cohens_d: f64,
    /// Models per group for 80 % power of the Mann-Whitney test at alpha for the observed
    /// effect; `None` when the effect is zero, undefined or against the alternative.
    pub models_per_group_80: Option<i64>,
}

pub const SUPPORTED: &str = "SUPPORTED";
pub const NOT_SUPPORTED: &str = "NOT SUPPORTED";

impl TableRow for HypothesisRow {
    const TABLE: &'static str = "hypothesis";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("metric", false),
            utf8("kind", false),
            utf8("group_a", false),
            utf8("group_b", false),
            int64("n_a", false),
            int64("n_b", false),
            float64("mean_a"),
            float64("mean_b"),
            utf8("alternative", false),
            float64("u_statistic"),
            float64("p_value"),
            float64("p_two_sided"),
            float64("rank_biserial"),
            float64("p_permutation"),
            utf8("verdict", false),
            float64("p_holm"),
            float64("p_bh"),
            float64("cohens_d"),
            int64("models_per_group_80", true),
        ]))
    }

    fn to_batch(rows: &[HypothesisRow]) -> Result<RecordBatch, DatasetError> {
        let s = |f: fn(&HypothesisRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let i = |f: fn(&HypothesisRow) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
        };
        let x = |f: fn(&HypothesisRow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
        let columns = vec![
            s(|r| &r.metric),
            s(|r| &r.kind),
            s(|r| &r.group_a),
            s(|r| &r.group_b),
            i(|r| r.n_a),
            i(|r| r.n_b),
            x(|r| r.mean_a),
            x(|r| r.mean_b),
            s(|r| &r.alternative),
            x(|r| r.u_statistic),
            x(|r| r.p_value),
            x(|r| r.p_two_sided),
            x(|r| r.rank_biserial),
            x(|r| r.p_permutation),
            s(|r| &r.verdict),
            x(|r| r.p_holm),
            x(|r| r.p_bh),
            x(|r| r.cohens_d),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.models_per_group_80),
            )),
        ];
        super::batch(Self::TABLE, Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<HypothesisRow>, ColumnError> {
        let c = Columns::new(batch, Self::schema());
        let (metric, kind, group_a, group_b) = (
            c.strings("metric")?,
            c.strings("kind")?,
            c.strings("group_a")?,
            c.strings("group_b")?,
        );
        let (n_a, n_b, mean_a, mean_b) = (
            c.i64s("n_a")?,
            c.i64s("n_b")?,
            c.f64s("mean_a")?,
            c.f64s("mean_b")?,
        );
        let (alternative, u, p, p2) = (
            c.strings("alternative")?,
            c.f64s("u_statistic")?,
            c.f64s("p_value")?,
            c.f64s("p_two_sided")?,
        );
        let (rb, pp, verdict) = (
            c.f64s("rank_biserial")?,
            c.f64s("p_permutation")?,
            c.strings("verdict")?,
        );
        let (p_holm, p_bh, d, n80) = (
            c.f64s("p_holm")?,
            c.f64s("p_bh")?,
            c.f64s("cohens_d")?,
            c.opt_i64s("models_per_group_80")?,
        );
        Ok((0..c.len())
            .map(|r| HypothesisRow {
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
            })
            .collect())
    }
}
