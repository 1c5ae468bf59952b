//! A small shop whose answers are worked out by hand in the comments.
//!
//! - P1: anonymous `a1` lands from google, views shoes, adds, logs in as `u1` (merge), orders
//!   100 on 03-01, gets 40 refunded on 03-05; trait plan=pro.
//! - P2: anonymous `a2` lands from the newsletter on 03-02, views hats, a page, adds; a google
//!   touch on 03-05; orders 50 exactly 7 days after the view.
//! - P3: `u3` views shoes, adds, orders 30 seven days and 1 ms after the view; a google touch
//!   on 01-01, outside the 30-day lookback.
//! - P4: anonymous `a4`, one page.
//! - P5: `u5` ordered 10 in February; orders 20 at 03-04 23:30 UTC (03-05 00:30 in Berlin).
//! - P6: `u6` page at 03-28 23:30 UTC (03-29 00:30 Berlin, CET) and order 5 at 03-29 22:30 UTC
//!   (03-30 00:30 Berlin, CEST: the day after the DST change).
//! - P7: `u7` views on 03-25, a page on 03-26.

use serde_json::{Value, json};

use crate::{Harness, run};

fn event(kind: &str, who: (&str, &str), name: Option<&str>, at: &str, extra: Value) -> Value {
    let mut event = json!({"type": kind, "timestamp": at});
    let (key, id) = who;
    event[key] = json!(id);
    if let Some(name) = name {
        event["event"] = json!(name);
    }
    if let Value::Object(fields) = extra {
        for (key, value) in fields {
            event[key] = value;
        }
    }
    event
}

fn anon(id: &str) -> (&str, &str) {
    ("anonymousId", id)
}

fn user(id: &str) -> (&str, &str) {
    ("userId", id)
}

fn campaign(source: &str, medium: &str, name: &str) -> Value {
    json!({"context": {"campaign": {"source": source, "medium": medium, "name": name}}})
}

fn props(properties: Value) -> Value {
    json!({ "properties": properties })
}

