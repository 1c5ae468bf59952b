//! Profiles: lookup by any identifier, timelines, identity explanations, listing and search,
//! trait updates, erasure and export.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

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
async fn anonymous_views_then_identify_form_one_profile() {
    let server = TestServer::start().await;
    let now = now_ms();
    // Three anonymous page views on the web.
    for (index, minutes_ago) in [30, 20, 10].into_iter().enumerate() {
        let (status, body, _) = server
            .ingest(
                "/v1/page",
                &json!({"anonymousId": "anon-ann", "name": format!("Page {index}"),
                        "timestamp": format_timestamp_ms(now - minutes_ago * 60_000)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The backend knows the user by id and email: a second profile, for now.
    let (_, body, _) = server
        .ingest_as(
            SERVER_KEY,
            "/v1/identify",
            &json!({"userId": "u-ann", "traits": {"email": "Ann@Example.com", "name": "Ann"},
                    "timestamp": format_timestamp_ms(now - 5 * 60_000)}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");
    // The browser identifies: both profiles merge.
    let (_, body, end) = server
        .ingest(
            "/v1/identify",
            &json!({"anonymousId": "anon-ann", "userId": "u-ann", "traits": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(body["accepted"], 1, "{body}");
    // Someone else.
    let (_, _, end2) = server
        .ingest(
            "/v1/page",
            &json!({"anonymousId": "anon-bob", "name": "Home"}),
        )
        .await;
    let end = end.max(end2);

    let (status, profile) = server
        .admin_get(&format!(
            "/v1/profiles/email:ann@example.com?min_offset={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    let id = profile["id"].as_str().expect("profile id").to_owned();
    assert!(id.starts_with("p_"), "{profile}");
    assert_eq!(profile["event_total"], 5, "{profile}");
    assert_eq!(profile["traits"]["name"], "Ann", "{profile}");
    assert_eq!(profile["traits"]["plan"], "pro", "{profile}");
    let identifiers: HashSet<String> = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            format!(
                "{}:{}",
                id["kind"].as_str().unwrap(),
                id["value"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "email:ann@example.com",
        "user_id:u-ann",
        "anonymous_id:anon-ann",
    ] {
        assert!(
            identifiers.contains(expected),
            "{expected} missing: {profile}"
        );
    }
    // Every reference resolves to the same profile, including unnormalized spellings.
    for reference in [
        "anonymous_id:anon-ann",
        "user_id:u-ann",
        "email:Ann@Example.com",
        id.as_str(),
    ] {
        let (status, other) = server.admin_get(&format!("/v1/profiles/{reference}")).await;
        assert_eq!(status, StatusCode::OK, "{reference}: {other}");
        assert_eq!(other["id"], id.as_str(), "{reference}");
        assert_eq!(other["event_total"], 5, "{reference}");
    }

    // The timeline, newest first, two at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _page in 0..10 {
        let path = match &cursor {
            None => format!("/v1/profiles/{id}/events?limit=2"),
            Some(cursor) => format!("/v1/profiles/{id}/events?limit=2&before={cursor}"),
        };
        let (status, page) = server.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["profile_id"], id.as_str());
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2, "{page}");
        seen.extend(events.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(events.len(), 2, "{page}");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let offsets: HashSet<u64> = seen.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets.len(), 5, "a page repeated an event: {seen:?}");
    let times: Vec<i64> = seen
        .iter()
        .map(|e| parse_timestamp_ms(e["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "not newest first: {times:?}"
    );
    assert_eq!(seen.last().unwrap()["name"], "Page 0");
    let (status, body) = server
        .admin_get(&format!("/v1/profiles/{id}/events?before=garbage"))
        .await;
    assert_error(status, &body, 400, "invalid_request");

    // The identity explanation names the merge and why.
    let (status, identity) = server
        .admin_get(&format!("/v1/profiles/{id}/identity"))
        .await;
    assert_eq!(status, StatusCode::OK, "{identity}");
    assert_eq!(identity["profile_id"], id.as_str());
    let merges = identity["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1, "{identity}");
    let reason = merges[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("user_id:u-ann") && reason.contains("anonymous_id:anon-ann"),
        "{reason}"
    );
    assert!(
        !merges[0]["linking_identifiers"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{identity}"
    );

    // Search by identifier prefix.
    let (status, found) = server.admin_get("/v1/profiles?q=email:ann").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let found = found["profiles"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id.as_str());
    let (_, none) = server.admin_get("/v1/profiles?q=email:zed").await;
    assert_eq!(none["profiles"].as_array().unwrap().len(), 0, "{none}");

    // Listing, one per page: exactly the two live profiles.
    let (_, page) = server.admin_get("/v1/profiles?limit=1").await;
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(page["profiles"].as_array().unwrap().len(), 1, "{page}");
    let cursor = page["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    let mut listed = vec![page["profiles"][0]["id"].as_str().unwrap().to_owned()];
    let (_, page) = server
        .admin_get(&format!("/v1/profiles?limit=1&cursor={cursor}"))
        .await;
    listed.push(page["profiles"][0]["id"].as_str().unwrap().to_owned());
    if let Some(cursor) = page["next_cursor"].as_str() {
        let (_, last) = server
            .admin_get(&format!("/v1/profiles?limit=1&cursor={cursor}"))
            .await;
        assert!(last["profiles"].as_array().unwrap().is_empty(), "{last}");
    }
    assert_ne!(listed[0], listed[1]);
    assert!(listed.contains(&id), "{listed:?}");

    // Unknown profiles.
    for reference in ["email:nobody@example.com", "p_nothing", "user_id:ghost"] {
        let (status, body) = server.admin_get(&format!("/v1/profiles/{reference}")).await;
        assert_error(status, &body, 404, "profile_not_found");
        let (status, body) = server
            .admin_get(&format!("/v1/profiles/{reference}/events"))
            .await;
        assert_error(status, &body, 404, "profile_not_found");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_example_two_user_ids_sharing_an_email_stay_apart() {
    let server = TestServer::start().await;
    for user_id in ["u-abc123", "u-abc456"] {
        let (_, body, _) = server
            .ingest_as(
                SERVER_KEY,
                "/v1/identify",
                &json!({"userId": user_id, "traits": {"email": "jane@example.com"}}),
            )
            .await;
        assert_eq!(body["accepted"], 1, "{body}");
    }
    let end = server.catch_up().await;
    let (status, first) = server
        .admin_get(&format!("/v1/profiles/user_id:u-abc123?min_offset={end}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, second) = server.admin_get("/v1/profiles/user_id:u-abc456").await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["id"], second["id"], "{first} {second}");
    let (_, by_email) = server
        .admin_get("/v1/profiles/email:jane@example.com")
        .await;
    assert_eq!(by_email["id"], first["id"], "{by_email}");
    let (_, list) = server.admin_get("/v1/profiles").await;
    assert_eq!(list["total"], 2, "{list}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trait_updates_go_through_the_log() {
    let server = TestServer::start().await;
    let (_, _, end) = server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u-tier", "traits": {"email": "tier@example.com", "tier": "silver"}}),
        )
        .await;
    server.wait_applied(end).await;

    let (status, body) = server
        .admin_post(
            "/v1/profiles/email:tier@example.com/traits",
            &json!({"traits": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let min_offset = body["min_offset"].as_u64().expect("min_offset");
    let (status, profile) = server
        .admin_get(&format!(
            "/v1/profiles/user_id:u-tier?min_offset={min_offset}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["traits"]["tier"], "gold", "{profile}");
    assert_eq!(profile["traits"]["email"], "tier@example.com", "{profile}");

    let (status, body) = server
        .admin_post("/v1/profiles/user_id:u-tier/traits", &json!({"traits": {}}))
        .await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = server
        .admin_post(
            "/v1/profiles/user_id:ghost/traits",
            &json!({"traits": {"a": 1}}),
        )
        .await;
    assert_error(status, &body, 404, "profile_not_found");
    let (status, body) = server
        .admin_post("/v1/profiles/user_id:u-tier/traits", &json!({"nope": 1}))
        .await;
    assert_error(status, &body, 400, "invalid_request");
    server.stop().await;
}

fn files_containing(dir: &Path, needles: &[&[u8]]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            for needle in needles {
                if bytes.windows(needle.len()).any(|window| window == *needle) {
                    found.push(format!(
                        "{} contains {}",
                        path.display(),
                        String::from_utf8_lossy(needle)
                    ));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_purges_everything_and_suppresses_the_identifiers() {
    // The warehouse flushes to Parquet within ~50 ms, uncompressed so the byte scan below sees
    // the values in its files.
    let server = TestServer::start_with(|config| {
        config.warehouse.flush_interval_ms = 50;
        config.warehouse.compression = atrium_warehouse::ParquetCompression::None;
    })
    .await;
    let batch = json!({"batch": [
        {"type": "page", "anonymousId": "anon-erin-7", "name": "Landing"},
        {"type": "identify", "anonymousId": "anon-erin-7", "userId": "u-erin-7",
         "traits": {"email": "erin.erased@example.com", "name": "Erin"}},
        {"type": "track", "userId": "u-erin-7", "event": "Order Completed",
         "properties": {"order_id": "o-1", "total": 42}},
        {"type": "identify", "userId": "u-keep", "traits": {"email": "keep@example.com"}},
    ]});
    let (status, body, end) = server.ingest("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");

    // The warehouse has committed the person's rows to Parquet before the erasure.
    let manifest = server.dir.path().join("warehouse/manifest.json");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let committed = std::fs::read(&manifest)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|manifest| manifest["offset"].as_u64())
            .unwrap_or(0);
        if committed >= end {
            break;
        }
        assert!(Instant::now() < deadline, "warehouse never flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_parquet = files_containing(
        &server.dir.path().join("warehouse"),
        &[b"u-erin-7", b"erin.erased@example.com"],
    );
    assert!(
        in_parquet
            .iter()
            .any(|file| file.contains(".parquet contains")),
        "{in_parquet:?}"
    );
    assert_eq!(
        warehouse_rows(&server, "u-erin-7", "anon-erin-7").await,
        [3, 1, 0]
    );

    // Export first: the profile and its events.
    let response = server
        .admin(
            reqwest::Method::GET,
            &format!("/v1/profiles/email:erin.erased@example.com/export?min_offset={end}"),
            None,
        )
        .await;
    assert!(
        response
            .headers()
            .get("content-disposition")
            .is_some_and(|value| value.to_str().unwrap().contains("attachment")),
    );
    let (status, export) = into_json(response).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["profile"]["traits"]["name"], "Erin", "{export}");
    assert!(export["profile"]["identifiers"].as_array().unwrap().len() >= 3);
    let events: Vec<&Value> = export["events"].as_array().unwrap().iter().collect();
    assert_eq!(events.len(), 3, "{export}");
    assert!(
        events
            .iter()
            .any(|event| event["event"] == "Order Completed")
    );

    let (status, body) = server
        .admin_delete("/v1/profiles/email:erin.erased@example.com")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let min_offset = body["min_offset"].as_u64().expect("min_offset");
    server.wait_applied(min_offset).await;

    for reference in [
        "email:erin.erased@example.com",
        "user_id:u-erin-7",
        "anonymous_id:anon-erin-7",
    ] {
        let (status, body) = server.admin_get(&format!("/v1/profiles/{reference}")).await;
        assert_error(status, &body, 404, "profile_not_found");
    }
    let (status, body) = server
        .admin_delete("/v1/profiles/email:erin.erased@example.com")
        .await;
    assert_error(status, &body, 404, "profile_not_found");

    // Future events carrying an erased identifier are dropped at the door.
    let (status, body, _) = server
        .ingest_as(
            SERVER_KEY,
            "/v1/identify",
            &json!({"userId": "u-someone-new", "traits": {"email": "Erin.Erased@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert_eq!(body["accepted"], 0, "{body}");
    let (_, body, _) = server
        .ingest(
            "/v1/track",
            &json!({"anonymousId": "anon-erin-7", "event": "Back"}),
        )
        .await;
    assert_eq!(body["suppressed"], 1, "{body}");

    // The other profile is untouched.
    let (status, kept) = server
        .admin_get("/v1/profiles/email:keep@example.com")
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["event_total"], 1, "{kept}");

    // The background log rewrite and vacuum remove every byte of the erased data.
    let needles: [&[u8]; 3] = [b"erin.erased@example.com", b"u-erin-7", b"anon-erin-7"];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = files_containing(server.dir.path(), &needles);
        if found.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "erased data still on disk: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !files_containing(server.dir.path(), &[b"keep@example.com"]).is_empty(),
        "the rewrite lost another profile's data"
    );
    let (status, events) = server
        .admin_get("/v1/profiles/email:keep@example.com/events")
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");

    // SQL: no row of the erased person in any warehouse table; the other person's row stays.
    assert_eq!(
        warehouse_rows(&server, "u-erin-7", "anon-erin-7").await,
        [0, 0, 0]
    );
    assert_eq!(warehouse_rows(&server, "u-keep", "-").await, [1, 0, 0]);
    let (status, body) = server
        .admin_post(
            "/v1/sql",
            &json!({"query": "SELECT (SELECT count(*) FROM events WHERE traits LIKE '%erin.erased%' \
                OR context LIKE '%erin.erased%') + (SELECT count(*) FROM profiles) \
                + (SELECT count(*) FROM identities WHERE value LIKE '%erin%') AS n"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"][0]["n"], 1,
        "only the kept profile remains: {body}"
    );
    server.stop().await;
}

/// Rows in `events`, `orders` and `order_lines` carrying `user_id` or `anonymous_id`.
async fn warehouse_rows(server: &TestServer, user_id: &str, anonymous_id: &str) -> [i64; 3] {
    let mut counts = [0; 3];
    for (index, table) in ["events", "orders", "order_lines"].into_iter().enumerate() {
        let query = format!(
            "SELECT count(*) AS n FROM {table} WHERE user_id = '{user_id}' \
             OR anonymous_id = '{anonymous_id}'"
        );
        let (status, body) = server.admin_post("/v1/sql", &json!({"query": query})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        counts[index] = body["rows"][0]["n"].as_i64().expect("a count");
    }
    counts
}
