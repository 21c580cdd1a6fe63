#!/usr/bin/env python3
"""Cross-checks crates/hub against Python's huggingface_hub, on the mock Hub only.

Needs: huggingface_hub==2.4.0, safetensors==0.8.0, numpy==2.4.6 (see scripts/requirements-fixtures.txt),
and the two examples built with
    cargo build -p attn-spectra-hub --examples --features mock
(their directory is given with --bin-dir, default $CARGO_TARGET_DIR/debug/examples).

What it checks, each against an independent implementation:
 1. The mock Hub is faithful enough for Python's client: hf_hub_download of config.json and
    an LFS safetensors file (302 to the "CDN", X-Linked-Etag/Size) succeeds, into cache P.
 2. The Rust crate's cache (R) is the standard layout: Python, offline, finds the snapshot
    (try_to_load_from_cache, snapshot_download(local_files_only)), scan_cache_dir sees the
    revision and its ref, and the tensors read back with Python's safetensors equal the
    arrays written.
 3. The Rust crate reads Python's cache (P) offline.
Nothing leaves 127.0.0.1. Exit status 0 when all hold.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def run(cmd, env):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed: {r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    default_bins = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "debug" / "examples"
    ap.add_argument("--bin-dir", type=Path, default=default_bins)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hub-interop-"))
    served = tmp / "served" / "org" / "tiny" / "main"
    served.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tensors = {
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((4, 8)).astype(np.float32),
    }
    save_file(tensors, str(served / "model.safetensors"))
    (served / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (served / "README.md").write_text("# not fetched\n")

    mock = subprocess.Popen(
        [str(args.bin_dir / "mock_hub"), str(tmp / "served"), "120"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = mock.stdout.readline().split()
        assert line[0] == "endpoint", line
        endpoint = line[1]
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        base["HF_ENDPOINT"] = endpoint
        base["HF_HUB_DISABLE_TELEMETRY"] = "1"
        cache_p, cache_r = tmp / "cache-python", tmp / "cache-rust"

        # 1. Python against the mock.
        code = (
            "import sys, huggingface_hub as h\n"
            "for f in ('config.json', 'model.safetensors'):\n"
            "    print(h.hf_hub_download('org/tiny', f, revision='main'))\n"
        )
        out = run([sys.executable, "-c", code], {**base, "HF_HUB_CACHE": str(cache_p)})
        paths = out.split()
        assert all(Path(p).is_file() for p in paths), out
        got = load_file(paths[1])
        for k, v in tensors.items():
            np.testing.assert_array_equal(got[k], v)
        print("1. huggingface_hub", __import__("huggingface_hub").__version__, "downloads from the mock: ok")

        # 2. Rust writes, Python reads offline.
        fetched = json.loads(run([str(args.bin_dir / "hub_fetch"), "org/tiny", "main"],
                                 {**base, "HF_HUB_CACHE": str(cache_r)}))
        assert [f["name"] for f in fetched["files"]] == ["config.json", "model.safetensors"], fetched
        code = (
            "import json, sys, huggingface_hub as h\n"
            "p = h.try_to_load_from_cache('org/tiny', 'model.safetensors', revision='main')\n"
            "d = h.snapshot_download('org/tiny', revision='main', local_files_only=True)\n"
            "info = h.scan_cache_dir()\n"
            "repo = [r for r in info.repos if r.repo_id == 'org/tiny'][0]\n"
            "revs = [(r.commit_hash, sorted(r.refs), sorted(f.file_name for f in r.files)) for r in repo.revisions]\n"
            "print(json.dumps({'path': p, 'dir': d, 'revs': revs, 'warnings': [str(w) for w in info.warnings]}))\n"
        )
        seen = json.loads(run([sys.executable, "-c", code],
                              {**base, "HF_HUB_CACHE": str(cache_r), "HF_HUB_OFFLINE": "1"}))
        assert seen["dir"] == fetched["dir"], (seen, fetched)
        assert seen["revs"] == [[fetched["commit"], ["main"], ["config.json", "model.safetensors"]]], seen
        assert not seen["warnings"], seen
        got = load_file(seen["path"])
        for k, v in tensors.items():
            np.testing.assert_array_equal(got[k], v)
        print("2. Python reads the Rust crate's cache offline (snapshot, refs, blobs): ok")

        # 3. Python writes, Rust reads offline.
        offline = json.loads(run([str(args.bin_dir / "hub_fetch"), "org/tiny", "main"],
                                 {**base, "HF_HUB_CACHE": str(cache_p), "HF_HUB_OFFLINE": "1"}))
        assert offline["commit"] == fetched["commit"], (offline, fetched)
        assert offline["bytes_downloaded"] == 0
        assert [f["sha256"] for f in offline["files"]] == [f["sha256"] for f in fetched["files"]]
        print("3. the Rust crate reads Python's cache offline: ok")
    finally:
        mock.stdin.close()
        mock.wait(timeout=30)


if __name__ == "__main__":
    main()
