//! The definition language: a serde-tagged AST, readable from JSON or YAML.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! condition. Shapes are checked by serde; meaning (operator/value types, window bounds, regex
//! cost, references) is checked by [`crate::validate`], which reports errors by path.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A segment definition: an id and the condition a profile must satisfy to be a member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Time zone used by calendar operators when neither the condition nor the profile's
    /// `timezone` trait names one. IANA name (`Europe/Paris`), `UTC`, or a fixed offset
    /// (`+02:00`). Defaults to `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tz: Option<String>,
    pub condition: Node,
}

/// One node of the condition tree, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// True when every child is true (true when empty).
    All { of: Vec<Node> },
    /// True when at least one child is true (false when empty).
    Any { of: Vec<Node> },
    /// Negation of the child.
    Not { of: Box<Node> },
    /// A predicate on a profile trait.
    Trait(Condition),
    /// "Performed `event` (where …) with measure `cmp` value over `window`".
    Performed(Performed),
    /// "Has not performed `event` (where …) over `window`": a performed count `eq 0`.
    NotPerformed(EventMatchWindow),
    /// The earliest matching event satisfies every `has` condition.
    First(FirstLast),
    /// The latest matching event satisfies every `has` condition.
    Last(FirstLast),
    /// Matching events for every step, in strictly increasing time, the last no later than
    /// `within` after the first.
    Sequence(Sequence),
    /// Some `first` event in `window` was not followed by a `then` event (with equal `join`
    /// properties) within `within`, and `within` has elapsed.
    NotFollowedBy(NotFollowedBy),
    /// Membership of another segment from the catalog (inlined at compile time).
    InSegment { id: String },
    /// A predicate on a computed trait from the catalog (computed alongside the segment).
    ComputedTrait(ComputedTraitCondition),
    /// Consent state for a purpose, read from the trait `consent.<purpose>`.
    Consent {
        purpose: String,
        state: ConsentState,
    },
    /// Subscription state for a group, read from the trait `subscriptions.<group>`.
    Subscription {
        group: String,
        state: SubscriptionState,
    },
    /// A stable bucket in `[0, 100)` from a salted hash of the profile id; true when
    /// `from <= bucket < to`. Used for holdouts and splits.
    RandomBucket { salt: String, from: f64, to: f64 },
}

/// A predicate on a value found at `path` (dot-separated) in traits or event properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub path: String,
    pub operator: Operator,
    /// The operand; its expected type depends on the operator (see [`Operator`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Unit for `within_last`, `within_next`, `more_than_ago`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Unit>,
    /// Time zone for calendar operators and date-only operands; overrides the profile's
    /// `timezone` trait and the definition's `default_tz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
}

/// Typed operators. Operand shapes:
/// - `eq`, `neq`: any scalar; `gt`, `gte`, `lt`, `lte`: a number; `between`: `[lo, hi]` numbers
///   (inclusive);
/// - `in`, `not_in`, `contains_any`, `contains_all`, `contains_none`: an array of scalars;
/// - `contains`, `not_contains`, `starts_with`, `ends_with`: a string (`contains` also tests
///   array membership); `regex`: a pattern string;
/// - `exists`, `not_exists`, `anniversary`: no operand;
/// - `before`, `after`: a time (epoch ms, RFC 3339, or `YYYY-MM-DD` in the node's time zone);
/// - `within_last`, `within_next`, `more_than_ago`: a positive integer with `unit`.
///
/// A missing or `null` actual value makes every operator false except the negative ones
/// (`neq`, `not_in`, `not_contains`, `contains_none`, `not_exists`), which are true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    In,
    NotIn,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    Exists,
    NotExists,
    Regex,
    ContainsAny,
    ContainsAll,
    ContainsNone,
    Before,
    After,
    WithinLast,
    WithinNext,
    MoreThanAgo,
    Anniversary,
}

impl Operator {
    pub fn name(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Between => "between",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Contains => "contains",
            Operator::NotContains => "not_contains",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Exists => "exists",
            Operator::NotExists => "not_exists",
            Operator::Regex => "regex",
            Operator::ContainsAny => "contains_any",
            Operator::ContainsAll => "contains_all",
            Operator::ContainsNone => "contains_none",
            Operator::Before => "before",
            Operator::After => "after",
            Operator::WithinLast => "within_last",
            Operator::WithinNext => "within_next",
            Operator::MoreThanAgo => "more_than_ago",
            Operator::Anniversary => "anniversary",
        }
    }

    /// Operators whose result depends on the current time.
    pub fn is_relative_time(self) -> bool {
        matches!(
            self,
            Operator::WithinLast
                | Operator::WithinNext
                | Operator::MoreThanAgo
                | Operator::Anniversary
        )
    }
}

/// Time units. Durations are fixed lengths (a day is 24 h); calendar rules apply only to
/// `anniversary` and date-only operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    pub fn millis(self) -> i64 {
        match self {
            Unit::Seconds => 1_000,
            Unit::Minutes => 60_000,
            Unit::Hours => 3_600_000,
            Unit::Days => 86_400_000,
            Unit::Weeks => 7 * 86_400_000,
        }
    }
}

/// A positive duration `n` × `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duration {
    pub n: i64,
    pub unit: Unit,
}

/// An instant: epoch milliseconds or an RFC 3339 string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Instant {
    Millis(i64),
    Text(String),
}

