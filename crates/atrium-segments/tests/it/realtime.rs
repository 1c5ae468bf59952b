//! Real-time evaluation scenarios: timers make windowed predicates flip on time, changes are
//! emitted as Segment Entered / Exited, and explanations show the facts.

use atrium_segments::{
    Catalog, ChangeKind, NodeState, ProfileFacts, ProfileState, Store, bucket,
    evaluate_from_history, explain, on_event, on_profile, on_timer,
};
use serde_json::{Map, Value, json};

use crate::{DAY, Event, HOUR, MINUTE, compile};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn traits(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("object")
}

#[test]
fn no_order_in_30_days_becomes_true_on_time() {
    let compiled = compile(
        json!({"op": "all", "of": [
            {"op": "performed", "event": "Signed Up"},
            {"op": "not_performed", "event": "Order Completed", "window": {"kind": "last", "n": 30, "unit": "days"}}
        ]}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "p");
    let signup = Event::new("Signed Up", T0, json!({}));
    let outcome = on_event(&compiled, &mut state, &signup.view(), T0);
    assert!(outcome.membership);
    let entered = outcome.changed.expect("entered");
    assert_eq!(
        (entered.event_name(), entered.kind, entered.time_ms),
        ("Segment Entered", ChangeKind::Entered, T0)
    );
    assert_eq!(entered.properties()["segment_id"], "test");
    assert_eq!(outcome.next_timer_ms, None);

    let order = Event::new("Order Completed", T0 + DAY, json!({"revenue": 30}));
    let outcome = on_event(&compiled, &mut state, &order.view(), T0 + DAY);
    assert!(!outcome.membership);
    assert_eq!(
        outcome.changed.expect("exited").event_name(),
        "Segment Exited"
    );
    assert_eq!(
        outcome.next_timer_ms,
        Some(T0 + 31 * DAY),
        "the order leaves the window 30 days later"
    );

    let outcome = on_timer(&compiled, &mut state, T0 + 31 * DAY - 1);
    assert!(!outcome.membership);
    let outcome = on_timer(&compiled, &mut state, T0 + 31 * DAY);
    assert!(
        outcome.membership,
        "true exactly when the window elapses, no polling"
    );
    assert_eq!(outcome.changed.expect("entered").time_ms, T0 + 31 * DAY);
    assert_eq!(outcome.next_timer_ms, None);
}

#[test]
fn abandoned_cart_with_cart_id_join() {
    let compiled = compile(
        json!({"op": "not_followed_by",
               "first": {"event": "Product Added"},
               "then": {"event": "Order Completed"},
               "within": {"n": 1, "unit": "hours"},
               "join": ["cart_id"],
               "window": {"kind": "last", "n": 7, "unit": "days"}}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "p");
    let added = Event::new("Product Added", T0, json!({"cart_id": "c1", "sku": "x"}));
    let outcome = on_event(&compiled, &mut state, &added.view(), T0);
    assert!(!outcome.membership);
    assert_eq!(outcome.next_timer_ms, Some(T0 + HOUR));
    // An order for another cart does not count.
    let other = Event::new(
        "Order Completed",
        T0 + 10 * MINUTE,
        json!({"cart_id": "c2"}),
    );
    let outcome = on_event(&compiled, &mut state, &other.view(), T0 + 10 * MINUTE);
    assert_eq!(outcome.next_timer_ms, Some(T0 + HOUR));
    let outcome = on_timer(&compiled, &mut state, T0 + HOUR);
    assert!(outcome.membership, "abandoned after one hour");
    assert_eq!(
        outcome.next_timer_ms,
        Some(T0 + 7 * DAY),
        "leaves when the add leaves the 7-day window"
    );

    let report = explain(&compiled, &state, T0 + HOUR);
    assert!(report.value);
    assert!(
        report
            .facts
            .iter()
            .any(|fact| fact.starts_with("not followed: 2026-01-01T00:00:00.000Z")),
        "{report:#?}"
    );

    // A late order for the same cart, dated within the hour, arrives later: the cart was not
    // abandoned after all.
    let late = Event::new(
        "Order Completed",
        T0 + 30 * MINUTE,
        json!({"cart_id": "c1"}),
    );
    let outcome = on_event(&compiled, &mut state, &late.view(), T0 + 2 * HOUR);
    assert!(!outcome.membership);
    assert_eq!(outcome.changed.expect("exited").kind, ChangeKind::Exited);
    assert_eq!(outcome.next_timer_ms, None);
}

#[test]
fn counted_window_keeps_only_what_the_comparison_needs() {
    let compiled = compile(
        json!({"op": "performed", "event": "Page Viewed", "window": {"kind": "last", "n": 7, "unit": "days"}, "cmp": {"operator": "gte", "value": 3}}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "p");
    let mut history = Vec::new();
    for index in 0..100 {
        let event = Event::new("Page Viewed", T0 + index * HOUR, json!({}));
        let outcome = on_event(&compiled, &mut state, &event.view(), event.time_ms);
        assert_eq!(outcome.membership, index >= 2);
        history.push(event);
    }
    let NodeState::Measure(Store::Entries { entries, .. }) = &state.nodes[0] else {
        panic!("sliding store")
    };
    assert_eq!(entries.len(), 4, "count >= 3 keeps the newest 4 events");
    // Flips to false when the third-newest event leaves the window.
    let now = T0 + 99 * HOUR;
    let outcome = on_timer(&compiled, &mut state, now);
    let exit_at = T0 + 97 * HOUR + 7 * DAY;
    assert_eq!(outcome.next_timer_ms, Some(T0 + 96 * HOUR + 7 * DAY));
    assert!(on_timer(&compiled, &mut state, exit_at - 1).membership);
    let outcome = on_timer(&compiled, &mut state, exit_at);
    assert!(!outcome.membership);
    let views: Vec<_> = history.iter().map(Event::view).collect();
    let empty = Map::new();
    let facts = ProfileFacts {
        profile_id: "p",
        traits: &empty,
        entry_ms: None,
    };
    assert!(!evaluate_from_history(&compiled, &facts, &views, exit_at));
    assert!(evaluate_from_history(
        &compiled,
        &facts,
        &views,
        exit_at - 1
    ));
}

#[test]
fn anniversary_follows_the_profile_time_zone() {
    let compiled = compile(
        json!({"op": "trait", "path": "birthday", "operator": "anniversary"}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "p");
    let tokyo = traits(json!({"birthday": "1990-03-15", "timezone": "Asia/Tokyo"}));
    let midnight_tokyo = 1_773_500_400_000; // 2026-03-14T15:00:00Z
    let outcome = on_profile(&compiled, &mut state, &tokyo, midnight_tokyo - 1);
    assert!(!outcome.membership);
    assert_eq!(outcome.next_timer_ms, Some(midnight_tokyo));
    let outcome = on_timer(&compiled, &mut state, midnight_tokyo);
    assert!(outcome.membership);
    assert_eq!(outcome.next_timer_ms, Some(midnight_tokyo + DAY));
    // Without a profile time zone, the definition default (UTC) applies.
    let mut utc_state = ProfileState::new(&compiled, "q");
    let utc = traits(json!({"birthday": "1990-03-15"}));
    assert!(!on_profile(&compiled, &mut utc_state, &utc, midnight_tokyo).membership);
    // An explicit tz on the condition wins over the profile.
    let paris = compile(
        json!({"op": "trait", "path": "birthday", "operator": "anniversary", "tz": "Europe/Paris"}),
        &Catalog::default(),
    );
    let mut paris_state = ProfileState::new(&paris, "p");
    assert!(!on_profile(&paris, &mut paris_state, &tokyo, midnight_tokyo).membership);
}

#[test]
fn trait_operators() {
    let cases = [
        (
            json!({"path": "plan", "operator": "in", "value": ["pro", "team"]}),
            json!({"plan": "pro"}),
            true,
        ),
        (
            json!({"path": "plan", "operator": "not_in", "value": ["pro"]}),
            json!({}),
            true,
        ),
        (
            json!({"path": "age", "operator": "between", "value": [18, 30]}),
            json!({"age": "30"}),
            true,
        ),
        (
            json!({"path": "email", "operator": "ends_with", "value": "@example.com"}),
            json!({"email": "a@example.com"}),
            true,
        ),
        (
            json!({"path": "email", "operator": "regex", "value": "^[a-z]+@"}),
            json!({"email": "A@x"}),
            false,
        ),
        (
            json!({"path": "tags", "operator": "contains_all", "value": ["a", "b"]}),
            json!({"tags": ["b", "c", "a"]}),
            true,
        ),
        (
            json!({"path": "tags", "operator": "contains_none", "value": ["z"]}),
            json!({"tags": ["b"]}),
            true,
        ),
        (
            json!({"path": "tags", "operator": "contains", "value": "b"}),
            json!({"tags": ["b"]}),
            true,
        ),
        (
            json!({"path": "address.city", "operator": "eq", "value": "Lyon"}),
            json!({"address": {"city": "Lyon"}}),
            true,
        ),
        (
            json!({"path": "plan", "operator": "exists"}),
            json!({"plan": null}),
            false,
        ),
        (
            json!({"path": "signup", "operator": "before", "value": "2026-01-01"}),
            json!({"signup": "2025-12-31T23:59:59Z"}),
            true,
        ),
        (
            json!({"path": "signup", "operator": "after", "value": T0}),
            json!({"signup": T0}),
            false,
        ),
        (
            json!({"path": "renewal", "operator": "within_next", "value": 3, "unit": "days"}),
            json!({"renewal": T0 + 2 * DAY}),
            true,
        ),
        (
            json!({"path": "signup", "operator": "more_than_ago", "value": 1, "unit": "days"}),
            json!({"signup": T0 - DAY}),
            true,
        ),
    ];
    for (condition, profile, expected) in cases {
        let mut node = condition.clone();
        node["op"] = json!("trait");
        let compiled = compile(node, &Catalog::default());
        let mut state = ProfileState::new(&compiled, "p");
        let outcome = on_profile(&compiled, &mut state, &traits(profile.clone()), T0);
        assert_eq!(outcome.membership, expected, "{condition} on {profile}");
    }
}

#[test]
fn consent_subscription_and_buckets() {
    let compiled = compile(
        json!({"op": "all", "of": [
            {"op": "consent", "purpose": "marketing", "state": "granted"},
            {"op": "subscription", "group": "newsletter", "state": "subscribed"},
            {"op": "not", "of": {"op": "random_bucket", "salt": "holdout-2026", "from": 0, "to": 10}}
        ]}),
        &Catalog::default(),
    );
    let profile = traits(
        json!({"consent": {"marketing": true}, "subscriptions": {"newsletter": "subscribed"}}),
    );
    let id = (0..100)
        .map(|n| format!("user-{n}"))
        .find(|id| bucket("holdout-2026", id) >= 10.0)
        .expect("one outside the holdout");
    let mut state = ProfileState::new(&compiled, &id);
    assert!(on_profile(&compiled, &mut state, &profile, T0).membership);
    let revoked = traits(
        json!({"consent": {"marketing": "denied"}, "subscriptions": {"newsletter": "subscribed"}}),
    );
    assert!(!on_profile(&compiled, &mut state, &revoked, T0 + 1).membership);
    // Buckets are stable and roughly uniform.
    assert_eq!(bucket("s", "user-1"), bucket("s", "user-1"));
    let held_out = (0..10_000)
        .filter(|n| bucket("holdout-2026", &format!("user-{n}")) < 10.0)
        .count();
    assert!((900..1100).contains(&held_out), "{held_out}");
}

#[test]
fn computed_trait_and_segment_references() {
    let mut catalog = Catalog::default();
    catalog.computed_traits.insert(
        "ltv".to_string(),
        crate::trait_definition(json!({"id": "ltv", "kind": "lifetime_value", "window": {"kind": "last", "n": 365, "unit": "days"}})),
    );
    let mut vip = crate::definition(
        json!({"op": "computed_trait", "id": "ltv", "operator": "gte", "value": 100}),
    );
    vip.id = "vip".to_string();
    catalog.segments.insert("vip".to_string(), vip);
    let compiled = compile(
        json!({"op": "all", "of": [{"op": "in_segment", "id": "vip"}, {"op": "trait", "path": "plan", "operator": "neq", "value": "staff"}]}),
        &catalog,
    );
    let mut state = ProfileState::new(&compiled, "p");
    on_profile(&compiled, &mut state, &traits(json!({"plan": "free"})), T0);
    let first = Event::new("Order Completed", T0, json!({"revenue": 60}));
    assert!(!on_event(&compiled, &mut state, &first.view(), T0).membership);
    let second = Event::new("Order Completed", T0 + DAY, json!({"revenue": 50}));
    let outcome = on_event(&compiled, &mut state, &second.view(), T0 + DAY);
    assert!(outcome.membership);
    assert_eq!(outcome.next_timer_ms, Some(T0 + 365 * DAY));
    let outcome = on_timer(&compiled, &mut state, T0 + 365 * DAY);
    assert!(
        !outcome.membership,
        "the first order left the 365-day window"
    );

    let report = explain(&compiled, &state, T0 + 365 * DAY);
    let rendered = serde_json::to_value(&report).expect("serializable");
    assert_eq!(rendered["children"][0]["node"], "in segment \"vip\"");
    assert_eq!(
        rendered["children"][0]["children"][0]["facts"][0],
        "computed trait ltv = 50.0"
    );
    assert_eq!(
        rendered["children"][0]["children"][0]["path"],
        "/condition/of/0/(segment vip)/condition"
    );
}

#[test]
fn state_round_trips_through_json() {
    let compiled = compile(
        json!({"op": "any", "of": [
            {"op": "sequence", "steps": [{"event": "A"}, {"event": "B"}], "within": {"n": 1, "unit": "hours"}},
            {"op": "last", "event": "A", "has": [{"path": "v", "operator": "gt", "value": 1}]},
            {"op": "performed", "event": "B", "measure": {"kind": "distinct_count", "property": "v"}, "cmp": {"operator": "gte", "value": 2}}
        ]}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "p");
    for (index, name) in ["A", "B", "A"].iter().enumerate() {
        let event = Event::new(name, T0 + index as i64 * 2 * HOUR, json!({"v": index}));
        on_event(&compiled, &mut state, &event.view(), event.time_ms);
    }
    let text = serde_json::to_string(&state).expect("serialize");
    let restored: ProfileState = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(restored, state);
    assert!(state.member, "last A has v = 2");
}

#[test]
fn an_event_property_condition_uses_its_own_time_zone() {
    // Before local midnight of 2026-01-02 in Auckland (= 2026-01-01T11:00Z): 12:00Z is after it.
    let condition = |tz: Option<&str>| {
        let mut filter = json!({"path": "d", "operator": "before", "value": "2026-01-02"});
        if let Some(tz) = tz {
            filter["tz"] = json!(tz);
        }
        compile(
            json!({"op": "performed", "event": "E", "where": [filter]}),
            &Catalog::default(),
        )
    };
    let event = Event::new("E", T0 + DAY, json!({"d": "2026-01-01T12:00:00Z"}));
    let empty = Map::new();
    let facts = ProfileFacts {
        profile_id: "p",
        traits: &empty,
        entry_ms: None,
    };
    for (tz, expected) in [(None, true), (Some("Pacific/Auckland"), false)] {
        let compiled = condition(tz);
        let mut state = ProfileState::new(&compiled, "p");
        let outcome = on_event(&compiled, &mut state, &event.view(), T0 + DAY);
        assert_eq!(outcome.membership, expected, "real time, tz {tz:?}");
        let from_history = evaluate_from_history(&compiled, &facts, &[event.view()], T0 + DAY);
        assert_eq!(from_history, expected, "reference, tz {tz:?}");
    }
}
