//! What the report computes from the loaded tables: per-model series over layers, the seed
//! notebook's per-model means and (population) standard deviations, and lab averages.

use std::collections::BTreeMap;

use attn_spectra::MatrixKind;
use attn_spectra::dataset::{MatrixRow, ModelRow};
use attn_spectra::spectral::Metric;

use crate::load::Dataset;
use crate::style::Style;

/// One model of the report, in report order, with its drawing style.
#[derive(Clone, Debug)]
pub struct ReportModel<'a> {
    pub info: &'a ModelRow,
    pub style: Style,
    /// The model's matrices rows.
    pub rows: Vec<&'a MatrixRow>,
    /// Short display name: the last path component of the id, with `@revision` when the same
    /// id appears at several revisions.
    pub short: String,
    /// The id, with `@revision` when the same id appears at several revisions.
    pub id: String,
}

impl ReportModel<'_> {
    /// The lab, or "(no lab)".
    pub fn lab(&self) -> &str {
        self.info.lab.as_deref().unwrap_or(NO_LAB)
    }

    /// The legend label, as the seed writes it: `name (lab)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.short, self.lab())
    }

    /// Whether any row of this kind exists.
    pub fn has_kind(&self, kind: MatrixKind) -> bool {
        self.rows.iter().any(|r| r.key.kind == kind)
    }
}

/// The lab name used for models without one.
pub const NO_LAB: &str = "(no lab)";

/// How per-layer values are formed from the rows of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    /// The whole-layer matrix (head IS NULL).
    Whole,
    /// The mean over heads (rows with a head) of the layer.
    MeanOverHeads,
}

/// A per-layer quantity of one matrix kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    pub kind: MatrixKind,
    pub metric: Metric,
    pub agg: Agg,
    /// Divide by min(rows, cols): an effective rank as a fraction of the full rank.
    pub per_full_rank: bool,
}

impl Quantity {
    pub const fn whole(kind: MatrixKind, metric: Metric) -> Quantity {
        Quantity {
            kind,
            metric,
            agg: Agg::Whole,
            per_full_rank: false,
        }
    }

    pub const fn head_mean(kind: MatrixKind, metric: Metric) -> Quantity {
        Quantity {
            kind,
            metric,
            agg: Agg::MeanOverHeads,
            per_full_rank: false,
        }
    }

    pub const fn normalised(self) -> Quantity {
        Quantity {
            per_full_rank: true,
            ..self
        }
    }

    fn value(&self, row: &MatrixRow) -> Option<f64> {
        let v = row.metric(self.metric)?;
        if self.per_full_rank {
            let full = row.rows.min(row.cols);
            (full > 0).then(|| v / full as f64)
        } else {
            Some(v)
        }
    }
}

/// The per-layer values of a quantity for layers 0..n_layers (missing layers are `None`).
pub fn layer_series(m: &ReportModel, q: Quantity) -> Vec<Option<f64>> {
    let n = m.info.n_layers;
    let mut sums = vec![(0.0, 0usize); n];
    for r in &m.rows {
        if r.key.kind != q.kind {
            continue;
        }
        let wanted = match q.agg {
            Agg::Whole => r.key.head.is_none(),
            Agg::MeanOverHeads => r.key.head.is_some(),
        };
        let layer = r.key.layer;
        if !wanted || layer >= n {
            continue;
        }
        if let Some(v) = q.value(r) {
            sums[layer].0 += v;
            sums[layer].1 += 1;
        }
    }
    sums.into_iter()
        .map(|(s, c)| (c > 0).then(|| s / c as f64))
        .collect()
}

/// The per-layer values of a quantity with the missing layers left out (the seed's lists).
pub fn present(series: &[Option<f64>]) -> Vec<f64> {
    series.iter().flatten().copied().collect()
}

