//! `GET /v1/experiments/{key}/results`: the experiment's goal and guardrail metrics computed
//! over the warehouse by `atrium-results`.
//!
//! Query parameters: `engine` (`frequentist` or `bayesian`), `alpha`, `sequential` (the tuning
//! parameter N*, frequentist only), `correction` (`holm-bonferroni` or `benjamini-hochberg`,
//! across goal metrics), `dimension` (an exposure column such as `channel`), `timeout_ms`,
//! `min_offset` (wait until the pipeline and the warehouse have read the log that far).
//! Runs share the SQL route's concurrency limit. For a bandit the response adds `bandit`: the
//! weights served now, how many updates there were, when the last one happened and what it saw
//! (units, means, best-arm probabilities, previous and new weights).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atrium_results::{
    AnalysisOptions, Correction, EngineChoice, ExperimentSpec, MetricDefinition, Report,
    ResultsError, VariationSpec,
};
use atrium_store::Store;
use atrium_types::{DefinitionKind, parse_timestamp_ms};
use atrium_warehouse::{Warehouse, WarehouseError};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::Value;

use crate::admin::{AdminKey, await_applied};
use crate::definitions::ExperimentBody;
use crate::error::{ApiError, ErrorCode};
use crate::sql::MAX_CONCURRENT_QUERIES;
use crate::state::AppState;

const PARAMETERS: [&str; 7] = [
    "engine",
    "alpha",
    "sequential",
    "correction",
    "dimension",
    "timeout_ms",
    "min_offset",
];
const DEFAULT_TIMEOUT_MS: u64 = 120_000;
const MAX_TIMEOUT_MS: u64 = 600_000;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

fn number<T: std::str::FromStr>(
    query: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("`{name}` must be a number, got {text:?}"))),
    }
}

/// Analysis options from the query string; unknown parameters are refused.
pub fn analysis_options(query: &BTreeMap<String, String>) -> Result<AnalysisOptions, ApiError> {
    if let Some(unknown) = query.keys().find(|key| !PARAMETERS.contains(&key.as_str())) {
        return Err(bad(format!(
            "unknown parameter `{unknown}`; expected one of {PARAMETERS:?}"
        )));
    }
    let engine = match query.get("engine").map(String::as_str) {
        None | Some("frequentist") => EngineChoice::Frequentist,
        Some("bayesian") => EngineChoice::Bayesian,
        Some(other) => {
            return Err(bad(format!(
                "unknown engine {other:?}: use \"frequentist\" or \"bayesian\""
            )));
        }
    };
    let mut options = AnalysisOptions {
        engine,
        ..AnalysisOptions::default()
    };
    if let Some(alpha) = number::<f64>(query, "alpha")? {
        options.alpha = alpha;
    }
    options.sequential_tuning = number::<f64>(query, "sequential")?;
    options.correction = match query.get("correction").map(String::as_str) {
        None | Some("none") => None,
        Some("holm-bonferroni") | Some("holm") => Some(Correction::HolmBonferroni),
        Some("benjamini-hochberg") | Some("bh") => Some(Correction::BenjaminiHochberg),
        Some(other) => {
            return Err(bad(format!(
                "unknown correction {other:?}: use \"holm-bonferroni\" or \"benjamini-hochberg\""
            )));
        }
    };
    options.dimension = query.get("dimension").cloned();
    let timeout_ms = number::<u64>(query, "timeout_ms")?.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(bad(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        )));
    }
    options.timeout = Duration::from_millis(timeout_ms);
    Ok(options)
}

fn results_error(error: ResultsError) -> ApiError {
    let code = match &error {
        ResultsError::UnknownMetric { .. } => ErrorCode::DefinitionNotFound,
        ResultsError::NestedRatio { .. } => ErrorCode::InvalidDefinition,
        ResultsError::NoVariations { .. }
        | ResultsError::UnknownDimension(_)
        | ResultsError::Settings(_) => ErrorCode::InvalidRequest,
        ResultsError::Warehouse(WarehouseError::Timeout(_)) => ErrorCode::SqlTimeout,
        ResultsError::Warehouse(
            WarehouseError::TooManyRows(_) | WarehouseError::ResourcesExhausted(_),
        ) => ErrorCode::SqlTooLarge,
        _ => return ApiError::internal(error),
    };
    ApiError::new(code, error.to_string())
}

fn timestamp(text: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    match text {
        None => Ok(None),
        Some(text) => parse_timestamp_ms(text).map(Some).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidDefinition,
                format!("experiment `{field}` is not a timestamp: {text:?}"),
            )
        }),
    }
}

