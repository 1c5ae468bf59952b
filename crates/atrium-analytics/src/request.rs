//! The pieces every request shares: time range, time zone, granularity, filters, breakdown,
//! durations; and their validation into a compiled [`Scope`].

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AnalyticsError;
use crate::calendar::local_midnight_ms;

/// Longest time range a request may cover.
pub const MAX_RANGE_DAYS: i64 = 3_660;
/// Most filters in one list.
pub const MAX_FILTERS: usize = 20;
const MS_PER_DAY: i64 = 86_400_000;

/// How results are bucketed in time (local calendar periods of the request's time zone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One bucket for the whole range.
    #[default]
    Total,
    /// Local calendar days.
    Day,
    /// Local weeks starting on Monday (ISO weeks).
    Week,
    /// Local calendar months.
    Month,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Total => "total",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }
}

/// A comparison of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Neq,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    Exists,
    NotExists,
}

/// `{"field": "properties.category", "op": "eq", "value": "shoes"}`.
///
/// `field` is a column dimension (see [`DIMENSIONS`]), `properties.<key>[.<key>...]` (the
/// event's properties) or `traits.<key>[...]` (the profile's current traits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub field: String,
    pub op: FilterOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A length of time: `{"value": 7, "unit": "day"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub value: u32,
    pub unit: SpanUnit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
}

impl Span {
    pub fn millis(self) -> i64 {
        let unit: i64 = match self.unit {
            SpanUnit::Second => 1_000,
            SpanUnit::Minute => 60_000,
            SpanUnit::Hour => 3_600_000,
            SpanUnit::Day => MS_PER_DAY,
            SpanUnit::Week => 7 * MS_PER_DAY,
        };
        i64::from(self.value) * unit
    }

    /// Checks `1 second <= span <= max_days`.
    pub(crate) fn check(self, path: &str, max_days: i64) -> Result<i64, AnalyticsError> {
        let ms = self.millis();
        if ms < 1_000 {
            return Err(AnalyticsError::invalid(path, "must be at least 1 second"));
        }
        if ms > max_days * MS_PER_DAY {
            return Err(AnalyticsError::invalid(
                path,
                format!("must be at most {max_days} days"),
            ));
        }
        Ok(ms)
    }
}

/// The dimensions backed by a column of `events`: (name in requests, column).
pub const DIMENSIONS: &[(&str, &str)] = &[
    ("event", "event"),
    ("type", "type"),
    ("name", "name"),
    ("channel", "channel"),
    ("source", "source"),
    ("utm_source", "campaign_source"),
    ("utm_medium", "campaign_medium"),
    ("campaign", "campaign_name"),
    ("utm_term", "campaign_term"),
    ("utm_content", "campaign_content"),
    ("device", "device_type"),
    ("os", "os_name"),
    ("app", "app_name"),
    ("country", "country"),
    ("city", "city"),
    ("locale", "locale"),
    ("page_path", "page_path"),
    ("referrer", "page_referrer"),
    ("currency", "currency"),
    ("category", "category"),
    ("product_id", "product_id"),
    ("sku", "sku"),
    ("coupon", "coupon"),
];

/// Where a filter or breakdown reads its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A text column of `events`.
    Column(&'static str),
    /// A path into the event's `properties`.
    Property(Vec<String>),
    /// A path into the profile's traits.
    Trait(Vec<String>),
}

impl Field {
    pub fn parse(path: &str, text: &str) -> Result<Field, AnalyticsError> {
        let parse_path = |rest: &str| -> Result<Vec<String>, AnalyticsError> {
            let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                return Err(AnalyticsError::invalid(
                    path,
                    format!("{text:?} has an empty path segment"),
                ));
            }
            Ok(parts)
        };
        if let Some(rest) = text.strip_prefix("properties.") {
            return Ok(Field::Property(parse_path(rest)?));
        }
        if let Some(rest) = text.strip_prefix("traits.") {
            return Ok(Field::Trait(parse_path(rest)?));
        }
        match DIMENSIONS.iter().find(|(name, _)| *name == text) {
            Some((_, column)) => Ok(Field::Column(column)),
            None => {
                let names: Vec<&str> = DIMENSIONS.iter().map(|(name, _)| *name).collect();
                Err(AnalyticsError::invalid(
                    path,
                    format!(
                        "unknown field {text:?}: use properties.<key>, traits.<key> or one of {}",
                        names.join(", ")
                    ),
                ))
            }
        }
    }
}

/// A validated filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Predicate {
    pub field: Field,
    pub op: FilterOp,
    pub value: Value,
}

impl Predicate {
    pub(crate) fn compile(path: &str, filter: &Filter) -> Result<Predicate, AnalyticsError> {
        let field = Field::parse(&format!("{path}.field"), &filter.field)?;
        let value_path = format!("{path}.value");
        let value = match (filter.op, &filter.value) {
            (FilterOp::Exists | FilterOp::NotExists, None) => Value::Null,
            (FilterOp::Exists | FilterOp::NotExists, Some(_)) => {
                return Err(AnalyticsError::invalid(
                    &value_path,
                    "exists and not_exists take no value",
                ));
            }
            (_, None) => {
                return Err(AnalyticsError::invalid(&value_path, "required for this op"));
            }
            (FilterOp::In | FilterOp::NotIn, Some(Value::Array(items))) => {
                if items.is_empty() || items.len() > 1_000 {
                    return Err(AnalyticsError::invalid(
                        &value_path,
                        "must list 1 to 1000 values",
                    ));
                }
                if items.iter().any(|item| item.is_object() || item.is_array()) {
                    return Err(AnalyticsError::invalid(
                        &value_path,
                        "values must be strings, numbers, booleans or null",
                    ));
                }
                Value::Array(items.clone())
            }
            (FilterOp::In | FilterOp::NotIn, Some(_)) => {
                return Err(AnalyticsError::invalid(
                    &value_path,
                    "in and not_in take an array",
                ));
            }
            (FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte, Some(value)) => {
                if !value.is_number() {
                    return Err(AnalyticsError::invalid(
                        &value_path,
                        "gt, gte, lt and lte compare numbers",
                    ));
                }
                value.clone()
            }
            (FilterOp::Contains, Some(value)) => {
                if !value.is_string() {
                    return Err(AnalyticsError::invalid(
                        &value_path,
                        "contains takes a string",
                    ));
                }
                value.clone()
            }
            (FilterOp::Eq | FilterOp::Neq, Some(value)) => {
                if value.is_object() || value.is_array() {
                    return Err(AnalyticsError::invalid(
                        &value_path,
                        "eq and neq compare a string, number, boolean or null",
                    ));
                }
                value.clone()
            }
        };
        if matches!(field, Field::Column(_))
            && matches!(
                filter.op,
                FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte
            )
        {
            return Err(AnalyticsError::invalid(
                &format!("{path}.op"),
                format!(
                    "{} is a text column: use eq, neq, in, not_in, contains, exists or not_exists",
                    filter.field
                ),
            ));
        }
        Ok(Predicate {
            field,
            op: filter.op,
            value,
        })
    }

    /// Evaluates the predicate on a value (`None` = missing or null).
    pub(crate) fn matches(&self, actual: Option<&Value>) -> bool {
        let actual = actual.filter(|value| !value.is_null());
        match self.op {
            FilterOp::Exists => actual.is_some(),
            FilterOp::NotExists => actual.is_none(),
            FilterOp::Eq => actual.is_some_and(|a| json_equal(a, &self.value)),
            FilterOp::Neq => !actual.is_some_and(|a| json_equal(a, &self.value)),
            FilterOp::In => actual.is_some_and(|a| {
                self.value
                    .as_array()
                    .is_some_and(|items| items.iter().any(|item| json_equal(a, item)))
            }),
            FilterOp::NotIn => !actual.is_some_and(|a| {
                self.value
                    .as_array()
                    .is_some_and(|items| items.iter().any(|item| json_equal(a, item)))
            }),
            FilterOp::Contains => match (actual, self.value.as_str()) {
                (Some(Value::String(text)), Some(needle)) => text.contains(needle),
                _ => false,
            },
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => {
                let (Some(left), Some(right)) = (actual.and_then(as_number), self.value.as_f64())
                else {
                    return false;
                };
                match self.op {
                    FilterOp::Gt => left > right,
                    FilterOp::Gte => left >= right,
                    FilterOp::Lt => left < right,
                    _ => left <= right,
                }
            }
        }
    }

    /// Evaluates the predicate on a text column value.
    /// An empty text counts as missing; a number or boolean filter value matches its text form.
    pub(crate) fn matches_text(&self, actual: Option<&str>) -> bool {
        let actual = actual.filter(|text| !text.is_empty());
        let same = |text: &str, value: &Value| match value {
            Value::String(expected) => expected == text,
            Value::Null => false,
            Value::Number(number) => text.trim().parse::<f64>().ok() == number.as_f64(),
            Value::Bool(flag) => text == if *flag { "true" } else { "false" },
            Value::Array(_) | Value::Object(_) => false,
        };
        match self.op {
            FilterOp::Exists => actual.is_some(),
            FilterOp::NotExists => actual.is_none(),
            FilterOp::Eq => actual.is_some_and(|text| same(text, &self.value)),
            FilterOp::Neq => !actual.is_some_and(|text| same(text, &self.value)),
            FilterOp::In | FilterOp::NotIn => {
                let found = actual.is_some_and(|text| {
                    self.value
                        .as_array()
                        .is_some_and(|items| items.iter().any(|item| same(text, item)))
                });
                found == (self.op == FilterOp::In)
            }
            FilterOp::Contains => match (actual, self.value.as_str()) {
                (Some(text), Some(needle)) => text.contains(needle),
                _ => false,
            },
            // Refused by `compile` for columns.
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => false,
        }
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Equality of scalars; numbers compare by value, a number equals a string holding it.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

/// Reads `path` inside a JSON object.
pub(crate) fn lookup<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut current = root;
    for key in path {
        current = current.as_object()?.get(key)?;
    }
    Some(current)
}

/// The value of a field as a breakdown label.
pub(crate) fn label(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// The validated shared part of a request.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub from_ms: i64,
    pub to_ms: i64,
    pub tz: Tz,
    pub granularity: Granularity,
    /// Row filters (columns and properties): an event failing one is ignored.
    pub filters: Vec<Predicate>,
    /// Trait filters: a profile failing one is ignored.
    pub profile_filters: Vec<Predicate>,
    pub breakdown: Option<Field>,
}

/// The raw shared fields, as every request carries them.
pub(crate) struct ScopeFields<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub time_zone: Option<&'a str>,
    pub granularity: Granularity,
    pub filters: &'a [Filter],
    pub breakdown: Option<&'a str>,
}

impl Scope {
    pub(crate) fn compile(fields: ScopeFields<'_>) -> Result<Scope, AnalyticsError> {
        let tz: Tz = match fields.time_zone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                AnalyticsError::invalid(
                    "time_zone",
                    format!("unknown IANA time zone {name:?} (e.g. \"Europe/Berlin\", \"UTC\")"),
                )
            })?,
        };
        let from_ms = parse_bound("from", fields.from, tz)?;
        let to_ms = parse_bound("to", fields.to, tz)?;
        if to_ms <= from_ms {
            return Err(AnalyticsError::invalid("to", "must be after from"));
        }
        if to_ms - from_ms > MAX_RANGE_DAYS * MS_PER_DAY {
            return Err(AnalyticsError::invalid(
                "to",
                format!("the range may span at most {MAX_RANGE_DAYS} days"),
            ));
        }
        if fields.filters.len() > MAX_FILTERS {
            return Err(AnalyticsError::invalid(
                "filters",
                format!("at most {MAX_FILTERS} filters"),
            ));
        }
        let mut filters = Vec::new();
        let mut profile_filters = Vec::new();
        for (index, filter) in fields.filters.iter().enumerate() {
            let predicate = Predicate::compile(&format!("filters[{index}]"), filter)?;
            if matches!(predicate.field, Field::Trait(_)) {
                profile_filters.push(predicate);
            } else {
                filters.push(predicate);
            }
        }
        let breakdown = match fields.breakdown {
            None => None,
            Some(text) => Some(Field::parse("breakdown", text)?),
        };
        Ok(Scope {
            from_ms,
            to_ms,
            tz,
            granularity: fields.granularity,
            filters,
            profile_filters,
            breakdown,
        })
    }
}

/// An RFC 3339 timestamp, or a date `YYYY-MM-DD` meaning local midnight in `tz`.
fn parse_bound(path: &str, text: &str, tz: Tz) -> Result<i64, AnalyticsError> {
    if let Ok(date) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(local_midnight_ms(tz, date));
    }
    match chrono::DateTime::parse_from_rfc3339(text.trim()) {
        Ok(time) => Ok(time.timestamp_millis()),
        Err(_) => Err(AnalyticsError::invalid(
            path,
            format!(
                "{text:?} is neither a date (YYYY-MM-DD, local midnight) nor an RFC 3339 timestamp with offset"
            ),
        )),
    }
}

/// Compiles the filters of a step or an event matcher.
pub(crate) fn compile_filters(
    path: &str,
    filters: &[Filter],
) -> Result<Vec<Predicate>, AnalyticsError> {
    if filters.len() > MAX_FILTERS {
        return Err(AnalyticsError::invalid(
            path,
            format!("at most {MAX_FILTERS} filters"),
        ));
    }
    let mut out = Vec::new();
    for (index, filter) in filters.iter().enumerate() {
        let predicate = Predicate::compile(&format!("{path}[{index}]"), filter)?;
        if matches!(predicate.field, Field::Trait(_)) {
            return Err(AnalyticsError::invalid(
                &format!("{path}[{index}].field"),
                "trait filters apply to the whole request: put them in the top-level filters",
            ));
        }
        out.push(predicate);
    }
    Ok(out)
}

/// Checks an event name of a step or matcher (`$page`, `$screen`, ... name non-track types).
pub(crate) fn check_event_name(path: &str, name: &str) -> Result<(), AnalyticsError> {
    if name.trim().is_empty() {
        return Err(AnalyticsError::invalid(path, "must not be empty"));
    }
    if name.len() > 200 {
        return Err(AnalyticsError::invalid(path, "at most 200 characters"));
    }
    if let Some(kind) = name.strip_prefix('$')
        && !["page", "screen", "identify", "group", "alias", "any"].contains(&kind)
    {
        return Err(AnalyticsError::invalid(
            path,
            format!(
                "{name:?}: names starting with $ are $page, $screen, $identify, $group, $alias or $any"
            ),
        ));
    }
    Ok(())
}

/// An event key with filters: `{"event": "Order Completed", "filters": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMatch {
    /// Event key (`Order Completed`, `$page`, `$any`).
    pub event: String,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

impl EventMatch {
    pub(crate) fn compile(&self, path: &str) -> Result<crate::load::Matcher, AnalyticsError> {
        check_event_name(&format!("{path}.event"), &self.event)?;
        let filters = compile_filters(&format!("{path}.filters"), &self.filters)?;
        Ok(crate::load::Matcher::new(&self.event, filters))
    }
}
