//! `pipeline run test`: the seed's Dampener-vs-Expander test, generalised to a [`TestPlan`].
//!
//! For each metric and matrix kind of the plan, `queries/model_means.sql` gives one value per
//! model and revision: the mean of the metric over layers (whole-layer matrices for W_Q, W_K,
//! W_V, W_O; per-head rows for the OV and QK circuits). Models whose lab is in
//! `group_a_labs`, or whose id is in `group_a_models`, form group A; every other model forms
//! group B ("Others"). A model whose mean is NULL (every layer's value missing) is left out,
//! as the seed's `dropna()` did; a NaN mean is an error naming the metric and kind.
//! Each model counts once: a model extracted at several revisions enters at a revision that is
//! not a `step<N>` branch (such as `main`) when it has one, else at its largest step.
//!
//! The tests are [`attn_spectra::stats`]'s: Mann-Whitney U for the plan's alternative, the
//! two-sided Mann-Whitney p-value, the rank-biserial correlation and the permutation test of the
//! difference of means. The family of one run (every metric and kind of the plan, the rows of
//! one `hypothesis/` table) is corrected for multiplicity: `p_holm` (Holm, family-wise error)
//! and `p_bh` (Benjamini-Hochberg, false discovery rate) adjust the Mann-Whitney `p_value`,
//! and the verdict is "SUPPORTED" when `p_holm` < alpha (the raw `p_value` stays in the table).
//! Each row also says how many models per group would give 80 % power for its observed effect
//! ([`attn_spectra::stats::power`]). The rows are written to `hypothesis/result.parquet` with
//! exactly the columns of [`attn_spectra::dataset::schema::hypothesis`]. The size-controlled
//! test of the same plan is in [`crate::size`].

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use attn_spectra::MatrixKind;
use attn_spectra::dataset::{self as ds, schema};
use attn_spectra::pipeline::TestSpec;
use attn_spectra::stats::multiplicity::{benjamini_hochberg, holm};
use attn_spectra::stats::power::{TARGET_POWER, power_statement};
use attn_spectra::stats::{self, Alternative};

use crate::{Dataset, Result, SqlError, TOOL_VERSION};

/// The SQL computing the per-model means the tests compare.
pub const MODEL_MEANS_SQL: &str = include_str!("../queries/model_means.sql");

/// What `pipeline run test` tests. The default is the seed's study (see [`Default`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestPlan {
    /// Metric columns of `matrices/` (see [`schema::METRIC_COLUMNS`]).
    pub metrics: Vec<String>,
    /// Matrix kinds (see [`MatrixKind`]).
    pub kinds: Vec<String>,
    /// Labs whose models form group A.
    pub group_a_labs: Vec<String>,
    /// Further models (Hub ids) in group A.
    pub group_a_models: Vec<String>,
    /// H1, about group A relative to group B.
    pub alternative: Alternative,
    /// The significance level of the verdict.
    pub alpha: f64,
}

impl Default for TestPlan {
    /// The seed's test, EleutherAI (the "Dampeners") against all others with H1: EleutherAI
    /// < Others, on the spectral norm of W_V and W_O, extended to the stable rank, the
    /// effective rank and the power-law alpha, and to the OV circuits; alpha 0.05.
    fn default() -> Self {
        TestPlan {
            metrics: ["spectral_norm", "stable_rank", "effective_rank", "alpha"]
                .map(String::from)
                .to_vec(),
            kinds: ["W_V", "W_O", "OV"].map(String::from).to_vec(),
            group_a_labs: vec!["EleutherAI".into()],
            group_a_models: vec![],
            alternative: Alternative::Less,
            alpha: 0.05,
        }
    }
}

