#!/usr/bin/env python3
"""Benchmark of `pipeline run extract` against the LAPACK floor (issue 4). Not a test.

The target: `pipeline run extract` over seven local checkpoints of the seed study's sizes
(about 1.8 billion parameters, safetensors on local disk), whole-layer W_Q, W_K, W_V, W_O only,
in f32, takes at most 1.3 times as long as the singular values of the same matrices already in
memory computed through LAPACK on the same machine in the same run, with a peak resident set
under 500 MB; a transformers-based script doing the same work is measured for comparison.

What it does:

1. Generates, once, seven random-weight checkpoints with the exact configurations of the seed's
   models (EleutherAI/pythia-160m, EleutherAI/pythia-410m, EleutherAI/gpt-neo-125M,
   facebook/opt-125m, facebook/opt-350m, bigscience/bloom-560m, gpt2): the config.json of each
   is written here by hand from the Hub's, the model is instantiated with transformers'
   `AutoModelForCausalLM.from_config` (seeded) and saved with `save_pretrained` (safetensors,
   f32 by default). Cached under `.bench-cache/extract/<dtype>/` in the repository root
   (gitignored; about 7.3 GB in f32). The weights are random: only shapes and layouts matter.
2. Writes a pipeline file over them (kinds W_Q, W_K, W_V, W_O; per_head = false; no circuits;
   precision f32; backend faer) and runs `pipeline run extract --force --quiet --threads T`
   under `/usr/bin/time -v` --runs times (best wall time; largest peak RSS, split into its
   anonymous and file-backed parts by sampling /proc), each run followed at once by a run of
   the parallel floor below, so that every pair sees about the same load on a shared machine.
3. The floor, in the same run: loads the same whole-layer matrices as the pipeline splits them
   (the per-head interleave of gpt_neox/bloom fused QKV, GPT-2's Conv1D transposed, OPT/GPT-Neo's
   separate projections) into memory as contiguous f32, and times LAPACK's values-only SVD
   (gesdd without vectors) over them three ways: `torch.linalg.svdvals` (MKL) in T processes of
   one thread each over balanced halves of the matrices (the pipeline's own scheme, one thread
   per matrix); `torch.linalg.svdvals` one matrix after another with T threads; numpy's
   `np.linalg.svd(compute_uv=False)` (OpenBLAS) the same way. The fastest is the floor. A
   sequential way still running at twice the best time so far is stopped (it cannot be the
   floor) and its time extrapolated: on a loaded 2-core machine, MKL with 2 OpenMP threads was
   measured 10x slower per matrix than with one.
4. Optionally (default on) a transformers-based script doing the same work, under
   `/usr/bin/time -v`: each model in turn `from_pretrained(dtype=float32)`, the same matrices
   split out, `torch.linalg.svdvals` on each, `del model; gc.collect()` (as the seed notebook).
5. Checks that the pipeline did the same work: its spectral norms must match the floor's σ_1.
6. Prints a Markdown table and, with --json PATH, writes all figures as JSON.

Needs (see scripts/requirements-fixtures.txt): torch 2.11, transformers 5.24, safetensors 0.8,
numpy 2.4, pyarrow (any recent; only for the correctness check), threadpoolctl; GNU time
(Debian package `time`) at /usr/bin/time; a built `pipeline` binary.

usage: /work/venv/torch/bin/python scripts/bench_extract.py [--bin PATH] [--threads 2]
           [--runs 3] [--json out.json] [--no-transformers] [--no-sequential-floors]
           [--dtype f32|f16|bf16]
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


def write_pipeline(cache: Path, models: list[dict]) -> Path:
    lines = [
        "# Written by scripts/bench_extract.py: the seed's seven models, random weights.",
        'name = "bench-extract"',
        "",
        "[analysis]",
        'kinds = ["W_Q", "W_K", "W_V", "W_O"]',
        "per_head = false",
        "circuits = false",
        "fold_ln = false",
        'precision = "f32"',
        'backend = "faer"',
    ]
    for m in models:
        lines += ["", "[[models]]", f'id = "bench/{m["name"]}"', f"source = {json.dumps(m['dir'])}"]
    path = cache / "bench-extract.toml"
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


def _parallel_worker(models, keep, barrier, queue):
    """One process of the parallel floor: its share of the matrices, one torch thread."""
    import torch

    torch.set_num_threads(1)
    mats = load_matrices(models, keep)
    for a in {m[3].shape: m[3] for m in mats}.values():  # warm-up, once per shape
        torch.linalg.svdvals(torch.from_numpy(a))
    barrier.wait()
    sigma = {}
    t, cpu = time.perf_counter(), time.process_time()
    for model, layer, kind, a in mats:
        sigma[(model, layer, kind)] = float(torch.linalg.svdvals(torch.from_numpy(a))[0])
    queue.put((time.perf_counter() - t, time.process_time() - cpu, sigma))


def floor_parallel(models, procs: int) -> tuple[float, float, dict]:
    """`procs` processes with one MKL thread each over balanced shares of the matrices, started
    together (the pipeline's own scheme: one thread per matrix); the slowest is the wall time.
    Returns it, the CPU seconds of all processes together, and σ_1 of every matrix."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_parallel_worker, args=(models, keep, barrier, queue))
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


def floor_sequential(mats, threads: int, library: str, cap_s: float) -> tuple[float, bool]:
    """One matrix after another, `threads` threads inside each SVD: torch.linalg.svdvals (MKL
    gesdd) or np.linalg.svd(compute_uv=False) (OpenBLAS gesdd). Gives up after `cap_s` seconds
    (it cannot be the floor then) and returns the time extrapolated from the work done, False."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    if library == "torch":
        torch.set_num_threads(threads)

        def svd(a):
            torch.linalg.svdvals(torch.from_numpy(a))
    else:

        def svd(a):
            np.linalg.svd(a, compute_uv=False)

    with threadpool_limits(limits=threads, user_api="blas"):
        for a in {m[3].shape: m[3] for m in mats}.values():  # warm-up, once per shape
            svd(a)
        total = sum(m[3].size for m in mats)
        done = 0
        t = time.perf_counter()
        for _, _, _, a in mats:
            svd(a)
            done += a.size
            if time.perf_counter() - t > cap_s and done < total:
                return (time.perf_counter() - t) * total / done, False
        return time.perf_counter() - t, True


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


# --- 5. correctness: the pipeline's spectral norms against torch's ----------------------------


def check_spectral_norms(out: Path, sigma: dict) -> float:
    import pyarrow.parquet as pq

    worst, seen = 0.0, 0
    for f in sorted((out / "matrices").glob("*.parquet")):
        t = pq.read_table(f, columns=["model", "layer", "head", "kind", "spectral_norm"])
        for model, layer, head, kind, sn in zip(
            *(t.column(c).to_pylist() for c in t.column_names), strict=True
        ):
            assert head is None, f"{f}: per-head row found; the pipeline file asked for none"
            ref = sigma[(model.removeprefix("bench/"), layer, kind)]
            worst = max(worst, abs(sn - ref) / ref)
            seen += 1
    if seen != len(sigma):
        sys.exit(f"the pipeline wrote {seen} matrices, the floor has {len(sigma)}")
    return worst


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=None, help="the pipeline binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="pipeline runs (best wall time)")
    ap.add_argument(
        "--no-sequential-floors",
        action="store_true",
        help="skip the one-matrix-at-a-time floors (slow on a loaded machine)",
    )
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="storage dtype")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache" / "extract")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--no-transformers", action="store_true")
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

    binary = args.bin or default_binary()
    if not binary.is_file():
        sys.exit(f"no pipeline binary at {binary} (build it, or pass --bin / PIPELINE_BIN)")
    if not Path("/usr/bin/time").is_file():
        sys.exit("GNU time is needed at /usr/bin/time (Debian: apt-get install time)")
    cache = args.cache / args.dtype
    cache.mkdir(parents=True, exist_ok=True)
    info = machine()
    models = generate(cache, args.dtype, args.regenerate)
    total = sum(m["params"] for m in models)
    print(
        f"{len(models)} checkpoints, {total / 1e9:.3f} B parameters, "
        f"{sum(m['bytes'] for m in models) / 1e9:.2f} GB of {args.dtype} safetensors",
        flush=True,
    )
    check_inspect(binary, models)
    toml = write_pipeline(cache, models)
    warm_page_cache(models)

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        out = Path(tmp) / "data"
        # The machine is shared: its load changes from minute to minute. Each pipeline run is
        # paired with a floor run right after it, and the ratio of each pair is kept as well.
        runs, floor_runs = [], []
        floors: dict[str, float] = {}
        extrapolated: dict[str, float] = {}
        par = f"torch_svdvals_{args.threads}x1"
        for i in range(args.runs):
            runs += run_pipeline(binary, toml, out, args.threads, 1)
            t, cpu, sigma = floor_parallel(models, args.threads)
            floor_runs.append({"wall_s": t, "cpu_s": cpu})
            floors[par] = min(t, floors.get(par, t))
            print(
                f"floor {i + 1}/{args.runs}: torch.linalg.svdvals, {args.threads} process(es) x 1 "
                f"thread: {t:.2f} s ({cpu:.1f} CPU s); this pair's ratio "
                f"{runs[-1]['wall_s'] / t:.2f}",
                flush=True,
            )
        floor_cpu = min(r["cpu_s"] for r in floor_runs)
        worst = check_spectral_norms(out, sigma)
        print(f"pipeline spectral norms vs torch: max relative difference {worst:.2e}", flush=True)
        mats = load_matrices(models)
        shapes: dict[str, int] = {}
        for _, _, _, a in mats:
            key = "x".join(map(str, a.shape))
            shapes[key] = shapes.get(key, 0) + 1
        seq = [("torch", "torch_svdvals_seq"), ("numpy", "numpy_svd_seq")]
        for _ in range(1 if args.threads > 1 and not args.no_sequential_floors else 0):
            for lib, name in seq:
                cap = 2 * min(floors.values())
                t, complete = floor_sequential(mats, args.threads, lib, cap)
                if complete:
                    floors[name] = min(t, floors.get(name, t))
                elif name not in floors:
                    extrapolated[name] = min(t, extrapolated.get(name, t))
                note = "" if complete else " (stopped at twice the best floor; extrapolated)"
                print(
                    f"floor: {name}, {args.threads} threads, one matrix at a time: {t:.2f} s{note}",
                    flush=True,
                )
        del mats

    hf = None
    if not args.no_transformers:
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
    best = min(r["wall_s"] for r in runs)
    rss = max(r["max_rss_kb"] for r in runs)
    pipe_cpu = min(r["user_s"] + r["sys_s"] for r in runs)
    floor_name = min(floors, key=floors.get)
    floor = floors[floor_name]
    describe = {
        f"torch_svdvals_{args.threads}x1": f"torch.linalg.svdvals, {args.threads} process(es) "
        "x 1 thread",
        "torch_svdvals_seq": f"torch.linalg.svdvals, {args.threads} threads, one at a time",
        "numpy_svd_seq": f"np.linalg.svd(compute_uv=False), {args.threads} threads, one at a time",
    }
    per_model = {}
    for r in runs:
        for k, v in r.get("per_model_s", {}).items():
            per_model[k] = min(v, per_model.get(k, v))
    result = {
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
        "matrices": shapes,
        "pipeline_runs": runs,
        "extract_wall_s": best,
        "extract_max_rss_kb": rss,
        "extract_per_model_best_s": per_model,
        "floors_s": floors,
        "floors_stopped_extrapolated_s": extrapolated,
        "floor": floor_name,
        "floor_s": floor,
        "ratio": best / floor,
        "floor_runs": floor_runs,
        "paired_ratios": [r["wall_s"] / f["wall_s"] for r, f in zip(runs, floor_runs, strict=True)],
        "extract_cpu_s": pipe_cpu,
        "floor_cpu_s": floor_cpu,
        "cpu_ratio": pipe_cpu / floor_cpu,
        "max_rel_diff_spectral_norm": worst,
        "transformers": hf,
        "transformers_threads": args.hf_threads,
        "target": {"ratio_max": 1.3, "rss_max_mb": 500},
    }
    rows = [
        ("checkpoints", f"{len(models)} ({total / 1e9:.2f} B params, {args.dtype} safetensors)"),
        (
            "matrices (whole-layer W_Q, W_K, W_V, W_O)",
            ", ".join(f"{n} x {s}" for s, n in shapes.items()),
        ),
        (
            f"`pipeline run extract --threads {args.threads}` wall (best of {args.runs})",
            f"{best:.2f} s",
        ),
        (f"floor: {describe[floor_name]} (best of {args.runs})", f"{floor:.2f} s"),
        ("**ratio** of the bests (target <= 1.3)", f"**{best / floor:.2f}**"),
        (
            "ratio of each pipeline run to the floor run right after it",
            ", ".join(
                f"{r['wall_s'] / f['wall_s']:.2f}" for r, f in zip(runs, floor_runs, strict=True)
            ),
        ),
        ("pipeline peak RSS (largest of the runs; target < 500 MB)", f"**{fmt_mb(rss)}**"),
        (
            "of which (sampled peaks, largest of the runs)",
            f"anonymous {max(r['max_rss_anon_kb'] for r in runs) / 1024:.0f} MiB, file-backed "
            f"(mapped checkpoint and binary) {max(r['max_rss_file_kb'] for r in runs) / 1024:.0f}"
            " MiB",
        ),
        (
            "CPU seconds: pipeline (user+sys, least of the runs) / floor (all processes)",
            f"{pipe_cpu:.1f} / {floor_cpu:.1f} = {pipe_cpu / floor_cpu:.2f}",
        ),
    ]
    for k, v in floors.items():
        if k != floor_name:
            rows.append((f"other floor: {describe[k]}", f"{v:.2f} s (ratio {best / v:.2f})"))
    for k, v in extrapolated.items():
        rows.append((f"other floor: {describe[k]}", f"stopped; about {v:.0f} s extrapolated"))
    if hf:
        rows.append(("transformers script peak RSS", fmt_mb(hf["max_rss_kb"])))
        rows.append(
            (
                f"transformers script wall ({args.hf_threads} torch thread(s))",
                f"{hf['wall_s']:.2f} s",
            )
        )
    rows.append(("spectral norms, pipeline vs torch", f"max relative difference {worst:.1e}"))
    rows.append(
        (
            "load average (1 min) before / after",
            f"{info['load_before'][0]:.2f} / "
            f"{info['load_after'][0]:.2f} ({info['cores']} cores, {info['cpu']})",
        )
    )
    print("\n| measure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
