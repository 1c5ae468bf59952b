//! Bad definitions are rejected with errors that name the offending node by path.

use atrium_segments::{
    Catalog, DefinitionError, ValueType, compile_json, validate, validate_computed_trait,
};
use serde_json::{Value, json};

use crate::{definition, trait_definition};

/// Validates `condition` and expects exactly these `(path, message fragment)` errors.
fn check(condition: Value, catalog: &Catalog, expected: &[(&str, &str)]) {
    let errors = match validate(&definition(condition.clone()), catalog) {
        Ok(_) => panic!("expected errors for {condition}"),
        Err(errors) => errors,
    };
    let actual: Vec<(String, String)> = errors
        .iter()
        .map(|error| (error.path.clone(), error.message.clone()))
        .collect();
    assert_eq!(
        actual.len(),
        expected.len(),
        "errors for {condition}: {actual:#?}"
    );
    for ((path, message), (expected_path, fragment)) in actual.iter().zip(expected) {
        assert_eq!(path, expected_path, "{actual:#?}");
        assert!(
            message.contains(fragment),
            "message {message:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn unknown_fields_are_rejected_by_the_parser() {
    let text = r#"{"id": "s", "condition": {"op": "performed", "event": "A", "widow": {"kind": "all_time"}}}"#;
    let error = compile_json(text, &Catalog::default()).expect_err("unknown field");
    assert!(matches!(error, DefinitionError::Json(_)));
    assert!(
        error.to_string().contains("unknown field `widow`"),
        "{error}"
    );
    let text = r#"{"id": "s", "condition": {"op": "trait", "path": "plan", "operator": "equals", "value": 1}}"#;
    let error = compile_json(text, &Catalog::default()).expect_err("unknown operator");
    assert!(
        error.to_string().contains("unknown variant `equals`"),
        "{error}"
    );
    let text = r#"{"id": "s", "condition": {"op": "everyone"}}"#;
    assert!(compile_json(text, &Catalog::default()).is_err());
}

#[test]
fn operator_operand_types() {
    let catalog = Catalog::default();
    check(
        json!({"op": "trait", "path": "age", "operator": "gt", "value": "ten"}),
        &catalog,
        &[("/condition/value", "`gt` needs a number, got a string")],
    );
    check(
        json!({"op": "trait", "path": "age", "operator": "between", "value": [5]}),
        &catalog,
        &[("/condition/value", "two-number array")],
    );
    check(
        json!({"op": "trait", "path": "age", "operator": "between", "value": [9, 5]}),
        &catalog,
        &[("/condition/value", "low <= high")],
    );
    check(
        json!({"op": "trait", "path": "plan", "operator": "in", "value": []}),
        &catalog,
        &[("/condition/value", "non-empty array")],
    );
    check(
        json!({"op": "trait", "path": "plan", "operator": "exists", "value": 1}),
        &catalog,
        &[("/condition/value", "takes no value")],
    );
    check(
        json!({"op": "trait", "path": "signup", "operator": "within_last", "value": 3}),
        &catalog,
        &[("/condition/unit", "needs a `unit`")],
    );
    check(
        json!({"op": "trait", "path": "signup", "operator": "before", "value": "yesterday"}),
        &catalog,
        &[("/condition/value", "a time")],
    );
    check(
        json!({"op": "trait", "path": "plan", "operator": "eq", "value": "pro", "unit": "days"}),
        &catalog,
        &[("/condition/unit", "only applies")],
    );
    check(
        json!({"op": "trait", "path": "a..b", "operator": "exists"}),
        &catalog,
        &[("/condition/path", "invalid path")],
    );
    check(
        json!({"op": "trait", "path": "birthday", "operator": "anniversary", "tz": "Mars/Olympus"}),
        &catalog,
        &[("/condition/tz", "unknown time zone")],
    );
}

#[test]
fn type_mismatches_against_known_trait_types() {
    let mut catalog = Catalog::default();
    catalog
        .trait_types
        .insert("age".to_string(), ValueType::Number);
    catalog
        .trait_types
        .insert("plan".to_string(), ValueType::String);
    check(
        json!({"op": "trait", "path": "plan", "operator": "gt", "value": 3}),
        &catalog,
        &[(
            "/condition/operator",
            "`gt` does not apply to trait `plan` (type string)",
        )],
    );
    check(
        json!({"op": "trait", "path": "age", "operator": "eq", "value": "30"}),
        &catalog,
        &[(
            "/condition/value",
            "type mismatch: `age` is a number but the value is a string",
        )],
    );
    assert!(
        validate(
            &definition(json!({"op": "trait", "path": "age", "operator": "gte", "value": 30})),
            &catalog
        )
        .is_ok()
    );
}

#[test]
fn absurd_windows_and_durations() {
    let catalog = Catalog::default();
    check(
        json!({"op": "performed", "event": "A", "window": {"kind": "last", "n": 0, "unit": "days"}}),
        &catalog,
        &[("/condition/window/n", "at least 1")],
    );
    check(
        json!({"op": "performed", "event": "A", "window": {"kind": "last", "n": 1000, "unit": "days"}}),
        &catalog,
        &[("/condition/window", "maximum of 730 days")],
    );
    check(
        json!({"op": "performed", "event": "A", "window": {"kind": "between_ago", "from": 3, "to": 7, "unit": "days"}}),
        &catalog,
        &[("/condition/window", "from > to")],
    );
    check(
        json!({"op": "performed", "event": "A", "window": {"kind": "absolute", "from": "2026-02-01", "to": "2026-01-01"}}),
        &catalog,
        &[("/condition/window", "from < to")],
    );
    check(
        json!({"op": "performed", "event": "A", "cmp": {"operator": "gte", "value": -1}}),
        &catalog,
        &[("/condition/cmp/value", "never negative")],
    );
    check(
        json!({"op": "sequence", "steps": [{"event": "A"}], "within": {"n": 1, "unit": "hours"}}),
        &catalog,
        &[("/condition/steps", "2 to 8 steps")],
    );
    check(
        json!({"op": "random_bucket", "salt": "x", "from": 50, "to": 20}),
        &catalog,
        &[("/condition", "0 <= from < to <= 100")],
    );
}

#[test]
fn relative_time_is_rejected_on_event_properties() {
    check(
        json!({"op": "all", "of": [{"op": "performed", "event": "A", "where": [{"path": "at", "operator": "within_last", "value": 3, "unit": "days"}]}]}),
        &Catalog::default(),
        &[(
            "/condition/of/0/where/0/operator",
            "not allowed on event properties",
        )],
    );
}

#[test]
fn costly_and_invalid_regexes() {
    let catalog = Catalog::default();
    check(
        json!({"op": "trait", "path": "email", "operator": "regex", "value": "(a{100}){100}"}),
        &catalog,
        &[("/condition/value", "too costly")],
    );
    check(
        json!({"op": "trait", "path": "email", "operator": "regex", "value": "(unclosed"}),
        &catalog,
        &[("/condition/value", "invalid regex")],
    );
    check(
        json!({"op": "trait", "path": "email", "operator": "regex", "value": "a".repeat(2000)}),
        &catalog,
        &[("/condition/value", "the limit is 1000")],
    );
    assert!(validate(&definition(json!({"op": "trait", "path": "email", "operator": "regex", "value": "@example\\.com$"})), &catalog).is_ok());
}

#[test]
fn segment_references_unknown_and_cyclic() {
    let mut catalog = Catalog::default();
    check(
        json!({"op": "in_segment", "id": "nope"}),
        &catalog,
        &[("/condition/id", "unknown segment \"nope\"")],
    );
    let mut a = definition(json!({"op": "in_segment", "id": "b"}));
    a.id = "a".to_string();
    let mut b = definition(json!({"op": "any", "of": [{"op": "in_segment", "id": "a"}]}));
    b.id = "b".to_string();
    catalog.segments.insert("a".to_string(), a.clone());
    catalog.segments.insert("b".to_string(), b);
    let errors = validate(&a, &catalog).expect_err("cycle");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "/condition/(segment b)/condition/of/0/id");
    assert_eq!(errors[0].message, "segment reference cycle: a -> b -> a");
    let mut itself = definition(json!({"op": "not", "of": {"op": "in_segment", "id": "test"}}));
    itself.id = "test".to_string();
    let errors = validate(&itself, &Catalog::default()).expect_err("self reference");
    assert_eq!(errors[0].message, "segment reference cycle: test -> test");
}

#[test]
fn computed_trait_references_and_definitions() {
    let mut catalog = Catalog::default();
    check(
        json!({"op": "computed_trait", "id": "ltv", "operator": "gte", "value": 100}),
        &catalog,
        &[("/condition/id", "unknown computed trait")],
    );
    catalog.computed_traits.insert(
        "ltv".to_string(),
        trait_definition(json!({"id": "ltv", "kind": "lifetime_value"})),
    );
    check(
        json!({"op": "computed_trait", "id": "ltv", "operator": "starts_with", "value": "1"}),
        &catalog,
        &[(
            "/condition/operator",
            "does not apply to computed trait `ltv` (type number)",
        )],
    );
    check(
        json!({"op": "computed_trait", "id": "ltv", "operator": "within_last", "value": 1}),
        &catalog,
        &[("/condition/operator", "not allowed on computed traits")],
    );

    let errors = validate_computed_trait(&trait_definition(
        json!({"id": "x", "kind": "aggregation", "event": "A"}),
    ))
    .expect_err("invalid");
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "/property: `aggregation` needs a `property`",
            "/function: `aggregation` needs a `function` (sum, avg, min, max)"
        ]
    );
    let errors = validate_computed_trait(&trait_definition(
        json!({"id": "x", "kind": "event_counter"}),
    ))
    .expect_err("no event");
    assert_eq!(
        errors[0].to_string(),
        "/event: `event_counter` needs an `event`"
    );
    let errors = validate_computed_trait(&trait_definition(json!({"id": "x", "kind": "rfm", "rfm": {"recency_days": [30, 7, 90, 180], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]}}))).expect_err("order");
    assert_eq!(
        errors[0].to_string(),
        "/rfm/recency_days: thresholds must be finite and strictly ascending"
    );
}