impl TestPlan {
    /// The plan of a pipeline file's `[test]` section.
    pub fn from_spec(spec: &TestSpec) -> Result<TestPlan> {
        let plan = TestPlan {
            metrics: spec.metrics.clone(),
            kinds: spec.kinds.iter().map(|k| k.name().to_string()).collect(),
            group_a_labs: spec.group_a.labs.clone(),
            group_a_models: spec.group_a.models.clone(),
            alternative: spec
                .alternative
                .parse()
                .map_err(|e: stats::StatsError| SqlError::Invalid(format!("test plan: {e}")))?,
            alpha: spec.alpha,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the metrics, kinds, groups and alpha.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(SqlError::Invalid(format!("test plan: {m}")));
        if self.metrics.is_empty() || self.kinds.is_empty() {
            return invalid("needs at least one metric and one kind".into());
        }
        for m in &self.metrics {
            if !schema::METRIC_COLUMNS.contains(&m.as_str()) {
                return invalid(format!(
                    "unknown metric `{m}` (one of: {})",
                    schema::METRIC_COLUMNS.join(", ")
                ));
            }
        }
        for k in &self.kinds {
            if let Err(e) = k.parse::<MatrixKind>() {
                return invalid(e);
            }
        }
        if self.group_a_labs.is_empty() && self.group_a_models.is_empty() {
            return invalid("group A is empty: give group_a_labs or group_a_models".into());
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return invalid(format!("alpha must lie in (0, 1), not {}", self.alpha));
        }
        Ok(())
    }

    /// The name of group A: its labs and models, comma-separated.
    pub fn group_a_name(&self) -> String {
        self.group_a_labs
            .iter()
            .chain(&self.group_a_models)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The name of group B.
pub const GROUP_B_NAME: &str = "Others";

/// One test: a row of `hypothesis/` plus the models behind it.
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
    /// "SUPPORTED" when `p_holm` < alpha, else "NOT SUPPORTED".
    pub verdict: String,
    /// `p_value` adjusted by Holm's method over the rows of this run.
    pub p_holm: f64,
    /// `p_value` adjusted by Benjamini-Hochberg over the rows of this run.
    pub p_bh: f64,
    /// Cohen's d of A against B (pooled standard deviation); `None` when undefined.
    pub cohens_d: Option<f64>,
    /// Models per group for 80 % power of the Mann-Whitney test at alpha for this effect;
    /// `None` when the effect is zero, undefined or against the alternative.
    pub models_per_group_80: Option<i64>,
    /// Not stored: "model@revision" of each group, and how the p-values were computed.
    pub models_a: Vec<String>,
    pub models_b: Vec<String>,
    pub mwu_method: stats::MwuMethod,
    pub permutation_resamples: u64,
    pub permutation_exact: bool,
}

pub const SUPPORTED: &str = "SUPPORTED";
pub const NOT_SUPPORTED: &str = "NOT SUPPORTED";

/// Per-model means for one kind: (model, revision, lab, dimensions, value of each metric).
pub(crate) struct MeansTable {
    batches: Vec<RecordBatch>,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            SqlError::Invalid(format!(
                "queries/model_means.sql: column `{name}` is missing or has an unexpected type"
            ))
        })
}

pub(crate) struct Observation {
    pub(crate) model: String,
    pub(crate) revision: String,
    pub(crate) lab: Option<String>,
    pub(crate) value: f64,
    /// The model's dimensions from `models/` (for the size covariates).
    pub(crate) n_layers: i32,
    pub(crate) d_model: i32,
    pub(crate) n_heads: i32,
    pub(crate) n_kv_heads: i32,
    pub(crate) d_head: i32,
}

impl MeansTable {
    /// Runs `queries/model_means.sql` over the dataset.
    pub(crate) fn load(dataset: &Dataset) -> Result<MeansTable> {
        Ok(MeansTable {
            batches: dataset
                .run_script(MODEL_MEANS_SQL)
                .map_err(|e| SqlError::File {
                    file: "crates/sql/queries/model_means.sql".into(),
                    source: Box::new(e),
                })?
                .batches,
        })
    }

