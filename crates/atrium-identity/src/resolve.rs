//! Flat matching with blocked values, limits, priority demotion and merge caps.
//! The algorithm is described in the crate docs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::extract::{extract_raw, normalize};
use crate::{
    CompiledRules, Identifier, IdentifierRecord, IdentityStore, LimitRule, MergeLogEntry,
    ProfileGraph, ProfileId,
};

/// Redirect chains are compressed on every merge, so one hop is the norm; a longer chain
/// than this is treated as a corrupt store.
const MAX_REDIRECT_HOPS: usize = 64;

/// The event being resolved, with its position in the log.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    pub offset: u64,
    pub message_id: &'a str,
    /// Event time (after clock-skew correction); used for limit windows and first-seen.
    pub event_time_ms: i64,
    pub event: &'a Value,
}

/// An identifier of the event that was dropped from matching, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demotion {
    pub identifier: Identifier,
    pub reason: String,
}

/// What resolving one event did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The profile the event belongs to; `None` only when the event carries no usable
    /// identifier (or every one of them was demoted, which needs a limit of 0).
    pub profile: Option<ProfileId>,
    /// Whether this event created `profile`.
    pub created: bool,
    /// Identifiers newly bound to `profile` by this event, in priority order.
    pub added: Vec<Identifier>,
    /// Profiles merged into `profile` by this event (the caller merges their derived state).
    pub merged: Vec<ProfileId>,
    /// Identifiers dropped from matching, with a human reason.
    pub demoted: Vec<Demotion>,
    /// Identifiers whose values are blocked.
    pub blocked: Vec<Identifier>,
}

