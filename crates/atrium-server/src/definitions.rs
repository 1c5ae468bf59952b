//! Secret-key routes for feature, experiment and saved-group definitions. Every write is
//! validated with `atrium-experiments`' validators, then appended to the log as an
//! `atrium.definition.*` control record (202 with `min_offset`); the pipeline applies it into
//! the `definitions` and `definition_history` tables, which the serving routes read.

use std::sync::Arc;

use atrium_experiments::{
    Experiment, FeatureDefinition, FeatureRule, ValidationError, VariationMeta, validate_condition,
    validate_experiment, validate_feature,
};
use atrium_store::StoredDefinition;
use atrium_types::{ControlRecord, DefinitionKind, LogRecord, format_timestamp_ms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::{AdminKey, Consistency, blocking, wait_for_offset};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest accepted definition key.
const MAX_KEY_CHARS: usize = 200;

/// Top-level fields a feature body may have: GrowthBook's `defaultValue` and `rules`, plus notes.
const FEATURE_FIELDS: [&str; 4] = ["defaultValue", "rules", "description", "tags"];

/// The lifecycle of an experiment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    #[default]
    Draft,
    Running,
    Stopped,
}

/// One arm of an experiment: the feature value it serves, with an optional key and name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An experiment definition (`PUT /v1/experiments/{key}`). While `running` it is served as an
/// experiment rule on `feature` (after the feature's own rules; the feature is created with the
/// first variation as default value when it does not exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentBody {
    /// The feature whose value the variations set.
    pub feature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypothesis: Option<String>,
    pub variations: Vec<Variation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Targeting condition (GrowthBook condition language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// Attribute hashed into a variation (default `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_version: Option<u32>,
    #[serde(default)]
    pub status: ExperimentStatus,
    #[serde(default)]
    pub goal_metrics: Vec<String>,
    #[serde(default)]
    pub guardrail_metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Sticky bucketing (GrowthBook): assignments are kept per `<experiment>__<bucket_version>`;
    /// bumping `bucket_version` re-buckets everyone, `min_bucket_version` excludes users whose
    /// sticky bucket is older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_sticky_bucketing: Option<bool>,
    /// Attribute hashed (and stuck to) when the hash attribute is missing, e.g. `deviceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_attribute: Option<String>,
    /// A multi-armed bandit: `weights` are recomputed on a schedule from the decision metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit: Option<BanditSettings>,
}

/// Bandit settings and the state of its last weight update (written by the server's bandit
/// scheduler as a new version of the definition, through the log).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanditSettings {
    /// The metric whose per-arm mean the bandit maximizes (minimizes when it is `inverse`).
    pub decision_metric: String,
    /// Floor on each arm's share (GrowthBook's default 1 %).
    #[serde(default = "default_min_variation_weight")]
    pub min_variation_weight: f64,
    /// Top-two Thompson sampling.
    #[serde(default)]
    pub top_two: bool,
    /// Weight updates so far; served as the experiment's `phase` (the hash seed stays the key).
    #[serde(default)]
    pub updates: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<BanditUpdate>,
}

fn default_min_variation_weight() -> f64 {
    0.01
}

/// What one weight update saw and decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanditUpdate {
    pub at: String,
    /// Units per arm in the decision metric.
    pub users: Vec<u64>,
    /// Per arm, the decision metric's mean.
    pub means: Vec<f64>,
    /// Share of posterior draws in which each arm was best (or in the top two).
    pub best_arm_probabilities: Vec<f64>,
    /// The weights before this update.
    pub previous_weights: Vec<f64>,
    /// The weights served since.
    pub weights: Vec<f64>,
}

impl ExperimentBody {
    /// The served `phase`: bandit updates bump it (GrowthBook keeps the seed across bandit
    /// weight changes, so only users without a sticky bucket can move).
    fn phase(&self) -> Option<String> {
        self.bandit
            .as_ref()
            .map(|bandit| bandit.updates.to_string())
    }