    pub(crate) fn observations(&self, metric: &str, kind: &str) -> Result<Vec<Observation>> {
        let mut out = Vec::new();
        for batch in &self.batches {
            let models = column::<StringArray>(batch, "model")?;
            let revisions = column::<StringArray>(batch, "revision")?;
            let labs = column::<StringArray>(batch, "lab")?;
            let kinds = column::<StringArray>(batch, "kind")?;
            let values = column::<Float64Array>(batch, metric)?;
            let dims = ["n_layers", "d_model", "n_heads", "n_kv_heads", "d_head"]
                .map(|name| column::<Int32Array>(batch, name));
            let [n_layers, d_model, n_heads, n_kv_heads, d_head] = dims;
            let (n_layers, d_model, n_heads, n_kv_heads, d_head) =
                (n_layers?, d_model?, n_heads?, n_kv_heads?, d_head?);
            for i in 0..batch.num_rows() {
                if kinds.value(i) != kind || values.is_null(i) {
                    continue;
                }
                out.push(Observation {
                    model: models.value(i).to_string(),
                    revision: revisions.value(i).to_string(),
                    lab: (!labs.is_null(i)).then(|| labs.value(i).to_string()),
                    value: values.value(i),
                    n_layers: n_layers.value(i),
                    d_model: d_model.value(i),
                    n_heads: n_heads.value(i),
                    n_kv_heads: n_kv_heads.value(i),
                    d_head: d_head.value(i),
                });
            }
        }
        Ok(out)
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Runs the plan's tests over the dataset at `dataset_dir`, writes them to
/// `hypothesis/result.parquet` and returns them, in plan order (metrics, then kinds).
pub fn run_tests(dataset_dir: &Path, plan: &TestPlan) -> Result<Vec<HypothesisRow>> {
    plan.validate()?;
    let dataset = Dataset::open(dataset_dir)?;
    let means = MeansTable::load(&dataset)?;
    let mut rows = Vec::new();
    for metric in &plan.metrics {
        for kind in &plan.kinds {
            rows.push(test_one(&means, plan, metric, kind)?);
        }
    }
    adjust(&mut rows, plan.alpha)?;
    write_hypothesis(dataset.dir(), &rows, plan)?;
    Ok(rows)
}

/// Fills `p_holm`, `p_bh` and the verdict: the family is `rows`.
fn adjust(rows: &mut [HypothesisRow], alpha: f64) -> Result<()> {
    let p: Vec<f64> = rows.iter().map(|r| r.p_value).collect();
    let invalid = |e: stats::multiplicity::MultiplicityError| {
        SqlError::Invalid(format!("multiplicity correction: {e}"))
    };
    let h = holm(&p).map_err(invalid)?;
    let b = benjamini_hochberg(&p).map_err(invalid)?;
    for ((r, h), b) in rows.iter_mut().zip(h).zip(b) {
        r.p_holm = h;
        r.p_bh = b;
        r.verdict = if h < alpha { SUPPORTED } else { NOT_SUPPORTED }.to_string();
    }
    Ok(())
}

fn test_one(
    means: &MeansTable,
    plan: &TestPlan,
    metric: &str,
    kind: &str,
) -> Result<HypothesisRow> {
    let fail = |message: String| SqlError::Test {
        metric: metric.to_string(),
        kind: kind.to_string(),
        message,
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut models_a = Vec::new();
    let mut models_b = Vec::new();
    for obs in means.observations(metric, kind)? {
        let in_a = obs
            .lab
            .as_ref()
            .is_some_and(|l| plan.group_a_labs.contains(l))
            || plan.group_a_models.contains(&obs.model);
        let name = format!("{}@{}", obs.model, obs.revision);
        if obs.value.is_nan() {
            return Err(fail(format!("the mean over layers of {name} is NaN")));
        }
        if in_a {
            a.push(obs.value);
            models_a.push(name);
        } else {
            b.push(obs.value);
            models_b.push(name);
        }
    }
    let group_a = plan.group_a_name();
    for (values, group) in [(&a, group_a.as_str()), (&b, GROUP_B_NAME)] {
        if values.is_empty() {
            return Err(fail(format!(
                "group {group} has no model with a value (is the kind extracted?)"
            )));
        }
    }
    let mwu = stats::mann_whitney(&a, &b, plan.alternative).map_err(|e| fail(e.to_string()))?;
    let perm = stats::permutation_test_mean_diff(&a, &b, plan.alternative)
        .map_err(|e| fail(e.to_string()))?;
    let power = power_statement(&a, &b, plan.alpha, plan.alternative);
    Ok(HypothesisRow {
        metric: metric.to_string(),
        kind: kind.to_string(),
        group_a,
        group_b: GROUP_B_NAME.to_string(),
        n_a: a.len() as i64,
        n_b: b.len() as i64,
        mean_a: mean(&a),
        mean_b: mean(&b),
        alternative: plan.alternative.as_str().to_string(),
        u_statistic: mwu.u_a,
        p_value: mwu.p_value,
        p_two_sided: mwu.p_two_sided,
        rank_biserial: mwu.rank_biserial,
        p_permutation: perm.p_value,
        // Set by `adjust` once the family is complete.
        verdict: NOT_SUPPORTED.to_string(),
        p_holm: f64::NAN,
        p_bh: f64::NAN,
        cohens_d: stats::power::cohens_d(&a, &b),
        models_per_group_80: power.map(|p| i64::try_from(p.models_per_group).unwrap_or(i64::MAX)),
        models_a,
        models_b,
        mwu_method: mwu.method,
        permutation_resamples: perm.resamples,
        permutation_exact: perm.exact,
    })
}

/// The rows as a batch of the `hypothesis/` schema.
pub fn to_batch(rows: &[HypothesisRow]) -> Result<RecordBatch> {
    let strings = |f: fn(&HypothesisRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let ints = |f: fn(&HypothesisRow) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let floats = |f: fn(&HypothesisRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
    };
    let columns = vec![
        strings(|r| &r.metric),
        strings(|r| &r.kind),
        strings(|r| &r.group_a),
        strings(|r| &r.group_b),
        ints(|r| r.n_a),
        ints(|r| r.n_b),
        floats(|r| r.mean_a),
        floats(|r| r.mean_b),
        strings(|r| &r.alternative),
        floats(|r| r.u_statistic),
        floats(|r| r.p_value),
        floats(|r| r.p_two_sided),
        floats(|r| r.rank_biserial),
        floats(|r| r.p_permutation),
        strings(|r| &r.verdict),
        floats(|r| r.p_holm),
        floats(|r| r.p_bh),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.cohens_d))),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.models_per_group_80),
        )),
    ];
    RecordBatch::try_new(schema::hypothesis(), columns).map_err(|e| {
        SqlError::Dataset(ds::DatasetError::Arrow {
            table: ds::HYPOTHESIS.into(),
            source: e,
        })
    })
}

