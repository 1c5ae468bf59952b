//! Integration tests of `atrium-recserve` over a real segmented log in a temporary directory:
//! events and catalog records are appended as the server would, the service consumes them.

mod properties;
mod service;

use std::sync::Arc;

use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_recserve::{RecService, RecsSettings};
use atrium_types::{ControlRecord, LogRecord, format_timestamp_ms};
use serde_json::{Value, json};

pub const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
pub const MINUTE: i64 = 60_000;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub log: Arc<SegmentedLog>,
    pub service: RecService,
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::with_settings(RecsSettings::default())
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::default()
    }

    pub fn with_settings(settings: RecsSettings) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = LogConfig::new(dir.path().join("log"));
        config.sync = false;
        let log = Arc::new(SegmentedLog::open(config).expect("log opens"));
        let service = RecService::open(log.clone(), None, None, settings, None).expect("opens");
        Fixture {
            _dir: dir,
            log,
            service,
        }
    }

    /// A second service over the same log (as after a restart).
    pub fn reopen(&self, settings: RecsSettings) -> RecService {
        RecService::open(self.log.clone(), None, None, settings, None).expect("opens")
    }

    pub fn append(&self, records: &[Value]) {
        let payloads: Vec<Vec<u8>> = records
            .iter()
            .map(|record| serde_json::to_vec(record).unwrap())
            .collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append(&slices).expect("append");
    }

    pub fn put_items(&self, items: &[Value]) {
        let record = ControlRecord::CatalogPut {
            items: items.to_vec(),
            at: format_timestamp_ms(T0),
        };
        self.log
            .append(&[&LogRecord::encode_control(&record)])
            .expect("append");
    }

    pub fn sync(&self) {
        let end = self.log.end_offset();
        self.service.catch_up().expect("catch up");
        assert_eq!(self.service.applied_offset(), end);
    }
}

pub fn item(id: &str, category: &str, price: f64) -> Value {
    json!({"id": id, "name": format!("Item {id}"), "category": category, "price": price})
}

/// A `track` event as collection stores it (the fields the service reads).
pub fn track(visitor: &str, event: &str, properties: Value, at_ms: i64) -> Value {
    let mut record = json!({
        "type": "track",
        "event": event,
        "properties": properties,
        "timestamp": format_timestamp_ms(at_ms),
    });
    match visitor.strip_prefix("u:") {
        Some(user) => record["userId"] = json!(user),
        None => record["anonymousId"] = json!(visitor),
    }
    record
}

pub fn viewed(visitor: &str, product: &str, at_ms: i64) -> Value {
    track(
        visitor,
        "Product Viewed",
        json!({"product_id": product}),
        at_ms,
    )
}

pub fn order(visitor: &str, order_id: &str, products: &[&str], at_ms: i64) -> Value {
    let lines: Vec<Value> = products
        .iter()
        .map(|p| json!({"product_id": p, "price": 10.0, "quantity": 1}))
        .collect();
    track(
        visitor,
        "Order Completed",
        json!({"order_id": order_id, "products": lines}),
        at_ms,
    )
}
