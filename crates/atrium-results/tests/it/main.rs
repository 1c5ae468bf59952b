//! Results over a real segmented log, pipeline, redb store and warehouse: exposures are
//! deduplicated per profile, windows are relative to the first exposure, metrics, caps,
//! covariates and ratios add up to what a direct computation over the events gives.

mod metrics;
mod properties;

use std::collections::BTreeMap;
use std::sync::Arc;

use atrium_identity::IdentityRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig};
use atrium_results::{
    AnalysisOptions, ExperimentSpec, MetricDefinition, Report, VariationSpec, experiment_results,
};
use atrium_store::Store;
use atrium_types::{Channel, SourceConfig, SystemClock, format_timestamp_ms};
use atrium_warehouse::{ErasureKeys, Warehouse, WarehouseConfig};
use serde_json::{Value, json};

/// 2026-03-01T00:00:00Z.
pub const T0: i64 = 1_772_323_200_000;
pub const HOUR: i64 = 3_600_000;

pub struct Harness {
    _dir: tempfile::TempDir,
    log: Arc<SegmentedLog>,
    pipeline: Pipeline,
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
            Some(store),
            ErasureKeys::new(pipeline.rules().clone(), pipeline.hasher().clone()),
            WarehouseConfig::default(),
        )
        .expect("warehouse opens");
        Harness {
            _dir: dir,
            log,
            pipeline,
            warehouse,
        }
    }

    /// Appends the events and brings the profiles and the warehouse up to date.
    pub fn ingest(&self, events: &[Value]) {
        let source = SourceConfig {
            name: "web".into(),
            channel: Channel::Web,
        };
        let normalized =
            atrium_collect::normalize_events(&source, T0 + 1_000 * HOUR, None, events).unwrap();
        assert!(normalized.rejected.is_empty(), "{:?}", normalized.rejected);
        let payloads: Vec<Vec<u8>> = normalized
            .accepted
            .into_iter()
            .map(|event| event.payload)
            .collect();
        for chunk in payloads.chunks(500) {
            let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            self.log.append(&slices).expect("append");
        }
        self.pipeline.run_until_caught_up().expect("pipeline");
        self.warehouse.catch_up().expect("warehouse");
    }

    pub fn results(
        &self,
        spec: &ExperimentSpec,
        metrics: &[(&str, Value)],
        options: &AnalysisOptions,
    ) -> Report {
        let metrics = metric_map(metrics);
        experiment_results(&self.warehouse, spec, &metrics, options).expect("results")
    }
}

pub fn metric_map(metrics: &[(&str, Value)]) -> BTreeMap<String, MetricDefinition> {
    metrics
        .iter()
        .map(|(key, body)| {
            let definition = MetricDefinition::parse(key, body)
                .unwrap_or_else(|errors| panic!("metric {key}: {errors:?}"));
            ((*key).to_owned(), definition)
        })
        .collect()
}

pub fn at(ms: i64) -> String {
    format_timestamp_ms(ms)
}

/// An `Experiment Viewed` event.
pub fn exposure(user: &str, experiment: &str, variation: &str, ms: i64) -> Value {
    json!({
        "type": "track", "userId": user, "event": "Experiment Viewed", "timestamp": at(ms),
        "properties": {"experiment_id": experiment, "variation_id": variation},
    })
}

pub fn track(user: &str, event: &str, ms: i64, properties: Value) -> Value {
    json!({"type": "track", "userId": user, "event": event, "timestamp": at(ms), "properties": properties})
}

/// A two-arm experiment (`0`, `1`) with the given goal metrics.
pub fn spec(key: &str, goals: &[&str]) -> ExperimentSpec {
    ExperimentSpec {
        key: key.into(),
        variations: vec![
            VariationSpec {
                key: "0".into(),
                name: Some("control".into()),
            },
            VariationSpec {
                key: "1".into(),
                name: Some("treatment".into()),
            },
        ],
        weights: None,
        start_ms: Some(T0),
        end_ms: None,
        goal_metrics: goals.iter().map(|goal| (*goal).to_owned()).collect(),
        guardrail_metrics: Vec::new(),
    }
}
