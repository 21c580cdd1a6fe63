#!/usr/bin/env python3
"""Writes pipelines/labs-wide.toml (every public base model of the seed's four labs) and prints
the cost of running it, for the README.

The dimensions are those of each model's published config.json (n_layers, d_model); every model
here has multi-head attention with n_heads * d_head = d_model, so its attention weights are
4 d_model^2 values per layer (fused QKV layouts hold the same values). The stored dtype is the one
of the published weights (f32: GPT-2, GPT-Neo, GPT-J's main branch; 16-bit: the rest).

Cost model:
- bytes with --remote: only the attention tensors are read by HTTP range, so
  sum over models of n_layers * 4 d^2 * bytes per value (biases, headers and config.json are
  below 0.1 % and left out);
- time: whole-layer SVDs dominate; the benchmark in README.md measured faer f64 values-only SVDs
  of 768^2, 1024^2 and 4096^2 matrices at 0.205, 0.494 and 28.0 s of wall time per matrix on the
  2-thread development machine, i.e. c d^3 with c = 4.4e-10 s (f64; f32 about 0.55 of that),
  plus 17 % for per-head matrices and circuits (the larger of the measured 8-17 %).
Run: python3 scripts/labs_wide.py  (standard library only)
"""

from pathlib import Path

C_F64 = 4.4e-10
HEADS_AND_CIRCUITS = 1.17

# (hub id, revision, lab, heritage, n_layers, d_model, bytes per stored value)
PYTHIA = [("14m", 6, 128), ("31m", 6, 256), ("70m", 6, 512), ("160m", 12, 768), ("410m", 24, 1024),
          ("1b", 16, 2048), ("1.4b", 24, 2048), ("2.8b", 32, 2560), ("6.9b", 32, 4096), ("12b", 36, 5120)]
DEDUPED = {"70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"}
MODELS = []
for size, L, d in PYTHIA:
    MODELS.append((f"EleutherAI/pythia-{size}", "step143000", "EleutherAI", "DAMPENER", L, d, 2))
for size, L, d in PYTHIA:
    if size in DEDUPED:
        MODELS.append((f"EleutherAI/pythia-{size}-deduped", "step143000", "EleutherAI", "DAMPENER", L, d, 2))
MODELS += [
    ("EleutherAI/gpt-neo-125m", "main", "EleutherAI", "DAMPENER", 12, 768, 4),
    ("EleutherAI/gpt-neo-1.3B", "main", "EleutherAI", "DAMPENER", 24, 2048, 4),
    ("EleutherAI/gpt-neo-2.7B", "main", "EleutherAI", "DAMPENER", 32, 2560, 4),
    ("EleutherAI/gpt-j-6b", "main", "EleutherAI", "DAMPENER", 28, 4096, 4),
    ("EleutherAI/gpt-neox-20b", "main", "EleutherAI", "DAMPENER", 44, 6144, 2),
]
for size, L, d in [("125m", 12, 768), ("350m", 24, 1024), ("1.3b", 24, 2048), ("2.7b", 32, 2560),
                   ("6.7b", 32, 4096), ("13b", 40, 5120), ("30b", 48, 7168), ("66b", 64, 9216)]:
    MODELS.append((f"facebook/opt-{size}", "main", "Meta", "EXPANDER", L, d, 2))
for name, L, d in [("bloom-560m", 24, 1024), ("bloom-1b1", 24, 1536), ("bloom-1b7", 24, 2048),
                   ("bloom-3b", 30, 2560), ("bloom-7b1", 30, 4096), ("bloom", 70, 14336)]:
    MODELS.append((f"bigscience/{name}", "main", "BigScience", "EXPANDER (ALiBi)", L, d, 2))
for name, L, d in [("gpt2", 12, 768), ("gpt2-medium", 24, 1024), ("gpt2-large", 36, 1280), ("gpt2-xl", 48, 1600)]:
    MODELS.append((name, "main", "OpenAI", "NEUTRAL", L, d, 4))

