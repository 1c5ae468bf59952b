//! Feature and experiment evaluation for one user ([`Context`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::bucketing::BucketRange;
use crate::bucketing::{
    choose_variation, get_bucket_ranges, get_equal_weights, get_query_string_override, hash,
    in_namespace, in_range,
};
use crate::condition::{CompiledCondition, PositionHint, SavedGroups, get_path};
use crate::js;
use crate::model::{
    ContextualBanditAssignment, Experiment, ExperimentResult, FeatureDefinition, FeatureMap,
    FeatureResult, FeatureRule, FeatureSource, Filter, ParentCondition, Payload,
    StickyAssignmentsDocument, TrackingCall,
};
use crate::sticky::{
    StickyBucketService, sticky_bucket_attribute_key, sticky_bucket_experiment_key,
};
use crate::urls::{is_url_targeted, merge_query_strings};

/// Everything evaluation needs about one user, plus the shared payload.
///
/// Evaluation mutates only the bookkeeping: sticky bucket documents it assigns, and the
/// exposures it records for tracking (deduplicated per experiment/variation/user).
#[derive(Debug, Clone)]
pub struct Context {
    /// Features, auto experiments, saved groups and bandits, compiled; shared between users.
    compiled: Arc<CompiledPayload>,
    /// The user's attributes (a JSON object).
    pub attributes: Value,
    /// The current page URL (query-string overrides and URL targeting).
    pub url: String,
    /// `false` excludes the user from every experiment.
    pub enabled: bool,
    /// QA mode: no random assignment; only forced variations apply.
    pub qa_mode: bool,
    /// Experiment key → forced variation index.
    pub forced_variations: BTreeMap<String, i64>,
    /// Feature key → forced value (`source: override`).
    pub forced_features: BTreeMap<String, Value>,
    /// Sticky bucket documents by [`sticky_bucket_attribute_key`]; `None` disables sticky
    /// bucketing (and the `fallbackAttribute` of experiments).
    pub sticky_bucket_assignment_docs: Option<BTreeMap<String, StickyAssignmentsDocument>>,
    changed_sticky_docs: BTreeSet<String>,
    /// Deduplication keys of the exposures recorded so far (kept across `take_*`).
    tracked_experiments: HashSet<String, foldhash::fast::RandomState>,
    /// Reused buffer for building a deduplication key.
    dedupe_key: String,
    /// Exposures recorded and not yet taken; the experiments are shared, not copied.
    exposures: Vec<Exposure>,
    /// `exposures` as owned [`TrackingCall`]s, built on demand by [`Context::tracking_calls`]
    /// and reset whenever `exposures` changes.
    tracking_calls_view: OnceLock<Vec<TrackingCall>>,
    /// Reused between evaluations: indexes of the features being evaluated (cycle detection).
    feature_stack: Vec<usize>,
}

impl Default for Context {
    fn default() -> Self {
        Self::new(Arc::new(Payload::default()), Value::Object(Map::new()))
    }
}

impl Context {
    /// A context over `payload`, compiling it. To evaluate many users against one payload,
    /// compile it once ([`CompiledPayload::new`]) and use [`Context::with_compiled`].
    pub fn new(payload: Arc<Payload>, attributes: Value) -> Self {
        Self::with_compiled(Arc::new(CompiledPayload::new(payload)), attributes)
    }

    /// A context over an already compiled payload (cheap: nothing is copied).
    pub fn with_compiled(compiled: Arc<CompiledPayload>, attributes: Value) -> Self {
        Self {
            compiled,
            attributes,
            url: String::new(),
            enabled: true,
            qa_mode: false,
            forced_variations: BTreeMap::new(),
            forced_features: BTreeMap::new(),
            sticky_bucket_assignment_docs: None,
            changed_sticky_docs: BTreeSet::new(),
            tracked_experiments: HashSet::default(),
            dedupe_key: String::new(),
            exposures: Vec::new(),
            tracking_calls_view: OnceLock::new(),
            feature_stack: Vec::new(),
        }
    }

    /// The payload this context evaluates.
    pub fn payload(&self) -> &Arc<Payload> {
        &self.compiled.payload
    }

    /// Exposures recorded so far (each unique experiment/variation/user once), as owned
    /// [`TrackingCall`]s (built from [`Context::exposures`] on first use).
    pub fn tracking_calls(&self) -> &[TrackingCall] {
        self.tracking_calls_view.get_or_init(|| {
            self.exposures
                .iter()
                .cloned()
                .map(Exposure::into_tracking_call)
                .collect()
        })
    }

    /// Takes the recorded exposures as owned [`TrackingCall`]s, leaving the deduplication
    /// memory in place.
    pub fn take_tracking_calls(&mut self) -> Vec<TrackingCall> {
        let exposures = std::mem::take(&mut self.exposures);
        match self.tracking_calls_view.take() {
            Some(calls) => calls,
            None => exposures
                .into_iter()
                .map(Exposure::into_tracking_call)
                .collect(),
        }
    }

    /// Exposures recorded so far, sharing each experiment with the payload instead of copying
    /// it (the same exposures as [`Context::tracking_calls`]).
    pub fn exposures(&self) -> &[Exposure] {
        &self.exposures
    }

    /// Takes the recorded exposures without copying experiments, leaving the deduplication
    /// memory in place.
    pub fn take_exposures(&mut self) -> Vec<Exposure> {
        self.tracking_calls_view.take();
        std::mem::take(&mut self.exposures)
    }

