#!/usr/bin/env python3
"""Benchmark of `pipeline run extract` against the LAPACK floor (issues 4 and 14). Not a test.

The targets (issue 14), on seven local checkpoints of the seed study's sizes (about 1.8 billion
parameters, safetensors on local disk), each the median of paired runs against a floor measured
in the same run:
  - `f32-whole`: --precision f32, whole-layer W_Q, W_K, W_V, W_O only: at most 0.8x the f32 floor;
  - `f32-heads-circuits`: f32 with per-head matrices and OV/QK circuits: at most 0.9x the same
    whole-layer f32 floor;
  - `f64-heads-circuits`: f64 (the default) with per-head matrices and circuits: at most 1.0x the
    f64 floor of the whole-layer matrices;
  - peak RSS under 500 MB; every singular value within the accuracy contract (1e-6·σ_1 in f32,
    1e-12·σ_1 in f64) of LAPACK's f64 values.

What it does:

1. Generates, once, seven random-weight checkpoints with the exact configurations of the seed's
   models (EleutherAI/pythia-160m, EleutherAI/pythia-410m, EleutherAI/gpt-neo-125M,
   facebook/opt-125m, facebook/opt-350m, bigscience/bloom-560m, gpt2): the config.json of each
   is written here by hand from the Hub's, the model is instantiated with transformers'
   `AutoModelForCausalLM.from_config` (seeded) and saved with `save_pretrained` (safetensors,
   f32 by default). Cached under `--cache` (default `.bench-cache/extract/<dtype>/` in the
   repository root, gitignored; about 7.3 GB in f32). Only shapes and layouts matter.
2. For each round (--runs, default 3) and each configuration in turn: `pipeline run extract
   --force --quiet --threads T` of a pipeline file for that configuration (backend faer) under
   `/usr/bin/time -v` (wall, CPU, peak RSS, sampled anonymous/file-backed RSS), followed at once
   by the floor of the configuration's precision, so that each pair sees about the same load on
   a shared machine: LAPACK's values-only SVD (gesdd without vectors; `torch.linalg.svdvals`,
   MKL) of the same whole-layer matrices as the pipeline splits them (the per-head interleave of
   gpt_neox/bloom fused QKV, GPT-2's Conv1D transposed, OPT/GPT-Neo's separate projections),
   already in memory (f32, or f64 for the f64 floor), in T processes of one thread each over
   balanced shares (one matrix per thread, the pipeline's scheme). The 1-minute load average is
   recorded before each pair.
3. Accuracy: every spectrum the pipeline wrote (spectra/ table) against LAPACK's f64 values:
   the whole-layer ones from the f64 floor's own spectra (or numpy when no f64 configuration
   ran), per-head matrices by numpy's svd in f64, circuits from the R factors of both factors'
   thin QRs (LAPACK dgeqrf, then gesdd of the d_head x d_head core) in f64.
4. Optionally (--transformers) a transformers-based script doing the f32 whole-layer work, under
   `/usr/bin/time -v`: each model in turn `from_pretrained(dtype=float32)`, the same matrices
   split out, `torch.linalg.svdvals` on each, `del model; gc.collect()` (as the seed notebook).
5. Prints a Markdown table per configuration (medians, paired ratios, max |Δσ|/σ_1 per category,
   peak RSS, load) and, with --json PATH, writes all figures as JSON.

Needs (see scripts/requirements-fixtures.txt): torch 2.11, transformers 5.24, safetensors 0.8,
numpy 2.4, pyarrow; GNU time (Debian package `time`) at /usr/bin/time; a built `pipeline` binary
(the README's build: `cargo build --bin pipeline`, the dev profile).

usage: python scripts/bench_extract.py [--bin PATH] [--threads 2] [--runs 3]
           [--configs f32-whole,f32-heads-circuits,f64-heads-circuits] [--models gpt2,...]
           [--cache DIR] [--json out.json] [--transformers] [--dtype f32|f16|bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# --- the seed's seven models: config.json as on the Hub (written by hand) ----------------------
# `torch_dtype` is float32 because that is how these random checkpoints are stored (the Hub's
# say float16 for Pythia/OPT); everything else is the Hub configuration.

_GPT_NEO_LAYERS = ["global", "local"] * 6

MODELS: list[tuple[str, str, dict]] = [
    (
        "EleutherAI/pythia-160m",
        "pythia-160m",
        {
            "architectures": ["GPTNeoXForCausalLM"],
            "bos_token_id": 0,
            "eos_token_id": 0,
            "hidden_act": "gelu",
            "hidden_size": 768,
            "initializer_range": 0.02,
            "intermediate_size": 3072,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 2048,
            "model_type": "gpt_neox",
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "rotary_emb_base": 10000,
            "rotary_pct": 0.25,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "transformers_version": "4.24.0",
            "use_cache": True,
            "use_parallel_residual": True,
            "vocab_size": 50304,
        },
    ),
    (
        "EleutherAI/pythia-410m",
        "pythia-410m",
        {
            "architectures": ["GPTNeoXForCausalLM"],
            "bos_token_id": 0,
            "eos_token_id": 0,
            "hidden_act": "gelu",
            "hidden_size": 1024,
            "initializer_range": 0.02,
            "intermediate_size": 4096,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 2048,
            "model_type": "gpt_neox",
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "rotary_emb_base": 10000,
            "rotary_pct": 0.25,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "transformers_version": "4.24.0",
            "use_cache": True,
            "use_parallel_residual": True,
            "vocab_size": 50304,
        },
    ),
    (
        "EleutherAI/gpt-neo-125M",
        "gpt-neo-125M",
        {
            "activation_function": "gelu_new",
            "architectures": ["GPTNeoForCausalLM"],
            "attention_dropout": 0,
            "attention_layers": _GPT_NEO_LAYERS,
            "attention_types": [[["global", "local"], 6]],
            "bos_token_id": 50256,
            "embed_dropout": 0,
            "eos_token_id": 50256,
            "gradient_checkpointing": False,
            "hidden_size": 768,
            "initializer_range": 0.02,
            "intermediate_size": None,
            "layer_norm_epsilon": 1e-05,
            "max_position_embeddings": 2048,
            "model_type": "gpt_neo",
            "num_heads": 12,
            "num_layers": 12,
            "resid_dropout": 0,
            "summary_activation": None,
            "summary_first_dropout": 0.1,
            "summary_proj_to_labels": True,
            "summary_type": "cls_index",
            "summary_use_proj": True,
            "torch_dtype": "float32",
            "transformers_version": "4.9.0.dev0",
            "use_cache": True,
            "vocab_size": 50257,
            "window_size": 256,
        },
    ),
    (
        "facebook/opt-125m",
        "opt-125m",
        {
            "activation_dropout": 0.0,
            "activation_function": "relu",
            "architectures": ["OPTForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": 2,
            "do_layer_norm_before": True,
            "dropout": 0.1,
            "eos_token_id": 2,
            "ffn_dim": 3072,
            "hidden_size": 768,
            "init_std": 0.02,
            "layerdrop": 0.0,
            "max_position_embeddings": 2048,
            "model_type": "opt",
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "pad_token_id": 1,
            "prefix": "</s>",
            "torch_dtype": "float32",
            "transformers_version": "4.21.0.dev0",
            "use_cache": True,
            "vocab_size": 50272,
            "word_embed_proj_dim": 768,
        },
    ),
    (
        "facebook/opt-350m",
        "opt-350m",
        {
            "activation_dropout": 0.0,
            "activation_function": "relu",
            "architectures": ["OPTForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": 2,
            "do_layer_norm_before": False,
            "dropout": 0.1,
            "eos_token_id": 2,
            "ffn_dim": 4096,
            "hidden_size": 1024,
            "init_std": 0.02,
            "layerdrop": 0.0,
            "max_position_embeddings": 2048,
            "model_type": "opt",
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "pad_token_id": 1,
            "prefix": "</s>",
            "torch_dtype": "float32",
            "transformers_version": "4.20.0.dev0",
            "use_cache": True,
            "vocab_size": 50272,
            "word_embed_proj_dim": 512,
        },
    ),
    (
        "bigscience/bloom-560m",
        "bloom-560m",
        {
            "apply_residual_connection_post_layernorm": False,
            "architectures": ["BloomForCausalLM"],
            "attention_dropout": 0.0,
            "attention_softmax_in_fp32": True,
            "bias_dropout_fusion": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_dropout": 0.0,
            "hidden_size": 1024,
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05,
            "masked_softmax_fusion": True,
            "model_type": "bloom",
            "n_head": 16,
            "n_inner": None,
            "n_layer": 24,
            "offset_alibi": 100,
            "pad_token_id": 3,
            "pretraining_tp": 1,
            "skip_bias_add": True,
            "skip_bias_add_qkv": False,
            "slow_but_exact": False,
            "torch_dtype": "float32",
            "transformers_version": "4.27.0.dev0",
            "unk_token_id": 0,
            "use_cache": True,
            "vocab_size": 250880,
        },
    ),
    (
        "gpt2",
        "gpt2",
        {
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "bos_token_id": 50256,
            "embd_pdrop": 0.1,
            "eos_token_id": 50256,
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05,
            "model_type": "gpt2",
            "n_ctx": 1024,
            "n_embd": 768,
            "n_head": 12,
            "n_layer": 12,
            "n_positions": 1024,
            "resid_pdrop": 0.1,
            "summary_activation": None,
            "summary_first_dropout": 0.1,
            "summary_proj_to_labels": True,
            "summary_type": "cls_index",
            "summary_use_proj": True,
            "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
            "torch_dtype": "float32",
            "vocab_size": 50257,
        },
    ),
]

KINDS = ("W_Q", "W_K", "W_V", "W_O")
DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def geometry(cfg: dict) -> tuple[int, int, int]:
    """(n_layers, d_model, n_heads) under each architecture's config keys."""
    t = cfg["model_type"]
    if t == "gpt2":
        return cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    if t == "gpt_neo":
        return cfg["num_layers"], cfg["hidden_size"], cfg["num_heads"]
    if t == "bloom":
        return cfg["n_layer"], cfg["hidden_size"], cfg["n_head"]
    return cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]


