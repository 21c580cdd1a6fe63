//! attn-spectra-report: the report stage. It turns a dataset directory (the Parquet tables
//! written by `pipeline run extract`, and when present `aggregate` and `test`) into
//!
//! - figures under `figures/`, each as PNG and SVG: the seed notebook's 2x2 figure (W_V and
//!   W_O spectral norm by layer, mean spectral norm per lab, W_V effective rank by layer), the
//!   same panels for scale-free metrics and for the OV/QK circuits, log-log eigenvalue
//!   densities per lab, and a layer x head heat map of the OV spectral norm per model;
//! - `report.md` and a self-contained `report.html` with the seed's summary tables, the
//!   hypothesis test results and their caveats, and provenance;
//! - the seed notebook's JSON, `restriction_map_spectral_<YYYYMMDD_HHMMSS>.json`.
//!
//! The core tables are read into their row types by `attn_spectra::dataset` (the one owner
//! of their columns), the SQL result tables as text; missing aggregate or hypothesis
//! tables leave their section out with a note, so the report works on a dataset that only
//! went through `extract`. Every file is written atomically (temporary file, then rename).
//!
//! ```no_run
//! use attn_spectra_report::{ReportOptions, write_report};
//! let opts = ReportOptions::new("demo");
//! let dataset = std::path::Path::new("data/demo"); // or DatasetDir::open("s3://bucket/demo")
//! let out = write_report(dataset, "data/demo/report".as_ref(), &opts).unwrap();
//! for f in &out.files {
//!     println!("{}", f.display());
//! }
//! ```

pub mod analysis;
pub mod columns;
pub mod document;
pub mod figures;
pub mod load;
pub mod report;
pub mod seed_json;
pub mod style;
pub mod time;

use std::io::Write;
use std::path::{Path, PathBuf};

use attn_spectra::pipeline::Pipeline;
use attn_spectra::stats::Alternative;

pub use style::{Marker, Rgb, Style};

/// Errors of the report stage; each names the file, column, figure or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{dir} is not a dataset directory (it does not exist); run `pipeline run extract` first"
    )]
    NotADataset { dir: PathBuf },
    #[error("{dir} has no `{table}/` table (or it is empty); run `pipeline run extract` first")]
    MissingTable { dir: PathBuf, table: String },
    #[error("dataset {dir}: no model in `models/` has rows in `matrices/`")]
    NoModels { dir: PathBuf },
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Dataset(#[from] attn_spectra::dataset::DatasetError),
    #[error("{path}: column `{column}` {problem}")]
    Column {
        path: PathBuf,
        column: String,
        problem: String,
    },
    #[error("figure `{figure}`: {message}")]
    Figure { figure: String, message: String },
    #[error("report option `{option}`: {problem}")]
    Option { option: String, problem: String },
}

/// What the report needs besides the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportOptions {
    /// The pipeline's name (the report's title).
    pub name: String,
    pub description: Option<String>,
    /// Colour and marker per model id, in the pipeline's order, which is also the order of
    /// legends and tables. Models of the dataset not listed get the default palette.
    pub styles: Vec<(String, Style)>,
    /// When the report is made, in microseconds since the Unix epoch (UTC): the JSON's
    /// `date` and file name. Fixed in tests for deterministic output.
    pub timestamp_us: i64,
    /// The hypothesis sentence for the JSON and the report; `None`: derived from `test`,
    /// else the seed notebook's sentence.
    pub hypothesis: Option<String>,
    /// The pipeline's test specification (group A, alternative, alpha), used for the
    /// small-sample caveat when `hypothesis/` is absent, and for the default sentence.
    pub test: Option<attn_spectra::pipeline::TestPlan>,
}

impl ReportOptions {
    /// Options with no styles, the current time and the seed's hypothesis.
    pub fn new(name: &str) -> ReportOptions {
        ReportOptions {
            name: name.to_string(),
            description: None,
            styles: Vec::new(),
            timestamp_us: time::now_us(),
            hypothesis: None,
            test: None,
        }
    }