# Colours: one hue per lab, darker for larger models; markers per family.
PALETTE = {
    "EleutherAI": ["#FADBD8", "#F5B7B1", "#F1948A", "#EC7063", "#E74C3C", "#CB4335", "#B03A2E", "#943126", "#78281F", "#641E16"],
    "Meta": ["#D6EAF8", "#AED6F1", "#85C1E9", "#5DADE2", "#3498DB", "#2E86C1", "#2874A6", "#1B4F72"],
    "BigScience": ["#A9DFBF", "#7DCEA0", "#52BE80", "#27AE60", "#229954", "#145A32"],
    "OpenAI": ["#D7BDE2", "#BB8FCE", "#9B59B6", "#6C3483"],
}
MARKER = {"pythia": "o", "deduped": "D", "gpt-neo": "^", "gpt-j": "s", "gpt-neox": "P",
          "opt": "o", "bloom": "o", "gpt2": "o"}


def family(mid):
    name = mid.split("/")[-1]
    if name.endswith("-deduped"):
        return "deduped"
    for f in ["gpt-neox", "gpt-neo", "gpt-j", "pythia", "opt", "bloom", "gpt2"]:
        if name.startswith(f):
            return f
    raise ValueError(mid)


def main():
    root = Path(__file__).resolve().parents[1]
    lines = [
        "# Every public base model of the seed's four labs (see scripts/labs_wide.py, which wrote this",
        "# file, and README.md for what a run costs). Revisions: Pythia's final training step branch",
        "# (step143000); `main` elsewhere (these repositories have no release tags), whose resolved",
        "# commit each run records in models/ (column `commit`). Run with --remote to read only the",
        "# attention tensors by HTTP range.",
        'name = "labs-wide"',
        'description = "Every public base model of EleutherAI, Meta (OPT), BigScience (BLOOM) and OpenAI (GPT-2)"',
        "",
        "[analysis]",
        'kinds = ["W_Q", "W_K", "W_V", "W_O", "OV", "QK"]',
        "per_head = true",
        "fold_ln = false",
        'precision = "f32"',
        'backend = "auto"',
    ]
    by_lab = {}
    for m in MODELS:
        by_lab.setdefault(m[2], []).append(m)
    for mid, rev, lab, heritage, L, d, _ in MODELS:
        fam = [x for x in by_lab[lab]]
        shade = PALETTE[lab]
        # Larger models darker: rank by attention size within the lab.
        sizes = sorted({x[4] * x[5] ** 2 for x in fam})
        colour = shade[min(len(shade) - 1, round(sizes.index(L * d * d) * (len(shade) - 1) / max(1, len(sizes) - 1)))]
        lines += ["", "[[models]]", f'id = "{mid}"', f'revision = "{rev}"', f'lab = "{lab}"',
                  f'heritage = "{heritage}"', f'color = "{colour}"', f'marker = "{MARKER[family(mid)]}"']
    lines += ["", "[test]", 'metrics = ["spectral_norm", "stable_rank", "effective_rank", "alpha"]',
              'kinds = ["W_V", "W_O", "OV"]', 'group_a = { lab = ["EleutherAI"] }', 'alternative = "less"',
              "alpha = 0.05", ""]
    (root / "pipelines" / "labs-wide.toml").write_text("\n".join(lines))

    total_b = total_t = 0.0
    print("| model | layers | d_model | attention values | bytes read (--remote) | SVD time f64 (2 threads) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mid, rev, lab, heritage, L, d, bpv in MODELS:
        values = 4 * L * d * d
        b = values * bpv
        t = 4 * L * C_F64 * d ** 3 * HEADS_AND_CIRCUITS
        total_b += b
        total_t += t
        print(f"| {mid} | {L} | {d} | {values / 1e6:.0f} M | {b / 1e9:.2f} GB | {t / 3600:.2f} h |")
    print(f"\n{len(MODELS)} models: {total_b / 1e9:.0f} GB read, {total_t / 3600:.0f} h of SVD in f64 "
          f"(about {0.55 * total_t / 3600:.0f} h in f32) on the 2-thread machine")


if __name__ == "__main__":
    main()
