//! Public SDK routes: the GrowthBook features payload (`/api/features/{clientKey}`, optionally
//! AES-encrypted, with ETag/304), live updates over SSE (`/sub/{clientKey}`), remote evaluation
//! (`/api/eval/{clientKey}`) and OpenFeature remote evaluation (OFREP, `/ofrep/v1/...`).
//!
//! The payload is built from the `definitions` table and cached until the pipeline applies the
//! next definition record ([`atrium_pipeline::Pipeline::definitions_offset`]). Server-side
//! evaluation merges the profile's traits under the request's attributes, so a user gets the
//! same variant everywhere. Server-side evaluations log their exposures as `Experiment Viewed`
//! events ([`crate::exposures`]).
//!
//! Sticky bucketing (`[experiments] sticky_bucketing`): before evaluating, the user's assignment
//! documents for every hash and fallback attribute value are read from the `sticky_buckets`
//! table; assignments the evaluation makes travel on the exposure events and reach the table
//! through the pipeline. A user keeps their variation when weights, coverage or a bandit change,
//! and moves only when the experiment's `bucket_version` is bumped (or is excluded when their
//! bucket is older than `min_bucket_version`). Assignments become visible to the next
//! evaluation once the pipeline applied the exposure (milliseconds).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use atrium_experiments::{
    CompiledPayload, Context, FeatureDefinition, FeatureResult, FeatureSource,
    InMemoryStickyBucketService, Payload, SavedGroups, StickyAssignmentsDocument,
    StickyBucketService, TrackingCall, eval_feature, evaluate_payload,
};
use atrium_store::{ReadTables, StoreError};
use atrium_types::DefinitionKind;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::admin::{blocking, normalize_reference};
use crate::config::SdkConnection;
use crate::definitions::{ExperimentBody, ExperimentStatus, SavedGroupBody};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// GrowthBook's default cache policy for the features endpoint.
const CACHE_CONTROL: &str = "public, max-age=30, stale-while-revalidate=3600, stale-if-error=36000";

/// The payload at one definitions offset, with each connection's rendered body.
pub struct ServedPayload {
    pub definitions_offset: u64,
    pub payload: Arc<Payload>,
    /// `payload` prepared for server-side evaluation.
    pub compiled: Arc<CompiledPayload>,
    pub date_updated: String,
    rendered: Mutex<HashMap<String, Rendered>>,
}

#[derive(Clone)]
struct Rendered {
    body: Bytes,
    etag: String,
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// Whether `If-None-Match` names `etag` (weak comparison, lists and `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Builds the GrowthBook payload from the stored definitions.
pub fn build_payload(tables: &ReadTables) -> Result<(Payload, String), StoreError> {
    let mut features: BTreeMap<String, FeatureDefinition> = BTreeMap::new();
    for (key, definition) in tables.definitions(DefinitionKind::Feature.as_str())? {
        match serde_json::from_value::<FeatureDefinition>(definition.body) {
            Ok(feature) => {
                features.insert(key, feature);
            }
            Err(error) => tracing::warn!(%key, %error, "stored feature does not parse; not served"),
        }
    }
    for (key, definition) in tables.definitions(DefinitionKind::Experiment.as_str())? {
        let experiment: ExperimentBody = match serde_json::from_value(definition.body) {
            Ok(experiment) => experiment,
            Err(error) => {
                tracing::warn!(%key, %error, "stored experiment does not parse; not served");
                continue;
            }
        };
        if experiment.status != ExperimentStatus::Running {
            continue;
        }
        let feature = features
            .entry(experiment.feature.clone())
            .or_insert_with(|| FeatureDefinition {
                default_value: experiment
                    .variations
                    .first()
                    .map(|variation| variation.value.clone())
                    .unwrap_or(Value::Null),
                rules: Vec::new(),
            });
        feature.rules.push(experiment.feature_rule(&key));
    }
    let mut saved_groups = SavedGroups::new();
    for (key, definition) in tables.definitions(DefinitionKind::SavedGroup.as_str())? {
        if let Ok(group) = serde_json::from_value::<SavedGroupBody>(definition.body) {
            saved_groups.insert(key, group.values);
        }
    }
    let date_updated = tables
        .last_definition_change()?
        .map(|definition| definition.updated_at)
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned());
    Ok((
        Payload {
            features,
            experiments: Vec::new(),
            saved_groups,
            contextual_bandits: BTreeMap::new(),
        },
        date_updated,
    ))
}

