//! Integration tests for `atrium-segments` (one binary, several modules).

mod codec;
mod computed;
mod properties;
mod realtime;
mod rfm;
mod validation;

use atrium_segments::{
    Catalog, Compiled, ComputedTraitDefinition, Definition, EventView, validate,
};
use serde_json::{Value, json};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// An owned event for tests.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub time_ms: i64,
    pub properties: Value,
}

impl Event {
    pub fn new(name: &str, time_ms: i64, properties: Value) -> Event {
        Event {
            name: name.to_string(),
            time_ms,
            properties,
        }
    }

    pub fn view(&self) -> EventView<'_> {
        EventView {
            name: &self.name,
            event_type: "track",
            time_ms: self.time_ms,
            properties: &self.properties,
        }
    }
}

pub fn definition(condition: Value) -> Definition {
    serde_json::from_value(json!({ "id": "test", "condition": condition }))
        .expect("definition parses")
}

pub fn compile(condition: Value, catalog: &Catalog) -> Compiled {
    match validate(&definition(condition), catalog) {
        Ok(compiled) => compiled,
        Err(errors) => panic!("definition is invalid: {errors:?}"),
    }
}

pub fn trait_definition(value: Value) -> ComputedTraitDefinition {
    serde_json::from_value(value).expect("computed trait parses")
}
