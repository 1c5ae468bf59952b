//! Compiled conditions: an operator with a typed operand, evaluated against one value.

use regex::Regex;
use serde_json::{Map, Value};

use crate::model::Operator;
use crate::time::{self, TimeValue, Zone};

/// Reads a dot-separated path in a JSON value; array elements are addressed by index.
/// `null` reads as missing.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    if current.is_null() {
        None
    } else {
        Some(current)
    }
}

/// [`lookup`] over a trait map.
pub fn lookup_trait<'a>(traits: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let value = traits.get(first)?;
    match rest {
        Some(rest) => lookup(value, rest),
        None if value.is_null() => None,
        None => Some(value),
    }
}

/// Where a condition's time zone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TzRule {
    /// Named on the condition.
    Fixed(Zone),
    /// The profile's `timezone` trait when it names a zone, otherwise `fallback` (the
    /// definition's `default_tz`, or UTC).
    Profile { fallback: Zone },
}

impl TzRule {
    pub fn resolve(self, profile_timezone: Option<&Value>) -> Zone {
        match self {
            TzRule::Fixed(zone) => zone,
            TzRule::Profile { fallback } => profile_timezone
                .and_then(Value::as_str)
                .and_then(Zone::parse)
                .unwrap_or(fallback),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Operand {
    None,
    Scalar(Value),
    Number(f64),
    Range(f64, f64),
    List(Vec<Value>),
    Text(String),
    Pattern(Regex),
    Time(TimeValue),
    DurationMs(i64),
}

/// A validated condition.
#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub path: String,
    pub operator: Operator,
    pub operand: Operand,
    pub tz: TzRule,
}

pub fn values_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => left == right,
    }
}

/// Numbers, and strings that parse as finite numbers.
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite()),
        _ => None,
    }
}

impl CompiledCondition {
    /// Evaluates against `actual` (already looked up; `None` when missing or null).
    pub fn eval(&self, actual: Option<&Value>, zone: Zone, now_ms: i64) -> bool {
        let Some(actual) = actual else {
            return matches!(
                self.operator,
                Operator::Neq
                    | Operator::NotIn
                    | Operator::NotContains
                    | Operator::ContainsNone
                    | Operator::NotExists
            );
        };
        match (&self.operator, &self.operand) {
            (Operator::Exists, _) => true,
            (Operator::NotExists, _) => false,
            (Operator::Eq, Operand::Scalar(expected)) => values_equal(actual, expected),
            (Operator::Neq, Operand::Scalar(expected)) => !values_equal(actual, expected),
            (Operator::Gt, Operand::Number(bound)) => as_number(actual).is_some_and(|n| n > *bound),
            (Operator::Gte, Operand::Number(bound)) => {
                as_number(actual).is_some_and(|n| n >= *bound)
            }
            (Operator::Lt, Operand::Number(bound)) => as_number(actual).is_some_and(|n| n < *bound),
            (Operator::Lte, Operand::Number(bound)) => {
                as_number(actual).is_some_and(|n| n <= *bound)
            }
            (Operator::Between, Operand::Range(low, high)) => {
                as_number(actual).is_some_and(|n| n >= *low && n <= *high)
            }
            (Operator::In, Operand::List(items)) => {
                items.iter().any(|item| values_equal(actual, item))
            }
            (Operator::NotIn, Operand::List(items)) => {
                !items.iter().any(|item| values_equal(actual, item))
            }
            (Operator::Contains, Operand::Text(needle)) => contains(actual, needle),
            (Operator::NotContains, Operand::Text(needle)) => !contains(actual, needle),
            (Operator::StartsWith, Operand::Text(prefix)) => actual
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            (Operator::EndsWith, Operand::Text(suffix)) => actual
                .as_str()
                .is_some_and(|s| s.ends_with(suffix.as_str())),
            (Operator::Regex, Operand::Pattern(pattern)) => {
                actual.as_str().is_some_and(|s| pattern.is_match(s))
            }
            (Operator::ContainsAny, Operand::List(items)) => array_of(actual)
                .iter()
                .any(|element| items.iter().any(|item| values_equal(element, item))),
            (Operator::ContainsAll, Operand::List(items)) => {
                let elements = array_of(actual);
                items
                    .iter()
                    .all(|item| elements.iter().any(|element| values_equal(element, item)))
            }
            (Operator::ContainsNone, Operand::List(items)) => !array_of(actual)
                .iter()
                .any(|element| items.iter().any(|item| values_equal(element, item))),
            (Operator::Before, Operand::Time(bound)) => {
                actual_time(actual, zone).is_some_and(|t| t < bound.resolve(zone))
            }
            (Operator::After, Operand::Time(bound)) => {
                actual_time(actual, zone).is_some_and(|t| t > bound.resolve(zone))
            }
            (Operator::WithinLast, Operand::DurationMs(length)) => actual_time(actual, zone)
                .is_some_and(|t| t <= now_ms && now_ms < t.saturating_add(*length)),
            (Operator::WithinNext, Operand::DurationMs(length)) => actual_time(actual, zone)
                .is_some_and(|t| t.saturating_sub(*length) <= now_ms && now_ms < t),
            (Operator::MoreThanAgo, Operand::DurationMs(length)) => {
                actual_time(actual, zone).is_some_and(|t| t.saturating_add(*length) <= now_ms)
            }
            (Operator::Anniversary, _) => {
                actual_time(actual, zone).is_some_and(|t| time::is_anniversary(zone, t, now_ms))
            }
            // Validation pairs every operator with its operand kind.
            _ => false,
        }
    }

