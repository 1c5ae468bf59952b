//! The pipeline: the one ordered consumer of the event log. For every record, in log order, it
//! resolves identity, updates the profile, and records the event on the profile's timeline — all
//! in one state-store transaction per batch, together with the next log offset. A crash therefore
//! never double-applies or loses an event, and [`Pipeline::rebuild`] (replay from offset 0) yields
//! the same state, byte for byte.
//!
//! GDPR erasure is a control record in the log: when the pipeline reaches it, the profile's
//! derived state and identities are purged, its identifier hashes go on the suppression list, the
//! log segments are rewritten without its events, and the state file is vacuumed.

mod erasure;
mod readahead;
pub mod segments;
mod slim;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use atrium_identity::{CompiledRules, EventRef, ProfileId};
use atrium_log::{EventLog, LogError, Record};
use atrium_profiles::{EventFacts, Profile};
use atrium_store::{Durability, Store, StoreError, StoredDefinition, WriteTables};
use atrium_types::metrics::{Counter, Histogram};
use atrium_types::{Clock, ControlRecord, LogRecord, parse_timestamp_ms};
use parking_lot::{Condvar, Mutex};
use serde_json::Value;

pub use erasure::{IdentifierHasher, event_identifier_hashes};
pub use segments::{DERIVED_MESSAGE_PREFIX, Preview, ProfileSegmentState, SegmentCatalog, preview};

use segments::SegmentEngine;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("identity resolution failed at offset {offset}: {message}")]
    Identity { offset: u64, message: String },
}

/// Counters the server exposes on `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    pub events_applied: Counter,
    pub control_records: Counter,
    pub events_skipped: Counter,
    pub events_suppressed: Counter,
    pub profiles_created: Counter,
    pub profiles_merged: Counter,
    /// `Segment Entered` / `Segment Exited` events appended to the log.
    pub segment_events_emitted: Counter,
    pub ticks_appended: Counter,
    pub identifiers_demoted: Counter,
    pub batches: Counter,
    /// Processing time minus `receivedAt`: how long an acknowledged event waits to reach its profile.
    pub freshness: Histogram,
}

/// Outbox entries appended per round.
const OUTBOX_BATCH: usize = 1_000;
/// How often the segment services look for due timers when nothing wakes them.
const SERVICES_POLL: Duration = Duration::from_millis(25);

/// What the segment services thread remembers between rounds.
#[derive(Debug, Default)]
pub struct SegmentServices {
    /// Outbox entries appended to the log but not yet read back by the pipeline.
    in_flight: std::collections::HashSet<String>,
    /// Offset of the last tick appended, until the pipeline applies it.
    pending_tick: Option<u64>,
}

/// Longest time between two durable state commits while the pipeline is busy.
const DURABLE_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long the log stays quiet before the pipeline makes its last commits durable.
const IDLE_SYNC_AFTER: Duration = Duration::from_millis(50);

pub struct PipelineConfig {
    /// Most records applied in one state-store transaction.
    pub batch_records: usize,
    pub rules: CompiledRules,
    pub hasher: IdentifierHasher,
}

pub struct Pipeline {
    log: Arc<dyn EventLog>,
    store: Arc<Store>,
    config: PipelineConfig,
    clock: Arc<dyn Clock>,
    pub metrics: PipelineMetrics,
    applied: AtomicU64,
    last_durable: Mutex<std::time::Instant>,
    /// Some commit since the last durable one was crash-consistent only.
    undurable: AtomicBool,
    /// The last hour whose `hour:` index entry is known to exist (saves a lookup per event).
    last_hour_indexed: AtomicI64,
    applied_lock: Mutex<()>,
    applied_changed: Condvar,
    /// One past the offset of the last applied definition record (0: none).
    definitions_offset: AtomicU64,
    /// Told the new [`Pipeline::definitions_offset`] after a commit that changed definitions.
    definitions_listener: Mutex<Option<DefinitionsListener>>,
    /// Segment and computed-trait evaluation (locked by the pipeline thread for each batch).
    segments: Mutex<SegmentEngine>,
    /// The earliest durable segment timer (`i64::MAX`: none), published after each commit.
    next_timer_ms: AtomicI64,
    /// Wakes the segment services thread after a commit.
    services_wake: (Mutex<bool>, Condvar),
    /// What events keep when decoded for the current definitions (the read-ahead decodes with
    /// it; the apply side decodes again if it changed meanwhile).
    decode_filter: Mutex<Arc<slim::DecodeFilter>>,
    /// Bumped when what the read-ahead has read may be stale (the log was rewritten, a batch
    /// failed): it starts again from the applied offset.
    read_epoch: AtomicU64,
}