/// Resolution failure: the store failed, or its content breaks the resolver's invariants.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError<E: std::error::Error + Send + Sync + 'static> {
    #[error("identity store error: {0}")]
    Store(#[source] E),
    #[error("identity store is inconsistent: {0}")]
    Corrupt(String),
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ResolveError<E> {
    fn from(e: E) -> Self {
        ResolveError::Store(e)
    }
}

/// Follows redirects from `profile` to the live profile id.
fn follow<S: IdentityStore>(
    store: &S,
    profile: ProfileId,
) -> Result<ProfileId, ResolveError<S::Error>> {
    let mut current = profile;
    for _ in 0..MAX_REDIRECT_HOPS {
        match store.redirect(&current)? {
            Some(next) if next != current => current = next,
            _ => return Ok(current),
        }
    }
    Err(ResolveError::Corrupt(format!(
        "redirect chain from {current} longer than {MAX_REDIRECT_HOPS} hops"
    )))
}

/// Resolves a profile reference: a profile id (following redirects; `None` if no such
/// profile) or `kind:value` (the value is normalized for `email` and `phone`).
pub fn lookup<S: IdentityStore>(
    store: &S,
    reference: &str,
) -> Result<Option<ProfileId>, ResolveError<S::Error>> {
    let reference = reference.trim();
    if let Some((kind, value)) = reference.split_once(':') {
        let Some(value) = normalize(kind, value) else {
            return Ok(None);
        };
        return match store.profile_for(&Identifier::new(kind, value))? {
            Some(p) => Ok(Some(follow(store, p)?)),
            None => Ok(None),
        };
    }
    let profile = follow(store, ProfileId(reference.to_string()))?;
    Ok(store.graph(&profile)?.map(|g| g.profile))
}

/// Resolves one event against the store: finds, creates or merges its profile and binds its
/// identifiers. See the crate docs for the algorithm.
pub fn resolve<S: IdentityStore>(
    store: &mut S,
    rules: &CompiledRules,
    event: EventRef<'_>,
) -> Result<Resolution, ResolveError<S::Error>> {
    let raw = extract_raw(event.event, rules);
    let mut identifiers = raw.extracted.identifiers;
    let mut blocked = raw.extracted.blocked;
    if let Some(previous) = raw.previous_id {
        let as_user = Identifier::new("user_id", previous.as_str());
        let id = if store.profile_for(&as_user)?.is_some() {
            as_user
        } else {
            Identifier::new("anonymous_id", previous)
        };
        if rules.is_blocked(&id) {
            blocked.push(id);
        } else {
            identifiers.push(id);
        }
        rules.sort_by_priority(&mut identifiers);
        rules.sort_by_priority(&mut blocked);
    }
    let mut resolution = Resolution {
        blocked,
        ..Resolution::default()
    };

    // Bound profiles of the event's identifiers (read once; nothing changes until we apply).
    let mut bound_profiles: Vec<Option<ProfileId>> = Vec::with_capacity(identifiers.len());
    for id in &identifiers {
        bound_profiles.push(match store.profile_for(id)? {
            Some(p) => Some(follow(store, p)?),
            None => None,
        });
    }

    // Fast path, the common case of a known customer: every identifier is already bound to one
    // profile. Nothing can be added, merged or over a limit, so the graph need not be read.
    if let Some(Some(first)) = bound_profiles.first()
        && bound_profiles
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| p == first))
    {
        if !store.has_graph(first)? {
            return Err(ResolveError::Corrupt(format!(
                "identifiers are bound to {first}, which has no graph"
            )));
        }
        resolution.profile = Some(first.clone());
        return Ok(resolution);
    }
    let bound: BTreeMap<Identifier, ProfileId> = identifiers
        .iter()
        .zip(bound_profiles)
        .filter_map(|(id, p)| p.map(|p| (id.clone(), p)))
        .collect();

    let mut graphs: BTreeMap<ProfileId, ProfileGraph> = BTreeMap::new();
    for (id, p) in &bound {
        if !graphs.contains_key(p) {
            let graph = store.graph(p)?.ok_or_else(|| {
                ResolveError::Corrupt(format!("{id} is bound to {p}, which has no graph"))
            })?;
            graphs.insert(p.clone(), graph);
        }
    }

    let ctx = Ctx {
        rules,
        event_time_ms: event.event_time_ms,
        bound: &bound,
        graphs: &graphs,
    };
    let mut active = identifiers;
    while let Some(violation) = ctx.violation(&active) {
        // `contributors` is never empty when a violation is found; `active` is a fallback.
        let victim = violation
            .contributors
            .iter()
            .max_by(|a, b| ctx.demotion_order(a, b))
            .or_else(|| active.iter().max_by(|a, b| ctx.demotion_order(a, b)))
            .cloned();
        let Some(victim) = victim else {
            break;
        };
        let reason = ctx.reason(&violation.kind, &victim, &active);
        active.retain(|id| *id != victim);
        resolution.demoted.push(Demotion {
            identifier: victim,
            reason,
        });
    }
    if active.is_empty() {
        return Ok(resolution);
    }

    let matched = ctx.matched(&active);
    let new_ids: Vec<Identifier> = active
        .iter()
        .filter(|id| !bound.contains_key(*id))
        .cloned()
        .collect();
    let new_record = |id: &Identifier| IdentifierRecord {
        id: id.clone(),
        first_seen_ms: event.event_time_ms,
        first_offset: event.offset,
    };

    let Some((survivor, others)) = matched.split_first() else {
        // No match: a new profile holding the event's identifiers.
        let profile = new_profile_id(store, event.offset)?;
        let mut records: Vec<IdentifierRecord> = new_ids.iter().map(new_record).collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let graph = ProfileGraph {
            profile: profile.clone(),
            created_offset: event.offset,
            identifiers: records,
            merged_from: Vec::new(),
            merge_count: 0,
        };
        store.put_graph(&graph)?;
        for id in &new_ids {
            store.bind(id, &profile)?;
        }
        resolution.profile = Some(profile);
        resolution.created = true;
        resolution.added = new_ids;
        return Ok(resolution);
    };

    let mut graph = graphs[*survivor].clone();
    let mut records: BTreeMap<Identifier, IdentifierRecord> = graph
        .identifiers
        .drain(..)
        .map(|r| (r.id.clone(), r))
        .collect();
    let mut merged_from: BTreeSet<ProfileId> = graph.merged_from.drain(..).collect();
    if !others.is_empty() {
        for other in others {
            let other_graph = &graphs[*other];
            for record in &other_graph.identifiers {
                store.bind(&record.id, survivor)?;
                records
                    .entry(record.id.clone())
                    .and_modify(|r| {
                        if (record.first_seen_ms, record.first_offset)
                            < (r.first_seen_ms, r.first_offset)
                        {
                            *r = record.clone();
                        }
                    })
                    .or_insert_with(|| record.clone());
            }
            // Redirects point straight at the survivor (chains stay one hop long).
            store.set_redirect(other, survivor)?;
            for earlier in &other_graph.merged_from {
                store.set_redirect(earlier, survivor)?;
            }
            store.remove_graph(other)?;
            merged_from.insert((*other).clone());
            merged_from.extend(other_graph.merged_from.iter().cloned());
            graph.merge_count = graph
                .merge_count
                .saturating_add(other_graph.merge_count)
                .saturating_add(1);
        }
        let entry = MergeLogEntry {
            offset: event.offset,
            message_id: event.message_id.to_string(),
            event_time_ms: event.event_time_ms,
            survivor: (*survivor).clone(),
            merged: others.iter().map(|p| (*p).clone()).collect(),
            linking_identifiers: active
                .iter()
                .filter(|id| bound.contains_key(*id))
                .cloned()
                .collect(),
            reason: ctx.merge_reason(&active, &matched),
        };
        store.append_merge_log(&entry)?;
        resolution.merged = entry.merged;
    }
    for id in &new_ids {
        store.bind(id, survivor)?;
        records.insert(id.clone(), new_record(id));
    }
    if !others.is_empty() || !new_ids.is_empty() {
        graph.identifiers = records.into_values().collect();
        graph.merged_from = merged_from.into_iter().collect();
        store.put_graph(&graph)?;
    }
    resolution.profile = Some((*survivor).clone());
    resolution.added = new_ids;
    Ok(resolution)
}

