#!/usr/bin/env bash
# Benchmark of the spectral backends (not a test): measures numpy's LAPACK floor, then runs the
# bench_spectral example (faer, faer with the checked Gram path, torch-cpu; f32 and f64; the
# seed study's whole-layer matrices, one Llama-7B layer, per-head matrices and circuits), which
# prints a Markdown table with both floors.
#
# Needs: python3 with numpy (and torch 2.11 for the build), e.g. /work/venv/torch.
# usage: scripts/bench_spectral.sh [bench_spectral options, e.g. --models 768,1024 --threads 2]
# Env: PYTHON (default /work/venv/torch/bin/python if present, else python3), THREADS (default 2).
# OPENBLAS_CORETYPE, if set in the environment, is left as it is (it changes numpy's kernels).
set -euo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-}"
[[ -z "$py" && -x /work/venv/torch/bin/python ]] && py=/work/venv/torch/bin/python
py="${py:-python3}"
threads="${THREADS:-2}"
venv_bin="$(dirname "$("$py" -c 'import sys;print(sys.executable)')")"
models="768,1024,4096"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[$i]}" == --models ]] && models="${args[$((i + 1))]}"
done

floor="$(mktemp --suffix=.json)"
trap 'rm -f "$floor"' EXIT
echo "== numpy floor (np.linalg.svd compute_uv=False; $threads processes, 1 OpenBLAS thread each), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "$py" - "$models" "$floor" "$threads" <<'PY'
import json, sys, time
from multiprocessing import Pool
import numpy as np

def timed_part(args):
    """Generates this worker's share of the matrices and times their values-only SVD."""
    d, count, dtype, seed = args
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((count, d, d)) / np.sqrt(d)).astype(dtype)
    np.linalg.svd(x[:1], compute_uv=False)  # warm-up
    t = time.perf_counter()
    np.linalg.svd(x, compute_uv=False)
    return time.perf_counter() - t

shapes = {"768": (48, 768), "1024": (96, 1024), "4096": (4, 4096)}
threads = int(sys.argv[3])
out = {}
with Pool(threads) as pool:
    for key in sys.argv[1].split(","):
        n, d = shapes[key]
        counts = [len(p) for p in np.array_split(np.arange(n), threads)]
        out[key] = {}
        for name, dtype in (("f32", np.float32), ("f64", np.float64)):
            # The parts run at once; the slowest one is the wall time.
            times = pool.map(timed_part, [(d, c, dtype, i) for i, c in enumerate(counts) if c])
            out[key][name] = max(times)
            print(f"numpy {key} {name}: {out[key][name]:.2f} s for {n} matrices", flush=True)
json.dump(out, open(sys.argv[2], "w"))
PY

echo "== building bench_spectral (release)"
PATH="$venv_bin:$PATH" LIBTORCH_USE_PYTORCH=1 \
    cargo build --release -q -p attn-spectra-torch --features libtorch,attn-spectra/f32-arithmetic --example bench_spectral
target="${CARGO_TARGET_DIR:-target}"
echo "== bench_spectral"
"$target/release/examples/bench_spectral" --threads "$threads" --floor "$floor" "$@"
