//! The single writer's view: all tables of one write transaction, with a write-back cache for
//! the values the pipeline touches many times per batch (profiles and identity graphs).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use atrium_identity::IdentityStore;
use redb::{ReadableTable, Table, WriteTransaction};

use crate::read::meta_u64;
use crate::tables::*;
use crate::{
    MergeLogEntry, Profile, ProfileGraph, ProfileId, StoreError, StoredDefinition, codec, decode,
    decode_profile, encode,
};

pub struct WriteTables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    identifiers: Table<'txn, &'static str, &'static str>,
    graphs: Table<'txn, &'static str, &'static [u8]>,
    redirects: Table<'txn, &'static str, &'static str>,
    merge_log: Table<'txn, u64, &'static [u8]>,
    profiles: Table<'txn, &'static str, &'static [u8]>,
    timeline: Table<'txn, (&'static str, i64, u64), ()>,
    suppressed: Table<'txn, &'static str, i64>,
    definitions: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    definition_history: Table<'txn, (&'static str, &'static str, u64), &'static [u8]>,
    pub(crate) segment_states: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) segment_members: Table<'txn, (&'static str, &'static str), i64>,
    pub(crate) segment_timers: Table<'txn, (i64, &'static str), ()>,
    pub(crate) outbox: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) sticky_buckets: Table<'txn, &'static str, &'static [u8]>,
    /// `None` marks a deletion still to be written.
    profile_cache: HashMap<String, Option<Profile>>,
    graph_cache: HashMap<String, Option<ProfileGraph>>,
    /// Graphs read (not changed) in this transaction: resolution reads the same graph for every
    /// event of a customer's session.
    graph_reads: RefCell<HashMap<String, ProfileGraph>>,
    /// Profiles whose graph is known to exist in the table (checked, not decoded).
    graphs_present: RefCell<HashSet<String>>,
    /// Identifier bindings (`kind:value` → profile id) read or changed in this transaction;
    /// changed ones are written, in key order, at flush.
    bindings: RefCell<HashMap<String, Binding>>,
    /// Scratch buffer for `kind:value` keys.
    identifier_key: RefCell<String>,
    /// Redirects read or written in this transaction (`None`: none).
    redirect_reads: RefCell<HashMap<String, Option<ProfileId>>>,
    /// Timeline entries to insert, per profile, at flush (sorted B-tree inserts are much cheaper).
    pending_timeline: HashMap<String, Vec<(i64, u64)>>,
    /// Segment memberships set (`Some(entry time)`) or removed (`None`) in this transaction,
    /// segment → profile → entry time, written in key order at flush.
    pub(crate) pending_members: BTreeMap<String, BTreeMap<String, Option<i64>>>,
}

/// One identifier's binding as this transaction sees it.
#[derive(Clone, Debug)]
struct Binding {
    /// `None`: unbound.
    profile: Option<ProfileId>,
    /// Changed in this transaction, not yet written.
    dirty: bool,
}