/// The experiment as the analysis sees it.
pub fn experiment_spec(key: &str, body: &Value) -> Result<ExperimentSpec, ApiError> {
    let experiment: ExperimentBody = serde_json::from_value(body.clone()).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidDefinition,
            format!("stored experiment `{key}` does not parse: {error}"),
        )
    })?;
    let variations = experiment
        .variations
        .iter()
        .enumerate()
        .map(|(index, variation)| VariationSpec {
            key: variation.key.clone().unwrap_or_else(|| index.to_string()),
            name: variation.name.clone(),
        })
        .collect();
    Ok(ExperimentSpec {
        key: key.to_owned(),
        variations,
        weights: experiment.weights.clone(),
        start_ms: timestamp(experiment.started_at.as_deref(), "started_at")?,
        end_ms: timestamp(experiment.stopped_at.as_deref(), "stopped_at")?,
        goal_metrics: experiment.goal_metrics.clone(),
        guardrail_metrics: experiment.guardrail_metrics.clone(),
    })
}

/// Loads the experiment and every metric from the store and computes its results. Blocking.
/// Shared by the route and `atrium experiments results`.
pub fn compute_results(
    store: &Store,
    warehouse: &Warehouse,
    key: &str,
    options: &AnalysisOptions,
) -> Result<Report, ApiError> {
    let (experiment, stored_metrics) = store.read(|tables| {
        Ok((
            tables.definition(DefinitionKind::Experiment.as_str(), key)?,
            tables.definitions(DefinitionKind::Metric.as_str())?,
        ))
    })?;
    let experiment = experiment.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DefinitionNotFound,
            format!("no experiment `{key}`"),
        )
    })?;
    let spec = experiment_spec(key, &experiment.body)?;
    let mut metrics = BTreeMap::new();
    for (metric_key, stored) in stored_metrics {
        match MetricDefinition::parse(&metric_key, &stored.body) {
            Ok(definition) => {
                metrics.insert(metric_key, definition);
            }
            Err(errors) => {
                tracing::warn!(metric = %metric_key, ?errors, "stored metric does not parse; skipped");
            }
        }
    }
    atrium_results::experiment_results(warehouse, &spec, &metrics, options).map_err(results_error)
}

pub async fn get_results(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let options = analysis_options(&query)?;
    if let Some(offset) = number::<u64>(&query, "min_offset")? {
        await_applied(
            &state,
            offset,
            format!("pipeline has not reached offset {offset} yet; retry"),
        )
        .await?;
        let warehouse = state.warehouse.clone();
        let visible = tokio::task::spawn_blocking(move || {
            warehouse.wait_visible(offset, Duration::from_secs(5))
        })
        .await
        .map_err(ApiError::internal)?;
        if !visible {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!("the warehouse has not reached offset {offset} yet; retry"),
            )
            .retry_after(1));
        }
    }
    let Ok(_permit) = state.sql_slots.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "{MAX_CONCURRENT_QUERIES} warehouse queries are already running; retry shortly"
            ),
        )
        .retry_after(1));
    };
    let task_state = state.clone();
    let (report, bandit) = tokio::task::spawn_blocking(move || {
        let report = compute_results(&task_state.store, &task_state.warehouse, &key, &options)?;
        let bandit = bandit_state(&task_state.store, &key)?;
        Ok::<_, ApiError>((report, bandit))
    })
    .await
    .map_err(ApiError::internal)??;
    let mut body = serde_json::to_value(&report).map_err(ApiError::internal)?;
    if let Some(bandit) = bandit {
        body["bandit"] = bandit;
    }
    Ok(Json(body))
}

/// A bandit's current weights and its last update (what it saw and decided, and when), for
/// the results response; `None` when the experiment is not a bandit.
fn bandit_state(store: &Store, key: &str) -> Result<Option<Value>, ApiError> {
    let stored =
        store.read(|tables| tables.definition(DefinitionKind::Experiment.as_str(), key))?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let Ok(experiment) = serde_json::from_value::<ExperimentBody>(stored.body) else {
        return Ok(None);
    };
    let Some(bandit) = experiment.bandit else {
        return Ok(None);
    };
    let arms = experiment.variations.len().max(1);
    let weights = experiment
        .weights
        .unwrap_or_else(|| vec![1.0 / arms as f64; arms]);
    Ok(Some(serde_json::json!({
        "decision_metric": bandit.decision_metric,
        "weights": weights,
        "updates": bandit.updates,
        "weights_updated_at": bandit.last_update.as_ref().map(|update| update.at.clone()),
        "definition_version": stored.version,
        "last_update": bandit.last_update,
    })))
}
