//! Secret-key routes of the recommendation service: `GET/POST /v1/recommendations`, stats,
//! models and training, and the catalog (`/v1/catalog/items`). Catalog writes are validated,
//! appended to the log as `atrium.catalog.*` records and answered once the recommendation
//! consumer applied them, so the next request sees them.

use std::sync::Arc;
use std::time::Duration;

use atrium_recserve::{RecError, RecRequest, validate_items};
use atrium_types::{ControlRecord, LogRecord, format_timestamp_ms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::admin::{AdminKey, Consistency, await_applied, blocking};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// How long a catalog write waits for the recommendation consumer before answering 202.
const APPLY_WAIT: Duration = Duration::from_secs(5);

impl From<RecError> for ApiError {
    fn from(error: RecError) -> Self {
        let code = match &error {
            RecError::UnknownPlacement(_) => ErrorCode::UnknownPlacement,
            RecError::UnknownItem(_) => ErrorCode::ItemNotFound,
            RecError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            RecError::InvalidRules(_) => ErrorCode::InvalidRules,
            RecError::ProfileNotFound(_) => ErrorCode::ProfileNotFound,
            RecError::Store(_) | RecError::Log(_) => return ApiError::internal(error),
        };
        ApiError::new(code, error.to_string())
    }
}

/// Waits until both the pipeline (identity) and the recommendation consumer reached `offset`.
async fn wait_for(state: &Arc<AppState>, offset: Option<u64>) -> Result<(), ApiError> {
    let Some(offset) = offset else {
        return Ok(());
    };
    await_applied(
        state,
        offset,
        format!("pipeline has not reached offset {offset} yet; retry"),
    )
    .await?;
    let recs = state.recs.clone();
    let reached = tokio::task::spawn_blocking(move || recs.wait_applied(offset, APPLY_WAIT))
        .await
        .map_err(ApiError::internal)?;
    if !reached {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!("recommendations have not reached offset {offset} yet; retry"),
        )
        .retry_after(1));
    }
    Ok(())
}

/// The response document serialized straight from the answer (no `Value` in between).
async fn answer(state: Arc<AppState>, request: RecRequest) -> Result<Response, ApiError> {
    let body = blocking(&state, move |state| {
        Ok(state.recs.recommend_json(&request)?)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `GET /v1/recommendations?placement=…&profile=…&item=…&k=…` (rules as parameters).
pub async fn get_recommendations(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let min_offset = match pairs.iter().find(|(name, _)| name == "min_offset") {
        Some((_, value)) => Some(value.parse::<u64>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "`min_offset` must be a log offset",
            )
        })?),
        None => None,
    };
    let request = RecRequest::from_query(&pairs)?;
    wait_for(&state, min_offset).await?;
    answer(state, request).await
}

/// `POST /v1/recommendations` with `{placement, profile, item, cart, category, k, model, rules}`.
pub async fn post_recommendations(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Query(consistency): Query<Consistency>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not JSON: {error}"),
        )
    })?;
    let request = RecRequest::from_json(&body)?;
    wait_for(&state, consistency.min_offset).await?;
    answer(state, request).await
}

/// `GET /v1/recommendations/stats`: impressions, clicks, CTR, conversions, revenue.
pub async fn get_stats(_: AdminKey, State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.recs.stats())
}

/// `GET /v1/recommendations/models`: offsets, catalog size and the current model version.
pub async fn get_models(_: AdminKey, State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.recs.status())
}

/// `POST /v1/recommendations/train`: trains ALS and the content index now; answers when the
/// new version is published.
pub async fn post_train(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for(&state, consistency.min_offset).await?;
    blocking(&state, |state| {
        let (version, report) = state.recs.train(true);
        Ok(Json(json!({"version": version, "report": report})))
    })
    .await
}

/// Appends a catalog record and waits (bounded) for the recommendation consumer to apply it.
async fn append_catalog(
    state: &Arc<AppState>,
    record: ControlRecord,
    count: usize,
) -> Result<Response, ApiError> {
    let offset = state
        .log
        .append_async(vec![LogRecord::encode_control(&record)])
        .await
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    let recs = state.recs.clone();
    let applied = tokio::task::spawn_blocking(move || recs.wait_applied(offset + 1, APPLY_WAIT))
        .await
        .map_err(ApiError::internal)?;
    let (status, label) = if applied {
        (StatusCode::OK, "applied")
    } else {
        (StatusCode::ACCEPTED, "accepted")
    };
    Ok((
        status,
        Json(json!({"status": label, "items": count, "offset": offset, "min_offset": offset + 1})),
    )
        .into_response())
}

/// `PUT /v1/catalog/items`: creates or replaces up to 5,000 items (`{"items": [...]}`).
pub async fn put_items(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not JSON: {error}"),
        )
    })?;
    let items = validate_items(&body).map_err(|errors| {
        let summary: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
        let details: Vec<Value> = errors
            .iter()
            .map(|error| json!({"path": error.path, "message": error.message}))
            .collect();
        ApiError::new(ErrorCode::InvalidCatalogItem, summary.join("; "))
            .with_details(json!(details))
    })?;
    let count = items.len();
    let record = ControlRecord::CatalogPut {
        items: items.iter().map(atrium_recserve::Item::to_json).collect(),
        at: format_timestamp_ms(state.clock.now_ms()),
    };
    append_catalog(&state, record, count).await
}

fn item_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ItemNotFound,
        format!(
            "no catalog item `{id}` (deleted, never created, or not applied yet: use ?min_offset=)"
        ),
    )
}

/// `GET /v1/catalog/items/{item}`.
pub async fn get_item(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for(&state, consistency.min_offset).await?;
    match state.recs.item(&id) {
        Some(item) => Ok(Json(item.to_json())),
        None => Err(item_not_found(&id)),
    }
}

/// `DELETE /v1/catalog/items/{item}`: the item is no longer recommended (its history stays).
pub async fn delete_item(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if state.recs.item(&id).is_none() {
        return Err(item_not_found(&id));
    }
    let record = ControlRecord::CatalogDelete {
        ids: vec![id],
        at: format_timestamp_ms(state.clock.now_ms()),
    };
    append_catalog(&state, record, 1).await
}
