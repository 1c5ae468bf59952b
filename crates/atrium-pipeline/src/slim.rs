//! Decoding a stored event down to the fields the pipeline reads. A full `serde_json::Value`
//! of every event (page context, library, product arrays, …) was a quarter of the pipeline's
//! time; here the rest is skipped as raw text.

use atrium_profiles::{CONTEXT_FIELDS, EVENT_FIELDS, is_order_event};
use atrium_types::raw_json::RawObject;
use atrium_types::{LogRecord, RecordError};
use serde_json::{Map, Value};

/// Server-side exposures carry sticky bucket assignments in their properties.
pub(crate) const EXPOSURE_EVENT: &str = "Experiment Viewed";

/// With `keep_properties`, every event keeps its `properties` (the segment engine reads them);
/// otherwise only order events (profiles' commerce facts) and `Experiment Viewed` events (their
/// sticky bucket assignments) do.
pub(crate) fn decode(payload: &[u8], keep_properties: bool) -> Result<LogRecord, RecordError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let LogRecord::Event(slim) = decode(&payload, false).unwrap() else {
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
        let LogRecord::Event(event) = decode(payload, false).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["userId"], "u");
        assert!(event.get("properties").is_none(), "not an order event");
        assert!(event["context"].get("page").is_none());
        assert_eq!(event["context"]["campaign"]["source"], "g");
        assert_eq!(event["atrium"]["channel"], "web");

        let order = br#"{"type":"track","event":"Order Completed","userId":"u","properties":{"order_id":"o","revenue":5}}"#;
        let LogRecord::Event(event) = decode(order, false).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["properties"]["revenue"], 5);
        let exposure = br#"{"type":"track","event":"Experiment Viewed","userId":"u","properties":{"sticky_buckets":[]}}"#;
        let LogRecord::Event(event) = decode(exposure, false).unwrap() else {
            panic!("an event")
        };
        assert_eq!(event["properties"]["sticky_buckets"], serde_json::json!([]));

        let control = br#"{"type":"atrium.erase","profile_id":"p","identifier_hashes":[],"requested_at":"x","suppress":true}"#;
        assert!(matches!(
            decode(control, false).unwrap(),
            LogRecord::Control(_)
        ));
        assert!(decode(b"[1]", false).is_err());
    }
}
