//! The durable, ordered, append-only event log: Atrium's source of truth.
//!
//! Records are opaque byte payloads (JSON events in practice). Every appended record gets the next
//! [`Offset`]: offsets are `u64`, start at 0, are dense when written and strictly increasing in
//! the log. [`SegmentedLog::rewrite`] can later drop records (GDPR erasure); kept records keep
//! their offsets, so a rewritten log has gaps, and offsets are never reused.
//!
//! # On-disk format
//!
//! The log is a directory of segment files, each named after the offset of its first slot,
//! zero-padded to 20 digits: `00000000000000000000.log`, `00000000000000004096.log`, ...
//!
//! Each segment file is:
//!
//! ```text
//! file header (16 bytes):  b"ATRLOG01"  base_offset: u64 LE
//! record, repeated:        payload_len: u32 LE
//!                          crc32c: u32 LE      (over offset as u64 LE bytes, then payload)
//!                          offset: u64 LE
//!                          payload: payload_len bytes
//! ```
//!
//! Storing the offset in every record makes rewritten (sparse) segments self-describing. Payloads
//! are limited to [`MAX_PAYLOAD_BYTES`] (16 MiB). Temporary files (`*.log.tmp`) only exist while
//! a rewrite is in progress.
//!
//! # Invariants
//!
//! - There is exactly one writer: a dedicated thread owns appends to the last ("active")
//!   segment. [`EventLog::append`] and [`SegmentedLog::append_async`] both hand their batch to it.
//! - Group commit: the writer takes every batch waiting at that moment (up to
//!   [`LogConfig::max_batch_bytes`]), writes them with one write, calls `fdatasync` once and only
//!   then acknowledges every batch of the group. A batch gets consecutive offsets and never spans
//!   two segments.
//! - Readers only ever see synced records: the readable length of the active segment and
//!   [`EventLog::end_offset`] are advanced after the sync. A read returns a gap-free view: it
//!   never returns a record at or past the end offset it observed when it started.
//! - A segment is sealed when the next batch would take it past [`LogConfig::segment_bytes`]
//!   (a batch larger than that gets a segment of its own). Sealed segments are immutable except
//!   for [`SegmentedLog::rewrite`], which replaces them atomically (write temp file, fsync,
//!   rename, fsync directory).
//! - The last segment is never sparse: `rewrite` seals the active segment first, so the name of
//!   the last segment plus its record count always gives the next offset, even after erasure.
//!
//! # Recovery
//!
//! [`SegmentedLog::open`] deletes leftover temporary files, then scans the last segment and
//! validates every record. It stops at the first record whose header or payload is incomplete,
//! whose crc does not match, or whose offset is not the expected next one, truncates the file
//! there (a torn tail from a crash mid-write), fsyncs it and logs a warning with the number of
//! bytes cut. Earlier segments are trusted and opened lazily; a damaged record found there while
//! reading is reported as [`LogError::Corrupt`] with the file and byte position.
//!
//! Only records acknowledged by `append` are guaranteed to survive a crash. A batch whose append
//! was not acknowledged may survive in full, in part (a prefix of it) or not at all.
//!
//! Only one [`SegmentedLog`] may have a directory open at a time (not enforced).
//!
//! # Reading
//!
//! Segments are found by binary search on their base offset. Within a segment, a sparse index
//! (one entry every 64 records, offset -> byte position) lets a read start close to the requested
//! offset. The writer maintains the index of the active segment; sealed segments build theirs on
//! first read by scanning record headers only.

mod format;
pub mod priority;
mod segment;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

pub use format::MAX_PAYLOAD_BYTES;
use format::{TEMP_SUFFIX, parse_segment_name};
use segment::{Segment, create_segment, recover_last, sync_dir};
use writer::{Payloads, Queue, Reply, Request, WriterState, run_writer};

