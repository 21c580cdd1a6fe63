#!/usr/bin/env bash
# Builds the Python wheel that carries the `pipeline` binary (maturin, bindings = "bin"; see
# pyproject.toml) and checks that it is manylinux-compatible: auditwheel must find a manylinux
# platform tag and no shared library outside the manylinux policy (the binary links only libc,
# libm, libgcc_s and the loader).
#
#   scripts/build_wheel.sh [--profile dist|release|dev] [--out DIR] [--zig]
#
# --profile  the cargo profile of the binary (default dist: optimised, stripped; dev reuses the
#            test build's artifacts, which is what CI does to stay within its time budget)
# --out      where the wheel goes (default target/wheels under CARGO_TARGET_DIR or ./target)
# --zig      link with zig (ziglang from PyPI) against glibc 2.28 for a manylinux_2_28 wheel
#            that installs on older distributions; without it the wheel's tag follows this
#            machine's glibc (manylinux_2_35 on Debian 12)
#
# The tools live in a venv outside the clone (ATTN_SPECTRA_WHEEL_VENV, default
# /var/cache/attn-spectra/venv-wheel), made on first use with pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dist
out=""
zig=0
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --zig) zig=1; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "build_wheel.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="${out:-$target_dir/wheels}"

venv="${ATTN_SPECTRA_WHEEL_VENV:-/var/cache/attn-spectra/venv-wheel}"
tools="maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2"
if ! "$venv/bin/python" -c 'import maturin, ziglang, auditwheel' 2>/dev/null \
   || [ "$(cat "$venv/.tools" 2>/dev/null)" != "$tools" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $tools
    echo "$tools" > "$venv/.tools"
fi
export PATH="$venv/bin:$PATH"

mkdir -p "$out"
rm -f "$out"/attn_spectra-*.whl
args=(build --profile "$profile" --out "$out")
if [ "$zig" = 1 ]; then
    args+=(--zig --compatibility manylinux_2_28)
fi
maturin "${args[@]}"

wheel=$(ls "$out"/attn_spectra-*.whl)
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"
# auditwheel fails on a wheel that needs libraries outside the manylinux policy; it prints the
# tag the wheel is consistent with.
report=$(auditwheel show "$wheel")
echo "$report"
# auditwheel wraps its text to the terminal's width: join the lines before matching.
if ! tr -s '\n ' '  ' <<<"$report" | grep -q 'consistent with the following platform tag: "manylinux_'; then
    echo "build_wheel.sh: $wheel is not manylinux-compatible" >&2
    exit 1
fi
