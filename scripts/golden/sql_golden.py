#!/usr/bin/env python3
"""A small deterministic dataset for crates/sql's tests, and what the seed notebook's own
pandas/numpy/scipy code computes from it.

Writes tests/fixtures/sql/dataset.json: the rows of models/, matrices/ and spectra/ for the
seed's seven models in four labs (a few layers, two heads each), plus one model whose
extraction never finished (matrices rows but no models row), which every result must ignore.
The Rust tests write these rows as Parquet with the core schemas.

Writes tests/fixtures/sql/expected.json, computed the seed's way:
- model_summary: np.mean and np.std (population) over layers of the whole-layer W_V and W_O
  spectral norms;
- lab_summary: pandas groupby('lab').agg(['mean', 'std']) (sample std) of the per-model means;
- layer_profile: pandas groupby mean per model, revision, kind, scope and layer;
- hypothesis: for the default plan (EleutherAI vs the others, alternative 'less'), per metric
  and kind, scipy.stats.mannwhitneyu, scipy.stats.permutation_test on the difference of
  means (all 35 relabelings), and the rank-biserial correlation from the pairs.

Needs: numpy==2.4.6, pandas==3.1.1, scipy==1.17.1 (see scripts/requirements-fixtures.txt).
Run: python scripts/golden/sql_golden.py   (from the repository root)
"""

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sql"

METRICS = [
    "spectral_norm", "frobenius_norm", "nuclear_norm", "stable_rank", "effective_rank",
    "condition_number", "alpha", "alpha_xmin", "alpha_ks", "num_pl_spikes", "log_norm",
    "log_spectral_norm", "alpha_weighted", "entropy",
]
PROJECTIONS = ["W_Q", "W_K", "W_V", "W_O"]
CIRCUITS = ["OV", "QK"]
N_HEADS = 2

# The seed's seven models: (id, lab, heritage, architecture, layers).
MODELS = [
    ("EleutherAI/pythia-160m", "EleutherAI", "DAMPENER", "gpt_neox", 3),
    ("EleutherAI/pythia-410m", "EleutherAI", "DAMPENER", "gpt_neox", 4),
    ("EleutherAI/gpt-neo-125M", "EleutherAI", "DAMPENER", "gpt_neo", 2),
    ("facebook/opt-125m", "Meta", "EXPANDER", "opt", 3),
    ("facebook/opt-350m", "Meta", "EXPANDER", "opt", 4),
    ("bigscience/bloom-560m", "BigScience", "EXPANDER (ALiBi)", "bloom", 3),
    ("gpt2", "OpenAI", "NEUTRAL", "gpt2", 3),
]
# Matrices written, but the models row never was: an interrupted extraction.
INCOMPLETE = ("EleutherAI/pythia-1b", "gpt_neox", 2)

rng = np.random.default_rng(7)


def r4(x):
    return float(round(float(x), 4))


def metric_values(lab, kind, scope):
    values = {m: r4(rng.uniform(0.5, 5.0)) for m in METRICS}
    values["num_pl_spikes"] = int(rng.integers(0, 6))
    if kind in ("W_V", "W_O") and scope == "layer":
        # The seed's hypothesis holds in this fixture: EleutherAI's W_V and W_O spectral
        # norms all lie below everyone else's.
        lo, hi = (0.8, 1.4) if lab == "EleutherAI" else (1.6, 2.6)
        values["spectral_norm"] = r4(rng.uniform(lo, hi))
    return values


def build():
    models, matrices, spectra = [], [], []
    todo = [(m, lab, her, arch, n, True) for m, lab, her, arch, n in MODELS]
    todo.append((INCOMPLETE[0], "EleutherAI", "DAMPENER", INCOMPLETE[1], INCOMPLETE[2], False))
    for model, lab, heritage, arch, n_layers, complete in todo:
        if complete:
            models.append({
                "model": model, "revision": "main", "lab": lab, "heritage": heritage,
                "architecture": arch, "n_layers": n_layers, "d_model": 64,
                "n_heads": N_HEADS, "n_kv_heads": N_HEADS, "d_head": 32,
            })
        for layer in range(n_layers):
            rows = [(kind, None) for kind in PROJECTIONS]
            rows += [(kind, h) for kind in PROJECTIONS + CIRCUITS for h in range(N_HEADS)]
            for kind, head in rows:
                scope = "layer" if head is None else "head"
                values = metric_values(lab, kind, scope)
                row = {"model": model, "revision": "main", "layer": layer, "head": head,
                       "kind": kind, "rows": 32 if head is not None else 64, "cols": 64}
                row.update(values)
                matrices.append(row)
                if kind == "W_V" and head is None:
                    s0 = values["spectral_norm"]
                    spectra.append({"model": model, "revision": "main", "layer": layer,
                                    "head": None, "kind": kind,
                                    "singular_values": [s0, r4(s0 * 0.5), r4(s0 * 0.25)]})
    # Missing values: the power-law fit of one W_V layer failed (alpha NULL); the entropy of
    # one W_O layer is NaN (the tests of entropy must fail naming it).
    for row in matrices:
        if row["model"] == "gpt2" and row["kind"] == "W_V" and row["head"] is None \
                and row["layer"] == 1:
            row["alpha"] = None
        if row["model"] == "facebook/opt-125m" and row["kind"] == "W_O" \
                and row["head"] is None and row["layer"] == 0:
            row["entropy"] = "NaN"
    return models, matrices, spectra


