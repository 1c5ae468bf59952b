//! The single writer thread and its group commit.
//!
//! Appenders push a [`Request`] onto a queue and wait for a reply. The writer thread takes every
//! request waiting at that moment (up to `max_batch_bytes`), assigns offsets, writes the whole
//! group with one positional write, calls `fdatasync` once, publishes the new durable end and
//! then replies to every waiter of the group.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::format::{INDEX_INTERVAL, encode_record, encoded_record_len};
use crate::segment::{Segment, create_segment};
use crate::{LogError, Offset, Shared};

/// The payloads of one append call.
pub(crate) enum Payloads {
    /// Copied from borrowed slices: all payloads back to back, with the end of each.
    Flat { bytes: Vec<u8>, ends: Vec<usize> },
    /// Moved in from an owned batch (the async path).
    Owned(Vec<Vec<u8>>),
}

impl Payloads {
    pub(crate) fn from_slices(payloads: &[&[u8]]) -> Self {
        let total = payloads.iter().map(|p| p.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(payloads.len());
        for payload in payloads {
            bytes.extend_from_slice(payload);
            ends.push(bytes.len());
        }
        Payloads::Flat { bytes, ends }
    }

    fn count(&self) -> usize {
        match self {
            Payloads::Flat { ends, .. } => ends.len(),
            Payloads::Owned(payloads) => payloads.len(),
        }
    }

    fn get(&self, index: usize) -> &[u8] {
        match self {
            Payloads::Flat { bytes, ends } => {
                let start = index.checked_sub(1).map_or(0, |previous| ends[previous]);
                &bytes[start..ends[index]]
            }
            Payloads::Owned(payloads) => &payloads[index],
        }
    }

    fn encoded_len(&self) -> u64 {
        (0..self.count())
            .map(|i| encoded_record_len(self.get(i).len()))
            .sum()
    }
}

/// Where the writer sends the first offset (or the error) of a request.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<Result<Offset, LogError>>),
    Async(tokio::sync::oneshot::Sender<Result<Offset, LogError>>),
}

