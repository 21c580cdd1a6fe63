//! Writes the report of a dataset directory, for trying the report stage without the CLI:
//!
//! ```text
//! cargo run -p attn-spectra-report --example report -- DATASET OUT [PIPELINE.toml]
//! ```

use std::path::PathBuf;

use attn_spectra::pipeline::Pipeline;
use attn_spectra_report::{ReportOptions, time, write_report};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dataset), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: report DATASET OUT [PIPELINE.toml]");
        std::process::exit(2);
    };
    let opts = match args.get(2) {
        Some(p) => {
            ReportOptions::from_pipeline(&Pipeline::load(&PathBuf::from(p))?, time::now_us())?
        }
        None => ReportOptions::new("report"),
    };
    let started = std::time::Instant::now();
    let dataset = attn_spectra::dataset::DatasetDir::open(dataset)?;
    let outputs = write_report(&dataset, out.as_ref(), &opts)?;
    for f in &outputs.files {
        println!("{}", f.display());
    }
    for n in &outputs.notes {
        println!("note: {n}");
    }
    eprintln!("report written in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
