#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (README, "Reliability") into
tests/fixtures/fuzz/<target>/corpus/seed-*.

Seeds are the test fixtures themselves where a fixture is an input of the target (safetensors
files, shard indexes, config.json files, torch.save archives, GGUF files), plus inputs made here
for the targets whose input is not a whole file:

- pickle: `data.pkl` of state dicts saved with torch.save, each referring to the storages the
  `pickle` target's zip provides (`attn_spectra::fuzzing::torch_zip`: keys 0 to 3, 64 bytes each),
  in pickle protocols 2 and 4, with views, nested dicts, parameters and 16-bit dtypes. Needs
  torch (any 2.x; made with 2.11): `python3 -m venv /var/cache/attn-spectra/venv-torch &&
  /var/cache/attn-spectra/venv-torch/bin/pip install torch`, then run this script with that
  venv's python. Without torch the pickle seeds are skipped, saying so.
- gguf_blocks: one input per block type (the target's first byte picks it), two blocks of
  deterministic pseudo-random bytes.
- gguf_framed: models in the input encoding of `attn_spectra::fuzzing::gguf_file` (every
  architecture, key, tensor name and type written as a string or a raw number, not as an index
  into the target's tables, so that the seeds stay valid when the tables grow): a llama with
  grouped-query attention, a gpt2 with a fused QKV and biases, a gptneox with per-head QKV and
  a qwen2 with Q8_0 weights, one or two layers of width 32.
- hub_response: Hub answers written by hand (a 206 with Content-Range, an LFS HEAD with
  X-Linked-Etag, a 416, a short last range).

Run from the repository root: python3 scripts/fuzz_seeds.py. It only ever adds or overwrites
seed-* files; minimised corpora (cmin-*) and regressions are left alone.
"""

import io
import random
import shutil
import struct
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "fuzz"


def corpus(target: str) -> Path:
    d = OUT / target / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    return d


# Fixtures that are meant to be refused: seeds all the same, named bad-* (the seed-* ones must
# read without error, which `attn_spectra::fuzzing`'s tests check).
REFUSED = {"legacy.bin", "malicious.bin"}


def copy(target: str, src: Path, name: str) -> None:
    prefix = "bad" if src.name in REFUSED else "seed"
    shutil.copyfile(src, corpus(target) / f"{prefix}-{name}")


def write(target: str, name: str, data: bytes) -> None:
    (corpus(target) / f"seed-{name}").write_bytes(data)


def fixtures() -> None:
    # safetensors: the small single-file fixtures (under 16 kB) and the FP8 ones.
    for p in sorted(FIX.glob("arch/*/model*.safetensors")) + sorted(FIX.glob("fp8/*/model.safetensors")):
        if p.stat().st_size <= 16384:
            copy("safetensors", p, f"{p.parent.name}-{p.name}")
    # (not the fuzz corpora themselves, which also hold index files)
    for p in sorted(q for q in FIX.rglob("*.index.json") if OUT not in q.parents):
        copy("safetensors_index", p, f"{p.parent.name}-{p.name}")
    for p in sorted(FIX.glob("arch/*/config.json")) + sorted(FIX.glob("fp8/*/config.json")):
        copy("config", p, f"{p.parent.name}.json")
    for p in sorted(FIX.glob("pickle/*.bin")) + sorted(FIX.glob("pickle/sharded/*.bin")) + sorted(
        FIX.glob("hub/*/*.bin")
    ):
        copy("pytorch", p, f"{p.parent.name}-{p.name}")
    for p in sorted(FIX.glob("gguf/*.gguf")):
        copy("gguf", p, p.name)


def pickles() -> None:
    try:
        import torch
    except ImportError:
        print("torch is not installed: pickle seeds skipped", file=sys.stderr)
        return
    f32 = lambda: torch.arange(16, dtype=torch.float32) / 16  # 64 bytes, like the target's storages
    f16 = lambda: torch.arange(32, dtype=torch.float16) / 32
    cases = {
        "plain": {"a.weight": f32(), "b.weight": f32().reshape(4, 4)},
        "views": (lambda s: {"q": s[:8].reshape(2, 4), "k": s[8:].reshape(4, 2).t(), "v": s.reshape(4, 4)[:, 1]})(f32()),
        "nested": {"model": {"layer.0.w": f32().reshape(4, 4)}, "step": 3},
        "parameter": {"w": torch.nn.Parameter(f32().reshape(2, 8))},
        "half": {"h": f16().reshape(4, 8), "b": f16().to(torch.bfloat16)},
        "neg": {"n": f32()._neg_view() if hasattr(f32(), "_neg_view") else -f32()},
        "four": {f"t{i}": f32() for i in range(4)},
    }
    for name, sd in cases.items():
        for proto in (2, 4):
            buf = io.BytesIO()
            torch.save(sd, buf, pickle_protocol=proto)
            with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                write("pickle", f"{name}-p{proto}.pkl", z.read(pkl))


BLOCKS = [  # (name, bytes per block) in the order of attn_spectra::fuzzing's BLOCK_TYPES
    ("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("Q4_0", 18), ("Q4_1", 20), ("Q5_0", 22),
    ("Q5_1", 24), ("Q8_0", 34), ("Q2_K", 84), ("Q3_K", 110), ("Q4_K", 144), ("Q5_K", 176),
    ("Q6_K", 210), ("Q8_K", 292),
]


def blocks() -> None:
    rng = random.Random(16)
    for i, (name, size) in enumerate(BLOCKS):
        body = bytes(rng.randrange(256) for _ in range(2 * size))
        if name in ("F16", "BF16", "F32", "F64"):
            # Small finite values rather than random bit patterns.
            n = 2 * size // {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}[name]
            vals = [rng.uniform(-2, 2) for _ in range(n)]
            if name == "F32":
                body = struct.pack(f"<{n}f", *vals)
            elif name == "F64":
                body = struct.pack(f"<{n}d", *vals)
            elif name == "F16":
                body = struct.pack(f"<{n}e", *vals)
            else:
                body = b"".join(struct.pack("<f", v)[2:] for v in vals)
        write("gguf_blocks", f"{name}.bin", bytes([i]) + body)


def frame(start: int, length: int, head: str, body: bytes = b"") -> bytes:
    return struct.pack("<QQ", start, length) + head.replace("\n", "\r\n").encode() + b"\n\n" + body


def hub() -> None:
    sha = "5" * 64
    write(
        "hub_response",
        "range-206.http",
        frame(0, 8, f"HTTP/1.1 206 Partial Content\nContent-Range: bytes 0-7/1024\nETag: \"{sha}\"\nContent-Length: 8", bytes(8)),
    )
    write(
        "hub_response",
        "lfs-head.http",
        frame(
            8,
            4,
            "HTTP/1.1 206 Partial Content\nX-Linked-Etag: W/\"" + sha + "\"\nX-Linked-Size: 1024\n"
            "X-Repo-Commit: " + "a" * 40 + "\nETag: \"abc\"\nContent-Length: 4\nContent-Range: bytes 8-11/1024",
            b"{\"a\"",
        ),
    )
    write(
        "hub_response",
        "last-range.http",
        frame(1000, 100, "HTTP/1.1 206 Partial Content\nContent-Range: bytes 1000-1023/1024\nETag: \"0123abcd\"\nContent-Length: 24", bytes(24)),
    )
    write(
        "hub_response",
        "git-etag.http",
        frame(0, 2, "HTTP/1.1 206 Partial Content\nETag: \"" + "b" * 40 + "\"\nContent-Length: 2\nContent-Range: bytes 0-1/2", b"{}"),
    )


def framed(arch: str, kvs: list, tensors: list) -> bytes:
    """An input of the gguf_framed target: kvs are (key, GGUF type id, packed value), tensors
    (name, ne innermost first, ggml type id); see attn_spectra::fuzzing::gguf_file."""
    def string(t: str) -> bytes:
        b = t.encode()
        assert len(b) < 32, t
        return bytes([0xF0, len(b)]) + b
    out = string(arch) + bytes([len(kvs)])
    for key, ty, value in kvs:
        out += string(key) + bytes([ty]) + value
    out += bytes([len(tensors)])
    for name, ne, ty in tensors:
        out += string(name) + bytes([len(ne) - 1])
        for n in ne:
            out += bytes([n - 1]) if 1 <= n <= 64 else bytes([0xFF]) + struct.pack("<I", n)
        out += bytes([0xFF]) + struct.pack("<I", ty)
    return out


def gguf_framed() -> None:
    u32 = lambda k, v: (k, 4, struct.pack("<I", v))
    f32 = lambda k, v: (k, 6, struct.pack("<f", v))
    F32, Q8_0 = 0, 8
    w = lambda n, ne, ty=F32: (n, ne, ty)
    layer = lambda i, parts: [w(f"blk.{i}.{p}", ne, ty) for p, ne, ty in parts]
    llama = [("attn_q.weight", [32, 32], F32), ("attn_k.weight", [32, 16], F32),
             ("attn_v.weight", [32, 16], F32), ("attn_output.weight", [32, 32], F32),
             ("attn_norm.weight", [32], F32)]
    write("gguf_framed", "llama-gqa.bin", framed("llama", [
        u32("llama.embedding_length", 32), u32("llama.block_count", 2),
        u32("llama.attention.head_count", 4), u32("llama.attention.head_count_kv", 2),
        f32("llama.rope.freq_base", 10000.0),
    ], [w("token_embd.weight", [32, 8])] + layer(0, llama) + layer(1, llama)))
    gpt2 = [("attn_norm.weight", [32], F32), ("attn_norm.bias", [32], F32),
            ("attn_qkv.weight", [32, 96], F32), ("attn_qkv.bias", [96], F32),
            ("attn_output.weight", [32, 32], F32), ("attn_output.bias", [32], F32)]
    write("gguf_framed", "gpt2-fused.bin", framed("gpt2", [
        u32("gpt2.embedding_length", 32), u32("gpt2.block_count", 1),
        u32("gpt2.attention.head_count", 4),
    ], layer(0, gpt2)))
    write("gguf_framed", "gptneox.bin", framed("gptneox", [
        u32("gptneox.embedding_length", 32), u32("gptneox.block_count", 1),
        u32("gptneox.attention.head_count", 4),
    ], layer(0, gpt2)))
    qwen = [("attn_q.weight", [32, 32], Q8_0), ("attn_k.weight", [32, 32], Q8_0),
            ("attn_v.weight", [32, 32], Q8_0), ("attn_output.weight", [32, 32], Q8_0),
            ("attn_norm.weight", [32], F32), ("attn_q.bias", [32], F32), ("attn_k.bias", [32], F32), ("attn_v.bias", [32], F32)]
    write("gguf_framed", "qwen2-q8_0.bin", framed("qwen2", [
        u32("qwen2.embedding_length", 32), u32("qwen2.block_count", 1),
        u32("qwen2.attention.head_count", 2), u32("qwen2.attention.head_count_kv", 2),
    ], layer(0, qwen)))


def regression(target: str, name: str, data: bytes) -> None:
    d = OUT / target / "regressions"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def gguf_file(kvs: list, tensors: list) -> bytes:
    """A GGUF v3 file: kvs are (key, type id, packed value), tensors (name, ne, ggml type, offset)."""
    s = lambda b: struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, ty, value in kvs:
        out += s(key.encode()) + struct.pack("<I", ty) + value
    for name, ne, ty, offset in tensors:
        out += s(name.encode()) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", ty, offset)
    return out + bytes(-len(out) % 32)


def regressions() -> None:
    """Inputs for the limits added after auditing the readers (README, "Reliability"); each has
    a test asserting its error (`attn_spectra::fuzzing`'s tests)."""
    # 200,000 nested TUPLE1s: dropping them recursively overflowed the stack.
    regression("pickle", "deep-tuples.pkl", b"\x80\x02N" + b"\x85" * 200_000 + b".")
    # A tensor of 2^40 elements viewing one element of a 16-element storage (stride 0).
    try:
        import torch

        base = torch.arange(16, dtype=torch.float32)
        buf = io.BytesIO()
        torch.save({"w": base[:1].expand(2**40)}, buf)
        regression("pytorch", "broadcast-view.bin", buf.getvalue())
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            regression("pickle", "broadcast-view.pkl", z.read(pkl))
    except ImportError:
        print("torch is not installed: broadcast-view regressions skipped", file=sys.stderr)
    X = lambda v: b"X" + struct.pack("<I", len(v)) + v
    # One memoised list of 100,000 pairs handed to OrderedDict 20,000 times: 2e9 copies.
    p = b"\x80\x02ccollections\nOrderedDict\nq\x01]q\x02(NN\x86q\x03" + b"h\x03" * 99_999 + b"e0"
    p += b"h\x01h\x02\x85R0" * 20_000 + b"}."
    regression("pickle", "ordereddict-reuse.pkl", p)
    # A 60 kB key naming 30 nested dicts, the deepest with 20,000 entries: 37 GB of names.
    p = b"\x80\x02" + X(b"k" * 60_000) + b"q\x00" + b"}(" + b"h\x00}" * 20_000 + b"u"
    p += b"q\x010}h\x00h\x01s" * 30 + b"."
    regression("pickle", "long-names.pkl", p)
    # A tensor of 100 dimensions.
    p = b"\x80\x02}(" + X(b"w") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    p += b"(" + X(b"storage") + b"ctorch\nFloatStorage\n" + X(b"0") + X(b"cpu") + b"K\x10tQ"
    p += b"K\x00(" + b"K\x01" * 100 + b"t(" + b"K\x00" * 100 + b"t\x89ccollections\nOrderedDict\n)RtRu."
    regression("pickle", "rank-100.pkl", p)
    # A fused QKV of zero elements whose other dimension (3 * 2^40 rows) matched 2^40 heads
    # and made the reader build 3 * 2^40 row runs.
    u64 = lambda v: struct.pack("<Q", v)
    string = lambda v: struct.pack("<Q", len(v)) + v.encode()
    regression(
        "gguf",
        "zero-size-huge-rows.gguf",
        gguf_file(
            [
                ("general.architecture", 8, string("gptneox")),
                ("gptneox.embedding_length", 10, u64(64)),
                ("gptneox.attention.head_count", 10, u64(2**40)),
                ("gptneox.attention.head_count_kv", 10, u64(2**40)),
                ("gptneox.attention.key_length", 10, u64(1)),
            ],
            [("blk.0.attn_qkv.weight", [0, 3 * 2**40], 0, 0)],
        ),
    )
    # A configuration claiming 2^40 layers.
    regression(
        "config",
        "huge-layer-count.json",
        b'{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, '
        b'"num_hidden_layers": 1099511627776}',
    )
    # JSON nested 100,000 deep: serde_json's recursion limit (128) must stay on.
    regression("config", "deep-nesting.json", b"[" * 100_000 + b"]" * 100_000)
    header = b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    regression("safetensors", "deep-nesting.safetensors", struct.pack("<Q", len(header)) + header)


def main() -> None:
    fixtures()
    pickles()
    blocks()
    gguf_framed()
    hub()
    regressions()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"seed corpora written under {OUT.relative_to(ROOT)} ({total / 1e6:.2f} MB in all)")


if __name__ == "__main__":
    main()
