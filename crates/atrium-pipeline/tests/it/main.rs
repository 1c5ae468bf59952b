//! Pipeline tests over a real segmented log and a real redb store in temporary directories.

mod definitions;
mod erasure;
mod replay;
mod segments;
mod stitching;

use std::path::Path;
use std::sync::Arc;

use atrium_identity::IdentityRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig};
use atrium_store::Store;
use atrium_types::{Channel, SourceConfig, SystemClock};
use serde_json::Value;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<SegmentedLog>,
    pub pipeline: Pipeline,
}

pub fn config(batch_records: usize) -> PipelineConfig {
    PipelineConfig {
        batch_records,
        rules: IdentityRules::default()
            .compile()
            .expect("default rules compile"),
        hasher: IdentifierHasher::new(b"test-salt".to_vec()),
    }
}

impl Harness {
    pub fn new(batch_records: usize) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(
            SegmentedLog::open(LogConfig::new(dir.path().join("log"))).expect("log opens"),
        );
        let store = Arc::new(Store::open(dir.path().join("state.redb")).expect("store opens"));
        let pipeline = Pipeline::new(
            log.clone(),
            store,
            config(batch_records),
            Arc::new(SystemClock),
        )
        .expect("pipeline");
        Harness { dir, log, pipeline }
    }

    pub fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("state.redb")
    }

    /// Normalizes events through collection (as the server would) and appends them.
    pub fn ingest(&self, source: &str, channel: Channel, events: &[Value]) {
        let payloads = normalize(source, channel, events);
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append(&slices).expect("append");
    }

    pub fn catch_up(&self) {
        self.pipeline
            .run_until_caught_up()
            .expect("pipeline catches up");
    }

    pub fn profile(&self, reference: &str) -> Option<atrium_store::Profile> {
        self.pipeline
            .store()
            .read(|tables| match tables.resolve(reference)? {
                Some(id) => tables.profile(&id),
                None => Ok(None),
            })
            .expect("store read")
    }
}

pub fn normalize(source: &str, channel: Channel, events: &[Value]) -> Vec<Vec<u8>> {
    normalize_at(source, channel, events, 1_767_225_600_000)
}

/// [`normalize`] with an explicit `receivedAt` (processing time).
pub fn normalize_at(
    source: &str,
    channel: Channel,
    events: &[Value],
    received_at_ms: i64,
) -> Vec<Vec<u8>> {
    let source = SourceConfig {
        name: source.into(),
        channel,
    };
    let normalized =
        atrium_collect::normalize_events(&source, received_at_ms, Some("192.0.2.1"), events)
            .unwrap();
    assert!(normalized.rejected.is_empty(), "{:?}", normalized.rejected);
    normalized
        .accepted
        .into_iter()
        .map(|event| event.payload)
        .collect()
}

/// Every file under `dir`, recursively, as bytes.
pub fn all_bytes_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}
