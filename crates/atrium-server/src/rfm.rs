//! RFM population quintiles. An `rfm` computed trait declared with `"rfm": {"quintiles": true}`
//! scores each profile against the 20/40/60/80th percentiles of every profile with a counted
//! order. The server recomputes those cut points on a schedule (`[segments]
//! rfm_period_seconds`) and on request (`POST /v1/computed-traits/{key}/rfm/recompute`), and
//! writes them into the definition as a new version through the log, like any definition
//! change: replay reproduces the scores, and the pipeline's real-time evaluator (and the
//! trait's SQL) keep scoring against fixed cut points between recomputations.
//!
//! The inputs (days since the last order, order count, revenue per profile) come from the
//! warehouse: `atrium_segments::compile_rfm_inputs_sql` reads `events_resolved`, which
//! attributes every event to the profile its identifiers resolve to now, so a merged profile's
//! whole history counts once, exactly (no per-state caps), with the same event, filters and
//! window as the evaluator. The pipeline's per-profile trait states would hold the same
//! summaries, but only for profiles the trait was evaluated on and only decoded one profile at
//! a time. Before computing, the recompute waits until the pipeline (which owns the identity
//! graph the warehouse resolves through) and the warehouse have both reached the log's end.
//!
//! Until its first computation a quintile trait's value is `null`. The schedule checks every
//! minute (or every period, when shorter) and recomputes each quintile trait that was never
//! computed or whose last computation (`rfm.computed.at`) is a period old, so a new trait gets
//! cut points within about a minute and a restart does not postpone a recomputation.

use std::sync::Arc;
use std::time::Duration;

use atrium_log::EventLog;
use atrium_segments::{
    ComputedTraitDefinition, RfmComputation, RfmCutPoints, RfmInputs, RfmThresholds, TraitKind,
    compile_rfm_inputs_sql, rfm_quintiles, validate_computed_trait,
};
use atrium_types::{DefinitionKind, format_timestamp_ms, parse_timestamp_ms};
use atrium_warehouse::datafusion::arrow::array::{Array, Float64Array};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Longest wait for the pipeline and the warehouse to reach the log's end.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the inputs query may run.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Most seconds between two checks of the schedule.
const CHECK_SECONDS: u64 = 60;

/// What a recompute did.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecomputeOutcome {
    /// New cut points were appended to the log (scores use them once the pipeline reaches
    /// `min_offset`).
    Updated {
        version: u64,
        min_offset: u64,
        thresholds: Thresholds,
        /// Profiles with at least one counted order.
        population: u64,
        computed_at: String,
        as_of_offset: u64,
    },
    /// Nothing was written, and why.
    Skipped { reason: String },
}

/// Cut points as the API shows them.
#[derive(Debug, Serialize)]
pub struct Thresholds {
    pub recency_days: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

impl From<RfmCutPoints> for Thresholds {
    fn from(cuts: RfmCutPoints) -> Thresholds {
        Thresholds {
            recency_days: cuts.recency_days,
            frequency: cuts.frequency,
            monetary: cuts.monetary,
        }
    }
}

/// The definition as read, the definition with new cut points, and what they are.
struct Computed {
    read_body: Value,
    next_body: Value,
    cuts: RfmCutPoints,
    computation: RfmComputation,
}

/// Reads a quintile `rfm` trait, or the 4xx saying why `key` is not one.
fn quintile_trait(
    state: &AppState,
    key: &str,
) -> Result<(Value, ComputedTraitDefinition), ApiError> {
    let stored = state
        .store
        .read(|tables| tables.definition(DefinitionKind::ComputedTrait.as_str(), key))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::DefinitionNotFound,
                format!("no computed trait `{key}`; list them with GET /v1/computed-traits"),
            )
        })?;
    let definition: ComputedTraitDefinition =
        serde_json::from_value(stored.body.clone()).map_err(ApiError::internal)?;
    if definition.kind != TraitKind::Rfm {
        let kind = serde_json::to_value(definition.kind).map_err(ApiError::internal)?;
        let kind = kind.as_str().unwrap_or_default();
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "computed trait `{key}` is a `{kind}` trait, not `rfm`: only rfm traits have quintiles to recompute"
            ),
        ));
    }
    if !definition.rfm.as_ref().is_some_and(|rfm| rfm.quintiles) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "computed trait `{key}` has fixed rfm thresholds; declare `\"rfm\": {{\"quintiles\": true}}` to have them computed from the population"
            ),
        ));
    }
    Ok((stored.body, definition))
}

