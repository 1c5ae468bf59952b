//! Data-driven runner over GrowthBook's vendored conformance suite.
//!
//! Every section is run case by case; per-section pass counts are printed (visible with
//! `cargo test -- --nocapture`). Failing cases must be listed in [`EXCLUDED`] with a reason,
//! and the runner fails when the set of failures differs from that list in either direction,
//! so the list stays exact.

use std::collections::{BTreeMap, BTreeSet};

use atrium_experiments::{
    Context, Experiment, InMemoryStickyBucketService, Namespace, SavedGroups,
    StickyAssignmentsDocument, StickyBucketService, choose_variation, decrypt, eval_condition,
    eval_feature, get_bucket_ranges, get_equal_weights, get_query_string_override, get_redirect,
    hash, in_namespace, run_experiment,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CASES_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/growthbook-cases.json"
);
const CASES_SHA256: &str = "1422cb1bfc6f6035f78aa21e5181ab91f758e37f1688e2c6142aface7d953886";

/// Cases known to fail: `(section, case name, reason)`. Empty: the whole suite passes.
/// Documented in the crate docs; keep both in sync.
const EXCLUDED: &[(&str, &str, &str)] = &[];

/// Sections of the file this runner understands.
const SECTIONS: &[&str] = &[
    "evalCondition",
    "hash",
    "getBucketRange",
    "feature",
    "run",
    "chooseVariation",
    "getQueryStringOverride",
    "inNamespace",
    "getEqualWeights",
    "decrypt",
    "stickyBucket",
    "urlRedirect",
    "contextualBandit",
];

fn load_cases() -> Value {
    let text = std::fs::read_to_string(CASES_PATH).expect("vendored cases file is readable");
    serde_json::from_str(&text).expect("vendored cases file is JSON")
}

#[test]
fn vendored_file_checksum() {
    let bytes = std::fs::read(CASES_PATH).expect("vendored cases file is readable");
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        hex, CASES_SHA256,
        "update tests/data/SOURCE.md and CASES_SHA256 together"
    );
}

/// Compares JSON values with numbers compared numerically (`1` equals `1.0`).
fn json_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => left == right,
    }
}

fn expect_json(actual: &Value, expected: &Value) -> Result<(), String> {
    if json_eq(actual, expected) {
        Ok(())
    } else {
        Err(format!("expected {expected}\n     got {actual}"))
    }
}

fn context_from(value: &Value) -> Result<Context, String> {
    serde_json::from_value(value.clone()).map_err(|error| format!("context: {error}"))
}

fn case_name(section: &str, index: usize, case: &Value) -> String {
    match case.get(0) {
        Some(Value::String(name)) if !matches!(section, "hash" | "getEqualWeights") => name.clone(),
        _ => format!("{section}[{index}]"),
    }
}

