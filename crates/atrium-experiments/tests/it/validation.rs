//! Definition validation: precise errors naming the JSON path.

use atrium_experiments::{
    FeatureDefinition, Payload, ValidationErrorKind, validate_condition, validate_feature,
    validate_payload,
};
use serde_json::json;

fn feature(value: serde_json::Value) -> FeatureDefinition {
    serde_json::from_value(value).expect("feature JSON")
}

#[test]
fn valid_feature_passes() {
    let definition = feature(json!({
        "defaultValue": false,
        "rules": [
            {"condition": {"country": {"$in": ["US"]}}, "force": true},
            {"variations": [false, true], "weights": [0.5, 0.5], "coverage": 1, "hashVersion": 2}
        ]
    }));
    assert_eq!(validate_feature("checkout", &definition), Ok(()));
}

#[test]
fn weights_not_summing_to_one_are_rejected_with_their_path() {
    let definition = feature(json!({
        "rules": [{"force": 1}, {"variations": [0, 1], "weights": [0.7, 0.6]}]
    }));
    let errors = validate_feature("checkout", &definition).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "features.checkout.rules[1].weights");
    assert!(matches!(
        errors[0].kind,
        ValidationErrorKind::WeightsSum { .. }
    ));
    assert!(
        errors[0]
            .to_string()
            .starts_with("features.checkout.rules[1].weights: weights must sum to 1")
    );
}

#[test]
fn coverage_outside_unit_interval_is_rejected() {
    let definition = feature(json!({"rules": [{"force": 1, "coverage": 1.5}]}));
    let errors = validate_feature("f", &definition).unwrap_err();
    assert_eq!(errors[0].path, "features.f.rules[0].coverage");
    assert_eq!(
        errors[0].kind,
        ValidationErrorKind::CoverageOutOfRange { coverage: 1.5 }
    );
}

#[test]
fn unknown_operators_are_reported_at_their_path() {
    let condition = json!({"$and": [{"name": {"$regx": "a"}}, {"age": {"$not": {"$gtx": 1}}}]});
    let errors = validate_condition(&condition, "condition").unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "condition.$and[0].name.$regx",
            "condition.$and[1].age.$not.$gtx"
        ]
    );
}

#[test]
fn invalid_regex_and_operand_types_are_reported() {
    let condition = json!({"ua": {"$regex": "(unclosed"}, "tags": {"$in": "a"}});
    let errors = validate_condition(&condition, "c").unwrap_err();
    assert!(matches!(
        errors[0].kind,
        ValidationErrorKind::InvalidRegex { .. }
    ));
    assert_eq!(errors[1].path, "c.tags.$in");
}

#[test]
fn payload_validation_covers_features_and_experiments() {
    let payload: Payload = serde_json::from_value(json!({
        "features": {"f": {"rules": [{"variations": [1], "condition": "oops"}]}},
        "experiments": [{"key": "e", "variations": [0, 1], "ranges": [[0, 0.5], [0.6, 0.4]]}]
    }))
    .unwrap();
    let errors = validate_payload(&payload).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "features.f.rules[0].condition",
            "features.f.rules[0].variations",
            "experiments[0].ranges[1]"
        ]
    );
}
