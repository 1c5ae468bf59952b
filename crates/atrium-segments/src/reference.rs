//! The reference evaluator: recomputes membership from the full history, with no state and no
//! shortcuts. It is the oracle the incremental evaluator is tested against (and the role the
//! SQL compilation will share).

use serde_json::{Map, Value};

use crate::EventView;
use crate::condition::lookup_trait;
use crate::incremental::{consent_state, eval_property, join_key, keys_match, subscription_state};
use crate::store::{Entry, Summary};
use crate::validate::{CNode, Compiled, Kind};

/// What the reference evaluator knows about a profile besides its events.
#[derive(Debug, Clone, Copy)]
pub struct ProfileFacts<'a> {
    pub profile_id: &'a str,
    pub traits: &'a Map<String, Value>,
    /// Entry time for `since_entry` windows.
    pub entry_ms: Option<i64>,
}

/// Membership at `now_ms` given every event of the profile, in arrival order.
pub fn evaluate_from_history(
    compiled: &Compiled,
    facts: &ProfileFacts<'_>,
    events: &[EventView<'_>],
    now_ms: i64,
) -> bool {
    evaluate_node(&compiled.root, facts, events, now_ms)
}

fn evaluate_node(
    node: &CNode,
    facts: &ProfileFacts<'_>,
    events: &[EventView<'_>],
    now: i64,
) -> bool {
    match &node.kind {
        Kind::All(children) => children
            .iter()
            .all(|child| evaluate_node(child, facts, events, now)),
        Kind::Any(children) => children
            .iter()
            .any(|child| evaluate_node(child, facts, events, now)),
        Kind::Not(child) => !evaluate_node(child, facts, events, now),
        Kind::InSegment { root, .. } => evaluate_node(root, facts, events, now),
        Kind::Trait(condition) => {
            let zone = condition.tz.resolve(lookup_trait(facts.traits, "timezone"));
            condition.eval(lookup_trait(facts.traits, &condition.path), zone, now)
        }
        Kind::Performed {
            matcher,
            spec,
            measure,
            cmp,
            ..
        } => {
            let mut summary = Summary::default();
            for (seq, event) in events.iter().enumerate() {
                if matcher.matches(event)
                    && spec.window.contains(event.time_ms, now, facts.entry_ms)
                {
                    let value = measure
                        .property()
                        .and_then(|path| crate::condition::lookup(event.properties, path))
                        .cloned()
                        .unwrap_or(Value::Null);
                    summary.add(
                        &Entry {
                            time: event.time_ms,
                            seq: seq as u64,
                            value,
                        },
                        spec.tracks,
                    );
                }
            }
            measure
                .of(&summary)
                .is_some_and(|measured| cmp.operator.apply(measured, cmp.value))
        }
        Kind::FirstLast {
            matcher, has, last, ..
        } => {
            let mut chosen: Option<&EventView<'_>> = None;
            for event in events.iter().filter(|event| matcher.matches(event)) {
                let replaces = match chosen {
                    None => true,
                    Some(current) if *last => event.time_ms >= current.time_ms,
                    Some(current) => event.time_ms < current.time_ms,
                };
                if replaces {
                    chosen = Some(event);
                }
            }
            chosen.is_some_and(|event| {
                has.iter()
                    .all(|condition| eval_property(condition, event, matcher.zone))
            })
        }
        Kind::Sequence { steps, within, .. } => {
            // For each candidate start, greedily take the earliest later event for each step.
            events
                .iter()
                .filter(|event| steps[0].matches(event))
                .any(|start| {
                    let mut current = start.time_ms;
                    for step in &steps[1..] {
                        let next = events
                            .iter()
                            .filter(|event| step.matches(event) && event.time_ms > current)
                            .map(|event| event.time_ms)
                            .min();
                        match next {
                            Some(time) => current = time,
                            None => return false,
                        }
                    }
                    current - start.time_ms <= *within
                })
        }
        Kind::NotFollowedBy {
            first,
            then,
            within,
            join,
            window,
            ..
        } => events.iter().any(|candidate| {
            if !first.matches(candidate)
                || !window.contains(candidate.time_ms, now, facts.entry_ms)
                || now < candidate.time_ms.saturating_add(*within)
            {
                return false;
            }
            let key = join_key(candidate.properties, join);
            !events.iter().any(|follow| {
                then.matches(follow)
                    && keys_match(&key, &join_key(follow.properties, join))
                    && candidate.time_ms <= follow.time_ms
                    && follow.time_ms < candidate.time_ms.saturating_add(*within)
            })
        }),
        Kind::Computed {
            definition,
            condition,
            ..
        } => {
            let value = definition.compute_from_history(events, facts.entry_ms, now);
            let actual = if value.is_null() { None } else { Some(&value) };
            condition.eval(actual, crate::time::Zone::UTC, now)
        }
        Kind::Consent { purpose, state } => {
            consent_state(lookup_trait(facts.traits, &format!("consent.{purpose}"))) == *state
        }
        Kind::Subscription { group, state } => {
            subscription_state(lookup_trait(
                facts.traits,
                &format!("subscriptions.{group}"),
            )) == *state
        }
        Kind::RandomBucket { salt, from, to } => {
            let position = crate::bucket(salt, facts.profile_id);
            *from <= position && position < *to
        }
    }
}
