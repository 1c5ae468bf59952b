//! Item-to-item co-occurrence, updated in real time: co-visitation ("viewed together", per
//! session) and co-purchase ("frequently bought together", per order).

use std::collections::{BTreeMap, HashMap};

use crate::rules::{Candidate, Reason};
use crate::{ItemIndex, UserIndex};

/// Symmetric counts of how many baskets contained both items, and per-item basket counts.
/// A basket is an order, or one session's distinct items.
#[derive(Clone, Debug, Default)]
pub struct CoOccurrence {
    neighbours: HashMap<ItemIndex, HashMap<ItemIndex, u32>>,
    /// Baskets containing each item, by item index (dense: read once per neighbour when
    /// ranking, so no hashing there).
    baskets_with: Vec<u32>,
}

impl CoOccurrence {
    pub fn new() -> CoOccurrence {
        CoOccurrence::default()
    }

    /// Counts one basket: each distinct unordered pair once, each distinct item once.
    pub fn observe_basket(&mut self, items: &[ItemIndex]) {
        let mut distinct: Vec<ItemIndex> = items.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for (position, &item) in distinct.iter().enumerate() {
            self.count_basket_of(item);
            for &other in &distinct[..position] {
                self.increment_pair(item, other);
            }
        }
    }

    fn count_basket_of(&mut self, item: ItemIndex) {
        let index = item as usize;
        if index >= self.baskets_with.len() {
            self.baskets_with.resize(index + 1, 0);
        }
        self.baskets_with[index] += 1;
    }

    fn increment_pair(&mut self, a: ItemIndex, b: ItemIndex) {
        debug_assert_ne!(a, b);
        *self.neighbours.entry(a).or_default().entry(b).or_default() += 1;
        *self.neighbours.entry(b).or_default().entry(a).or_default() += 1;
    }

    pub fn count(&self, a: ItemIndex, b: ItemIndex) -> u32 {
        self.neighbours
            .get(&a)
            .and_then(|n| n.get(&b))
            .copied()
            .unwrap_or(0)
    }

    /// Number of baskets containing `item`.
    pub fn item_count(&self, item: ItemIndex) -> u32 {
        self.baskets_with.get(item as usize).copied().unwrap_or(0)
    }

    /// Every pair with a positive count, as `(smaller, larger) → count`.
    pub fn pairs(&self) -> BTreeMap<(ItemIndex, ItemIndex), u32> {
        let mut out = BTreeMap::new();
        for (&a, neighbours) in &self.neighbours {
            for (&b, &count) in neighbours {
                if a < b {
                    out.insert((a, b), count);
                }
            }
        }
        out
    }

    /// Items that co-occurred with `item`: `(other, count, cosine)` where
    /// `cosine = count / sqrt(n_item · n_other)`, best cosine first; ties by count, then index.
    pub fn related(&self, item: ItemIndex, min_count: u32) -> Vec<(ItemIndex, u32, f32)> {
        self.related_top(item, min_count, usize::MAX)
    }

    /// The first `limit` entries of [`CoOccurrence::related`] (the same order), found by a
    /// linear-time selection instead of sorting every neighbour.
    pub fn related_top(
        &self,
        item: ItemIndex,
        min_count: u32,
        limit: usize,
    ) -> Vec<(ItemIndex, u32, f32)> {
        let mut out = Vec::new();
        self.related_top_into(item, min_count, limit, &mut out);
        out
    }

