//! Pipeline files (TOML): which models to analyse, how, and which hypothesis to test.
//!
//! ```toml
//! name = "labs"
//!
//! [analysis]
//! kinds = ["W_Q", "W_K", "W_V", "W_O", "OV", "QK"]
//! per_head = true        # per-head W_Q^h, W_K^g, W_V^g, W_O^h besides whole-layer matrices
//! fold_ln = false        # scale W_Q/W_K/W_V columns by the pre-attention norm gain
//! precision = "f64"      # or "f32"
//! backend = "auto"       # auto | faer | torch-cpu | torch-cuda
//!
//! [[models]]
//! id = "EleutherAI/pythia-160m"   # a Hub id, or a local name when `source` is given
//! revision = "main"               # one revision, or a sweep:
//! # revisions = ["main", "step0", { format = "step{}", from = 1000, to = 143000, step = 1000 }]
//! source = "../checkpoints/pythia"  # optional; relative to this file
//! lab = "EleutherAI"
//! heritage = "DAMPENER"
//! color = "#E74C3C"
//! marker = "o"
//!
//! [test]
//! metrics = ["spectral_norm"]
//! kinds = ["W_V", "W_O"]
//! group_a = { lab = ["EleutherAI"] }
//! alternative = "less"
//! ```
//!
//! Unknown keys and bad values are errors naming the key and the file. `circuits` (a boolean)
//! is accepted in `[analysis]` as shorthand for adding OV and QK to `kinds`.
//!
//! # Units and revision sweeps
//!
//! A model entry names one revision (`revision`, default `main`) or several (`revisions`, a
//! list whose items are revision names or range tables `{ format = "step{}", from = A, to = B,
//! step = S }`, expanded to `format` with `{}` replaced by A, A+S, ... up to B inclusive; a
//! single range table is accepted without the list). Each (model, revision) is one *unit*:
//! [`Pipeline::models`] holds the units in file order, a model's revisions in the order
//! written, and a unit's index is its position there (what `pipeline plan` prints and what
//! shards are cut from, see [`crate::shard`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kind::MatrixKind;
use crate::spectral::{BackendChoice, Metric, Precision};
use crate::stats::Alternative;

/// Errors reading a pipeline file; each names the file and, where it can, the key.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read pipeline file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("pipeline file {path}: `{key}`: {problem}")]
    Value {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// The most units (model x revision) a pipeline file may expand to: a bound on what a range
/// table can make the parser allocate, far above any real sweep (Pythia's atlas is 1,232).
pub const MAX_UNITS: usize = 100_000;

/// Markers understood by the report (matplotlib's names).
pub const MARKERS: &[&str] = &["o", "s", "^", "v", "D", "x", "+", "*", "<", ">"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    analysis: RawAnalysis,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    test: Option<RawTest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    kinds: Option<Vec<String>>,
    per_head: Option<bool>,
    circuits: Option<bool>,
    fold_ln: Option<bool>,
    precision: Option<String>,
    backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    revision: Option<String>,
    /// A list of revision names and range tables, or one range table (see the module docs).
    revisions: Option<toml::Value>,
    source: Option<String>,
    gguf: Option<String>,
    lab: Option<String>,
    heritage: Option<String>,
    color: Option<String>,
    marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    metrics: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
    group_a: Option<RawGroup>,
    alternative: Option<String>,
    alpha: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    lab: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
}

/// How matrices are analysed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// Kinds analysed, in canonical order.
    pub kinds: Vec<MatrixKind>,
    /// Per-head W_Q^h, W_K^g, W_V^g, W_O^h besides the whole-layer matrices.
    pub per_head: bool,
    pub fold_ln: bool,
    pub precision: Precision,
    pub backend: BackendChoice,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            kinds: MatrixKind::ALL.to_vec(),
            per_head: true,
            fold_ln: false,
            precision: Precision::F64,
            backend: BackendChoice::Auto,
        }
    }
}

