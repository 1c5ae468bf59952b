//! Training off the request path: ALS on the visitors' interactions grouped by resolved
//! profile, and the content index over the catalog. The result is published as one versioned
//! [`Trained`] model set.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use atrium_recs::{
    AlsConfig, AlsModel, CandidateLists, Catalog, ContentIndex, Csr, Interaction, Solver, Weights,
};
use atrium_store::Store;

use crate::RecsSettings;

/// One published model set.
pub struct Trained {
    /// `None` until some profile has interactions.
    pub als: Option<Arc<AlsModel>>,
    /// Profile id → row of the ALS model.
    pub rows: Arc<HashMap<String, usize>>,
    /// Each row's best items by ALS score: the first stage of `for_you` (empty without ALS).
    pub candidates: Arc<CandidateLists>,
    pub content: Arc<ContentIndex>,
    /// Items the content index covers (items added later have no content vector yet).
    pub content_items: usize,
    pub catalog_version: u64,
    pub interactions_version: u64,
    /// Log offset the training data went up to (exclusive).
    pub trained_offset: u64,
    pub report: TrainReport,
}

/// What a training run did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TrainReport {
    pub profiles: usize,
    pub items: usize,
    pub interactions: usize,
    pub nonzeros: usize,
    pub factors: usize,
    pub iterations: usize,
    pub als_seconds: f64,
    /// Items precomputed per profile as `for_you` candidates, their memory and build time.
    pub candidates_per_profile: usize,
    pub candidate_bytes: usize,
    pub candidates_seconds: f64,
    pub content_seconds: f64,
    /// Whether ALS was retrained (false when only the content index was rebuilt).
    pub als_trained: bool,
}

/// The data a training run reads, copied out of the live state under its lock.
pub struct Snapshot {
    pub user_keys: Vec<String>,
    pub histories: Vec<Vec<Interaction>>,
    pub catalog: Catalog,
    pub weights: Weights,
    pub now_ms: i64,
    pub offset: u64,
    pub catalog_version: u64,
    pub interactions_version: u64,
}

/// Groups visitor keys by the profile they resolve to now (a key the store does not know, or
/// with no store, is its own profile). Sorted by profile id, so rows are deterministic.
pub fn attribute_to_profiles(
    store: Option<&Store>,
    user_keys: &[String],
) -> BTreeMap<String, Vec<usize>> {
    let mut profiles: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let resolved: Vec<Option<String>> = match store {
        Some(store) => store
            .read(|tables| {
                let mut out = Vec::with_capacity(user_keys.len());
                for key in user_keys {
                    out.push(tables.resolve(key)?.map(|id| id.0));
                }
                Ok(out)
            })
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read identity graph; training on visitor keys");
                vec![None; user_keys.len()]
            }),
        None => vec![None; user_keys.len()],
    };
    for (user, (key, profile)) in user_keys.iter().zip(resolved).enumerate() {
        profiles
            .entry(profile.unwrap_or_else(|| key.clone()))
            .or_default()
            .push(user);
    }
    profiles
}

pub fn als_config(settings: &RecsSettings) -> AlsConfig {
    AlsConfig {
        factors: settings.factors.max(1),
        iterations: settings.iterations,
        regularization: settings.regularization,
        alpha: settings.alpha,
        solver: Solver::ConjugateGradient { steps: 3 },
        seed: settings.seed,
        threads: settings.train_threads.max(1),
    }
}

/// Items per profile list: `candidates_per_profile`, shortened so that all lists together stay
/// within `candidate_memory_mib`.
pub fn candidate_list_length(settings: &RecsSettings, profiles: usize) -> usize {
    let budget_items = settings.candidate_memory_mib * 1024 * 1024 / size_of::<u32>();
    settings
        .candidates_per_profile
        .min(budget_items / profiles.max(1))
}

/// Trains ALS (when `with_als`) and builds the content index from `snapshot`.
pub fn train(
    snapshot: &Snapshot,
    store: Option<&Store>,
    settings: &RecsSettings,
    previous: Option<&Trained>,
    with_als: bool,
) -> Trained {
    let items = snapshot.catalog.len();
    let mut report = TrainReport {
        items,
        factors: settings.factors,
        iterations: settings.iterations,
        als_trained: with_als,
        ..TrainReport::default()
    };
    let (als, rows, candidates) = if with_als {
        let started = Instant::now();
        let profiles = attribute_to_profiles(store, &snapshot.user_keys);
        let mut rows = HashMap::with_capacity(profiles.len());
        let mut interactions: Vec<Interaction> = Vec::new();
        for (row, (profile, users)) in profiles.into_iter().enumerate() {
            for user in users {
                for interaction in &snapshot.histories[user] {
                    interactions.push(Interaction {
                        user: row as u32,
                        ..*interaction
                    });
                }
            }
            rows.insert(profile, row);
        }
        report.profiles = rows.len();
        report.interactions = interactions.len();
        let matrix = Csr::from_interactions(
            rows.len(),
            items,
            &interactions,
            &snapshot.weights,
            snapshot.now_ms,
        );
        report.nonzeros = matrix.nnz();
        let als = if matrix.nnz() == 0 {
            None
        } else {
            match AlsModel::train(&matrix, &als_config(settings)) {
                Ok(model) => Some(Arc::new(model)),
                Err(error) => {
                    tracing::error!(%error, "als training failed; keeping the previous model");
                    previous.and_then(|p| p.als.clone())
                }
            }
        };
        report.als_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let candidates = match &als {
            Some(als) => {
                let per_profile = candidate_list_length(settings, als.users());
                CandidateLists::build(als, per_profile, settings.train_threads.max(1))
            }
            None => CandidateLists::default(),
        };
        report.candidates_seconds = started.elapsed().as_secs_f64();
        report.candidates_per_profile = candidates.per_user();
        report.candidate_bytes = candidates.bytes();
        (als, Arc::new(rows), Arc::new(candidates))
    } else {
        match previous {
            Some(previous) => {
                report.profiles = previous.report.profiles;
                report.interactions = previous.report.interactions;
                report.nonzeros = previous.report.nonzeros;
                report.candidates_per_profile = previous.report.candidates_per_profile;
                report.candidate_bytes = previous.report.candidate_bytes;
                (
                    previous.als.clone(),
                    previous.rows.clone(),
                    previous.candidates.clone(),
                )
            }
            None => (
                None,
                Arc::new(HashMap::new()),
                Arc::new(CandidateLists::default()),
            ),
        }
    };
    let started = Instant::now();
    let content = Arc::new(ContentIndex::build(&snapshot.catalog));
    report.content_seconds = started.elapsed().as_secs_f64();
    Trained {
        als,
        rows,
        candidates,
        content,
        content_items: items,
        catalog_version: snapshot.catalog_version,
        interactions_version: if with_als {
            snapshot.interactions_version
        } else {
            previous.map_or(0, |p| p.interactions_version)
        },
        trained_offset: snapshot.offset,
        report,
    }
}
