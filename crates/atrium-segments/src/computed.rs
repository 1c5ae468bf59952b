//! Computed traits: Segment's seven kinds, commerce traits and RFM, each with an incremental
//! state and a reference computation from the full history.
//!
//! Outputs:
//! - `event_counter`, `order_count`, `unique_list_count`: integer;
//! - `aggregation`: `sum` is 0 without values; `avg`, `min`, `max` are `null` without values;
//!   events whose property is missing are skipped, non-numeric values are ignored;
//! - `most_frequent`: the value seen most often, at least twice (Segment's rule); ties go to
//!   the alphabetically first JSON text; `null` otherwise;
//! - `first_value` / `last_value`: the property of the earliest / latest event carrying it
//!   (ties in time: first / last to arrive);
//! - `unique_list`: distinct values sorted by JSON text (strings alphabetically);
//! - `lifetime_value`: sum of `revenue` (or `property`); `average_order_value`: that sum
//!   divided by the order count, `null` without orders; `days_since_last_order`: whole days
//!   (24 h) since the latest order, 0 for orders dated in the future, `null` without orders;
//! - `favourite_category`: most frequent of `category` and `products[].category`;
//! - `rfm`: `{"r", "f", "m", "score"}` with 1..=5 scores from per-definition thresholds
//!   (see [`crate::RfmThresholds`] and the `rfm` module), `null` without orders, and `null`
//!   for population-quintile thresholds not computed yet.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::EventView;
use crate::condition::{Matcher, lookup};
use crate::model::{AggregateFn, RfmThresholds, TraitKind};
use crate::rfm::RfmInputs;
use crate::store::{Entry, Store, StoreSpec, Summary};
use crate::time::DAY_MS;

/// A validated computed trait (see [`crate::validate_computed_trait`]).
#[derive(Debug, Clone)]
pub struct CompiledTrait {
    pub id: String,
    pub kind: TraitKind,
    pub(crate) matcher: Matcher,
    pub(crate) property: Option<String>,
    pub(crate) function: Option<AggregateFn>,
    pub(crate) rfm: Option<RfmThresholds>,
    pub(crate) spec: StoreSpec,
}

/// The per-profile state of one computed trait; serializable for storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitState {
    pub value: Value,
    pub store: Store,
    pub next_seq: u64,
    pub last_now_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_ms: Option<i64>,
}

/// The result of feeding one event or timer to a computed trait.
#[derive(Debug, Clone, PartialEq)]
pub struct TraitOutcome {
    pub value: Value,
    pub changed: bool,
    /// When to call [`CompiledTrait::on_timer`] next; `None` when only events change it.
    pub next_timer_ms: Option<i64>,
}

pub(crate) fn number_value(number: f64) -> Value {
    Number::from_f64(number).map_or(Value::Null, Value::Number)
}

fn parse_key(key: &str) -> Value {
    serde_json::from_str(key).unwrap_or(Value::Null)
}

fn most_frequent(summary: &Summary, at_least: u64) -> Value {
    let mut best: Option<(&String, u64)> = None;
    for (key, count) in &summary.counts {
        if *count >= at_least && best.is_none_or(|(_, best_count)| *count > best_count) {
            best = Some((key, *count));
        }
    }
    best.map_or(Value::Null, |(key, _)| parse_key(key))
}

fn days_since(max_time: i64, now: i64) -> i64 {
    (now - max_time).div_euclid(DAY_MS).max(0)
}

impl CompiledTrait {
    /// Whether `event` can change this trait (it is the counted event). Feeding one that cannot
    /// is the same as a timer call at its time.
    pub fn event_relevant(&self, event: &EventView<'_>) -> bool {
        self.matcher.event == event.name
    }

    /// The one event name [`CompiledTrait::event_relevant`] accepts.
    pub fn event_name(&self) -> &str {
        &self.matcher.event
    }

