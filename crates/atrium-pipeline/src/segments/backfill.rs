//! The history scan behind backfill and preview: every event on some profile's timeline before
//! a log offset is handed, in log order, to the evaluator of one definition.
//!
//! Most events cannot affect the definition being backfilled: it reads only events of a few
//! names (`Compiled::event_names`, `CompiledTrait::event_name`, as indexed per event name by the
//! engine). Such an event still counts for the evaluator — it advances processing time to its
//! `receivedAt` and, for segments, numbers the arrival order — but its body does not. So each
//! record is first decoded only down to a borrowed [`EventHead`] (type, name, times, the raw
//! `properties`); the properties are parsed only for events of a relevant name. A run of
//! irrelevant events of one profile is then given to the evaluator as one call, with its
//! count and latest processing time ([`Replay::skipped`]): for both evaluators that equals
//! feeding the events one by one (pruning is monotone in time, nothing else changes).
//!
//! Records are read and decoded in chunks by two threads and applied in log order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use atrium_log::{EventLog, Record};
use atrium_segments::EventView;
use atrium_types::{LogRecord, parse_timestamp_ms};
use parking_lot::{Condvar, Mutex};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::PipelineError;

/// Offsets per chunk a decoding thread reads and decodes at once.
const CHUNK_OFFSETS: u64 = 8_192;
/// Threads reading and decoding chunks.
const DECODE_THREADS: usize = 2;
/// Chunks decoded ahead of the one being applied (bounds memory).
const CHUNKS_AHEAD: usize = 8;

/// What one definition's evaluator does with a profile's history.
pub(crate) trait Replay: Sync {
    type State: Send;
    /// The state of a profile before its first event.
    fn new_state(&self, profile: &str) -> Self::State;
    /// Feeds one event of a relevant name, processed at `now_ms`.
    fn event(&self, state: &mut Self::State, event: &EventView<'_>, now_ms: i64);
    /// `count` events (at least one) the definition cannot be affected by, the latest
    /// processed at `now_ms`: the same as feeding them one by one.
    fn skipped(&self, state: &mut Self::State, count: u64, now_ms: i64);
}

/// Event names of the definition's events: only these are decoded.
pub(crate) struct EventNames<'a> {
    names: Vec<&'a str>,
}

impl<'a> EventNames<'a> {
    pub fn new(mut names: Vec<&'a str>) -> EventNames<'a> {
        names.sort_unstable();
        names.dedup();
        EventNames { names }
    }

    fn contains(&self, name: &str) -> bool {
        // A handful of names: a linear scan beats hashing.
        self.names.contains(&name)
    }
}

/// The top-level members of a stored event the evaluators read, borrowed from the payload;
/// everything else is skipped (still checked as JSON). A record this does not describe
/// (a member of another type, a duplicate member, a control record) is decoded in full
/// instead, exactly as before.
#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "receivedAt", borrow, default)]
    received_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

/// One decoded history record.
enum Decoded {
    /// An event the definition cannot be affected by, processed at `now_ms`.
    Skipped { now_ms: i64 },
    /// An event of a relevant name.
    Relevant(Box<RelevantEvent>),
    /// Not an event (does not decode, or a control record): not fed, as before.
    Nothing,
}

struct RelevantEvent {
    name: String,
    event_type: String,
    time_ms: i64,
    now_ms: i64,
    properties: Value,
}

/// The name the evaluators match (`EventView::name`): `event` of track events, `name` of page
/// and screen events.
fn event_name<'a>(event_type: &str, event: Option<&'a str>, name: Option<&'a str>) -> &'a str {
    match event_type {
        "track" => event,
        "page" | "screen" => name,
        _ => None,
    }
    .unwrap_or("")
}

fn parse_time(text: Option<&str>) -> Option<i64> {
    text.and_then(parse_timestamp_ms)
}

fn decode(payload: &[u8], relevant: &EventNames<'_>) -> Decoded {
    if let Ok(head) = serde_json::from_slice::<EventHead<'_>>(payload) {
        let event_type = head.kind.as_deref().unwrap_or("track");
        if !event_type.starts_with("atrium.") {
            let received_ms = parse_time(head.received_at.as_deref());
            // Event time: `timestamp`, else `receivedAt`; processing time: `receivedAt`, else
            // event time.
            let time_ms = parse_time(head.timestamp.as_deref())
                .or(received_ms)
                .unwrap_or(0);
            let now_ms = received_ms.unwrap_or(time_ms);
            let name = event_name(event_type, head.event.as_deref(), head.name.as_deref());
            if !relevant.contains(name) {
                return Decoded::Skipped { now_ms };
            }
            let properties = match head.properties {
                None => Ok(Value::Null),
                Some(raw) => serde_json::from_str(raw.get()),
            };
            if let Ok(properties) = properties {
                return Decoded::Relevant(Box::new(RelevantEvent {
                    name: name.to_owned(),
                    event_type: event_type.to_owned(),
                    time_ms,
                    now_ms,
                    properties,
                }));
            }
        }
    }
    decode_fully(payload, relevant)
}

