//! Shared state of a running server, and how it starts: open the log and the store, rebuild the
//! dedup window from the log, start the pipeline thread.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use atrium_collect::{DedupIndex, DedupKey, Limits};
use atrium_identity::CompiledRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig};
use atrium_store::Store;
use atrium_types::metrics::{Counter, Histogram};
use atrium_types::{Clock, SourceConfig, parse_timestamp_ms};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] atrium_log::LogError),
    #[error(transparent)]
    Store(#[from] atrium_store::StoreError),
    #[error(transparent)]
    Pipeline(#[from] atrium_pipeline::PipelineError),
    #[error(transparent)]
    Warehouse(#[from] atrium_warehouse::WarehouseError),
    #[error("data directory {path} is in use by another atrium process; stop it first")]
    Locked { path: std::path::PathBuf },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
pub struct IngestMetrics {
    pub requests: Counter,
    pub events_accepted: Counter,
    pub events_rejected: Counter,
    pub events_duplicate: Counter,
    pub events_suppressed: Counter,
    pub requests_throttled: Counter,
    pub requests_failed: Counter,
    /// Request arrival to durable acknowledgement.
    pub ack_latency: Histogram,
}

pub struct AppState {
    pub config: Config,
    pub log: Arc<SegmentedLog>,
    pub store: Arc<Store>,
    pub pipeline: Arc<Pipeline>,
    /// The SQL warehouse; its materializer is the log's second consumer.
    pub warehouse: Arc<atrium_warehouse::Warehouse>,
    /// The recommendation service, the log's third consumer.
    pub recs: Arc<atrium_recserve::RecService>,
    /// Free slots for concurrent `POST /v1/sql` queries.
    pub sql_slots: Semaphore,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub sources_by_key: HashMap<String, SourceConfig>,
    pub dedup: Mutex<DedupIndex>,
    /// Salted hashes of erased identifiers; events carrying one are dropped at the door.
    pub suppressed: RwLock<HashSet<String>>,
    pub inflight: Semaphore,
    pub rate_limiter: crate::ingest::RateLimiter,
    pub metrics: IngestMetrics,
    pub started_ms: i64,
    pub stop_pipeline: Arc<AtomicBool>,
    /// Bumped (to the pipeline's definitions offset) whenever applied definitions change.
    pub definitions_changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Serializes definition writes; holds the log offset the next writer waits to be applied.
    pub definition_writes: tokio::sync::Mutex<u64>,
    /// The feature payload at the last definitions offset seen.
    pub payload_cache: Mutex<Option<Arc<crate::features::ServedPayload>>>,
    /// Set when the server stops, so long-lived streams (SSE) end.
    pub closing: tokio::sync::watch::Sender<bool>,
    _data_dir_lock: std::fs::File,
}

impl AppState {
    pub fn rules(&self) -> &CompiledRules {
        self.pipeline.rules()
    }

    pub fn hasher(&self) -> &IdentifierHasher {
        self.pipeline.hasher()
    }
}

/// Takes the exclusive lock on a data directory, so two processes never write one log. The lock
/// is held as long as the returned file lives.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StartError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join("atrium.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked {
            path: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
    }
}

/// The per-installation salt for identifier hashes, created on first start.
fn load_or_create_salt(data_dir: &Path) -> Result<Vec<u8>, StartError> {
    let path = data_dir.join("identity.salt");
    match std::fs::read(&path) {
        Ok(salt) if salt.len() >= 16 => Ok(salt),
        _ => {
            let salt: [u8; 32] = rand::random();
            let text = hex::encode(salt).into_bytes();
            std::fs::write(&path, &text).map_err(|source| StartError::DataDir {
                path: path.clone(),
                source,
            })?;
            Ok(text)
        }
    }
}

pub fn pipeline_config(config: &Config, data_dir: &Path) -> Result<PipelineConfig, StartError> {
    let rules = config
        .identity
        .compile()
        .map_err(|error| crate::config::ConfigError::Invalid(error.to_string()))?;
    Ok(PipelineConfig {
        batch_records: config.pipeline_batch_records,
        rules,
        hasher: IdentifierHasher::new(load_or_create_salt(data_dir)?),
    })
}

pub fn open_log(config: &Config) -> Result<Arc<SegmentedLog>, StartError> {
    let mut log_config = LogConfig::new(config.data_dir.join("log"));
    log_config.segment_bytes = config.log_segment_mib.max(1) * 1024 * 1024;
    Ok(Arc::new(SegmentedLog::open(log_config)?))
}

/// Opens the warehouse under `<data dir>/warehouse`, over the log and the store's identity graph.
/// `pipeline` gives the identity rules and identifier hasher erasure records are matched with.
pub fn open_warehouse(
    config: &Config,
    log: Arc<SegmentedLog>,
    store: Arc<Store>,
    pipeline: &Pipeline,
) -> Result<atrium_warehouse::Warehouse, StartError> {
    Ok(atrium_warehouse::Warehouse::open(
        config.data_dir.join("warehouse"),
        log,
        Some(store),
        atrium_warehouse::ErasureKeys::new(pipeline.rules().clone(), pipeline.hasher().clone()),
        config.warehouse.to_config(),
    )?)
}

pub fn store_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("state.redb")
}