def _find(names: list[str], suffix: str) -> str:
    """The one tensor name equal to `suffix` or ending in `.suffix` (any model prefix)."""
    hits = [n for n in names if n == suffix or n.endswith("." + suffix)]
    if len(hits) != 1:
        raise KeyError(f"expected one tensor named *{suffix}, found {hits}")
    return hits[0]


def layer_matrices(cfg: dict, get, names: list[str], layer: int) -> dict:
    """The whole-layer W_Q, W_K, W_V, W_O of `layer` as the pipeline splits them, in canonical
    [out, in] form, as contiguous float32 numpy arrays. `get(name)` returns a tensor as numpy."""
    import numpy as np

    t = cfg["model_type"]
    _, d, h = geometry(cfg)
    dh = d // h

    def w(suffix):
        return get(_find(names, suffix)).astype(np.float32, copy=False)

    if t in ("gpt_neox", "bloom"):
        pre = f"layers.{layer}.attention." if t == "gpt_neox" else f"h.{layer}.self_attention."
        qkv = w(pre + "query_key_value.weight")  # [3d, d], rows interleaved per head: [h, 3, dh]
        g = qkv.reshape(h, 3, dh, d)
        q, k, v = (g[:, i].reshape(h * dh, d) for i in range(3))
        o = w(pre + "dense.weight")
    elif t == "gpt2":
        pre = f"h.{layer}.attn."
        qkv = w(pre + "c_attn.weight").T  # Conv1D [d, 3d] -> [3d, d], blocks Q|K|V
        q, k, v = qkv[:d], qkv[d : 2 * d], qkv[2 * d :]
        o = w(pre + "c_proj.weight").T
    else:
        pre = {"opt": f"layers.{layer}.self_attn.", "gpt_neo": f"h.{layer}.attn.attention."}[t]
        q, k, v = (w(pre + f"{p}_proj.weight") for p in "qkv")
        o = w(pre + "out_proj.weight")
    return {kind: np.ascontiguousarray(m) for kind, m in zip(KINDS, (q, k, v, o), strict=True)}