/// One model of the study.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelEntry {
    /// Hub id (`org/name`) or a local name.
    pub id: String,
    pub revision: String,
    /// A local directory or file; `None` means the model comes from the Hub.
    pub source: Option<PathBuf>,
    /// For a Hub GGUF repository: which `.gguf` file to read.
    pub gguf: Option<String>,
    pub lab: Option<String>,
    pub heritage: Option<String>,
    pub color: Option<String>,
    pub marker: Option<String>,
}

/// The hypothesis test (`pipeline run test`, the `[test]` section of a pipeline file): the
/// one description of it, used by the pipeline file and by the SQL crate that runs it. Its
/// JSON form (the same field names) is stored in `hypothesis/`'s metadata.
///
/// For each metric and kind, models whose lab is in `group_a_labs` or whose id is in
/// `group_a_models` form group A; every other model forms group B.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestPlan {
    /// Metric columns of `matrices/`.
    pub metrics: Vec<Metric>,
    pub kinds: Vec<MatrixKind>,
    /// Labs whose models form group A.
    pub group_a_labs: Vec<String>,
    /// Further models (Hub ids) in group A.
    pub group_a_models: Vec<String>,
    /// H1, about group A relative to group B: `less` means group A is expected smaller.
    pub alternative: Alternative,
    /// The significance level of the verdict.
    pub alpha: f64,
}

impl Default for TestPlan {
    /// The seed's test, EleutherAI (the "Dampeners") against all others with H1: EleutherAI
    /// < Others, on the spectral norm of W_V and W_O, extended to the stable rank, the
    /// effective rank and the power-law alpha, and to the OV circuits; alpha 0.05.
    fn default() -> Self {
        TestPlan {
            metrics: vec![
                Metric::SpectralNorm,
                Metric::StableRank,
                Metric::EffectiveRank,
                Metric::Alpha,
            ],
            kinds: vec![MatrixKind::WV, MatrixKind::WO, MatrixKind::OV],
            group_a_labs: vec!["EleutherAI".into()],
            group_a_models: vec![],
            alternative: Alternative::Less,
            alpha: 0.05,
        }
    }
}

/// A problem with a [`TestPlan`]: the key of the `[test]` section at fault, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct PlanError {
    pub key: &'static str,
    pub problem: String,
}

