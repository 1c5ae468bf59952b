//! Warehouse tests over a real segmented log, a real redb store and real Parquet files.

mod erasure;
mod materialize;
mod segments_sql;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use atrium_gen::{GenConfig, Generator};
use atrium_identity::IdentityRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig};
use atrium_store::Store;
use atrium_types::{Channel, SourceConfig, SystemClock};
use atrium_warehouse::datafusion::arrow::array::{Array, AsArray};
use atrium_warehouse::datafusion::arrow::datatypes::Int64Type;
use atrium_warehouse::{ErasureKeys, QueryOutput, SqlLimits, Warehouse, WarehouseConfig};
use serde_json::Value;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub log: Arc<SegmentedLog>,
    pub store: Arc<Store>,
    pub pipeline: Pipeline,
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
        Harness {
            dir,
            log,
            store,
            pipeline,
        }
    }

    pub fn warehouse(&self, config: WarehouseConfig) -> Warehouse {
        Warehouse::open(
            self.dir.path().join("warehouse"),
            self.log.clone(),
            Some(self.store.clone()),
            ErasureKeys::new(
                self.pipeline.rules().clone(),
                self.pipeline.hasher().clone(),
            ),
            config,
        )
        .expect("warehouse opens")
    }

    pub fn ingest(&self, source: &str, channel: Channel, events: &[Value]) {
        let payloads = normalize(source, channel, events);
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append(&slices).expect("append");
    }

    /// Appends `count` generated shop events; returns how many log records were written.
    pub fn ingest_generated(&self, seed: u64, count: usize) -> usize {
        let mut config = GenConfig::for_events(seed, count);
        config.customers = config.customers.min(40);
        let mut payloads = Vec::new();
        for mut event in Generator::new(config) {
            let source = atrium_gen::take_source(&mut event).unwrap_or_else(|| "web".into());
            let channel = match source.as_str() {
                "web" => Channel::Web,
                "pos" => Channel::Pos,
                "email" => Channel::Email,
                "backend" => Channel::Server,
                _ => Channel::App,
            };
            payloads.extend(normalize(&source, channel, &[event]));
        }
        for chunk in payloads.chunks(200) {
            let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            self.log.append(&slices).expect("append");
        }
        payloads.len()
    }

    /// Every event record of the log: (offset, decoded event).
    pub fn log_events(&self) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let records = self.log.read(from, 1_000).expect("read");
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for record in records {
                let value: Value = serde_json::from_slice(&record.payload).unwrap();
                let control = value["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("atrium."));
                if !control {
                    out.push((record.offset, value));
                }
            }
        }
        out
    }
}

pub fn normalize(source: &str, channel: Channel, events: &[Value]) -> Vec<Vec<u8>> {
    let source = SourceConfig {
        name: source.into(),
        channel,
    };
    // 2026-06-01: after every test event, so no timestamp is clamped as "in the future".
    let normalized =
        atrium_collect::normalize_events(&source, 1_780_272_000_000, Some("192.0.2.1"), events)
            .unwrap();
    assert!(normalized.rejected.is_empty(), "{:?}", normalized.rejected);
    normalized
        .accepted
        .into_iter()
        .map(|event| event.payload)
        .collect()
}

pub fn query(warehouse: &Warehouse, sql: &str) -> QueryOutput {
    let limits = SqlLimits {
        timeout: Duration::from_secs(60),
        max_rows: 1_000_000,
    };
    warehouse
        .sql(sql, &limits)
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// The single text value of a one-row, one-column result.
pub fn text(output: &QueryOutput) -> String {
    assert_eq!(output.row_count, 1);
    output.batches[0]
        .column(0)
        .as_string::<i32>()
        .value(0)
        .to_owned()
}

/// The single Int64 value of a one-row, one-column result.
pub fn scalar(warehouse: &Warehouse, sql: &str) -> i64 {
    let output = query(warehouse, sql);
    assert_eq!(output.row_count, 1, "{sql}");
    let column = output.batches[0].column(0);
    let column = atrium_warehouse::datafusion::arrow::compute::cast(
        column,
        &atrium_warehouse::datafusion::arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    let values = column.as_primitive::<Int64Type>();
    assert!(!values.is_null(0), "{sql} returned NULL");
    values.value(0)
}

/// No automatic flush (tests flush explicitly) and no compaction.
pub fn manual_config() -> WarehouseConfig {
    WarehouseConfig {
        read_batch: 300,
        flush_rows: usize::MAX,
        flush_interval: Duration::from_secs(3_600),
        compact_files: 0,
        ..WarehouseConfig::default()
    }
}
