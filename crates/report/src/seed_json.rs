//! The seed notebook's results file, `restriction_map_spectral_<YYYYMMDD_HHMMSS>.json`, with
//! the same keys, nesting and key order the notebook writes (`json.dump(output, f, indent=2)`):
//!
//! ```text
//! experiment, date, hypothesis, models_tested,
//! results: [{model, lab, expected, color, marker, arch, n_layers,
//!            <M>_spectral_norm, <M>_frobenius_norm, <M>_effective_rank,   (lists per layer)
//!            <M>_mean_spectral, <M>_std_spectral  for M in W_V, W_O, W_Q, W_K}],
//! summary: [{Model, Lab, Expected, Layers, W_V Mean, W_V Std, W_O Mean, W_O Std}]
//! ```
//!
//! Values come from the whole-layer (head IS NULL) rows of `matrices/`. The standard
//! deviation is numpy's default (population, ddof = 0). Missing numbers (NaN in the
//! notebook) are written as `null`, since JSON has no NaN.

use attn_spectra::MatrixKind;
use attn_spectra::spectral::Metric;

use crate::analysis::{Quantity, ReportModel, layer_series, mean, present, std_population};

/// The matrix kinds of the seed's results, in its order.
pub const SEED_KINDS: [MatrixKind; 4] = [
    MatrixKind::WV,
    MatrixKind::WO,
    MatrixKind::WQ,
    MatrixKind::WK,
];
/// The seed's experiment name.
pub const EXPERIMENT: &str = "Restriction Map Spectral Analysis";
/// The seed's hypothesis sentence.
pub const SEED_HYPOTHESIS: &str =
    "EleutherAI (Dampener) has lower spectral energy than others (Expander)";

/// A JSON value whose objects keep their key order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn num(v: f64) -> Json {
        if v.is_finite() {
            Json::Num(v)
        } else {
            Json::Null
        }
    }

    fn opt_str(v: Option<&str>) -> Json {
        v.map_or(Json::Null, |s| Json::Str(s.to_string()))
    }

    /// Text as Python's `json.dump(indent=2)` lays it out.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            Json::Null => out.push_str("null"),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Num(v) => {
                out.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".to_string()))
            }
            Json::Str(s) => {
                out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()))
            }
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Obj(items) if items.is_empty() => out.push_str("{}"),
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad(depth + 1));
                    item.write(out, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(depth));
                out.push(']');
            }
            Json::Obj(items) => {
                out.push_str("{\n");
                for (i, (k, v)) in items.iter().enumerate() {
                    out.push_str(&pad(depth + 1));
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push_str(": ");
                    v.write(out, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(depth));
                out.push('}');
            }
        }
    }
}

/// The per-model means and standard deviations the summary uses.
fn mean_std(m: &ReportModel, kind: MatrixKind) -> Option<(f64, f64)> {
    if !m.has_kind(kind) {
        return None;
    }
    let v = present(&layer_series(
        m,
        Quantity::whole(kind, Metric::SpectralNorm),
    ));
    Some((mean(&v), std_population(&v)))
}

/// One object of `results`.
fn result(m: &ReportModel) -> Json {
    let mut o = vec![
        ("model".to_string(), Json::Str(m.id.clone())),
        ("lab".to_string(), Json::opt_str(m.info.lab.as_deref())),
        (
            "expected".to_string(),
            Json::opt_str(m.info.heritage.as_deref()),
        ),
        ("color".to_string(), Json::Str(m.style.color.hex())),
        (
            "marker".to_string(),
            Json::Str(m.style.marker.name().into()),
        ),
        ("arch".to_string(), Json::Str(m.info.architecture.clone())),
        ("n_layers".to_string(), Json::Int(m.info.n_layers as i64)),
    ];
    for kind in SEED_KINDS {
        if !m
            .rows
            .iter()
            .any(|r| r.key.kind == kind && r.key.head.is_none())
        {
            continue;
        }
        let list = |metric: Metric| {
            Json::Arr(
                present(&layer_series(m, Quantity::whole(kind, metric)))
                    .into_iter()
                    .map(Json::num)
                    .collect(),
            )
        };
        let spectral = present(&layer_series(
            m,
            Quantity::whole(kind, Metric::SpectralNorm),
        ));
        // The seed's keys: `<kind>_<metric>`.
        for metric in [
            Metric::SpectralNorm,
            Metric::FrobeniusNorm,
            Metric::EffectiveRank,
        ] {
            o.push((format!("{kind}_{metric}"), list(metric)));
        }
        o.push((format!("{kind}_mean_spectral"), Json::num(mean(&spectral))));
        o.push((
            format!("{kind}_std_spectral"),
            Json::num(std_population(&spectral)),
        ));
    }
    Json::Obj(o)
}

