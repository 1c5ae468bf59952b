use atrium_types::Channel;
use serde_json::json;

use crate::Harness;

#[test]
fn anonymous_history_is_stitched_when_the_visitor_identifies() {
    let harness = Harness::new(100);
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "page", "anonymousId": "anon-1", "timestamp": "2026-01-01T10:00:00Z", "context": {"campaign": {"source": "google", "medium": "cpc"}}}),
            json!({"type": "track", "anonymousId": "anon-1", "event": "Product Viewed", "timestamp": "2026-01-01T10:01:00Z"}),
            json!({"type": "identify", "anonymousId": "anon-1", "userId": "u1", "traits": {"email": " Ann@Example.com ", "name": "Ann"}, "timestamp": "2026-01-01T10:02:00Z"}),
        ],
    );
    harness.ingest(
        "ios-app",
        Channel::App,
        &[
            json!({"type": "screen", "anonymousId": "phone-1", "name": "Home", "timestamp": "2026-01-02T08:00:00Z"}),
            json!({"type": "identify", "anonymousId": "phone-1", "userId": "u1", "timestamp": "2026-01-02T08:01:00Z"}),
            json!({"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"order_id": "o1", "revenue": 42.5}, "timestamp": "2026-01-02T08:05:00Z"}),
        ],
    );
    harness.catch_up();

    let by_email = harness
        .profile("email:ann@example.com")
        .expect("profile by email");
    let by_anonymous = harness
        .profile("anonymous_id:phone-1")
        .expect("profile by device");
    assert_eq!(by_email.id, by_anonymous.id);
    assert_eq!(by_email.event_total, 6);
    assert_eq!(by_email.trait_values()["name"], "Ann");
    assert_eq!(
        by_email.first_touch.as_ref().unwrap().source.as_deref(),
        Some("google")
    );
    assert_eq!(by_email.commerce.order_count, 1);
    assert_eq!(by_email.channels.len(), 2);

    let id = atrium_identity::ProfileId(by_email.id.clone());
    let timeline = harness
        .pipeline
        .store()
        .read(|tables| tables.timeline(&id, None, 100))
        .unwrap();
    assert_eq!(
        timeline.len(),
        6,
        "anonymous history belongs to the merged profile"
    );
    assert!(
        timeline
            .windows(2)
            .all(|pair| pair[0].time_ms >= pair[1].time_ms),
        "newest first"
    );
}

#[test]
fn segments_documented_example_keeps_two_user_ids_apart() {
    let harness = Harness::new(100);
    harness.ingest(
        "server",
        Channel::Server,
        &[
            json!({"type": "identify", "userId": "jane-123", "traits": {"email": "jane@example.com"}}),
            json!({"type": "identify", "userId": "jane-456", "traits": {"email": "jane@example.com"}}),
        ],
    );
    harness.catch_up();
    let first = harness.profile("user_id:jane-123").unwrap();
    let second = harness.profile("user_id:jane-456").unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(
        harness.profile("email:jane@example.com").unwrap().id,
        first.id
    );
}

/// Unmerge: a bad identifier (a shop's shared email) merged two customers; blocking it in the
/// rules and rebuilding from the log splits them again.
#[test]
fn changing_rules_and_rebuilding_unmerges() {
    use std::sync::Arc;

    let harness = Harness::new(100);
    harness.ingest(
        "pos",
        Channel::Pos,
        &[
            json!({"type": "identify", "anonymousId": "till-visitor-1", "traits": {"email": "frontdesk@shop.example", "name": "First"}}),
            json!({"type": "identify", "anonymousId": "till-visitor-2", "traits": {"email": "frontdesk@shop.example", "name": "Second"}}),
        ],
    );
    harness.catch_up();
    let merged_first = harness.profile("anonymous_id:till-visitor-1").unwrap();
    let merged_second = harness.profile("anonymous_id:till-visitor-2").unwrap();
    assert_eq!(
        merged_first.id, merged_second.id,
        "the shared email merged them"
    );

    let mut rules = atrium_identity::IdentityRules::default();
    rules.blocked_values.push("frontdesk@shop\\.example".into());
    let mut config = crate::config(100);
    config.rules = rules.compile().unwrap();
    let rebuilt = atrium_pipeline::rebuild(
        &harness.dir.path().join("rebuilt.redb"),
        harness.log.clone(),
        config,
        Arc::new(atrium_types::SystemClock),
        |_, _| {},
    )
    .unwrap();
    let (first, second) = rebuilt
        .read(|tables| {
            let first = tables.resolve("anonymous_id:till-visitor-1")?.unwrap();
            let second = tables.resolve("anonymous_id:till-visitor-2")?.unwrap();
            Ok((
                tables.profile(&first)?.unwrap(),
                tables.profile(&second)?.unwrap(),
            ))
        })
        .unwrap();
    assert_ne!(
        first.id, second.id,
        "rebuild with the value blocked splits them"
    );
    assert_eq!(first.trait_values()["name"], "First");
    assert_eq!(second.trait_values()["name"], "Second");
    assert_eq!(
        first.trait_values()["email"],
        "frontdesk@shop.example",
        "the value stays a trait, just not an identifier"
    );
}
