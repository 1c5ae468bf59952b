//! Identifier extraction.

use std::collections::BTreeMap;

use atrium_identity::{CompiledRules, IdentityRules, extract_identifiers};
use serde_json::{Value, json};

fn ids(event: Value) -> Vec<String> {
    ids_with(&CompiledRules::default(), event)
}

fn ids_with(rules: &CompiledRules, event: Value) -> Vec<String> {
    extract_identifiers(&event, rules)
        .identifiers
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn user_and_anonymous_ids_numbers_become_strings() {
    assert_eq!(
        ids(json!({"type": "track", "userId": 123, "anonymousId": " a1 "})),
        ["user_id:123", "anonymous_id:a1"]
    );
}

#[test]
fn email_only_from_identify_traits_and_context_traits() {
    assert_eq!(
        ids(json!({"type": "identify", "traits": {"email": " Ann@Example.COM "}})),
        ["email:ann@example.com"]
    );
    assert_eq!(
        ids(json!({"type": "track", "context": {"traits": {"email": "b@x.com"}}})),
        ["email:b@x.com"]
    );
    // Group traits describe the group; properties are not identifiers.
    assert!(ids(json!({"type": "group", "traits": {"email": "g@x.com"}})).is_empty());
    assert!(ids(json!({"type": "track", "properties": {"email": "p@x.com"}})).is_empty());
    assert!(ids(json!({"type": "identify", "traits": {"email": "no-at-sign"}})).is_empty());
}

#[test]
fn phone_normalized() {
    assert_eq!(
        ids(json!({"type": "identify", "traits": {"phone": "+1 (415) 555-0100"}})),
        ["phone:+14155550100"]
    );
    assert_eq!(
        ids(json!({"type": "identify", "context": {"traits": {"phone": "0041 44 668 18 00"}}})),
        ["phone:+41446681800"]
    );
    assert!(ids(json!({"type": "identify", "traits": {"phone": "12-34"}})).is_empty());
}

#[test]
fn device_identifiers_by_platform() {
    let event = |kind: &str, tracking: Value| {
        json!({"type": "track", "context": {"device": {
            "id": "dev-1", "type": kind, "advertisingId": "ad-1",
            "adTrackingEnabled": tracking, "token": "tok-1"
        }}})
    };
    assert_eq!(
        ids(event("iOS", json!(true))),
        ["ios.id:dev-1", "ios.idfa:ad-1", "ios.push_token:tok-1"]
    );
    assert_eq!(
        ids(event("android", Value::Null)),
        [
            "android.id:dev-1",
            "android.idfa:ad-1",
            "android.push_token:tok-1"
        ]
    );
    assert_eq!(
        ids(event("ios", json!(false))),
        ["ios.id:dev-1", "ios.push_token:tok-1"],
        "no advertising id when tracking is disabled"
    );
    assert_eq!(
        ids(event("tvos", json!(true))),
        ["advertising_id:ad-1", "device_id:dev-1", "push_token:tok-1"]
    );
    // The all-zero IDFA is blocked.
    let zero = json!({"type": "track", "context": {"device": {
        "type": "ios", "advertisingId": "00000000-0000-0000-0000-000000000000"}}});
    let out = extract_identifiers(&zero, &CompiledRules::default());
    assert!(out.identifiers.is_empty());
    assert_eq!(
        out.blocked[0].to_string(),
        "ios.idfa:00000000-0000-0000-0000-000000000000"
    );
}

#[test]
fn external_ids_from_the_users_collection() {
    let event = json!({"type": "track", "context": {"externalIds": [
        {"id": "GA1.2.3", "type": "ga_client_id", "collection": "users", "encoding": "none"},
        {"id": 42, "type": "crm_id"},
        {"id": "acct-1", "type": "account_id", "collection": "accounts"},
        {"id": "x", "type": ""},
    ]}});
    assert_eq!(ids(event), ["crm_id:42", "ga_client_id:GA1.2.3"]);
}

#[test]
fn custom_traits_in_both_spellings() {
    let rules = IdentityRules {
        custom_traits: BTreeMap::from([("loyalty_number".into(), "loyalty_id".into())]),
        ..IdentityRules::default()
    }
    .compile()
    .unwrap();
    assert_eq!(
        ids_with(
            &rules,
            json!({"type": "identify", "traits": {"loyaltyNumber": "L-1"}})
        ),
        ["loyalty_id:L-1"]
    );
    assert_eq!(
        ids_with(
            &rules,
            json!({"type": "page", "context": {"traits": {"loyalty_number": 77}}})
        ),
        ["loyalty_id:77"]
    );
}

#[test]
fn blocked_values_are_reported_not_used() {
    let out = extract_identifiers(
        &json!({"type": "identify", "userId": "Anonymous", "anonymousId": "0000",
                "traits": {"email": "null@x.com"}}),
        &CompiledRules::default(),
    );
    let ids: Vec<String> = out.identifiers.iter().map(ToString::to_string).collect();
    let blocked: Vec<String> = out.blocked.iter().map(ToString::to_string).collect();
    assert_eq!(ids, ["email:null@x.com"]);
    assert_eq!(blocked, ["user_id:Anonymous", "anonymous_id:0000"]);
}

#[test]
fn long_values_ignored_duplicates_collapse_order_is_priority() {
    let long = "x".repeat(257);
    let event = json!({"type": "identify", "userId": long, "anonymousId": "a1",
        "traits": {"email": "E@x.com", "phone": "5550100123"},
        "context": {"traits": {"email": "e@x.com"}, "device": {"id": "d1"},
                    "externalIds": [{"id": "a1", "type": "anonymous_id"}]}});
    assert_eq!(
        ids(event),
        [
            "email:e@x.com",
            "phone:5550100123",
            "anonymous_id:a1",
            "device_id:d1"
        ]
    );
}

#[test]
fn alias_previous_id_without_store_is_an_anonymous_id() {
    assert_eq!(
        ids(json!({"type": "alias", "userId": "u1", "previousId": "a1"})),
        ["user_id:u1", "anonymous_id:a1"]
    );
    // previousId on other event types means nothing.
    assert_eq!(
        ids(json!({"type": "track", "previousId": "a1"})),
        Vec::<String>::new()
    );
}