    /// The experiment as the evaluation engine sees it.
    pub fn engine_experiment(&self, key: &str) -> Experiment {
        Experiment {
            key: key.to_owned(),
            variations: self.variations.iter().map(|v| v.value.clone()).collect(),
            weights: self.weights.clone(),
            coverage: self.coverage,
            condition: self.condition.clone(),
            hash_attribute: self.hash_attribute.clone(),
            hash_version: self.hash_version,
            meta: Some(self.meta()),
            name: self.name.clone(),
            seed: self.bandit.as_ref().map(|_| key.to_owned()),
            phase: self.phase(),
            fallback_attribute: self.fallback_attribute.clone(),
            bucket_version: self.bucket_version,
            min_bucket_version: self.min_bucket_version,
            disable_sticky_bucketing: self.disable_sticky_bucketing,
            ..Experiment::default()
        }
    }

    fn meta(&self) -> Vec<VariationMeta> {
        self.variations
            .iter()
            .enumerate()
            .map(|(index, variation)| VariationMeta {
                key: Some(variation.key.clone().unwrap_or_else(|| index.to_string())),
                name: variation.name.clone(),
                passthrough: None,
            })
            .collect()
    }

    /// The feature rule serving this experiment while it runs.
    pub fn feature_rule(&self, key: &str) -> FeatureRule {
        FeatureRule {
            id: Some(format!("experiment:{key}")),
            key: Some(key.to_owned()),
            condition: self.condition.clone(),
            variations: Some(self.variations.iter().map(|v| v.value.clone()).collect()),
            weights: self.weights.clone(),
            coverage: self.coverage,
            hash_attribute: self.hash_attribute.clone(),
            hash_version: self.hash_version,
            meta: Some(self.meta()),
            name: self.name.clone(),
            seed: self.bandit.as_ref().map(|_| key.to_owned()),
            phase: self.phase(),
            fallback_attribute: self.fallback_attribute.clone(),
            bucket_version: self.bucket_version,
            min_bucket_version: self.min_bucket_version,
            disable_sticky_bucketing: self.disable_sticky_bucketing,
            ..FeatureRule::default()
        }
    }
}

/// A saved group (`PUT /v1/saved-groups/{key}`): a list of attribute values that conditions
/// reference with `{"id": {"$inGroup": "<key>"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedGroupBody {
    pub values: Vec<Value>,
    /// The attribute the values are usually matched against (documentation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(ErrorCode::InvalidDefinition, format!("{path}: {message}"))
        .with_details(json!([{"path": path, "message": message}]))
}

fn validation_failed(errors: Vec<ValidationError>) -> ApiError {
    let summary: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let details: Vec<Value> = errors
        .iter()
        .map(|error| json!({"path": error.path, "message": error.kind.to_string()}))
        .collect();
    ApiError::new(ErrorCode::InvalidDefinition, summary.join("; ")).with_details(json!(details))
}

fn metric_invalid(errors: Vec<atrium_results::MetricError>) -> ApiError {
    let summary: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let details: Vec<Value> = errors
        .iter()
        .map(|error| json!({"path": error.path, "message": error.message}))
        .collect();
    ApiError::new(ErrorCode::InvalidDefinition, summary.join("; ")).with_details(json!(details))
}

pub(crate) fn check_key(kind: DefinitionKind, key: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.chars().count() <= MAX_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '|'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "key",
            format!(
                "a {} key is 1 to {MAX_KEY_CHARS} characters of letters, digits and _ - . : |",
                kind.as_str()
            ),
        ))
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Value, path: &str) -> Result<T, ApiError> {
    serde_json::from_value(body.clone()).map_err(|error| invalid(path, error.to_string()))
}

