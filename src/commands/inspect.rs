//! `pipeline inspect PATH`: how a checkpoint's attention weights are found and read.

use std::io::Write;

use anyhow::{Context, Result};
use attn_spectra::arch::{QkNorm, spec};
use attn_spectra::attention::ProjectionSource;
use attn_spectra::{Architecture, Checkpoint};
use serde_json::json;

use crate::cli::InspectArgs;

pub fn run(args: &InspectArgs) -> Result<()> {
    let Some(path) = &args.path else {
        return architectures(args.json);
    };
    let ckpt = Checkpoint::open(path)?;
    let arch = Architecture::detect_in(&ckpt)?;
    let g = *arch.geometry();
    anyhow::ensure!(
        args.layer < g.n_layers,
        "--layer {} is out of range: the model has {} layers (0..{})",
        args.layer,
        g.n_layers,
        g.n_layers - 1
    );
    let layer = arch.layer(&ckpt, args.layer)?;
    if args.check {
        for i in 0..g.n_layers {
            arch.layer(&ckpt, i)
                .with_context(|| format!("checking layer {i}"))?;
        }
    }
    let norm = arch.layout().norm;
    let fold = match norm.kind() {
        "none" => "no norm before attention (post-LayerNorm, or a norm after attention): \
                   fold_ln changes nothing"
            .to_string(),
        "layernorm_no_params" => {
            "LayerNorm without parameters: gain 1, fold_ln changes nothing".to_string()
        }
        kind => format!("{kind}: fold_ln scales W_Q/W_K/W_V columns by its gain"),
    };
    let dtypes = {
        let mut d: Vec<&str> = layer.sources.iter().map(|s| s.dtype.name()).collect();
        d.sort();
        d.dedup();
        d.join(", ")
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let sources: Vec<_> = layer.sources.iter().map(source_json).collect();
        let doc = json!({
            "path": path,
            "format": ckpt.format().name(),
            "files": ckpt.files(),
            "model_type": arch.model_type(),
            "summary": arch.spec().summary,
            "n_layers": g.n_layers,
            "d_model": g.d_model,
            "n_heads": g.n_heads,
            "n_kv_heads": g.n_kv_heads,
            "d_head": g.d_head,
            "head_to_kv": g.head_to_kv(),
            "pre_attention_norm": norm.kind(),
            "qk_norm": arch.spec().qk_norm.describe(),
            "layer": args.layer,
            "checked_all_layers": args.check,
            "sources": sources,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    let files = ckpt.files().len();
    writeln!(out, "checkpoint  {}", path.display())?;
    writeln!(
        out,
        "format      {} ({files} file{}), weights {dtypes}",
        ckpt.format(),
        if files == 1 { "" } else { "s" }
    )?;
    writeln!(
        out,
        "arch        {}: {}",
        arch.model_type(),
        arch.spec().summary
    )?;
    writeln!(
        out,
        "dimensions  {} layers, d_model {}, {} heads, {} KV heads, d_head {}",
        g.n_layers, g.d_model, g.n_heads, g.n_kv_heads, g.d_head
    )?;
    let grouping = if g.n_kv_heads == g.n_heads {
        "one KV head per query head".to_string()
    } else if g.n_kv_heads == 1 {
        "multi-query: every query head reads KV head 0".to_string()
    } else {
        format!(
            "grouped-query: query head h reads KV head h / {}",
            g.n_heads / g.n_kv_heads
        )
    };
    writeln!(out, "heads       {grouping}")?;
    writeln!(out, "norm        {fold}")?;
    if arch.spec().qk_norm != QkNorm::None {
        writeln!(out, "qk norm     {}", arch.spec().qk_norm.describe())?;
    }
    if args.check {
        writeln!(
            out,
            "check       all {} layers read: shapes match, values finite",
            g.n_layers
        )?;
    }
    writeln!(out, "\nlayer {}", args.layer)?;
    for s in &layer.sources {
        let stored = s
            .stored_name
            .as_deref()
            .map(|n| format!(" (stored as {n})"))
            .unwrap_or_default();
        writeln!(out, "  {:<9} {}{stored}", s.projection, s.tensor)?;
        writeln!(
            out,
            "            {} {:?} in {}",
            s.dtype,
            s.shape,
            s.file.display()
        )?;
        writeln!(out, "            {}", s.slice)?;
    }
    Ok(())
}

fn source_json(s: &ProjectionSource) -> serde_json::Value {
    json!({
        "projection": s.projection,
        "tensor": s.tensor,
        "stored_name": s.stored_name,
        "file": s.file,
        "dtype": s.dtype.name(),
        "shape": s.shape,
        "slice": s.slice,
    })
}

/// `pipeline inspect --architectures`: the registry, one line per model_type.
fn architectures(json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = spec::SPECS
            .iter()
            .map(|s| {
                json!({
                    "model_type": s.model_type,
                    "layout": s.summary,
                    "pre_attention_norm": s.norm.kind(),
                    "qk_norm": s.qk_norm.describe(),
                    "gguf_architecture": s.gguf.map(|g| g.arch),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(out, "{} supported model_type values:", spec::SPECS.len())?;
    for s in spec::SPECS {
        let gguf = s
            .gguf
            .map(|g| format!(" [GGUF `{}`]", g.arch))
            .unwrap_or_default();
        writeln!(out, "  {:<12} {}{gguf}", s.model_type, s.summary)?;
    }
    Ok(())
}
