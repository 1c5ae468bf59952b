//! The recommendation service: a consumer of the event log (its own thread, its own offset)
//! that keeps the catalog and the real-time models (co-visitation, co-purchase, recently
//! viewed, buy again, popularity, trending, attribution of clicks and orders) in memory, trains
//! ALS and the content index off the request path, and answers recommendation requests.
//!
//! State is a function of the log: on start the consumer replays the log from offset 0. Events
//! are kept per *visitor key* (`user_id:…` or `anonymous_id:…`); a request for a profile reads
//! the profile's identity graph from an `atrium-store` snapshot and unions the keys it holds, so
//! anonymous browsing counts as soon as the visitor identifies. Training groups keys by the
//! profile they resolve to at training time.
//!
//! No HTTP here: `atrium-server` maps requests and errors.

pub mod catalog;
pub mod eval;
pub mod live;
pub mod request;
pub mod serve;
pub mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atrium_identity::Identifier;
use atrium_log::EventLog;
use atrium_pipeline::IdentifierHasher;
use atrium_recs::{ModelRegistry, UserIndex};
use atrium_store::Store;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use catalog::{Item, ItemCatalog, ItemError, validate_item, validate_items};
pub use live::{LiveState, parse_recommendation_id};
pub use request::{MAX_K, RecRequest, Rules};
pub use serve::{RecItem, Retrieval, Visitor, placement_models};
pub use train::{TrainReport, Trained};

/// Where recommendations are shown; each has its own models and fallback chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placement {
    ForYou,
    Similar,
    BoughtTogether,
    Trending,
    RecentlyViewed,
    BuyAgain,
}

impl Placement {
    pub const ALL: [Placement; 6] = [
        Placement::ForYou,
        Placement::Similar,
        Placement::BoughtTogether,
        Placement::Trending,
        Placement::RecentlyViewed,
        Placement::BuyAgain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::ForYou => "for_you",
            Placement::Similar => "similar",
            Placement::BoughtTogether => "bought_together",
            Placement::Trending => "trending",
            Placement::RecentlyViewed => "recently_viewed",
            Placement::BuyAgain => "buy_again",
        }
    }

    pub fn parse(text: &str) -> Option<Placement> {
        Placement::ALL
            .into_iter()
            .find(|placement| placement.as_str() == text)
    }

    pub fn names() -> String {
        Placement::ALL.map(Placement::as_str).join(", ")
    }

    pub fn needs_profile(self) -> bool {
        matches!(
            self,
            Placement::ForYou | Placement::RecentlyViewed | Placement::BuyAgain
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecError {
    #[error("{0}")]
    UnknownPlacement(String),
    #[error("{0}")]
    UnknownItem(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidRules(String),
    #[error("{0}")]
    ProfileNotFound(String),
    #[error("cannot read the identity graph: {0}")]
    Store(#[from] atrium_store::StoreError),
    #[error("cannot read the event log: {0}")]
    Log(#[from] atrium_log::LogError),
}

/// `[recs]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecsSettings {
    /// Retrain ALS this often when there are new interactions, in seconds (0: only on demand).
    pub train_interval_secs: u64,
    /// ALS latent factors.
    pub factors: usize,
    /// ALS iterations.
    pub iterations: usize,
    /// ALS regularization λ.
    pub regularization: f32,
    /// ALS confidence `1 + α r`.
    pub alpha: f32,
    /// Threads a training run uses (the rest of the machine keeps serving).
    pub train_threads: usize,
    /// Seed of the initial ALS factors (fixed seed, same log: same model).
    pub seed: u64,
    /// A visitor's session ends after this many idle minutes (co-visitation, "for you").
    pub session_gap_minutes: u32,
    /// Items precomputed per trained profile as `for_you` candidates (its best by ALS score);
    /// requests re-rank these plus live candidates instead of scoring the whole catalog.
    pub candidates_per_profile: usize,
    /// Upper bound on the candidate lists' memory (4 bytes per item per profile), in MiB: with
    /// many profiles each list gets shorter.
    pub candidate_memory_mib: usize,
    /// A/B splits of a placement between two of its models.
    pub splits: Vec<PlacementSplit>,
}

impl Default for RecsSettings {
    fn default() -> Self {
        RecsSettings {
            train_interval_secs: 300,
            factors: 32,
            iterations: 10,
            regularization: 0.05,
            alpha: 2.0,
            train_threads: 1,
            seed: 42,
            session_gap_minutes: 30,
            candidates_per_profile: 300,
            candidate_memory_mib: 512,
            splits: Vec::new(),
        }
    }
}

/// A placement served by two of its models: a profile is in `treatment` when
/// `hash("recs.<placement>", <profile id or reference>)` (GrowthBook's hash v2, in [0, 1)) is
/// below `treatment_share`, else in `control`. Stable per profile; no state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSplit {
    pub placement: String,
    pub control: String,
    pub treatment: String,
    #[serde(default = "half")]
    pub treatment_share: f64,
}

fn half() -> f64 {
    0.5
}

impl RecsSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=512).contains(&self.factors) || self.iterations > 200 {
            return Err("recs.factors must be 1 to 512 and recs.iterations at most 200".into());
        }
        if self.regularization.is_nan()
            || self.regularization <= 0.0
            || self.alpha.is_nan()
            || self.alpha <= 0.0
        {
            return Err("recs.regularization and recs.alpha must be positive".into());
        }
        if self.candidates_per_profile > 100_000 {
            return Err("recs.candidates_per_profile must be at most 100000".into());
        }
        for split in &self.splits {
            let Some(placement) = Placement::parse(&split.placement) else {
                return Err(format!(
                    "recs.splits: unknown placement `{}`: one of {}",
                    split.placement,
                    Placement::names()
                ));
            };
            let models = placement_models(placement);
            for model in [&split.control, &split.treatment] {
                if !models.contains(&model.as_str()) {
                    return Err(format!(
                        "recs.splits: placement `{}` has no model `{model}`: one of {models:?}",
                        split.placement
                    ));
                }
            }
            if !(0.0..=1.0).contains(&split.treatment_share) {
                return Err("recs.splits: treatment_share must be from 0 to 1".into());
            }
        }
        Ok(())
    }
}

