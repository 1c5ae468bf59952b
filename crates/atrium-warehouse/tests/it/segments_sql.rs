//! The segment language compiled to SQL (`atrium_segments::compile_sql`) selects exactly the
//! profiles the reference evaluator selects from each profile's history, and the pipeline's
//! real-time memberships, over a warehouse materialized from the real log; and the RFM inputs
//! query (`atrium_segments::compile_rfm_inputs_sql`) reads the evaluator's per-profile values.

use std::collections::{BTreeMap, BTreeSet};

use atrium_log::EventLog;
use atrium_segments::{
    Catalog, ComputedTraitDefinition, Definition, EventView, ProfileFacts, compile_rfm_inputs_sql,
    compile_sql, evaluate_from_history, validate, validate_computed_trait,
};
use atrium_types::{
    Channel, ControlRecord, DefinitionKind, LogRecord, SourceConfig, format_timestamp_ms,
    parse_timestamp_ms,
};
use atrium_warehouse::Warehouse;
use atrium_warehouse::datafusion::arrow::array::{Array, AsArray};
use atrium_warehouse::datafusion::arrow::datatypes::Float64Type;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{Harness, manual_config};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

fn computed_traits() -> Vec<Value> {
    vec![
        json!({"id": "recent_orders", "kind": "event_counter", "event": "Order Completed",
               "window": {"kind": "last", "n": 30, "unit": "minutes"}}),
        json!({"id": "spend", "kind": "aggregation", "event": "Order Completed", "property": "revenue", "function": "sum"}),
        json!({"id": "avg_spend", "kind": "aggregation", "event": "Order Completed", "property": "revenue", "function": "avg"}),
        json!({"id": "top_sku", "kind": "most_frequent", "event": "Product Viewed", "property": "sku"}),
        json!({"id": "first_sku", "kind": "first_value", "event": "Product Viewed", "property": "sku"}),
        json!({"id": "last_sku", "kind": "last_value", "event": "Product Viewed", "property": "sku"}),
        json!({"id": "skus", "kind": "unique_list", "event": "Product Viewed", "property": "sku"}),
        json!({"id": "sku_count", "kind": "unique_list_count", "event": "Product Viewed", "property": "sku"}),
        json!({"id": "ltv", "kind": "lifetime_value"}),
        json!({"id": "aov", "kind": "average_order_value"}),
        json!({"id": "days_since", "kind": "days_since_last_order"}),
        json!({"id": "favourite", "kind": "favourite_category"}),
        json!({"id": "rfm", "kind": "rfm", "rfm": {"recency_days": [0, 1, 2, 3],
               "frequency": [1, 2, 3, 4], "monetary": [10, 20, 40, 80]}}),
        // Population quintiles (right-closed bins, ties), and before their first computation.
        json!({"id": "rfm_q", "kind": "rfm", "rfm": {"quintiles": true, "recency_days": [0, 0, 1, 2],
               "frequency": [1, 1, 2, 3], "monetary": [10, 25, 25, 50]}}),
        json!({"id": "rfm_pending", "kind": "rfm", "rfm": {"quintiles": true}}),
    ]
}

fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    for body in computed_traits() {
        let definition: ComputedTraitDefinition = serde_json::from_value(body).unwrap();
        catalog
            .computed_traits
            .insert(definition.id.clone(), definition);
    }
    catalog
}

const EVENTS: [&str; 3] = ["Product Viewed", "Product Added", "Order Completed"];

fn window() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"kind": "all_time"})),
        (1i64..40).prop_map(|n| json!({"kind": "last", "n": n, "unit": "minutes"})),
        (1i64..30, 1i64..30).prop_map(|(a, b)| {
            json!({"kind": "between_ago", "from": a.max(b) + 1, "to": a.min(b), "unit": "minutes"})
        }),
        (0i64..60, 1i64..60).prop_map(|(from, length)| json!({"kind": "absolute",
            "from": T0 + from * MINUTE, "to": T0 + (from + length) * MINUTE})),
    ]
}