    /// The earliest instant after `now_ms` at which [`Self::eval`] can change for the same
    /// `actual` value; `None` when it cannot change with time alone.
    pub fn next_change(&self, actual: Option<&Value>, zone: Zone, now_ms: i64) -> Option<i64> {
        if !self.operator.is_relative_time() {
            return None;
        }
        let instant = actual_time(actual?, zone)?;
        let candidates: Vec<i64> = match (&self.operator, &self.operand) {
            (Operator::WithinLast, Operand::DurationMs(length)) => {
                vec![instant, instant.saturating_add(*length)]
            }
            (Operator::WithinNext, Operand::DurationMs(length)) => {
                vec![instant.saturating_sub(*length), instant]
            }
            (Operator::MoreThanAgo, Operand::DurationMs(length)) => {
                vec![instant.saturating_add(*length)]
            }
            (Operator::Anniversary, _) => {
                vec![time::next_anniversary_change(zone, instant, now_ms)]
            }
            _ => Vec::new(),
        };
        candidates
            .into_iter()
            .filter(|candidate| *candidate > now_ms)
            .min()
    }

    /// Whether this condition uses the time zone at all.
    pub fn uses_zone(&self) -> bool {
        matches!(self.operator, Operator::Anniversary)
            || matches!(self.operand, Operand::Time(TimeValue::Date(_)))
            || matches!(
                self.operator,
                Operator::Before
                    | Operator::After
                    | Operator::WithinLast
                    | Operator::WithinNext
                    | Operator::MoreThanAgo
            )
    }
}

fn contains(actual: &Value, needle: &str) -> bool {
    match actual {
        Value::String(text) => text.contains(needle),
        Value::Array(items) => items.iter().any(|item| item.as_str() == Some(needle)),
        _ => false,
    }
}

fn array_of(actual: &Value) -> &[Value] {
    match actual {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

fn actual_time(actual: &Value, zone: Zone) -> Option<i64> {
    time::parse_time_value(actual).map(|value| value.resolve(zone))
}

/// An event name with compiled property filters. Filters never depend on the current time or
/// on the profile (relative-time operators are rejected on event properties, and their zone is
/// the condition's `tz` or the definition's default), so whether an event matches is fixed.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub event: String,
    pub filters: Vec<CompiledCondition>,
    pub zone: Zone,
}

impl Matcher {
    pub fn matches(&self, event: &crate::EventView<'_>) -> bool {
        event.name == self.event
            && self.filters.iter().all(|filter| {
                filter.eval(
                    lookup(event.properties, &filter.path),
                    filter.event_zone(self.zone),
                    event.time_ms,
                )
            })
    }

    pub fn describe(&self) -> String {
        if self.filters.is_empty() {
            format!("`{}`", self.event)
        } else {
            let filters: Vec<String> = self
                .filters
                .iter()
                .map(CompiledCondition::describe)
                .collect();
            format!("`{}` where {}", self.event, filters.join(" and "))
        }
    }
}

impl CompiledCondition {
    /// The zone of a condition on an event property: its own `tz` when it names one, otherwise
    /// `default` (the definition's; event filters never read the profile's `timezone`).
    pub fn event_zone(&self, default: Zone) -> Zone {
        match self.tz {
            TzRule::Fixed(zone) => zone,
            TzRule::Profile { .. } => default,
        }
    }

    pub fn describe(&self) -> String {
        let operand = match &self.operand {
            Operand::None => String::new(),
            Operand::Scalar(value) => format!(" {value}"),
            Operand::Number(number) => format!(" {number}"),
            Operand::Range(low, high) => format!(" [{low}, {high}]"),
            Operand::List(items) => format!(" {}", Value::Array(items.clone())),
            Operand::Text(text) => format!(" {text:?}"),
            Operand::Pattern(pattern) => format!(" /{}/", pattern.as_str()),
            Operand::Time(TimeValue::Millis(ms)) => format!(" {}", time::format_ms(*ms)),
            Operand::Time(TimeValue::Date(date)) => format!(" {date}"),
            Operand::DurationMs(ms) => format!(" {}", crate::store::describe_ms(*ms)),
        };
        format!("{} {}{operand}", self.path, self.operator.name())
    }
}
