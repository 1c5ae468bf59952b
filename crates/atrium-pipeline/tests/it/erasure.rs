use atrium_identity::Identifier;
use atrium_log::EventLog;
use atrium_types::{Channel, ControlRecord, LogRecord};
use serde_json::json;

use crate::{Harness, all_bytes_under};

/// The salted hashes of every identifier in the profile's graph (what an erasure request carries).
fn identifier_hashes(harness: &Harness, profile_id: &str) -> Vec<String> {
    let graph = harness
        .pipeline
        .store()
        .read(|tables| tables.graph(&atrium_identity::ProfileId(profile_id.to_owned())))
        .unwrap()
        .unwrap();
    graph
        .identifiers
        .iter()
        .map(|record| harness.pipeline.hasher().hash(&record.id))
        .collect()
}

/// Appends an erasure request for the profile, as the server does for `DELETE /v1/profiles/{id}`.
fn append_erasure(
    harness: &Harness,
    profile_id: &str,
    identifier_hashes: Vec<String>,
    suppress: bool,
) {
    let erase = ControlRecord::Erase {
        profile_id: profile_id.to_owned(),
        identifier_hashes,
        requested_at: "2026-01-01T00:00:00Z".into(),
        suppress,
    };
    harness
        .log
        .append(&[LogRecord::encode_control(&erase).as_slice()])
        .unwrap();
}

#[test]
fn erased_profile_leaves_no_trace_under_the_data_directory() {
    let harness = Harness::new(10);
    let secret_email = "erase.me.now@example.org";
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "page", "anonymousId": "anon-e"}),
            json!({"type": "identify", "anonymousId": "anon-e", "userId": "ue", "traits": {"email": secret_email, "name": "Eve Erased"}}),
            json!({"type": "track", "userId": "ue", "event": "Order Completed", "properties": {"order_id": "oe", "revenue": 10}}),
            json!({"type": "identify", "userId": "keeper", "traits": {"email": "keep@example.org"}}),
        ],
    );
    harness.catch_up();
    let profile = harness
        .profile(&format!("email:{secret_email}"))
        .expect("profile exists");
    append_erasure(
        &harness,
        &profile.id,
        identifier_hashes(&harness, &profile.id),
        true,
    );
    harness.catch_up();

    assert!(harness.profile(&format!("email:{secret_email}")).is_none());
    assert!(harness.profile("user_id:ue").is_none());
    assert!(
        harness.profile("email:keep@example.org").is_some(),
        "other customers are untouched"
    );

    // A later event carrying the erased email is suppressed, not re-creating the profile.
    harness.ingest(
        "web",
        Channel::Web,
        &[json!({"type": "identify", "userId": "ue", "traits": {"email": secret_email}})],
    );
    harness.catch_up();
    assert!(harness.profile("user_id:ue").is_none(), "suppressed");
    assert_eq!(harness.pipeline.metrics.events_suppressed.get(), 1);

    // Nothing under the data directory holds the email, the name or the user id any more —
    // except the suppressed event that arrived after the rewrite, which the next rewrite removes.
    let user_id_hash = harness
        .pipeline
        .hasher()
        .hash(&Identifier::new("user_id", "ue"));
    append_erasure(&harness, &profile.id, vec![user_id_hash], true);
    harness.catch_up();
    for (path, bytes) in all_bytes_under(harness.dir.path()) {
        for needle in [secret_email.as_bytes(), b"Eve Erased".as_slice()] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "{} still holds {}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(harness.profile("email:keep@example.org").is_some());
}

/// A replay reads the log ahead of what it applies. When it applies an erasure, the log is
/// rewritten without the erased customer's events, including later ones it may already have
/// read ahead; those must be dropped, not applied (they would re-create the profile).
#[test]
fn replay_does_not_apply_events_an_erasure_removed_from_the_log() {
    let harness = Harness::new(1);
    let customer =
        |email: &str| json!({"type": "identify", "userId": "ua", "traits": {"email": email}});
    let bystander =
        |n: u32| json!({"type": "track", "userId": format!("b{n}"), "event": "Product Viewed"});
    harness.ingest(
        "web",
        Channel::Web,
        &[customer("ann@example.org"), bystander(0)],
    );
    harness.catch_up();
    let profile = harness.profile("user_id:ua").expect("profile exists");
    // Not suppressed: only the rewrite keeps the later events out.
    let hashes = identifier_hashes(&harness, &profile.id);
    append_erasure(&harness, &profile.id, hashes, false);
    // Right behind the erasure (within what the replay reads ahead), the erased customer
    // again, then bystanders.
    let later: Vec<_> = [customer("ann@example.org")]
        .into_iter()
        .chain((1..40).map(bystander))
        .collect();
    harness.ingest("web", Channel::Web, &later);
    let end = harness.log.end_offset();

    let replayed = atrium_pipeline::rebuild(
        &harness.dir.path().join("replayed.redb"),
        harness.log.clone(),
        crate::config(1),
        std::sync::Arc::new(atrium_types::SystemClock),
        |_, _| {},
    )
    .unwrap();
    let resolved = replayed
        .read(|tables| tables.resolve("user_id:ua"))
        .unwrap();
    assert!(
        resolved.is_none(),
        "an event the rewrite dropped was applied"
    );
    assert_eq!(replayed.pipeline_offset().unwrap(), end);
    let kept = harness.log.read(0, 1_000).unwrap();
    assert_eq!(
        kept.len() as u64,
        end - 2,
        "both of the customer's identify events are gone"
    );

    // The live pipeline (no read-ahead) reaches the same state.
    harness.catch_up();
    assert_eq!(
        harness.pipeline.store().digest().unwrap(),
        replayed.digest().unwrap()
    );
}