    /// The `attribute name → value` pairs whose sticky bucket documents evaluation may read:
    /// the hash and fallback attributes of every experiment rule and auto experiment.
    pub fn sticky_bucket_attributes(&self) -> BTreeMap<String, String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for feature in self.payload().features.values() {
            for rule in &feature.rules {
                if rule.variations.is_some() || rule.contextual_variations.is_some() {
                    names.insert(
                        non_empty(rule.hash_attribute.as_deref())
                            .unwrap_or("id")
                            .into(),
                    );
                    if let Some(fallback) = non_empty(rule.fallback_attribute.as_deref()) {
                        names.insert(fallback.to_owned());
                    }
                }
            }
        }
        for experiment in &self.payload().experiments {
            names.insert(
                non_empty(experiment.hash_attribute.as_deref())
                    .unwrap_or("id")
                    .into(),
            );
            if let Some(fallback) = non_empty(experiment.fallback_attribute.as_deref()) {
                names.insert(fallback.to_owned());
            }
        }
        names
            .into_iter()
            .map(|name| {
                let (_, value) = self.hash_attribute(Some(&name), None);
                (name, sticky_string(&value))
            })
            .collect()
    }

    /// Enables sticky bucketing with the user's documents from `service`.
    pub fn load_sticky_buckets(&mut self, service: &dyn StickyBucketService) {
        let attributes = self.sticky_bucket_attributes();
        self.sticky_bucket_assignment_docs = Some(service.get_all_assignments(&attributes));
        self.changed_sticky_docs.clear();
    }

    /// Documents changed by evaluation since the last save, to persist.
    pub fn changed_sticky_bucket_docs(&self) -> Vec<StickyAssignmentsDocument> {
        let Some(docs) = &self.sticky_bucket_assignment_docs else {
            return Vec::new();
        };
        self.changed_sticky_docs
            .iter()
            .filter_map(|key| docs.get(key).cloned())
            .collect()
    }

    /// Saves the changed documents to `service`.
    pub fn save_sticky_buckets(&mut self, service: &mut dyn StickyBucketService) {
        for doc in self.changed_sticky_bucket_docs() {
            service.save_assignments(doc);
        }
        self.changed_sticky_docs.clear();
    }

    fn condition_passes(&self, condition: &CompiledCondition) -> bool {
        condition.matches(&self.attributes)
    }

    /// Resolves a hash attribute (default `id`): a literal key first, then a dotted path;
    /// missing reads as `""`. Falls back to `fallback` when the value is falsy.
    fn hash_attribute(&self, attribute: Option<&str>, fallback: Option<&str>) -> (String, Value) {
        let (name, value) = self.hash_attribute_ref(attribute, fallback);
        (name.to_owned(), value.into_owned())
    }

    /// [`Context::hash_attribute`] without copying the value.
    fn hash_attribute_ref<'name>(
        &self,
        attribute: Option<&'name str>,
        fallback: Option<&'name str>,
    ) -> (&'name str, Cow<'_, Value>) {
        let name = non_empty(attribute).unwrap_or("id");
        let value = self.resolve_attribute(name);
        if !js::truthy(&value)
            && let Some(fallback) = fallback
        {
            let fallback_value = self.resolve_attribute(fallback);
            if js::truthy(&fallback_value) {
                return (fallback, fallback_value);
            }
        }
        (name, value)
    }

    fn resolve_attribute(&self, key: &str) -> Cow<'_, Value> {
        if let Value::Object(map) = &self.attributes
            && let Some(value) = self.compiled.hash_attribute_hint.get(map, key)
        {
            return Cow::Borrowed(value);
        }
        match get_path(&self.attributes, key) {
            Cow::Borrowed(Value::Null) | Cow::Owned(Value::Null) => {
                Cow::Owned(Value::String(String::new()))
            }
            value => value,
        }
    }

    fn sticky_enabled(&self, disable_sticky_bucketing: Option<bool>) -> bool {
        self.sticky_bucket_assignment_docs.is_some() && disable_sticky_bucketing != Some(true)
    }

    /// Records an exposure unless the same one (hash attribute and value, experiment,
    /// variation) was recorded before.
    fn track(&mut self, experiment: &Arc<Experiment>, result: &Arc<ExperimentResult>) {
        use std::fmt::Write as _;
        let key = &mut self.dedupe_key;
        key.clear();
        key.push_str(&result.hash_attribute);
        match &result.hash_value {
            Value::String(text) => key.push_str(text),
            other => key.push_str(&js::to_string(other)),
        }
        key.push_str(&experiment.key);
        let _ = write!(key, "{}", result.variation_id);
        if self.tracked_experiments.contains(key.as_str()) {
            return;
        }
        self.tracked_experiments.insert(key.clone());
        self.tracking_calls_view.take();
        self.exposures.push(Exposure {
            experiment: Arc::clone(experiment),
            result: Arc::clone(result),
        });
    }
}

impl<'de> Deserialize<'de> for Context {
    /// Reads the conformance suite's context shape: payload fields (`features`,
    /// `savedGroups`, `experiments`, `contextualBandits`) next to the user fields.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Options {
            #[serde(flatten)]
            payload: Payload,
            #[serde(default)]
            attributes: Option<Value>,
            #[serde(default)]
            url: Option<String>,
            #[serde(default)]
            enabled: Option<bool>,
            #[serde(default)]
            qa_mode: Option<bool>,
            #[serde(default)]
            forced_variations: BTreeMap<String, i64>,
            #[serde(default)]
            forced_features: BTreeMap<String, Value>,
            #[serde(default)]
            sticky_bucket_assignment_docs: Option<BTreeMap<String, StickyAssignmentsDocument>>,
        }
        let options = Options::deserialize(deserializer)?;
        let attributes = match options.attributes {
            Some(Value::Object(map)) => Value::Object(map),
            _ => Value::Object(Map::new()),
        };
        let mut context = Context::new(Arc::new(options.payload), attributes);
        context.url = options.url.unwrap_or_default();
        context.enabled = options.enabled.unwrap_or(true);
        context.qa_mode = options.qa_mode.unwrap_or(false);
        context.forced_variations = options.forced_variations;
        context.forced_features = options.forced_features;
        context.sticky_bucket_assignment_docs = options.sticky_bucket_assignment_docs;
        Ok(context)
    }
}