/// Writes `rows` to `<dataset>/hypothesis/result.parquet` (atomically), with the plan and
/// the tool version in the file's key-value metadata.
pub fn write_hypothesis(dataset_dir: &Path, rows: &[HypothesisRow], plan: &TestPlan) -> Result<()> {
    let batch = to_batch(rows)?;
    let plan_json =
        serde_json::to_string(plan).map_err(|e| SqlError::Invalid(format!("test plan: {e}")))?;
    let metadata = vec![
        ("test_plan".to_string(), plan_json),
        ("sql_file".to_string(), "model_means.sql".to_string()),
        ("tool_version".to_string(), TOOL_VERSION.to_string()),
    ];
    let path = ds::table_file(dataset_dir, ds::HYPOTHESIS, "result");
    ds::write_parquet_atomic(&path, schema::hypothesis(), &[batch], &metadata)?;
    Ok(())
}

/// "spectral_norm" -> "Spectral Norm".
fn title(metric: &str) -> String {
    metric
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The rows as text in the seed's style, one block per test, each with a line on what the
/// group sizes allow: the smallest one-sided p-value of the exact test is
/// 1 / C(n_A + n_B, n_A) (1/35 for 3 against 4), so with few models a test may be unable to
/// reach the threshold whatever the data.
pub fn render_text(rows: &[HypothesisRow], alpha: f64) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return "No hypothesis tests.\n".to_string();
    };
    let alt = first.alternative.parse::<Alternative>().unwrap_or_default();
    out.push_str(&format!(
        "HYPOTHESIS TEST: {} vs {} (H1: {} {} {}, Mann-Whitney U, alpha = {alpha})\n",
        first.group_a,
        first.group_b,
        first.group_a,
        alt.symbol(),
        first.group_b
    ));
    for r in rows {
        let alt = r.alternative.parse::<Alternative>().unwrap_or_default();
        let width = r.group_a.len().max(r.group_b.len()) + " mean:".len();
        out.push_str(&format!("\n{} {}:\n", r.kind, title(&r.metric)));
        out.push_str(&format!(
            "  {:<width$} {:.4}\n",
            format!("{} mean:", r.group_a),
            r.mean_a
        ));
        out.push_str(&format!(
            "  {:<width$} {:.4}\n",
            format!("{} mean:", r.group_b),
            r.mean_b
        ));
        out.push_str(&format!(
            "  Mann-Whitney U:  {:.2}, p = {:.4} (two-sided p = {:.4}, rank-biserial r = {:.3})\n",
            r.u_statistic, r.p_value, r.p_two_sided, r.rank_biserial
        ));
        out.push_str(&format!(
            "  Permutation test (difference of means): p = {:.4}\n",
            r.p_permutation
        ));
        out.push_str(&format!(
            "  Adjusted over the {} tests of this run: Holm p = {:.4}, Benjamini-Hochberg p = {:.4}\n",
            rows.len(),
            r.p_holm,
            r.p_bh
        ));
        out.push_str(&format!(
            "  H1 ({} {} {}): {} (Holm-adjusted p {} alpha)\n",
            r.group_a,
            alt.symbol(),
            r.group_b,
            r.verdict,
            if r.p_holm < alpha { "<" } else { ">=" }
        ));
        out.push_str(&format!("  {}\n", power_line(r.n_a, r.n_b, alt, alpha)));
        out.push_str(&format!("  {}\n", sample_size_line(r, alpha)));
    }
    out
}

