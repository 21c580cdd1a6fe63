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

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use attn_spectra::dataset::{self as ds, schema};
use attn_spectra::stats::multiplicity::{benjamini_hochberg, holm};
use attn_spectra::stats::regression::{Covariate, size_controlled_test};

use crate::hypothesis::{GROUP_B_NAME, MeansTable, NOT_SUPPORTED, Observation, SUPPORTED};
use crate::{Dataset, Result, SqlError, TOOL_VERSION, TestPlan};

/// The level of the bootstrap interval.
pub const CI_LEVEL: f64 = 0.95;

/// The verdict of a row whose test could not be run.
pub const NOT_TESTED: &str = "NOT TESTED";

/// One row of `hypothesis_size/`.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeRow {
    pub metric: String,
    pub kind: String,
    pub group_a: String,
    pub group_b: String,
    pub n_a: i64,
    pub n_b: i64,
    pub alternative: String,
    /// The covariates used, joined by `+` (empty when none could be used).
    pub covariates: String,
    pub lab_coefficient: Option<f64>,
    pub lab_std_error: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_level: Option<f64>,
    pub t_statistic: Option<f64>,
    /// The Freedman-Lane p-value.
    pub p_value: Option<f64>,
    pub permutations: Option<i64>,
    pub p_holm: Option<f64>,
    pub p_bh: Option<f64>,
    pub verdict: String,
    /// Why the test could not be run.
    pub note: Option<String>,
}

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
pub fn run_size_tests(dataset_dir: &Path, plan: &TestPlan) -> Result<Vec<SizeRow>> {
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
    write_size(dataset.dir(), &rows, plan)?;
    Ok(rows)
}

fn test_one(means: &MeansTable, plan: &TestPlan, metric: &str, kind: &str) -> Result<SizeRow> {
    let obs = means.observations(metric, kind)?;
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
    let mut row = SizeRow {
        metric: metric.to_string(),
        kind: kind.to_string(),
        group_a: plan.group_a_name(),
        group_b: GROUP_B_NAME.to_string(),
        n_a,
        n_b: obs.len() as i64 - n_a,
        alternative: plan.alternative.as_str().to_string(),
        covariates: String::new(),
        lab_coefficient: None,
        lab_std_error: None,
        ci_low: None,
        ci_high: None,
        ci_level: None,
        t_statistic: None,
        p_value: None,
        permutations: None,
        p_holm: None,
        p_bh: None,
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
            row.lab_coefficient = Some(r.coefficient);
            row.lab_std_error = Some(r.std_error);
            row.ci_low = Some(r.ci_low);
            row.ci_high = Some(r.ci_high);
            row.ci_level = Some(r.ci_level);
            row.t_statistic = Some(r.t_statistic);
            row.p_value = Some(r.p_value);
            row.permutations = Some(r.permutations as i64);
        }
        Err(e) => row.note = Some(e.to_string()),
    }
    Ok(row)
}

/// Holm and BH over the rows with a p-value; verdicts from the Holm-adjusted p.
fn adjust(rows: &mut [SizeRow], alpha: f64) -> Result<()> {
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some())
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| rows[i].p_value).collect();
    let invalid = |e: attn_spectra::stats::multiplicity::MultiplicityError| {
        SqlError::Invalid(format!("multiplicity correction (hypothesis_size): {e}"))
    };
    let h = holm(&p).map_err(invalid)?;
    let b = benjamini_hochberg(&p).map_err(invalid)?;
    for (k, &i) in tested.iter().enumerate() {
        rows[i].p_holm = Some(h[k]);
        rows[i].p_bh = Some(b[k]);
        rows[i].verdict = if h[k] < alpha {
            SUPPORTED
        } else {
            NOT_SUPPORTED
        }
        .to_string();
    }
    Ok(())
}

/// The rows as a batch of the `hypothesis_size/` schema.
pub fn to_batch(rows: &[SizeRow]) -> Result<RecordBatch> {
    let strings = |f: fn(&SizeRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let ints = |f: fn(&SizeRow) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from_iter(rows.iter().map(f)))
    };
    let floats = |f: fn(&SizeRow) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(rows.iter().map(f)))
    };
    let columns = vec![
        strings(|r| &r.metric),
        strings(|r| &r.kind),
        strings(|r| &r.group_a),
        strings(|r| &r.group_b),
        ints(|r| Some(r.n_a)),
        ints(|r| Some(r.n_b)),
        strings(|r| &r.alternative),
        strings(|r| &r.covariates),
        floats(|r| r.lab_coefficient),
        floats(|r| r.lab_std_error),
        floats(|r| r.ci_low),
        floats(|r| r.ci_high),
        floats(|r| r.ci_level),
        floats(|r| r.t_statistic),
        floats(|r| r.p_value),
        ints(|r| r.permutations),
        floats(|r| r.p_holm),
        floats(|r| r.p_bh),
        strings(|r| &r.verdict),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.note.as_deref()))),
    ];
    RecordBatch::try_new(schema::hypothesis_size(), columns).map_err(|e| {
        SqlError::Dataset(ds::DatasetError::Arrow {
            table: ds::HYPOTHESIS_SIZE.into(),
            source: e,
        })
    })
}

/// Writes `rows` to `<dataset>/hypothesis_size/result.parquet` (atomically), with the plan,
/// the permutation and bootstrap counts and the tool version in the key-value metadata.
pub fn write_size(dataset_dir: &Path, rows: &[SizeRow], plan: &TestPlan) -> Result<()> {
    use attn_spectra::stats::regression as reg;
    let batch = to_batch(rows)?;
    let plan_json =
        serde_json::to_string(plan).map_err(|e| SqlError::Invalid(format!("test plan: {e}")))?;
    let metadata = vec![
        ("test_plan".to_string(), plan_json),
        ("sql_file".to_string(), "model_means.sql".to_string()),
        ("permutations".to_string(), reg::PERMUTATIONS.to_string()),
        (
            "permutation_seed".to_string(),
            format!("{:#x}", reg::FREEDMAN_LANE_SEED),
        ),
        (
            "bootstrap_resamples".to_string(),
            reg::BOOTSTRAP_RESAMPLES.to_string(),
        ),
        (
            "bootstrap_seed".to_string(),
            format!("{:#x}", reg::BOOTSTRAP_SEED),
        ),
        ("tool_version".to_string(), TOOL_VERSION.to_string()),
    ];
    let path = ds::table_file(dataset_dir, ds::HYPOTHESIS_SIZE, "result");
    ds::write_parquet_atomic(&path, schema::hypothesis_size(), &[batch], &metadata)?;
    Ok(())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// The rows as text, one line per test.
pub fn render_size_text(rows: &[SizeRow], alpha: f64) -> String {
    let Some(first) = rows.first() else {
        return "No size-controlled tests.\n".to_string();
    };
    let mut out = format!(
        "SIZE-CONTROLLED TEST: {} vs {} at equal size (OLS on size covariates and a lab indicator; Freedman-Lane permutation p, {} permutations; {:.0} % residual-bootstrap interval; verdict from the Holm-adjusted p < {alpha})\n",
        first.group_a,
        first.group_b,
        attn_spectra::stats::regression::PERMUTATIONS,
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
