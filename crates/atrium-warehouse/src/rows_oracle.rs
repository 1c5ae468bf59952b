//! Test oracle for the materializer's one-pass decoding (`stored`): the conversion as it was
//! written over a fully decoded `serde_json::Value`, lookups by `Value::get`. The property test
//! checks both give the same rows for generated shop events and for hand-written edge cases.

use atrium_types::parse_timestamp_ms;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::rows::{Cell, EventRows, MS_PER_DAY, event_rows, order_status};
use crate::stored::{Record, decode};

fn value_rows(offset: u64, event: &Value) -> EventRows<'static> {
    let received_ms = text(event, &["receivedAt"]).and_then(|t| parse_timestamp_ms(&t));
    let time_ms = text(event, &["timestamp"])
        .and_then(|t| parse_timestamp_ms(&t))
        .or(received_ms)
        .unwrap_or(0);
    let day = time_ms.div_euclid(MS_PER_DAY) as i32;
    let origin = [
        Cell::UInt(offset),
        text_cell(event, &["messageId"]),
        Cell::Int(time_ms),
        received_ms.map_or(Cell::Null, Cell::Int),
        Cell::Int(i64::from(day)),
    ];
    let event_type = text(event, &["type"]).unwrap_or_else(|| "track".into());
    let event_name = text(event, &["event"]);
    let source = text_cell(event, &["atrium", "source"]);
    let channel = text_cell(event, &["atrium", "channel"]);
    let anonymous_id = id_cell(event, "anonymousId");
    let user_id = id_cell(event, "userId");
    let empty = Map::new();
    let properties = event
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let props = |key: &str| properties.get(key).and_then(scalar_text);
    let prop_cell = |key: &str| props(key).map_or(Cell::Null, owned);
    let prop_float = |key: &str| {
        properties
            .get(key)
            .and_then(number)
            .map_or(Cell::Null, Cell::Float)
    };
    let is_page = event_type == "page" || event_type == "screen";
    let page = |key: &str| {
        let in_context = text(event, &["context", "page", key]);
        match in_context {
            Some(value) => owned(value),
            None if is_page => prop_cell(key),
            None => Cell::Null,
        }
    };
    let traits = event
        .get("traits")
        .or_else(|| event.get("context").and_then(|c| c.get("traits")));

    let mut row = Vec::new();
    row.extend(origin.iter().cloned());
    row.extend([
        owned(event_type.clone()),
        event_name.clone().map_or(Cell::Null, owned),
        text_cell(event, &["name"]),
        source.clone(),
        channel.clone(),
        anonymous_id.clone(),
        user_id.clone(),
        text_cell(event, &["context", "campaign", "source"]),
        text_cell(event, &["context", "campaign", "medium"]),
        text_cell(event, &["context", "campaign", "name"]),
        text_cell(event, &["context", "campaign", "term"]),
        text_cell(event, &["context", "campaign", "content"]),
        page("url"),
        page("path"),
        page("referrer"),
        page("title"),
        text_cell(event, &["context", "device", "type"]),
        text_cell(event, &["context", "os", "name"]),
        text_cell(event, &["context", "os", "version"]),
        text_cell(event, &["context", "app", "name"]),
        text_cell(event, &["context", "app", "version"]),
        text_cell(event, &["context", "locale"]),
        text_cell(event, &["context", "location", "country"]),
        text_cell(event, &["context", "location", "city"]),
        text_cell(event, &["context", "ip"]),
        text_cell(event, &["context", "userAgent"]),
        prop_cell("order_id"),
        prop_float("revenue"),
        prop_float("value"),
        prop_cell("currency"),
        prop_cell("product_id"),
        prop_cell("sku"),
        prop_cell("category"),
        prop_float("price"),
        properties
            .get("quantity")
            .and_then(integer)
            .map_or(Cell::Null, Cell::Int),
        prop_cell("coupon"),
        props("experiment_id")
            .or_else(|| props("experimentId"))
            .map_or(Cell::Null, owned),
        props("variation_id")
            .or_else(|| props("variationId"))
            .map_or(Cell::Null, owned),
        json_cell(event.get("properties")),
        json_cell(traits),
        json_cell(event.get("context")),
    ]);

    let mut rows = EventRows {
        day,
        event: row,
        order: None,
        lines: Vec::new(),
    };
    let Some(name) = event_name.filter(|_| event_type == "track") else {
        return rows;
    };
    let Some(status) = order_status(&name) else {
        return rows;
    };
    let products: &[Value] = properties
        .get("products")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut item_count = 0i64;
    for (index, product) in products.iter().enumerate() {
        let field = |key: &str| {
            product
                .get(key)
                .and_then(scalar_text)
                .map_or(Cell::Null, owned)
        };
        let quantity = product.get("quantity").and_then(integer);
        item_count += quantity.unwrap_or(1);
        let mut line = Vec::new();
        line.extend(origin.iter().cloned());
        line.extend([
            owned(name.clone()),
            prop_cell("order_id"),
            Cell::Int(index as i64),
            field("product_id"),
            field("sku"),
            field("name"),
            field("category"),
            field("brand"),
            field("variant"),
            product
                .get("price")
                .and_then(number)
                .map_or(Cell::Null, Cell::Float),
            quantity.map_or(Cell::Null, Cell::Int),
            match field("coupon") {
                Cell::Null => prop_cell("coupon"),
                coupon => coupon,
            },
            prop_cell("currency"),
            source.clone(),
            channel.clone(),
            anonymous_id.clone(),
            user_id.clone(),
        ]);
        rows.lines.push(line);
    }
    let mut order = Vec::new();
    order.extend(origin);
    order.extend([
        owned(name),
        owned(status.into()),
        prop_cell("order_id"),
        prop_cell("checkout_id"),
        source,
        channel,
        anonymous_id,
        user_id,
        prop_float("revenue"),
        prop_float("total"),
        prop_float("subtotal"),
        prop_float("shipping"),
        prop_float("tax"),
        prop_float("discount"),
        prop_cell("coupon"),
        prop_cell("currency"),
        Cell::Int(products.len() as i64),
        Cell::Int(item_count),
    ]);
    rows.order = Some(order);
    rows
}