/// The population's inputs from the query's `recency_days`, `orders` and `revenue` columns.
fn population(output: &atrium_warehouse::QueryOutput) -> Result<Vec<RfmInputs>, ApiError> {
    let mut population = Vec::with_capacity(output.row_count);
    for batch in &output.batches {
        let column = |name: &str| -> Result<&Float64Array, ApiError> {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_any().downcast_ref::<Float64Array>())
                .ok_or_else(|| {
                    ApiError::internal(format!("rfm inputs query lacks a DOUBLE column `{name}`"))
                })
        };
        let (recency_days, orders, revenue) = (
            column("recency_days")?,
            column("orders")?,
            column("revenue")?,
        );
        for row in 0..batch.num_rows() {
            if recency_days.is_null(row) || orders.is_null(row) || revenue.is_null(row) {
                return Err(ApiError::internal("rfm inputs query returned a null"));
            }
            population.push(RfmInputs {
                recency_days: recency_days.value(row),
                orders: orders.value(row),
                revenue: revenue.value(row),
            });
        }
    }
    Ok(population)
}

/// Reads the trait, waits for the warehouse, runs the inputs query and computes the cut points.
/// Blocking. `Ok(Err(reason))`: nothing to write.
fn compute(state: &AppState, key: &str) -> Result<Result<Computed, String>, ApiError> {
    // Everything written before the request counts, the trait's latest version included.
    let target = state.log.end_offset();
    let caught_up = state.pipeline.wait_applied(target, CATCH_UP_TIMEOUT)
        && state.warehouse.wait_visible(target, CATCH_UP_TIMEOUT);
    if !caught_up {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the pipeline or the warehouse has not reached log offset {target} yet; retry shortly"
            ),
        )
        .retry_after(5));
    }
    let (read_body, mut definition) = quintile_trait(state, key)?;
    let compiled = validate_computed_trait(&definition).map_err(|errors| {
        ApiError::new(
            ErrorCode::InvalidDefinition,
            format!(
                "computed trait `{key}` does not validate: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    })?;
    let as_of_offset = state.warehouse.visible_offset();
    let now_ms = state.clock.now_ms();
    let sql = compile_rfm_inputs_sql(&compiled, now_ms)
        .map_err(|error| ApiError::new(ErrorCode::InvalidDefinition, error.to_string()))?;
    let limits = atrium_warehouse::SqlLimits {
        timeout: QUERY_TIMEOUT,
        max_rows: usize::MAX,
    };
    let output = state
        .warehouse
        .sql(&sql, &limits)
        .map_err(crate::sql::sql_error)?;
    let population = population(&output)?;
    let Some(cuts) = rfm_quintiles(&population) else {
        return Ok(Err(format!(
            "no profile has a counted `{}` event in the trait's window yet",
            compiled.event_name()
        )));
    };
    let computation = RfmComputation {
        at: format_timestamp_ms(now_ms),
        population: population.len() as u64,
        as_of_offset,
    };
    definition.rfm = Some(RfmThresholds {
        quintiles: true,
        recency_days: Some(cuts.recency_days),
        frequency: Some(cuts.frequency),
        monetary: Some(cuts.monetary),
        computed: Some(computation.clone()),
    });
    let next_body = serde_json::to_value(&definition).map_err(ApiError::internal)?;
    Ok(Ok(Computed {
        read_body,
        next_body,
        cuts,
        computation,
    }))
}

/// Computes one quintile trait's cut points and writes them as a new definition version.
pub async fn recompute(state: &Arc<AppState>, key: &str) -> Result<RecomputeOutcome, ApiError> {
    let Ok(_permit) = state.sql_slots.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "the warehouse query slots are busy; retry shortly",
        )
        .retry_after(1));
    };
    let task_key = key.to_owned();
    let computed = crate::admin::blocking(state, move |state| compute(state, &task_key)).await?;
    let computed = match computed {
        Ok(computed) => computed,
        Err(reason) => return Ok(RecomputeOutcome::Skipped { reason }),
    };
    // The same checks as a definition PUT: the body, and every segment using the trait.
    let body = crate::definitions::validate_definition(
        DefinitionKind::ComputedTrait,
        key,
        &computed.next_body,
    )?;
    crate::segments::check_against_catalog(state, DefinitionKind::ComputedTrait, key, Some(&body))
        .await?;
    let read_body = computed.read_body;
    let conflict_key = key.to_owned();
    let response = crate::definitions::write(
        state,
        DefinitionKind::ComputedTrait,
        key.to_owned(),
        Box::new(move |current| {
            // Only if nothing changed the trait since its inputs were read.
            if current.map(|stored| &stored.body) != Some(&read_body) {
                return Err(ApiError::new(
                    ErrorCode::DefinitionConflict,
                    format!(
                        "computed trait `{conflict_key}` changed during the rfm recompute; retry"
                    ),
                ));
            }
            Ok(Some(body))
        }),
    )
    .await?;
    let (version, min_offset) = crate::definitions::write_receipt(response).await?;
    tracing::info!(
        computed_trait = %key,
        population = computed.computation.population,
        recency_days = ?computed.cuts.recency_days,
        frequency = ?computed.cuts.frequency,
        monetary = ?computed.cuts.monetary,
        "rfm quintiles recomputed"
    );
    Ok(RecomputeOutcome::Updated {
        version,
        min_offset,
        thresholds: computed.cuts.into(),
        population: computed.computation.population,
        computed_at: computed.computation.at,
        as_of_offset: computed.computation.as_of_offset,
    })
}