/// An exposure to report, as recorded by evaluation: the experiment is shared with the
/// compiled payload (an `Arc`, not a copy). [`TrackingCall`] is the owned form.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub experiment: Arc<Experiment>,
    pub result: Arc<ExperimentResult>,
}

impl Exposure {
    /// The owned form (copies the experiment unless this was its last reference).
    pub fn into_tracking_call(self) -> TrackingCall {
        TrackingCall {
            experiment: Arc::unwrap_or_clone(self.experiment),
            result: Arc::unwrap_or_clone(self.result),
        }
    }
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.filter(|text| !text.is_empty())
}

/// `toString` for sticky bucket keys: strings as-is, anything else as JSON.
fn sticky_string(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => js::stringify(other),
    }
}

static NULL: Value = Value::Null;

/// The outcome of evaluating a feature ([`CompiledPayload::evaluate`]), sharing what comes
/// from the payload instead of copying it: the value is borrowed from the definitions (owned
/// only for a forced feature of the context), the experiment and its result are shared with the
/// recorded exposure. [`FeatureResult`] is the owned form ([`Evaluation::into_feature_result`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'p> {
    pub value: Cow<'p, Value>,
    pub on: bool,
    pub off: bool,
    pub source: FeatureSource,
    /// The rule's id, or `""`.
    pub rule_id: &'p str,
    pub experiment: Option<Arc<Experiment>>,
    pub experiment_result: Option<Arc<ExperimentResult>>,
}

impl Evaluation<'_> {
    fn new<'p>(
        value: Cow<'p, Value>,
        source: FeatureSource,
        rule_id: Option<&'p str>,
    ) -> Evaluation<'p> {
        let on = js::truthy(&value);
        Evaluation {
            value,
            on,
            off: !on,
            source,
            rule_id: rule_id.unwrap_or_default(),
            experiment: None,
            experiment_result: None,
        }
    }

    /// The owned form (what [`eval_feature`] returns).
    pub fn into_feature_result(self) -> FeatureResult {
        FeatureResult {
            value: self.value.into_owned(),
            on: self.on,
            off: self.off,
            source: self.source,
            rule_id: self.rule_id.to_owned(),
            experiment: self.experiment.map(Arc::unwrap_or_clone),
            experiment_result: self.experiment_result.map(Arc::unwrap_or_clone),
        }
    }
}

fn null_result<'p>(source: FeatureSource) -> Evaluation<'p> {
    Evaluation::new(Cow::Borrowed(&NULL), source, None)
}

/// A payload prepared for evaluation once, then shared by every user's [`Context`]: targeting
/// conditions compiled ([`CompiledCondition`]), each experiment rule's [`Experiment`] and
/// bucket ranges built, features indexed by key.
#[derive(Debug)]
pub struct CompiledPayload {
    payload: Arc<Payload>,
    feature_index: HashMap<String, usize, foldhash::fast::RandomState>,
    features: Vec<CompiledFeature>,
    /// Aligned with `payload.experiments`.
    auto_experiments: Vec<(Arc<Experiment>, ExperimentPlan)>,
    /// Leaf conditions of each contextual bandit, aligned with its `contexts` (`None`: no
    /// condition, the leaf always matches).
    bandit_leaves: BTreeMap<String, Vec<Option<CompiledCondition>>>,
    /// Where hash attributes (usually `id`) were last found in users' attribute objects.
    hash_attribute_hint: PositionHint,
}