/// The arithmetic mean; NaN when empty (numpy's `mean` of an empty array).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// The population standard deviation (numpy's `std`, ddof = 0); NaN when empty.
pub fn std_population(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

/// The sample standard deviation (pandas' `std`, ddof = 1); NaN below two values.
pub fn std_sample(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// The mean over layers of a quantity (NaN when the model has none).
pub fn layer_mean(m: &ReportModel, q: Quantity) -> f64 {
    mean(&present(&layer_series(m, q)))
}

/// The models of the dataset in report order: first those named in `styles` (the pipeline's
/// order), then the rest by id and revision. Models without a style get palette colours
/// unlike the others' ([`crate::style::pick_color`]).
/// Matrices rows of models absent from `models/` (incomplete extractions) are left out.
pub fn report_models<'a>(ds: &'a Dataset, styles: &[(String, Style)]) -> Vec<ReportModel<'a>> {
    let mut order: Vec<&ModelRow> = Vec::new();
    for (id, _) in styles {
        for info in ds.models.iter().filter(|i| &i.model == id) {
            if !order.iter().any(|o| std::ptr::eq(*o, info)) {
                order.push(info);
            }
        }
    }
    let mut rest: Vec<&ModelRow> = ds
        .models
        .iter()
        .filter(|i| !order.iter().any(|o| std::ptr::eq(*o, *i)))
        .collect();
    rest.sort_by(|a, b| (&a.model, &a.revision).cmp(&(&b.model, &b.revision)));
    order.extend(rest);

    let mut revisions: BTreeMap<&str, usize> = BTreeMap::new();
    for info in &order {
        *revisions.entry(info.model.as_str()).or_default() += 1;
    }
    let mut by_model: BTreeMap<(&str, &str), Vec<&MatrixRow>> = BTreeMap::new();
    for r in &ds.matrices {
        by_model
            .entry((r.key.model.as_str(), r.key.revision.as_str()))
            .or_default()
            .push(r);
    }
    let mut used: Vec<crate::style::Rgb> = styles.iter().map(|(_, s)| s.color).collect();
    order
        .into_iter()
        .map(|info| {
            let style = match styles.iter().find(|(id, _)| *id == info.model) {
                Some((_, s)) => *s,
                None => {
                    let s = Style {
                        color: crate::style::pick_color(&used),
                        marker: crate::style::Marker::Circle,
                    };
                    used.push(s.color);
                    s
                }
            };
            let last = info.model.rsplit('/').next().unwrap_or(&info.model);
            let several = revisions.get(info.model.as_str()).copied().unwrap_or(0) > 1;
            let suffix = if several {
                format!("@{}", info.revision)
            } else {
                String::new()
            };
            ReportModel {
                info,
                style,
                rows: by_model
                    .remove(&(info.model.as_str(), info.revision.as_str()))
                    .unwrap_or_default(),
                short: format!("{last}{suffix}"),
                id: format!("{}{suffix}", info.model),
            }
        })
        .collect()
}

/// The indices of the checkpoints that count as the models of the study: each model once, at
/// the revision `pipeline run test` uses (crates/sql's model_means.sql and lab_summary.sql):
/// one that is not a `step<N>` branch when it has one, else its largest step, ties broken by
/// revision name. The other revisions of a model appear in its training trajectory.
pub fn counted(models: &[ReportModel]) -> Vec<usize> {
    // Sort key: non-step revisions first, then larger steps, then the revision's name.
    let key = |m: &ReportModel| {
        let step = m
            .info
            .revision
            .strip_prefix("step")
            .and_then(|n| n.parse::<i64>().ok());
        (
            step.map_or(0, |_| 1),
            std::cmp::Reverse(step),
            m.info.revision.clone(),
        )
    };
    let mut best: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in models.iter().enumerate() {
        let e = best.entry(m.info.model.as_str()).or_insert(i);
        if key(m) < key(&models[*e]) {
            *e = i;
        }
    }
    let mut out: Vec<usize> = best.into_values().collect();
    out.sort_unstable();
    out
}

/// The labs in order of first appearance, each with its models' indices; a lab's colour is
/// its first model's (as in the seed's bar chart).
pub fn labs(models: &[ReportModel]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, m) in models.iter().enumerate() {
        match out.iter_mut().find(|(l, _)| l == m.lab()) {
            Some((_, v)) => v.push(i),
            None => out.push((m.lab().to_string(), vec![i])),
        }
    }
    out
}

