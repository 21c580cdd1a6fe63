//! `pipeline plan`: every unit (model x revision) of a pipeline file with its index, its
//! status in the dataset and its size where known locally, as a table, CSV or JSON. The
//! statuses come from the dataset's resume check (`attn_spectra::sweep::plan`); nothing is
//! written and the network is not used.

use std::path::PathBuf;

use anyhow::Result;
use attn_spectra::dataset::DatasetDir;
use attn_spectra::pipeline::Pipeline;
use attn_spectra::sweep::{PlannedUnit, counts, plan};
use attn_spectra_hub::HubOptions;
use attn_spectra_hub::locate::cached_bytes;
use attn_spectra_torch::resolve;

use crate::cli::{PlanArgs, PlanFormat};

pub fn run(args: &PlanArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.pipeline)?;
    // A directory or an object store URL (`--out s3://...`): statuses read from the bucket.
    let ds = match &args.out {
        Some(out) => crate::context::open_out(out)?,
        None => DatasetDir::new(PathBuf::from("data").join(&pipeline.name)),
    };
    // The hash a run would compare: the backend as `auto` resolves here, the precision.
    let backend = resolve(args.backend.unwrap_or(pipeline.analysis.backend));
    let precision = args.precision.unwrap_or(pipeline.analysis.precision);
    let cache_dir = HubOptions::from_env().cache_dir;
    let units = plan(
        &pipeline,
        &ds,
        args.shard,
        args.shard.map(|s| s.n).or(args.shards.map(|n| n as usize)),
        |m| pipeline.unit_hash(m, backend.name(), precision),
        |m| cached_bytes(&cache_dir, &m.id, &m.revision),
    );
    let with_shard = args.shard.is_some() || args.shards.is_some();
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    use std::io::Write;
    match args.format {
        PlanFormat::Json => writeln!(w, "{}", serde_json::to_string_pretty(&units)?)?,
        PlanFormat::Csv => {
            let mut header = vec!["index"];
            if with_shard {
                header.push("shard");
            }
            header.extend([
                "model",
                "revision",
                "status",
                "bytes",
                "bytes_from",
                "error",
            ]);
            writeln!(w, "{}", header.join(","))?;
            for u in &units {
                let mut row = vec![u.index.to_string()];
                if with_shard {
                    row.push(opt(u.shard));
                }
                row.extend([
                    csv(&u.model),
                    csv(&u.revision),
                    u.status.to_string(),
                    opt(u.bytes),
                    u.bytes_from.unwrap_or("").to_string(),
                    csv(u.error.as_deref().unwrap_or("")),
                ]);
                writeln!(w, "{}", row.join(","))?;
            }
        }
        PlanFormat::Table => {
            write_table(&mut w, &units, with_shard)?;
            let summary: Vec<String> = counts(&units)
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            let known: Vec<u64> = units.iter().filter_map(|u| u.bytes).collect();
            writeln!(
                w,
                "{} units{}: {}; {} of them with a known size, {:.1} MB in all ({})",
                units.len(),
                args.shard
                    .map(|s| format!(" in shard {s} (of {})", pipeline.models.len()))
                    .unwrap_or_default(),
                summary.join(", "),
                known.len(),
                known.iter().sum::<u64>() as f64 / 1e6,
                ds
            )?;
        }
    }
    Ok(())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The units as an aligned table; a failed unit's error on its own line below it.
fn write_table(w: &mut impl std::io::Write, units: &[PlannedUnit], shard: bool) -> Result<()> {
    let mut rows: Vec<Vec<String>> = vec![];
    let mut header = vec!["index"];
    if shard {
        header.push("shard");
    }
    header.extend(["model", "revision", "status", "size"]);
    rows.push(header.iter().map(|s| s.to_string()).collect());
    for u in units {
        let mut row = vec![u.index.to_string()];
        if shard {
            row.push(opt(u.shard));
        }
        row.extend([
            u.model.clone(),
            u.revision.clone(),
            u.status.to_string(),
            match (u.bytes, u.bytes_from) {
                (Some(b), Some(from)) => format!("{:.1} MB ({from})", b as f64 / 1e6),
                _ => "-".into(),
            },
        ]);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(w, "{}", line.join("  ").trim_end())?;
        if i > 0
            && let Some(error) = &units[i - 1].error
        {
            let first = error.lines().next().unwrap_or("");
            writeln!(w, "       error: {first}")?;
        }
    }
    Ok(())
}
