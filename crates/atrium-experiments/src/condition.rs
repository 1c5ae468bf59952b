//! GrowthBook's MongoDB-like targeting conditions.
//!
//! Semantics follow the JavaScript reference SDK, including its coercions: a missing attribute
//! reads as `null`, `null` compares like `0`, string/number comparisons coerce to numbers, and an
//! unknown operator or an invalid regular expression makes the condition false. Malformed input
//! never panics: anything that is not of the expected shape evaluates to `false`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::js;

/// Saved groups by id: each is a list of attribute values (`$inGroup` / `$notInGroup`).
pub type SavedGroups = HashMap<String, Vec<Value>>;

/// Nesting deeper than this evaluates to `false` instead of risking the stack.
const MAX_DEPTH: usize = 200;

/// Every operator the evaluator understands (used by validation too).
pub const KNOWN_OPERATORS: &[&str] = &[
    "$eq",
    "$ne",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$regex",
    "$regexi",
    "$in",
    "$nin",
    "$ini",
    "$nini",
    "$all",
    "$alli",
    "$elemMatch",
    "$size",
    "$exists",
    "$type",
    "$not",
    "$veq",
    "$vne",
    "$vgt",
    "$vgte",
    "$vlt",
    "$vlte",
    "$inGroup",
    "$notInGroup",
];

/// Evaluates `condition` against `attributes` (usually the user's attribute object).
///
/// The condition must be a JSON object; anything else evaluates to `false`.
pub fn eval_condition(attributes: &Value, condition: &Value, saved_groups: &SavedGroups) -> bool {
    Evaluator { saved_groups }.condition(attributes, condition, 0)
}

struct Evaluator<'a> {
    saved_groups: &'a SavedGroups,
}