    /// Options from a pipeline file: its name, description, models' styles (a missing colour
    /// is the palette colour most unlike the others, a missing marker a circle) and test.
    pub fn from_pipeline(p: &Pipeline, timestamp_us: i64) -> Result<ReportOptions, ReportError> {
        let bad = |i: usize, id: &str, problem: String| ReportError::Option {
            option: format!("models[{i}] ({id}) style"),
            problem,
        };
        // Explicit colours first, so that defaults keep away from all of them.
        let mut used: Vec<Rgb> = Vec::new();
        for (i, m) in p.models.iter().enumerate() {
            if let Some(c) = &m.color {
                used.push(c.parse().map_err(|e| bad(i, &m.id, e))?);
            }
        }
        let mut styles: Vec<(String, Style)> = Vec::with_capacity(p.models.len());
        for (i, m) in p.models.iter().enumerate() {
            // A model listed at several revisions has one style: its first entry's.
            if styles.iter().any(|(id, _)| *id == m.id) {
                continue;
            }
            let s = Style::from_parts(m.color.as_deref(), m.marker.as_deref(), &used)
                .map_err(|e| bad(i, &m.id, e))?;
            if m.color.is_none() {
                used.push(s.color);
            }
            styles.push((m.id.clone(), s));
        }
        Ok(ReportOptions {
            name: p.name.clone(),
            description: p.description.clone(),
            styles,
            timestamp_us,
            hypothesis: None,
            test: Some(p.test.clone()),
        })
    }

    /// The hypothesis sentence in force.
    pub fn hypothesis_text(&self) -> String {
        if let Some(h) = &self.hypothesis {
            return h.clone();
        }
        let Some(t) = &self.test else {
            return seed_json::SEED_HYPOTHESIS.to_string();
        };
        let relation = match t.alternative {
            Alternative::Less => "lower",
            Alternative::Greater => "higher",
            Alternative::TwoSided => "different",
        };
        let kinds: Vec<&str> = t.kinds.iter().map(|k| k.name()).collect();
        let metrics: Vec<&str> = t.metrics.iter().map(|m| m.name()).collect();
        format!(
            "{} has {relation} {} of {} than the other models",
            t.group_a_name(),
            metrics.join(", "),
            kinds.join(", ")
        )
    }
}

/// One figure as written.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureFile {
    pub name: String,
    pub png: PathBuf,
    pub svg: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportOutputs {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
    pub figures: Vec<FigureFile>,
    /// Every file written, in writing order.
    pub files: Vec<PathBuf>,
    /// Sections left out or computed differently, as said in the report.
    pub notes: Vec<String>,
}

/// Reads the dataset in `dataset_dir` and writes the report into `out_dir` (created if
/// needed): `report.md`, `report.html`, the seed's JSON and `figures/*.{png,svg}`.
pub fn write_report(
    dataset_dir: impl Into<attn_spectra::dataset::DatasetDir>,
    out_dir: &Path,
    opts: &ReportOptions,
) -> Result<ReportOutputs, ReportError> {
    let ds = load::load(&dataset_dir.into())?;
    report::write(&ds, out_dir, opts)
}

/// Writes `bytes` to `path` atomically: a hidden temporary file in the same directory,
/// synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    attn_spectra::dataset::write_atomic_with(path, io, |mut file| {
        file.write_all(bytes).map_err(io)?;
        Ok(file)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn options_from_the_demo_pipeline() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml");
        let p = Pipeline::load(&path).unwrap();
        let o = ReportOptions::from_pipeline(&p, 0).unwrap();
        // Seven models; the pythia-like one is listed at two revisions and has one style.
        assert_eq!(o.styles.len(), 7);
        assert_eq!(o.styles[0].0, "fixture/pythia-like");
        assert_eq!(o.styles[0].1.color, Rgb(0xE7, 0x4C, 0x3C));
        assert_eq!(o.styles[2].1.marker, Marker::TriangleUp);
        assert!(
            o.hypothesis_text()
                .starts_with("EleutherAI has lower spectral_norm")
        );
        assert_eq!(
            ReportOptions::new("x").hypothesis_text(),
            seed_json::SEED_HYPOTHESIS
        );
    }

    #[test]
    fn missing_dataset_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = write_report(&missing, dir.path(), &ReportOptions::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = write_report(
            dir.path(),
            &dir.path().join("out"),
            &ReportOptions::new("x"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("models/"), "{e}");
    }
}
