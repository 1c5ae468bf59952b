use atrium_identity::Identifier;
use atrium_log::EventLog;
use atrium_types::{Channel, ControlRecord, LogRecord};
use serde_json::json;

use crate::{Harness, all_bytes_under};

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
    let graph = harness
        .pipeline
        .store()
        .read(|tables| tables.graph(&atrium_identity::ProfileId(profile.id.clone())))
        .unwrap()
        .unwrap();
    let hashes: Vec<String> = graph
        .identifiers
        .iter()
        .map(|record| harness.pipeline.hasher().hash(&record.id))
        .collect();
    let erase = ControlRecord::Erase {
        profile_id: profile.id.clone(),
        identifier_hashes: hashes,
        requested_at: "2026-01-01T00:00:00Z".into(),
        suppress: true,
    };
    harness
        .log
        .append(&[LogRecord::encode_control(&erase).as_slice()])
        .unwrap();
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
    let erase_again = ControlRecord::Erase {
        profile_id: profile.id.clone(),
        identifier_hashes: vec![
            harness
                .pipeline
                .hasher()
                .hash(&Identifier::new("user_id", "ue")),
        ],
        requested_at: "2026-01-01T00:00:00Z".into(),
        suppress: true,
    };
    harness
        .log
        .append(&[LogRecord::encode_control(&erase_again).as_slice()])
        .unwrap();
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
