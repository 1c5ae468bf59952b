//! Real-time evaluation: per-profile incremental state, updated by events, profile changes and
//! timers.
//!
//! Each call returns the membership at `now_ms`, the change (if any), and the earliest time
//! after `now_ms` at which membership can flip without new input (a counted event leaves a
//! window, an absence window elapses, a trait date crosses a boundary). The caller stores the
//! state and one durable timer per (profile, segment), replacing it with each outcome's
//! `next_timer_ms`, and calls [`on_timer`] when it fires. Timers are conservative: a timer may
//! fire without a change, but no change happens before the requested time.
//!
//! `now_ms` must not go backwards for one state; an earlier value is treated as the latest
//! seen (windows prune data that can never count again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EventView;
use crate::condition::{CompiledCondition, lookup, lookup_trait, values_equal};
use crate::model::{ConsentState, SubscriptionState};
use crate::store::{CWindow, Entry, Store};
use crate::validate::{CMeasure, CNode, Compiled, Kind};
use crate::{Change, ChangeKind, Outcome, bucket};

/// The most times kept per sequence step, and events per side of a `not_followed_by`, for
/// one profile (oldest dropped first).
pub const MAX_PATTERN_EVENTS: usize = 1_000;

/// The per-profile state of one segment; serializable for storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileState {
    pub profile_id: String,
    /// Entry time for `since_entry` windows (journeys); see [`ProfileState::enter`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_ms: Option<i64>,
    pub member: bool,
    pub last_now_ms: i64,
    pub next_seq: u64,
    /// The trait values the segment reads, by path.
    #[serde(default)]
    pub traits: BTreeMap<String, Value>,
    /// One state per stateful node, indexed by slot.
    pub nodes: Vec<NodeState>,
}

/// The state of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum NodeState {
    Stateless,
    Measure(Store),
    Extreme {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<Extreme>,
    },
    Sequence(SequenceState),
    NotFollowedBy(NotFollowedByState),
    Computed(Store),
}

/// The first or last matching event: its time, arrival number, and whether it satisfied `has`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extreme {
    pub time: i64,
    pub seq: u64,
    pub has: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SequenceState {
    /// Once a sequence is complete it stays complete; step times are then dropped.
    pub done: bool,
    /// Sorted event times per step.
    pub steps: Vec<Vec<i64>>,
    #[serde(default)]
    pub dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyed {
    pub time: i64,
    /// The join values; `None` when a join property is missing (never matches).
    pub key: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NotFollowedByState {
    /// `first` events not (yet) followed, sorted by time.
    pub pending: Vec<Keyed>,
    /// `then` events that a late `first` event could still match, sorted by time.
    pub thens: Vec<Keyed>,
    #[serde(default)]
    pub dropped: u64,
}

impl ProfileState {
    pub fn new(compiled: &Compiled, profile_id: &str) -> ProfileState {
        let mut nodes = vec![NodeState::Stateless; compiled.slot_count];
        init_states(&compiled.root, &mut nodes);
        ProfileState {
            profile_id: profile_id.to_string(),
            entry_ms: None,
            member: false,
            last_now_ms: i64::MIN,
            next_seq: 0,
            traits: BTreeMap::new(),
            nodes,
        }
    }

    /// Sets the entry time for `since_entry` windows. Events processed afterwards count when
    /// dated at or after it; state from an earlier entry is cleared.
    pub fn enter(&mut self, compiled: &Compiled, entry_ms: i64) {
        self.entry_ms = Some(entry_ms);
        reset_since_entry(&compiled.root, &mut self.nodes);
    }
}

fn init_states(node: &CNode, nodes: &mut [NodeState]) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => {
            children.iter().for_each(|child| init_states(child, nodes))
        }
        Kind::Not(child) => init_states(child, nodes),
        Kind::InSegment { root, .. } => init_states(root, nodes),
        Kind::Performed { slot, spec, .. } => nodes[*slot] = NodeState::Measure(spec.new_store()),
        Kind::FirstLast { slot, .. } => nodes[*slot] = NodeState::Extreme { held: None },
        Kind::Sequence { slot, steps, .. } => {
            nodes[*slot] = NodeState::Sequence(SequenceState {
                done: false,
                steps: vec![Vec::new(); steps.len()],
                dropped: 0,
            })
        }
        Kind::NotFollowedBy { slot, .. } => {
            nodes[*slot] = NodeState::NotFollowedBy(NotFollowedByState::default())
        }
        Kind::Computed {
            slot, definition, ..
        } => nodes[*slot] = NodeState::Computed(definition.spec.new_store()),
        Kind::Trait(_)
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => {}
    }
}