/// Position of a record in the log.
pub type Offset = u64;

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system I/O error; `context` says what was being done to which file.
    #[error("i/o error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored record (or segment header) that should be valid is not.
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A payload exceeds [`MAX_PAYLOAD_BYTES`].
    #[error("payload #{index} of the batch is {len} bytes, over the {max} byte limit per record")]
    PayloadTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    /// The configuration cannot be used.
    #[error("invalid log configuration: {reason}")]
    InvalidConfig { reason: String },
    /// An earlier write or sync failed; the log must be reopened (which runs recovery).
    #[error("log is unusable after an earlier write failure (reopen to recover): {reason}")]
    Poisoned { reason: String },
    /// The log is shutting down or its writer thread is gone.
    #[error("log is closed")]
    Closed,
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LogError::Io {
            context: context.into(),
            source,
        }
    }

    /// A copy of this error, to report one failure to every waiter of a group.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            LogError::Io { context, source } => LogError::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            LogError::Corrupt {
                path,
                position,
                reason,
            } => LogError::Corrupt {
                path: path.clone(),
                position: *position,
                reason: reason.clone(),
            },
            LogError::PayloadTooLarge { index, len, max } => LogError::PayloadTooLarge {
                index: *index,
                len: *len,
                max: *max,
            },
            LogError::InvalidConfig { reason } => LogError::InvalidConfig {
                reason: reason.clone(),
            },
            LogError::Poisoned { reason } => LogError::Poisoned {
                reason: reason.clone(),
            },
            LogError::Closed => LogError::Closed,
        }
    }
}

/// Configuration of a [`SegmentedLog`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory holding the segment files (created if missing).
    pub dir: PathBuf,
    /// Roll to a new segment file once the active one would grow past this. Default 64 MiB.
    pub segment_bytes: u64,
    /// Group commit: at most this many payload bytes (plus headers) per write + fdatasync,
    /// except that a single larger batch is still written whole. Default 4 MiB.
    pub max_batch_bytes: usize,
    /// `fdatasync` before acknowledging. Default true; false only for tests and benchmarks.
    pub sync: bool,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            sync: true,
        }
    }
}

/// One stored record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    pub payload: Vec<u8>,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes of all segment files.
    pub total_bytes: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Group commits (one write + one fdatasync each) since open.
    pub syncs: u64,
    /// Successful append calls (blocking and async) since open.
    pub appends: u64,
    /// Same as [`EventLog::end_offset`].
    pub end_offset: Offset,
}

/// The event log abstraction, so that another backend (e.g. NATS JetStream) can follow.
pub trait EventLog: Send + Sync + 'static {
    /// Appends records atomically-in-order and returns the offset of the first one; returns only
    /// after the records are durable (fdatasync'ed). Many threads call this concurrently; the
    /// implementation groups them so one fdatasync covers all writers waiting at that moment
    /// (group commit). Blocking call (callers from async use spawn_blocking or the async wrapper).
    fn append(&self, payloads: &[&[u8]]) -> Result<Offset, LogError>;
    /// Reads up to `max_records` records with offset >= `from` (skipping offsets that no longer
    /// exist because of rewriting), in offset order. Only durable records are visible.
    fn read(&self, from: Offset, max_records: usize) -> Result<Vec<Record>, LogError>;
    /// One past the last durable offset (= next offset to be assigned once all pending are synced).
    fn end_offset(&self) -> Offset;
    /// Blocks until end_offset() > `after` or the timeout passes; returns end_offset().
    fn wait_for(&self, after: Offset, timeout: Duration) -> Offset;
    /// Rewrites stored history, dropping records for which `keep(offset, payload)` is false, so
    /// the dropped bytes no longer exist in storage (GDPR erasure). Kept records keep their
    /// offsets. Returns how many records were dropped.
    fn rewrite(&self, keep: &dyn Fn(Offset, &[u8]) -> bool) -> Result<u64, LogError>;
}

/// State shared between the log handle and its writer thread.
pub(crate) struct Shared {
    pub config: LogConfig,
    /// All segments in base-offset order; the last one is the active segment. Only grows.
    pub segments: RwLock<Vec<Arc<Segment>>>,
    pub writer: Mutex<WriterState>,
    pub queue: Mutex<Queue>,
    pub queue_ready: Condvar,
    /// Durable end offset; the atomic mirrors the mutex value for lock-free reads.
    durable_end: Mutex<Offset>,
    durable_end_fast: AtomicU64,
    durable_advanced: Condvar,
    pub syncs: AtomicU64,
    pub appends: AtomicU64,
    /// Serializes rewrites.
    rewrite_lock: Mutex<()>,
}

