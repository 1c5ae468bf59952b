//! Read-only SQL over the warehouse: one DataFusion session per query over a snapshot of the
//! committed files, the hot tier and the store's identity graph; limits; error classification;
//! result encodings; export.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::memory::MemorySchemaProvider;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::SchemaError;
use datafusion::config::Dialect;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileMetadata, CachedFileMetadataEntry,
    DEFAULT_FILE_STATISTICS_MEMORY_LIMIT, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
    FileStatisticsCache, TableScopedPath,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures_util::StreamExt;

use crate::graph::GraphSnapshot;
use crate::{Table, Warehouse, WarehouseError};

/// Limits of one query.
#[derive(Clone, Copy, Debug)]
pub struct SqlLimits {
    /// Wall-clock time after which the query is cancelled.
    pub timeout: Duration,
    /// Most result rows; a query producing more fails with [`WarehouseError::TooManyRows`].
    pub max_rows: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
        }
    }
}

/// A query result.
#[derive(Clone, Debug)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub row_count: usize,
}

/// Export formats of [`Warehouse::export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The day-partitioned Parquet files as they are, plus `profiles.parquet` and
    /// `identities.parquet`.
    Parquet,
    /// One `<table>.jsonl` per table, one JSON object per row.
    Jsonl,
}

const INTERNAL_SCHEMA: &str = "atrium_internal";

/// Parquet footers and per-file statistics, shared by every query's session so a query does
/// not re-read what the previous one decoded. Files are written once under unique names, and
/// DataFusion checks each entry against the file's size and modification time.
pub(crate) struct FileCaches {
    metadata: Arc<FileMetadataCache>,
    statistics: Arc<FileStatisticsCache>,
}

impl FileCaches {
    pub(crate) fn new() -> FileCaches {
        FileCaches {
            metadata: Arc::new(DefaultCache::<
                datafusion::object_store::path::Path,
                CachedFileMetadataEntry,
            >::new(DEFAULT_METADATA_CACHE_LIMIT)),
            statistics: Arc::new(DefaultCache::<TableScopedPath, CachedFileMetadata>::new(
                DEFAULT_FILE_STATISTICS_MEMORY_LIMIT,
            )),
        }
    }

    fn config(&self) -> CacheManagerConfig {
        CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.metadata.clone()))
            .with_file_statistics_cache(Some(self.statistics.clone()))
    }
}

/// The views that attribute rows to the profile their identifiers resolve to *now*.
const RESOLVED_VIEWS: [(&str, &str); 2] =
    [("events_resolved", "events"), ("orders_resolved", "orders")];

impl Warehouse {
    /// The identity graph and profiles SQL sees now (see [`crate::graph`] for how fresh).
    pub fn graph_snapshot(&self) -> Result<Arc<GraphSnapshot>, WarehouseError> {
        self.graph.current()
    }

    /// Reads the first graph snapshot in the background, so the first query does not wait for
    /// it (a server calls this at start).
    pub fn warm_graph(&self) {
        self.graph.warm();
    }

