//! Offline evaluation over a data directory's event log: interactions attributed to profiles as
//! the service does, a random and a temporal split, ALS scored against the popularity baseline
//! with `atrium_recs::eval` (precision, recall, NDCG, MAP at k, catalog coverage).

use std::time::Instant;

use atrium_log::EventLog;
use atrium_recs::eval::{
    RankingMetrics, evaluate, popularity_scores, random_split, recommend_unseen, temporal_split,
};
use atrium_recs::{AlsModel, Csr, Interaction, Weights};
use atrium_store::Store;
use serde_json::{Value, json};

use crate::live::LiveState;
use crate::train::{als_config, attribute_to_profiles};
use crate::{RecError, RecsSettings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    /// A random 1 − f / f split of distinct (profile, item) pairs.
    Random,
    /// The latest fraction f of interactions form the test period.
    Temporal,
}

impl SplitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitKind::Random => "random",
            SplitKind::Temporal => "temporal",
        }
    }
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub k: usize,
    pub test_fraction: f64,
    pub seed: u64,
    pub splits: Vec<SplitKind>,
    pub settings: RecsSettings,
}

/// One split's results.
#[derive(Clone, Debug)]
pub struct EvalResult {
    pub split: SplitKind,
    pub profiles: usize,
    pub items: usize,
    pub train_pairs: usize,
    pub test_pairs: usize,
    pub als: RankingMetrics,
    pub popularity: RankingMetrics,
    pub als_seconds: f64,
}

fn metrics_json(metrics: &RankingMetrics) -> Value {
    json!({
        "k": metrics.k,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "ndcg": metrics.ndcg,
        "map": metrics.map,
        "coverage": metrics.coverage,
        "users": metrics.users,
    })
}

impl EvalResult {
    pub fn to_json(&self) -> Value {
        json!({
            "split": self.split.as_str(),
            "profiles": self.profiles,
            "items": self.items,
            "train_pairs": self.train_pairs,
            "test_pairs": self.test_pairs,
            "als": metrics_json(&self.als),
            "popularity": metrics_json(&self.popularity),
            "als_seconds": self.als_seconds,
        })
    }
}

/// The log's interactions on profile rows: `(profiles, items, interactions)`.
pub fn profile_interactions(
    log: &dyn EventLog,
    store: Option<&Store>,
    settings: &RecsSettings,
) -> Result<(usize, usize, Vec<Interaction>), RecError> {
    let mut live = LiveState::new(settings);
    let mut offset = 0;
    loop {
        let records = log.read(offset, 4_096)?;
        let Some(last) = records.last() else { break };
        offset = last.offset + 1;
        for record in &records {
            live.apply(record.offset, &record.payload, None);
        }
    }
    let profiles = attribute_to_profiles(store, live.user_keys());
    let mut interactions = Vec::new();
    for (row, users) in profiles.values().enumerate() {
        for user in users {
            for interaction in live.history(*user as u32) {
                interactions.push(Interaction {
                    user: row as u32,
                    ..*interaction
                });
            }
        }
    }
    Ok((profiles.len(), live.catalog.len(), interactions))
}

/// Evaluates ALS and the popularity baseline on each requested split.
pub fn offline_eval(
    log: &dyn EventLog,
    store: Option<&Store>,
    options: &EvalOptions,
) -> Result<Vec<EvalResult>, RecError> {
    let (profiles, items, interactions) = profile_interactions(log, store, &options.settings)?;
    let now = interactions
        .iter()
        .map(|interaction| interaction.timestamp_ms)
        .max()
        .unwrap_or(0);
    let weights = Weights::default();
    let mut results = Vec::new();
    for &kind in &options.splits {
        let split = match kind {
            SplitKind::Random => random_split(&interactions, options.test_fraction, options.seed),
            SplitKind::Temporal => temporal_split(&interactions, options.test_fraction),
        };
        let train = Csr::from_interactions(profiles, items, &split.train, &weights, now);
        let test =
            Csr::from_interactions(profiles, items, &split.test, &Weights::uniform(1.0), now);
        let started = Instant::now();
        let mut config = als_config(&options.settings);
        config.seed = options.seed;
        let als = if train.nnz() > 0 {
            AlsModel::train(&train, &config).ok()
        } else {
            None
        };
        let als_seconds = started.elapsed().as_secs_f64();
        let k = options.k;
        let als_metrics = match &als {
            Some(model) => evaluate(&test, items, k, |user| {
                let scores = model.score_items(model.user_vector(user));
                recommend_unseen(&scores, &train, user, k)
            }),
            None => RankingMetrics {
                k,
                ..RankingMetrics::default()
            },
        };
        let popular = popularity_scores(&train);
        let popularity = evaluate(&test, items, k, |user| {
            recommend_unseen(&popular, &train, user, k)
        });
        results.push(EvalResult {
            split: kind,
            profiles,
            items,
            train_pairs: train.nnz(),
            test_pairs: test.nnz(),
            als: als_metrics,
            popularity,
            als_seconds,
        });
    }
    Ok(results)
}
