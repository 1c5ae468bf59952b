//! GrowthBook-compatible feature flag and experiment evaluation.
//!
//! **Architecture invariant:** this crate performs no IO. It evaluates definitions (the
//! GrowthBook payload: `features`, `experiments`, `savedGroups`, `contextualBandits`) against a
//! user's attributes given as `serde_json::Value`, and returns plain results. Storage of sticky
//! buckets is a trait ([`StickyBucketService`]) that the caller drives around evaluation;
//! exposures to report are collected in the [`Context`] instead of calling back.
//!
//! **API boundary:**
//! - [`eval_feature`] / [`run_experiment`] / [`get_redirect`] evaluate for one [`Context`];
//!   [`CompiledPayload`] prepares a payload once for many contexts, and
//!   [`CompiledPayload::evaluate`] evaluates a feature without copying definitions into the
//!   result ([`Evaluation`]: values borrowed, experiment and result shared through `Arc`).
//! - Exposures are recorded on the [`Context`]: [`Context::take_exposures`] hands them over with
//!   the experiment shared ([`Exposure`]), [`Context::take_tracking_calls`] as owned copies.
//! - [`evaluate_payload`] builds GrowthBook's remote-evaluation payload for one user.
//! - [`eval_condition`] evaluates a targeting condition on its own.
//! - [`hash`], [`get_bucket_ranges`], [`choose_variation`], [`in_namespace`],
//!   [`get_query_string_override`], [`get_equal_weights`], [`padded_version_string`] are the
//!   spec's building blocks.
//! - [`decrypt`] opens encrypted payload fields; [`encrypt`] produces them.
//! - [`validate_feature`] / [`validate_payload`] / [`validate_condition`] check definitions
//!   before they are stored or served, with errors naming the JSON path.
//!
//! # Compatibility
//!
//! Behaviour follows the JavaScript reference SDK and is checked against GrowthBook's shared
//! conformance suite (`tests/data/growthbook-cases.json`, spec 0.8.0): every case of every
//! section passes (`evalCondition`, `hash`, `getBucketRange`, `feature`, `run`,
//! `chooseVariation`, `getQueryStringOverride`, `inNamespace`, `getEqualWeights`, `decrypt`,
//! `stickyBucket`, `urlRedirect`, `contextualBandit`); the list of excluded cases in the test
//! runner is empty and the runner fails if that changes without updating it.
//!
//! Deliberate choices and known differences:
//! - Hashing runs FNV-1a over **UTF-16 code units**, like the JS SDK's `charCodeAt`, so ids
//!   with non-ASCII characters land in the same bucket as on the web (the official Rust SDK
//!   hashes UTF-8 bytes and disagrees there).
//! - Conditions reproduce JS coercions (`"8" > 5`, a missing attribute reads as `null`, which
//!   compares like `0`; `JSON.stringify` equality for literal arrays and objects).
//! - Regular expressions use the `regex` crate: patterns with look-around or back-references,
//!   which JavaScript accepts, do not compile here and so evaluate to `false`.
//! - Prerequisite conditions see the payload's saved groups (the JS SDK passes none there).
//! - Malformed conditions (a non-object condition, a non-array `$or`) evaluate to `false`
//!   where the JS SDK may throw; nesting beyond 200 levels is `false` too. No input panics.
//! - Not implemented: the legacy `experiment.url` regex and `groups` fields, experiment
//!   `overrides`, `include` callbacks, and visual-editor DOM changes (only URL redirects of
//!   auto experiments are evaluated, via [`get_redirect`]).

mod bucketing;
mod condition;
mod decrypt;
mod eval;
mod js;
mod model;
mod sticky;
mod urls;
mod validate;

pub use bucketing::{
    BucketRange, Namespace, choose_variation, fnv1a_32_utf16, get_bucket_ranges, get_equal_weights,
    get_query_string_override, hash, in_namespace, in_range,
};
pub use condition::{
    CompiledCondition, KNOWN_OPERATORS, SavedGroups, eval_condition, get_path,
    padded_version_string,
};
pub use decrypt::{DecryptError, decrypt, encrypt};
pub use eval::{
    CompiledPayload, Context, Evaluation, Exposure, RedirectDecision, RemoteEvaluation,
    eval_feature, evaluate_payload, get_redirect, run_experiment,
};
pub use model::{
    ContextualBanditAssignment, ContextualBanditDefinition, ContextualBanditLeaf,
    ContextualBanditMap, Experiment, ExperimentResult, FeatureDefinition, FeatureMap,
    FeatureResult, FeatureRule, FeatureSource, Filter, ParentCondition, Payload,
    StickyAssignmentsDocument, TrackingCall, UrlTarget, UrlTargetType, VariationMeta,
};
pub use sticky::{
    InMemoryStickyBucketService, StickyBucketService, sticky_bucket_attribute_key,
    sticky_bucket_experiment_key,
};
pub use urls::{is_url_targeted, merge_query_strings};
pub use validate::{
    ValidationError, ValidationErrorKind, validate_condition, validate_experiment,
    validate_feature, validate_payload,
};