fn owned(text: String) -> Cell<'static> {
    Cell::Text(text.into())
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    lookup(value, path).and_then(scalar_text)
}

fn text_cell(value: &Value, path: &[&str]) -> Cell<'static> {
    text(value, path).map_or(Cell::Null, owned)
}

/// `userId` / `anonymousId` as identity resolution keys them: scalars as text, trimmed.
fn id_cell(event: &Value, key: &str) -> Cell<'static> {
    match event.get(key).and_then(scalar_text) {
        Some(id) if !id.trim().is_empty() => owned(id.trim().to_owned()),
        _ => Cell::Null,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|f| f.round() as i64)),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn json_cell(value: Option<&Value>) -> Cell<'static> {
    match value {
        None | Some(Value::Null) => Cell::Null,
        Some(value) => owned(value.to_string()),
    }
}

/// Both conversions of `event` agree.
fn assert_same_rows(offset: u64, event: &Value) {
    let payload = serde_json::to_vec(event).unwrap();
    let Ok(Record::Event(stored)) = decode(&payload) else {
        panic!("not decoded as an event: {event}");
    };
    assert_eq!(
        event_rows(offset, &stored),
        value_rows(offset, event),
        "event {event}"
    );
}

#[test]
fn edge_cases_read_like_value_lookups() {
    let cases = [
        json!({"type": "track", "event": "Order Completed", "traits": null,
               "context": {"traits": {"a": 1}, "page": "not an object", "campaign": [1, 2]},
               "properties": {"products": {"not": "an array"}, "revenue": " 12.5 ",
                              "quantity": 2.6, "experimentId": 7, "variation_id": false}}),
        json!({"type": "track", "event": "Order Refunded", "userId": 42, "anonymousId": "  ",
               "properties": {"products": [1, null, {"quantity": "3", "price": "x"},
                              {"product_id": -5, "coupon": "P"}], "coupon": "O",
                              "total": 18446744073709551615u64, "tax": -1.5e-7}}),
        json!({"type": "page", "name": "Home", "properties": {"url": "https://x/", "path": 3},
               "context": {"page": {"path": "/ctx"}, "location": {"country": "FR", "city": null},
                           "os": {"name": "iOS", "version": 17}, "userAgent": "UA"},
               "timestamp": "2026-03-01T10:00:00Z", "receivedAt": "bad"}),
        json!({"type": "identify", "traits": {"email": "a@b.c"}, "context": 5,
               "atrium": {"source": "pos", "channel": "pos"}, "properties": [1],
               "receivedAt": "2026-01-01T00:00:00.123Z"}),
        json!({"type": "screen", "name": null, "properties": {"title": {"nested": true}},
               "context": {"app": {"name": "Shop", "version": "1.2"}, "device": {"type": "ios"},
                           "locale": "fr-FR", "ip": "10.0.0.1"}}),
        json!({"event": "Product Viewed", "properties": {"product_id": "p1", "price": 1e300,
               "category": "Shoes", "sku": true, "currency": "EUR"}}),
        json!({"type": "track", "event": "Completed Order", "properties": null, "context": null}),
    ];
    for (offset, event) in cases.iter().enumerate() {
        assert_same_rows(offset as u64, event);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Generated shop events, normalized as the collector stores them.
    #[test]
    fn generated_events_give_the_same_rows(seed in 0u64..1_000) {
        let config = atrium_gen::GenConfig::for_events(seed, 400);
        for (offset, event) in atrium_gen::Generator::new(config).enumerate() {
            let (payloads, _) = atrium_gen::harness::log_payloads(event).unwrap();
            for payload in payloads {
                let value: Value = serde_json::from_slice(&payload).unwrap();
                let Ok(Record::Event(stored)) = decode(&payload) else {
                    panic!("not decoded as an event");
                };
                prop_assert_eq!(event_rows(offset as u64, &stored), value_rows(offset as u64, &value));
            }
        }
    }
}