/// The payload for the pipeline's current definitions offset (cached).
pub async fn current_payload(state: &Arc<AppState>) -> Result<Arc<ServedPayload>, ApiError> {
    let offset = state.pipeline.definitions_offset();
    if let Some(cached) = state.payload_cache.lock().as_ref()
        && cached.definitions_offset == offset
    {
        return Ok(cached.clone());
    }
    let (payload, date_updated) =
        blocking(state, |state| Ok(state.store.read(build_payload)?)).await?;
    let payload = Arc::new(payload);
    let served = Arc::new(ServedPayload {
        definitions_offset: offset,
        compiled: Arc::new(CompiledPayload::new(payload.clone())),
        payload,
        date_updated,
        rendered: Mutex::new(HashMap::new()),
    });
    let mut cache = state.payload_cache.lock();
    let newer_cached = cache
        .as_ref()
        .is_some_and(|cached| cached.definitions_offset > offset);
    if !newer_cached {
        *cache = Some(served.clone());
    }
    Ok(served)
}

fn connection<'a>(state: &'a AppState, client_key: &str) -> Result<&'a SdkConnection, ApiError> {
    state
        .config
        .sdk_connections
        .iter()
        .find(|connection| connection.client_key == client_key)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidClientKey,
                "unknown client key: add it under [[sdk_connections]]",
            )
        })
}

/// The response body for one connection: plain, or with `encryptedFeatures`.
fn render(served: &ServedPayload, connection: &SdkConnection) -> Result<Rendered, ApiError> {
    if let Some(rendered) = served.rendered.lock().get(&connection.client_key) {
        return Ok(rendered.clone());
    }
    let payload = &served.payload;
    let mut body = json!({
        "status": 200,
        "features": payload.features,
        "experiments": [],
        "dateUpdated": served.date_updated,
    });
    match &connection.encryption_key {
        None => {
            if !payload.saved_groups.is_empty() {
                body["savedGroups"] = json!(sorted_groups(&payload.saved_groups));
            }
        }
        Some(key) => {
            let seal = |value: &Value| {
                let plaintext = serde_json::to_string(value).map_err(ApiError::internal)?;
                atrium_experiments::encrypt(&plaintext, key, rand::random())
                    .map_err(ApiError::internal)
            };
            body["encryptedFeatures"] = json!(seal(&body["features"])?);
            body["features"] = json!({});
            if !payload.saved_groups.is_empty() {
                body["encryptedSavedGroups"] =
                    json!(seal(&json!(sorted_groups(&payload.saved_groups)))?);
            }
        }
    }
    let bytes = Bytes::from(serde_json::to_vec(&body).map_err(ApiError::internal)?);
    let rendered = Rendered {
        etag: etag_of(&bytes),
        body: bytes,
    };
    served
        .rendered
        .lock()
        .insert(connection.client_key.clone(), rendered.clone());
    Ok(rendered)
}

fn sorted_groups(groups: &SavedGroups) -> BTreeMap<&String, &Vec<Value>> {
    groups.iter().collect()
}

/// `GET /api/features/{clientKey}`.
pub async fn get_features(
    State(state): State<Arc<AppState>>,
    Path(client_key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let connection = connection(&state, &client_key)?.clone();
    let served = current_payload(&state).await?;
    let rendered = render(&served, &connection)?;
    let mut response = if not_modified(&headers, &rendered.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            rendered.body.clone(),
        )
            .into_response()
    };
    let response_headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&rendered.etag) {
        response_headers.insert(header::ETAG, etag);
    }
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    response_headers.insert("x-sse-support", HeaderValue::from_static("enabled"));
    Ok(response)
}