# --- 1. checkpoints ------------------------------------------------------------------------------


def generate(cache: Path, dtype: str, regenerate: bool) -> list[dict]:
    """Creates (or reuses) the seven checkpoints; returns one record per model."""
    out = []
    for index, (hub_id, name, cfg) in enumerate(MODELS):
        d = cache / name
        marker = d / ".complete.json"
        if marker.is_file() and not regenerate:
            rec = json.loads(marker.read_text())
            sizes = sum(
                (d / f).stat().st_size if (d / f).is_file() else -1 for f in rec.get("files", [])
            )
            if rec.get("dtype") == dtype and rec.get("config") == cfg and sizes == rec["bytes"]:
                out.append(rec)
                continue
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        print(f"generating {name} ({hub_id}, random {dtype})", flush=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        config = AutoConfig.from_pretrained(d)
        torch.manual_seed(index)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, DTYPES[dtype]))
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(d)
        del model
        # save_pretrained rewrote config.json in its own dialect; keep the Hub's.
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        for extra in ("generation_config.json",):
            (d / extra).unlink(missing_ok=True)
        files = sorted(p.name for p in d.glob("*.safetensors"))
        rec = {
            "hub_id": hub_id,
            "name": name,
            "dir": str(d),
            "dtype": dtype,
            "params": params,
            "bytes": sum((d / f).stat().st_size for f in files),
            "files": files,
            "config": cfg,
        }
        marker.write_text(json.dumps(rec, indent=2) + "\n")
        out.append(rec)
    return out