pub fn shop() -> Harness {
    let harness = Harness::create();
    let first = vec![
        event(
            "page",
            anon("a1"),
            None,
            "2026-03-01T09:00:00Z",
            campaign("google", "cpc", "spring"),
        ),
        event(
            "track",
            anon("a1"),
            Some("Product Viewed"),
            "2026-03-01T09:01:00Z",
            props(json!({"category": "shoes"})),
        ),
        event(
            "track",
            anon("a1"),
            Some("Product Added"),
            "2026-03-01T09:05:00Z",
            json!({}),
        ),
        json!({"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"plan": "pro"}, "timestamp": "2026-03-01T09:10:00Z"}),
        event(
            "track",
            user("u1"),
            Some("Order Completed"),
            "2026-03-01T09:20:00Z",
            props(json!({"order_id": "o1", "revenue": 100})),
        ),
        event(
            "page",
            anon("a2"),
            None,
            "2026-03-02T10:00:00Z",
            campaign("newsletter", "email", "march"),
        ),
        event(
            "track",
            anon("a2"),
            Some("Product Viewed"),
            "2026-03-02T10:01:00Z",
            props(json!({"category": "hats"})),
        ),
        event("page", anon("a2"), None, "2026-03-02T10:02:00Z", json!({})),
        event(
            "track",
            anon("a2"),
            Some("Product Added"),
            "2026-03-02T10:03:00Z",
            json!({}),
        ),
        event(
            "track",
            user("u3"),
            Some("Product Viewed"),
            "2026-03-03T08:00:00Z",
            props(json!({"category": "shoes"})),
        ),
        event(
            "track",
            user("u3"),
            Some("Product Added"),
            "2026-03-03T08:30:00Z",
            json!({}),
        ),
        event(
            "page",
            user("u3"),
            None,
            "2026-01-01T08:00:00Z",
            campaign("google", "cpc", "winter"),
        ),
        event(
            "track",
            user("u5"),
            Some("Order Completed"),
            "2026-02-20T12:00:00Z",
            props(json!({"order_id": "o5a", "revenue": 10})),
        ),
    ];
    harness.ingest(&first);
    harness.flush();
    let second = vec![
        event(
            "track",
            user("u5"),
            Some("Order Completed"),
            "2026-03-04T23:30:00Z",
            props(json!({"order_id": "o5b", "revenue": 20})),
        ),
        event(
            "page",
            anon("a2"),
            None,
            "2026-03-05T10:00:00Z",
            campaign("google", "cpc", "spring"),
        ),
        event(
            "track",
            user("u1"),
            Some("Order Refunded"),
            "2026-03-05T12:00:00Z",
            props(json!({"order_id": "o1", "revenue": 40})),
        ),
        event("page", anon("a4"), None, "2026-03-06T10:00:00Z", json!({})),
        event(
            "track",
            anon("a2"),
            Some("Order Completed"),
            "2026-03-09T10:01:00Z",
            props(json!({"order_id": "o2", "revenue": 50})),
        ),
        event(
            "track",
            user("u3"),
            Some("Order Completed"),
            "2026-03-10T08:00:00.001Z",
            props(json!({"order_id": "o3", "revenue": 30})),
        ),
        event(
            "track",
            user("u7"),
            Some("Product Viewed"),
            "2026-03-25T12:00:00Z",
            json!({}),
        ),
        event("page", user("u7"), None, "2026-03-26T12:00:00Z", json!({})),
        event("page", user("u6"), None, "2026-03-28T23:30:00Z", json!({})),
        event(
            "track",
            user("u6"),
            Some("Order Completed"),
            "2026-03-29T22:30:00Z",
            props(json!({"order_id": "o6", "revenue": 5})),
        ),
    ];
    harness.ingest(&second);
    harness
}

fn funnel_request(order: &str) -> Value {
    json!({
        "from": "2026-03-01", "to": "2026-04-01",
        "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}],
        "window": {"value": 7, "unit": "day"},
        "order": order,
    })
}

fn step_counts(row: &Value) -> Vec<u64> {
    row["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["profiles"].as_u64().unwrap())
        .collect()
}

#[test]
fn funnel_loose_counts_merged_profiles_once_and_includes_the_window_edge() {
    let harness = shop();
    let answer = run(&harness, "funnel", funnel_request("loose"));
    let total = &answer["totals"][0];
    // P1, P2 convert (P2 exactly at 7 days); P3's order is 1 ms too late; P7 only views.
    assert_eq!(step_counts(total), vec![4, 3, 2], "{answer}");
    let steps = total["steps"].as_array().unwrap();
    assert_eq!(steps[1]["drop_off"], 1);
    assert_eq!(steps[2]["drop_off"], 1);
    assert_eq!(steps[1]["median_seconds_from_previous"], 240.0);
    assert_eq!(
        steps[2]["median_seconds_from_previous"],
        (900.0 + 604_680.0) / 2.0
    );
    let rate = steps[2]["conversion_from_previous"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn funnel_strict_needs_each_step_to_be_the_next_event() {
    let harness = shop();
    let answer = run(&harness, "funnel", funnel_request("strict"));
    // P1: identify between add and order; P2: a page between view and add.
    assert_eq!(step_counts(&answer["totals"][0]), vec![4, 2, 0], "{answer}");
}

#[test]
fn funnel_breakdown_and_step_filters_read_properties() {
    let harness = shop();
    let mut request = funnel_request("loose");
    request["breakdown"] = json!("properties.category");
    let answer = run(&harness, "funnel", request);
    let totals = answer["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 3, "{answer}");
    assert_eq!(totals[0]["group"], Value::Null, "P7's view has no category");
    assert_eq!(step_counts(&totals[0]), vec![1, 0, 0]);
    assert_eq!(totals[1]["group"], "hats");
    assert_eq!(step_counts(&totals[1]), vec![1, 1, 1]);
    assert_eq!(totals[2]["group"], "shoes");
    assert_eq!(step_counts(&totals[2]), vec![2, 2, 1]);

    let mut request = funnel_request("loose");
    request["steps"][0]["filters"] =
        json!([{"field": "properties.category", "op": "eq", "value": "shoes"}]);
    let answer = run(&harness, "funnel", request);
    assert_eq!(step_counts(&answer["totals"][0]), vec![2, 2, 1]);
}

fn kpi_row<'a>(rows: &'a Value, bucket: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row["bucket"] == bucket)
        .unwrap_or_else(|| panic!("no bucket {bucket} in {rows}"))
}

#[test]
fn kpis_bucket_by_local_day_across_dst() {
    let harness = shop();
    let answer = run(
        &harness,
        "kpis",
        json!({"from": "2026-03-01", "to": "2026-04-01", "time_zone": "Europe/Berlin", "granularity": "day"}),
    );
    let total = &answer["totals"][0];
    assert_eq!(total["orders"], 5, "{answer}");
    assert_eq!(total["revenue"], 205.0);
    assert_eq!(total["aov"], 41.0);
    assert_eq!(total["visitors"], 7, "a1 and u1 are one visitor");
    assert_eq!(total["purchasers"], 5);
    assert_eq!(total["new_customers"], 4, "u5 ordered in February");
    assert_eq!(total["returning_customers"], 1);
    assert_eq!(total["refunds"], 1);
    assert_eq!(total["refunded_revenue"], 40.0);
    let rows = &answer["rows"];
    // u5's 23:30 UTC order is on the 5th in Berlin, with P1's refund.
    let fifth = kpi_row(rows, "2026-03-05");
    assert_eq!(fifth["orders"], 1);
    assert_eq!(fifth["revenue"], 20.0);
    assert_eq!(fifth["visitors"], 3, "u5, u1 and a2's google page");
    assert_eq!(fifth["returning_customers"], 1);
    assert_eq!(fifth["refunds"], 1);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|row| row["bucket"] != "2026-03-04")
    );
    // Across the DST change: 23:30 UTC on the 28th is the 29th, 22:30 UTC on the 29th the 30th.
    assert_eq!(kpi_row(rows, "2026-03-29")["orders"], 0);
    assert_eq!(kpi_row(rows, "2026-03-30")["orders"], 1);
    assert_eq!(kpi_row(rows, "2026-03-30")["new_customers"], 1);

    let utc = run(
        &harness,
        "kpis",
        json!({"from": "2026-03-01", "to": "2026-04-01", "granularity": "day", "metrics": ["orders", "revenue"]}),
    );
    assert_eq!(kpi_row(&utc["rows"], "2026-03-04")["revenue"], 20.0);
    assert_eq!(kpi_row(&utc["rows"], "2026-03-29")["orders"], 1);
    assert!(
        utc["totals"][0].get("visitors").is_none(),
        "only the asked metrics"
    );
}

#[test]
fn kpis_filter_on_traits_and_break_down_by_campaign() {
    let harness = shop();
    let answer = run(
        &harness,
        "kpis",
        json!({"from": "2026-03-01", "to": "2026-04-01",
               "filters": [{"field": "traits.plan", "op": "eq", "value": "pro"}]}),
    );
    let total = &answer["totals"][0];
    assert_eq!(total["visitors"], 1, "{answer}");
    assert_eq!(total["revenue"], 100.0);
    let answer = run(
        &harness,
        "kpis",
        json!({"from": "2026-03-01", "to": "2026-04-01", "breakdown": "utm_source", "metrics": ["visitors"]}),
    );
    let google = answer["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["group"] == "google")
        .unwrap();
    assert_eq!(
        google["visitors"], 2,
        "P1 and P2 had google pages in March: {answer}"
    );
}

#[test]
fn retention_cohorts_by_first_view_per_week() {
    let harness = shop();
    let answer = run(
        &harness,
        "retention",
        json!({"from": "2026-03-02", "to": "2026-03-30", "time_zone": "Europe/Berlin",
               "granularity": "week", "start": {"event": "Product Viewed"}, "periods": 3}),
    );
    let rows = answer["rows"].as_array().unwrap();
    // P1's first view precedes the range; P2 and P3 both return in week +1 (their orders).
    assert_eq!(rows.len(), 2, "{answer}");
    assert_eq!(rows[0]["cohort"], "2026-03-02");
    assert_eq!(rows[0]["retained"], json!([2, 2, 0, 0]));
    assert_eq!(rows[1]["cohort"], "2026-03-23");
    assert_eq!(rows[1]["retained"], json!([1, null, null, null]));
}

#[test]
fn attribution_models_share_each_order() {
    let harness = shop();
    let answer = run(
        &harness,
        "attribution",
        json!({"from": "2026-03-01", "to": "2026-04-01"}),
    );
    assert_eq!(answer["conversions"], 5, "{answer}");
    assert_eq!(answer["revenue"], 205.0);
    let credit = |model: &str, group: &str| -> (f64, f64) {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["model"] == model && row["group"] == group)
            .map(|row| {
                (
                    row["conversions"].as_f64().unwrap(),
                    row["revenue"].as_f64().unwrap(),
                )
            })
            .unwrap_or((0.0, 0.0))
    };
    assert_eq!(credit("first_touch", "google"), (1.0, 100.0));
    assert_eq!(credit("first_touch", "newsletter"), (1.0, 50.0));
    assert_eq!(
        credit("first_touch", "(direct)"),
        (3.0, 55.0),
        "u3's touch is too old"
    );
    assert_eq!(credit("last_touch", "google"), (2.0, 150.0));
    assert_eq!(credit("linear", "google"), (1.5, 125.0));
    assert_eq!(credit("position_based", "newsletter"), (0.5, 25.0));
    // P2's touches are 7 days + 1 min and 4 days + 1 min before the order.
    let older = 2f64.powf(-(7.0 * 1440.0 + 1.0) / (7.0 * 1440.0));
    let newer = 2f64.powf(-(4.0 * 1440.0 + 1.0) / (7.0 * 1440.0));
    let (conversions, revenue) = credit("time_decay", "newsletter");
    assert!((conversions - older / (older + newer)).abs() < 1e-12);
    assert!((revenue - 50.0 * older / (older + newer)).abs() < 1e-9);
}

#[test]
fn paths_after_and_before_a_view() {
    let harness = shop();
    let answer = run(
        &harness,
        "paths",
        json!({"from": "2026-03-01", "to": "2026-04-01", "anchor": {"event": "Product Viewed"}, "depth": 2}),
    );
    assert_eq!(answer["anchors"], 4);
    let paths: Vec<Value> = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["path"].clone())
        .collect();
    assert_eq!(
        paths,
        vec![
            json!(["$page", "$end"]),
            json!(["$page", "Product Added"]),
            json!(["Product Added", "$identify"]),
            json!(["Product Added", "Order Completed"]),
        ],
        "{answer}"
    );
    let answer = run(
        &harness,
        "paths",
        json!({"from": "2026-03-01", "to": "2026-04-01", "anchor": {"event": "Order Completed"}, "direction": "previous"}),
    );
    let first = &answer["rows"][0];
    // Before each March order: P1 identify, P2 google page, P3 add, P5 start, P6 page.
    assert_eq!(first["path"], json!(["$page"]), "{answer}");
    assert_eq!(first["occurrences"], 2);
}
