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
set -euo pipefail

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
