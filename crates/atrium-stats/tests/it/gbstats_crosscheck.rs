//! Every number atrium-stats produces for the committed cases must be within a relative
//! difference of 1e-6 of gbstats' (`tests/gbstats/expected.json`, made by `crosscheck.py`).
//! With `ATRIUM_GBSTATS_PYTHON` set to a Python that has gbstats installed, the expected values
//! are also regenerated live and compared.

use std::path::PathBuf;
use std::process::Command;

use atrium_stats::{
    AnalysisSettings, EffectResult, Statistic, analyze, benjamini_hochberg, holm_bonferroni,
    srm_p_value,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

const RELATIVE_TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Cases {
    analyses: Vec<AnalysisCase>,
    corrections: Vec<Vec<f64>>,
    srm: Vec<SrmCase>,
}

#[derive(Deserialize)]
struct AnalysisCase {
    name: String,
    control: Statistic,
    treatments: Vec<Statistic>,
    settings: AnalysisSettings,
}

#[derive(Deserialize)]
struct SrmCase {
    users: Vec<u64>,
    weights: Vec<f64>,
}

fn gbstats_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gbstats")
}

fn load_cases() -> Cases {
    let text = std::fs::read_to_string(gbstats_dir().join("cases.json")).expect("read cases.json");
    serde_json::from_str(&text).expect("parse cases.json")
}

/// Non-finite numbers are strings in the fixtures.
fn number(value: f64) -> Value {
    if value.is_nan() {
        json!("nan")
    } else if value == f64::INFINITY {
        json!("inf")
    } else if value == f64::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(value)
    }
}

fn pair(values: [f64; 2]) -> Value {
    json!([number(values[0]), number(values[1])])
}

fn effect_to_value(result: &EffectResult) -> Value {
    let arm = |summary: &atrium_stats::ArmSummary| json!({"users": summary.users, "mean": number(summary.mean), "stddev": number(summary.stddev)});
    let mut object = Map::new();
    object.insert("control".into(), arm(&result.control));
    object.insert("treatment".into(), arm(&result.treatment));
    object.insert("theta".into(), result.theta.map_or(Value::Null, number));
    object.insert("expected".into(), number(result.expected));
    object.insert("ci".into(), pair(result.ci));
    object.insert(
        "uplift".into(),
        json!({"mean": number(result.uplift.mean), "stddev": number(result.uplift.stddev)}),
    );
    object.insert("p_value".into(), result.p_value.map_or(Value::Null, number));
    object.insert(
        "p_value_adjusted".into(),
        result.p_value_adjusted.map_or(Value::Null, number),
    );
    object.insert(
        "ci_adjusted".into(),
        result.ci_adjusted.map_or(Value::Null, pair),
    );
    object.insert(
        "degrees_of_freedom".into(),
        result.degrees_of_freedom.map_or(Value::Null, number),
    );
    object.insert(
        "chance_to_win".into(),
        result.chance_to_win.map_or(Value::Null, number),
    );
    object.insert("risk".into(), result.risk.map_or(Value::Null, pair));
    object.insert(
        "risk_type".into(),
        serde_json::to_value(result.risk_type).expect("serialize risk type"),
    );
    object.insert(
        "error".into(),
        serde_json::to_value(result.error).expect("serialize error"),
    );
    Value::Object(object)
}

/// Everything atrium-stats computes for the cases, in the layout of `expected.json`.
fn actual_values(cases: &Cases) -> Value {
    let mut analyses = Vec::new();
    for case in &cases.analyses {
        let results = analyze(&case.control, &case.treatments, &case.settings)
            .unwrap_or_else(|error| panic!("{}: {error}", case.name));
        let arm_count = case.treatments.len() + 1;
        let weights = case
            .settings
            .traffic_weights
            .clone()
            .unwrap_or_else(|| vec![1.0 / arm_count as f64; arm_count]);
        let mut users = vec![case.control.n()];
        users.extend(case.treatments.iter().map(Statistic::n));
        analyses.push(json!({
            "name": case.name,
            "results": results.iter().map(effect_to_value).collect::<Vec<_>>(),
            "srm": number(srm_p_value(&users, &weights)),
        }));
    }
    let corrections: Vec<Value> = cases
        .corrections
        .iter()
        .map(|p_values| {
            json!({
                "p_values": p_values.iter().copied().map(number).collect::<Vec<_>>(),
                "holm_bonferroni": holm_bonferroni(p_values).into_iter().map(number).collect::<Vec<_>>(),
                "benjamini_hochberg": benjamini_hochberg(p_values).into_iter().map(number).collect::<Vec<_>>(),
            })
        })
        .collect();
    let srm: Vec<Value> = cases
        .srm
        .iter()
        .map(|case| {
            json!({
                "users": case.users,
                "weights": case.weights.iter().copied().map(number).collect::<Vec<_>>(),
                "p_value": number(srm_p_value(&case.users, &case.weights)),
            })
        })
        .collect();
    json!({"analyses": analyses, "corrections": corrections, "srm": srm})
}

