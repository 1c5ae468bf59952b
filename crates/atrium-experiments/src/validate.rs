//! Validation of definitions before they are stored or served. Evaluation tolerates anything
//! (bad weights fall back to equal weights, unknown operators are false); validation tells the
//! author instead, naming the JSON path of each problem.

use serde_json::Value;

use crate::condition::KNOWN_OPERATORS;
use crate::model::{Experiment, FeatureDefinition, FeatureRule, Filter, Payload};

/// One problem in a definition, at `path` (e.g. `features.checkout.rules[1].weights`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    pub path: String,
    pub kind: ValidationErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationErrorKind {
    #[error("weights must sum to 1 (within 0.99..=1.01), got {sum}")]
    WeightsSum { sum: f64 },
    #[error("{weights} weights for {variations} variations")]
    WeightsLength { weights: usize, variations: usize },
    #[error("weight {weight} is outside [0, 1]")]
    WeightOutOfRange { weight: f64 },
    #[error("coverage {coverage} is outside [0, 1]")]
    CoverageOutOfRange { coverage: f64 },
    #[error("range [{start}, {end}] is not within [0, 1] with start <= end")]
    InvalidRange { start: f64, end: f64 },
    #[error("{ranges} ranges for {variations} variations")]
    RangesLength { ranges: usize, variations: usize },
    #[error("an experiment needs at least 2 variations, got {count}")]
    TooFewVariations { count: usize },
    #[error("hash version {version} is unknown (expected 1 or 2)")]
    UnknownHashVersion { version: u32 },
    #[error("unknown operator {operator}")]
    UnknownOperator { operator: String },
    #[error("operator {operator} expects {expected}")]
    InvalidOperand {
        operator: String,
        expected: &'static str,
    },
    #[error("invalid regular expression: {reason}")]
    InvalidRegex { reason: String },
    #[error("a condition must be a JSON object")]
    ConditionNotObject,
    #[error("{operator} expects an array of conditions")]
    LogicalNotArray { operator: String },
}

struct Collector {
    errors: Vec<ValidationError>,
}

impl Collector {
    fn push(&mut self, path: &str, kind: ValidationErrorKind) {
        self.errors.push(ValidationError {
            path: path.to_owned(),
            kind,
        });
    }
}

/// Validates every feature and auto experiment of a payload.
pub fn validate_payload(payload: &Payload) -> Result<(), Vec<ValidationError>> {
    let mut collector = Collector { errors: Vec::new() };
    for (key, feature) in &payload.features {
        check_feature(&mut collector, &format!("features.{key}"), feature);
    }
    for (index, experiment) in payload.experiments.iter().enumerate() {
        check_experiment(&mut collector, &format!("experiments[{index}]"), experiment);
    }
    into_result(collector)
}

/// Validates one feature definition; paths start at `features.<key>`.
pub fn validate_feature(
    key: &str,
    feature: &FeatureDefinition,
) -> Result<(), Vec<ValidationError>> {
    let mut collector = Collector { errors: Vec::new() };
    check_feature(&mut collector, &format!("features.{key}"), feature);
    into_result(collector)
}

/// Validates an experiment given directly; paths start at `experiment`.
pub fn validate_experiment(experiment: &Experiment) -> Result<(), Vec<ValidationError>> {
    let mut collector = Collector { errors: Vec::new() };
    check_experiment(&mut collector, "experiment", experiment);
    into_result(collector)
}

/// Validates a targeting condition; paths start at `path`.
pub fn validate_condition(condition: &Value, path: &str) -> Result<(), Vec<ValidationError>> {
    let mut collector = Collector { errors: Vec::new() };
    check_condition(&mut collector, path, condition);
    into_result(collector)
}

fn into_result(collector: Collector) -> Result<(), Vec<ValidationError>> {
    if collector.errors.is_empty() {
        Ok(())
    } else {
        Err(collector.errors)
    }
}

fn check_feature(collector: &mut Collector, path: &str, feature: &FeatureDefinition) {
    for (index, rule) in feature.rules.iter().enumerate() {
        check_rule(collector, &format!("{path}.rules[{index}]"), rule);
    }
}

