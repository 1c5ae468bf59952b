//! Public API behaviour beyond the conformance suite: sticky bucket round trips, tracking
//! deduplication, overrides and payload serde.

use std::sync::Arc;

use atrium_experiments::{
    CompiledPayload, Context, FeatureSource, InMemoryStickyBucketService, Payload, eval_feature,
};
use serde_json::json;

fn payload() -> Arc<Payload> {
    let payload: Payload = serde_json::from_value(json!({
        "features": {
            "button": {
                "defaultValue": "grey",
                "rules": [{
                    "key": "button-test", "variations": ["red", "blue"],
                    "meta": [{"key": "r"}, {"key": "b"}], "hashVersion": 2
                }]
            }
        },
        "savedGroups": {"staff": ["u1"]}
    }))
    .unwrap();
    Arc::new(payload)
}

#[test]
fn payload_round_trips_through_serde() {
    let payload = payload();
    let text = serde_json::to_string(&*payload).unwrap();
    let back: Payload = serde_json::from_str(&text).unwrap();
    assert_eq!(back, *payload);
}

#[test]
fn exposures_are_recorded_once_per_user_and_variation() {
    let mut ctx = Context::new(payload(), json!({"id": "u1"}));
    let first = eval_feature(&mut ctx, "button");
    let second = eval_feature(&mut ctx, "button");
    assert_eq!(first, second);
    assert_eq!(first.source, FeatureSource::Experiment);
    assert_eq!(ctx.tracking_calls().len(), 1);
    let calls = ctx.take_tracking_calls();
    assert_eq!(calls[0].experiment.key, "button-test");
    assert!(ctx.tracking_calls().is_empty());
}

#[test]
fn forced_features_override_rules() {
    let mut ctx = Context::new(payload(), json!({"id": "u1"}));
    ctx.forced_features.insert("button".into(), json!("green"));
    let result = eval_feature(&mut ctx, "button");
    assert_eq!(result.source, FeatureSource::Override);
    assert_eq!(result.value, json!("green"));
}

#[test]
fn sticky_assignment_survives_a_weight_change() {
    let mut service = InMemoryStickyBucketService::new();
    let mut ctx = Context::new(payload(), json!({"id": "u1"}));
    ctx.load_sticky_buckets(&service);
    let first = eval_feature(&mut ctx, "button");
    ctx.save_sticky_buckets(&mut service);
    assert_eq!(service.docs().len(), 1);

    // Move all traffic to the other variation: the stored bucket still wins.
    let mut changed = (*payload()).clone();
    let other = if first.value == json!("red") {
        [0.0, 1.0]
    } else {
        [1.0, 0.0]
    };
    changed.features.get_mut("button").unwrap().rules[0].weights = Some(other.to_vec());
    let mut ctx = Context::new(Arc::new(changed), json!({"id": "u1"}));
    ctx.load_sticky_buckets(&service);
    let second = eval_feature(&mut ctx, "button");
    assert_eq!(second.value, first.value);
    assert!(second.experiment_result.unwrap().sticky_bucket_used);
    assert!(ctx.changed_sticky_bucket_docs().is_empty());
}

fn simple(pattern: &str, include: bool) -> atrium_experiments::UrlTarget {
    atrium_experiments::UrlTarget {
        include: Some(include),
        kind: atrium_experiments::UrlTargetType::Simple,
        pattern: pattern.to_owned(),
    }
}

#[test]
fn simple_url_targets_match_like_the_browser_sdk() {
    use atrium_experiments::is_url_targeted;
    let url = "https://www.example.com/pricing/?plan=pro#top";
    assert!(is_url_targeted(url, &[simple("/pricing", true)]));
    assert!(is_url_targeted(
        url,
        &[simple("https://*.example.com/*", true)]
    ));
    assert!(is_url_targeted(
        url,
        &[simple("www.example.com/pricing?plan=pro", true)]
    ));
    assert!(!is_url_targeted(
        url,
        &[simple("www.example.com/pricing?plan=free", true)]
    ));
    assert!(!is_url_targeted(
        url,
        &[simple("/pricing", true), simple("*#top", false)]
    ));
    assert!(is_url_targeted(url, &[simple("/other", false)]));
    assert!(!is_url_targeted(url, &[]));
}

#[test]
fn regex_url_targets_match_href_or_path() {
    use atrium_experiments::{UrlTarget, UrlTargetType, is_url_targeted};
    let target = |pattern: &str| UrlTarget {
        include: None,
        kind: UrlTargetType::Regex,
        pattern: pattern.to_owned(),
    };
    assert!(is_url_targeted(
        "https://a.com/checkout/1",
        &[target("^/checkout/\\d+$")]
    ));
    assert!(is_url_targeted(
        "https://a.com/checkout/1",
        &[target("a\\.com")]
    ));
    assert!(!is_url_targeted(
        "https://a.com/cart",
        &[target("(unclosed")]
    ));
}

#[test]
fn merge_query_strings_keeps_redirect_params() {
    use atrium_experiments::merge_query_strings;
    assert_eq!(
        merge_query_strings("https://a.com/x?a=1&b=2", "https://b.com/y?b=3"),
        "https://b.com/y?b=3&a=1"
    );
    assert_eq!(merge_query_strings("not a url", "/relative"), "/relative");
}

#[test]
fn shared_evaluation_matches_the_owned_results_and_exposures() {
    let compiled = Arc::new(CompiledPayload::new(payload()));
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        let attributes = json!({"id": user});
        let mut owned = Context::with_compiled(compiled.clone(), attributes.clone());
        let mut shared = Context::with_compiled(compiled.clone(), attributes);
        for key in ["button", "missing"] {
            let expected = eval_feature(&mut owned, key);
            let evaluation = compiled.evaluate(&mut shared, key);
            assert_eq!(*evaluation.value, expected.value);
            assert_eq!(evaluation.into_feature_result(), expected);
        }
        let calls = owned.take_tracking_calls();
        assert_eq!(shared.tracking_calls(), calls.as_slice());
        let exposures: Vec<_> = shared
            .take_exposures()
            .into_iter()
            .map(|exposure| exposure.into_tracking_call())
            .collect();
        assert_eq!(exposures, calls);
        assert!(shared.tracking_calls().is_empty());
        // Deduplication memory survives taking the exposures.
        eval_feature(&mut shared, "button");
        assert!(shared.exposures().is_empty());
    }
}
