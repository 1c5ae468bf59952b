//! Read-only views over a snapshot, for the API and the CLI.

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata};
use sha2::{Digest, Sha256};

use crate::tables::*;
use crate::{
    MergeLogEntry, Profile, ProfileGraph, ProfileId, StoreError, StoredDefinition, decode,
    decode_profile,
};

/// One event on a profile's timeline: where to find it in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimelineEntry {
    pub time_ms: i64,
    pub offset: u64,
}

/// A page of profiles, with the cursor for the next page.
#[derive(Clone, Debug)]
pub struct ProfilePage {
    pub profiles: Vec<Profile>,
    pub next_cursor: Option<String>,
}

pub struct ReadTables {
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
    identifiers: ReadOnlyTable<&'static str, &'static str>,
    graphs: ReadOnlyTable<&'static str, &'static [u8]>,
    redirects: ReadOnlyTable<&'static str, &'static str>,
    merge_log: ReadOnlyTable<u64, &'static [u8]>,
    profiles: ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) timeline: ReadOnlyTable<(&'static str, i64, u64), ()>,
    suppressed: ReadOnlyTable<&'static str, i64>,
    definitions: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    definition_history: ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
    pub(crate) segment_states: ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) segment_members: ReadOnlyTable<(&'static str, &'static str), i64>,
    pub(crate) segment_timers: ReadOnlyTable<(i64, &'static str), ()>,
    pub(crate) outbox: ReadOnlyTable<&'static str, &'static [u8]>,
    pub(crate) sticky_buckets: ReadOnlyTable<&'static str, &'static [u8]>,
}

/// Follows merge redirects to the surviving profile; a bounded walk guards against cycles.
const MAX_REDIRECT_HOPS: usize = 1_000;

impl ReadTables {
    pub(crate) fn open(transaction: &ReadTransaction) -> Result<ReadTables, StoreError> {
        Ok(ReadTables {
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
        })
    }

    pub fn pipeline_offset(&self) -> Result<u64, StoreError> {
        meta_u64(&self.meta, PIPELINE_OFFSET_KEY)
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64, StoreError> {
        meta_u64(&self.meta, key)
    }

    pub fn meta_u64_if_present(&self, key: &str) -> Result<Option<u64>, StoreError> {
        if self.meta.get(key)?.is_none() {
            return Ok(None);
        }
        meta_u64(&self.meta, key).map(Some)
    }

    /// Resolves a profile reference — a profile id (following merges) or `kind:value` — to the
    /// current profile id.
    pub fn resolve(&self, reference: &str) -> Result<Option<ProfileId>, StoreError> {
        let mut current = if self.profiles.get(reference)?.is_some()
            || self.redirects.get(reference)?.is_some()
        {
            reference.to_owned()
        } else {
            match self.identifiers.get(reference)? {
                Some(profile) => profile.value().to_owned(),
                None => return Ok(None),
            }
        };
        for _ in 0..MAX_REDIRECT_HOPS {
            match self.redirects.get(current.as_str())? {
                Some(next) => current = next.value().to_owned(),
                None => break,
            }
        }
        if self.profiles.get(current.as_str())?.is_none() {
            return Ok(None);
        }
        Ok(Some(ProfileId(current)))
    }

    pub fn profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        match self.profiles.get(id.0.as_str())? {
            Some(bytes) => Ok(Some(decode_profile(bytes.value())?)),
            None => Ok(None),
        }
    }

