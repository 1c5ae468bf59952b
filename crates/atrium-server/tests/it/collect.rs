//! Collection routes: every alias, write-key auth, body handling and abuse, CORS, settings.

use std::io::Write;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::harness::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

fn track(anonymous_id: &str, event: &str) -> Value {
    json!({"type": "track", "anonymousId": anonymous_id, "event": event})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collection_route_accepts_its_event() {
    let server = TestServer::start().await;
    let identify = json!({"userId": "u-route", "traits": {"plan": "pro"}});
    let track = json!({"anonymousId": "anon-route", "event": "Clicked"});
    let page = json!({"anonymousId": "anon-route", "name": "Home"});
    let screen = json!({"anonymousId": "anon-route", "name": "Home"});
    let group = json!({"userId": "u-route", "groupId": "g-1"});
    let alias = json!({"userId": "u-route", "previousId": "anon-route"});
    let batch = json!({"batch": [{"type": "track", "anonymousId": "anon-route", "event": "B"}]});
    let cases = [
        ("/v1/identify", &identify),
        ("/v1/track", &track),
        ("/v1/page", &page),
        ("/v1/screen", &screen),
        ("/v1/group", &group),
        ("/v1/alias", &alias),
        ("/v1/batch", &batch),
        ("/v1/import", &batch),
        ("/v1/b", &batch),
        ("/v1/t", &track),
        ("/v1/i", &identify),
        ("/v1/p", &page),
        ("/v1/s", &screen),
        ("/v1/g", &group),
        ("/v1/a", &alias),
    ];
    let mut last_end = 0;
    for (path, body) in cases {
        let (status, response, end) = server.ingest(path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {response}");
        assert_eq!(response["success"], true, "{path}: {response}");
        assert_eq!(response["accepted"], 1, "{path}: {response}");
        assert_eq!(response["rejected"], 0, "{path}: {response}");
        assert!(end > last_end, "{path}: log end did not advance");
        last_end = end;
    }

    // Mobile metrics: 200, nothing stored.
    let (status, response, _) = server
        .ingest(
            "/v1/m",
            &json!({"series": [{"type": "Counter", "metric": "x"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["success"], true);
    let (_, pipeline) = server.admin_get("/v1/pipeline").await;
    assert_eq!(pipeline["log_end_offset"], last_end, "{pipeline}");

    // Unknown collection routes: 404 in the error shape, whatever the method.
    let (status, body) = into_json(server.post("/v1/zzz", &track).await).await;
    assert_error(status, &body, 404, "route_not_found");
    let response = server
        .client
        .get(server.url("/v1/zzz"))
        .send()
        .await
        .unwrap();
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 404, "route_not_found");
    let (status, body) = into_json(
        server
            .client
            .get(server.url("/nothing/here"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "route_not_found");

    // Every stored event is readable on the profile it resolved to.
    let (status, events) = server
        .admin_get(&format!(
            "/v1/profiles/user_id:u-route/events?min_offset={last_end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["events"].as_array().unwrap().len(), 15, "{events}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_are_read_from_basic_auth_body_and_header() {
    let server = TestServer::start().await;
    let event = track("anon-auth", "Auth");
    let url = server.url("/v1/track");
    let send = |request: reqwest::RequestBuilder| async move {
        into_json(request.send().await.expect("sent")).await
    };

    // Basic `key:` and Basic `key` without the colon.
    for credentials in [format!("{WEB_KEY}:"), WEB_KEY.to_owned()] {
        let (status, body) = send(
            server
                .client
                .post(&url)
                .header(AUTHORIZATION, basic(&credentials))
                .json(&event),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{credentials}: {body}");
        assert_eq!(body["accepted"], 1, "{body}");
    }
    // writeKey in the body.
    let mut with_key = event.clone();
    with_key["writeKey"] = json!(WEB_KEY);
    let (status, body) = send(server.client.post(&url).json(&with_key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    // X-Write-Key.
    let (status, body) = send(
        server
            .client
            .post(&url)
            .header("x-write-key", SERVER_KEY)
            .json(&event),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");

    // Missing and unknown keys.
    let (status, body) = send(server.client.post(&url).json(&event)).await;
    assert_error(status, &body, 401, "missing_write_key");
    let (status, body) = send(
        server
            .client
            .post(&url)
            .basic_auth("wk_nobody_knows", Some(""))
            .json(&event),
    )
    .await;
    assert_error(status, &body, 401, "invalid_write_key");
    let mut unknown = event.clone();
    unknown["writeKey"] = json!("wk_nobody_knows");
    let (status, body) = send(server.client.post(&url).json(&unknown)).await;
    assert_error(status, &body, 401, "invalid_write_key");

    // Write keys cannot use admin routes; admin routes need a key.
    let admin_url = server.url("/v1/profiles");
    let (status, body) = send(server.client.get(&admin_url).bearer_auth(WEB_KEY)).await;
    assert_error(status, &body, 403, "invalid_admin_key");
    let (status, body) = send(server.client.get(&admin_url).basic_auth(WEB_KEY, Some(""))).await;
    assert_error(status, &body, 401, "missing_admin_key");
    let (status, body) = send(server.client.get(&admin_url)).await;
    assert_error(status, &body, 401, "missing_admin_key");
    let (status, body) = send(server.client.get(server.url("/v1/pipeline"))).await;
    assert_error(status, &body, 401, "missing_admin_key");
    let (status, body) = send(
        server
            .client
            .delete(server.url("/v1/profiles/anonymous_id:anon-auth"))
            .bearer_auth(SERVER_KEY),
    )
    .await;
    assert_error(status, &body, 403, "invalid_admin_key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_bodies_are_refused_and_the_server_survives() {
    let server = TestServer::start().await;
    let url = server.url("/v1/batch");
    let send_raw = |path: &str, body: Vec<u8>, headers: &[(&str, &str)]| {
        let mut request = server
            .client
            .post(server.url(path))
            .basic_auth(WEB_KEY, Some(""))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { into_json(request.send().await.expect("sent")).await }
    };

    // A good event first, so we can check it survives the abuse.
    let (status, body, end) = server
        .ingest("/v1/track", &track("anon-survivor", "Before"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);

    // text/plain JSON (sendBeacon) is accepted.
    let beacon = serde_json::to_vec(&track("anon-survivor", "Beacon")).unwrap();
    let (status, body) = send_raw("/v1/t", beacon, &[("content-type", "text/plain")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");

    // gzip is accepted.
    let batch =
        json!({"batch": [track("anon-survivor", "Gzip1"), track("anon-survivor", "Gzip2")]});
    let compressed = gzip(&serde_json::to_vec(&batch).unwrap());
    let (status, body) = send_raw("/v1/batch", compressed, &[("content-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");

    // Invalid gzip.
    let (status, body) = send_raw(
        "/v1/batch",
        b"\x1f\x8b\x08\x00this is not deflate".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_error(status, &body, 400, "invalid_gzip");
    let (status, body) = send_raw(
        "/v1/batch",
        b"{\"batch\": []}".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_error(status, &body, 400, "invalid_gzip");

    // Invalid JSON, truncated JSON, invalid UTF-8.
    for bad in [
        b"{not json".to_vec(),
        b"{\"batch\": [".to_vec(),
        b"{\"anonymousId\": \"\xff\xfe\", \"event\": \"x\"}".to_vec(),
    ] {
        let (status, body) = send_raw("/v1/track", bad.clone(), &[]).await;
        assert_error(status, &body, 400, "invalid_json");
    }
    // Valid JSON of the wrong shape.
    let (status, body) = send_raw("/v1/track", b"[1, 2]".to_vec(), &[]).await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = send_raw("/v1/batch", b"{\"batch\": {}}".to_vec(), &[]).await;
    assert_error(status, &body, 400, "invalid_request");

    // Bodies over 500 KB: just over, and well over the raw limit.
    for size in [500 * 1024 + 10, 600 * 1024, 2 * 1024 * 1024] {
        let padding = "x".repeat(size);
        let body = serde_json::to_vec(&json!({"batch": [], "padding": padding})).unwrap();
        let (status, body) = send_raw("/v1/batch", body, &[]).await;
        assert_error(status, &body, 400, "body_too_large");
    }
    // A gzip bomb: 50 KB on the wire, 20 MB inflated.
    let mut bomb_plain = b"{\"batch\": [], \"padding\": \"".to_vec();
    bomb_plain.extend(std::iter::repeat_n(b'a', 20 * 1024 * 1024));
    bomb_plain.extend_from_slice(b"\"}");
    let bomb = gzip(&bomb_plain);
    assert!(bomb.len() < 100 * 1024, "bomb is {} bytes", bomb.len());
    let (status, body) = send_raw("/v1/batch", bomb, &[("content-encoding", "gzip")]).await;
    assert_error(status, &body, 400, "body_too_large");

    // 2,501 events.
    let events: Vec<Value> = (0..2_501)
        .map(|i| track("anon-many", &format!("e{i}")))
        .collect();
    let (status, body) = into_json(
        server
            .client
            .post(&url)
            .basic_auth(WEB_KEY, Some(""))
            .json(&json!({"batch": events}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 400, "batch_too_large");

    // Deep nesting, at the top and inside properties.
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let nested_properties = format!(
        "{{\"anonymousId\": \"anon-deep\", \"event\": \"Deep\", \"properties\": {{\"x\": {}}}}}",
        deep(200)
    );
    let (status, body) = send_raw("/v1/track", nested_properties.into_bytes(), &[]).await;
    assert_error(status, &body, 400, "invalid_json");
    let nested_batch = format!(
        "{{\"batch\": [{{\"type\": \"track\", \"anonymousId\": \"anon-deep\", \"event\": \"Deep\", \"properties\": {{\"x\": {}}}}}]}}",
        deep(200)
    );
    let (status, body) = send_raw("/v1/batch", nested_batch.into_bytes(), &[]).await;
    assert_error(status, &body, 400, "invalid_json");
    let nested_objects = format!(
        "{}{}",
        "{\"a\":".repeat(200),
        "1".to_owned() + &"}".repeat(200)
    );
    let (status, body) = send_raw("/v1/track", nested_objects.into_bytes(), &[]).await;
    assert_error(status, &body, 400, "invalid_json");

    // Reasonable nesting, and brackets inside strings, are fine (and reach the profile).
    let fine = format!(
        "{{\"anonymousId\": \"anon-nest\", \"event\": \"Nested\", \"properties\": {{\"x\": {}, \"s\": \"{}\"}}}}",
        deep(90),
        "[{".repeat(300)
    );
    let (status, body) = send_raw("/v1/track", fine.into_bytes(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");

    // Wrong types: rejected one by one, the rest accepted.
    let batch = json!({"batch": [
        track("anon-types", "Good"),
        {"type": "track", "userId": {}, "event": "BadUser"},
        {"type": "track", "anonymousId": "anon-types", "event": "BadProps", "properties": "x"},
        {"type": "teleport", "anonymousId": "anon-types"},
        track("anon-types", "AlsoGood"),
    ]});
    let (status, body, _) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["rejected"], 3, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 2, 3], "{body}");
    assert_eq!(errors[0]["code"], "invalid_field", "{body}");
    assert_eq!(errors[1]["code"], "invalid_field", "{body}");
    assert_eq!(errors[2]["code"], "invalid_type", "{body}");
    // Single-event routes: the event is rejected, the request still succeeds.
    let (status, body, _) = server
        .ingest("/v1/track", &json!({"userId": {}, "event": "x"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(0), Some(1))
    );

    // One event over 32 KB inside a batch is rejected alone.
    let big = json!({"type": "track", "anonymousId": "anon-big", "event": "Big",
        "properties": {"blob": "y".repeat(40 * 1024)}});
    let batch = json!({"batch": [track("anon-big", "Small"), big, track("anon-big", "Small2")]});
    let (status, body, _) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["rejected"], 1, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert_eq!(body["errors"][0]["code"], "event_too_large", "{body}");

    // Still alive, and the earlier events are still there.
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let end = end.max(server.catch_up().await);
    let (status, events) = server
        .admin_get(&format!(
            "/v1/profiles/anonymous_id:anon-survivor/events?min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let names: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for name in ["Before", "Beacon", "Gzip1", "Gzip2"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let (status, profile) = server
        .admin_get("/v1/profiles/anonymous_id:anon-types")
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["event_total"], 2, "{profile}");
    let (status, profile) = server
        .admin_get("/v1/profiles/anonymous_id:anon-nest")
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["event_total"], 1, "{profile}");
    // Nothing accepted was skipped by the pipeline.
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "atrium_pipeline_events_skipped_total"),
        0.0
    );
    assert_eq!(
        metric(&metrics, "atrium_pipeline_events_applied_total"),
        metric(&metrics, "atrium_ingest_events_accepted_total")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_mirrors_the_origin() {
    let server = TestServer::start().await;
    let origin = "https://shop.example.com";
    let response = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/v1/t"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-retry-count",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(header("access-control-allow-origin"), origin);
    let allowed = header("access-control-allow-headers");
    for name in ["authorization", "content-type", "x-retry-count"] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(header("access-control-allow-methods").contains("post"));

    // The actual request carries the mirrored origin too.
    let response = server
        .client
        .post(server.url("/v1/t"))
        .header("origin", origin)
        .basic_auth(WEB_KEY, Some(""))
        .header(CONTENT_ENCODING, "identity")
        .json(&track("anon-cors", "Cors"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["access-control-allow-origin"]
            .to_str()
            .unwrap(),
        origin
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_settings_name_the_write_key() {
    let server = TestServer::start().await;
    for key in [WEB_KEY, SERVER_KEY] {
        let response = server
            .client
            .get(server.url(&format!("/v1/projects/{key}/settings")))
            .send()
            .await
            .unwrap();
        let (status, settings) = into_json(response).await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        assert_eq!(settings["integrations"]["Segment.io"]["apiKey"], key);
        assert!(settings["integrations"]["Segment.io"]["apiHost"].is_string());
    }
    let response = server
        .client
        .get(server.url("/v1/projects/wk_nobody_knows/settings"))
        .send()
        .await
        .unwrap();
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 401, "invalid_write_key");
    server.stop().await;
}