fn trait_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["free", "pro", "10"]).prop_map(|plan| json!(
            {"op": "trait", "path": "plan", "operator": "eq", "value": plan})),
        (prop::sample::select(vec!["gt", "gte", "lt", "lte"]), 0i64..60).prop_map(|(op, v)| json!(
            {"op": "trait", "path": "age", "operator": op, "value": v})),
        prop::sample::select(vec!["exists", "not_exists"]).prop_map(|op| json!(
            {"op": "trait", "path": "plan", "operator": op})),
        prop::sample::select(vec!["contains", "not_contains"]).prop_map(|op| json!(
            {"op": "trait", "path": "tags", "operator": op, "value": "vip"})),
        prop::sample::select(vec!["contains_any", "contains_all", "contains_none", "in", "not_in"])
            .prop_map(|op| json!({"op": "trait", "path": "tags", "operator": op, "value": ["vip", "new", 10]})),
        Just(json!({"op": "trait", "path": "plan", "operator": "regex", "value": "^p"})),
        Just(json!({"op": "trait", "path": "plan", "operator": "starts_with", "value": "fr"})),
        Just(json!({"op": "trait", "path": "birthday", "operator": "anniversary"})),
        (prop::sample::select(vec!["within_last", "more_than_ago", "within_next"]), 1i64..90)
            .prop_map(|(op, n)| json!({"op": "trait", "path": "seen_at", "operator": op, "value": n, "unit": "minutes"})),
        prop::sample::select(vec!["before", "after"]).prop_map(|op| json!(
            {"op": "trait", "path": "birthday", "operator": op, "value": "1990-06-15"})),
        prop::sample::select(vec!["granted", "denied", "unset"]).prop_map(|state| json!(
            {"op": "consent", "purpose": "email", "state": state})),
        prop::sample::select(vec!["subscribed", "unsubscribed", "unset"]).prop_map(|state| json!(
            {"op": "subscription", "group": "news", "state": state})),
        (0u8..90).prop_map(|from| json!({"op": "random_bucket", "salt": "s", "from": from, "to": from + 10})),
    ]
}

fn event_leaf() -> impl Strategy<Value = Value> {
    let event = prop::sample::select(EVENTS.to_vec());
    let cmp = (
        prop::sample::select(vec!["eq", "neq", "gt", "gte", "lt", "lte"]),
        0u8..4,
    )
        .prop_map(|(op, v)| json!({"operator": op, "value": f64::from(v) * 10.0 / 4.0}));
    let measure = prop_oneof![
        Just(json!({"kind": "count"})),
        prop::sample::select(vec!["sum", "avg", "min", "max"])
            .prop_map(|kind| json!({"kind": kind, "property": "revenue"})),
        Just(json!({"kind": "distinct_count", "property": "sku"})),
    ];
    prop_oneof![
        (event.clone(), window(), measure, cmp, any::<bool>()).prop_map(
            |(event, window, measure, cmp, filtered)| {
                let mut node = json!({"op": "performed", "event": event, "window": window, "measure": measure, "cmp": cmp});
                if filtered {
                    node["where"] = json!([{"path": "revenue", "operator": "gte", "value": 10}]);
                }
                node
            }
        ),
        (event.clone(), window()).prop_map(|(event, window)| json!(
            {"op": "not_performed", "event": event, "window": window})),
        (event.clone(), any::<bool>(), 0u8..3).prop_map(|(event, last, sku)| json!(
            {"op": if last { "last" } else { "first" }, "event": event,
             "has": [{"path": "sku", "operator": "eq", "value": format!("s{sku}")}]})),
        (1i64..30, any::<bool>()).prop_map(|(n, two)| {
            let steps = if two {
                json!([{"event": "Product Viewed"}, {"event": "Order Completed"}])
            } else {
                json!([{"event": "Product Viewed"}, {"event": "Product Added"}, {"event": "Order Completed"}])
            };
            json!({"op": "sequence", "steps": steps, "within": {"n": n, "unit": "minutes"}})
        }),
        (1i64..30, window(), any::<bool>()).prop_map(|(n, window, join)| {
            let mut node = json!({"op": "not_followed_by", "first": {"event": "Product Added"},
                "then": {"event": "Order Completed"}, "within": {"n": n, "unit": "minutes"}, "window": window});
            if join {
                node["join"] = json!(["cart_id"]);
            }
            node
        }),
        (
            prop::sample::select(computed_traits()),
            prop::sample::select(vec!["gte", "lt", "exists", "not_exists", "eq", "contains"]),
            0u8..4
        )
            .prop_map(|(definition, operator, v)| {
                let value = match operator {
                    "exists" | "not_exists" => Value::Null,
                    "eq" | "contains" => json!(format!("s{v}")),
                    _ => json!(f64::from(v) * 5.0),
                };
                let mut node = json!({"op": "computed_trait", "id": definition["id"], "operator": operator});
                if !value.is_null() {
                    node["value"] = value;
                }
                node
            }),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![trait_leaf(), event_leaf()];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|of| json!({"op": "all", "of": of})),
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|of| json!({"op": "any", "of": of})),
            inner.prop_map(|of| json!({"op": "not", "of": of})),
        ]
    })
}