/// Responses served per (placement, model): the impressions the stats divide by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub responses: u64,
    pub items: u64,
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct RecResponse {
    pub recommendation_id: String,
    pub placement: Placement,
    pub model: String,
    pub variant: Option<&'static str>,
    pub items: Vec<RecItem>,
    /// The response document (ids, names, prices, reasons …).
    pub body: Value,
}

/// The response document (field order as sent).
#[derive(Serialize)]
struct ResponseBody<'a> {
    recommendation_id: &'a str,
    placement: &'a str,
    model: &'a str,
    model_version: Option<u64>,
    variant: Option<&'static str>,
    profile_id: Option<&'a str>,
    items: Vec<ResponseItem<'a>>,
}

#[derive(Serialize)]
struct ResponseItem<'a> {
    id: &'a str,
    name: Option<&'a str>,
    category: Option<String>,
    brand: Option<&'a str>,
    price: Option<f64>,
    currency: Option<&'a str>,
    in_stock: bool,
    image_url: Option<&'a str>,
    url: Option<&'a str>,
    score: f64,
    source: &'a str,
    fallback_level: usize,
    reason: &'a Value,
}

const STEP_RECORDS: usize = 1_000;
const RANKING_REFRESH: Duration = Duration::from_millis(250);
const SAVE_SERVED_EVERY: Duration = Duration::from_secs(5);

pub struct RecService {
    log: Arc<dyn EventLog>,
    store: Option<Arc<Store>>,
    hasher: Option<IdentifierHasher>,
    settings: RecsSettings,
    live: RwLock<LiveState>,
    step_lock: Mutex<Option<Instant>>,
    applied: Mutex<u64>,
    applied_changed: Condvar,
    models: ModelRegistry<Trained>,
    training: Mutex<Option<Instant>>,
    served: Mutex<BTreeMap<(String, String), Served>>,
    served_dirty: AtomicBool,
    served_path: Option<PathBuf>,
}