impl Evaluator<'_> {
    fn condition(&self, object: &Value, condition: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Value::Object(entries) = condition else {
            return false;
        };
        for (key, argument) in entries {
            let passed = match key.as_str() {
                "$or" => self.any(object, argument, depth),
                "$nor" => !self.any(object, argument, depth),
                "$and" => self.all(object, argument, depth),
                "$not" => !self.condition(object, argument, depth + 1),
                path => {
                    let actual = get_path(object, path);
                    self.value(argument, &actual, false, depth + 1)
                }
            };
            if !passed {
                return false;
            }
        }
        true
    }

    /// `$or`: true for an empty list, like the reference SDK.
    fn any(&self, object: &Value, conditions: &Value, depth: usize) -> bool {
        let Value::Array(conditions) = conditions else {
            return false;
        };
        if conditions.is_empty() {
            return true;
        }
        conditions
            .iter()
            .any(|condition| self.condition(object, condition, depth + 1))
    }

    fn all(&self, object: &Value, conditions: &Value, depth: usize) -> bool {
        let Value::Array(conditions) = conditions else {
            return false;
        };
        conditions
            .iter()
            .all(|condition| self.condition(object, condition, depth + 1))
    }

    /// Evaluates one attribute value against a condition value (literal or operator object).
    fn value(&self, condition: &Value, actual: &Value, insensitive: bool, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match condition {
            Value::String(expected) => {
                if insensitive {
                    js::to_string(actual).to_lowercase() == expected.to_lowercase()
                } else {
                    js::to_string(actual) == *expected
                }
            }
            Value::Number(expected) => {
                js::to_number(actual) == expected.as_f64().unwrap_or(f64::NAN)
            }
            Value::Bool(expected) => !actual.is_null() && js::truthy(actual) == *expected,
            Value::Null => actual.is_null(),
            Value::Object(operators) if is_operator_object(operators) => operators
                .iter()
                .all(|(operator, expected)| self.operator(operator, actual, expected, depth + 1)),
            Value::Array(_) | Value::Object(_) => js::stringify(actual) == js::stringify(condition),
        }
    }

    fn operator(&self, operator: &str, actual: &Value, expected: &Value, depth: usize) -> bool {
        match operator {
            "$veq" => padded_version_string(actual) == padded_version_string(expected),
            "$vne" => padded_version_string(actual) != padded_version_string(expected),
            "$vgt" | "$vgte" | "$vlt" | "$vlte" => {
                let ordering = js::compare_strings(
                    &padded_version_string(actual),
                    &padded_version_string(expected),
                );
                match operator {
                    "$vgt" => ordering == Ordering::Greater,
                    "$vgte" => ordering != Ordering::Less,
                    "$vlt" => ordering == Ordering::Less,
                    _ => ordering != Ordering::Greater,
                }
            }
            "$eq" => js::strict_equals(actual, expected),
            "$ne" => !js::strict_equals(actual, expected),
            "$lt" => js::compare(actual, expected) == Some(Ordering::Less),
            "$lte" => matches!(
                js::compare(actual, expected),
                Some(Ordering::Less | Ordering::Equal)
            ),
            "$gt" => js::compare(actual, expected) == Some(Ordering::Greater),
            "$gte" => matches!(
                js::compare(actual, expected),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            "$exists" => {
                if js::truthy(expected) {
                    !actual.is_null()
                } else {
                    actual.is_null()
                }
            }
            "$in" | "$ini" | "$nin" | "$nini" => {
                let Value::Array(list) = expected else {
                    return false;
                };
                let insensitive = operator.ends_with('i');
                let found = is_in(actual, list, insensitive);
                if operator.starts_with("$n") {
                    !found
                } else {
                    found
                }
            }
            "$inGroup" | "$notInGroup" => {
                let group_id = js::to_string(expected);
                let members = self
                    .saved_groups
                    .get(&group_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let found = is_in(actual, members, false);
                if operator == "$inGroup" {
                    found
                } else {
                    !found
                }
            }
            "$not" => !self.value(expected, actual, false, depth + 1),
            "$size" => {
                let Value::Array(items) = actual else {
                    return false;
                };
                self.value(expected, &Value::from(items.len()), false, depth + 1)
            }
            "$elemMatch" => self.elem_match(actual, expected, depth + 1),
            "$all" | "$alli" => {
                let (Value::Array(required), Value::Array(items)) = (expected, actual) else {
                    return false;
                };
                let insensitive = operator == "$alli";
                required.iter().all(|wanted| {
                    items
                        .iter()
                        .any(|item| self.value(wanted, item, insensitive, depth + 1))
                })
            }
            "$regex" | "$regexi" => {
                let Value::String(pattern) = expected else {
                    return false;
                };
                match cached_regex(pattern, operator == "$regexi") {
                    Some(regex) => regex.is_match(&js::to_string(actual)),
                    None => false,
                }
            }
            "$type" => Value::String(type_name(actual).to_owned()) == *expected,
            _ => false,
        }
    }

    fn elem_match(&self, actual: &Value, expected: &Value, depth: usize) -> bool {
        let Value::Array(items) = actual else {
            return false;
        };
        let operator_object = matches!(expected, Value::Object(map) if is_operator_object(map));
        items.iter().filter(|item| js::truthy(item)).any(|item| {
            if operator_object {
                self.value(expected, item, false, depth + 1)
            } else {
                self.condition(item, expected, depth + 1)
            }
        })
    }
}

/// An object whose keys all start with `$` (and that has at least one key).
fn is_operator_object(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|key| key.starts_with('$'))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fold_case(value: &Value) -> Cow<'_, Value> {
    match value {
        Value::String(text) => Cow::Owned(Value::String(text.to_lowercase())),
        other => Cow::Borrowed(other),
    }
}

