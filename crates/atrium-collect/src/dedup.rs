//! Deduplication on `messageId`, scoped per source, over a sliding window of `receivedAt`.
//!
//! The index lives in memory and is rebuilt at start-up from the tail of the event log (the log
//! is the source of truth), so it survives restarts without a store of its own.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// A 128-bit digest of (source, messageId). Collisions are negligible at any realistic window size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey(u128);

impl DedupKey {
    pub fn new(source: &str, message_id: &str) -> DedupKey {
        let half = |salt: u8| {
            let mut hasher = DefaultHasher::new();
            salt.hash(&mut hasher);
            source.hash(&mut hasher);
            message_id.hash(&mut hasher);
            hasher.finish()
        };
        DedupKey((u128::from(half(1)) << 64) | u128::from(half(2)))
    }
}

/// Remembers every key seen within `window_ms` of the newest `receivedAt` observed.
#[derive(Debug)]
pub struct DedupIndex {
    window_ms: i64,
    seen: HashMap<DedupKey, i64>,
    by_time: VecDeque<(i64, DedupKey)>,
}

impl DedupIndex {
    pub fn new(window_ms: i64) -> DedupIndex {
        DedupIndex {
            window_ms,
            seen: HashMap::new(),
            by_time: VecDeque::new(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `key` as seen at `received_ms` unless it is already known. Returns `true` when the
    /// key is new (the caller may append the event) and `false` for a duplicate.
    pub fn insert(&mut self, key: DedupKey, received_ms: i64) -> bool {
        self.expire(received_ms);
        if self.window_ms <= 0 {
            return true;
        }
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, received_ms);
        self.by_time.push_back((received_ms, key));
        true
    }

    /// Forgets a key that was inserted but whose append failed, so a retry is not mistaken for a
    /// duplicate.
    pub fn remove(&mut self, key: DedupKey) {
        self.seen.remove(&key);
        // The stale queue entry is skipped by `expire`, which checks the map's timestamp.
    }

    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - self.window_ms;
        while let Some(&(received_ms, key)) = self.by_time.front() {
            if received_ms >= horizon {
                break;
            }
            self.by_time.pop_front();
            if self.seen.get(&key) == Some(&received_ms) {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_inside_the_window_are_refused_and_expire_after_it() {
        let mut index = DedupIndex::new(1_000);
        let key = DedupKey::new("web", "m1");
        assert!(index.insert(key, 0));
        assert!(!index.insert(key, 999));
        assert!(
            index.insert(DedupKey::new("app", "m1"), 1),
            "scope is per source"
        );
        assert!(index.insert(key, 1_001), "window elapsed");
        index.remove(key);
        assert!(index.insert(key, 1_002));
    }

    #[test]
    fn zero_window_disables_dedup() {
        let mut index = DedupIndex::new(0);
        let key = DedupKey::new("web", "m1");
        assert!(index.insert(key, 0));
        assert!(index.insert(key, 0));
    }
}
