//! What the event log stores. Every record is one JSON object: either a Segment-spec event
//! (normalized by collection, with an `atrium` envelope object) or a control record
//! (`"type": "atrium.*"`) such as a GDPR erasure. Derived state is a pure function of these records.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::source::Channel;

/// The envelope collection adds to every event, under the top-level key `atrium`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtriumMeta {
    pub source: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<EventFlag>,
}

/// Something collection changed or noticed about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFlag {
    /// The computed timestamp was in the future beyond tolerance and was clamped to `receivedAt`.
    FutureTimestampClamped,
    /// The client sent no `messageId`; collection generated one.
    MessageIdGenerated,
    /// No client timestamp; `timestamp` is the server's `receivedAt`.
    TimestampFromServer,
}

/// Records that are not customer events but still belong to the ordered history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControlRecord {
    /// GDPR erasure of one profile. It carries only salted hashes of the erased identifiers, so
    /// the log never has to hold the erased values again.
    #[serde(rename = "atrium.erase")]
    Erase {
        profile_id: String,
        identifier_hashes: Vec<String>,
        requested_at: String,
        /// Whether future events carrying these identifiers are suppressed.
        suppress: bool,
    },
    /// Creates or replaces a flag/experiment definition. The server validated `body` and chose
    /// `version` (one more than the key's last version) before appending.
    #[serde(rename = "atrium.definition.put")]
    DefinitionPut {
        kind: DefinitionKind,
        key: String,
        body: Value,
        version: u64,
        /// When the write was accepted (processing time; replay keeps it).
        at: String,
    },
    /// Deletes a definition; its history stays.
    #[serde(rename = "atrium.definition.delete")]
    DefinitionDelete {
        kind: DefinitionKind,
        key: String,
        version: u64,
        at: String,
    },
    /// Processing time advanced to `at`: durable timers due at or before it fire here. The
    /// server appends one when a timer is due, so time-based changes (a window elapsing) are
    /// part of the ordered history and replay reproduces them at the same position.
    #[serde(rename = "atrium.tick")]
    Tick { at: String },
    /// Creates or replaces catalog items (products, content) by `id`.
    #[serde(rename = "atrium.catalog.put")]
    CatalogPut { items: Vec<Value>, at: String },
    /// Removes catalog items by id.
    #[serde(rename = "atrium.catalog.delete")]
    CatalogDelete { ids: Vec<String>, at: String },
}

/// What a definition record defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionKind {
    Feature,
    Experiment,
    SavedGroup,
    Segment,
    ComputedTrait,
    Metric,
}

impl DefinitionKind {
    pub const ALL: [DefinitionKind; 6] = [
        DefinitionKind::Feature,
        DefinitionKind::Experiment,
        DefinitionKind::SavedGroup,
        DefinitionKind::Segment,
        DefinitionKind::ComputedTrait,
        DefinitionKind::Metric,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Feature => "feature",
            DefinitionKind::Experiment => "experiment",
            DefinitionKind::SavedGroup => "saved_group",
            DefinitionKind::Segment => "segment",
            DefinitionKind::ComputedTrait => "computed_trait",
            DefinitionKind::Metric => "metric",
        }
    }

    pub fn parse(text: &str) -> Option<DefinitionKind> {
        DefinitionKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("log record is not valid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("log record is not a json object")]
    NotAnObject,
}

/// A decoded log record.
#[derive(Clone, Debug, PartialEq)]
pub enum LogRecord {
    Event(Value),
    Control(ControlRecord),
}

impl LogRecord {
    pub fn decode(payload: &[u8]) -> Result<LogRecord, RecordError> {
        let value: Value = serde_json::from_slice(payload)?;
        let is_control = match &value {
            Value::Object(map) => map
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind.starts_with("atrium.")),
            _ => return Err(RecordError::NotAnObject),
        };
        if is_control {
            return Ok(LogRecord::Control(serde_json::from_value(value)?));
        }
        Ok(LogRecord::Event(value))
    }

    /// Decodes a record like [`LogRecord::decode`], except that an event keeps only its
    /// top-level `keys` (and `type`): the other values are skipped without being built, which
    /// is most of the decoding cost for a consumer that reads a few fields. Control records are
    /// decoded in full.
    pub fn decode_keeping(payload: &[u8], keys: &[&str]) -> Result<LogRecord, RecordError> {
        use serde::Deserializer as _;
        let mut deserializer = serde_json::Deserializer::from_slice(payload);
        let map = deserializer
            .deserialize_map(Keeping { keys })
            .map_err(|error| {
                if error.is_data() {
                    RecordError::NotAnObject
                } else {
                    RecordError::Json(error)
                }
            })?;
        deserializer.end()?;
        let is_control = map
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.starts_with("atrium."));
        if is_control {
            return LogRecord::decode(payload);
        }
        Ok(LogRecord::Event(Value::Object(map)))
    }

    pub fn encode_control(record: &ControlRecord) -> Vec<u8> {
        serde_json::to_vec(record).expect("control records always serialize")
    }
}

