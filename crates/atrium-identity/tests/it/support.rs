//! Shared helpers: feed events into a fresh store and inspect the resulting partition.

use std::collections::{BTreeMap, BTreeSet};

use atrium_identity::{
    CompiledRules, EventRef, Identifier, IdentityRules, MemoryIdentityStore, ProfileId, Resolution,
    resolve,
};
use serde_json::Value;

pub const BASE_MS: i64 = 1_700_000_000_000;
pub const DAY_MS: i64 = 86_400_000;

/// Event time of the event at `offset`: `BASE_MS + offset` seconds, or, if the event has a
/// test-only `_day` field, that many days after `BASE_MS` (plus `offset` seconds).
pub fn event_time(offset: u64, event: &Value) -> i64 {
    let day = event.get("_day").and_then(Value::as_i64).unwrap_or(0);
    BASE_MS + day * DAY_MS + offset as i64 * 1000
}

/// Resolves `events` in order (offset = index) into `store`, checking store invariants
/// after every event.
pub fn feed(
    store: &mut MemoryIdentityStore,
    rules: &CompiledRules,
    events: &[Value],
    first_offset: u64,
) -> Vec<Resolution> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let offset = first_offset + i as u64;
            let message_id = format!("m{offset}");
            let resolution = resolve(
                store,
                rules,
                EventRef {
                    offset,
                    message_id: &message_id,
                    event_time_ms: event_time(offset, event),
                    event,
                },
            )
            .expect("resolve");
            assert_consistent(store);
            resolution
        })
        .collect()
}

pub fn run(rules: &CompiledRules, events: &[Value]) -> (MemoryIdentityStore, Vec<Resolution>) {
    let mut store = MemoryIdentityStore::new();
    let resolutions = feed(&mut store, rules, events, 0);
    (store, resolutions)
}

/// The identifiers of each live profile, as sorted `kind:value` strings; profiles sorted.
pub fn partition(store: &MemoryIdentityStore) -> BTreeSet<BTreeSet<String>> {
    store
        .graphs()
        .map(|g| g.ids().map(ToString::to_string).collect())
        .collect()
}

pub fn expected(groups: &[&[&str]]) -> BTreeSet<BTreeSet<String>> {
    groups
        .iter()
        .map(|g| g.iter().map(|s| (*s).to_string()).collect())
        .collect()
}

/// Feeds `events` into a fresh store with `rules` and asserts the partition.
pub fn check_with(
    rules: &IdentityRules,
    events: &[Value],
    groups: &[&[&str]],
) -> (MemoryIdentityStore, Vec<Resolution>) {
    let rules = rules.compile().expect("rules compile");
    let (store, resolutions) = run(&rules, events);
    assert_eq!(
        partition(&store),
        expected(groups),
        "resolutions: {resolutions:#?}"
    );
    (store, resolutions)
}

/// [`check_with`] default rules.
pub fn check(events: &[Value], groups: &[&[&str]]) -> (MemoryIdentityStore, Vec<Resolution>) {
    check_with(&IdentityRules::default(), events, groups)
}

pub fn id(s: &str) -> Identifier {
    s.parse().expect("kind:value")
}

/// The live profile holding `identifier`.
pub fn profile_of(store: &MemoryIdentityStore, identifier: &str) -> ProfileId {
    let identifier = id(identifier);
    store
        .graphs()
        .find(|g| g.contains(&identifier))
        .map(|g| g.profile.clone())
        .unwrap_or_else(|| panic!("{identifier} is in no profile"))
}

/// Store invariants: graphs sorted and disjoint, every graph identifier bound to its graph,
/// every binding pointing at a live graph holding it, redirects pointing at live graphs,
/// merged_from consistent with the redirects.
pub fn assert_consistent(store: &MemoryIdentityStore) {
    let mut owner: BTreeMap<&Identifier, &ProfileId> = BTreeMap::new();
    for g in store.graphs() {
        assert!(
            g.identifiers.windows(2).all(|w| w[0].id < w[1].id),
            "{} identifiers not sorted/unique",
            g.profile
        );
        assert!(g.merged_from.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.merged_from.len(), g.merge_count as usize, "{}", g.profile);
        for r in &g.identifiers {
            assert!(
                owner.insert(&r.id, &g.profile).is_none(),
                "{} in two profiles",
                r.id
            );
        }
        for m in &g.merged_from {
            assert_eq!(
                store.redirects().find(|(f, _)| *f == m).map(|(_, t)| t),
                Some(&g.profile)
            );
        }
    }
    let bindings: BTreeMap<&Identifier, &ProfileId> = store.bindings().collect();
    assert_eq!(bindings, owner, "bindings differ from graph contents");
    for (from, to) in store.redirects() {
        assert!(
            store.graphs().any(|g| &g.profile == to),
            "{from} redirects to dead {to}"
        );
        assert!(
            !store.graphs().any(|g| &g.profile == from),
            "{from} redirected but alive"
        );
    }
}
