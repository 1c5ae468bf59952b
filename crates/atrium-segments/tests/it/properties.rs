//! Property tests: the incremental evaluator, fed events in arrival order (late and
//! future-dated ones included), profile updates, and timers exactly when it asks for them,
//! agrees with the reference evaluator on the full history at every step and at random check
//! times in between. The same for computed traits.

use std::collections::BTreeMap;

use atrium_segments::{
    Catalog, CompiledTrait, EventView, ProfileFacts, ProfileState, decode_profile_state,
    decode_trait_state, encode_profile_state, encode_trait_state, evaluate_from_history, on_event,
    on_profile, on_timer, validate_computed_trait,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::{Event, MINUTE, compile, definition, trait_definition};

const STEP: i64 = MINUTE;
const ENTRY_MS: i64 = 10 * MINUTE;

fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    catalog.segments.insert(
        "ref".to_string(),
        definition(json!({"op": "performed", "event": "B", "window": {"kind": "last", "n": 15, "unit": "minutes"}, "cmp": {"operator": "gte", "value": 2}})),
    );
    catalog.segments.get_mut("ref").expect("inserted").id = "ref".to_string();
    for (id, value) in [
        (
            "a_recent",
            json!({"id": "a_recent", "kind": "event_counter", "event": "A", "window": {"kind": "last", "n": 10, "unit": "minutes"}}),
        ),
        (
            "v_sum",
            json!({"id": "v_sum", "kind": "aggregation", "function": "sum", "event": "A", "property": "v"}),
        ),
        (
            "v_last",
            json!({"id": "v_last", "kind": "last_value", "event": "B", "property": "v"}),
        ),
    ] {
        catalog
            .computed_traits
            .insert(id.to_string(), trait_definition(value));
    }
    catalog
}

fn event_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("A"), Just("B"), Just("C")]
}

fn window() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"kind": "all_time"})),
        (1i64..30).prop_map(|n| json!({"kind": "last", "n": n, "unit": "minutes"})),
        (0i64..10, 1i64..20).prop_map(|(to, extra)| json!({"kind": "between_ago", "from": to + extra, "to": to, "unit": "minutes"})),
        (0i64..100, 1i64..60).prop_map(|(from, length)| json!({"kind": "absolute", "from": from * MINUTE, "to": (from + length) * MINUTE})),
        Just(json!({"kind": "since_entry"})),
    ]
}

fn measure() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!({"kind": "count"})),
        1 => Just(json!({"kind": "sum", "property": "v"})),
        1 => Just(json!({"kind": "avg", "property": "v"})),
        1 => Just(json!({"kind": "min", "property": "v"})),
        1 => Just(json!({"kind": "max", "property": "v"})),
        1 => Just(json!({"kind": "distinct_count", "property": "v"})),
    ]
}

fn cmp_op() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("eq"),
        Just("neq"),
        Just("gt"),
        Just("gte"),
        Just("lt"),
        Just("lte")
    ]
}

