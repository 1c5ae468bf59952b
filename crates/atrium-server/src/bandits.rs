//! Bandit weight updates. A running experiment with a `bandit` section gets new traffic weights
//! on a schedule (`[experiments] bandit_period_seconds`) or on request
//! (`POST /v1/experiments/{key}/bandit/update`): its decision metric is computed over the
//! warehouse by `atrium-results`, per-arm Thompson-sampling weights by `atrium-stats`
//! (GrowthBook's defaults: prior N(0, 10⁴), 10,000 draws with a fixed seed, top-two optional,
//! a 1 % floor per arm, no update before 100 units per arm), and the weights are written as a
//! new version of the experiment definition through the log, like any definition change, so
//! replay reproduces them and the features payload serves them.
//!
//! As in GrowthBook, an update keeps the hash seed (the experiment key) and the bucket version:
//! users with a sticky bucket keep their variation, new users are split by the new weights, and
//! the served `phase` counts the updates. Each update records what it saw (`last_update`).
//! The decision metric is read over the whole run (GrowthBook weights periods to cope with
//! drift; not done here).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atrium_results::{AnalysisOptions, BanditConfig, MetricDefinition, thompson_weights};
use atrium_types::{DefinitionKind, format_timestamp_ms};
use serde::Serialize;

use crate::definitions::{BanditUpdate, ExperimentBody, ExperimentStatus};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// What an update request did.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UpdateOutcome {
    /// New weights were appended to the log (visible once the pipeline reaches `min_offset`).
    Updated {
        version: u64,
        min_offset: u64,
        update: BanditUpdate,
    },
    /// Nothing was written, and why.
    Skipped { reason: String },
}

/// The new definition body and what the update saw, or why there is none.
type Computed = Result<(ExperimentBody, BanditUpdate), String>;

/// Reads the experiment and its decision metric and computes the next weights. Blocking.
fn compute(state: &AppState, key: &str, now_ms: i64) -> Result<Computed, ApiError> {
    let (stored, stored_metrics) = state.store.read(|tables| {
        Ok((
            tables.definition(DefinitionKind::Experiment.as_str(), key)?,
            tables.definitions(DefinitionKind::Metric.as_str())?,
        ))
    })?;
    let stored = stored.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DefinitionNotFound,
            format!("no experiment `{key}`"),
        )
    })?;
    let mut experiment: ExperimentBody =
        serde_json::from_value(stored.body.clone()).map_err(ApiError::internal)?;
    let Some(bandit) = experiment.bandit.clone() else {
        return Ok(Err(format!("experiment `{key}` is not a bandit")));
    };
    if experiment.status != ExperimentStatus::Running {
        return Ok(Err(format!("experiment `{key}` is not running")));
    }
    let Some(metric_body) = stored_metrics
        .iter()
        .find(|(metric_key, _)| *metric_key == bandit.decision_metric)
        .map(|(_, stored)| &stored.body)
    else {
        return Ok(Err(format!(
            "decision metric `{}` is not defined",
            bandit.decision_metric
        )));
    };
    let decision = MetricDefinition::parse(&bandit.decision_metric, metric_body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidDefinition,
            format!(
                "decision metric `{}` does not parse",
                bandit.decision_metric
            ),
        )
    })?;
    let mut metrics = BTreeMap::new();
    for (metric_key, stored) in &stored_metrics {
        if let Ok(definition) = MetricDefinition::parse(metric_key, &stored.body) {
            metrics.insert(metric_key.clone(), definition);
        }
    }
    let mut spec = crate::results::experiment_spec(key, &stored.body)?;
    spec.goal_metrics = vec![bandit.decision_metric.clone()];
    spec.guardrail_metrics = Vec::new();
    let options = AnalysisOptions {
        timeout: Duration::from_secs(120),
        ..AnalysisOptions::default()
    };
    let report = atrium_results::experiment_results(&state.warehouse, &spec, &metrics, &options)
        .map_err(|error| ApiError::new(ErrorCode::InvalidRequest, error.to_string()))?;
    let Some(metric) = report.metrics.first() else {
        return Ok(Err("the decision metric was not analysed".to_owned()));
    };
    let config = BanditConfig {
        top_two: bandit.top_two,
        min_variation_weight: bandit.min_variation_weight,
        inverse: decision.inverse,
        ..BanditConfig::default()
    };
    let computed = match thompson_weights(&metric.statistics, &config) {
        Ok(computed) => computed,
        Err(error) => return Ok(Err(format!("no weights: {error}"))),
    };
    let arms = experiment.variations.len();
    let Some(weights) = computed.weights else {
        return Ok(Err(format!(
            "not enough data: {:?} units per arm, at least {} in total needed",
            computed.users,
            100 * arms
        )));
    };
    let previous_weights = experiment
        .weights
        .clone()
        .unwrap_or_else(|| vec![1.0 / arms as f64; arms]);
    let update = BanditUpdate {
        at: format_timestamp_ms(now_ms),
        users: computed.users,
        means: metric.variations.iter().map(|value| value.mean).collect(),
        best_arm_probabilities: computed.best_arm_probabilities,
        previous_weights,
        weights: weights.clone(),
    };
    experiment.weights = Some(weights);
    let mut next = bandit;
    next.updates += 1;
    next.last_update = Some(update.clone());
    experiment.bandit = Some(next);
    Ok(Ok((experiment, update)))
}

