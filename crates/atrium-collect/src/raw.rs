//! Just-enough decoding of raw JSON values, and writing JSON strings.

use std::borrow::Cow;

pub(crate) use atrium_types::raw_json::RawObject;
use serde_json::value::RawValue;

/// What a raw value holds, decoded just enough to validate it.
pub(crate) enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Number(&'a str),
    Other,
}

pub(crate) fn scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => Scalar::Null,
        Some(b'"') => match serde_json::from_str::<Cow<'_, str>>(text) {
            Ok(value) => Scalar::Str(value),
            Err(_) => Scalar::Other,
        },
        Some(b'-' | b'0'..=b'9') => Scalar::Number(text),
        _ => Scalar::Other,
    }
}

pub(crate) fn is_object(raw: &RawValue) -> bool {
    raw.get().as_bytes().first() == Some(&b'{')
}

pub(crate) fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Appends `text` to `out` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a vec cannot fail");
}

/// Whether `bytes` (JSON text) nests arrays and objects deeper than `max` levels. Collection
/// copies nested values through as raw text, which bypasses serde_json's recursion limit, so the
/// depth is checked up front: every stored event must stay decodable by the pipeline.
pub(crate) fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}