fn reset_since_entry(node: &CNode, nodes: &mut [NodeState]) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => children
            .iter()
            .for_each(|child| reset_since_entry(child, nodes)),
        Kind::Not(child) => reset_since_entry(child, nodes),
        Kind::InSegment { root, .. } => reset_since_entry(root, nodes),
        Kind::Performed { slot, spec, .. } if spec.window == CWindow::SinceEntry => {
            nodes[*slot] = NodeState::Measure(spec.new_store())
        }
        Kind::NotFollowedBy {
            slot,
            window: CWindow::SinceEntry,
            ..
        } => nodes[*slot] = NodeState::NotFollowedBy(NotFollowedByState::default()),
        Kind::Computed {
            slot, definition, ..
        } if definition.spec.window == CWindow::SinceEntry => {
            nodes[*slot] = NodeState::Computed(definition.spec.new_store())
        }
        _ => {}
    }
}

/// Feeds one event (processed at `now_ms`) to the segment.
pub fn on_event(
    compiled: &Compiled,
    state: &mut ProfileState,
    event: &EventView<'_>,
    now_ms: i64,
) -> Outcome {
    let now = advance(state, now_ms);
    let seq = state.next_seq;
    state.next_seq += 1;
    let entry_ms = state.entry_ms;
    update(&compiled.root, &mut state.nodes, event, now, seq, entry_ms);
    finish(compiled, state, now)
}

/// Re-evaluates at `now_ms`; call it when the timer requested by a previous outcome fires.
pub fn on_timer(compiled: &Compiled, state: &mut ProfileState, now_ms: i64) -> Outcome {
    let now = advance(state, now_ms);
    finish(compiled, state, now)
}

/// Feeds the profile's current traits (after an identify or a merge).
pub fn on_profile(
    compiled: &Compiled,
    state: &mut ProfileState,
    traits: &Map<String, Value>,
    now_ms: i64,
) -> Outcome {
    let now = advance(state, now_ms);
    state.traits.clear();
    for path in &compiled.trait_paths {
        if let Some(value) = lookup_trait(traits, path) {
            state.traits.insert(path.clone(), value.clone());
        }
    }
    finish(compiled, state, now)
}

fn advance(state: &mut ProfileState, now_ms: i64) -> i64 {
    let now = now_ms.max(state.last_now_ms);
    state.last_now_ms = now;
    now
}

fn finish(compiled: &Compiled, state: &mut ProfileState, now: i64) -> Outcome {
    prune(&compiled.root, &mut state.nodes, now);
    let membership = eval(&compiled.root, state, now);
    let next_timer_ms = next_change(&compiled.root, state, now);
    let changed = (membership != state.member).then(|| Change {
        segment_id: compiled.id.clone(),
        kind: if membership {
            ChangeKind::Entered
        } else {
            ChangeKind::Exited
        },
        time_ms: now,
    });
    state.member = membership;
    Outcome {
        membership,
        changed,
        next_timer_ms,
    }
}

pub(crate) fn join_key(properties: &Value, join: &[String]) -> Option<Vec<Value>> {
    join.iter()
        .map(|path| lookup(properties, path).cloned())
        .collect()
}

pub(crate) fn keys_match(left: &Option<Vec<Value>>, right: &Option<Vec<Value>>) -> bool {
    match (left, right) {
        (Some(left), Some(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(a, b)| values_equal(a, b))
        }
        _ => false,
    }
}

