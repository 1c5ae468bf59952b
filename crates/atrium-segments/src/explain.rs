//! Explanations: each node's value at `now` and the facts behind it, from the stored state.

use serde::{Deserialize, Serialize};

use crate::incremental::{
    NodeState, ProfileState, computed_value, consent_state, eval, subscription_state,
    trait_condition_value,
};
use crate::time::format_ms;
use crate::validate::{CNode, Compiled, Kind};

/// One node of an explanation tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainNode {
    /// JSON pointer of the node in the definition.
    pub path: String,
    /// What the node tests, in words.
    pub node: String,
    pub value: bool,
    /// The facts the value rests on.
    pub facts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ExplainNode>,
}

/// Explains membership at `now_ms` from the profile's stored state.
pub fn explain(compiled: &Compiled, state: &ProfileState, now_ms: i64) -> ExplainNode {
    explain_node(&compiled.root, state, now_ms.max(state.last_now_ms))
}

fn explain_node(node: &CNode, state: &ProfileState, now: i64) -> ExplainNode {
    let value = eval(node, state, now);
    let mut facts = Vec::new();
    let mut children = Vec::new();
    let description = match &node.kind {
        Kind::All(of) | Kind::Any(of) => {
            children = of
                .iter()
                .map(|child| explain_node(child, state, now))
                .collect();
            let true_count = children.iter().filter(|child| child.value).count();
            facts.push(format!("{true_count} of {} children true", children.len()));
            if matches!(node.kind, Kind::All(_)) {
                "all of".to_string()
            } else {
                "any of".to_string()
            }
        }
        Kind::Not(child) => {
            children = vec![explain_node(child, state, now)];
            "not".to_string()
        }
        Kind::InSegment { id, root } => {
            children = vec![explain_node(root, state, now)];
            format!("in segment {id:?}")
        }
        Kind::Trait(condition) => {
            let (_, next) = trait_condition_value(condition, &state.traits, now);
            match state.traits.get(&condition.path) {
                Some(actual) => facts.push(format!("trait {} = {actual}", condition.path)),
                None => facts.push(format!("trait {} is missing", condition.path)),
            }
            if condition.uses_zone() {
                facts.push(format!(
                    "time zone {:?}",
                    condition.tz.resolve(state.traits.get("timezone"))
                ));
            }
            if let Some(next) = next {
                facts.push(format!("can change at {}", format_ms(next)));
            }
            format!("trait {}", condition.describe())
        }
        Kind::Performed {
            slot,
            matcher,
            spec,
            measure,
            cmp,
        } => {
            if let NodeState::Measure(store) = &state.nodes[*slot] {
                let summary = store.summary(spec, now, state.entry_ms);
                match measure.of(&summary) {
                    Some(measured) => facts.push(format!(
                        "{} = {measured} over {} matching events",
                        measure.describe(),
                        summary.count
                    )),
                    None => facts.push(format!(
                        "{} has no value ({} matching events)",
                        measure.describe(),
                        summary.count
                    )),
                }
                if let Some(latest) = summary.max_time {
                    facts.push(format!("latest counted event at {}", format_ms(latest)));
                }
                if let Some(next) = store.next_change(spec, now) {
                    facts.push(format!("window changes at {}", format_ms(next)));
                }
                if store.dropped() > 0 {
                    facts.push(format!(
                        "state cap reached: {} events dropped, result may be inexact",
                        store.dropped()
                    ));
                }
            }
            format!(
                "performed {} {} {} over {}",
                matcher.describe(),
                measure.describe(),
                cmp_text(cmp),
                spec.window.describe()
            )
        }
        Kind::FirstLast {
            slot,
            matcher,
            has,
            last,
        } => {
            if let NodeState::Extreme { held } = &state.nodes[*slot] {
                match held {
                    Some(extreme) => facts.push(format!(
                        "{} matching event at {} {} the conditions",
                        if *last { "latest" } else { "earliest" },
                        format_ms(extreme.time),
                        if extreme.has {
                            "meets"
                        } else {
                            "does not meet"
                        }
                    )),
                    None => facts.push("no matching event".to_string()),
                }
            }
            let conditions: Vec<String> =
                has.iter().map(|condition| condition.describe()).collect();
            format!(
                "{} {} has [{}]",
                if *last { "last" } else { "first" },
                matcher.describe(),
                conditions.join(", ")
            )
        }
        Kind::Sequence {
            slot,
            steps,
            within,
        } => {
            if let NodeState::Sequence(sequence) = &state.nodes[*slot] {
                if sequence.done {
                    facts.push("sequence completed".to_string());
                } else {
                    let counts: Vec<String> = sequence
                        .steps
                        .iter()
                        .map(|times| times.len().to_string())
                        .collect();
                    facts.push(format!("events held per step: [{}]", counts.join(", ")));
                }
            }
            let names: Vec<String> = steps.iter().map(|step| step.describe()).collect();
            format!(
                "sequence {} within {}",
                names.join(" then "),
                crate::store::describe_ms(*within)
            )
        }
        Kind::NotFollowedBy {
            slot,
            first,
            then,
            within,
            join,
            window,
        } => {
            if let NodeState::NotFollowedBy(pattern) = &state.nodes[*slot] {
                facts.push(format!(
                    "{} unfollowed `first` events held",
                    pattern.pending.len()
                ));
                let abandoned: Vec<String> = pattern
                    .pending
                    .iter()
                    .filter(|pending| {
                        window.contains(pending.time, now, state.entry_ms)
                            && now >= pending.time + within
                    })
                    .map(|pending| format!("{} (key {:?})", format_ms(pending.time), pending.key))
                    .collect();
                if !abandoned.is_empty() {
                    facts.push(format!("not followed: {}", abandoned.join(", ")));
                }
            }
            format!(
                "{} not followed by {} within {} joined on [{}] over {}",
                first.describe(),
                then.describe(),
                crate::store::describe_ms(*within),
                join.join(", "),
                window.describe()
            )
        }
        Kind::Computed {
            definition,
            condition,
            ..
        } => {
            if let Some((computed, next, _)) = computed_value(node, state, now) {
                facts.push(format!("computed trait {} = {computed}", definition.id));
                if let Some(next) = next {
                    facts.push(format!("can change at {}", format_ms(next)));
                }
            }
            format!("computed trait {}", condition.describe())
        }
        Kind::Consent {
            purpose,
            state: wanted,
        } => {
            let held = consent_state(state.traits.get(&format!("consent.{purpose}")));
            facts.push(format!("consent for {purpose} is {held:?}"));
            format!("consent {purpose} is {wanted:?}")
        }
        Kind::Subscription {
            group,
            state: wanted,
        } => {
            let held = subscription_state(state.traits.get(&format!("subscriptions.{group}")));
            facts.push(format!("subscription to {group} is {held:?}"));
            format!("subscription {group} is {wanted:?}")
        }
        Kind::RandomBucket { salt, from, to } => {
            facts.push(format!("bucket {}", crate::bucket(salt, &state.profile_id)));
            format!("random bucket {salt:?} in [{from}, {to})")
        }
    };
    ExplainNode {
        path: node.path.clone(),
        node: description,
        value,
        facts,
        children,
    }
}

fn cmp_text(cmp: &crate::model::Comparison) -> String {
    format!("{} {}", cmp.operator.symbol(), cmp.value)
}
