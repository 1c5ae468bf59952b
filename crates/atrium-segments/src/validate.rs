//! Validation and compilation: from a [`Definition`] to a [`Compiled`] tree, or a list of
//! errors each naming the offending node by JSON-pointer path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::RegexBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::computed::CompiledTrait;
use crate::condition::{CompiledCondition, Matcher, Operand, TzRule};
use crate::model::{
    CmpOp, Comparison, ComputedTraitDefinition, Condition, ConsentState, Definition, Duration,
    EventMatch, Instant, Measure, Node, Operator, RfmThresholds, SubscriptionState, TraitKind,
    Window,
};
use crate::store::{CWindow, StoreSpec, Tracks};
use crate::time::{self, Zone};

/// Deepest allowed nesting of condition nodes.
pub const MAX_DEPTH: usize = 16;
/// Most nodes in one compiled segment, counting inlined segment references.
pub const MAX_NODES: usize = 256;
/// Longest event window or sequence duration (two years).
pub const MAX_WINDOW_MS: i64 = 730 * 86_400_000;
/// Longest duration in a trait date operator (100 years).
pub const MAX_TRAIT_DURATION_MS: i64 = 36_525 * 86_400_000;
/// Most values in an `in`-style list.
pub const MAX_LIST_VALUES: usize = 1_000;
/// Longest regex pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1_000;
/// Compiled-program size limit for regexes, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Most steps in a sequence.
pub const MAX_SEQUENCE_STEPS: usize = 8;

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// JSON pointer to the offending node, e.g. `/condition/of/1/where/0/value`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.path, self.message)
    }
}

/// Types of known traits, for operator type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Number,
    Boolean,
    Time,
    Array,
    Object,
}

/// What a definition may refer to: other segments, computed traits, known trait types.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub segments: BTreeMap<String, Definition>,
    #[serde(default)]
    pub computed_traits: BTreeMap<String, ComputedTraitDefinition>,
    #[serde(default)]
    pub trait_types: BTreeMap<String, ValueType>,
}

/// A validated segment, ready for evaluation.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    pub(crate) root: CNode,
    pub(crate) slot_count: usize,
    /// Trait paths the segment reads (kept in the per-profile snapshot).
    pub(crate) trait_paths: BTreeSet<String>,
}

impl Compiled {
    /// Whether `event` can change this segment's state: some event condition (at any depth,
    /// referenced segments and computed traits included) names it. Feeding an event that
    /// cannot is the same as a timer call at its time, so callers may skip it.
    pub fn event_relevant(&self, event: &crate::EventView<'_>) -> bool {
        relevant(&self.root, event.name)
    }

    /// Every event name some event condition names: [`Compiled::event_relevant`] is true
    /// exactly for events with one of these names (sorted, without duplicates).
    pub fn event_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        collect_event_names(&self.root, &mut names);
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Whether the segment reads profile traits (then trait changes must be fed).
    pub fn reads_traits(&self) -> bool {
        !self.trait_paths.is_empty()
    }

    /// Adds to `roots` the top-level event property keys the segment's evaluation reads (the
    /// first segment of every property path of its filters, measures, `has` conditions, joins
    /// and computed traits): an event whose properties keep only these keys evaluates the same.
    pub fn property_roots<'a>(&'a self, roots: &mut BTreeSet<&'a str>) {
        collect_property_roots(&self.root, roots);
    }
}

/// The top-level key a property path starts with (as `condition::lookup` walks it).
pub(crate) fn property_root(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

pub(crate) fn matcher_property_roots<'a>(matcher: &'a Matcher, roots: &mut BTreeSet<&'a str>) {
    for filter in &matcher.filters {
        roots.insert(property_root(&filter.path));
    }
}

fn collect_property_roots<'a>(node: &'a CNode, roots: &mut BTreeSet<&'a str>) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => children
            .iter()
            .for_each(|child| collect_property_roots(child, roots)),
        Kind::Not(child) => collect_property_roots(child, roots),
        Kind::InSegment { root, .. } => collect_property_roots(root, roots),
        Kind::Performed {
            matcher, measure, ..
        } => {
            matcher_property_roots(matcher, roots);
            if let Some(path) = measure.property() {
                roots.insert(property_root(path));
            }
        }
        Kind::FirstLast { matcher, has, .. } => {
            matcher_property_roots(matcher, roots);
            for condition in has {
                roots.insert(property_root(&condition.path));
            }
        }
        Kind::Sequence { steps, .. } => steps
            .iter()
            .for_each(|step| matcher_property_roots(step, roots)),
        Kind::NotFollowedBy {
            first, then, join, ..
        } => {
            matcher_property_roots(first, roots);
            matcher_property_roots(then, roots);
            for path in join {
                roots.insert(property_root(path));
            }
        }
        Kind::Computed { definition, .. } => definition.property_roots(roots),
        Kind::Trait(_)
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => {}
    }
}