fn insert_sorted_capped(times: &mut Vec<i64>, time: i64, dropped: &mut u64) {
    let position = times.partition_point(|held| *held <= time);
    times.insert(position, time);
    if times.len() > MAX_PATTERN_EVENTS {
        times.remove(0);
        *dropped += 1;
    }
}

fn insert_keyed_capped(list: &mut Vec<Keyed>, keyed: Keyed, dropped: &mut u64) {
    let position = list.partition_point(|held| held.time <= keyed.time);
    list.insert(position, keyed);
    if list.len() > MAX_PATTERN_EVENTS {
        list.remove(0);
        *dropped += 1;
    }
}

/// Whether step times (sorted) contain a chain `t1 < t2 < … < tk` with `tk - t1 <= within`.
pub(crate) fn chain_exists(steps: &[Vec<i64>], within: i64) -> bool {
    let Some((first, rest)) = steps.split_first() else {
        return false;
    };
    'starts: for &start in first {
        let mut current = start;
        for times in rest {
            let next = times.partition_point(|time| *time <= current);
            match times.get(next) {
                Some(time) => current = *time,
                None => continue 'starts,
            }
        }
        if current - start <= within {
            return true;
        }
    }
    false
}

fn followed_within(first_time: i64, then_time: i64, within: i64) -> bool {
    first_time <= then_time && then_time < first_time.saturating_add(within)
}

fn update(
    node: &CNode,
    nodes: &mut [NodeState],
    event: &EventView<'_>,
    now: i64,
    seq: u64,
    entry_ms: Option<i64>,
) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => {
            for child in children {
                update(child, nodes, event, now, seq, entry_ms);
            }
        }
        Kind::Not(child) => update(child, nodes, event, now, seq, entry_ms),
        Kind::InSegment { root, .. } => update(root, nodes, event, now, seq, entry_ms),
        Kind::Performed {
            slot,
            matcher,
            spec,
            measure,
            ..
        } => {
            if !matcher.matches(event) {
                return;
            }
            let value = measure
                .property()
                .and_then(|path| lookup(event.properties, path))
                .cloned()
                .unwrap_or(Value::Null);
            if let NodeState::Measure(store) = &mut nodes[*slot] {
                store.insert(
                    spec,
                    Entry {
                        time: event.time_ms,
                        seq,
                        value,
                    },
                    now,
                    entry_ms,
                );
            }
        }
        Kind::FirstLast {
            slot,
            matcher,
            has,
            last,
        } => {
            if !matcher.matches(event) {
                return;
            }
            let NodeState::Extreme { held } = &mut nodes[*slot] else {
                return;
            };
            let replaces = match held {
                None => true,
                Some(current) if *last => event.time_ms >= current.time,
                Some(current) => event.time_ms < current.time,
            };
            if replaces {
                let satisfied = has
                    .iter()
                    .all(|condition| eval_property(condition, event, matcher.zone));
                *held = Some(Extreme {
                    time: event.time_ms,
                    seq,
                    has: satisfied,
                });
            }
        }
        Kind::Sequence {
            slot,
            steps,
            within,
        } => {
            let NodeState::Sequence(sequence) = &mut nodes[*slot] else {
                return;
            };
            if sequence.done {
                return;
            }
            let mut touched = false;
            for (index, step) in steps.iter().enumerate() {
                if step.matches(event) {
                    insert_sorted_capped(
                        &mut sequence.steps[index],
                        event.time_ms,
                        &mut sequence.dropped,
                    );
                    touched = true;
                }
            }
            if touched && chain_exists(&sequence.steps, *within) {
                sequence.done = true;
                sequence.steps.iter_mut().for_each(Vec::clear);
            }
        }
        Kind::NotFollowedBy {
            slot,
            first,
            then,
            within,
            join,
            window,
        } => {
            let NodeState::NotFollowedBy(pattern) = &mut nodes[*slot] else {
                return;
            };
            if then.matches(event) {
                let key = join_key(event.properties, join);
                pattern.pending.retain(|pending| {
                    !(keys_match(&pending.key, &key)
                        && followed_within(pending.time, event.time_ms, *within))
                });
                insert_keyed_capped(
                    &mut pattern.thens,
                    Keyed {
                        time: event.time_ms,
                        key,
                    },
                    &mut pattern.dropped,
                );
            }
            if first.matches(event) {
                let in_range = if window.is_sliding() {
                    window
                        .horizon(now)
                        .is_none_or(|horizon| event.time_ms > horizon)
                } else {
                    window.contains(event.time_ms, now, entry_ms)
                };
                let key = join_key(event.properties, join);
                let followed = pattern.thens.iter().any(|then| {
                    keys_match(&key, &then.key)
                        && followed_within(event.time_ms, then.time, *within)
                });
                if in_range && !followed {
                    insert_keyed_capped(
                        &mut pattern.pending,
                        Keyed {
                            time: event.time_ms,
                            key,
                        },
                        &mut pattern.dropped,
                    );
                }
            }
        }
        Kind::Computed {
            slot, definition, ..
        } => {
            if let (Some(value), NodeState::Computed(store)) =
                (definition.entry_value(event), &mut nodes[*slot])
            {
                store.insert(
                    &definition.spec,
                    Entry {
                        time: event.time_ms,
                        seq,
                        value,
                    },
                    now,
                    entry_ms,
                );
            }
        }
        Kind::Trait(_)
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => {}
    }
}