/// `GET /sub/{clientKey}`: a `features` event with the new payload whenever definitions change.
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path(client_key): Path<String>,
) -> Result<Response, ApiError> {
    let connection = connection(&state, &client_key)?.clone();
    let mut changes = state.definitions_changed.subscribe();
    changes.mark_unchanged();
    let closing = state.closing.subscribe();
    let stream = futures_util::stream::unfold(
        (state, connection, changes, closing),
        |(state, connection, mut changes, mut closing)| async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => changed.ok()?,
                    _ = closing.wait_for(|closing| *closing) => return None,
                }
                let event = match current_payload(&state)
                    .await
                    .and_then(|served| render(&served, &connection))
                {
                    Ok(rendered) => Event::default()
                        .event("features")
                        .data(String::from_utf8_lossy(&rendered.body)),
                    Err(_) => continue,
                };
                return Some((
                    Ok::<_, Infallible>(event),
                    (state, connection, changes, closing),
                ));
            }
        },
    );
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Profile facts usable in conditions: traits, `channels`, `commerce.order_count`,
/// `commerce.net_revenue`, `profile_id`, and `id` (the user id) when the profile has one.
fn profile_attributes(
    tables: &ReadTables,
    reference: Option<&str>,
    user_ids: &[&str],
) -> Result<Option<Map<String, Value>>, StoreError> {
    let mut id = None;
    if let Some(reference) = reference {
        id = tables.resolve(&normalize_reference(reference))?;
    }
    for user_id in user_ids {
        if id.is_some() {
            break;
        }
        id = tables.resolve(&format!("user_id:{user_id}"))?;
    }
    let Some(id) = id else { return Ok(None) };
    let Some(profile) = tables.profile(&id)? else {
        return Ok(None);
    };
    let mut attributes = profile.trait_values();
    attributes.insert(
        "channels".into(),
        json!(profile.channels.keys().collect::<Vec<_>>()),
    );
    attributes.insert(
        "commerce".into(),
        json!({"order_count": profile.commerce.order_count, "net_revenue": profile.commerce.net_revenue}),
    );
    attributes.insert("profile_id".into(), json!(profile.id));
    if let Some(graph) = tables.graph(&id)?
        && let Some(user_id) = graph
            .identifiers
            .iter()
            .find(|record| record.id.kind == "user_id")
    {
        attributes.insert("id".into(), json!(user_id.id.value));
        attributes.insert("user_id".into(), json!(user_id.id.value));
    }
    Ok(Some(attributes))
}

