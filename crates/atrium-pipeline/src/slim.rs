//! Decoding a stored event down to the fields the pipeline reads. A full `serde_json::Value`
//! of every event (page context, library, product arrays, …) was a quarter of the pipeline's
//! time; here one pass over the payload builds values only for those fields and skips the rest
//! (`properties` and `name` are kept as raw text until it is known whether they are needed).

use std::collections::HashSet;
use std::fmt;

use atrium_profiles::{CONTEXT_FIELDS, EVENT_FIELDS, is_order_event};
use atrium_types::{LogRecord, RecordError};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Server-side exposures carry sticky bucket assignments in their properties.
pub(crate) const EXPOSURE_EVENT: &str = "Experiment Viewed";

/// Which events keep their `properties` besides order events (profiles' commerce facts) and
/// `Experiment Viewed` events (their sticky bucket assignments), which always do.
#[derive(Clone, Copy)]
pub(crate) enum Keep<'a> {
    /// No other event (no segment or computed-trait definition).
    Needed,
    /// Events the segment engine reads: those whose name (a track event's `event`, a page or
    /// screen's `name`) the catalog's definitions mention. Page and screen events keep `name`.
    ReadBy(&'a DecodeFilter),
    /// Every event; page and screen events keep `name` (what the two-pass reference of the
    /// tests decodes).
    #[cfg(test)]
    All,
}

/// What the definitions of a segment catalog read of events, as the decoder needs it. The catalog
/// builds a new one whenever its definitions change, so a batch decoded ahead of time can tell
/// whether it was decoded for the current definitions (`Arc::ptr_eq`).
#[derive(Debug, Default)]
pub(crate) struct DecodeFilter {
    /// Some segment or computed trait is defined.
    pub(crate) active: bool,
    /// The event names some definition reads.
    pub(crate) events: HashSet<String>,
    /// The top-level event property keys some definition reads, sorted: events keep only these
    /// properties.
    pub(crate) property_keys: Vec<String>,
}

impl DecodeFilter {
    pub(crate) fn keep(&self) -> Keep<'_> {
        if self.active {
            Keep::ReadBy(self)
        } else {
            Keep::Needed
        }
    }
}

/// Decodes a stored record, events down to the fields the pipeline reads and, per `keep`, their
/// properties.
///
/// A repeated key counts with its last occurrence, like serde_json's own maps; the slim event's
/// keys are in [`EVENT_FIELDS`] order, then `context` (its keys in [`CONTEXT_FIELDS`] order, and
/// only when it is an object), `name`, `properties`.
pub(crate) fn decode(payload: &[u8], keep: Keep<'_>) -> Result<LogRecord, RecordError> {
    let mut scan: Scan<'_> = serde_json::from_slice(payload)?;
    // As a borrowed string: a `type` with escapes is no control record (nor a track event).
    let kind: Option<&str> = scan
        .kind
        .and_then(|raw| serde_json::from_str(raw.get()).ok());
    if kind.is_some_and(|kind| kind.starts_with("atrium.")) {
        return LogRecord::decode(payload);
    }
    let mut event = Map::with_capacity(EVENT_FIELDS.len() + 3);
    for (key, field) in EVENT_FIELDS.iter().zip(scan.fields.iter_mut()) {
        if *key == "type" {
            if let Some(raw) = scan.kind {
                event.insert((*key).to_owned(), serde_json::from_str(raw.get())?);
            }
        } else if let Some(value) = field.take() {
            event.insert((*key).to_owned(), value);
        }
    }
    if let Some(Context::Object(mut fields)) = scan.context {
        let mut slim = Map::with_capacity(CONTEXT_FIELDS.len());
        for (key, field) in CONTEXT_FIELDS.iter().zip(fields.iter_mut()) {
            if let Some(value) = field.take() {
                slim.insert((*key).to_owned(), value);
            }
        }
        event.insert("context".to_owned(), Value::Object(slim));
    }
    if !matches!(keep, Keep::Needed)
        && let Some(raw) = scan.name
    {
        event.insert("name".to_owned(), serde_json::from_str(raw.get())?);
    }
    let track_name = event.get("event").and_then(Value::as_str);
    let needed = |name: &str| is_order_event(name) || name == EXPOSURE_EVENT;
    // `None`: no properties; `Some(None)`: all of them; `Some(Some(keys))`: those top-level keys.
    let keep_properties: Option<Option<&[String]>> = match keep {
        #[cfg(test)]
        Keep::All => Some(None),
        _ if kind == Some("track") && track_name.is_some_and(needed) => Some(None),
        Keep::Needed => None,
        // The name as the segment engine reads it (`segments::event_view`).
        Keep::ReadBy(filter) => {
            let name = match kind.unwrap_or("track") {
                "track" => track_name,
                "page" | "screen" => event.get("name").and_then(Value::as_str),
                _ => None,
            };
            filter
                .events
                .contains(name.unwrap_or(""))
                .then_some(Some(filter.property_keys.as_slice()))
        }
    };
    if let (Some(keys), Some(raw)) = (keep_properties, scan.properties) {
        event.insert("properties".to_owned(), decode_properties(raw.get(), keys)?);
    }
    Ok(LogRecord::Event(Value::Object(event)))
}