#[derive(Debug)]
struct CompiledFeature {
    default_value: Value,
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
struct CompiledRule {
    rule: FeatureRule,
    condition: Option<CompiledCondition>,
    parents: Vec<CompiledParent>,
    /// For experiment rules: the experiment the rule describes.
    experiment: Option<(Arc<Experiment>, ExperimentPlan)>,
    /// The rule's `tracks` (exposures of remotely evaluated experiments).
    tracks: Vec<Exposure>,
}

/// A prerequisite with its condition compiled against `{"value": <parent value>}`.
#[derive(Debug)]
struct CompiledParent {
    id: String,
    condition: CompiledCondition,
    gate: bool,
}

/// What running one experiment needs beyond its definition.
#[derive(Debug)]
struct ExperimentPlan {
    condition: Option<CompiledCondition>,
    parents: Vec<CompiledParent>,
    /// `ranges`, or the ranges from coverage and weights.
    ranges: Vec<BucketRange>,
}

impl ExperimentPlan {
    fn new(experiment: &Experiment, saved_groups: &SavedGroups) -> Self {
        Self {
            condition: experiment
                .condition
                .as_ref()
                .map(|condition| CompiledCondition::compile(condition, saved_groups)),
            parents: compile_parents(experiment.parent_conditions.as_deref(), saved_groups),
            ranges: experiment_ranges(experiment),
        }
    }
}

fn experiment_ranges(experiment: &Experiment) -> Vec<BucketRange> {
    match &experiment.ranges {
        Some(ranges) => ranges.clone(),
        None => get_bucket_ranges(
            experiment.variations.len(),
            experiment.coverage,
            experiment.weights.as_deref(),
        ),
    }
}

fn compile_parents(
    parents: Option<&[ParentCondition]>,
    saved_groups: &SavedGroups,
) -> Vec<CompiledParent> {
    parents
        .unwrap_or_default()
        .iter()
        .map(|parent| {
            let condition = match &parent.condition {
                Value::Null => Value::Object(Map::new()),
                other => other.clone(),
            };
            CompiledParent {
                id: parent.id.clone(),
                condition: CompiledCondition::compile(&condition, saved_groups),
                gate: parent.gate == Some(true),
            }
        })
        .collect()
}

impl CompiledPayload {
    pub fn new(payload: Arc<Payload>) -> Self {
        let saved_groups = &payload.saved_groups;
        let mut feature_index = HashMap::with_capacity_and_hasher(
            payload.features.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut features = Vec::with_capacity(payload.features.len());
        for (key, feature) in &payload.features {
            let rules = feature
                .rules
                .iter()
                .map(|rule| {
                    let variations = rule
                        .contextual_variations
                        .as_ref()
                        .or(rule.variations.as_ref());
                    let experiment = variations.map(|variations| {
                        let experiment = experiment_from_rule(rule, key, variations);
                        let plan = ExperimentPlan::new(&experiment, saved_groups);
                        (Arc::new(experiment), plan)
                    });
                    let tracks = rule
                        .tracks
                        .iter()
                        .flatten()
                        .map(|track| Exposure {
                            experiment: Arc::new(track.experiment.clone()),
                            result: Arc::new(track.result.clone()),
                        })
                        .collect();
                    CompiledRule {
                        condition: rule
                            .condition
                            .as_ref()
                            .map(|condition| CompiledCondition::compile(condition, saved_groups)),
                        parents: compile_parents(rule.parent_conditions.as_deref(), saved_groups),
                        experiment,
                        tracks,
                        rule: rule.clone(),
                    }
                })
                .collect();
            feature_index.insert(key.clone(), features.len());
            features.push(CompiledFeature {
                default_value: feature.default_value.clone(),
                rules,
            });
        }
        let auto_experiments = payload
            .experiments
            .iter()
            .map(|experiment| {
                (
                    Arc::new(experiment.clone()),
                    ExperimentPlan::new(experiment, saved_groups),
                )
            })
            .collect();
        let bandit_leaves = payload
            .contextual_bandits
            .iter()
            .map(|(reference, definition)| {
                let leaves = definition
                    .contexts
                    .iter()
                    .map(|leaf| match &leaf.condition {
                        Value::Null => None,
                        condition => Some(CompiledCondition::compile(condition, saved_groups)),
                    })
                    .collect();
                (reference.clone(), leaves)
            })
            .collect();
        Self {
            payload,
            feature_index,
            features,
            auto_experiments,
            bandit_leaves,
            hash_attribute_hint: PositionHint::default(),
        }
    }

    pub fn payload(&self) -> &Arc<Payload> {
        &self.payload
    }

    /// Evaluates feature `key` of this payload for the user in `ctx` (normally a context
    /// created over this payload: the definitions come from `self`, the user's attributes,
    /// overrides and bookkeeping from `ctx`). Same semantics as [`eval_feature`], without
    /// copying definitions into the result.
    pub fn evaluate<'p>(&'p self, ctx: &mut Context, key: &str) -> Evaluation<'p> {
        let mut stack = std::mem::take(&mut ctx.feature_stack);
        stack.clear();
        let result = eval_feature_in_stack(self, ctx, key, &mut stack);
        ctx.feature_stack = stack;
        result
    }
}

/// Evaluates feature `key` for the user in `ctx`.
pub fn eval_feature(ctx: &mut Context, key: &str) -> FeatureResult {
    let compiled = Arc::clone(&ctx.compiled);
    compiled.evaluate(ctx, key).into_feature_result()
}

/// Runs an experiment directly (not through a feature) for the user in `ctx`.
pub fn run_experiment(ctx: &mut Context, experiment: &Experiment) -> ExperimentResult {
    let plan = ExperimentPlan::new(experiment, &ctx.payload().saved_groups);
    let compiled = Arc::clone(&ctx.compiled);
    run_planned(&compiled, ctx, &Arc::new(experiment.clone()), &plan)
}

fn run_planned(
    compiled: &CompiledPayload,
    ctx: &mut Context,
    experiment: &Arc<Experiment>,
    plan: &ExperimentPlan,
) -> ExperimentResult {
    let mut stack = Vec::new();
    match run(compiled, ctx, experiment, plan, None, &mut stack, None) {
        Ran::Assigned(result, _) => Arc::unwrap_or_clone(result),
        Ran::NotAssigned(spec) => experiment_result(ctx, experiment, None, spec),
    }
}

/// A URL redirect chosen by a redirect auto experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectDecision {
    pub experiment_key: String,
    /// The variation's `urlRedirect`.
    pub url_redirect: String,
    /// Where to navigate: `url_redirect`, with the current query string merged in when the
    /// experiment has `persistQueryString`.
    pub url_with_params: String,
    pub result: ExperimentResult,
}

/// Runs the payload's redirect auto experiments in order and returns the first redirect the
/// user is assigned to (skipping redirects whose target would itself be targeted, a loop).
pub fn get_redirect(ctx: &mut Context) -> Option<RedirectDecision> {
    let compiled = Arc::clone(&ctx.compiled);
    for (experiment, plan) in &compiled.auto_experiments {
        let Some(patterns) = &experiment.url_patterns else {
            continue;
        };
        let is_redirect = experiment.variations.iter().any(
            |variation| matches!(variation, Value::Object(map) if map.contains_key("urlRedirect")),
        );
        if !is_redirect {
            continue;
        }
        let result = run_planned(&compiled, ctx, experiment, plan);
        if !result.in_experiment {
            continue;
        }
        let Some(url_redirect) = result.value.get("urlRedirect").and_then(Value::as_str) else {
            continue;
        };
        if url_redirect.is_empty() {
            continue;
        }
        let url_with_params = if experiment.persist_query_string == Some(true) {
            merge_query_strings(&ctx.url, url_redirect)
        } else {
            url_redirect.to_owned()
        };
        if is_url_targeted(&url_with_params, patterns) {
            continue;
        }
        return Some(RedirectDecision {
            experiment_key: experiment.key.clone(),
            url_redirect: url_redirect.to_owned(),
            url_with_params,
            result,
        });
    }
    None
}

