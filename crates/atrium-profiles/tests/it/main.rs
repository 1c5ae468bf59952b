use atrium_profiles::{EventFacts, OrderStatus, Profile};
use proptest::prelude::*;
use serde_json::{Value, json};

fn facts(offset: u64, time_ms: i64) -> EventFacts<'static> {
    EventFacts {
        offset,
        time_ms,
        source: "web",
        channel: "web",
    }
}

fn profile_from(events: &[(i64, Value)]) -> Profile {
    let mut profile = Profile::new("p", events.first().map_or(0, |(time, _)| *time));
    for (offset, (time, event)) in events.iter().enumerate() {
        profile.apply(event, facts(offset as u64, *time));
    }
    profile
}

#[test]
fn traits_are_last_write_wins_by_event_time() {
    let profile = profile_from(&[
        (
            200,
            json!({"type": "identify", "traits": {"plan": "gold", "name": "Ann"}}),
        ),
        (
            100,
            json!({"type": "identify", "traits": {"plan": "silver", "city": "Oslo"}}),
        ),
        (
            300,
            json!({"type": "track", "event": "X", "context": {"traits": {"name": "Anna"}}}),
        ),
    ]);
    let traits = profile.trait_values();
    assert_eq!(
        traits["plan"], "gold",
        "a late-arriving older value does not win"
    );
    assert_eq!(traits["city"], "Oslo");
    assert_eq!(traits["name"], "Anna");
    assert_eq!(profile.first_seen_ms, 100);
    assert_eq!(profile.last_seen_ms, 300);
    assert_eq!(profile.event_counts["identify"], 2);
    assert_eq!(profile.event_counts["track:X"], 1);
}

#[test]
fn order_lifecycle_drives_the_transaction_history() {
    let profile = profile_from(&[
        (
            10,
            json!({"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "revenue": 100.0, "currency": "usd", "products": [{"product_id": "p1", "quantity": 2}]}}),
        ),
        (
            20,
            json!({"type": "track", "event": "Order Completed", "properties": {"order_id": "o2", "total": "50.5"}}),
        ),
        (
            30,
            json!({"type": "track", "event": "Order Refunded", "properties": {"order_id": "o1", "total": 40}}),
        ),
        (
            40,
            json!({"type": "track", "event": "Order Cancelled", "properties": {"order_id": "o2"}}),
        ),
        (
            50,
            json!({"type": "track", "event": "Order Completed", "properties": {"order_id": "o3", "products": [{"price": 10, "quantity": 3}]}}),
        ),
        (
            60,
            json!({"type": "track", "event": "Order Refunded", "properties": {"order_id": "o3"}}),
        ),
    ]);
    assert_eq!(profile.orders["o1"].status, OrderStatus::PartiallyRefunded);
    assert_eq!(profile.orders["o1"].item_count, 2);
    assert_eq!(profile.orders["o2"].status, OrderStatus::Cancelled);
    assert_eq!(
        profile.orders["o3"].status,
        OrderStatus::Refunded,
        "refund without amount refunds the rest"
    );
    let commerce = &profile.commerce;
    assert_eq!(commerce.order_count, 2);
    assert_eq!(commerce.cancelled_count, 1);
    assert_eq!(commerce.gross_revenue, 130.0);
    assert_eq!(commerce.refunded, 70.0);
    assert_eq!(commerce.net_revenue, 60.0);
    assert_eq!(commerce.average_order_value, 65.0);
    assert_eq!(commerce.last_order_id.as_deref(), Some("o3"));
    assert_eq!(commerce.first_order_ms, Some(10));
}

#[test]
fn campaigns_devices_and_channels_are_recorded() {
    let mut profile = Profile::new("p", 0);
    profile.apply(
        &json!({"type": "page", "context": {"campaign": {"source": "google", "medium": "cpc", "name": "spring"}, "userAgent": "Mozilla/5.0 Chrome/120"}}),
        facts(0, 10),
    );
    profile.apply(
        &json!({"type": "screen", "context": {"campaign": {"source": "newsletter"}, "device": {"id": "d1", "type": "ios", "model": "iPhone15"}, "os": {"name": "iOS", "version": "17"}}}),
        EventFacts { offset: 1, time_ms: 20, source: "ios-app", channel: "app" },
    );
    assert_eq!(
        profile.first_touch.as_ref().unwrap().source.as_deref(),
        Some("google")
    );
    assert_eq!(
        profile.last_touch.as_ref().unwrap().source.as_deref(),
        Some("newsletter")
    );
    assert_eq!(profile.last_touch.as_ref().unwrap().channel, "app");
    assert!(profile.devices.contains_key("browser:chrome"));
    assert_eq!(profile.devices["device:d1"].os.as_deref(), Some("iOS 17"));
    assert_eq!(profile.channels.len(), 2);
    assert_eq!(profile.sources["ios-app"].events, 1);
}

fn arbitrary_event() -> impl Strategy<Value = (i64, Value)> {
    let trait_event = (0..1000i64, "[a-c]", 0..5i32)
        .prop_map(|(time, key, value)| (time, json!({"type": "identify", "traits": {key: value}})));
    let order_event = (0..1000i64, "o[1-3]", 1..100i32, 0..3usize).prop_map(|(time, order_id, amount, kind)| {
        let name = ["Order Completed", "Order Refunded", "Order Cancelled"][kind];
        (time, json!({"type": "track", "event": name, "properties": {"order_id": order_id, "revenue": amount}}))
    });
    let touch_event = (0..1000i64, "[x-z]").prop_map(|(time, source)| {
        (
            time,
            json!({"type": "page", "context": {"campaign": {"source": source}}}),
        )
    });
    prop_oneof![trait_event, order_event, touch_event]
}

proptest! {
    /// Merging is order-independent: absorbing B into A equals absorbing A into B (ids aside).
    #[test]
    fn absorb_is_symmetric(left in proptest::collection::vec(arbitrary_event(), 0..12), right in proptest::collection::vec(arbitrary_event(), 0..12)) {
        let build = |events: &[(i64, Value)], base: u64, id: &str| {
            let mut profile = Profile::new(id, events.first().map_or(0, |(time, _)| *time));
            for (index, (time, event)) in events.iter().enumerate() {
                profile.apply(event, facts(base + index as u64, *time));
            }
            profile
        };
        let a = build(&left, 0, "a");
        let b = build(&right, 1_000, "b");
        let mut a_then_b = a.clone();
        a_then_b.absorb(b.clone());
        let mut b_then_a = b;
        b_then_a.absorb(a);
        a_then_b.id.clear();
        b_then_a.id.clear();
        a_then_b.merged_from.clear();
        b_then_a.merged_from.clear();
        prop_assert_eq!(a_then_b.traits, b_then_a.traits);
        prop_assert_eq!(a_then_b.first_touch, b_then_a.first_touch);
        prop_assert_eq!(a_then_b.last_touch, b_then_a.last_touch);
        prop_assert_eq!(a_then_b.event_counts, b_then_a.event_counts);
        prop_assert_eq!(a_then_b.commerce.order_count, b_then_a.commerce.order_count);
    }
}
