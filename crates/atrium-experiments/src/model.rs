//! Serde types for the GrowthBook payload (`features`, `experiments`, `savedGroups`,
//! `contextualBandits`) and for evaluation results. Field names match the wire format.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::bucketing::{BucketRange, Namespace};
use crate::condition::SavedGroups;

/// Feature definitions by key.
pub type FeatureMap = BTreeMap<String, FeatureDefinition>;

/// Contextual bandit definitions by id (the payload's `contextualBandits`).
pub type ContextualBanditMap = BTreeMap<String, ContextualBanditDefinition>;

/// Deserializes a field whose presence matters even when its value is `null`
/// (JavaScript's `"force" in rule`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The body served by `GET /api/features/{clientKey}` (decrypted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    #[serde(default)]
    pub features: FeatureMap,
    /// Auto experiments (visual editor and URL redirects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<Experiment>,
    #[serde(default, skip_serializing_if = "SavedGroups::is_empty")]
    pub saved_groups: SavedGroups,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contextual_bandits: ContextualBanditMap,
}

/// One feature flag: a default value and ordered rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDefinition {
    #[serde(default)]
    pub default_value: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FeatureRule>,
}

/// A feature rule: a force rule (with `force`), a rollout (force + coverage/range) or an
/// experiment rule (with `variations`, or `contextualVariations` for contextual bandits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_conditions: Option<Vec<ParentCondition>>,
    /// Present (even as `null`) for force rules.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub force: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variations: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextual_variations: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextual_bandit_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_sticky_bucketing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<BucketRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Vec<VariationMeta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<BucketRange>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Exposures of remotely evaluated experiments, reported when this force rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<TrackingCall>>,
}

/// A prerequisite: feature `id`'s value must satisfy `condition` (`{"value": ...}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentCondition {
    pub id: String,
    #[serde(default)]
    pub condition: Value,
    /// When set, a failing prerequisite blocks the whole feature (`source: prerequisite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<bool>,
}

/// Hash-based inclusion filter (namespaces v2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub seed: String,
    #[serde(default)]
    pub ranges: Vec<BucketRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_version: Option<u32>,
}

/// Per-variation metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VariationMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Passthrough (holdout) variations do not change the feature value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
}

/// URL targeting pattern of an auto experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<bool>,
    #[serde(rename = "type")]
    pub kind: UrlTargetType,
    pub pattern: String,
}

/// How a [`UrlTarget`] pattern is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlTargetType {
    Regex,
    Simple,
}

/// An experiment, either built from a feature rule or given directly / as an auto experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    pub key: String,
    #[serde(default)]
    pub variations: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// `draft`, `running` or `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<BucketRange>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_conditions: Option<Vec<ParentCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<Filter>>,
    /// A variation index forced for everyone who passes targeting and coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Vec<VariationMeta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_sticky_bucketing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bucket_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_patterns: Option<Vec<UrlTarget>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_query_string: Option<bool>,
    /// Set on the experiment reported with a contextual-bandit assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contextual_bandit: Option<ContextualBanditAssignment>,
}

/// The leaf a contextual bandit routed a user to, and the weights used to bucket them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextualBanditAssignment {
    /// `-1` when no leaf matched and the marginal weights were used.
    pub leaf_id: i64,
    pub variation_weights: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit_version: Option<i64>,
}

/// A contextual bandit definition: leaves in priority order (first match wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextualBanditDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit_version: Option<i64>,
    #[serde(default)]
    pub contexts: Vec<ContextualBanditLeaf>,
}

/// One leaf of a contextual bandit's decision tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextualBanditLeaf {
    pub leaf_id: i64,
    #[serde(default)]
    pub condition: Value,
    #[serde(default)]
    pub weights: Vec<f64>,
}

/// The outcome of running an experiment for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResult {
    pub value: Value,
    pub variation_id: i64,
    pub in_experiment: bool,
    /// True when the variation came from hashing (not from a force or override).
    pub hash_used: bool,
    pub hash_attribute: String,
    pub hash_value: Value,
    pub feature_id: Option<String>,
    /// The variation key (`meta[i].key`, or the index as a string).
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
    pub sticky_bucket_used: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation_weights: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit_version: Option<i64>,
}

/// Where a feature's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FeatureSource {
    UnknownFeature,
    DefaultValue,
    Force,
    Experiment,
    Prerequisite,
    CyclicPrerequisite,
    Override,
}

/// The outcome of evaluating a feature for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureResult {
    pub value: Value,
    pub on: bool,
    pub off: bool,
    pub source: FeatureSource,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Experiment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_result: Option<ExperimentResult>,
}

/// An exposure to report to analytics ("Experiment Viewed").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingCall {
    pub experiment: Experiment,
    pub result: ExperimentResult,
}

/// Sticky bucket assignments of one attribute value: `"<experimentKey>__<bucketVersion>"` →
/// variation key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickyAssignmentsDocument {
    pub attribute_name: String,
    pub attribute_value: String,
    #[serde(default)]
    pub assignments: BTreeMap<String, String>,
}