fn prune(node: &CNode, nodes: &mut [NodeState], now: i64) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => {
            children.iter().for_each(|child| prune(child, nodes, now))
        }
        Kind::Not(child) => prune(child, nodes, now),
        Kind::InSegment { root, .. } => prune(root, nodes, now),
        Kind::Performed { slot, spec, .. } => {
            if let NodeState::Measure(store) = &mut nodes[*slot] {
                store.prune(spec, now);
            }
        }
        Kind::Computed {
            slot, definition, ..
        } => {
            if let NodeState::Computed(store) = &mut nodes[*slot] {
                store.prune(&definition.spec, now);
            }
        }
        Kind::NotFollowedBy { slot, window, .. } => {
            if let (NodeState::NotFollowedBy(pattern), Some(horizon)) =
                (&mut nodes[*slot], window.horizon(now))
            {
                pattern.pending.retain(|pending| pending.time > horizon);
                pattern.thens.retain(|then| then.time > horizon);
            }
        }
        _ => {}
    }
}

pub(crate) fn eval_property(
    condition: &CompiledCondition,
    event: &EventView<'_>,
    zone: crate::time::Zone,
) -> bool {
    condition.eval(
        lookup(event.properties, &condition.path),
        condition.event_zone(zone),
        event.time_ms,
    )
}

pub(crate) fn consent_state(value: Option<&Value>) -> ConsentState {
    match value {
        Some(Value::Bool(true)) => ConsentState::Granted,
        Some(Value::Bool(false)) => ConsentState::Denied,
        Some(Value::String(text)) if text == "granted" || text == "true" => ConsentState::Granted,
        Some(Value::String(text)) if text == "denied" || text == "false" => ConsentState::Denied,
        _ => ConsentState::Unset,
    }
}

pub(crate) fn subscription_state(value: Option<&Value>) -> SubscriptionState {
    match value {
        Some(Value::Bool(true)) => SubscriptionState::Subscribed,
        Some(Value::Bool(false)) => SubscriptionState::Unsubscribed,
        Some(Value::String(text)) if text == "subscribed" => SubscriptionState::Subscribed,
        Some(Value::String(text)) if text == "unsubscribed" => SubscriptionState::Unsubscribed,
        _ => SubscriptionState::Unset,
    }
}

pub(crate) fn trait_condition_value(
    condition: &CompiledCondition,
    traits: &BTreeMap<String, Value>,
    now: i64,
) -> (bool, Option<i64>) {
    let actual = traits.get(&condition.path);
    let zone = condition.tz.resolve(traits.get("timezone"));
    (
        condition.eval(actual, zone, now),
        condition.next_change(actual, zone, now),
    )
}