impl<'txn> WriteTables<'txn> {
    pub(crate) fn open(
        transaction: &'txn WriteTransaction,
    ) -> Result<WriteTables<'txn>, StoreError> {
        Ok(WriteTables {
            meta: transaction.open_table(META)?,
            identifiers: transaction.open_table(IDENTIFIERS)?,
            graphs: transaction.open_table(GRAPHS)?,
            redirects: transaction.open_table(REDIRECTS)?,
            merge_log: transaction.open_table(MERGE_LOG)?,
            profiles: transaction.open_table(PROFILES)?,
            timeline: transaction.open_table(TIMELINE)?,
            suppressed: transaction.open_table(SUPPRESSED)?,
            definitions: transaction.open_table(DEFINITIONS)?,
            definition_history: transaction.open_table(DEFINITION_HISTORY)?,
            segment_states: transaction.open_table(SEGMENT_STATES)?,
            segment_members: transaction.open_table(SEGMENT_MEMBERS)?,
            segment_timers: transaction.open_table(SEGMENT_TIMERS)?,
            outbox: transaction.open_table(OUTBOX)?,
            sticky_buckets: transaction.open_table(STICKY_BUCKETS)?,
            profile_cache: HashMap::new(),
            graph_cache: HashMap::new(),
            graph_reads: RefCell::new(HashMap::new()),
            graphs_present: RefCell::new(HashSet::new()),
            bindings: RefCell::new(HashMap::new()),
            identifier_key: RefCell::new(String::new()),
            redirect_reads: RefCell::new(HashMap::new()),
            pending_timeline: HashMap::new(),
            pending_members: BTreeMap::new(),
        })
    }

    /// Writes cached values back. Called by [`crate::Store::write`] before commit.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_timeline()?;
        self.flush_bindings()?;
        self.flush_segment_members()?;
        let mut profiles: Vec<(String, Option<Profile>)> = self.profile_cache.drain().collect();
        profiles.sort_by(|left, right| left.0.cmp(&right.0));
        for (id, profile) in profiles {
            match profile {
                Some(profile) => {
                    self.profiles
                        .insert(id.as_str(), codec::encode_profile(&profile).as_slice())?;
                }
                None => {
                    self.profiles.remove(id.as_str())?;
                }
            }
        }
        let mut graphs: Vec<(String, Option<ProfileGraph>)> = self.graph_cache.drain().collect();
        graphs.sort_by(|left, right| left.0.cmp(&right.0));
        for (id, graph) in graphs {
            match graph {
                Some(graph) => {
                    self.graphs.insert(id.as_str(), encode(&graph).as_slice())?;
                }
                None => {
                    self.graphs.remove(id.as_str())?;
                }
            }
        }
        Ok(())
    }

    fn flush_timeline(&mut self) -> Result<(), StoreError> {
        let mut pending: Vec<(String, Vec<(i64, u64)>)> = self.pending_timeline.drain().collect();
        pending.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        for (profile, mut entries) in pending {
            entries.sort_unstable();
            for (time_ms, offset) in entries {
                self.timeline
                    .insert((profile.as_str(), time_ms, offset), ())?;
            }
        }
        Ok(())
    }

    fn flush_bindings(&mut self) -> Result<(), StoreError> {
        let mut changed: Vec<(String, Option<ProfileId>)> = self
            .bindings
            .get_mut()
            .drain()
            .filter(|(_, binding)| binding.dirty)
            .map(|(key, binding)| (key, binding.profile))
            .collect();
        changed.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        for (key, profile) in changed {
            match profile {
                Some(profile) => {
                    self.identifiers.insert(key.as_str(), profile.as_str())?;
                }
                None => {
                    self.identifiers.remove(key.as_str())?;
                }
            }
        }
        Ok(())
    }

    /// Records `id`'s binding in the cache, to be written at flush.
    fn set_binding(&mut self, id: &atrium_identity::Identifier, profile: Option<ProfileId>) {
        let key = format!("{}:{}", id.kind, id.value);
        self.bindings.get_mut().insert(
            key,
            Binding {
                profile,
                dirty: true,
            },
        );
    }

    pub fn pipeline_offset(&self) -> Result<u64, StoreError> {
        meta_u64(&self.meta, PIPELINE_OFFSET_KEY)
    }

    pub fn set_meta_u64(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        self.meta.insert(key, value.to_le_bytes().as_slice())?;
        Ok(())
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64, StoreError> {
        meta_u64(&self.meta, key)
    }

    pub fn has_meta(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.meta.get(key)?.is_some())
    }

    /// A mutable profile, loaded through the cache.
    pub fn profile_mut(&mut self, id: &ProfileId) -> Result<Option<&mut Profile>, StoreError> {
        if !self.profile_cache.contains_key(id.as_str()) {
            let loaded = match self.profiles.get(id.as_str())? {
                Some(bytes) => Some(decode_profile(bytes.value())?),
                None => None,
            };
            self.profile_cache.insert(id.0.clone(), loaded);
        }
        Ok(self
            .profile_cache
            .get_mut(id.as_str())
            .and_then(Option::as_mut))
    }

    pub fn put_profile(&mut self, profile: Profile) {
        self.profile_cache.insert(profile.id.clone(), Some(profile));
    }

    /// Removes and returns a profile.
    pub fn take_profile(&mut self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        self.profile_mut(id)?;
        let taken = self.profile_cache.insert(id.0.clone(), None).flatten();
        Ok(taken)
    }

    pub fn add_to_timeline(
        &mut self,
        id: &ProfileId,
        time_ms: i64,
        offset: u64,
    ) -> Result<(), StoreError> {
        match self.pending_timeline.get_mut(id.as_str()) {
            Some(entries) => entries.push((time_ms, offset)),
            None => {
                self.pending_timeline
                    .insert(id.0.clone(), vec![(time_ms, offset)]);
            }
        }
        Ok(())
    }

    /// Removes a profile's whole timeline and returns its (event time, log offset) entries, in
    /// that order.
    pub fn take_timeline(&mut self, id: &ProfileId) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut entries = self
            .pending_timeline
            .remove(id.as_str())
            .unwrap_or_default();
        let pending = entries.len();
        for row in self
            .timeline
            .range((id.as_str(), i64::MIN, 0u64)..=(id.as_str(), i64::MAX, u64::MAX))?
        {
            let (key, _) = row?;
            let (_, time_ms, offset) = key.value();
            entries.push((time_ms, offset));
        }
        for (time_ms, offset) in &entries[pending..] {
            self.timeline.remove((id.as_str(), *time_ms, *offset))?;
        }
        entries.sort_unstable();
        Ok(entries)
    }

    /// A profile's timeline as log offsets, in log order.
    pub fn timeline_offsets(&mut self, id: &ProfileId) -> Result<Vec<u64>, StoreError> {
        self.flush_timeline()?;
        let mut offsets = Vec::new();
        for row in self
            .timeline
            .range((id.as_str(), i64::MIN, 0u64)..=(id.as_str(), i64::MAX, u64::MAX))?
        {
            let (key, _) = row?;
            offsets.push(key.value().2);
        }
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// Every timeline entry as (log offset, profile id), in log order.
    pub fn all_timeline_offsets(&mut self) -> Result<Vec<(u64, String)>, StoreError> {
        self.flush_timeline()?;
        let mut entries = Vec::new();
        for row in self.timeline.iter()? {
            let (key, _) = row?;
            let (profile, _, offset) = key.value();
            entries.push((offset, profile.to_owned()));
        }
        entries.sort_unstable();
        Ok(entries)
    }

    /// Moves `from`'s timeline to `to` (retroactive stitching after a merge).
    pub fn move_timeline(&mut self, from: &ProfileId, to: &ProfileId) -> Result<usize, StoreError> {
        let entries = self.take_timeline(from)?;
        let moved = entries.len();
        for (time_ms, offset) in entries {
            self.add_to_timeline(to, time_ms, offset)?;
        }
        Ok(moved)
    }

    pub fn suppress(&mut self, hash: &str, time_ms: i64) -> Result<(), StoreError> {
        self.suppressed.insert(hash, time_ms)?;
        Ok(())
    }

    pub fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self.suppressed.get(hash)?.is_some())
    }

    pub fn suppression_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        Ok(self.suppressed.len()?)
    }

    /// Writes a definition version: the current value (or its removal, for a deletion) and its
    /// history entry.
    pub fn put_definition(
        &mut self,
        kind: &str,
        key: &str,
        definition: &StoredDefinition,
    ) -> Result<(), StoreError> {
        let bytes = encode(definition);
        if definition.deleted {
            self.definitions.remove((kind, key))?;
        } else {
            self.definitions.insert((kind, key), bytes.as_slice())?;
        }
        self.definition_history
            .insert((kind, key, definition.version), bytes.as_slice())?;
        Ok(())
    }

    /// Deletes every trace of a profile from identity state: its graph, bindings, redirects that
    /// point at it or at profiles merged into it, and merge-log entries naming it.
    pub fn erase_identity(&mut self, graph: &ProfileGraph) -> Result<(), StoreError> {
        for record in &graph.identifiers {
            self.set_binding(&record.id, None);
        }
        let mut members: Vec<String> = graph.merged_from.iter().map(|id| id.0.clone()).collect();
        members.push(graph.profile.0.clone());
        for member in &members {
            self.redirects.remove(member.as_str())?;
            self.redirect_reads.get_mut().insert(member.clone(), None);
            self.graph_reads.get_mut().remove(member.as_str());
            self.graph_cache.insert(member.clone(), None);
        }
        let mut doomed = Vec::new();
        for row in self.merge_log.iter()? {
            let (sequence, bytes) = row?;
            let entry: MergeLogEntry = decode("merge_log", bytes.value())?;
            let names_member = members.contains(&entry.survivor.0)
                || entry.merged.iter().any(|id| members.contains(&id.0));
            if names_member {
                doomed.push(sequence.value());
            }
        }
        for sequence in doomed {
            self.merge_log.remove(sequence)?;
        }
        Ok(())
    }
}

