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
        Rig::new_with_batch(7)
    }

    fn new_with_batch(batch: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(SegmentedLog::open(LogConfig::new(dir.path().join("log"))).unwrap());
        let clock = ManualClock::new(T0);
        let store = Arc::new(Store::open(dir.path().join("state.redb")).unwrap());
        let pipeline = Arc::new(
            Pipeline::new(log.clone(), store, config(batch), Arc::new(clock.clone())).unwrap(),
        );
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

mod properties {
    use super::*;
    use atrium_segments::{Catalog, EventView, ProfileFacts, evaluate_from_history, validate};
    use proptest::prelude::*;

    /// One generated input: an event at a processing time, a definition, or a tick.
    #[derive(Clone, Debug)]
    enum Step {
        Event { at: i64, lag: i64, event: Value },
        Define,
        Tick { at: i64 },
    }

    fn segments() -> Vec<(String, Value)> {
        vec![
            (
                "browsing".into(),
                json!({"id": "browsing", "condition": {"op": "performed", "event": "Product Viewed",
                       "window": {"kind": "last", "n": 30, "unit": "minutes"}, "cmp": {"operator": "gte", "value": 2}}}),
            ),
            (
                "abandoned".into(),
                json!({"id": "abandoned", "condition": {"op": "not_followed_by",
                       "first": {"event": "Product Added"}, "then": {"event": "Order Completed"},
                       "within": {"n": 20, "unit": "minutes"}, "join": ["cart_id"]}}),
            ),
            (
                "pro_buyer".into(),
                json!({"id": "pro_buyer", "condition": {"op": "all", "of": [
                       {"op": "trait", "path": "plan", "operator": "eq", "value": "pro"},
                       {"op": "performed", "event": "Order Completed", "measure": {"kind": "sum", "property": "revenue"},
                        "cmp": {"operator": "gte", "value": 50}}]}}),
            ),
        ]
    }

    fn trait_definition() -> Value {
        json!({"id": "recent_views", "kind": "event_counter", "event": "Product Viewed",
               "window": {"kind": "last", "n": 60, "unit": "minutes"}})
    }

    fn step() -> impl Strategy<Value = (u8, u8, u8, u8, u8)> {
        (0u8..8, 0u8..4, 0u8..2, 0u8..20, 0u8..3)
    }

    fn build(raw: &[(u8, u8, u8, u8, u8)], define_at: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut now = T0;
        for (index, (kind, user, anonymous, delay, cart)) in raw.iter().copied().enumerate() {
            if index == define_at {
                steps.push(Step::Define);
            }
            now += i64::from(delay) * MINUTE / 2 + 1;
            let ids = if anonymous == 1 {
                json!({"anonymousId": format!("a{user}")})
            } else {
                json!({"userId": format!("u{user}")})
            };
            let mut event = match kind {
                0 | 1 => {
                    json!({"type": "track", "event": "Product Viewed", "properties": {"sku": format!("s{cart}")}})
                }
                2 => {
                    json!({"type": "track", "event": "Product Added", "properties": {"cart_id": format!("c{user}{cart}")}})
                }
                3 => json!({"type": "track", "event": "Order Completed",
                            "properties": {"cart_id": format!("c{user}{cart}"), "order_id": format!("o{index}"), "revenue": 10 + 10 * i64::from(cart)}}),
                4 => {
                    json!({"type": "identify", "userId": format!("u{user}"), "anonymousId": format!("a{user}")})
                }
                5 => {
                    json!({"type": "identify", "traits": {"plan": if cart == 0 { "free" } else { "pro" }}})
                }
                6 => {
                    steps.push(Step::Tick { at: now });
                    continue;
                }
                _ => json!({"type": "page", "name": "Home"}),
            };
            for (key, value) in ids.as_object().unwrap() {
                event[key] = value.clone();
            }
            // Some events arrive late: their event time is before their processing time.
            let lag = if delay % 5 == 0 {
                i64::from(delay) * MINUTE
            } else {
                0
            };
            steps.push(Step::Event {
                at: now,
                lag,
                event,
            });
        }
        if define_at >= raw.len() {
            steps.push(Step::Define);
        }
        steps.push(Step::Tick {
            at: now + 2 * 60 * MINUTE,
        });
        steps
    }

    fn append(rig: &Rig, steps: &[Step]) -> i64 {
        let mut last = T0;
        for step in steps {
            match step {
                Step::Event { at, lag, event } => {
                    let mut event = event.clone();
                    event["timestamp"] = json!(format_timestamp_ms(at - lag));
                    rig.ingest_at(*at, &[event]);
                    last = *at;
                }
                Step::Define => {
                    rig.define(
                        DefinitionKind::ComputedTrait,
                        "recent_views",
                        1,
                        trait_definition(),
                        last,
                    );
                    for (key, body) in segments() {
                        rig.define(DefinitionKind::Segment, &key, 1, body, last);
                    }
                }
                Step::Tick { at } => {
                    let record = LogRecord::encode_control(&ControlRecord::Tick {
                        at: format_timestamp_ms(*at),
                    });
                    rig.log.append(&[&record]).unwrap();
                    last = *at;
                }
            }
        }
        last
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// With merges, late events, window edges and timers: after the final tick, every
        /// profile's membership and computed trait equal the reference evaluation of its whole
        /// history, and the state does not depend on batch boundaries.
        #[test]
        fn real_time_membership_equals_the_reference_evaluation(
            raw in proptest::collection::vec(step(), 1..60),
            define_frac in 0.0f64..1.0,
            batch in 1usize..20,
        ) {
            let define_at = (raw.len() as f64 * define_frac) as usize;
            let steps = build(&raw, define_at);
            let rig = Rig::new_with_batch(batch);
            let now = append(&rig, &steps);
            rig.pipeline.run_until_caught_up().unwrap();

            let mut catalog = Catalog::default();
            catalog.computed_traits.insert("recent_views".into(), serde_json::from_value(trait_definition()).unwrap());
            let compiled_trait = atrium_segments::validate_computed_trait(&catalog.computed_traits["recent_views"]).unwrap();
            let store = rig.pipeline.store().clone();
            let profiles = store.read(|tables| tables.list_profiles(None, 10_000)).unwrap().profiles;
            for profile in &profiles {
                let offsets = store.read(|tables| tables.timeline(&atrium_store::ProfileId(profile.id.clone()), None, 10_000)).unwrap();
                let mut offsets: Vec<u64> = offsets.into_iter().map(|entry| entry.offset).collect();
                offsets.sort_unstable();
                let events: Vec<Value> = offsets.iter().map(|offset| {
                    let record = rig.log.read(*offset, 1).unwrap().remove(0);
                    match LogRecord::decode(&record.payload).unwrap() { LogRecord::Event(event) => event, _ => unreachable!() }
                }).collect();
                let times: Vec<i64> = events.iter().map(|event| atrium_types::parse_timestamp_ms(event["timestamp"].as_str().unwrap()).unwrap()).collect();
                let views: Vec<EventView<'_>> = events.iter().zip(&times).map(|(event, time)| {
                    let event_type = event["type"].as_str().unwrap();
                    EventView {
                        name: if event_type == "page" { event["name"].as_str().unwrap() } else { event["event"].as_str().unwrap_or("") },
                        event_type,
                        time_ms: *time,
                        properties: &event["properties"],
                    }
                }).collect();
                let traits = profile.trait_values();
                let facts = ProfileFacts { profile_id: &profile.id, traits: &traits, entry_ms: None };
                for (key, body) in segments() {
                    let definition = serde_json::from_value(body).unwrap();
                    let compiled = validate(&definition, &catalog).unwrap();
                    let expected = evaluate_from_history(&compiled, &facts, &views, now);
                    let actual = store.read(|tables| tables.segment_member(&key, &profile.id)).unwrap().is_some();
                    prop_assert_eq!(actual, expected, "segment {} profile {}", key, profile.id);
                }
                let expected = compiled_trait.compute_from_history(&views, None, now);
                prop_assert_eq!(profile.computed_traits.get("recent_views"), Some(&expected), "trait for {}", profile.id);
            }
            // Batch boundaries do not matter.
            let digest = store.digest().unwrap();
            let Rig { dir, log, clock, pipeline } = rig;
            drop(pipeline);
            let replayed = rebuild(&dir.path().join("state.redb"), log.clone(), config(batch * 7 + 3), Arc::new(clock.clone()), |_, _| {}).unwrap();
            prop_assert_eq!(replayed.digest().unwrap(), digest);
        }
    }
}

