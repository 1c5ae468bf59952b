//! Exposure logging for server-side evaluation (`/api/eval`, OFREP): every experiment a user
//! is bucketed into becomes an `Experiment Viewed` track event (Segment's convention:
//! `experiment_id`, `variation_id`), appended through the collection path (normalization,
//! suppression of erased identities, `messageId` dedup) from the `experiments` source.
//!
//! The `messageId` is derived from experiment, bucket version, variation and the hashed
//! attribute, so repeated evaluations of the same user within the dedup window store one
//! exposure; results dedupe per unit on the first exposure anyway.
//!
//! Sticky bucketing: when an evaluation assigned a user a new sticky bucket, the exposure of that
//! experiment carries the assignment in `properties.sticky_buckets`, and the pipeline derives the
//! `sticky_buckets` table from it (only for events of this source). The assignment is therefore
//! durable once the exposure is, rebuilt by replay, and erased with the profile.
//!
//! Who the event is about: `userId` from the `userId`/`user_id` attribute (profile-based
//! evaluation fills it from the profile), else the hashed value when the hash attribute is
//! `id`, `userId`, `user_id` or `targetingKey`; `anonymousId` from `anonymousId`/`anonymous_id`/
//! `deviceId`, else the hashed value when the experiment hashes another attribute and no user id
//! is known.

use std::sync::Arc;

use atrium_experiments::{StickyAssignmentsDocument, TrackingCall, sticky_bucket_experiment_key};
use atrium_types::{Channel, SourceConfig};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::state::AppState;

const USER_ID_ATTRIBUTES: [&str; 2] = ["userId", "user_id"];
const ANONYMOUS_ID_ATTRIBUTES: [&str; 3] = ["anonymousId", "anonymous_id", "deviceId"];
const USER_HASH_ATTRIBUTES: [&str; 4] = ["id", "userId", "user_id", "targetingKey"];

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn first_attribute(attributes: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| attributes.get(*name).and_then(text))
}

/// The deterministic `messageId` of one exposure.
pub fn exposure_message_id(
    experiment: &str,
    bucket_version: i64,
    variation: &str,
    hash_attribute: &str,
    hash_value: &str,
) -> String {
    let mut hasher = Sha256::new();
    let bucket_version = bucket_version.to_string();
    for part in [
        experiment,
        &bucket_version,
        variation,
        hash_attribute,
        hash_value,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("exp-{}", &hex::encode(hasher.finalize())[..40])
}

/// The sticky bucket assignments of `changed` documents that this exposure made, in the shape
/// the pipeline reads from `properties.sticky_buckets`.
fn sticky_assignments_of(call: &TrackingCall, changed: &[StickyAssignmentsDocument]) -> Vec<Value> {
    let key = sticky_bucket_experiment_key(
        &call.experiment.key,
        call.experiment.bucket_version.unwrap_or(0),
    );
    changed
        .iter()
        .filter(|doc| doc.assignments.get(&key) == Some(&call.result.key))
        .map(|doc| {
            json!({
                "attributeName": doc.attribute_name,
                "attributeValue": doc.attribute_value,
                "assignments": {key.as_str(): call.result.key},
            })
        })
        .collect()
}

/// The `Experiment Viewed` event of one tracking call, or `None` when the user has no id.
/// `sticky` are the sticky bucket documents the evaluation changed.
pub fn exposure_event(
    call: &TrackingCall,
    attributes: &Map<String, Value>,
    sticky: &[StickyAssignmentsDocument],
    via: &str,
) -> Option<Value> {
    let result = &call.result;
    let hash_value = text(&result.hash_value)?;
    let hash_attribute = result.hash_attribute.as_str();
    let mut user_id = first_attribute(attributes, &USER_ID_ATTRIBUTES);
    if user_id.is_none() && USER_HASH_ATTRIBUTES.contains(&hash_attribute) {
        user_id = Some(hash_value.clone());
    }
    let mut anonymous_id = first_attribute(attributes, &ANONYMOUS_ID_ATTRIBUTES);
    if anonymous_id.is_none() && user_id.is_none() {
        anonymous_id = Some(hash_value.clone());
    }
    let mut properties = json!({
        "experiment_id": call.experiment.key,
        "variation_id": result.key,
        "variation_index": result.variation_id,
        "hash_attribute": hash_attribute,
        "via": via,
    });
    if let Some(name) = &call.experiment.name {
        properties["experiment_name"] = json!(name);
    }
    if let Some(name) = &result.name {
        properties["variation_name"] = json!(name);
    }
    if let Some(feature) = &result.feature_id {
        properties["feature_id"] = json!(feature);
    }
    let sticky_buckets = sticky_assignments_of(call, sticky);
    if !sticky_buckets.is_empty() {
        properties["sticky_buckets"] = Value::Array(sticky_buckets);
    }
    let bucket_version = call.experiment.bucket_version.unwrap_or(0);
    let mut event = json!({
        "type": "track",
        "event": atrium_results::EXPOSURE_EVENT,
        "messageId": exposure_message_id(&call.experiment.key, bucket_version, &result.key, hash_attribute, &hash_value),
        "properties": properties,
        "context": {"library": {"name": "atrium-server", "version": env!("CARGO_PKG_VERSION")}},
    });
    if let Some(user_id) = user_id {
        event["userId"] = json!(user_id);
    }
    if let Some(anonymous_id) = anonymous_id {
        event["anonymousId"] = json!(anonymous_id);
    }
    Some(event)
}

/// Appends the exposures of one evaluation. Failures are logged, never returned: the
/// evaluation itself succeeded and the SDK should get its flags.
pub async fn log_exposures(
    state: &Arc<AppState>,
    calls: Vec<TrackingCall>,
    attributes: &Map<String, Value>,
    sticky: &[StickyAssignmentsDocument],
    via: &str,
) {
    if calls.is_empty() {
        return;
    }
    let events: Vec<Value> = calls
        .iter()
        .filter_map(|call| exposure_event(call, attributes, sticky, via))
        .collect();
    if events.is_empty() {
        return;
    }
    let source = SourceConfig {
        name: atrium_pipeline::EXPERIMENTS_SOURCE.into(),
        channel: Channel::Server,
    };
    let received_at_ms = state.clock.now_ms();
    let normalized = match atrium_collect::normalize_events(&source, received_at_ms, None, &events)
    {
        Ok(normalized) => normalized,
        Err(error) => {
            tracing::warn!(%error, "exposure events did not normalize");
            return;
        }
    };
    for rejection in &normalized.rejected {
        tracing::warn!(message = %rejection.message, "exposure event rejected");
    }
    let (payloads, keys, _, _) =
        crate::ingest::admit(state, &source, normalized.accepted, received_at_ms);
    if payloads.is_empty() {
        return;
    }
    let count = payloads.len() as u64;
    match state.log.append_async(payloads).await {
        Ok(_) => state.metrics.events_accepted.add(count),
        Err(error) => {
            let mut dedup = state.dedup.lock();
            for key in keys {
                dedup.remove(key);
            }
            tracing::error!(%error, "exposure events could not be appended");
        }
    }
}