impl IdentityStore for WriteTables<'_> {
    type Error = StoreError;

    fn profile_for(
        &self,
        id: &atrium_identity::Identifier,
    ) -> Result<Option<ProfileId>, StoreError> {
        let mut key = self.identifier_key.borrow_mut();
        key.clear();
        let _ = write!(key, "{}:{}", id.kind, id.value);
        if let Some(binding) = self.bindings.borrow().get(key.as_str()) {
            return Ok(binding.profile.clone());
        }
        let profile = self
            .identifiers
            .get(key.as_str())?
            .map(|profile| ProfileId(profile.value().to_owned()));
        self.bindings.borrow_mut().insert(
            key.clone(),
            Binding {
                profile: profile.clone(),
                dirty: false,
            },
        );
        Ok(profile)
    }

    fn graph(&self, profile: &ProfileId) -> Result<Option<ProfileGraph>, StoreError> {
        if let Some(cached) = self.graph_cache.get(profile.as_str()) {
            return Ok(cached.clone());
        }
        if let Some(read) = self.graph_reads.borrow().get(profile.as_str()) {
            return Ok(Some(read.clone()));
        }
        match self.graphs.get(profile.as_str())? {
            Some(bytes) => {
                let graph: ProfileGraph = decode("graphs", bytes.value())?;
                self.graph_reads
                    .borrow_mut()
                    .insert(profile.0.clone(), graph.clone());
                Ok(Some(graph))
            }
            None => Ok(None),
        }
    }

    fn has_graph(&self, profile: &ProfileId) -> Result<bool, StoreError> {
        if let Some(cached) = self.graph_cache.get(profile.as_str()) {
            return Ok(cached.is_some());
        }
        if self.graph_reads.borrow().contains_key(profile.as_str())
            || self.graphs_present.borrow().contains(profile.as_str())
        {
            return Ok(true);
        }
        let present = self.graphs.get(profile.as_str())?.is_some();
        if present {
            self.graphs_present.borrow_mut().insert(profile.0.clone());
        }
        Ok(present)
    }

    fn put_graph(&mut self, graph: &ProfileGraph) -> Result<(), StoreError> {
        self.graph_reads.get_mut().remove(graph.profile.as_str());
        self.graph_cache
            .insert(graph.profile.0.clone(), Some(graph.clone()));
        Ok(())
    }

    fn remove_graph(&mut self, profile: &ProfileId) -> Result<(), StoreError> {
        self.graph_reads.get_mut().remove(profile.as_str());
        self.graph_cache.insert(profile.0.clone(), None);
        Ok(())
    }

    fn bind(
        &mut self,
        id: &atrium_identity::Identifier,
        profile: &ProfileId,
    ) -> Result<(), StoreError> {
        self.set_binding(id, Some(profile.clone()));
        Ok(())
    }

    fn unbind(&mut self, id: &atrium_identity::Identifier) -> Result<(), StoreError> {
        self.set_binding(id, None);
        Ok(())
    }

    fn set_redirect(&mut self, from: &ProfileId, to: &ProfileId) -> Result<(), StoreError> {
        self.redirects.insert(from.as_str(), to.as_str())?;
        self.redirect_reads
            .get_mut()
            .insert(from.0.clone(), Some(to.clone()));
        Ok(())
    }

    fn redirect(&self, from: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        if let Some(cached) = self.redirect_reads.borrow().get(from.as_str()) {
            return Ok(cached.clone());
        }
        let to = self
            .redirects
            .get(from.as_str())?
            .map(|to| ProfileId(to.value().to_owned()));
        self.redirect_reads
            .borrow_mut()
            .insert(from.0.clone(), to.clone());
        Ok(to)
    }

    /// Merge-log entries are keyed by the offset of the event that merged: at most one merge per
    /// event, and the key survives replays after erasure deleted other entries.
    fn append_merge_log(&mut self, entry: &MergeLogEntry) -> Result<(), StoreError> {
        self.merge_log
            .insert(entry.offset, encode(entry).as_slice())?;
        Ok(())
    }
}