/// Called (on the pipeline thread) after definitions changed, with the new definitions offset.
pub type DefinitionsListener = Box<dyn Fn(u64) + Send + Sync>;

impl Pipeline {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<Store>,
        config: PipelineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Pipeline, PipelineError> {
        let applied = store.pipeline_offset()?;
        let definitions_offset =
            store.read(|tables| tables.meta_u64(atrium_store::DEFINITIONS_OFFSET_KEY))?;
        let catalog = store.read(SegmentCatalog::load)?;
        let next_timer_ms = store
            .read(|tables| tables.first_segment_timer())?
            .unwrap_or(i64::MAX);
        Ok(Pipeline {
            log,
            store,
            config,
            clock,
            metrics: PipelineMetrics::default(),
            applied: AtomicU64::new(applied),
            last_hour_indexed: AtomicI64::new(i64::MIN),
            last_durable: Mutex::new(std::time::Instant::now()),
            undurable: AtomicBool::new(false),
            applied_lock: Mutex::new(()),
            applied_changed: Condvar::new(),
            definitions_offset: AtomicU64::new(definitions_offset),
            definitions_listener: Mutex::new(None),
            decode_filter: Mutex::new(catalog.filter().clone()),
            read_epoch: AtomicU64::new(0),
            segments: Mutex::new(SegmentEngine::new(catalog)),
            next_timer_ms: AtomicI64::new(next_timer_ms),
            services_wake: (Mutex::new(false), Condvar::new()),
        })
    }

    /// The earliest pending segment timer, if any.
    pub fn next_segment_timer(&self) -> Option<i64> {
        let next = self.next_timer_ms.load(Ordering::Acquire);
        (next != i64::MAX).then_some(next)
    }

    /// One past the log offset of the last applied definition record (0: none yet). Changes
    /// exactly when the served feature payload changes.
    pub fn definitions_offset(&self) -> u64 {
        self.definitions_offset.load(Ordering::Acquire)
    }