impl AppState {
    pub fn open(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<AppState>, StartError> {
        config.validate()?;
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let log = open_log(&config)?;
        let store = Arc::new(Store::open(store_path(&config))?);
        let pipeline = Arc::new(Pipeline::new(
            log.clone(),
            store.clone(),
            pipeline_config(&config, &config.data_dir)?,
            clock.clone(),
        )?);
        let warehouse = Arc::new(open_warehouse(
            &config,
            log.clone(),
            store.clone(),
            &pipeline,
        )?);
        warehouse.warm_graph();
        let recs = Arc::new(
            atrium_recserve::RecService::open(
                log.clone(),
                Some(store.clone()),
                Some(pipeline.hasher().clone()),
                config.recs.clone(),
                Some(config.data_dir.join("recs")),
            )
            .map_err(|source| StartError::DataDir {
                path: config.data_dir.join("recs"),
                source,
            })?,
        );
        let window_ms = i64::from(config.dedup_window_hours) * 3_600_000;
        let dedup = rebuild_dedup(&*log, &store, window_ms, clock.now_ms())?;
        let suppressed: HashSet<String> = store
            .read(|tables| tables.suppressed_hashes())?
            .into_iter()
            .collect();
        let sources_by_key = config
            .sources
            .iter()
            .map(|source| {
                (
                    source.write_key.clone(),
                    SourceConfig {
                        name: source.name.clone(),
                        channel: source.channel,
                    },
                )
            })
            .collect();
        let (definitions_changed, _) = tokio::sync::watch::channel(pipeline.definitions_offset());
        let definitions_changed = Arc::new(definitions_changed);
        let notify = definitions_changed.clone();
        pipeline.set_definitions_listener(Box::new(move |offset| {
            notify.send_replace(offset);
        }));
        // Definition records appended before this start may not be applied yet.
        let definition_writes = tokio::sync::Mutex::new(log.end_offset());
        let state = Arc::new(AppState {
            limits: config.limits.clone(),
            inflight: Semaphore::new(config.max_inflight_requests),
            rate_limiter: crate::ingest::RateLimiter::new(config.rate_limit_per_key),
            config,
            log,
            store,
            pipeline,
            warehouse,
            recs,
            sql_slots: Semaphore::new(crate::sql::MAX_CONCURRENT_QUERIES),
            started_ms: clock.now_ms(),
            clock,
            sources_by_key,
            dedup: Mutex::new(dedup),
            suppressed: RwLock::new(suppressed),
            metrics: IngestMetrics::default(),
            stop_pipeline: Arc::new(AtomicBool::new(false)),
            definitions_changed,
            definition_writes,
            payload_cache: Mutex::new(None),
            closing: tokio::sync::watch::channel(false).0,
            _data_dir_lock: data_dir_lock,
        });
        Ok(state)
    }
}

/// Rebuilds the messageId window from the log: from the first offset received in the oldest hour
/// still inside the window (the pipeline records one per hour) to the end of the log.
fn rebuild_dedup(
    log: &dyn EventLog,
    store: &Store,
    window_ms: i64,
    now_ms: i64,
) -> Result<DedupIndex, StartError> {
    let mut index = DedupIndex::new(window_ms);
    if window_ms <= 0 {
        return Ok(index);
    }
    let first_hour = (now_ms - window_ms).div_euclid(3_600_000);
    let last_hour = now_ms.div_euclid(3_600_000);
    let start = store.read(|tables| {
        for hour in first_hour..=last_hour {
            if let Some(offset) = tables.meta_u64_if_present(&format!("hour:{hour}"))? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    })?;
    // Events the pipeline has not applied yet have no hour entry: scan from the applied offset
    // at the latest.
    let applied = store.pipeline_offset()?;
    let mut offset = start.unwrap_or(applied).min(applied);
    #[derive(Deserialize)]
    struct DedupFields<'a> {
        #[serde(rename = "messageId", borrow)]
        message_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(rename = "receivedAt", borrow)]
        received_at: Option<std::borrow::Cow<'a, str>>,
        atrium: Option<DedupSource<'a>>,
    }
    #[derive(Deserialize)]
    struct DedupSource<'a> {
        #[serde(borrow)]
        source: std::borrow::Cow<'a, str>,
    }
    let mut scanned = 0u64;
    loop {
        let records = log.read(offset, 4_096)?;
        let Some(last) = records.last() else { break };
        offset = last.offset + 1;
        for record in &records {
            let Ok(fields) = serde_json::from_slice::<DedupFields<'_>>(&record.payload) else {
                continue;
            };
            let (Some(message_id), Some(received_at), Some(meta)) =
                (fields.message_id, fields.received_at, fields.atrium)
            else {
                continue;
            };
            let Some(received_ms) = parse_timestamp_ms(&received_at) else {
                continue;
            };
            if received_ms >= now_ms - window_ms {
                index.insert(DedupKey::new(&meta.source, &message_id), received_ms);
            }
        }
        scanned += records.len() as u64;
    }
    tracing::info!(
        scanned,
        remembered = index.len(),
        "dedup window rebuilt from the event log"
    );
    Ok(index)
}

/// Runs `job` every `period` until the server closes. The first run comes one period after
/// start-up; a run that overruns delays the next instead of queueing extra ones.
pub(crate) async fn run_every<F, Fut>(
    state: &Arc<AppState>,
    period: std::time::Duration,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut closing = state.closing.subscribe();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = closing.changed() => return,
        }
        if *closing.borrow() {
            return;
        }
        job().await;
    }
}