/// The decoding backfill always did: the whole record as a `serde_json::Value`.
fn decode_fully(payload: &[u8], relevant: &EventNames<'_>) -> Decoded {
    let Ok(LogRecord::Event(event)) = LogRecord::decode(payload) else {
        return Decoded::Nothing;
    };
    let text = |key: &str| event.get(key).and_then(Value::as_str);
    let received_ms = parse_time(text("receivedAt"));
    let time_ms = parse_time(text("timestamp")).or(received_ms).unwrap_or(0);
    let now_ms = received_ms.unwrap_or(time_ms);
    let event_type = text("type").unwrap_or("track");
    let name = event_name(event_type, text("event"), text("name"));
    if !relevant.contains(name) {
        return Decoded::Skipped { now_ms };
    }
    Decoded::Relevant(Box::new(RelevantEvent {
        name: name.to_owned(),
        event_type: event_type.to_owned(),
        time_ms,
        now_ms,
        properties: event.get("properties").cloned().unwrap_or(Value::Null),
    }))
}

/// A profile's state and the irrelevant events not given to it yet.
struct Slot<S> {
    state: S,
    pending: u64,
    pending_now_ms: i64,
}

/// Each profile's state after its history before log offset `until` (every event on some
/// profile's timeline, with the profile it belongs to now), in profile-id order. `entries`
/// are (offset, profile) in offset order, as `all_timeline_offsets` returns them.
pub(crate) fn replay<R: Replay>(
    entries: &[(u64, String)],
    log: &dyn EventLog,
    until: u64,
    relevant: &EventNames<'_>,
    evaluator: &R,
) -> Result<Vec<(String, R::State)>, PipelineError> {
    let end = entries.partition_point(|(offset, _)| *offset < until);
    let entries = &entries[..end];
    let Some((first_offset, _)) = entries.first() else {
        return Ok(Vec::new());
    };
    // Profiles by number, so the decoding threads and the slots need no strings.
    let mut numbers: HashMap<&str, u32> = HashMap::new();
    let mut profiles: Vec<&str> = Vec::new();
    let profile_of: Vec<u32> = entries
        .iter()
        .map(|(_, profile)| {
            *numbers.entry(profile.as_str()).or_insert_with(|| {
                profiles.push(profile.as_str());
                (profiles.len() - 1) as u32
            })
        })
        .collect();
    drop(numbers);
    let mut slots: Vec<Option<Slot<R::State>>> = Vec::new();
    slots.resize_with(profiles.len(), || None);

    let first_chunk = first_offset / CHUNK_OFFSETS;
    let chunks = (until - 1) / CHUNK_OFFSETS + 1 - first_chunk;
    let chunk_range = |chunk: usize| {
        let start = (first_chunk + chunk as u64) * CHUNK_OFFSETS;
        start..(start + CHUNK_OFFSETS).min(until)
    };

    let next_chunk = AtomicUsize::new(0);
    let applied = Mutex::new(0usize);
    let applied_changed = Condvar::new();
    let (sender, receiver) = mpsc::channel::<(usize, Result<Vec<(u32, Decoded)>, PipelineError>)>();
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        for _ in 0..DECODE_THREADS {
            let sender = sender.clone();
            let (next_chunk, applied, applied_changed) = (&next_chunk, &applied, &applied_changed);
            let (entries, profile_of) = (entries, &profile_of);
            scope.spawn(move || {
                loop {
                    let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
                    if chunk as u64 >= chunks {
                        return;
                    }
                    {
                        let mut applied = applied.lock();
                        while chunk >= *applied + CHUNKS_AHEAD && *applied != usize::MAX {
                            applied_changed.wait(&mut applied);
                        }
                        if *applied == usize::MAX {
                            return;
                        }
                    }
                    let decoded =
                        decode_chunk(entries, profile_of, log, chunk_range(chunk), relevant);
                    if sender.send((chunk, decoded)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let result = (|| -> Result<(), PipelineError> {
            let mut waiting: BTreeMap<usize, Vec<(u32, Decoded)>> = BTreeMap::new();
            for chunk in 0..chunks as usize {
                let decoded = loop {
                    if let Some(decoded) = waiting.remove(&chunk) {
                        break decoded;
                    }
                    let Ok((number, decoded)) = receiver.recv() else {
                        unreachable!("decoding threads send every chunk before they stop");
                    };
                    waiting.insert(number, decoded?);
                };
                for (profile, item) in decoded {
                    if matches!(item, Decoded::Nothing) {
                        continue;
                    }
                    let slot = slots[profile as usize].get_or_insert_with(|| Slot {
                        state: evaluator.new_state(profiles[profile as usize]),
                        pending: 0,
                        pending_now_ms: i64::MIN,
                    });
                    match item {
                        Decoded::Nothing => {}
                        Decoded::Skipped { now_ms } => {
                            slot.pending += 1;
                            slot.pending_now_ms = slot.pending_now_ms.max(now_ms);
                        }
                        Decoded::Relevant(event) => {
                            if slot.pending > 0 {
                                evaluator.skipped(
                                    &mut slot.state,
                                    slot.pending,
                                    slot.pending_now_ms,
                                );
                                slot.pending = 0;
                                slot.pending_now_ms = i64::MIN;
                            }
                            let view = EventView {
                                name: &event.name,
                                event_type: &event.event_type,
                                time_ms: event.time_ms,
                                properties: &event.properties,
                            };
                            evaluator.event(&mut slot.state, &view, event.now_ms);
                        }
                    }
                }
                *applied.lock() = chunk + 1;
                applied_changed.notify_all();
            }
            Ok(())
        })();
        // Stop the decoding threads (also when a chunk failed).
        *applied.lock() = usize::MAX;
        applied_changed.notify_all();
        drop(receiver);
        result
    })?;

    let mut states = Vec::with_capacity(profiles.len());
    for (profile, slot) in profiles.into_iter().zip(slots) {
        let Some(mut slot) = slot else { continue };
        if slot.pending > 0 {
            evaluator.skipped(&mut slot.state, slot.pending, slot.pending_now_ms);
        }
        states.push((profile.to_owned(), slot.state));
    }
    states.sort_unstable_by(|left, right| left.0.cmp(&right.0));
    Ok(states)
}

/// Reads and decodes the records of one chunk of offsets that are on some timeline.
fn decode_chunk(
    entries: &[(u64, String)],
    profile_of: &[u32],
    log: &dyn EventLog,
    offsets: std::ops::Range<u64>,
    relevant: &EventNames<'_>,
) -> Result<Vec<(u32, Decoded)>, PipelineError> {
    let first = entries.partition_point(|(offset, _)| *offset < offsets.start);
    let last = entries.partition_point(|(offset, _)| *offset < offsets.end);
    if first == last {
        return Ok(Vec::new());
    }
    let wanted = &entries[first..last];
    let mut decoded = Vec::with_capacity(wanted.len());
    let mut next = 0;
    let mut from = wanted[0].0;
    while next < wanted.len() {
        let records: Vec<Record> = log.read(from, (offsets.end - from) as usize)?;
        if records.is_empty() {
            break;
        }
        for record in &records {
            if record.offset >= offsets.end {
                break;
            }
            while next < wanted.len() && wanted[next].0 < record.offset {
                next += 1;
            }
            if next < wanted.len() && wanted[next].0 == record.offset {
                decoded.push((profile_of[first + next], decode(&record.payload, relevant)));
                next += 1;
            }
        }
        let read_to = records
            .last()
            .map_or(offsets.end, |record| record.offset + 1);
        if read_to >= offsets.end {
            break;
        }
        from = read_to;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, names: &[&str]) {
        let relevant = EventNames::new(names.to_vec());
        let fast = decode(payload.as_bytes(), &relevant);
        let full = decode_fully(payload.as_bytes(), &relevant);
        match (&fast, &full) {
            (Decoded::Nothing, Decoded::Nothing) => {}
            (Decoded::Skipped { now_ms: a }, Decoded::Skipped { now_ms: b }) => {
                assert_eq!(a, b, "{payload}")
            }
            (Decoded::Relevant(a), Decoded::Relevant(b)) => {
                assert_eq!(
                    (&a.name, &a.event_type, a.time_ms, a.now_ms, &a.properties),
                    (&b.name, &b.event_type, b.time_ms, b.now_ms, &b.properties),
                    "{payload}"
                );
            }
            _ => panic!("{payload}: the head and the full decoding disagree"),
        }
    }

    #[test]
    fn the_head_decodes_like_the_whole_record() {
        let names = ["Order Completed", "Home", "é"];
        for payload in [
            r#"{"type":"track","event":"Order Completed","properties":{"revenue":5},"receivedAt":"2026-01-01T00:00:01.000Z","timestamp":"2026-01-01T00:00:00.000Z"}"#,
            r#"{"type":"track","event":"Product Viewed","properties":{"a":[1,{"b":null}]},"receivedAt":"2026-01-01T00:00:01.000Z"}"#,
            r#"{"event":"Order Completed","timestamp":"2026-01-01T00:00:00.000Z"}"#,
            r#"{"type":"page","name":"Home","event":"Order Completed","properties":null}"#,
            r#"{"type":"screen","name":"Other","receivedAt":"bad"}"#,
            r#"{"type":"identify","traits":{"email":"a@b.c"},"receivedAt":"2026-01-01T00:00:01.000Z"}"#,
            r#"{"type":"track","event":"\u00e9","properties":{"x":1}}"#,
            r#"{"type":"track","event":"Order Completed","event":"Product Viewed"}"#,
            r#"{"type":"track","event":7,"properties":{}}"#,
            r#"{"type":null,"event":"Order Completed","properties":{"a":1}}"#,
            r#"{"type":"track","event":"Order Completed","receivedAt":5}"#,
            r#"{"type":"atrium.tick","at":"2026-01-01T00:00:00.000Z"}"#,
            r#"[1,2]"#,
            r#"{"type":"track","event":"Order Completed""#,
        ] {
            check(payload, &names);
        }
    }

    mod equivalence {
        use std::sync::Arc;

        use atrium_log::{LogConfig, SegmentedLog};
        use atrium_segments::{
            Catalog, Compiled, CompiledTrait, ProfileState, TraitState, on_event, validate,
            validate_computed_trait,
        };
        use atrium_types::{ControlRecord, format_timestamp_ms};
        use proptest::prelude::*;
        use serde_json::json;

        use super::*;
        use crate::segments::{SegmentReplay, TraitReplay};

        const T0: i64 = 1_767_225_600_000;
        const MINUTE: i64 = 60_000;

        /// The scan backfill did before: every record decoded in full and every event fed.
        fn reference<S>(
            entries: &[(u64, String)],
            log: &dyn EventLog,
            until: u64,
            mut new_state: impl FnMut(&str) -> S,
            mut feed: impl FnMut(&mut S, &EventView<'_>, i64),
        ) -> Vec<(String, S)> {
            let mut states: BTreeMap<String, S> = BTreeMap::new();
            for (offset, profile) in entries {
                if *offset >= until {
                    break;
                }
                let record = log.read(*offset, 1).unwrap().remove(0);
                let Ok(LogRecord::Event(event)) = LogRecord::decode(&record.payload) else {
                    continue;
                };
                let text = |key: &str| event.get(key).and_then(Value::as_str);
                let time_ms = parse_time(text("timestamp"))
                    .or(parse_time(text("receivedAt")))
                    .unwrap_or(0);
                let now_ms = parse_time(text("receivedAt")).unwrap_or(time_ms);
                let event_type = text("type").unwrap_or("track");
                let view = EventView {
                    name: event_name(event_type, text("event"), text("name")),
                    event_type,
                    time_ms,
                    properties: event.get("properties").unwrap_or(&Value::Null),
                };
                let state = states
                    .entry(profile.clone())
                    .or_insert_with(|| new_state(profile));
                feed(state, &view, now_ms);
            }
            states.into_iter().collect()
        }

        fn definitions() -> (Vec<Compiled>, Vec<CompiledTrait>) {
            let catalog = Catalog::default();
            let segments = atrium_gen::segments::bench_segments(10)
                .into_iter()
                .map(|(_, body)| {
                    validate(&serde_json::from_value(body).unwrap(), &catalog).unwrap()
                })
                .collect();
            let traits = atrium_gen::segments::bench_computed_traits(12)
                .into_iter()
                .map(|(_, body)| {
                    validate_computed_trait(&serde_json::from_value(body).unwrap()).unwrap()
                })
                .collect();
            (segments, traits)
        }

        const NAMES: [&str; 6] = [
            "Product Viewed",
            "Product Added",
            "Order Completed",
            "Checkout Started",
            "Cart Viewed",
            "Signed Up",
        ];

        /// One record: an event (kind, name, profile, processing-time step, event-time lag,
        /// property value) — or, for some kinds, a record that is not an event.
        fn payload(raw: (u8, u8, u8, i8, u8, u8), received: &mut i64) -> Vec<u8> {
            let (kind, name, user, step, lag, value) = raw;
            // Processing time mostly moves forward, sometimes back (concurrent requests).
            *received += i64::from(step) * MINUTE;
            let name = NAMES[usize::from(name) % NAMES.len()];
            let properties = json!({"revenue": 10 * i64::from(value), "cart_id": format!("c{}", value % 3),
                                    "product_id": format!("p{value}"), "category": format!("k{}", value % 4)});
            let mut event = match kind % 10 {
                0..=4 => json!({"type": "track", "event": name, "properties": properties}),
                5 => json!({"type": "page", "name": name, "properties": properties}),
                6 => {
                    json!({"type": "identify", "traits": {"tier": "gold"}, "anonymousId": format!("a{user}")})
                }
                7 => json!({"type": "alias", "previousId": format!("a{user}")}),
                8 => {
                    return LogRecord::encode_control(&ControlRecord::Tick {
                        at: format_timestamp_ms(*received),
                    });
                }
                _ => json!({"type": "track", "event": name}),
            };
            event["userId"] = json!(format!("u{user}"));
            event["context"] =
                json!({"page": {"url": "https://shop.example/x"}, "traits": {"a": [1, {"b": 2}]}});
            if value % 7 != 0 {
                event["receivedAt"] = json!(format_timestamp_ms(*received));
            }
            if value % 5 != 0 {
                let lag_ms = i64::from(lag) * 7 * MINUTE;
                event["timestamp"] = json!(format_timestamp_ms(*received - lag_ms));
            }
            serde_json::to_vec(&event).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever the mix of names, types, profiles and times, the prefiltered replay
            /// gives every profile exactly the state (arrival numbers and processing time
            /// included) that decoding and feeding every event gives.
            #[test]
            fn prefiltered_replay_equals_feeding_every_event(
                raw in proptest::collection::vec((0u8..10, 0u8..6, 0u8..5, -3i8..20, 0u8..6, 0u8..20), 1..200),
                profiles in proptest::collection::vec(0u8..6, 1..200),
                cut in 0.0f64..1.2,
            ) {
                let dir = tempfile::tempdir().unwrap();
                let log = Arc::new(SegmentedLog::open(LogConfig::new(dir.path().join("log"))).unwrap());
                let mut received = T0;
                let payloads: Vec<Vec<u8>> = raw.iter().map(|raw| payload(*raw, &mut received)).collect();
                let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                log.append(&slices).unwrap();
                // Current owners (merges moved timelines); one offset in six is on no timeline.
                let entries: Vec<(u64, String)> = (0..payloads.len() as u64)
                    .filter_map(|offset| {
                        let owner = profiles[offset as usize % profiles.len()];
                        (owner != 5).then(|| (offset, format!("p{owner}")))
                    })
                    .collect();
                let until = (payloads.len() as f64 * cut) as u64;
                let (segments, traits) = definitions();
                for compiled in &segments {
                    let names = EventNames::new(compiled.event_names());
                    let fast = replay(&entries, log.as_ref(), until, &names, &SegmentReplay(compiled)).unwrap();
                    let slow: Vec<(String, ProfileState)> = reference(
                        &entries, log.as_ref(), until,
                        |profile| ProfileState::new(compiled, profile),
                        |state, view, now| { on_event(compiled, state, view, now); },
                    );
                    prop_assert_eq!(fast, slow, "segment {}", compiled.id);
                }
                for compiled in &traits {
                    let names = EventNames::new(vec![compiled.event_name()]);
                    let fast = replay(&entries, log.as_ref(), until, &names, &TraitReplay(compiled)).unwrap();
                    let slow: Vec<(String, TraitState)> = reference(
                        &entries, log.as_ref(), until,
                        |_| compiled.new_state(),
                        |state, view, now| { compiled.on_event(state, view, now); },
                    );
                    prop_assert_eq!(fast, slow, "computed trait {}", compiled.id);
                }
            }
        }
    }
}
