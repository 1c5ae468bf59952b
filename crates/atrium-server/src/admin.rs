//! Secret-key routes: profiles, identity explanations, trait updates, erasure and export.

use std::sync::Arc;
use std::time::Duration;

use atrium_identity::{Identifier, ProfileId};
use atrium_log::EventLog;
use atrium_store::{Profile, ProfileGraph, ReadTables};
use atrium_types::{ControlRecord, LogRecord, format_timestamp_ms};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::hash_secret;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Proof that the request carried a valid secret admin key (`Authorization: Bearer <key>`).
pub struct AdminKey;

impl FromRequestParts<Arc<AppState>> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return Err(ApiError::new(
                ErrorCode::MissingAdminKey,
                "this route needs a secret key: send `Authorization: Bearer <key>`",
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(ApiError::new(
                ErrorCode::MissingAdminKey,
                "this route needs `Authorization: Bearer <secret key>`; write keys only ingest",
            ));
        };
        let hashed = hash_secret(token.trim());
        let known = state
            .config
            .admin_key_sha256
            .iter()
            .any(|candidate| constant_time_eq(candidate.as_bytes(), hashed.as_bytes()));
        if !known {
            return Err(ApiError::new(
                ErrorCode::InvalidAdminKey,
                "the secret key is not valid",
            ));
        }
        Ok(AdminKey)
    }
}

/// The identity graph of the profile a reference names.
async fn load_graph(state: &Arc<AppState>, reference: String) -> Result<ProfileGraph, ApiError> {
    blocking(state, move |state| {
        state.store.read(|tables| {
            Ok(resolve(tables, &reference).and_then(|id| {
                tables
                    .graph(&id)?
                    .ok_or_else(|| ApiError::new(ErrorCode::ProfileNotFound, "profile not found"))
            }))
        })?
    })
    .await
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Runs blocking store or log work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(ApiError::internal)?
}

#[derive(Deserialize, Default)]
pub struct Consistency {
    /// Wait (up to 5 s) until the pipeline has applied every log offset below this one.
    pub(crate) min_offset: Option<u64>,
}

pub(crate) async fn wait_for_offset(
    state: &Arc<AppState>,
    consistency: &Consistency,
) -> Result<(), ApiError> {
    match consistency.min_offset {
        Some(offset) => {
            await_applied(
                state,
                offset,
                format!("pipeline has not reached offset {offset} yet; retry"),
            )
            .await
        }
        None => Ok(()),
    }
}

/// Waits (up to 5 s, off the async workers) until the pipeline has applied every offset below
/// `offset`; otherwise a 429 with `message`.
pub(crate) async fn await_applied(
    state: &Arc<AppState>,
    offset: u64,
    message: String,
) -> Result<(), ApiError> {
    let pipeline = state.pipeline.clone();
    let reached =
        tokio::task::spawn_blocking(move || pipeline.wait_applied(offset, Duration::from_secs(5)))
            .await
            .map_err(ApiError::internal)?;
    if !reached {
        return Err(ApiError::new(ErrorCode::Overloaded, message).retry_after(1));
    }
    Ok(())
}

pub(crate) fn resolve(tables: &ReadTables, reference: &str) -> Result<ProfileId, ApiError> {
    let normalized = normalize_reference(reference);
    tables.resolve(&normalized)?.ok_or_else(|| {
        ApiError::new(ErrorCode::ProfileNotFound, format!("no profile for `{reference}`; use a profile id or kind:value such as email:ann@example.com"))
    })
}

/// `email: Ann@Example.com` and `email:ann@example.com` name the same identifier.
pub(crate) fn normalize_reference(reference: &str) -> String {
    match reference.parse::<Identifier>() {
        Ok(identifier) if !reference.starts_with("p_") => {
            match atrium_identity::normalize(&identifier.kind, identifier.value.trim()) {
                Some(value) => format!("{}:{value}", identifier.kind),
                None => reference.to_owned(),
            }
        }
        _ => reference.to_owned(),
    }
}

