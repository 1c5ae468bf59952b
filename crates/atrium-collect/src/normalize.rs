//! Validation and normalization of Segment events.

use std::borrow::Cow;

use atrium_types::{EventFlag, SourceConfig, format_timestamp_ms, parse_timestamp_ms};
use serde_json::value::RawValue;

use crate::CollectError;
use crate::raw::{RawObject, Scalar, is_null, is_object, scalar, write_json_string};

/// Request limits. Defaults are Segment's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest single event, in bytes of its JSON.
    pub max_event_bytes: usize,
    /// Largest request body, in bytes after decompression.
    pub max_request_bytes: usize,
    /// Most events in one batch request.
    pub max_batch_events: usize,
    /// Longest accepted `messageId`.
    pub max_message_id_chars: usize,
    /// How far past `receivedAt` a corrected timestamp may lie before it is clamped.
    pub max_future_ms: i64,
    /// Deepest nesting of objects and arrays in a request body.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_request_bytes: 500 * 1024,
            max_batch_events: 2_500,
            max_message_id_chars: 100,
            max_future_ms: 10 * 60 * 1_000,
            max_json_depth: 100,
        }
    }
}

/// Which route the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
    /// `/v1/batch`, `/v1/import`, `/v1/b`: a `{batch: [...]}` envelope.
    Batch,
}

impl Endpoint {
    /// The event type a single-event route implies.
    fn implied_type(self) -> Option<&'static str> {
        match self {
            Endpoint::Identify => Some("identify"),
            Endpoint::Track => Some("track"),
            Endpoint::Page => Some("page"),
            Endpoint::Screen => Some("screen"),
            Endpoint::Group => Some("group"),
            Endpoint::Alias => Some("alias"),
            Endpoint::Batch => None,
        }
    }
}

const EVENT_TYPES: [&str; 6] = ["identify", "track", "page", "screen", "group", "alias"];

/// Facts about the request that collection needs and the HTTP layer knows.
#[derive(Clone, Debug)]
pub struct RequestFacts<'a> {
    pub source: &'a SourceConfig,
    pub received_at_ms: i64,
    /// The client address (after trusted-proxy resolution).
    pub client_ip: Option<&'a str>,
}

/// Why one event was refused. The rest of its request is unaffected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// Neither `userId` nor `anonymousId` (Segment's `no_user_anon_id`).
    NoUserAnonId,
    MissingEventName,
    MissingPreviousId,
    MissingGroupId,
    InvalidType,
    InvalidField,
    InvalidTimestamp,
    EventTooLarge,
    MessageIdTooLong,
    NotAnObject,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// Position of the event in the request (0 for single-event routes).
    pub index: usize,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub code: RejectionCode,
    pub message: String,
}

/// One accepted event, ready for the log.
#[derive(Clone, Debug)]
pub struct NormalizedEvent {
    pub message_id: String,
    pub timestamp_ms: i64,
    pub payload: Vec<u8>,
}

/// The verdict on a whole request.
#[derive(Clone, Debug, Default)]
pub struct Normalized {
    pub accepted: Vec<NormalizedEvent>,
    pub rejected: Vec<Rejection>,
}

/// A parsed request body, borrowing from the bytes.
pub struct RequestBody<'a> {
    top: RawObject<'a>,
    body_len: usize,
}