def nan_to_str(x):
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    return x


def records(df):
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if (v is None or (isinstance(v, float) and math.isnan(v))
                                 and k not in ("entropy",)) else nan_to_str(v))
                    for k, v in rec.items()})
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    models, matrices, spectra = build()
    (OUT / "dataset.json").write_text(json.dumps(
        {"models": models, "matrices": matrices, "spectra": spectra}, indent=None) + "\n")

    mdf = pd.DataFrame(models)
    x = pd.DataFrame(matrices)
    x["entropy"] = x["entropy"].replace("NaN", np.nan).astype(float)
    x["alpha"] = x["alpha"].astype(float)
    x = x[x["model"].isin(mdf["model"])]  # complete extractions only

    # SPECTRAL SIGNATURE SUMMARY, the seed's way (np.mean, np.std over layers).
    summary = []
    for m in models:
        rec = {"model": m["model"], "revision": "main", "lab": m["lab"],
               "heritage": m["heritage"], "layers": m["n_layers"]}
        for kind, col in (("W_V", "w_v"), ("W_O", "w_o")):
            norms = x[(x.model == m["model"]) & (x.kind == kind) & x["head"].isna()] \
                .sort_values("layer")["spectral_norm"].to_numpy()
            rec[f"{col}_mean"] = float(np.mean(norms))
            rec[f"{col}_std"] = float(np.std(norms))
        summary.append(rec)
    sdf = pd.DataFrame(summary)

    # LAB AVERAGES, the seed's way (pandas groupby agg mean/std: sample std).
    lab = sdf.groupby("lab").agg({"model": "count", "w_v_mean": ["mean", "std"],
                                  "w_o_mean": ["mean", "std"]})
    lab_rows = []
    for name, row in lab.iterrows():
        lab_rows.append({"lab": name, "models": int(row[("model", "count")]),
                         "w_v_mean": row[("w_v_mean", "mean")],
                         "w_v_std": row[("w_v_mean", "std")],
                         "w_o_mean": row[("w_o_mean", "mean")],
                         "w_o_std": row[("w_o_mean", "std")]})

    # LAYER PROFILE: pandas groupby mean, scope separating whole-layer and per-head rows.
    x = x.copy()
    x["scope"] = np.where(x["head"].isna(), "layer", "head")
    nl = mdf.set_index("model")["n_layers"]
    prof = x.groupby(["model", "revision", "kind", "scope", "layer"], sort=True)
    profile = prof[METRICS].mean(numeric_only=False)
    profile["matrices"] = prof.size()
    profile = profile.reset_index()
    profile["depth"] = [lay / (nl[m] - 1) if nl[m] > 1 else 0.0
                        for m, lay in zip(profile["model"], profile["layer"])]
    # pandas' mean skips NaN; SQL AVG propagates it. The one NaN entropy (a whole-layer
    # W_O, one row in its group) is NaN either way.

    # Per-model means for the tests.
    def model_mean(model, kind, metric):
        sel = x[(x.model == model) & (x.kind == kind)]
        sel = sel[sel["head"].isna()] if kind in PROJECTIONS else sel[sel["head"].notna()]
        return float(sel[metric].mean())

    hypothesis = []
    names = sorted(m["model"] for m in models)
    labs = {m["model"]: m["lab"] for m in models}
    for metric in ["spectral_norm", "stable_rank", "effective_rank", "alpha"]:
        for kind in ["W_V", "W_O", "OV"]:
            a = np.array([model_mean(m, kind, metric) for m in names if labs[m] == "EleutherAI"])
            b = np.array([model_mean(m, kind, metric) for m in names if labs[m] != "EleutherAI"])
            mw = stats.mannwhitneyu(a, b, alternative="less")
            mw2 = stats.mannwhitneyu(a, b, alternative="two-sided")
            perm = stats.permutation_test(
                (a, b), lambda p, q, axis: np.mean(p, axis=axis) - np.mean(q, axis=axis),
                permutation_type="independent", vectorized=True, n_resamples=np.inf,
                alternative="less")
            pairs = sum(Fraction(int(u > v) - int(u < v)) for u in a for v in b)
            hypothesis.append({
                "metric": metric, "kind": kind, "n_a": len(a), "n_b": len(b),
                "mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)),
                "u_statistic": float(mw.statistic), "p_value": float(mw.pvalue),
                "p_two_sided": float(mw2.pvalue),
                "rank_biserial": float(pairs / (len(a) * len(b))),
                "p_permutation": float(perm.pvalue),
                "verdict": "SUPPORTED" if mw.pvalue < 0.05 else "NOT SUPPORTED",
            })

    expected = {
        "model_summary": records(sdf.sort_values(["lab", "model", "revision"])),
        "lab_summary": records(pd.DataFrame(lab_rows)),
        "layer_profile": records(profile),
        "hypothesis": hypothesis,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for h in hypothesis:
        print(h["metric"], h["kind"], h["p_value"], h["verdict"])


if __name__ == "__main__":
    main()
