//! The segment language: definitions, validation, real-time evaluation, computed traits.
//!
//! **Architecture invariant:** this crate performs no IO and reads no clock. Time comes in as
//! event times and explicit `now_ms` arguments; the pipeline owns storage (the serializable
//! [`ProfileState`] / [`TraitState`]) and durable timers (each [`Outcome`] says when to call
//! back).
//!
//! **API boundary:**
//! - [`Definition`] (JSON/YAML via serde, unknown fields rejected) → [`validate`] with a
//!   [`Catalog`] of other segments, computed traits and trait types → [`Compiled`], or
//!   [`ValidationError`]s naming the offending node by path;
//! - [`ProfileState::new`], then [`on_event`], [`on_profile`], [`on_timer`] → [`Outcome`]
//!   (membership, `Segment Entered`/`Segment Exited` [`Change`], next timer);
//! - [`evaluate_from_history`]: the reference evaluator (oracle for tests and the SQL);
//! - [`compile_sql`]: the same membership as one SQL query over the warehouse at an explicit
//!   time (the `seg_*` functions it calls are defined in [`sql_functions`]);
//! - [`explain`]: each node's value and the facts behind it;
//! - [`encode_profile_state`] / [`decode_profile_state`] (and the trait pair): the compact,
//!   canonical binary form the pipeline stores;
//! - [`ComputedTraitDefinition`] → [`validate_computed_trait`] → [`CompiledTrait`] with
//!   [`CompiledTrait::on_event`] / [`CompiledTrait::on_timer`] and
//!   [`CompiledTrait::compute_from_history`];
//! - RFM population quintiles: [`compile_rfm_inputs_sql`] (each profile's [`RfmInputs`] as one
//!   SQL query over the warehouse) → [`rfm_quintiles`] → [`RfmCutPoints`], which the server
//!   writes into the definition (scores by [`rfm_score`]).
//!
//! # Semantics in brief
//!
//! - Windows: `last` counts events with `time > now - length` (future-dated events count);
//!   `between_ago` counts `now - from < time <= now - to`; `absolute` counts `[from, to)`;
//!   `since_entry` counts events at or after [`ProfileState::enter`]'s time.
//! - Late (out-of-order) events count by their event time. Ties in time between events are
//!   broken by arrival order.
//! - Time zones: a trait condition's `tz`, else the profile's `timezone` trait (IANA name or
//!   offset), else the definition's `default_tz`, else UTC. Event-property conditions use their
//!   `tz` or the definition default only, so whether an event matches never changes.
//! - Consent reads the trait `consent.<purpose>` (`true`/`"granted"`, `false`/`"denied"`);
//!   subscriptions read `subscriptions.<group>` (`true`/`"subscribed"`,
//!   `false`/`"unsubscribed"`); anything else is `unset`.
//! - Random buckets: FNV-1a (64-bit) of `salt:profile_id`, modulo 10 000, as a percentage.
//!
//! See the `store` module for the per-node memory bound.

pub mod codec;
mod computed;
mod condition;
mod explain;
mod incremental;
mod model;
mod reference;
mod rfm;
mod sql;
pub mod sql_functions;
mod store;
mod time;
mod validate;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use codec::{
    CodecError, decode_profile_state, decode_trait_state, encode_profile_state, encode_trait_state,
    profile_state_member,
};
pub use computed::{CompiledTrait, TraitOutcome, TraitState};
pub use condition::{lookup, lookup_trait};
pub use explain::{ExplainNode, explain};
pub use incremental::{
    Extreme, Keyed, MAX_PATTERN_EVENTS, NodeState, NotFollowedByState, ProfileState, SequenceState,
    on_event, on_profile, on_timer,
};
pub use model::*;
pub use reference::{ProfileFacts, evaluate_from_history};
pub use rfm::{RfmInputs, quantile_sorted, quintiles, rfm_quintiles, rfm_score};
pub use sql::{SqlError, compile_rfm_inputs_sql, compile_sql};
pub use store::{Entry, MAX_DISTINCT_VALUES, MAX_WINDOW_ENTRIES, Store, Summary};
pub use time::Zone;
pub use validate::{
    Catalog, Compiled, MAX_DEPTH, MAX_LIST_VALUES, MAX_NODES, MAX_PATTERN_BYTES,
    MAX_SEQUENCE_STEPS, MAX_WINDOW_MS, REGEX_SIZE_LIMIT, ValidationError, ValueType, validate,
    validate_computed_trait,
};

/// A borrowed view of one event.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The event name (`track` event, or page/screen name).
    pub name: &'a str,
    /// The Segment call type (`track`, `page`, `screen`, `identify`, …).
    pub event_type: &'a str,
    /// Event time after skew correction, epoch ms.
    pub time_ms: i64,
    pub properties: &'a Value,
}

/// Errors reading a definition.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("definition is not valid JSON for the segment language: {0}")]
    Json(#[from] serde_json::Error),
    #[error("definition is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
}

impl Definition {
    /// Parses a JSON definition (unknown fields rejected).
    pub fn from_json(text: &str) -> Result<Definition, DefinitionError> {
        Ok(serde_json::from_str(text)?)
    }
}

/// Parses and validates a JSON definition in one step.
pub fn compile_json(text: &str, catalog: &Catalog) -> Result<Compiled, DefinitionError> {
    let definition = Definition::from_json(text)?;
    validate(&definition, catalog).map_err(DefinitionError::Invalid)
}

/// The result of one evaluation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub membership: bool,
    pub changed: Option<Change>,
    /// The earliest instant after `now_ms` at which membership can change with time alone.
    /// The caller replaces the profile's timer for this segment with it (`None`: no timer).
    pub next_timer_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Entered,
    Exited,
}

/// A membership change, to be emitted as a `Segment Entered` / `Segment Exited` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub segment_id: String,
    pub kind: ChangeKind,
    pub time_ms: i64,
}

impl Change {
    pub fn event_name(&self) -> &'static str {
        match self.kind {
            ChangeKind::Entered => "Segment Entered",
            ChangeKind::Exited => "Segment Exited",
        }
    }

    /// Properties of the emitted event.
    pub fn properties(&self) -> Value {
        json!({ "segment_id": self.segment_id, "timestamp": time::format_ms(self.time_ms) })
    }
}

/// The stable bucket in `[0, 100)` of `profile_id` under `salt`.
pub fn bucket(salt: &str, profile_id: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in salt
        .bytes()
        .chain(std::iter::once(b':'))
        .chain(profile_id.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % 10_000) as f64 / 100.0
}
