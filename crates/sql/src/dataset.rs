//! A dataset (a local directory or an object store prefix) opened as a DataFusion session.
//!
//! Every table directory becomes one table named after it, read as a ListingTable over the
//! directory's `*.parquet` files: the hidden temporary files of an interrupted writer
//! (`.<name>.parquet.tmp-<host>-<pid>`) do not end in `.parquet` and are never read. The core
//! tables (`models`, `matrices`, `spectra`, `failures`, `hypothesis`) are registered with
//! their schemas from [`attn_spectra::dataset::core_tables`], so their column types do not depend
//! on which files exist; the optional ones are registered empty when their directory is
//! missing. Any other directory holding Parquet files (the SQL result tables written by
//! [`crate::aggregate()`]) is registered with the schema inferred from its files. A dataset in
//! an object store is listed and read through the same `object_store` client that wrote it,
//! registered with the session's runtime environment under `scheme://bucket`.
//!
//! Queries run on a single-threaded tokio runtime owned by the [`Dataset`], so the API is
//! synchronous, and in one partition, so that results are reproducible to the last bit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use attn_spectra::dataset::{self as ds, DatasetDir};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;

use crate::{Result, SqlError};

/// The result of a query: its schema (also for zero rows) and its batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// DataFusion computes strings as Utf8View; results are handed out and stored as plain
    /// Utf8 (top-level columns), the type of the core tables, so that a result table's
    /// schema is the same whether it is queried or read by pandas, polars or DuckDB.
    fn with_plain_strings(self) -> std::result::Result<QueryResult, DataFusionError> {
        use arrow::datatypes::{DataType, Field, Schema};
        let plain = |f: &Field| match f.data_type() {
            DataType::Utf8View => f.clone().with_data_type(DataType::Utf8),
            DataType::BinaryView => f.clone().with_data_type(DataType::Binary),
            _ => f.clone(),
        };
        if !self.schema.fields().iter().any(|f| plain(f) != **f) {
            return Ok(self);
        }
        let schema = Arc::new(Schema::new_with_metadata(
            self.schema
                .fields()
                .iter()
                .map(|f| plain(f))
                .collect::<Vec<_>>(),
            self.schema.metadata().clone(),
        ));
        let mut batches = Vec::with_capacity(self.batches.len());
        for batch in &self.batches {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(QueryResult { schema, batches })
    }
}

/// True for the names of the core tables, which SQL results may not replace.
pub fn is_core_table(name: &str) -> bool {
    ds::core_tables().iter().any(|(t, _)| *t == name)
}

