//! Segments and computed traits through the HTTP API: definitions validated against the
//! catalog, backfill, real-time entry with derived events, members (JSON, CSV, JSONL), a
//! profile's segments, explanations, previews, and precise errors.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::*;

fn order(user: &str, order_id: &str, revenue: f64) -> Value {
    json!({"userId": user, "event": "Order Completed",
           "properties": {"order_id": order_id, "revenue": revenue, "currency": "USD"}})
}

async fn members(server: &TestServer, segment: &str) -> Vec<String> {
    let (status, page) = server
        .admin_get(&format!("/v1/segments/{segment}/members"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|member| member["profile_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn profile_id(server: &TestServer, reference: &str) -> String {
    let (status, profile) = server.admin_get(&format!("/v1/profiles/{reference}")).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    profile["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_backfill_update_in_real_time_and_explain_themselves() {
    let server = TestServer::start().await;
    for event in [
        order("u_1", "o1", 60.0),
        order("u_1", "o2", 50.0),
        order("u_2", "o3", 20.0),
    ] {
        let (status, _, _) = server.ingest("/v1/track", &event).await;
        assert_eq!(status, StatusCode::OK);
    }
    server.catch_up().await;
    put_applied(
        &server,
        "/v1/computed-traits/ltv",
        &json!({"kind": "lifetime_value"}),
    )
    .await;
    let big_spender = json!({
        "description": "Spent at least 100 in total",
        "condition": {"op": "computed_trait", "id": "ltv", "operator": "gte", "value": 100}
    });
    // Preview before saving: one of two profiles.
    let (status, preview) = server
        .admin_post("/v1/segments/preview", &big_spender)
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 1);
    assert_eq!(preview["evaluated"], 2);
    // Once the warehouse has materialized what the pipeline applied, SQL answers.
    let mut preview = preview;
    for _ in 0..100 {
        if preview["engine"] == "sql" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        preview = server
            .admin_post("/v1/segments/preview", &big_spender)
            .await
            .1;
    }
    assert_eq!(
        preview["engine"], "sql",
        "the warehouse caught up: {preview}"
    );
    assert_eq!(preview["count"], 1);
    assert!(
        preview["sql"]
            .as_str()
            .unwrap()
            .contains("FROM events_resolved")
    );
    // The evaluator answers the same when asked.
    let (status, replayed) = server
        .admin_post("/v1/segments/preview?engine=replay", &big_spender)
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["engine"], "replay");
    assert_eq!(replayed["count"], 1);
    assert_eq!(replayed["sample"], preview["sample"]);
    put_applied(&server, "/v1/segments/big_spender", &big_spender).await;

    let u_1 = profile_id(&server, "user_id:u_1").await;
    let u_2 = profile_id(&server, "user_id:u_2").await;
    assert_eq!(members(&server, "big_spender").await, vec![u_1.clone()]);

    // The profile's segments and computed traits.
    let (status, segments) = server.admin_get("/v1/profiles/user_id:u_1/segments").await;
    assert_eq!(status, StatusCode::OK, "{segments}");
    assert_eq!(segments["segments"][0]["segment"], "big_spender");
    assert_eq!(segments["segments"][0]["member"], true);
    assert_eq!(segments["computed_traits"]["ltv"], json!(110.0));

    // Explanation: the node, its value and the facts.
    let (status, explained) = server
        .admin_get("/v1/profiles/user_id:u_1/segments/big_spender/explain")
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(explained["member"], true);
    assert_eq!(explained["explanation"]["value"], true);
    assert!(
        !explained["explanation"]["facts"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{explained}"
    );

    // Real time: u_2's next order crosses the threshold.
    let (_, _, _) = server.ingest("/v1/track", &order("u_2", "o4", 90.0)).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let current = members(&server, "big_spender").await;
        if current.contains(&u_2) {
            break;
        }
        assert!(Instant::now() < deadline, "u_2 never entered: {current:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The change is an event on the profile's timeline.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, events) = server.admin_get("/v1/profiles/user_id:u_2/events").await;
        let names: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|event| event["event"]["event"].as_str().or(event["event"].as_str()))
            .collect();
        if names.contains(&"Segment Entered") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Segment Entered event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // CSV and JSON lines list every member.
    let response = server
        .admin(
            Method::GET,
            "/v1/segments/big_spender/members?format=csv",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("profile_id,entered_at\n"));
    let response = server
        .admin(
            Method::GET,
            "/v1/segments/big_spender/members?format=jsonl&limit=1",
            None,
        )
        .await;
    let jsonl = response.text().await.unwrap();
    assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
    // Paging.
    let (_, first) = server
        .admin_get("/v1/segments/big_spender/members?limit=1")
        .await;
    assert_eq!(first["count"], 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = server
        .admin_get(&format!(
            "/v1/segments/big_spender/members?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["members"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    assert_ne!(first["members"][0], second["members"][0]);

    // A restart keeps memberships and does not emit the change again.
    let mut server = server;
    server.restart().await;
    server.catch_up().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.catch_up().await;
    for user in ["u_1", "u_2"] {
        let (_, profile) = server
            .admin_get(&format!("/v1/profiles/user_id:{user}"))
            .await;
        assert_eq!(
            profile["event_counts"]["track:Segment Entered"], 1,
            "{user}: {profile}"
        );
    }
    assert_eq!(members(&server, "big_spender").await.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_segment_definitions_get_precise_errors() {
    let server = TestServer::start().await;
    // Unknown operator: the path names the node.
    let (status, body) = server
        .admin_put(
            "/v1/segments/bad",
            &json!({"condition": {"op": "all", "of": [{"op": "trait", "path": "plan", "operator": "resembles", "value": 1}]}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    // Unknown field.
    let (status, body) = server
        .admin_put(
            "/v1/segments/bad",
            &json!({"condition": {"op": "performed", "event": "X"}, "colour": "blue"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    // Id differs from the key.
    let (status, body) = server
        .admin_put(
            "/v1/segments/bad",
            &json!({"id": "other", "condition": {"op": "performed", "event": "X"}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    // Absurd window.
    let (status, body) = server
        .admin_put(
            "/v1/segments/bad",
            &json!({"condition": {"op": "performed", "event": "X", "window": {"kind": "last", "n": 100000, "unit": "weeks"}}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert!(
        body["errors"][0]["path"]
            .as_str()
            .is_some_and(|path| path.contains("window")),
        "{body}"
    );
    // Unknown reference, then a cycle.
    let (status, body) = server
        .admin_put(
            "/v1/segments/a",
            &json!({"condition": {"op": "in_segment", "id": "b"}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    put_applied(
        &server,
        "/v1/segments/b",
        &json!({"condition": {"op": "performed", "event": "X"}}),
    )
    .await;
    put_applied(
        &server,
        "/v1/segments/a",
        &json!({"condition": {"op": "in_segment", "id": "b"}}),
    )
    .await;
    let (status, body) = server
        .admin_put(
            "/v1/segments/b",
            &json!({"condition": {"op": "in_segment", "id": "a"}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert!(
        body["message"].as_str().unwrap().contains("cycle"),
        "{body}"
    );
    // Deleting a segment another one uses.
    let (status, body) = server.admin_delete("/v1/segments/b").await;
    assert_error(status, &body, 409, "definition_conflict");
    // Members of an unknown segment; bad paging.
    let (status, body) = server.admin_get("/v1/segments/nope/members").await;
    assert_error(status, &body, 404, "definition_not_found");
    let (status, body) = server.admin_get("/v1/segments/a/members?limit=0").await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = server.admin_get("/v1/segments/a/members?format=xml").await;
    assert_error(status, &body, 400, "invalid_request");
    // A bad computed trait.
    let (status, body) = server
        .admin_put(
            "/v1/computed-traits/t",
            &json!({"kind": "aggregation", "event": "X"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    server.stop().await;
}
