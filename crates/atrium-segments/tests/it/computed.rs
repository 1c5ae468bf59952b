//! Computed traits: one case per kind over a small shop history.

use atrium_segments::{EventView, validate_computed_trait};
use serde_json::{Value, json};

use crate::{DAY, Event, HOUR, trait_definition};

const T0: i64 = 1_767_225_600_000;

fn history() -> Vec<Event> {
    vec![
        Event::new(
            "Order Completed",
            T0,
            json!({"revenue": 40, "products": [{"category": "shoes"}, {"category": "hats"}]}),
        ),
        Event::new("Product Viewed", T0 + HOUR, json!({"sku": "b", "price": 5})),
        Event::new(
            "Product Viewed",
            T0 + 2 * HOUR,
            json!({"sku": "a", "price": 9}),
        ),
        Event::new(
            "Order Completed",
            T0 + 3 * DAY,
            json!({"revenue": 100, "category": "hats"}),
        ),
        Event::new(
            "Product Viewed",
            T0 + 4 * DAY,
            json!({"sku": "b", "price": 3}),
        ),
        // Late: dated before the first view.
        Event::new("Product Viewed", T0 + 30 * 60_000, json!({"sku": "c"})),
    ]
}

/// Computes `definition` incrementally and from history at `now`; both must equal `expected`.
fn check(definition: Value, now: i64, expected: Value) {
    let compiled = validate_computed_trait(&trait_definition(definition.clone())).expect("valid");
    let events = history();
    let views: Vec<EventView<'_>> = events.iter().map(Event::view).collect();
    let mut state = compiled.new_state();
    for (index, view) in views.iter().enumerate() {
        compiled.on_event(&mut state, view, T0 + 4 * DAY + index as i64);
    }
    let outcome = compiled.on_timer(&mut state, now);
    assert_eq!(outcome.value, expected, "incremental {definition}");
    assert_eq!(
        compiled.compute_from_history(&views, None, now),
        expected,
        "reference {definition}"
    );
}

#[test]
fn segment_kinds() {
    let now = T0 + 5 * DAY;
    let viewed = |extra: Value| {
        let mut definition = json!({"id": "t", "event": "Product Viewed"});
        definition
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        definition
    };
    check(viewed(json!({"kind": "event_counter"})), now, json!(4));
    check(
        viewed(
            json!({"kind": "event_counter", "where": [{"path": "sku", "operator": "eq", "value": "b"}]}),
        ),
        now,
        json!(2),
    );
    check(
        viewed(
            json!({"kind": "event_counter", "window": {"kind": "last", "n": 2, "unit": "days"}}),
        ),
        now,
        json!(1),
    );
    check(
        viewed(json!({"kind": "aggregation", "function": "sum", "property": "price"})),
        now,
        json!(17.0),
    );
    check(
        viewed(json!({"kind": "aggregation", "function": "avg", "property": "price"})),
        now,
        json!(17.0 / 3.0),
    );
    check(
        viewed(json!({"kind": "aggregation", "function": "min", "property": "price"})),
        now,
        json!(3.0),
    );
    check(
        viewed(json!({"kind": "aggregation", "function": "max", "property": "price"})),
        now,
        json!(9.0),
    );
    check(
        viewed(json!({"kind": "most_frequent", "property": "sku"})),
        now,
        json!("b"),
    );
    check(
        viewed(json!({"kind": "first_value", "property": "sku"})),
        now,
        json!("c"),
    );
    check(
        viewed(json!({"kind": "last_value", "property": "sku"})),
        now,
        json!("b"),
    );
    check(
        viewed(json!({"kind": "unique_list", "property": "sku"})),
        now,
        json!(["a", "b", "c"]),
    );
    check(
        viewed(json!({"kind": "unique_list_count", "property": "sku"})),
        now,
        json!(3),
    );
    check(
        viewed(json!({"kind": "most_frequent", "property": "price"})),
        now,
        Value::Null,
    );
}

#[test]
fn commerce_kinds_and_rfm() {
    let now = T0 + 5 * DAY + HOUR;
    check(
        json!({"id": "t", "kind": "lifetime_value"}),
        now,
        json!(140.0),
    );
    check(json!({"id": "t", "kind": "order_count"}), now, json!(2));
    check(
        json!({"id": "t", "kind": "average_order_value"}),
        now,
        json!(70.0),
    );
    check(
        json!({"id": "t", "kind": "days_since_last_order"}),
        now,
        json!(2),
    );
    check(
        json!({"id": "t", "kind": "favourite_category"}),
        now,
        json!("hats"),
    );
    check(
        json!({"id": "t", "kind": "rfm", "rfm": {"recency_days": [1, 7, 30, 90], "frequency": [1, 2, 5, 10], "monetary": [50, 100, 500, 1000]}}),
        now,
        json!({"r": 4, "f": 3, "m": 3, "score": "433"}),
    );
    // Quintile cut points are right-closed: 2 orders at a cut point of 2 stay below it.
    check(
        json!({"id": "t", "kind": "rfm", "rfm": {"quintiles": true, "recency_days": [1, 1, 2, 90], "frequency": [1, 1, 2, 10], "monetary": [50, 100, 140, 1000],
               "computed": {"at": "2026-01-01T00:00:00.000Z", "population": 30, "as_of_offset": 7}}}),
        now,
        json!({"r": 3, "f": 3, "m": 3, "score": "333"}),
    );
    // Before the first quintile computation the value is null.
    check(
        json!({"id": "t", "kind": "rfm", "rfm": {"quintiles": true}}),
        now,
        Value::Null,
    );
    check(
        json!({"id": "t", "kind": "order_count", "window": {"kind": "absolute", "from": "2026-01-02", "to": "2026-02-01"}}),
        now,
        json!(1),
    );
}

#[test]
fn days_since_last_order_ticks_daily() {
    let compiled = validate_computed_trait(&trait_definition(
        json!({"id": "t", "kind": "days_since_last_order"}),
    ))
    .expect("valid");
    let mut state = compiled.new_state();
    let order = Event::new("Order Completed", T0, json!({"revenue": 1}));
    let outcome = compiled.on_event(&mut state, &order.view(), T0 + HOUR);
    assert_eq!(
        (outcome.value, outcome.next_timer_ms),
        (json!(0), Some(T0 + DAY))
    );
    let outcome = compiled.on_timer(&mut state, T0 + DAY);
    assert!(outcome.changed);
    assert_eq!(
        (outcome.value, outcome.next_timer_ms),
        (json!(1), Some(T0 + 2 * DAY))
    );
}
