//! Secret-key routes for segments and computed traits: definitions (validated against the
//! current catalog, written through the log like every definition), members, a profile's
//! segments, explanations, and a preview of a definition before it is saved.
//!
//! Evaluation itself happens in the pipeline (`atrium_pipeline::segments`); these handlers only
//! read its state.

use std::sync::Arc;

use atrium_pipeline::{ProfileSegmentState, SegmentCatalog};
use atrium_segments::{ComputedTraitDefinition, Definition, validate, validate_computed_trait};
use atrium_types::DefinitionKind;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{AdminKey, Consistency, blocking, resolve, wait_for_offset};
use crate::definitions::parse_json;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Most members returned by one page.
const MAX_PAGE: usize = 1_000;
/// Profiles listed as a preview sample.
const PREVIEW_SAMPLE: usize = 20;

fn invalid_definition(errors: Vec<atrium_segments::ValidationError>) -> ApiError {
    let summary: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let details: Vec<Value> = errors
        .iter()
        .map(|error| json!({"path": error.path, "message": error.message}))
        .collect();
    ApiError::new(ErrorCode::InvalidDefinition, summary.join("; ")).with_details(json!(details))
}

/// Parses a segment or computed-trait body (its `id`, when present, must equal the key; when
/// absent the key is filled in). Returns the body as it will be stored.
pub(crate) fn parse_body(kind: DefinitionKind, key: &str, body: &Value) -> Result<Value, ApiError> {
    if kind == DefinitionKind::Segment && key == "preview" {
        return Err(ApiError::new(
            ErrorCode::InvalidDefinition,
            "`preview` is reserved (POST /v1/segments/preview); choose another segment id",
        ));
    }
    let mut body = body.clone();
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::new(
            ErrorCode::InvalidDefinition,
            format!("a {} definition is a JSON object", kind.as_str()),
        ));
    };
    match object.get("id") {
        None => {
            object.insert("id".into(), Value::String(key.to_owned()));
        }
        Some(Value::String(id)) if id == key => {}
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidDefinition,
                format!("/id: the body's id {other} differs from the key `{key}` in the URL"),
            ));
        }
    }
    let parsed = match kind {
        DefinitionKind::Segment => serde_json::from_value::<Definition>(body.clone()).err(),
        _ => serde_json::from_value::<ComputedTraitDefinition>(body.clone()).err(),
    };
    if let Some(error) = parsed {
        return Err(ApiError::new(
            ErrorCode::InvalidDefinition,
            format!("not a valid {} definition: {error}", kind.as_str()),
        ));
    }
    Ok(body)
}

/// The catalog of stored definitions (snapshot).
fn catalog(state: &AppState) -> Result<SegmentCatalog, ApiError> {
    Ok(state.store.read(SegmentCatalog::load)?)
}