    /// A DataFusion session over a consistent snapshot of every table.
    pub fn session(&self) -> Result<SessionContext, WarehouseError> {
        let config = SessionConfig::new()
            .with_target_partitions(self.config.query_threads.max(1))
            .with_information_schema(true);
        // The warehouse writes no bloom filters: looking for them in every row group is wasted.
        let mut config = config;
        config.options_mut().execution.parquet.bloom_filter_on_read = false;
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(self.caches.config())
            .with_memory_limit(self.config.query_memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for function in crate::json::functions() {
            ctx.register_udf(function);
        }
        for function in crate::segment_functions::functions() {
            ctx.register_udf(function);
        }
        // Internal tables and views are created with full rights; user queries never get them.
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| WarehouseError::Engine("default catalog missing".into()))?;
        catalog.register_schema(INTERNAL_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;

        let (manifest, hot) = {
            let state = self.state.lock();
            (state.manifest.clone(), state.hot.batches.clone())
        };
        for table in Table::ALL {
            let schema = table.schema();
            let files: Vec<&str> = manifest
                .files
                .iter()
                .filter(|f| f.table == table.name())
                .map(|f| f.path.as_str())
                .collect();
            let (kept, files) = self.kept_files(table, files)?;
            let name = table.name();
            // The user-facing table is one view over its parts: Parquet files, decoded copies
            // of files (small tables, see `memory`) and the hot tier.
            let mut parts: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
            if !files.is_empty() {
                let urls = files
                    .iter()
                    .map(|path| ListingTableUrl::parse(self.dir.join(path).to_string_lossy()))
                    .collect::<Result<Vec<_>, _>>()?;
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet");
                let config = ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(schema.clone());
                parts.push(("files".into(), Arc::new(ListingTable::try_new(config)?)));
            }
            if !kept.is_empty() {
                let partitions = self.config.query_threads.max(1);
                let mut split = vec![Vec::new(); partitions];
                let batches = kept.iter().flat_map(|file| file.iter());
                for (index, batch) in batches.enumerate() {
                    split[index % partitions].push(batch.clone());
                }
                parts.push((
                    "memory".into(),
                    Arc::new(MemTable::try_new(schema.clone(), split)?),
                ));
            }
            let hot_batches: Vec<RecordBatch> = hot
                .iter()
                .filter(|((t, _), _)| *t == table)
                .flat_map(|(_, batches)| batches.iter().cloned())
                .collect();
            parts.push((
                "hot".into(),
                Arc::new(MemTable::try_new(schema, vec![hot_batches])?),
            ));
            // Its plan is built directly (planning it from SQL took a millisecond per view and
            // query); the text is what `information_schema` shows.
            let mut plan: Option<LogicalPlanBuilder> = None;
            let mut selects = Vec::with_capacity(parts.len());
            for (part, provider) in parts {
                let part_name = format!("{INTERNAL_SCHEMA}.{name}_{part}");
                let scan = LogicalPlanBuilder::scan(
                    part_name.clone(),
                    provider_as_source(provider.clone()),
                    None,
                )?;
                plan = Some(match plan {
                    None => scan,
                    Some(plan) => plan.union(scan.build()?)?,
                });
                selects.push(format!("SELECT * FROM {part_name}"));
                ctx.register_table(part_name, provider)?;
            }
            let union = plan.expect("the hot tier is always a part").build()?;
            let definition = selects.join(" UNION ALL ");
            ctx.register_table(name, Arc::new(ViewTable::new(union, Some(definition))))?;
        }
        let graph = self.graph_snapshot()?;
        ctx.register_batch("identities", graph.identities.clone())?;
        ctx.register_batch("profiles", graph.profiles.clone())?;

        Ok(ctx)
    }

    /// The decoded copies of `files` a query can use instead of reading them (decoding and
    /// keeping those missing while the memory budget allows), and the files to read from disk.
    fn kept_files<'f>(
        &self,
        table: Table,
        files: Vec<&'f str>,
    ) -> Result<(Vec<crate::memory::FileBatches>, Vec<&'f str>), WarehouseError> {
        if !crate::memory::keeps(table) {
            return Ok((Vec::new(), files));
        }
        let (mut kept, missing) = self.memory.split(&files);
        let mut on_disk = Vec::new();
        for path in missing {
            if !self.memory.has_room() {
                on_disk.push(path);
                continue;
            }
            let batches: Vec<RecordBatch> = crate::read_parquet(&self.dir.join(path), table)?;
            // Kept only while the manifest still lists the file: an erasure rewrite or a
            // compaction may have replaced it since this query's snapshot.
            let state = self.state.lock();
            if state.manifest.files.iter().any(|file| file.path == path) {
                self.memory.insert(table, path, batches.clone());
            }
            drop(state);
            kept.push(batches.into());
        }
        Ok((kept, on_disk))
    }

