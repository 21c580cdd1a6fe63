#!/usr/bin/env python3
"""Golden values for the spectral engine (crates/core/src/spectral) -> tests/fixtures/spectral/.

Needs (see scripts/requirements-fixtures.txt): numpy 2.4, scipy 1.17, torch 2.11 (CPU),
weightwatcher 0.7.7 and powerlaw 2.0.0 (pip install weightwatcher==0.7.7 powerlaw==2.0.0).

Run from the repository root:  /work/venv/torch/bin/python scripts/golden/spectral_golden.py

What it writes (all from independent sources, never from the Rust code):
  matrices.json + <name>.f64  matrices (raw little-endian f64, row-major) with
      - "exact_singular_values": the spectrum they were built with (U diag(s) V^T, random
        orthogonal U, V), for the constructed cases;
      - "lapack_singular_values": scipy.linalg.svd(W, compute_uv=False) (LAPACK gesdd), the
        very call WeightWatcher makes on the CPU;
      - "independent": norms, ranks and condition number computed by numpy from the matrix
        (np.linalg.norm(W, 2 / 'fro' / 'nuc'), np.linalg.cond) and by formula from the spectrum;
      - "weightwatcher": the row WeightWatcher 0.7.7's own analyze() writes for the matrix,
        given as a state dict {"layer.weight": W} of float64 numpy arrays (default arguments:
        its power-law fit, norms, entropy).
  powerlaw_fits.json  eigenvalue lists (Pareto samples with known alpha, ties, small N,
      eigenvalues below the 1e-5 threshold, degenerate cases) with the output of
      WeightWatcher.fit_powerlaw(evals) at its defaults, and WeightWatcher's
      RMT_Util.matrix_entropy(sqrt(evals), N).
  products.json  small factor pairs (left [m,k], right [k,n]) with the singular values of the
      explicit product from numpy (LAPACK gesdd).
"""

import io
import json
import os
import struct
import sys
from contextlib import redirect_stdout

import numpy as np
import scipy.linalg
import torch

import logging

logging.disable(logging.CRITICAL)

with redirect_stdout(io.StringIO()):
    import weightwatcher as ww
    from weightwatcher import RMT_Util

OUT = os.path.join("tests", "fixtures", "spectral")


def orthogonal(rng, n, k):
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def constructed(rng, rows, cols, s):
    """U diag(s) V^T with random orthonormal columns; s has min(rows, cols) entries."""
    k = len(s)
    return orthogonal(rng, rows, k) @ np.diag(s) @ orthogonal(rng, cols, k).T


def write_matrix(name, w):
    path = os.path.join(OUT, name + ".f64")
    with open(path, "wb") as f:
        f.write(np.ascontiguousarray(w, dtype="<f8").tobytes())
    return name + ".f64"


def independent_metrics(w, sv):
    """Metrics computed by numpy from the matrix itself, or by formula from LAPACK's spectrum."""
    spectral = float(np.linalg.norm(w, 2))
    fro = float(np.linalg.norm(w, "fro"))
    nuc = float(np.linalg.norm(w, "nuc"))
    p = sv[sv > 0] / sv.sum()
    erank = float(np.exp(-np.sum(p * np.log(p))))
    smin = sv.min()
    cond = float("inf") if smin == 0 else float(sv.max() / smin)
    if w.shape[0] == w.shape[1] and smin > 0:
        cond = float(np.linalg.cond(w))
    return {
        "spectral_norm": spectral,
        "frobenius_norm": fro,
        "nuclear_norm": nuc,
        "stable_rank": fro**2 / spectral**2,
        "effective_rank": erank,
        "condition_number": cond,
        "log_norm": float(np.log10(fro**2)),
        "log_spectral_norm": float(np.log10(spectral**2)),
    }


def ww_analyze(w):
    """WeightWatcher's own analyze() row for w, passed as a state dict of numpy arrays.

    A state dict of numpy arrays keeps float64; WeightWatcher would round a torch module's
    weights to float32 first (torch_T_to_np, float16 when CUDA is visible).
    """
    with redirect_stdout(io.StringIO()):
        watcher = ww.WeightWatcher(model={"layer.weight": np.array(w, dtype=np.float64)})
        df = watcher.analyze()
    assert len(df) == 1, df
    row = df.iloc[0]
    keys = [
        "alpha", "xmin", "D", "num_pl_spikes", "log_norm", "log_spectral_norm",
        "alpha_weighted", "entropy", "stable_rank", "spectral_norm", "norm", "status", "N", "M",
    ]
    out = {}
    for k in keys:
        v = row[k]
        out[k] = v if isinstance(v, str) else (int(v) if k in ("num_pl_spikes", "N", "M") else float(v))
    return out


