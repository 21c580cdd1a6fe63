//! The size-controlled lab test of `pipeline run test`, written to `hypothesis_size/`.
//!
//! For each metric and kind of the [`TestPlan`], the per-model values of
//! `queries/model_means.sql` (one observation per model and revision, as in `hypothesis/`)
//! are regressed on size covariates and a group-A indicator
//! ([`attn_spectra::stats::regression::size_controlled_test`]): the lab coefficient is the
//! difference between group A and group B at equal size, tested by a Freedman-Lane permutation
//! test and given a residual-bootstrap 95 % interval.
//!
//! # Covariates
//!
//! Tried in this order, each kept only when it is not constant or collinear with the ones
//! before it and two residual degrees of freedom remain:
//! 1. `log_attn_params`: ln of the attention parameter count from the model's dimensions in
//!    `models/`, n_layers d_model d_head (2 n_heads + 2 n_kv_heads) (the W_Q, W_K, W_V, W_O
//!    weights whose spectra are measured; the MLP width is not in `models/`). Spectral norms
//!    grow with width (the random-matrix bulk edge grows as sqrt(d)), so size is the confounder
//!    the test must remove; the attention parameter count grows as L d^2 and so carries both.
//! 2. `log_layers`: ln n_layers. With the parameter count it separates depth from width
//!    (ln L and ln P span ln L and ln d), since a lab's models can be deep and narrow where
//!    another's are shallow and wide. log(d_model) instead of depth would span the same space;
//!    depth is the one of the two that is not already the dominant term of P.
//!
//! The family for the adjusted p-values is the rows of this table in one run (rows whose test
//! could not be run are left out of the family). The verdict is "SUPPORTED" when the Holm-
//! adjusted Freedman-Lane p-value is below alpha.

use attn_spectra::MatrixKind;
use attn_spectra::dataset::hypothesis::{
    META_SQL_FILE, META_TEST_PLAN, META_TOOL_VERSION, NOT_SUPPORTED, SUPPORTED,
};
use attn_spectra::dataset::hypothesis_size::{
    FILE_STEM, META_BOOTSTRAP_RESAMPLES, META_BOOTSTRAP_SEED, META_PERMUTATION_SEED,
    META_PERMUTATIONS, NOT_TESTED,
};
use attn_spectra::dataset::{DatasetDir, HypothesisSizeRow};
use attn_spectra::spectral::Metric;
use attn_spectra::stats::multiplicity::{benjamini_hochberg, holm};
use attn_spectra::stats::regression::{self as reg, Covariate, size_controlled_test};

use crate::hypothesis::{GROUP_B_NAME, MeansTable, Observation};
use crate::{Dataset, Result, SqlError, TOOL_VERSION, TestPlan};

/// The level of the bootstrap interval.
pub const CI_LEVEL: f64 = 0.95;

/// The attention parameter count of a model from its dimensions.
fn attn_params(o: &Observation) -> f64 {
    let (l, d, h, kv, dh) = (
        f64::from(o.n_layers),
        f64::from(o.d_model),
        f64::from(o.n_heads),
        f64::from(o.n_kv_heads),
        f64::from(o.d_head),
    );
    l * d * dh * (2.0 * h + 2.0 * kv)
}

/// Runs the size-controlled test for every metric and kind of the plan, writes
/// `hypothesis_size/result.parquet` and returns the rows in plan order.
pub fn run_size_tests(
    dataset_dir: impl Into<DatasetDir>,
    plan: &TestPlan,
) -> Result<Vec<HypothesisSizeRow>> {
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
    write_size(dataset.location(), &rows, plan)?;
    Ok(rows)
}

fn test_one(
    means: &MeansTable,
    plan: &TestPlan,
    metric: Metric,
    kind: MatrixKind,
) -> Result<HypothesisSizeRow> {
    let obs = means.observations(metric.name(), kind.name())?;
    let in_a: Vec<bool> = obs
        .iter()
        .map(|o| {
            o.lab
                .as_ref()
                .is_some_and(|l| plan.group_a_labs.contains(l))
                || plan.group_a_models.contains(&o.model)
        })
        .collect();
    let y: Vec<f64> = obs.iter().map(|o| o.value).collect();
    let n_a = in_a.iter().filter(|&&a| a).count() as i64;
    let mut row = HypothesisSizeRow {
        metric: metric.name().to_string(),
        kind: kind.name().to_string(),
        group_a: plan.group_a_name(),
        group_b: GROUP_B_NAME.to_string(),
        n_a,
        n_b: obs.len() as i64 - n_a,
        alternative: plan.alternative.as_str().to_string(),
        covariates: String::new(),
        lab_coefficient: f64::NAN,
        lab_std_error: f64::NAN,
        ci_low: f64::NAN,
        ci_high: f64::NAN,
        ci_level: f64::NAN,
        t_statistic: f64::NAN,
        p_value: f64::NAN,
        permutations: None,
        p_holm: f64::NAN,
        p_bh: f64::NAN,
        verdict: NOT_TESTED.to_string(),
        note: None,
    };
    let bad_dims = obs
        .iter()
        .find(|o| [o.n_layers, o.d_model, o.n_heads, o.n_kv_heads, o.d_head].contains(&0));
    if let Some(o) = bad_dims {
        row.note = Some(format!(
            "{}@{} has a zero dimension in models/: no parameter count",
            o.model, o.revision
        ));
        return Ok(row);
    }
    let candidates = [
        Covariate {
            name: "log_attn_params".into(),
            values: obs.iter().map(|o| attn_params(o).ln()).collect(),
        },
        Covariate {
            name: "log_layers".into(),
            values: obs.iter().map(|o| f64::from(o.n_layers).ln()).collect(),
        },
    ];
    match size_controlled_test(&y, &in_a, &candidates, plan.alternative, CI_LEVEL) {
        Ok(r) => {
            row.covariates = r.covariates.join("+");
            row.lab_coefficient = r.coefficient;
            row.lab_std_error = r.std_error;
            row.ci_low = r.ci_low;
            row.ci_high = r.ci_high;
            row.ci_level = r.ci_level;
            row.t_statistic = r.t_statistic;
            row.p_value = r.p_value;
            row.permutations = Some(r.permutations as i64);
        }
        Err(e) => row.note = Some(e.to_string()),
    }
    Ok(row)
}