impl RecService {
    /// A service over `log`, reading identity graphs from `store` (none: every visitor key is
    /// its own profile), matching erasure records with `hasher`. `state_dir` keeps the served
    /// counters across restarts (the only state not derived from the log). The consumer starts
    /// at offset 0: call [`RecService::spawn`] or [`RecService::catch_up`].
    pub fn open(
        log: Arc<dyn EventLog>,
        store: Option<Arc<Store>>,
        hasher: Option<IdentifierHasher>,
        settings: RecsSettings,
        state_dir: Option<PathBuf>,
    ) -> Result<RecService, std::io::Error> {
        let served_path = match state_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                Some(dir.join("served.json"))
            }
            None => None,
        };
        let served = served_path
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<Vec<(String, String, Served)>>(&bytes).ok())
            .map(|rows| {
                rows.into_iter()
                    .map(|(placement, model, served)| ((placement, model), served))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RecService {
            live: RwLock::new(LiveState::new(&settings)),
            log,
            store,
            hasher,
            settings,
            step_lock: Mutex::new(None),
            applied: Mutex::new(0),
            applied_changed: Condvar::new(),
            models: ModelRegistry::new(),
            training: Mutex::new(None),
            served: Mutex::new(served),
            served_dirty: AtomicBool::new(false),
            served_path,
        })
    }

    pub fn settings(&self) -> &RecsSettings {
        &self.settings
    }

    /// Applies the next batch of log records; returns how many were read.
    pub fn step(&self) -> Result<usize, RecError> {
        let mut last_refresh = self.step_lock.lock();
        let from = *self.applied.lock();
        let records = self.log.read(from, STEP_RECORDS)?;
        let caught_up = records.len() < STEP_RECORDS;
        let next = records.last().map_or(from, |last| last.offset + 1);
        {
            let mut live = self.live.write();
            for record in &records {
                live.apply(record.offset, &record.payload, self.hasher.as_ref());
            }
            live.next_offset = next;
            let due = last_refresh.is_none_or(|at| at.elapsed() >= RANKING_REFRESH);
            if live.rankings_dirty() && (caught_up || due) {
                live.refresh();
                *last_refresh = Some(Instant::now());
            }
        }
        if next != from {
            *self.applied.lock() = next;
            self.applied_changed.notify_all();
        }
        Ok(records.len())
    }

    /// Applies everything in the log now; returns the applied offset.
    pub fn catch_up(&self) -> Result<u64, RecError> {
        while self.step()? == STEP_RECORDS {}
        Ok(self.applied_offset())
    }

    /// One past the last log offset applied.
    pub fn applied_offset(&self) -> u64 {
        *self.applied.lock()
    }

    /// Waits until every offset below `offset` is applied, or the timeout passes.
    pub fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut applied = self.applied.lock();
        while *applied < offset {
            if self
                .applied_changed
                .wait_until(&mut applied, deadline)
                .timed_out()
            {
                return *applied >= offset;
            }
        }
        true
    }

    /// Starts the consumer thread (real-time updates) and the trainer thread (ALS on the
    /// configured interval, the content index when the catalog changed).
    pub fn spawn(self: Arc<Self>, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
        let consumer = {
            let service = self.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("atrium-recs".into())
                .spawn(move || {
                    atrium_log::priority::run_in_background();
                    service.consume(&stop);
                })
                .expect("spawning the recs consumer thread")
        };
        let trainer = std::thread::Builder::new()
            .name("atrium-recs-train".into())
            .spawn(move || {
                atrium_log::priority::run_in_background();
                self.schedule_training(&stop);
            })
            .expect("spawning the recs trainer thread");
        vec![consumer, trainer]
    }

    fn consume(&self, stop: &AtomicBool) {
        let mut saved_at = Instant::now();
        while !stop.load(Ordering::Acquire) {
            match self.step() {
                Ok(0) => {
                    self.log
                        .wait_for(self.applied_offset(), Duration::from_millis(200));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, "recs consumer step failed, retrying in 1s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            if saved_at.elapsed() >= SAVE_SERVED_EVERY {
                self.save_served();
                saved_at = Instant::now();
            }
        }
        self.save_served();
    }

    fn schedule_training(&self, stop: &AtomicBool) {
        let mut content_built_at: Option<Instant> = None;
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(200));
            let caught_up = self.applied_offset() >= self.log.end_offset();
            let (catalog_version, interactions_version) = {
                let live = self.live.read();
                (live.catalog_version, live.interactions_version)
            };
            let current = self.models.current();
            let als_due = match &current {
                None => caught_up,
                Some(current) => {
                    let interval = self.settings.train_interval_secs;
                    let last = *self.training.lock();
                    interval > 0
                        && current.model.interactions_version != interactions_version
                        && last.is_none_or(|at| at.elapsed() >= Duration::from_secs(interval))
                }
            };
            let content_due = current.as_ref().is_some_and(|current| {
                current.model.catalog_version != catalog_version
                    && content_built_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(2))
            });
            if als_due {
                self.train(true);
                content_built_at = Some(Instant::now());
            } else if content_due {
                self.train(false);
                content_built_at = Some(Instant::now());
            }
        }
    }

    /// Trains now (ALS too when `with_als`, else only the content index) and publishes the
    /// result; returns the new version and what the run did.
    pub fn train(&self, with_als: bool) -> (u64, TrainReport) {
        let mut last = self.training.lock();
        let snapshot = {
            let live = self.live.read();
            let user_keys = live.user_keys().to_vec();
            let histories = (0..user_keys.len() as UserIndex)
                .map(|user| live.history(user).to_vec())
                .collect();
            train::Snapshot {
                user_keys,
                histories,
                catalog: live.catalog.models().clone(),
                weights: live.weights.clone(),
                now_ms: live.now_ms,
                offset: live.next_offset,
                catalog_version: live.catalog_version,
                interactions_version: live.interactions_version,
            }
        };
        let previous = self.models.current();
        let trained = train::train(
            &snapshot,
            self.store.as_deref(),
            &self.settings,
            previous.as_ref().map(|p| &p.model),
            with_als,
        );
        let report = trained.report.clone();
        let version = self.models.publish(trained);
        if with_als {
            *last = Some(Instant::now());
        }
        tracing::info!(
            version,
            profiles = report.profiles,
            items = report.items,
            als_seconds = report.als_seconds,
            candidates_per_profile = report.candidates_per_profile,
            candidate_bytes = report.candidate_bytes,
            als = with_als,
            "recommendation models published"
        );
        (version, report)
    }

    /// The profile id and visitor keys a reference names. Unknown `kind:value` references are
    /// new visitors (no keys yet, cold start); an unknown profile id is an error.
    fn visitor(&self, reference: &str) -> Result<(Option<String>, Vec<String>), RecError> {
        let normalized = normalize_reference(reference);
        let mut keys: Vec<String> = Vec::new();
        let mut profile_id = None;
        if let Some(store) = &self.store {
            store.read(|tables| {
                if let Some(id) = tables.resolve(&normalized)? {
                    if let Some(graph) = tables.graph(&id)? {
                        for record in &graph.identifiers {
                            if matches!(record.id.kind.as_str(), "user_id" | "anonymous_id") {
                                keys.push(format!("{}:{}", record.id.kind, record.id.value));
                            }
                        }
                    }
                    profile_id = Some(id.0);
                }
                Ok(())
            })?;
        }
        let is_visitor_key =
            normalized.starts_with("user_id:") || normalized.starts_with("anonymous_id:");
        if is_visitor_key && !keys.contains(&normalized) {
            keys.push(normalized.clone());
        }
        if profile_id.is_none() && !is_visitor_key && !normalized.contains(':') {
            return Err(RecError::ProfileNotFound(format!(
                "no profile `{reference}`; use a profile id or kind:value such as anonymous_id:a-1"
            )));
        }
        Ok((profile_id, keys))
    }

    /// Answers one request (already validated by [`RecRequest`]'s constructors).
    pub fn recommend(&self, request: &RecRequest) -> Result<RecResponse, RecError> {
        self.recommend_with(request, Retrieval::TwoStage)
    }

    /// [`RecService::recommend`] with a chosen retrieval for `for_you` (benchmarks compare the
    /// two-stage answer with the exhaustive one).
    pub fn recommend_with(
        &self,
        request: &RecRequest,
        retrieval: Retrieval,
    ) -> Result<RecResponse, RecError> {
        let (mut response, body) = self.respond(request, retrieval, |body| {
            serde_json::to_value(body).expect("a response body is JSON")
        })?;
        response.body = body;
        Ok(response)
    }

    /// [`RecService::recommend`]'s response document serialized directly (the bytes of
    /// `serde_json::to_vec(&response.body)`, without building the `Value` first): what the
    /// HTTP API sends.
    pub fn recommend_json(&self, request: &RecRequest) -> Result<Vec<u8>, RecError> {
        self.respond(request, Retrieval::TwoStage, |body| {
            serde_json::to_vec(body).expect("a response body is JSON")
        })
        .map(|(_, bytes)| bytes)
    }

    /// Answers `request` and renders the response document with `render` while the live state
    /// is still read-locked (the document borrows catalog entries); `body` is left `Null`.
    fn respond<T>(
        &self,
        request: &RecRequest,
        retrieval: Retrieval,
        render: impl FnOnce(&ResponseBody<'_>) -> T,
    ) -> Result<(RecResponse, T), RecError> {
        let placement = Placement::parse(&request.placement).ok_or_else(|| {
            RecError::UnknownPlacement(format!(
                "unknown placement `{}`: one of {}",
                request.placement,
                Placement::names()
            ))
        })?;
        let (profile_id, keys) = match &request.profile {
            Some(reference) => self.visitor(reference)?,
            None => (None, Vec::new()),
        };
        let models = placement_models(placement);
        let (model, variant) = match &request.model {
            Some(model) if models.contains(&model.as_str()) => (model.clone(), None),
            Some(model) => {
                return Err(RecError::InvalidRequest(format!(
                    "placement `{}` has no model `{model}`: one of {models:?}",
                    placement.as_str()
                )));
            }
            None => self.assign(
                placement,
                profile_id.as_deref().or(request.profile.as_deref()),
            ),
        };
        let trained = self.models.current();
        let live = self.live.read();
        let visitor = Visitor {
            profile_id: profile_id.clone(),
            users: keys.iter().filter_map(|key| live.user(key)).collect(),
        };
        let answer = serve::recommend(
            &live,
            trained.as_ref().map(|t| (&t.model, t.version)),
            request,
            placement,
            &model,
            &visitor,
            retrieval,
        )?;
        let recommendation_id = format!("rec.{}.{}.{}", placement.as_str(), model, hex_nonce());
        let items: Vec<ResponseItem<'_>> = answer
            .items
            .iter()
            .map(|item| {
                let entry = live.catalog.item(item.item);
                ResponseItem {
                    id: &item.id,
                    name: entry.map(|e| e.name.as_str()),
                    category: entry.map(Item::category_path),
                    brand: entry.and_then(|e| e.brand.as_deref()),
                    price: entry.map(|e| e.price),
                    currency: entry.map(|e| e.currency.as_str()),
                    in_stock: entry.is_some_and(Item::in_stock),
                    image_url: entry.and_then(|e| e.image_url.as_deref()),
                    url: entry.and_then(|e| e.url.as_deref()),
                    // As a `Value` holds it (f32 widened to f64).
                    score: f64::from(item.score),
                    source: &item.source,
                    fallback_level: item.fallback_level,
                    reason: &item.reason,
                }
            })
            .collect();
        let rendered = render(&ResponseBody {
            recommendation_id: &recommendation_id,
            placement: placement.as_str(),
            model: &answer.model,
            model_version: answer.model_version,
            variant,
            profile_id: profile_id.as_deref(),
            items,
        });
        drop(live);
        {
            let mut served = self.served.lock();
            let key = (placement.as_str().to_owned(), answer.model.clone());
            let entry = served.entry(key).or_default();
            entry.responses += 1;
            entry.items += answer.items.len() as u64;
        }
        self.served_dirty.store(true, Ordering::Release);
        Ok((
            RecResponse {
                recommendation_id,
                placement,
                model: answer.model,
                variant,
                items: answer.items,
                body: Value::Null,
            },
            rendered,
        ))
    }

    /// The model a profile gets on a placement: the split's arm, or the placement's default.
    fn assign(&self, placement: Placement, key: Option<&str>) -> (String, Option<&'static str>) {
        let default = placement_models(placement)[0].to_owned();
        let Some(split) = self
            .settings
            .splits
            .iter()
            .find(|split| split.placement == placement.as_str())
        else {
            return (default, None);
        };
        let Some(key) = key else {
            return (split.control.clone(), Some("control"));
        };
        let bucket = atrium_experiments::hash(&format!("recs.{}", placement.as_str()), key, 2)
            .unwrap_or(1.0);
        if bucket < split.treatment_share {
            (split.treatment.clone(), Some("treatment"))
        } else {
            (split.control.clone(), Some("control"))
        }
    }

    /// A catalog item by id (listed items only).
    pub fn item(&self, id: &str) -> Option<Item> {
        self.live.read().catalog.get(id).cloned()
    }

    /// Impressions, clicks, CTR, conversions and revenue per placement and model.
    pub fn stats(&self) -> Value {
        let served = self.served.lock().clone();
        let outcomes = self.live.read().outcomes.clone();
        let mut keys: Vec<(String, String)> = served.keys().cloned().collect();
        keys.extend(outcomes.keys().cloned());
        keys.sort();
        keys.dedup();
        let rows: Vec<Value> = keys
            .into_iter()
            .map(|key| {
                let served = served.get(&key).copied().unwrap_or_default();
                let outcome = outcomes.get(&key).copied().unwrap_or_default();
                let ratio = |part: u64| {
                    (served.responses > 0).then(|| part as f64 / served.responses as f64)
                };
                json!({
                    "placement": key.0,
                    "model": key.1,
                    "impressions": served.responses,
                    "items_served": served.items,
                    "clicks": outcome.clicks,
                    "ctr": ratio(outcome.clicks),
                    "conversions": outcome.conversions,
                    "conversion_rate": ratio(outcome.conversions),
                    "revenue": outcome.revenue,
                })
            })
            .collect();
        json!({"placements": rows})
    }

    /// What the service holds: offsets, catalog, interactions and the current models.
    pub fn status(&self) -> Value {
        let (listed, indexed, interactions, users, next_offset) = {
            let live = self.live.read();
            (
                live.catalog.listed_count(),
                live.catalog.len(),
                live.interactions,
                live.user_keys().len(),
                live.next_offset,
            )
        };
        let model = self.models.current().map(|current| {
            json!({
                "version": current.version,
                "trained_offset": current.model.trained_offset,
                "als": current.model.als.is_some(),
                "report": current.model.report,
            })
        });
        json!({
            "applied_offset": next_offset,
            "log_end_offset": self.log.end_offset(),
            "catalog_items": listed,
            "item_ids_seen": indexed,
            "visitors": users,
            "interactions": interactions,
            "model": model,
            "train_interval_secs": self.settings.train_interval_secs,
        })
    }

    /// Writes the served counters (atomically) if they changed.
    pub fn save_served(&self) {
        let Some(path) = &self.served_path else {
            return;
        };
        if !self.served_dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let rows: Vec<(String, String, Served)> = self
            .served
            .lock()
            .iter()
            .map(|((placement, model), served)| (placement.clone(), model.clone(), *served))
            .collect();
        let temporary = path.with_extension("json.tmp");
        let result = serde_json::to_vec(&rows)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(error) = result {
            tracing::warn!(%error, path = %path.display(), "cannot save recommendation counters");
            self.served_dirty.store(true, Ordering::Release);
        }
    }

    /// Read access to the live state (tests, benchmarks).
    pub fn with_live<T>(&self, read: impl FnOnce(&LiveState) -> T) -> T {
        read(&self.live.read())
    }
}

/// `email: Ann@Example.com` and `email:ann@example.com` name the same identifier.
pub fn normalize_reference(reference: &str) -> String {
    match reference.parse::<Identifier>() {
        Ok(identifier) if !reference.starts_with("p_") => {
            match atrium_identity::normalize(&identifier.kind, identifier.value.trim()) {
                Some(value) => format!("{}:{value}", identifier.kind),
                None => reference.to_owned(),
            }
        }
        _ => reference.to_owned(),
    }
}

fn hex_nonce() -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 8] = rand::random();
    let mut out = String::with_capacity(16);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}
