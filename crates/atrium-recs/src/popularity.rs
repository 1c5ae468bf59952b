//! Popular and trending items, with exponential time decay, overall or per category.

use crate::ItemIndex;
use crate::catalog::Catalog;
use crate::interaction::{Interaction, Weights, decay_factor};
use crate::rules::{Candidate, Reason};

/// Per-item sums of weights that halve every `half_life_ms`. Updated one event at a time;
/// events may arrive out of order.
#[derive(Clone, Debug)]
pub struct DecayedScores {
    half_life_ms: i64,
    /// `(value as of the timestamp, timestamp)` per item.
    entries: Vec<(f64, i64)>,
}

impl DecayedScores {
    pub fn new(half_life_ms: i64) -> DecayedScores {
        assert!(half_life_ms > 0, "half-life must be positive");
        DecayedScores {
            half_life_ms,
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, item: ItemIndex, weight: f64, timestamp_ms: i64) {
        let slot = item as usize;
        if slot >= self.entries.len() {
            self.entries.resize(slot + 1, (0.0, i64::MIN));
        }
        let (value, as_of) = self.entries[slot];
        self.entries[slot] = if as_of == i64::MIN {
            (weight, timestamp_ms)
        } else if timestamp_ms >= as_of {
            let decayed = value * decay_factor(timestamp_ms - as_of, self.half_life_ms);
            (decayed + weight, timestamp_ms)
        } else {
            let late = weight * decay_factor(as_of - timestamp_ms, self.half_life_ms);
            (value + late, as_of)
        };
    }

    /// The item's score at `now_ms` (scores do not grow for times before the last event).
    pub fn score(&self, item: ItemIndex, now_ms: i64) -> f64 {
        match self.entries.get(item as usize) {
            Some(&(value, as_of)) if as_of != i64::MIN => {
                value * decay_factor((now_ms - as_of).max(0), self.half_life_ms)
            }
            _ => 0.0,
        }
    }

    pub fn half_life_ms(&self) -> i64 {
        self.half_life_ms
    }

    /// Items with a positive score accepted by `keep`, best first (ties by index).
    pub fn top(
        &self,
        now_ms: i64,
        count: usize,
        keep: impl Fn(ItemIndex) -> bool,
    ) -> Vec<(ItemIndex, f64)> {
        let mut scored: Vec<(ItemIndex, f64)> = (0..self.entries.len() as u32)
            .filter(|item| keep(*item))
            .map(|item| (item, self.score(item, now_ms)))
            .filter(|(_, score)| *score > 0.0)
            .collect();
        sort_desc(&mut scored);
        scored.truncate(count);
        scored
    }
}

pub(crate) fn sort_desc(scored: &mut [(ItemIndex, f64)]) {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Time-decayed popularity. Per-category lists are computed at query time, so any category
/// (or none) can be asked for without materializing one list per category.
#[derive(Clone, Debug)]
pub struct Popularity {
    weights: Weights,
    scores: DecayedScores,
}

impl Popularity {
    /// Interactions count with `weights.kind_weight`; recency with `half_life_ms`.
    pub fn new(weights: Weights, half_life_ms: i64) -> Popularity {
        Popularity {
            weights,
            scores: DecayedScores::new(half_life_ms),
        }
    }

    pub fn observe(&mut self, interaction: &Interaction) {
        let weight = f64::from(self.weights.kind_weight(interaction.kind));
        if weight > 0.0 {
            let quantity = f64::from(interaction.quantity.max(1));
            self.scores.add(
                interaction.item,
                weight * quantity,
                interaction.timestamp_ms,
            );
        }
    }

    pub fn score(&self, item: ItemIndex, now_ms: i64) -> f64 {
        self.scores.score(item, now_ms)
    }

    /// The most popular items, optionally of one category.
    pub fn candidates(
        &self,
        catalog: &Catalog,
        category: Option<u32>,
        now_ms: i64,
        count: usize,
    ) -> Vec<Candidate> {
        let in_category = |item: ItemIndex| {
            (item as usize) < catalog.len()
                && category.is_none_or(|c| catalog.category_index(item) == c)
        };
        let category_name = category.map(|c| catalog.categories()[c as usize].clone());
        self.scores
            .top(now_ms, count, in_category)
            .into_iter()
            .map(|(item, score)| Candidate {
                item,
                score: score as f32,
                reason: Reason::Popular {
                    category: category_name.clone(),
                },
            })
            .collect()
    }
}

/// Trending: activity over a short half-life in excess of what the long half-life predicts.
/// `trend = short − long · (short_half_life / long_half_life)`: an item with steady traffic
/// scores about zero; a surge scores high.
#[derive(Clone, Debug)]
pub struct Trending {
    weights: Weights,
    short: DecayedScores,
    long: DecayedScores,
}

impl Trending {
    pub fn new(weights: Weights, short_half_life_ms: i64, long_half_life_ms: i64) -> Trending {
        assert!(
            short_half_life_ms < long_half_life_ms,
            "short must be < long"
        );
        Trending {
            weights,
            short: DecayedScores::new(short_half_life_ms),
            long: DecayedScores::new(long_half_life_ms),
        }
    }

    pub fn observe(&mut self, interaction: &Interaction) {
        let weight = f64::from(self.weights.kind_weight(interaction.kind));
        if weight > 0.0 {
            self.short
                .add(interaction.item, weight, interaction.timestamp_ms);
            self.long
                .add(interaction.item, weight, interaction.timestamp_ms);
        }
    }

    pub fn trend(&self, item: ItemIndex, now_ms: i64) -> f64 {
        let ratio = self.short.half_life_ms() as f64 / self.long.half_life_ms() as f64;
        self.short.score(item, now_ms) - self.long.score(item, now_ms) * ratio
    }

    pub fn candidates(
        &self,
        catalog: &Catalog,
        category: Option<u32>,
        now_ms: i64,
        count: usize,
    ) -> Vec<Candidate> {
        let category_name = category.map(|c| catalog.categories()[c as usize].clone());
        let mut scored: Vec<(ItemIndex, f64)> = (0..catalog.len() as u32)
            .filter(|item| category.is_none_or(|c| catalog.category_index(*item) == c))
            .map(|item| (item, self.trend(item, now_ms)))
            .filter(|(_, trend)| *trend > 0.0)
            .collect();
        sort_desc(&mut scored);
        scored.truncate(count);
        scored
            .into_iter()
            .map(|(item, trend)| Candidate {
                item,
                score: trend as f32,
                reason: Reason::Trending {
                    category: category_name.clone(),
                },
            })
            .collect()
    }
}