/// One generated input event: (kind, user, anonymous, delay minutes, value, late minutes).
type RawEvent = (u8, u8, bool, u8, u8, u8);

fn raw_event() -> impl Strategy<Value = RawEvent> {
    (0u8..9, 0u8..3, any::<bool>(), 0u8..6, 0u8..4, 0u8..8)
}

/// Events with their processing times (`receivedAt`), which never go backwards.
fn history(raw: &[RawEvent]) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    let mut clock = T0;
    let mut received = T0;
    for (index, (kind, user, anonymous, delay, value, late)) in raw.iter().copied().enumerate() {
        clock += i64::from(delay) * MINUTE;
        let mut event = match kind {
            0 | 1 => {
                json!({"type": "track", "event": "Product Viewed", "properties": {"sku": format!("s{value}")}})
            }
            2 => {
                json!({"type": "track", "event": "Product Added", "properties": {"cart_id": format!("c{user}{}", value % 2)}})
            }
            3 => {
                let revenue = match value {
                    0 => json!(10),
                    1 => json!("25"),
                    2 => json!(2.5),
                    _ => json!(40.0),
                };
                json!({"type": "track", "event": "Order Completed", "properties": {
                    "cart_id": format!("c{user}{}", value % 2), "order_id": format!("o{index}"),
                    "revenue": revenue, "category": if value % 2 == 0 { "shoes" } else { "hats" },
                    "products": [{"category": "hats"}, {"category": format!("k{value}")}]}})
            }
            4 => {
                json!({"type": "identify", "userId": format!("u{user}"), "anonymousId": format!("a{user}")})
            }
            5 => {
                let traits = match value {
                    0 => {
                        json!({"plan": "free", "age": 20, "tags": ["vip"], "birthday": "1990-01-01",
                                "consent": {"email": true}, "subscriptions": {"news": "subscribed"}})
                    }
                    1 => {
                        json!({"plan": "pro", "age": "45", "tags": ["new", 10], "birthday": "1992-02-29",
                                "timezone": "Pacific/Auckland", "consent": {"email": "denied"}})
                    }
                    2 => json!({"plan": 10, "tags": "vip list", "birthday": "1990-12-31T23:30:00Z",
                                "timezone": "-05:00", "seen_at": format_timestamp_ms(T0 + 20 * MINUTE),
                                "subscriptions": {"news": false}}),
                    _ => json!({"plan": null, "age": 59.5, "timezone": "Not/AZone",
                                "seen_at": T0 + 45 * MINUTE, "consent": {"email": "maybe"}}),
                };
                json!({"type": "identify", "traits": traits})
            }
            6 => {
                json!({"type": "alias", "previousId": format!("a{user}"), "userId": format!("u{user}")})
            }
            7 => json!({"type": "page", "name": "Home"}),
            _ => {
                json!({"type": "track", "event": "Product Viewed", "properties": {"sku": ["s1", "s2"]}})
            }
        };
        if event["type"] != "alias" {
            if anonymous {
                event["anonymousId"] = json!(format!("a{user}"));
            } else if event.get("userId").is_none() {
                event["userId"] = json!(format!("u{user}"));
            }
        }
        // Late events: dated before their arrival.
        let time = clock - i64::from(late) * MINUTE * i64::from(late % 3 == 0);
        event["timestamp"] = json!(format_timestamp_ms(time));
        received = received.max(clock);
        out.push((received, event));
    }
    out
}

