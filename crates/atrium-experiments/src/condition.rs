//! GrowthBook's MongoDB-like targeting conditions.
//!
//! Semantics follow the JavaScript reference SDK, including its coercions: a missing attribute
//! reads as `null`, `null` compares like `0`, string/number comparisons coerce to numbers, and an
//! unknown operator or an invalid regular expression makes the condition false. Malformed input
//! never panics: anything that is not of the expected shape evaluates to `false`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
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
/// The condition must be a JSON object; anything else evaluates to `false`. To evaluate one
/// condition for many users, compile it once with [`CompiledCondition::compile`].
pub fn eval_condition(attributes: &Value, condition: &Value, saved_groups: &SavedGroups) -> bool {
    CompiledCondition::compile(condition, saved_groups).matches(attributes)
}

/// A targeting condition compiled once into a typed tree: attribute paths split, literals
/// pre-stringified, version strings pre-padded, regular expressions built and saved groups
/// resolved, so evaluation only reads the user's attributes.
///
/// Compilation mirrors evaluation step by step (including the nesting limit), so
/// `compile(c, g).matches(a)` is exactly the reference semantics of `eval_condition(a, c, g)`.
#[derive(Debug, Clone)]
pub struct CompiledCondition(Node);

impl CompiledCondition {
    /// Compiles `condition`, resolving `$inGroup` / `$notInGroup` against `saved_groups` now.
    pub fn compile(condition: &Value, saved_groups: &SavedGroups) -> Self {
        Self(Compiler { saved_groups }.node(condition, 0))
    }

    /// Whether `object` (usually the attribute object) satisfies the condition.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.matches(object)
    }
}

/// A condition object: every clause must pass. `Never` is a malformed condition (not an
/// object) or one nested beyond [`MAX_DEPTH`].
#[derive(Debug, Clone)]
enum Node {
    Never,
    All(Vec<Clause>),
}

#[derive(Debug, Clone)]
enum Clause {
    /// A malformed logical operator's fixed outcome (`$or: 1` fails, `$nor: 1` passes).
    Fixed(bool),
    /// `$or`: passes for an empty list.
    Any(Vec<Node>),
    /// `$nor`.
    NoneOf(Vec<Node>),
    /// `$and`.
    Every(Vec<Node>),
    /// `$not`.
    Not(Box<Node>),
    /// An attribute path tested against a literal or an operator object.
    Field { path: AttributePath, test: Test },
}

/// A dot-separated attribute path, split once.
#[derive(Debug, Clone)]
struct AttributePath {
    segments: Vec<PathSegment>,
}

#[derive(Debug, Clone)]
struct PathSegment {
    key: String,
    /// The segment read as an array index, when it is a canonical non-negative integer.
    index: Option<usize>,
    /// Where `key` was last found in an object.
    hint: PositionHint,
}

/// The position at which a key was last found in an object, checked first on the next lookup.
/// Requests of one application send their attributes in the same order, so this usually hits
/// and skips hashing the key; a miss (or another thread's update) only costs the check, since
/// the key found there is always compared.
#[derive(Debug, Default)]
pub(crate) struct PositionHint(AtomicU32);

impl Clone for PositionHint {
    fn clone(&self) -> Self {
        Self(AtomicU32::new(self.0.load(AtomicOrdering::Relaxed)))
    }
}

/// Objects up to this size are searched linearly on a hint miss (cheaper than hashing the key,
/// and it yields the position for the hint); larger ones use the map's own lookup.
const LINEAR_SEARCH_MAX: usize = 32;

impl PositionHint {
    /// `map.get(key)`, trying the hinted position first.
    pub(crate) fn get<'a>(&self, map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
        let guess = self.0.load(AtomicOrdering::Relaxed) as usize;
        if let Some((found, value)) = map.iter().nth(guess)
            && found == key
        {
            return Some(value);
        }
        if map.len() > LINEAR_SEARCH_MAX {
            return map.get(key);
        }
        let (position, (_, value)) = map
            .iter()
            .enumerate()
            .find(|(_, (found, _))| found.as_str() == key)?;
        self.0.store(position as u32, AtomicOrdering::Relaxed);
        Some(value)
    }
}