def matrices(rng):
    cases = []

    def add(name, w, exact=None, note=""):
        w = np.asarray(w, dtype=np.float64)
        sv = scipy.linalg.svd(w, compute_uv=False)
        case = {
            "name": name,
            "note": note,
            "rows": w.shape[0],
            "cols": w.shape[1],
            "file": write_matrix(name, w),
            "lapack_singular_values": sv.tolist(),
            "independent": independent_metrics(w, sv),
        }
        if exact is not None:
            case["exact_singular_values"] = sorted((float(x) for x in exact), reverse=True)
        if min(w.shape) >= 8:
            case["weightwatcher"] = ww_analyze(w)
        cases.append(case)

    s = np.linspace(0.5, 7.0, 40)
    add("known_60x40", constructed(rng, 60, 40, s), s, "U diag(s) V^T, s = linspace(0.5, 7, 40)")
    s = np.geomspace(1e-3, 10.0, 30)
    add("known_30x70", constructed(rng, 30, 70, s), s, "wide, s geometric from 1e-3 to 10")
    s = np.concatenate([rng.uniform(1.0, 5.0, 40), np.zeros(56)])
    add("rank40_96x96", constructed(rng, 96, 96, s), s, "exactly rank 40 (56 zero singular values)")
    s = np.concatenate([rng.uniform(0.1, 3.0, 3), np.zeros(17)])
    add("rank3_20x50", constructed(rng, 20, 50, s), s, "wide, exactly rank 3")
    for alpha, rows, cols in [(2.5, 128, 96), (4.0, 96, 128)]:
        k = min(rows, cols)
        lam = (1.0 - rng.uniform(size=k)) ** (-1.0 / (alpha - 1.0))
        s = np.sqrt(lam)
        add(f"powerlaw{alpha}_{rows}x{cols}", constructed(rng, rows, cols, s), s,
            f"eigenvalues sigma^2 drawn from a Pareto law with alpha {alpha}, xmin 1")
    for rows, cols in [(50, 50), (33, 17), (17, 33), (64, 256)]:
        add(f"gauss_{rows}x{cols}", rng.standard_normal((rows, cols)) / np.sqrt(cols), None,
            "i.i.d. Gaussian / sqrt(cols)")
    add("row_1x7", rng.standard_normal((1, 7)), None, "a single row")
    add("col_7x1", rng.standard_normal((7, 1)), None, "a single column")
    # Entries of very different scales and a repeated singular value.
    s = np.array([9.0, 9.0, 9.0, 4.0, 1e-4, 1e-4, 1e-9, 0.0, 0.0, 0.0, 0.0, 0.0])
    add("ties_12x12", constructed(rng, 12, 12, s), s, "tripled top singular value, tiny and zero ones")
    return cases


def ww_fit(evals):
    evals = np.sort(np.asarray(evals, dtype=np.float64))
    watcher = ww.WeightWatcher()
    with redirect_stdout(io.StringIO()):
        res = watcher.fit_powerlaw(evals, plot=False)
    alpha, _lam, xmin, _xmax, d, _sigma, spikes, _fingers, _raw, status, _warn = res
    return {
        "status": status,
        "alpha": float(alpha),
        "xmin": float(xmin),
        "D": float(d),
        "num_pl_spikes": int(spikes),
    }