impl<'a> RequestBody<'a> {
    /// Parses the body; invalid JSON (including invalid UTF-8 and over-deep nesting) or a body
    /// that is not an object fails the whole request.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<RequestBody<'a>, CollectError> {
        if bytes.len() > limits.max_request_bytes {
            return Err(CollectError::BodyTooLarge {
                size: bytes.len(),
                limit: limits.max_request_bytes,
            });
        }
        if crate::raw::json_depth_exceeds(bytes, limits.max_json_depth) {
            return Err(CollectError::TooDeep {
                limit: limits.max_json_depth,
            });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|error| CollectError::InvalidJson(format!("body is not utf-8: {error}")))?;
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            // Distinguish "valid json but wrong shape" from "not json at all".
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(CollectError::NotAnObject),
                Err(error) => Err(CollectError::InvalidJson(error.to_string())),
            };
        }
        let top =
            RawObject::parse(text).map_err(|error| CollectError::InvalidJson(error.to_string()))?;
        Ok(RequestBody {
            top,
            body_len: bytes.len(),
        })
    }

    /// The write key carried in the body, if any (`writeKey` or `write_key`).
    pub fn write_key(&self) -> Option<Cow<'a, str>> {
        for name in ["writeKey", "write_key"] {
            if let Some(raw) = self.top.get(name)
                && let Scalar::Str(key) = scalar(raw)
                && !key.is_empty()
            {
                return Some(key);
            }
        }
        None
    }

    /// Validates and normalizes every event in the request.
    pub fn normalize(
        &self,
        endpoint: Endpoint,
        facts: &RequestFacts<'_>,
        limits: &Limits,
    ) -> Result<Normalized, CollectError> {
        let mut normalized = Normalized::default();
        let Some(implied_type) = endpoint.implied_type() else {
            return self.normalize_batch(facts, limits);
        };
        if self.body_len > limits.max_event_bytes {
            normalized.rejected.push(Rejection {
                index: 0,
                message_id: None,
                code: RejectionCode::EventTooLarge,
                message: format!(
                    "event is {} bytes, over the limit of {} bytes",
                    self.body_len, limits.max_event_bytes
                ),
            });
            return Ok(normalized);
        }
        let envelope = Envelope::default();
        match normalize_event(&self.top, Some(implied_type), &envelope, facts, limits) {
            Ok(event) => normalized.accepted.push(event),
            Err(mut rejection) => {
                rejection.index = 0;
                normalized.rejected.push(rejection);
            }
        }
        Ok(normalized)
    }

    fn normalize_batch(
        &self,
        facts: &RequestFacts<'_>,
        limits: &Limits,
    ) -> Result<Normalized, CollectError> {
        let Some(batch_raw) = self.top.get("batch") else {
            return Err(CollectError::BatchNotArray);
        };
        let items: Vec<&RawValue> =
            serde_json::from_str(batch_raw.get()).map_err(|_| CollectError::BatchNotArray)?;
        if items.len() > limits.max_batch_events {
            return Err(CollectError::BatchTooLarge {
                count: items.len(),
                limit: limits.max_batch_events,
            });
        }
        let envelope = Envelope {
            context: self.top.get("context").filter(|raw| is_object(raw)),
            sent_at: self.top.get("sentAt"),
        };
        let mut normalized = Normalized {
            accepted: Vec::with_capacity(items.len()),
            rejected: Vec::new(),
        };
        for (index, item) in items.into_iter().enumerate() {
            let reject = |code, message: String| Rejection {
                index,
                message_id: None,
                code,
                message,
            };
            if item.get().len() > limits.max_event_bytes {
                normalized.rejected.push(reject(
                    RejectionCode::EventTooLarge,
                    format!(
                        "event is {} bytes, over the limit of {} bytes",
                        item.get().len(),
                        limits.max_event_bytes
                    ),
                ));
                continue;
            }
            if !is_object(item) {
                normalized.rejected.push(reject(
                    RejectionCode::NotAnObject,
                    "batch item must be a json object".into(),
                ));
                continue;
            }
            let object = match RawObject::parse(item.get()) {
                Ok(object) => object,
                Err(error) => {
                    normalized
                        .rejected
                        .push(reject(RejectionCode::NotAnObject, error.to_string()));
                    continue;
                }
            };
            match normalize_event(&object, None, &envelope, facts, limits) {
                Ok(event) => normalized.accepted.push(event),
                Err(mut rejection) => {
                    rejection.index = index;
                    normalized.rejected.push(rejection);
                }
            }
        }
        Ok(normalized)
    }
}