/// `properties` in full (`keys` is `None`), or, when it is an object, only its members whose key
/// is one of `keys` (sorted): what reading the paths under those keys needs.
fn decode_properties(raw: &str, keys: Option<&[String]>) -> Result<Value, serde_json::Error> {
    match keys {
        Some(keys) if raw.starts_with('{') => {
            let mut deserializer = serde_json::Deserializer::from_str(raw);
            let kept = deserializer.deserialize_map(KeptMembers { keys })?;
            deserializer.end()?;
            Ok(Value::Object(kept))
        }
        _ => serde_json::from_str(raw),
    }
}

/// The members of an object whose key is one of `keys` (sorted); the other values are skipped
/// without being built. A repeated key keeps its last value, as a full decode does.
struct KeptMembers<'k> {
    keys: &'k [String],
}

impl<'de> Visitor<'de> for KeptMembers<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(KeptKey { keys: self.keys })? {
            match key {
                Some(key) => {
                    kept.insert(key, map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kept)
    }
}

/// A member's key: `Some` (owned) when it is one of `keys`, `None` (no allocation) otherwise.
struct KeptKey<'k> {
    keys: &'k [String],
}

impl<'de> serde::de::DeserializeSeed<'de> for KeptKey<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeptKey<'_> {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let kept = self
            .keys
            .binary_search_by(|candidate| candidate.as_str().cmp(key))
            .is_ok();
        Ok(kept.then(|| key.to_owned()))
    }
}

/// The top level of one payload: values of the fields the pipeline reads, by position in
/// [`EVENT_FIELDS`]; raw text for the ones decided on later.
struct Scan<'a> {
    fields: [Option<Value>; EVENT_FIELDS.len()],
    kind: Option<&'a RawValue>,
    context: Option<Context>,
    name: Option<&'a RawValue>,
    properties: Option<&'a RawValue>,
}

/// `context`: the values of [`CONTEXT_FIELDS`] when it is an object. Lives on the stack for
/// one decode, so the large variant is not boxed (that would be an allocation per event).
#[allow(clippy::large_enum_variant)]
enum Context {
    Object([Option<Value>; CONTEXT_FIELDS.len()]),
    NotAnObject,
}

/// A top-level key.
enum TopField {
    Event(usize),
    Type,
    Context,
    Name,
    Properties,
    Other,
}

impl<'de> Deserialize<'de> for TopField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = TopField;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<TopField, E> {
                Ok(match key {
                    "type" => TopField::Type,
                    "context" => TopField::Context,
                    "name" => TopField::Name,
                    "properties" => TopField::Properties,
                    _ => match EVENT_FIELDS.iter().position(|field| *field == key) {
                        Some(index) => TopField::Event(index),
                        None => TopField::Other,
                    },
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scan<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScanVisitor;

        impl<'de> Visitor<'de> for ScanVisitor {
            type Value = Scan<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a json object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Scan<'de>, M::Error> {
                let mut scan = Scan {
                    fields: Default::default(),
                    kind: None,
                    context: None,
                    name: None,
                    properties: None,
                };
                while let Some(field) = map.next_key::<TopField>()? {
                    match field {
                        TopField::Event(index) => scan.fields[index] = Some(map.next_value()?),
                        TopField::Type => scan.kind = Some(map.next_value()?),
                        TopField::Context => scan.context = Some(map.next_value()?),
                        TopField::Name => scan.name = Some(map.next_value()?),
                        TopField::Properties => scan.properties = Some(map.next_value()?),
                        TopField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(scan)
            }
        }

        deserializer.deserialize_map(ScanVisitor)
    }
}

/// A key of `context`: its position in [`CONTEXT_FIELDS`], if listed.
struct ContextField(Option<usize>);

impl<'de> Deserialize<'de> for ContextField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = ContextField;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<ContextField, E> {
                Ok(ContextField(
                    CONTEXT_FIELDS.iter().position(|field| *field == key),
                ))
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContextVisitor;

        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = Context;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any json value")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Context, M::Error> {
                let mut fields: [Option<Value>; CONTEXT_FIELDS.len()] = Default::default();
                while let Some(ContextField(index)) = map.next_key()? {
                    match index {
                        Some(index) => fields[index] = Some(map.next_value()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Context::Object(fields))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Context, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Context::NotAnObject)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }

            fn visit_str<E>(self, _: &str) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }

            fn visit_unit<E>(self) -> Result<Context, E> {
                Ok(Context::NotAnObject)
            }
        }

