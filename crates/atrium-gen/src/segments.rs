//! Segment and computed-trait definitions for the generated shop: the handful the demo shows,
//! and a larger realistic mix for benchmarks. Plain JSON in the segment language, so this crate
//! stays independent of the evaluator.

use serde_json::{Value, json};

/// The demo shop's segments: (id, definition).
pub fn demo_segments() -> Vec<(String, Value)> {
    vec![
        (
            "recent_buyers".into(),
            json!({"id": "recent_buyers", "description": "Ordered in the last 30 days",
                   "condition": {"op": "performed", "event": "Order Completed",
                                 "window": {"kind": "last", "n": 30, "unit": "days"}}}),
        ),
        (
            "lapsed_customers".into(),
            json!({"id": "lapsed_customers", "description": "Ordered before, but not in the last 60 days",
                   "condition": {"op": "all", "of": [
                       {"op": "performed", "event": "Order Completed"},
                       {"op": "not_performed", "event": "Order Completed", "window": {"kind": "last", "n": 60, "unit": "days"}}]}}),
        ),
        (
            "cart_abandoners".into(),
            json!({"id": "cart_abandoners", "description": "Added to a cart, no order for that cart within an hour (last 7 days)",
                   "condition": {"op": "not_followed_by",
                                 "first": {"event": "Product Added"}, "then": {"event": "Order Completed"},
                                 "within": {"n": 1, "unit": "hours"}, "join": ["cart_id"],
                                 "window": {"kind": "last", "n": 7, "unit": "days"}}}),
        ),
        (
            "big_spenders".into(),
            json!({"id": "big_spenders", "description": "Lifetime value of 500 or more",
                   "condition": {"op": "computed_trait", "id": "lifetime_value", "operator": "gte", "value": 500}}),
        ),
        (
            "engaged_browsers".into(),
            json!({"id": "engaged_browsers", "description": "Viewed 5+ products in the last 7 days without ordering",
                   "condition": {"op": "all", "of": [
                       {"op": "performed", "event": "Product Viewed", "window": {"kind": "last", "n": 7, "unit": "days"},
                        "cmp": {"operator": "gte", "value": 5}},
                       {"op": "not_performed", "event": "Order Completed", "window": {"kind": "last", "n": 7, "unit": "days"}}]}}),
        ),
    ]
}

/// The demo shop's computed traits: (id, definition).
pub fn demo_computed_traits() -> Vec<(String, Value)> {
    vec![
        (
            "lifetime_value".into(),
            json!({"id": "lifetime_value", "kind": "lifetime_value"}),
        ),
        (
            "order_count".into(),
            json!({"id": "order_count", "kind": "order_count"}),
        ),
        (
            "days_since_last_order".into(),
            json!({"id": "days_since_last_order", "kind": "days_since_last_order"}),
        ),
        (
            "favourite_category".into(),
            json!({"id": "favourite_category", "kind": "favourite_category"}),
        ),
        (
            "views_7d".into(),
            json!({"id": "views_7d", "kind": "event_counter", "event": "Product Viewed",
                   "window": {"kind": "last", "n": 7, "unit": "days"}}),
        ),
    ]
}

/// `count` segments mixing every kind of condition over the generated shop's events (windows,
/// measures, absence, sequences, abandonment, traits), for benchmarks.
pub fn bench_segments(count: usize) -> Vec<(String, Value)> {
    let events = [
        "Product Viewed",
        "Product Added",
        "Order Completed",
        "Checkout Started",
        "Products Searched",
        "Cart Viewed",
        "Product List Viewed",
    ];
    const TIERS: [&str; 3] = ["bronze", "silver", "gold"];
    (0..count)
        .map(|index| {
            let event = events[index % events.len()];
            let days = 1 + (index * 7) % 60;
            let condition = match index % 10 {
                0 => json!({"op": "performed", "event": event,
                            "window": {"kind": "last", "n": days, "unit": "days"},
                            "cmp": {"operator": "gte", "value": 1 + index % 5}}),
                1 => json!({"op": "performed", "event": "Order Completed",
                            "measure": {"kind": "sum", "property": "revenue"},
                            "cmp": {"operator": "gte", "value": 50 * (1 + index % 7)}}),
                2 => json!({"op": "not_performed", "event": event,
                            "window": {"kind": "last", "n": days, "unit": "days"}}),
                3 => json!({"op": "trait", "path": "tier", "operator": "eq", "value": TIERS[index % 3]}),
                4 => json!({"op": "not_followed_by", "first": {"event": "Product Added"},
                            "then": {"event": "Order Completed"},
                            "within": {"n": 1 + index % 3, "unit": "hours"}, "join": ["cart_id"]}),
                5 => json!({"op": "sequence", "steps": [{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Checkout Started"}],
                            "within": {"n": 1, "unit": "days"}}),
                6 => json!({"op": "last", "event": "Order Completed",
                            "has": [{"path": "revenue", "operator": "gte", "value": 20 * (1 + index % 5)}]}),
                7 => json!({"op": "any", "of": [
                            {"op": "performed", "event": "Cart Viewed", "window": {"kind": "last", "n": days, "unit": "days"}},
                            {"op": "performed", "event": "Checkout Started", "window": {"kind": "last", "n": days, "unit": "days"}}]}),
                8 => json!({"op": "performed", "event": "Product Viewed",
                            "window": {"kind": "between_ago", "from": days + 7, "to": 7, "unit": "days"},
                            "cmp": {"operator": "gte", "value": 2}}),
                _ => json!({"op": "performed", "event": "Product Viewed",
                            "measure": {"kind": "distinct_count", "property": "product_id"},
                            "window": {"kind": "last", "n": days, "unit": "days"},
                            "cmp": {"operator": "gte", "value": 3}}),
            };
            let id = format!("bench_{index:03}");
            (id.clone(), json!({"id": id, "condition": condition}))
        })
        .collect()
}

/// `count` computed traits cycling through every kind, for benchmarks.
pub fn bench_computed_traits(count: usize) -> Vec<(String, Value)> {
    (0..count)
        .map(|index| {
            let id = format!("bench_trait_{index:02}");
            let days = 7 * (1 + index % 8);
            let window = json!({"kind": "last", "n": days, "unit": "days"});
            let body = match index % 12 {
                0 => json!({"kind": "event_counter", "event": "Product Viewed", "window": window}),
                1 => json!({"kind": "aggregation", "event": "Order Completed", "property": "revenue", "function": "sum"}),
                2 => json!({"kind": "most_frequent", "event": "Product Viewed", "property": "category", "window": window}),
                3 => json!({"kind": "first_value", "event": "Order Completed", "property": "revenue"}),
                4 => json!({"kind": "last_value", "event": "Product Viewed", "property": "product_id"}),
                5 => json!({"kind": "unique_list", "event": "Product Viewed", "property": "category", "window": window}),
                6 => json!({"kind": "unique_list_count", "event": "Product Viewed", "property": "product_id", "window": window}),
                7 => json!({"kind": "lifetime_value"}),
                8 => json!({"kind": "order_count", "window": window}),
                9 => json!({"kind": "average_order_value"}),
                10 => json!({"kind": "days_since_last_order"}),
                _ => json!({"kind": "favourite_category"}),
            };
            let mut body = body;
            body["id"] = Value::String(id.clone());
            (id, body)
        })
        .collect()
}
