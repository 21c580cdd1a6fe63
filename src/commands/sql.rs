//! `pipeline sql "SELECT ..."`: ad-hoc DataFusion SQL over a dataset directory, printed as a
//! table, CSV or JSON lines, or saved (also as Parquet) with `-o`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use attn_spectra::dataset::DatasetDir;
use attn_spectra::pipeline::Pipeline;
use attn_spectra_sql::{Dataset, OutputFormat, output};

use crate::cli::{SqlArgs, SqlFormat};

pub fn run(args: &SqlArgs) -> Result<()> {
    let sql = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the SQL file {}", f.display()))?,
        (None, None) => bail!("give the SQL to run, or --file FILE"),
    };
    let dir = match &args.out {
        Some(dir) => crate::context::open_out(dir)?,
        None => {
            let pipeline = Pipeline::load(&args.pipeline).with_context(|| {
                "cannot tell which dataset to query: give --out DIR or a readable --pipeline FILE"
            })?;
            DatasetDir::new(PathBuf::from("data").join(&pipeline.name))
        }
    };
    if dir.local_root().is_none() {
        // A missing bucket or refused credentials, named before any query runs.
        dir.probe().with_context(|| format!("--out {dir}"))?;
    }
    let format = match args.format {
        SqlFormat::Table => OutputFormat::Table,
        SqlFormat::Csv => OutputFormat::Csv,
        SqlFormat::Json => OutputFormat::Json,
        SqlFormat::Parquet => OutputFormat::Parquet,
    };
    if format == OutputFormat::Parquet && args.output.is_none() {
        bail!("--format parquet writes a file: give -o FILE");
    }
    let dataset = Dataset::open(&dir)?;
    let result = dataset.run_script(&sql)?;
    match &args.output {
        Some(path) => {
            output::write_file(&result, format, path, &sql)?;
            eprintln!("{} rows written to {}", result.num_rows(), path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            output::write(&result, format, &mut lock)?;
        }
    }
    Ok(())
}