    /// [`CoOccurrence::related_top`] into `out` (cleared first), reusing its allocation.
    pub fn related_top_into(
        &self,
        item: ItemIndex,
        min_count: u32,
        limit: usize,
        out: &mut Vec<(ItemIndex, u32, f32)>,
    ) {
        out.clear();
        let Some(neighbours) = self.neighbours.get(&item) else {
            return;
        };
        if limit == 0 {
            return;
        }
        let own = f64::from(self.item_count(item).max(1));
        out.extend(
            neighbours
                .iter()
                .filter(|(_, count)| **count >= min_count)
                .map(|(&other, &count)| {
                    let theirs = f64::from(self.item_count(other).max(1));
                    (
                        other,
                        count,
                        (f64::from(count) / (own * theirs).sqrt()) as f32,
                    )
                }),
        );
        // Best cosine first, then count, then index: a total order (indices are distinct).
        let order = |a: &(ItemIndex, u32, f32), b: &(ItemIndex, u32, f32)| {
            b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0))
        };
        if limit < out.len() {
            out.select_nth_unstable_by(limit - 1, order);
            out.truncate(limit);
        }
        out.sort_unstable_by(order);
    }

    /// Candidates related to any of `seeds` (e.g. the cart, the product page, the session),
    /// scored by summed cosine; the reason names the seed that contributed most.
    pub fn candidates(
        &self,
        seeds: &[ItemIndex],
        min_count: u32,
        kind: CoOccurrenceKind,
    ) -> Vec<Candidate> {
        let mut best: HashMap<ItemIndex, (f32, ItemIndex, u32, f32)> = HashMap::new();
        for &seed in seeds {
            for (other, count, cosine) in self.related(seed, min_count) {
                if seeds.contains(&other) {
                    continue;
                }
                let entry = best.entry(other).or_insert((0.0, seed, count, cosine));
                entry.0 += cosine;
                if cosine > entry.3 || (cosine == entry.3 && seed < entry.1) {
                    entry.1 = seed;
                    entry.2 = count;
                    entry.3 = cosine;
                }
            }
        }
        let mut out: Vec<Candidate> = best
            .into_iter()
            .map(|(item, (score, with, count, _))| Candidate {
                item,
                score,
                reason: match kind {
                    CoOccurrenceKind::BoughtTogether => Reason::BoughtTogether {
                        with,
                        orders: count,
                    },
                    CoOccurrenceKind::ViewedTogether => Reason::ViewedTogether {
                        with,
                        sessions: count,
                    },
                },
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoOccurrenceKind {
    BoughtTogether,
    ViewedTogether,
}

/// Co-visitation: a user's events split into sessions at gaps longer than `session_gap_ms`;
/// each session's first `max_items_per_session` distinct items form a basket, counted as
/// events arrive. Each user's events must be observed in time order.
#[derive(Clone, Debug)]
pub struct CoVisitation {
    session_gap_ms: i64,
    max_items_per_session: usize,
    open: HashMap<UserIndex, OpenSession>,
    counts: CoOccurrence,
}

#[derive(Clone, Debug)]
struct OpenSession {
    last_event_ms: i64,
    items: Vec<ItemIndex>,
}

impl CoVisitation {
    pub fn new(session_gap_ms: i64, max_items_per_session: usize) -> CoVisitation {
        CoVisitation {
            session_gap_ms,
            max_items_per_session: max_items_per_session.max(1),
            open: HashMap::new(),
            counts: CoOccurrence::new(),
        }
    }

    pub fn observe(&mut self, user: UserIndex, item: ItemIndex, timestamp_ms: i64) {
        let session = self.open.entry(user).or_insert(OpenSession {
            last_event_ms: timestamp_ms,
            items: Vec::new(),
        });
        debug_assert!(timestamp_ms >= session.last_event_ms || session.items.is_empty());
        if timestamp_ms - session.last_event_ms > self.session_gap_ms {
            session.items.clear();
        }
        session.last_event_ms = timestamp_ms;
        if session.items.contains(&item) || session.items.len() >= self.max_items_per_session {
            return;
        }
        self.counts.count_basket_of(item);
        for position in 0..session.items.len() {
            let other = session.items[position];
            self.counts.increment_pair(item, other);
        }
        session.items.push(item);
    }

    /// Forgets sessions idle for longer than the gap at `now_ms` (they cannot grow any more).
    pub fn close_idle_sessions(&mut self, now_ms: i64) {
        let gap = self.session_gap_ms;
        self.open
            .retain(|_, session| now_ms - session.last_event_ms <= gap);
    }

    pub fn counts(&self) -> &CoOccurrence {
        &self.counts
    }
}
