//! Segments in the pipeline: backfill on definition, real-time entry, durable timers driven by
//! tick records, merges, derived events appended exactly once, and replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{Pipeline, SegmentServices, rebuild};
use atrium_store::Store;
use atrium_types::{
    Channel, ControlRecord, DefinitionKind, LogRecord, ManualClock, format_timestamp_ms,
};
use serde_json::{Value, json};

use crate::{config, normalize_at};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

struct Rig {
    dir: tempfile::TempDir,
    log: Arc<SegmentedLog>,
    clock: ManualClock,
    pipeline: Arc<Pipeline>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SegmentedLog::open(LogConfig::new(dir.path().join("log"))).unwrap());
        let clock = ManualClock::new(T0);
        let pipeline = Rig::open_pipeline(&dir, &log, &clock);
        Rig {
            dir,
            log,
            clock,
            pipeline,
        }
    }

    fn open_pipeline(
        dir: &tempfile::TempDir,
        log: &Arc<SegmentedLog>,
        clock: &ManualClock,
    ) -> Arc<Pipeline> {
        let store = Arc::new(Store::open(dir.path().join("state.redb")).unwrap());
        Arc::new(Pipeline::new(log.clone(), store, config(7), Arc::new(clock.clone())).unwrap())
    }

    fn ingest_at(&self, received_ms: i64, events: &[Value]) {
        let payloads = normalize_at("web", Channel::Web, events, received_ms);
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.log.append(&slices).unwrap();
    }

    fn define(&self, kind: DefinitionKind, key: &str, version: u64, body: Value, at_ms: i64) {
        let record = LogRecord::encode_control(&ControlRecord::DefinitionPut {
            kind,
            key: key.into(),
            body,
            version,
            at: format_timestamp_ms(at_ms),
        });
        self.log.append(&[&record]).unwrap();
    }

    /// Applies the log, then lets the services append derived events and ticks until quiet.
    fn settle(&self, services: &mut SegmentServices) {
        for _ in 0..20 {
            self.pipeline.run_until_caught_up().unwrap();
            if !self.pipeline.segment_services_step(services).unwrap() {
                return;
            }
        }
        panic!("segment services did not settle");
    }

    fn is_member(&self, segment: &str, reference: &str) -> bool {
        self.pipeline
            .store()
            .read(|tables| {
                let id = tables.resolve(reference)?.expect("profile exists");
                Ok(tables.segment_member(segment, id.as_str())?.is_some())
            })
            .unwrap()
    }

    /// (event name, segment id, userId) of every derived event in the log.
    fn derived_events(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for record in self.log.read(0, 100_000).unwrap() {
            if let Ok(LogRecord::Event(event)) = LogRecord::decode(&record.payload)
                && event["messageId"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(atrium_pipeline::DERIVED_MESSAGE_PREFIX))
            {
                found.push((
                    event["event"].as_str().unwrap().to_owned(),
                    event["properties"]["segment_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    event["userId"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        found
    }
}

fn order(user: &str, at_ms: i64) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": user,
           "timestamp": format_timestamp_ms(at_ms), "properties": {"order_id": format!("o-{user}-{at_ms}"), "revenue": 30}})
}

fn recent_buyer() -> Value {
    json!({"id": "recent_buyer", "condition": {"op": "performed", "event": "Order Completed",
           "window": {"kind": "last", "n": 30, "unit": "minutes"}}})
}

#[test]
fn windowed_segment_enters_and_exits_on_time_and_replays_exactly_once() {
    let rig = Rig::new();
    let mut services = SegmentServices::default();
    rig.ingest_at(T0, &[order("u_old", T0)]);
    rig.define(
        DefinitionKind::Segment,
        "recent_buyer",
        1,
        recent_buyer(),
        T0 + MINUTE,
    );
    rig.clock.set(T0 + MINUTE);
    rig.settle(&mut services);
    // Backfilled from history: u_old bought a minute before the definition.
    assert!(rig.is_member("recent_buyer", "user_id:u_old"));

    rig.clock.set(T0 + 2 * MINUTE);
    rig.ingest_at(T0 + 2 * MINUTE, &[order("u_new", T0 + 2 * MINUTE)]);
    rig.settle(&mut services);
    assert!(rig.is_member("recent_buyer", "user_id:u_new"));
    // The timer: u_old's order leaves the 30-minute window at T0 + 30 min.
    assert_eq!(rig.pipeline.next_segment_timer(), Some(T0 + 30 * MINUTE));

    // One millisecond early: no tick is due.
    rig.clock.set(T0 + 30 * MINUTE - 1);
    rig.settle(&mut services);
    assert!(rig.is_member("recent_buyer", "user_id:u_old"));
    rig.clock.set(T0 + 30 * MINUTE);
    rig.settle(&mut services);
    assert!(!rig.is_member("recent_buyer", "user_id:u_old"));
    assert!(rig.is_member("recent_buyer", "user_id:u_new"));
    rig.clock.set(T0 + 40 * MINUTE);
    rig.settle(&mut services);
    assert!(!rig.is_member("recent_buyer", "user_id:u_new"));
    assert_eq!(rig.pipeline.next_segment_timer(), None);

    let derived = rig.derived_events();
    let expected = [
        ("Segment Entered", "u_old"),
        ("Segment Entered", "u_new"),
        ("Segment Exited", "u_old"),
        ("Segment Exited", "u_new"),
    ];
    assert_eq!(derived.len(), expected.len(), "{derived:?}");
    for ((event, segment, user), (want_event, want_user)) in derived.iter().zip(expected) {
        assert_eq!(
            (event.as_str(), segment.as_str(), user.as_str()),
            (want_event, "recent_buyer", want_user)
        );
    }
    // The derived events are events of the profile like any other.
    let profile = rig
        .pipeline
        .store()
        .read(|tables| {
            let id = tables.resolve("user_id:u_old")?.unwrap();
            tables.profile(&id)
        })
        .unwrap()
        .unwrap();
    assert_eq!(profile.event_counts.get("track:Segment Entered"), Some(&1));
    assert_eq!(profile.event_counts.get("track:Segment Exited"), Some(&1));
    assert_eq!(
        rig.pipeline
            .store()
            .read(|tables| tables.outbox_len())
            .unwrap(),
        0
    );

    // Replay from zero: the same state, every derived event found in the log, none queued again.
    let digest = rig.pipeline.store().digest().unwrap();
    let log_end = rig.log.end_offset();
    let Rig {
        dir,
        log,
        clock,
        pipeline,
    } = rig;
    drop(pipeline);
    let store = rebuild(
        &dir.path().join("state.redb"),
        log.clone(),
        config(3),
        Arc::new(clock.clone()),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(store.digest().unwrap(), digest);
    assert_eq!(store.read(|tables| tables.outbox_len()).unwrap(), 0);
    assert_eq!(log.end_offset(), log_end);
}

#[test]
fn merges_recompute_the_survivor_from_the_combined_history() {
    let rig = Rig::new();
    let mut services = SegmentServices::default();
    rig.define(
        DefinitionKind::Segment,
        "browser",
        1,
        json!({"id": "browser", "condition": {"op": "performed", "event": "Product Viewed", "cmp": {"operator": "gte", "value": 3}}}),
        T0,
    );
    let viewed = |ids: Value, sku: &str| {
        let mut event =
            json!({"type": "track", "event": "Product Viewed", "properties": {"sku": sku}});
        for (key, value) in ids.as_object().unwrap() {
            event[key] = value.clone();
        }
        event
    };
    rig.ingest_at(
        T0 + MINUTE,
        &[
            viewed(json!({"anonymousId": "anon-1"}), "a"),
            viewed(json!({"anonymousId": "anon-1"}), "b"),
            viewed(json!({"userId": "u_1"}), "c"),
        ],
    );
    rig.clock.set(T0 + MINUTE);
    rig.settle(&mut services);
    assert!(!rig.is_member("browser", "anonymous_id:anon-1"));
    assert!(!rig.is_member("browser", "user_id:u_1"));
    // The visitor identifies: two profiles with 2 + 1 views become one with 3.
    rig.ingest_at(
        T0 + 2 * MINUTE,
        &[json!({"type": "identify", "userId": "u_1", "anonymousId": "anon-1"})],
    );
    rig.clock.set(T0 + 2 * MINUTE);
    rig.settle(&mut services);
    assert!(rig.is_member("browser", "user_id:u_1"));
    assert!(
        rig.is_member("browser", "anonymous_id:anon-1"),
        "both ids resolve to the survivor"
    );
    let members = rig
        .pipeline
        .store()
        .read(|tables| tables.segment_member_count("browser"))
        .unwrap();
    assert_eq!(members, 1);
    let derived = rig.derived_events();
    assert_eq!(derived.len(), 1, "{derived:?}");
    assert_eq!(derived[0].0, "Segment Entered");
}

#[test]
fn computed_traits_appear_on_the_profile_and_follow_edits_and_deletes() {
    let rig = Rig::new();
    let mut services = SegmentServices::default();
    rig.ingest_at(T0, &[order("u_1", T0), order("u_1", T0 + 1)]);
    rig.define(
        DefinitionKind::ComputedTrait,
        "orders",
        1,
        json!({"id": "orders", "kind": "event_counter", "event": "Order Completed"}),
        T0 + MINUTE,
    );
    rig.clock.set(T0 + MINUTE);
    rig.settle(&mut services);
    let computed = |rig: &Rig| {
        rig.pipeline
            .store()
            .read(|tables| {
                let id = tables.resolve("user_id:u_1")?.unwrap();
                Ok(tables.profile(&id)?.unwrap().computed_traits)
            })
            .unwrap()
    };
    assert_eq!(computed(&rig).get("orders"), Some(&json!(2)));
    rig.ingest_at(T0 + 2 * MINUTE, &[order("u_1", T0 + 2 * MINUTE)]);
    rig.settle(&mut services);
    assert_eq!(computed(&rig).get("orders"), Some(&json!(3)));
    let record = LogRecord::encode_control(&ControlRecord::DefinitionDelete {
        kind: DefinitionKind::ComputedTrait,
        key: "orders".into(),
        version: 2,
        at: format_timestamp_ms(T0 + 3 * MINUTE),
    });
    rig.log.append(&[&record]).unwrap();
    rig.settle(&mut services);
    assert_eq!(computed(&rig).get("orders"), None);
}

#[test]
fn a_restarted_service_does_not_append_queued_events_twice() {
    let rig = Rig::new();
    let mut services = SegmentServices::default();
    rig.define(
        DefinitionKind::Segment,
        "recent_buyer",
        1,
        recent_buyer(),
        T0,
    );
    rig.ingest_at(T0 + MINUTE, &[order("u_1", T0 + MINUTE)]);
    rig.pipeline.run_until_caught_up().unwrap();
    // The derived event is appended, then the process "dies" before reading it back.
    assert!(rig.pipeline.segment_services_step(&mut services).unwrap());
    let Rig {
        dir,
        log,
        clock,
        pipeline,
    } = rig;
    drop(pipeline);
    let pipeline = Rig::open_pipeline(&dir, &log, &clock);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = pipeline.clone().spawn_segment_services(stop.clone());
    std::thread::sleep(Duration::from_millis(150));
    pipeline.run_until_caught_up().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Release);
    thread.join().unwrap();
    pipeline.run_until_caught_up().unwrap();
    let rig = Rig {
        dir,
        log,
        clock,
        pipeline,
    };
    assert_eq!(rig.derived_events().len(), 1);
    assert_eq!(
        rig.pipeline
            .store()
            .read(|tables| tables.outbox_len())
            .unwrap(),
        0
    );
}
