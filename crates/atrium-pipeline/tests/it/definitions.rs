//! Definition control records: applied into `definitions` / `definition_history`, replayed to
//! the same digest, and announced through the definitions offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use atrium_log::EventLog;
use atrium_pipeline::rebuild;
use atrium_types::{Channel, ControlRecord, DefinitionKind, LogRecord, SystemClock};
use serde_json::json;

use crate::{Harness, config};

fn put(kind: DefinitionKind, key: &str, version: u64, body: serde_json::Value) -> Vec<u8> {
    LogRecord::encode_control(&ControlRecord::DefinitionPut {
        kind,
        key: key.into(),
        body,
        version,
        at: format!("2026-01-01T00:00:0{version}.000Z"),
    })
}

#[test]
fn definitions_are_applied_with_history_and_replay_to_the_same_digest() {
    let harness = Harness::new(3);
    let seen = Arc::new(AtomicU64::new(0));
    let listener_seen = seen.clone();
    harness
        .pipeline
        .set_definitions_listener(Box::new(move |offset| {
            listener_seen.store(offset, Ordering::SeqCst)
        }));
    harness.ingest(
        "web",
        Channel::Web,
        &[json!({"type": "identify", "userId": "u_1", "traits": {"tier": "gold"}})],
    );
    let feature = |value: bool| json!({"defaultValue": value, "rules": [{"condition": {"tier": "gold"}, "force": true}]});
    let records = [
        put(DefinitionKind::Feature, "checkout", 1, feature(false)),
        put(
            DefinitionKind::SavedGroup,
            "beta",
            1,
            json!({"values": ["u_1"]}),
        ),
        put(DefinitionKind::Feature, "checkout", 2, feature(true)),
        LogRecord::encode_control(&ControlRecord::DefinitionDelete {
            kind: DefinitionKind::SavedGroup,
            key: "beta".into(),
            version: 2,
            at: "2026-01-01T00:00:09.000Z".into(),
        }),
    ];
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    harness.log.append(&slices).unwrap();
    harness.ingest(
        "web",
        Channel::Web,
        &[json!({"type": "track", "userId": "u_1", "event": "Viewed"})],
    );
    harness.catch_up();

    let store = harness.pipeline.store();
    let (current, history, groups, deleted_history) = store
        .read(|tables| {
            Ok((
                tables.definition("feature", "checkout")?,
                tables.definition_history("feature", "checkout")?,
                tables.definitions("saved_group")?,
                tables.definition_history("saved_group", "beta")?,
            ))
        })
        .unwrap();
    let current = current.expect("feature stored");
    assert_eq!(current.version, 2);
    assert_eq!(current.body["defaultValue"], true);
    assert_eq!(current.updated_at, "2026-01-01T00:00:02.000Z");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].body["defaultValue"], false);
    assert!(groups.is_empty(), "deleted saved group is gone: {groups:?}");
    assert_eq!(deleted_history.len(), 2);
    assert!(deleted_history[1].deleted);
    // The delete is log offset 4 (after one identify): the definitions offset is one past it.
    assert_eq!(harness.pipeline.definitions_offset(), 5);
    assert_eq!(seen.load(Ordering::SeqCst), 5);

    let original = store.digest().unwrap();
    let replayed = rebuild(
        &harness.dir.path().join("replayed.redb"),
        harness.log.clone(),
        config(1),
        Arc::new(SystemClock),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(replayed.digest().unwrap(), original);
    assert_eq!(
        replayed
            .read(|tables| tables.meta_u64(atrium_store::DEFINITIONS_OFFSET_KEY))
            .unwrap(),
        5
    );
    let names: Vec<&str> = replayed
        .read(|tables| tables.table_digests())
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(names.contains(&"definitions") && names.contains(&"definition_history"));
    assert_eq!(harness.log.end_offset(), 6);
}