#[derive(Default)]
struct Comparison {
    numbers_compared: usize,
    max_relative_error: f64,
    worst_path: String,
    /// Largest relative error per field name (array indices stripped), for the log.
    max_by_field: std::collections::BTreeMap<String, f64>,
    failures: Vec<String>,
}

impl Comparison {
    fn compare(&mut self, path: &str, expected: &Value, actual: &Value) {
        match (expected, actual) {
            (Value::Object(expected_map), Value::Object(actual_map)) => {
                for (key, expected_value) in expected_map {
                    if key == "gbstats_version" {
                        continue;
                    }
                    let child = format!("{path}.{key}");
                    match actual_map.get(key) {
                        Some(actual_value) => self.compare(&child, expected_value, actual_value),
                        None => self.failures.push(format!("{child}: missing")),
                    }
                }
            }
            (Value::Array(expected_items), Value::Array(actual_items)) => {
                if expected_items.len() != actual_items.len() {
                    self.failures.push(format!(
                        "{path}: length {} != {}",
                        actual_items.len(),
                        expected_items.len()
                    ));
                    return;
                }
                for (index, (expected_item, actual_item)) in
                    expected_items.iter().zip(actual_items).enumerate()
                {
                    self.compare(&format!("{path}[{index}]"), expected_item, actual_item);
                }
            }
            (Value::Number(expected_number), Value::Number(actual_number)) => {
                let expected_f64 = expected_number.as_f64().expect("number");
                let actual_f64 = actual_number.as_f64().expect("number");
                self.numbers_compared += 1;
                let scale = expected_f64.abs().max(actual_f64.abs());
                let relative_error = if expected_f64 == actual_f64 {
                    0.0
                } else {
                    (expected_f64 - actual_f64).abs() / scale
                };
                let field = path
                    .rsplit('.')
                    .next()
                    .unwrap_or(path)
                    .split('[')
                    .next()
                    .unwrap_or(path)
                    .to_string();
                let field_max = self.max_by_field.entry(field).or_insert(0.0);
                *field_max = field_max.max(relative_error);
                if relative_error > self.max_relative_error {
                    self.max_relative_error = relative_error;
                    self.worst_path = path.to_string();
                }
                if relative_error > RELATIVE_TOLERANCE {
                    self.failures.push(format!(
                        "{path}: atrium {actual_f64:e} vs gbstats {expected_f64:e} (relative error {relative_error:e})"
                    ));
                }
            }
            _ => {
                if expected != actual {
                    self.failures
                        .push(format!("{path}: atrium {actual} vs gbstats {expected}"));
                }
            }
        }
    }
}

/// Names the analysis cases in paths such as `analyses[3]` to make failures readable.
fn label_paths(failures: &[String], cases: &Cases) -> Vec<String> {
    failures
        .iter()
        .map(|failure| {
            let Some(rest) = failure.strip_prefix("$.analyses[") else {
                return failure.clone();
            };
            let index: usize = rest
                .split(']')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            format!("[{}] {failure}", cases.analyses[index].name)
        })
        .collect()
}

fn check_against(expected: &Value) {
    let cases = load_cases();
    let actual = actual_values(&cases);
    let mut comparison = Comparison::default();
    comparison.compare("$", expected, &actual);
    println!(
        "compared {} numbers; max relative error {:e} at {}",
        comparison.numbers_compared, comparison.max_relative_error, comparison.worst_path
    );
    for (field, max_error) in &comparison.max_by_field {
        println!("  {field}: max relative error {max_error:e}");
    }
    assert!(
        comparison.numbers_compared > 1000,
        "too few numbers compared"
    );
    let failures = label_paths(&comparison.failures, &cases);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn matches_committed_gbstats_values() {
    let text =
        std::fs::read_to_string(gbstats_dir().join("expected.json")).expect("read expected.json");
    let expected: Value = serde_json::from_str(&text).expect("parse expected.json");
    assert_eq!(expected["gbstats_version"], "0.8.0");
    check_against(&expected);
}

/// Runs only when `ATRIUM_GBSTATS_PYTHON` names a Python interpreter with gbstats 0.8.0.
#[test]
fn matches_live_gbstats() {
    let Ok(python) = std::env::var("ATRIUM_GBSTATS_PYTHON") else {
        println!("ATRIUM_GBSTATS_PYTHON not set; skipping the live gbstats comparison");
        return;
    };
    let output_dir = tempfile::tempdir().expect("temp dir");
    let output_path = output_dir.path().join("expected.json");
    let status = Command::new(&python)
        .arg(gbstats_dir().join("crosscheck.py"))
        .arg("expected")
        .arg("--cases")
        .arg(gbstats_dir().join("cases.json"))
        .arg("--out")
        .arg(&output_path)
        .status()
        .expect("run crosscheck.py");
    assert!(status.success(), "crosscheck.py failed: {status}");
    let text = std::fs::read_to_string(&output_path).expect("read live output");
    let expected: Value = serde_json::from_str(&text).expect("parse live output");
    check_against(&expected);
}