    /// Adds to `roots` the top-level event property keys [`CompiledTrait::on_event`] reads
    /// (those of `entry_value` and of the event filters).
    pub fn property_roots<'a>(&'a self, roots: &mut BTreeSet<&'a str>) {
        crate::validate::matcher_property_roots(&self.matcher, roots);
        let property = self.property.as_deref();
        match self.kind {
            TraitKind::EventCounter => {}
            TraitKind::Aggregation
            | TraitKind::MostFrequent
            | TraitKind::FirstValue
            | TraitKind::LastValue
            | TraitKind::UniqueList
            | TraitKind::UniqueListCount => {
                if let Some(path) = property {
                    roots.insert(crate::validate::property_root(path));
                }
            }
            TraitKind::LifetimeValue
            | TraitKind::OrderCount
            | TraitKind::AverageOrderValue
            | TraitKind::DaysSinceLastOrder
            | TraitKind::Rfm => {
                roots.insert(crate::validate::property_root(
                    property.unwrap_or("revenue"),
                ));
            }
            TraitKind::FavouriteCategory => {
                roots.insert("category");
                roots.insert("products");
            }
        }
    }

    /// The value an event contributes, or `None` when the event does not count.
    pub(crate) fn entry_value(&self, event: &EventView<'_>) -> Option<Value> {
        if !self.matcher.matches(event) {
            return None;
        }
        let property = self.property.as_deref();
        match self.kind {
            TraitKind::EventCounter => Some(Value::Null),
            TraitKind::Aggregation
            | TraitKind::MostFrequent
            | TraitKind::FirstValue
            | TraitKind::LastValue
            | TraitKind::UniqueList
            | TraitKind::UniqueListCount => lookup(event.properties, property?).cloned(),
            TraitKind::LifetimeValue
            | TraitKind::OrderCount
            | TraitKind::AverageOrderValue
            | TraitKind::DaysSinceLastOrder
            | TraitKind::Rfm => Some(
                lookup(event.properties, property.unwrap_or("revenue"))
                    .cloned()
                    .unwrap_or(Value::Null),
            ),
            TraitKind::FavouriteCategory => {
                let mut categories = Vec::new();
                if let Some(category) =
                    lookup(event.properties, "category").filter(|value| value.is_string())
                {
                    categories.push(category.clone());
                }
                if let Some(Value::Array(products)) = lookup(event.properties, "products") {
                    for product in products {
                        if let Some(category) =
                            lookup(product, "category").filter(|value| value.is_string())
                        {
                            categories.push(category.clone());
                        }
                    }
                }
                Some(Value::Array(categories))
            }
        }
    }

    /// The trait's value from the summary of the events in its window.
    pub(crate) fn value_from(&self, summary: &Summary, now: i64) -> Value {
        match self.kind {
            TraitKind::EventCounter | TraitKind::OrderCount => json!(summary.count),
            TraitKind::Aggregation => match self.function.unwrap_or(AggregateFn::Sum) {
                AggregateFn::Sum => number_value(summary.sum),
                AggregateFn::Avg => summary.avg().map_or(Value::Null, number_value),
                AggregateFn::Min => summary.min.map_or(Value::Null, number_value),
                AggregateFn::Max => summary.max.map_or(Value::Null, number_value),
            },
            TraitKind::MostFrequent => most_frequent(summary, 2),
            TraitKind::FavouriteCategory => most_frequent(summary, 1),
            TraitKind::FirstValue => summary
                .first
                .as_ref()
                .map_or(Value::Null, |entry| entry.value.clone()),
            TraitKind::LastValue => summary
                .last
                .as_ref()
                .map_or(Value::Null, |entry| entry.value.clone()),
            TraitKind::UniqueList => {
                Value::Array(summary.counts.keys().map(|key| parse_key(key)).collect())
            }
            TraitKind::UniqueListCount => json!(summary.counts.len()),
            TraitKind::LifetimeValue => number_value(summary.sum),
            TraitKind::AverageOrderValue => {
                if summary.count == 0 {
                    Value::Null
                } else {
                    number_value(summary.sum / summary.count as f64)
                }
            }
            TraitKind::DaysSinceLastOrder => summary
                .max_time
                .map_or(Value::Null, |max_time| json!(days_since(max_time, now))),
            TraitKind::Rfm => {
                let (Some(max_time), Some(thresholds)) = (summary.max_time, self.rfm.as_ref())
                else {
                    return Value::Null;
                };
                // Quintile thresholds before their first computation: no score yet.
                let Some(cuts) = thresholds.cut_points() else {
                    return Value::Null;
                };
                let inputs = RfmInputs {
                    recency_days: days_since(max_time, now) as f64,
                    orders: summary.count as f64,
                    revenue: summary.sum,
                };
                let (recency, frequency, monetary) =
                    crate::rfm::rfm_score(&cuts, thresholds.quintiles, &inputs);
                json!({"r": recency, "f": frequency, "m": monetary, "score": format!("{recency}{frequency}{monetary}")})
            }
        }
    }

    /// The next instant after `now` at which the value can change with time alone, given the
    /// window's own changes are handled by the store.
    fn clock_change(&self, summary: &Summary, now: i64) -> Option<i64> {
        match self.kind {
            TraitKind::Rfm
                if self
                    .rfm
                    .as_ref()
                    .and_then(RfmThresholds::cut_points)
                    .is_none() =>
            {
                None
            }
            TraitKind::DaysSinceLastOrder | TraitKind::Rfm => {
                let max_time = summary.max_time?;
                Some(max_time + (days_since(max_time, now) + 1) * DAY_MS)
            }
            _ => None,
        }
    }

    pub fn new_state(&self) -> TraitState {
        TraitState {
            value: self.value_from(&Summary::default(), 0),
            store: self.spec.new_store(),
            next_seq: 0,
            last_now_ms: i64::MIN,
            entry_ms: None,
        }
    }

    /// Feeds one event processed at `now_ms` (`now_ms` never goes backwards for one state;
    /// an earlier value is treated as the latest seen).
    pub fn on_event(
        &self,
        state: &mut TraitState,
        event: &EventView<'_>,
        now_ms: i64,
    ) -> TraitOutcome {
        let now = now_ms.max(state.last_now_ms);
        state.last_now_ms = now;
        if let Some(value) = self.entry_value(event) {
            let entry = Entry {
                time: event.time_ms,
                seq: state.next_seq,
                value,
            };
            state.next_seq += 1;
            state.store.insert(&self.spec, entry, now, state.entry_ms);
        }
        self.refresh(state, now)
    }

    /// Re-evaluates at `now_ms` (call at the requested timer time).
    pub fn on_timer(&self, state: &mut TraitState, now_ms: i64) -> TraitOutcome {
        let now = now_ms.max(state.last_now_ms);
        state.last_now_ms = now;
        self.refresh(state, now)
    }

    fn refresh(&self, state: &mut TraitState, now: i64) -> TraitOutcome {
        state.store.prune(&self.spec, now);
        let (value, next_timer_ms) = self.value_and_timer(&state.store, now, state.entry_ms);
        let changed = value != state.value;
        if changed {
            state.value = value.clone();
        }
        TraitOutcome {
            value,
            changed,
            next_timer_ms,
        }
    }

    pub(crate) fn value_and_timer(
        &self,
        store: &Store,
        now: i64,
        entry_ms: Option<i64>,
    ) -> (Value, Option<i64>) {
        let summary = store.summary(&self.spec, now, entry_ms);
        let value = self.value_from(&summary, now);
        let next = [
            store.next_change(&self.spec, now),
            self.clock_change(&summary, now),
        ]
        .into_iter()
        .flatten()
        .min();
        (value, next)
    }

    /// The reference computation: the value at `now_ms` from the whole history (in arrival
    /// order), with `entry_ms` for `since_entry` windows.
    pub fn compute_from_history(
        &self,
        events: &[EventView<'_>],
        entry_ms: Option<i64>,
        now_ms: i64,
    ) -> Value {
        let mut summary = Summary::default();
        for (seq, event) in events.iter().enumerate() {
            if !self.spec.window.contains(event.time_ms, now_ms, entry_ms) {
                continue;
            }
            if let Some(value) = self.entry_value(event) {
                summary.add(
                    &Entry {
                        time: event.time_ms,
                        seq: seq as u64,
                        value,
                    },
                    self.spec.tracks,
                );
            }
        }
        self.value_from(&summary, now_ms)
    }
}
