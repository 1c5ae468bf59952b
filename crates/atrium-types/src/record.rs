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

    pub fn encode_control(record: &ControlRecord) -> Vec<u8> {
        serde_json::to_vec(record).expect("control records always serialize")
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
            LogRecord::Control(erase)
        );
        let event = br#"{"type":"track","event":"x"}"#;
        assert!(matches!(
            LogRecord::decode(event).unwrap(),
            LogRecord::Event(_)
        ));
        assert!(LogRecord::decode(b"[1]").is_err());
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