    pub fn graph(&self, id: &ProfileId) -> Result<Option<ProfileGraph>, StoreError> {
        match self.graphs.get(id.0.as_str())? {
            Some(bytes) => Ok(Some(decode("graphs", bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Every merge-log entry that shaped this profile (it or a profile merged into it survived).
    pub fn merge_history(&self, graph: &ProfileGraph) -> Result<Vec<MergeLogEntry>, StoreError> {
        let mut members: Vec<&ProfileId> = graph.merged_from.iter().collect();
        members.push(&graph.profile);
        let mut entries = Vec::new();
        for row in self.merge_log.iter()? {
            let (_, bytes) = row?;
            let entry: MergeLogEntry = decode("merge_log", bytes.value())?;
            if members.contains(&&entry.survivor) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// The profile's events, newest first, strictly before `before` when given.
    pub fn timeline(
        &self,
        id: &ProfileId,
        before: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let start = (id.0.as_str(), i64::MIN, 0u64);
        let entries = match before {
            Some((time_ms, offset)) => self
                .timeline
                .range(start..(id.0.as_str(), time_ms, offset))?,
            None => self
                .timeline
                .range(start..=(id.0.as_str(), i64::MAX, u64::MAX))?,
        };
        let mut page = Vec::with_capacity(limit.min(1_024));
        for row in entries.rev() {
            let (key, _) = row?;
            let (_, time_ms, offset) = key.value();
            page.push(TimelineEntry { time_ms, offset });
            if page.len() >= limit {
                break;
            }
        }
        Ok(page)
    }

    /// Profiles in id order after `cursor`.
    pub fn list_profiles(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ProfilePage, StoreError> {
        let rows = match cursor {
            Some(cursor) => self.profiles.range::<&str>((
                std::ops::Bound::Excluded(cursor),
                std::ops::Bound::Unbounded,
            ))?,
            None => self.profiles.iter()?,
        };
        let mut profiles = Vec::with_capacity(limit.min(1_024));
        let mut next_cursor = None;
        for row in rows {
            if profiles.len() == limit {
                // Another row exists: the page ends at the last profile returned.
                next_cursor = profiles.last().map(|profile: &Profile| profile.id.clone());
                break;
            }
            let (_, bytes) = row?;
            profiles.push(decode_profile(bytes.value())?);
        }
        Ok(ProfilePage {
            profiles,
            next_cursor,
        })
    }

    /// Profiles holding an identifier that starts with `prefix` (`email:ann`, `user_id:u_1`).
    pub fn search_identifiers(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, ProfileId)>, StoreError> {
        let mut found = Vec::new();
        for row in self.identifiers.range(prefix..)? {
            let (key, profile) = row?;
            if !key.value().starts_with(prefix) || found.len() >= limit {
                break;
            }
            found.push((
                key.value().to_owned(),
                ProfileId(profile.value().to_owned()),
            ));
        }
        Ok(found)
    }

    pub fn profile_count(&self) -> Result<u64, StoreError> {
        Ok(self.profiles.len()?)
    }

    pub fn identifier_count(&self) -> Result<u64, StoreError> {
        Ok(self.identifiers.len()?)
    }

    pub fn merge_count(&self) -> Result<u64, StoreError> {
        Ok(self.merge_log.len()?)
    }

    pub fn suppressed_count(&self) -> Result<u64, StoreError> {
        Ok(self.suppressed.len()?)
    }

    /// Every (hash, time) on the suppression list.
    pub fn suppressed_hashes(&self) -> Result<Vec<String>, StoreError> {
        let mut hashes = Vec::new();
        for row in self.suppressed.iter()? {
            let (key, _) = row?;
            hashes.push(key.value().to_owned());
        }
        Ok(hashes)
    }

    /// The current definition of `kind` `key`, if it exists (not deleted).
    pub fn definition(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<StoredDefinition>, StoreError> {
        match self.definitions.get((kind, key))? {
            Some(bytes) => Ok(Some(decode("definitions", bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Every current definition of `kind`, by key.
    pub fn definitions(&self, kind: &str) -> Result<Vec<(String, StoredDefinition)>, StoreError> {
        let mut found = Vec::new();
        for row in self.definitions.range((kind, "")..)? {
            let (key, bytes) = row?;
            let (row_kind, row_key) = key.value();
            if row_kind != kind {
                break;
            }
            found.push((row_key.to_owned(), decode("definitions", bytes.value())?));
        }
        Ok(found)
    }

    /// Every version of `kind` `key`, oldest first (deletions included).
    pub fn definition_history(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Vec<StoredDefinition>, StoreError> {
        let mut versions = Vec::new();
        for row in self
            .definition_history
            .range((kind, key, 0u64)..=(kind, key, u64::MAX))?
        {
            let (_, bytes) = row?;
            versions.push(decode("definition_history", bytes.value())?);
        }
        Ok(versions)
    }

    /// The highest version ever written for `kind` `key` (0: never written).
    pub fn latest_definition_version(&self, kind: &str, key: &str) -> Result<u64, StoreError> {
        let last = self
            .definition_history
            .range((kind, key, 0u64)..=(kind, key, u64::MAX))?
            .next_back();
        match last {
            Some(row) => Ok(row?.0.value().2),
            None => Ok(0),
        }
    }

    /// The most recent definition change of any kind (the highest log offset), deletions included.
    pub fn last_definition_change(&self) -> Result<Option<StoredDefinition>, StoreError> {
        let mut latest: Option<StoredDefinition> = None;
        for row in self.definition_history.iter()? {
            let (_, bytes) = row?;
            let definition: StoredDefinition = decode("definition_history", bytes.value())?;
            if latest
                .as_ref()
                .is_none_or(|current| definition.offset > current.offset)
            {
                latest = Some(definition);
            }
        }
        Ok(latest)
    }

    /// A SHA-256 per table over its keys and values in key order.
    pub fn table_digests(&self) -> Result<Vec<(&'static str, String)>, StoreError> {
        fn feed(hasher: &mut Sha256, bytes: &[u8]) {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let mut digests = Vec::new();
        let mut finish = |name: &'static str, hasher: Sha256| {
            digests.push((name, hex::encode(hasher.finalize())))
        };
        let mut hasher = Sha256::new();
        for row in self.meta.iter()? {
            let (key, value) = row?;
            feed(&mut hasher, key.value().as_bytes());
            feed(&mut hasher, value.value());
        }
        finish("meta", hasher);
        for (name, table) in [
            ("identifiers", &self.identifiers),
            ("redirects", &self.redirects),
        ] {
            let mut hasher = Sha256::new();
            for row in table.iter()? {
                let (key, value) = row?;
                feed(&mut hasher, key.value().as_bytes());
                feed(&mut hasher, value.value().as_bytes());
            }
            finish(name, hasher);
        }
        for (name, table) in [("graphs", &self.graphs), ("profiles", &self.profiles)] {
            let mut hasher = Sha256::new();
            for row in table.iter()? {
                let (key, value) = row?;
                feed(&mut hasher, key.value().as_bytes());
                feed(&mut hasher, value.value());
            }
            finish(name, hasher);
        }
        let mut hasher = Sha256::new();
        for row in self.merge_log.iter()? {
            let (key, value) = row?;
            feed(&mut hasher, &key.value().to_le_bytes());
            feed(&mut hasher, value.value());
        }
        finish("merge_log", hasher);
        let mut hasher = Sha256::new();
        for row in self.timeline.iter()? {
            let (key, _) = row?;
            let (profile, time_ms, offset) = key.value();
            feed(&mut hasher, profile.as_bytes());
            feed(&mut hasher, &time_ms.to_le_bytes());
            feed(&mut hasher, &offset.to_le_bytes());
        }
        finish("timeline", hasher);
        let mut hasher = Sha256::new();
        for row in self.suppressed.iter()? {
            let (key, value) = row?;
            feed(&mut hasher, key.value().as_bytes());
            feed(&mut hasher, &value.value().to_le_bytes());
        }
        finish("suppressed", hasher);
        let mut hasher = Sha256::new();
        for row in self.definitions.iter()? {
            let (key, value) = row?;
            let (kind, name) = key.value();
            feed(&mut hasher, kind.as_bytes());
            feed(&mut hasher, name.as_bytes());
            feed(&mut hasher, value.value());
        }
        finish("definitions", hasher);
        let mut hasher = Sha256::new();
        for row in self.definition_history.iter()? {
            let (key, value) = row?;
            let (kind, name, version) = key.value();
            feed(&mut hasher, kind.as_bytes());
            feed(&mut hasher, name.as_bytes());
            feed(&mut hasher, &version.to_le_bytes());
            feed(&mut hasher, value.value());
        }
        finish("definition_history", hasher);
        self.segment_digests(&mut finish)?;
        self.sticky_digest(&mut finish)?;
        Ok(digests)
    }
}

pub(crate) fn meta_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, StoreError> {
    Ok(match table.get(key)? {
        Some(bytes) => {
            let bytes = bytes.value();
            let mut buffer = [0u8; 8];
            if bytes.len() == 8 {
                buffer.copy_from_slice(bytes);
            }
            u64::from_le_bytes(buffer)
        }
        None => 0,
    })
}