fn eval_feature_in_stack<'p>(
    compiled: &'p CompiledPayload,
    ctx: &mut Context,
    id: &str,
    stack: &mut Vec<usize>,
) -> Evaluation<'p> {
    // Only features with rules can recurse, so the stack holds indexes of known features.
    let index = compiled.feature_index.get(id).copied();
    if let Some(index) = index {
        if stack.contains(&index) {
            return null_result(FeatureSource::CyclicPrerequisite);
        }
        stack.push(index);
    }

    if let Some(forced) = ctx.forced_features.get(id) {
        return Evaluation::new(Cow::Owned(forced.clone()), FeatureSource::Override, None);
    }
    let Some(index) = index else {
        return null_result(FeatureSource::UnknownFeature);
    };
    let feature = &compiled.features[index];

    let depth_before_rules = stack.len();
    'rules: for compiled_rule in &feature.rules {
        let rule = &compiled_rule.rule;
        for parent in &compiled_rule.parents {
            stack.truncate(depth_before_rules);
            match check_parent(compiled, ctx, parent, stack) {
                ParentOutcome::Passed => {}
                ParentOutcome::Cyclic => {
                    return null_result(FeatureSource::CyclicPrerequisite);
                }
                ParentOutcome::Failed => {
                    if parent.gate {
                        return null_result(FeatureSource::Prerequisite);
                    }
                    continue 'rules;
                }
            }
        }
        if let Some(filters) = &rule.filters
            && is_filtered_out(ctx, filters)
        {
            continue;
        }
        if let Some(forced_value) = &rule.force {
            if let Some(condition) = &compiled_rule.condition
                && !ctx.condition_passes(condition)
            {
                continue;
            }
            if !is_included_in_rollout(ctx, rule, id) {
                continue;
            }
            for track in &compiled_rule.tracks {
                ctx.track(&track.experiment, &track.result);
            }
            return Evaluation::new(
                Cow::Borrowed(forced_value),
                FeatureSource::Force,
                rule.id.as_deref(),
            );
        }
        let Some((rule_experiment, plan)) = &compiled_rule.experiment else {
            continue;
        };
        let mut bandit_experiment = None;
        let bandit =
            select_bandit_leaf(compiled, ctx, rule, rule_experiment, &mut bandit_experiment);
        let experiment = bandit_experiment.as_ref().unwrap_or(rule_experiment);
        let (result, experiment) =
            match run(compiled, ctx, experiment, plan, Some(id), stack, bandit) {
                // The experiment as tracked (with the bandit assignment, if any).
                Ran::Assigned(result, tracked) => (result, tracked),
                Ran::NotAssigned(spec) if spec.is_in_experiment(experiment) => (
                    Arc::new(experiment_result(ctx, experiment, Some(id), spec)),
                    Arc::clone(experiment),
                ),
                Ran::NotAssigned(_) => continue,
            };
        if result.passthrough != Some(true) {
            // Bandit leaves change weights only, so the value is the rule's variation.
            let value = rule_experiment
                .variations
                .get(result.variation_id as usize)
                .unwrap_or(&NULL);
            let mut feature = Evaluation::new(
                Cow::Borrowed(value),
                FeatureSource::Experiment,
                rule.id.as_deref(),
            );
            feature.experiment = Some(experiment);
            feature.experiment_result = Some(result);
            return feature;
        }
    }
    Evaluation::new(
        Cow::Borrowed(&feature.default_value),
        FeatureSource::DefaultValue,
        None,
    )
}

enum ParentOutcome {
    Passed,
    Failed,
    Cyclic,
}

fn check_parent(
    compiled: &CompiledPayload,
    ctx: &mut Context,
    parent: &CompiledParent,
    stack: &mut Vec<usize>,
) -> ParentOutcome {
    let parent_result = eval_feature_in_stack(compiled, ctx, &parent.id, stack);
    if parent_result.source == FeatureSource::CyclicPrerequisite {
        return ParentOutcome::Cyclic;
    }
    let value_object = json!({ "value": parent_result.value.into_owned() });
    if parent.condition.matches(&value_object) {
        ParentOutcome::Passed
    } else {
        ParentOutcome::Failed
    }
}

/// Builds the experiment an experiment rule describes (only the fields the rule sets).
fn experiment_from_rule(rule: &FeatureRule, feature_id: &str, variations: &[Value]) -> Experiment {
    Experiment {
        key: non_empty(rule.key.as_deref())
            .unwrap_or(feature_id)
            .to_owned(),
        variations: variations.to_vec(),
        coverage: rule.coverage,
        weights: rule.weights.clone(),
        hash_attribute: non_empty(rule.hash_attribute.as_deref()).map(str::to_owned),
        fallback_attribute: non_empty(rule.fallback_attribute.as_deref()).map(str::to_owned),
        disable_sticky_bucketing: rule.disable_sticky_bucketing.filter(|disabled| *disabled),
        bucket_version: rule.bucket_version,
        min_bucket_version: rule.min_bucket_version,
        namespace: rule.namespace.clone(),
        meta: rule.meta.clone(),
        ranges: rule.ranges.clone(),
        name: non_empty(rule.name.as_deref()).map(str::to_owned),
        phase: non_empty(rule.phase.as_deref()).map(str::to_owned),
        seed: non_empty(rule.seed.as_deref()).map(str::to_owned),
        hash_version: rule.hash_version.filter(|version| *version != 0),
        filters: rule.filters.clone(),
        condition: rule.condition.clone(),
        ..Experiment::default()
    }
}

/// The contextual-bandit leaf selected for a rule (weights are written into the experiment).
#[derive(Debug, Clone, Copy)]
struct BanditLeaf {
    leaf_id: i64,
    bandit_version: Option<i64>,
}