fn filters() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!([])),
        1 => (0i64..5).prop_map(|k| json!([{"path": "v", "operator": "gte", "value": k}])),
        1 => (0i64..3).prop_map(|k| json!([{"path": "cart", "operator": "neq", "value": k}])),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (event_name(), filters(), window(), measure(), cmp_op(), 0i64..5).prop_map(|(event, filters, window, measure, op, value)| {
            json!({"op": "performed", "event": event, "where": filters, "window": window, "measure": measure, "cmp": {"operator": op, "value": value}})
        }),
        2 => (event_name(), window()).prop_map(|(event, window)| json!({"op": "not_performed", "event": event, "window": window})),
        2 => (prop::bool::ANY, event_name(), cmp_op(), 0i64..5).prop_map(|(last, event, op, k)| {
            json!({"op": if last { "last" } else { "first" }, "event": event, "has": [{"path": "v", "operator": op, "value": k}]})
        }),
        2 => (prop::collection::vec(event_name(), 2..=3), 1i64..20).prop_map(|(steps, within)| {
            let steps: Vec<Value> = steps.into_iter().map(|event| json!({"event": event})).collect();
            json!({"op": "sequence", "steps": steps, "within": {"n": within, "unit": "minutes"}})
        }),
        3 => (event_name(), event_name(), 1i64..20, prop::bool::ANY, prop_oneof![Just(json!({"kind": "all_time"})), (5i64..40).prop_map(|n| json!({"kind": "last", "n": n, "unit": "minutes"}))])
            .prop_map(|(first, then, within, joined, window)| {
                let join = if joined { json!(["cart"]) } else { json!([]) };
                json!({"op": "not_followed_by", "first": {"event": first}, "then": {"event": then}, "within": {"n": within, "unit": "minutes"}, "join": join, "window": window})
            }),
        1 => prop_oneof![Just("pro"), Just("free")].prop_map(|plan| json!({"op": "trait", "path": "plan", "operator": "eq", "value": plan})),
        1 => (1i64..40).prop_map(|n| json!({"op": "trait", "path": "signup", "operator": "within_last", "value": n, "unit": "minutes"})),
        1 => (1i64..40).prop_map(|n| json!({"op": "trait", "path": "signup", "operator": "more_than_ago", "value": n, "unit": "minutes"})),
        1 => (1i64..40).prop_map(|n| json!({"op": "trait", "path": "renewal", "operator": "within_next", "value": n, "unit": "minutes"})),
        1 => (0u32..100).prop_map(|from| json!({"op": "random_bucket", "salt": "s", "from": f64::from(from), "to": 100.0})),
        1 => (0i64..4).prop_map(|k| json!({"op": "computed_trait", "id": "a_recent", "operator": "gte", "value": k})),
        1 => (0i64..8).prop_map(|k| json!({"op": "computed_trait", "id": "v_sum", "operator": "gt", "value": k})),
        1 => (0i64..5).prop_map(|k| json!({"op": "computed_trait", "id": "v_last", "operator": "eq", "value": k})),
        1 => Just(json!({"op": "in_segment", "id": "ref"})),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|of| json!({"op": "all", "of": of})),
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|of| json!({"op": "any", "of": of})),
            inner.prop_map(|of| json!({"op": "not", "of": of})),
        ]
    })
}

/// Events with arrival times; event times may be late (up to 30 min) or slightly in the future.
fn history() -> impl Strategy<Value = Vec<(i64, Event)>> {
    let one = (
        0i64..90,
        event_name(),
        prop_oneof![6 => Just(0i64), 3 => 0i64..30, 1 => Just(-2i64)],
        prop::option::of(0i64..5),
        0i64..3,
    );
    prop::collection::vec(one, 0..40).prop_map(|mut items| {
        items.sort_by_key(|item| item.0);
        items
            .into_iter()
            .map(|(arrival, name, lateness, v, cart)| {
                let mut properties = Map::new();
                if let Some(v) = v {
                    properties.insert("v".to_string(), json!(v));
                }
                properties.insert("cart".to_string(), json!(cart));
                (
                    arrival * STEP,
                    Event::new(name, (arrival - lateness) * STEP, Value::Object(properties)),
                )
            })
            .collect()
    })
}

fn traits() -> impl Strategy<Value = Vec<(i64, Map<String, Value>)>> {
    let snapshot = (
        prop::option::of(prop_oneof![Just("pro"), Just("free")]),
        prop::option::of(0i64..90),
        prop::option::of(0i64..150),
    );
    prop::collection::vec((0i64..90, snapshot), 1..3).prop_map(|mut items| {
        items.sort_by_key(|item| item.0);
        items
            .into_iter()
            .map(|(at, (plan, signup, renewal))| {
                let mut traits = Map::new();
                if let Some(plan) = plan {
                    traits.insert("plan".to_string(), json!(plan));
                }
                if let Some(signup) = signup {
                    traits.insert("signup".to_string(), json!(signup * STEP));
                }
                if let Some(renewal) = renewal {
                    traits.insert(
                        "renewal".to_string(),
                        json!(atrium_segments_time(renewal * STEP)),
                    );
                }
                (at * STEP, traits)
            })
            .collect()
    })
}

