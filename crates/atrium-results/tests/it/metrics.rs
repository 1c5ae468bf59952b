//! Hand-built event histories with known answers.

use atrium_results::{
    AnalysisOptions, EngineChoice, MetricDefinition, MetricRole, ResultsError, experiment_results,
};
use serde_json::json;

use crate::{HOUR, Harness, T0, exposure, metric_map, spec, track};

#[test]
fn exposures_dedupe_per_user_and_windows_start_at_first_exposure() {
    let harness = Harness::create();
    harness.ingest(&[
        // a: control, converts 1 h after exposure (counted).
        exposure("a", "exp", "0", T0 + HOUR),
        track(
            "a",
            "Order Completed",
            T0 + 2 * HOUR,
            json!({"revenue": 10.0}),
        ),
        // b: control, exposed twice; the window starts at the first exposure, so the order
        // 80 h after it is outside the 72 h conversion window.
        exposure("b", "exp", "0", T0 + HOUR),
        exposure("b", "exp", "0", T0 + 50 * HOUR),
        track(
            "b",
            "Order Completed",
            T0 + 81 * HOUR,
            json!({"revenue": 5.0}),
        ),
        // c: treatment, ordered before exposure only (not a conversion).
        track("c", "Order Completed", T0 + HOUR, json!({"revenue": 7.0})),
        exposure("c", "exp", "1", T0 + 2 * HOUR),
        // d: treatment, converts twice.
        exposure("d", "exp", "1", T0 + HOUR),
        track(
            "d",
            "Order Completed",
            T0 + 3 * HOUR,
            json!({"revenue": 20.0}),
        ),
        track(
            "d",
            "Order Completed",
            T0 + 4 * HOUR,
            json!({"revenue": 30.0}),
        ),
        // e: seen in both variations: excluded.
        exposure("e", "exp", "0", T0 + HOUR),
        exposure("e", "exp", "1", T0 + 2 * HOUR),
        track(
            "e",
            "Order Completed",
            T0 + 3 * HOUR,
            json!({"revenue": 1000.0}),
        ),
        // f: a variation the experiment does not have.
        exposure("f", "exp", "7", T0 + HOUR),
        // g: another experiment; h: exposed before the experiment started.
        exposure("g", "other", "1", T0 + HOUR),
        exposure("h", "exp", "1", T0 - HOUR),
    ]);
    let metrics = [
        (
            "purchase",
            json!({"type": "conversion", "event": "Order Completed"}),
        ),
        (
            "orders",
            json!({"type": "count", "event": "Order Completed"}),
        ),
        (
            "revenue",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue"}),
        ),
    ];
    let report = harness.results(
        &spec("exp", &["purchase", "orders", "revenue"]),
        &metrics,
        &AnalysisOptions::default(),
    );
    let users: Vec<u64> = report.variations.iter().map(|v| v.users).collect();
    assert_eq!(users, [2, 2]);
    assert_eq!(report.excluded.multiple_variations, 1);
    assert_eq!(report.excluded.unknown_variation, 1);
    let purchase = &report.metrics[0];
    assert_eq!(purchase.variations[0].total, 1.0);
    assert_eq!(purchase.variations[1].total, 1.0);
    // Count and sum metrics have no window by default: b's late order counts, c's order
    // before exposure does not.
    let orders = &report.metrics[1];
    assert_eq!(orders.variations[0].total, 2.0);
    assert_eq!(orders.variations[1].total, 2.0);
    let revenue = &report.metrics[2];
    assert_eq!(revenue.variations[0].total, 15.0);
    assert_eq!(revenue.variations[1].total, 50.0);
    assert_eq!(revenue.variations[1].mean, 25.0);
    assert_eq!(purchase.effects.len(), 1);
    assert!(purchase.effects[0].p_value.is_some());
}