/// Batch-level fields merged into every item.
#[derive(Default)]
struct Envelope<'a> {
    context: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
}

/// Keys collection rewrites; everything else is copied through unchanged.
const REWRITTEN_KEYS: [&str; 11] = [
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "writeKey",
    "atrium",
];

fn normalize_event(
    object: &RawObject<'_>,
    implied_type: Option<&str>,
    envelope: &Envelope<'_>,
    facts: &RequestFacts<'_>,
    limits: &Limits,
) -> Result<NormalizedEvent, Rejection> {
    let mut message_id: Option<String> = None;
    let reject = |code, message: String, message_id: &Option<String>| Rejection {
        index: 0,
        message_id: message_id.clone(),
        code,
        message,
    };

    // messageId first, so later rejections can name it.
    let mut flags = Vec::new();
    if let Some(raw) = object.get("messageId") {
        match scalar(raw) {
            Scalar::Str(text) if !text.trim().is_empty() => {
                message_id = Some(text.trim().to_owned())
            }
            Scalar::Number(number) => message_id = Some(number.to_owned()),
            Scalar::Null | Scalar::Str(_) => {}
            Scalar::Other => {
                return Err(reject(
                    RejectionCode::InvalidField,
                    "messageId must be a string".into(),
                    &None,
                ));
            }
        }
    }
    if let Some(id) = &message_id
        && id.chars().count() > limits.max_message_id_chars
    {
        return Err(reject(
            RejectionCode::MessageIdTooLong,
            format!(
                "messageId is longer than {} characters",
                limits.max_message_id_chars
            ),
            &None,
        ));
    }

    let event_type = match (object.get("type").map(scalar), implied_type) {
        (Some(Scalar::Str(kind)), _) if EVENT_TYPES.contains(&kind.as_ref()) => kind.into_owned(),
        (Some(Scalar::Str(kind)), None) => {
            return Err(reject(
                RejectionCode::InvalidType,
                format!(
                    "unknown event type `{kind}`, expected one of {}",
                    EVENT_TYPES.join(", ")
                ),
                &message_id,
            ));
        }
        (None | Some(Scalar::Null), None) => {
            return Err(reject(
                RejectionCode::InvalidType,
                "batch item has no `type`".into(),
                &message_id,
            ));
        }
        (_, Some(implied)) => implied.to_owned(),
        (Some(_), None) => {
            return Err(reject(
                RejectionCode::InvalidType,
                "`type` must be a string".into(),
                &message_id,
            ));
        }
    };

    let user_id = identifier_field(object, "userId")
        .map_err(|message| reject(RejectionCode::InvalidField, message, &message_id))?;
    let anonymous_id = identifier_field(object, "anonymousId")
        .map_err(|message| reject(RejectionCode::InvalidField, message, &message_id))?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(reject(
            RejectionCode::NoUserAnonId,
            "event needs a userId or an anonymousId".into(),
            &message_id,
        ));
    }

    for key in ["properties", "traits", "integrations", "context"] {
        if let Some(raw) = object.get(key)
            && !is_object(raw)
            && !is_null(raw)
        {
            return Err(reject(
                RejectionCode::InvalidField,
                format!("`{key}` must be an object"),
                &message_id,
            ));
        }
    }
    match event_type.as_str() {
        "track" => match object.get("event").map(scalar) {
            Some(Scalar::Str(name)) if !name.trim().is_empty() => {}
            _ => {
                return Err(reject(
                    RejectionCode::MissingEventName,
                    "track event needs a non-empty `event` name".into(),
                    &message_id,
                ));
            }
        },
        "alias" => {
            let previous = identifier_field(object, "previousId")
                .map_err(|message| reject(RejectionCode::InvalidField, message, &message_id))?;
            if previous.is_none() || user_id.is_none() {
                return Err(reject(
                    RejectionCode::MissingPreviousId,
                    "alias needs both `previousId` and `userId`".into(),
                    &message_id,
                ));
            }
        }
        "group" => {
            let group = identifier_field(object, "groupId")
                .map_err(|message| reject(RejectionCode::InvalidField, message, &message_id))?;
            if group.is_none() {
                return Err(reject(
                    RejectionCode::MissingGroupId,
                    "group event needs a `groupId`".into(),
                    &message_id,
                ));
            }
        }
        _ => {}
    }
    for key in ["name", "category"] {
        if let Some(raw) = object.get(key)
            && !matches!(scalar(raw), Scalar::Str(_) | Scalar::Null)
        {
            return Err(reject(
                RejectionCode::InvalidField,
                format!("`{key}` must be a string"),
                &message_id,
            ));
        }
    }

    // Time: timestamp = receivedAt − (sentAt − originalTimestamp).
    let time_field = |key: &str| -> Result<Option<i64>, Rejection> {
        match object.get(key).map(scalar) {
            None | Some(Scalar::Null) => Ok(None),
            Some(Scalar::Str(text)) => parse_timestamp_ms(&text).map(Some).ok_or_else(|| {
                reject(
                    RejectionCode::InvalidTimestamp,
                    format!("`{key}` is not an ISO-8601 timestamp: {text}"),
                    &message_id,
                )
            }),
            Some(_) => Err(reject(
                RejectionCode::InvalidTimestamp,
                format!("`{key}` must be an ISO-8601 string"),
                &message_id,
            )),
        }
    };
    let original_ms = match time_field("originalTimestamp")? {
        Some(original) => Some(original),
        None => time_field("timestamp")?,
    };
    let sent_at_ms = match time_field("sentAt")? {
        Some(sent) => Some(sent),
        None => match envelope.sent_at.map(scalar) {
            Some(Scalar::Str(text)) => parse_timestamp_ms(&text),
            _ => None,
        },
    };
    let received_ms = facts.received_at_ms;
    let mut timestamp_ms = match (original_ms, sent_at_ms) {
        (Some(original), Some(sent)) => received_ms - (sent - original),
        (Some(original), None) => original,
        (None, _) => {
            flags.push(EventFlag::TimestampFromServer);
            received_ms
        }
    };
    if timestamp_ms > received_ms + limits.max_future_ms {
        timestamp_ms = received_ms;
        flags.push(EventFlag::FutureTimestampClamped);
    }

    let message_id = match message_id {
        Some(id) => id,
        None => {
            flags.push(EventFlag::MessageIdGenerated);
            format!("atrium-{}", uuid::Uuid::new_v4())
        }
    };

    // Write the normalized object: untouched fields in their original order, then ours.
    let mut out = Vec::with_capacity(
        object
            .fields
            .iter()
            .map(|(key, value)| key.len() + value.get().len() + 4)
            .sum::<usize>()
            + 256,
    );
    out.push(b'{');
    let mut first = true;
    let mut separator = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    let mut written_keys: Vec<&str> = Vec::with_capacity(object.fields.len());
    for (index, (key, value)) in object.fields.iter().enumerate() {
        if REWRITTEN_KEYS.contains(&key.as_ref()) {
            continue;
        }
        // Duplicate keys: keep only the last occurrence, as parsers would.
        if object.fields[index + 1..]
            .iter()
            .any(|(later, _)| later == key)
        {
            continue;
        }
        separator(&mut out);
        write_json_string(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
        written_keys.push(key);
    }
    debug_assert!(written_keys.iter().all(|key| !REWRITTEN_KEYS.contains(key)));
    let mut field = |out: &mut Vec<u8>, key: &str, value: &str| {
        separator(out);
        write_json_string(out, key);
        out.push(b':');
        write_json_string(out, value);
    };
    field(&mut out, "type", &event_type);
    if let Some(user_id) = &user_id {
        field(&mut out, "userId", user_id);
    }
    if let Some(anonymous_id) = &anonymous_id {
        field(&mut out, "anonymousId", anonymous_id);
    }
    field(&mut out, "messageId", &message_id);
    field(&mut out, "timestamp", &format_timestamp_ms(timestamp_ms));
    if let Some(original) = original_ms {
        field(
            &mut out,
            "originalTimestamp",
            &format_timestamp_ms(original),
        );
    }
    if let Some(sent) = sent_at_ms {
        field(&mut out, "sentAt", &format_timestamp_ms(sent));
    }
    field(&mut out, "receivedAt", &format_timestamp_ms(received_ms));
    out.extend_from_slice(b",\"context\":");
    write_context(&mut out, object.get("context"), envelope.context, facts);
    out.extend_from_slice(b",\"atrium\":");
    let meta = atrium_types::AtriumMeta {
        source: facts.source.name.clone(),
        channel: facts.source.channel,
        flags,
    };
    serde_json::to_writer(&mut out, &meta).expect("writing to a vec cannot fail");
    out.push(b'}');

    Ok(NormalizedEvent {
        message_id,
        timestamp_ms,
        payload: out,
    })
}