/// Routes the user to the first leaf whose condition passes and uses its weights; with no
/// match the rule's (marginal) weights stay and the leaf is `-1`. A dangling reference runs the
/// rule as a plain experiment without bandit metadata.
fn select_bandit_leaf(
    compiled: &CompiledPayload,
    ctx: &Context,
    rule: &FeatureRule,
    rule_experiment: &Experiment,
    bandit_experiment: &mut Option<Arc<Experiment>>,
) -> Option<BanditLeaf> {
    let reference = rule.contextual_bandit_ref.as_deref()?;
    let definition = compiled.payload.contextual_bandits.get(reference)?;
    let leaf_conditions = compiled.bandit_leaves.get(reference)?;
    let matched = definition
        .contexts
        .iter()
        .zip(leaf_conditions)
        .find(|(_, condition)| match condition {
            None => true,
            Some(condition) => ctx.condition_passes(condition),
        });
    let leaf_id = match matched {
        Some((leaf, _)) => {
            let mut experiment = rule_experiment.clone();
            experiment.weights = Some(leaf.weights.clone());
            *bandit_experiment = Some(Arc::new(experiment));
            leaf.leaf_id
        }
        None => -1,
    };
    Some(BanditLeaf {
        leaf_id,
        bandit_version: definition.bandit_version,
    })
}

fn attach_bandit(experiment: &mut Experiment, result: &ExperimentResult) {
    if let (Some(leaf_id), Some(variation_weights)) = (result.leaf_id, &result.variation_weights) {
        experiment.contextual_bandit = Some(ContextualBanditAssignment {
            leaf_id,
            variation_weights: variation_weights.clone(),
            bandit_version: result.bandit_version,
        });
    }
}

fn is_filtered_out(ctx: &Context, filters: &[Filter]) -> bool {
    filters.iter().any(|filter| {
        let (_, value) = ctx.hash_attribute(filter.attribute.as_deref(), None);
        if !js::truthy(&value) {
            return true;
        }
        let version = filter.hash_version.filter(|v| *v != 0).unwrap_or(2);
        match hash(&filter.seed, &js::to_string(&value), version) {
            Some(n) => !filter.ranges.iter().any(|range| in_range(n, *range)),
            None => true,
        }
    })
}

/// Percentage rollout of a force rule: `range` wins over `coverage`; coverage 0 excludes.
fn is_included_in_rollout(ctx: &Context, rule: &FeatureRule, feature_id: &str) -> bool {
    if rule.range.is_none() && rule.coverage.is_none() {
        return true;
    }
    if rule.range.is_none() && rule.coverage == Some(0.0) {
        return false;
    }
    let fallback = if ctx.sticky_enabled(rule.disable_sticky_bucketing) {
        non_empty(rule.fallback_attribute.as_deref())
    } else {
        None
    };
    let (_, value) = ctx.hash_attribute(rule.hash_attribute.as_deref(), fallback);
    if !js::truthy(&value) {
        return false;
    }
    let seed = non_empty(rule.seed.as_deref()).unwrap_or(feature_id);
    let version = rule.hash_version.filter(|v| *v != 0).unwrap_or(1);
    let Some(n) = hash(seed, &js::to_string(&value), version) else {
        return false;
    };
    match (rule.range, rule.coverage) {
        (Some(range), _) => in_range(n, range),
        (None, Some(coverage)) => n <= coverage,
        (None, None) => true,
    }
}

struct StickyLookup {
    variation: i64,
    version_is_blocked: bool,
}

fn sticky_bucket_variation(ctx: &Context, experiment: &Experiment) -> StickyLookup {
    let bucket_version = experiment.bucket_version.unwrap_or(0);
    let min_bucket_version = experiment.min_bucket_version.unwrap_or(0);
    let assignments = sticky_assignments(ctx, experiment);
    for blocked_version in 0..min_bucket_version.clamp(0, 10_000) {
        let blocked_key = sticky_bucket_experiment_key(&experiment.key, blocked_version);
        if assignments.contains_key(&blocked_key) {
            return StickyLookup {
                variation: -1,
                version_is_blocked: true,
            };
        }
    }
    let key = sticky_bucket_experiment_key(&experiment.key, bucket_version);
    let variation = match (assignments.get(&key), &experiment.meta) {
        (Some(variation_key), Some(meta)) => meta
            .iter()
            .position(|m| m.key.as_deref() == Some(variation_key.as_str()))
            .map_or(-1, |index| index as i64),
        _ => -1,
    };
    StickyLookup {
        variation,
        version_is_blocked: false,
    }
}

/// Assignments from the fallback attribute's document overlaid with the hash attribute's.
fn sticky_assignments(ctx: &Context, experiment: &Experiment) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    let Some(docs) = &ctx.sticky_bucket_assignment_docs else {
        return merged;
    };
    let (hash_name, hash_value) = ctx.hash_attribute(experiment.hash_attribute.as_deref(), None);
    let hash_key = sticky_bucket_attribute_key(&hash_name, &sticky_string(&hash_value));
    let (fallback_name, fallback_value) =
        ctx.hash_attribute(experiment.fallback_attribute.as_deref(), None);
    if js::truthy(&fallback_value) {
        let fallback_key =
            sticky_bucket_attribute_key(&fallback_name, &sticky_string(&fallback_value));
        if let Some(doc) = docs.get(&fallback_key) {
            merged.extend(doc.assignments.clone());
        }
    }
    if let Some(doc) = docs.get(&hash_key) {
        merged.extend(doc.assignments.clone());
    }
    merged
}

fn save_sticky_assignment(
    ctx: &mut Context,
    attribute_name: &str,
    attribute_value: &str,
    experiment_key: String,
    variation_key: &str,
) {
    let key = sticky_bucket_attribute_key(attribute_name, attribute_value);
    let Some(docs) = ctx.sticky_bucket_assignment_docs.as_mut() else {
        return;
    };
    let doc = docs
        .entry(key.clone())
        .or_insert_with(|| StickyAssignmentsDocument {
            attribute_name: attribute_name.to_owned(),
            attribute_value: attribute_value.to_owned(),
            assignments: BTreeMap::new(),
        });
    if doc.assignments.get(&experiment_key).map(String::as_str) != Some(variation_key) {
        doc.assignments
            .insert(experiment_key, variation_key.to_owned());
        ctx.changed_sticky_docs.insert(key);
    }
}

