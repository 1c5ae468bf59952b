//! Operations: metrics, the OpenAPI document against the router, rate limits, concurrency.

use std::time::Duration;

use atrium_server::ops::{Auth, ROUTES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_openapi_and_every_documented_route_exist() {
    let server = TestServer::start().await;
    let (_, _, end) = server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u-routes", "traits": {"email": "routes@example.com"}}),
        )
        .await;
    let (_, _, end2) = server
        .ingest("/v1/identify", &json!({"userId": "u-routes-delete"}))
        .await;
    server.wait_applied(end.max(end2)).await;
    let definitions = [
        ("/v1/features/routes-flag", json!({"defaultValue": true})),
        (
            "/v1/experiments/routes-exp",
            json!({"feature": "routes-flag", "variations": [{"value": false}, {"value": true}]}),
        ),
        (
            "/v1/saved-groups/routes-group",
            json!({"values": ["u-routes"]}),
        ),
        (
            "/v1/metrics/routes-metric",
            json!({"type": "conversion", "event": "Route"}),
        ),
        (
            "/v1/computed-traits/routes-trait",
            json!({"kind": "rfm", "event": "Route", "rfm": {"quintiles": true}}),
        ),
        (
            "/v1/segments/routes-seg",
            json!({"condition": {"op": "performed", "event": "Route"}}),
        ),
    ];
    for (path, body) in &definitions {
        let (status, written) = server.admin_put(path, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{written}");
        server
            .wait_applied(written["min_offset"].as_u64().unwrap())
            .await;
    }

    let metrics = server.metrics().await;
    for name in [
        "atrium_ingest_events_accepted_total",
        "atrium_pipeline_freshness_seconds_bucket",
        "atrium_pipeline_applied_offset",
        "atrium_ingest_ack_latency_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(metric(&metrics, "atrium_ingest_events_accepted_total"), 2.0);
    assert_eq!(
        metric(&metrics, "atrium_pipeline_events_applied_total"),
        2.0
    );

    let response = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, document) = into_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    for (method, path, _, _) in ROUTES {
        assert!(
            document["paths"][*path][*method].is_object(),
            "{method} {path} missing from /openapi.json"
        );
    }

    // Every documented route is routed (deletion last: it erases its profile).
    let mut routes: Vec<_> = ROUTES.iter().collect();
    routes.sort_by_key(|(method, _, _, _)| *method == "delete");
    for (method, path, _, auth) in routes {
        let profile = if *method == "delete" {
            "user_id:u-routes-delete"
        } else {
            "user_id:u-routes"
        };
        let definition_key = if path.starts_with("/v1/experiments") {
            "routes-exp"
        } else if path.starts_with("/v1/saved-groups") {
            "routes-group"
        } else if path.starts_with("/v1/metrics") {
            "routes-metric"
        } else if path.starts_with("/v1/segments") || path.contains("/segments/") {
            "routes-seg"
        } else if path.starts_with("/v1/computed-traits") {
            "routes-trait"
        } else {
            "routes-flag"
        };
        let path = path
            .replace("{writeKey}", WEB_KEY)
            .replace("{profile}", profile)
            .replace("{key}", definition_key)
            .replace("{clientKey}", CLIENT_KEY)
            .replace("{item}", "routes-item");
        let path = if path == "/v1/recommendations" && *method == "get" {
            "/v1/recommendations?placement=trending".to_owned()
        } else {
            path
        };
        let method: Method = method.to_ascii_uppercase().parse().unwrap();
        let definition = definitions
            .iter()
            .find(|(definition_path, _)| *definition_path == path)
            .map(|(_, body)| body.clone());
        let body = if let Some(definition) = definition {
            definition
        } else if path.starts_with("/ofrep/") {
            json!({"context": {"targetingKey": "u-routes"}})
        } else if path.starts_with("/api/eval/") {
            json!({"attributes": {"id": "u-routes"}})
        } else if path.starts_with("/v1/recommendations") {
            json!({"placement": "trending"})
        } else if path == "/v1/catalog/items" {
            json!({"items": [{"id": "routes-item", "name": "Route item", "price": 1.0}]})
        } else if path == "/v1/segments/preview" {
            json!({"condition": {"op": "performed", "event": "Route"}})
        } else if path == "/v1/sql" {
            json!({"query": "SELECT count(*) FROM events"})
        } else if let Some(kind) = path.strip_prefix("/v1/analytics/") {
            analytics_example(kind)
        } else if path.ends_with("/traits") {
            json!({"traits": {"checked": true}})
        } else if path.ends_with("/batch") || path.ends_with("/import") || path.ends_with("/b") {
            json!({"batch": [{"type": "track", "userId": "u-routes", "event": "Route"}]})
        } else {
            json!({"userId": "u-routes", "event": "Route", "groupId": "g", "previousId": "a-routes"})
        };
        let mut request = server.client.request(method.clone(), server.url(&path));
        request = match auth {
            Auth::WriteKey => request.basic_auth(WEB_KEY, Some("")),
            Auth::Secret => request.bearer_auth(ADMIN_KEY),
            Auth::ClientKey => request.bearer_auth(CLIENT_KEY),
            Auth::None => request,
        };
        if method == Method::POST || method == Method::PUT {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if path.starts_with("/sub/") {
            // An endless event stream: the headers are enough.
            assert!(status.is_success(), "{method} {path}: {status}");
            continue;
        }
        let text = response.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| body.get("code").cloned());
        assert_ne!(code, Some(json!("route_not_found")), "{method} {path}");
        let shown: String = text.chars().take(300).collect();
        assert!(status.is_success(), "{method} {path}: {status} {shown}");
    }
    server.stop().await;
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let server = TestServer::start_with(|config| config.rate_limit_per_key = 5).await;
    let event = json!({"anonymousId": "anon-rate", "event": "Burst"});
    // Start at the beginning of a second, so the burst stays inside one window.
    for _attempt in 0..3 {
        let into_second = now_ms() % 1_000;
        tokio::time::sleep(Duration::from_millis(
            (1_000 - into_second as u64) % 1_000 + 5,
        ))
        .await;
        let started = now_ms();
        let mut statuses = Vec::new();
        let mut retry_after = Vec::new();
        for _ in 0..9 {
            let response = server.post("/v1/t", &event).await;
            statuses.push(response.status().as_u16());
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                retry_after.push(response.headers().get("retry-after").cloned());
                let (status, body) = into_json(response).await;
                assert_error(status, &body, 429, "rate_limited");
            }
        }
        if now_ms() / 1_000 != started / 1_000 {
            continue; // the burst straddled a second: try again
        }
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429, 429]);
        for value in retry_after {
            let value = value.expect("Retry-After header");
            assert!(value.to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
        // Per key: the other source is not throttled.
        let response = server
            .post_as(
                SERVER_KEY,
                "/v1/t",
                &json!({"userId": "u-rate", "event": "x"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        // The next second is a fresh window.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(server.post("/v1/t", &event).await.status(), StatusCode::OK);
        let metrics = server.metrics().await;
        assert!(metric(&metrics, "atrium_ingest_requests_throttled_total") >= 4.0);
        server.stop().await;
        return;
    }
    panic!("could not fit a burst of 9 requests into one second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_all_accepted_and_applied() {
    const TASKS: usize = 8;
    const REQUESTS: usize = 25;
    const EVENTS: usize = 20;
    let server = TestServer::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let client = server.client.clone();
        let url = server.url("/v1/batch");
        tasks.spawn(async move {
            let mut accepted = 0;
            let mut end = 0;
            for request in 0..REQUESTS {
                let batch: Vec<Value> = (0..EVENTS)
                    .map(|event| {
                        json!({"type": "track", "anonymousId": format!("anon-c{task}-{}", event % 4),
                               "event": "Concurrent", "messageId": format!("c-{task}-{request}-{event}")})
                    })
                    .collect();
                let response = client
                    .post(&url)
                    .basic_auth(WEB_KEY, Some(""))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status(), StatusCode::OK);
                end = end.max(log_end(&response));
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["rejected"], 0, "{body}");
                accepted += body["accepted"].as_u64().unwrap();
            }
            (accepted, end)
        });
    }
    let mut accepted = 0;
    let mut end = 0;
    while let Some(result) = tasks.join_next().await {
        let (task_accepted, task_end) = result.expect("task did not panic");
        accepted += task_accepted;
        end = end.max(task_end);
    }
    let total = (TASKS * REQUESTS * EVENTS) as u64;
    assert_eq!(accepted, total);
    assert_eq!(end, total, "every accepted event is one log record");
    server.wait_applied(end).await;

    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "atrium_ingest_events_accepted_total"),
        total as f64
    );
    assert_eq!(
        metric(&metrics, "atrium_pipeline_events_applied_total"),
        total as f64
    );
    assert_eq!(metric(&metrics, "atrium_pipeline_lag_records"), 0.0);
    // The warehouse catches up too (in the background), and its gauges say so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await;
        if metric(&metrics, "atrium_warehouse_visible_offset") == total as f64 {
            assert_eq!(metric(&metrics, "atrium_warehouse_lag_records"), 0.0);
            // Present (`metric` panics otherwise); their values depend on flush timing.
            metric(&metrics, "atrium_warehouse_files");
            metric(&metrics, "atrium_warehouse_memory_files_bytes");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the warehouse did not catch up: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, list) = server.admin_get("/v1/profiles?limit=500").await;
    assert_eq!(list["total"], (TASKS * 4) as u64, "{list}");
    let counted: u64 = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|profile| profile["event_total"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, total);
    server.stop().await;
}

/// A small valid request for each analytics route.
fn analytics_example(kind: &str) -> Value {
    let mut body = json!({"from": "2026-01-01", "to": "2026-02-01", "time_zone": "Europe/Paris"});
    match kind {
        "funnel" => {
            body["steps"] = json!([{"event": "Route"}, {"event": "Order Completed"}]);
            body["window"] = json!({"value": 1, "unit": "day"});
        }
        "retention" => {
            body["granularity"] = json!("week");
            body["start"] = json!({"event": "Route"});
            body["periods"] = json!(2);
        }
        "paths" => body["anchor"] = json!({"event": "Route"}),
        _ => {}
    }
    body
}
