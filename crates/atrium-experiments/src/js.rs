//! JavaScript value semantics over `serde_json::Value`.
//!
//! GrowthBook's reference SDK is JavaScript, and its conformance suite encodes JS coercions
//! (`"8" > 5`, `null * 1 === 0`, `String([1, 2]) === "1,2"`, ...). This module reproduces the
//! few abstract operations the evaluator needs, so the rest of the crate can state rules in the
//! same words as the spec.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// `Number::toString(10)` for a finite or non-finite double.
pub(crate) fn number_to_string(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned();
    }
    if number == 0.0 {
        return "0".to_owned();
    }
    let sign = if number < 0.0 { "-" } else { "" };
    // Rust's `{:e}` prints the shortest round-tripping digits, like ECMAScript's algorithm.
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp output always contains an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exponent: i64 = exponent.parse().expect("LowerExp exponent is an integer");
    let digit_count = digits.len() as i64;
    // ECMAScript's `n`: the value is 0.d1d2... × 10^n.
    let n = exponent + 1;
    let body = if digit_count <= n && n <= 21 {
        let zeros = "0".repeat((n - digit_count) as usize);
        format!("{digits}{zeros}")
    } else if 0 < n && n <= 21 {
        let (integer, fraction) = digits.split_at(n as usize);
        format!("{integer}.{fraction}")
    } else if -6 < n && n <= 0 {
        let zeros = "0".repeat((-n) as usize);
        format!("0.{zeros}{digits}")
    } else {
        let exponent_sign = if n - 1 < 0 { "-" } else { "+" };
        let exponent_abs = (n - 1).abs();
        if digit_count == 1 {
            format!("{digits}e{exponent_sign}{exponent_abs}")
        } else {
            let (first, rest) = digits.split_at(1);
            format!("{first}.{rest}e{exponent_sign}{exponent_abs}")
        }
    };
    format!("{sign}{body}")
}

fn value_as_f64(number: &serde_json::Number) -> f64 {
    number.as_f64().unwrap_or(f64::NAN)
}

/// `String(value)` (also what `value + ""` produces).
pub(crate) fn to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number_to_string(value_as_f64(number)),
        Value::String(text) => text.clone(),
        Value::Array(items) => join_array(items),
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

/// [`to_string`] borrowing strings instead of copying them.
pub(crate) fn to_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text),
        other => Cow::Owned(to_string(other)),
    }
}

/// `Array.prototype.join(",")`: `null` elements become empty strings.
fn join_array(items: &[Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => String::new(),
            other => to_string(other),
        })
        .collect();
    parts.join(",")
}

fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// `StringToNumber`: the grammar of `Number("...")`.
pub(crate) fn string_to_number(text: &str) -> f64 {
    let trimmed = text.trim_matches(is_js_whitespace);
    if trimmed.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = trimmed.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            let mut number = 0.0_f64;
            for c in digits.chars() {
                number = number * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0));
            }
            return number;
        }
    }
    let unsigned = trimmed
        .strip_prefix('+')
        .or_else(|| trimmed.strip_prefix('-'))
        .unwrap_or(trimmed);
    if unsigned == "Infinity" {
        return if trimmed.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if !is_decimal_literal(unsigned) {
        return f64::NAN;
    }
    trimmed.parse::<f64>().unwrap_or(f64::NAN)
}

/// `StrUnsignedDecimalLiteral`: digits with an optional fraction and exponent.
fn is_decimal_literal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut integer_digits = 0;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
        integer_digits += 1;
    }
    let mut fraction_digits = 0;
    if index < bytes.len() && bytes[index] == b'.' {
        index += 1;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
            fraction_digits += 1;
        }
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return false;
    }
    if index < bytes.len() && (bytes[index] == b'e' || bytes[index] == b'E') {
        index += 1;
        if index < bytes.len() && (bytes[index] == b'+' || bytes[index] == b'-') {
            index += 1;
        }
        let exponent_start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            index += 1;
        }
        if index == exponent_start {
            return false;
        }
    }
    index == bytes.len()
}

/// `ToNumber(value)` (what `value * 1` produces).
pub(crate) fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(flag) => f64::from(u8::from(*flag)),
        Value::Number(number) => value_as_f64(number),
        Value::String(text) => string_to_number(text),
        Value::Array(items) => string_to_number(&join_array(items)),
        Value::Object(_) => f64::NAN,
    }
}

/// `!!value`.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => {
            let number = value_as_f64(number);
            number != 0.0 && !number.is_nan()
        }
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `a === b`. Arrays and objects are compared by reference in JS, and two values parsed from
/// JSON are never the same reference, so they are never strictly equal.
pub(crate) fn strict_equals(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => value_as_f64(a) == value_as_f64(b),
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

/// Compares two strings by UTF-16 code units, as JS relational operators do.
pub(crate) fn compare_strings(left: &str, right: &str) -> Ordering {
    // Below U+E000 (lead bytes under 0xEE) UTF-8 byte order is UTF-16 code-unit order.
    let below_private_use = |text: &str| text.bytes().all(|byte| byte < 0xEE);
    if below_private_use(left) && below_private_use(right) {
        return left.as_bytes().cmp(right.as_bytes());
    }
    left.encode_utf16().cmp(right.encode_utf16())
}

/// `ToPrimitive` for the relational operators: strings (also of arrays and objects) compare as
/// text, everything else as a number.
#[derive(Debug, Clone)]
pub(crate) enum Primitive<'a> {
    Text(Cow<'a, str>),
    Other(f64),
}

impl Primitive<'_> {
    pub(crate) fn into_owned(self) -> Primitive<'static> {
        match self {
            Primitive::Text(text) => Primitive::Text(Cow::Owned(text.into_owned())),
            Primitive::Other(number) => Primitive::Other(number),
        }
    }
}

