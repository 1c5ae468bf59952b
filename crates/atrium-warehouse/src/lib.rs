//! The warehouse: columnar tables derived from the event log, queryable with SQL (Apache
//! DataFusion).
//!
//! A second consumer of the log (besides the profile pipeline) materializes `events`, `orders`
//! and `order_lines`. New rows go to a *hot tier* of in-memory Arrow batches, queryable at once;
//! a flush writes them as Parquet files partitioned by day
//! (`<table>/date=YYYY-MM-DD/part-<first offset>-<last offset>.parquet`), and background
//! compaction merges a day's small files into one.
//!
//! # Layout
//!
//! Every file, a flush's or a compaction's, holds its rows *clustered* by the columns selective
//! reads filter on ([`Table::cluster_columns`]: event type and name, then campaign source, then
//! time), in data pages of at most [`PAGE_ROWS`] rows. Every page carries min/max statistics in the page
//! index, so a query for one event name (`Order Completed`, a funnel step) or for campaign
//! touches decodes the few pages holding them instead of the whole day. Row order carries no
//! meaning: readers that need time order sort by `(timestamp, offset)`.
//!
//! # Crash safety
//!
//! `manifest.json` is the commit point: it holds the next log offset to read and the list of
//! Parquet files holding every row below it. A flush syncs the new files and their directories,
//! then replaces the manifest atomically. On open, Parquet files the manifest does not list
//! (written by a flush or compaction that crashed before its commit) are deleted and the
//! materializer resumes at the manifest's offset, so no row is lost or written twice.
//!
//! # Identity at query time
//!
//! Rows keep the `anonymous_id` / `user_id` the event carried. Each query gets a snapshot of the
//! store's identity graph as the `identities` table and the views `events_resolved` /
//! `orders_resolved` add a `profile_id` column by joining to it, so after a merge the anonymous
//! history counts for the merged profile without rewriting any file (retroactive stitching).
//!
//! # GDPR erasure
//!
//! When the materializer reaches an `atrium.erase` control record it removes every row of an
//! event carrying one of the erased identifier hashes (matched with the pipeline's own rules and
//! salted hasher, see [`ErasureKeys`]) from the hot tier and from every committed Parquet file of
//! `events`, `orders` and `order_lines`, before it reads past the record. Affected files are
//! rewritten like a flush commits: the new file is written and synced, the manifest (same offset,
//! new file list) replaced atomically, and only then the old file deleted (files retired by an
//! earlier compaction are deleted at once too). A crash before the manifest commit leaves an
//! unlisted file that `open` deletes, and the materializer, resuming below the erase record,
//! applies it again; a crash after it leaves the old files unlisted, deleted on open.
//! `profiles` and `identities` are snapshots of the store, which the pipeline has already purged.
//! Set [`WarehouseConfig::compression`] to [`ParquetCompression::None`] to make the files
//! byte-greppable (tests do, to prove no erased value remains on disk).

mod erase;
mod graph;
mod json;
mod manifest;
mod memory;
mod query;
mod rows;
#[cfg(test)]
mod rows_oracle;
mod segment_functions;
mod stored;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atrium_log::{EventLog, LogError};
use atrium_store::{Store, StoreError};
use atrium_types::{ControlRecord, LogRecord};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use parking_lot::Mutex;

pub use datafusion;
pub use erase::ErasureKeys;
pub use graph::{GraphSnapshot, IdMap, IdentityIndex};
pub use manifest::{DataFile, LAYOUT_VERSION, MANIFEST_FILE, Manifest};
pub use query::{ExportFormat, QueryOutput, SqlLimits};
pub use rows::{Table, order_status};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt warehouse file {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// The SQL text does not parse.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// The query names a table that does not exist.
    #[error("unknown table: {0}")]
    UnknownTable(String),
    /// The query names a column that does not exist.
    #[error("unknown column: {0}")]
    UnknownColumn(String),
    /// The statement is not a read-only query (INSERT, COPY ... TO, CREATE, SET, ...).
    #[error("only read-only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) are allowed: {0}")]
    WriteRefused(String),
    /// The query parsed but cannot be planned or run (type errors, unsupported features, ...).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The query ran longer than its time limit and was cancelled.
    #[error("query exceeded its time limit of {} ms and was cancelled", .0.as_millis())]
    Timeout(Duration),
    /// The result has more rows than allowed.
    #[error("query returned more than {0} rows; add a LIMIT or aggregate (or raise the row limit)")]
    TooManyRows(usize),
    /// The query needed more memory than the warehouse allows.
    #[error("query exceeded the memory limit: {0}")]
    ResourcesExhausted(String),
    /// Any other DataFusion failure.
    #[error("query engine error: {0}")]
    Engine(String),
}

