//! The binary state encoding: exact round trips of arbitrary JSON values (every number kind,
//! nesting, member order) and of states holding them, and rejection of malformed bytes.

use std::collections::BTreeMap;

use atrium_segments::codec::{Reader, Writer};
use atrium_segments::{
    Catalog, Entry, NodeState, ProfileState, Store, Summary, decode_profile_state,
    decode_trait_state, encode_profile_state, encode_trait_state, on_event, on_profile,
    validate_computed_trait,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use crate::{Event, MINUTE, compile, trait_definition};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(-0.0)),
        Just(json!(1.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,4}", inner), 0..6).prop_map(|members| {
                let mut map = Map::new();
                for (key, value) in members {
                    map.insert(key, value);
                }
                Value::Object(map)
            }),
        ]
    })
}

proptest! {
    #[test]
    fn values_round_trip_exactly(value in json_value()) {
        let mut writer = Writer::default();
        writer.value(&value);
        let mut reader = Reader::new(&writer.bytes);
        let decoded = reader.value().expect("decodes");
        prop_assert!(reader.is_empty());
        prop_assert_eq!(&decoded, &value);
        // Member order (preserve_order) and number kinds survive: the text is the same too.
        prop_assert_eq!(decoded.to_string(), value.to_string());
    }

    #[test]
    fn states_holding_any_values_round_trip(values in prop::collection::vec(json_value(), 0..8), dropped in any::<u64>(), times in prop::collection::vec(any::<i64>(), 0..8)) {
        let compiled = compile(json!({"op": "performed", "event": "A", "window": {"kind": "last", "n": 5, "unit": "minutes"}}), &Catalog::default());
        let mut state = ProfileState::new(&compiled, "p-1");
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let entries = sorted.iter().zip(values.iter().cycle()).enumerate().map(|(seq, (time, value))| Entry { time: *time, seq: (seq as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), value: value.clone() }).collect();
        let mut counts = BTreeMap::new();
        for value in &values {
            counts.insert(value.to_string(), dropped % 7);
        }
        state.nodes = vec![
            NodeState::Measure(Store::Entries { entries, dropped }),
            NodeState::Computed(Store::Summary(Box::new(Summary { count: dropped, numeric_count: 3, sum: f64::INFINITY, min: Some(-0.0), max: None, max_time: times.first().copied(), first: None, last: values.first().map(|value| Entry { time: i64::MIN, seq: u64::MAX, value: value.clone() }), counts, truncated: true }))),
            NodeState::Stateless,
        ];
        state.traits = values.iter().enumerate().map(|(index, value)| (format!("t{index}"), value.clone())).collect();
        state.entry_ms = times.last().copied();
        state.last_now_ms = i64::MIN;
        let mut bytes = Vec::new();
        encode_profile_state(&state, &mut bytes);
        let decoded = decode_profile_state(&bytes, "p-1").expect("decodes");
        prop_assert_eq!(&decoded, &state);
        let mut again = Vec::new();
        encode_profile_state(&decoded, &mut again);
        prop_assert_eq!(&again, &bytes);
        // Every strict prefix is rejected, never misread.
        for end in 0..bytes.len() {
            prop_assert!(decode_profile_state(&bytes[..end], "p-1").is_err());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_profile_state(&bytes, "p");
        let _ = decode_trait_state(&bytes);
    }
}

#[test]
fn a_profile_state_is_much_smaller_than_its_json() {
    let compiled = compile(
        json!({"op": "performed", "event": "Product Viewed",
               "measure": {"kind": "distinct_count", "property": "product_id"},
               "window": {"kind": "last", "n": 30, "unit": "days"},
               "cmp": {"operator": "gte", "value": 3}}),
        &Catalog::default(),
    );
    let mut state = ProfileState::new(&compiled, "profile-with-a-long-id-0000000000001");
    on_profile(&compiled, &mut state, &Map::new(), 0);
    for index in 0..30 {
        let event = Event::new(
            "Product Viewed",
            1_700_000_000_000 + index * MINUTE,
            json!({"product_id": format!("sku-{}", index % 7)}),
        );
        on_event(&compiled, &mut state, &event.view(), event.time_ms);
    }
    let mut bytes = Vec::new();
    encode_profile_state(&state, &mut bytes);
    let json = serde_json::to_vec(&state).expect("serializes");
    assert!(
        bytes.len() * 3 < json.len(),
        "binary {} bytes vs JSON {} bytes",
        bytes.len(),
        json.len()
    );
    assert_eq!(
        decode_profile_state(&bytes, "profile-with-a-long-id-0000000000001").expect("decodes"),
        state
    );

    let computed = validate_computed_trait(&trait_definition(json!({
        "id": "cats", "kind": "unique_list", "event": "Product Viewed", "property": "product_id",
        "window": {"kind": "last", "n": 7, "unit": "days"}})))
    .expect("valid");
    let mut trait_state = computed.new_state();
    for index in 0..10 {
        let event = Event::new(
            "Product Viewed",
            index * MINUTE,
            json!({"product_id": format!("sku-{index}")}),
        );
        computed.on_event(&mut trait_state, &event.view(), event.time_ms);
    }
    let mut bytes = Vec::new();
    encode_trait_state(&trait_state, &mut bytes);
    assert_eq!(decode_trait_state(&bytes).expect("decodes"), trait_state);
}