/// Result of a user who is not in the experiment (or forced into variation `index`).
struct ResultSpec {
    variation_index: i64,
    hash_used: bool,
    bucket: Option<f64>,
    sticky_bucket_used: bool,
}

impl ResultSpec {
    /// Whether the result this describes is in the experiment (a valid forced variation).
    fn is_in_experiment(&self, experiment: &Experiment) -> bool {
        self.variation_index >= 0 && self.variation_index < experiment.variations.len() as i64
    }

    fn excluded() -> Self {
        Self::forced(-1)
    }

    fn forced(variation_index: i64) -> Self {
        Self {
            variation_index,
            hash_used: false,
            bucket: None,
            sticky_bucket_used: false,
        }
    }
}

fn experiment_result(
    ctx: &Context,
    experiment: &Experiment,
    feature_id: Option<&str>,
    spec: ResultSpec,
) -> ExperimentResult {
    let variation_count = experiment.variations.len() as i64;
    let (variation_index, in_experiment) =
        if spec.variation_index < 0 || spec.variation_index >= variation_count {
            (0, false)
        } else {
            (spec.variation_index, true)
        };
    let fallback = if ctx.sticky_enabled(experiment.disable_sticky_bucketing) {
        experiment.fallback_attribute.as_deref()
    } else {
        None
    };
    let (hash_attribute, hash_value) =
        ctx.hash_attribute(experiment.hash_attribute.as_deref(), fallback);
    let meta = experiment
        .meta
        .as_ref()
        .and_then(|meta| meta.get(variation_index as usize));
    let key = meta
        .and_then(|meta| non_empty(meta.key.as_deref()))
        .map_or_else(|| variation_index.to_string(), str::to_owned);
    ExperimentResult {
        value: experiment
            .variations
            .get(variation_index as usize)
            .cloned()
            .unwrap_or(Value::Null),
        variation_id: variation_index,
        in_experiment,
        hash_used: spec.hash_used,
        hash_attribute,
        hash_value,
        feature_id: feature_id.map(str::to_owned),
        key,
        bucket: spec.bucket,
        name: meta
            .and_then(|meta| non_empty(meta.name.as_deref()))
            .map(str::to_owned),
        passthrough: meta.and_then(|meta| meta.passthrough).filter(|p| *p),
        sticky_bucket_used: spec.sticky_bucket_used,
        leaf_id: None,
        variation_weights: None,
        bandit_version: None,
    }
}

/// What [`run`] decided: a user in the experiment (sticky bucket saved, exposure recorded),
/// or the description of a result that was not assigned by hashing (excluded, or forced).
enum Ran {
    /// The result and the experiment as tracked (with a bandit assignment attached).
    Assigned(Arc<ExperimentResult>, Arc<Experiment>),
    NotAssigned(ResultSpec),
}

/// The experiment algorithm (steps numbered as in the GrowthBook spec).
fn run(
    compiled: &CompiledPayload,
    ctx: &mut Context,
    experiment: &Arc<Experiment>,
    plan: &ExperimentPlan,
    feature_id: Option<&str>,
    stack: &mut Vec<usize>,
    bandit: Option<BanditLeaf>,
) -> Ran {
    let excluded = || Ran::NotAssigned(ResultSpec::excluded());
    let key = experiment.key.as_str();
    let variation_count = experiment.variations.len();

    // 1-2. Invalid experiment or disabled context.
    if variation_count < 2 || !ctx.enabled {
        return excluded();
    }
    // 2.6. URL targeting.
    if let Some(patterns) = &experiment.url_patterns
        && !is_url_targeted(&ctx.url, patterns)
    {
        return excluded();
    }
    // 3. Query-string override.
    if let Some(forced) = get_query_string_override(key, &ctx.url, variation_count) {
        return Ran::NotAssigned(ResultSpec::forced(forced as i64));
    }
    // 4. Forced in the context.
    if let Some(forced) = ctx.forced_variations.get(key) {
        return Ran::NotAssigned(ResultSpec::forced(*forced));
    }
    // 5. Draft or inactive.
    if experiment.status.as_deref() == Some("draft") || experiment.active == Some(false) {
        return excluded();
    }
    // 6. Hash attribute.
    let sticky_enabled = ctx.sticky_enabled(experiment.disable_sticky_bucketing);
    let fallback = if sticky_enabled {
        experiment.fallback_attribute.as_deref()
    } else {
        None
    };
    let (_, hash_value) = ctx.hash_attribute_ref(experiment.hash_attribute.as_deref(), fallback);
    if !js::truthy(&hash_value) {
        return excluded();
    }
    // Hashing is pure, so it happens here, while the attribute is borrowed; step 9 uses `n`.
    let hash_text = js::to_text(&hash_value);
    let seed = non_empty(experiment.seed.as_deref()).unwrap_or(key);
    let version = experiment.hash_version.filter(|v| *v != 0).unwrap_or(1);
    let hashed = hash(seed, &hash_text, version);
    let outside_namespace = experiment
        .namespace
        .as_ref()
        .is_some_and(|namespace| !in_namespace(&hash_text, namespace));

    let mut assigned = -1;
    let mut found_sticky_bucket = false;
    let mut sticky_version_is_blocked = false;
    if sticky_enabled {
        let lookup = sticky_bucket_variation(ctx, experiment);
        found_sticky_bucket = lookup.variation >= 0;
        assigned = lookup.variation;
        sticky_version_is_blocked = lookup.version_is_blocked;
    }

    if !found_sticky_bucket {
        // 7. Filters, or the legacy namespace.
        if let Some(filters) = &experiment.filters {
            if is_filtered_out(ctx, filters) {
                return excluded();
            }
        } else if outside_namespace {
            return excluded();
        }
        // 8. Targeting condition.
        if let Some(condition) = &plan.condition
            && !ctx.condition_passes(condition)
        {
            return excluded();
        }
        // 8.05. Prerequisites.
        let depth_before = stack.len();
        for parent in &plan.parents {
            stack.truncate(depth_before);
            match check_parent(compiled, ctx, parent, stack) {
                ParentOutcome::Passed => {}
                ParentOutcome::Cyclic | ParentOutcome::Failed => return excluded(),
            }
        }
    }

    // 9. Hash and choose a variation.
    let Some(n) = hashed else {
        return excluded();
    };
    if !found_sticky_bucket {
        assigned = if bandit.is_some() {
            // A bandit leaf may have replaced the weights.
            choose_variation(n, &experiment_ranges(experiment))
        } else {
            choose_variation(n, &plan.ranges)
        };
    }
    // 9.5. An older sticky bucket blocks enrolment.
    if sticky_version_is_blocked {
        return Ran::NotAssigned(ResultSpec {
            sticky_bucket_used: true,
            ..ResultSpec::excluded()
        });
    }
    // 10. Not in the experiment (coverage).
    if assigned < 0 {
        return excluded();
    }
    // 11. Forced variation on the experiment.
    if let Some(forced) = experiment.force {
        return Ran::NotAssigned(ResultSpec::forced(forced));
    }
    // 12. QA mode; 12.5. stopped experiments.
    if ctx.qa_mode || experiment.status.as_deref() == Some("stopped") {
        return excluded();
    }
    // 13. In the experiment.
    let spec = ResultSpec {
        variation_index: assigned,
        hash_used: true,
        bucket: Some(n),
        sticky_bucket_used: found_sticky_bucket,
    };
    let mut result = experiment_result(ctx, experiment, feature_id, spec);
    if let Some(leaf) = bandit {
        result.leaf_id = Some(leaf.leaf_id);
        result.variation_weights = Some(
            experiment
                .weights
                .clone()
                .unwrap_or_else(|| get_equal_weights(variation_count as i64)),
        );
        result.bandit_version = leaf.bandit_version;
    }
    // 13.5. Persist the sticky bucket.
    if sticky_enabled {
        let bucket_key = sticky_bucket_experiment_key(key, experiment.bucket_version.unwrap_or(0));
        let hash_attribute = result.hash_attribute.clone();
        let variation_key = result.key.clone();
        save_sticky_assignment(
            ctx,
            &hash_attribute,
            &sticky_string(&result.hash_value),
            bucket_key,
            &variation_key,
        );
    }
    // 14. Record the exposure.
    let result = Arc::new(result);
    let tracked = if bandit.is_some() {
        let mut tracked_experiment = Experiment::clone(experiment);
        attach_bandit(&mut tracked_experiment, &result);
        Arc::new(tracked_experiment)
    } else {
        Arc::clone(experiment)
    };
    ctx.track(&tracked, &result);
    Ran::Assigned(result, tracked)
}