/// Validates a definition body; returns it as it will be stored.
pub fn validate_definition(
    kind: DefinitionKind,
    key: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    check_key(kind, key)?;
    match kind {
        DefinitionKind::Feature => {
            let Some(object) = body.as_object() else {
                return Err(invalid(
                    &format!("features.{key}"),
                    "a feature is a JSON object with `defaultValue` and `rules`",
                ));
            };
            if let Some(unknown) = object
                .keys()
                .find(|field| !FEATURE_FIELDS.contains(&field.as_str()))
            {
                return Err(invalid(
                    &format!("features.{key}.{unknown}"),
                    format!("unknown field; expected one of {FEATURE_FIELDS:?}"),
                ));
            }
            let feature: FeatureDefinition = parse_body(body, &format!("features.{key}"))?;
            validate_feature(key, &feature).map_err(validation_failed)?;
        }
        DefinitionKind::Experiment => {
            let experiment: ExperimentBody = parse_body(body, "experiment")?;
            check_key(DefinitionKind::Feature, &experiment.feature)
                .map_err(|_| invalid("experiment.feature", "not a valid feature key"))?;
            let mut errors = validate_experiment(&experiment.engine_experiment(key))
                .err()
                .unwrap_or_default();
            if let Some(condition) = &experiment.condition
                && !errors
                    .iter()
                    .any(|error| error.path.starts_with("experiment.condition"))
                && let Err(more) = validate_condition(condition, "experiment.condition")
            {
                errors.extend(more);
            }
            if !errors.is_empty() {
                return Err(validation_failed(errors));
            }
            if let Some(bandit) = &experiment.bandit {
                let arms = experiment.variations.len().max(1) as f64;
                if bandit.decision_metric.is_empty() {
                    return Err(invalid(
                        "experiment.bandit.decision_metric",
                        "a bandit needs the key of its decision metric",
                    ));
                }
                if !(0.0..1.0 / arms).contains(&bandit.min_variation_weight) {
                    return Err(invalid(
                        "experiment.bandit.min_variation_weight",
                        format!("must be at least 0 and below 1 / {arms} variations"),
                    ));
                }
            }
            if experiment.status == ExperimentStatus::Running && experiment.started_at.is_none() {
                return Err(invalid(
                    "experiment.started_at",
                    "a running experiment needs `started_at`; or create it as a draft and POST .../start",
                ));
            }
        }
        DefinitionKind::SavedGroup => {
            let _: SavedGroupBody = parse_body(body, &format!("savedGroups.{key}"))?;
        }
        DefinitionKind::Metric => {
            atrium_results::MetricDefinition::parse(key, body).map_err(metric_invalid)?;
        }
        DefinitionKind::Segment | DefinitionKind::ComputedTrait => {
            // Checked against the stored catalog by the segment routes before writing.
            return crate::segments::parse_body(kind, key, body);
        }
    }
    Ok(body.clone())
}

/// What a write does, decided under the write lock from the current definition.
type Change = Box<dyn FnOnce(Option<&StoredDefinition>) -> Result<Option<Value>, ApiError> + Send>;

/// Serializes definition writes: waits until the previous definition write is applied, reads the
/// current version, decides the change, appends it, and answers 202 with `min_offset`.
pub(crate) async fn write(
    state: &Arc<AppState>,
    kind: DefinitionKind,
    key: String,
    change: Change,
) -> Result<Response, ApiError> {
    let mut pending = state.definition_writes.lock().await;
    let wait_for = *pending;
    crate::admin::await_applied(
        state,
        wait_for,
        "the pipeline has not applied the previous definition write yet; retry".to_owned(),
    )
    .await?;
    let read_key = key.clone();
    let (current, latest) = blocking(state, move |state| {
        Ok(state.store.read(|tables| {
            Ok((
                tables.definition(kind.as_str(), &read_key)?,
                tables.latest_definition_version(kind.as_str(), &read_key)?,
            ))
        })?)
    })
    .await?;
    let body = change(current.as_ref())?;
    let version = latest + 1;
    let at = format_timestamp_ms(state.clock.now_ms());
    let record = match body {
        Some(body) => ControlRecord::DefinitionPut {
            kind,
            key: key.clone(),
            body,
            version,
            at,
        },
        None => ControlRecord::DefinitionDelete {
            kind,
            key: key.clone(),
            version,
            at,
        },
    };
    let offset = state
        .log
        .append_async(vec![LogRecord::encode_control(&record)])
        .await
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    *pending = offset + 1;
    drop(pending);
    tracing::info!(kind = kind.as_str(), %key, version, offset, "definition written");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "kind": kind.as_str(),
            "key": key,
            "version": version,
            "deleted": matches!(record, ControlRecord::DefinitionDelete { .. }),
            "offset": offset,
            "min_offset": offset + 1,
        })),
    )
        .into_response())
}

