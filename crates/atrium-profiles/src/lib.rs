//! Unified profiles: what Atrium knows about one customer, materialized from their events.
//!
//! [`Profile::apply`] folds one event into a profile; [`Profile::absorb`] merges a profile that
//! identity resolution merged away. Both are order-insensitive where it matters: traits are
//! last-write-wins by event time (ties broken by log offset), counters add up, first/last values
//! take the min/max. So a profile is the same whatever order merges happen in.
//!
//! Architecture invariant: no IO. The pipeline loads and stores profiles; this crate only computes.
//!
//! The fields read from an event are listed in [`EVENT_FIELDS`] and [`CONTEXT_FIELDS`] (plus
//! `properties` of order events); the pipeline decodes only those.

mod commerce;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use commerce::{Commerce, Order, OrderStatus, is_order_event};

/// One trait value with the event time that set it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: Value,
    pub updated_ms: i64,
    pub offset: u64,
}

impl TraitValue {
    fn is_newer_than(&self, other: &TraitValue) -> bool {
        (self.updated_ms, self.offset) > (other.updated_ms, other.offset)
    }
}

/// How a customer used one channel or source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub events: u64,
}

impl Usage {
    fn new(time_ms: i64) -> Usage {
        Usage {
            first_seen_ms: time_ms,
            last_seen_ms: time_ms,
            events: 0,
        }
    }

    fn record(&mut self, time_ms: i64) {
        self.first_seen_ms = self.first_seen_ms.min(time_ms);
        self.last_seen_ms = self.last_seen_ms.max(time_ms);
        self.events += 1;
    }

    fn absorb(&mut self, other: &Usage) {
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.events += other.events;
    }
}

/// A device the customer used, from `context.device`, `context.os` and `context.userAgent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    pub usage: Usage,
}

/// A marketing touch: the UTM campaign of an event (`context.campaign`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    pub at_ms: i64,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub channel: String,
}

impl Touch {
    fn key(&self) -> (i64, u64) {
        (self.at_ms, self.offset)
    }
}

/// Top-level event fields that profiles or identity resolution read.
pub const EVENT_FIELDS: [&str; 10] = [
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "messageId",
    "timestamp",
    "receivedAt",
    "event",
    "traits",
    "atrium",
];
/// `context` fields that profiles or identity resolution read.
pub const CONTEXT_FIELDS: [&str; 6] = [
    "traits",
    "device",
    "os",
    "userAgent",
    "campaign",
    "externalIds",
];

/// Facts about an event that collection and the pipeline established.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub offset: u64,
    pub time_ms: i64,
    pub source: &'a str,
    pub channel: &'a str,
}

/// Everything Atrium derives about one customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub traits: BTreeMap<String, TraitValue>,
    pub channels: BTreeMap<String, Usage>,
    pub sources: BTreeMap<String, Usage>,
    pub devices: BTreeMap<String, Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<Touch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_touch: Option<Touch>,
    /// Events by type (`page`, `identify`, …) and track events by name (`track:Order Completed`).
    pub event_counts: BTreeMap<String, u64>,
    pub event_total: u64,
    pub orders: BTreeMap<String, Order>,
    pub commerce: Commerce,
    pub merged_from: Vec<String>,
    /// Computed trait values by trait id, maintained by the pipeline's segment engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub computed_traits: BTreeMap<String, Value>,
}

impl Profile {
    pub fn new(id: impl Into<String>, time_ms: i64) -> Profile {
        Profile {
            id: id.into(),
            first_seen_ms: time_ms,
            last_seen_ms: time_ms,
            ..Profile::default()
        }
    }

    /// Folds one Segment event into the profile.
    pub fn apply(&mut self, event: &Value, facts: EventFacts<'_>) {
        let time_ms = facts.time_ms;
        if self.event_total == 0 && self.first_seen_ms == 0 {
            self.first_seen_ms = time_ms;
        }
        self.first_seen_ms = self.first_seen_ms.min(time_ms);
        self.last_seen_ms = self.last_seen_ms.max(time_ms);
        self.event_total += 1;

        let event_type = event.get("type").and_then(Value::as_str).unwrap_or("track");
        *self.event_counts.entry(event_type.to_owned()).or_default() += 1;
        if event_type == "track"
            && let Some(name) = event.get("event").and_then(Value::as_str)
        {
            *self
                .event_counts
                .entry(format!("track:{name}"))
                .or_default() += 1;
        }

        record_usage(&mut self.channels, facts.channel, time_ms);
        record_usage(&mut self.sources, facts.source, time_ms);

        let context = event.get("context").and_then(Value::as_object);
        if event_type == "identify"
            && let Some(traits) = event.get("traits").and_then(Value::as_object)
        {
            self.set_traits(traits, facts);
        }
        if event_type != "group"
            && let Some(traits) = context
                .and_then(|context| context.get("traits"))
                .and_then(Value::as_object)
        {
            self.set_traits(traits, facts);
        }
        if let Some(context) = context {
            self.record_device(context, time_ms);
            self.record_touch(context, facts);
        }
        if event_type == "track"
            && let Some(name) = event.get("event").and_then(Value::as_str)
        {
            let properties = event.get("properties").and_then(Value::as_object);
            if commerce::apply_order_event(&mut self.orders, name, properties, facts) {
                self.commerce = Commerce::summarize(&self.orders);
            }
        }
    }