    /// Runs `work` on the warehouse's runtime and waits for it (never blocks an async worker of
    /// another runtime: the caller's thread only waits on a channel).
    fn run_blocking<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, WarehouseError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let _ = sender.send(work.await);
        });
        receiver
            .recv()
            .map_err(|_| WarehouseError::Engine("the query task ended without a result".into()))
    }

    /// Runs one read-only query within `limits`. Blocking: call it from a blocking thread
    /// (the query itself runs on the warehouse's own runtime).
    pub fn sql(&self, query: &str, limits: &SqlLimits) -> Result<QueryOutput, WarehouseError> {
        let ctx = self.session()?;
        let query = query.to_owned();
        let max_rows = limits.max_rows;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let task = self.runtime().spawn(async move {
            let result = run_query(&ctx, &query, max_rows).await;
            let _ = sender.send(result);
        });
        match receiver.recv_timeout(limits.timeout) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(WarehouseError::Timeout(limits.timeout))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(WarehouseError::Engine(
                "the query task ended without a result".into(),
            )),
        }
    }

    /// Writes every table to `out` (created if missing). Flushes the hot tier first.
    /// Returns rows written per table.
    pub fn export(
        &self,
        out: &Path,
        format: ExportFormat,
    ) -> Result<BTreeMap<String, u64>, WarehouseError> {
        self.flush()?;
        std::fs::create_dir_all(out).map_err(|e| WarehouseError::io(out, e))?;
        let mut counts = BTreeMap::new();
        match format {
            ExportFormat::Parquet => {
                for file in self.manifest().files {
                    let target = out.join(&file.path);
                    let parent = target.parent().expect("has parent");
                    std::fs::create_dir_all(parent).map_err(|e| WarehouseError::io(parent, e))?;
                    std::fs::copy(self.dir.join(&file.path), &target)
                        .map_err(|e| WarehouseError::io(&target, e))?;
                    *counts.entry(file.table.clone()).or_default() += file.rows;
                }
                for table in Table::ALL {
                    counts.entry(table.name().to_owned()).or_default();
                }
                let graph = self.graph_snapshot()?;
                for (name, batch) in [
                    ("identities", &graph.identities),
                    ("profiles", &graph.profiles),
                ] {
                    counts.insert(name.into(), batch.num_rows() as u64);
                    crate::write_parquet(
                        &out.join(format!("{name}.parquet")),
                        std::slice::from_ref(batch),
                        &self.config,
                        crate::FileKind::Settled,
                    )?;
                }
            }
            ExportFormat::Jsonl => {
                let names = Table::ALL
                    .iter()
                    .map(|t| t.name())
                    .chain(["profiles", "identities"]);
                for name in names {
                    let path = out.join(format!("{name}.jsonl"));
                    let file = File::create(&path).map_err(|e| WarehouseError::io(&path, e))?;
                    let mut writer =
                        datafusion::arrow::json::LineDelimitedWriter::new(BufWriter::new(file));
                    let ctx = self.session()?;
                    let query = format!("SELECT * FROM {name}");
                    let (sender, receiver) = std::sync::mpsc::sync_channel::<RecordBatch>(4);
                    let task = self.runtime().spawn(async move {
                        add_views(&ctx).await?;
                        let frame = ctx.sql(&query).await?;
                        let mut stream = frame.execute_stream().await?;
                        while let Some(batch) = stream.next().await {
                            if sender.send(batch?).is_err() {
                                break;
                            }
                        }
                        Ok::<(), DataFusionError>(())
                    });
                    let mut rows = 0u64;
                    for batch in receiver {
                        rows += batch.num_rows() as u64;
                        writer.write(&batch)?;
                    }
                    self.run_blocking(task)?
                        .map_err(|e| WarehouseError::Engine(e.to_string()))??;
                    writer.finish()?;
                    writer
                        .into_inner()
                        .flush()
                        .map_err(|e| WarehouseError::io(&path, e))?;
                    counts.insert(name.to_owned(), rows);
                }
            }
        }
        Ok(counts)
    }

    /// Runs `work` on the warehouse's runtime over a snapshot session holding the user-facing
    /// tables and views (the ones [`Warehouse::sql`] sees), and waits for it; after `timeout`
    /// the task is cancelled and [`WarehouseError::Timeout`] returned. For engines above the
    /// warehouse (analytics) that plan their own read-only queries and stream the batches.
    /// Blocking: call it from a blocking thread.
    pub fn with_session<T, F, Fut>(&self, timeout: Duration, work: F) -> Result<T, WarehouseError>
    where
        T: Send + 'static,
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, WarehouseError>> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let ctx = self.session()?;
        let session_ms = started.elapsed().as_secs_f64() * 1e3;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let task = self.runtime().spawn(async move {
            let views_started = std::time::Instant::now();
            let result = match add_views(&ctx).await {
                Ok(()) => {
                    let views_ms = views_started.elapsed().as_secs_f64() * 1e3;
                    let work_started = std::time::Instant::now();
                    let result = work(ctx).await;
                    tracing::debug!(
                        session_ms,
                        views_ms,
                        work_ms = work_started.elapsed().as_secs_f64() * 1e3,
                        "warehouse session work done"
                    );
                    result
                }
                Err(error) => Err(WarehouseError::from(error)),
            };
            let _ = sender.send(result);
        });
        match receiver.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(WarehouseError::Timeout(timeout))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(WarehouseError::Engine(
                "the query task ended without a result".into(),
            )),
        }
    }
}

/// The user-facing views: each materialized table as its files plus its hot tier, and the
/// identity-resolved views.
async fn add_views(ctx: &SessionContext) -> Result<(), DataFusionError> {
    for (view, base) in RESOLVED_VIEWS {
        ctx.sql(&format!(
            "CREATE VIEW {view} AS SELECT b.*, COALESCE(u.profile_id, a.profile_id) AS profile_id \
             FROM {base} b \
             LEFT JOIN identities u ON u.kind = 'user_id' AND u.value = b.user_id \
             LEFT JOIN identities a ON a.kind = 'anonymous_id' AND a.value = b.anonymous_id"
        ))
        .await?;
    }
    Ok(())
}