def powerlaw_fits(rng):
    cases = []

    def add(name, evals, note, true_alpha=None, big_n=None):
        evals = np.sort(np.asarray(evals, dtype=np.float64))
        sv = np.sqrt(evals)
        big_n = big_n if big_n is not None else len(evals)
        case = {
            "name": name,
            "note": note,
            "eigenvalues": evals.tolist(),
            "weightwatcher": ww_fit(evals),
            # matrix_entropy squares the singular values itself.
            "singular_values": sv.tolist(),
            "entropy_N": big_n,
            "weightwatcher_entropy": float(RMT_Util.matrix_entropy(sv, big_n)) if len(sv) else None,
        }
        if true_alpha is not None:
            case["true_alpha"] = true_alpha
        cases.append(case)

    for alpha, n in [(2.0, 500), (3.0, 1000), (4.5, 300)]:
        lam = 0.01 * (1.0 - rng.uniform(size=n)) ** (-1.0 / (alpha - 1.0))
        add(f"pareto{alpha}_n{n}", lam, "Pareto sample, xmin 0.01", alpha, big_n=2 * n)
    # A Marchenko-Pastur bulk with a heavy-tailed spike set on top.
    bulk = np.sort(np.linalg.svd(rng.standard_normal((400, 200)) / 20.0, compute_uv=False) ** 2)
    spikes = 2.0 * (1.0 - rng.uniform(size=25)) ** (-1.0 / 1.5)
    add("mp_bulk_plus_tail", np.concatenate([bulk, spikes]), "MP bulk (N=400, M=200) plus a Pareto(2.5) tail", big_n=400)
    # Ties: values repeated exactly, so that several candidate indices share one xmin.
    base = np.round(0.5 * (1.0 - rng.uniform(size=60)) ** (-1.0 / 2.0), 2)
    add("ties", np.concatenate([base, base[:20], [base.max()] * 3]), "values rounded to 0.01 and repeated")
    # Eigenvalues at and below the 1e-5 threshold, and exact zeros.
    lam = np.concatenate([rng.uniform(0.5, 50.0, 40), [1e-5, 9e-6, 1e-12, 0.0, 0.0]])
    add("below_threshold", lam, "40 uniform values plus values <= 1e-5 that the fit must drop")
    # Small N: the bias-corrected fit with its J objective (N < 20), and its fallback (N < 8).
    for n in [19, 12, 8, 7, 5, 2]:
        add(f"small_n{n}", 1.0 + rng.pareto(2.0, size=n), f"{n} eigenvalues (small-N fit)")
    add("one_value", [3.0], "a single eigenvalue: WeightWatcher returns its placeholder alpha = 1")
    add("flat", [2.0] * 30, "30 equal eigenvalues (infinite MLE)")
    add("all_below_threshold", [1e-6, 1e-7, 0.0], "nothing to fit: WeightWatcher's fit fails")
    return cases


def products(rng):
    cases = []
    for m, k, n in [(48, 8, 40), (40, 8, 48), (6, 10, 9), (64, 16, 64), (5, 3, 1)]:
        left = rng.standard_normal((m, k))
        right = rng.standard_normal((k, n))
        sv = np.linalg.svd(left @ right, compute_uv=False)[: min(m, n, k)]
        cases.append({
            "name": f"product_{m}x{k}x{n}",
            "left": {"rows": m, "cols": k, "data": left.ravel().tolist()},
            "right": {"rows": k, "cols": n, "data": right.ravel().tolist()},
            "singular_values": sv.tolist(),
        })
    # A rank-deficient product: left has rank 2 out of k = 4.
    left = rng.standard_normal((20, 2)) @ rng.standard_normal((2, 4))
    right = rng.standard_normal((4, 30))
    sv = np.linalg.svd(left @ right, compute_uv=False)[:4]
    cases.append({
        "name": "product_rank2_20x4x30",
        "left": {"rows": 20, "cols": 4, "data": left.ravel().tolist()},
        "right": {"rows": 4, "cols": 30, "data": right.ravel().tolist()},
        "singular_values": sv.tolist(),
    })
    return cases


def finite_json(obj):
    """JSON has no inf/NaN: write non-finite floats as the strings "inf", "-inf", "nan"."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return "nan" if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_json(v) for v in obj]
    return obj


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(finite_json(obj), f, indent=1, allow_nan=False)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    versions = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "weightwatcher": ww.__version__,
        "python": sys.version.split()[0],
    }
    dump("matrices.json", {"generator": "scripts/golden/spectral_golden.py", "versions": versions,
                           "cases": matrices(rng)})
    dump("powerlaw_fits.json", {"generator": "scripts/golden/spectral_golden.py", "versions": versions,
                                "cases": powerlaw_fits(rng)})
    dump("products.json", {"generator": "scripts/golden/spectral_golden.py", "versions": versions,
                           "cases": products(rng)})


if __name__ == "__main__":
    main()
