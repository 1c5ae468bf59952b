//! Experiment results end to end: generated exposures and orders ingested over HTTP, metrics and
//! experiments defined over HTTP, results read over HTTP. A planted lift is found; an A/A test
//! shows nothing. Server-side evaluation logs its exposures.

use atrium_gen::PlantedExperiment;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const PLANTED_LIFT: f64 = 0.25;

async fn define(server: &TestServer, path: &str, body: Value) -> u64 {
    let (status, written) = server.admin_put(path, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{path}: {written}");
    written["min_offset"].as_u64().unwrap()
}

async fn define_metrics(server: &TestServer) {
    let metrics = [
        (
            "purchase",
            json!({"type": "conversion", "event": "Order Completed", "window_hours": 72, "name": "Purchase"}),
        ),
        (
            "revenue",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue",
                   "covariate": {"lookback_days": 14}, "cap": {"type": "percentile", "value": 0.999}}),
        ),
        (
            "orders",
            json!({"type": "count", "event": "Order Completed"}),
        ),
        (
            "aov",
            json!({"type": "ratio", "numerator": "revenue", "denominator": "orders"}),
        ),
    ];
    for (key, body) in metrics {
        define(server, &format!("/v1/metrics/{key}"), body).await;
    }
}

fn experiment(feature: &str) -> Value {
    json!({
        "feature": feature,
        "variations": [{"value": false, "name": "control"}, {"value": true, "name": "treatment"}],
        "status": "running",
        "started_at": "2026-02-01T00:00:00.000Z",
        "goal_metrics": ["purchase", "revenue"],
        "guardrail_metrics": ["aov"],
    })
}

/// Sends generated events through `/v1/batch`; returns the log end after the last batch.
async fn ingest_generated(server: &TestServer, events: Vec<Value>) -> u64 {
    let mut end = 0;
    let mut batch = Vec::with_capacity(500);
    let total = events.len();
    for (index, mut event) in events.into_iter().enumerate() {
        atrium_gen::take_source(&mut event);
        batch.push(event);
        if batch.len() == 500 || index + 1 == total {
            let body = json!({"batch": std::mem::take(&mut batch)});
            let (status, response, log_end) = server.ingest("/v1/batch", &body).await;
            assert_eq!(status, StatusCode::OK, "{response}");
            assert_eq!(response["rejected"], 0, "{response}");
            end = log_end;
        }
    }
    end
}

/// The report; retries while the server answers 429 (pipeline or warehouse still catching up,
/// which takes a while for tens of thousands of events in a debug build).
async fn results(server: &TestServer, key: &str, query: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, report) = server
            .admin_get(&format!("/v1/experiments/{key}/results?{query}"))
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{report}");
        return report;
    }
}