impl Reply {
    fn send(self, result: Result<Offset, LogError>) {
        // A waiter that went away (e.g. a dropped future) simply does not hear the answer.
        match self {
            Reply::Blocking(sender) => {
                let _ = sender.send(result);
            }
            Reply::Async(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

pub(crate) struct Request {
    pub payloads: Payloads,
    pub reply: Reply,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub pending: VecDeque<Request>,
    pub closed: bool,
}

/// Writer-side state of the active segment. Guarded by `Shared::writer`; the writer thread holds
/// that lock for a whole group, so whoever else takes it (rewrite) sees a fully synced state.
pub(crate) struct WriterState {
    pub active: Arc<Segment>,
    pub file: Arc<File>,
    /// Bytes written to the active segment (all of them synced outside of a group commit).
    pub len: u64,
    pub records_in_segment: u64,
    pub next_offset: Offset,
    /// Sparse-index entries written but not yet published to the segment.
    pending_index: Vec<(Offset, u64)>,
    /// Set after a failed write or sync: the on-disk state is unknown, so the log stops accepting
    /// appends until it is reopened (which runs recovery).
    failed: Option<String>,
}

impl WriterState {
    pub(crate) fn new(active: Arc<Segment>, len: u64, records: u64, next: Offset) -> Self {
        let file = active.file_handle();
        WriterState {
            active,
            file,
            len,
            records_in_segment: records,
            next_offset: next,
            pending_index: Vec::new(),
            failed: None,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<(), LogError> {
        match &self.failed {
            Some(reason) => Err(LogError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Writes and syncs a group of requests, returning the first offset of each.
    fn commit(&mut self, shared: &Shared, group: &[Request]) -> Result<Vec<Offset>, LogError> {
        self.check_usable()?;
        let result = self.write_group(shared, group);
        if let Err(error) = &result {
            tracing::error!(%error, "log write failed; refusing further appends until reopened");
            self.failed = Some(error.to_string());
        }
        result
    }

    fn write_group(&mut self, shared: &Shared, group: &[Request]) -> Result<Vec<Offset>, LogError> {
        let segment_bytes = shared.config.segment_bytes;
        let mut buf = Vec::new();
        let mut first_offsets = Vec::with_capacity(group.len());
        for request in group {
            let request_bytes = request.payloads.encoded_len();
            let would_be = self.len + buf.len() as u64 + request_bytes;
            // A request never spans segments; a request larger than a segment gets its own.
            if self.records_in_segment > 0 && would_be > segment_bytes {
                self.flush(shared, &mut buf)?;
                self.roll(shared)?;
            }
            first_offsets.push(self.next_offset);
            for index in 0..request.payloads.count() {
                let position = self.len + buf.len() as u64;
                if self.records_in_segment.is_multiple_of(INDEX_INTERVAL) {
                    self.pending_index.push((self.next_offset, position));
                }
                encode_record(&mut buf, self.next_offset, request.payloads.get(index));
                self.next_offset += 1;
                self.records_in_segment += 1;
            }
        }
        self.flush(shared, &mut buf)?;
        Ok(first_offsets)
    }

    /// Writes `buf` at the end of the active segment, syncs it and publishes it to readers.
    fn flush(&mut self, shared: &Shared, buf: &mut Vec<u8>) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = &self.active.path;
        self.file
            .write_all_at(buf, self.len)
            .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
        if shared.config.sync {
            self.file
                .sync_data()
                .map_err(|e| LogError::io(format!("syncing {}", path.display()), e))?;
        }
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.len += buf.len() as u64;
        buf.clear();
        let entries = std::mem::take(&mut self.pending_index);
        self.active
            .publish(self.len, entries, self.records_in_segment);
        shared.publish_durable_end(self.next_offset);
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset. Must only be called with
    /// everything written so far flushed.
    pub(crate) fn roll(&mut self, shared: &Shared) -> Result<(), LogError> {
        debug_assert!(self.pending_index.is_empty());
        debug_assert!(self.records_in_segment > 0, "never roll an empty segment");
        let segment = Arc::new(create_segment(
            &shared.config.dir,
            self.next_offset,
            shared.config.sync,
        )?);
        shared.segments.write().push(Arc::clone(&segment));
        self.file = segment.file_handle();
        let sealed = std::mem::replace(&mut self.active, segment);
        sealed.seal();
        self.len = crate::format::FILE_HEADER_LEN;
        self.records_in_segment = 0;
        Ok(())
    }
}

/// Takes the next group of requests, blocking until there is one. `None` once closed and drained.
fn next_group(shared: &Shared) -> Option<Vec<Request>> {
    let mut queue = shared.queue.lock();
    while queue.pending.is_empty() {
        if queue.closed {
            return None;
        }
        shared.queue_ready.wait(&mut queue);
    }
    let max_bytes = shared.config.max_batch_bytes as u64;
    let mut group = Vec::new();
    let mut group_bytes = 0u64;
    while let Some(request) = queue.pending.front() {
        let request_bytes = request.payloads.encoded_len();
        if !group.is_empty() && group_bytes + request_bytes > max_bytes {
            break;
        }
        group_bytes += request_bytes;
        if let Some(request) = queue.pending.pop_front() {
            group.push(request);
        }
    }
    Some(group)
}

/// Closes the queue when the writer thread exits for any reason (including a panic), so that
/// appenders get `LogError::Closed` instead of waiting forever.
struct CloseOnExit<'a>(&'a Shared);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        let abandoned: Vec<Request> = {
            let mut queue = self.0.queue.lock();
            queue.closed = true;
            queue.pending.drain(..).collect()
        };
        for request in abandoned {
            request.reply.send(Err(LogError::Closed));
        }
    }
}

pub(crate) fn run_writer(shared: Arc<Shared>) {
    let _close = CloseOnExit(&shared);
    while let Some(group) = next_group(&shared) {
        let result = shared.writer.lock().commit(&shared, &group);
        match result {
            Ok(first_offsets) => {
                shared
                    .appends
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                debug_assert_eq!(first_offsets.len(), group.len());
                for (request, first) in group.into_iter().zip(first_offsets) {
                    request.reply.send(Ok(first));
                }
            }
            Err(error) => {
                for request in group {
                    request.reply.send(Err(error.duplicate()));
                }
            }
        }
    }
}
