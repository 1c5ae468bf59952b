//! Operational routes: health, readiness, Prometheus metrics and the OpenAPI document.

use std::sync::Arc;

use atrium_types::metrics::render_gauge;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the pipeline is within 100,000 records of the log end.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let end = atrium_log::EventLog::end_offset(&*state.log);
    let lag = end.saturating_sub(state.pipeline.applied_offset());
    let status = if lag <= 100_000 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": status == StatusCode::OK, "pipeline_lag_records": lag})),
    )
        .into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut out = String::with_capacity(8 * 1024);
    let ingest = &state.metrics;
    ingest.requests.render(
        &mut out,
        "atrium_ingest_requests_total",
        "Collection requests received.",
    );
    ingest.events_accepted.render(
        &mut out,
        "atrium_ingest_events_accepted_total",
        "Events durably appended to the log.",
    );
    ingest.events_rejected.render(
        &mut out,
        "atrium_ingest_events_rejected_total",
        "Events refused by validation.",
    );
    ingest.events_duplicate.render(
        &mut out,
        "atrium_ingest_events_duplicate_total",
        "Events dropped as messageId duplicates.",
    );
    ingest.events_suppressed.render(
        &mut out,
        "atrium_ingest_events_suppressed_total",
        "Events dropped because they carry erased identifiers.",
    );
    ingest.requests_throttled.render(
        &mut out,
        "atrium_ingest_requests_throttled_total",
        "Requests answered 429.",
    );
    ingest.requests_failed.render(
        &mut out,
        "atrium_ingest_requests_failed_total",
        "Requests whose append failed.",
    );
    ingest.ack_latency.render(
        &mut out,
        "atrium_ingest_ack_latency_seconds",
        "Request arrival to durable acknowledgement.",
    );
    let pipeline = &state.pipeline.metrics;
    pipeline.events_applied.render(
        &mut out,
        "atrium_pipeline_events_applied_total",
        "Events applied to profiles.",
    );
    pipeline.events_skipped.render(
        &mut out,
        "atrium_pipeline_events_skipped_total",
        "Log records the pipeline skipped.",
    );
    pipeline.events_suppressed.render(
        &mut out,
        "atrium_pipeline_events_suppressed_total",
        "Events skipped by the suppression list.",
    );
    pipeline.control_records.render(
        &mut out,
        "atrium_pipeline_control_records_total",
        "Control records applied.",
    );
    pipeline.profiles_created.render(
        &mut out,
        "atrium_pipeline_profiles_created_total",
        "Profiles created.",
    );
    pipeline.profiles_merged.render(
        &mut out,
        "atrium_pipeline_profiles_merged_total",
        "Profiles merged into another.",
    );
    pipeline.identifiers_demoted.render(
        &mut out,
        "atrium_pipeline_identifiers_demoted_total",
        "Identifiers dropped from matching by limits.",
    );
    pipeline.batches.render(
        &mut out,
        "atrium_pipeline_batches_total",
        "State-store transactions committed.",
    );
    pipeline.freshness.render(
        &mut out,
        "atrium_pipeline_freshness_seconds",
        "receivedAt to profile updated.",
    );
    let log = state.log.stats();
    let applied = state.pipeline.applied_offset();
    render_gauge(
        &mut out,
        "atrium_log_end_offset",
        "One past the last durable log offset.",
        log.end_offset as f64,
    );
    render_gauge(
        &mut out,
        "atrium_log_bytes",
        "Bytes of all log segments.",
        log.total_bytes as f64,
    );
    render_gauge(
        &mut out,
        "atrium_log_segments",
        "Log segment files.",
        log.segments as f64,
    );
    render_gauge(
        &mut out,
        "atrium_log_syncs",
        "Group commits since start.",
        log.syncs as f64,
    );
    render_gauge(
        &mut out,
        "atrium_pipeline_applied_offset",
        "One past the last applied log offset.",
        applied as f64,
    );
    render_gauge(
        &mut out,
        "atrium_pipeline_lag_records",
        "Log records not yet applied.",
        log.end_offset.saturating_sub(applied) as f64,
    );
    let warehouse_offset = state.warehouse.visible_offset();
    render_gauge(
        &mut out,
        "atrium_warehouse_visible_offset",
        "One past the last log offset queryable in the warehouse.",
        warehouse_offset as f64,
    );
    render_gauge(
        &mut out,
        "atrium_warehouse_lag_records",
        "Log records not yet queryable in the warehouse.",
        log.end_offset.saturating_sub(warehouse_offset) as f64,
    );
    render_gauge(
        &mut out,
        "atrium_warehouse_files",
        "Parquet files the warehouse manifest lists.",
        state.warehouse.file_count() as f64,
    );
    render_gauge(
        &mut out,
        "atrium_warehouse_memory_files_bytes",
        "Decoded bytes of small-table files kept in memory for queries.",
        state.warehouse.memory_files_bytes() as f64,
    );
    if let Ok(profiles) = state.store.read(|tables| tables.profile_count()) {
        render_gauge(
            &mut out,
            "atrium_profiles",
            "Profiles in the state store.",
            profiles as f64,
        );
    }
    render_gauge(
        &mut out,
        "atrium_dedup_window_entries",
        "messageIds remembered for deduplication.",
        state.dedup.lock().len() as f64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// (method, path, summary, authentication) of every route; the OpenAPI document is built from it
/// and a test requests each one.
pub const ROUTES: &[(&str, &str, &str, Auth)] = &[
    (
        "post",
        "/v1/identify",
        "Identify a user and record traits (Segment spec)",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/track",
        "Record an action (Segment spec)",
        Auth::WriteKey,
    ),
    ("post", "/v1/page", "Record a page view", Auth::WriteKey),
    (
        "post",
        "/v1/screen",
        "Record a mobile screen view",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/group",
        "Associate a user with a group",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/alias",
        "Link a previous id to a user id",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/batch",
        "Send up to 2,500 events",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/import",
        "Legacy alias of /v1/batch",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/b",
        "analytics-next and mobile batch alias",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/t",
        "analytics-next track alias",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/i",
        "analytics-next identify alias",
        Auth::WriteKey,
    ),
    ("post", "/v1/p", "analytics-next page alias", Auth::WriteKey),
    (
        "post",
        "/v1/s",
        "analytics-next screen alias",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/g",
        "analytics-next group alias",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/a",
        "analytics-next alias alias",
        Auth::WriteKey,
    ),
    (
        "post",
        "/v1/m",
        "Mobile SDK metrics (accepted and discarded)",
        Auth::None,
    ),
    (
        "get",
        "/v1/projects/{writeKey}/settings",
        "Source settings for analytics-next and mobile SDKs",
        Auth::None,
    ),
    (
        "get",
        "/v1/profiles",
        "List profiles, or search by identifier prefix with q=kind:prefix",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}",
        "One profile by id or kind:value",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/profiles/{profile}",
        "GDPR erasure of a profile",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}/events",
        "The profile's event timeline, newest first",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}/identity",
        "Identifiers and the merges that formed the profile, with reasons",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/profiles/{profile}/traits",
        "Update traits (appended to the log as an identify)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}/export",
        "Access request: all data held about the profile",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/pipeline",
        "Log end, the pipeline's applied offset and lag, and the warehouse's committed (Parquet) and visible (queryable) offsets",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/sql",
        "Read-only SQL over the warehouse tables (body {query, format: json|csv|arrow, limit, timeout_ms})",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/analytics/kpis",
        "Revenue, orders, AOV, conversion, new vs returning customers, DAU/WAU/MAU, refunds per local period (body {from, to, time_zone, granularity, filters, breakdown, metrics})",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/analytics/funnel",
        "Funnel: ordered steps (event + filters), conversion window, loose or strict order; per-step conversion, drop-off, median time",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/analytics/retention",
        "Retention matrix: cohorts by first occurrence of an event per day/week/month, return event, N periods",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/analytics/attribution",
        "Orders and revenue attributed to touchpoints: first/last touch, linear, position-based, time-decay, by utm_source/medium/campaign/channel",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/analytics/paths",
        "Most frequent next (or previous) event sequences around an event",
        Auth::Secret,
    ),
    ("get", "/v1/features", "List feature flags", Auth::Secret),
    (
        "put",
        "/v1/features/{key}",
        "Create or replace a feature (GrowthBook defaultValue and rules; validated, appended to the log)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/features/{key}",
        "One feature; history=true adds every version",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/features/{key}",
        "Delete a feature (its history stays)",
        Auth::Secret,
    ),
    ("get", "/v1/experiments", "List experiments", Auth::Secret),
    (
        "put",
        "/v1/experiments/{key}",
        "Create or replace an experiment (hypothesis, variations, weights, metrics, status)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/experiments/{key}",
        "One experiment; history=true adds every version",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/experiments/{key}/start",
        "Start an experiment: served as an experiment rule on its feature",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/experiments/{key}/stop",
        "Stop an experiment: its rule leaves the payload",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/experiments/{key}",
        "Delete an experiment (its history stays)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/experiments/{key}/results",
        "Experiment results: users per variation, SRM, goal and guardrail metrics (engine, alpha, sequential, correction, dimension)",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/experiments/{key}/bandit/update",
        "Bandit: compute Thompson-sampling weights from the decision metric now and write them as a new version",
        Auth::Secret,
    ),
    ("get", "/v1/metrics", "List metrics", Auth::Secret),
    (
        "put",
        "/v1/metrics/{key}",
        "Create or replace a metric (conversion, count, sum or ratio; filters, window, cap, covariate)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/metrics/{key}",
        "One metric; history=true adds every version",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/metrics/{key}",
        "Delete a metric (its history stays)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/recommendations",
        "Recommendations for a placement (for_you, similar, bought_together, trending, recently_viewed, buy_again) with rules as parameters",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/recommendations",
        "Recommendations with a JSON body {placement, profile, item, cart, category, k, model, rules: filters, boosts, pins, diversity}",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/recommendations/stats",
        "Impressions, clicks, CTR, conversions and revenue per placement and model",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/recommendations/models",
        "Recommendation service status: applied offset, catalog size, current model version",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/recommendations/train",
        "Train ALS and the content index now; answers with the published version",
        Auth::Secret,
    ),
    (
        "put",
        "/v1/catalog/items",
        "Create or replace up to 5,000 catalog items {items: [...]} (validated, appended to the log)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/catalog/items/{item}",
        "One catalog item",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/catalog/items/{item}",
        "Remove a catalog item from recommendations",
        Auth::Secret,
    ),
    ("get", "/v1/saved-groups", "List saved groups", Auth::Secret),
    (
        "put",
        "/v1/saved-groups/{key}",
        "Create or replace a saved group (values for $inGroup)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/saved-groups/{key}",
        "One saved group; history=true adds every version",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/saved-groups/{key}",
        "Delete a saved group",
        Auth::Secret,
    ),
    ("get", "/v1/segments", "List segments", Auth::Secret),
    (
        "put",
        "/v1/segments/{key}",
        "Create or replace a segment (validated against the catalog; backfilled from history)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/segments/{key}",
        "One segment definition; history=true adds every version",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/segments/{key}",
        "Delete a segment (refused while another segment uses it)",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/segments/preview",
        "Count and sample the profiles a definition would select now, without saving it",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/segments/{key}/members",
        "Members of a segment: paginated JSON, or all as format=csv / jsonl",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}/segments",
        "The profile's membership in every segment, and its computed traits",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/profiles/{profile}/segments/{key}/explain",
        "Why the profile is (not) a member: each node's value and facts",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/computed-traits",
        "List computed traits",
        Auth::Secret,
    ),
    (
        "put",
        "/v1/computed-traits/{key}",
        "Create or replace a computed trait (backfilled from history)",
        Auth::Secret,
    ),
    (
        "get",
        "/v1/computed-traits/{key}",
        "One computed trait definition",
        Auth::Secret,
    ),
    (
        "delete",
        "/v1/computed-traits/{key}",
        "Delete a computed trait (refused while a segment uses it)",
        Auth::Secret,
    ),
    (
        "post",
        "/v1/computed-traits/{key}/rfm/recompute",
        "RFM with \"quintiles\": true: compute the population's 20/40/60/80th percentiles now and write them as a new version",
        Auth::Secret,
    ),
    (
        "get",
        "/api/features/{clientKey}",
        "GrowthBook SDK payload (encrypted when the connection has a key); ETag and If-None-Match",
        Auth::None,
    ),
    (
        "get",
        "/sub/{clientKey}",
        "Server-sent `features` events with the new payload when definitions change",
        Auth::None,
    ),
    (
        "post",
        "/api/eval/{clientKey}",
        "Remote evaluation of every feature for {attributes, forcedVariations, forcedFeatures, url, profile}",
        Auth::None,
    ),
    (
        "post",
        "/ofrep/v1/evaluate/flags/{key}",
        "OpenFeature remote evaluation (OFREP) of one flag",
        Auth::ClientKey,
    ),
    (
        "post",
        "/ofrep/v1/evaluate/flags",
        "OpenFeature remote evaluation (OFREP) of every flag; ETag and If-None-Match",
        Auth::ClientKey,
    ),
    ("get", "/healthz", "Liveness", Auth::None),
    (
        "get",
        "/readyz",
        "Readiness (pipeline caught up)",
        Auth::None,
    ),
    ("get", "/metrics", "Prometheus metrics", Auth::None),
    ("get", "/openapi.json", "This document", Auth::None),
    (
        "get",
        "/docs/errors.md",
        "Reference of every error code",
        Auth::None,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    WriteKey,
    Secret,
    /// An SDK connection's client key (`Authorization: Bearer` or `X-Client-Key`).
    ClientKey,
}

pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, auth) in ROUTES {
        let security = match auth {
            Auth::None => json!([]),
            Auth::WriteKey => json!([{"writeKeyBasic": []}, {"writeKeyHeader": []}]),
            Auth::Secret => json!([{"secretKey": []}]),
            Auth::ClientKey => json!([{"clientKeyBearer": []}, {"clientKeyHeader": []}]),
        };
        let mut parameters = Vec::new();
        for name in ["writeKey", "profile", "key", "clientKey", "item"] {
            if path.contains(&format!("{{{name}}}")) {
                parameters.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        let mut operation = json!({
            "summary": summary,
            "security": security,
            "parameters": parameters,
            "responses": {
                "200": {"description": "Success"},
                "400": {"description": "Invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "Missing or unknown key", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "429": {"description": "Throttled; see Retry-After", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if *method == "post" && matches!(auth, Auth::WriteKey) {
            operation["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SegmentPayload"}},
                "text/plain": {"schema": {"type": "string"}}
            }});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    let codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .map(|code| code.describe().0)
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Atrium API", "version": env!("CARGO_PKG_VERSION"), "description": "Segment-compatible collection, unified profiles and identity resolution, feature flags and experiments (GrowthBook SDK payloads, OFREP)."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "write key as user name, empty password"},
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
                "secretKey": {"type": "http", "scheme": "bearer"},
                "clientKeyBearer": {"type": "http", "scheme": "bearer", "description": "SDK client key"},
                "clientKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Client-Key"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message", "type", "link"], "properties": {
                    "code": {"type": "string", "enum": codes}, "message": {"type": "string"}, "type": {"type": "string"}, "link": {"type": "string"}
                }},
                "SegmentPayload": {"type": "object", "description": "A Segment spec event, or {batch: [...]} for batch routes", "additionalProperties": true}
            }
        }
    })
}

pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The error-code reference every error body links to.
pub async fn error_docs() -> Response {
    (
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        include_str!("../../../docs/errors.md"),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such route; see /openapi.json")
}