impl TestPlan {
    /// Checks that there is something to test, that group A is named, and alpha.
    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |key, problem: &str| {
            Err(PlanError {
                key,
                problem: problem.to_string(),
            })
        };
        if self.metrics.is_empty() {
            return bad("test.metrics", "name at least one metric");
        }
        if self.kinds.is_empty() {
            return bad("test.kinds", "name at least one matrix kind");
        }
        if self.group_a_labs.is_empty() && self.group_a_models.is_empty() {
            return bad("test.group_a", "name at least one lab or model");
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(PlanError {
                key: "test.alpha",
                problem: format!("{} is not between 0 and 1", self.alpha),
            });
        }
        Ok(())
    }

    /// The name of group A: its labs and models, comma-separated.
    pub fn group_a_name(&self) -> String {
        self.group_a_labs
            .iter()
            .chain(&self.group_a_models)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A parsed, validated pipeline file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pipeline {
    /// The file it was read from.
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub analysis: Analysis,
    pub models: Vec<ModelEntry>,
    pub test: TestPlan,
    /// The file's text, kept for Parquet metadata.
    #[serde(skip)]
    pub text: String,
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses pipeline text; `path` locates relative `source` paths and names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, PipelineError> {
        let raw: RawPipeline = toml::from_str(text).map_err(|e| PipelineError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let bad = |key: &str, problem: String| PipelineError::Value {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        if raw.name.trim().is_empty()
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "name",
                format!(
                    "`{}` must be non-empty and use only letters, digits, '-', '_' and '.' (it names the output directory)",
                    raw.name
                ),
            ));
        }
        let analysis = {
            let a = raw.analysis;
            let mut kinds: BTreeSet<MatrixKind> = match a.kinds {
                Some(list) => list
                    .iter()
                    .map(|k| {
                        k.parse::<MatrixKind>()
                            .map_err(|e| bad("analysis.kinds", e))
                    })
                    .collect::<Result<_, _>>()?,
                None => MatrixKind::ALL.into_iter().collect(),
            };
            match a.circuits {
                Some(true) => kinds.extend([MatrixKind::OV, MatrixKind::QK]),
                Some(false) => kinds.retain(|k| !k.is_circuit()),
                None => {}
            }
            if kinds.is_empty() {
                return Err(bad(
                    "analysis.kinds",
                    "at least one matrix kind is needed".into(),
                ));
            }
            let precision = match a.precision {
                Some(p) => p
                    .parse::<Precision>()
                    .map_err(|e| bad("analysis.precision", e.to_string()))?,
                None => Precision::F64,
            };
            let backend = match a.backend {
                Some(b) => b
                    .parse::<BackendChoice>()
                    .map_err(|e| bad("analysis.backend", e.to_string()))?,
                None => BackendChoice::Auto,
            };
            Analysis {
                kinds: kinds.into_iter().collect(),
                per_head: a.per_head.unwrap_or(true),
                fold_ln: a.fold_ln.unwrap_or(false),
                precision,
                backend,
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut seen = BTreeSet::new();
        let mut models = Vec::with_capacity(raw.models.len());
        for (i, m) in raw.models.into_iter().enumerate() {
            let key = |k: &str| format!("models[{i}].{k}");
            if m.id.trim().is_empty() {
                return Err(bad(&key("id"), "must not be empty".into()));
            }
            let revision_key = if m.revisions.is_some() {
                key("revisions")
            } else {
                key("id")
            };
            let revisions = match (m.revision, m.revisions) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        &key("revisions"),
                        "give either `revision` or `revisions`, not both".into(),
                    ));
                }
                (Some(r), None) => {
                    if r.trim().is_empty() {
                        return Err(bad(&key("revision"), "must not be empty".into()));
                    }
                    vec![r]
                }
                (None, Some(v)) => expand_revisions(&v, &key("revisions"), models.len())
                    .map_err(|(k, problem)| bad(&k, problem))?,
                (None, None) => vec!["main".into()],
            };
            if let Some(color) = &m.color {
                let hex = color.strip_prefix('#').unwrap_or("");
                if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad(
                        &key("color"),
                        format!("`{color}` is not a colour like \"#E74C3C\""),
                    ));
                }
            }
            if let Some(marker) = &m.marker
                && !MARKERS.contains(&marker.as_str())
            {
                return Err(bad(
                    &key("marker"),
                    format!("`{marker}`; expected one of {}", MARKERS.join(" ")),
                ));
            }
            if let Some(g) = &m.gguf
                && !g.ends_with(".gguf")
            {
                return Err(bad(&key("gguf"), format!("`{g}` is not a .gguf file name")));
            }
            let source = m.source.map(|s| base.join(s));
            for revision in revisions {
                if !seen.insert((m.id.clone(), revision.clone())) {
                    return Err(bad(
                        &revision_key,
                        format!("`{}` at revision `{revision}` is listed twice", m.id),
                    ));
                }
                if models.len() >= MAX_UNITS {
                    return Err(bad(
                        &key("revisions"),
                        format!(
                            "the file expands to more than {MAX_UNITS} units (model x revision)"
                        ),
                    ));
                }
                models.push(ModelEntry {
                    id: m.id.clone(),
                    revision,
                    source: source.clone(),
                    gguf: m.gguf.clone(),
                    lab: m.lab.clone(),
                    heritage: m.heritage.clone(),
                    color: m.color.clone(),
                    marker: m.marker.clone(),
                });
            }
        }
        let test = match raw.test {
            None => TestPlan::default(),
            Some(t) => {
                let d = TestPlan::default();
                let metrics = match t.metrics {
                    Some(list) => list
                        .iter()
                        .map(|m| m.parse::<Metric>().map_err(|e| bad("test.metrics", e)))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => d.metrics,
                };
                let kinds = match t.kinds {
                    Some(list) => list
                        .iter()
                        .map(|k| k.parse::<MatrixKind>().map_err(|e| bad("test.kinds", e)))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => d.kinds,
                };
                let (group_a_labs, group_a_models) = match t.group_a {
                    Some(g) => (g.lab, g.models),
                    None => (d.group_a_labs, d.group_a_models),
                };
                let alternative = match t.alternative {
                    Some(a) => a
                        .parse::<Alternative>()
                        .map_err(|e| bad("test.alternative", e.to_string()))?,
                    None => d.alternative,
                };
                let plan = TestPlan {
                    metrics,
                    kinds,
                    group_a_labs,
                    group_a_models,
                    alternative,
                    alpha: t.alpha.unwrap_or(d.alpha),
                };
                plan.validate().map_err(|e| bad(e.key, e.problem))?;
                plan
            }
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            analysis,
            models,
            test,
            text: text.to_string(),
        })
    }

    /// The configuration hash of one model's unit as extracted with `backend` (the resolved
    /// name) in `precision`: [`Pipeline::config_hash`] extended by the backend and precision
    /// actually used. It is what a resumed run compares.
    pub fn unit_hash(&self, model: &ModelEntry, backend: &str, precision: Precision) -> String {
        let base = self.config_hash(model);
        hex(&Sha256::digest(
            format!("{base}/{backend}/{precision}").as_bytes(),
        ))
    }

    /// The configuration hash of one model: identical hashes mean identical outputs, so a
    /// resumed run skips the model. It covers the model's identity and source, its lab and
    /// heritage (they are written into its rows), and every analysis setting.
    pub fn config_hash(&self, model: &ModelEntry) -> String {
        // The source as an absolute path, so that running from another directory (or naming
        // the pipeline file by another path) resumes the same outputs.
        let source = model
            .source
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
        let doc = serde_json::json!({
            "id": model.id,
            "revision": model.revision,
            "source": source,
            "gguf": model.gguf,
            "lab": model.lab,
            "heritage": model.heritage,
            "analysis": self.analysis,
            "tool_version": env!("CARGO_PKG_VERSION"),
        });
        hex(&Sha256::digest(doc.to_string().as_bytes()))
    }
}