/// Keys of the quintile rfm traits due at `now_ms`: never computed, or computed at least
/// `period_ms` ago.
fn due_traits(state: &AppState, now_ms: i64, period_ms: i64) -> Result<Vec<String>, ApiError> {
    let stored = state
        .store
        .read(|tables| tables.definitions(DefinitionKind::ComputedTrait.as_str()))?;
    let mut due = Vec::new();
    for (key, stored) in stored {
        let Ok(definition) = serde_json::from_value::<ComputedTraitDefinition>(stored.body) else {
            continue;
        };
        let Some(rfm) = definition.rfm.filter(|rfm| rfm.quintiles) else {
            continue;
        };
        let last = rfm
            .computed
            .as_ref()
            .filter(|_| rfm.cut_points().is_some())
            .and_then(|computed| parse_timestamp_ms(&computed.at));
        if last.is_none_or(|last| now_ms.saturating_sub(last) >= period_ms) {
            due.push(key);
        }
    }
    Ok(due)
}

/// Recomputes due quintile traits until the server closes (see the module docs).
pub async fn run_schedule(state: Arc<AppState>) {
    let period = state.config.segments.rfm_period_seconds;
    if period == 0 {
        return;
    }
    let period_ms = i64::try_from(period.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let check = Duration::from_secs(period.min(CHECK_SECONDS));
    crate::state::run_every(&state, check, || async {
        let now_ms = state.clock.now_ms();
        let listed =
            crate::admin::blocking(&state, move |state| due_traits(state, now_ms, period_ms));
        let keys = match listed.await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot list rfm traits");
                return;
            }
        };
        for key in keys {
            match recompute(&state, &key).await {
                Ok(RecomputeOutcome::Updated { population, .. }) => {
                    tracing::debug!(computed_trait = %key, population, "scheduled rfm recompute");
                }
                Ok(RecomputeOutcome::Skipped { reason }) => {
                    tracing::debug!(computed_trait = %key, %reason, "rfm quintiles not recomputed");
                }
                Err(error) => {
                    tracing::warn!(computed_trait = %key, error = %error.message, "rfm recompute failed");
                }
            }
        }
    })
    .await;
}

/// `POST /v1/computed-traits/{key}/rfm/recompute`: computes the population quintiles now and
/// writes them. 202 with the cut points, the population size, the new version and
/// `min_offset` when written; 200 with the reason when there is no population yet.
pub async fn post_recompute(
    _: crate::admin::AdminKey,
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let outcome = recompute(&state, &key).await?;
    let status = match outcome {
        RecomputeOutcome::Updated { .. } => axum::http::StatusCode::ACCEPTED,
        RecomputeOutcome::Skipped { .. } => axum::http::StatusCode::OK,
    };
    Ok((status, axum::Json(outcome)).into_response())
}
