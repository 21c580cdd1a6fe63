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
   under `/usr/bin/time -v` several times (best wall time; largest peak RSS).
3. The floor, in the same run: loads the same whole-layer matrices as the pipeline splits them
   (the per-head interleave of gpt_neox/bloom fused QKV, GPT-2's Conv1D transposed, OPT/GPT-Neo's
   separate projections) into memory as contiguous f32, and times LAPACK's values-only SVD over
   them, one matrix after another with T threads: `torch.linalg.svdvals` (MKL gesdd) and numpy's
   `np.linalg.svd(compute_uv=False)` (OpenBLAS gesdd). The faster is the floor. A stricter floor,
   T processes with one thread each over halves of the matrices (what the pipeline does: one
   thread per matrix), is measured too unless --no-parallel-floor.
4. Optionally (default on) a transformers-based script doing the same work, under
   `/usr/bin/time -v`: each model in turn `from_pretrained(dtype=float32)`, the same matrices
   split out, `torch.linalg.svdvals` on each, `del model; gc.collect()` (as the seed notebook).
5. Checks that the pipeline did the same work: its spectral norms must match the floor's σ_1.
6. Prints a Markdown table and, with --json PATH, writes all figures as JSON.

Needs (see scripts/requirements-fixtures.txt): torch 2.11, transformers 5.24, safetensors 0.8,
numpy 2.4, pyarrow (any recent; only for the correctness check), threadpoolctl; GNU time
(Debian package `time`) at /usr/bin/time; a built `pipeline` binary.

usage: /work/venv/torch/bin/python scripts/bench_extract.py [--bin PATH] [--threads 2]
           [--runs 3] [--json out.json] [--no-transformers] [--dtype f32|f16|bf16]
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
    return {kind: np.ascontiguousarray(m) for kind, m in zip(KINDS, (q, k, v, o))}


# --- 1. checkpoints ------------------------------------------------------------------------------


def generate(cache: Path, dtype: str, regenerate: bool) -> list[dict]:
    """Creates (or reuses) the seven checkpoints; returns one record per model."""
    out = []
    for index, (hub_id, name, cfg) in enumerate(MODELS):
        d = cache / name
        marker = d / ".complete.json"
        if marker.is_file() and not regenerate:
            rec = json.loads(marker.read_text())
            if rec.get("dtype") == dtype and rec.get("config") == cfg:
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