/// The revisions of one `revisions` value (a list of names and range tables, or one range
/// table), in the order written. `key` names the value in errors (`models[i].revisions`);
/// `units_before` counts the units already listed, for [`MAX_UNITS`]. Errors are (key,
/// problem).
fn expand_revisions(
    value: &toml::Value,
    key: &str,
    units_before: usize,
) -> Result<Vec<String>, (String, String)> {
    let items: Vec<(String, &toml::Value)> = match value {
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(j, v)| (format!("{key}[{j}]"), v))
            .collect(),
        toml::Value::Table(_) => vec![(key.to_string(), value)],
        other => {
            return Err((
                key.to_string(),
                format!(
                    "expected a list of revisions or a range table {{ format = \"step{{}}\", from = 0, to = 1000, step = 100 }}, found a {}",
                    other.type_str()
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err((key.to_string(), "name at least one revision".into()));
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for (item_key, item) in items {
        let expanded = match item {
            toml::Value::String(name) => {
                if name.trim().is_empty() {
                    return Err((item_key, "a revision must not be empty".into()));
                }
                vec![name.clone()]
            }
            toml::Value::Table(t) => {
                let budget = MAX_UNITS.saturating_sub(units_before + out.len());
                expand_range(t, &item_key, budget)?
            }
            other => {
                return Err((
                    item_key,
                    format!(
                        "expected a revision name or a range table, found a {}",
                        other.type_str()
                    ),
                ));
            }
        };
        for revision in expanded {
            if !seen.insert(revision.clone()) {
                return Err((item_key, format!("revision `{revision}` is listed twice")));
            }
            out.push(revision);
        }
    }
    Ok(out)
}

/// The revisions of one range table `{ format, from, to, step }` (step defaults to 1; `to`
/// is included when the steps reach it). At most `budget` revisions.
fn expand_range(
    table: &toml::Table,
    key: &str,
    budget: usize,
) -> Result<Vec<String>, (String, String)> {
    let err = |field: &str, problem: String| (format!("{key}.{field}"), problem);
    for field in table.keys() {
        if !matches!(field.as_str(), "format" | "from" | "to" | "step") {
            return Err(err(
                field,
                "unknown key; a range table has format, from, to and step".into(),
            ));
        }
    }
    let format = match table.get("format") {
        Some(toml::Value::String(f)) => f,
        Some(other) => {
            return Err(err(
                "format",
                format!(
                    "expected a string like \"step{{}}\", found a {}",
                    other.type_str()
                ),
            ));
        }
        None => return Err(err("format", "missing (for example \"step{}\")".into())),
    };
    if format.matches("{}").count() != 1 {
        return Err(err(
            "format",
            format!("`{format}` must contain `{{}}` exactly once, where the number goes"),
        ));
    }
    let int = |field: &str, default: Option<i64>| -> Result<u64, (String, String)> {
        match table.get(field) {
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
            Some(toml::Value::Integer(i)) => Err(err(field, format!("{i} is negative"))),
            Some(other) => Err(err(
                field,
                format!("expected an integer, found a {}", other.type_str()),
            )),
            None => default
                .map(|d| d as u64)
                .ok_or_else(|| err(field, "missing".into())),
        }
    };
    let from = int("from", None)?;
    let to = int("to", None)?;
    let step = int("step", Some(1))?;
    if step == 0 {
        return Err(err("step", "must be at least 1".into()));
    }
    if from > to {
        return Err(err(
            "from",
            format!("from = {from} is greater than to = {to}"),
        ));
    }
    let count = (to - from) / step + 1;
    if count > budget as u64 {
        return Err((
            key.to_string(),
            format!(
                "the range makes {count} revisions; a pipeline file may expand to at most {MAX_UNITS} units"
            ),
        ));
    }
    Ok((0..count)
        .map(|i| format.replacen("{}", &(from + i * step).to_string(), 1))
        .collect())
}

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        Pipeline::parse(Path::new("pipelines/t.toml"), text)
    }

    const MINIMAL: &str = r#"
name = "t"
[[models]]
id = "gpt2"
"#;

    #[test]
    fn defaults() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.models[0].revision, "main");
        assert_eq!(p.analysis.kinds.len(), 6);
        assert_eq!(p.analysis.precision, Precision::F64);
        assert_eq!(p.analysis.backend, BackendChoice::Auto);
        assert_eq!(p.test, TestPlan::default());
        assert_eq!(p.test.group_a_labs, vec!["EleutherAI"]);
        assert_eq!(p.test.alternative, Alternative::Less);
    }

    #[test]
    fn sources_are_relative_to_the_file() {
        let p =
            parse("name = \"t\"\n[[models]]\nid = \"x\"\nsource = \"../fixtures/x\"\n").unwrap();
        assert_eq!(
            p.models[0].source.as_deref(),
            Some(Path::new("pipelines/../fixtures/x"))
        );
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let e = parse("name = \"t\"\n[analysis]\nprecison = \"f32\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipelines/t.toml") && e.contains("precison"),
            "{e}"
        );
        let e = parse("name = \"t\"\n[[models]]\nid = \"a\"\ncolour = \"#000000\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            (
                "name = \"t\"\n[analysis]\nprecision = \"f16\"\n",
                "analysis.precision",
            ),
            (
                "name = \"t\"\n[analysis]\nbackend = \"cuda\"\n",
                "analysis.backend",
            ),
            (
                "name = \"t\"\n[analysis]\nkinds = [\"W_X\"]\n",
                "analysis.kinds",
            ),
            (
                "name = \"t\"\n[[models]]\nid = \"a\"\ncolor = \"red\"\n",
                "models[0].color",
            ),
            (
                "name = \"t\"\n[[models]]\nid = \"a\"\nmarker = \"?\"\n",
                "models[0].marker",
            ),
            (
                "name = \"t\"\n[[models]]\nid = \"a\"\n[[models]]\nid = \"a\"\n",
                "models[1].id",
            ),
            (
                "name = \"t\"\n[test]\nmetrics = [\"loudness\"]\n",
                "test.metrics",
            ),
            (
                "name = \"t\"\n[test]\nalternative = \"lower\"\n",
                "test.alternative",
            ),
            ("name = \"t\"\n[test]\ngroup_a = {}\n", "test.group_a"),
            ("name = \"a/b\"\n", "name"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
    }

    fn revisions_of(p: &Pipeline) -> Vec<String> {
        p.models.iter().map(|m| m.revision.clone()).collect()
    }

    #[test]
    fn revision_sweeps_expand_to_units_in_order() {
        let p = parse(
            "name = \"t\"\n[[models]]\nid = \"a\"\nlab = \"L\"\nrevisions = [\"main\", \"step0\", { format = \"step{}\", from = 1000, to = 3500, step = 1000 }, \"step4000\"]\n[[models]]\nid = \"b\"\nrevisions = { format = \"v{}-x\", from = 1, to = 3 }\n[[models]]\nid = \"c\"\n",
        )
        .unwrap();
        assert_eq!(
            revisions_of(&p),
            [
                "main", "step0", "step1000", "step2000", "step3000", "step4000", "v1-x", "v2-x",
                "v3-x", "main"
            ]
        );
        assert!(
            p.models[..6]
                .iter()
                .all(|m| m.id == "a" && m.lab.as_deref() == Some("L"))
        );
        assert_eq!(p.models[6].id, "b");
        // Each unit has its own configuration hash.
        assert_ne!(p.config_hash(&p.models[0]), p.config_hash(&p.models[1]));
        // A range whose steps land on `to` includes it; a one-element range is allowed.
        let p = parse("name = \"t\"\n[[models]]\nid = \"a\"\nrevisions = [{ format = \"s{}\", from = 5, to = 5, step = 7 }]\n").unwrap();
        assert_eq!(revisions_of(&p), ["s5"]);
    }

    #[test]
    fn bad_sweeps_name_the_key_and_the_file() {
        let model = |rest: &str| format!("name = \"t\"\n[[models]]\nid = \"a\"\n{rest}\n");
        for (rest, key, words) in [
            (
                "revisions = { format = \"step{}\", from = 0, to = 10, step = 0 }",
                "models[0].revisions.step",
                "at least 1",
            ),
            (
                "revisions = [\"main\", { format = \"step{}\", from = 10, to = 0 }]",
                "models[0].revisions[1].from",
                "greater than to",
            ),
            (
                "revisions = [{ format = \"step\", from = 0, to = 1 }]",
                "models[0].revisions[0].format",
                "exactly once",
            ),
            (
                "revisions = [{ format = \"s{}{}\", from = 0, to = 1 }]",
                "models[0].revisions[0].format",
                "exactly once",
            ),
            (
                "revisions = [{ from = 0, to = 1 }]",
                "models[0].revisions[0].format",
                "missing",
            ),
            (
                "revisions = [{ format = \"s{}\", to = 1 }]",
                "models[0].revisions[0].from",
                "missing",
            ),
            (
                "revisions = [{ format = \"s{}\", from = -1, to = 1 }]",
                "models[0].revisions[0].from",
                "negative",
            ),
            (
                "revisions = [{ format = \"s{}\", from = 0, to = 1, stride = 1 }]",
                "models[0].revisions[0].stride",
                "unknown key",
            ),
            (
                "revisions = [\"step2\", { format = \"step{}\", from = 0, to = 4, step = 2 }]",
                "models[0].revisions[1]",
                "`step2` is listed twice",
            ),
            (
                "revisions = [\"main\", \"main\"]",
                "models[0].revisions[1]",
                "twice",
            ),
            ("revisions = []", "models[0].revisions", "at least one"),
            ("revisions = [\"\"]", "models[0].revisions[0]", "empty"),
            ("revisions = [3]", "models[0].revisions[0]", "integer"),
            ("revisions = \"main\"", "models[0].revisions", "list"),
            (
                "revision = \"main\"\nrevisions = [\"step1\"]",
                "models[0].revisions",
                "not both",
            ),
            (
                "revisions = { format = \"s{}\", from = 0, to = 10000000 }",
                "models[0].revisions",
                "at most",
            ),
        ] {
            let e = parse(&model(rest)).unwrap_err().to_string();
            assert!(
                e.contains("pipelines/t.toml")
                    && e.contains(&format!("`{key}`"))
                    && e.contains(words),
                "{rest}: {e}"
            );
        }
        // The same (model, revision) through two entries.
        let e = parse("name = \"t\"\n[[models]]\nid = \"a\"\nrevision = \"step1\"\n[[models]]\nid = \"a\"\nrevisions = { format = \"step{}\", from = 0, to = 2 }\n").unwrap_err().to_string();
        assert!(
            e.contains("`models[1].revisions`") && e.contains("step1"),
            "{e}"
        );
    }

    #[test]
    fn circuits_shorthand() {
        let p = parse("name = \"t\"\n[analysis]\nkinds = [\"W_V\"]\ncircuits = true\n").unwrap();
        assert_eq!(
            p.analysis.kinds,
            vec![MatrixKind::WV, MatrixKind::OV, MatrixKind::QK]
        );
        let p = parse("name = \"t\"\n[analysis]\ncircuits = false\n").unwrap();
        assert_eq!(p.analysis.kinds.len(), 4);
    }

    #[test]
    fn hash_changes_with_analysis_not_colour() {
        let a = parse(MINIMAL).unwrap();
        let b = parse(&format!("{MINIMAL}color = \"#112233\"\n")).unwrap();
        let c = parse(&format!("{MINIMAL}[analysis]\nfold_ln = true\n")).unwrap();
        assert_eq!(a.config_hash(&a.models[0]), b.config_hash(&b.models[0]));
        assert_ne!(a.config_hash(&a.models[0]), c.config_hash(&c.models[0]));
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// The pipeline files in pipelines/ parse, and the demo's sources exist.
    #[test]
    fn shipped_pipelines_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let labs = Pipeline::load(&dir.join("labs.toml")).unwrap();
        assert_eq!(labs.models.len(), 7);
        assert_eq!(
            labs.models
                .iter()
                .filter(|m| m.lab.as_deref() == Some("EleutherAI"))
                .count(),
            3
        );
        let atlas = Pipeline::load(&dir.join("pythia-atlas.toml")).unwrap();
        assert_eq!(atlas.models.len(), 8 * 154);
        assert_eq!(
            atlas.models[..3]
                .iter()
                .map(|m| m.revision.as_str())
                .collect::<Vec<_>>(),
            ["step0", "step1", "step2"]
        );
        assert_eq!(atlas.models[153].revision, "step143000");
        assert_eq!(atlas.models[154].id, "EleutherAI/pythia-160m");
        let demo = Pipeline::load(&dir.join("demo.toml")).unwrap();
        for m in &demo.models {
            let src = m.source.as_ref().unwrap();
            assert!(src.join("config.json").is_file(), "{}", src.display());
        }
    }
}