    /// Registers the callback told about definition changes (replaces any earlier one).
    pub fn set_definitions_listener(&self, listener: DefinitionsListener) {
        *self.definitions_listener.lock() = Some(listener);
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn hasher(&self) -> &IdentifierHasher {
        &self.config.hasher
    }

    pub fn rules(&self) -> &CompiledRules {
        &self.config.rules
    }

    /// One past the last log offset whose effects are committed to the store.
    pub fn applied_offset(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Blocks until the pipeline has applied every offset below `offset`, or the timeout passes.
    pub fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut guard = self.applied_lock.lock();
        while self.applied_offset() < offset {
            if self
                .applied_changed
                .wait_until(&mut guard, deadline)
                .timed_out()
            {
                return self.applied_offset() >= offset;
            }
        }
        true
    }

    /// Applies everything currently in the log and makes it durable. Returns the new applied
    /// offset.
    pub fn run_until_caught_up(&self) -> Result<u64, PipelineError> {
        loop {
            let end = self.log.end_offset();
            if self.applied_offset() >= end {
                self.sync()?;
                return Ok(self.applied_offset());
            }
            self.step()?;
        }
    }

    /// Makes the crash-consistent commits since the last durable one durable (no-op if none).
    pub fn sync(&self) -> Result<(), PipelineError> {
        if self.undurable.swap(false, Ordering::AcqRel) {
            if let Err(error) = self.store.sync() {
                self.undurable.store(true, Ordering::Release);
                return Err(error.into());
            }
            *self.last_durable.lock() = std::time::Instant::now();
        }
        Ok(())
    }

    /// Reads, decodes and applies one batch on this thread. Returns how many records it read.
    pub fn step(&self) -> Result<usize, PipelineError> {
        let records = self
            .log
            .read(self.applied_offset(), self.config.batch_records)?;
        self.apply_records(&records, None)?;
        Ok(records.len())
    }

    /// Applies records read from the applied offset on, with their decoding if the read-ahead
    /// made one, and publishes the new applied offset.
    fn apply_records(
        &self,
        records: &[Record],
        decoded: Option<readahead::Decoded>,
    ) -> Result<(), PipelineError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let next_offset = last.offset + 1;
        let (erasures, definitions_offset) = self.apply_batch(records, decoded, next_offset)?;
        self.publish_applied(next_offset);
        if let Some(offset) = definitions_offset {
            self.definitions_offset.store(offset, Ordering::Release);
            if let Some(listener) = self.definitions_listener.lock().as_ref() {
                listener(offset);
            }
        }
        if !erasures.is_empty() {
            erasure::complete(self, erasures)?;
            // What was read ahead may hold records the rewrite dropped.
            self.read_epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    fn publish_applied(&self, offset: u64) {
        let _guard = self.applied_lock.lock();
        self.applied.store(offset, Ordering::Release);
        self.applied_changed.notify_all();
    }

    fn apply_batch(
        &self,
        records: &[Record],
        decoded: Option<readahead::Decoded>,
        next_offset: u64,
    ) -> Result<(Vec<erasure::Pending>, Option<u64>), PipelineError> {
        let now_ms = self.clock.now_ms();
        let mut erasures = Vec::new();
        let mut definitions_offset = None;
        // Fsync at most once a second while busy, and once the log has gone quiet
        // ([`Pipeline::spawn`], [`Pipeline::run_until_caught_up`]): the log is the durable
        // source, so a crash only means applying the records since the last durable commit again.
        let durability = if self.last_durable.lock().elapsed() >= DURABLE_COMMIT_INTERVAL {
            Durability::Durable
        } else {
            Durability::CrashConsistent
        };
        let mut engine = self.segments.lock();
        let decoded = match decoded {
            Some(decoded) if Arc::ptr_eq(&decoded.filter, engine.catalog.filter()) => {
                decoded.records
            }
            _ => readahead::decode_all(records, engine.catalog.keep()),
        };
        let mut decoded_records = decoded.into_iter();
        // A definition in this batch changes which events keep their properties: the records
        // after it are decoded again with the new catalog.
        let mut definitions_changed = false;
        let mut next_timer = None;
        let written = self.store.write_with(durability, |tables| -> Result<(), PipelineError> {
            let suppression_active = tables.suppression_count()? > 0;
            for record in records {
                let decoded = decoded_records.next().expect("one decoding per record");
                engine.begin_record(record.offset);
                let decoded = if definitions_changed {
                    slim::decode(&record.payload, engine.catalog.keep())
                } else {
                    decoded
                };
                let decoded = match decoded {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        tracing::warn!(offset = record.offset, %error, "skipping undecodable log record");
                        self.metrics.events_skipped.add(1);
                        continue;
                    }
                };
                match decoded {
                    LogRecord::Event(event) => {
                        self.apply_event(tables, &mut engine, record.offset, &event, now_ms, suppression_active)?;
                    }
                    LogRecord::Control(control) => {
                        self.metrics.control_records.add(1);
                        if matches!(
                            control,
                            ControlRecord::DefinitionPut { .. } | ControlRecord::DefinitionDelete { .. }
                        ) {
                            definitions_offset = Some(record.offset + 1);
                            definitions_changed = true;
                        }
                        if let Some(pending) = self.apply_control(tables, &mut engine, record.offset, control)? {
                            erasures.push(pending);
                        }
                    }
                }
            }
            if let Some(offset) = definitions_offset {
                tables.set_meta_u64(atrium_store::DEFINITIONS_OFFSET_KEY, offset)?;
            }
            engine.flush(tables)?;
            next_timer = tables.first_segment_timer()?;
            tables.set_meta_u64(atrium_store::PIPELINE_OFFSET_KEY, next_offset)?;
            Ok(())
        });
        if let Err(error) = written {
            // The hour index entries of this batch were rolled back with it, and so were the
            // segment states and definitions the engine cached.
            self.last_hour_indexed.store(i64::MIN, Ordering::Relaxed);
            engine.reset(self.store.read(SegmentCatalog::load)?);
            *self.decode_filter.lock() = engine.catalog.filter().clone();
            return Err(error);
        }
        if definitions_changed {
            *self.decode_filter.lock() = engine.catalog.filter().clone();
        }
        drop(engine);
        self.next_timer_ms
            .store(next_timer.unwrap_or(i64::MAX), Ordering::Release);
        self.wake_services();
        match durability {
            Durability::Durable => {
                self.undurable.store(false, Ordering::Release);
                *self.last_durable.lock() = std::time::Instant::now();
            }
            Durability::CrashConsistent => self.undurable.store(true, Ordering::Release),
        }
        self.metrics.batches.add(1);
        Ok((erasures, definitions_offset))
    }

    fn apply_event(
        &self,
        tables: &mut WriteTables<'_>,
        engine: &mut SegmentEngine,
        offset: u64,
        event: &Value,
        now_ms: i64,
        suppression_active: bool,
    ) -> Result<(), PipelineError> {
        let received_ms = event
            .get("receivedAt")
            .and_then(Value::as_str)
            .and_then(parse_timestamp_ms);
        let time_ms = event
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp_ms)
            .or(received_ms)
            .unwrap_or(0);
        if let Some(received_ms) = received_ms {
            self.metrics
                .freshness
                .observe_ms((now_ms - received_ms) as f64);
            // The first offset received in each hour: where the dedup window starts after a restart.
            let hour = received_ms.div_euclid(3_600_000);
            if self.last_hour_indexed.load(Ordering::Relaxed) != hour {
                let hour_key = format!("hour:{hour}");
                if !tables.has_meta(&hour_key)? {
                    tables.set_meta_u64(&hour_key, offset)?;
                }
                self.last_hour_indexed.store(hour, Ordering::Relaxed);
            }
        }
        if suppression_active {
            for hash in event_identifier_hashes(event, &self.config.rules, &self.config.hasher) {
                if tables.is_suppressed(&hash)? {
                    self.metrics.events_suppressed.add(1);
                    return Ok(());
                }
            }
        }
        let message_id = event
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if message_id.starts_with(DERIVED_MESSAGE_PREFIX) {
            // A segment change the services thread appended: its outbox entry is done.
            tables.remove_outbox(message_id)?;
        }
        let event_ref = EventRef {
            offset,
            message_id,
            event_time_ms: time_ms,
            event,
        };
        let resolution =
            atrium_identity::resolve(tables, &self.config.rules, event_ref).map_err(|error| {
                PipelineError::Identity {
                    offset,
                    message: error.to_string(),
                }
            })?;
        self.metrics
            .identifiers_demoted
            .add(resolution.demoted.len() as u64);
        let Some(profile_id) = resolution.profile else {
            self.metrics.events_skipped.add(1);
            return Ok(());
        };
        if tables.profile_mut(&profile_id)?.is_none() {
            tables.put_profile(Profile::new(profile_id.0.clone(), time_ms));
            self.metrics.profiles_created.add(1);
        }
        for merged_id in &resolution.merged {
            if let Some(merged_profile) = tables.take_profile(merged_id)? {
                let survivor = tables
                    .profile_mut(&profile_id)?
                    .expect("survivor was just loaded");
                survivor.absorb(merged_profile);
            }
            tables.move_timeline(merged_id, &profile_id)?;
            self.metrics.profiles_merged.add(1);
        }
        if !resolution.merged.is_empty() {
            let now = received_ms.unwrap_or(time_ms);
            engine.on_merge(
                tables,
                self.log.as_ref(),
                &profile_id,
                &resolution.merged,
                now,
            )?;
        }
        let meta = event.get("atrium");
        let source = meta
            .and_then(|meta| meta.get("source"))
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let channel = meta
            .and_then(|meta| meta.get("channel"))
            .and_then(Value::as_str)
            .unwrap_or("other");
        let facts = EventFacts {
            offset,
            time_ms,
            source,
            channel,
        };
        let profile = tables.profile_mut(&profile_id)?.expect("profile exists");
        profile.apply(event, facts);
        tables.add_to_timeline(&profile_id, time_ms, offset)?;
        engine.on_event(tables, &profile_id, event, time_ms)?;
        for assignment in sticky_bucket_assignments(event) {
            tables.merge_sticky_assignments(
                &assignment.attribute_name,
                &assignment.attribute_value,
                &assignment.assignments,
                &profile_id.0,
            )?;
        }
        self.metrics.events_applied.add(1);
        Ok(())
    }