pub(crate) fn computed_value(
    node: &CNode,
    state: &ProfileState,
    now: i64,
) -> Option<(Value, Option<i64>, bool)> {
    let Kind::Computed {
        slot,
        definition,
        condition,
    } = &node.kind
    else {
        return None;
    };
    let NodeState::Computed(store) = &state.nodes[*slot] else {
        return None;
    };
    let (value, next) = definition.value_and_timer(store, now, state.entry_ms);
    let actual = if value.is_null() { None } else { Some(&value) };
    let result = condition.eval(actual, crate::time::Zone::UTC, now);
    Some((value, next, result))
}

pub(crate) fn eval(node: &CNode, state: &ProfileState, now: i64) -> bool {
    match &node.kind {
        Kind::All(children) => children.iter().all(|child| eval(child, state, now)),
        Kind::Any(children) => children.iter().any(|child| eval(child, state, now)),
        Kind::Not(child) => !eval(child, state, now),
        Kind::InSegment { root, .. } => eval(root, state, now),
        Kind::Trait(condition) => trait_condition_value(condition, &state.traits, now).0,
        Kind::Performed {
            slot,
            spec,
            measure,
            cmp,
            ..
        } => {
            let NodeState::Measure(store) = &state.nodes[*slot] else {
                return false;
            };
            let measured = match measure {
                CMeasure::Distinct(_) => {
                    Some(store.distinct_count(spec, now, state.entry_ms) as f64)
                }
                _ => measure.of(&store.summary(spec, now, state.entry_ms)),
            };
            measured.is_some_and(|measured| cmp.operator.apply(measured, cmp.value))
        }
        Kind::FirstLast { slot, .. } => matches!(
            &state.nodes[*slot],
            NodeState::Extreme {
                held: Some(Extreme { has: true, .. })
            }
        ),
        Kind::Sequence { slot, .. } => matches!(
            &state.nodes[*slot],
            NodeState::Sequence(SequenceState { done: true, .. })
        ),
        Kind::NotFollowedBy {
            slot,
            within,
            window,
            ..
        } => {
            let NodeState::NotFollowedBy(pattern) = &state.nodes[*slot] else {
                return false;
            };
            pattern.pending.iter().any(|pending| {
                window.contains(pending.time, now, state.entry_ms)
                    && now >= pending.time.saturating_add(*within)
            })
        }
        Kind::Computed { .. } => {
            computed_value(node, state, now).is_some_and(|(_, _, result)| result)
        }
        Kind::Consent {
            purpose,
            state: wanted,
        } => consent_state(state.traits.get(&format!("consent.{purpose}"))) == *wanted,
        Kind::Subscription {
            group,
            state: wanted,
        } => subscription_state(state.traits.get(&format!("subscriptions.{group}"))) == *wanted,
        Kind::RandomBucket { salt, from, to } => {
            let position = bucket(salt, &state.profile_id);
            *from <= position && position < *to
        }
    }
}

fn next_change(node: &CNode, state: &ProfileState, now: i64) -> Option<i64> {
    let candidate = match &node.kind {
        Kind::All(children) | Kind::Any(children) => children
            .iter()
            .filter_map(|child| next_change(child, state, now))
            .min(),
        Kind::Not(child) => next_change(child, state, now),
        Kind::InSegment { root, .. } => next_change(root, state, now),
        Kind::Trait(condition) => trait_condition_value(condition, &state.traits, now).1,
        Kind::Performed { slot, spec, .. } => match &state.nodes[*slot] {
            NodeState::Measure(store) => store.next_change(spec, now),
            _ => None,
        },
        Kind::NotFollowedBy {
            slot,
            within,
            window,
            ..
        } => match &state.nodes[*slot] {
            NodeState::NotFollowedBy(pattern) => pattern
                .pending
                .iter()
                .flat_map(|pending| {
                    [
                        Some(pending.time.saturating_add(*within)),
                        window.next_change_for(pending.time, now),
                    ]
                })
                .flatten()
                .filter(|time| *time > now)
                .min(),
            _ => None,
        },
        Kind::Computed { .. } => computed_value(node, state, now).and_then(|(_, next, _)| next),
        Kind::FirstLast { .. }
        | Kind::Sequence { .. }
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => None,
    };
    candidate.filter(|time| *time > now)
}
