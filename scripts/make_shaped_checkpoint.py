#!/usr/bin/env python3
"""Writes a random-weight Llama-architecture checkpoint of a given shape (attention only) for
end-to-end extract benchmarks: config.json and model.safetensors with, per layer,
q_proj/k_proj/v_proj/o_proj weights (normal, std 0.02) and input_layernorm weights (ones plus
noise). Only the tensors `pipeline run extract` reads are written, so a Llama-7B-shaped
checkpoint (32 layers of 4096 x 4096) is 4.3 GB in bf16 instead of 13.5 GB.

Needs only torch (any 2.x; the safetensors file is written by hand, no safetensors package).
Used by scripts/gpu_check.sh --extract.

usage: make_shaped_checkpoint.py DIR --layers 32 --d-model 4096 --heads 32 [--kv-heads 32]
           [--dtype bf16|f16|f32] [--seed 0]
"""

import argparse
import json
import struct
from pathlib import Path

import torch

DTYPES = {"bf16": (torch.bfloat16, "BF16"), "f16": (torch.float16, "F16"), "f32": (torch.float32, "F32")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--d-model", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int, default=None)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    kv = args.kv_heads or args.heads
    d, dh = args.d_model, args.d_model // args.heads
    dtype, st_name = DTYPES[args.dtype]
    args.dir.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d,
        "intermediate_size": 4 * d,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": kv,
        "rms_norm_eps": 1e-5,
        "vocab_size": 32000,
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[args.dtype],
    }
    (args.dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = torch.Generator().manual_seed(args.seed)
    shapes = []
    for i in range(args.layers):
        pre = f"model.layers.{i}."
        shapes += [
            (pre + "input_layernorm.weight", (d,)),
            (pre + "self_attn.q_proj.weight", (args.heads * dh, d)),
            (pre + "self_attn.k_proj.weight", (kv * dh, d)),
            (pre + "self_attn.v_proj.weight", (kv * dh, d)),
            (pre + "self_attn.o_proj.weight", (d, args.heads * dh)),
        ]
    elem = torch.tensor([], dtype=dtype).element_size()
    header, offset = {}, 0
    for name, shape in shapes:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": st_name, "shape": list(shape), "data_offsets": [offset, offset + n * elem]}
        offset += n * elem
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(args.dir / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, shape in shapes:
            if name.endswith("layernorm.weight"):
                t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
            else:
                t = 0.02 * torch.randn(shape, generator=gen)
            f.write(t.to(dtype).contiguous().view(torch.uint8).numpy().tobytes())
    print(f"{args.dir}: llama, {args.layers} layers, d_model {d}, {args.heads} heads ({kv} KV), "
          f"{offset / 1e9:.2f} GB {args.dtype}")


if __name__ == "__main__":
    main()
