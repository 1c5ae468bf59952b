//! The Segment-compatible collection routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use atrium_collect::{CollectError, DedupKey, Endpoint, Rejection, RequestBody, RequestFacts};
use atrium_log::EventLog;
use atrium_pipeline::event_identifier_hashes;
use atrium_types::SourceConfig;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A fixed-window limiter per write key: at most `per_second` requests in each second.
pub struct RateLimiter {
    per_second: u32,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request for `key` at `now_ms` is allowed.
    pub fn allow(&self, key: &str, now_ms: i64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let second = now_ms.div_euclid(1_000);
        let mut windows = self.windows.lock();
        if windows.len() > 100_000 {
            windows.retain(|_, (window, _)| *window == second);
        }
        let entry = windows.entry(key.to_owned()).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_second
    }
}

#[derive(Serialize)]
struct IngestResponse {
    success: bool,
    accepted: usize,
    rejected: usize,
    duplicates: usize,
    #[serde(skip_serializing_if = "is_zero")]
    suppressed: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Rejection>,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

/// `POST /v1/{kind}` for every event route and alias.
pub async fn post_event(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Bodies over the raw limit are refused by the extractor; answer in the API's error shape.
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::BodyTooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        ApiError::new(code, rejection.body_text())
    })?;
    let endpoint = match kind.as_str() {
        "identify" | "i" => Endpoint::Identify,
        "track" | "t" => Endpoint::Track,
        "page" | "p" => Endpoint::Page,
        "screen" | "s" => Endpoint::Screen,
        "group" | "g" => Endpoint::Group,
        "alias" | "a" => Endpoint::Alias,
        "batch" | "import" | "b" => Endpoint::Batch,
        "m" => return Ok(Json(json!({"success": true})).into_response()),
        other => {
            return Err(ApiError::new(
                ErrorCode::RouteNotFound,
                format!(
                    "unknown collection route /v1/{other}; use identify, track, page, screen, group, alias or batch"
                ),
            ));
        }
    };
    ingest(state, endpoint, peer, headers, body).await
}

async fn ingest(
    state: Arc<AppState>,
    endpoint: Endpoint,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    state.metrics.requests.add(1);
    let Ok(_permit) = state.inflight.try_acquire() else {
        state.metrics.requests_throttled.add(1);
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in flight, retry shortly",
        )
        .retry_after(1));
    };
    let received_at_ms = state.clock.now_ms();
    let body = decode_body(&headers, body, state.limits.max_request_bytes)?;
    let parsed = RequestBody::parse(&body, &state.limits).map_err(collect_error)?;
    let write_key =
        header_write_key(&headers).or_else(|| parsed.write_key().map(|key| key.into_owned()));
    let Some(write_key) = write_key else {
        return Err(ApiError::new(
            ErrorCode::MissingWriteKey,
            "no write key: send it as HTTP Basic user (`key:`), in the body as `writeKey`, or in the X-Write-Key header",
        ));
    };
    let Some(source) = state.sources_by_key.get(&write_key) else {
        return Err(ApiError::new(
            ErrorCode::InvalidWriteKey,
            "unknown write key; check the source's key in the Atrium config",
        ));
    };
    if !state.rate_limiter.allow(&write_key, received_at_ms) {
        state.metrics.requests_throttled.add(1);
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "rate limit for this write key exceeded",
        )
        .retry_after(1));
    }
    let client_ip = client_ip(&headers, peer, state.config.trusted_proxy_header.as_deref());
    let facts = RequestFacts {
        source,
        received_at_ms,
        client_ip: Some(&client_ip),
    };
    let normalized = parsed
        .normalize(endpoint, &facts, &state.limits)
        .map_err(collect_error)?;

    let rejected = normalized.rejected.len();
    let (payloads, keys, duplicates, suppressed) =
        admit(&state, source, normalized.accepted, received_at_ms);
    let accepted = payloads.len();
    if !payloads.is_empty() {
        match state.log.append_async(payloads).await {
            Ok(_) => {}
            Err(error) => {
                let mut dedup = state.dedup.lock();
                for key in keys {
                    dedup.remove(key);
                }
                state.metrics.requests_failed.add(1);
                tracing::error!(%error, "event log append failed");
                return Err(ApiError::new(
                    ErrorCode::StorageUnavailable,
                    "the event log could not store the events; retry later",
                )
                .retry_after(5));
            }
        }
    }
    state.metrics.events_accepted.add(accepted as u64);
    state.metrics.events_rejected.add(rejected as u64);
    state.metrics.events_duplicate.add(duplicates as u64);
    state.metrics.events_suppressed.add(suppressed as u64);
    state
        .metrics
        .ack_latency
        .observe_ms(started.elapsed().as_secs_f64() * 1_000.0);
    if rejected > 0 {
        tracing::debug!(source = %source.name, rejected, "events rejected");
    }
    let response = IngestResponse {
        success: true,
        accepted,
        rejected,
        duplicates,
        suppressed,
        errors: normalized.rejected,
    };
    let mut response = Json(response).into_response();
    let end = state.log.end_offset();
    if let Ok(value) = HeaderValue::from_str(&end.to_string()) {
        response.headers_mut().insert("x-atrium-log-end", value);
    }
    Ok(response)
}

