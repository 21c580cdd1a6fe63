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
//! exactly the columns of [`attn_spectra::dataset::HypothesisRow`]. The size-controlled test
//! of the same plan is in [`crate::size`].

use arrow::array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use attn_spectra::MatrixKind;
use attn_spectra::dataset::hypothesis::{
    FILE_STEM, META_SQL_FILE, META_TEST_PLAN, META_TOOL_VERSION, NOT_SUPPORTED, SUPPORTED,
};
use attn_spectra::dataset::{DatasetDir, HypothesisRow};
use attn_spectra::pipeline::TestPlan;
use attn_spectra::spectral::Metric;
use attn_spectra::stats::multiplicity::{benjamini_hochberg, holm};
use attn_spectra::stats::power::{TARGET_POWER, power_statement};
use attn_spectra::stats::{self, Alternative};

use crate::{Dataset, Result, SqlError, TOOL_VERSION};

/// The SQL computing the per-model means the tests compare.
pub const MODEL_MEANS_SQL: &str = include_str!("../queries/model_means.sql");

/// The name of group B.
pub const GROUP_B_NAME: &str = "Others";

/// One test: its row of `hypothesis/` plus what is not stored (the models behind it, how
/// the p-values were computed).
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    pub row: HypothesisRow,
    /// "model@revision" of each group.
    pub models_a: Vec<String>,
    pub models_b: Vec<String>,
    pub mwu_method: stats::MwuMethod,
    pub permutation_resamples: u64,
    pub permutation_exact: bool,
}

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
            let n_layers = column::<Int32Array>(batch, "n_layers")?;
            let d_model = column::<Int32Array>(batch, "d_model")?;
            let n_heads = column::<Int32Array>(batch, "n_heads")?;
            let n_kv_heads = column::<Int32Array>(batch, "n_kv_heads")?;
            let d_head = column::<Int32Array>(batch, "d_head")?;
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
pub fn run_tests(dataset_dir: impl Into<DatasetDir>, plan: &TestPlan) -> Result<Vec<TestOutcome>> {
    plan.validate()
        .map_err(|e| SqlError::Invalid(format!("test plan: {e}")))?;
    let dataset = Dataset::open(dataset_dir)?;
    let means = MeansTable::load(&dataset)?;
    let mut rows = Vec::new();
    for &metric in &plan.metrics {
        for &kind in &plan.kinds {
            rows.push(test_one(&means, plan, metric, kind)?);
        }
    }
    adjust(&mut rows, plan.alpha)?;
    write_hypothesis(dataset.location(), &rows, plan)?;
    Ok(rows)
}

/// Fills `p_holm`, `p_bh` and the verdict: the family is `tests`.
fn adjust(tests: &mut [TestOutcome], alpha: f64) -> Result<()> {
    let p: Vec<f64> = tests.iter().map(|t| t.row.p_value).collect();
    let invalid = |e: stats::multiplicity::MultiplicityError| {
        SqlError::Invalid(format!("multiplicity correction: {e}"))
    };
    let h = holm(&p).map_err(invalid)?;
    let b = benjamini_hochberg(&p).map_err(invalid)?;
    for ((t, h), b) in tests.iter_mut().zip(h).zip(b) {
        t.row.p_holm = h;
        t.row.p_bh = b;
        t.row.verdict = if h < alpha { SUPPORTED } else { NOT_SUPPORTED }.to_string();
    }
    Ok(())
}

fn test_one(
    means: &MeansTable,
    plan: &TestPlan,
    metric: Metric,
    kind: MatrixKind,
) -> Result<TestOutcome> {
    let fail = |message: String| SqlError::Test {
        metric: metric.to_string(),
        kind: kind.to_string(),
        message,
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut models_a = Vec::new();
    let mut models_b = Vec::new();
    for obs in means.observations(metric.name(), kind.name())? {
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
    let row = HypothesisRow {
        metric: metric.name().to_string(),
        kind: kind.name().to_string(),
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
        cohens_d: stats::power::cohens_d(&a, &b).unwrap_or(f64::NAN),
        models_per_group_80: power.map(|p| i64::try_from(p.models_per_group).unwrap_or(i64::MAX)),
    };
    Ok(TestOutcome {
        row,
        models_a,
        models_b,
        mwu_method: mwu.method,
        permutation_resamples: perm.resamples,
        permutation_exact: perm.exact,
    })
}

/// Writes the tests' rows to `<dataset>/hypothesis/result.parquet` (atomically), with the
/// plan and the tool version in the file's key-value metadata.
pub fn write_hypothesis(
    dataset_dir: impl Into<DatasetDir>,
    tests: &[TestOutcome],
    plan: &TestPlan,
) -> Result<()> {
    let rows: Vec<HypothesisRow> = tests.iter().map(|t| t.row.clone()).collect();
    let plan_json =
        serde_json::to_string(plan).map_err(|e| SqlError::Invalid(format!("test plan: {e}")))?;
    let metadata = vec![
        (META_TEST_PLAN.to_string(), plan_json),
        (META_SQL_FILE.to_string(), "model_means.sql".to_string()),
        (META_TOOL_VERSION.to_string(), TOOL_VERSION.to_string()),
    ];
    dataset_dir
        .into()
        .write_table(FILE_STEM, &rows, &metadata)?;
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
pub fn render_text(tests: &[TestOutcome], alpha: f64) -> String {
    let rows: Vec<&HypothesisRow> = tests.iter().map(|t| &t.row).collect();
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
            tests.len(),
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
    let d = r.cohens_d;
    match r.models_per_group_80 {
        Some(n) if d.is_finite() => format!(
            "Sample size: for the observed effect (Cohen's d = {d:.2}) about {n} models per group would give {pct} % power at alpha = {alpha} (Mann-Whitney, from the t-test's size by its 3/pi efficiency); this run has {} and {}",
            r.n_a, r.n_b
        ),
        None if d.is_finite() => format!(
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
        assert_eq!(plan.metrics[0], Metric::SpectralNorm);
        assert_eq!(plan.kinds[..2], [MatrixKind::WV, MatrixKind::WO]);
    }

    #[test]
    fn plans_are_validated() {
        let unknown = serde_json::from_str::<TestPlan>(r#"{"metrics": ["spectral"]}"#)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("spectral"), "{unknown}");
        let unknown = serde_json::from_str::<TestPlan>(r#"{"kinds": ["W_X"]}"#)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("W_X"), "{unknown}");
        let mut plan = TestPlan {
            alpha: 1.5,
            ..TestPlan::default()
        };
        assert_eq!(plan.validate().unwrap_err().key, "test.alpha");
        plan.alpha = 0.05;
        plan.group_a_labs.clear();
        assert_eq!(plan.validate().unwrap_err().key, "test.group_a");
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
        // The same spellings as a pipeline file's `alternative`.
        let plan: TestPlan = serde_json::from_str(r#"{"alternative": "two_sided"}"#).unwrap();
        assert_eq!(plan.alternative, Alternative::TwoSided);
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