/// The explicit attributes over the profile's (explicit ones win).
async fn merged_attributes(
    state: &Arc<AppState>,
    explicit: Map<String, Value>,
    reference: Option<String>,
) -> Result<(Map<String, Value>, Option<String>), ApiError> {
    let user_ids: Vec<String> = ["targetingKey", "id", "userId", "user_id"]
        .iter()
        .filter_map(|name| explicit.get(*name).and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    if reference.is_none() && user_ids.is_empty() {
        return Ok((explicit, None));
    }
    let profile = blocking(state, move |state| {
        let ids: Vec<&str> = user_ids.iter().map(String::as_str).collect();
        Ok(state
            .store
            .read(|tables| profile_attributes(tables, reference.as_deref(), &ids))?)
    })
    .await?;
    let Some(mut attributes) = profile else {
        return Ok((explicit, None));
    };
    let profile_id = attributes
        .get("profile_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    attributes.extend(explicit);
    Ok((attributes, profile_id))
}

/// A server-side evaluation context for `attributes`, with the user's sticky bucket documents
/// loaded from the store when sticky bucketing is on.
async fn evaluation_context(
    state: &Arc<AppState>,
    served: &ServedPayload,
    attributes: Map<String, Value>,
) -> Result<Context, ApiError> {
    let mut context = Context::with_compiled(served.compiled.clone(), Value::Object(attributes));
    if !state.config.experiments.sticky_bucketing {
        return Ok(context);
    }
    let wanted: Vec<(String, String)> = context
        .sticky_bucket_attributes()
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    let service = if wanted.is_empty() {
        InMemoryStickyBucketService::new()
    } else {
        blocking(state, move |state| {
            Ok(state.store.read(|tables| {
                let mut service = InMemoryStickyBucketService::new();
                for (name, value) in &wanted {
                    if let Some(doc) = tables.sticky_bucket_doc(name, value)? {
                        service.save_assignments(StickyAssignmentsDocument {
                            attribute_name: doc.attribute_name,
                            attribute_value: doc.attribute_value,
                            assignments: doc.assignments,
                        });
                    }
                }
                Ok(service)
            })?)
        })
        .await?
    };
    context.load_sticky_buckets(&service);
    Ok(context)
}

/// Logs the exposures an evaluation recorded as `Experiment Viewed` events.
async fn log_context_exposures(state: &Arc<AppState>, context: &mut Context, via: &str) {
    let calls = context.take_tracking_calls();
    log_exposures(state, context, calls, via).await;
}

async fn log_exposures(
    state: &Arc<AppState>,
    context: &Context,
    calls: Vec<TrackingCall>,
    via: &str,
) {
    if calls.is_empty() {
        return;
    }
    let attributes = context.attributes.as_object().cloned().unwrap_or_default();
    let sticky = context.changed_sticky_bucket_docs();
    crate::exposures::log_exposures(state, calls, &attributes, &sticky, via).await;
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// `POST /api/eval/{clientKey}`: GrowthBook remote evaluation. The response is a features
/// payload (`/api/features` shape) evaluated for the given user: each feature is
/// `{defaultValue}` with this user's value, and a feature that ran experiments carries one force
/// rule with `tracks`, so an SDK in `remoteEval` mode fires its tracking callback. The user's
/// profile (by `profile` reference or user id) is merged under the request's attributes, and the
/// exposures are logged here too.
pub async fn remote_eval(
    State(state): State<Arc<AppState>>,
    Path(client_key): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    connection(&state, &client_key)?;
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::new(ErrorCode::InvalidJson, format!("body is not JSON: {error}"))
        })?
    };
    let Some(body) = body.as_object() else {
        return Err(bad_request(
            "the body must be a JSON object with `attributes`",
        ));
    };
    let attributes = match body.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(bad_request("`attributes` must be a JSON object")),
    };
    let forced_variations: BTreeMap<String, i64> = match body.get("forcedVariations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
            bad_request("`forcedVariations` must map experiment keys to variation indexes")
        })?,
    };
    let forced_features: BTreeMap<String, Value> = match body.get("forcedFeatures") {
        None | Some(Value::Null) => BTreeMap::new(),
        // GrowthBook SDKs send `[[key, value], ...]`.
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(key), value]) => Ok((key.clone(), value.clone())),
                _ => Err(bad_request("`forcedFeatures` pairs must be [key, value]")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => map.clone().into_iter().collect(),
        Some(_) => return Err(bad_request("`forcedFeatures` must be [[key, value], ...]")),
    };
    let url = match body.get("url") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(url)) => url.clone(),
        Some(_) => return Err(bad_request("`url` must be a string")),
    };
    let reference = match body.get("profile") {
        None | Some(Value::Null) => None,
        Some(Value::String(reference)) => Some(reference.clone()),
        Some(_) => return Err(bad_request("`profile` must be a profile id or kind:value")),
    };
    let served = current_payload(&state).await?;
    let (attributes, profile_id) = merged_attributes(&state, attributes, reference).await?;
    let mut context = evaluation_context(&state, &served, attributes).await?;
    context.url = url;
    context.forced_variations = forced_variations;
    context.forced_features = forced_features;
    let evaluation = evaluate_payload(&mut context);
    log_exposures(&state, &context, evaluation.tracking_calls, "remote_eval").await;
    let mut response = Json(json!({
        "status": 200,
        "features": evaluation.features,
        "experiments": evaluation.experiments,
        "dateUpdated": served.date_updated,
        "profileId": profile_id,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The client key of an OFREP request: `Authorization: Bearer`, `X-Client-Key` or `X-API-Key`.
fn ofrep_connection(state: &AppState, headers: &HeaderMap) -> Result<SdkConnection, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        });
    let key = bearer
        .or_else(|| {
            ["x-client-key", "x-api-key"]
                .iter()
                .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
        })
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingClientKey,
                "send the SDK client key as `Authorization: Bearer <client key>` or `X-Client-Key`",
            )
        })?;
    connection(state, key).cloned()
}