    /// Sets traits from an explicit API update (same rules as an identify).
    pub fn set_traits(&mut self, traits: &Map<String, Value>, facts: EventFacts<'_>) {
        for (key, value) in traits {
            let candidate = TraitValue {
                value: value.clone(),
                updated_ms: facts.time_ms,
                offset: facts.offset,
            };
            match self.traits.get(key) {
                Some(current) if !candidate.is_newer_than(current) => {}
                _ => {
                    self.traits.insert(key.clone(), candidate);
                }
            }
        }
    }

    fn record_device(&mut self, context: &Map<String, Value>, time_ms: i64) {
        let device = context.get("device").and_then(Value::as_object);
        let text = |object: Option<&Map<String, Value>>, key: &str| {
            object
                .and_then(|object| object.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let os_object = context.get("os").and_then(Value::as_object);
        let os = text(os_object, "name").map(|name| match text(os_object, "version") {
            Some(version) => format!("{name} {version}"),
            None => name,
        });
        let kind = text(device, "type");
        let key = match (text(device, "id"), &kind) {
            (Some(id), _) => format!("device:{id}"),
            (None, Some(kind)) => format!("type:{kind}"),
            (None, None) => match context.get("userAgent").and_then(Value::as_str) {
                Some(agent) => format!("browser:{}", browser_family(agent)),
                None => return,
            },
        };
        let entry = self.devices.entry(key).or_insert_with(|| Device {
            kind: kind.clone(),
            model: text(device, "model"),
            manufacturer: text(device, "manufacturer"),
            os: os.clone(),
            usage: Usage::new(time_ms),
        });
        entry.usage.record(time_ms);
        if entry.os.is_none() {
            entry.os = os;
        }
    }

    fn record_touch(&mut self, context: &Map<String, Value>, facts: EventFacts<'_>) {
        let Some(campaign) = context.get("campaign").and_then(Value::as_object) else {
            return;
        };
        let field = |key: &str| {
            campaign
                .get(key)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let touch = Touch {
            at_ms: facts.time_ms,
            offset: facts.offset,
            source: field("source"),
            medium: field("medium"),
            name: field("name"),
            term: field("term"),
            content: field("content"),
            channel: facts.channel.to_owned(),
        };
        if touch.source.is_none() && touch.medium.is_none() && touch.name.is_none() {
            return;
        }
        self.take_touch(touch);
    }

    fn take_touch(&mut self, touch: Touch) {
        if self
            .first_touch
            .as_ref()
            .is_none_or(|first| touch.key() < first.key())
        {
            self.first_touch = Some(touch.clone());
        }
        if self
            .last_touch
            .as_ref()
            .is_none_or(|last| touch.key() > last.key())
        {
            self.last_touch = Some(touch);
        }
    }

    /// Merges `other` (a profile identity resolution merged into this one) into `self`.
    pub fn absorb(&mut self, other: Profile) {
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        for (key, candidate) in other.traits {
            match self.traits.get(&key) {
                Some(current) if !candidate.is_newer_than(current) => {}
                _ => {
                    self.traits.insert(key, candidate);
                }
            }
        }
        for (key, usage) in other.channels {
            self.channels
                .entry(key)
                .and_modify(|mine| mine.absorb(&usage))
                .or_insert(usage);
        }
        for (key, usage) in other.sources {
            self.sources
                .entry(key)
                .and_modify(|mine| mine.absorb(&usage))
                .or_insert(usage);
        }
        for (key, device) in other.devices {
            match self.devices.get_mut(&key) {
                Some(mine) => mine.usage.absorb(&device.usage),
                None => {
                    self.devices.insert(key, device);
                }
            }
        }
        if let Some(touch) = other.first_touch {
            self.take_touch(touch);
        }
        if let Some(touch) = other.last_touch {
            self.take_touch(touch);
        }
        for (key, count) in other.event_counts {
            *self.event_counts.entry(key).or_default() += count;
        }
        self.event_total += other.event_total;
        for (order_id, order) in other.orders {
            match self.orders.get_mut(&order_id) {
                Some(mine) => mine.absorb(order),
                None => {
                    self.orders.insert(order_id, order);
                }
            }
        }
        self.commerce = Commerce::summarize(&self.orders);
        self.merged_from.push(other.id);
        self.merged_from.extend(other.merged_from);
        self.merged_from.sort();
        self.merged_from.dedup();
    }

    /// The current value of every trait, without bookkeeping.
    pub fn trait_values(&self) -> Map<String, Value> {
        self.traits
            .iter()
            .map(|(key, value)| (key.clone(), value.value.clone()))
            .collect()
    }
}

/// Records one event of `key`, allocating the key only the first time (hot path).
fn record_usage(usages: &mut BTreeMap<String, Usage>, key: &str, time_ms: i64) {
    match usages.get_mut(key) {
        Some(usage) => usage.record(time_ms),
        None => {
            let mut usage = Usage::new(time_ms);
            usage.record(time_ms);
            usages.insert(key.to_owned(), usage);
        }
    }
}

fn browser_family(user_agent: &str) -> &'static str {
    let families = [
        ("Edg/", "edge"),
        ("Firefox/", "firefox"),
        ("Chrome/", "chrome"),
        ("Safari/", "safari"),
    ];
    families
        .iter()
        .find(|(marker, _)| user_agent.contains(marker))
        .map(|(_, family)| *family)
        .unwrap_or("other")
}