def check_inspect(binary: Path, models: list[dict]) -> None:
    """`pipeline inspect DIR` must read every generated checkpoint."""
    for m in models:
        r = subprocess.run(
            [str(binary), "inspect", m["dir"]], capture_output=True, text=True, check=False
        )
        if r.returncode != 0:
            sys.exit(f"pipeline inspect {m['dir']} failed:\n{r.stdout}{r.stderr}")
        arch = next((ln for ln in r.stdout.splitlines() if ln.startswith("arch")), "?")
        print(f"inspect {m['name']}: {arch.split(':')[0].split()[-1]}", flush=True)


def warm_page_cache(models: list[dict]) -> None:
    """Reads every weight file once so that each pipeline run finds them in the page cache."""
    for m in models:
        for f in m["files"]:
            with open(Path(m["dir"]) / f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


# --- 2. the pipeline under /usr/bin/time ---------------------------------------------------------


# The configurations measured (issue 14): name -> (precision, per-head matrices and circuits),
# the floor they are compared with, and the target ratio.
CONFIGS = {
    "f32-whole": ("f32", False, 0.8),
    "f32-heads-circuits": ("f32", True, 0.9),
    "f64-heads-circuits": ("f64", True, 1.0),
}


def write_pipeline(cache: Path, models: list[dict], config: str) -> Path:
    precision, full, _ = CONFIGS[config]
    kinds = '["W_Q", "W_K", "W_V", "W_O", "OV", "QK"]' if full else '["W_Q", "W_K", "W_V", "W_O"]'
    lines = [
        f"# Written by scripts/bench_extract.py: the seed's seven models, random weights ({config}).",
        f'name = "bench-extract-{config}"',
        "",
        "[analysis]",
        f"kinds = {kinds}",
        f"per_head = {'true' if full else 'false'}",
        "fold_ln = false",
        f'precision = "{precision}"',
        'backend = "faer"',
    ]
    for m in models:
        lines += ["", "[[models]]", f'id = "bench/{m["name"]}"', f"source = {json.dumps(m['dir'])}"]
    path = cache / f"bench-extract-{config}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rss_parts(pid: int) -> tuple[int, int] | None:
    """(RssAnon, RssFile) of a process in kB, from /proc; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    parts = dict(re.findall(r"^(RssAnon|RssFile):\s+(\d+) kB", text, re.M))
    return int(parts.get("RssAnon", 0)), int(parts.get("RssFile", 0))


def time_v(cmd: list[str], env: dict | None = None) -> dict:
    """Runs `cmd` under GNU time -v; returns wall seconds, peak RSS (kB), CPU seconds and the
    output. While it runs, samples the child's anonymous and file-backed resident memory
    (RssAnon, RssFile: mapped checkpoint pages count as the latter) every 50 ms."""
    with (
        tempfile.NamedTemporaryFile("r", suffix=".time") as tf,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", "-o", tf.name, *cmd], stdout=out, stderr=err, env=env
        )
        anon = file = 0
        child = None
        while proc.poll() is None:
            if child is None:
                kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                try:
                    child = int(kids.read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    pass
            parts = _rss_parts(child) if child else None
            if parts:
                anon, file = max(anon, parts[0]), max(file, parts[1])
            time.sleep(0.05)
        report = tf.read()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout}\n{stderr}\n{report}")

    def field(label):
        m = re.search(rf"^\s*{re.escape(label)}: (.+)$", report, re.M)
        return m.group(1).strip() if m else None

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return {
        "wall_s": secs,
        "max_rss_kb": int(field("Maximum resident set size (kbytes)")),
        "max_rss_anon_kb": anon,
        "max_rss_file_kb": file,
        "user_s": float(field("User time (seconds)")),
        "sys_s": float(field("System time (seconds)")),
        "major_faults": int(field("Major (requiring I/O) page faults")),
        "stdout": stdout,
        "stderr": stderr,
    }


def run_pipeline(binary: Path, toml: Path, out: Path, threads: int, runs: int) -> list[dict]:
    res = []
    for _ in range(runs):
        r = time_v(
            [
                str(binary),
                "run",
                "extract",
                "--pipeline",
                str(toml),
                "--out",
                str(out),
                "--force",
                "--quiet",
                "--threads",
                str(threads),
            ]
        )
        print(
            f"pipeline run: {r['wall_s']:.2f} s wall, "
            f"{r['user_s']:.1f} s user, {r['max_rss_kb'] / 1024:.0f} MiB peak RSS "
            f"(sampled peaks: {r['max_rss_anon_kb'] / 1024:.0f} MiB anonymous, "
            f"{r['max_rss_file_kb'] / 1024:.0f} MiB file-backed)",
            flush=True,
        )
        rec = {k: v for k, v in r.items() if k not in ("stdout", "stderr")}
        # The stage reports each model on stderr: "done     bench/NAME@main: ... in 12.3 s".
        rec["per_model_s"] = {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"done\s+bench/(\S+)@\S+: .* in ([0-9.]+) s", r["stderr"])
        }
        res.append(rec)
    return res


# --- 3. the floor ------------------------------------------------------------------------------


def load_matrices(models: list[dict], keep=None) -> list[tuple[str, int, str, object]]:
    """(model, layer, kind, f32 array) for every whole-layer matrix the pipeline analyses, or
    only those whose (model, layer, kind) is in `keep`."""
    from safetensors import safe_open

    out = []
    for m in models:
        cfg = m["config"]
        framework = "numpy" if m["dtype"] == "f32" else "pt"
        handles = [safe_open(str(Path(m["dir"]) / f), framework=framework) for f in m["files"]]
        where = {n: h for h in handles for n in h.keys()}

        def get(n, where=where, framework=framework):
            t = where[n].get_tensor(n)
            return t if framework == "numpy" else t.float().numpy()

        names = list(where)
        for layer in range(geometry(cfg)[0]):
            if keep is not None and not any((m["name"], layer, k) in keep for k in KINDS):
                continue
            for kind, a in layer_matrices(cfg, get, names, layer).items():
                if keep is None or (m["name"], layer, kind) in keep:
                    out.append((m["name"], layer, kind, a))
    return out


def shares(models: list[dict], parts: int) -> list[set]:
    """Splits the matrices over `parts` workers, balanced by cost (largest first, dealt
    round-robin)."""
    keys = [
        (m["name"], layer, kind, geometry(m["config"])[1])
        for m in models
        for layer in range(geometry(m["config"])[0])
        for kind in KINDS
    ]
    keys.sort(key=lambda k: -k[3])
    return [{k[:3] for k in keys[i::parts]} for i in range(parts)]


def _parallel_worker(models, keep, precision, barrier, queue):
    """One process of the parallel floor: its share of the matrices, one torch thread. Returns
    σ_1 of each matrix, and the whole spectrum when the precision is f64 (LAPACK's f64 values,
    the accuracy reference)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    mats = load_matrices(models, keep)
    if precision == "f64":
        mats = [(a, b, c, m.astype(np.float64)) for a, b, c, m in mats]
    for a in {m[3].shape: m[3] for m in mats}.values():  # warm-up, once per shape
        torch.linalg.svdvals(torch.from_numpy(a))
    barrier.wait()
    out = []
    t, cpu = time.perf_counter(), time.process_time()
    for _, _, _, a in mats:
        out.append(torch.linalg.svdvals(torch.from_numpy(a)))
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    sigma = {}
    for (model, layer, kind, _), sv in zip(mats, out, strict=True):
        sigma[(model, layer, kind)] = sv.numpy() if precision == "f64" else float(sv[0])
    queue.put((elapsed, cpu, sigma))


def floor_parallel(models, procs: int, precision: str = "f32") -> tuple[float, float, dict]:
    """`procs` processes with one MKL thread each over balanced shares of the matrices, started
    together (the pipeline's own scheme: one thread per matrix); the slowest is the wall time.
    Returns it, the CPU seconds of all processes together, and σ_1 of every matrix (f32) or its
    whole f64 spectrum (f64)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_parallel_worker, args=(models, keep, precision, barrier, queue))
        for keep in shares(models, procs)
    ]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    sigma = {}
    for _, _, s in results:
        sigma.update(s)
    return max(r[0] for r in results), sum(r[1] for r in results), sigma


# --- 4. a transformers-based script doing the same work -----------------------------------------


def transformers_worker(models: list[dict], threads: int) -> None:
    """Each model in turn: from_pretrained in f32, whole-layer W_Q..W_O, svdvals, free."""
    import gc

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    count = 0
    for m in models:
        model = AutoModelForCausalLM.from_pretrained(m["dir"], dtype=torch.float32)
        model.eval()
        state = {n: p.detach() for n, p in model.named_parameters()}
        names = list(state)
        for layer in range(geometry(m["config"])[0]):
            mats = layer_matrices(m["config"], lambda n, st=state: st[n].numpy(), names, layer)
            for a in mats.values():
                torch.linalg.svdvals(torch.from_numpy(a))
                count += 1
        del model, state
        gc.collect()
    print(f"transformers: {count} matrices")


# --- 5. accuracy: every spectrum against LAPACK's f64 values ----------------------------------


def factored_svdvals(left, right):
    """Singular values of left @ right (left [m, k], right [k, n], k small) from the R factors of
    their thin QRs (LAPACK dgeqrf, then dgesdd of the k x k core), in f64."""
    import numpy as np

    rl = np.linalg.qr(left, mode="r")
    rr = np.linalg.qr(right.T, mode="r")
    return np.linalg.svd(rl @ rr.T, compute_uv=False)


def references(models: list[dict], whole: bool) -> dict:
    """LAPACK f64 spectra (numpy, untimed) of every per-head matrix and circuit as the pipeline
    cuts them (the seed's models have as many KV heads as query heads: head h pairs with KV head
    h), and of the whole-layer matrices when `whole`. Keys: (model, layer, kind) for whole-layer
    matrices, (model, layer, head, kind) for the others."""
    import numpy as np
    from safetensors import safe_open

    ref = {}
    for m in models:
        cfg = m["config"]
        n_layers, d, h = geometry(cfg)
        dh = d // h
        handles = [safe_open(str(Path(m["dir"]) / f), framework="pt") for f in m["files"]]
        where = {n: hd for hd in handles for n in hd.keys()}
        names = list(where)
        for layer in range(n_layers):
            mats = layer_matrices(cfg, lambda n, w=where: w[n].get_tensor(n).float().numpy(), names, layer)
            q, k, v, o = (mats[kind].astype(np.float64) for kind in KINDS)
            if whole:
                for kind, a in zip(KINDS, (q, k, v, o), strict=True):
                    ref[(m["name"], layer, kind)] = np.linalg.svd(a, compute_uv=False)
            for head in range(h):
                rows = slice(head * dh, (head + 1) * dh)
                qh, kh, vh, oh = q[rows], k[rows], v[rows], o[:, rows]
                for kind, a in zip(KINDS, (qh, kh, vh, oh), strict=True):
                    ref[(m["name"], layer, head, kind)] = np.linalg.svd(a, compute_uv=False)
                ref[(m["name"], layer, head, "OV")] = factored_svdvals(oh, vh)
                ref[(m["name"], layer, head, "QK")] = factored_svdvals(qh.T, kh)
    return ref


def accuracy(out: Path, ref: dict) -> dict:
    """max |Δσ| / σ_1 of the pipeline's spectra against `ref`, per category, over every matrix."""
    import numpy as np
    import pyarrow.parquet as pq

    worst = {"whole-layer": 0.0, "per-head": 0.0, "circuits": 0.0}
    counts = dict.fromkeys(worst, 0)
    for f in sorted((out / "spectra").glob("*.parquet")):
        t = pq.read_table(f, columns=["model", "layer", "head", "kind", "singular_values"])
        for model, layer, head, kind, sv in zip(
            *(t.column(c).to_pylist() for c in t.column_names), strict=True
        ):
            name = model.removeprefix("bench/")
            key = (name, layer, kind) if head is None else (name, layer, head, kind)
            r = ref[key]
            sv = np.asarray(sv, dtype=np.float64)
            if sv.shape != r.shape:
                sys.exit(f"{f}: {key} has {sv.size} singular values, LAPACK {r.size}")
            cat = "whole-layer" if head is None else ("circuits" if kind in ("OV", "QK") else "per-head")
            worst[cat] = max(worst[cat], float(np.max(np.abs(sv - r)) / r[0]) if r[0] > 0 else 0.0)
            counts[cat] += 1
    return {"max_rel_err": {k: v for k, v in worst.items() if counts[k]}, "matrices": counts}


# --- main -------------------------------------------------------------------------------------


def default_binary() -> Path:
    if os.environ.get("PIPELINE_BIN"):
        return Path(os.environ["PIPELINE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("release", "debug"):
        if (target / profile / "pipeline").is_file():
            return target / profile / "pipeline"
    return target / "release" / "pipeline"


def machine() -> dict:
    cpu = "?"
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_before": os.getloadavg()}


def fmt_mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB ({kb * 1024 / 1e6:.0f} MB)"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=None, help="the pipeline binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="paired runs per configuration")
    ap.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated, of {', '.join(CONFIGS)}",
    )
    ap.add_argument(
        "--models", default=None, help="comma-separated model names (default: all seven)"
    )
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="storage dtype")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache" / "extract")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument(
        "--transformers", action="store_true", help="also time a transformers-based script"
    )
    ap.add_argument(
        "--hf-threads",
        type=int,
        default=1,
        help="torch threads of the transformers script (its SVD time is not the point)",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", choices=["transformers"], help=argparse.SUPPRESS)
    ap.add_argument("--models-json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "transformers":
        transformers_worker(json.loads(args.models_json.read_text()), args.threads)
        return

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"unknown configuration {c!r}: expected some of {', '.join(CONFIGS)}")
    binary = args.bin or default_binary()
    if not binary.is_file():
        sys.exit(f"no pipeline binary at {binary} (build it, or pass --bin / PIPELINE_BIN)")
    if not Path("/usr/bin/time").is_file():
        sys.exit("GNU time is needed at /usr/bin/time (Debian: apt-get install time)")
    cache = args.cache / args.dtype
    cache.mkdir(parents=True, exist_ok=True)
    info = machine()
    models = generate(cache, args.dtype, args.regenerate)
    if args.models:
        wanted = set(args.models.split(","))
        models = [m for m in models if m["name"] in wanted]
        if len(models) != len(wanted):
            sys.exit(f"unknown model in --models {args.models}")
    total = sum(m["params"] for m in models)
    print(
        f"{len(models)} checkpoints, {total / 1e9:.3f} B parameters, "
        f"{sum(m['bytes'] for m in models) / 1e9:.2f} GB of {args.dtype} safetensors",
        flush=True,
    )
    check_inspect(binary, models)
    tomls = {c: write_pipeline(cache, models, c) for c in configs}
    warm_page_cache(models)
    shapes: dict[str, int] = {}
    for m in models:
        n_layers, d, _ = geometry(m["config"])
        shapes[f"{d}x{d}"] = shapes.get(f"{d}x{d}", 0) + 4 * n_layers

    results = {c: {"runs": [], "floor_runs": [], "load_1min": []} for c in configs}
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        # The machine is shared: its load changes from minute to minute. Each pipeline run is
        # paired with a floor run of the same precision right after it, configurations take
        # turns, and the median of the paired ratios is the figure.
        ref_whole = {}
        for i in range(args.runs):
            for c in configs:
                precision = CONFIGS[c][0]
                load = os.getloadavg()[0]
                r = run_pipeline(binary, tomls[c], Path(tmp) / c, args.threads, 1)[0]
                t, cpu, sigma = floor_parallel(models, args.threads, precision)
                if precision == "f64":
                    ref_whole = sigma
                res = results[c]
                res["runs"].append(r)
                res["floor_runs"].append({"wall_s": t, "cpu_s": cpu})
                res["load_1min"].append([load, os.getloadavg()[0]])
                print(
                    f"{c} {i + 1}/{args.runs}: pipeline {r['wall_s']:.2f} s, {precision} floor "
                    f"{t:.2f} s, ratio {r['wall_s'] / t:.3f} (load {load:.2f})",
                    flush=True,
                )
        print("LAPACK f64 references (untimed) ...", flush=True)
        ref = references(models, whole=not ref_whole)
        ref.update(ref_whole)
        for c in configs:
            results[c]["accuracy"] = accuracy(Path(tmp) / c, ref)

    hf = None
    if args.transformers:
        mj = cache / "models.json"
        mj.write_text(json.dumps(models))
        hf = time_v(
            [
                sys.executable,
                __file__,
                "--worker",
                "transformers",
                "--models-json",
                str(mj),
                "--threads",
                str(args.hf_threads),
            ],
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
        )
        print(
            f"transformers script: {hf['wall_s']:.2f} s wall, {fmt_mb(hf['max_rss_kb'])} peak RSS",
            flush=True,
        )
        hf = {k: v for k, v in hf.items() if k not in ("stdout", "stderr")}

    info["load_after"] = os.getloadavg()
    summary = {}
    for c in configs:
        res = results[c]
        precision, _, target = CONFIGS[c]
        ratios = [r["wall_s"] / f["wall_s"] for r, f in zip(res["runs"], res["floor_runs"], strict=True)]
        acc = res["accuracy"]["max_rel_err"]
        summary[c] = {
            "precision": precision,
            "pipeline_median_s": median([r["wall_s"] for r in res["runs"]]),
            "floor_median_s": median([f["wall_s"] for f in res["floor_runs"]]),
            "paired_ratios": ratios,
            "ratio_median": median(ratios),
            "target": target,
            "met": median(ratios) <= target,
            "cpu_ratio_median": median(
                [
                    (r["user_s"] + r["sys_s"]) / f["cpu_s"]
                    for r, f in zip(res["runs"], res["floor_runs"], strict=True)
                ]
            ),
            "max_rel_err": acc,
            "contract": max(acc.values()) <= {"f32": 1e-6, "f64": 1e-12}[precision],
            "max_rss_kb": max(r["max_rss_kb"] for r in res["runs"]),
            "load_1min": res["load_1min"],
        }
    result = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "binary": {
            "path": str(binary),
            "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(binary.stat().st_mtime)),
            "version": subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
        },
        "threads": args.threads,
        "storage_dtype": args.dtype,
        "checkpoints": [{k: v for k, v in m.items() if k != "config"} for m in models],
        "total_params": total,
        "whole_layer_matrices": shapes,
        "configurations": summary,
        "runs": results,
        "transformers": hf,
        "transformers_threads": args.hf_threads,
        "rss_target_mb": 500,
    }
    print(
        f"\n{len(models)} checkpoints ({total / 1e9:.2f} B params, {args.dtype} safetensors), "
        f"whole-layer matrices {', '.join(f'{n} x {s}' for s, n in shapes.items())}; "
        f"{args.threads} threads; {args.runs} paired runs; {result['date_utc']}; "
        f"{info['cores']} cores, {info['cpu']}\n"
    )
    print(
        "| configuration | ours (s, median) | floor (s, median) | ours / floor (median; each pair) "
        "| target | CPU time ours / floor (median) | max abs(Δσ)/σ_1 vs LAPACK f64 | peak RSS "
        "| load (1 min) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c, v in summary.items():
        acc = ", ".join(f"{k} {e:.1e}" for k, e in v["max_rel_err"].items())
        loads = "-".join(f"{x:.1f}" for pair in v["load_1min"] for x in pair[:1])
        print(
            f"| {c} | {v['pipeline_median_s']:.2f} | {v['floor_median_s']:.2f} ({v['precision']}) "
            f"| **{v['ratio_median']:.2f}** ({', '.join(f'{x:.2f}' for x in v['paired_ratios'])}) "
            f"| <= {v['target']} {'met' if v['met'] else 'MISSED'} | {v['cpu_ratio_median']:.2f} "
            f"| {acc} "
            f"({'within' if v['contract'] else 'OUTSIDE'} the contract) "
            f"| {fmt_mb(v['max_rss_kb'])} | {loads} |"
        )
    if hf:
        print(f"\ntransformers script: {hf['wall_s']:.2f} s, {fmt_mb(hf['max_rss_kb'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
