//! `POST /v1/sql` over the warehouse.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error, into_json};

async fn sql(server: &TestServer, body: Value) -> (StatusCode, Value) {
    server.admin_post("/v1/sql", &body).await
}

/// Polls until `query`'s single value equals `expected` (new events are visible within seconds).
async fn wait_for_value(server: &TestServer, query: &str, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = sql(server, json!({"query": query})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let value = body["rows"][0]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {value} != {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sql_sees_new_events_within_seconds_and_stitches_anonymous_history() {
    let mut server = TestServer::start().await;
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "anon-s", "name": "Home"},
        {"type": "track", "anonymousId": "anon-s", "event": "Product Viewed", "properties": {"product_id": "p1", "price": 9.5}},
        {"type": "identify", "anonymousId": "anon-s", "userId": "u-s", "traits": {"email": "s@example.com"}},
        {"type": "track", "userId": "u-s", "event": "Order Completed", "properties": {"order_id": "o-1", "revenue": 19, "currency": "EUR", "products": [{"product_id": "p1", "price": 9.5, "quantity": 2}]}},
    ]});
    let (status, _, _) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK);
    server.catch_up().await;
    wait_for_value(&server, "SELECT count(*) AS n FROM events", json!(4)).await;

    let per_profile = "SELECT count(*) AS n FROM events_resolved WHERE profile_id = \
        (SELECT profile_id FROM identities WHERE kind = 'email' AND value = 's@example.com')";
    wait_for_value(&server, per_profile, json!(4)).await;

    let (status, body) = sql(
        &server,
        json!({"query": "SELECT order_id, revenue, currency FROM orders", "format": "json"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["row_count"], 1);
    assert_eq!(body["rows"][0]["order_id"], "o-1");
    assert_eq!(body["rows"][0]["revenue"], 19.0);
    assert_eq!(body["columns"][1]["name"], "revenue");
    assert_eq!(body["columns"][1]["type"], "Float64");

    let response = server
        .admin(
            reqwest::Method::POST,
            "/v1/sql",
            Some(
                &json!({"query": "SELECT product_id, quantity FROM order_lines", "format": "csv"}),
            ),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        response.text().await.unwrap(),
        "product_id,quantity\np1,2\n"
    );

    // A restart flushes the hot tier and serves the same rows from Parquet.
    server.restart().await;
    wait_for_value(&server, "SELECT count(*) AS n FROM events", json!(4)).await;
    assert!(server.dir.path().join("warehouse/manifest.json").is_file());
    server.stop().await;
}

#[tokio::test]
async fn bad_queries_get_clear_errors_and_heavy_ones_do_not_block_the_server() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url("/v1/sql"))
        .json(&json!({"query": "SELECT 1"}))
        .send()
        .await
        .unwrap();
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 401, "missing_admin_key");

    let cases = [
        (json!({"query": "SELEC 1"}), 400, "sql_syntax"),
        (
            json!({"query": "SELECT nope FROM events"}),
            400,
            "sql_unknown_name",
        ),
        (
            json!({"query": "SELECT * FROM nope"}),
            400,
            "sql_unknown_name",
        ),
        (
            json!({"query": "INSERT INTO events (type) VALUES ('x')"}),
            403,
            "sql_read_only",
        ),
        (
            json!({"query": "COPY (SELECT 1) TO '/tmp/x.csv'"}),
            403,
            "sql_read_only",
        ),
        (
            json!({"query": "SELECT * FROM generate_series(1, 100)", "limit": 10}),
            413,
            "sql_too_large",
        ),
        (
            json!({"query": "SELECT 1", "format": "xml"}),
            400,
            "invalid_request",
        ),
        (
            json!({"query": "SELECT 1", "limit": 0}),
            400,
            "invalid_request",
        ),
        (json!({"sql": "SELECT 1"}), 400, "invalid_request"),
    ];
    for (body, expected_status, code) in cases {
        let (status, answer) = sql(&server, body.clone()).await;
        assert_error(status, &answer, expected_status, code);
    }

    // A heavy query runs (and is cancelled at its limit) while the server keeps answering.
    let heavy = {
        let client = server.client.clone();
        let url = server.url("/v1/sql");
        tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(crate::harness::ADMIN_KEY)
                .json(&json!({"query": "SELECT count(*) FROM generate_series(1, 100000000000)", "timeout_ms": 1500}))
                .send()
                .await
                .unwrap();
            into_json(response).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, _, _) = server
        .ingest("/v1/track", &json!({"userId": "u1", "event": "Still Here"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = heavy.await.unwrap();
    assert_error(status, &body, 408, "sql_timeout");
    server.stop().await;
}