    fn apply_control(
        &self,
        tables: &mut WriteTables<'_>,
        engine: &mut SegmentEngine,
        offset: u64,
        control: ControlRecord,
    ) -> Result<Option<erasure::Pending>, PipelineError> {
        match control {
            ControlRecord::Erase {
                profile_id,
                identifier_hashes,
                requested_at,
                suppress,
            } => {
                let requested_ms = parse_timestamp_ms(&requested_at).unwrap_or(0);
                erasure::apply(
                    tables,
                    engine,
                    offset,
                    &ProfileId(profile_id),
                    identifier_hashes,
                    requested_ms,
                    suppress,
                )
            }
            ControlRecord::DefinitionPut {
                kind,
                key,
                body,
                version,
                at,
            } => {
                let definition = StoredDefinition {
                    version,
                    body,
                    updated_at: at,
                    offset,
                    deleted: false,
                };
                tables.put_definition(kind.as_str(), &key, &definition)?;
                let at_ms = parse_timestamp_ms(&definition.updated_at).unwrap_or(0);
                engine.on_definition(
                    tables,
                    self.log.as_ref(),
                    kind,
                    &key,
                    Some(&definition.body),
                    offset,
                    at_ms,
                )?;
                Ok(None)
            }
            ControlRecord::DefinitionDelete {
                kind,
                key,
                version,
                at,
            } => {
                let definition = StoredDefinition {
                    version,
                    body: Value::Null,
                    updated_at: at,
                    offset,
                    deleted: true,
                };
                tables.put_definition(kind.as_str(), &key, &definition)?;
                let at_ms = parse_timestamp_ms(&definition.updated_at).unwrap_or(0);
                engine.on_definition(tables, self.log.as_ref(), kind, &key, None, offset, at_ms)?;
                Ok(None)
            }
            ControlRecord::Tick { at } => {
                if let Some(at_ms) = parse_timestamp_ms(&at) {
                    engine.on_tick(tables, at_ms)?;
                }
                Ok(None)
            }
            // The catalog belongs to the recommendation service, which reads it from the log.
            ControlRecord::CatalogPut { .. } | ControlRecord::CatalogDelete { .. } => Ok(None),
        }
    }

