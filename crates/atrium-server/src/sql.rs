//! `POST /v1/sql`: read-only SQL over the warehouse, behind the secret key.
//!
//! Queries run on the warehouse's own runtime (a blocking thread of ours only waits), at most
//! [`MAX_CONCURRENT_QUERIES`] at a time, so ingestion and the other routes stay responsive while
//! a heavy query runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atrium_warehouse::{SqlLimits, WarehouseError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::admin::AdminKey;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Queries running at once; more get `overloaded`.
pub const MAX_CONCURRENT_QUERIES: usize = 4;
const DEFAULT_ROWS: usize = 10_000;
const MAX_ROWS: usize = 1_000_000;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const MAX_TIMEOUT_MS: u64 = 300_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    query: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Arrow,
}

pub async fn post_sql(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|error| {
        let code = if error.is_data() {
            ErrorCode::InvalidRequest
        } else {
            ErrorCode::InvalidJson
        };
        ApiError::new(
            code,
            format!(
                "expected {{\"query\": \"SELECT ...\", \"format\"?: \"json\"|\"csv\"|\"arrow\", \"limit\"?, \"timeout_ms\"?}}: {error}"
            ),
        )
    })?;
    let format = match request.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        "arrow" => Format::Arrow,
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("unknown format {other:?}: use \"json\", \"csv\" or \"arrow\""),
            ));
        }
    };
    let max_rows = request.limit.unwrap_or(DEFAULT_ROWS);
    if max_rows == 0 || max_rows > MAX_ROWS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {MAX_ROWS}"),
        ));
    }
    let timeout_ms = request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let Ok(_permit) = state.sql_slots.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            format!("{MAX_CONCURRENT_QUERIES} SQL queries are already running; retry shortly"),
        )
        .retry_after(1));
    };
    let limits = SqlLimits {
        timeout: Duration::from_millis(timeout_ms),
        max_rows,
    };
    let started = Instant::now();
    let warehouse = state.warehouse.clone();
    let query = request.query;
    let output = tokio::task::spawn_blocking(move || warehouse.sql(&query, &limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(sql_error)?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match format {
        Format::Json => {
            let rows = output.to_json_rows().map_err(ApiError::internal)?;
            let columns: Vec<serde_json::Value> = output
                .columns()
                .into_iter()
                .map(|(name, kind)| serde_json::json!({"name": name, "type": kind}))
                .collect();
            let mut body = Vec::with_capacity(rows.len() + 256);
            body.extend_from_slice(b"{\"columns\":");
            serde_json::to_writer(&mut body, &columns).map_err(ApiError::internal)?;
            body.extend_from_slice(
                format!(
                    ",\"row_count\":{},\"elapsed_ms\":{elapsed_ms},\"rows\":",
                    output.row_count
                )
                .as_bytes(),
            );
            body.extend_from_slice(&rows);
            body.push(b'}');
            Ok(with_type(body, "application/json"))
        }
        Format::Csv => {
            let body = output.to_csv().map_err(ApiError::internal)?;
            Ok(with_type(body, "text/csv; charset=utf-8"))
        }
        Format::Arrow => {
            let body = output.to_arrow_ipc().map_err(ApiError::internal)?;
            Ok(with_type(body, "application/vnd.apache.arrow.stream"))
        }
    }
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn sql_error(error: WarehouseError) -> ApiError {
    let code = match &error {
        WarehouseError::Syntax(_) => ErrorCode::SqlSyntax,
        WarehouseError::UnknownTable(_) | WarehouseError::UnknownColumn(_) => {
            ErrorCode::SqlUnknownName
        }
        WarehouseError::WriteRefused(_) => ErrorCode::SqlReadOnly,
        WarehouseError::InvalidQuery(_) => ErrorCode::SqlInvalid,
        WarehouseError::Timeout(_) => ErrorCode::SqlTimeout,
        WarehouseError::TooManyRows(_) | WarehouseError::ResourcesExhausted(_) => {
            ErrorCode::SqlTooLarge
        }
        _ => return ApiError::internal(error),
    };
    ApiError::new(code, error.to_string())
}
