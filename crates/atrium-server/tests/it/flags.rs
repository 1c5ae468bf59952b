//! Feature flags and experiments: definitions through the log, the GrowthBook payload (plain
//! and encrypted, ETag/304), SSE updates, remote evaluation, OFREP, and profile attributes.

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

async fn features(server: &TestServer, client_key: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(&format!("/api/features/{client_key}")))
        .send()
        .await
        .unwrap()
}

async fn ofrep(server: &TestServer, path: &str, body: &str) -> (StatusCode, Value) {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    into_json(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_validated_versioned_and_kept_in_history() {
    let server = TestServer::start().await;
    // Validation happens before anything is appended, with JSON paths.
    let (status, body) = server
        .admin_put(
            "/v1/features/checkout",
            &json!({"defaultValue": false, "rules": [{"variations": [1, 2], "weights": [0.5, 0.6]}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert_eq!(
        body["errors"][0]["path"], "features.checkout.rules[0].weights",
        "{body}"
    );
    let (status, body) = server
        .admin_put(
            "/v1/features/checkout",
            &json!({"defaultValue": false, "rules": [{"condition": {"tier": {"$bogus": 1}}, "force": true}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert_eq!(
        body["errors"][0]["path"], "features.checkout.rules[0].condition.tier.$bogus",
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("$bogus"),
        "{body}"
    );
    let (status, body) = server
        .admin_put("/v1/features/bad%20key", &json!({"defaultValue": 1}))
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    let (status, body) = server
        .admin_put(
            "/v1/experiments/exp",
            &json!({"feature": "checkout", "variations": [{"value": 1}]}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    assert!(
        body["errors"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("experiment"),
        "{body}"
    );
    let (status, body) = server
        .admin_put("/v1/saved-groups/beta", &json!({"values": "u_1"}))
        .await;
    assert_error(status, &body, 400, "invalid_definition");
    let (_, pipeline) = server.admin_get("/v1/pipeline").await;
    assert_eq!(
        pipeline["log_end_offset"], 0,
        "nothing invalid reached the log"
    );

    // Create, replace, read with history, list, delete.
    let first = put_applied(
        &server,
        "/v1/features/checkout",
        &json!({"defaultValue": false}),
    )
    .await;
    assert_eq!(first["version"], 1);
    let second = put_applied(
        &server,
        "/v1/features/checkout",
        &json!({"defaultValue": true, "description": "new checkout"}),
    )
    .await;
    assert_eq!(second["version"], 2);
    let (status, feature) = server
        .admin_get(&format!(
            "/v1/features/checkout?history=true&min_offset={}",
            second["min_offset"]
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{feature}");
    assert_eq!(feature["version"], 2);
    assert_eq!(feature["definition"]["defaultValue"], true);
    assert_eq!(feature["history"].as_array().unwrap().len(), 2);
    assert_eq!(feature["history"][0]["definition"]["defaultValue"], false);
    let (_, list) = server.admin_get("/v1/features").await;
    assert_eq!(list["features"].as_array().unwrap().len(), 1, "{list}");

    let (status, deleted) = server.admin_delete("/v1/features/checkout").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    assert_eq!(deleted["version"], 3);
    let (status, body) = server
        .admin_get(&format!(
            "/v1/features/checkout?min_offset={}",
            deleted["min_offset"]
        ))
        .await;
    assert_error(status, &body, 404, "definition_not_found");
    let (status, body) = server.admin_delete("/v1/features/checkout").await;
    assert_error(status, &body, 404, "definition_not_found");
    // Re-creating continues the version sequence.
    let again = put_applied(
        &server,
        "/v1/features/checkout",
        &json!({"defaultValue": 0}),
    )
    .await;
    assert_eq!(again["version"], 4);

    // Experiments: draft → start → stop, with conflicts.
    let experiment = json!({
        "feature": "checkout",
        "hypothesis": "A one-page checkout converts better",
        "variations": [{"key": "control", "value": 0}, {"key": "onepage", "value": 1}],
        "weights": [0.5, 0.5],
        "goal_metrics": ["purchase"],
        "guardrail_metrics": ["refunds"],
    });
    put_applied(&server, "/v1/experiments/onepage", &experiment).await;
    let (status, body) = server
        .admin_post("/v1/experiments/onepage/stop", &json!({}))
        .await;
    assert_error(status, &body, 409, "definition_conflict");
    let (status, started) = server
        .admin_post("/v1/experiments/onepage/start", &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let (_, current) = server
        .admin_get(&format!(
            "/v1/experiments/onepage?min_offset={}",
            started["min_offset"]
        ))
        .await;
    assert_eq!(current["definition"]["status"], "running", "{current}");
    assert!(current["definition"]["started_at"].is_string());
    assert_eq!(
        current["definition"]["hypothesis"],
        "A one-page checkout converts better"
    );
    let (status, body) = server
        .admin_post("/v1/experiments/onepage/start", &json!({}))
        .await;
    assert_error(status, &body, 409, "definition_conflict");
    let (status, stopped) = server
        .admin_post("/v1/experiments/onepage/stop", &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{stopped}");
    let (_, current) = server
        .admin_get(&format!(
            "/v1/experiments/onepage?min_offset={}",
            stopped["min_offset"]
        ))
        .await;
    assert_eq!(current["definition"]["status"], "stopped");
    assert!(current["definition"]["stopped_at"].is_string());

    // Definitions survive a restart (they are derived from the log).
    let mut server = server;
    server.restart().await;
    let (status, feature) = server.admin_get("/v1/features/checkout").await;
    assert_eq!(status, StatusCode::OK, "{feature}");
    assert_eq!(feature["version"], 4);
    let response = server
        .client
        .put(server.url("/v1/features/x"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 401, "missing_admin_key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_is_served_with_etag_encryption_and_running_experiments() {
    let server = TestServer::start().await;
    let response = features(&server, "sdk_unknown_key").await;
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 401, "invalid_client_key");

    put_applied(
        &server,
        "/v1/features/banner",
        &json!({"defaultValue": "off", "rules": [{"condition": {"id": {"$inGroup": "beta"}}, "force": "on"}]}),
    )
    .await;
    put_applied(
        &server,
        "/v1/saved-groups/beta",
        &json!({"values": ["u_1", "u_2"]}),
    )
    .await;
    put_applied(
        &server,
        "/v1/experiments/cta",
        &json!({"feature": "cta-color", "variations": [{"value": "blue"}, {"value": "green"}]}),
    )
    .await;

    let response = features(&server, CLIENT_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let etag = headers
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=30")
    );
    assert_eq!(headers["x-sse-support"], "enabled");
    let payload: Value = response.json().await.unwrap();
    assert_eq!(payload["status"], 200);
    assert_eq!(payload["features"]["banner"]["defaultValue"], "off");
    assert_eq!(payload["savedGroups"]["beta"], json!(["u_1", "u_2"]));
    assert!(payload["dateUpdated"].is_string());
    assert!(
        payload["features"].get("cta-color").is_none(),
        "draft experiments are not served"
    );

    // Conditional GET.
    let response = server
        .client
        .get(server.url(&format!("/api/features/{CLIENT_KEY}")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    // CORS for browsers.
    let response = server
        .client
        .get(server.url(&format!("/api/features/{CLIENT_KEY}")))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    // Starting the experiment changes the payload and the ETag.
    let (status, started) = server
        .admin_post("/v1/experiments/cta/start", &json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    server
        .wait_applied(started["min_offset"].as_u64().unwrap())
        .await;
    let response = server
        .client
        .get(server.url(&format!("/api/features/{CLIENT_KEY}")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(response.headers()["etag"].to_str().unwrap(), etag);
    let payload: Value = response.json().await.unwrap();
    let rule = &payload["features"]["cta-color"]["rules"][0];
    assert_eq!(rule["key"], "cta");
    assert_eq!(rule["variations"], json!(["blue", "green"]));
    assert_eq!(payload["features"]["cta-color"]["defaultValue"], "blue");

    // The encrypted connection: decrypts back to the plain payload with the engine's decrypt.
    let response = features(&server, ENCRYPTED_CLIENT_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let encrypted_etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let sealed: Value = response.json().await.unwrap();
    assert_eq!(sealed["features"], json!({}));
    assert!(sealed.get("savedGroups").is_none());
    let features_text = atrium_experiments::decrypt(
        sealed["encryptedFeatures"].as_str().unwrap(),
        ENCRYPTION_KEY,
    )
    .unwrap();
    let decrypted: Value = serde_json::from_str(&features_text).unwrap();
    assert_eq!(decrypted, payload["features"]);
    let groups_text = atrium_experiments::decrypt(
        sealed["encryptedSavedGroups"].as_str().unwrap(),
        ENCRYPTION_KEY,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&groups_text).unwrap(),
        payload["savedGroups"]
    );
    let again = features(&server, ENCRYPTED_CLIENT_KEY).await;
    assert_eq!(
        again.headers()["etag"].to_str().unwrap(),
        encrypted_etag,
        "stable until a change"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_sends_the_new_payload_after_a_put() {
    let server = TestServer::start().await;
    let mut stream = server
        .client
        .get(server.url(&format!("/sub/{CLIENT_KEY}")))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    server
        .admin_put("/v1/features/live", &json!({"defaultValue": 42}))
        .await;
    let deadline = Instant::now() + DEADLINE;
    let mut received = String::new();
    let event = loop {
        assert!(Instant::now() < deadline, "no features event: {received:?}");
        let chunk = tokio::time::timeout(DEADLINE, stream.chunk())
            .await
            .expect("an event within the deadline")
            .unwrap()
            .expect("stream open");
        received.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(start) = received.find("event: features\ndata: ") {
            let rest = &received[start + "event: features\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                break rest[..end].to_owned();
            }
        }
    };
    let payload: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(payload["features"]["live"]["defaultValue"], 42, "{payload}");
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_eval_and_ofrep_use_profile_traits() {
    let server = TestServer::start().await;
    // A customer whose profile says tier gold.
    let (_, _, end) = server
        .ingest(
            "/v1/identify",
            &json!({"userId": "u_gold", "traits": {"tier": "gold", "email": "gold@example.com"}}),
        )
        .await;
    server.wait_applied(end).await;
    put_applied(
        &server,
        "/v1/features/gold-perks",
        &json!({"defaultValue": false, "rules": [{"id": "gold", "condition": {"tier": "gold"}, "force": true}]}),
    )
    .await;
    put_applied(
        &server,
        "/v1/experiments/hero",
        &json!({
            "feature": "hero",
            "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
            "status": "running",
            "started_at": "2026-01-01T00:00:00.000Z",
        }),
    )
    .await;

    // Remote eval (GrowthBook's wire format: a features payload evaluated for the user): the
    // profile's tier applies for the user id; explicit attributes win.
    let eval = |body: Value| {
        let server = &server;
        async move {
            let response = server
                .client
                .post(server.url(&format!("/api/eval/{CLIENT_KEY}")))
                .json(&body)
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                assert_eq!(response.headers()["cache-control"], "no-store");
            }
            into_json(response).await
        }
    };
    let (status, result) = eval(json!({"attributes": {"id": "u_gold"}})).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result["features"]["gold-perks"],
        json!({"defaultValue": true}),
        "a targeted feature is reduced to its value: {result}"
    );
    assert_eq!(result["status"], 200);
    assert_eq!(result["experiments"], json!([]));
    assert!(result["dateUpdated"].is_string());
    assert!(result["profileId"].is_string());
    // The experiment's feature: one force rule with the value and the exposure to track, the
    // other variation scrubbed.
    let hero_feature = &result["features"]["hero"];
    let hero_rules = hero_feature["rules"].as_array().expect("a force rule");
    assert_eq!(hero_rules.len(), 1, "{hero_feature}");
    assert_eq!(hero_rules[0]["force"], hero_feature["defaultValue"]);
    let tracks = hero_rules[0]["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 1, "{hero_feature}");
    assert_eq!(tracks[0]["experiment"]["key"], "hero");
    assert_eq!(tracks[0]["result"]["inExperiment"], true);
    assert_eq!(tracks[0]["result"]["value"], hero_feature["defaultValue"]);
    let assigned = tracks[0]["result"]["variationId"].as_u64().unwrap() as usize;
    let variations = tracks[0]["experiment"]["variations"].as_array().unwrap();
    assert_eq!(variations[assigned], hero_feature["defaultValue"]);
    assert_eq!(variations[1 - assigned], json!({}), "{hero_feature}");
    assert!(tracks[0]["experiment"].get("condition").is_none());
    let hero = tracks[0]["result"]["key"].clone();
    let (_, result) = eval(json!({"profile": "email:GOLD@example.com"})).await;
    assert_eq!(
        result["features"]["gold-perks"]["defaultValue"], true,
        "{result}"
    );
    assert_eq!(
        result["features"]["hero"]["rules"][0]["tracks"][0]["result"]["key"], hero,
        "the profile's user id is the hash id: same variant"
    );
    let (_, result) = eval(json!({"attributes": {"id": "u_gold", "tier": "silver"}})).await;
    assert_eq!(result["features"]["gold-perks"]["defaultValue"], false);
    let (_, result) = eval(json!({"attributes": {"id": "u_stranger"}})).await;
    assert_eq!(result["features"]["gold-perks"]["defaultValue"], false);
    let (_, result) =
        eval(json!({"attributes": {"id": "u_gold"}, "forcedFeatures": [["gold-perks", "forced"]]}))
            .await;
    assert_eq!(result["features"]["gold-perks"]["defaultValue"], "forced");
    // Without an id the experiment cannot hash: the default value, nothing to track.
    let (_, result) = eval(json!({"attributes": {}})).await;
    assert_eq!(
        result["features"]["hero"],
        json!({"defaultValue": "a"}),
        "{result}"
    );
    let (status, body) = eval(json!({"attributes": [1]})).await;
    assert_error(status, &body, 400, "invalid_request");

    // OFREP single: found (via the profile of the targeting key), not found, missing targeting
    // key on a split flag, bad bodies, auth.
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/gold-perks",
        r#"{"context": {"targetingKey": "u_gold"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(flag["key"], "gold-perks");
    assert_eq!(flag["value"], true);
    assert_eq!(flag["reason"], "TARGETING_MATCH");
    assert_eq!(flag["variant"], "gold");
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/hero",
        r#"{"context": {"targetingKey": "u_gold"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(flag["reason"], "SPLIT");
    assert_eq!(flag["variant"], hero, "same variant as remote eval");
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/gold-perks",
        r#"{"context": {"tier": "bronze"}}"#,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a static targeting flag needs no key: {flag}"
    );
    assert_eq!(flag["value"], false);
    assert_eq!(flag["reason"], "DEFAULT");
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/nope",
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        flag,
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "no flag `nope`"})
    );
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/hero",
        r#"{"context": {}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(flag["errorCode"], "TARGETING_KEY_MISSING", "{flag}");
    let (status, flag) = ofrep(&server, "/ofrep/v1/evaluate/flags/hero", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(flag["errorCode"], "PARSE_ERROR", "{flag}");
    assert_eq!(flag["key"], "hero");
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/hero",
        r#"{"context": 3}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(flag["errorCode"], "INVALID_CONTEXT", "{flag}");
    let (status, flag) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags/hero",
        r#"{"context": {"targetingKey": 7}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(flag["errorCode"], "INVALID_CONTEXT", "{flag}");
    let response = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags/hero"))
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    let (status, body) = into_json(response).await;
    assert_error(status, &body, 401, "missing_client_key");
    let response = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags/hero"))
        .header("x-client-key", CLIENT_KEY)
        .json(&json!({"context": {"targetingKey": "u_gold"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "X-Client-Key works too");

    // OFREP bulk: every flag, per-flag failures, ETag and 304.
    let (status, bulk) = ofrep(
        &server,
        "/ofrep/v1/evaluate/flags",
        r#"{"context": {"targetingKey": "u_gold"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    let flags = bulk["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    let gold = flags
        .iter()
        .find(|flag| flag["key"] == "gold-perks")
        .unwrap();
    assert_eq!(gold["value"], true);
    let (_, bulk) = ofrep(&server, "/ofrep/v1/evaluate/flags", r#"{"context": {}}"#).await;
    let hero_flag = bulk["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|flag| flag["key"] == "hero")
        .unwrap()
        .clone();
    assert_eq!(hero_flag["errorCode"], "TARGETING_KEY_MISSING", "{bulk}");
    let (status, body) = ofrep(&server, "/ofrep/v1/evaluate/flags", "[").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "PARSE_ERROR", "{body}");
    let first = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"context": {"targetingKey": "u_gold"}}))
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let second = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags"))
        .bearer_auth(CLIENT_KEY)
        .header("if-none-match", &etag)
        .json(&json!({"context": {"targetingKey": "u_gold"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
    server.stop().await;
}