#[test]
fn anonymous_exposure_meets_identified_conversion_through_the_profile() {
    let harness = Harness::create();
    harness.ingest(&[
        serde_json::json!({"type": "track", "anonymousId": "anon-1", "event": "Experiment Viewed",
            "timestamp": crate::at(T0 + HOUR),
            "properties": {"experimentId": "exp", "variationId": "1"}}),
        serde_json::json!({"type": "identify", "anonymousId": "anon-1", "userId": "u-1",
            "timestamp": crate::at(T0 + 2 * HOUR)}),
        track("u-1", "Signed Up", T0 + 3 * HOUR, json!({})),
        exposure("u-2", "exp", "0", T0 + HOUR),
    ]);
    let metrics = [(
        "signup",
        json!({"type": "conversion", "event": "Signed Up"}),
    )];
    let report = harness.results(
        &spec("exp", &["signup"]),
        &metrics,
        &AnalysisOptions::default(),
    );
    assert_eq!(report.variations[1].users, 1);
    assert_eq!(report.metrics[0].variations[1].total, 1.0);
    assert_eq!(report.metrics[0].variations[0].total, 0.0);
}

#[test]
fn filters_caps_ratios_and_covariates() {
    let harness = Harness::create();
    let mut events = Vec::new();
    for (index, (variation, spend)) in [("0", 10.0), ("0", 30.0), ("1", 40.0), ("1", 500.0)]
        .into_iter()
        .enumerate()
    {
        let user = format!("u{index}");
        // Before exposure: one purchase of `spend / 10` (the CUPED covariate).
        events.push(track(
            &user,
            "Order Completed",
            T0 + HOUR,
            json!({"revenue": spend / 10.0, "plan": "pro"}),
        ));
        events.push(exposure(&user, "exp", variation, T0 + 2 * HOUR));
        events.push(track(
            &user,
            "Order Completed",
            T0 + 3 * HOUR,
            json!({"revenue": spend, "plan": "pro"}),
        ));
        events.push(track(
            &user,
            "Order Completed",
            T0 + 4 * HOUR,
            json!({"revenue": 1.0, "plan": "basic"}),
        ));
    }
    harness.ingest(&events);
    let metrics = [
        (
            "pro_revenue",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue",
            "filters": [{"property": "properties.plan", "op": "eq", "value": "pro"}]}),
        ),
        (
            "capped",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue",
            "filters": [{"property": "revenue", "op": "gt", "value": 2}],
            "cap": {"type": "absolute", "value": 100.0}}),
        ),
        (
            "orders",
            json!({"type": "count", "event": "Order Completed"}),
        ),
        (
            "aov",
            json!({"type": "ratio", "numerator": "pro_revenue", "denominator": "orders"}),
        ),
        (
            "cuped_revenue",
            json!({"type": "sum", "event": "Order Completed", "value": "revenue",
            "covariate": {"lookback_days": 1}}),
        ),
        (
            "p50",
            json!({"type": "sum", "event": "Order Completed", "value": "properties.revenue",
            "cap": {"type": "percentile", "value": 0.5}}),
        ),
    ];
    let mut experiment = spec("exp", &["pro_revenue", "capped", "aov", "cuped_revenue"]);
    experiment.guardrail_metrics = vec!["p50".into()];
    let report = harness.results(&experiment, &metrics, &AnalysisOptions::default());
    let totals = |index: usize| -> Vec<f64> {
        report.metrics[index]
            .variations
            .iter()
            .map(|value| value.total)
            .collect()
    };
    assert_eq!(totals(0), [40.0, 540.0]);
    assert_eq!(totals(1), [40.0, 140.0]);
    assert_eq!(report.metrics[1].cap_value, Some(100.0));
    // Ratio: pro revenue over orders (2 per user after exposure).
    assert_eq!(report.metrics[2].variations[0].mean, 40.0 / 4.0);
    assert_eq!(report.metrics[2].variations[1].mean, 540.0 / 4.0);
    assert!(report.metrics[3].cuped);
    assert!(report.metrics[3].effects[0].theta.is_some());
    assert_eq!(totals(3), [42.0, 542.0]);
    // Per-user values 11, 31, 41, 501: the nearest-rank median is 31.
    assert_eq!(report.metrics[4].cap_value, Some(31.0));
    assert_eq!(report.metrics[4].role, MetricRole::Guardrail);
    assert_eq!(totals(4), [42.0, 62.0]);
}