pub fn profile_json(profile: &Profile, graph: Option<&ProfileGraph>) -> Value {
    let identifiers: Vec<Value> = graph
        .map(|graph| {
            graph
                .identifiers
                .iter()
                .map(|record| json!({"kind": record.id.kind, "value": record.id.value, "first_seen": format_timestamp_ms(record.first_seen_ms)}))
                .collect()
        })
        .unwrap_or_default();
    let mut value = json!({
        "id": profile.id,
        "first_seen": format_timestamp_ms(profile.first_seen_ms),
        "last_seen": format_timestamp_ms(profile.last_seen_ms),
        "traits": profile.trait_values(),
        "identifiers": identifiers,
        "event_total": profile.event_total,
        "event_counts": profile.event_counts,
        "channels": profile.channels,
        "sources": profile.sources,
        "devices": profile.devices,
        "first_touch": profile.first_touch,
        "last_touch": profile.last_touch,
        "commerce": profile.commerce,
        "orders": profile.orders,
        "merged_from": profile.merged_from,
    });
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, field| !field.is_null());
    }
    value
}

pub async fn get_profile(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        state
            .store
            .read(|tables| {
                Ok(resolve(tables, &reference).map(|id| (tables.profile(&id), tables.graph(&id))))
            })?
            .and_then(|(profile, graph)| {
                let profile = profile?.ok_or_else(|| {
                    ApiError::new(ErrorCode::ProfileNotFound, "profile not found")
                })?;
                Ok(Json(profile_json(&profile, graph?.as_ref())))
            })
    })
    .await
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<usize>,
    /// Identifier prefix, e.g. `email:ann` or `user_id:u_1`.
    q: Option<String>,
}

pub async fn list_profiles(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    blocking(&state, move |state| {
        let result = state.store.read(|tables| {
            if let Some(prefix) = query.q.as_deref().filter(|prefix| !prefix.is_empty()) {
                let matches = tables.search_identifiers(&normalize_reference(prefix), limit)?;
                let mut profiles = Vec::new();
                for (identifier, id) in matches {
                    if let Some(id) = tables.resolve(&id.0)?
                        && let Some(profile) = tables.profile(&id)?
                    {
                        let mut summary = profile_json(&profile, None);
                        summary["matched_identifier"] = json!(identifier);
                        profiles.push(summary);
                    }
                }
                return Ok(json!({"profiles": profiles, "next_cursor": null}));
            }
            let page = tables.list_profiles(query.cursor.as_deref(), limit)?;
            let profiles: Vec<Value> = page.profiles.iter().map(|profile| profile_json(profile, None)).collect();
            Ok(json!({"profiles": profiles, "next_cursor": page.next_cursor, "total": tables.profile_count()?}))
        })?;
        Ok(Json(result))
    })
    .await
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    /// Cursor from the previous page: `<time_ms>:<offset>`.
    before: Option<String>,
    limit: Option<usize>,
    min_offset: Option<u64>,
}

pub async fn profile_events(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(query): Query<TimelineQuery>,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(
        &state,
        &Consistency {
            min_offset: query.min_offset,
        },
    )
    .await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let before = match query.before.as_deref() {
        None => None,
        Some(cursor) => {
            let parsed = cursor.split_once(':').and_then(|(time, offset)| {
                Some((time.parse::<i64>().ok()?, offset.parse::<u64>().ok()?))
            });
            Some(parsed.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "`before` must be the `next_cursor` of a previous page (<time_ms>:<offset>)",
                )
            })?)
        }
    };
    blocking(&state, move |state| {
        let (profile_id, entries) = state.store.read(|tables| {
            Ok(resolve(tables, &reference).and_then(|id| {
                let entries = tables.timeline(&id, before, limit)?;
                Ok((id, entries))
            }))
        })??;
        let mut events = Vec::with_capacity(entries.len());
        for entry in &entries {
            if let Some(event) = read_event(&*state.log, entry.offset)? {
                events.push(event);
            }
        }
        let next_cursor = (entries.len() == limit)
            .then(|| {
                entries
                    .last()
                    .map(|last| format!("{}:{}", last.time_ms, last.offset))
            })
            .flatten();
        Ok(Json(
            json!({"profile_id": profile_id.0, "events": events, "next_cursor": next_cursor}),
        ))
    })
    .await
}