        deserializer.deserialize_any(ContextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous two-pass decoder (borrowed top level, then the needed fields), kept as the
    /// reference the one-pass decoder must agree with.
    fn decode_reference(payload: &[u8], keep_properties: bool) -> Result<LogRecord, RecordError> {
        use atrium_types::raw_json::RawObject;
        let object: RawObject<'_> = serde_json::from_slice(payload)?;
        let kind: Option<&str> = object
            .get("type")
            .and_then(|raw| serde_json::from_str(raw.get()).ok());
        if kind.is_some_and(|kind| kind.starts_with("atrium.")) {
            return LogRecord::decode(payload);
        }
        let mut event = Map::new();
        for key in EVENT_FIELDS {
            if let Some(raw) = object.get(key) {
                event.insert(key.to_owned(), serde_json::from_str(raw.get())?);
            }
        }
        if let Some(raw) = object.get("context")
            && let Ok(context) = RawObject::parse(raw.get())
        {
            let mut slim = Map::new();
            for key in CONTEXT_FIELDS {
                if let Some(raw) = context.get(key) {
                    slim.insert(key.to_owned(), serde_json::from_str(raw.get())?);
                }
            }
            event.insert("context".to_owned(), Value::Object(slim));
        }
        if keep_properties && let Some(raw) = object.get("name") {
            event.insert("name".to_owned(), serde_json::from_str(raw.get())?);
        }
        let name = event.get("event").and_then(Value::as_str);
        let needed = |name: &str| is_order_event(name) || name == EXPOSURE_EVENT;
        if (keep_properties || kind == Some("track") && name.is_some_and(needed))
            && let Some(raw) = object.get("properties")
        {
            event.insert("properties".to_owned(), serde_json::from_str(raw.get())?);
        }
        Ok(LogRecord::Event(Value::Object(event)))
    }

    /// Same value, same key order (compared as serialized text).
    fn assert_agrees(payload: &[u8]) {
        for keep_properties in [false, true] {
            let keep = if keep_properties {
                Keep::All
            } else {
                Keep::Needed
            };
            let one_pass = decode(payload, keep);
            let reference = decode_reference(payload, keep_properties);
            match (one_pass, reference) {
                (Ok(LogRecord::Event(one_pass)), Ok(LogRecord::Event(reference))) => assert_eq!(
                    serde_json::to_string(&one_pass).unwrap(),
                    serde_json::to_string(&reference).unwrap(),
                    "{}",
                    String::from_utf8_lossy(payload)
                ),
                (Ok(LogRecord::Control(one_pass)), Ok(LogRecord::Control(reference))) => {
                    assert_eq!(format!("{one_pass:?}"), format!("{reference:?}"))
                }
                (Err(_), Err(_)) => {}
                (one_pass, reference) => panic!(
                    "{}: {one_pass:?} vs {reference:?}",
                    String::from_utf8_lossy(payload)
                ),
            }
        }
    }

    #[test]
    fn one_pass_agrees_with_the_two_pass_reference() {
        let generator = atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(5, 3_000));
        for mut event in generator {
            atrium_gen::take_source(&mut event);
            event["atrium"] = serde_json::json!({"source": "web", "channel": "web"});
            assert_agrees(&serde_json::to_vec(&event).unwrap());
        }
        let edge_cases: [&[u8]; 14] = [
            br#"{"type":"track","event":"Order Completed","properties":{"a":1},"properties":{"b":2}}"#,
            br#"{"userId":"a","userId":"b","context":{"traits":{"email":"x@y.z"}},"context":{"os":{"name":"ios"}}}"#,
            br#"{"type":"identify","context":null,"traits":{"k":"v","k":"w"}}"#,
            br#"{"type":"identify","context":[1,{"a":2}],"userId":7}"#,
            br#"{"type":"identify","context":"text"}"#,
            br#"{"type":"identify","context":{"campaign":{"source":"g"},"campaign":{"name":"n"},"page":{"u":1}}}"#,
            br#"{"type":"track","event":"Order Completed","properties":{"revenue":5}}"#,
            br#"{"type":"track","event":"Order Completed","properties":{"revenue":5},"name":"x"}"#,
            br#"{"type":"atrium.tick","at":"2026-01-01T00:00:00.000Z"}"#,
            br#"{"type":"atrium.tick","at":"2026-01-01T00:00:00.000Z"}"#,
            br#"{"type":5,"event":null}"#,
            br#"[1,2]"#,
            br#"{"type":"track","unterminated":"#,
            br#"{}"#,
        ];
        for payload in edge_cases {
            assert_agrees(payload);
        }
    }

