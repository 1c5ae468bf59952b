//! The read-ahead stage. Applying a batch (identity, profiles, segments, the state commit) has to
//! happen on one thread in log order, but reading and decoding the next batch does not: a second
//! thread reads the log and decodes records while the applying thread works on the batch before,
//! so decoding (a quarter of the pipeline's work) leaves the critical path.
//!
//! The decoding depends on the segment definitions (which events keep their properties). A batch
//! carries the [`DecodeFilter`] it was decoded with; if definitions changed since, the applying
//! thread decodes it again. A batch also carries the read epoch it was read in: after the log was
//! rewritten (erasure) or a batch failed, the epoch moves on, batches of older epochs are dropped,
//! and the reader starts again from the applied offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use atrium_log::Record;
use atrium_types::{LogRecord, RecordError};

use crate::slim::{self, DecodeFilter, Keep};
use crate::{IDLE_SYNC_AFTER, Pipeline, PipelineError};

/// Batches read ahead and not yet applied, at most.
const READ_AHEAD_BATCHES: usize = 2;

/// A batch's records decoded for the definitions of `filter`.
pub(crate) struct Decoded {
    pub(crate) filter: Arc<DecodeFilter>,
    pub(crate) records: Vec<Result<LogRecord, RecordError>>,
}

/// Decodes records in order on this thread.
pub(crate) fn decode_all(
    records: &[Record],
    keep: Keep<'_>,
) -> Vec<Result<LogRecord, RecordError>> {
    records
        .iter()
        .map(|record| slim::decode(&record.payload, keep))
        .collect()
}

/// One batch as the reader hands it over.
struct Prepared {
    epoch: u64,
    /// The offset the read started at: the applied offset it follows.
    from: u64,
    records: Vec<Record>,
    decoded: Decoded,
}

/// When [`Pipeline::run_with_read_ahead`] returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// When `stop` is set. Failures are logged and retried; an idle pipeline makes its commits
    /// durable.
    Stopped,
    /// When the reader finds no more records (replay), or at the first failure.
    CaughtUp,
}

impl Pipeline {
    /// Applies batches that a reader thread reads and decodes ahead; `progress` is told the
    /// applied offset after each batch.
    pub(crate) fn run_with_read_ahead(
        &self,
        stop: &AtomicBool,
        until: Until,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), PipelineError> {
        let finished = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::sync_channel(READ_AHEAD_BATCHES);
            std::thread::Builder::new()
                .name("atrium-pipeline-read".into())
                .spawn_scoped(scope, || self.read_ahead(stop, &finished, until, sender))
                .expect("spawning the pipeline read-ahead thread");
            let result = self.apply_prepared(stop, until, receiver, progress);
            finished.store(true, Ordering::Release);
            result
        })
    }

    fn read_ahead(
        &self,
        stop: &AtomicBool,
        finished: &AtomicBool,
        until: Until,
        sender: SyncSender<Prepared>,
    ) {
        let mut epoch = self.read_epoch.load(Ordering::Acquire);
        let mut next = self.applied_offset();
        while !stop.load(Ordering::Acquire) && !finished.load(Ordering::Acquire) {
            let current = self.read_epoch.load(Ordering::Acquire);
            if current != epoch {
                epoch = current;
                next = self.applied_offset();
            }
            let records = match self.log.read(next, self.config.batch_records) {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(%error, offset = next, "reading the log ahead failed, retrying in 1s");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let Some(last) = records.last() else {
                if until == Until::CaughtUp {
                    return;
                }
                self.log.wait_for(next, Duration::from_millis(100));
                continue;
            };
            let from = next;
            next = last.offset + 1;
            let filter = self.decode_filter.lock().clone();
            let decoded = Decoded {
                records: decode_all(&records, filter.keep()),
                filter,
            };
            let prepared = Prepared {
                epoch,
                from,
                records,
                decoded,
            };
            if sender.send(prepared).is_err() {
                return;
            }
        }
    }

    fn apply_prepared(
        &self,
        stop: &AtomicBool,
        until: Until,
        receiver: Receiver<Prepared>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), PipelineError> {
        while !stop.load(Ordering::Acquire) {
            let prepared = match receiver.recv_timeout(IDLE_SYNC_AFTER) {
                Ok(prepared) => prepared,
                Err(RecvTimeoutError::Timeout) => {
                    // Nothing new for a while: make the last commits durable.
                    if let Err(error) = self.sync() {
                        self.failed(until, error)?;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            if prepared.epoch != self.read_epoch.load(Ordering::Acquire)
                || prepared.from != self.applied_offset()
            {
                continue;
            }
            match self.apply_records(&prepared.records, Some(prepared.decoded)) {
                Ok(()) => progress(self.applied_offset()),
                Err(error) => {
                    // The reader starts again from what is applied.
                    self.read_epoch.fetch_add(1, Ordering::AcqRel);
                    self.failed(until, error)?;
                }
            }
        }
        Ok(())
    }

    /// A failure ends a replay; a running pipeline logs it and retries after a second.
    fn failed(&self, until: Until, error: PipelineError) -> Result<(), PipelineError> {
        if until == Until::CaughtUp {
            return Err(error);
        }
        tracing::error!(%error, offset = self.applied_offset(), "pipeline step failed, retrying in 1s");
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    }
}
