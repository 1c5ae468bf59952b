//! KPIs that only sum orders are aggregated inside DataFusion (`GROUP BY` period and column
//! values); every answer must equal the general row-by-row path's on the same warehouse.

use atrium_analytics::{KpiRequest, KpiResponse};
use atrium_log::EventLog;
use atrium_types::{Channel, SourceConfig};
use serde_json::{Value, json};

use crate::{Harness, limits};

/// Appends generated events with the demo sources' channels (as `atrium bench analytics` does).
fn ingest_generated(harness: &Harness, events: Vec<Value>) {
    let mut start = 0;
    while start < events.len() {
        let mut event = events[start].clone();
        let source = atrium_gen::take_source(&mut event).unwrap_or_else(|| "web".to_owned());
        let mut batch = vec![event];
        let mut end = start + 1;
        while end < events.len() {
            let mut next = events[end].clone();
            if atrium_gen::take_source(&mut next)
                .as_deref()
                .unwrap_or("web")
                != source
            {
                break;
            }
            batch.push(next);
            end += 1;
        }
        let channel = match source.as_str() {
            "web" => Channel::Web,
            "pos" => Channel::Pos,
            "email" => Channel::Email,
            "backend" => Channel::Server,
            _ => Channel::App,
        };
        let config = SourceConfig {
            name: source,
            channel,
        };
        let normalized =
            atrium_collect::normalize_events(&config, 1_780_272_000_000, None, &batch).unwrap();
        let payloads: Vec<&[u8]> = normalized
            .accepted
            .iter()
            .map(|event| event.payload.as_slice())
            .collect();
        if !payloads.is_empty() {
            harness.log.append(&payloads).expect("append");
        }
        start = end;
    }
    harness.pipeline.run_until_caught_up().expect("pipeline");
    harness.warehouse.catch_up().expect("warehouse");
}

/// A generated shop over 60 days, half in Parquet files and half in the hot tier, plus orders
/// without revenue and refunds.
fn shop() -> Harness {
    let harness = Harness::create();
    let events: Vec<Value> =
        atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(7, 6_000)).collect();
    let (first, second) = events.split_at(events.len() / 2);
    ingest_generated(&harness, first.to_vec());
    harness.flush();
    ingest_generated(&harness, second.to_vec());
    harness.ingest(&[
        json!({"type": "track", "event": "Order Completed", "userId": "x1",
               "timestamp": "2026-01-20T10:00:00Z", "properties": {"order_id": "n1"}}),
        json!({"type": "track", "event": "Order Refunded", "userId": "x1",
               "timestamp": "2026-01-21T10:00:00Z", "properties": {"order_id": "n1", "revenue": 12.5}}),
        json!({"type": "track", "event": "Order Completed", "anonymousId": "x2",
               "timestamp": "2026-01-31T23:30:00Z",
               "properties": {"order_id": "n2", "revenue": 7.25},
               "context": {"campaign": {"source": "google"}}}),
    ]);
    harness
}

/// Runs `request` both ways, asserts the answers agree, returns the row path's.
fn check(harness: &Harness, request: Value) -> KpiResponse {
    let parsed: KpiRequest = serde_json::from_value(request.clone()).expect("valid request");
    let grouped = atrium_analytics::kpis(&harness.warehouse, &parsed, &limits())
        .unwrap_or_else(|error| panic!("{request}: {error}"));
    let by_rows = atrium_analytics::kpis_by_rows(&harness.warehouse, &parsed, &limits())
        .unwrap_or_else(|error| panic!("{request}: {error}"));
    assert_same(&request, &grouped, &by_rows);
    by_rows
}

fn assert_same(request: &Value, grouped: &KpiResponse, by_rows: &KpiResponse) {
    assert_eq!(grouped.metrics, by_rows.metrics, "{request}");
    for (grouped_rows, reference_rows) in [
        (&grouped.rows, &by_rows.rows),
        (&grouped.totals, &by_rows.totals),
    ] {
        let keys = |rows: &Vec<atrium_analytics::KpiRow>| -> Vec<(Option<String>, Option<String>)> {
            rows.iter()
                .map(|row| (row.bucket.clone(), row.group.clone()))
                .collect()
        };
        assert_eq!(keys(grouped_rows), keys(reference_rows), "{request}");
        for (row, reference) in grouped_rows.iter().zip(reference_rows) {
            assert_eq!(
                row.values.keys().collect::<Vec<_>>(),
                reference.values.keys().collect::<Vec<_>>(),
                "{request}"
            );
            for (name, value) in &row.values {
                let expected = &reference.values[name];
                match (value.as_u64(), value.as_f64(), expected.as_f64()) {
                    (Some(count), _, _) => {
                        assert_eq!(Some(count), expected.as_u64(), "{request} {name}")
                    }
                    (None, Some(a), Some(b)) => assert!(
                        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                        "{request} {name}: {a} vs {b}"
                    ),
                    _ => assert_eq!(value, expected, "{request} {name}"),
                }
            }
        }
    }
}

#[test]
fn order_sums_grouped_in_the_engine_equal_the_row_path() {
    let harness = shop();
    let order_metrics = json!(["revenue", "orders", "aov", "refunds", "refunded_revenue"]);
    let mut requests = Vec::new();
    for granularity in ["day", "week", "month", "total"] {
        for time_zone in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu"] {
            requests.push(json!({
                "from": "2026-01-01", "to": "2026-03-05", "time_zone": time_zone,
                "granularity": granularity, "metrics": order_metrics,
                "breakdown": "channel"}));
        }
    }
    for breakdown in [
        Value::Null,
        json!("utm_source"),
        json!("event"),
        json!("type"),
    ] {
        requests.push(json!({
            "from": "2026-01-10", "to": "2026-02-20", "granularity": "day",
            "metrics": ["revenue", "refunded_revenue"], "breakdown": breakdown}));
    }
    let filters = [
        json!([{"field": "channel", "op": "eq", "value": "web"}]),
        json!([{"field": "channel", "op": "neq", "value": "web"}]),
        json!([{"field": "utm_source", "op": "exists"}]),
        json!([{"field": "utm_source", "op": "not_exists"}, {"field": "type", "op": "eq", "value": "track"}]),
        json!([{"field": "event", "op": "in", "value": ["Order Completed"]}]),
        json!([{"field": "device", "op": "contains", "value": "o"}]),
        json!([{"field": "channel", "op": "not_in", "value": ["app", "pos"]},
               {"field": "country", "op": "exists"}]),
    ];
    for filter in filters {
        requests.push(json!({
            "from": "2026-01-01", "to": "2026-03-05", "time_zone": "Europe/Berlin",
            "granularity": "week", "metrics": order_metrics, "filters": filter,
            "breakdown": "utm_medium"}));
    }
    let first = check(&harness, requests[0].clone());
    let total = |name: &str| -> f64 {
        first
            .totals
            .iter()
            .filter_map(|row| row.values.get(name).and_then(Value::as_f64))
            .sum()
    };
    assert!(
        total("orders") > 10.0 && total("revenue") > 0.0,
        "{first:?}"
    );
    assert!(
        total("refunds") >= 1.0 && total("refunded_revenue") > 0.0,
        "{first:?}"
    );
    for request in requests {
        check(&harness, request);
    }
}
