//! Segment state: per-profile evaluation state, memberships, durable timers and the outbox of
//! derived events. The values are bytes the pipeline's segment engine owns; the store only keeps
//! them consistent with the rest of the derived state (same transaction, same digest, vacuum).

use redb::{ReadableTable, ReadableTableMetadata};
use sha2::{Digest, Sha256};

use crate::{ReadTables, StoreError, WriteTables};

/// One page of a segment's members, with the cursor (last profile id) for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// (profile id, entry time ms).
    pub members: Vec<(String, i64)>,
    pub next_cursor: Option<String>,
}

impl WriteTables<'_> {
    pub fn segment_state(&self, profile: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .segment_states
            .get(profile)?
            .map(|bytes| bytes.value().to_vec()))
    }

    pub fn has_segment_state(&self, profile: &str) -> Result<bool, StoreError> {
        Ok(self.segment_states.get(profile)?.is_some())
    }

    pub fn put_segment_state(&mut self, profile: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.segment_states.insert(profile, bytes)?;
        Ok(())
    }

    pub fn remove_segment_state(&mut self, profile: &str) -> Result<(), StoreError> {
        self.segment_states.remove(profile)?;
        Ok(())
    }

    /// Every profile that has segment state, in key order.
    pub fn segment_state_profiles(&self) -> Result<Vec<String>, StoreError> {
        let mut profiles = Vec::new();
        for row in self.segment_states.iter()? {
            let (key, _) = row?;
            profiles.push(key.value().to_owned());
        }
        Ok(profiles)
    }

    /// Records (`Some(entry time)`) or removes (`None`) a membership (written at flush, in key
    /// order).
    pub fn set_segment_member(
        &mut self,
        segment: &str,
        profile: &str,
        entered_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let profiles = match self.pending_members.get_mut(segment) {
            Some(profiles) => profiles,
            None => self.pending_members.entry(segment.to_owned()).or_default(),
        };
        profiles.insert(profile.to_owned(), entered_ms);
        Ok(())
    }

    /// Writes the memberships set in this transaction.
    pub(crate) fn flush_segment_members(&mut self) -> Result<(), StoreError> {
        for (segment, profiles) in std::mem::take(&mut self.pending_members) {
            for (profile, entered_ms) in profiles {
                match entered_ms {
                    Some(time) => {
                        self.segment_members
                            .insert((segment.as_str(), profile.as_str()), time)?;
                    }
                    None => {
                        self.segment_members
                            .remove((segment.as_str(), profile.as_str()))?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn segment_member(&self, segment: &str, profile: &str) -> Result<Option<i64>, StoreError> {
        if let Some(pending) = self
            .pending_members
            .get(segment)
            .and_then(|profiles| profiles.get(profile))
        {
            return Ok(*pending);
        }
        Ok(self
            .segment_members
            .get((segment, profile))?
            .map(|time| time.value()))
    }

    /// Removes every membership of a segment (it was deleted).
    pub fn clear_segment_members(&mut self, segment: &str) -> Result<usize, StoreError> {
        self.flush_segment_members()?;
        let mut profiles = Vec::new();
        for row in self.segment_members.range((segment, "")..)? {
            let (key, _) = row?;
            let (owner, profile) = key.value();
            if owner != segment {
                break;
            }
            profiles.push(profile.to_owned());
        }
        for profile in &profiles {
            self.segment_members.remove((segment, profile.as_str()))?;
        }
        Ok(profiles.len())
    }

    /// Replaces a profile's timer `old` with `new`.
    pub fn replace_segment_timer(
        &mut self,
        profile: &str,
        old: Option<i64>,
        new: Option<i64>,
    ) -> Result<(), StoreError> {
        if old == new {
            return Ok(());
        }
        if let Some(old) = old {
            self.segment_timers.remove((old, profile))?;
        }
        if let Some(new) = new {
            self.segment_timers.insert((new, profile), ())?;
        }
        Ok(())
    }

    /// Timers due at or before `at_ms`, earliest first (not removed).
    pub fn due_segment_timers(&self, at_ms: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let mut due = Vec::new();
        for row in self.segment_timers.range((i64::MIN, "")..)? {
            let (key, _) = row?;
            let (time, profile) = key.value();
            if time > at_ms {
                break;
            }
            due.push((time, profile.to_owned()));
        }
        Ok(due)
    }

    pub fn first_segment_timer(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.segment_timers.first()?.map(|(key, _)| key.value().0))
    }

    pub fn put_outbox(&mut self, message_id: &str, event: &[u8]) -> Result<(), StoreError> {
        self.outbox.insert(message_id, event)?;
        Ok(())
    }

    /// Removes an outbox entry; whether it was there.
    pub fn remove_outbox(&mut self, message_id: &str) -> Result<bool, StoreError> {
        Ok(self.outbox.remove(message_id)?.is_some())
    }

    /// Removes the outbox entries `matches` selects (erasure), returning how many.
    pub fn retain_outbox(
        &mut self,
        mut matches: impl FnMut(&[u8]) -> bool,
    ) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for row in self.outbox.iter()? {
            let (key, value) = row?;
            if matches(value.value()) {
                doomed.push(key.value().to_owned());
            }
        }
        for key in &doomed {
            self.outbox.remove(key.as_str())?;
        }
        Ok(doomed.len())
    }
}

impl ReadTables {
    /// Every timeline entry as (log offset, profile id), in log order.
    pub fn all_timeline_offsets(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut entries = Vec::new();
        for row in self.timeline.iter()? {
            let (key, _) = row?;
            let (profile, _, offset) = key.value();
            entries.push((offset, profile.to_owned()));
        }
        entries.sort_unstable();
        Ok(entries)
    }

    pub fn segment_state(&self, profile: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .segment_states
            .get(profile)?
            .map(|bytes| bytes.value().to_vec()))
    }

    pub fn segment_member(&self, segment: &str, profile: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .segment_members
            .get((segment, profile))?
            .map(|time| time.value()))
    }

    /// Members of `segment` in profile-id order, after the cursor `after`.
    pub fn segment_members(
        &self,
        segment: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, StoreError> {
        let mut members = Vec::new();
        let start = after.unwrap_or("");
        for row in self.segment_members.range((segment, start)..)? {
            let (key, value) = row?;
            let (owner, profile) = key.value();
            if owner != segment {
                break;
            }
            if after.is_some_and(|after| profile <= after) {
                continue;
            }
            if members.len() == limit {
                let next_cursor = members.last().map(|(id, _): &(String, i64)| id.clone());
                return Ok(MemberPage {
                    members,
                    next_cursor,
                });
            }
            members.push((profile.to_owned(), value.value()));
        }
        Ok(MemberPage {
            members,
            next_cursor: None,
        })
    }

    pub fn segment_member_count(&self, segment: &str) -> Result<u64, StoreError> {
        let mut count = 0;
        for row in self.segment_members.range((segment, "")..)? {
            let (key, _) = row?;
            if key.value().0 != segment {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    pub fn first_segment_timer(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.segment_timers.first()?.map(|(key, _)| key.value().0))
    }

    /// The oldest `limit` outbox entries (message ids sort in creation order).
    pub fn outbox(&self, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut entries = Vec::new();
        for row in self.outbox.iter()?.take(limit) {
            let (key, value) = row?;
            entries.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(entries)
    }

    /// Total bytes of segment state and how many profiles hold some.
    pub fn segment_state_size(&self) -> Result<(u64, u64), StoreError> {
        let mut bytes = 0;
        let mut count = 0;
        for row in self.segment_states.iter()? {
            let (_, value) = row?;
            bytes += value.value().len() as u64;
            count += 1;
        }
        Ok((bytes, count))
    }

    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.outbox.len()?)
    }

    pub(crate) fn segment_digests(
        &self,
        finish: &mut impl FnMut(&'static str, Sha256),
    ) -> Result<(), StoreError> {
        fn feed(hasher: &mut Sha256, bytes: &[u8]) {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let mut hasher = Sha256::new();
        for row in self.segment_states.iter()? {
            let (key, value) = row?;
            feed(&mut hasher, key.value().as_bytes());
            feed(&mut hasher, value.value());
        }
        finish("segment_states", hasher);
        let mut hasher = Sha256::new();
        for row in self.segment_members.iter()? {
            let (key, value) = row?;
            let (segment, profile) = key.value();
            feed(&mut hasher, segment.as_bytes());
            feed(&mut hasher, profile.as_bytes());
            feed(&mut hasher, &value.value().to_le_bytes());
        }
        finish("segment_members", hasher);
        let mut hasher = Sha256::new();
        for row in self.segment_timers.iter()? {
            let (key, _) = row?;
            let (time, profile) = key.value();
            feed(&mut hasher, &time.to_le_bytes());
            feed(&mut hasher, profile.as_bytes());
        }
        finish("segment_timers", hasher);
        let mut hasher = Sha256::new();
        for row in self.outbox.iter()? {
            let (key, value) = row?;
            feed(&mut hasher, key.value().as_bytes());
            feed(&mut hasher, value.value());
        }
        finish("outbox", hasher);
        Ok(())
    }
}