impl Shared {
    pub(crate) fn publish_durable_end(&self, end: Offset) {
        let mut durable_end = self.durable_end.lock();
        debug_assert!(end >= *durable_end, "the durable end never moves backwards");
        *durable_end = end;
        self.durable_end_fast.store(end, Ordering::Release);
        self.durable_advanced.notify_all();
    }

    fn enqueue(&self, request: Request) -> Result<(), LogError> {
        let mut queue = self.queue.lock();
        if queue.closed {
            return Err(LogError::Closed);
        }
        queue.pending.push_back(request);
        drop(queue);
        self.queue_ready.notify_one();
        Ok(())
    }
}

/// File-backed [`EventLog`]: a directory of segment files with a single group-committing writer.
pub struct SegmentedLog {
    shared: Arc<Shared>,
    writer_thread: Option<JoinHandle<()>>,
}

fn check_payload_sizes<'a>(payloads: impl Iterator<Item = &'a [u8]>) -> Result<(), LogError> {
    for (index, payload) in payloads.enumerate() {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(LogError::PayloadTooLarge {
                index,
                len: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
    }
    Ok(())
}

impl SegmentedLog {
    /// Opens (or creates) the log in `config.dir`, recovering from an unclean shutdown.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        if config.segment_bytes == 0 {
            return Err(LogError::InvalidConfig {
                reason: "segment_bytes must be greater than zero".into(),
            });
        }
        if config.max_batch_bytes == 0 {
            return Err(LogError::InvalidConfig {
                reason: "max_batch_bytes must be greater than zero".into(),
            });
        }
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LogError::io(format!("creating directory {}", dir.display()), e))?;

        let mut found: Vec<(Offset, u64)> = Vec::new();
        let mut removed_temp_files = false;
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMP_SUFFIX) {
                tracing::warn!(
                    file = name,
                    "deleting leftover temporary file of an interrupted rewrite"
                );
                std::fs::remove_file(entry.path())
                    .map_err(|e| LogError::io(format!("removing {}", entry.path().display()), e))?;
                removed_temp_files = true;
                continue;
            }
            let Some(base) = parse_segment_name(name) else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(|e| {
                    LogError::io(format!("reading metadata of {}", entry.path().display()), e)
                })?
                .len();
            found.push((base, len));
        }
        if removed_temp_files && config.sync {
            sync_dir(&dir)?;
        }
        found.sort_unstable();

        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(found.len().max(1));
        let (active, next_offset) = match found.split_last() {
            None => (create_segment(&dir, 0, config.sync)?, 0),
            Some((&(last_base, _), sealed)) => {
                for &(base, len) in sealed {
                    segments.push(Arc::new(Segment::unloaded(
                        base,
                        format::segment_path(&dir, base),
                        len,
                    )));
                }
                let recovered = recover_last(&dir, last_base, config.sync)?;
                (recovered.segment, recovered.next_offset)
            }
        };
        let active = Arc::new(active);
        let (active_len, active_records) = active.len_and_records();
        segments.push(Arc::clone(&active));
        let writer = WriterState::new(active, active_len, active_records, next_offset);

        let shared = Arc::new(Shared {
            config,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            queue: Mutex::new(Queue::default()),
            queue_ready: Condvar::new(),
            durable_end: Mutex::new(next_offset),
            durable_end_fast: AtomicU64::new(next_offset),
            durable_advanced: Condvar::new(),
            syncs: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            rewrite_lock: Mutex::new(()),
        });
        let thread_shared = Arc::clone(&shared);
        let writer_thread = std::thread::Builder::new()
            .name("atrium-log-writer".into())
            .spawn(move || run_writer(thread_shared))
            .map_err(|e| LogError::io("spawning the log writer thread", e))?;
        Ok(SegmentedLog {
            shared,
            writer_thread: Some(writer_thread),
        })
    }

    /// Async convenience: appends from a tokio task without blocking the runtime worker. The
    /// batch is handed to the writer thread and the returned future completes once it is durable.
    /// Dropping the future does not cancel the append.
    pub async fn append_async(&self, payloads: Vec<Vec<u8>>) -> Result<Offset, LogError> {
        check_payload_sizes(payloads.iter().map(Vec::as_slice))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.shared.enqueue(Request {
            payloads: Payloads::Owned(payloads),
            reply: Reply::Async(sender),
        })?;
        receiver.await.map_err(|_| LogError::Closed)?
    }

    /// Rewrites every segment, dropping records for which `keep(offset, payload)` is false, and
    /// returns how many were dropped. Kept records keep their offsets. Each changed segment is
    /// written to a temporary file, fsynced and renamed over the original, then the directory is
    /// fsynced, so the dropped bytes no longer exist in any file under the log directory.
    ///
    /// Appends continue meanwhile: the active segment is sealed first and records appended after
    /// this call started are not filtered. Concurrent rewrites run one after the other.
    pub fn rewrite(&self, keep: &dyn Fn(Offset, &[u8]) -> bool) -> Result<u64, LogError> {
        self.rewrite_segments(keep)
    }

    fn rewrite_segments(&self, keep: &dyn Fn(Offset, &[u8]) -> bool) -> Result<u64, LogError> {
        let _one_rewrite_at_a_time = self.shared.rewrite_lock.lock();
        let sealed_count = {
            let mut writer = self.shared.writer.lock();
            writer.check_usable()?;
            if writer.records_in_segment > 0 {
                writer.roll(&self.shared)?;
            }
            self.shared.segments.read().len() - 1
        };
        let mut dropped = 0;
        for index in 0..sealed_count {
            let segment = Arc::clone(&self.shared.segments.read()[index]);
            dropped += segment.rewrite(&self.shared.config.dir, self.shared.config.sync, keep)?;
        }
        Ok(dropped)
    }

    /// Total bytes on disk, number of segments and commit counters, for metrics.
    pub fn stats(&self) -> LogStats {
        let segments = self.shared.segments.read();
        LogStats {
            total_bytes: segments.iter().map(|s| s.disk_bytes()).sum(),
            segments: segments.len(),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            appends: self.shared.appends.load(Ordering::Relaxed),
            end_offset: self.end_offset(),
        }
    }
}