/// The `version` and `min_offset` of the 202 response of [`write`], for callers that write a
/// definition on the server's own account (bandit weights, RFM quintiles).
pub(crate) async fn write_receipt(response: Response) -> Result<(u64, u64), ApiError> {
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map_err(ApiError::internal)?;
    let written: Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let number = |field: &str| written.get(field).and_then(Value::as_u64);
    Ok((
        number("version").unwrap_or_default(),
        number("min_offset").unwrap_or_default(),
    ))
}

fn not_found(kind: DefinitionKind, key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DefinitionNotFound,
        format!(
            "no {} `{key}` (if you just wrote it, pass the write's `min_offset`)",
            kind.as_str()
        ),
    )
}

pub(crate) fn parse_json(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(ErrorCode::InvalidJson, format!("body is not JSON: {error}"))
    })
}

async fn put(
    state: Arc<AppState>,
    kind: DefinitionKind,
    key: String,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let body = validate_definition(kind, &key, &parse_json(&bytes)?)?;
    crate::segments::check_against_catalog(&state, kind, &key, Some(&body)).await?;
    write(&state, kind, key, Box::new(move |_| Ok(Some(body)))).await
}

async fn delete(
    state: Arc<AppState>,
    kind: DefinitionKind,
    key: String,
) -> Result<Response, ApiError> {
    crate::segments::check_against_catalog(&state, kind, &key, None).await?;
    let missing = not_found(kind, &key);
    write(
        &state,
        kind,
        key,
        Box::new(move |current| match current {
            Some(_) => Ok(None),
            None => Err(missing),
        }),
    )
    .await
}

fn definition_json(kind: DefinitionKind, key: &str, definition: &StoredDefinition) -> Value {
    json!({
        "kind": kind.as_str(),
        "key": key,
        "version": definition.version,
        "updated_at": definition.updated_at,
        "offset": definition.offset,
        "definition": definition.body,
    })
}

#[derive(Deserialize, Default)]
pub struct GetQuery {
    min_offset: Option<u64>,
    /// `true` adds every earlier version (deletions included) as `history`.
    #[serde(default)]
    history: bool,
}

async fn get(
    state: Arc<AppState>,
    kind: DefinitionKind,
    key: String,
    query: GetQuery,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(
        &state,
        &Consistency {
            min_offset: query.min_offset,
        },
    )
    .await?;
    blocking(&state, move |state| {
        let (current, history) = state.store.read(|tables| {
            let current = tables.definition(kind.as_str(), &key)?;
            let history = if query.history && current.is_some() {
                tables.definition_history(kind.as_str(), &key)?
            } else {
                Vec::new()
            };
            Ok((current, history))
        })?;
        let current = current.ok_or_else(|| not_found(kind, &key))?;
        let mut value = definition_json(kind, &key, &current);
        if query.history {
            value["history"] = json!(
                history
                    .iter()
                    .map(|version| json!({
                        "version": version.version,
                        "updated_at": version.updated_at,
                        "offset": version.offset,
                        "deleted": version.deleted,
                        "definition": version.body,
                    }))
                    .collect::<Vec<_>>()
            );
        }
        Ok(Json(value))
    })
    .await
}