/// The number of ways to choose `k` of `n` (as f64; exact for the sizes of a study).
pub fn binomial(n: u64, k: u64) -> f64 {
    let k = k.min(n.saturating_sub(k));
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The smallest p-value an exact rank test of `n_a` against `n_b` values can reach, one-sided:
/// 1 / C(n_a + n_b, n_a) (the single most extreme ordering).
pub fn min_p_one_sided(n_a: u64, n_b: u64) -> f64 {
    1.0 / binomial(n_a + n_b, n_a)
}

/// A log-binned density of positive values (eigenvalues λ = σ²): (geometric bin centre,
/// count / (n · bin width)) for the non-empty bins, as `numpy.histogram(x, bins=edges,
/// density=True)` with `edges = numpy.logspace(log10(min), log10(max), bins + 1)`, where
/// bins = round(sqrt(n)) clamped to 8..=50. Zero, negative and non-finite values are left out.
pub fn log_density(values: &[f64]) -> Vec<(f64, f64)> {
    let x: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(0.0, f64::max);
    if hi <= lo {
        return vec![(lo, 1.0)];
    }
    let bins = ((n as f64).sqrt().round() as usize).clamp(8, 50);
    let (l0, l1) = (lo.log10(), hi.log10());
    let edges: Vec<f64> = (0..=bins)
        .map(|i| 10f64.powf(l0 + (l1 - l0) * i as f64 / bins as f64))
        .collect();
    let mut counts = vec![0usize; bins];
    for v in &x {
        // The last bin is closed on the right, as numpy's.
        let i = edges[1..].partition_point(|e| e <= v).min(bins - 1);
        counts[i] += 1;
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| {
            let width = edges[i + 1] - edges[i];
            (
                (edges[i] * edges[i + 1]).sqrt(),
                *c as f64 / (n as f64 * width),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from numpy 2: np.mean, np.std (ddof=0), np.std(ddof=1).
    #[test]
    fn moments_match_numpy() {
        let v = [1.5, 2.25, 7.0, 0.125];
        assert!((mean(&v) - 2.71875).abs() < 1e-15);
        assert!((std_population(&v) - 2.586_586_493_334_41).abs() < 1e-12);
        assert!((std_sample(&v) - 2.986_732_816_417_743_6).abs() < 1e-12);
        assert!(mean(&[]).is_nan() && std_population(&[]).is_nan());
        assert!(std_sample(&[1.0]).is_nan());
    }

    /// C(7, 3) = 35 (3 EleutherAI models against 4 others); C(10, 5) = 252.
    #[test]
    fn smallest_attainable_p() {
        assert_eq!(binomial(7, 3), 35.0);
        assert_eq!(binomial(10, 5), 252.0);
        assert_eq!(binomial(3, 0), 1.0);
        assert!((min_p_one_sided(3, 4) - 1.0 / 35.0).abs() < 1e-15);
    }

    const NUMPY_DENSITY: [f64; 7] = [
        0.2661762075511514,
        0.13725889033599564,
        0.14156038324836667,
        0.0364991696646574,
        0.018821500134993705,
        0.00500491534711433,
        0.002580881037755757,
    ];

    /// numpy 2: x = [0.5, 1, 2, 3, 7, 10, 40, 100, 0 (dropped)];
    /// edges = np.logspace(np.log10(0.5), np.log10(100), 9);
    /// np.histogram(x[x > 0], bins=edges, density=True).
    #[test]
    fn log_density_matches_numpy_histogram() {
        let d = log_density(&[0.5, 1.0, 2.0, 3.0, 7.0, 10.0, 40.0, 100.0, 0.0]);
        let want = NUMPY_DENSITY;
        let got: Vec<f64> = d.iter().map(|p| p.1).collect();
        assert_eq!(got.len(), want.len(), "{d:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-12 * w.abs(), "{g} vs {w}");
        }
        assert!(log_density(&[]).is_empty());
        assert_eq!(log_density(&[2.0, 2.0]), vec![(2.0, 1.0)]);
    }
}
