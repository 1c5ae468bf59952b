//! Server-side sticky bucketing: `/api/eval` and OFREP remember each user's variation (per
//! experiment and bucket version) through the exposure events and the `sticky_buckets` table, so
//! a weight change moves only new users, a bucket version bump re-buckets everyone, a minimum
//! bucket version excludes older buckets, and erasure forgets the user's buckets.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const USERS: usize = 40;

/// The `layout` experiment with these weights and bucket versions.
fn layout(weights: [f64; 2], bucket_version: i64, min_bucket_version: i64) -> Value {
    json!({
        "feature": "layout",
        "variations": [{"key": "grid", "value": "grid"}, {"key": "list", "value": "list"}],
        "weights": weights,
        "status": "running",
        "started_at": "2026-01-01T00:00:00.000Z",
        "bucket_version": bucket_version,
        "min_bucket_version": min_bucket_version,
    })
}

/// Remote evaluation of `layout` for `attributes`: the variation key the user is in, `None`
/// when not in the experiment.
async fn assigned(server: &TestServer, body: Value) -> Option<String> {
    let response = server
        .client
        .post(server.url(&format!("/api/eval/{CLIENT_KEY}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, result) = into_json(response).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let track = &result["features"]["layout"]["rules"][0]["tracks"][0]["result"];
    (track["inExperiment"] == true).then(|| track["key"].as_str().unwrap().to_owned())
}

async fn assign_all(server: &TestServer, users: &[String]) -> Vec<Option<String>> {
    let mut variations = Vec::with_capacity(users.len());
    for user in users {
        variations.push(assigned(server, json!({"attributes": {"id": user}})).await);
    }
    // The assignments reach the `sticky_buckets` table through the pipeline.
    server.catch_up().await;
    variations
}

fn users(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix}-{index}"))
        .collect()
}

fn count(variations: &[Option<String>], key: &str) -> usize {
    variations
        .iter()
        .filter(|variation| variation.as_deref() == Some(key))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_variation_when_weights_change() {
    let sticky = TestServer::start().await;
    let plain = TestServer::start_with(|config| config.experiments.sticky_bucketing = false).await;
    let early = users("early", USERS);
    let late = users("late", USERS / 2);
    for server in [&sticky, &plain] {
        put_applied(server, "/v1/experiments/layout", &layout([0.5, 0.5], 0, 0)).await;
    }
    let before = assign_all(&sticky, &early).await;
    assert_eq!(before, assign_all(&plain, &early).await, "same hashing");
    let on_grid = count(&before, "grid");
    assert!(
        (8..=32).contains(&on_grid),
        "a 50/50 split of {USERS}: {before:?}"
    );

    // The exposure that made an assignment carries it, in the shape the pipeline reads.
    let (status, timeline) = sticky
        .admin_get(&format!("/v1/profiles/user_id:{}/events", early[0]))
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let exposure = &timeline["events"][0];
    assert_eq!(exposure["event"], "Experiment Viewed", "{timeline}");
    assert_eq!(
        exposure["properties"]["sticky_buckets"],
        json!([{
            "attributeName": "id",
            "attributeValue": early[0],
            "assignments": {"layout__0": before[0].as_deref().unwrap()},
        }]),
        "{exposure}"
    );

    // Everyone new goes to `list`; users with a sticky bucket stay where they were.
    for server in [&sticky, &plain] {
        put_applied(server, "/v1/experiments/layout", &layout([0.0, 1.0], 0, 0)).await;
    }
    assert_eq!(assign_all(&sticky, &early).await, before);
    let newcomers = assign_all(&sticky, &late).await;
    assert_eq!(count(&newcomers, "list"), late.len(), "{newcomers:?}");
    // Without sticky bucketing the same change moves the `grid` users.
    let moved = assign_all(&plain, &early).await;
    assert_eq!(count(&moved, "list"), USERS, "{moved:?}");

    // A restart keeps the assignments (they are derived from the log).
    let mut sticky = sticky;
    sticky.restart().await;
    assert_eq!(assign_all(&sticky, &early).await, before);
    sticky.stop().await;
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_versions_rebucket_and_minimum_versions_exclude() {
    let server = TestServer::start().await;
    let early = users("v0", USERS);
    put_applied(&server, "/v1/experiments/layout", &layout([0.5, 0.5], 0, 0)).await;
    let first = assign_all(&server, &early).await;
    assert!(count(&first, "grid") > 0, "{first:?}");

    // Bumping the bucket version re-buckets everyone by the new weights.
    put_applied(&server, "/v1/experiments/layout", &layout([0.0, 1.0], 1, 0)).await;
    let rebucketed = assign_all(&server, &early).await;
    assert_eq!(count(&rebucketed, "list"), USERS, "{rebucketed:?}");
    // ... and the new buckets stick in turn.
    put_applied(&server, "/v1/experiments/layout", &layout([1.0, 0.0], 1, 0)).await;
    assert_eq!(assign_all(&server, &early).await, rebucketed);

    // A minimum bucket version above theirs excludes users bucketed before it (they get the
    // default value and no exposure); users never bucketed enter at the new version.
    put_applied(&server, "/v1/experiments/layout", &layout([1.0, 0.0], 2, 2)).await;
    assert_eq!(assign_all(&server, &early).await, vec![None; USERS]);
    let fresh = assign_all(&server, &users("v2", USERS / 2)).await;
    assert_eq!(count(&fresh, "grid"), USERS / 2, "{fresh:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_buckets_follow_the_profile_across_touchpoints_and_are_erased() {
    let server = TestServer::start().await;
    put_applied(&server, "/v1/experiments/layout", &layout([0.5, 0.5], 0, 0)).await;
    // A known customer who lands on `grid` (hashing is deterministic; pick the first such id).
    let mut customer = None;
    for candidate in users("cust", USERS) {
        if assigned(&server, json!({"attributes": {"id": candidate}})).await == Some("grid".into())
        {
            customer = Some(candidate);
            break;
        }
    }
    let customer = customer.expect("some user lands on grid");
    let email = format!("{customer}@example.com");
    let (status, body, _) = server
        .ingest(
            "/v1/identify",
            &json!({"userId": customer, "traits": {"email": email}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.catch_up().await;

    put_applied(&server, "/v1/experiments/layout", &layout([0.0, 1.0], 0, 0)).await;
    // Web (remote eval by the profile), email (OFREP by the email address): still `grid`.
    assert_eq!(
        assigned(&server, json!({"profile": format!("email:{email}")})).await,
        Some("grid".into())
    );
    let response = server
        .client
        .post(server.url("/ofrep/v1/evaluate/flags/layout"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"context": {"profile": format!("email:{email}")}}))
        .send()
        .await
        .unwrap();
    let (status, flag) = into_json(response).await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(flag["value"], "grid", "{flag}");
    assert_eq!(flag["metadata"]["experimentKey"], "layout", "{flag}");

    // Erasure forgets the buckets with the profile: the same id is now bucketed afresh.
    let (status, body) = server
        .admin_delete(&format!("/v1/profiles/email:{email}"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    server
        .wait_applied(body["min_offset"].as_u64().expect("min_offset"))
        .await;
    assert_eq!(
        assigned(&server, json!({"attributes": {"id": customer}})).await,
        Some("list".into())
    );
    server.stop().await;
}