/// Reads an identifier field (string or number); empty strings count as absent.
fn identifier_field(object: &RawObject<'_>, key: &str) -> Result<Option<String>, String> {
    match object.get(key).map(scalar) {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(text)) => {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                Ok(None)
            } else {
                Ok(Some(trimmed.to_owned()))
            }
        }
        Some(Scalar::Number(number)) => Ok(Some(number.to_owned())),
        Some(Scalar::Other) => Err(format!("`{key}` must be a string or a number")),
    }
}

/// Merges the batch-level context under the event's own (the event wins, key by key) and fills
/// `ip` from the connection for client-side channels when the client did not send one.
fn write_context(
    out: &mut Vec<u8>,
    event_context: Option<&RawValue>,
    batch_context: Option<&RawValue>,
    facts: &RequestFacts<'_>,
) {
    let event_fields = object_fields(event_context);
    let batch_fields = object_fields(batch_context);
    let mut keys_written: Vec<&str> =
        Vec::with_capacity(event_fields.len() + batch_fields.len() + 1);
    out.push(b'{');
    for (key, value) in event_fields.iter().rev().chain(batch_fields.iter().rev()) {
        if keys_written.contains(&key.as_ref()) {
            continue;
        }
        if !keys_written.is_empty() {
            out.push(b',');
        }
        write_json_string(out, key);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
        keys_written.push(key);
    }
    let client_side = matches!(
        facts.source.channel,
        atrium_types::Channel::Web | atrium_types::Channel::App
    );
    let direct = keys_written.contains(&"direct");
    if !keys_written.contains(&"ip")
        && (client_side || direct)
        && let Some(ip) = facts.client_ip
    {
        if !keys_written.is_empty() {
            out.push(b',');
        }
        write_json_string(out, "ip");
        out.push(b':');
        write_json_string(out, ip);
    }
    out.push(b'}');
}

fn object_fields(raw: Option<&RawValue>) -> Vec<(Cow<'_, str>, &RawValue)> {
    match raw {
        Some(raw) if is_object(raw) => RawObject::parse(raw.get())
            .map(|object| object.fields)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Normalizes already-decoded events as one batch from `source`, without the request-size
/// limits (for imports and tests that feed the log directly).
pub fn normalize_events(
    source: &SourceConfig,
    received_at_ms: i64,
    client_ip: Option<&str>,
    events: &[serde_json::Value],
) -> Result<Normalized, CollectError> {
    let limits = Limits {
        max_request_bytes: usize::MAX,
        max_batch_events: usize::MAX,
        ..Limits::default()
    };
    let body = serde_json::to_vec(&serde_json::json!({ "batch": events }))
        .expect("json values always serialize");
    let parsed = RequestBody::parse(&body, &limits)?;
    let facts = RequestFacts {
        source,
        received_at_ms,
        client_ip,
    };
    parsed.normalize(Endpoint::Batch, &facts, &limits)
}
