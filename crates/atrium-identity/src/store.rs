//! The storage interface the resolver works against, and an in-memory implementation.

use std::collections::BTreeMap;
use std::convert::Infallible;

use serde::{Deserialize, Serialize};

use crate::{Identifier, ProfileId};

/// Storage the resolver reads and writes. The server implements it on a redb write
/// transaction; [`MemoryIdentityStore`] implements it on `BTreeMap`s.
///
/// Invariants maintained by [`crate::resolve`]: every identifier in a live graph is bound to
/// that graph's profile; profiles never share identifiers; merged-away profiles have no graph
/// and a redirect to their survivor.
pub trait IdentityStore {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The profile an identifier is bound to (possibly a merged-away id, which the resolver
    /// follows through redirects).
    fn profile_for(&self, id: &Identifier) -> Result<Option<ProfileId>, Self::Error>;
    fn graph(&self, profile: &ProfileId) -> Result<Option<ProfileGraph>, Self::Error>;
    /// Whether a graph exists; implementations can answer without decoding it.
    fn has_graph(&self, profile: &ProfileId) -> Result<bool, Self::Error> {
        Ok(self.graph(profile)?.is_some())
    }
    fn put_graph(&mut self, graph: &ProfileGraph) -> Result<(), Self::Error>;
    fn remove_graph(&mut self, profile: &ProfileId) -> Result<(), Self::Error>;
    /// Identifier -> profile mapping (overwrites).
    fn bind(&mut self, id: &Identifier, profile: &ProfileId) -> Result<(), Self::Error>;
    fn unbind(&mut self, id: &Identifier) -> Result<(), Self::Error>;
    /// Merged-away profile id -> survivor (lookups by the old id follow it).
    fn set_redirect(&mut self, from: &ProfileId, to: &ProfileId) -> Result<(), Self::Error>;
    fn redirect(&self, from: &ProfileId) -> Result<Option<ProfileId>, Self::Error>;
    fn append_merge_log(&mut self, entry: &MergeLogEntry) -> Result<(), Self::Error>;
}

/// The identity graph of one live profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileGraph {
    pub profile: ProfileId,
    /// Offset of the event that created the profile (the survivor of a merge is the profile
    /// with the smallest `created_offset`).
    pub created_offset: u64,
    /// Sorted by identifier, unique.
    pub identifiers: Vec<IdentifierRecord>,
    /// Every profile merged into this one, transitively; sorted, unique.
    pub merged_from: Vec<ProfileId>,
    /// Number of profiles merged into this one, transitively (capped by
    /// `max_merges_per_profile`).
    pub merge_count: u32,
}

impl ProfileGraph {
    /// Whether the graph holds `id`.
    pub fn contains(&self, id: &Identifier) -> bool {
        self.identifiers.binary_search_by(|r| r.id.cmp(id)).is_ok()
    }

    /// The identifiers, without their first-seen data.
    pub fn ids(&self) -> impl Iterator<Item = &Identifier> {
        self.identifiers.iter().map(|r| &r.id)
    }
}

/// One identifier of a profile, with when it was first seen (earliest wins on merge).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierRecord {
    pub id: Identifier,
    /// Event time of the first event that added the identifier.
    pub first_seen_ms: i64,
    /// Log offset of that event.
    pub first_offset: u64,
}

/// One merge: which event merged which profiles, and why. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeLogEntry {
    pub offset: u64,
    pub message_id: String,
    pub event_time_ms: i64,
    pub survivor: ProfileId,
    /// Profiles merged into `survivor` (they now redirect to it).
    pub merged: Vec<ProfileId>,
    /// The event's identifiers that were bound to the merged profiles, in priority order.
    pub linking_identifiers: Vec<Identifier>,
    /// Human explanation, e.g. `event linked user_id:u1 (p_…) and anonymous_id:a1 (p_…)`.
    pub reason: String,
}

/// An [`IdentityStore`] on `BTreeMap`s, for tests, tools and small deployments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryIdentityStore {
    bindings: BTreeMap<Identifier, ProfileId>,
    graphs: BTreeMap<ProfileId, ProfileGraph>,
    redirects: BTreeMap<ProfileId, ProfileId>,
    merge_log: Vec<MergeLogEntry>,
}

impl MemoryIdentityStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The merge log, oldest first.
    pub fn merge_log(&self) -> &[MergeLogEntry] {
        &self.merge_log
    }

    /// Live profile graphs, by profile id.
    pub fn graphs(&self) -> impl Iterator<Item = &ProfileGraph> {
        self.graphs.values()
    }

    /// Identifier -> profile bindings.
    pub fn bindings(&self) -> impl Iterator<Item = (&Identifier, &ProfileId)> {
        self.bindings.iter()
    }

    /// Merged-away profile -> survivor redirects.
    pub fn redirects(&self) -> impl Iterator<Item = (&ProfileId, &ProfileId)> {
        self.redirects.iter()
    }
}

impl IdentityStore for MemoryIdentityStore {
    type Error = Infallible;

    fn profile_for(&self, id: &Identifier) -> Result<Option<ProfileId>, Infallible> {
        Ok(self.bindings.get(id).cloned())
    }

    fn graph(&self, profile: &ProfileId) -> Result<Option<ProfileGraph>, Infallible> {
        Ok(self.graphs.get(profile).cloned())
    }

    fn put_graph(&mut self, graph: &ProfileGraph) -> Result<(), Infallible> {
        self.graphs.insert(graph.profile.clone(), graph.clone());
        Ok(())
    }

    fn remove_graph(&mut self, profile: &ProfileId) -> Result<(), Infallible> {
        self.graphs.remove(profile);
        Ok(())
    }

    fn bind(&mut self, id: &Identifier, profile: &ProfileId) -> Result<(), Infallible> {
        self.bindings.insert(id.clone(), profile.clone());
        Ok(())
    }

    fn unbind(&mut self, id: &Identifier) -> Result<(), Infallible> {
        self.bindings.remove(id);
        Ok(())
    }

    fn set_redirect(&mut self, from: &ProfileId, to: &ProfileId) -> Result<(), Infallible> {
        self.redirects.insert(from.clone(), to.clone());
        Ok(())
    }

    fn redirect(&self, from: &ProfileId) -> Result<Option<ProfileId>, Infallible> {
        Ok(self.redirects.get(from).cloned())
    }

    fn append_merge_log(&mut self, entry: &MergeLogEntry) -> Result<(), Infallible> {
        self.merge_log.push(entry.clone());
        Ok(())
    }
}