fn read_event(log: &dyn EventLog, offset: u64) -> Result<Option<Value>, ApiError> {
    let records = log.read(offset, 1).map_err(ApiError::internal)?;
    let Some(record) = records
        .into_iter()
        .next()
        .filter(|record| record.offset == offset)
    else {
        return Ok(None);
    };
    match LogRecord::decode(&record.payload) {
        Ok(LogRecord::Event(mut event)) => {
            event["offset"] = json!(offset);
            Ok(Some(event))
        }
        _ => Ok(None),
    }
}

pub async fn profile_identity(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        let explanation = state.store.read(|tables| {
            Ok(resolve(tables, &reference).and_then(|id| {
                let graph = tables.graph(&id)?.ok_or_else(|| ApiError::new(ErrorCode::ProfileNotFound, "profile has no identity graph"))?;
                let merges = tables.merge_history(&graph)?;
                Ok(json!({
                    "profile_id": id.0,
                    "identifiers": graph.identifiers.iter().map(|record| json!({
                        "kind": record.id.kind,
                        "value": record.id.value,
                        "first_seen": format_timestamp_ms(record.first_seen_ms),
                        "first_offset": record.first_offset,
                    })).collect::<Vec<_>>(),
                    "merged_from": graph.merged_from,
                    "merge_count": graph.merge_count,
                    "merges": merges.iter().map(|entry| json!({
                        "offset": entry.offset,
                        "message_id": entry.message_id,
                        "event_time": format_timestamp_ms(entry.event_time_ms),
                        "survivor": entry.survivor,
                        "merged": entry.merged,
                        "linking_identifiers": entry.linking_identifiers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "reason": entry.reason,
                    })).collect::<Vec<_>>(),
                    "rules": {
                        "priority": state.rules().rules().priority,
                        "limits": state.rules().rules().limits,
                        "default_limit": state.rules().rules().default_limit,
                    },
                }))
            }))
        })??;
        Ok(Json(explanation))
    })
    .await
}

#[derive(Deserialize)]
pub struct TraitUpdate {
    traits: Map<String, Value>,
}

/// Trait updates go through the log like any event: an `identify` from the `api` source.
pub async fn update_traits(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    update: Result<Json<TraitUpdate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(update) = update.map_err(|rejection| {
        let code = match rejection {
            JsonRejection::JsonSyntaxError(_) => ErrorCode::InvalidJson,
            _ => ErrorCode::InvalidRequest,
        };
        ApiError::new(code, rejection.body_text())
    })?;
    if update.traits.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "`traits` must hold at least one trait",
        ));
    }
    let graph = load_graph(&state, reference).await?;
    let pick = |kind: &str| {
        graph
            .identifiers
            .iter()
            .find(|record| record.id.kind == kind)
            .map(|record| record.id.value.clone())
    };
    // Collection generates the messageId (and flags it as generated).
    let mut event = json!({"type": "identify", "traits": update.traits});
    match (pick("user_id"), pick("anonymous_id")) {
        (Some(user_id), _) => event["userId"] = json!(user_id),
        (None, Some(anonymous_id)) => event["anonymousId"] = json!(anonymous_id),
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "profile has neither a user_id nor an anonymous_id to address a trait update to",
            ));
        }
    }
    let source = atrium_types::SourceConfig {
        name: "api".into(),
        channel: atrium_types::Channel::Api,
    };
    let normalized =
        atrium_collect::normalize_events(&source, state.clock.now_ms(), None, &[event])
            .map_err(|error| ApiError::new(ErrorCode::InvalidRequest, error.to_string()))?;
    if let Some(rejection) = normalized.rejected.first() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            rejection.message.clone(),
        ));
    }
    let payloads = normalized
        .accepted
        .into_iter()
        .map(|event| event.payload)
        .collect();
    let offset = state
        .log
        .append_async(payloads)
        .await
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "offset": offset, "min_offset": offset + 1})),
    )
        .into_response())
}