fn check_rule(collector: &mut Collector, path: &str, rule: &FeatureRule) {
    if let Some(condition) = &rule.condition {
        check_condition(collector, &format!("{path}.condition"), condition);
    }
    if let Some(parents) = &rule.parent_conditions {
        for (index, parent) in parents.iter().enumerate() {
            if !parent.condition.is_null() {
                let parent_path = format!("{path}.parentConditions[{index}].condition");
                check_condition(collector, &parent_path, &parent.condition);
            }
        }
    }
    check_coverage(collector, path, rule.coverage);
    check_hash_version(collector, path, rule.hash_version);
    if let Some((start, end)) = rule.range {
        check_range(collector, &format!("{path}.range"), start, end);
    }
    if let Some(filters) = &rule.filters {
        check_filters(collector, &format!("{path}.filters"), filters);
    }
    let variations = rule
        .contextual_variations
        .as_ref()
        .or(rule.variations.as_ref());
    if let Some(variations) = variations {
        let count = variations.len();
        if count < 2 {
            collector.push(
                &format!("{path}.variations"),
                ValidationErrorKind::TooFewVariations { count },
            );
        }
        check_weights(collector, path, rule.weights.as_deref(), count);
        if let Some(ranges) = &rule.ranges {
            check_ranges(collector, &format!("{path}.ranges"), ranges, count);
        }
    }
}

fn check_experiment(collector: &mut Collector, path: &str, experiment: &Experiment) {
    let count = experiment.variations.len();
    if count < 2 {
        collector.push(
            &format!("{path}.variations"),
            ValidationErrorKind::TooFewVariations { count },
        );
    }
    check_weights(collector, path, experiment.weights.as_deref(), count);
    check_coverage(collector, path, experiment.coverage);
    check_hash_version(collector, path, experiment.hash_version);
    if let Some(ranges) = &experiment.ranges {
        check_ranges(collector, &format!("{path}.ranges"), ranges, count);
    }
    if let Some(condition) = &experiment.condition {
        check_condition(collector, &format!("{path}.condition"), condition);
    }
    if let Some(filters) = &experiment.filters {
        check_filters(collector, &format!("{path}.filters"), filters);
    }
}

fn check_weights(
    collector: &mut Collector,
    path: &str,
    weights: Option<&[f64]>,
    variations: usize,
) {
    let Some(weights) = weights else {
        return;
    };
    let weights_path = format!("{path}.weights");
    if weights.len() != variations {
        collector.push(
            &weights_path,
            ValidationErrorKind::WeightsLength {
                weights: weights.len(),
                variations,
            },
        );
    }
    for (index, weight) in weights.iter().enumerate() {
        if !(0.0..=1.0).contains(weight) {
            collector.push(
                &format!("{weights_path}[{index}]"),
                ValidationErrorKind::WeightOutOfRange { weight: *weight },
            );
        }
    }
    let sum: f64 = weights.iter().sum();
    if !(0.99..=1.01).contains(&sum) {
        collector.push(&weights_path, ValidationErrorKind::WeightsSum { sum });
    }
}

fn check_coverage(collector: &mut Collector, path: &str, coverage: Option<f64>) {
    if let Some(coverage) = coverage
        && !(0.0..=1.0).contains(&coverage)
    {
        collector.push(
            &format!("{path}.coverage"),
            ValidationErrorKind::CoverageOutOfRange { coverage },
        );
    }
}

fn check_hash_version(collector: &mut Collector, path: &str, version: Option<u32>) {
    if let Some(version) = version
        && version != 1
        && version != 2
    {
        collector.push(
            &format!("{path}.hashVersion"),
            ValidationErrorKind::UnknownHashVersion { version },
        );
    }
}

fn check_range(collector: &mut Collector, path: &str, start: f64, end: f64) {
    let valid = (0.0..=1.0).contains(&start) && (0.0..=1.0).contains(&end) && start <= end;
    if !valid {
        collector.push(path, ValidationErrorKind::InvalidRange { start, end });
    }
}

fn check_ranges(collector: &mut Collector, path: &str, ranges: &[(f64, f64)], variations: usize) {
    if ranges.len() != variations {
        collector.push(
            path,
            ValidationErrorKind::RangesLength {
                ranges: ranges.len(),
                variations,
            },
        );
    }
    for (index, (start, end)) in ranges.iter().enumerate() {
        check_range(collector, &format!("{path}[{index}]"), *start, *end);
    }
}

