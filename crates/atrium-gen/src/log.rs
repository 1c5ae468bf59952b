//! Generated events as the log holds them, for benchmarks and harnesses that apply history
//! without the HTTP layer: normalized as collection would, and definition records.

use atrium_collect::CollectError;
use atrium_types::{
    Channel, ControlRecord, DefinitionKind, LogRecord, SourceConfig, format_timestamp_ms,
    parse_timestamp_ms,
};
use serde_json::Value;

/// The source a generated event names (see [`crate::take_source`]), with its channel.
pub fn source_config(name: &str) -> SourceConfig {
    let channel = match name {
        "web" => Channel::Web,
        "pos" => Channel::Pos,
        "email" => Channel::Email,
        "backend" => Channel::Server,
        _ => Channel::App,
    };
    SourceConfig {
        name: name.to_owned(),
        channel,
    }
}

/// One generated event as log payloads, received at its own timestamp (as if the shop had been
/// live all along), from the source it names; with that time in ms.
pub fn log_payloads(mut event: Value) -> Result<(Vec<Vec<u8>>, i64), CollectError> {
    let source = crate::take_source(&mut event).unwrap_or_else(|| "web".to_owned());
    let received = event
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp_ms)
        .unwrap_or(0);
    let normalized =
        atrium_collect::normalize_events(&source_config(&source), received, None, &[event])?;
    let payloads = normalized
        .accepted
        .into_iter()
        .map(|event| event.payload)
        .collect();
    Ok((payloads, received))
}

/// The log record defining `key` (version 1) at `at_ms`.
pub fn definition_record(kind: DefinitionKind, key: &str, body: Value, at_ms: i64) -> Vec<u8> {
    LogRecord::encode_control(&ControlRecord::DefinitionPut {
        kind,
        key: key.to_owned(),
        body,
        version: 1,
        at: format_timestamp_ms(at_ms),
    })
}