/// Validates `body` against the stored catalog with it replacing (or removing, `None`) `key`:
/// the definition itself, and every other definition still compiling without cycles.
fn check_catalog(
    state: &AppState,
    kind: DefinitionKind,
    key: &str,
    body: Option<&Value>,
) -> Result<(), ApiError> {
    let mut definitions = catalog(state)?.definitions().clone();
    match (kind, body) {
        (DefinitionKind::Segment, Some(body)) => {
            let definition: Definition =
                serde_json::from_value(body.clone()).map_err(ApiError::internal)?;
            definitions.segments.insert(key.to_owned(), definition);
        }
        (DefinitionKind::Segment, None) => {
            definitions.segments.remove(key);
        }
        (_, Some(body)) => {
            let definition: ComputedTraitDefinition =
                serde_json::from_value(body.clone()).map_err(ApiError::internal)?;
            validate_computed_trait(&definition).map_err(invalid_definition)?;
            definitions
                .computed_traits
                .insert(key.to_owned(), definition);
        }
        (_, None) => {
            definitions.computed_traits.remove(key);
        }
    }
    if let (DefinitionKind::Segment, Some(_)) = (kind, body) {
        validate(&definitions.segments[key], &definitions).map_err(invalid_definition)?;
    }
    for (other, definition) in &definitions.segments {
        if kind == DefinitionKind::Segment && other == key {
            continue;
        }
        if let Err(errors) = validate(definition, &definitions) {
            let what = if body.is_some() {
                "this change"
            } else {
                "deleting it"
            };
            return Err(ApiError::new(
                ErrorCode::DefinitionConflict,
                format!(
                    "segment `{other}` depends on `{key}` and would not compile after {what}: {}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a segment or computed-trait write (`Some(body)`) or deletion (`None`) against the
/// stored catalog; other kinds pass. Called by the definition routes before the log append.
pub(crate) async fn check_against_catalog(
    state: &Arc<AppState>,
    kind: DefinitionKind,
    key: &str,
    body: Option<&Value>,
) -> Result<(), ApiError> {
    if !matches!(
        kind,
        DefinitionKind::Segment | DefinitionKind::ComputedTrait
    ) {
        return Ok(());
    }
    let key = key.to_owned();
    let body = body.cloned();
    blocking(state, move |state| {
        check_catalog(state, kind, &key, body.as_ref())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// Profile id after which the page starts (`next_cursor` of the previous page).
    cursor: Option<String>,
    limit: Option<usize>,
    /// `json` (default), `jsonl` or `csv`: the line formats return every member (no paging).
    format: Option<String>,
    min_offset: Option<u64>,
}

/// `GET /v1/segments/{id}/members`: paginated JSON, or every member as JSON lines or CSV.
pub async fn segment_members(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Response, ApiError> {
    wait_for_offset(
        &state,
        &Consistency {
            min_offset: query.min_offset,
        },
    )
    .await?;
    let format = query.format.clone().unwrap_or_else(|| "json".into());
    if !["json", "jsonl", "csv"].contains(&format.as_str()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("format `{format}` is not one of json, jsonl, csv"),
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    blocking(&state, move |state| {
        let exists = state
            .store
            .read(|tables| tables.definition(DefinitionKind::Segment.as_str(), &segment))?
            .is_some();
        if !exists {
            return Err(ApiError::new(
                ErrorCode::DefinitionNotFound,
                format!("no segment `{segment}`; list them with GET /v1/segments"),
            ));
        }
        if format == "json" {
            let (page, count) = state.store.read(|tables| {
                Ok((
                    tables.segment_members(&segment, query.cursor.as_deref(), limit)?,
                    tables.segment_member_count(&segment)?,
                ))
            })?;
            let members: Vec<Value> = page
                .members
                .iter()
                .map(|(profile, entered)| {
                    json!({"profile_id": profile, "entered_at": atrium_types::format_timestamp_ms(*entered)})
                })
                .collect();
            return Ok(Json(json!({
                "segment": segment,
                "count": count,
                "members": members,
                "next_cursor": page.next_cursor,
            }))
            .into_response());
        }
        let mut body = String::new();
        if format == "csv" {
            body.push_str("profile_id,entered_at\n");
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = state
                .store
                .read(|tables| tables.segment_members(&segment, cursor.as_deref(), MAX_PAGE))?;
            for (profile, entered) in &page.members {
                let entered = atrium_types::format_timestamp_ms(*entered);
                if format == "csv" {
                    // Profile ids are `p_` + hex: nothing to quote.
                    body.push_str(&format!("{profile},{entered}\n"));
                } else {
                    body.push_str(&json!({"profile_id": profile, "entered_at": entered}).to_string());
                    body.push('\n');
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let content_type = if format == "csv" {
            "text/csv; charset=utf-8"
        } else {
            "application/x-ndjson"
        };
        Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
    })
    .await
}

/// `GET /v1/profiles/{reference}/segments`: every segment with the profile's membership.
pub async fn profile_segments(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path(reference): Path<String>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        let (profile, rows, computed) = state.store.read(|tables| {
            let profile = match resolve(tables, &reference) {
                Ok(profile) => profile,
                Err(error) => return Ok(Err(error)),
            };
            let mut rows = Vec::new();
            for (segment, _) in tables.definitions(DefinitionKind::Segment.as_str())? {
                let entered = tables.segment_member(&segment, profile.as_str())?;
                rows.push((segment, entered));
            }
            let computed = tables
                .profile(&profile)?
                .map(|profile| profile.computed_traits)
                .unwrap_or_default();
            Ok(Ok((profile, rows, computed)))
        })??;
        let segments: Vec<Value> = rows
            .into_iter()
            .map(|(segment, entered)| {
                json!({
                    "segment": segment,
                    "member": entered.is_some(),
                    "entered_at": entered.map(atrium_types::format_timestamp_ms),
                })
            })
            .collect();
        Ok(Json(json!({
            "profile_id": profile.as_str(),
            "segments": segments,
            "computed_traits": computed,
        })))
    })
    .await
}

/// `GET /v1/profiles/{reference}/segments/{segment}/explain`: each node's value and facts.
pub async fn explain_segment(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Path((reference, segment)): Path<(String, String)>,
    Query(consistency): Query<Consistency>,
) -> Result<Json<Value>, ApiError> {
    wait_for_offset(&state, &consistency).await?;
    blocking(&state, move |state| {
        let catalog = catalog(state)?;
        let Some(compiled) = catalog.segments.get(&segment) else {
            return Err(ApiError::new(
                ErrorCode::DefinitionNotFound,
                format!("no segment `{segment}`; list them with GET /v1/segments"),
            ));
        };
        let (profile, stored) = state.store.read(|tables| {
            let profile = match resolve(tables, &reference) {
                Ok(profile) => profile,
                Err(error) => return Ok(Err(error)),
            };
            let stored = tables.segment_state(profile.as_str())?;
            Ok(Ok((profile, stored)))
        })??;
        let state_of_profile = match stored {
            Some(bytes) => ProfileSegmentState::decode(&bytes)?,
            None => ProfileSegmentState::default(),
        };
        let Some(segment_state) = state_of_profile.segments.get(&segment) else {
            return Err(ApiError::new(
                ErrorCode::ProfileNotFound,
                format!("profile `{}` has no evaluation state for segment `{segment}` yet (no events since it was defined)", profile.as_str()),
            ));
        };
        // Explained at the last processing time the state saw: what membership rests on.
        let at = segment_state.last_now_ms;
        let explanation = atrium_segments::explain(compiled, segment_state, at);
        Ok(Json(json!({
            "profile_id": profile.as_str(),
            "segment": segment,
            "member": segment_state.member,
            "evaluated_at": atrium_types::format_timestamp_ms(at),
            "explanation": explanation,
        })))
    })
    .await
}

/// `POST /v1/segments/preview`: how many profiles a definition selects now, and a sample,
/// without saving it.
///
/// `?engine=` picks who answers: `sql` (the definition compiled to SQL over the warehouse, the
/// SQL shown in the response), `replay` (the pipeline's evaluator over every profile's history),
/// or `auto` (default: SQL when the warehouse has materialized exactly what the pipeline applied
/// and every node compiles, replay otherwise). The response says which `engine` answered.
pub async fn preview_segment(
    _: AdminKey,
    State(state): State<Arc<AppState>>,
    Query(params): Query<PreviewParams>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let engine = params.engine.as_deref().unwrap_or("auto");
    if !matches!(engine, "auto" | "sql" | "replay") {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unknown engine `{engine}`: expected `auto`, `sql` or `replay`"),
        ));
    }
    let engine = engine.to_owned();
    let mut body = parse_json(&bytes)?;
    if body.get("id").is_none()
        && let Some(object) = body.as_object_mut()
    {
        object.insert("id".into(), Value::String("draft".into()));
    }
    let key = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("draft")
        .to_owned();
    let body = parse_body(DefinitionKind::Segment, &key, &body)?;
    blocking(&state, move |state| {
        let mut definitions = catalog(state)?.definitions().clone();
        let definition: Definition = serde_json::from_value(body).map_err(ApiError::internal)?;
        definitions.segments.insert(key.clone(), definition.clone());
        let compiled = validate(&definition, &definitions).map_err(invalid_definition)?;
        let now = state.clock.now_ms();
        let compiled_sql = atrium_segments::compile_sql(&compiled, now);
        let pipeline_offset = state.store.pipeline_offset().map_err(ApiError::internal)?;
        let warehouse_offset = state.warehouse.visible_offset();
        let use_sql = match engine.as_str() {
            "sql" => true,
            "replay" => false,
            _ => compiled_sql.is_ok() && warehouse_offset == pipeline_offset,
        };
        if use_sql {
            let sql = compiled_sql.map_err(|error| {
                ApiError::new(ErrorCode::InvalidDefinition, error.to_string())
            })?;
            let limits = atrium_warehouse::SqlLimits {
                timeout: std::time::Duration::from_secs(60),
                max_rows: usize::MAX,
            };
            let output = state.warehouse.sql(&sql, &limits).map_err(ApiError::internal)?;
            let mut sample = Vec::new();
            for batch in &output.batches {
                let column = batch.column(0);
                let Some(ids) = column
                    .as_any()
                    .downcast_ref::<atrium_warehouse::datafusion::arrow::array::StringArray>()
                else {
                    return Err(ApiError::internal("segment SQL returned a non-text column"));
                };
                for id in ids.iter().flatten() {
                    if sample.len() < PREVIEW_SAMPLE {
                        sample.push(id.to_owned());
                    }
                }
            }
            let evaluated = state
                .warehouse
                .sql("SELECT count(*) FROM profiles", &limits)
                .map_err(ApiError::internal)?
                .batches
                .first()
                .and_then(|batch| {
                    batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<atrium_warehouse::datafusion::arrow::array::Int64Array>()
                        .map(|counts| counts.value(0))
                })
                .unwrap_or(0);
            return Ok(Json(json!({
                "engine": "sql",
                "count": output.row_count,
                "evaluated": evaluated,
                "sample": sample,
                "as_of_offset": warehouse_offset,
                "evaluated_at": atrium_types::format_timestamp_ms(now),
                "sql": sql,
            })));
        }
        let not_compiled = compiled_sql.err().map(|error| error.to_string());
        let preview = atrium_pipeline::preview(
            &state.store,
            state.log.as_ref(),
            &compiled,
            now,
            PREVIEW_SAMPLE,
        )
        .map_err(ApiError::internal)?;
        Ok(Json(json!({
            "engine": "replay",
            "sql_unavailable": not_compiled.or_else(|| (warehouse_offset != pipeline_offset).then(|| {
                format!("the warehouse is at offset {warehouse_offset}, the pipeline at {pipeline_offset}")
            })),
            "count": preview.count,
            "evaluated": preview.evaluated,
            "sample": preview.sample,
            "as_of_offset": preview.as_of_offset,
            "evaluated_at": atrium_types::format_timestamp_ms(now),
        })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewParams {
    /// `auto` (default), `sql` or `replay`.
    pub engine: Option<String>,
}