fn ofrep_error(status: StatusCode, key: Option<&str>, code: &str, details: String) -> Response {
    let mut body = json!({"errorCode": code, "errorDetails": details});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    (status, Json(body)).into_response()
}

/// An OFREP request's evaluation context, after validation.
struct OfrepContext {
    attributes: Map<String, Value>,
    has_targeting_key: bool,
    profile: Option<String>,
}

/// Parses `{context: {targetingKey, ...attributes}}`; the error is (OFREP code, details).
fn ofrep_context(bytes: &Bytes) -> Result<OfrepContext, (&'static str, String)> {
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|error| ("PARSE_ERROR", format!("the body is not JSON: {error}")))?
    };
    let Some(body) = body.as_object() else {
        return Err(("PARSE_ERROR", "the body must be a JSON object".into()));
    };
    let mut attributes = match body.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context.clone(),
        Some(_) => {
            return Err(("INVALID_CONTEXT", "`context` must be a JSON object".into()));
        }
    };
    let targeting_key = match attributes.remove("targetingKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            return Err((
                "INVALID_CONTEXT",
                "`context.targetingKey` must be a string".into(),
            ));
        }
    };
    let profile = match attributes.remove("profile") {
        None | Some(Value::Null) => None,
        Some(Value::String(reference)) => Some(reference),
        Some(_) => {
            return Err((
                "INVALID_CONTEXT",
                "`context.profile` must be a profile id or kind:value".into(),
            ));
        }
    };
    let has_targeting_key =
        targeting_key.is_some() || attributes.get("id").is_some_and(|id| !id.is_null());
    if let Some(key) = targeting_key {
        attributes.entry("id").or_insert_with(|| json!(key));
    }
    Ok(OfrepContext {
        attributes,
        has_targeting_key,
        profile,
    })
}

/// Whether evaluating `feature` hashes the user (experiments, partial rollouts, filters).
/// Whether a known profile supplied the `id` a split flag hashes (a `context.profile` reference
/// stands in for a targeting key).
fn profile_has_id(attributes: &Map<String, Value>, profile_id: &Option<String>) -> bool {
    profile_id.is_some() && attributes.get("id").is_some_and(|id| !id.is_null())
}

fn needs_targeting_key(feature: &FeatureDefinition) -> bool {
    feature.rules.iter().any(|rule| {
        rule.variations.is_some()
            || rule.coverage.is_some()
            || rule.range.is_some()
            || rule.filters.is_some()
            || rule.namespace.is_some()
    })
}

