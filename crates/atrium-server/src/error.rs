//! The API's one error table: every error response has `code`, `message`, `type` and `link`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Every error code the API can return, with its HTTP status and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    BodyTooLarge,
    BatchTooLarge,
    InvalidRequest,
    InvalidGzip,
    MissingWriteKey,
    InvalidWriteKey,
    MissingAdminKey,
    InvalidAdminKey,
    ProfileNotFound,
    InvalidDefinition,
    DefinitionNotFound,
    DefinitionConflict,
    MissingClientKey,
    InvalidClientKey,
    RouteNotFound,
    RateLimited,
    Overloaded,
    SqlSyntax,
    SqlUnknownName,
    SqlReadOnly,
    SqlInvalid,
    SqlTimeout,
    SqlTooLarge,
    AnalyticsInvalid,
    AnalyticsTimeout,
    UnknownPlacement,
    ItemNotFound,
    InvalidCatalogItem,
    InvalidRules,
    StorageUnavailable,
    Internal,
}

impl ErrorCode {
    /// (code, HTTP status, error type).
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidJson => ("invalid_json", StatusCode::BAD_REQUEST, "invalid_request"),
            BodyTooLarge => ("body_too_large", StatusCode::BAD_REQUEST, "invalid_request"),
            BatchTooLarge => (
                "batch_too_large",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            InvalidRequest => (
                "invalid_request",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            InvalidGzip => ("invalid_gzip", StatusCode::BAD_REQUEST, "invalid_request"),
            MissingWriteKey => ("missing_write_key", StatusCode::UNAUTHORIZED, "auth"),
            InvalidWriteKey => ("invalid_write_key", StatusCode::UNAUTHORIZED, "auth"),
            MissingAdminKey => ("missing_admin_key", StatusCode::UNAUTHORIZED, "auth"),
            InvalidAdminKey => ("invalid_admin_key", StatusCode::FORBIDDEN, "auth"),
            ProfileNotFound => (
                "profile_not_found",
                StatusCode::NOT_FOUND,
                "invalid_request",
            ),
            InvalidDefinition => (
                "invalid_definition",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            DefinitionNotFound => (
                "definition_not_found",
                StatusCode::NOT_FOUND,
                "invalid_request",
            ),
            DefinitionConflict => (
                "definition_conflict",
                StatusCode::CONFLICT,
                "invalid_request",
            ),
            MissingClientKey => ("missing_client_key", StatusCode::UNAUTHORIZED, "auth"),
            InvalidClientKey => ("invalid_client_key", StatusCode::UNAUTHORIZED, "auth"),
            RouteNotFound => ("route_not_found", StatusCode::NOT_FOUND, "invalid_request"),
            RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS, "throttled"),
            Overloaded => ("overloaded", StatusCode::TOO_MANY_REQUESTS, "throttled"),
            SqlSyntax => ("sql_syntax", StatusCode::BAD_REQUEST, "invalid_request"),
            SqlUnknownName => (
                "sql_unknown_name",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            SqlReadOnly => ("sql_read_only", StatusCode::FORBIDDEN, "invalid_request"),
            SqlInvalid => ("sql_invalid", StatusCode::BAD_REQUEST, "invalid_request"),
            SqlTimeout => (
                "sql_timeout",
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
            ),
            SqlTooLarge => (
                "sql_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
            ),
            AnalyticsInvalid => (
                "analytics_invalid",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            AnalyticsTimeout => (
                "analytics_timeout",
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
            ),
            UnknownPlacement => (
                "unknown_placement",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            ItemNotFound => ("item_not_found", StatusCode::NOT_FOUND, "invalid_request"),
            InvalidCatalogItem => (
                "invalid_catalog_item",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            InvalidRules => ("invalid_rules", StatusCode::BAD_REQUEST, "invalid_request"),
            StorageUnavailable => (
                "storage_unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "system",
            ),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR, "system"),
        }
    }

    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::InvalidJson,
        ErrorCode::BodyTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidGzip,
        ErrorCode::MissingWriteKey,
        ErrorCode::InvalidWriteKey,
        ErrorCode::MissingAdminKey,
        ErrorCode::InvalidAdminKey,
        ErrorCode::ProfileNotFound,
        ErrorCode::InvalidDefinition,
        ErrorCode::DefinitionNotFound,
        ErrorCode::DefinitionConflict,
        ErrorCode::MissingClientKey,
        ErrorCode::InvalidClientKey,
        ErrorCode::RouteNotFound,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::SqlSyntax,
        ErrorCode::SqlUnknownName,
        ErrorCode::SqlReadOnly,
        ErrorCode::SqlInvalid,
        ErrorCode::SqlTimeout,
        ErrorCode::SqlTooLarge,
        ErrorCode::AnalyticsInvalid,
        ErrorCode::AnalyticsTimeout,
        ErrorCode::UnknownPlacement,
        ErrorCode::ItemNotFound,
        ErrorCode::InvalidCatalogItem,
        ErrorCode::InvalidRules,
        ErrorCode::StorageUnavailable,
        ErrorCode::Internal,
    ];
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds the client should wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
    /// Itemized problems (e.g. `[{path, message}]` of an invalid definition), sent as `errors`.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// A server-side failure: logged in full, reported without internals.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(ErrorCode::Internal, "internal error, see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status, kind) = self.code.describe();
        let mut body = json!({
            "code": code,
            "message": self.message,
            "type": kind,
            "link": format!("/docs/errors.md#{code}"),
        });
        if let Some(details) = self.details {
            body["errors"] = details;
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<atrium_store::StoreError> for ApiError {
    fn from(error: atrium_store::StoreError) -> Self {
        ApiError::internal(error)
    }
}