#[test]
fn rfm_thresholds_are_fixed_or_population_quintiles() {
    let messages = |definition: Value| -> Vec<String> {
        match validate_computed_trait(&trait_definition(definition)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    };
    // Quintiles before and after their computation; ties are allowed.
    assert!(messages(json!({"id": "x", "kind": "rfm", "rfm": {"quintiles": true}})).is_empty());
    assert!(
        messages(json!({"id": "x", "kind": "rfm", "rfm": {"quintiles": true,
            "recency_days": [3, 3, 10, 40], "frequency": [1, 1, 1, 2], "monetary": [20, 35.5, 80, 80],
            "computed": {"at": "2026-01-01T00:00:00.000Z", "population": 25, "as_of_offset": 99}}}))
        .is_empty()
    );
    assert_eq!(
        messages(json!({"id": "x", "kind": "rfm", "rfm": {}})),
        [
            "/rfm/recency_days: fixed rfm thresholds need four `recency_days` cut points (or set `\"quintiles\": true` to use the population's quintiles)",
            "/rfm/frequency: fixed rfm thresholds need four `frequency` cut points (or set `\"quintiles\": true` to use the population's quintiles)",
            "/rfm/monetary: fixed rfm thresholds need four `monetary` cut points (or set `\"quintiles\": true` to use the population's quintiles)",
        ]
    );
    assert_eq!(
        messages(
            json!({"id": "x", "kind": "rfm", "rfm": {"quintiles": true, "frequency": [1, 2, 1, 3]}})
        ),
        [
            "/rfm/recency_days: quintile cut points come as a set: give `recency_days`, `frequency` and `monetary`, or none (the recompute writes them)",
            "/rfm/frequency: quintile cut points must be finite and ascending (ties allowed)",
            "/rfm/monetary: quintile cut points come as a set: give `recency_days`, `frequency` and `monetary`, or none (the recompute writes them)",
        ]
    );
    assert_eq!(
        messages(
            json!({"id": "x", "kind": "rfm", "rfm": {"recency_days": [1, 2, 3, 4], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4],
            "computed": {"at": "2026-01-01T00:00:00.000Z", "population": 25, "as_of_offset": 99}}})
        ),
        ["/rfm/computed: `computed` describes a quintile computation; fixed thresholds have none"]
    );
    // Fixed thresholds still need strictly ascending cut points.
    assert_eq!(
        messages(
            json!({"id": "x", "kind": "rfm", "rfm": {"recency_days": [1, 1, 3, 4], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]}})
        ),
        ["/rfm/recency_days: thresholds must be finite and strictly ascending"]
    );
    assert_eq!(
        messages(json!({"id": "x", "kind": "lifetime_value", "rfm": {"quintiles": true}})),
        ["/rfm: `rfm` thresholds only apply to kind `rfm`, not `lifetime_value`"]
    );
    assert!(
        serde_json::from_value::<atrium_segments::ComputedTraitDefinition>(
            json!({"id": "x", "kind": "rfm", "rfm": {"quintile": true}})
        )
        .is_err(),
        "a misspelt field is refused"
    );
}

#[test]
fn errors_are_collected_across_the_tree() {
    check(
        json!({"op": "all", "of": [
            {"op": "trait", "path": "age", "operator": "gt", "value": "x"},
            {"op": "any", "of": [{"op": "performed", "event": "", "window": {"kind": "last", "n": 5, "unit": "weeks"}}]},
            {"op": "consent", "purpose": "a.b", "state": "granted"}
        ]}),
        &Catalog::default(),
        &[
            ("/condition/of/0/value", "needs a number"),
            ("/condition/of/1/of/0/event", "event name must not be empty"),
            ("/condition/of/2/purpose", "must not contain"),
        ],
    );
}

#[test]
fn nesting_depth_is_bounded() {
    let mut condition = json!({"op": "trait", "path": "x", "operator": "exists"});
    for _ in 0..20 {
        condition = json!({"op": "not", "of": condition});
    }
    let errors = validate(&definition(condition), &Catalog::default()).expect_err("too deep");
    assert!(errors[0].message.contains("deeper than 16"), "{errors:?}");
}
