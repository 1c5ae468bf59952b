//! Metric definitions (`PUT /v1/metrics/{key}` bodies) and their validation.
//!
//! A metric is computed per unit (the resolved profile) from warehouse events, relative to the
//! unit's first exposure:
//! - `conversion`: 1 if the unit did `event` (matching `filters`) within `window_hours` after its
//!   first exposure (72 hours by default), else 0;
//! - `count`: how many such events within the window (no window: until the analysis ends);
//! - `sum`: the sum of `value` (an event column such as `revenue`, or `properties.<name>`) over
//!   such events;
//! - `ratio`: the `numerator` metric's total over the `denominator` metric's total (e.g. revenue
//!   per order), analysed with the delta method.
//!
//! `inverse` marks metrics where lower is better; `cap` winsorizes per-unit values (an absolute
//! value, or a percentile of the units' values); `covariate` adds the same metric over a
//! lookback window before the first exposure, for CUPED.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Event columns a filter or value may name directly (text columns).
pub const TEXT_COLUMNS: [&str; 24] = [
    "type",
    "event",
    "name",
    "source",
    "channel",
    "campaign_source",
    "campaign_medium",
    "campaign_name",
    "page_url",
    "page_path",
    "page_referrer",
    "device_type",
    "os_name",
    "app_name",
    "app_version",
    "locale",
    "country",
    "city",
    "order_id",
    "currency",
    "product_id",
    "sku",
    "category",
    "coupon",
];

/// Numeric event columns.
pub const NUMBER_COLUMNS: [&str; 4] = ["revenue", "value", "price", "quantity"];

/// Default conversion window (GrowthBook's default).
pub const DEFAULT_CONVERSION_WINDOW_HOURS: f64 = 72.0;

/// Longest window or lookback, in hours (a bit over a year).
const MAX_WINDOW_HOURS: f64 = 24.0 * 400.0;
const MAX_FILTERS: usize = 20;
const MAX_IN_VALUES: usize = 1_000;
const MAX_NAME_CHARS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Conversion,
    Count,
    Sum,
    Ratio,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Conversion => "conversion",
            MetricKind::Count => "count",
            MetricKind::Sum => "sum",
            MetricKind::Ratio => "ratio",
        }
    }
}

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
    Exists,
    Contains,
}

/// `{property, op, value}`: `property` is an event column or `properties.<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    pub property: String,
    pub op: FilterOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Winsorization of per-unit values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Cap {
    /// Values above `value` count as `value`.
    Absolute { value: f64 },
    /// Values above the `value` quantile (e.g. 0.99) of the units' values count as that quantile;
    /// `ignore_zeros` computes the quantile over non-zero values only.
    Percentile {
        value: f64,
        #[serde(default)]
        ignore_zeros: bool,
    },
}

/// The pre-exposure covariate for CUPED: the same metric over `lookback_days` before exposure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Covariate {
    pub lookback_days: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDefinition {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<PropertyFilter>,
    /// For `sum`: the column (`revenue`, `value`, `price`, `quantity`) or `properties.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<String>,
    #[serde(default)]
    pub inverse: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariate: Option<Covariate>,
}

/// One problem with a definition, at a JSON path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct MetricError {
    pub path: String,
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> MetricError {
    MetricError {
        path: path.into(),
        message: message.into(),
    }
}