    fn wake_services(&self) {
        let (lock, condvar) = &self.services_wake;
        *lock.lock() = true;
        condvar.notify_all();
    }

    /// Runs the segment services until `stop` is set: appends queued `Segment Entered` /
    /// `Segment Exited` events from the outbox to the log, and appends an `atrium.tick` when a
    /// segment timer is due (processing time enters the log only this way, so replay is exact).
    ///
    /// Outbox entries appended by an earlier process are still in the log ahead of the pipeline;
    /// nothing is appended until the pipeline has read the log as it was at start, so those are
    /// consumed first and never appended twice.
    pub fn spawn_segment_services(self: Arc<Self>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("atrium-segments".into())
            .spawn(move || {
                let start_end = self.log.end_offset();
                while !stop.load(Ordering::Acquire)
                    && !self.wait_applied(start_end, Duration::from_millis(100))
                {}
                let mut services = SegmentServices::default();
                while !stop.load(Ordering::Acquire) {
                    match self.segment_services_step(&mut services) {
                        Ok(true) => {}
                        Ok(false) => {
                            let (lock, condvar) = &self.services_wake;
                            let mut woken = lock.lock();
                            if !*woken {
                                condvar.wait_for(&mut woken, SERVICES_POLL);
                            }
                            *woken = false;
                        }
                        Err(error) => {
                            tracing::error!(%error, "segment services step failed, retrying in 1s");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            })
            .expect("spawning the segment services thread")
    }

    /// One round of the segment services; whether it appended anything.
    pub fn segment_services_step(
        &self,
        services: &mut SegmentServices,
    ) -> Result<bool, PipelineError> {
        let mut worked = false;
        let entries = self.store.read(|tables| tables.outbox(OUTBOX_BATCH))?;
        if entries.len() < OUTBOX_BATCH {
            // Entries no longer queued were read back by the pipeline.
            services
                .in_flight
                .retain(|id| entries.iter().any(|(queued, _)| queued == id));
        }
        let now_ms = self.clock.now_ms();
        let received_at = atrium_types::format_timestamp_ms(now_ms);
        let mut payloads = Vec::new();
        for (id, bytes) in entries {
            if services.in_flight.contains(&id) {
                continue;
            }
            let mut event: Value = match serde_json::from_slice(&bytes) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(%id, %error, "undecodable outbox entry");
                    continue;
                }
            };
            event["receivedAt"] = Value::String(received_at.clone());
            payloads.push(serde_json::to_vec(&event).expect("events serialize"));
            services.in_flight.insert(id);
        }
        if !payloads.is_empty() {
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            self.log.append(&slices)?;
            self.metrics
                .segment_events_emitted
                .add(payloads.len() as u64);
            worked = true;
        }
        let tick_applied = services
            .pending_tick
            .is_none_or(|offset| self.applied_offset() > offset);
        if tick_applied
            && let Some(next) = self.next_segment_timer()
            && now_ms >= next
        {
            let tick = ControlRecord::Tick { at: received_at };
            let offset = self.log.append(&[&LogRecord::encode_control(&tick)])?;
            services.pending_tick = Some(offset);
            self.metrics.ticks_appended.add(1);
            worked = true;
        }
        Ok(worked)
    }

    /// Runs the pipeline on a background thread until `stop` is set: a second thread reads and
    /// decodes the log ahead while this one applies ([`readahead`]).
    pub fn spawn(self: Arc<Self>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name("atrium-pipeline".into())
            .spawn(move || {
                if let Err(error) =
                    self.run_with_read_ahead(&stop, readahead::Until::Stopped, &mut |_| {})
                {
                    tracing::error!(%error, "the pipeline stopped");
                }
                if let Err(error) = self.sync() {
                    tracing::error!(%error, "final pipeline sync failed");
                }
            })
            .expect("spawning the pipeline thread")
    }
}

/// Deletes all derived state and replays the log from offset 0.
pub fn rebuild(
    store_path: &std::path::Path,
    log: Arc<dyn EventLog>,
    config: PipelineConfig,
    clock: Arc<dyn Clock>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Arc<Store>, PipelineError> {
    if store_path.exists() {
        std::fs::remove_file(store_path).map_err(|source| StoreError::Io {
            path: store_path.to_path_buf(),
            source,
        })?;
    }
    let store = Arc::new(Store::open(store_path)?);
    let pipeline = Pipeline::new(log.clone(), store.clone(), config, clock)?;
    let end = log.end_offset();
    let stop = AtomicBool::new(false);
    pipeline.run_with_read_ahead(&stop, readahead::Until::CaughtUp, &mut |applied| {
        progress(applied, end)
    })?;
    store.sync()?;
    Ok(store)
}

/// The source server-side evaluation appends its exposures from; only its `Experiment Viewed`
/// events may write sticky bucket assignments (a tracking client cannot pin other users).
pub const EXPERIMENTS_SOURCE: &str = "experiments";

/// Sticky bucket assignments one server-side exposure carries in `properties.sticky_buckets`:
/// `[{"attributeName", "attributeValue", "assignments": {"<experiment>__<bucketVersion>":
/// "<variation key>"}}]`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StickyAssignment {
    attribute_name: String,
    attribute_value: String,
    assignments: std::collections::BTreeMap<String, String>,
}

fn sticky_bucket_assignments(event: &Value) -> Vec<StickyAssignment> {
    let from_server = event
        .get("atrium")
        .and_then(|meta| meta.get("source"))
        .and_then(Value::as_str)
        == Some(EXPERIMENTS_SOURCE);
    let is_exposure = event.get("event").and_then(Value::as_str) == Some(slim::EXPOSURE_EVENT);
    if !from_server || !is_exposure {
        return Vec::new();
    }
    let Some(Value::Array(items)) = event
        .get("properties")
        .and_then(|properties| properties.get("sticky_buckets"))
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| serde_json::from_value(item.clone()).ok())
        .collect()
}