/// GDPR erasure: appends an erasure record; the pipeline purges state, rewrites the log and
/// vacuums the store in the background.
pub async fn delete_profile(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let graph = load_graph(&state, reference).await?;
    let hashes: Vec<String> = graph
        .identifiers
        .iter()
        .map(|record| state.hasher().hash(&record.id))
        .collect();
    let suppress = state.config.suppress_erased_identifiers;
    if suppress {
        state.suppressed.write().extend(hashes.iter().cloned());
    }
    let record = ControlRecord::Erase {
        profile_id: graph.profile.0.clone(),
        identifier_hashes: hashes,
        requested_at: format_timestamp_ms(state.clock.now_ms()),
        suppress,
    };
    let offset = state
        .log
        .append_async(vec![LogRecord::encode_control(&record)])
        .await
        .map_err(|error| ApiError::new(ErrorCode::StorageUnavailable, error.to_string()))?;
    tracing::info!(profile = %graph.profile, offset, "erasure requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "erasure_scheduled", "profile_id": graph.profile.0, "offset": offset, "min_offset": offset + 1, "suppressed": suppress})),
    )
        .into_response())
}

/// Access request: everything Atrium holds about one profile, as one JSON document.
pub async fn export_profile(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<Response, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        let (profile, graph, merges, timeline) = state.store.read(|tables| {
            Ok(resolve(tables, &reference).and_then(|id| {
                let profile = tables.profile(&id)?.ok_or_else(|| {
                    ApiError::new(ErrorCode::ProfileNotFound, "profile not found")
                })?;
                let graph = tables.graph(&id)?;
                let merges = match &graph {
                    Some(graph) => tables.merge_history(graph)?,
                    None => Vec::new(),
                };
                // In pages: the store preallocates `limit` entries.
                let mut timeline = Vec::new();
                let mut before = None;
                loop {
                    let page = tables.timeline(&id, before, 1_000)?;
                    let more = page.len() == 1_000;
                    before = page.last().map(|entry| (entry.time_ms, entry.offset));
                    timeline.extend(page);
                    if !more {
                        break;
                    }
                }
                Ok((profile, graph, merges, timeline))
            }))
        })??;
        let mut events = Vec::with_capacity(timeline.len());
        for entry in timeline.iter().rev() {
            if let Some(event) = read_event(&*state.log, entry.offset)? {
                events.push(event);
            }
        }
        let document = json!({
            "exported_at": format_timestamp_ms(state.clock.now_ms()),
            "profile": profile_json(&profile, graph.as_ref()),
            "merges": merges,
            "events": events,
        });
        let filename = format!("attachment; filename=\"{}.json\"", profile.id);
        Ok(([(header::CONTENT_DISPOSITION, filename)], Json(document)).into_response())
    })
    .await
}

pub async fn pipeline_status(_: AdminKey, State(state): State<Arc<AppState>>) -> Json<Value> {
    let end = state.log.end_offset();
    let applied = state.pipeline.applied_offset();
    let queryable = state.warehouse.visible_offset();
    Json(json!({
        "log_end_offset": end,
        "applied_offset": applied,
        "lag_records": end.saturating_sub(applied),
        "warehouse": {
            "committed_offset": state.warehouse.committed_offset(),
            "visible_offset": queryable,
            "lag_records": end.saturating_sub(queryable),
        },
    }))
}