fn check_filters(collector: &mut Collector, path: &str, filters: &[Filter]) {
    for (index, filter) in filters.iter().enumerate() {
        let filter_path = format!("{path}[{index}]");
        check_hash_version(collector, &filter_path, filter.hash_version);
        for (range_index, (start, end)) in filter.ranges.iter().enumerate() {
            let range_path = format!("{filter_path}.ranges[{range_index}]");
            check_range(collector, &range_path, *start, *end);
        }
    }
}

fn is_operator_object(value: &Value) -> bool {
    matches!(value, Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.starts_with('$')))
}

fn check_condition(collector: &mut Collector, path: &str, condition: &Value) {
    let Value::Object(entries) = condition else {
        collector.push(path, ValidationErrorKind::ConditionNotObject);
        return;
    };
    for (key, argument) in entries {
        let entry_path = format!("{path}.{key}");
        match key.as_str() {
            "$or" | "$nor" | "$and" => {
                let Value::Array(conditions) = argument else {
                    collector.push(
                        &entry_path,
                        ValidationErrorKind::LogicalNotArray {
                            operator: key.clone(),
                        },
                    );
                    continue;
                };
                for (index, nested) in conditions.iter().enumerate() {
                    check_condition(collector, &format!("{entry_path}[{index}]"), nested);
                }
            }
            "$not" => check_condition(collector, &entry_path, argument),
            _ => check_condition_value(collector, &entry_path, argument),
        }
    }
}

fn check_condition_value(collector: &mut Collector, path: &str, value: &Value) {
    let Value::Object(operators) = value else {
        return;
    };
    if !is_operator_object(value) {
        return;
    }
    for (operator, operand) in operators {
        let operator_path = format!("{path}.{operator}");
        if !KNOWN_OPERATORS.contains(&operator.as_str()) {
            collector.push(
                &operator_path,
                ValidationErrorKind::UnknownOperator {
                    operator: operator.clone(),
                },
            );
            continue;
        }
        let invalid = |expected: &'static str| ValidationErrorKind::InvalidOperand {
            operator: operator.clone(),
            expected,
        };
        match operator.as_str() {
            "$in" | "$nin" | "$ini" | "$nini" | "$all" | "$alli" => {
                if !operand.is_array() {
                    collector.push(&operator_path, invalid("an array"));
                } else if operator.starts_with("$all")
                    && let Value::Array(items) = operand
                {
                    for (index, item) in items.iter().enumerate() {
                        check_condition_value(
                            collector,
                            &format!("{operator_path}[{index}]"),
                            item,
                        );
                    }
                }
            }
            "$regex" | "$regexi" => match operand {
                Value::String(pattern) => {
                    if let Err(error) = regex::Regex::new(pattern) {
                        collector.push(
                            &operator_path,
                            ValidationErrorKind::InvalidRegex {
                                reason: error.to_string(),
                            },
                        );
                    }
                }
                _ => collector.push(&operator_path, invalid("a string pattern")),
            },
            "$type" => {
                let known = [
                    "string",
                    "number",
                    "boolean",
                    "array",
                    "object",
                    "null",
                    "undefined",
                ];
                if !operand.as_str().is_some_and(|name| known.contains(&name)) {
                    collector.push(&operator_path, invalid("a type name"));
                }
            }
            "$inGroup" | "$notInGroup" if !operand.is_string() => {
                collector.push(&operator_path, invalid("a saved group id"));
            }
            "$veq" | "$vne" | "$vgt" | "$vgte" | "$vlt" | "$vlte"
                if !operand.is_string() && !operand.is_number() =>
            {
                collector.push(&operator_path, invalid("a version string"));
            }
            "$not" | "$size" => check_condition_value(collector, &operator_path, operand),
            "$elemMatch" => {
                if is_operator_object(operand) {
                    check_condition_value(collector, &operator_path, operand);
                } else {
                    check_condition(collector, &operator_path, operand);
                }
            }
            _ => {}
        }
    }
}
