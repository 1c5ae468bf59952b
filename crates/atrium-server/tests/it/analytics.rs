//! `POST /v1/analytics/*` over events ingested through the collection API.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_error};

/// Posts until the answer satisfies `ready` (the warehouse sees new events within seconds).
async fn wait_for(
    server: &TestServer,
    path: &str,
    body: &Value,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = server.admin_post(path, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if ready(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path}: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shop() -> Value {
    json!({"batch": [
        {"type": "page", "anonymousId": "an-1", "timestamp": "2026-03-01T09:00:00Z",
         "context": {"campaign": {"source": "google", "medium": "cpc", "name": "spring"}}},
        {"type": "track", "anonymousId": "an-1", "event": "Product Viewed", "timestamp": "2026-03-01T09:01:00Z"},
        {"type": "identify", "anonymousId": "an-1", "userId": "un-1", "timestamp": "2026-03-01T09:02:00Z"},
        {"type": "track", "userId": "un-1", "event": "Order Completed", "timestamp": "2026-03-01T09:03:00Z",
         "properties": {"order_id": "o-1", "revenue": 80}},
        {"type": "track", "userId": "un-2", "event": "Product Viewed", "timestamp": "2026-03-02T10:00:00Z"},
        {"type": "track", "userId": "un-2", "event": "Order Completed", "timestamp": "2026-03-20T10:00:00Z",
         "properties": {"order_id": "o-2", "revenue": 20}},
        {"type": "track", "userId": "un-2", "event": "Order Refunded", "timestamp": "2026-03-21T10:00:00Z",
         "properties": {"order_id": "o-2", "revenue": 20}},
    ]})
}

const RANGE: (&str, &str) = ("2026-03-01", "2026-04-01");

#[tokio::test]
async fn analytics_routes_answer_over_collected_events() {
    let server = TestServer::start().await;
    let (status, _, _) = server.ingest("/v1/batch", &shop()).await;
    assert_eq!(status, StatusCode::OK);
    server.catch_up().await;

    let kpis = json!({"from": RANGE.0, "to": RANGE.1, "time_zone": "Europe/Berlin", "granularity": "week"});
    let answer = wait_for(&server, "/v1/analytics/kpis", &kpis, |answer| {
        answer["totals"][0]["refunds"] == 1
    })
    .await;
    let total = &answer["totals"][0];
    assert_eq!(total["orders"], 2, "{answer}");
    assert_eq!(total["revenue"], 100.0);
    assert_eq!(total["aov"], 50.0);
    assert_eq!(total["visitors"], 2, "an-1 and un-1 are one profile");
    assert_eq!(total["conversion_rate"], 1.0);
    assert_eq!(total["refunded_revenue"], 20.0);
    assert!(answer["elapsed_ms"].is_u64());
    assert_eq!(
        answer["rows"][0]["bucket"], "2026-02-23",
        "the Monday week holding March 1st"
    );

    let funnel = json!({"from": RANGE.0, "to": RANGE.1,
        "steps": [{"event": "Product Viewed"}, {"event": "Order Completed"}],
        "window": {"value": 7, "unit": "day"}});
    let (status, answer) = server.admin_post("/v1/analytics/funnel", &funnel).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let steps = &answer["totals"][0]["steps"];
    assert_eq!(steps[0]["profiles"], 2, "{answer}");
    assert_eq!(steps[1]["profiles"], 1, "un-2 ordered 18 days later");
    assert_eq!(steps[1]["median_seconds_from_previous"], 120.0);

    let retention = json!({"from": RANGE.0, "to": RANGE.1, "granularity": "week",
        "start": {"event": "Product Viewed"}, "return": {"event": "Order Completed"}, "periods": 3});
    let (status, answer) = server
        .admin_post("/v1/analytics/retention", &retention)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["rows"][0]["cohort"], "2026-02-23");
    assert_eq!(answer["rows"][0]["retained"], json!([1, 0, 0, 0]));
    assert_eq!(answer["rows"][1]["cohort"], "2026-03-02");
    assert_eq!(answer["rows"][1]["retained"], json!([1, 0, 1, 0]));

    let attribution = json!({"from": RANGE.0, "to": RANGE.1, "models": ["last_touch"]});
    let (status, answer) = server
        .admin_post("/v1/analytics/attribution", &attribution)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{answer}");
    assert_eq!(rows[0]["group"], "(direct)");
    assert_eq!(rows[0]["revenue"], 20.0);
    assert_eq!(rows[1]["group"], "google");
    assert_eq!(rows[1]["revenue"], 80.0);

    let paths = json!({"from": RANGE.0, "to": RANGE.1, "anchor": {"event": "Product Viewed"}});
    let (status, answer) = server.admin_post("/v1/analytics/paths", &paths).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["anchors"], 2);
    assert_eq!(answer["rows"][0]["path"], json!(["$identify"]));
    server.stop().await;
}

#[tokio::test]
async fn analytics_refuses_bad_requests_with_the_field_at_fault() {
    let server = TestServer::start().await;
    let (status, body) = server
        .admin_post(
            "/v1/analytics/funnel",
            &json!({"from": RANGE.0, "to": RANGE.1, "steps": [{"event": "A"}], "window": {"value": 1, "unit": "day"}}),
        )
        .await;
    assert_error(status, &body, 400, "analytics_invalid");
    assert!(
        body["message"].as_str().unwrap().starts_with("steps: "),
        "{body}"
    );

    let (status, body) = server
        .admin_post(
            "/v1/analytics/kpis",
            &json!({"from": RANGE.0, "to": RANGE.1, "color": "red"}),
        )
        .await;
    assert_error(status, &body, 400, "analytics_invalid");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `color`"),
        "{body}"
    );

    let (status, body) = server
        .admin_post(
            "/v1/analytics/retention",
            &json!({"from": RANGE.0, "to": RANGE.1, "time_zone": "Nowhere/City", "granularity": "day", "start": {"event": "A"}, "periods": 2}),
        )
        .await;
    assert_error(status, &body, 400, "analytics_invalid");
    assert!(
        body["message"].as_str().unwrap().starts_with("time_zone: "),
        "{body}"
    );

    let response = server
        .client
        .post(server.url("/v1/analytics/paths"))
        .bearer_auth(crate::harness::ADMIN_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = crate::harness::into_json(response).await;
    assert_error(status, &body, 400, "invalid_json");

    let response = server
        .client
        .post(server.url("/v1/analytics/kpis"))
        .json(&json!({"from": RANGE.0, "to": RANGE.1}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::harness::into_json(response).await;
    assert_error(status, &body, 401, "missing_admin_key");
    server.stop().await;
}