/// `ProfileId::for_new_profile(offset)`, unless the store already uses that id (only
/// possible with a corrupt or foreign log); then the next deterministic candidate.
fn new_profile_id<S: IdentityStore>(
    store: &S,
    offset: u64,
) -> Result<ProfileId, ResolveError<S::Error>> {
    for attempt in 0..MAX_REDIRECT_HOPS as u64 {
        let candidate = ProfileId::derive(offset, attempt);
        if store.graph(&candidate)?.is_none() && store.redirect(&candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(ResolveError::Corrupt(format!(
        "no free profile id for offset {offset}"
    )))
}

/// Which rule a candidate match would break.
enum ViolationKind {
    Limit { kind: String, rule: LimitRule },
    MergeCap { merges: u64 },
    IdentifierCap { total: usize },
}

struct Violation {
    kind: ViolationKind,
    /// The event identifiers whose demotion can resolve the violation.
    contributors: Vec<Identifier>,
}

/// Read-only view of the event's matches, used while demoting.
struct Ctx<'a> {
    rules: &'a CompiledRules,
    event_time_ms: i64,
    bound: &'a BTreeMap<Identifier, ProfileId>,
    graphs: &'a BTreeMap<ProfileId, ProfileGraph>,
}

impl Ctx<'_> {
    fn is_new(&self, id: &Identifier) -> bool {
        !self.bound.contains_key(id)
    }

    /// Priority order for demotion: the *greatest* identifier is demoted first. Lower
    /// priority (rank, then kind) is greater; within one kind an identifier that is not yet
    /// bound is greater than a bound one (so a match is kept over a newcomer); then value.
    fn demotion_order(&self, a: &Identifier, b: &Identifier) -> std::cmp::Ordering {
        let key = |id: &Identifier| (self.rules.rank(&id.kind), id.kind.clone(), self.is_new(id));
        key(a).cmp(&key(b)).then_with(|| a.value.cmp(&b.value))
    }

    /// The live profiles matched by `active`, survivor first (smallest `created_offset`).
    fn matched(&self, active: &[Identifier]) -> Vec<&ProfileId> {
        let set: BTreeSet<&ProfileId> = active.iter().filter_map(|id| self.bound.get(id)).collect();
        let mut matched: Vec<&ProfileId> = set.into_iter().collect();
        matched.sort_by_key(|p| (self.graphs[*p].created_offset, *p));
        matched
    }

    /// The anchor: the profile of the event's highest-priority identifier, if bound.
    /// Identifiers bound to it never contribute to a violation (dropping them cannot help).
    fn anchor(&self, active: &[Identifier]) -> Option<&ProfileId> {
        active
            .iter()
            .min_by(|a, b| self.demotion_order(a, b))
            .and_then(|id| self.bound.get(id))
    }

    /// Records of `kind` in `graph` that count toward `rule` at the event's time.
    fn counted<'g>(
        &self,
        graph: &'g ProfileGraph,
        kind: &str,
        rule: &LimitRule,
    ) -> impl Iterator<Item = &'g IdentifierRecord> {
        let cutoff = rule.cutoff_ms(self.event_time_ms);
        let kind = kind.to_string();
        graph
            .identifiers
            .iter()
            .filter(move |r| r.id.kind == kind && r.first_seen_ms >= cutoff)
    }

    /// The first rule (kinds by priority, then the merge cap, then the identifier cap) that
    /// matching with `active` would break.
    fn violation(&self, active: &[Identifier]) -> Option<Violation> {
        let matched = self.matched(active);
        let anchor = self.anchor(active);
        let new_ids: Vec<&Identifier> = active.iter().filter(|id| self.is_new(id)).collect();
        let linkers = |pred: &dyn Fn(&ProfileGraph) -> bool| -> Vec<Identifier> {
            active
                .iter()
                .filter(|id| {
                    self.bound
                        .get(*id)
                        .is_some_and(|p| Some(p) != anchor && pred(&self.graphs[p]))
                })
                .cloned()
                .collect()
        };

        let mut kinds: Vec<&str> = matched
            .iter()
            .flat_map(|p| self.graphs[*p].ids().map(|id| id.kind.as_str()))
            .chain(new_ids.iter().map(|id| id.kind.as_str()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        kinds.sort_by_key(|k| (self.rules.rank(k), *k));
        for kind in kinds {
            let rule = self.rules.limit(kind);
            let per_profile: Vec<usize> = matched
                .iter()
                .map(|p| self.counted(&self.graphs[*p], kind, &rule).count())
                .collect();
            let new_of_kind: Vec<Identifier> = new_ids
                .iter()
                .filter(|id| id.kind == kind)
                .map(|id| (*id).clone())
                .collect();
            let total = per_profile.iter().sum::<usize>() + new_of_kind.len();
            let max_single = per_profile.iter().copied().max().unwrap_or(0);
            if total > rule.max as usize && total > max_single {
                let mut contributors = new_of_kind;
                contributors.extend(linkers(&|g: &ProfileGraph| {
                    self.counted(g, kind, &rule).next().is_some()
                }));
                return Some(Violation {
                    kind: ViolationKind::Limit {
                        kind: kind.to_string(),
                        rule,
                    },
                    contributors,
                });
            }
        }

        if matched.len() >= 2 {
            let merges: u64 = matched
                .iter()
                .map(|p| u64::from(self.graphs[*p].merge_count))
                .sum::<u64>()
                + (matched.len() as u64 - 1);
            if merges > u64::from(self.rules.max_merges()) {
                return Some(Violation {
                    kind: ViolationKind::MergeCap { merges },
                    contributors: linkers(&|_| true),
                });
            }
        }

        let sizes: Vec<usize> = matched
            .iter()
            .map(|p| self.graphs[*p].identifiers.len())
            .collect();
        let total = sizes.iter().sum::<usize>() + new_ids.len();
        let max_single = sizes.iter().copied().max().unwrap_or(0);
        if total > self.rules.max_identifiers() && total > max_single {
            let contributors = if new_ids.is_empty() {
                linkers(&|_| true)
            } else {
                new_ids.into_iter().cloned().collect()
            };
            return Some(Violation {
                kind: ViolationKind::IdentifierCap { total },
                contributors,
            });
        }
        None
    }

    /// Why `victim` is demoted, e.g. `user_id limit 1 reached on p_… (has user_id:abc123)`.
    fn reason(
        &self,
        violation: &ViolationKind,
        victim: &Identifier,
        active: &[Identifier],
    ) -> String {
        let matched = self.matched(active);
        match violation {
            ViolationKind::Limit { kind, rule } => {
                let limit = match rule.window_days {
                    Some(days) => format!("{kind} limit {} per {days} days", rule.max),
                    None => format!("{kind} limit {}", rule.max),
                };
                // Name the profile the victim would have linked, else the one already
                // holding values of the kind.
                let holder =
                    self.bound
                        .get(victim)
                        .filter(|p| self.counted(&self.graphs[*p], kind, rule).next().is_some())
                        .or_else(|| {
                            matched.iter().copied().find(|p| {
                                self.counted(&self.graphs[*p], kind, rule).next().is_some()
                            })
                        });
                match holder {
                    Some(p) => {
                        let held: Vec<String> = self
                            .counted(&self.graphs[p], kind, rule)
                            .map(|r| r.id.to_string())
                            .collect();
                        format!("{limit} reached on {p} (has {})", summarize(&held))
                    }
                    None => {
                        let on_event: Vec<String> = active
                            .iter()
                            .filter(|id| id.kind == *kind)
                            .map(ToString::to_string)
                            .collect();
                        format!(
                            "{limit} exceeded by the event itself ({})",
                            summarize(&on_event)
                        )
                    }
                }
            }
            ViolationKind::MergeCap { merges } => {
                let names: Vec<String> = matched.iter().map(|p| p.to_string()).collect();
                format!(
                    "merge cap {} reached: merging {} would make {merges} merges",
                    self.rules.max_merges(),
                    names.join(", ")
                )
            }
            ViolationKind::IdentifierCap { total } => {
                let names: Vec<String> = matched.iter().map(|p| p.to_string()).collect();
                let target = if names.is_empty() {
                    "a new profile".to_string()
                } else {
                    names.join(" + ")
                };
                format!(
                    "identifier cap {} reached: {target} would hold {total} identifiers",
                    self.rules.max_identifiers()
                )
            }
        }
    }

    /// `event linked user_id:u1 (p_a) and anonymous_id:a1 (p_b)`: per matched profile, the
    /// event's highest-priority identifier bound to it.
    fn merge_reason(&self, active: &[Identifier], matched: &[&ProfileId]) -> String {
        let parts: Vec<String> = matched
            .iter()
            .filter_map(|p| {
                active
                    .iter()
                    .find(|id| self.bound.get(*id) == Some(*p))
                    .map(|id| format!("{id} ({p})"))
            })
            .collect();
        let text = match parts.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => parts.join(""),
        };
        format!("event linked {text}")
    }
}

fn summarize(items: &[String]) -> String {
    const SHOWN: usize = 5;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{}, … {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}
