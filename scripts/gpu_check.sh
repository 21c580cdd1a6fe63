#!/usr/bin/env bash
# GPU check of the libtorch backend: runs the gpu_check binary (torch on CUDA against faer on the
# seed study's shapes, per-head matrices and circuits) with the libtorch of the local PyTorch.
#
# Needs: an NVIDIA GPU and driver, python3 with PyTorch 2.11 (the CUDA build), and the binary,
# built on a machine with the same torch by
#   PATH=/path/to/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 \
#     cargo build --release -p attn-spectra-torch --features libtorch --example gpu_check
# (it lands in $CARGO_TARGET_DIR/release/examples/gpu_check; copy that one file to the GPU machine).
#
# usage: scripts/gpu_check.sh [path/to/gpu_check] [gpu_check options: --quick --budget-s S ...]
# Exit status: gpu_check's (0 all agree, 1 an agreement bound broken, 2 no GPU visible).
#
# The whole extract, end to end from local files (issue 14's GPU target: a 7B-shaped checkpoint,
# per-head and circuits on, under 60 s on one H100/H200-class GPU):
#   scripts/gpu_check.sh --extract path/to/pipeline [--cache DIR] [--seed-cache DIR] [--skip-7b]
# with `pipeline` built with the torch feature against the same torch:
#   PATH=/path/to/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 cargo build --release --features torch
# It writes random-weight checkpoints under --cache (default /tmp/attn-spectra-gpu-check; about
# 7 GB): the seed study's seven shapes as Llama-architecture stand-ins (4 x 12 layers of 768²,
# 12 heads; 3 x 24 layers of 1024², 16 heads), or the real architectures if --seed-cache points
# at scripts/bench_extract.py's cache (its f32/ directory), and a Llama-7B-shaped one (32 layers
# of 4096², 32 heads, bf16, attention only: scripts/make_shaped_checkpoint.py). Then it times
# `pipeline run extract --force` under /usr/bin/time -v (wall, peak RSS) for each set with
# per-head matrices and OV/QK circuits on, in f64 and in f32, with --backend torch-cuda and,
# for comparison, faer on the CPU (seed set only; faer on the 7B shape takes far longer), and
# checks torch-cuda's spectra against faer's under the contract (2e-12 of σ_1 in f64, 2e-6 in
# f32) on the seed set.
set -euo pipefail

