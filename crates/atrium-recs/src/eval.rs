//! Offline evaluation: train/test splits, ranking metrics at k, catalog coverage, and the
//! popularity baseline that is always reported alongside.
//!
//! Metric definitions (per user with at least one relevant test item, then averaged):
//! - precision@k = hits in the top k / k
//! - recall@k = hits in the top k / |relevant|
//! - NDCG@k = Σ_{hit at rank i (0-based)} 1 / log2(i + 2), divided by the same sum for an ideal
//!   list of min(k, |relevant|) hits
//! - MAP@k: mean of AP@k = Σ_{hit at rank i} precision@(i + 1) / min(k, |relevant|)
//! - coverage = distinct items recommended to anyone / catalog size

use std::collections::{BTreeSet, HashSet};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::ItemIndex;
use crate::als::top_k;
use crate::csr::Csr;
use crate::interaction::Interaction;

pub fn precision_at_k(ranked: &[ItemIndex], relevant: &HashSet<ItemIndex>, k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    hits(ranked, relevant, k) as f64 / k as f64
}

pub fn recall_at_k(ranked: &[ItemIndex], relevant: &HashSet<ItemIndex>, k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    hits(ranked, relevant, k) as f64 / relevant.len() as f64
}

pub fn ndcg_at_k(ranked: &[ItemIndex], relevant: &HashSet<ItemIndex>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, item)| relevant.contains(item))
        .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..k.min(relevant.len()))
        .map(|rank| 1.0 / (rank as f64 + 2.0).log2())
        .sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

pub fn average_precision_at_k(
    ranked: &[ItemIndex],
    relevant: &HashSet<ItemIndex>,
    k: usize,
) -> f64 {
    let denominator = k.min(relevant.len());
    if denominator == 0 {
        return 0.0;
    }
    let mut hits_so_far = 0usize;
    let mut sum = 0.0;
    for (rank, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            hits_so_far += 1;
            sum += hits_so_far as f64 / (rank + 1) as f64;
        }
    }
    sum / denominator as f64
}

fn hits(ranked: &[ItemIndex], relevant: &HashSet<ItemIndex>, k: usize) -> usize {
    ranked
        .iter()
        .take(k)
        .filter(|item| relevant.contains(item))
        .count()
}

/// Averages over the evaluated users, plus catalog coverage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankingMetrics {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub coverage: f64,
    pub users: usize,
}

/// Scores `recommend(user)` (a ranked list, at least `k` long where possible) against the
/// nonzero entries of each `test` row; users with no test items are skipped. `items` is the
/// catalog size for coverage.
pub fn evaluate(
    test: &Csr,
    items: usize,
    k: usize,
    mut recommend: impl FnMut(usize) -> Vec<ItemIndex>,
) -> RankingMetrics {
    let mut metrics = RankingMetrics {
        k,
        ..RankingMetrics::default()
    };
    let mut recommended: BTreeSet<ItemIndex> = BTreeSet::new();
    for user in 0..test.rows() {
        let (relevant_items, _) = test.row(user);
        if relevant_items.is_empty() {
            continue;
        }
        let relevant: HashSet<ItemIndex> = relevant_items.iter().copied().collect();
        let ranked = recommend(user);
        recommended.extend(ranked.iter().take(k).copied());
        metrics.precision += precision_at_k(&ranked, &relevant, k);
        metrics.recall += recall_at_k(&ranked, &relevant, k);
        metrics.ndcg += ndcg_at_k(&ranked, &relevant, k);
        metrics.map += average_precision_at_k(&ranked, &relevant, k);
        metrics.users += 1;
    }
    if metrics.users > 0 {
        let users = metrics.users as f64;
        metrics.precision /= users;
        metrics.recall /= users;
        metrics.ndcg /= users;
        metrics.map /= users;
    }
    if items > 0 {
        metrics.coverage = recommended.len() as f64 / items as f64;
    }
    metrics
}

/// The popularity baseline: items by number of users in `train` who interacted with them.
pub fn popularity_scores(train: &Csr) -> Vec<f32> {
    let mut counts = vec![0f32; train.cols()];
    for user in 0..train.rows() {
        for &item in train.row(user).0 {
            counts[item as usize] += 1.0;
        }
    }
    counts
}

/// Top `k` of `scores` for `user`, excluding what the user has in `train`.
pub fn recommend_unseen(scores: &[f32], train: &Csr, user: usize, k: usize) -> Vec<ItemIndex> {
    top_k(scores, k, |item| {
        user < train.rows() && train.contains(user, item)
    })
    .into_iter()
    .map(|(item, _)| item)
    .collect()
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<Interaction>,
    pub test: Vec<Interaction>,
}

/// Random split by distinct (user, item) pair: all interactions of a pair land on the same side,
/// `test_fraction` of the pairs in test. Deterministic for a given seed and input set.
pub fn random_split(interactions: &[Interaction], test_fraction: f64, seed: u64) -> Split {
    let mut pairs: Vec<(u32, u32)> = interactions.iter().map(|i| (i.user, i.item)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    let test_count = ((pairs.len() as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
    let mut test_pairs: Vec<(u32, u32)> = pairs[..test_count].to_vec();
    test_pairs.sort_unstable();
    let mut split = Split::default();
    for interaction in interactions {
        if test_pairs
            .binary_search(&(interaction.user, interaction.item))
            .is_ok()
        {
            split.test.push(*interaction);
        } else {
            split.train.push(*interaction);
        }
    }
    split
}

/// Temporal split at one global cut-off: the latest `test_fraction` of interactions (by
/// timestamp) form the test period; test interactions with a pair already seen in training are
/// dropped, since recommenders exclude seen items.
pub fn temporal_split(interactions: &[Interaction], test_fraction: f64) -> Split {
    let mut times: Vec<i64> = interactions.iter().map(|i| i.timestamp_ms).collect();
    times.sort_unstable();
    if times.is_empty() {
        return Split::default();
    }
    let train_count =
        ((times.len() as f64) * (1.0 - test_fraction.clamp(0.0, 1.0))).round() as usize;
    let cutoff = times.get(train_count).copied().unwrap_or(i64::MAX);
    let mut split = Split::default();
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    for interaction in interactions {
        if interaction.timestamp_ms < cutoff {
            split.train.push(*interaction);
            seen.insert((interaction.user, interaction.item));
        }
    }
    for interaction in interactions {
        if interaction.timestamp_ms >= cutoff
            && !seen.contains(&(interaction.user, interaction.item))
        {
            split.test.push(*interaction);
        }
    }
    split
}