/// Where a property lives: a typed column, or a member of the `properties` JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropertyRef {
    TextColumn(&'static str),
    NumberColumn(&'static str),
    Json(String),
}

/// Parses `revenue`, `category` or `properties.plan`.
pub fn property_ref(property: &str) -> Result<PropertyRef, String> {
    if let Some(name) = property.strip_prefix("properties.") {
        let valid = !name.is_empty()
            && name.chars().count() <= MAX_NAME_CHARS
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
        return if valid {
            Ok(PropertyRef::Json(name.to_owned()))
        } else {
            Err(format!(
                "a property name is 1 to {MAX_NAME_CHARS} letters, digits, _ - or $ (no nesting)"
            ))
        };
    }
    if let Some(column) = TEXT_COLUMNS.iter().find(|column| **column == property) {
        return Ok(PropertyRef::TextColumn(column));
    }
    if let Some(column) = NUMBER_COLUMNS.iter().find(|column| **column == property) {
        return Ok(PropertyRef::NumberColumn(column));
    }
    Err(format!(
        "unknown property `{property}`: use an event column ({}, {}) or `properties.<name>`",
        NUMBER_COLUMNS.join(", "),
        TEXT_COLUMNS.join(", ")
    ))
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn check_filter(filter: &PropertyFilter, path: &str, errors: &mut Vec<MetricError>) {
    let reference = match property_ref(&filter.property) {
        Ok(reference) => reference,
        Err(message) => {
            errors.push(problem(format!("{path}.property"), message));
            return;
        }
    };
    let value_path = format!("{path}.value");
    match filter.op {
        FilterOp::Exists => {
            if filter.value.is_some() {
                errors.push(problem(value_path, "`exists` takes no value"));
            }
        }
        FilterOp::Eq | FilterOp::Neq => match &filter.value {
            Some(value) if is_scalar(value) => {
                if matches!(reference, PropertyRef::NumberColumn(_)) && !value.is_number() {
                    errors.push(problem(
                        value_path,
                        "this column is numeric: compare to a number",
                    ));
                }
            }
            _ => errors.push(problem(value_path, "needs a string, number or boolean")),
        },
        FilterOp::In | FilterOp::NotIn => match &filter.value {
            Some(Value::Array(values)) if !values.is_empty() && values.len() <= MAX_IN_VALUES => {
                let all_strings = values.iter().all(Value::is_string);
                let all_numbers = values.iter().all(Value::is_number);
                if !all_strings && !all_numbers {
                    errors.push(problem(
                        value_path,
                        "the list must hold only strings or only numbers",
                    ));
                } else if matches!(reference, PropertyRef::NumberColumn(_)) && !all_numbers {
                    errors.push(problem(value_path, "this column is numeric: list numbers"));
                }
            }
            _ => errors.push(problem(
                value_path,
                format!("needs a list of 1 to {MAX_IN_VALUES} values"),
            )),
        },
        FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => {
            if !filter.value.as_ref().is_some_and(Value::is_number) {
                errors.push(problem(value_path, "needs a number"));
            } else if matches!(reference, PropertyRef::TextColumn(_)) {
                errors.push(problem(
                    format!("{path}.property"),
                    "this column is text: numeric comparisons need a number column or `properties.<name>`",
                ));
            }
        }
        FilterOp::Contains => match &filter.value {
            Some(Value::String(text)) if !text.is_empty() => {
                if matches!(reference, PropertyRef::NumberColumn(_)) {
                    errors.push(problem(
                        format!("{path}.property"),
                        "`contains` needs a text property",
                    ));
                }
            }
            _ => errors.push(problem(value_path, "needs a non-empty string")),
        },
    }
}

fn check_hours(value: Option<f64>, path: &str, errors: &mut Vec<MetricError>) {
    if let Some(hours) = value
        && !(hours.is_finite() && hours > 0.0 && hours <= MAX_WINDOW_HOURS)
    {
        errors.push(problem(
            path,
            format!("must be more than 0 and at most {MAX_WINDOW_HOURS} hours"),
        ));
    }
}

fn forbid(present: bool, path: &str, kind: MetricKind, errors: &mut Vec<MetricError>) {
    if present {
        errors.push(problem(
            path,
            format!("not used by a `{}` metric; remove it", kind.as_str()),
        ));
    }
}

impl MetricDefinition {
    /// Parses and validates a stored or submitted body. `key` is the metric's own key (a ratio
    /// may not reference itself).
    pub fn parse(key: &str, body: &Value) -> Result<MetricDefinition, Vec<MetricError>> {
        let definition: MetricDefinition = serde_json::from_value(body.clone())
            .map_err(|error| vec![problem("metric", error.to_string())])?;
        definition.validate(key)?;
        Ok(definition)
    }

    /// Every problem, with the path of the field at fault.
    pub fn validate(&self, key: &str) -> Result<(), Vec<MetricError>> {
        let mut errors = Vec::new();
        let kind = self.kind;
        if kind == MetricKind::Ratio {
            for (field, reference) in [
                ("metric.numerator", &self.numerator),
                ("metric.denominator", &self.denominator),
            ] {
                match reference.as_deref() {
                    None | Some("") => {
                        errors.push(problem(field, "a ratio metric needs this metric key"))
                    }
                    Some(other) if other == key => {
                        errors.push(problem(field, "a ratio metric cannot reference itself"))
                    }
                    Some(_) => {}
                }
            }
            forbid(self.event.is_some(), "metric.event", kind, &mut errors);
            forbid(
                !self.filters.is_empty(),
                "metric.filters",
                kind,
                &mut errors,
            );
            forbid(self.value.is_some(), "metric.value", kind, &mut errors);
            forbid(
                self.window_hours.is_some(),
                "metric.window_hours",
                kind,
                &mut errors,
            );
            forbid(self.cap.is_some(), "metric.cap", kind, &mut errors);
            if self.covariate.is_some() {
                errors.push(problem(
                    "metric.covariate",
                    "CUPED covariates are not supported for ratio metrics; set them on count, sum or conversion metrics",
                ));
            }
        } else {
            match self.event.as_deref() {
                None => errors.push(problem("metric.event", "the event to measure is required")),
                Some(event) if event.is_empty() || event.chars().count() > 200 => errors.push(
                    problem("metric.event", "an event name is 1 to 200 characters"),
                ),
                Some(_) => {}
            }
            forbid(
                self.numerator.is_some(),
                "metric.numerator",
                kind,
                &mut errors,
            );
            forbid(
                self.denominator.is_some(),
                "metric.denominator",
                kind,
                &mut errors,
            );
            if self.filters.len() > MAX_FILTERS {
                errors.push(problem(
                    "metric.filters",
                    format!("at most {MAX_FILTERS} filters"),
                ));
            }
            for (index, filter) in self.filters.iter().enumerate() {
                check_filter(filter, &format!("metric.filters[{index}]"), &mut errors);
            }
            check_hours(self.window_hours, "metric.window_hours", &mut errors);
            if kind == MetricKind::Sum {
                match self.value.as_deref().map(property_ref) {
                    None => errors.push(problem(
                        "metric.value",
                        "a sum metric needs the value to add up, e.g. `revenue` or `properties.amount`",
                    )),
                    Some(Err(message)) => errors.push(problem("metric.value", message)),
                    Some(Ok(PropertyRef::TextColumn(column))) => errors.push(problem(
                        "metric.value",
                        format!("`{column}` is a text column; use a number column or `properties.<name>`"),
                    )),
                    Some(Ok(_)) => {}
                }
            } else {
                forbid(self.value.is_some(), "metric.value", kind, &mut errors);
            }
            match self.cap {
                Some(Cap::Absolute { value }) if !(value.is_finite() && value > 0.0) => errors
                    .push(problem(
                        "metric.cap.value",
                        "an absolute cap must be above 0",
                    )),
                Some(Cap::Percentile { value, .. }) if !(value > 0.0 && value < 1.0) => errors
                    .push(problem(
                        "metric.cap.value",
                        "a percentile cap is a quantile between 0 and 1 (exclusive), e.g. 0.99",
                    )),
                Some(_) if kind == MetricKind::Conversion => errors.push(problem(
                    "metric.cap",
                    "a conversion is 0 or 1 already; caps apply to count and sum metrics",
                )),
                _ => {}
            }
            if let Some(covariate) = self.covariate {
                check_hours(
                    Some(covariate.lookback_days * 24.0),
                    "metric.covariate.lookback_days",
                    &mut errors,
                );
            }
        }
        for (field, text) in [
            ("metric.name", &self.name),
            ("metric.description", &self.description),
        ] {
            if text
                .as_ref()
                .is_some_and(|text| text.chars().count() > 2_000)
            {
                errors.push(problem(field, "at most 2000 characters"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The conversion or measurement window after first exposure, in milliseconds (`None`:
    /// until the analysis ends).
    pub fn window_ms(&self) -> Option<i64> {
        let hours = match (self.kind, self.window_hours) {
            (_, Some(hours)) => hours,
            (MetricKind::Conversion, None) => DEFAULT_CONVERSION_WINDOW_HOURS,
            _ => return None,
        };
        Some((hours * 3_600_000.0).round() as i64)
    }

    /// The covariate lookback in milliseconds.
    pub fn lookback_ms(&self) -> Option<i64> {
        self.covariate
            .map(|covariate| (covariate.lookback_days * 86_400_000.0).round() as i64)
    }
}