/// The generator's demo and benchmark definitions are valid segment-language definitions.
#[test]
fn generated_definitions_compile() {
    use atrium_segments::{Catalog, validate, validate_computed_trait};
    let mut catalog = Catalog::default();
    for (id, body) in atrium_gen::segments::demo_computed_traits()
        .into_iter()
        .chain(atrium_gen::segments::bench_computed_traits(20))
    {
        let definition =
            serde_json::from_value(body).unwrap_or_else(|error| panic!("{id}: {error}"));
        validate_computed_trait(&definition).unwrap_or_else(|errors| panic!("{id}: {errors:?}"));
        catalog.computed_traits.insert(id, definition);
    }
    let segments: Vec<_> = atrium_gen::segments::demo_segments()
        .into_iter()
        .chain(atrium_gen::segments::bench_segments(100))
        .collect();
    for (id, body) in &segments {
        let definition =
            serde_json::from_value(body.clone()).unwrap_or_else(|error| panic!("{id}: {error}"));
        catalog.segments.insert(id.clone(), definition);
    }
    for (id, definition) in &catalog.segments {
        validate(definition, &catalog).unwrap_or_else(|errors| panic!("{id}: {errors:?}"));
    }
    assert_eq!(catalog.segments.len(), 105);
}

/// A timer set before a restart fires after it, at the right moment.
#[test]
fn timers_survive_a_restart() {
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
    rig.settle(&mut services);
    assert!(rig.is_member("recent_buyer", "user_id:u_1"));
    let Rig {
        dir,
        log,
        clock,
        pipeline,
    } = rig;
    drop(pipeline);
    // Restarted: the timer comes back from the store.
    let pipeline = Rig::open_pipeline(&dir, &log, &clock);
    assert_eq!(pipeline.next_segment_timer(), Some(T0 + 31 * MINUTE));
    let rig = Rig {
        dir,
        log,
        clock,
        pipeline,
    };
    let mut services = SegmentServices::default();
    rig.clock.set(T0 + 31 * MINUTE - 1);
    rig.settle(&mut services);
    assert!(rig.is_member("recent_buyer", "user_id:u_1"));
    rig.clock.set(T0 + 31 * MINUTE);
    rig.settle(&mut services);
    assert!(!rig.is_member("recent_buyer", "user_id:u_1"));
    let names: Vec<String> = rig
        .derived_events()
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(names, ["Segment Entered", "Segment Exited"]);
}