impl WarehouseError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        WarehouseError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the error is the caller's fault (bad SQL, limits): a 4xx, not a 5xx.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            WarehouseError::Syntax(_)
                | WarehouseError::UnknownTable(_)
                | WarehouseError::UnknownColumn(_)
                | WarehouseError::WriteRefused(_)
                | WarehouseError::InvalidQuery(_)
                | WarehouseError::Timeout(_)
                | WarehouseError::TooManyRows(_)
                | WarehouseError::ResourcesExhausted(_)
        )
    }
}

impl From<DataFusionError> for WarehouseError {
    fn from(error: DataFusionError) -> Self {
        query::classify(error)
    }
}

#[derive(Clone, Debug)]
pub struct WarehouseConfig {
    /// Most log records read per materializer step.
    pub read_batch: usize,
    /// Flush the hot tier to Parquet once it holds this many event rows.
    pub flush_rows: usize,
    /// ... or once its oldest row is this old.
    pub flush_interval: Duration,
    /// Compact a day partition of a table once it has this many files (0: never).
    pub compact_files: usize,
    /// Worker threads of the query runtime (and DataFusion's target partitions).
    pub query_threads: usize,
    /// Memory one query may use for sorts, joins and aggregations.
    pub query_memory_bytes: usize,
    /// Compression of the Parquet files the warehouse writes.
    pub compression: ParquetCompression,
    /// Most rows per Parquet data page (see the crate's "Layout"; default [`PAGE_ROWS`]).
    pub page_rows: usize,
    /// Most bytes of decoded `orders` / `order_lines` files kept in memory for queries (see
    /// the `memory` module; 0 keeps none).
    pub memory_files_bytes: usize,
    /// An identity graph whose snapshot takes longer than this to read is refreshed in the
    /// background instead of on the query path (see the `graph` module).
    pub graph_sync_rebuild: Duration,
}

/// Compression codec of written Parquet files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    /// Zstandard, level 3 (the default), for the files compaction and erasure write and for
    /// exports; a flush, which the materializer waits for, writes Snappy (a fraction of the CPU
    /// time, somewhat larger files) until compaction merges its day.
    #[default]
    Zstd,
    /// Uncompressed (bigger files; values are plain bytes on disk, which tests grep for).
    None,
}

impl ParquetCompression {
    fn codec(self, file: FileKind) -> Result<Compression, ParquetError> {
        Ok(match (self, file) {
            (ParquetCompression::Zstd, FileKind::Flush) => Compression::SNAPPY,
            (ParquetCompression::Zstd, FileKind::Settled) => {
                Compression::ZSTD(ZstdLevel::try_new(3)?)
            }
            (ParquetCompression::None, _) => Compression::UNCOMPRESSED,
        })
    }
}

/// Who writes a Parquet file, which decides its codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    /// A flush of the hot tier: on the materializer's path, so fast to write.
    Flush,
    /// Compaction, erasure rewrites, exports: small on disk.
    Settled,
}

/// Columns whose values rarely repeat within a file: dictionary encoding them only costs
/// hashing (the writer falls back to plain encoding once the dictionary outgrows its page).
const UNIQUE_COLUMNS: [&str; 4] = ["message_id", "properties", "traits", "context"];

/// Integer columns of (almost) unique values that rise within the runs compaction orders rows
/// in: written as deltas (`DELTA_BINARY_PACKED`), a few bits per value instead of eight bytes,
/// so scans that read them (nearly every query reads `offset` and `timestamp`) decompress a
/// fraction of the bytes. A dictionary would only cost hashing.
const DELTA_COLUMNS: [&str; 3] = ["offset", "timestamp", "received_at"];

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            read_batch: 2_000,
            flush_rows: 100_000,
            flush_interval: Duration::from_secs(30),
            compact_files: 8,
            query_threads: 2,
            query_memory_bytes: 1 << 30,
            compression: ParquetCompression::Zstd,
            page_rows: PAGE_ROWS,
            memory_files_bytes: 256 << 20,
            graph_sync_rebuild: Duration::from_millis(50),
        }
    }
}