pub(crate) fn to_primitive(value: &Value) -> Primitive<'_> {
    match value {
        Value::String(text) => Primitive::Text(Cow::Borrowed(text)),
        Value::Array(items) => Primitive::Text(Cow::Owned(join_array(items))),
        Value::Object(_) => Primitive::Text(Cow::Borrowed("[object Object]")),
        other => Primitive::Other(to_number(other)),
    }
}

/// The abstract relational comparison behind `<`, `<=`, `>` and `>=` on two primitives.
/// `None` means "undefined" (a NaN was involved), which makes every operator false.
pub(crate) fn compare_primitives(left: &Primitive<'_>, right: &Primitive<'_>) -> Option<Ordering> {
    match (left, right) {
        (Primitive::Text(a), Primitive::Text(b)) => Some(compare_strings(a, b)),
        (Primitive::Text(a), Primitive::Other(b)) => string_to_number(a).partial_cmp(b),
        (Primitive::Other(a), Primitive::Text(b)) => a.partial_cmp(&string_to_number(b)),
        (Primitive::Other(a), Primitive::Other(b)) => a.partial_cmp(b),
    }
}

/// Whether an object key is an array index, which JS orders first when enumerating keys.
fn array_index(key: &str) -> Option<u32> {
    if key == "0" {
        return Some(0);
    }
    if key.is_empty() || key.starts_with('0') || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u32>().ok().filter(|index| *index != u32::MAX)
}

/// `JSON.stringify(value)`, including JS key ordering (array-index keys first, ascending).
pub(crate) fn stringify(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Number(number) => out.push_str(&number_to_string(value_as_f64(number))),
        Value::String(text) => {
            out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned()));
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut index_keys: Vec<(u32, &String)> = Vec::new();
            let mut other_keys: Vec<&String> = Vec::new();
            for key in map.keys() {
                match array_index(key) {
                    Some(index) => index_keys.push((index, key)),
                    None => other_keys.push(key),
                }
            }
            index_keys.sort_by_key(|(index, _)| *index);
            out.push('{');
            let ordered = index_keys.into_iter().map(|(_, key)| key).chain(other_keys);
            for (position, key) in ordered.enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned()));
                out.push(':');
                write_json(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) => out.push_str(&value.to_string()),
    }
}

/// `parseInt(text)` with an implicit radix, returning `None` for NaN.
pub(crate) fn parse_int(text: &str) -> Option<f64> {
    let trimmed = text.trim_start_matches(is_js_whitespace);
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (radix, digits) = match unsigned.get(..2) {
        Some("0x" | "0X") => (16, &unsigned[2..]),
        _ => (10, unsigned),
    };
    let mut number = 0.0_f64;
    let mut seen_digit = false;
    for c in digits.chars() {
        let Some(digit) = c.to_digit(radix) else {
            break;
        };
        seen_digit = true;
        number = number * f64::from(radix) + f64::from(digit);
    }
    if !seen_digit {
        return None;
    }
    Some(if negative { -number } else { number })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_format_like_javascript() {
        let cases = [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (4294967295.0, "4294967295"),
        ];
        for (number, expected) in cases {
            assert_eq!(number_to_string(number), expected, "{number}");
        }
    }

    #[test]
    fn string_to_number_follows_the_js_grammar() {
        assert_eq!(string_to_number(" 8 "), 8.0);
        assert_eq!(string_to_number(""), 0.0);
        assert_eq!(string_to_number("0x10"), 16.0);
        assert!(string_to_number("inf").is_nan());
        assert!(string_to_number("1e").is_nan());
        assert_eq!(string_to_number(".5"), 0.5);
        assert_eq!(string_to_number("-Infinity"), f64::NEG_INFINITY);
    }

    #[test]
    fn stringify_orders_index_keys_first() {
        let value: Value = serde_json::from_str(r#"{"b":1,"2":2,"a":1.0,"1":[null]}"#).unwrap();
        assert_eq!(stringify(&value), r#"{"1":[null],"2":2,"b":1,"a":1}"#);
        assert_eq!(to_string(&json!([1, null, "a"])), "1,,a");
    }

    #[test]
    fn parse_int_reads_a_leading_integer() {
        assert_eq!(parse_int("2.054"), Some(2.0));
        assert_eq!(parse_int("-1"), Some(-1.0));
        assert_eq!(parse_int("foo"), None);
        assert_eq!(parse_int("0x1f"), Some(31.0));
    }
}
