//! Bad requests get messages that name the field.

use serde_json::json;

use crate::{Harness, fails};

fn check(kind: &str, request: serde_json::Value, expected: &str) {
    let harness = Harness::create();
    let message = fails(&harness, kind, request.clone());
    assert!(
        message.contains(expected),
        "{request}: expected {expected:?} in {message:?}"
    );
}

#[test]
fn bad_requests_name_what_is_wrong() {
    let range = |extra: serde_json::Value| {
        let mut request = json!({"from": "2026-03-01", "to": "2026-04-01"});
        for (key, value) in extra.as_object().unwrap() {
            request[key] = value.clone();
        }
        request
    };
    check(
        "kpis",
        range(json!({"colour": 1})),
        "unknown field `colour`",
    );
    check(
        "kpis",
        range(json!({"time_zone": "Mars/Olympus"})),
        "time_zone: unknown IANA time zone",
    );
    check(
        "kpis",
        json!({"from": "2026-04-01", "to": "2026-03-01"}),
        "to: must be after from",
    );
    check(
        "kpis",
        json!({"from": "yesterday", "to": "2026-03-01"}),
        "from: \"yesterday\" is neither",
    );
    check(
        "kpis",
        range(json!({"breakdown": "colour"})),
        "breakdown: unknown field \"colour\"",
    );
    check(
        "kpis",
        range(json!({"metrics": []})),
        "metrics: name at least one metric",
    );
    check(
        "kpis",
        range(json!({"filters": [{"field": "properties.price", "op": "gt", "value": "ten"}]})),
        "filters[0].value: gt, gte, lt and lte compare numbers",
    );
    check(
        "kpis",
        range(json!({"filters": [{"field": "channel", "op": "gt", "value": 1}]})),
        "filters[0].op: channel is a text column",
    );
    check(
        "kpis",
        range(json!({"filters": [{"field": "properties.", "op": "exists"}]})),
        "filters[0].field: \"properties.\" has an empty path segment",
    );
    let steps = json!([{"event": "A"}, {"event": "B"}]);
    check(
        "funnel",
        range(json!({"steps": steps, "window": {"value": 400, "unit": "day"}})),
        "window: must be at most 365 days",
    );
    check(
        "funnel",
        range(
            json!({"steps": [{"event": "A"}, {"event": " "}], "window": {"value": 1, "unit": "day"}}),
        ),
        "steps[1].event: must not be empty",
    );
    check(
        "funnel",
        range(
            json!({"steps": [{"event": "A"}, {"event": "$click"}], "window": {"value": 1, "unit": "day"}}),
        ),
        "steps[1].event: \"$click\"",
    );
    check(
        "funnel",
        range(
            json!({"steps": [{"event": "A", "filters": [{"field": "traits.plan", "op": "exists"}]}, {"event": "B"}], "window": {"value": 1, "unit": "day"}}),
        ),
        "steps[0].filters[0].field: trait filters apply to the whole request",
    );
    check(
        "retention",
        range(json!({"granularity": "total", "start": {"event": "A"}, "periods": 3})),
        "granularity: retention needs periods",
    );
    check(
        "retention",
        range(json!({"granularity": "week", "start": {"event": "A"}, "periods": 0})),
        "periods: must be between 1 and 400",
    );
    check(
        "attribution",
        range(json!({"models": ["last_click"]})),
        "unknown variant `last_click`",
    );
    check(
        "attribution",
        range(json!({"lookback": {"value": 0, "unit": "day"}})),
        "lookback: must be at least 1 second",
    );
    check(
        "paths",
        range(json!({"anchor": {"event": "A"}, "depth": 6})),
        "depth: must be between 1 and 5",
    );
    check(
        "kpis",
        json!({"from": "2016-01-01", "to": "2026-04-01"}),
        "to: the range may span at most 3660 days",
    );
}