#[test]
fn bayesian_and_dimensions() {
    let harness = Harness::create();
    let mut events = Vec::new();
    for index in 0..40 {
        let user = format!("u{index}");
        let variation = if index % 2 == 0 { "0" } else { "1" };
        let mut exposed = exposure(&user, "exp", variation, T0 + HOUR);
        exposed["context"] = json!({"locale": if index < 10 { "fr-FR" } else { "en-US" }});
        events.push(exposed);
        if index % 3 == 0 {
            events.push(track(&user, "Signed Up", T0 + 2 * HOUR, json!({})));
        }
    }
    harness.ingest(&events);
    let metrics = [(
        "signup",
        json!({"type": "conversion", "event": "Signed Up"}),
    )];
    let options = AnalysisOptions {
        engine: EngineChoice::Bayesian,
        dimension: Some("locale".into()),
        ..AnalysisOptions::default()
    };
    let report = harness.results(&spec("exp", &["signup"]), &metrics, &options);
    let effect = &report.metrics[0].effects[0];
    let chance = effect.chance_to_win.expect("bayesian");
    assert!((0.0..=1.0).contains(&chance));
    let dimension = report.dimension.as_ref().expect("breakdown");
    let values: Vec<&str> = dimension
        .slices
        .iter()
        .map(|slice| slice.value.as_str())
        .collect();
    assert_eq!(values, ["en-US", "fr-FR"]);
    assert_eq!(dimension.slices[0].users, [15, 15]);
    assert_eq!(dimension.slices[1].users, [5, 5]);
    assert!(report.to_table().contains("signup"));
}

#[test]
fn bad_settings_and_definitions_are_refused() {
    let harness = Harness::create();
    let metrics = metric_map(&[(
        "signup",
        json!({"type": "conversion", "event": "Signed Up"}),
    )]);
    let missing = experiment_results(
        &harness.warehouse,
        &spec("exp", &["nope"]),
        &metrics,
        &AnalysisOptions::default(),
    );
    assert!(
        matches!(missing, Err(ResultsError::UnknownMetric { .. })),
        "{missing:?}"
    );
    let dimension = experiment_results(
        &harness.warehouse,
        &spec("exp", &["signup"]),
        &metrics,
        &AnalysisOptions {
            dimension: Some("properties".into()),
            ..AnalysisOptions::default()
        },
    );
    assert!(matches!(dimension, Err(ResultsError::UnknownDimension(_))));

    let check = |body: serde_json::Value, path: &str| {
        let errors = MetricDefinition::parse("m", &body).expect_err("invalid");
        assert!(
            errors.iter().any(|error| error.path == path),
            "{body}: expected an error at {path}, got {errors:?}"
        );
    };
    check(
        json!({"type": "sum", "event": "Order Completed"}),
        "metric.value",
    );
    check(
        json!({"type": "sum", "event": "Order Completed", "value": "currency"}),
        "metric.value",
    );
    check(json!({"type": "conversion"}), "metric.event");
    check(
        json!({"type": "ratio", "numerator": "m", "denominator": "x"}),
        "metric.numerator",
    );
    check(
        json!({"type": "ratio", "numerator": "a", "denominator": "b", "covariate": {"lookback_days": 7}}),
        "metric.covariate",
    );
    check(
        json!({"type": "count", "event": "x", "window_hours": -1}),
        "metric.window_hours",
    );
    check(
        json!({"type": "count", "event": "x", "cap": {"type": "percentile", "value": 1.5}}),
        "metric.cap.value",
    );
    check(
        json!({"type": "conversion", "event": "x", "cap": {"type": "absolute", "value": 3}}),
        "metric.cap",
    );
    check(
        json!({"type": "count", "event": "x", "filters": [{"property": "properties.a.b", "op": "eq", "value": 1}]}),
        "metric.filters[0].property",
    );
    check(
        json!({"type": "count", "event": "x", "filters": [{"property": "category", "op": "gt", "value": 1}]}),
        "metric.filters[0].property",
    );
    check(
        json!({"type": "count", "event": "x", "filters": [{"property": "category", "op": "in", "value": []}]}),
        "metric.filters[0].value",
    );
    check(json!({"type": "count", "event": "x", "extra": 1}), "metric");
}