/// What a value is tested against: a literal (with JS equality rules) or operators.
#[derive(Debug, Clone)]
enum Test {
    Never,
    /// `String(actual) === expected`.
    Text(String),
    /// Case-insensitive text (`$alli`); `expected` is already lower-cased.
    TextInsensitive(String),
    /// `Number(actual) === expected`.
    Number(f64),
    /// A non-null value whose truthiness is `expected`.
    Bool(bool),
    Null,
    /// `JSON.stringify(actual) === expected` for literal arrays and objects.
    Json(String),
    Operators(Vec<Operator>),
}

#[derive(Debug, Clone, Copy)]
enum VersionOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, Copy)]
enum CompareOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Debug, Clone)]
enum Operator {
    /// An unknown operator or an argument of the wrong shape.
    Never,
    Version {
        op: VersionOp,
        padded: String,
    },
    StrictEq {
        expected: Value,
        negate: bool,
    },
    Compare {
        op: CompareOp,
        expected: js::Primitive<'static>,
    },
    Exists(bool),
    /// `$in`, `$nin`, `$ini`, `$nini`, `$inGroup`, `$notInGroup`; candidates are lower-cased for
    /// the case-insensitive forms.
    In {
        candidates: Vec<Value>,
        insensitive: bool,
        negate: bool,
    },
    Not(Test),
    Size(Test),
    ElemMatchValue(Test),
    ElemMatchCondition(Node),
    All(Vec<Test>),
    Regex(Option<Regex>),
    Type(String),
}

struct Compiler<'a> {
    saved_groups: &'a SavedGroups,
}