async fn run_query(
    ctx: &SessionContext,
    query: &str,
    max_rows: usize,
) -> Result<QueryOutput, WarehouseError> {
    check_read_only(ctx, query)?;
    add_views(ctx).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(query, options).await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    let mut row_count = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        row_count += batch.num_rows();
        if row_count > max_rows {
            return Err(WarehouseError::TooManyRows(max_rows));
        }
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(QueryOutput {
        schema,
        batches,
        row_count,
    })
}

/// Refuses anything but queries before planning, so the error names the statement.
fn check_read_only(ctx: &SessionContext, query: &str) -> Result<(), WarehouseError> {
    let statement = ctx.state().sql_to_statement(query, &Dialect::Generic)?;
    if is_read_only(&statement) {
        Ok(())
    } else {
        let text = statement.to_string();
        let head: String = text
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Err(WarehouseError::WriteRefused(format!("{head} ...")))
    }
}

fn is_read_only(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_)
            | SqlStatement::ShowTables { .. }
            | SqlStatement::ShowColumns { .. }
            | SqlStatement::ExplainTable { .. } => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        DfStatement::Explain(explain) => is_read_only(&explain.statement),
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) | DfStatement::Reset(_) => {
            false
        }
    }
}

/// Maps DataFusion failures onto the kinds a caller reacts to differently.
pub(crate) fn classify(error: DataFusionError) -> WarehouseError {
    let root = error.find_root();
    match root {
        DataFusionError::SQL(parser, _) => WarehouseError::Syntax(parser.to_string()),
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => WarehouseError::UnknownColumn(schema.to_string()),
            other => WarehouseError::InvalidQuery(other.to_string()),
        },
        DataFusionError::Plan(message) => {
            if message.starts_with("DDL not supported")
                || message.starts_with("DML not supported")
                || message.starts_with("Statement not supported")
            {
                WarehouseError::WriteRefused(message.clone())
            } else if message.starts_with("table '") && message.ends_with("not found") {
                WarehouseError::UnknownTable(message.clone())
            } else {
                WarehouseError::InvalidQuery(message.clone())
            }
        }
        DataFusionError::NotImplemented(message) | DataFusionError::Execution(message) => {
            WarehouseError::InvalidQuery(message.clone())
        }
        DataFusionError::ArrowError(arrow, _) => WarehouseError::InvalidQuery(arrow.to_string()),
        DataFusionError::ResourcesExhausted(message) => {
            WarehouseError::ResourcesExhausted(message.clone())
        }
        other => WarehouseError::Engine(other.to_string()),
    }
}

impl QueryOutput {
    /// Column names and Arrow type names.
    pub fn columns(&self) -> Vec<(String, String)> {
        self.schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect()
    }

    /// The rows as a JSON array of objects (nulls explicit).
    pub fn to_json_rows(&self) -> Result<Vec<u8>, WarehouseError> {
        use datafusion::arrow::json::{WriterBuilder, writer::JsonArray};
        let mut buffer = Vec::new();
        {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(&mut buffer);
            for batch in &self.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        if buffer.is_empty() {
            buffer.extend_from_slice(b"[]");
        }
        Ok(buffer)
    }

    /// CSV with a header line.
    pub fn to_csv(&self) -> Result<Vec<u8>, WarehouseError> {
        let mut buffer = Vec::new();
        if self.batches.is_empty() {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            buffer.extend_from_slice(names.join(",").as_bytes());
            buffer.push(b'\n');
            return Ok(buffer);
        }
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buffer);
        for batch in &self.batches {
            writer.write(batch)?;
        }
        drop(writer);
        Ok(buffer)
    }

    /// An Arrow IPC stream.
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>, WarehouseError> {
        let mut buffer = Vec::new();
        let mut writer =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buffer, &self.schema)?;
        for batch in &self.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        drop(writer);
        Ok(buffer)
    }

    /// A boxed text table for terminals.
    pub fn to_table(&self) -> Result<String, WarehouseError> {
        if self.batches.is_empty() {
            let empty = RecordBatch::new_empty(self.schema.clone());
            return Ok(
                datafusion::arrow::util::pretty::pretty_format_batches(&[empty])?.to_string(),
            );
        }
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&self.batches)?.to_string())
    }
}
