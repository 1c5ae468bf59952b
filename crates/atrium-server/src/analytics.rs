//! `POST /v1/analytics/{kpis,funnel,retention,attribution,paths}`: the analytics engine over
//! the warehouse, behind the secret key.
//!
//! Requests are JSON (unknown fields refused; see `atrium_analytics` for the semantics). They
//! share the SQL route's slots ([`crate::sql::MAX_CONCURRENT_QUERIES`] at once) and run on a
//! blocking thread that hands the warehouse reads to the warehouse's own runtime, so ingestion
//! and the other routes stay responsive while a heavy query runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atrium_analytics::{AnalyticsError, Limits, QueryKind};
use atrium_warehouse::WarehouseError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::Value;

use crate::admin::AdminKey;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// How long one analytics query may read from the warehouse.
const TIMEOUT: Duration = Duration::from_secs(120);

pub async fn post_kpis(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    run(state, QueryKind::Kpis, body).await
}

pub async fn post_funnel(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    run(state, QueryKind::Funnel, body).await
}

pub async fn post_retention(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    run(state, QueryKind::Retention, body).await
}

pub async fn post_attribution(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    run(state, QueryKind::Attribution, body).await
}

pub async fn post_paths(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    run(state, QueryKind::Paths, body).await
}

async fn run(state: Arc<AppState>, kind: QueryKind, body: Bytes) -> Result<Json<Value>, ApiError> {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not JSON: {error}"),
        ));
    }
    let Ok(_permit) = state.sql_slots.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "{} warehouse queries are already running; retry shortly",
                crate::sql::MAX_CONCURRENT_QUERIES
            ),
        )
        .retry_after(1));
    };
    let warehouse = state.warehouse.clone();
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        atrium_analytics::run_json(&warehouse, kind, &body, &Limits { timeout: TIMEOUT })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(analytics_error)?;
    let mut json = answer.json;
    if let Value::Object(fields) = &mut json {
        fields.insert(
            "elapsed_ms".into(),
            Value::from(started.elapsed().as_millis() as u64),
        );
    }
    Ok(Json(json))
}

fn analytics_error(error: AnalyticsError) -> ApiError {
    match &error {
        AnalyticsError::Invalid { .. } => {
            ApiError::new(ErrorCode::AnalyticsInvalid, error.to_string())
        }
        AnalyticsError::Warehouse(WarehouseError::Timeout(_)) => {
            ApiError::new(ErrorCode::AnalyticsTimeout, error.to_string())
        }
        AnalyticsError::Warehouse(WarehouseError::ResourcesExhausted(_)) => {
            ApiError::new(ErrorCode::SqlTooLarge, error.to_string())
        }
        AnalyticsError::Warehouse(_) => ApiError::internal(error),
    }
}