if [[ "${1:-}" == --extract ]]; then
    shift
    pipeline="${1:?gpu_check.sh --extract needs the pipeline binary}"
    shift
    cache=/tmp/attn-spectra-gpu-check
    seed_cache=""
    skip_7b=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --cache) cache="$2"; shift 2 ;;
            --seed-cache) seed_cache="$2"; shift 2 ;;
            --skip-7b) skip_7b=1; shift ;;
            *) echo "gpu_check.sh --extract: unknown option $1" >&2; exit 64 ;;
        esac
    done
    here="$(cd "$(dirname "$0")" && pwd)"
    # The GPU backend (GPU_CHECK_BACKEND=faer smoke-tests this script on a machine without GPU).
    gpu="${GPU_CHECK_BACKEND:-torch-cuda}"
    py="${PYTHON:-python3}"
    torch_dir="$("$py" -c 'import torch,os;print(os.path.dirname(torch.__file__))')"
    export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    mkdir -p "$cache"
    make() { # dir layers d heads dtype
        [[ -f "$cache/$1/model.safetensors" ]] ||
            "$py" "$here/make_shaped_checkpoint.py" "$cache/$1" --layers "$2" --d-model "$3" --heads "$4" --dtype "$5"
    }
    seed_models=()
    if [[ -n "$seed_cache" ]]; then
        for d in "$seed_cache"/*/; do [[ -f "$d/config.json" ]] && seed_models+=("$d"); done
    else
        for i in 1 2 3 4; do make "seed768-$i" 12 768 12 f32; seed_models+=("$cache/seed768-$i"); done
        for i in 1 2 3; do make "seed1024-$i" 24 1024 16 f32; seed_models+=("$cache/seed1024-$i"); done
    fi
    [[ $skip_7b == 1 ]] || make llama7b-shaped 32 4096 32 bf16
    toml() { # name precision dirs...
        local name="$1" precision="$2"
        shift 2
        {
            echo "name = \"$name\""
            echo "[analysis]"
            echo 'kinds = ["W_Q", "W_K", "W_V", "W_O", "OV", "QK"]'
            echo "per_head = true"
            echo "fold_ln = false"
            echo "precision = \"$precision\""
            for d in "$@"; do
                printf '[[models]]\nid = "gpu-check/%s"\nsource = "%s"\n' "$(basename "$d")" "$d"
            done
        } > "$cache/$name-$precision.toml"
        echo "$cache/$name-$precision.toml"
    }
    run() { # label toml backend
        local out="$cache/out-$1"
        /usr/bin/time -v -o "$cache/time-$1.txt" "$pipeline" run extract --pipeline "$2" \
            --out "$out" --force --quiet --backend "$3" >/dev/null
        local wall rss
        wall="$(grep 'Elapsed (wall clock)' "$cache/time-$1.txt" | awk '{print $NF}')"
        rss="$(grep 'Maximum resident set size' "$cache/time-$1.txt" | awk '{print $NF}')"
        echo "| $1 | $3 | $wall | $((rss / 1024)) MiB |"
    }
    echo
    echo "| run | backend | wall (m:ss) | peak RSS |"
    echo "| --- | --- | --- | --- |"
    for precision in f64 f32; do
        t="$(toml seed "$precision" "${seed_models[@]}")"
        run "seed-$precision-cuda" "$t" "$gpu"
        run "seed-$precision-faer" "$t" faer
        if [[ $skip_7b == 0 ]]; then
            run "7b-$precision-cuda" "$(toml llama7b "$precision" "$cache/llama7b-shaped")" "$gpu"
        fi
    done
    # Agreement: torch-cuda's spectra against faer's on the seed set, per precision.
    "$py" - "$cache" <<'PY'
import sys
from pathlib import Path

import pyarrow.parquet as pq

cache = Path(sys.argv[1])
broken = False
for precision, tol in (("f64", 2e-12), ("f32", 2e-6)):
    def load(label):
        out = {}
        for f in (cache / f"out-{label}" / "spectra").glob("*.parquet"):
            t = pq.read_table(f, columns=["model", "layer", "head", "kind", "singular_values"]).to_pylist()
            for r in t:
                out[(r["model"], r["layer"], r["head"], r["kind"])] = r["singular_values"]
        return out
    a, b = load(f"seed-{precision}-cuda"), load(f"seed-{precision}-faer")
    worst = max(max(abs(x - y) for x, y in zip(a[k], b[k])) / b[k][0] for k in b if b[k] and b[k][0] > 0)
    ok = worst <= tol and a.keys() == b.keys()
    broken |= not ok
    print(f"seed {precision}: torch-cuda vs faer max |Δσ|/σ_1 = {worst:.2e} ({'within' if ok else 'OUTSIDE'} {tol:g})")
sys.exit(1 if broken else 0)
PY
    exit $?
fi

bin="${GPU_CHECK_BIN:-}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    bin="$1"
    shift
fi
if [[ -z "$bin" ]]; then
    for c in "${CARGO_TARGET_DIR:-target}/release/examples/gpu_check" ./gpu_check; do
        [[ -x "$c" ]] && { bin="$c"; break; }
    done
fi
[[ -n "$bin" && -x "$bin" ]] || { echo "gpu_check.sh: no gpu_check binary (pass its path)" >&2; exit 64; }

py="${PYTHON:-python3}"
torch_dir="$("$py" -c 'import torch,os;print(os.path.dirname(torch.__file__))')" \
    || { echo "gpu_check.sh: $py cannot import torch" >&2; exit 64; }
torch_version="$("$py" -c 'import torch;print(torch.__version__)')"
case "$torch_version" in
    2.11.*) ;;
    *) echo "gpu_check.sh: warning: torch $torch_version; the binary was built against 2.11" >&2 ;;
esac
echo "torch $torch_version at $torch_dir"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "nvidia-smi not found: no NVIDIA driver on this machine?"
fi
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$bin" | grep -q 'not found'; then
    echo "gpu_check.sh: libraries the binary needs are missing:" >&2
    ldd "$bin" | grep 'not found' >&2
    exit 64
fi
exec "$bin" "$@"