/// Drops duplicates and suppressed events; reserves the dedup keys of the rest.
pub(crate) fn admit(
    state: &AppState,
    source: &SourceConfig,
    events: Vec<atrium_collect::NormalizedEvent>,
    received_at_ms: i64,
) -> (Vec<Vec<u8>>, Vec<DedupKey>, usize, usize) {
    let mut payloads = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(events.len());
    let mut duplicates = 0;
    let mut suppressed = 0;
    let suppression = state.suppressed.read();
    let mut dedup = state.dedup.lock();
    for event in events {
        if !suppression.is_empty()
            && let Ok(value) = serde_json::from_slice::<Value>(&event.payload)
            && event_identifier_hashes(&value, state.rules(), state.hasher())
                .iter()
                .any(|hash| suppression.contains(hash))
        {
            suppressed += 1;
            continue;
        }
        let key = DedupKey::new(&source.name, &event.message_id);
        if !dedup.insert(key, received_at_ms) {
            duplicates += 1;
            continue;
        }
        keys.push(key);
        payloads.push(event.payload);
    }
    (payloads, keys, duplicates, suppressed)
}

fn collect_error(error: CollectError) -> ApiError {
    let code = match &error {
        CollectError::InvalidJson(_) | CollectError::TooDeep { .. } => ErrorCode::InvalidJson,
        CollectError::NotAnObject | CollectError::BatchNotArray => ErrorCode::InvalidRequest,
        CollectError::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
        CollectError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
    };
    ApiError::new(code, error.to_string())
}

/// Inflates gzip bodies, refusing to inflate past the request limit (gzip bombs).
fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    if body.len() > limit {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "request body is {} bytes, over the limit of {limit} bytes",
                body.len()
            ),
        ));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            use std::io::Read;
            let mut inflated = Vec::with_capacity(body.len() * 4);
            let decoder = flate2::read::GzDecoder::new(&body[..]);
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|error| {
                    ApiError::new(
                        ErrorCode::InvalidGzip,
                        format!("body is not valid gzip: {error}"),
                    )
                })?;
            if inflated.len() > limit {
                return Err(ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("decompressed body is over the limit of {limit} bytes"),
                ));
            }
            Ok(Bytes::from(inflated))
        }
        other => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unsupported Content-Encoding `{other}`; send identity or gzip"),
        )),
    }
}

/// Write key from `Authorization: Basic base64(key:)` or `X-Write-Key`.
fn header_write_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get("x-write-key")
        .and_then(|value| value.to_str().ok())
    {
        let key = value.trim();
        if !key.is_empty() {
            return Some(key.to_owned());
        }
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split(':').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_owned())
}

fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted_header: Option<&str>) -> String {
    if let Some(name) = trusted_header
        && let Some(value) = headers.get(name).and_then(|value| value.to_str().ok())
        && let Some(first) = value
            .split(',')
            .next()
            .map(str::trim)
            .filter(|first| first.parse::<std::net::IpAddr>().is_ok())
    {
        return first.to_owned();
    }
    peer.ip().to_string()
}

/// `GET /v1/projects/{writeKey}/settings`: what analytics-next and the mobile SDKs fetch first.
pub async fn project_settings(
    State(state): State<Arc<AppState>>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.sources_by_key.contains_key(&write_key) {
        return Err(ApiError::new(
            ErrorCode::InvalidWriteKey,
            "unknown write key",
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let settings = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": "http",
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]}
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}}
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0.0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": []
    });
    Ok(Json(settings).into_response())
}
