use std::time::{Duration, Instant};

use atrium_types::Channel;
use atrium_warehouse::{SqlLimits, WarehouseError};
use serde_json::json;

use crate::{Harness, manual_config, query, scalar};

#[test]
fn anonymous_history_counts_for_the_merged_profile_without_rewriting_files() {
    let harness = Harness::create();
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "page", "anonymousId": "anon-9", "name": "Home", "timestamp": "2026-01-01T10:00:00Z"}),
            json!({"type": "track", "anonymousId": "anon-9", "event": "Product Viewed", "properties": {"product_id": "p1"}, "timestamp": "2026-01-01T10:01:00Z"}),
            json!({"type": "track", "anonymousId": "anon-9", "event": "Product Added", "properties": {"product_id": "p1"}, "timestamp": "2026-01-01T10:02:00Z"}),
            json!({"type": "identify", "anonymousId": "phone-9", "userId": "u9", "timestamp": "2026-01-01T11:00:00Z"}),
        ],
    );
    harness.pipeline.run_until_caught_up().unwrap();
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    let files_before = warehouse.manifest().files;

    let per_user = "SELECT count(*) FROM events_resolved WHERE profile_id = \
        (SELECT profile_id FROM identities WHERE kind = 'user_id' AND value = 'u9')";
    assert_eq!(scalar(&warehouse, per_user), 1, "only the identify so far");
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(DISTINCT profile_id) FROM events_resolved"
        ),
        2
    );

    // The visitor logs in: the anonymous profile merges into u9's.
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "identify", "anonymousId": "anon-9", "userId": "u9", "timestamp": "2026-01-01T10:05:00Z"}),
        ],
    );
    harness.pipeline.run_until_caught_up().unwrap();
    warehouse.catch_up().unwrap();
    assert_eq!(
        scalar(&warehouse, per_user),
        5,
        "three anonymous events, two identifies"
    );
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(DISTINCT profile_id) FROM events_resolved"
        ),
        1
    );
    assert_eq!(
        warehouse.manifest().files,
        files_before,
        "no file was rewritten"
    );
    // The profiles snapshot follows the store.
    assert_eq!(scalar(&warehouse, "SELECT count(*) FROM profiles"), 1);
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT event_count FROM profiles p JOIN identities i ON i.profile_id = p.profile_id \
             WHERE i.kind = 'user_id' AND i.value = 'u9'"
        ),
        5
    );
}

fn error_of(harness: &Harness, sql: &str, limits: SqlLimits) -> WarehouseError {
    let warehouse = harness.warehouse(manual_config());
    match warehouse.sql(sql, &limits) {
        Ok(output) => panic!("{sql} succeeded with {} rows", output.row_count),
        Err(error) => {
            assert!(error.is_client_error(), "{sql}: {error:?}");
            error
        }
    }
}

#[test]
fn writes_bad_sql_and_unknown_names_are_refused_with_their_kind() {
    let harness = Harness::create();
    harness.ingest(
        "web",
        Channel::Web,
        &[json!({"type": "track", "anonymousId": "a", "event": "X"})],
    );
    let limits = SqlLimits::default();
    let refused = [
        "INSERT INTO events (type) VALUES ('x')",
        "COPY (SELECT * FROM events) TO '/tmp/atrium-x.parquet'",
        "COPY events TO '/tmp/atrium-x.csv'",
        "CREATE TABLE t AS SELECT 1",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW events",
        "SET datafusion.execution.batch_size = 1",
        "DELETE FROM events",
        "EXPLAIN INSERT INTO events (type) VALUES ('x')",
    ];
    for sql in refused {
        let error = error_of(&harness, sql, limits);
        assert!(
            matches!(error, WarehouseError::WriteRefused(_)),
            "{sql}: {error:?}"
        );
    }
    let error = error_of(&harness, "SELEC * FROM events", limits);
    assert!(matches!(error, WarehouseError::Syntax(_)), "{error:?}");
    let error = error_of(&harness, "SELECT 1; SELECT 2", limits);
    assert!(error.is_client_error());
    let error = error_of(&harness, "SELECT nope FROM events", limits);
    assert!(
        matches!(error, WarehouseError::UnknownColumn(_)),
        "{error:?}"
    );
    let error = error_of(&harness, "SELECT * FROM nope", limits);
    assert!(
        matches!(error, WarehouseError::UnknownTable(_)),
        "{error:?}"
    );
    let error = error_of(&harness, "SELECT * FROM '/etc/passwd'", limits);
    assert!(error.is_client_error(), "{error:?}");

    // Row limit.
    let small = SqlLimits {
        max_rows: 5,
        ..limits
    };
    let error = error_of(&harness, "SELECT * FROM generate_series(1, 100)", small);
    assert!(matches!(error, WarehouseError::TooManyRows(5)), "{error:?}");

    // Time limit: cancelled promptly.
    let quick = SqlLimits {
        timeout: Duration::from_millis(200),
        ..limits
    };
    let started = Instant::now();
    let error = error_of(
        &harness,
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        quick,
    );
    assert!(matches!(error, WarehouseError::Timeout(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Read-only statements that are fine.
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    let tables = query(&warehouse, "SHOW TABLES");
    let text = tables.to_table().unwrap();
    for name in [
        "events",
        "orders",
        "order_lines",
        "events_resolved",
        "orders_resolved",
        "profiles",
        "identities",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert_eq!(
        scalar(
            &warehouse,
            "WITH x AS (SELECT * FROM events) SELECT count(*) FROM x"
        ),
        1
    );
    let explained = query(&warehouse, "EXPLAIN SELECT count(*) FROM events");
    assert!(explained.row_count > 0);
}

#[test]
fn results_encode_as_json_csv_arrow_and_a_text_table() {
    let harness = Harness::create();
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2026-02-03T04:05:06Z",
                "properties": {"order_id": "o1", "revenue": 12.5, "currency": "EUR", "products": [{"product_id": "p1", "price": 12.5, "quantity": 1}]}}),
        ],
    );
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    let output = query(
        &warehouse,
        "SELECT order_id, revenue, currency, event_date, timestamp, coupon FROM events",
    );
    let json: serde_json::Value = serde_json::from_slice(&output.to_json_rows().unwrap()).unwrap();
    assert_eq!(json[0]["order_id"], "o1");
    assert_eq!(json[0]["revenue"], 12.5);
    assert_eq!(json[0]["event_date"], "2026-02-03");
    assert!(json[0]["coupon"].is_null());
    let csv = String::from_utf8(output.to_csv().unwrap()).unwrap();
    assert!(csv.starts_with("order_id,revenue,currency,event_date,timestamp,coupon\n"));
    assert!(csv.contains("o1,12.5,EUR,2026-02-03"));
    assert!(!output.to_arrow_ipc().unwrap().is_empty());
    let table = output.to_table().unwrap();
    assert!(table.contains("| o1 "), "{table}");
    let empty = query(&warehouse, "SELECT order_id FROM events WHERE false");
    assert_eq!(empty.to_json_rows().unwrap(), b"[]");
    assert_eq!(empty.to_csv().unwrap(), b"order_id\n");
}