/// `$in`: membership, or a non-empty intersection when the attribute is an array.
fn is_in(actual: &Value, expected: &[Value], insensitive: bool) -> bool {
    let contains = |needle: &Value| {
        if insensitive {
            let needle = fold_case(needle);
            expected
                .iter()
                .any(|candidate| js::strict_equals(&fold_case(candidate), &needle))
        } else {
            expected
                .iter()
                .any(|candidate| js::strict_equals(candidate, needle))
        }
    };
    match actual {
        Value::Array(items) => items.iter().any(contains),
        other => contains(other),
    }
}

/// Reads a dot-separated path. Missing segments read as `null`; arrays accept numeric indexes
/// and `length`, as JavaScript's `in` operator does.
pub fn get_path<'a>(object: &'a Value, path: &str) -> Cow<'a, Value> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut current = object;
    for (position, part) in parts.iter().enumerate() {
        let is_last = position + 1 == parts.len();
        match current {
            Value::Object(map) => match map.get(*part) {
                Some(next) => current = next,
                None => return Cow::Owned(Value::Null),
            },
            Value::Array(items) => {
                if *part == "length" {
                    // A number has no properties, so only a final `length` yields a value.
                    return Cow::Owned(if is_last {
                        Value::from(items.len())
                    } else {
                        Value::Null
                    });
                }
                match part.parse::<usize>() {
                    Ok(index) if index.to_string() == *part && index < items.len() => {
                        current = &items[index];
                    }
                    _ => return Cow::Owned(Value::Null),
                }
            }
            _ => return Cow::Owned(Value::Null),
        }
    }
    Cow::Borrowed(current)
}

/// Turns a version into a string whose ordering is SemVer precedence: drops a leading `v` and
/// `+build`, splits on `.`/`-`, marks releases with `~` (greater than any pre-release tag) and
/// left-pads numeric parts to five characters.
pub fn padded_version_string(input: &Value) -> String {
    let text = match input {
        Value::Number(_) => js::to_string(input),
        Value::String(text) if !text.is_empty() => text.clone(),
        _ => "0".to_owned(),
    };
    let without_v = text.strip_prefix('v').unwrap_or(&text);
    let without_build = match without_v.find('+') {
        Some(position) => &without_v[..position],
        None => without_v,
    };
    let mut parts: Vec<&str> = without_build.split(['-', '.']).collect();
    if parts.len() == 3 {
        parts.push("~");
    }
    let padded: Vec<String> = parts
        .iter()
        .map(|part| {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                format!("{part:>5}")
            } else {
                (*part).to_owned()
            }
        })
        .collect();
    padded.join("-")
}

/// Compiles a regular expression, caching the result (including failures) in a small
/// process-wide table so hot conditions do not recompile on every evaluation.
fn cached_regex(pattern: &str, insensitive: bool) -> Option<Regex> {
    const MAX_CACHED: usize = 1024;
    type RegexCache = Mutex<HashMap<(String, bool), Option<Regex>>>;
    static CACHE: OnceLock<RegexCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (pattern.to_owned(), insensitive);
    if let Ok(guard) = cache.lock()
        && let Some(found) = guard.get(&key)
    {
        return found.clone();
    }
    let compiled = regex::RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .size_limit(1 << 20)
        .build()
        .ok();
    if let Ok(mut guard) = cache.lock() {
        if guard.len() >= MAX_CACHED {
            guard.clear();
        }
        guard.insert(key, compiled.clone());
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_nested_values_and_array_lengths() {
        let object = json!({"a": {"b": [10, 20]}, "n": null});
        assert_eq!(*get_path(&object, "a.b.1"), json!(20));
        assert_eq!(*get_path(&object, "a.b.length"), json!(2));
        assert_eq!(*get_path(&object, "a.c"), Value::Null);
        assert_eq!(*get_path(&object, "n.x"), Value::Null);
    }

    #[test]
    fn padded_versions_order_like_semver() {
        assert_eq!(
            padded_version_string(&json!("v1.2.3+build")),
            "    1-    2-    3-~"
        );
        assert_eq!(padded_version_string(&Value::Null), "    0");
    }
}