impl Compiler<'_> {
    fn node(&self, condition: &Value, depth: usize) -> Node {
        if depth > MAX_DEPTH {
            return Node::Never;
        }
        let Value::Object(entries) = condition else {
            return Node::Never;
        };
        let clauses = entries
            .iter()
            .map(|(key, argument)| match key.as_str() {
                "$or" => match self.list(argument, depth) {
                    Some(nodes) => Clause::Any(nodes),
                    None => Clause::Fixed(false),
                },
                "$nor" => match self.list(argument, depth) {
                    Some(nodes) => Clause::NoneOf(nodes),
                    None => Clause::Fixed(true),
                },
                "$and" => match self.list(argument, depth) {
                    Some(nodes) => Clause::Every(nodes),
                    None => Clause::Fixed(false),
                },
                "$not" => Clause::Not(Box::new(self.node(argument, depth + 1))),
                path => Clause::Field {
                    path: AttributePath::parse(path),
                    test: self.test(argument, false, depth + 1),
                },
            })
            .collect();
        Node::All(clauses)
    }

    /// The conditions of `$or` / `$nor` / `$and`; `None` when the argument is not an array.
    fn list(&self, conditions: &Value, depth: usize) -> Option<Vec<Node>> {
        let Value::Array(conditions) = conditions else {
            return None;
        };
        Some(
            conditions
                .iter()
                .map(|condition| self.node(condition, depth + 1))
                .collect(),
        )
    }

    fn test(&self, condition: &Value, insensitive: bool, depth: usize) -> Test {
        if depth > MAX_DEPTH {
            return Test::Never;
        }
        match condition {
            Value::String(expected) if insensitive => {
                Test::TextInsensitive(expected.to_lowercase())
            }
            Value::String(expected) => Test::Text(expected.clone()),
            Value::Number(expected) => Test::Number(expected.as_f64().unwrap_or(f64::NAN)),
            Value::Bool(expected) => Test::Bool(*expected),
            Value::Null => Test::Null,
            Value::Object(operators) if is_operator_object(operators) => Test::Operators(
                operators
                    .iter()
                    .map(|(operator, expected)| self.operator(operator, expected, depth + 1))
                    .collect(),
            ),
            Value::Array(_) | Value::Object(_) => Test::Json(js::stringify(condition)),
        }
    }

    fn operator(&self, operator: &str, expected: &Value, depth: usize) -> Operator {
        let version = |op| Operator::Version {
            op,
            padded: padded_version_string(expected),
        };
        let compare = |op| Operator::Compare {
            op,
            expected: js::to_primitive(expected).into_owned(),
        };
        match operator {
            "$veq" => version(VersionOp::Eq),
            "$vne" => version(VersionOp::Ne),
            "$vgt" => version(VersionOp::Gt),
            "$vgte" => version(VersionOp::Gte),
            "$vlt" => version(VersionOp::Lt),
            "$vlte" => version(VersionOp::Lte),
            "$eq" | "$ne" => Operator::StrictEq {
                expected: expected.clone(),
                negate: operator == "$ne",
            },
            "$lt" => compare(CompareOp::Lt),
            "$lte" => compare(CompareOp::Lte),
            "$gt" => compare(CompareOp::Gt),
            "$gte" => compare(CompareOp::Gte),
            "$exists" => Operator::Exists(js::truthy(expected)),
            "$in" | "$ini" | "$nin" | "$nini" => {
                let Value::Array(list) = expected else {
                    return Operator::Never;
                };
                let insensitive = operator.ends_with('i');
                let candidates = if insensitive {
                    list.iter()
                        .map(|item| fold_case(item).into_owned())
                        .collect()
                } else {
                    list.clone()
                };
                Operator::In {
                    candidates,
                    insensitive,
                    negate: operator.starts_with("$n"),
                }
            }
            "$inGroup" | "$notInGroup" => Operator::In {
                candidates: self
                    .saved_groups
                    .get(&js::to_string(expected))
                    .cloned()
                    .unwrap_or_default(),
                insensitive: false,
                negate: operator == "$notInGroup",
            },
            "$not" => Operator::Not(self.test(expected, false, depth + 1)),
            "$size" => Operator::Size(self.test(expected, false, depth + 1)),
            "$elemMatch" => {
                // `elem_match` runs one level down, its tests one more.
                let operator_object =
                    matches!(expected, Value::Object(map) if is_operator_object(map));
                if operator_object {
                    Operator::ElemMatchValue(self.test(expected, false, depth + 2))
                } else {
                    Operator::ElemMatchCondition(self.node(expected, depth + 2))
                }
            }
            "$all" | "$alli" => {
                let Value::Array(required) = expected else {
                    return Operator::Never;
                };
                let insensitive = operator == "$alli";
                Operator::All(
                    required
                        .iter()
                        .map(|wanted| self.test(wanted, insensitive, depth + 1))
                        .collect(),
                )
            }
            "$regex" | "$regexi" => {
                let Value::String(pattern) = expected else {
                    return Operator::Never;
                };
                Operator::Regex(cached_regex(pattern, operator == "$regexi"))
            }
            "$type" => match expected {
                Value::String(name) => Operator::Type(name.clone()),
                _ => Operator::Never,
            },
            _ => Operator::Never,
        }
    }
}

impl Node {
    fn matches(&self, object: &Value) -> bool {
        let Node::All(clauses) = self else {
            return false;
        };
        clauses.iter().all(|clause| clause.matches(object))
    }
}

impl Clause {
    fn matches(&self, object: &Value) -> bool {
        match self {
            Clause::Fixed(outcome) => *outcome,
            Clause::Any(nodes) => nodes.is_empty() || nodes.iter().any(|node| node.matches(object)),
            Clause::NoneOf(nodes) => {
                !(nodes.is_empty() || nodes.iter().any(|node| node.matches(object)))
            }
            Clause::Every(nodes) => nodes.iter().all(|node| node.matches(object)),
            Clause::Not(node) => !node.matches(object),
            Clause::Field { path, test } => test.matches(&path.resolve(object)),
        }
    }
}