fn run_case(section: &str, case: &Value) -> Result<(), String> {
    let item = |index: usize| case.get(index).cloned().unwrap_or(Value::Null);
    match section {
        "evalCondition" => {
            let saved_groups: SavedGroups = match case.get(4) {
                Some(groups) => {
                    serde_json::from_value(groups.clone()).map_err(|e| e.to_string())?
                }
                None => SavedGroups::new(),
            };
            let actual = eval_condition(&item(2), &item(1), &saved_groups);
            expect_json(&json!(actual), &item(3))
        }
        "hash" => {
            let version = item(2).as_u64().unwrap_or(0) as u32;
            let actual = hash(
                item(0).as_str().unwrap_or(""),
                item(1).as_str().unwrap_or(""),
                version,
            );
            expect_json(&json!(actual), &item(3))
        }
        "getBucketRange" => {
            let args = item(1);
            let weights: Option<Vec<f64>> = serde_json::from_value(args[2].clone()).ok();
            let ranges = get_bucket_ranges(
                args[0].as_u64().unwrap_or(0) as usize,
                args[1].as_f64(),
                weights.as_deref(),
            );
            let round = |n: f64| (n * 1e8).floor() / 1e8;
            let actual: Vec<(f64, f64)> =
                ranges.iter().map(|(a, b)| (round(*a), round(*b))).collect();
            let expected: Vec<(f64, f64)> =
                serde_json::from_value(item(2)).map_err(|e| e.to_string())?;
            let expected: Vec<(f64, f64)> = expected
                .iter()
                .map(|(a, b)| (round(*a), round(*b)))
                .collect();
            expect_json(&json!(actual), &json!(expected))
        }
        "chooseVariation" => {
            let ranges: Vec<(f64, f64)> =
                serde_json::from_value(item(2)).map_err(|e| e.to_string())?;
            let actual = choose_variation(item(1).as_f64().unwrap_or(f64::NAN), &ranges);
            expect_json(&json!(actual), &item(3))
        }
        "getQueryStringOverride" => {
            let actual = get_query_string_override(
                item(1).as_str().unwrap_or(""),
                item(2).as_str().unwrap_or(""),
                item(3).as_u64().unwrap_or(0) as usize,
            );
            expect_json(&json!(actual), &item(4))
        }
        "inNamespace" => {
            let namespace: Namespace =
                serde_json::from_value(item(2)).map_err(|e| e.to_string())?;
            let actual = in_namespace(item(1).as_str().unwrap_or(""), &namespace);
            expect_json(&json!(actual), &item(3))
        }
        "getEqualWeights" => {
            let round = |n: f64| (n * 1e8).floor() / 1e8;
            let actual: Vec<f64> = get_equal_weights(item(0).as_i64().unwrap_or(0))
                .into_iter()
                .map(round)
                .collect();
            let expected: Vec<f64> = serde_json::from_value(item(1)).map_err(|e| e.to_string())?;
            let expected: Vec<f64> = expected.into_iter().map(round).collect();
            expect_json(&json!(actual), &json!(expected))
        }
        "decrypt" => {
            let actual = decrypt(
                item(1).as_str().unwrap_or(""),
                item(2).as_str().unwrap_or(""),
            )
            .ok();
            expect_json(&json!(actual), &item(3))
        }
        "run" => {
            let mut ctx = context_from(&item(1))?;
            let experiment: Experiment =
                serde_json::from_value(item(2)).map_err(|e| format!("experiment: {e}"))?;
            let result = run_experiment(&mut ctx, &experiment);
            expect_json(&result.value, &item(3))?;
            expect_json(&json!(result.in_experiment), &item(4))?;
            expect_json(&json!(result.hash_used), &item(5))
        }
        "feature" | "contextualBandit" => {
            let mut ctx = context_from(&item(1))?;
            let result = eval_feature(&mut ctx, item(2).as_str().unwrap_or(""));
            let mut expected = item(3);
            if let Value::Object(map) = &mut expected {
                map.entry("ruleId").or_insert(json!(""));
            }
            let actual = serde_json::to_value(&result).map_err(|e| e.to_string())?;
            expect_json(&actual, &expected)
        }
        "stickyBucket" => {
            let mut ctx = context_from(&item(1))?;
            let mut service = InMemoryStickyBucketService::new();
            let seed_docs: Vec<StickyAssignmentsDocument> =
                serde_json::from_value(item(2)).map_err(|e| format!("docs: {e}"))?;
            for doc in seed_docs {
                service.save_assignments(doc);
            }
            ctx.load_sticky_buckets(&service);
            let result = eval_feature(&mut ctx, item(3).as_str().unwrap_or(""));
            ctx.save_sticky_buckets(&mut service);
            let actual =
                serde_json::to_value(&result.experiment_result).map_err(|e| e.to_string())?;
            expect_json(&actual, &item(4))?;
            let docs: BTreeMap<String, StickyAssignmentsDocument> = ctx
                .sticky_bucket_assignment_docs
                .clone()
                .unwrap_or_default();
            let actual_docs = serde_json::to_value(&docs).map_err(|e| e.to_string())?;
            expect_json(&actual_docs, &item(5))
        }
        "urlRedirect" => {
            let mut ctx = context_from(&item(1))?;
            let redirect = get_redirect(&mut ctx);
            let url_with_params = redirect.map(|decision| decision.url_with_params);
            let actual: Vec<Value> = ctx
                .tracking_calls()
                .iter()
                .map(|call| {
                    json!({
                        "inExperiment": call.result.in_experiment,
                        "urlRedirect": call.result.value.get("urlRedirect").cloned().unwrap_or(Value::Null),
                        "urlWithParams": url_with_params.clone().unwrap_or_default(),
                    })
                })
                .collect();
            expect_json(&json!(actual), &item(2))
        }
        other => Err(format!("no runner for section {other}")),
    }
}

#[test]
fn conformance_suite() {
    let cases = load_cases();
    let Value::Object(sections) = &cases else {
        panic!("cases file is not an object");
    };
    let unknown: Vec<&String> = sections
        .keys()
        .filter(|key| *key != "specVersion" && !SECTIONS.contains(&key.as_str()))
        .collect();
    assert!(unknown.is_empty(), "sections without a runner: {unknown:?}");

    let mut failures: BTreeSet<(String, String)> = BTreeSet::new();
    let mut report = Vec::new();
    let mut total_passed = 0;
    let mut total = 0;
    for section in SECTIONS {
        let Some(Value::Array(section_cases)) = sections.get(*section) else {
            panic!("section {section} is missing from the cases file");
        };
        let mut passed = 0;
        for (index, case) in section_cases.iter().enumerate() {
            let name = case_name(section, index, case);
            match run_case(section, case) {
                Ok(()) => passed += 1,
                Err(message) => {
                    eprintln!("FAIL {section} / {name}: {message}");
                    failures.insert(((*section).to_owned(), name));
                }
            }
        }
        total_passed += passed;
        total += section_cases.len();
        report.push(format!(
            "{section}: {passed}/{} passed",
            section_cases.len()
        ));
    }
    println!(
        "GrowthBook conformance suite (spec {}):",
        cases["specVersion"]
    );
    for line in &report {
        println!("  {line}");
    }
    println!(
        "  total: {total_passed}/{total} passed, {} excluded",
        EXCLUDED.len()
    );

    let excluded: BTreeSet<(String, String)> = EXCLUDED
        .iter()
        .map(|(section, name, _)| ((*section).to_owned(), (*name).to_owned()))
        .collect();
    let unexpected: Vec<_> = failures.difference(&excluded).collect();
    let now_passing: Vec<_> = excluded.difference(&failures).collect();
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "failing but not excluded: {unexpected:?}\nexcluded but passing (remove from EXCLUDED): {now_passing:?}"
    );
}