/// Holm and BH over the rows with a p-value; verdicts from the Holm-adjusted p.
fn adjust(rows: &mut [HypothesisSizeRow], alpha: f64) -> Result<()> {
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].note.is_none())
        .collect();
    let p: Vec<f64> = tested.iter().map(|&i| rows[i].p_value).collect();
    let invalid = |e: attn_spectra::stats::multiplicity::MultiplicityError| {
        SqlError::Invalid(format!("multiplicity correction (hypothesis_size): {e}"))
    };
    let h = holm(&p).map_err(invalid)?;
    let b = benjamini_hochberg(&p).map_err(invalid)?;
    for (k, &i) in tested.iter().enumerate() {
        rows[i].p_holm = h[k];
        rows[i].p_bh = b[k];
        rows[i].verdict = if h[k] < alpha {
            SUPPORTED
        } else {
            NOT_SUPPORTED
        }
        .to_string();
    }
    Ok(())
}

/// Writes `rows` to `<dataset>/hypothesis_size/result.parquet` (atomically), with the plan,
/// the permutation and bootstrap counts and seeds and the tool version in the metadata.
pub fn write_size(
    dataset_dir: impl Into<DatasetDir>,
    rows: &[HypothesisSizeRow],
    plan: &TestPlan,
) -> Result<()> {
    let plan_json =
        serde_json::to_string(plan).map_err(|e| SqlError::Invalid(format!("test plan: {e}")))?;
    let metadata = vec![
        (META_TEST_PLAN.to_string(), plan_json),
        (META_SQL_FILE.to_string(), "model_means.sql".to_string()),
        (META_PERMUTATIONS.to_string(), reg::PERMUTATIONS.to_string()),
        (
            META_PERMUTATION_SEED.to_string(),
            format!("{:#x}", reg::FREEDMAN_LANE_SEED),
        ),
        (
            META_BOOTSTRAP_RESAMPLES.to_string(),
            reg::BOOTSTRAP_RESAMPLES.to_string(),
        ),
        (
            META_BOOTSTRAP_SEED.to_string(),
            format!("{:#x}", reg::BOOTSTRAP_SEED),
        ),
        (META_TOOL_VERSION.to_string(), TOOL_VERSION.to_string()),
    ];
    dataset_dir.into().write_table(FILE_STEM, rows, &metadata)?;
    Ok(())
}

fn opt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".to_string()
    }
}

/// The rows as text, one block per test.
pub fn render_size_text(rows: &[HypothesisSizeRow], alpha: f64) -> String {
    let Some(first) = rows.first() else {
        return "No size-controlled tests.\n".to_string();
    };
    let mut out = format!(
        "SIZE-CONTROLLED TEST: {} vs {} at equal size (OLS on size covariates and a lab indicator; Freedman-Lane permutation p, {} permutations; {:.0} % residual-bootstrap interval; verdict from the Holm-adjusted p < {alpha})\n",
        first.group_a,
        first.group_b,
        reg::PERMUTATIONS,
        CI_LEVEL * 100.0
    );
    for r in rows {
        out.push_str(&format!("\n{} {}:", r.kind, r.metric));
        match &r.note {
            Some(note) => out.push_str(&format!(" {NOT_TESTED}: {note}\n")),
            None => out.push_str(&format!(
                "\n  covariates: {}; lab coefficient {} [{}, {}], t = {}\n  Freedman-Lane p = {}, Holm p = {}, BH p = {}: {}\n",
                if r.covariates.is_empty() { "none" } else { &r.covariates },
                opt(r.lab_coefficient, 4),
                opt(r.ci_low, 4),
                opt(r.ci_high, 4),
                opt(r.t_statistic, 3),
                opt(r.p_value, 4),
                opt(r.p_holm, 4),
                opt(r.p_bh, 4),
                r.verdict
            )),
        }
    }
    out
}