/// Which events count, relative to the evaluation time `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Window {
    /// Every event ever seen.
    #[default]
    AllTime,
    /// Events with `time > now - n*unit` (events dated in the future count as recent).
    Last { n: i64, unit: Unit },
    /// Events with `now - from*unit < time <= now - to*unit` (`from > to`).
    BetweenAgo { from: i64, to: i64, unit: Unit },
    /// Events with `from <= time < to`.
    Absolute { from: Instant, to: Instant },
    /// Events with `time >=` the entry time the caller set on the state (journeys).
    SinceEntry,
}

/// What is measured over the matching events in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Measure {
    #[default]
    Count,
    Sum {
        property: String,
    },
    Avg {
        property: String,
    },
    Min {
        property: String,
    },
    Max {
        property: String,
    },
    DistinctCount {
        property: String,
    },
}

/// A numeric comparison of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub operator: CmpOp,
    pub value: f64,
}

impl Default for Comparison {
    fn default() -> Self {
        Comparison {
            operator: CmpOp::Gte,
            value: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn apply(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Neq => left != right,
            CmpOp::Gt => left > right,
            CmpOp::Gte => left >= right,
            CmpOp::Lt => left < right,
            CmpOp::Lte => left <= right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        }
    }
}

/// An event name with property filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMatch {
    pub event: String,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performed {
    pub event: String,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Condition>,
    #[serde(default)]
    pub window: Window,
    #[serde(default)]
    pub measure: Measure,
    #[serde(default)]
    pub cmp: Comparison,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMatchWindow {
    pub event: String,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Condition>,
    #[serde(default)]
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstLast {
    pub event: String,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    pub steps: Vec<EventMatch>,
    pub within: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotFollowedBy {
    pub first: EventMatch,
    pub then: EventMatch,
    pub within: Duration,
    /// Property paths that must be equal (and present) on both events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<String>,
    /// Window the `first` event must fall in.
    #[serde(default)]
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedTraitCondition {
    pub id: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Granted,
    Denied,
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    Subscribed,
    Unsubscribed,
    Unset,
}

/// A computed trait: a value derived from a profile's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedTraitDefinition {
    pub id: String,
    pub kind: TraitKind,
    /// The counted event. Required for Segment's seven kinds; commerce kinds and `rfm`
    /// default to `Order Completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event property measured. Required by `aggregation`, `most_frequent`,
    /// `first_value`, `last_value`, `unique_list`, `unique_list_count`; commerce kinds default
    /// to `revenue`; `favourite_category` reads `category` and `products[].category`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Required by `aggregation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<AggregateFn>,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Condition>,
    #[serde(default)]
    pub window: Window,
    /// Required by `rfm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm: Option<RfmThresholds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraitKind {
    EventCounter,
    Aggregation,
    MostFrequent,
    FirstValue,
    LastValue,
    UniqueList,
    UniqueListCount,
    LifetimeValue,
    OrderCount,
    AverageOrderValue,
    DaysSinceLastOrder,
    FavouriteCategory,
    Rfm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
}

/// RFM scoring thresholds: four cut points per dimension, giving scores 5..=1.
///
/// Fixed thresholds (`quintiles` false or absent) need all three arrays, strictly ascending:
/// - recency: days since the last order, `r = 5 - #{cut : days > cut}` (`<= recency_days[0]`
///   scores 5);
/// - frequency and monetary: order count and revenue in the window,
///   `score = 1 + #{cut : value >= cut}` (`>= frequency[3]` scores 5, below `frequency[0]`
///   scores 1).
///
/// Population quintiles (`"rfm": {"quintiles": true}`): the cut points are the 20th, 40th,
/// 60th and 80th percentiles of the profiles that have at least one counted order (see
/// [`crate::rfm_quintiles`]), written into the definition by the server's RFM schedule (or
/// `POST /v1/computed-traits/{key}/rfm/recompute`) as a new definition version, with
/// `computed` saying when and over how many profiles. Until the first computation the arrays
/// are absent and the trait's value is `null`. Quintile cut points are the upper edges of the
/// bins, right-closed like pandas' `qcut`: every dimension scores
/// `r = 5 - #{cut : days > cut}`, `f = 1 + #{cut : count > cut}`, `m = 1 + #{cut : revenue > cut}`,
/// so values tied at a quintile stay in the lower bin, and cut points may repeat (ties).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfmThresholds {
    /// Cut points are population quintiles, recomputed on a schedule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quintiles: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recency_days: Option<[f64; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<[f64; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monetary: Option<[f64; 4]>,
    /// What the quintile cut points were computed over (quintiles only; set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<RfmComputation>,
}

/// When and over what population quintile cut points were computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfmComputation {
    /// The evaluation time of the recency days, RFC 3339.
    pub at: String,
    /// Profiles with at least one counted order.
    pub population: u64,
    /// The warehouse had every log record below this offset.
    pub as_of_offset: u64,
}

/// Resolved cut points, as the evaluators use them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmCutPoints {
    pub recency_days: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

impl RfmThresholds {
    /// The cut points when all three dimensions have them.
    pub fn cut_points(&self) -> Option<RfmCutPoints> {
        Some(RfmCutPoints {
            recency_days: self.recency_days?,
            frequency: self.frequency?,
            monetary: self.monetary?,
        })
    }
}
