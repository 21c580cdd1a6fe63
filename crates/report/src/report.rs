//! Composing the report from a loaded dataset: the figures to draw, the blocks of the
//! document (summary tables, hypothesis results and caveats, provenance) and the seed JSON.

use std::path::Path;

use crate::analysis::{
    self, Quantity, ReportModel, labs, layer_mean, layer_series, log_density, mean,
    min_p_one_sided, present, std_population, std_sample,
};
use crate::document::{Block, html, markdown, number, opt_number};
use crate::figures::{
    Curve, DensityPanel, Figure, FigureSpec, LabBar, Panel, Series, TrajectoryLine,
    TrajectoryPanel, render,
};
use attn_spectra::MatrixKind;
use attn_spectra::dataset::HypothesisRow;
use attn_spectra::dataset::aggregates::{MODEL_SUMMARY, model_summary};
use attn_spectra::spectral::Metric;

use crate::load::{Dataset, TextTable};
use crate::seed_json;
use crate::{FigureFile, ReportError, ReportOptions, ReportOutputs, write_atomic};

/// The version of this crate, recorded in the report.
pub const REPORT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Size of the 2x2 figures (the seed's 14 x 12 inches at 100 dpi).
pub const GRID_SIZE: (u32, u32) = (1400, 1200);

/// Rows of an aggregate table shown before the rest is cut.
const MAX_AGGREGATE_ROWS: usize = 60;

/// A two-by-two figure in the seed's layout: quantity `a` and `b` by layer, their per-lab
/// means as grouped bars, and quantity `d` by layer.
struct GridPlan {
    name: &'static str,
    title: &'static str,
    caption: &'static str,
    a: (Quantity, &'static str, &'static str),
    b: (Quantity, &'static str, &'static str),
    bars: (&'static str, &'static str, &'static str, &'static str),
    d: (Quantity, &'static str, &'static str),
}

const GRIDS: [GridPlan; 3] = [
    GridPlan {
        name: "spectral_norm",
        title: "Restriction map spectral signatures: spectral norm",
        caption: "The seed notebook's figure. Spectral norm (largest singular value) of the \
                  whole-layer W_V and W_O by layer, their mean over layers averaged per lab \
                  (W_V solid, W_O hatched), and the effective rank of W_V by layer. Raw \
                  spectral norms grow with the model width d_model.",
        a: (
            Quantity::whole(MatrixKind::WV, Metric::SpectralNorm),
            "W_V spectral norm (value projection) by layer",
            "spectral norm ||W_V||_2",
        ),
        b: (
            Quantity::whole(MatrixKind::WO, Metric::SpectralNorm),
            "W_O spectral norm (output projection) by layer",
            "spectral norm ||W_O||_2",
        ),
        bars: (
            "Mean spectral norm by lab",
            "mean spectral norm",
            "W_V (value)",
            "W_O (output)",
        ),
        d: (
            Quantity::whole(MatrixKind::WV, Metric::EffectiveRank),
            "W_V effective rank by layer",
            "effective rank",
        ),
    },
    GridPlan {
        name: "stable_rank",
        title: "Scale-free view: stable rank and normalised effective rank",
        caption: "The same panels for scale-free metrics: stable rank ||W||_F^2 / ||W||_2^2 of \
                  the whole-layer W_V and W_O, its per-lab mean, and the effective rank of W_V \
                  divided by its largest possible value min(rows, cols). Multiplying a matrix \
                  by a constant changes none of them.",
        a: (
            Quantity::whole(MatrixKind::WV, Metric::StableRank),
            "W_V stable rank by layer",
            "stable rank of W_V",
        ),
        b: (
            Quantity::whole(MatrixKind::WO, Metric::StableRank),
            "W_O stable rank by layer",
            "stable rank of W_O",
        ),
        bars: (
            "Mean stable rank by lab",
            "mean stable rank",
            "W_V (value)",
            "W_O (output)",
        ),
        d: (
            Quantity::whole(MatrixKind::WV, Metric::EffectiveRank).normalised(),
            "W_V effective rank / min(rows, cols) by layer",
            "normalised effective rank",
        ),
    },
    GridPlan {
        name: "circuits",
        title: "Circuits: OV and QK spectral norms (mean over heads)",
        caption: "Per-head circuits OV = W_O^h W_V^g(h) and QK = (W_Q^h)^T W_K^g(h): the mean \
                  over heads of each layer's spectral norm, its per-lab mean (OV solid, QK \
                  hatched), and the mean over heads of the OV effective rank.",
        a: (
            Quantity::head_mean(MatrixKind::OV, Metric::SpectralNorm),
            "OV circuit spectral norm by layer (mean over heads)",
            "mean over heads of ||OV||_2",
        ),
        b: (
            Quantity::head_mean(MatrixKind::QK, Metric::SpectralNorm),
            "QK circuit spectral norm by layer (mean over heads)",
            "mean over heads of ||QK||_2",
        ),
        bars: (
            "Mean circuit spectral norm by lab",
            "mean spectral norm",
            "OV",
            "QK",
        ),
        d: (
            Quantity::head_mean(MatrixKind::OV, Metric::EffectiveRank),
            "OV effective rank by layer (mean over heads)",
            "mean over heads of effective rank",
        ),
    },
];

fn lines(models: &[ReportModel], (q, title, y): (Quantity, &str, &str), seed_label: bool) -> Panel {
    Panel::Lines {
        title: title.to_string(),
        y_desc: y.to_string(),
        series: models
            .iter()
            .filter(|m| m.has_kind(q.kind))
            .map(|m| Series {
                // The seed's fourth panel labels models without their lab.
                label: if seed_label {
                    m.label()
                } else {
                    m.short.clone()
                },
                style: m.style,
                values: layer_series(m, q),
            })
            .collect(),
    }
}

/// Per-lab mean of the per-model layer means (labs in order of first appearance).
fn lab_bars(models: &[ReportModel], a: Quantity, b: Quantity) -> Vec<LabBar> {
    labs(models)
        .into_iter()
        .map(|(lab, idx)| {
            let per = |q: Quantity| {
                let v: Vec<f64> = idx
                    .iter()
                    .map(|i| layer_mean(&models[*i], q))
                    .filter(|v| v.is_finite())
                    .collect();
                (!v.is_empty()).then(|| mean(&v))
            };
            LabBar {
                lab,
                color: models[idx[0]].style.color,
                a: per(a),
                b: per(b),
            }
        })
        .collect()
}

fn grid_figure(models: &[ReportModel], g: &GridPlan) -> FigureSpec {
    FigureSpec {
        name: g.name.to_string(),
        title: g.title.to_string(),
        caption: g.caption.to_string(),
        size: GRID_SIZE,
        figure: Figure::Grid {
            cols: 2,
            panels: vec![
                lines(models, g.a, true),
                lines(models, g.b, true),
                Panel::Bars {
                    title: g.bars.0.to_string(),
                    y_desc: g.bars.1.to_string(),
                    a_label: g.bars.2.to_string(),
                    b_label: g.bars.3.to_string(),
                    bars: lab_bars(models, g.a.0, g.b.0),
                },
                lines(models, g.d, false),
            ],
        },
    }
}

/// The log-log eigenvalue densities of whole-layer W_V, one panel per lab.
fn density_figure(ds: &Dataset, models: &[ReportModel]) -> Option<FigureSpec> {
    let mut panels = Vec::new();
    for (lab, idx) in labs(models) {
        let curves: Vec<Curve> = idx
            .iter()
            .map(|i| &models[*i])
            .filter_map(|m| {
                let eig: Vec<f64> = ds
                    .spectra
                    .iter()
                    .filter(|s| {
                        s.key.kind == MatrixKind::WV
                            && s.key.model == m.info.model
                            && s.key.revision == m.info.revision
                    })
                    .flat_map(|s| s.singular_values.iter().map(|v| v * v))
                    .collect();
                (!eig.is_empty()).then(|| Curve {
                    label: m.short.clone(),
                    style: m.style,
                    points: log_density(&eig),
                })
            })
            .collect();
        if !curves.is_empty() {
            panels.push(DensityPanel {
                title: format!("{lab}: eigenvalue density of W_V"),
                x_desc: "eigenvalue λ = σ² of W_V (all layers pooled)".into(),
                curves,
            });
        }
    }
    if panels.is_empty() {
        return None;
    }
    let rows = panels.len().div_ceil(2) as u32;
    Some(FigureSpec {
        name: "esd_w_v".into(),
        title: "Empirical spectral densities of W_V by lab (log-log)".into(),
        caption: "Histogram density of the eigenvalues λ = σ² of each model's whole-layer W_V \
                  (all layers pooled; log-spaced bins), on log-log axes: a heavy tail shows as \
                  a straight line, which is what WeightWatcher's power-law exponent alpha fits."
            .into(),
        size: (1400, 80 + 540 * rows),
        figure: Figure::Densities { panels, cols: 2 },
    })
}

/// The training step of a `step<N>` revision (Pythia's branch names).
fn training_step(revision: &str) -> Option<u64> {
    revision.strip_prefix("step")?.parse().ok()
}

/// The kinds and metrics of the trajectory figures.
const TRAJECTORY_KINDS: [(MatrixKind, bool); 3] = [
    (MatrixKind::WV, false),
    (MatrixKind::WO, false),
    (MatrixKind::OV, true),
];
const TRAJECTORY_METRICS: [Metric; 4] = [
    Metric::SpectralNorm,
    Metric::StableRank,
    Metric::EffectiveRank,
    Metric::Alpha,
];

/// For each model present at two or more `step<N>` revisions, each metric against training
/// step + 1 (log axis) for W_V, W_O (whole-layer) and OV (mean over heads), one line per layer
/// shaded by relative depth (the `trajectory` table of `sql/trajectory.sql` holds the same
/// values).
fn trajectory_figures(models: &[ReportModel]) -> Vec<FigureSpec> {
    let mut ids: Vec<&str> = Vec::new();
    for m in models {
        if !ids.contains(&m.info.model.as_str()) {
            ids.push(&m.info.model);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        let mut steps: Vec<(u64, &ReportModel)> = models
            .iter()
            .filter(|m| m.info.model == id)
            .filter_map(|m| Some((training_step(&m.info.revision)?, m)))
            .collect();
        if steps.len() < 2 {
            continue;
        }
        steps.sort_by_key(|(s, _)| *s);
        let n_layers = steps
            .iter()
            .map(|(_, m)| m.info.n_layers)
            .max()
            .unwrap_or(0);
        let mut panels = Vec::new();
        for metric in TRAJECTORY_METRICS {
            for (kind, heads) in TRAJECTORY_KINDS {
                let q = if heads {
                    Quantity::head_mean(kind, metric)
                } else {
                    Quantity::whole(kind, metric)
                };
                let series: Vec<(f64, Vec<Option<f64>>)> = steps
                    .iter()
                    .map(|(s, m)| (*s as f64 + 1.0, layer_series(m, q)))
                    .collect();
                let lines = (0..n_layers)
                    .map(|layer| TrajectoryLine {
                        depth: if n_layers > 1 {
                            layer as f64 / (n_layers - 1) as f64
                        } else {
                            0.0
                        },
                        points: series
                            .iter()
                            .filter_map(|(x, v)| Some((*x, v.get(layer).copied().flatten()?)))
                            .collect(),
                    })
                    .collect();
                panels.push(TrajectoryPanel {
                    title: format!(
                        "{kind} {metric}{}",
                        if heads { " (mean over heads)" } else { "" }
                    ),
                    y_desc: metric.name().to_string(),
                    lines,
                });
            }
        }
        let stem = attn_spectra::dataset::file_stem(id, "trajectory").replace('@', "_");
        let rows = TRAJECTORY_METRICS.len() as u32;
        out.push(FigureSpec {
            name: format!("trajectory_{stem}"),
            title: format!("Training trajectory: {id} at {} steps", steps.len()),
            caption: format!(
                "Each metric of {id} against training step + 1 (log axis; steps {}), for the \
                 whole-layer W_V and W_O and the OV circuits (mean over heads); one line per \
                 layer, shaded by relative depth from light orange (first layer) to dark purple \
                 (last layer). The values are the `trajectory` table's.",
                steps
                    .iter()
                    .map(|(s, _)| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            size: (1800, 80 + 400 * rows),
            figure: Figure::Trajectories { panels, cols: 3 },
        });
    }
    out
}

/// The layer x head heat map of OV spectral norms of one model.
fn heatmap_figure(m: &ReportModel) -> Option<FigureSpec> {
    let (layers, heads) = (m.info.n_layers, m.info.n_heads);
    let mut values = vec![vec![None; heads]; layers];
    let mut any = false;
    for r in &m.rows {
        if r.key.kind != MatrixKind::OV {
            continue;
        }
        let (l, Some(h)) = (r.key.layer, r.key.head) else {
            continue;
        };
        if l < layers && h < heads {
            values[l][h] = r.metric(Metric::SpectralNorm);
            any |= values[l][h].is_some();
        }
    }
    if !any {
        return None;
    }
    let stem = attn_spectra::dataset::file_stem(&m.info.model, &m.info.revision).replace('@', "_");
    Some(FigureSpec {
        name: format!("ov_heads_{stem}"),
        title: format!("OV circuit spectral norm by layer and head: {}", m.id),
        caption: format!(
            "Spectral norm of each head's OV circuit W_O^h W_V^g(h) in {} ({} layers x {} heads).",
            m.id, layers, heads
        ),
        size: (1100, (260 + 34 * layers as u32).clamp(560, 1400)),
        figure: Figure::Heatmap {
            values,
            value_desc: "||OV||_2".into(),
        },
    })
}

fn table(header: &[&str], rows: Vec<Vec<String>>, numeric: &[bool]) -> Block {
    Block::Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        numeric: numeric.to_vec(),
    }
}

fn seed_summary_table(models: &[ReportModel]) -> Block {
    let rows = models
        .iter()
        .map(|m| {
            let ms = |kind: MatrixKind| {
                let v = present(&layer_series(
                    m,
                    Quantity::whole(kind, Metric::SpectralNorm),
                ));
                (number(mean(&v)), number(std_population(&v)))
            };
            let (wv_m, wv_s) = ms(MatrixKind::WV);
            let (wo_m, wo_s) = ms(MatrixKind::WO);
            vec![
                m.short.clone(),
                m.lab().to_string(),
                m.info.heritage.clone().unwrap_or_default(),
                m.info.n_layers.to_string(),
                wv_m,
                wv_s,
                wo_m,
                wo_s,
            ]
        })
        .collect();
    table(
        &[
            "Model", "Lab", "Expected", "Layers", "W_V Mean", "W_V Std", "W_O Mean", "W_O Std",
        ],
        rows,
        &[false, false, false, true, true, true, true, true],
    )
}

const SCALE_FREE: [(&str, Quantity); 6] = [
    (
        "W_V stable rank",
        Quantity::whole(MatrixKind::WV, Metric::StableRank),
    ),
    (
        "W_O stable rank",
        Quantity::whole(MatrixKind::WO, Metric::StableRank),
    ),
    (
        "W_V eff. rank / full",
        Quantity::whole(MatrixKind::WV, Metric::EffectiveRank).normalised(),
    ),
    (
        "W_O eff. rank / full",
        Quantity::whole(MatrixKind::WO, Metric::EffectiveRank).normalised(),
    ),
    ("W_V alpha", Quantity::whole(MatrixKind::WV, Metric::Alpha)),
    (
        "OV stable rank (head mean)",
        Quantity::head_mean(MatrixKind::OV, Metric::StableRank),
    ),
];

fn scale_free_table(models: &[ReportModel]) -> Block {
    let mut header = vec!["Model", "Lab", "d_model"];
    header.extend(SCALE_FREE.iter().map(|(h, _)| *h));
    let rows = models
        .iter()
        .map(|m| {
            let mut r = vec![
                m.short.clone(),
                m.lab().to_string(),
                m.info.d_model.to_string(),
            ];
            r.extend(SCALE_FREE.iter().map(|(_, q)| number(layer_mean(m, *q))));
            r
        })
        .collect();
    let mut numeric = vec![false, false, true];
    numeric.extend([true; 6]);
    table(&header, rows, &numeric)
}

const BASELINES: [(&str, Quantity); 4] = [
    (
        "W_V σ1 / MP edge",
        Quantity::whole(MatrixKind::WV, Metric::SpectralNormOverMp),
    ),
    (
        "W_O σ1 / MP edge",
        Quantity::whole(MatrixKind::WO, Metric::SpectralNormOverMp),
    ),
    (
        "W_V MP softrank",
        Quantity::whole(MatrixKind::WV, Metric::MpSoftrank),
    ),
    (
        "W_O MP softrank",
        Quantity::whole(MatrixKind::WO, Metric::MpSoftrank),
    ),
];

fn baseline_table(models: &[ReportModel]) -> Block {
    let mut header = vec!["Model", "Lab"];
    header.extend(BASELINES.iter().map(|(h, _)| *h));
    let rows = models
        .iter()
        .map(|m| {
            let mut r = vec![m.short.clone(), m.lab().to_string()];
            r.extend(BASELINES.iter().map(|(_, q)| number(layer_mean(m, *q))));
            r
        })
        .collect();
    table(&header, rows, &[false, false, true, true, true, true])
}

fn lab_average_table(models: &[ReportModel]) -> Block {
    // Each model once, at the revision the test uses (as sql/lab_summary.sql).
    let counted = analysis::counted(models);
    // pandas' groupby sorts the labs; std is the sample std (ddof = 1), NaN for one model.
    let mut groups: Vec<(String, Vec<usize>)> = labs(models)
        .into_iter()
        .map(|(lab, idx)| {
            (
                lab,
                idx.into_iter().filter(|i| counted.contains(i)).collect(),
            )
        })
        .filter(|(_, idx): &(String, Vec<usize>)| !idx.is_empty())
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let rows = groups
        .into_iter()
        .map(|(lab, idx)| {
            let vals = |q: Quantity| -> Vec<f64> {
                idx.iter()
                    .map(|i| layer_mean(&models[*i], q))
                    .filter(|v| v.is_finite())
                    .collect()
            };
            let wv = vals(Quantity::whole(MatrixKind::WV, Metric::SpectralNorm));
            let wo = vals(Quantity::whole(MatrixKind::WO, Metric::SpectralNorm));
            let sr = vals(Quantity::whole(MatrixKind::WV, Metric::StableRank));
            vec![
                lab,
                idx.len().to_string(),
                number(mean(&wv)),
                number(std_sample(&wv)),
                number(mean(&wo)),
                number(std_sample(&wo)),
                number(mean(&sr)),
            ]
        })
        .collect();
    table(
        &[
            "Lab",
            "Models",
            "W_V Mean: mean",
            "W_V Mean: std",
            "W_O Mean: mean",
            "W_O Mean: std",
            "W_V stable rank: mean",
        ],
        rows,
        &[false, true, true, true, true, true, true],
    )
}

/// The smallest p an exact rank test can reach for these group sizes and alternative.
fn min_p(n_a: i64, n_b: i64, alternative: &str) -> Option<f64> {
    let (a, b) = (u64::try_from(n_a).ok()?, u64::try_from(n_b).ok()?);
    if a == 0 || b == 0 {
        return None;
    }
    let one = min_p_one_sided(a, b);
    Some(if alternative == "two-sided" {
        (2.0 * one).min(1.0)
    } else {
        one
    })
}

fn hypothesis_blocks(
    rows: &[HypothesisRow],
    alpha: f64,
    blocks: &mut Vec<Block>,
    notes: &mut Vec<String>,
) {
    if rows.is_empty() {
        blocks.push(Block::Paragraph(
            "`hypothesis/` exists but holds no rows.".into(),
        ));
        notes.push("hypothesis/ is empty".into());
        return;
    }
    blocks.push(Block::Paragraph(
        "From `hypothesis/` (written by `pipeline run test`): a Mann-Whitney U test of the \
         per-model means over layers, group A against group B, as in the seed notebook (the \
         alternative of each row is given), with the two-sided p, the rank-biserial correlation \
         and a permutation p."
            .into(),
    ));
    let body = rows
        .iter()
        .map(|r| {
            vec![
                r.metric.clone(),
                r.kind.clone(),
                format!("{} (n={})", r.group_a, r.n_a),
                format!("{} (n={})", r.group_b, r.n_b),
                number(r.mean_a),
                number(r.mean_b),
                r.alternative.clone(),
                number(r.u_statistic),
                number(r.p_value),
                number(r.p_two_sided),
                number(r.rank_biserial),
                number(r.p_permutation),
                number(r.p_holm),
                number(r.p_bh),
                opt_number(min_p(r.n_a, r.n_b, &r.alternative)),
                r.models_per_group_80
                    .map_or_else(|| "-".to_string(), |n| n.to_string()),
                r.verdict.clone(),
            ]
        })
        .collect();
    blocks.push(table(
        &[
            "Metric",
            "Kind",
            "Group A",
            "Group B",
            "Mean A",
            "Mean B",
            "Alternative",
            "U",
            "p",
            "p (two-sided)",
            "Rank-biserial",
            "p (permutation)",
            "p (Holm)",
            "p (BH)",
            "Smallest attainable p",
            "Models per group for 80 % power",
            "Verdict",
        ],
        body,
        &[
            false, false, false, false, true, true, false, true, true, true, true, true, true,
            true, true, true, false,
        ],
    ));
    // The power statement, said plainly.
    let power: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let d = Some(r.cohens_d).filter(|d| d.is_finite())?;
            Some(match r.models_per_group_80 {
                Some(n) => format!(
                    "{} {}: observed Cohen's d = {}; about **{n} models per group** would give \
                     80 % power at α = {alpha} (this run: {} and {}).",
                    r.kind,
                    r.metric,
                    number(d),
                    r.n_a,
                    r.n_b
                ),
                None => format!(
                    "{} {}: observed Cohen's d = {} is zero or points against H1; no number of \
                     models gives 80 % power for it.",
                    r.kind,
                    r.metric,
                    number(d)
                ),
            })
        })
        .collect();
    if !power.is_empty() {
        blocks.push(Block::Paragraph(
            "**Power.** For the effect each test observed, how many models per group a \
             Mann-Whitney test would need for 80 % power (the pooled t-test's size from \
             statsmodels' method, divided by the Mann-Whitney efficiency 3/π):"
                .into(),
        ));
        blocks.push(Block::List(power));
    }
    let mut sizes: Vec<(i64, i64, String)> = rows
        .iter()
        .map(|r| (r.n_a, r.n_b, r.alternative.clone()))
        .collect();
    sizes.sort();
    sizes.dedup();
    let mut caveats: Vec<String> = sizes
        .iter()
        .filter_map(|(a, b, alt)| {
            let p = min_p(*a, *b, alt)?;
            let combos = analysis::binomial((*a + *b) as u64, *a as u64);
            let verdict = if p > alpha {
                format!("larger than α = {alpha}: **no data could make this test significant**")
            } else {
                format!("below α = {alpha}, but only for the single most extreme ordering")
            };
            Some(format!(
                "With n_a = {a} against n_b = {b} models ({alt}), the smallest attainable p of an \
                 exact rank test is {}1/C({}, {a}) = {}{} = {}, {verdict}.",
                if alt == "two-sided" { "2 x " } else { "" },
                a + b,
                if alt == "two-sided" { "2/" } else { "1/" },
                combos,
                number(p)
            ))
        })
        .collect();
    if rows.iter().all(|r| r.p_holm.is_finite()) {
        caveats.push(format!(
            "{} tests form the family: p (Holm) controls the chance of any false SUPPORTED \
             verdict, p (BH) the false discovery rate; the verdict uses the Holm p, the raw p \
             stays in the table.",
            rows.len()
        ));
    } else {
        caveats.push(format!(
            "{} tests are reported without correction for multiple comparisons; at α = {alpha} \
             about {:.1} would come out significant by chance if no effect existed.",
            rows.len(),
            rows.len() as f64 * alpha
        ));
    }
    blocks.push(Block::List(caveats));
}

/// The group sizes of the pipeline's test over the report's models.
fn group_sizes(models: &[ReportModel], opts: &ReportOptions) -> Option<(usize, usize)> {
    let t = opts.test.as_ref()?;
    let in_a = |m: &ReportModel| {
        t.group_a_labs
            .iter()
            .any(|l| m.info.lab.as_deref() == Some(l.as_str()))
            || t.group_a_models.contains(&m.info.model)
    };
    // The test counts each model once, at one revision (crates/sql's model_means.sql).
    let counted = analysis::counted(models);
    let a = counted.iter().filter(|&&i| in_a(&models[i])).count();
    Some((a, counted.len() - a))
}

fn model_summary_check(table: &TextTable, models: &[ReportModel]) -> Option<String> {
    let (mc, vc) = (
        table.column(model_summary::MODEL)?,
        table.column(model_summary::W_V_MEAN)?,
    );
    let rc = table.column(model_summary::REVISION);
    let mut worst: f64 = 0.0;
    let mut compared = 0;
    for (row, nums) in table.rows.iter().zip(&table.numbers) {
        let Some(theirs) = nums[vc] else { continue };
        let Some(m) = models
            .iter()
            .find(|m| m.info.model == row[mc] && rc.is_none_or(|rc| m.info.revision == row[rc]))
        else {
            continue;
        };
        let ours = layer_mean(m, Quantity::whole(MatrixKind::WV, Metric::SpectralNorm));
        if ours.is_finite() {
            worst = worst.max((ours - theirs).abs() / ours.abs().max(f64::MIN_POSITIVE));
            compared += 1;
        }
    }
    (compared > 0).then(|| {
        format!(
            "`{MODEL_SUMMARY}.{}` agrees with the W_V Mean above for {compared} model(s) to a \
             relative difference of at most {worst:.1e}.",
            model_summary::W_V_MEAN
        )
    })
}

fn aggregate_blocks(
    ds: &Dataset,
    models: &[ReportModel],
    blocks: &mut Vec<Block>,
    notes: &mut Vec<String>,
) {
    blocks.push(Block::Heading(2, "Aggregate tables".into()));
    if !ds.missing_aggregates.is_empty() {
        let missing: Vec<String> = ds
            .missing_aggregates
            .iter()
            .map(|t| format!("`{t}/`"))
            .collect();
        let note = format!(
            "Not in the dataset: {} (run `pipeline run aggregate`). The summaries above are \
             computed by the report itself from `matrices/`.",
            missing.join(", ")
        );
        notes.push(note.clone());
        blocks.push(Block::Paragraph(note));
    }
    for t in &ds.aggregates {
        blocks.push(Block::Heading(3, format!("`{}/`", t.name)));
        if t.name == MODEL_SUMMARY
            && let Some(check) = model_summary_check(t, models)
        {
            blocks.push(Block::Paragraph(check));
        }
        let shown: Vec<Vec<String>> = t.rows.iter().take(MAX_AGGREGATE_ROWS).cloned().collect();
        let numeric: Vec<bool> = (0..t.columns.len())
            .map(|c| t.numbers.iter().any(|n| n[c].is_some()))
            .collect();
        if t.rows.len() > MAX_AGGREGATE_ROWS {
            blocks.push(Block::Paragraph(format!(
                "First {MAX_AGGREGATE_ROWS} of {} rows.",
                t.rows.len()
            )));
        }
        blocks.push(Block::Table {
            header: t.columns.clone(),
            rows: shown,
            numeric,
        });
    }
}

fn provenance_blocks(ds: &Dataset, models: &[ReportModel], blocks: &mut Vec<Block>) {
    blocks.push(Block::Heading(2, "Provenance".into()));
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let source = models
        .iter()
        .map(|m| {
            let i = m.info;
            let heads = if i.n_kv_heads != i.n_heads {
                format!("{} (KV {})", i.n_heads, i.n_kv_heads)
            } else {
                i.n_heads.to_string()
            };
            vec![
                i.model.clone(),
                i.revision.clone(),
                opt(&i.commit),
                i.architecture.clone(),
                i.n_layers.to_string(),
                i.d_model.to_string(),
                heads,
                i.d_head.to_string(),
                i.source_format.clone(),
                i.source_dtype.clone(),
            ]
        })
        .collect();
    blocks.push(table(
        &[
            "Model",
            "Revision",
            "Commit",
            "Architecture",
            "Layers",
            "d_model",
            "Heads",
            "d_head",
            "Format",
            "Stored dtype",
        ],
        source,
        &[
            false, false, false, false, true, true, true, true, false, false,
        ],
    ));
    let computation = models
        .iter()
        .map(|m| {
            let i = m.info;
            vec![
                i.model.clone(),
                i.backend.clone(),
                i.precision.clone(),
                i.fold_ln.to_string(),
                i.tool_version.clone(),
                crate::time::iso8601(i.extracted_at_us),
                i.config_sha256.chars().take(12).collect(),
                opt(&i.identical_to),
            ]
        })
        .collect::<Vec<_>>();
    let mut header = vec![
        "Model",
        "Backend",
        "Precision",
        "fold_ln",
        "Tool version",
        "Extracted at (UTC)",
        "config.json sha256",
        "Identical to",
    ];
    let mut computation = computation;
    if models.iter().all(|m| m.info.identical_to.is_none()) {
        header.pop();
        for r in &mut computation {
            r.pop();
        }
    }
    let n = header.len();
    blocks.push(table(&header, computation, &vec![false; n]));
    let orphans: Vec<String> = {
        let mut seen: Vec<(String, String)> = ds
            .matrices
            .iter()
            .filter(|r| {
                !ds.models
                    .iter()
                    .any(|m| m.model == r.key.model && m.revision == r.key.revision)
            })
            .map(|r| (r.key.model.clone(), r.key.revision.clone()))
            .collect();
        seen.sort();
        seen.dedup();
        seen.into_iter()
            .map(|(m, r)| format!("`{m}@{r}`"))
            .collect()
    };
    if !orphans.is_empty() {
        blocks.push(Block::Paragraph(format!(
            "Left out: {} (rows in `matrices/` but no `models/` row, i.e. an extraction that did \
             not finish).",
            orphans.join(", ")
        )));
    }
}

/// Writes the whole report for a loaded dataset.
pub fn write(
    ds: &Dataset,
    out_dir: &Path,
    opts: &ReportOptions,
) -> Result<ReportOutputs, ReportError> {
    let models: Vec<ReportModel> = analysis::report_models(ds, &opts.styles)
        .into_iter()
        .filter(|m| !m.rows.is_empty())
        .collect();
    if models.is_empty() {
        return Err(ReportError::NoModels {
            dir: ds.dir.clone(),
        });
    }
    let mut notes = Vec::new();
    let mut files = Vec::new();
    let date = crate::time::iso8601(opts.timestamp_us);
    let hypothesis = opts.hypothesis_text();
    let alpha = opts.test.as_ref().map_or(0.05, |t| t.alpha);

    // Figures.
    let mut fig_notes: Vec<String> = Vec::new();
    let mut specs: Vec<FigureSpec> = Vec::new();
    for g in &GRIDS {
        let kinds = [g.a.0.kind, g.b.0.kind, g.d.0.kind];
        if models.iter().any(|m| kinds.iter().any(|k| m.has_kind(*k))) {
            specs.push(grid_figure(&models, g));
        } else {
            fig_notes.push(format!(
                "no {}/{} rows in `matrices/`: figure `{}` left out",
                kinds[0], kinds[1], g.name
            ));
        }
    }
    match density_figure(ds, &models) {
        Some(f) => specs.push(f),
        None => fig_notes
            .push("no whole-layer W_V spectra in `spectra/`: density figure left out".into()),
    }
    let heatmaps: Vec<FigureSpec> = models.iter().filter_map(heatmap_figure).collect();
    if heatmaps.is_empty() {
        fig_notes.push("no per-head OV rows in `matrices/`: heat maps left out".into());
    }
    specs.extend(heatmaps);
    specs.extend(trajectory_figures(&models));
    let fig_dir = out_dir.join("figures");
    let mut figure_files = Vec::new();
    let mut figure_blocks = Vec::new();
    for spec in &specs {
        let rendered = render(spec)?;
        let png = fig_dir.join(format!("{}.png", spec.name));
        let svg = fig_dir.join(format!("{}.svg", spec.name));
        write_atomic(&png, &rendered.png)?;
        write_atomic(&svg, rendered.svg.as_bytes())?;
        files.push(png.clone());
        files.push(svg.clone());
        figure_files.push(FigureFile {
            name: spec.name.clone(),
            png,
            svg,
            width: spec.size.0,
            height: spec.size.1,
        });
        figure_blocks.push(Block::Figure {
            png_path: format!("figures/{}.png", spec.name),
            svg_path: format!("figures/{}.svg", spec.name),
            title: spec.title.clone(),
            caption: spec.caption.clone(),
            png: rendered.png,
        });
    }

    // The document.
    let mut b = Vec::new();
    let lab_list = labs(&models);
    b.push(Block::Heading(
        1,
        format!("Restriction map spectral analysis: {}", opts.name),
    ));
    if let Some(d) = &opts.description {
        b.push(Block::Paragraph(d.clone()));
    }
    // A model at several revisions (training checkpoints) is one model, drawn at each.
    let counted = analysis::counted(&models);
    let n_models = counted.len();
    let checkpoints = if n_models < models.len() {
        format!(
            "; {} checkpoints, a model at several revisions being drawn at each",
            models.len()
        )
    } else {
        String::new()
    };
    b.push(Block::Paragraph(format!(
        "Generated {date} by attn-spectra-report {REPORT_VERSION} from the dataset `{}`: \
         {n_models} model(s) in {} lab(s) ({}){checkpoints}.",
        ds.dir.display(),
        lab_list.len(),
        lab_list
            .iter()
            .map(|(l, i)| format!("{l}: {}", i.iter().filter(|i| counted.contains(i)).count()))
            .collect::<Vec<_>>()
            .join(", ")
    )));
    b.push(Block::Paragraph(format!("**Hypothesis.** {hypothesis}.")));
    let demo = opts.name == "demo" || models.iter().all(|m| m.info.model.starts_with("fixture/"));
    if demo {
        b.push(Block::Warning(
            "These models are the repository's tiny fixture checkpoints with **random weights**. \
             The numbers exercise the pipeline and mean nothing about real models or labs."
                .into(),
        ));
    }
    if !ds.failures.is_empty() {
        b.push(Block::Warning(format!(
            "{} model(s) failed and are not in this report (see Failures below).",
            ds.failures.len()
        )));
    }

    b.push(Block::Heading(2, "Reading these numbers".into()));
    let d_models: Vec<usize> = models.iter().map(|m| m.info.d_model).collect();
    let (dmin, dmax) = (
        d_models.iter().min().copied().unwrap_or(0),
        d_models.iter().max().copied().unwrap_or(0),
    );
    let mut caveats = vec![format!(
        "**Scale.** Raw spectral norms grow with the width of a model: for a d x d matrix with \
         i.i.d. entries of fixed variance, ||W||_2 grows like sqrt(d). The models here have \
         d_model from {dmin} to {dmax}, so a lab difference in W_V/W_O spectral norm can be a \
         difference in model size. Scale-free metrics (stable rank, effective rank over its \
         maximum, power-law alpha) are reported beside them."
    )];
    if let Some((a, nb)) = group_sizes(&models, opts)
        && a > 0
        && nb > 0
    {
        let p = min_p_one_sided(a as u64, nb as u64);
        caveats.push(format!(
            "**Small samples.** The hypothesis test compares n_a = {a} against n_b = {nb} models. \
             An exact rank test can then reach at best p = 1/C({}, {a}) = {} one-sided{}.",
            a + nb,
            number(p),
            if p > alpha {
                format!(", above α = {alpha}: no outcome can be significant")
            } else {
                String::new()
            }
        ));
    } else {
        caveats.push(
            "**Small samples.** With n_a against n_b models, an exact one-sided rank test can \
             reach at best p = 1/C(n_a + n_b, n_a), whatever the data."
                .into(),
        );
    }
    caveats.push(
        "**Definitions.** Per-layer values are of the whole-layer matrices (rows with no head) \
         unless marked as a mean over heads. Effective rank is exp of the entropy of the \
         normalised singular values (as in the seed); stable rank is ||W||_F^2 / ||W||_2^2. \
         W_V Std is the population standard deviation over layers (numpy's default); lab \
         standard deviations are sample standard deviations over models (pandas' default)."
            .into(),
    );
    if demo {
        caveats.push("**Random weights.** See the warning above.".into());
    }
    b.push(Block::List(caveats));

    b.push(Block::Heading(2, "Spectral signature summary".into()));
    b.push(Block::Paragraph(
        "The seed notebook's table: mean and standard deviation over layers of the spectral norm \
         of the whole-layer W_V and W_O, computed by the report from `matrices/`."
            .into(),
    ));
    b.push(seed_summary_table(&models));
    b.push(Block::Heading(
        3,
        "Scale-free metrics (means over layers)".into(),
    ));
    b.push(scale_free_table(&models));
    b.push(Block::Heading(
        3,
        "Random-matrix baselines (means over layers)".into(),
    ));
    b.push(Block::Paragraph(
        "How far above random each projection is: its spectral norm over the Marchenko-Pastur \
         bulk edge of a random matrix of the same shape and Frobenius norm (`spectral_norm_over_mp`; \
         about 1 for an i.i.d. random matrix, larger where the spectrum has spikes), and \
         WeightWatcher's `mp_softrank` (the edge over the spectral norm). Columns of `matrices/`; \
         circuits have no baseline."
            .into(),
    ));
    b.push(baseline_table(&models));
    b.push(Block::Heading(2, "Lab averages".into()));
    b.push(lab_average_table(&models));

    b.push(Block::Heading(2, "Hypothesis test".into()));
    match &ds.hypothesis {
        Some(rows) => hypothesis_blocks(rows, alpha, &mut b, &mut notes),
        None => {
            let note = "`hypothesis/` is not in the dataset (run `pipeline run test`): no test \
                        results to show."
                .to_string();
            notes.push(note.clone());
            b.push(Block::Paragraph(note));
        }
    }

    b.push(Block::Heading(2, "Figures".into()));
    if !fig_notes.is_empty() {
        b.push(Block::Paragraph(format!(
            "Left out: {}.",
            fig_notes.join("; ")
        )));
    }
    b.extend(figure_blocks);
    notes.extend(fig_notes);

    aggregate_blocks(ds, &models, &mut b, &mut notes);

    if !ds.failures.is_empty() {
        b.push(Block::Heading(2, "Failures".into()));
        b.push(table(
            &["Model", "Revision", "Stage", "Error"],
            ds.failures
                .iter()
                .map(|f| {
                    vec![
                        f.model.clone(),
                        f.revision.clone(),
                        f.stage.clone(),
                        f.error.clone(),
                    ]
                })
                .collect(),
            &[false; 4],
        ));
    }
    provenance_blocks(ds, &models, &mut b);

    // The seed JSON.
    let json_name = seed_json::file_name(opts.timestamp_us);
    let json_path = out_dir.join(&json_name);
    let doc = seed_json::document(&models, &date, &hypothesis);
    write_atomic(&json_path, doc.to_text().as_bytes())?;
    files.push(json_path.clone());

    b.push(Block::Heading(2, "Files".into()));
    let mut listed: Vec<String> = vec![
        "`report.md`, `report.html` (this report; the HTML embeds every figure)".into(),
        format!("`{json_name}` (the seed notebook's results file)"),
    ];
    listed.extend(figure_files.iter().map(|f| {
        format!(
            "`figures/{0}.png`, `figures/{0}.svg` ({1} x {2} px)",
            f.name, f.width, f.height
        )
    }));
    b.push(Block::List(listed));

    let title = format!("Restriction map spectral analysis: {}", opts.name);
    let md_path = out_dir.join("report.md");
    let html_path = out_dir.join("report.html");
    write_atomic(&md_path, markdown(&b).as_bytes())?;
    write_atomic(&html_path, html(&title, &b).as_bytes())?;
    files.push(md_path.clone());
    files.push(html_path.clone());

    Ok(ReportOutputs {
        markdown: md_path,
        html: html_path,
        json: json_path,
        figures: figure_files,
        files,
        notes,
    })
}