def time_v(cmd: list[str], env: dict | None = None) -> dict:
    """Runs `cmd` under GNU time -v; returns wall seconds, peak RSS (kB) and the output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        r = subprocess.run(
            ["/usr/bin/time", "-v", "-o", tf.name, *cmd],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        report = tf.read()
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{report}")

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
        "user_s": float(field("User time (seconds)")),
        "sys_s": float(field("System time (seconds)")),
        "major_faults": int(field("Major (requiring I/O) page faults")),
        "stdout": r.stdout,
        "stderr": r.stderr,
    }


def run_pipeline(binary: Path, toml: Path, out: Path, threads: int, runs: int) -> list[dict]:
    res = []
    for i in range(runs):
        r = time_v(
            [str(binary), "run", "extract", "--pipeline", str(toml), "--out", str(out),
             "--force", "--quiet", "--threads", str(threads)]
        )
        print(
            f"pipeline run {i + 1}/{runs}: {r['wall_s']:.2f} s wall, "
            f"{r['user_s']:.1f} s user, {r['max_rss_kb'] / 1024:.0f} MiB peak RSS",
            flush=True,
        )
        res.append({k: v for k, v in r.items() if k not in ("stdout", "stderr")})
    return res


# --- 3. the floor ------------------------------------------------------------------------------


def load_matrices(models: list[dict]) -> list[tuple[str, int, str, "object"]]:
    """(model, layer, kind, f32 array) for every whole-layer matrix the pipeline analyses."""
    from safetensors import safe_open

    out = []
    for m in models:
        cfg = m["config"]
        handles = [safe_open(str(Path(m["dir"]) / f), framework="numpy") for f in m["files"]]
        where = {n: h for h in handles for n in h.keys()}
        if m["dtype"] != "f32":
            import torch

            handles = [safe_open(str(Path(m["dir"]) / f), framework="pt") for f in m["files"]]
            where = {n: h for h in handles for n in h.keys()}

            def get(n, where=where):
                return where[n].get_tensor(n).float().numpy()
        else:

            def get(n, where=where):
                return where[n].get_tensor(n)

        names = list(where)
        for layer in range(geometry(cfg)[0]):
            for kind, a in layer_matrices(cfg, get, names, layer).items():
                out.append((m["name"], layer, kind, a))
    return out


def floor_torch(mats, threads: int) -> tuple[float, dict]:
    import torch

    torch.set_num_threads(threads)
    seen = set()
    for _, _, _, a in mats:  # warm-up, once per shape
        if a.shape not in seen:
            seen.add(a.shape)
            torch.linalg.svdvals(torch.from_numpy(a))
    sigma = {}
    t = time.perf_counter()
    for model, layer, kind, a in mats:
        s = torch.linalg.svdvals(torch.from_numpy(a))
        sigma[(model, layer, kind)] = float(s[0])
    return time.perf_counter() - t, sigma


def floor_numpy(mats, threads: int) -> float:
    import numpy as np
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        seen = set()
        for _, _, _, a in mats:
            if a.shape not in seen:
                seen.add(a.shape)
                np.linalg.svd(a, compute_uv=False)
        t = time.perf_counter()
        for _, _, _, a in mats:
            np.linalg.svd(a, compute_uv=False)
        return time.perf_counter() - t


def _parallel_worker(models, part, nparts, barrier, queue):
    """One process of the parallel floor: its share of the matrices, one torch thread."""
    import torch

    torch.set_num_threads(1)
    mats = load_matrices(models)
    # Balance by cost: sort by size, deal round-robin.
    order = sorted(range(len(mats)), key=lambda i: -mats[i][3].size)
    mine = [mats[i][3] for i in order[part::nparts]]
    for a in {m.shape: m for m in mine}.values():
        torch.linalg.svdvals(torch.from_numpy(a))
    barrier.wait()
    t = time.perf_counter()
    for a in mine:
        torch.linalg.svdvals(torch.from_numpy(a))
    queue.put(time.perf_counter() - t)


def floor_parallel(models, threads: int) -> float:
    """`threads` processes with one thread each, started together; the slowest is the wall."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(threads), ctx.Queue()
    procs = [
        ctx.Process(target=_parallel_worker, args=(models, i, threads, barrier, queue))
        for i in range(threads)
    ]
    for p in procs:
        p.start()
    times = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


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
            mats = layer_matrices(m["config"], lambda n: state[n].numpy(), names, layer)
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
        for model, layer, head, kind, sn in zip(*(t.column(c).to_pylist() for c in t.column_names)):
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
    ap.add_argument("--floor-runs", type=int, default=2, help="runs of each floor (best)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="storage dtype")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench-cache" / "extract")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--no-parallel-floor", action="store_true")
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
        runs = run_pipeline(binary, toml, out, args.threads, args.runs)

        mats = load_matrices(models)
        shapes: dict[str, int] = {}
        for _, _, _, a in mats:
            key = "x".join(map(str, a.shape))
            shapes[key] = shapes.get(key, 0) + 1
        print(f"floor: {len(mats)} matrices in memory ({shapes})", flush=True)
        floors: dict[str, float] = {}
        sigma = None
        for _ in range(args.floor_runs):
            t, sigma = floor_torch(mats, args.threads)
            floors["torch_svdvals"] = min(t, floors.get("torch_svdvals", t))
            print(f"  torch.linalg.svdvals, {args.threads} threads: {t:.2f} s", flush=True)
            t = floor_numpy(mats, args.threads)
            floors["numpy_svd"] = min(t, floors.get("numpy_svd", t))
            print(f"  numpy.linalg.svd(compute_uv=False), {args.threads} threads: {t:.2f} s",
                  flush=True)
        worst = check_spectral_norms(out, sigma)
        print(f"pipeline spectral norms vs torch: max relative difference {worst:.2e}", flush=True)
        del mats
        if not args.no_parallel_floor and args.threads > 1:
            for _ in range(args.floor_runs):
                t = floor_parallel(models, args.threads)
                floors["torch_parallel"] = min(t, floors.get("torch_parallel", t))
                print(f"  torch.linalg.svdvals, {args.threads} processes x 1 thread: {t:.2f} s",
                      flush=True)

    hf = None
    if not args.no_transformers:
        mj = cache / "models.json"
        mj.write_text(json.dumps(models))
        hf = time_v(
            [sys.executable, __file__, "--worker", "transformers", "--models-json", str(mj),
             "--threads", str(args.threads)],
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
    seq = {k: v for k, v in floors.items() if k != "torch_parallel"}
    floor_name = min(seq, key=seq.get)
    floor = seq[floor_name]
    result = {
        "machine": info,
        "binary": str(binary),
        "threads": args.threads,
        "storage_dtype": args.dtype,
        "checkpoints": [{k: v for k, v in m.items() if k != "config"} for m in models],
        "total_params": total,
        "matrices": shapes,
        "pipeline_runs": runs,
        "extract_wall_s": best,
        "extract_max_rss_kb": rss,
        "floors_s": floors,
        "floor": floor_name,
        "floor_s": floor,
        "ratio": best / floor,
        "ratio_vs_parallel_floor": best / floors["torch_parallel"] if "torch_parallel" in floors
        else None,
        "max_rel_diff_spectral_norm": worst,
        "transformers": hf,
        "target": {"ratio_max": 1.3, "rss_max_mb": 500},
    }
    rows = [
        ("checkpoints", f"{len(models)} ({total / 1e9:.2f} B params, {args.dtype} safetensors)"),
        ("matrices", ", ".join(f"{n} x {s}" for s, n in shapes.items())),
        (f"`pipeline run extract` wall (best of {args.runs})", f"{best:.2f} s"),
        (f"floor: {floor_name} ({args.threads} threads, sequential)", f"{floor:.2f} s"),
        ("**ratio** (target <= 1.3)", f"**{best / floor:.2f}**"),
        ("pipeline peak RSS (target < 500 MB)", fmt_mb(rss)),
    ]
    for k, v in floors.items():
        if k != floor_name:
            rows.append((f"other floor: {k}", f"{v:.2f} s (ratio {best / v:.2f})"))
    if hf:
        rows.append(("transformers script peak RSS", fmt_mb(hf["max_rss_kb"])))
        rows.append(("transformers script wall", f"{hf['wall_s']:.2f} s"))
    rows.append(("load average before / after", f"{info['load_before'][0]:.2f} / "
                 f"{info['load_after'][0]:.2f} ({info['cores']} cores, {info['cpu']})"))
    print("\n| measure | value |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