/// One OFREP success object.
fn ofrep_success(key: &str, feature: &FeatureDefinition, result: &FeatureResult) -> Value {
    let (reason, variant) = match result.source {
        FeatureSource::Experiment => (
            "SPLIT",
            result
                .experiment_result
                .as_ref()
                .map(|experiment| experiment.key.clone())
                .unwrap_or_default(),
        ),
        FeatureSource::Force => (
            "TARGETING_MATCH",
            if result.rule_id.is_empty() {
                "forced".to_owned()
            } else {
                result.rule_id.clone()
            },
        ),
        FeatureSource::Override => ("STATIC", "override".to_owned()),
        FeatureSource::Prerequisite => ("DISABLED", "prerequisite".to_owned()),
        FeatureSource::CyclicPrerequisite => ("UNKNOWN", "cyclic_prerequisite".to_owned()),
        FeatureSource::DefaultValue | FeatureSource::UnknownFeature => (
            if feature.rules.is_empty() {
                "STATIC"
            } else {
                "DEFAULT"
            },
            "default".to_owned(),
        ),
    };
    let mut metadata = json!({"source": result.source, "ruleId": result.rule_id});
    if let Some(experiment) = &result.experiment_result {
        metadata["inExperiment"] = json!(experiment.in_experiment);
        metadata["variationId"] = json!(experiment.variation_id);
    }
    if let Some(experiment) = &result.experiment {
        metadata["experimentKey"] = json!(experiment.key);
    }
    json!({
        "key": key,
        "value": result.value,
        "reason": reason,
        "variant": variant,
        "metadata": metadata,
    })
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
pub async fn ofrep_single(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    ofrep_connection(&state, &headers)?;
    let context = match ofrep_context(&bytes) {
        Ok(context) => context,
        Err((code, details)) => {
            return Ok(ofrep_error(
                StatusCode::BAD_REQUEST,
                Some(&key),
                code,
                details,
            ));
        }
    };
    let served = current_payload(&state).await?;
    let Some(feature) = served.payload.features.get(&key) else {
        return Ok(ofrep_error(
            StatusCode::NOT_FOUND,
            Some(&key),
            "FLAG_NOT_FOUND",
            format!("no flag `{key}`"),
        ));
    };
    let (attributes, profile_id) =
        merged_attributes(&state, context.attributes, context.profile).await?;
    if !context.has_targeting_key
        && !profile_has_id(&attributes, &profile_id)
        && needs_targeting_key(feature)
    {
        return Ok(ofrep_error(
            StatusCode::BAD_REQUEST,
            Some(&key),
            "TARGETING_KEY_MISSING",
            format!(
                "flag `{key}` splits traffic: send `context.targetingKey` or `context.profile`"
            ),
        ));
    }
    let mut evaluation = evaluation_context(&state, &served, attributes).await?;
    let result = eval_feature(&mut evaluation, &key);
    log_context_exposures(&state, &mut evaluation, "ofrep").await;
    Ok(Json(ofrep_success(&key, feature, &result)).into_response())
}

/// `POST /ofrep/v1/evaluate/flags`: every flag, with an ETag over the result.
pub async fn ofrep_bulk(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    ofrep_connection(&state, &headers)?;
    let context = match ofrep_context(&bytes) {
        Ok(context) => context,
        Err((code, details)) => {
            return Ok(ofrep_error(StatusCode::BAD_REQUEST, None, code, details));
        }
    };
    let served = current_payload(&state).await?;
    let (attributes, profile_id) =
        merged_attributes(&state, context.attributes, context.profile).await?;
    let has_targeting_key = context.has_targeting_key || profile_has_id(&attributes, &profile_id);
    let mut evaluation = evaluation_context(&state, &served, attributes).await?;
    let mut flags = Vec::with_capacity(served.payload.features.len());
    for (key, feature) in &served.payload.features {
        if !has_targeting_key && needs_targeting_key(feature) {
            flags.push(json!({
                "key": key,
                "errorCode": "TARGETING_KEY_MISSING",
                "errorDetails": format!(
                    "flag `{key}` splits traffic: send `context.targetingKey` or `context.profile`"
                ),
            }));
            continue;
        }
        let result = eval_feature(&mut evaluation, key);
        flags.push(ofrep_success(key, feature, &result));
    }
    log_context_exposures(&state, &mut evaluation, "ofrep").await;
    let body =
        Bytes::from(serde_json::to_vec(&json!({"flags": flags})).map_err(ApiError::internal)?);
    let etag = etag_of(&body);
    let mut response = if not_modified(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