impl AttributePath {
    fn parse(path: &str) -> Self {
        let segments = path
            .split('.')
            .map(|part| PathSegment {
                key: part.to_owned(),
                index: part
                    .parse::<usize>()
                    .ok()
                    .filter(|index| index.to_string() == part),
                hint: PositionHint::default(),
            })
            .collect();
        Self { segments }
    }

    /// Reads the path like [`get_path`].
    fn resolve<'a>(&self, object: &'a Value) -> Cow<'a, Value> {
        let mut current = object;
        let last = self.segments.len().saturating_sub(1);
        for (position, segment) in self.segments.iter().enumerate() {
            match current {
                Value::Object(map) => match segment.hint.get(map, &segment.key) {
                    Some(next) => current = next,
                    None => return Cow::Owned(Value::Null),
                },
                Value::Array(items) => {
                    if segment.key == "length" {
                        return Cow::Owned(if position == last {
                            Value::from(items.len())
                        } else {
                            Value::Null
                        });
                    }
                    match segment.index {
                        Some(index) if index < items.len() => current = &items[index],
                        _ => return Cow::Owned(Value::Null),
                    }
                }
                _ => return Cow::Owned(Value::Null),
            }
        }
        Cow::Borrowed(current)
    }
}

impl Test {
    fn matches(&self, actual: &Value) -> bool {
        match self {
            Test::Never => false,
            Test::Text(expected) => match actual {
                Value::String(text) => text == expected,
                other => js::to_string(other) == *expected,
            },
            Test::TextInsensitive(expected) => js::to_string(actual).to_lowercase() == *expected,
            Test::Number(expected) => js::to_number(actual) == *expected,
            Test::Bool(expected) => !actual.is_null() && js::truthy(actual) == *expected,
            Test::Null => actual.is_null(),
            Test::Json(expected) => js::stringify(actual) == *expected,
            Test::Operators(operators) => operators.iter().all(|operator| operator.matches(actual)),
        }
    }
}

