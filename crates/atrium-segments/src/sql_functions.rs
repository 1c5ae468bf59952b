//! The scalar functions compiled segment SQL calls (`seg_json`, `seg_kind`, …), as plain Rust
//! over text and numbers. The warehouse registers each one as a SQL function of the same name
//! (it owns DataFusion; this crate stays a pure library).
//!
//! They are the primitives SQL engines lack for the segment language's values: reading a JSON
//! member by dotted path, JSON types, the language's number and time parsing, per-row time
//! zones and the bucket hash. Every combination, window, aggregate and join stays in SQL.
//! Values travel as JSON text; a missing member or JSON `null` is SQL `NULL`.

use serde_json::Value;

use crate::condition::{as_number, lookup};
use crate::time::{self, Zone};

/// `seg_json(document, path)`: the JSON text of the value at the dotted `path` of the JSON
/// `document` (array elements by index), `NULL` when missing or `null` (as the evaluators'
/// `lookup`). The text is `serde_json`'s, so it is also the evaluators' distinct-value key.
pub fn json_at(document: &str, path: &str) -> Option<String> {
    let first = path.split('.').next().unwrap_or(path);
    if !document.contains(first) {
        return None;
    }
    let parsed: Value = serde_json::from_str(document).ok()?;
    lookup(&parsed, path).map(Value::to_string)
}

fn parse(value: &str) -> Option<Value> {
    serde_json::from_str(value)
        .ok()
        .filter(|v: &Value| !v.is_null())
}

/// `seg_kind(value)`: `string`, `number`, `boolean`, `array` or `object`.
pub fn kind(value: &str) -> Option<&'static str> {
    Some(match parse(value)? {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => return None,
    })
}

/// `seg_str(value)`: the text of a JSON string, `NULL` for anything else.
pub fn string(value: &str) -> Option<String> {
    match parse(value)? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// `seg_num(value)`: a number, or a string that parses as a finite number (the language's
/// numeric reading, used by `gt`, `between`, sums, …).
pub fn number(value: &str) -> Option<f64> {
    as_number(&parse(value)?)
}

/// The equality key of a value: two values are equal in the segment language (numbers by
/// their `f64` value, everything else structurally, object member order ignored) exactly when
/// their keys are equal.
pub fn equality_key(value: &Value) -> String {
    match value {
        Value::Number(number) => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float == 0.0 {
                "0".to_string()
            } else {
                format!("{float:?}")
            }
        }
        other => canonical(other).to_string(),
    }
}

/// Objects with members sorted (nested numbers keep their JSON form, as structural equality
/// of `serde_json` values does).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, member)| (key.clone(), canonical(member)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// `seg_key(value)`: [`equality_key`] of a JSON text.
pub fn key(value: &str) -> Option<String> {
    parse(value).map(|parsed| equality_key(&parsed))
}

/// `seg_has(value, item_key)`: whether the value (an array's elements, or the value itself)
/// holds an element whose [`equality_key`] is `item_key`.
pub fn has(value: &str, item_key: &str) -> bool {
    match parse(value) {
        Some(Value::Array(items)) => items.iter().any(|item| equality_key(item) == item_key),
        Some(other) => equality_key(&other) == item_key,
        None => false,
    }
}

/// `seg_time(value, zone)`: the instant (epoch ms) a JSON value denotes: epoch milliseconds,
/// RFC 3339 text, or `YYYY-MM-DD` as local midnight in `zone`.
pub fn instant(value: &str, zone: &str) -> Option<i64> {
    let zone = Zone::parse(zone)?;
    time::parse_time_value(&parse(value)?).map(|parsed| parsed.resolve(zone))
}

/// `seg_zone(timezone_value, fallback)`: the profile's `timezone` trait (JSON text) when it
/// names a zone, otherwise `fallback`.
pub fn zone(profile_timezone: Option<&str>, fallback: &str) -> String {
    profile_timezone
        .and_then(string)
        .filter(|name| Zone::parse(name).is_some())
        .unwrap_or_else(|| fallback.to_string())
}

/// `seg_local_date(ms, zone)`: the local calendar date of the instant as `yyyymmdd`.
pub fn local_date(ms: i64, zone: &str) -> Option<i64> {
    use chrono::Datelike;
    let date = Zone::parse(zone)?.local_date(ms);
    Some(i64::from(date.year()) * 10_000 + i64::from(date.month()) * 100 + i64::from(date.day()))
}

/// A regex as `seg_regex(text, pattern)` compiles it (the validator's size limits).
pub fn pattern(pattern: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(crate::validate::REGEX_SIZE_LIMIT)
        .dfa_size_limit(crate::validate::REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// `seg_bucket(salt, profile_id)`: [`crate::bucket`].
pub fn bucket(salt: &str, profile_id: &str) -> f64 {
    crate::bucket(salt, profile_id)
}

/// `seg_items(document, path)`: the JSON texts of the elements of the array at `path` (none
/// when it is not an array), for `UNNEST`.
pub fn items(document: &str, path: &str) -> Vec<String> {
    let Ok(parsed) = serde_json::from_str::<Value>(document) else {
        return Vec::new();
    };
    match lookup(&parsed, path) {
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The name [`Zone::parse`] reads back.
pub fn zone_name(zone: Zone) -> String {
    match zone {
        Zone::Iana(tz) => tz.name().to_string(),
        Zone::Fixed(offset) => {
            let seconds = offset.local_minus_utc();
            let sign = if seconds < 0 { '-' } else { '+' };
            let minutes = seconds.abs() / 60;
            format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_agree_with_the_language_equality() {
        let pairs = [
            ("1", "1.0", true),
            ("0", "-0.0", true),
            ("\"1\"", "1", false),
            ("{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}", true),
            ("[1]", "[1.0]", false),
            ("true", "\"true\"", false),
        ];
        for (left, right, equal) in pairs {
            let (l, r): (Value, Value) = (
                serde_json::from_str(left).unwrap(),
                serde_json::from_str(right).unwrap(),
            );
            assert_eq!(
                crate::condition::values_equal(&l, &r),
                equal,
                "{left} {right}"
            );
            assert_eq!(
                equality_key(&l) == equality_key(&r),
                equal,
                "{left} {right}"
            );
        }
    }

    #[test]
    fn zone_names_round_trip() {
        for name in ["UTC", "+05:30", "-03:00", "Europe/Paris"] {
            let zone = Zone::parse(name).unwrap();
            assert_eq!(Zone::parse(&zone_name(zone)), Some(zone), "{name}");
        }
        assert_eq!(
            json_at("{\"a\":{\"b\":[1,\"x\"]}}", "a.b.1").as_deref(),
            Some("\"x\"")
        );
        assert_eq!(json_at("{\"a\":null}", "a"), None);
        assert_eq!(local_date(0, "-01:00"), Some(19_691_231));
    }
}