/// Renders epoch ms as RFC 3339 so trait dates arrive as text too.
fn atrium_segments_time(ms: i64) -> String {
    let seconds = ms / 1000;
    format!(
        "1970-01-01T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

enum Step<'a> {
    Traits(&'a Map<String, Value>),
    Event(&'a Event),
    Check,
}

fn timeline<'a>(
    events: &'a [(i64, Event)],
    traits: &'a [(i64, Map<String, Value>)],
    checks: &[i64],
) -> Vec<(i64, u8, Step<'a>)> {
    let mut steps: Vec<(i64, u8, Step<'a>)> = Vec::new();
    steps.extend(
        traits
            .iter()
            .map(|(at, snapshot)| (*at, 0, Step::Traits(snapshot))),
    );
    steps.extend(
        events
            .iter()
            .map(|(at, event)| (*at, 1, Step::Event(event))),
    );
    steps.extend(checks.iter().map(|at| (*at, 2, Step::Check)));
    steps.sort_by_key(|(at, order, _)| (*at, *order));
    steps
}

fn check_segment(
    condition: Value,
    events: Vec<(i64, Event)>,
    traits: Vec<(i64, Map<String, Value>)>,
    checks: Vec<i64>,
) -> Result<(), TestCaseError> {
    let catalog = catalog();
    let compiled = compile(condition.clone(), &catalog);
    let mut state = ProfileState::new(&compiled, "profile-1");
    state.enter(&compiled, ENTRY_MS);
    let empty = Map::new();
    let mut current_traits: &Map<String, Value> = &empty;
    let mut arrived: Vec<EventView<'_>> = Vec::new();
    // The first evaluation, when the segment is created for the profile.
    let initial = on_timer(&compiled, &mut state, 0);
    let no_traits = ProfileFacts {
        profile_id: "profile-1",
        traits: &empty,
        entry_ms: Some(ENTRY_MS),
    };
    prop_assert_eq!(
        initial.membership,
        evaluate_from_history(&compiled, &no_traits, &[], 0)
    );
    let mut timer: Option<i64> = initial.next_timer_ms;
    let mut member = initial.membership;
    for (at, _, step) in timeline(&events, &traits, &checks) {
        while let Some(due) = timer.filter(|due| *due <= at) {
            let outcome = on_timer(&compiled, &mut state, due);
            let facts = ProfileFacts {
                profile_id: "profile-1",
                traits: current_traits,
                entry_ms: Some(ENTRY_MS),
            };
            let expected = evaluate_from_history(&compiled, &facts, &arrived, due);
            prop_assert_eq!(
                outcome.membership,
                expected,
                "timer at {} for {}",
                due,
                condition
            );
            prop_assert_eq!(outcome.changed.is_some(), outcome.membership != member);
            prop_assert!(outcome.next_timer_ms.is_none_or(|next| next > due));
            member = outcome.membership;
            timer = outcome.next_timer_ms;
        }
        let outcome = match step {
            Step::Traits(snapshot) => {
                current_traits = snapshot;
                Some(on_profile(&compiled, &mut state, snapshot, at))
            }
            Step::Event(event) => {
                arrived.push(event.view());
                Some(on_event(&compiled, &mut state, &event.view(), at))
            }
            Step::Check => None,
        };
        let facts = ProfileFacts {
            profile_id: "profile-1",
            traits: current_traits,
            entry_ms: Some(ENTRY_MS),
        };
        let expected = evaluate_from_history(&compiled, &facts, &arrived, at);
        match outcome {
            Some(outcome) => {
                prop_assert_eq!(
                    outcome.membership,
                    expected,
                    "step at {} for {}",
                    at,
                    condition
                );
                prop_assert_eq!(outcome.changed.is_some(), outcome.membership != member);
                prop_assert!(outcome.next_timer_ms.is_none_or(|next| next > at));
                member = outcome.membership;
                timer = outcome.next_timer_ms;
                // The state survives storage.
                let stored = serde_json::to_string(&state)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                state = serde_json::from_str(&stored)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                // And the binary form the pipeline stores: exact and canonical.
                let mut bytes = Vec::new();
                encode_profile_state(&state, &mut bytes);
                let decoded = decode_profile_state(&bytes, "profile-1")
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(&decoded, &state);
                let mut again = Vec::new();
                encode_profile_state(&decoded, &mut again);
                prop_assert_eq!(&again, &bytes);
                state = decoded;
            }
            None => prop_assert_eq!(
                state.member,
                expected,
                "check at {} for {} (no timer fired before it)",
                at,
                condition
            ),
        }
    }
    Ok(())
}

fn checks() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec((0i64..300).prop_map(|at| at * STEP / 2), 0..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn incremental_segments_agree_with_reference(condition in tree(), events in history(), traits in traits(), checks in checks()) {
        check_segment(condition, events, traits, checks)?;
    }
}

fn trait_kind() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"kind": "event_counter"})),
        prop_oneof![Just("sum"), Just("avg"), Just("min"), Just("max")].prop_map(
            |function| json!({"kind": "aggregation", "function": function, "property": "v"})
        ),
        Just(json!({"kind": "most_frequent", "property": "v"})),
        Just(json!({"kind": "first_value", "property": "v"})),
        Just(json!({"kind": "last_value", "property": "v"})),
        Just(json!({"kind": "unique_list", "property": "v"})),
        Just(json!({"kind": "unique_list_count", "property": "v"})),
        Just(json!({"kind": "lifetime_value", "property": "v"})),
        Just(json!({"kind": "order_count"})),
        Just(json!({"kind": "average_order_value", "property": "v"})),
        Just(json!({"kind": "days_since_last_order"})),
        Just(json!({"kind": "favourite_category"})),
        Just(
            json!({"kind": "rfm", "property": "v", "rfm": {"recency_days": [0, 1, 2, 3], "frequency": [1, 2, 3, 5], "monetary": [1, 3, 6, 10]}})
        ),
        // Population quintiles: computed (ties, right-closed bins) and not yet computed.
        Just(
            json!({"kind": "rfm", "property": "v", "rfm": {"quintiles": true, "recency_days": [0, 0, 1, 3], "frequency": [1, 1, 2, 3], "monetary": [1, 3, 3, 10]}})
        ),
        Just(json!({"kind": "rfm", "property": "v", "rfm": {"quintiles": true}})),
    ]
}

