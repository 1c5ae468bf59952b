//! Analytics over a real segmented log, a real redb store, the real pipeline (identity
//! resolution) and a real warehouse (Parquet files plus hot tier).

mod grouped;
mod known;
mod validation;

use std::sync::Arc;
use std::time::Duration;

use atrium_analytics::Limits;
use atrium_identity::IdentityRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig};
use atrium_store::Store;
use atrium_types::{Channel, SourceConfig, SystemClock};
use atrium_warehouse::{ErasureKeys, Warehouse, WarehouseConfig};
use serde_json::Value;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<SegmentedLog>,
    pub store: Arc<Store>,
    pub pipeline: Pipeline,
    pub warehouse: Warehouse,
}

impl Harness {
    pub fn create() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log_config = LogConfig::new(dir.path().join("log"));
        log_config.sync = false;
        let log = Arc::new(SegmentedLog::open(log_config).expect("log opens"));
        let store = Arc::new(Store::open(dir.path().join("state.redb")).expect("store opens"));
        let config = PipelineConfig {
            batch_records: 500,
            rules: IdentityRules::default().compile().expect("rules"),
            hasher: IdentifierHasher::new(b"salt".to_vec()),
        };
        let pipeline = Pipeline::new(log.clone(), store.clone(), config, Arc::new(SystemClock))
            .expect("pipeline");
        let warehouse = Warehouse::open(
            dir.path().join("warehouse"),
            log.clone(),
            Some(store.clone()),
            ErasureKeys::new(pipeline.rules().clone(), pipeline.hasher().clone()),
            WarehouseConfig {
                read_batch: 300,
                flush_rows: usize::MAX,
                flush_interval: Duration::from_secs(3_600),
                compact_files: 0,
                ..WarehouseConfig::default()
            },
        )
        .expect("warehouse opens");
        Harness {
            dir,
            log,
            store,
            pipeline,
            warehouse,
        }
    }

    /// Appends events as if collected from a web source, then lets the pipeline and the
    /// warehouse catch up (rows stay in the hot tier until [`Harness::flush`]).
    pub fn ingest(&self, events: &[Value]) {
        let source = SourceConfig {
            name: "web".into(),
            channel: Channel::Web,
        };
        // 2026-06-01: after every test event, so no timestamp is clamped as "in the future".
        let normalized =
            atrium_collect::normalize_events(&source, 1_780_272_000_000, None, events).unwrap();
        assert!(normalized.rejected.is_empty(), "{:?}", normalized.rejected);
        let payloads: Vec<&[u8]> = normalized
            .accepted
            .iter()
            .map(|event| event.payload.as_slice())
            .collect();
        self.log.append(&payloads).expect("append");
        self.pipeline.run_until_caught_up().expect("pipeline");
        self.warehouse.catch_up().expect("warehouse");
        assert_eq!(self.warehouse.visible_offset(), self.log.end_offset());
    }

    pub fn flush(&self) {
        self.warehouse.flush().expect("flush");
    }
}

pub fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(60),
    }
}

/// Runs a JSON request of `kind` and returns the JSON answer.
pub fn run(harness: &Harness, kind: &str, request: Value) -> Value {
    let kind = atrium_analytics::QueryKind::parse(kind).expect("known kind");
    let body = serde_json::to_vec(&request).unwrap();
    atrium_analytics::run_json(&harness.warehouse, kind, &body, &limits())
        .unwrap_or_else(|error| panic!("{request}: {error}"))
        .json
}

/// The error message of a request that must fail.
pub fn fails(harness: &Harness, kind: &str, request: Value) -> String {
    let kind = atrium_analytics::QueryKind::parse(kind).expect("known kind");
    let body = serde_json::to_vec(&request).unwrap();
    match atrium_analytics::run_json(&harness.warehouse, kind, &body, &limits()) {
        Ok(answer) => panic!("{request} succeeded: {}", answer.json),
        Err(error) => {
            assert!(error.is_client_error(), "{error}");
            error.to_string()
        }
    }
}