/// Computes and writes one bandit's next weights.
pub async fn update_bandit(state: &Arc<AppState>, key: &str) -> Result<UpdateOutcome, ApiError> {
    let Ok(_permit) = state.sql_slots.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "the warehouse query slots are busy; retry shortly",
        )
        .retry_after(1));
    };
    let task_state = state.clone();
    let task_key = key.to_owned();
    let now_ms = state.clock.now_ms();
    let computed = tokio::task::spawn_blocking(move || compute(&task_state, &task_key, now_ms))
        .await
        .map_err(ApiError::internal)??;
    let (experiment, update) = match computed {
        Ok(computed) => computed,
        Err(reason) => return Ok(UpdateOutcome::Skipped { reason }),
    };
    let updates_seen = experiment
        .bandit
        .as_ref()
        .map_or(0, |bandit| bandit.updates - 1);
    let body = serde_json::to_value(&experiment).map_err(ApiError::internal)?;
    let body = crate::definitions::validate_definition(DefinitionKind::Experiment, key, &body)?;
    let conflict_key = key.to_owned();
    let response = crate::definitions::write(
        state,
        DefinitionKind::Experiment,
        key.to_owned(),
        Box::new(move |current| {
            // Only if nothing changed the experiment since the weights were computed.
            let current: Option<ExperimentBody> =
                current.and_then(|stored| serde_json::from_value(stored.body.clone()).ok());
            let unchanged = current.as_ref().is_some_and(|current| {
                current.status == ExperimentStatus::Running
                    && current.bandit.as_ref().map(|bandit| bandit.updates) == Some(updates_seen)
            });
            if !unchanged {
                return Err(ApiError::new(
                    ErrorCode::DefinitionConflict,
                    format!("experiment `{conflict_key}` changed during the bandit update; retry"),
                ));
            }
            Ok(Some(body))
        }),
    )
    .await?;
    let (version, min_offset) = crate::definitions::write_receipt(response).await?;
    tracing::info!(experiment = %key, weights = ?update.weights, "bandit weights updated");
    Ok(UpdateOutcome::Updated {
        version,
        min_offset,
        update,
    })
}

/// Keys of the running bandits.
fn running_bandits(state: &AppState) -> Result<Vec<String>, ApiError> {
    let stored = state
        .store
        .read(|tables| tables.definitions(DefinitionKind::Experiment.as_str()))?;
    Ok(stored
        .into_iter()
        .filter(|(_, definition)| {
            serde_json::from_value::<ExperimentBody>(definition.body.clone()).is_ok_and(
                |experiment| {
                    experiment.bandit.is_some() && experiment.status == ExperimentStatus::Running
                },
            )
        })
        .map(|(key, _)| key)
        .collect())
}

/// Updates every running bandit each period until the server closes.
pub async fn run_schedule(state: Arc<AppState>) {
    let period = state.config.experiments.bandit_period_seconds;
    if period == 0 {
        return;
    }
    crate::state::run_every(&state, Duration::from_secs(period), || async {
        let keys = match crate::admin::blocking(&state, running_bandits).await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot list bandits");
                return;
            }
        };
        for key in keys {
            match update_bandit(&state, &key).await {
                Ok(UpdateOutcome::Updated { update, .. }) => {
                    tracing::debug!(experiment = %key, weights = ?update.weights, "scheduled bandit update");
                }
                Ok(UpdateOutcome::Skipped { reason }) => {
                    tracing::info!(experiment = %key, %reason, "bandit weights not updated");
                }
                Err(error) => {
                    tracing::warn!(experiment = %key, error = %error.message, "bandit update failed");
                }
            }
        }
    })
    .await;
}

/// `POST /v1/experiments/{key}/bandit/update`: computes and writes new weights now. 202 with
/// the new version and `min_offset` when weights were written, 200 with the reason otherwise.
pub async fn post_update(
    _: crate::admin::AdminKey,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let outcome = update_bandit(&state, &key).await?;
    let status = match outcome {
        UpdateOutcome::Updated { .. } => axum::http::StatusCode::ACCEPTED,
        UpdateOutcome::Skipped { .. } => axum::http::StatusCode::OK,
    };
    Ok((status, axum::Json(outcome)).into_response())
}