impl Operator {
    fn matches(&self, actual: &Value) -> bool {
        match self {
            Operator::Never => false,
            Operator::Version { op, padded } => with_padded_version(actual, |actual| match op {
                VersionOp::Eq => actual == padded.as_str(),
                VersionOp::Ne => actual != padded.as_str(),
                VersionOp::Gt | VersionOp::Gte | VersionOp::Lt | VersionOp::Lte => {
                    let ordering = js::compare_strings(actual, padded);
                    match op {
                        VersionOp::Gt => ordering == Ordering::Greater,
                        VersionOp::Gte => ordering != Ordering::Less,
                        VersionOp::Lt => ordering == Ordering::Less,
                        _ => ordering != Ordering::Greater,
                    }
                }
            }),
            Operator::StrictEq { expected, negate } => {
                js::strict_equals(actual, expected) != *negate
            }
            Operator::Compare { op, expected } => {
                let ordering = js::compare_primitives(&js::to_primitive(actual), expected);
                match op {
                    CompareOp::Lt => ordering == Some(Ordering::Less),
                    CompareOp::Lte => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                    CompareOp::Gt => ordering == Some(Ordering::Greater),
                    CompareOp::Gte => {
                        matches!(ordering, Some(Ordering::Greater | Ordering::Equal))
                    }
                }
            }
            Operator::Exists(expected) => actual.is_null() != *expected,
            Operator::In {
                candidates,
                insensitive,
                negate,
            } => is_in(actual, candidates, *insensitive) != *negate,
            Operator::Not(test) => !test.matches(actual),
            Operator::Size(test) => {
                let Value::Array(items) = actual else {
                    return false;
                };
                test.matches(&Value::from(items.len()))
            }
            Operator::ElemMatchValue(test) => {
                let Value::Array(items) = actual else {
                    return false;
                };
                items
                    .iter()
                    .filter(|item| js::truthy(item))
                    .any(|item| test.matches(item))
            }
            Operator::ElemMatchCondition(node) => {
                let Value::Array(items) = actual else {
                    return false;
                };
                items
                    .iter()
                    .filter(|item| js::truthy(item))
                    .any(|item| node.matches(item))
            }
            Operator::All(required) => {
                let Value::Array(items) = actual else {
                    return false;
                };
                required
                    .iter()
                    .all(|wanted| items.iter().any(|item| wanted.matches(item)))
            }
            Operator::Regex(regex) => match regex {
                Some(regex) => match actual {
                    Value::String(text) => regex.is_match(text),
                    other => regex.is_match(&js::to_string(other)),
                },
                None => false,
            },
            Operator::Type(expected) => type_name(actual) == expected,
        }
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

/// `$in`: membership, or a non-empty intersection when the attribute is an array. With
/// `insensitive`, `candidates` are already case-folded and only the attribute is folded here.
fn is_in(actual: &Value, candidates: &[Value], insensitive: bool) -> bool {
    let contains = |needle: &Value| {
        if insensitive {
            let needle = fold_case(needle);
            candidates
                .iter()
                .any(|candidate| js::strict_equals(candidate, &needle))
        } else {
            candidates
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
    let mut padded = String::new();
    write_padded_version(input, &mut padded);
    padded
}

/// Calls `f` with [`padded_version_string`] of `input`, built in a reused per-thread buffer.
fn with_padded_version<T>(input: &Value, f: impl FnOnce(&str) -> T) -> T {
    thread_local! {
        static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    }
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut padded) => {
            padded.clear();
            if padded.capacity() > 4096 {
                // Do not keep a huge attribute's buffer around.
                padded.shrink_to(256);
            }
            write_padded_version(input, &mut padded);
            f(&padded)
        }
        Err(_) => f(&padded_version_string(input)),
    })
}

fn write_padded_version(input: &Value, padded: &mut String) {
    let text: Cow<'_, str> = match input {
        Value::Number(_) => Cow::Owned(js::to_string(input)),
        Value::String(text) if !text.is_empty() => Cow::Borrowed(text),
        _ => Cow::Borrowed("0"),
    };
    let without_v = text.strip_prefix('v').unwrap_or(&text);
    let without_build = match without_v.find('+') {
        Some(position) => &without_v[..position],
        None => without_v,
    };
    padded.reserve(without_build.len() + 24);
    let mut part_count = 0;
    for part in without_build.split(['-', '.']) {
        if part_count > 0 {
            padded.push('-');
        }
        part_count += 1;
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            for _ in part.len()..5 {
                padded.push(' ');
            }
        }
        padded.push_str(part);
    }
    if part_count == 3 {
        padded.push_str("-~");
    }
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
    fn position_hints_never_change_the_answer() {
        // One compiled condition (so one set of hints) over objects with the key at different
        // positions, missing, nested, and in an object too large for the linear search.
        let condition = CompiledCondition::compile(
            &json!({"b": 2, "n.k": "x", "v": {"$vgte": "1.2.0"}}),
            &SavedGroups::new(),
        );
        let mut large = Map::new();
        for index in 0..40 {
            large.insert(format!("key{index}"), json!(index));
        }
        large.insert("b".into(), json!(2));
        large.insert("n".into(), json!({"k": "x"}));
        large.insert("v".into(), json!("1.10.0"));
        let cases = [
            (json!({"a": 1, "b": 2, "n": {"k": "x"}, "v": "1.2.0"}), true),
            (
                json!({"b": 2, "v": "1.3", "n": {"z": 0, "k": "x"}, "a": 1}),
                true,
            ),
            (json!({"a": 1, "n": {"k": "x"}, "v": "1.2.0"}), false),
            (
                json!({"a": 1, "b": 3, "n": {"k": "x"}, "v": "1.2.0"}),
                false,
            ),
            (json!({"b": 2, "n": {"k": "y"}, "v": "1.2.0"}), false),
            (json!({"b": 2, "n": {"k": "x"}, "v": "1.1.9"}), false),
            (Value::Object(large), true),
            (json!([2]), false),
        ];
        for _ in 0..3 {
            for (object, expected) in &cases {
                assert_eq!(condition.matches(object), *expected, "{object}");
            }
        }
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
