//! Exposure logging for server-side evaluation (`/api/eval`, OFREP): every experiment a user
//! is bucketed into becomes an `Experiment Viewed` track event (Segment's convention:
//! `experiment_id`, `variation_id`), appended through the collection path (normalization,
//! suppression of erased identities, `messageId` dedup) from the `experiments` source.
//!
//! The `messageId` is derived from experiment, variation and the hashed attribute, so repeated
//! evaluations of the same user within the dedup window store one exposure; results dedupe per
//! unit on the first exposure anyway.
//!
//! Who the event is about: `userId` from the `userId`/`user_id` attribute (profile-based
//! evaluation fills it from the profile), else the hashed value when the hash attribute is
//! `id`, `userId`, `user_id` or `targetingKey`; `anonymousId` from `anonymousId`/`anonymous_id`/
//! `deviceId`, else the hashed value when the experiment hashes another attribute and no user id
//! is known.

use std::sync::Arc;

use atrium_experiments::TrackingCall;
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
    variation: &str,
    hash_attribute: &str,
    hash_value: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [experiment, variation, hash_attribute, hash_value] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("exp-{}", &hex::encode(hasher.finalize())[..40])
}

/// The `Experiment Viewed` event of one tracking call, or `None` when the user has no id.
pub fn exposure_event(
    call: &TrackingCall,
    attributes: &Map<String, Value>,
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
    let mut event = json!({
        "type": "track",
        "event": atrium_results::EXPOSURE_EVENT,
        "messageId": exposure_message_id(&call.experiment.key, &result.key, hash_attribute, &hash_value),
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
    via: &str,
) {
    if calls.is_empty() {
        return;
    }
    let events: Vec<Value> = calls
        .iter()
        .filter_map(|call| exposure_event(call, attributes, via))
        .collect();
    if events.is_empty() {
        return;
    }
    let source = SourceConfig {
        name: "experiments".into(),
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
