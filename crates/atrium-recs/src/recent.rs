//! Recently viewed items and the "buy again" model for replenishable items.

use std::collections::{HashMap, VecDeque};

use crate::catalog::Catalog;
use crate::interaction::Interaction;
use crate::rules::{Candidate, Reason};
use crate::{ItemIndex, UserIndex};

const DAY_MS: f64 = 86_400_000.0;

/// The last `capacity` distinct items each user viewed, newest first.
#[derive(Clone, Debug)]
pub struct RecentlyViewed {
    capacity: usize,
    per_user: HashMap<UserIndex, VecDeque<(ItemIndex, i64)>>,
}

impl RecentlyViewed {
    pub fn new(capacity: usize) -> RecentlyViewed {
        RecentlyViewed {
            capacity: capacity.max(1),
            per_user: HashMap::new(),
        }
    }

    /// Records views and clicks; other kinds are ignored. Older events than the newest one
    /// kept for the same item do not move it.
    pub fn observe(&mut self, interaction: &Interaction) {
        if !interaction.kind.is_view() {
            return;
        }
        let recent = self.per_user.entry(interaction.user).or_default();
        if let Some(position) = recent.iter().position(|(i, _)| *i == interaction.item) {
            if recent[position].1 >= interaction.timestamp_ms {
                return;
            }
            recent.remove(position);
        }
        let position = recent
            .iter()
            .position(|(_, at)| *at <= interaction.timestamp_ms)
            .unwrap_or(recent.len());
        recent.insert(position, (interaction.item, interaction.timestamp_ms));
        recent.truncate(self.capacity);
    }

    /// `(item, viewed_at_ms)`, newest first.
    pub fn items(&self, user: UserIndex) -> Vec<(ItemIndex, i64)> {
        self.per_user
            .get(&user)
            .map(|recent| recent.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn candidates(&self, user: UserIndex) -> Vec<Candidate> {
        let recent = self.items(user);
        let count = recent.len() as f32;
        recent
            .into_iter()
            .enumerate()
            .map(|(rank, (item, viewed_at_ms))| Candidate {
                item,
                score: count - rank as f32,
                reason: Reason::RecentlyViewed { viewed_at_ms },
            })
            .collect()
    }
}

/// Purchase times per user and item, to suggest replenishable items when they are due.
#[derive(Clone, Debug, Default)]
pub struct BuyAgain {
    purchases: HashMap<UserIndex, HashMap<ItemIndex, Vec<i64>>>,
}

impl BuyAgain {
    pub fn new() -> BuyAgain {
        BuyAgain::default()
    }

    pub fn observe(&mut self, interaction: &Interaction) {
        if !interaction.kind.is_purchase() {
            return;
        }
        let times = self
            .purchases
            .entry(interaction.user)
            .or_default()
            .entry(interaction.item)
            .or_default();
        let position = times.partition_point(|t| *t <= interaction.timestamp_ms);
        times.insert(position, interaction.timestamp_ms);
    }

    /// Items the user bought whose replenishment interval is known — the catalog's
    /// `replenish_every_days`, else the median gap between this user's repeat purchases — scored
    /// by how due they are: `elapsed / interval`, kept from half the interval on, capped at 2.
    pub fn candidates(&self, user: UserIndex, catalog: &Catalog, now_ms: i64) -> Vec<Candidate> {
        let Some(bought) = self.purchases.get(&user) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (&item, times) in bought {
            if item as usize >= catalog.len() {
                continue;
            }
            let Some(&last_purchase_ms) = times.last() else {
                continue;
            };
            let interval_days = match catalog.item(item).replenish_every_days {
                Some(days) => f64::from(days),
                None => match median_gap_days(times) {
                    Some(days) => days,
                    None => continue,
                },
            };
            if interval_days <= 0.0 {
                continue;
            }
            let elapsed_days = (now_ms - last_purchase_ms) as f64 / DAY_MS;
            let due = elapsed_days / interval_days;
            if due < 0.5 {
                continue;
            }
            // Most relevant when due; fades slowly once well overdue.
            let score = if due <= 1.0 { due } else { 1.0 / due.min(2.0) };
            out.push(Candidate {
                item,
                score: score as f32,
                reason: Reason::BuyAgain {
                    last_purchase_ms,
                    every_days: interval_days as f32,
                },
            });
        }
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        out
    }
}

fn median_gap_days(times: &[i64]) -> Option<f64> {
    let mut gaps: Vec<i64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2] as f64 / DAY_MS)
}