impl EventLog for SegmentedLog {
    fn rewrite(&self, keep: &dyn Fn(Offset, &[u8]) -> bool) -> Result<u64, LogError> {
        self.rewrite_segments(keep)
    }

    fn append(&self, payloads: &[&[u8]]) -> Result<Offset, LogError> {
        check_payload_sizes(payloads.iter().copied())?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.shared.enqueue(Request {
            payloads: Payloads::from_slices(payloads),
            reply: Reply::Blocking(sender),
        })?;
        receiver.recv().map_err(|_| LogError::Closed)?
    }

    fn read(&self, from: Offset, max_records: usize) -> Result<Vec<Record>, LogError> {
        // Everything below this end is already visible in the segments (it is published after
        // them), so stopping here gives a gap-free answer even while the writer rolls segments.
        let end = self.end_offset();
        let mut out = Vec::new();
        if max_records == 0 || from >= end {
            return Ok(out);
        }
        let mut index = {
            let segments = self.shared.segments.read();
            segments
                .partition_point(|s| s.base <= from)
                .saturating_sub(1)
        };
        while out.len() < max_records {
            let Some(segment) = self.shared.segments.read().get(index).cloned() else {
                break;
            };
            if segment.base >= end {
                break;
            }
            segment.read_into(from, end, max_records, &mut out)?;
            index += 1;
        }
        Ok(out)
    }

    fn end_offset(&self) -> Offset {
        self.shared.durable_end_fast.load(Ordering::Acquire)
    }

    fn wait_for(&self, after: Offset, timeout: Duration) -> Offset {
        let deadline = Instant::now().checked_add(timeout);
        let mut durable_end = self.shared.durable_end.lock();
        while *durable_end <= after {
            let Some(deadline) = deadline else {
                // A timeout too large to represent: wait without one.
                self.shared.durable_advanced.wait(&mut durable_end);
                continue;
            };
            if self
                .shared
                .durable_advanced
                .wait_until(&mut durable_end, deadline)
                .timed_out()
            {
                break;
            }
        }
        *durable_end
    }
}

impl Drop for SegmentedLog {
    /// Lets the writer finish every queued batch, then stops it.
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.queue_ready.notify_all();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SegmentedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedLog")
            .field("dir", &self.shared.config.dir)
            .field("end_offset", &self.end_offset())
            .finish_non_exhaustive()
    }
}