fn append_events(harness: &Harness, events: &[(i64, Value)]) {
    let source = SourceConfig {
        name: "web".into(),
        channel: Channel::Web,
    };
    for (received, event) in events {
        let normalized = atrium_collect::normalize_events(
            &source,
            *received,
            Some("192.0.2.1"),
            std::slice::from_ref(event),
        )
        .unwrap();
        assert!(normalized.rejected.is_empty(), "{:?}", normalized.rejected);
        for accepted in normalized.accepted {
            harness.log.append(&[accepted.payload.as_slice()]).unwrap();
        }
    }
}

fn control(harness: &Harness, record: &ControlRecord) {
    let bytes = LogRecord::encode_control(record);
    harness.log.append(&[&bytes]).unwrap();
}

fn sql_members(warehouse: &Warehouse, sql: &str) -> BTreeSet<String> {
    let output = crate::query(warehouse, sql);
    let mut members = BTreeSet::new();
    for batch in &output.batches {
        let column = batch.column(0).as_string::<i32>();
        for row in 0..column.len() {
            members.insert(column.value(row).to_string());
        }
    }
    members
}

/// Each profile's events as the segment engine sees them: its timeline, in log order.
fn profile_events(harness: &Harness) -> Vec<(atrium_store::Profile, Vec<Value>)> {
    let profiles = harness
        .store
        .read(|tables| tables.list_profiles(None, 10_000))
        .unwrap()
        .profiles;
    let mut out = Vec::new();
    for profile in profiles {
        let id = atrium_store::ProfileId(profile.id.clone());
        let entries = harness
            .store
            .read(|tables| tables.timeline(&id, None, 10_000))
            .unwrap();
        let mut offsets: Vec<u64> = entries.into_iter().map(|entry| entry.offset).collect();
        offsets.sort_unstable();
        let events: Vec<Value> = offsets
            .iter()
            .map(|offset| {
                let record = harness.log.read(*offset, 1).unwrap().remove(0);
                match LogRecord::decode(&record.payload).unwrap() {
                    LogRecord::Event(event) => event,
                    _ => unreachable!("timelines hold events"),
                }
            })
            .collect();
        out.push((profile, events));
    }
    out
}

fn views(events: &[Value]) -> Vec<EventView<'_>> {
    events
        .iter()
        .map(|event| {
            let event_type = event["type"].as_str().unwrap_or("track");
            let name = match event_type {
                "track" => event["event"].as_str(),
                "page" | "screen" => event["name"].as_str(),
                _ => None,
            };
            EventView {
                name: name.unwrap_or(""),
                event_type,
                time_ms: parse_timestamp_ms(event["timestamp"].as_str().unwrap()).unwrap(),
                properties: &event["properties"],
            }
        })
        .collect()
}

/// The profiles the reference evaluator selects at `now`.
fn reference_members(
    harness: &Harness,
    compiled: &atrium_segments::Compiled,
    now: i64,
) -> BTreeSet<String> {
    let mut members = BTreeSet::new();
    for (profile, events) in profile_events(harness) {
        let views = views(&events);
        let traits = profile.trait_values();
        let facts = ProfileFacts {
            profile_id: &profile.id,
            traits: &traits,
            entry_ms: None,
        };
        if evaluate_from_history(compiled, &facts, &views, now) {
            members.insert(profile.id.clone());
        }
    }
    members
}