/// The power statement: for the observed effect, the models per group that would give 80 %
/// power at alpha.
pub fn sample_size_line(r: &HypothesisRow, alpha: f64) -> String {
    let pct = (TARGET_POWER * 100.0).round();
    match (r.cohens_d, r.models_per_group_80) {
        (Some(d), Some(n)) => format!(
            "Sample size: for the observed effect (Cohen's d = {d:.2}) about {n} models per group would give {pct} % power at alpha = {alpha} (Mann-Whitney, from the t-test's size by its 3/pi efficiency); this run has {} and {}",
            r.n_a, r.n_b
        ),
        (Some(d), None) => format!(
            "Sample size: the observed effect (Cohen's d = {d:.2}) is zero or points against H1; no number of models gives {pct} % power for it"
        ),
        _ => "Sample size: the effect size is undefined (no variance within the groups or too few models)".to_string(),
    }
}

/// What the group sizes allow: the smallest p-value of the exact Mann-Whitney test.
pub fn power_line(n_a: i64, n_b: i64, alternative: Alternative, alpha: f64) -> String {
    let (Ok(na), Ok(nb)) = (usize::try_from(n_a), usize::try_from(n_b)) else {
        return "Power: no data".to_string();
    };
    let Some(one_sided) = stats::smallest_exact_p(na, nb) else {
        return "Power: a group is empty".to_string();
    };
    let combos = (1.0 / one_sided).round();
    let (smallest, label) = match alternative {
        Alternative::TwoSided => ((2.0 * one_sided).min(1.0), "two-sided"),
        _ => (one_sided, "one-sided"),
    };
    let bound = if alternative == Alternative::TwoSided {
        format!("2/{combos}")
    } else {
        format!("1/{combos}")
    };
    let reach = if smallest >= alpha {
        format!("the test cannot reach p < {alpha} at all, whatever the data")
    } else {
        format!("only orderings at least this extreme reach p < {alpha}")
    };
    format!(
        "Power: with {n_a} vs {n_b} models the smallest attainable {label} p is {bound} = {smallest:.4}; {reach}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_is_the_seeds() {
        let plan = TestPlan::default();
        plan.validate().unwrap();
        assert_eq!(plan.group_a_labs, vec!["EleutherAI"]);
        assert_eq!(plan.alternative, Alternative::Less);
        assert_eq!(plan.metrics[0], "spectral_norm");
        assert_eq!(plan.kinds[..2], ["W_V", "W_O"]);
    }

    #[test]
    fn the_pipeline_default_is_the_same_plan() {
        assert_eq!(
            TestPlan::from_spec(&TestSpec::default()).unwrap(),
            TestPlan::default()
        );
    }

    #[test]
    fn plans_are_validated() {
        let mut plan = TestPlan {
            metrics: vec!["spectral".into()],
            ..TestPlan::default()
        };
        assert!(
            plan.validate()
                .unwrap_err()
                .to_string()
                .contains("spectral")
        );
        plan.metrics = vec!["alpha".into()];
        plan.kinds = vec!["W_X".into()];
        assert!(plan.validate().unwrap_err().to_string().contains("W_X"));
        plan.kinds = vec!["OV".into()];
        plan.alpha = 1.5;
        assert!(plan.validate().is_err());
        plan.alpha = 0.05;
        plan.group_a_labs.clear();
        assert!(plan.validate().is_err());
    }

    #[test]
    fn plans_read_from_toml_style_json() {
        let plan: TestPlan = serde_json::from_str(
            r#"{"metrics": ["alpha"], "alternative": "two-sided", "group_a_labs": ["Meta"]}"#,
        )
        .unwrap();
        assert_eq!(plan.alternative, Alternative::TwoSided);
        assert_eq!(plan.kinds, TestPlan::default().kinds);
        assert!(serde_json::from_str::<TestPlan>(r#"{"metric": ["alpha"]}"#).is_err());
    }

    #[test]
    fn power_line_for_the_seed_design() {
        let line = power_line(3, 4, Alternative::Less, 0.05);
        assert!(line.contains("1/35 = 0.0286"), "{line}");
        let line = power_line(3, 4, Alternative::TwoSided, 0.05);
        assert!(line.contains("2/35 = 0.0571"), "{line}");
        assert!(line.contains("cannot reach"), "{line}");
        let line = power_line(2, 3, Alternative::Less, 0.05);
        assert!(
            line.contains("1/10 = 0.1000") && line.contains("cannot reach"),
            "{line}"
        );
    }

    #[test]
    fn metric_titles() {
        assert_eq!(title("spectral_norm"), "Spectral Norm");
        assert_eq!(title("alpha"), "Alpha");
    }
}