fn metric<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|metric| metric["key"] == key)
        .unwrap_or_else(|| panic!("metric {key} missing: {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_effect_is_found_and_an_aa_test_shows_none() {
    let server = TestServer::start().await;
    define_metrics(&server).await;
    define(
        &server,
        "/v1/experiments/checkout-ab",
        experiment("new-checkout"),
    )
    .await;
    let last = define(
        &server,
        "/v1/experiments/checkout-aa",
        experiment("same-checkout"),
    )
    .await;
    server.wait_applied(last).await;

    let mut events = PlantedExperiment::ab(7, "checkout-ab", 8_000, PLANTED_LIFT).events();
    events.extend(PlantedExperiment::aa(8, "checkout-aa", 4_000).events());
    let end = ingest_generated(&server, events).await;

    let report = results(&server, "checkout-ab", &format!("min_offset={end}")).await;
    let users: Vec<u64> = report["variations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variation| variation["users"].as_u64().unwrap())
        .collect();
    assert_eq!(users.iter().sum::<u64>(), 8_000, "{report}");
    assert_eq!(report["srm"]["passed"], true, "{report}");
    for key in ["purchase", "revenue"] {
        let effect = &metric(&report, key)["effects"][0];
        let p_value = effect["p_value"].as_f64().unwrap();
        let ci = [
            effect["ci"][0].as_f64().unwrap(),
            effect["ci"][1].as_f64().unwrap(),
        ];
        assert!(p_value < 0.05, "{key}: not significant: {effect}");
        assert!(
            effect["expected"].as_f64().unwrap() > 0.0,
            "{key}: {effect}"
        );
        assert!(
            ci[0] <= PLANTED_LIFT && PLANTED_LIFT <= ci[1],
            "{key}: the interval {ci:?} misses the planted lift"
        );
    }
    let revenue = metric(&report, "revenue");
    assert_eq!(revenue["cuped"], true);
    assert!(
        revenue["effects"][0]["theta"].as_f64().unwrap() > 0.0,
        "{revenue}"
    );
    assert!(revenue["cap_value"].as_f64().is_some());
    // The order value does not depend on the variation: revenue per order is flat.
    let aov = metric(&report, "aov");
    assert_eq!(aov["role"], "guardrail");
    assert!(
        aov["effects"][0]["p_value"].as_f64().unwrap() > 0.01,
        "{aov}"
    );

    let aa = results(&server, "checkout-aa", "").await;
    assert_eq!(aa["srm"]["passed"], true, "{aa}");
    for key in ["purchase", "revenue"] {
        let effect = &metric(&aa, key)["effects"][0];
        assert!(
            effect["p_value"].as_f64().unwrap() > 0.05,
            "{key}: the A/A test shows an effect: {effect}"
        );
    }

    // Corrections across goal metrics, Bayesian, sequential and a breakdown.
    let corrected = results(&server, "checkout-ab", "correction=holm-bonferroni").await;
    for key in ["purchase", "revenue"] {
        let effect = &metric(&corrected, key)["effects"][0];
        assert!(
            effect["p_value_adjusted"].as_f64().unwrap() >= effect["p_value"].as_f64().unwrap()
        );
    }
    assert!(metric(&corrected, "aov")["effects"][0]["p_value_adjusted"].is_null());
    let bayesian = results(&server, "checkout-ab", "engine=bayesian").await;
    let chance = metric(&bayesian, "purchase")["effects"][0]["chance_to_win"]
        .as_f64()
        .unwrap();
    assert!(chance > 0.95, "{chance}");
    let sequential = results(&server, "checkout-ab", "sequential=5000").await;
    let wide = &metric(&sequential, "purchase")["effects"][0]["ci"];
    let narrow = &metric(&report, "purchase")["effects"][0]["ci"];
    assert!(
        wide[1].as_f64().unwrap() - wide[0].as_f64().unwrap()
            > narrow[1].as_f64().unwrap() - narrow[0].as_f64().unwrap()
    );
    let by_channel = results(&server, "checkout-ab", "dimension=channel").await;
    assert_eq!(by_channel["dimension"]["slices"][0]["value"], "web");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_evaluation_logs_exposures_once_per_user_and_variation() {
    let server = TestServer::start().await;
    define_metrics(&server).await;
    let mut body = experiment("banner");
    body["started_at"] = json!("2020-01-01T00:00:00.000Z");
    let last = define(&server, "/v1/experiments/banner-test", body).await;
    server.wait_applied(last).await;

    for _ in 0..2 {
        let response = server
            .client
            .post(server.url(&format!("/api/eval/{CLIENT_KEY}")))
            .json(&json!({"attributes": {"id": "u-eval-1"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags/banner"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"context": {"targetingKey": "u-eval-2", "anonymousId": "device-2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let end = server.catch_up().await;

    let report = results(&server, "banner-test", &format!("min_offset={end}")).await;
    let users: u64 = report["variations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variation| variation["users"].as_u64().unwrap())
        .sum();
    assert_eq!(users, 2, "{report}");
    let (status, rows) = server
        .admin_post(
            "/v1/sql",
            &json!({"query": "SELECT user_id, anonymous_id, source, prop_text(properties, 'variation_id') AS variation \
                              FROM events WHERE event = 'Experiment Viewed' ORDER BY user_id"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2,
        "the repeated evaluation is deduplicated: {rows:?}"
    );
    assert_eq!(rows[0]["user_id"], "u-eval-1");
    assert_eq!(rows[0]["source"], "experiments");
    assert_eq!(rows[1]["user_id"], "u-eval-2");
    assert_eq!(rows[1]["anonymous_id"], "device-2");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metrics_and_result_requests_get_clear_errors() {
    let server = TestServer::start().await;
    let (status, body) = server
        .admin_put(
            "/v1/metrics/broken",
            &json!({"type": "sum", "event": "Order Completed", "value": "currency"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert_eq!(body["errors"][0]["path"], "metric.value", "{body}");
    let (status, body) = server
        .admin_put(
            "/v1/metrics/broken",
            &json!({"type": "median", "event": "x"}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");

    let (status, body) = server.admin_get("/v1/experiments/nope/results").await;
    assert_error(status, &body, 404, "definition_not_found");

    let mut body = experiment("flag");
    body["goal_metrics"] = json!(["undefined-metric"]);
    let last = define(&server, "/v1/experiments/orphan", body).await;
    server.wait_applied(last).await;
    let (status, body) = server.admin_get("/v1/experiments/orphan/results").await;
    assert_error(status, &body, 404, "definition_not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("undefined-metric")
    );

    for query in [
        "engine=magic",
        "alpha=2",
        "alpha=abc",
        "dimension=traits",
        "correction=bonferroni",
        "engine=bayesian&sequential=100",
        "colour=blue",
    ] {
        let (status, body) = server
            .admin_get(&format!("/v1/experiments/orphan/results?{query}"))
            .await;
        assert_error(status, &body, 400, "invalid_request");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{query}");
    }
    server.stop().await;
}

/// A bandit whose treatment converts 25 % better: an on-demand update moves traffic towards the
/// treatment, writes the weights as a new definition version through the log, and the results
/// endpoint reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandit_update_moves_traffic_to_the_better_arm() {
    let server = TestServer::start().await;
    define_metrics(&server).await;
    let mut body = experiment("bandit-checkout");
    body["bandit"] = json!({"decision_metric": "purchase"});
    let last = define(&server, "/v1/experiments/checkout-bandit", body).await;
    server.wait_applied(last).await;
    let end = ingest_generated(
        &server,
        PlantedExperiment::ab(11, "checkout-bandit", 6_000, PLANTED_LIFT).events(),
    )
    .await;
    // The update reads the warehouse: wait until the exposures are queryable.
    results(&server, "checkout-bandit", &format!("min_offset={end}")).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let outcome = loop {
        let (status, outcome) = server
            .admin_post("/v1/experiments/checkout-bandit/bandit/update", &json!({}))
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
        break outcome;
    };
    assert_eq!(outcome["status"], "updated", "{outcome}");
    let weights: Vec<f64> = outcome["update"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|weight| weight.as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 2, "{outcome}");
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{outcome}"
    );
    assert!(
        weights[1] > 0.9 && weights[0] > 0.005,
        // The 1 % floor is applied before renormalizing (as gbstats does): the control keeps ~1 %.
        "treatment should get most traffic, control keeps about the floor: {outcome}"
    );
    server
        .wait_applied(outcome["min_offset"].as_u64().unwrap())
        .await;

    let (status, stored) = server.admin_get("/v1/experiments/checkout-bandit").await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["version"], 2, "{stored}");
    let report = results(&server, "checkout-bandit", "").await;
    assert_eq!(report["bandit"]["updates"], 1, "{report}");
    assert_eq!(
        report["bandit"]["weights"], outcome["update"]["weights"],
        "{report}"
    );
    server.stop().await;
}
