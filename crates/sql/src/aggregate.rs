//! `pipeline run aggregate`: the `sql/*.sql` files, run in name order, each result stored as
//! a table of the dataset.
//!
//! A file's result becomes table `<stem>`, written atomically to
//! `<dataset>/<stem>/result.parquet` with key-value metadata `sql_file` (the file name),
//! `sql` (its text) and `tool_version`. It is registered at once, so later files can query
//! earlier results. A file may hold several `;`-separated statements (views, then a query);
//! its result is the last statement's. The first failing statement stops the run with an
//! error naming the file, as datafusion-cli does. Stems must be lower-case SQL identifiers
//! (`[a-z_][a-z0-9_]*`) and may not name a core table.
//!
//! The files shipped in the repository's `sql/` are also compiled in ([`SHIPPED_SQL`]), for
//! a `pipeline` run outside the repository.

use std::path::{Path, PathBuf};

use attn_spectra::dataset::DatasetDir;

use crate::dataset::is_core_table;
use crate::{Dataset, Result, SqlError, TOOL_VERSION};

/// One SQL file: its name (`model_summary.sql`), where it came from, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlFile {
    pub name: String,
    pub path: Option<PathBuf>,
    pub sql: String,
}

impl SqlFile {
    /// The table the file's result becomes: the name without `.sql`.
    pub fn stem(&self) -> &str {
        self.name.strip_suffix(".sql").unwrap_or(&self.name)
    }

    fn display(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from("sql").join(&self.name))
    }
}

/// The repository's `sql/` files, compiled in (name, text), in name order.
pub const SHIPPED_SQL: &[(&str, &str)] = &[
    (
        "lab_summary.sql",
        include_str!("../../../sql/lab_summary.sql"),
    ),
    (
        "layer_profile.sql",
        include_str!("../../../sql/layer_profile.sql"),
    ),
    (
        "model_summary.sql",
        include_str!("../../../sql/model_summary.sql"),
    ),
    (
        "trajectory.sql",
        include_str!("../../../sql/trajectory.sql"),
    ),
];

/// [`SHIPPED_SQL`] as [`SqlFile`]s.
pub fn shipped_files() -> Vec<SqlFile> {
    SHIPPED_SQL
        .iter()
        .map(|(name, sql)| SqlFile {
            name: name.to_string(),
            path: None,
            sql: sql.to_string(),
        })
        .collect()
}

/// The `*.sql` files of `dir`, sorted by file name (byte order); hidden files are skipped.
pub fn read_sql_dir(dir: &Path) -> Result<Vec<SqlFile>> {
    let io = |path: &Path, source| SqlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let sql = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        files.push(SqlFile {
            name,
            path: Some(path),
            sql,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// One table written by [`aggregate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateTable {
    pub table: String,
    pub path: PathBuf,
    pub rows: usize,
}

/// Runs every `*.sql` file of `sql_dir` in name order against the dataset at `dataset_dir`
/// and stores each result as a table (see the module documentation).
pub fn aggregate(
    dataset_dir: impl Into<DatasetDir>,
    sql_dir: &Path,
) -> Result<Vec<AggregateTable>> {
    let files = read_sql_dir(sql_dir)?;
    if files.is_empty() {
        return Err(SqlError::Invalid(format!(
            "{} holds no .sql files",
            sql_dir.display()
        )));
    }
    aggregate_files(dataset_dir, &files)
}

fn valid_stem(stem: &str) -> bool {
    let mut chars = stem.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Runs `files` in the given order (see [`aggregate`]).
pub fn aggregate_files(
    dataset_dir: impl Into<DatasetDir>,
    files: &[SqlFile],
) -> Result<Vec<AggregateTable>> {
    let in_file = |file: &SqlFile, source: SqlError| SqlError::File {
        file: file.display(),
        source: Box::new(source),
    };
    for file in files {
        let stem = file.stem();
        if !valid_stem(stem) {
            return Err(in_file(
                file,
                SqlError::Invalid(format!(
                    "`{stem}` cannot name a table: use lower-case letters, digits and _"
                )),
            ));
        }
        if is_core_table(stem) {
            return Err(in_file(
                file,
                SqlError::Invalid(format!("`{stem}` is a core table of the dataset")),
            ));
        }
    }
    let dataset = Dataset::open(dataset_dir)?;
    let mut written = Vec::new();
    for file in files {
        let stem = file.stem();
        let result = dataset
            .run_script(&file.sql)
            .map_err(|e| in_file(file, e))?;
        let metadata = vec![
            ("sql_file".to_string(), file.name.clone()),
            ("sql".to_string(), file.sql.clone()),
            ("tool_version".to_string(), TOOL_VERSION.to_string()),
        ];
        // The batches' schema, which can differ from the plan's in nullability.
        let schema = result
            .batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| result.schema.clone());
        let path = dataset
            .location()
            .write_batches(stem, "result", schema, &result.batches, &metadata)
            .map_err(|e| in_file(file, e.into()))?;
        dataset
            .register_table(stem, None)
            .map_err(|e| in_file(file, e))?;
        written.push(AggregateTable {
            table: stem.to_string(),
            path,
            rows: result.num_rows(),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_must_be_identifiers() {
        assert!(valid_stem("model_summary"));
        assert!(valid_stem("_x1"));
        assert!(!valid_stem("1x"));
        assert!(!valid_stem("Model"));
        assert!(!valid_stem("a-b"));
        assert!(!valid_stem(""));
    }

    #[test]
    fn shipped_files_are_the_repository_files_in_name_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql");
        let on_disk = read_sql_dir(&dir).unwrap();
        let names: Vec<_> = on_disk.iter().map(|f| f.name.as_str()).collect();
        let shipped: Vec<_> = SHIPPED_SQL.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, shipped);
        for (file, (_, sql)) in on_disk.iter().zip(SHIPPED_SQL) {
            assert_eq!(file.sql, *sql);
        }
    }
}