/// A payload evaluated for one user, as GrowthBook's remote evaluation serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteEvaluation {
    /// Every feature reduced to `{defaultValue: <value for this user>}`; a feature whose
    /// evaluation ran experiments gets one force rule with that value and `tracks`, so SDKs
    /// fire their tracking callback for it.
    pub features: FeatureMap,
    /// Auto experiments the user is in, with the other variations emptied and no condition.
    pub experiments: Vec<Experiment>,
    /// Every exposure recorded while evaluating (each experiment/variation once).
    pub tracking_calls: Vec<TrackingCall>,
}

/// Evaluates every feature and auto experiment of the payload for the user in `ctx` and returns
/// them in the `/api/features` shape (GrowthBook's back-end `evaluateFeatures`).
///
/// Like GrowthBook, a feature's `tracks` list every experiment run while evaluating it,
/// prerequisites included, even when an earlier feature already reported it (SDKs deduplicate).
pub fn evaluate_payload(ctx: &mut Context) -> RemoteEvaluation {
    let compiled = Arc::clone(&ctx.compiled);
    let mut kept: Vec<Exposure> = Vec::new();
    let keep_call = |call: &Exposure, kept: &mut Vec<Exposure>| {
        if !kept.contains(call) {
            kept.push(call.clone());
        }
    };
    let mut features = FeatureMap::new();
    for key in compiled.payload.features.keys() {
        ctx.tracked_experiments.clear();
        let result = compiled.evaluate(ctx, key);
        let calls = ctx.take_exposures();
        let mut feature = FeatureDefinition {
            default_value: result.value.clone().into_owned(),
            rules: Vec::new(),
        };
        if !calls.is_empty() {
            for call in &calls {
                keep_call(call, &mut kept);
            }
            let tracks = calls
                .into_iter()
                .map(|call| TrackingCall {
                    experiment: scrub_experiment(&call.experiment, call.result.variation_id),
                    result: Arc::unwrap_or_clone(call.result),
                })
                .collect();
            feature.rules.push(FeatureRule {
                force: Some(result.value.into_owned()),
                tracks: Some(tracks),
                ..FeatureRule::default()
            });
        }
        features.insert(key.clone(), feature);
    }
    let mut experiments = Vec::new();
    for (experiment, plan) in &compiled.auto_experiments {
        let result = run_planned(&compiled, ctx, experiment, plan);
        if result.in_experiment {
            experiments.push(scrub_experiment(experiment, result.variation_id));
        }
    }
    for call in ctx.take_exposures() {
        keep_call(&call, &mut kept);
    }
    RemoteEvaluation {
        features,
        experiments,
        tracking_calls: kept.into_iter().map(Exposure::into_tracking_call).collect(),
    }
}

/// The experiment as sent to the client: only the assigned variation keeps its value (the
/// others become `{}`), and the targeting condition is removed.
fn scrub_experiment(experiment: &Experiment, assigned_variation: i64) -> Experiment {
    let mut scrubbed = experiment.clone();
    for (index, variation) in scrubbed.variations.iter_mut().enumerate() {
        if index as i64 != assigned_variation {
            *variation = Value::Object(Map::new());
        }
    }
    scrubbed.condition = None;
    scrubbed
}
