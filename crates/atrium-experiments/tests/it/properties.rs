//! Property tests: untrusted conditions, attributes and payloads never panic, and the logical
//! operators keep their algebra.

use std::collections::HashMap;

use atrium_experiments::{
    Context, FeatureDefinition, KNOWN_OPERATORS, Payload, SavedGroups, decrypt, eval_condition,
    eval_feature, get_query_string_override, validate_condition,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys for random conditions: the logical operators, every operator the evaluator knows, an
/// unknown operator, and attribute paths.
fn keys() -> Vec<&'static str> {
    let mut keys = vec!["$and", "$or", "$nor"];
    keys.extend_from_slice(KNOWN_OPERATORS);
    keys.extend_from_slice(&[
        "$bogus",
        "a",
        "b",
        "a.b",
        "tags",
        "tags.0",
        "tags.length",
        "version",
        "",
    ]);
    keys
}

const STRINGS: &[&str] = &[
    "",
    "a",
    "A",
    "1.2.3",
    "v1.0.0-beta.1+x",
    "10",
    "(",
    "[a-z]+",
    "^a",
    "😀",
    "null",
    "g1",
    "string",
    "array",
    "-0",
    "0x1f",
    " 8 ",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..20).prop_map(Value::from),
        (-1e3f64..1e3).prop_map(|n| json!(n)),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys()), inner), 0..5).prop_map(
                |entries| {
                    let map: Map<String, Value> = entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect();
                    Value::Object(map)
                }
            ),
        ]
    })
}

fn object(entries: Vec<(&'static str, Value)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn saved_groups() -> SavedGroups {
    HashMap::from([("g1".to_owned(), vec![json!(1), json!("a")])])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_conditions_never_panic(condition in json_value(), attributes in json_value()) {
        let _ = eval_condition(&attributes, &condition, &saved_groups());
        let _ = validate_condition(&condition, "condition");
    }

    #[test]
    fn not_negates_object_conditions(
        entries in prop::collection::vec((prop::sample::select(keys()), json_value()), 0..4),
        attributes in json_value(),
    ) {
        let condition = object(entries);
        let groups = saved_groups();
        let plain = eval_condition(&attributes, &condition, &groups);
        let negated = eval_condition(&attributes, &json!({ "$not": condition.clone() }), &groups);
        prop_assert_eq!(negated, !plain);
        let wrapped = eval_condition(&attributes, &json!({ "$and": [condition.clone()] }), &groups);
        prop_assert_eq!(wrapped, plain);
        let nor = eval_condition(&attributes, &json!({ "$nor": [condition] }), &groups);
        prop_assert_eq!(nor, !plain);
    }

    #[test]
    fn random_features_never_panic(rule in json_value(), attributes in json_value(), url in ".{0,40}") {
        let feature = json!({ "defaultValue": 1, "rules": [rule] });
        if let Ok(definition) = serde_json::from_value::<FeatureDefinition>(feature) {
            let mut payload = Payload::default();
            payload.features.insert("f".to_owned(), definition);
            let mut ctx = Context::new(std::sync::Arc::new(payload), attributes);
            ctx.url = url;
            let _ = eval_feature(&mut ctx, "f");
        }
    }

    #[test]
    fn random_strings_never_panic_in_parsers(text in ".{0,60}", key in ".{0,20}") {
        let _ = decrypt(&text, &key);
        let _ = get_query_string_override(&key, &text, 3);
    }
}