/// One record of `summary` (the seed's SPECTRAL SIGNATURE SUMMARY row).
fn summary(m: &ReportModel) -> Json {
    let (wv_mean, wv_std) = mean_std(m, MatrixKind::WV).unwrap_or((f64::NAN, f64::NAN));
    let (wo_mean, wo_std) = mean_std(m, MatrixKind::WO).unwrap_or((f64::NAN, f64::NAN));
    Json::Obj(vec![
        ("Model".into(), Json::Str(m.short.clone())),
        ("Lab".into(), Json::opt_str(m.info.lab.as_deref())),
        ("Expected".into(), Json::opt_str(m.info.heritage.as_deref())),
        ("Layers".into(), Json::Int(m.info.n_layers as i64)),
        ("W_V Mean".into(), Json::num(wv_mean)),
        ("W_V Std".into(), Json::num(wv_std)),
        ("W_O Mean".into(), Json::num(wo_mean)),
        ("W_O Std".into(), Json::num(wo_std)),
    ])
}

/// The whole document.
pub fn document(models: &[ReportModel], date_iso: &str, hypothesis: &str) -> Json {
    Json::Obj(vec![
        ("experiment".into(), Json::Str(EXPERIMENT.into())),
        ("date".into(), Json::Str(date_iso.into())),
        ("hypothesis".into(), Json::Str(hypothesis.into())),
        ("models_tested".into(), Json::Int(models.len() as i64)),
        (
            "results".into(),
            Json::Arr(models.iter().map(result).collect()),
        ),
        (
            "summary".into(),
            Json::Arr(models.iter().map(summary).collect()),
        ),
    ])
}

/// The file name for a timestamp: `restriction_map_spectral_<YYYYMMDD_HHMMSS>.json`.
pub fn file_name(timestamp_us: i64) -> String {
    format!(
        "restriction_map_spectral_{}.json",
        crate::time::file_stamp(timestamp_us)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout Python's `json.dumps(x, indent=2)` gives for
    /// `{"a": [1, 2.5], "b": {}, "c": [], "d": None, "e": "x\"y"}`.
    #[test]
    fn layout_matches_python_json_dump() {
        let j = Json::Obj(vec![
            ("a".into(), Json::Arr(vec![Json::Int(1), Json::Num(2.5)])),
            ("b".into(), Json::Obj(vec![])),
            ("c".into(), Json::Arr(vec![])),
            ("d".into(), Json::Null),
            ("e".into(), Json::Str("x\"y".into())),
        ]);
        assert_eq!(
            j.to_text(),
            "{\n  \"a\": [\n    1,\n    2.5\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": null,\n  \"e\": \"x\\\"y\"\n}"
        );
    }

    #[test]
    fn non_finite_numbers_are_null() {
        assert_eq!(Json::num(f64::NAN), Json::Null);
        assert_eq!(Json::num(f64::INFINITY), Json::Null);
        assert_eq!(Json::Num(0.1).to_text(), "0.1");
    }

    #[test]
    fn file_name_has_the_seed_pattern() {
        assert_eq!(
            file_name(1_767_614_096_123_456),
            "restriction_map_spectral_20260105_115456.json"
        );
    }
}