fn trait_history() -> impl Strategy<Value = Vec<(i64, Event)>> {
    let one = (
        0i64..400,
        event_name(),
        prop_oneof![6 => Just(0i64), 3 => 0i64..2880, 1 => Just(-2i64)],
        prop::option::of(0i64..5),
        prop::collection::vec(prop_oneof![Just("x"), Just("y"), Just("z")], 0..3),
    );
    prop::collection::vec(one, 0..30).prop_map(|mut items| {
        items.sort_by_key(|item| item.0);
        items
            .into_iter()
            .map(|(arrival, name, lateness, v, categories)| {
                let mut properties = Map::new();
                if let Some(v) = v {
                    properties.insert("v".to_string(), json!(v));
                }
                let products: Vec<Value> = categories
                    .iter()
                    .map(|category| json!({"category": category}))
                    .collect();
                properties.insert("products".to_string(), Value::Array(products));
                // Hours apart, so day-based traits cross day boundaries.
                let at = arrival * 10 * MINUTE;
                (
                    at,
                    Event::new(name, at - lateness * MINUTE, Value::Object(properties)),
                )
            })
            .collect()
    })
}

fn check_trait(
    compiled: &CompiledTrait,
    events: &[(i64, Event)],
    checks: &[i64],
) -> Result<(), TestCaseError> {
    let mut state = compiled.new_state();
    state.entry_ms = Some(ENTRY_MS);
    let mut arrived: Vec<EventView<'_>> = Vec::new();
    let mut timer: Option<i64> = None;
    let mut items: Vec<(i64, Option<&Event>)> = events
        .iter()
        .map(|(at, event)| (*at, Some(event)))
        .collect();
    items.extend(checks.iter().map(|at| (*at, None)));
    items.sort_by_key(|(at, event)| (*at, event.is_none()));
    let mut fired: BTreeMap<i64, usize> = BTreeMap::new();
    for (at, event) in items {
        while let Some(due) = timer.filter(|due| *due <= at) {
            *fired.entry(due).or_default() += 1;
            let outcome = compiled.on_timer(&mut state, due);
            prop_assert_eq!(
                &outcome.value,
                &compiled.compute_from_history(&arrived, Some(ENTRY_MS), due),
                "timer at {}",
                due
            );
            prop_assert!(outcome.next_timer_ms.is_none_or(|next| next > due));
            timer = outcome.next_timer_ms;
        }
        match event {
            Some(event) => {
                arrived.push(event.view());
                let outcome = compiled.on_event(&mut state, &event.view(), at);
                prop_assert_eq!(
                    &outcome.value,
                    &compiled.compute_from_history(&arrived, Some(ENTRY_MS), at),
                    "event at {}",
                    at
                );
                timer = outcome.next_timer_ms;
                // The binary form the pipeline stores: exact and canonical.
                let mut bytes = Vec::new();
                encode_trait_state(&state, &mut bytes);
                let decoded = decode_trait_state(&bytes)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(&decoded, &state);
                let mut again = Vec::new();
                encode_trait_state(&decoded, &mut again);
                prop_assert_eq!(&again, &bytes);
                state = decoded;
            }
            None => prop_assert_eq!(
                &state.value,
                &compiled.compute_from_history(&arrived, Some(ENTRY_MS), at),
                "check at {}",
                at
            ),
        }
    }
    prop_assert!(fired.values().all(|count| *count == 1));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn incremental_computed_traits_agree_with_reference(
        kind in trait_kind(),
        event in event_name(),
        window in prop_oneof![
            Just(json!({"kind": "all_time"})),
            (1i64..72).prop_map(|n| json!({"kind": "last", "n": n, "unit": "hours"})),
            (0i64..24, 1i64..48).prop_map(|(to, extra)| json!({"kind": "between_ago", "from": to + extra, "to": to, "unit": "hours"})),
            (0i64..48, 1i64..48).prop_map(|(from, length)| json!({"kind": "absolute", "from": from * 60 * MINUTE, "to": (from + length) * 60 * MINUTE})),
            Just(json!({"kind": "since_entry"})),
        ],
        filtered in prop::bool::ANY,
        events in trait_history(),
        checks in prop::collection::vec((0i64..5000).prop_map(|at| at * MINUTE), 0..20),
    ) {
        let mut definition = kind;
        let object = definition.as_object_mut().expect("object");
        object.insert("id".to_string(), json!("t"));
        object.insert("window".to_string(), window);
        let commerce = ["lifetime_value", "order_count", "average_order_value", "days_since_last_order", "favourite_category", "rfm"]
            .contains(&object["kind"].as_str().unwrap_or_default());
        if !commerce || filtered {
            object.insert("event".to_string(), json!(event));
        }
        if filtered {
            object.insert("where".to_string(), json!([{"path": "v", "operator": "lte", "value": 3}]));
        }
        let compiled = validate_computed_trait(&trait_definition(definition.clone()))
            .map_err(|errors| TestCaseError::fail(format!("{definition}: {errors:?}")))?;
        check_trait(&compiled, &events, &checks)?;
    }
}
