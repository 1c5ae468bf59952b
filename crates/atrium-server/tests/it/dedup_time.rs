//! messageId deduplication (per source, across restarts), clock-skew correction, client ip.

use atrium_types::{format_timestamp_ms, parse_timestamp_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_are_deduplicated_per_source_and_across_restarts() {
    let mut server = TestServer::start().await;
    let event = |id: &str| {
        json!({"anonymousId": "anon-dedup", "event": "Paid", "messageId": id,
               // An old event time: dedup is by arrival, not by event time.
               "timestamp": format_timestamp_ms(now_ms() - 3 * 86_400_000)})
    };
    let counts = |body: &Value| {
        (
            body["accepted"].as_u64().unwrap(),
            body["duplicates"].as_u64().unwrap(),
        )
    };

    let (status, body, _) = server.ingest("/v1/track", &event("m-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(counts(&body), (1, 0), "{body}");
    let (_, body, _) = server.ingest("/v1/track", &event("m-1")).await;
    assert_eq!(counts(&body), (0, 1), "{body}");
    // Inside one batch.
    let batch = json!({"batch": [
        {"type": "track", "anonymousId": "anon-dedup", "event": "A", "messageId": "m-2"},
        {"type": "track", "anonymousId": "anon-dedup", "event": "A", "messageId": "m-2"},
        {"type": "track", "anonymousId": "anon-dedup", "event": "A", "messageId": "m-1"},
    ]});
    let (_, body, _) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(counts(&body), (1, 2), "{body}");
    // Another source may reuse the id.
    let (_, body, _) = server
        .ingest_as(SERVER_KEY, "/v1/track", &event("m-1"))
        .await;
    assert_eq!(counts(&body), (1, 0), "{body}");

    // After the pipeline applied them, and after a restart, they are still duplicates.
    server.catch_up().await;
    server.restart().await;
    let (status, body, _) = server.ingest("/v1/track", &event("m-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(counts(&body), (0, 1), "{body}");
    let (_, body, _) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(counts(&body), (0, 3), "{body}");
    let (_, body, _) = server
        .ingest_as(SERVER_KEY, "/v1/track", &event("m-1"))
        .await;
    assert_eq!(counts(&body), (0, 1), "{body}");

    // Events appended but not yet applied before a restart are remembered too.
    let (_, body, _) = server.ingest("/v1/track", &event("m-3")).await;
    assert_eq!(counts(&body), (1, 0), "{body}");
    server.restart().await;
    let (_, body, end) = server.ingest("/v1/track", &event("m-3")).await;
    assert_eq!(counts(&body), (0, 1), "{body}");

    let end = end.max(server.catch_up().await);
    let (status, profile) = server
        .admin_get(&format!(
            "/v1/profiles/anonymous_id:anon-dedup?min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    // m-1 (web), m-2, m-1 (backend), m-3.
    assert_eq!(profile["event_total"], 4, "{profile}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_corrected_and_the_client_ip_recorded() {
    let server = TestServer::start().await;
    let device_now = now_ms() - 3_600_000; // the device clock is an hour behind
    let happened = device_now - 5 * 60_000; // five minutes before it was sent
    let batch = json!({
        "sentAt": format_timestamp_ms(device_now),
        "batch": [{"type": "track", "anonymousId": "anon-skew", "event": "Skewed",
                   "timestamp": format_timestamp_ms(happened)}],
    });
    let (status, body, end) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    // The server source does not get the connection's address.
    let (_, body, end2) = server
        .ingest_as(
            SERVER_KEY,
            "/v1/track",
            &json!({"userId": "u-skew-server", "event": "FromBackend"}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");

    let (status, events) = server
        .admin_get(&format!(
            "/v1/profiles/anonymous_id:anon-skew/events?min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let event = &events["events"][0];
    let received = parse_timestamp_ms(event["receivedAt"].as_str().unwrap()).unwrap();
    let timestamp = parse_timestamp_ms(event["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(received - timestamp, 5 * 60_000, "{event}");
    assert!((received - now_ms()).abs() < 60_000, "{event}");
    assert_eq!(
        parse_timestamp_ms(event["originalTimestamp"].as_str().unwrap()),
        Some(happened)
    );
    assert_eq!(
        parse_timestamp_ms(event["sentAt"].as_str().unwrap()),
        Some(device_now)
    );
    assert_eq!(event["context"]["ip"], "127.0.0.1", "{event}");
    assert_eq!(event["atrium"]["source"], "web", "{event}");

    let (_, events) = server
        .admin_get(&format!(
            "/v1/profiles/user_id:u-skew-server/events?min_offset={end2}"
        ))
        .await;
    assert!(
        events["events"][0]["context"].get("ip").is_none(),
        "{events}"
    );
    server.stop().await;

    // Behind a trusted proxy, the header's first address is the client's.
    let server = TestServer::start_with(|config| {
        config.trusted_proxy_header = Some("x-forwarded-for".into());
    })
    .await;
    let send = |forwarded: &'static str, anonymous_id: &'static str| {
        server
            .client
            .post(server.url("/v1/t"))
            .basic_auth(WEB_KEY, Some(""))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"anonymousId": anonymous_id, "event": "Proxied"}))
            .send()
    };
    let response = send("203.0.113.7, 10.0.0.1", "anon-proxy").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A header that is not an address falls back to the peer.
    let response = send("not-an-ip, 10.0.0.1", "anon-proxy-bad").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let end = log_end(&response);
    for (anonymous_id, ip) in [
        ("anon-proxy", "203.0.113.7"),
        ("anon-proxy-bad", "127.0.0.1"),
    ] {
        let (status, events) = server
            .admin_get(&format!(
                "/v1/profiles/anonymous_id:{anonymous_id}/events?min_offset={end}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        assert_eq!(events["events"][0]["context"]["ip"], ip, "{events}");
    }
    server.stop().await;
}