async fn list(
    state: Arc<AppState>,
    kind: DefinitionKind,
    field: &'static str,
    consistency: Consistency,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        let definitions = state
            .store
            .read(|tables| tables.definitions(kind.as_str()))?;
        let items: Vec<Value> = definitions
            .iter()
            .map(|(key, definition)| definition_json(kind, key, definition))
            .collect();
        Ok(Json(json!({ field: items })))
    })
    .await
}

/// Starts (`running`) or stops an experiment, stamping `started_at` / `stopped_at`.
async fn transition(state: Arc<AppState>, key: String, start: bool) -> Result<Response, ApiError> {
    let missing = not_found(DefinitionKind::Experiment, &key);
    let now = format_timestamp_ms(state.clock.now_ms());
    let experiment_key = key.clone();
    write(
        &state,
        DefinitionKind::Experiment,
        key,
        Box::new(move |current| {
            let current = current.ok_or(missing)?;
            let mut experiment: ExperimentBody = parse_body(&current.body, "experiment")?;
            match (start, experiment.status) {
                (true, ExperimentStatus::Running) => {
                    return Err(ApiError::new(
                        ErrorCode::DefinitionConflict,
                        format!("experiment `{experiment_key}` is already running"),
                    ));
                }
                (false, status) if status != ExperimentStatus::Running => {
                    return Err(ApiError::new(
                        ErrorCode::DefinitionConflict,
                        format!("experiment `{experiment_key}` is not running"),
                    ));
                }
                _ => {}
            }
            if start {
                experiment.status = ExperimentStatus::Running;
                experiment.started_at = Some(now);
                experiment.stopped_at = None;
            } else {
                experiment.status = ExperimentStatus::Stopped;
                experiment.stopped_at = Some(now);
            }
            Ok(Some(
                serde_json::to_value(experiment).map_err(ApiError::internal)?,
            ))
        }),
    )
    .await
}

macro_rules! kind_routes {
    ($kind:expr, $field:literal, $list:ident, $get:ident, $put:ident, $delete:ident) => {
        pub async fn $list(
            _: AdminKey,
            State(state): State<Arc<AppState>>,
            Query(consistency): Query<Consistency>,
        ) -> Result<Json<Value>, ApiError> {
            list(state, $kind, $field, consistency).await
        }

        pub async fn $get(
            _: AdminKey,
            State(state): State<Arc<AppState>>,
            Path(key): Path<String>,
            Query(query): Query<GetQuery>,
        ) -> Result<Json<Value>, ApiError> {
            get(state, $kind, key, query).await
        }

        pub async fn $put(
            _: AdminKey,
            State(state): State<Arc<AppState>>,
            Path(key): Path<String>,
            body: Bytes,
        ) -> Result<Response, ApiError> {
            put(state, $kind, key, body).await
        }

        pub async fn $delete(
            _: AdminKey,
            State(state): State<Arc<AppState>>,
            Path(key): Path<String>,
        ) -> Result<Response, ApiError> {
            delete(state, $kind, key).await
        }
    };
}

kind_routes!(
    DefinitionKind::Feature,
    "features",
    list_features,
    get_feature,
    put_feature,
    delete_feature
);
kind_routes!(
    DefinitionKind::Experiment,
    "experiments",
    list_experiments,
    get_experiment,
    put_experiment,
    delete_experiment
);
kind_routes!(
    DefinitionKind::Metric,
    "metrics",
    list_metrics,
    get_metric,
    put_metric,
    delete_metric
);
kind_routes!(
    DefinitionKind::Segment,
    "segments",
    list_segments,
    get_segment,
    put_segment,
    delete_segment
);
kind_routes!(
    DefinitionKind::ComputedTrait,
    "computed_traits",
    list_computed_traits,
    get_computed_trait,
    put_computed_trait,
    delete_computed_trait
);
kind_routes!(
    DefinitionKind::SavedGroup,
    "saved_groups",
    list_saved_groups,
    get_saved_group,
    put_saved_group,
    delete_saved_group
);

pub async fn start_experiment(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    transition(state, key, true).await
}

pub async fn stop_experiment(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    transition(state, key, false).await
}