/// Rows not yet in Parquet files, keyed by table and day.
#[derive(Default)]
struct Hot {
    batches: BTreeMap<(Table, i32), Vec<RecordBatch>>,
    event_rows: usize,
    /// First log offset the hot tier covers (= the manifest's offset).
    first_offset: u64,
    /// One past the last log offset read into the hot tier.
    next_offset: u64,
    since: Option<Instant>,
}

struct State {
    manifest: Manifest,
    hot: Hot,
}

/// Files a compaction replaced; deleted once no query can still be reading them.
struct Retired {
    at: Instant,
    path: PathBuf,
}

const RETIRE_AFTER: Duration = Duration::from_secs(600);

pub struct Warehouse {
    dir: PathBuf,
    log: Arc<dyn EventLog>,
    erasure: ErasureKeys,
    config: WarehouseConfig,
    state: Mutex<State>,
    /// Serializes materializer steps, flushes and compactions (queries never take it).
    writer: Mutex<Vec<Retired>>,
    graph: Arc<graph::Snapshots>,
    caches: query::FileCaches,
    memory: memory::MemoryFiles,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Warehouse {
    /// Opens (or creates) the warehouse in `dir`. `store`, when given, provides the identity
    /// graph and profiles for the `identities` and `profiles` tables. `erasure` must hold the
    /// pipeline's identity rules and identifier hasher, so `atrium.erase` records match the
    /// same rows the pipeline erases.
    pub fn open(
        dir: impl Into<PathBuf>,
        log: Arc<dyn EventLog>,
        store: Option<Arc<Store>>,
        erasure: ErasureKeys,
        config: WarehouseConfig,
    ) -> Result<Warehouse, WarehouseError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
        let mut manifest = Manifest::load(&dir)?;
        if manifest.version != manifest::LAYOUT_VERSION {
            tracing::warn!(
                found = manifest.version,
                current = manifest::LAYOUT_VERSION,
                files = manifest.files.len(),
                "warehouse files have another table layout; rebuilding them from the log"
            );
            manifest = Manifest {
                version: manifest::LAYOUT_VERSION,
                ..Manifest::default()
            };
        }
        let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        for orphan in manifest::parquet_files(&dir)? {
            if !listed.contains(orphan.as_str()) {
                tracing::warn!(file = %orphan, "deleting warehouse file of an uncommitted flush");
                let path = dir.join(&orphan);
                std::fs::remove_file(&path).map_err(|e| WarehouseError::io(&path, e))?;
            }
        }
        for file in &manifest.files {
            let path = dir.join(&file.path);
            if !path.is_file() {
                return Err(WarehouseError::Corrupt {
                    path,
                    reason: "listed in the manifest but missing".into(),
                });
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.query_threads.max(1))
            .thread_name("atrium-sql")
            .enable_time()
            .build()
            .map_err(|e| WarehouseError::io(&dir, e))?;
        let hot = Hot {
            first_offset: manifest.offset,
            next_offset: manifest.offset,
            ..Hot::default()
        };
        let graph = Arc::new(graph::Snapshots::new(store, config.graph_sync_rebuild));
        let memory = memory::MemoryFiles::new(config.memory_files_bytes);
        Ok(Warehouse {
            dir,
            log,
            erasure,
            config,
            state: Mutex::new(State { manifest, hot }),
            writer: Mutex::new(Vec::new()),
            graph,
            caches: query::FileCaches::new(),
            memory,
            runtime: Some(runtime),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One past the last log offset whose rows are committed to Parquet files.
    pub fn committed_offset(&self) -> u64 {
        self.state.lock().manifest.offset
    }

    /// One past the last log offset whose rows are queryable (hot tier included).
    pub fn visible_offset(&self) -> u64 {
        self.state.lock().hot.next_offset
    }

    /// Committed data files (a copy of the manifest).
    pub fn manifest(&self) -> Manifest {
        self.state.lock().manifest.clone()
    }

    /// Rows per table in the hot tier.
    pub fn hot_rows(&self) -> BTreeMap<&'static str, usize> {
        let state = self.state.lock();
        let mut counts = BTreeMap::new();
        for ((table, _), batches) in &state.hot.batches {
            *counts.entry(table.name()).or_default() +=
                batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        counts
    }

    /// Reads one batch of log records into the hot tier, and flushes the hot tier when it is
    /// large or old enough. Returns how many log records it read.
    pub fn step(&self) -> Result<usize, WarehouseError> {
        let mut retired = self.writer.lock();
        let read = self.read_batch(&mut retired)?;
        self.flush_if_due(&mut retired)?;
        Ok(read)
    }

    /// Reads the whole log, flushing (and compacting) whenever the hot tier is due like
    /// [`Warehouse::step`] does, so a long backlog never sits in memory. A short tail stays in
    /// the hot tier; a backlog that needed flushes is flushed to the end and compacted until
    /// every settled day is one file (a bulk load spreads over every day at once, faster than
    /// the per-pass bound of settled merges). Returns the visible offset.
    pub fn catch_up(&self) -> Result<u64, WarehouseError> {
        let mut retired = self.writer.lock();
        let mut flushed = false;
        while self.visible_offset() < self.log.end_offset() {
            if self.read_batch(&mut retired)? == 0 {
                break;
            }
            flushed |= self.flush_if_due(&mut retired)?;
        }
        if flushed {
            self.flush_locked(FlushMode::Commit)?;
            while self.compact_locked(&mut retired)? > 0 {}
        }
        Ok(self.visible_offset())
    }

    /// Flushes and compacts when the hot tier is large or old enough; returns whether it did.
    fn flush_if_due(&self, retired: &mut Vec<Retired>) -> Result<bool, WarehouseError> {
        let flush_due = {
            let state = self.state.lock();
            state.hot.event_rows >= self.config.flush_rows
                || state
                    .hot
                    .since
                    .is_some_and(|since| since.elapsed() >= self.config.flush_interval)
        };
        if flush_due {
            self.flush_locked(FlushMode::Commit)?;
            self.compact_locked(retired)?;
        }
        Ok(flush_due)
    }

    /// Reads up to `read_batch` records; an erase record ends the batch: the records before it
    /// are added to the hot tier, then the erasure is applied, and only then does the visible
    /// offset move past it (a failed erasure is retried from the record).
    fn read_batch(&self, retired: &mut Vec<Retired>) -> Result<usize, WarehouseError> {
        let from = self.visible_offset();
        let records = self.log.read(from, self.config.read_batch)?;
        let Some(last) = records.last() else {
            return Ok(0);
        };
        let mut next_offset = last.offset + 1;
        let mut erasure: Option<(u64, Vec<String>)> = None;
        let mut read = records.len();
        let mut grouped: BTreeMap<(Table, i32), Vec<rows::Row<'_>>> = BTreeMap::new();
        let mut event_rows = 0;
        for (index, record) in records.iter().enumerate() {
            let event = match stored::decode(&record.payload) {
                Ok(stored::Record::Event(event)) => event,
                Ok(stored::Record::Control(LogRecord::Control(ControlRecord::Erase {
                    identifier_hashes,
                    ..
                }))) => {
                    erasure = Some((record.offset, identifier_hashes));
                    next_offset = record.offset;
                    read = index + 1;
                    break;
                }
                // Other control records (definitions) are not rows.
                Ok(stored::Record::Control(_)) => continue,
                Err(error) => {
                    tracing::warn!(offset = record.offset, %error, "warehouse skips undecodable log record");
                    continue;
                }
            };
            let rows = rows::event_rows(record.offset, &event);
            event_rows += 1;
            grouped
                .entry((Table::Events, rows.day))
                .or_default()
                .push(rows.event);
            if let Some(order) = rows.order {
                grouped
                    .entry((Table::Orders, rows.day))
                    .or_default()
                    .push(order);
            }
            if !rows.lines.is_empty() {
                grouped
                    .entry((Table::OrderLines, rows.day))
                    .or_default()
                    .extend(rows.lines);
            }
        }
        let mut built = Vec::with_capacity(grouped.len());
        for (key, rows) in grouped {
            built.push((key, rows::build_batch(key.0, &rows)?));
        }
        let mut state = self.state.lock();
        for (key, batch) in built {
            state.hot.batches.entry(key).or_default().push(batch);
        }
        state.hot.event_rows += event_rows;
        state.hot.next_offset = next_offset;
        if state.hot.since.is_none() && event_rows > 0 {
            state.hot.since = Some(Instant::now());
        }
        drop(state);
        if let Some((offset, hashes)) = erasure {
            self.graph.erased_at(offset);
            self.erase_locked(offset, hashes, retired)?;
            self.state.lock().hot.next_offset = offset + 1;
        }
        Ok(read)
    }

    /// Applies the erase record at `offset`: removes the rows of events carrying one of
    /// `hashes` from the hot tier and from every committed file (see the crate docs).
    fn erase_locked(
        &self,
        offset: u64,
        hashes: Vec<String>,
        retired: &mut Vec<Retired>,
    ) -> Result<(), WarehouseError> {
        let mut eraser = erase::Eraser::new(&self.erasure, hashes);
        let (hot, manifest) = {
            let state = self.state.lock();
            (state.hot.batches.clone(), state.manifest.clone())
        };
        // Events first: the erased offsets they yield take the order rows along.
        let mut new_hot = hot.clone();
        let mut hot_events_removed = 0;
        let mut next_manifest = manifest.clone();
        // Rewritten files of the tables `memory` keeps, to insert once the manifest is live.
        let mut written: Vec<(Table, String, RecordBatch)> = Vec::new();
        let mut rewritten = 0;
        let mut replaced: Vec<PathBuf> = Vec::new();
        let mut dirs = BTreeSet::new();
        for table in Table::ALL {
            for ((hot_table, _), batches) in new_hot.iter_mut() {
                if *hot_table != table {
                    continue;
                }
                for batch in batches.iter_mut() {
                    if let Some(kept) = eraser.filter(table, batch)? {
                        if table == Table::Events {
                            hot_events_removed += batch.num_rows() - kept.num_rows();
                        }
                        *batch = kept;
                    }
                }
            }
            for file in next_manifest
                .files
                .iter_mut()
                .filter(|f| f.table == table.name())
            {
                let path = self.dir.join(&file.path);
                let columns = read_parquet_columns(&path, table, erase::match_columns(table))?;
                let columns = concat_batches(&columns_schema(table, &columns), &columns)?;
                let Some(mask) = eraser.keep_mask(table, &columns)? else {
                    continue;
                };
                let full = concat_batches(&table.schema(), &read_parquet(&path, table)?)?;
                let kept = filter_record_batch(&full, &mask)?;
                tracing::info!(file = %file.path, removed = full.num_rows() - kept.num_rows(), "erasure rewrites warehouse file");
                replaced.push(path);
                file.rows = kept.num_rows() as u64;
                if kept.num_rows() == 0 {
                    file.path.clear();
                    continue;
                }
                let relative = format!(
                    "{}/date={}/part-{:020}-{:020}-e{offset:020}.parquet",
                    table.name(),
                    rows::day_name(file.day),
                    file.first_offset,
                    file.last_offset,
                );
                let new_path = self.dir.join(&relative);
                write_parquet(
                    &new_path,
                    std::slice::from_ref(&kept),
                    &self.config,
                    FileKind::Settled,
                )?;
                dirs.insert(new_path.parent().expect("has parent").to_path_buf());
                rewritten += 1;
                if memory::keeps(table) {
                    written.push((table, relative.clone(), kept));
                }
                file.path = relative;
            }
        }
        next_manifest.files.retain(|f| !f.path.is_empty());
        for dir in &dirs {
            manifest::sync_dir(dir)?;
        }
        if !replaced.is_empty() {
            next_manifest.store(&self.dir)?;
        }
        {
            let mut state = self.state.lock();
            // Under the state lock, so no query can keep a decoded copy of a replaced file.
            self.memory.retain_listed(&next_manifest);
            state.manifest = next_manifest;
            for (key, batches) in new_hot {
                state.hot.batches.insert(key, batches);
            }
            state.hot.event_rows = state.hot.event_rows.saturating_sub(hot_events_removed);
        }
        // Committed: the old files (and files an earlier compaction retired, which may hold the
        // erased rows too) are garbage now. A query still reading one of them fails; the data
        // must go.
        let mut removed_dirs = BTreeSet::new();
        for path in replaced
            .into_iter()
            .chain(retired.drain(..).map(|file| file.path))
        {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed_dirs.insert(path.parent().expect("has parent").to_path_buf());
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(WarehouseError::io(&path, source)),
            }
        }
        for dir in &removed_dirs {
            manifest::sync_dir(dir)?;
        }
        for (table, path, batch) in written {
            self.memory.insert(table, &path, vec![batch]);
        }
        tracing::info!(
            offset,
            events = eraser.erased_offsets.len(),
            rewritten,
            "erasure applied to the warehouse"
        );
        Ok(())
    }

    /// Writes the hot tier to Parquet files and commits them with the new offset.
    pub fn flush(&self) -> Result<(), WarehouseError> {
        let _writer = self.writer.lock();
        self.flush_locked(FlushMode::Commit)
    }

    /// Test hook: writes the hot tier's Parquet files but "crashes" before the manifest commit
    /// (the files stay on disk unlisted, the hot tier is kept). Drop the warehouse afterwards.
    #[doc(hidden)]
    pub fn flush_without_commit(&self) -> Result<(), WarehouseError> {
        let _writer = self.writer.lock();
        self.flush_locked(FlushMode::CrashBeforeCommit)
    }

    fn flush_locked(&self, mode: FlushMode) -> Result<(), WarehouseError> {
        let (batches, first, next) = {
            let state = self.state.lock();
            (
                state.hot.batches.clone(),
                state.hot.first_offset,
                state.hot.next_offset,
            )
        };
        if next == first {
            return Ok(());
        }
        let mut files = Vec::with_capacity(batches.len());
        let mut written = Vec::with_capacity(batches.len());
        let mut dirs = BTreeSet::new();
        for ((table, day), parts) in &batches {
            let batch = cluster(*table, &concat_batches(&table.schema(), parts)?)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let relative = format!(
                "{}/date={}/part-{first:020}-{:020}.parquet",
                table.name(),
                rows::day_name(*day),
                next - 1
            );
            let path = self.dir.join(&relative);
            write_parquet(
                &path,
                std::slice::from_ref(&batch),
                &self.config,
                FileKind::Flush,
            )?;
            dirs.insert(path.parent().expect("has parent").to_path_buf());
            dirs.insert(self.dir.join(table.name()));
            files.push(DataFile {
                table: table.name().into(),
                path: relative.clone(),
                day: *day,
                rows: batch.num_rows() as u64,
                first_offset: first,
                last_offset: next - 1,
            });
            // Only files `memory` keeps are held until the manifest commits (an `events` flush
            // is the bulk of the rows).
            if memory::keeps(*table) {
                written.push((*table, relative, batch));
            }
        }
        for dir in &dirs {
            manifest::sync_dir(dir)?;
        }
        if mode == FlushMode::CrashBeforeCommit {
            return Ok(());
        }
        let mut manifest = self.manifest();
        manifest.offset = next;
        manifest.files.extend(files);
        manifest.store(&self.dir)?;
        let mut state = self.state.lock();
        state.manifest = manifest;
        // Only this (writer-locked) thread adds to the hot tier, so it still holds exactly what
        // was flushed.
        state.hot = Hot {
            first_offset: next,
            next_offset: next,
            ..Hot::default()
        };
        drop(state);
        for (table, path, batch) in written {
            self.memory.insert(table, &path, vec![batch]);
        }
        Ok(())
    }

    /// Merges the files of each day partition that has at least `compact_files` of them, and
    /// of up to [`SETTLED_MERGES`] *settled* partitions with two or more: days at least
    /// [`SETTLED_DAYS`] older than the newest day the table holds, which new events rarely reach
    /// any more, so one file per day is where a backlog ends up (fewer files, less per-file work
    /// for every query). Settledness follows event time in the log, not the clock.
    pub fn compact(&self) -> Result<usize, WarehouseError> {
        let mut retired = self.writer.lock();
        self.compact_locked(&mut retired)
    }

    fn compact_locked(&self, retired: &mut Vec<Retired>) -> Result<usize, WarehouseError> {
        // Delete files retired long enough ago that no query can still be reading them.
        retired.retain(|file| {
            if file.at.elapsed() < RETIRE_AFTER {
                return true;
            }
            if let Err(error) = std::fs::remove_file(&file.path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %file.path.display(), %error, "cannot delete compacted file");
            }
            false
        });
        if self.config.compact_files < 2 {
            return Ok(0);
        }
        let manifest = self.manifest();
        let mut partitions: BTreeMap<(String, i32), Vec<&DataFile>> = BTreeMap::new();
        for file in &manifest.files {
            partitions
                .entry((file.table.clone(), file.day))
                .or_default()
                .push(file);
        }
        let mut newest: BTreeMap<String, i32> = BTreeMap::new();
        for (table, day) in partitions.keys() {
            let entry = newest.entry(table.clone()).or_insert(*day);
            *entry = (*entry).max(*day);
        }
        let mut settled_merges = 0;
        let mut replaced: BTreeSet<String> = BTreeSet::new();
        let mut added = Vec::new();
        let mut written = Vec::new();
        for ((table_name, day), files) in partitions {
            if files.len() < self.config.compact_files {
                let settled = day + SETTLED_DAYS <= newest[&table_name];
                if files.len() < 2 || !settled || settled_merges >= SETTLED_MERGES {
                    continue;
                }
                settled_merges += 1;
            }
            let table = Table::parse(&table_name).ok_or_else(|| WarehouseError::Corrupt {
                path: self.dir.join(MANIFEST_FILE),
                reason: format!("unknown table {table_name}"),
            })?;
            let mut batches = Vec::new();
            for file in &files {
                batches.extend(read_parquet(&self.dir.join(&file.path), table)?);
            }
            let first = files.iter().map(|f| f.first_offset).min().unwrap_or(0);
            let last = files.iter().map(|f| f.last_offset).max().unwrap_or(0);
            let relative = format!(
                "{}/date={}/part-{first:020}-{last:020}.parquet",
                table.name(),
                rows::day_name(day)
            );
            let path = self.dir.join(&relative);
            let merged = cluster(table, &concat_batches(&table.schema(), &batches)?)?;
            write_parquet(
                &path,
                std::slice::from_ref(&merged),
                &self.config,
                FileKind::Settled,
            )?;
            manifest::sync_dir(path.parent().expect("has parent"))?;
            replaced.extend(files.iter().map(|f| f.path.clone()));
            added.push(DataFile {
                table: table_name,
                path: relative.clone(),
                day,
                rows: merged.num_rows() as u64,
                first_offset: first,
                last_offset: last,
            });
            if memory::keeps(table) {
                written.push((table, relative, merged));
            }
        }
        if added.is_empty() {
            return Ok(0);
        }
        let count = added.len();
        let mut state = self.state.lock();
        let mut next = state.manifest.clone();
        next.files.retain(|f| !replaced.contains(&f.path));
        next.files.extend(added);
        next.store(&self.dir)?;
        self.memory.retain_listed(&next);
        state.manifest = next;
        drop(state);
        for (table, path, batch) in written {
            self.memory.insert(table, &path, vec![batch]);
        }
        let now = Instant::now();
        retired.extend(replaced.into_iter().map(|path| Retired {
            at: now,
            path: self.dir.join(path),
        }));
        Ok(count)
    }

    /// Runs the materializer on a background thread until `stop` is set; flushes on the way out.
    pub fn spawn(self: Arc<Self>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("atrium-warehouse".into())
            .spawn(move || {
                atrium_log::priority::run_in_background();
                while !stop.load(Ordering::Acquire) {
                    match self.step() {
                        Ok(0) => {
                            self.log
                                .wait_for(self.visible_offset(), Duration::from_millis(200));
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!(%error, "warehouse step failed, retrying in 1s");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                if let Err(error) = self.flush() {
                    tracing::error!(%error, "final warehouse flush failed");
                }
            })
            .expect("spawning the warehouse thread")
    }

    /// Parquet files the manifest lists now.
    pub fn file_count(&self) -> usize {
        self.state.lock().manifest.files.len()
    }

    /// Decoded bytes of `orders` / `order_lines` files kept in memory for queries (see
    /// [`WarehouseConfig::memory_files_bytes`]).
    pub fn memory_files_bytes(&self) -> usize {
        self.memory.bytes()
    }

    /// Waits until rows up to `offset` (exclusive) are queryable, or the timeout passes.
    pub fn wait_visible(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.visible_offset() < offset {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }
}

impl Drop for Warehouse {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; let it wind down in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlushMode {
    Commit,
    CrashBeforeCommit,
}

fn write_parquet(
    path: &Path,
    batches: &[RecordBatch],
    config: &WarehouseConfig,
    kind: FileKind,
) -> Result<(), WarehouseError> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let parent = path.parent().expect("data files live in a directory");
    std::fs::create_dir_all(parent).map_err(|e| WarehouseError::io(parent, e))?;
    let file = File::create(path).map_err(|e| WarehouseError::io(path, e))?;
    let mut properties = WriterProperties::builder()
        .set_compression(config.compression.codec(kind)?)
        .set_data_page_row_count_limit(config.page_rows.max(1));
    for column in UNIQUE_COLUMNS {
        properties = properties.set_column_dictionary_enabled(column.into(), false);
    }
    for column in DELTA_COLUMNS {
        properties = properties
            .set_column_dictionary_enabled(column.into(), false)
            .set_column_encoding(column.into(), Encoding::DELTA_BINARY_PACKED);
    }
    let properties = properties.build();
    let mut writer = ArrowWriter::try_new(file, first.schema(), Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| WarehouseError::io(path, e))
}

/// A day partition is settled once the table holds a day this many days newer (see
/// [`Warehouse::compact`]).
pub const SETTLED_DAYS: i32 = 2;

/// Most settled partitions one compaction merges (bounds the work a burst of late events causes).
pub const SETTLED_MERGES: usize = 4;

/// Default most rows in one Parquet data page: small enough that the page index can skip most of a
/// day for a selective filter, large enough that page headers and statistics stay a small
/// fraction of the file.
pub const PAGE_ROWS: usize = 4096;

/// The rows of `batch` ordered by [`Table::cluster_columns`] (nulls last).
fn cluster(table: Table, batch: &RecordBatch) -> Result<RecordBatch, WarehouseError> {
    use datafusion::arrow::compute::{
        SortColumn, SortOptions, lexsort_to_indices, take_record_batch,
    };
    let columns = table
        .cluster_columns()
        .iter()
        .map(|name| {
            Ok(SortColumn {
                values: batch.column(batch.schema().index_of(name)?).clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: false,
                }),
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let order = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &order)?)
}

/// Every row of a data file of `table`, in the table's Arrow types: a file written before a
/// column became dictionary-encoded in Arrow (see [`rows::id_type`]) reads like a new one.
fn read_parquet(path: &Path, table: Table) -> Result<Vec<RecordBatch>, WarehouseError> {
    let schema = table.schema();
    let reader = table_reader(path, table)?.build()?;
    Ok(reader
        .map(|batch| batch.and_then(|batch| batch.with_schema(schema.clone())))
        .collect::<Result<Vec<_>, ArrowError>>()?)
}

/// A reader of a data file of `table` that yields the table's Arrow types.
fn table_reader(
    path: &Path,
    table: Table,
) -> Result<ParquetRecordBatchReaderBuilder<File>, WarehouseError> {
    let file = File::open(path).map_err(|e| WarehouseError::io(path, e))?;
    let options = ArrowReaderOptions::new().with_schema(table.schema());
    Ok(ParquetRecordBatchReaderBuilder::try_new_with_options(
        file, options,
    )?)
}

/// The named columns of a data file of `table` (every row, in file order).
fn read_parquet_columns(
    path: &Path,
    table: Table,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, WarehouseError> {
    let schema = table.schema();
    let mut indices = Vec::with_capacity(columns.len());
    for name in columns {
        indices.push(schema.index_of(name)?);
    }
    let builder = table_reader(path, table)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).build()?;
    Ok(reader.collect::<Result<Vec<_>, ArrowError>>()?)
}

/// The schema of projected batches (the file's, or the table's projection when there are none).
fn columns_schema(
    table: Table,
    batches: &[RecordBatch],
) -> datafusion::arrow::datatypes::SchemaRef {
    match batches.first() {
        Some(batch) => batch.schema(),
        None => {
            let schema = table.schema();
            let indices: Vec<usize> = erase::match_columns(table)
                .iter()
                .filter_map(|name| schema.index_of(name).ok())
                .collect();
            Arc::new(schema.project(&indices).expect("projection of own columns"))
        }
    }
}
