//! RFM population quintiles through the HTTP API: a quintile trait is null until computed, the
//! recompute route reads every profile's orders from the warehouse and writes the cut points
//! as a new definition version, profiles get their scores, the schedule computes new traits,
//! and bad requests get clear 4xx errors.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn timestamp(ms: i64) -> String {
    atrium_types::format_timestamp_ms(ms)
}

/// Revenue of user `i`'s first order: a permutation of 10, 20, …, 250 (7 is prime to 25), so
/// the monetary rank differs from the frequency rank.
fn first_order_revenue(i: i64) -> f64 {
    10.0 * ((7 * i) % 25 + 1) as f64
}

/// Orders of `users` profiles: user `i` (1-based) orders `i` times, last `i - 1` days (and an
/// hour) ago; the first order carries all the revenue.
fn orders(users: i64, now: i64) -> Value {
    let mut batch = Vec::new();
    for i in 1..=users {
        let last = now - (i - 1) * DAY_MS - HOUR_MS;
        for k in 0..i {
            let revenue = if k == 0 { first_order_revenue(i) } else { 0.0 };
            batch.push(json!({
                "type": "track", "userId": format!("u_{i}"), "event": "Order Completed",
                "timestamp": timestamp(last - k * 60_000),
                "properties": {"order_id": format!("o_{i}_{k}"), "revenue": revenue, "currency": "USD"}
            }));
        }
    }
    json!({ "batch": batch })
}