/// A dataset (a local directory or an object store prefix) with its tables registered in a
/// DataFusion session.
pub struct Dataset {
    location: DatasetDir,
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn query_error(sql: &str, e: DataFusionError) -> SqlError {
    SqlError::Query {
        sql: sql.trim().to_string(),
        message: e.to_string(),
    }
}

impl Dataset {
    /// Opens the dataset at `location` (a directory, or a [`DatasetDir`] in an object store,
    /// whose store is registered with the session). Fails when its `matrices/` table is
    /// missing (the extract stage has not run) or a table cannot be read.
    pub fn open(location: impl Into<DatasetDir>) -> Result<Dataset> {
        let location: DatasetDir = location.into();
        let location = match location.local_root() {
            Some(dir) => {
                DatasetDir::new(std::path::absolute(dir).map_err(|source| SqlError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?)
            }
            None => location,
        };
        let has_matrices = match location.local_root() {
            Some(dir) => dir.join(ds::MATRICES).is_dir(),
            None => location.table_file_names(ds::MATRICES)?.is_some(),
        };
        if !has_matrices {
            return Err(SqlError::NoMatrices {
                dir: PathBuf::from(location.to_string()),
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(SqlError::Runtime)?;
        // One partition: aggregates then sum in file order and are bit-for-bit reproducible
        // (with several, the merge order of partial sums varies from run to run). The
        // tables are small: a study's matrices/ holds thousands of rows, not millions.
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(1);
        // Result tables read back with the types they were written with (Utf8, not the
        // Utf8View DataFusion would substitute), so a table's schema does not depend on
        // whether it is being written or read.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let dataset = Dataset {
            ctx: SessionContext::new_with_config(config),
            location,
            runtime,
        };
        if let Some((base, store)) = dataset.location.object_store() {
            let url = url::Url::parse(&base).map_err(|e| SqlError::Table {
                table: String::new(),
                path: PathBuf::from(&base),
                message: e.to_string(),
            })?;
            dataset.ctx.register_object_store(&url, store);
        }
        for (name, schema) in ds::core_tables() {
            if dataset.location.table_file_names(name)?.is_some() {
                dataset.register_table(name, Some(schema))?;
            } else {
                let path = PathBuf::from(dataset.location.table_location(name));
                let empty =
                    MemTable::try_new(schema, vec![vec![]]).map_err(|e| SqlError::Table {
                        table: name.to_string(),
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                dataset
                    .ctx
                    .register_table(TableReference::bare(name), Arc::new(empty))
                    .map_err(|e| SqlError::Table {
                        table: name.to_string(),
                        path,
                        message: e.to_string(),
                    })?;
            }
        }
        for name in dataset.location.tables()? {
            if is_core_table(&name) {
                continue;
            }
            if dataset
                .location
                .table_file_names(&name)?
                .is_some_and(|files| !files.is_empty())
            {
                dataset.register_table(&name, None)?;
            }
        }
        Ok(dataset)
    }

    /// Where the dataset lives (a local directory is made absolute).
    pub fn location(&self) -> &DatasetDir {
        &self.location
    }

    /// The DataFusion session, for callers that need more than [`Dataset::query`].
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The registered table names, sorted.
    pub fn tables(&self) -> Vec<String> {
        let mut names = self
            .ctx
            .catalog("datafusion")
            .and_then(|c| c.schema("public"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Runs one read-only SQL statement (a query; no DDL, DML or `SET`) and returns its
    /// batches.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.query_result(sql)?.batches)
    }

    /// Like [`Dataset::query`], keeping the result schema (needed to print zero rows).
    pub fn query_result(&self, sql: &str) -> Result<QueryResult> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.runtime.block_on(async {
            let df = self
                .ctx
                .sql_with_options(sql, options)
                .await
                .map_err(|e| query_error(sql, e))?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.map_err(|e| query_error(sql, e))?;
            QueryResult { schema, batches }
                .with_plain_strings()
                .map_err(|e| query_error(sql, e))
        })
    }

    /// Runs a script of one or more `;`-separated statements in order and returns the result
    /// of the last. Views and other DDL are allowed (they stay defined for later scripts);
    /// DML (`INSERT`, `COPY`) is not. The first failing statement stops the script; its
    /// error names the statement's position.
    pub fn run_script(&self, sql: &str) -> Result<QueryResult> {
        let statements = DFParser::parse_sql(sql).map_err(|e| query_error(sql, e))?;
        if statements.is_empty() {
            return Err(SqlError::Invalid("the SQL holds no statement".into()));
        }
        let count = statements.len();
        let options = SQLOptions::new()
            .with_allow_ddl(true)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.runtime.block_on(async {
            let state = self.ctx.state();
            let mut last = None;
            for (i, statement) in statements.into_iter().enumerate() {
                let text = statement.to_string();
                let fail = |e: DataFusionError| {
                    let sql = if count > 1 {
                        format!("(statement {} of {count}) {text}", i + 1)
                    } else {
                        sql.to_string()
                    };
                    query_error(&sql, e)
                };
                let plan = state.statement_to_plan(statement).await.map_err(fail)?;
                options.verify_plan(&plan).map_err(fail)?;
                let df = self.ctx.execute_logical_plan(plan).await.map_err(fail)?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await.map_err(fail)?;
                last = Some(
                    QueryResult { schema, batches }
                        .with_plain_strings()
                        .map_err(fail)?,
                );
            }
            Ok(last.expect("at least one statement"))
        })
    }

    /// Registers (or replaces) table `name` as the Parquet files of its directory (or
    /// object store prefix), with `schema` or the schema inferred from the files.
    pub(crate) fn register_table(&self, name: &str, schema: Option<SchemaRef>) -> Result<()> {
        let path = PathBuf::from(self.location.table_location(name));
        let fail = |message: String| SqlError::Table {
            table: name.to_string(),
            path: path.clone(),
            message,
        };
        // A URL built from the path, so that characters such as `*` or `[` in directory
        // names are not taken for a glob.
        let url = match self.location.local_root() {
            Some(root) => {
                url_for_dir(&root.join(name)).ok_or_else(|| fail("not an absolute path".into()))?
            }
            None => {
                let url = self
                    .location
                    .table_url(name)
                    .ok_or_else(|| fail("no URL".into()))?;
                url::Url::parse(&url).map_err(|e| fail(e.to_string()))?
            }
        };
        let table_url = ListingTableUrl::try_new(url, None).map_err(|e| fail(e.to_string()))?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(table_url).with_listing_options(options);
        let config = match schema {
            Some(schema) => config.with_schema(schema),
            None => self
                .runtime
                .block_on(config.infer_schema(&self.ctx.state()))
                .map_err(|e| fail(e.to_string()))?,
        };
        let table = ListingTable::try_new(config).map_err(|e| fail(e.to_string()))?;
        let reference = TableReference::bare(name);
        self.ctx
            .deregister_table(reference.clone())
            .map_err(|e| fail(e.to_string()))?;
        self.ctx
            .register_table(reference, Arc::new(table))
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

fn url_for_dir(path: &Path) -> Option<url::Url> {
    url::Url::from_directory_path(path).ok()
}