/// Collects the top-level entries of an object whose key is `type` or one of `keys`; a repeated
/// key counts with its last occurrence, like serde_json's own maps.
struct Keeping<'k> {
    keys: &'k [&'k str],
}

impl<'de> serde::de::Visitor<'de> for Keeping<'_> {
    type Value = serde_json::Map<String, Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(KeyIn { keys: self.keys })? {
            match key {
                Some(key) => {
                    kept.insert(key.to_owned(), map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(kept)
    }
}

/// A map key, as the kept key it equals (`type` or one of `keys`) or `None`, without
/// allocating for the keys that are skipped.
struct KeyIn<'k> {
    keys: &'k [&'k str],
}

impl<'de, 'k> serde::de::DeserializeSeed<'de> for KeyIn<'k> {
    type Value = Option<&'k str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'k> serde::de::Visitor<'de> for KeyIn<'k> {
    type Value = Option<&'k str>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        if key == "type" {
            return Ok(Some("type"));
        }
        Ok(self.keys.iter().copied().find(|kept| *kept == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip() {
        let erase = ControlRecord::Erase {
            profile_id: "p_1".into(),
            identifier_hashes: vec!["ab".into()],
            requested_at: "2026-01-01T00:00:00.000Z".into(),
            suppress: true,
        };
        let bytes = LogRecord::encode_control(&erase);
        assert_eq!(
            LogRecord::decode(&bytes).unwrap(),
            LogRecord::Control(erase.clone())
        );
        let event = br#"{"type":"track","event":"x"}"#;
        assert!(matches!(
            LogRecord::decode(event).unwrap(),
            LogRecord::Event(_)
        ));
        assert!(LogRecord::decode(b"[1]").is_err());
        assert!(LogRecord::decode_keeping(b"[1]", &["event"]).is_err());
        assert!(LogRecord::decode_keeping(b"{\"type\":", &["event"]).is_err());
        assert!(LogRecord::decode_keeping(b"{} x", &["event"]).is_err());
        let kept = LogRecord::decode_keeping(
            br#"{"type":"track","event":"a","context":{"x":[1]},"userId":1,"event":"b"}"#,
            &["event", "userId"],
        );
        assert_eq!(
            kept.unwrap(),
            LogRecord::Event(serde_json::json!({"type": "track", "event": "b", "userId": 1}))
        );
        assert_eq!(
            LogRecord::decode_keeping(&bytes, &["event"]).unwrap(),
            LogRecord::Control(erase.clone())
        );
        let put = ControlRecord::DefinitionPut {
            kind: DefinitionKind::SavedGroup,
            key: "beta".into(),
            body: serde_json::json!({"values": ["u_1"]}),
            version: 3,
            at: "2026-01-01T00:00:00.000Z".into(),
        };
        let bytes = LogRecord::encode_control(&put);
        assert!(String::from_utf8_lossy(&bytes).contains(r#""type":"atrium.definition.put""#));
        assert!(String::from_utf8_lossy(&bytes).contains(r#""kind":"saved_group""#));
        assert_eq!(LogRecord::decode(&bytes).unwrap(), LogRecord::Control(put));
    }
}