    /// The slim event gives the same identifiers and the same profile as the full one.
    #[test]
    fn slim_and_full_events_derive_the_same_state() {
        let rules = atrium_identity::IdentityRules::default().compile().unwrap();
        let mut full_profile = atrium_profiles::Profile::new("p", 0);
        let mut slim_profile = atrium_profiles::Profile::new("p", 0);
        let generator = atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(3, 3_000));
        for (offset, mut event) in generator.enumerate() {
            atrium_gen::take_source(&mut event);
            event["atrium"] = serde_json::json!({"source": "web", "channel": "web"});
            let payload = serde_json::to_vec(&event).unwrap();
            let LogRecord::Event(slim) = decode(&payload, Keep::Needed).unwrap() else {
                panic!("an event")
            };
            let full_ids = atrium_identity::extract_identifiers(&event, &rules);
            let slim_ids = atrium_identity::extract_identifiers(&slim, &rules);
            assert_eq!(full_ids.identifiers, slim_ids.identifiers, "event {offset}");
            assert_eq!(full_ids.blocked, slim_ids.blocked, "event {offset}");
            let facts = atrium_profiles::EventFacts {
                offset: offset as u64,
                time_ms: offset as i64,
                source: "web",
                channel: "web",
            };
            full_profile.apply(&event, facts);
            slim_profile.apply(&slim, facts);
        }
        assert_eq!(full_profile, slim_profile);
        assert!(
            full_profile.commerce.order_count > 0,
            "the stream had orders"
        );
    }

    #[test]
    fn keeps_what_the_pipeline_reads_and_drops_the_rest() {
        let payload = br#"{"type":"track","event":"Product Viewed","userId":"u","properties":{"big":[1,2,3]},"context":{"page":{"url":"x"},"campaign":{"source":"g"},"traits":{"email":"a@b.c"}},"atrium":{"source":"web","channel":"web"}}"#;
        let LogRecord::Event(event) = decode(payload, Keep::Needed).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["userId"], "u");
        assert!(event.get("properties").is_none(), "not an order event");
        assert!(event["context"].get("page").is_none());
        assert_eq!(event["context"]["campaign"]["source"], "g");
        assert_eq!(event["atrium"]["channel"], "web");

        let order = br#"{"type":"track","event":"Order Completed","userId":"u","properties":{"order_id":"o","revenue":5}}"#;
        let LogRecord::Event(event) = decode(order, Keep::Needed).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["properties"]["revenue"], 5);
        let exposure = br#"{"type":"track","event":"Experiment Viewed","userId":"u","properties":{"sticky_buckets":[]}}"#;
        let LogRecord::Event(event) = decode(exposure, Keep::Needed).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["properties"]["sticky_buckets"], serde_json::json!([]));

        let control = br#"{"type":"atrium.erase","profile_id":"p","identifier_hashes":[],"requested_at":"x","suppress":true}"#;
        assert!(matches!(
            decode(control, Keep::Needed).unwrap(),
            LogRecord::Control(_)
        ));
        assert!(decode(b"[1]", Keep::Needed).is_err());
    }

    /// Kept members equal the full decode's members under the same keys (nested values, a
    /// repeated key's last value, escaped keys); a non-object is decoded in full.
    #[test]
    fn kept_properties_are_the_full_properties_under_the_keys() {
        let keys = [
            "cart_id".to_owned(),
            "products".to_owned(),
            "re\"venue".to_owned(),
        ];
        let raw = r#"{"name": "x", "products": [{"category": "a"}], "cart_id": 1, "cart_id": 2,
            "re\"venue": 3.5, "big": {"deep": [1, 2, 3]}, "r\u0065venue": 9}"#;
        let full: Value = serde_json::from_str(raw).unwrap();
        let kept = decode_properties(raw, Some(&keys)).unwrap();
        let mut expected = Map::new();
        for key in &keys {
            expected.insert(key.clone(), full[key.as_str()].clone());
        }
        assert_eq!(kept, Value::Object(expected));
        assert_eq!(kept["cart_id"], serde_json::json!(2));
        for raw in [r#"[1, {"a": 2}]"#, "\"text\"", "null", "{}"] {
            let full: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(decode_properties(raw, Some(&keys)).unwrap(), full);
        }
        assert_eq!(decode_properties(raw, None).unwrap(), full);
    }
}
