#!/usr/bin/env bash
# The S3-compatible server of the object-storage tests (tests/it/s3.rs): moto's standalone
# server (PyPI `moto[server]`, pinned), installed into a venv outside the clone.
#
#   scripts/s3_server.sh            # create or check the venv; prints its server command
#   scripts/s3_server.sh --serve P  # also run the server on 127.0.0.1:P (foreground)
#
# The venv is $ATTN_SPECTRA_S3_VENV (default /var/cache/attn-spectra/venv-s3); recreate it by
# deleting it and running this script again. The tests start `$venv/bin/moto_server` themselves
# on a free port and fail, saying why, when it does not start.
set -euo pipefail
venv="${ATTN_SPECTRA_S3_VENV:-/var/cache/attn-spectra/venv-s3}"
version=5.2.5
if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version"
fi
test -x "$venv/bin/moto_server" || { echo "s3_server.sh: $venv/bin/moto_server is missing" >&2; exit 1; }
echo "$venv/bin/moto_server"
if [ "${1:-}" = "--serve" ]; then
    exec "$venv/bin/moto_server" -H 127.0.0.1 -p "${2:?--serve needs a port}"
fi
