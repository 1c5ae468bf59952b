//! What benchmarks and harnesses need around generated events when they apply history without
//! the HTTP layer: events as log payloads (normalized as collection would), definition records,
//! and the process's CPU time.

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

/// The definition records of the segment benchmarks: `traits` computed traits, then
/// `segments` segments (`crate::segments::bench_computed_traits` / `bench_segments`), all at
/// `at_ms`.
pub fn bench_definition_records(segments: usize, traits: usize, at_ms: i64) -> Vec<Vec<u8>> {
    let traits = crate::segments::bench_computed_traits(traits)
        .into_iter()
        .map(|(id, body)| definition_record(DefinitionKind::ComputedTrait, &id, body, at_ms));
    let segments = crate::segments::bench_segments(segments)
        .into_iter()
        .map(|(id, body)| definition_record(DefinitionKind::Segment, &id, body, at_ms));
    traits.chain(segments).collect()
}

/// User + system CPU seconds this process has used so far (`/proc/self/stat`); `NaN` where it
/// cannot be read.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name (in parentheses, and it may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name and state.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Clock ticks: USER_HZ is 100 on every Linux target.
    (ticks(11) + ticks(12)) / 100.0
}