/// `default` cases unless `PROPTEST_CASES` says otherwise; shrinking bounded.
fn cases_from_env(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(default),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

proptest! {
    // 24 cases by default (about 15 s in a debug build); `PROPTEST_CASES=500` for a longer run.
    #![proptest_config(cases_from_env(24))]

    /// Random segment trees × random histories (merges through identify and alias, late
    /// events, times on window edges): at several times the compiled SQL over the warehouse
    /// selects the reference evaluator's members, and at the last one the pipeline's.
    #[test]
    fn compiled_sql_selects_the_reference_members(
        condition in condition(),
        raw in prop::collection::vec(raw_event(), 1..30),
        checks in prop::collection::vec((0usize..30, prop::sample::select(vec![0i64, 1, 5, 10, 20, 30])), 1..4),
    ) {
        let body = json!({"id": "generated", "default_tz": "Europe/Paris", "condition": condition});
        let definition: Definition = serde_json::from_value(body.clone()).unwrap();
        let catalog = catalog();
        let Ok(compiled) = validate(&definition, &catalog) else {
            // Some generated shapes are invalid (e.g. an operator the value does not suit).
            return Ok(());
        };
        let history = history(&raw);
        let harness = Harness::create();
        append_events(&harness, &history);
        let last_received = history.last().map_or(T0, |(received, _)| *received);
        for trait_body in computed_traits() {
            control(&harness, &ControlRecord::DefinitionPut {
                kind: DefinitionKind::ComputedTrait,
                key: trait_body["id"].as_str().unwrap().into(),
                body: trait_body.clone(),
                version: 1,
                at: format_timestamp_ms(last_received),
            });
        }
        control(&harness, &ControlRecord::DefinitionPut {
            kind: DefinitionKind::Segment,
            key: "generated".into(),
            body: body.clone(),
            version: 1,
            at: format_timestamp_ms(last_received),
        });
        let final_time = last_received + 7 * MINUTE;
        control(&harness, &ControlRecord::Tick { at: format_timestamp_ms(final_time) });
        harness.pipeline.run_until_caught_up().unwrap();
        let warehouse = harness.warehouse(manual_config());
        warehouse.catch_up().unwrap();

        let explain = || format!(
            "definition: {}\nhistory:\n{}",
            serde_json::to_string(&body).unwrap(),
            history.iter().map(|(received, event)| format!("  received {} {}", format_timestamp_ms(*received), event)).collect::<Vec<_>>().join("\n")
        );
        let mut times: Vec<i64> = checks.iter().map(|(index, offset)| {
            let (received, _) = &history[index % history.len()];
            received + offset * MINUTE
        }).collect();
        times.push(final_time);
        for now in times {
            let sql = match compile_sql(&compiled, now) {
                Ok(sql) => sql,
                Err(error) => panic!("{error}\n{}", explain()),
            };
            let from_sql = sql_members(&warehouse, &sql);
            let expected = reference_members(&harness, &compiled, now);
            prop_assert_eq!(&from_sql, &expected, "at {} ({})\n{}\nsql:\n{}", format_timestamp_ms(now), now, explain(), sql);
            if now == final_time {
                let real_time: BTreeSet<String> = harness.store.read(|tables| {
                    let mut members = BTreeSet::new();
                    for profile in tables.list_profiles(None, 10_000)?.profiles {
                        if tables.segment_member("generated", &profile.id)?.is_some() {
                            members.insert(profile.id);
                        }
                    }
                    Ok(members)
                }).unwrap();
                prop_assert_eq!(&from_sql, &real_time, "real-time memberships at {}\n{}\nsql:\n{}", format_timestamp_ms(now), explain(), sql);
            }
        }
    }
}

/// Each profile's RFM inputs from `compile_rfm_inputs_sql`, by profile id.
fn sql_rfm_inputs(warehouse: &Warehouse, sql: &str) -> BTreeMap<String, [f64; 3]> {
    let output = crate::query(warehouse, sql);
    let mut inputs = BTreeMap::new();
    for batch in &output.batches {
        let ids = batch
            .column_by_name("profile_id")
            .unwrap()
            .as_string::<i32>();
        let number = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let (recency_days, orders, revenue) =
            (number("recency_days"), number("orders"), number("revenue"));
        for row in 0..batch.num_rows() {
            inputs.insert(
                ids.value(row).to_string(),
                [
                    recency_days.value(row),
                    orders.value(row),
                    revenue.value(row),
                ],
            );
        }
    }
    inputs
}

proptest! {
    #![proptest_config(cases_from_env(16))]

    /// The RFM inputs the quintile recompute reads from the warehouse are, for every profile
    /// with a counted order, the reference evaluator's days since the last order, order count
    /// and lifetime value over the same event, filters and window (merged histories included).
    #[test]
    fn rfm_inputs_sql_matches_the_reference(
        raw in prop::collection::vec(raw_event(), 1..30),
        trait_window in window(),
        filtered in any::<bool>(),
        later in prop::sample::select(vec![0i64, 1, 30, 24 * 60, 3 * 24 * 60]),
    ) {
        let mut body = json!({"id": "rfm_q", "kind": "rfm", "rfm": {"quintiles": true}, "window": trait_window});
        if filtered {
            body["where"] = json!([{"path": "category", "operator": "eq", "value": "shoes"}]);
        }
        let definition: ComputedTraitDefinition = serde_json::from_value(body.clone()).unwrap();
        let compiled = validate_computed_trait(&definition).unwrap();
        let reference_kind = |kind: &str| {
            let mut reference = body.clone();
            reference["kind"] = json!(kind);
            reference.as_object_mut().unwrap().remove("rfm");
            let reference: ComputedTraitDefinition = serde_json::from_value(reference).unwrap();
            validate_computed_trait(&reference).unwrap()
        };
        let (days, count, value) = (
            reference_kind("days_since_last_order"),
            reference_kind("order_count"),
            reference_kind("lifetime_value"),
        );
        let history = history(&raw);
        let harness = Harness::create();
        append_events(&harness, &history);
        harness.pipeline.run_until_caught_up().unwrap();
        let warehouse = harness.warehouse(manual_config());
        warehouse.catch_up().unwrap();
        let now = history.last().map_or(T0, |(received, _)| *received) + later * MINUTE;

        let sql = compile_rfm_inputs_sql(&compiled, now).unwrap();
        let from_sql = sql_rfm_inputs(&warehouse, &sql);
        let mut expected = BTreeMap::new();
        for (profile, events) in profile_events(&harness) {
            let views = views(&events);
            let orders = count.compute_from_history(&views, None, now);
            if orders == json!(0) {
                continue;
            }
            let number = |value: Value| value.as_f64().unwrap_or_else(|| panic!("{value}"));
            expected.insert(profile.id.clone(), [
                number(days.compute_from_history(&views, None, now)),
                number(orders),
                number(value.compute_from_history(&views, None, now)),
            ]);
        }
        prop_assert_eq!(from_sql.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "sql:\n{}", sql);
        for (profile, inputs) in &expected {
            let got = from_sql[profile];
            for (got, want) in got.iter().zip(inputs) {
                prop_assert!((got - want).abs() < 1e-9, "{}: {:?} != {:?}\nsql:\n{}", profile, got, want, sql);
            }
        }
    }
}

/// A `since_entry` window has no SQL form: the error names the node.
#[test]
fn since_entry_is_refused_with_the_node_path() {
    let definition: Definition =
        serde_json::from_value(json!({"id": "s", "condition": {"op": "all", "of": [
        {"op": "trait", "path": "plan", "operator": "exists"},
        {"op": "performed", "event": "Order Completed", "window": {"kind": "since_entry"}}]}}))
        .unwrap();
    let compiled = validate(&definition, &Catalog::default()).unwrap();
    let error = compile_sql(&compiled, T0).unwrap_err();
    assert!(error.to_string().starts_with("/condition/of/1"), "{error}");
}