fn collect_event_names<'a>(node: &'a CNode, names: &mut Vec<&'a str>) {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => children
            .iter()
            .for_each(|child| collect_event_names(child, names)),
        Kind::Not(child) => collect_event_names(child, names),
        Kind::InSegment { root, .. } => collect_event_names(root, names),
        Kind::Performed { matcher, .. } | Kind::FirstLast { matcher, .. } => {
            names.push(&matcher.event)
        }
        Kind::Sequence { steps, .. } => names.extend(steps.iter().map(|step| step.event.as_str())),
        Kind::NotFollowedBy { first, then, .. } => {
            names.push(&first.event);
            names.push(&then.event);
        }
        Kind::Computed { definition, .. } => names.push(&definition.matcher.event),
        Kind::Trait(_)
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => {}
    }
}

fn relevant(node: &CNode, name: &str) -> bool {
    match &node.kind {
        Kind::All(children) | Kind::Any(children) => {
            children.iter().any(|child| relevant(child, name))
        }
        Kind::Not(child) => relevant(child, name),
        Kind::InSegment { root, .. } => relevant(root, name),
        Kind::Performed { matcher, .. } | Kind::FirstLast { matcher, .. } => matcher.event == name,
        Kind::Sequence { steps, .. } => steps.iter().any(|step| step.event == name),
        Kind::NotFollowedBy { first, then, .. } => first.event == name || then.event == name,
        Kind::Computed { definition, .. } => definition.matcher.event == name,
        Kind::Trait(_)
        | Kind::Consent { .. }
        | Kind::Subscription { .. }
        | Kind::RandomBucket { .. } => false,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CNode {
    pub path: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum CMeasure {
    Count,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
    Distinct(String),
}

impl CMeasure {
    pub fn property(&self) -> Option<&str> {
        match self {
            CMeasure::Count => None,
            CMeasure::Sum(p)
            | CMeasure::Avg(p)
            | CMeasure::Min(p)
            | CMeasure::Max(p)
            | CMeasure::Distinct(p) => Some(p),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CMeasure::Count => "count".to_string(),
            CMeasure::Sum(p) => format!("sum({p})"),
            CMeasure::Avg(p) => format!("avg({p})"),
            CMeasure::Min(p) => format!("min({p})"),
            CMeasure::Max(p) => format!("max({p})"),
            CMeasure::Distinct(p) => format!("distinct_count({p})"),
        }
    }

    /// The measured value of a summary; `None` for avg/min/max of nothing.
    pub fn of(&self, summary: &crate::store::Summary) -> Option<f64> {
        match self {
            CMeasure::Count => Some(summary.count as f64),
            CMeasure::Sum(_) => Some(summary.sum),
            CMeasure::Avg(_) => summary.avg(),
            CMeasure::Min(_) => summary.min,
            CMeasure::Max(_) => summary.max,
            CMeasure::Distinct(_) => Some(summary.counts.len() as f64),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    All(Vec<CNode>),
    Any(Vec<CNode>),
    Not(Box<CNode>),
    Trait(CompiledCondition),
    Performed {
        slot: usize,
        matcher: Matcher,
        spec: StoreSpec,
        measure: CMeasure,
        cmp: Comparison,
    },
    FirstLast {
        slot: usize,
        matcher: Matcher,
        has: Vec<CompiledCondition>,
        last: bool,
    },
    Sequence {
        slot: usize,
        steps: Vec<Matcher>,
        within: i64,
    },
    NotFollowedBy {
        slot: usize,
        first: Matcher,
        then: Matcher,
        within: i64,
        join: Vec<String>,
        window: CWindow,
    },
    InSegment {
        id: String,
        root: Box<CNode>,
    },
    Computed {
        slot: usize,
        definition: Box<CompiledTrait>,
        condition: CompiledCondition,
    },
    Consent {
        purpose: String,
        state: ConsentState,
    },
    Subscription {
        group: String,
        state: SubscriptionState,
    },
    RandomBucket {
        salt: String,
        from: f64,
        to: f64,
    },
}

/// Validates `definition` against `catalog` and compiles it.
pub fn validate(
    definition: &Definition,
    catalog: &Catalog,
) -> Result<Compiled, Vec<ValidationError>> {
    let mut context = Context {
        catalog,
        errors: Vec::new(),
        slot_count: 0,
        node_count: 0,
        stack: Vec::new(),
        trait_paths: BTreeSet::new(),
    };
    if definition.id.trim().is_empty() {
        context.error("/id", "segment id must not be empty");
    }
    let root = context.definition(definition, "");
    match root {
        Some(root) if context.errors.is_empty() => Ok(Compiled {
            id: definition.id.clone(),
            root,
            slot_count: context.slot_count,
            trait_paths: context.trait_paths,
        }),
        _ => Err(context.errors),
    }
}

/// Validates and compiles one computed trait definition.
pub fn validate_computed_trait(
    definition: &ComputedTraitDefinition,
) -> Result<CompiledTrait, Vec<ValidationError>> {
    let catalog = Catalog::default();
    let mut context = Context {
        catalog: &catalog,
        errors: Vec::new(),
        slot_count: 0,
        node_count: 0,
        stack: Vec::new(),
        trait_paths: BTreeSet::new(),
    };
    let compiled = context.computed_trait(definition, "");
    match compiled {
        Some(compiled) if context.errors.is_empty() => Ok(compiled),
        _ => Err(context.errors),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Trait,
    EventProperty,
    ComputedTrait,
}

struct Context<'a> {
    catalog: &'a Catalog,
    errors: Vec<ValidationError>,
    slot_count: usize,
    node_count: usize,
    stack: Vec<String>,
    trait_paths: BTreeSet<String>,
}

fn scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn operators_for(value_type: ValueType) -> &'static [Operator] {
    use Operator::*;
    match value_type {
        ValueType::Number => &[
            Eq, Neq, Gt, Gte, Lt, Lte, Between, In, NotIn, Exists, NotExists,
        ],
        ValueType::String => &[
            Eq,
            Neq,
            In,
            NotIn,
            Contains,
            NotContains,
            StartsWith,
            EndsWith,
            Regex,
            Exists,
            NotExists,
        ],
        ValueType::Boolean => &[Eq, Neq, In, NotIn, Exists, NotExists],
        ValueType::Time => &[
            Eq,
            Neq,
            Before,
            After,
            WithinLast,
            WithinNext,
            MoreThanAgo,
            Anniversary,
            Exists,
            NotExists,
        ],
        ValueType::Array => &[
            Contains,
            NotContains,
            ContainsAny,
            ContainsAll,
            ContainsNone,
            Exists,
            NotExists,
        ],
        ValueType::Object => &[Exists, NotExists],
    }
}

fn type_label(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "string",
        ValueType::Number => "number",
        ValueType::Boolean => "boolean",
        ValueType::Time => "time",
        ValueType::Array => "array",
        ValueType::Object => "object",
    }
}

impl Context<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn slot(&mut self) -> usize {
        self.slot_count += 1;
        self.slot_count - 1
    }

    fn zone(&mut self, text: Option<&str>, path: &str) -> Option<Zone> {
        let text = text?;
        let zone = Zone::parse(text);
        if zone.is_none() {
            self.error(path, format!("unknown time zone {text:?}: use an IANA name (Europe/Paris), UTC, or an offset like +02:00"));
        }
        zone
    }

    fn definition(&mut self, definition: &Definition, base: &str) -> Option<CNode> {
        self.stack.push(definition.id.clone());
        let default_zone = self
            .zone(
                definition.default_tz.as_deref(),
                &format!("{base}/default_tz"),
            )
            .unwrap_or(Zone::UTC);
        let root = self.node(
            &definition.condition,
            &format!("{base}/condition"),
            1,
            default_zone,
        );
        self.stack.pop();
        root
    }

    fn name(&mut self, text: &str, path: &str, what: &str) -> bool {
        if text.trim().is_empty() {
            self.error(path, format!("{what} must not be empty"));
            return false;
        }
        true
    }

    fn property_path(&mut self, text: &str, path: &str) -> bool {
        if text.is_empty() || text.split('.').any(str::is_empty) {
            self.error(
                path,
                format!("invalid path {text:?}: use dot-separated names such as `address.city`"),
            );
            return false;
        }
        true
    }

    fn node(&mut self, node: &Node, path: &str, depth: usize, zone: Zone) -> Option<CNode> {
        self.node_count += 1;
        if depth > MAX_DEPTH {
            self.error(
                path,
                format!("conditions nest deeper than {MAX_DEPTH} levels"),
            );
            return None;
        }
        if self.node_count == MAX_NODES + 1 {
            self.error(
                path,
                format!(
                    "the segment has more than {MAX_NODES} nodes (counting referenced segments)"
                ),
            );
        }
        let kind = match node {
            Node::All { of } | Node::Any { of } => {
                let mut children = Vec::with_capacity(of.len());
                for (index, child) in of.iter().enumerate() {
                    if let Some(compiled) =
                        self.node(child, &format!("{path}/of/{index}"), depth + 1, zone)
                    {
                        children.push(compiled);
                    }
                }
                if matches!(node, Node::All { .. }) {
                    Kind::All(children)
                } else {
                    Kind::Any(children)
                }
            }
            Node::Not { of } => Kind::Not(Box::new(self.node(
                of,
                &format!("{path}/of"),
                depth + 1,
                zone,
            )?)),
            Node::Trait(condition) => {
                let known = self.catalog.trait_types.get(&condition.path).copied();
                let compiled = self.condition(condition, path, Scope::Trait, zone, known)?;
                self.trait_paths.insert(compiled.path.clone());
                if compiled.uses_zone() && matches!(compiled.tz, TzRule::Profile { .. }) {
                    self.trait_paths.insert("timezone".to_string());
                }
                Kind::Trait(compiled)
            }
            Node::Performed(performed) => {
                let matcher = self.matcher(&performed.event, &performed.filters, path, zone);
                let window = self.window(&performed.window, &format!("{path}/window"), zone);
                let measure = self.measure(&performed.measure, &format!("{path}/measure"));
                let cmp = self.comparison(&performed.cmp, &measure, &format!("{path}/cmp"));
                let (matcher, window, measure, cmp) = (matcher?, window?, measure?, cmp?);
                self.performed(matcher, window, measure, cmp)
            }
            Node::NotPerformed(absence) => {
                let matcher = self.matcher(&absence.event, &absence.filters, path, zone);
                let window = self.window(&absence.window, &format!("{path}/window"), zone);
                let cmp = Comparison {
                    operator: CmpOp::Eq,
                    value: 0.0,
                };
                self.performed(matcher?, window?, CMeasure::Count, cmp)
            }
            Node::First(first_last) | Node::Last(first_last) => {
                let matcher = self.matcher(&first_last.event, &first_last.filters, path, zone);
                let mut has = Vec::new();
                for (index, condition) in first_last.has.iter().enumerate() {
                    if let Some(compiled) = self.condition(
                        condition,
                        &format!("{path}/has/{index}"),
                        Scope::EventProperty,
                        zone,
                        None,
                    ) {
                        has.push(compiled);
                    }
                }
                Kind::FirstLast {
                    slot: self.slot(),
                    matcher: matcher?,
                    has,
                    last: matches!(node, Node::Last(_)),
                }
            }
            Node::Sequence(sequence) => {
                if sequence.steps.len() < 2 || sequence.steps.len() > MAX_SEQUENCE_STEPS {
                    self.error(
                        format!("{path}/steps"),
                        format!(
                            "a sequence needs 2 to {MAX_SEQUENCE_STEPS} steps, got {}",
                            sequence.steps.len()
                        ),
                    );
                }
                let mut steps = Vec::new();
                for (index, step) in sequence.steps.iter().enumerate() {
                    if let Some(matcher) =
                        self.event_match(step, &format!("{path}/steps/{index}"), zone)
                    {
                        steps.push(matcher);
                    }
                }
                let within =
                    self.duration(&sequence.within, &format!("{path}/within"), MAX_WINDOW_MS)?;
                Kind::Sequence {
                    slot: self.slot(),
                    steps,
                    within,
                }
            }
            Node::NotFollowedBy(spec) => {
                let first = self.event_match(&spec.first, &format!("{path}/first"), zone);
                let then = self.event_match(&spec.then, &format!("{path}/then"), zone);
                let within = self.duration(&spec.within, &format!("{path}/within"), MAX_WINDOW_MS);
                let window = self.window(&spec.window, &format!("{path}/window"), zone);
                for (index, join) in spec.join.iter().enumerate() {
                    self.property_path(join, &format!("{path}/join/{index}"));
                }
                Kind::NotFollowedBy {
                    slot: self.slot(),
                    first: first?,
                    then: then?,
                    within: within?,
                    join: spec.join.clone(),
                    window: window?,
                }
            }
            Node::InSegment { id } => {
                if let Some(position) = self.stack.iter().position(|held| held == id) {
                    let mut cycle: Vec<&str> =
                        self.stack[position..].iter().map(String::as_str).collect();
                    cycle.push(id);
                    self.error(
                        format!("{path}/id"),
                        format!("segment reference cycle: {}", cycle.join(" -> ")),
                    );
                    return None;
                }
                let Some(referenced) = self.catalog.segments.get(id) else {
                    self.error(format!("{path}/id"), format!("unknown segment {id:?}"));
                    return None;
                };
                let root = self.definition(referenced, &format!("{path}/(segment {id})"))?;
                Kind::InSegment {
                    id: id.clone(),
                    root: Box::new(root),
                }
            }
            Node::ComputedTrait(reference) => {
                let Some(trait_definition) = self.catalog.computed_traits.get(&reference.id) else {
                    self.error(
                        format!("{path}/id"),
                        format!("unknown computed trait {:?}", reference.id),
                    );
                    return None;
                };
                let definition = self.computed_trait(
                    trait_definition,
                    &format!("{path}/(computed trait {})", reference.id),
                );
                let condition = Condition {
                    path: reference.id.clone(),
                    operator: reference.operator,
                    value: reference.value.clone(),
                    unit: None,
                    tz: None,
                };
                let known = definition
                    .as_ref()
                    .and_then(|definition| output_type(definition.kind));
                let condition =
                    self.condition(&condition, path, Scope::ComputedTrait, Zone::UTC, known);
                Kind::Computed {
                    slot: self.slot(),
                    definition: Box::new(definition?),
                    condition: condition?,
                }
            }
            Node::Consent { purpose, state } => {
                if !self.name(purpose, &format!("{path}/purpose"), "consent purpose") {
                    return None;
                }
                if purpose.contains('.') {
                    self.error(
                        format!("{path}/purpose"),
                        "consent purpose must not contain `.`",
                    );
                    return None;
                }
                self.trait_paths.insert(format!("consent.{purpose}"));
                Kind::Consent {
                    purpose: purpose.clone(),
                    state: *state,
                }
            }
            Node::Subscription { group, state } => {
                if !self.name(group, &format!("{path}/group"), "subscription group") {
                    return None;
                }
                if group.contains('.') {
                    self.error(
                        format!("{path}/group"),
                        "subscription group must not contain `.`",
                    );
                    return None;
                }
                self.trait_paths.insert(format!("subscriptions.{group}"));
                Kind::Subscription {
                    group: group.clone(),
                    state: *state,
                }
            }
            Node::RandomBucket { salt, from, to } => {
                self.name(salt, &format!("{path}/salt"), "bucket salt");
                if !(from.is_finite()
                    && to.is_finite()
                    && 0.0 <= *from
                    && from < to
                    && *to <= 100.0)
                {
                    self.error(
                        path,
                        format!(
                            "bucket range must satisfy 0 <= from < to <= 100, got [{from}, {to})"
                        ),
                    );
                    return None;
                }
                Kind::RandomBucket {
                    salt: salt.clone(),
                    from: *from,
                    to: *to,
                }
            }
        };
        Some(CNode {
            path: path.to_string(),
            kind,
        })
    }

    fn performed(
        &mut self,
        matcher: Matcher,
        window: CWindow,
        measure: CMeasure,
        cmp: Comparison,
    ) -> Kind {
        let keep_newest = match (&measure, window) {
            (CMeasure::Count, CWindow::Last { .. }) => {
                Some((cmp.value.max(0.0).floor() as usize).saturating_add(1))
            }
            _ => None,
        };
        let tracks = Tracks {
            ends: false,
            counts: matches!(measure, CMeasure::Distinct(_)),
            flatten_arrays: false,
        };
        Kind::Performed {
            slot: self.slot(),
            matcher,
            spec: StoreSpec {
                window,
                tracks,
                keep_newest,
            },
            measure,
            cmp,
        }
    }

    fn event_match(&mut self, event_match: &EventMatch, path: &str, zone: Zone) -> Option<Matcher> {
        self.matcher(&event_match.event, &event_match.filters, path, zone)
    }

    fn matcher(
        &mut self,
        event: &str,
        filters: &[Condition],
        path: &str,
        zone: Zone,
    ) -> Option<Matcher> {
        let named = self.name(event, &format!("{path}/event"), "event name");
        let mut compiled = Vec::with_capacity(filters.len());
        let mut ok = named;
        for (index, filter) in filters.iter().enumerate() {
            match self.condition(
                filter,
                &format!("{path}/where/{index}"),
                Scope::EventProperty,
                zone,
                None,
            ) {
                Some(condition) => compiled.push(condition),
                None => ok = false,
            }
        }
        ok.then(|| Matcher {
            event: event.to_string(),
            filters: compiled,
            zone,
        })
    }

    fn duration(&mut self, duration: &Duration, path: &str, max: i64) -> Option<i64> {
        if duration.n < 1 {
            self.error(
                format!("{path}/n"),
                format!("duration must be at least 1, got {}", duration.n),
            );
            return None;
        }
        let length = duration
            .n
            .checked_mul(duration.unit.millis())
            .filter(|length| *length <= max);
        if length.is_none() {
            self.error(
                path,
                format!("duration exceeds the maximum of {} days", max / 86_400_000),
            );
        }
        length
    }

    fn instant(&mut self, instant: &Instant, path: &str, zone: Zone) -> Option<i64> {
        let parsed = match instant {
            Instant::Millis(ms) => Some(*ms),
            Instant::Text(text) => time::parse_time_text(text).map(|value| value.resolve(zone)),
        };
        if parsed.is_none() {
            self.error(
                path,
                "expected epoch milliseconds, an RFC 3339 time, or YYYY-MM-DD",
            );
        }
        parsed
    }

    fn window(&mut self, window: &Window, path: &str, zone: Zone) -> Option<CWindow> {
        match window {
            Window::AllTime => Some(CWindow::AllTime),
            Window::SinceEntry => Some(CWindow::SinceEntry),
            Window::Last { n, unit } => {
                let length =
                    self.duration(&Duration { n: *n, unit: *unit }, path, MAX_WINDOW_MS)?;
                Some(CWindow::Last { length })
            }
            Window::BetweenAgo { from, to, unit } => {
                if *to < 0 || from <= to {
                    self.error(path, format!("between_ago needs from > to >= 0 (from is the older bound), got from {from}, to {to}"));
                    return None;
                }
                let from_ms = self.duration(
                    &Duration {
                        n: *from,
                        unit: *unit,
                    },
                    path,
                    MAX_WINDOW_MS,
                )?;
                Some(CWindow::BetweenAgo {
                    from: from_ms,
                    to: to * unit.millis(),
                })
            }
            Window::Absolute { from, to } => {
                let from_ms = self.instant(from, &format!("{path}/from"), zone);
                let to_ms = self.instant(to, &format!("{path}/to"), zone);
                let (from_ms, to_ms) = (from_ms?, to_ms?);
                if from_ms >= to_ms {
                    self.error(path, "absolute window needs from < to");
                    return None;
                }
                Some(CWindow::Absolute {
                    from: from_ms,
                    to: to_ms,
                })
            }
        }
    }

    fn measure(&mut self, measure: &Measure, path: &str) -> Option<CMeasure> {
        let (property, build): (&str, fn(String) -> CMeasure) = match measure {
            Measure::Count => return Some(CMeasure::Count),
            Measure::Sum { property } => (property, CMeasure::Sum),
            Measure::Avg { property } => (property, CMeasure::Avg),
            Measure::Min { property } => (property, CMeasure::Min),
            Measure::Max { property } => (property, CMeasure::Max),
            Measure::DistinctCount { property } => (property, CMeasure::Distinct),
        };
        self.property_path(property, &format!("{path}/property"))
            .then(|| build(property.to_string()))
    }

    fn comparison(
        &mut self,
        cmp: &Comparison,
        measure: &Option<CMeasure>,
        path: &str,
    ) -> Option<Comparison> {
        if !cmp.value.is_finite() {
            self.error(
                format!("{path}/value"),
                "comparison value must be a finite number",
            );
            return None;
        }
        if matches!(measure, Some(CMeasure::Count | CMeasure::Distinct(_))) && cmp.value < 0.0 {
            self.error(
                format!("{path}/value"),
                format!(
                    "a count is never negative; comparing it with {} is constant",
                    cmp.value
                ),
            );
            return None;
        }
        Some(*cmp)
    }

    fn condition(
        &mut self,
        condition: &Condition,
        path: &str,
        scope: Scope,
        zone: Zone,
        known: Option<ValueType>,
    ) -> Option<CompiledCondition> {
        let operator = condition.operator;
        let value_path = format!("{path}/value");
        let errors_before = self.errors.len();
        if scope != Scope::ComputedTrait {
            self.property_path(&condition.path, &format!("{path}/path"));
        }
        if scope != Scope::Trait && operator.is_relative_time() {
            let target = if scope == Scope::EventProperty {
                "event properties"
            } else {
                "computed traits"
            };
            self.error(format!("{path}/operator"), format!("`{}` depends on the current time and is not allowed on {target}; use the event window instead", operator.name()));
            return None;
        }
        if let Some(value_type) = known
            && !operators_for(value_type).contains(&operator)
        {
            self.error(
                format!("{path}/operator"),
                format!(
                    "`{}` does not apply to {} `{}` (type {})",
                    operator.name(),
                    if scope == Scope::ComputedTrait {
                        "computed trait"
                    } else {
                        "trait"
                    },
                    condition.path,
                    type_label(value_type)
                ),
            );
        }
        let tz = match self.zone(condition.tz.as_deref(), &format!("{path}/tz")) {
            Some(explicit) => TzRule::Fixed(explicit),
            None if scope == Scope::Trait => TzRule::Profile { fallback: zone },
            None => TzRule::Fixed(zone),
        };
        let needs_unit = matches!(
            operator,
            Operator::WithinLast | Operator::WithinNext | Operator::MoreThanAgo
        );
        if condition.unit.is_some() && !needs_unit {
            self.error(
                format!("{path}/unit"),
                format!(
                    "`unit` only applies to within_last, within_next and more_than_ago, not `{}`",
                    operator.name()
                ),
            );
        }
        let value = condition.value.as_ref();
        let operand = match operator {
            Operator::Exists | Operator::NotExists | Operator::Anniversary => {
                if value.is_some() {
                    self.error(&value_path, format!("`{}` takes no value", operator.name()));
                }
                Operand::None
            }
            Operator::Eq | Operator::Neq => match value {
                Some(value) if scalar(value) => {
                    if let Some(value_type) = known {
                        let matches_type = matches!(
                            (value_type, value),
                            (ValueType::Number, Value::Number(_))
                                | (ValueType::String | ValueType::Time, Value::String(_))
                                | (ValueType::Boolean, Value::Bool(_))
                                | (ValueType::Time, Value::Number(_))
                        );
                        if !matches_type {
                            self.error(
                                &value_path,
                                format!(
                                    "type mismatch: `{}` is a {} but the value is a {}",
                                    condition.path,
                                    type_label(value_type),
                                    type_name(value)
                                ),
                            );
                        }
                    }
                    Operand::Scalar(value.clone())
                }
                other => {
                    return self.operand_error(
                        &value_path,
                        operator,
                        "a string, number or boolean",
                        other,
                    );
                }
            },
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
                match value.and_then(Value::as_f64) {
                    Some(number) => Operand::Number(number),
                    None => return self.operand_error(&value_path, operator, "a number", value),
                }
            }
            Operator::Between => match value.and_then(Value::as_array).map(Vec::as_slice) {
                Some([low, high]) if low.is_number() && high.is_number() => {
                    let (low, high) = (low.as_f64().unwrap_or(0.0), high.as_f64().unwrap_or(0.0));
                    if low > high {
                        self.error(
                            &value_path,
                            format!("between needs low <= high, got [{low}, {high}]"),
                        );
                    }
                    Operand::Range(low, high)
                }
                _ => {
                    return self.operand_error(
                        &value_path,
                        operator,
                        "a two-number array [low, high]",
                        value,
                    );
                }
            },
            Operator::In
            | Operator::NotIn
            | Operator::ContainsAny
            | Operator::ContainsAll
            | Operator::ContainsNone => match value.and_then(Value::as_array) {
                Some(items)
                    if !items.is_empty()
                        && items.len() <= MAX_LIST_VALUES
                        && items.iter().all(scalar) =>
                {
                    Operand::List(items.clone())
                }
                Some(items) if items.len() > MAX_LIST_VALUES => {
                    self.error(
                        &value_path,
                        format!(
                            "at most {MAX_LIST_VALUES} values are allowed, got {}",
                            items.len()
                        ),
                    );
                    return None;
                }
                _ => {
                    return self.operand_error(
                        &value_path,
                        operator,
                        "a non-empty array of strings, numbers or booleans",
                        value,
                    );
                }
            },
            Operator::Contains
            | Operator::NotContains
            | Operator::StartsWith
            | Operator::EndsWith => match value.and_then(Value::as_str) {
                Some(text) => Operand::Text(text.to_string()),
                None => return self.operand_error(&value_path, operator, "a string", value),
            },
            Operator::Regex => match value.and_then(Value::as_str) {
                Some(pattern) if pattern.len() > MAX_PATTERN_BYTES => {
                    self.error(
                        &value_path,
                        format!(
                            "regex is {} bytes long; the limit is {MAX_PATTERN_BYTES}",
                            pattern.len()
                        ),
                    );
                    return None;
                }
                Some(pattern) => match RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(regex) => Operand::Pattern(regex),
                    Err(regex::Error::CompiledTooBig(limit)) => {
                        self.error(&value_path, format!("regex is too costly: its compiled form exceeds {limit} bytes; simplify it (fewer repetitions or alternatives)"));
                        return None;
                    }
                    Err(error) => {
                        self.error(
                            &value_path,
                            format!(
                                "invalid regex: {}",
                                error.to_string().lines().last().unwrap_or("syntax error")
                            ),
                        );
                        return None;
                    }
                },
                None => {
                    return self.operand_error(&value_path, operator, "a pattern string", value);
                }
            },
            Operator::Before | Operator::After => match value.and_then(time::parse_time_value) {
                Some(time_value) => Operand::Time(time_value),
                None => {
                    return self.operand_error(
                        &value_path,
                        operator,
                        "a time (epoch ms, RFC 3339, or YYYY-MM-DD)",
                        value,
                    );
                }
            },
            Operator::WithinLast | Operator::WithinNext | Operator::MoreThanAgo => {
                let Some(unit) = condition.unit else {
                    self.error(
                        format!("{path}/unit"),
                        format!(
                            "`{}` needs a `unit` (seconds, minutes, hours, days, weeks)",
                            operator.name()
                        ),
                    );
                    return None;
                };
                match value.and_then(Value::as_i64) {
                    Some(n) if n >= 1 => match n
                        .checked_mul(unit.millis())
                        .filter(|length| *length <= MAX_TRAIT_DURATION_MS)
                    {
                        Some(length) => Operand::DurationMs(length),
                        None => {
                            self.error(&value_path, "duration exceeds the maximum of 100 years");
                            return None;
                        }
                    },
                    _ => {
                        return self.operand_error(
                            &value_path,
                            operator,
                            "a positive integer",
                            value,
                        );
                    }
                }
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(CompiledCondition {
            path: condition.path.clone(),
            operator,
            operand,
            tz,
        })
    }

    fn operand_error<T>(
        &mut self,
        path: &str,
        operator: Operator,
        expected: &str,
        got: Option<&Value>,
    ) -> Option<T> {
        let got = match got {
            None => "nothing".to_string(),
            Some(value) => format!("a {}", type_name(value)),
        };
        self.error(
            path,
            format!("`{}` needs {expected}, got {got}", operator.name()),
        );
        None
    }

    /// Fixed thresholds: all three arrays, strictly ascending. Population quintiles: the
    /// arrays all or none (the server writes them), ascending with ties allowed.
    fn rfm_thresholds(&mut self, thresholds: &RfmThresholds, base: &str) {
        let dimensions = [
            ("recency_days", &thresholds.recency_days),
            ("frequency", &thresholds.frequency),
            ("monetary", &thresholds.monetary),
        ];
        let given = dimensions.iter().filter(|(_, cuts)| cuts.is_some()).count();
        for (name, cuts) in dimensions {
            let path = format!("{base}/rfm/{name}");
            let Some(cuts) = cuts else {
                if !thresholds.quintiles {
                    self.error(
                        path,
                        format!("fixed rfm thresholds need four `{name}` cut points (or set `\"quintiles\": true` to use the population's quintiles)"),
                    );
                } else if given > 0 {
                    self.error(
                        path,
                        "quintile cut points come as a set: give `recency_days`, `frequency` and `monetary`, or none (the recompute writes them)",
                    );
                }
                continue;
            };
            let finite = cuts.iter().all(|cut| cut.is_finite());
            if thresholds.quintiles {
                if !finite || !cuts.windows(2).all(|pair| pair[0] <= pair[1]) {
                    self.error(
                        path,
                        "quintile cut points must be finite and ascending (ties allowed)",
                    );
                }
            } else if !finite || !cuts.windows(2).all(|pair| pair[0] < pair[1]) {
                self.error(path, "thresholds must be finite and strictly ascending");
            }
        }
        if thresholds.computed.is_some() && !thresholds.quintiles {
            self.error(
                format!("{base}/rfm/computed"),
                "`computed` describes a quintile computation; fixed thresholds have none",
            );
        }
    }

    fn computed_trait(
        &mut self,
        definition: &ComputedTraitDefinition,
        base: &str,
    ) -> Option<CompiledTrait> {
        let errors_before = self.errors.len();
        self.name(&definition.id, &format!("{base}/id"), "computed trait id");
        let kind = definition.kind;
        let commerce = matches!(
            kind,
            TraitKind::LifetimeValue
                | TraitKind::OrderCount
                | TraitKind::AverageOrderValue
                | TraitKind::DaysSinceLastOrder
                | TraitKind::FavouriteCategory
                | TraitKind::Rfm
        );
        let event = match (&definition.event, commerce) {
            (Some(event), _) => event.clone(),
            (None, true) => "Order Completed".to_string(),
            (None, false) => {
                self.error(
                    format!("{base}/event"),
                    format!("`{}` needs an `event`", kind_name(kind)),
                );
                String::new()
            }
        };
        let needs_property = matches!(
            kind,
            TraitKind::Aggregation
                | TraitKind::MostFrequent
                | TraitKind::FirstValue
                | TraitKind::LastValue
                | TraitKind::UniqueList
                | TraitKind::UniqueListCount
        );
        let forbids_property = matches!(
            kind,
            TraitKind::EventCounter | TraitKind::OrderCount | TraitKind::FavouriteCategory
        );
        match &definition.property {
            None if needs_property => self.error(
                format!("{base}/property"),
                format!("`{}` needs a `property`", kind_name(kind)),
            ),
            Some(_) if forbids_property => self.error(
                format!("{base}/property"),
                format!("`{}` takes no `property`", kind_name(kind)),
            ),
            Some(property) => {
                self.property_path(property, &format!("{base}/property"));
            }
            None => {}
        }
        match (kind, definition.function) {
            (TraitKind::Aggregation, None) => self.error(
                format!("{base}/function"),
                "`aggregation` needs a `function` (sum, avg, min, max)",
            ),
            (TraitKind::Aggregation, Some(_)) | (_, None) => {}
            (_, Some(_)) => self.error(
                format!("{base}/function"),
                format!(
                    "`function` only applies to `aggregation`, not `{}`",
                    kind_name(kind)
                ),
            ),
        }
        match (kind, &definition.rfm) {
            (TraitKind::Rfm, None) => self.error(
                format!("{base}/rfm"),
                "`rfm` needs `rfm` thresholds: `recency_days`, `frequency` and `monetary` cut points, or `{\"quintiles\": true}`",
            ),
            (TraitKind::Rfm, Some(thresholds)) => self.rfm_thresholds(thresholds, base),
            (_, Some(_)) => self.error(
                format!("{base}/rfm"),
                format!(
                    "`rfm` thresholds only apply to kind `rfm`, not `{}`",
                    kind_name(kind)
                ),
            ),
            (_, None) => {}
        }
        let matcher = self.matcher(
            if event.is_empty() { "?" } else { &event },
            &definition.filters,
            base,
            Zone::UTC,
        );
        let window = self.window(&definition.window, &format!("{base}/window"), Zone::UTC);
        if self.errors.len() > errors_before {
            return None;
        }
        let tracks = Tracks {
            ends: matches!(kind, TraitKind::FirstValue | TraitKind::LastValue),
            counts: matches!(
                kind,
                TraitKind::MostFrequent
                    | TraitKind::UniqueList
                    | TraitKind::UniqueListCount
                    | TraitKind::FavouriteCategory
            ),
            flatten_arrays: kind == TraitKind::FavouriteCategory,
        };
        Some(CompiledTrait {
            id: definition.id.clone(),
            kind,
            matcher: matcher?,
            property: definition.property.clone(),
            function: definition.function,
            rfm: definition.rfm.clone(),
            spec: StoreSpec {
                window: window?,
                tracks,
                keep_newest: None,
            },
        })
    }
}

fn kind_name(kind: TraitKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The output type of a computed trait kind, when fixed.
fn output_type(kind: TraitKind) -> Option<ValueType> {
    match kind {
        TraitKind::EventCounter
        | TraitKind::Aggregation
        | TraitKind::UniqueListCount
        | TraitKind::LifetimeValue
        | TraitKind::OrderCount
        | TraitKind::AverageOrderValue
        | TraitKind::DaysSinceLastOrder => Some(ValueType::Number),
        TraitKind::UniqueList => Some(ValueType::Array),
        TraitKind::FavouriteCategory => Some(ValueType::String),
        TraitKind::Rfm => Some(ValueType::Object),
        TraitKind::MostFrequent | TraitKind::FirstValue | TraitKind::LastValue => None,
    }
}