/// A server (RFM schedule every `period` seconds, 0: never) holding `users` customers' orders,
/// with the quintile RFM trait `rfm_q` defined.
async fn shop_with_quintile_trait(period: u64, users: i64) -> TestServer {
    let server =
        TestServer::start_with(move |config| config.segments.rfm_period_seconds = period).await;
    let (status, body, _) = server.ingest("/v1/batch", &orders(users, now_ms())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.catch_up().await;
    put_applied(
        &server,
        "/v1/computed-traits/rfm_q",
        &json!({"kind": "rfm", "rfm": {"quintiles": true}}),
    )
    .await;
    server
}

async fn trait_value(server: &TestServer, user: &str, key: &str) -> Value {
    let (status, segments) = server
        .admin_get(&format!("/v1/profiles/user_id:{user}/segments"))
        .await;
    assert_eq!(status, StatusCode::OK, "{segments}");
    segments["computed_traits"][key].clone()
}

fn assert_close(actual: &Value, expected: [f64; 4]) {
    let actual: Vec<f64> = actual
        .as_array()
        .unwrap_or_else(|| panic!("cut points: {actual}"))
        .iter()
        .map(|cut| cut.as_f64().unwrap())
        .collect();
    for (cut, expected_cut) in actual.iter().zip(expected) {
        assert!(
            (cut - expected_cut).abs() < 1e-9,
            "{actual:?} != {expected:?}"
        );
    }
    assert_eq!(actual.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quintile_rfm_scores_are_recomputed_across_profiles() {
    let server = shop_with_quintile_trait(0, 25).await;
    // Not computed yet: null for everyone.
    assert_eq!(trait_value(&server, "u_1", "rfm_q").await, Value::Null);

    let (status, outcome) = server
        .admin_post("/v1/computed-traits/rfm_q/rfm/recompute", &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    assert_eq!(outcome["status"], "updated");
    assert_eq!(outcome["population"], 25);
    assert_eq!(outcome["version"], 2);
    // numpy.percentile(range(25), [20, 40, 60, 80]) and of range(1, 26), ×10 for revenue.
    assert_close(
        &outcome["thresholds"]["recency_days"],
        [4.8, 9.6, 14.4, 19.2],
    );
    assert_close(&outcome["thresholds"]["frequency"], [5.8, 10.6, 15.4, 20.2]);
    assert_close(
        &outcome["thresholds"]["monetary"],
        [58.0, 106.0, 154.0, 202.0],
    );
    server
        .wait_applied(outcome["min_offset"].as_u64().unwrap())
        .await;

    // The cut points are in the stored definition, with what they were computed over.
    let (status, stored) = server.admin_get("/v1/computed-traits/rfm_q").await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["version"], 2);
    let rfm = &stored["definition"]["rfm"];
    assert_eq!(rfm["quintiles"], true);
    assert_eq!(rfm["frequency"], outcome["thresholds"]["frequency"]);
    assert_eq!(rfm["computed"]["population"], 25);
    assert_eq!(rfm["computed"]["at"], outcome["computed_at"]);

    // Every profile's scores: a fifth of the population per score in each dimension.
    let mut counts = [[0; 5]; 3];
    for i in 1..=25i64 {
        let recency = 5 - (i - 1) / 5;
        let frequency = (i - 1) / 5 + 1;
        let monetary = ((7 * i) % 25) / 5 + 1;
        let expected = json!({"r": recency, "f": frequency, "m": monetary,
                              "score": format!("{recency}{frequency}{monetary}")});
        let value = trait_value(&server, &format!("u_{i}"), "rfm_q").await;
        assert_eq!(value, expected, "u_{i}");
        for (dimension, score) in [recency, frequency, monetary].into_iter().enumerate() {
            counts[dimension][(score - 1) as usize] += 1;
        }
    }
    assert_eq!(counts, [[5; 5]; 3]);

    // Recomputing over the same population writes the same cut points as a new version.
    let (status, again) = server
        .admin_post("/v1/computed-traits/rfm_q/rfm/recompute", &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["version"], 3);
    assert_eq!(again["thresholds"], outcome["thresholds"]);

    // Bad requests.
    let (status, error) = server
        .admin_post("/v1/computed-traits/nope/rfm/recompute", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert_eq!(error["code"], "definition_not_found");
    assert!(
        error["message"].as_str().unwrap().contains("`nope`"),
        "{error}"
    );
    put_applied(
        &server,
        "/v1/computed-traits/ltv",
        &json!({"kind": "lifetime_value"}),
    )
    .await;
    let (status, error) = server
        .admin_post("/v1/computed-traits/ltv/rfm/recompute", &json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "invalid_request");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is a `lifetime_value` trait, not `rfm`"),
        "{error}"
    );
    put_applied(
        &server,
        "/v1/computed-traits/rfm_fixed",
        &json!({"kind": "rfm", "rfm": {"recency_days": [1, 7, 30, 90], "frequency": [1, 2, 5, 10], "monetary": [50, 100, 500, 1000]}}),
    )
    .await;
    let (status, error) = server
        .admin_post("/v1/computed-traits/rfm_fixed/rfm/recompute", &json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("has fixed rfm thresholds"),
        "{error}"
    );
    // Fixed thresholds still score with their own rule.
    assert_eq!(
        trait_value(&server, "u_2", "rfm_fixed").await,
        json!({"r": 5, "f": 3, "m": 3, "score": "533"})
    );
    // A malformed quintile definition is refused with its path.
    let (status, error) = server
        .admin_put(
            "/v1/computed-traits/rfm_bad",
            &json!({"kind": "rfm", "rfm": {"quintiles": true, "frequency": [1, 2, 3, 4]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "invalid_definition");
    assert_eq!(error["errors"][0]["path"], "/rfm/recency_days", "{error}");
    // No body needed.
    let response = server
        .admin(
            reqwest::Method::POST,
            "/v1/computed-traits/rfm_q/rfm/recompute",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_computes_new_quintile_traits() {
    let server = shop_with_quintile_trait(1, 5).await;
    let deadline = Instant::now() + DEADLINE;
    let computed = loop {
        let (status, stored) = server.admin_get("/v1/computed-traits/rfm_q").await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        if stored["definition"]["rfm"]["computed"].is_object() {
            break stored;
        }
        assert!(Instant::now() < deadline, "not computed: {stored}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rfm = &computed["definition"]["rfm"];
    assert_eq!(rfm["computed"]["population"], 5);
    // numpy.percentile([0, 1, 2, 3, 4], [20, 40, 60, 80]) == [0.8, 1.6, 2.4, 3.2]
    assert_close(&rfm["recency_days"], [0.8, 1.6, 2.4, 3.2]);
    server.catch_up().await;
    // u_5: 4 days ago, 5 orders, revenue rank (35 % 25) + 1 = 11 of 10..250 → 110 → m = 3.
    let value = trait_value(&server, "u_5", "rfm_q").await;
    assert_eq!(value["r"], 1, "{value}");
    assert_eq!(value["f"], 5, "{value}");
    assert_eq!(value["m"], 3, "{value}");
    server.stop().await;
}