/// A graph that is slow to read (here: every graph, `graph_sync_rebuild` is zero) is refreshed
/// in the background: the first query after a merge still sees the previous snapshot and does
/// not wait, a later one sees the merge. An erase record is never answered from a snapshot
/// older than it.
#[test]
fn a_slow_graph_is_refreshed_in_the_background_but_never_past_an_erasure() {
    use atrium_identity::Identifier;
    use atrium_log::EventLog;
    use atrium_types::{ControlRecord, LogRecord};

    let harness = Harness::create();
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "track", "anonymousId": "anon-7", "event": "Product Viewed", "timestamp": "2026-01-01T10:01:00Z"}),
            json!({"type": "identify", "anonymousId": "phone-7", "userId": "u7", "timestamp": "2026-01-01T11:00:00Z"}),
        ],
    );
    harness.pipeline.run_until_caught_up().unwrap();
    let warehouse = harness.warehouse(atrium_warehouse::WarehouseConfig {
        graph_sync_rebuild: Duration::ZERO,
        ..manual_config()
    });
    // As a server does at start: the first snapshot is read in the background, and a query
    // arriving meanwhile waits for that read.
    warehouse.warm_graph();
    warehouse.catch_up().unwrap();
    let profiles = "SELECT count(DISTINCT profile_id) FROM events_resolved";
    assert_eq!(scalar(&warehouse, profiles), 2, "the first snapshot");

    harness.ingest(
        "web",
        Channel::Web,
        &[json!({"type": "identify", "anonymousId": "anon-7", "userId": "u7", "timestamp": "2026-01-01T10:05:00Z"})],
    );
    harness.pipeline.run_until_caught_up().unwrap();
    warehouse.catch_up().unwrap();
    let stale = warehouse.graph_snapshot().unwrap();
    assert!(
        stale.offset < harness.log.end_offset(),
        "served the previous snapshot while the refresh runs"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(&warehouse, profiles) != 1 {
        assert!(Instant::now() < deadline, "the refresh never landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        warehouse.graph_snapshot().unwrap().offset,
        harness.log.end_offset()
    );

    // Erase the merged person: the next query reads the store again, in line.
    let profile_id = query(
        &warehouse,
        "SELECT profile_id FROM identities WHERE kind = 'user_id' AND value = 'u7'",
    );
    let profile_id = crate::text(&profile_id);
    let hasher = harness.pipeline.hasher();
    let erase = LogRecord::encode_control(&ControlRecord::Erase {
        profile_id,
        identifier_hashes: [
            ("user_id", "u7"),
            ("anonymous_id", "anon-7"),
            ("anonymous_id", "phone-7"),
        ]
        .into_iter()
        .map(|(kind, value)| hasher.hash(&Identifier::new(kind, value)))
        .collect(),
        requested_at: "2026-06-01T00:00:00.000Z".into(),
        suppress: true,
    });
    harness.log.append(&[erase.as_slice()]).unwrap();
    harness.pipeline.run_until_caught_up().unwrap();
    warehouse.catch_up().unwrap();
    assert_eq!(scalar(&warehouse, "SELECT count(*) FROM profiles"), 0);
    assert_eq!(scalar(&warehouse, "SELECT count(*) FROM identities"), 0);
}
