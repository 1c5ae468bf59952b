//! Experiment results: exposures and metrics computed with SQL over the warehouse, analysed
//! with `atrium-stats`.
//!
//! A run ([`experiment_results`]) reads the warehouse's `events` once (`scan`): the
//! experiment's `Experiment Viewed` exposures (by the typed `experiment_id` column) and every
//! metric component's events, within the experiment's dates. Rows are folded in Rust into each
//! unit's first exposure (units are profiles, resolved through the identity graph snapshot, so
//! anonymous exposures and later identified conversions meet) and, per metric component, the
//! unit's total within the metric's window after that exposure and over the covariate lookback
//! before it ([`sql::results_query`] is the same computation as one SQL query). Units seen in two or more variations are
//! excluded and counted. Per-unit values are then capped (winsorized), folded into per-variation
//! sufficient statistics, and analysed: frequentist (optionally sequential) or Bayesian, CUPED
//! when the metric has a covariate, the SRM check, and Holm or Benjamini–Hochberg across the goal
//! metrics. A dimension breakdown repeats the analysis per value of an exposure column.
//!
//! **Architecture invariant:** no HTTP and no writes; the warehouse runs the query within
//! limits. **API boundary:** [`experiment_results`], [`MetricDefinition::parse`],
//! [`Report`] (serializable) and [`Report::to_table`].

pub mod metric;
mod scan;
pub mod sql;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use atrium_stats::{
    AnalysisSettings, BaseStatistic, Engine, Proportion, Ratio, RegressionAdjusted, SampleMean,
    adjust_p_values, adjusted_confidence_interval, analyze, srm_p_value,
};
use atrium_warehouse::{Warehouse, WarehouseError};
use serde::Serialize;

pub use atrium_stats::{
    BanditConfig, BanditWeights, Correction, EffectResult, Statistic, thompson_weights,
};
pub use metric::{Cap, Covariate, FilterOp, MetricDefinition, MetricError, MetricKind};
pub use sql::{DIMENSIONS, EXPOSURE_EVENT};

/// SRM p-values below this fail the check (GrowthBook's default).
pub const SRM_THRESHOLD: f64 = atrium_stats::DEFAULT_SRM_THRESHOLD;
/// Most values a breakdown reports; the rest are pooled as `(other)`.
pub const MAX_DIMENSION_VALUES: usize = 20;
/// Most units one analysis reads.
pub const MAX_UNITS: usize = 20_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("experiment `{experiment}` has no variations")]
    NoVariations { experiment: String },
    #[error("metric `{metric}` (referenced by {referenced_by}) is not defined")]
    UnknownMetric {
        metric: String,
        referenced_by: String,
    },
    #[error(
        "metric `{metric}`: a ratio's numerator and denominator must be count, sum or conversion metrics, `{component}` is a ratio"
    )]
    NestedRatio { metric: String, component: String },
    #[error("unknown dimension `{0}`: use one of {DIMENSIONS:?}")]
    UnknownDimension(String),
    #[error("invalid analysis settings: {0}")]
    Settings(String),
    #[error("the warehouse query failed: {0}")]
    Warehouse(#[from] WarehouseError),
    #[error("unexpected query result: {0}")]
    Shape(String),
    #[error("statistics failed: {0}")]
    Stats(#[from] atrium_stats::StatsError),
}

/// One arm as defined on the experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VariationSpec {
    /// The id exposures carry as `variation_id` (the variation key, by default its index).
    pub key: String,
    pub name: Option<String>,
}

/// What the analysis needs to know about the experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentSpec {
    pub key: String,
    pub variations: Vec<VariationSpec>,
    /// Planned traffic split (any positive scale); equal when absent.
    pub weights: Option<Vec<f64>>,
    /// Exposures before this are ignored (the experiment's start).
    pub start_ms: Option<i64>,
    /// Exposures and metric events at or after this are ignored (stop time, or now).
    pub end_ms: Option<i64>,
    pub goal_metrics: Vec<String>,
    pub guardrail_metrics: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    Frequentist,
    Bayesian,
}

/// How to analyse (the results route's query parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisOptions {
    pub engine: EngineChoice,
    pub alpha: f64,
    /// Sequential testing's tuning parameter N* (frequentist only).
    pub sequential_tuning: Option<f64>,
    /// Correction across the goal metrics' p-values (frequentist only).
    pub correction: Option<Correction>,
    /// Breakdown by this exposure column (see [`DIMENSIONS`]).
    pub dimension: Option<String>,
    pub timeout: Duration,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            engine: EngineChoice::Frequentist,
            alpha: 0.05,
            sequential_tuning: None,
            correction: None,
            dimension: None,
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VariationReport {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub users: u64,
    /// Planned share of traffic.
    pub weight: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SrmReport {
    pub p_value: f64,
    pub threshold: f64,
    pub passed: bool,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Exclusions {
    /// Units exposed to two or more variations (left out of every metric).
    pub multiple_variations: u64,
    /// Units whose exposures name no variation of the experiment.
    pub unknown_variation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    Goal,
    Guardrail,
}

/// One arm's value of one metric.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MetricValue {
    pub users: u64,
    /// Mean per unit (conversion rate, count or sum per unit, or the ratio of totals).
    pub mean: f64,
    /// Total over units (numerator total for ratios).
    pub total: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricReport {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: MetricRole,
    #[serde(rename = "type")]
    pub kind: MetricKind,
    pub inverse: bool,
    /// CUPED was applied (the metric has a covariate).
    pub cuped: bool,
    /// The per-unit cap used, when the metric is winsorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_value: Option<f64>,
    /// Per variation, control first.
    pub variations: Vec<MetricValue>,
    /// Each treatment against the control.
    pub effects: Vec<EffectResult>,
    /// Per variation, the sufficient statistic the effects were computed from (for bandit
    /// weights; not serialized).
    #[serde(skip)]
    pub statistics: Vec<Statistic>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DimensionSlice {
    pub value: String,
    pub users: Vec<u64>,
    pub srm: SrmReport,
    pub metrics: Vec<MetricReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DimensionReport {
    pub dimension: String,
    pub slices: Vec<DimensionSlice>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SettingsReport {
    pub engine: EngineChoice,
    pub alpha: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential_tuning: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correction: Option<Correction>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// The results of one experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub experiment: String,
    pub settings: SettingsReport,
    pub variations: Vec<VariationReport>,
    pub srm: SrmReport,
    pub excluded: Exclusions,
    pub metrics: Vec<MetricReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<DimensionReport>,
    /// Time spent in the warehouse query and in the analysis.
    pub query_ms: u64,
    pub analysis_ms: u64,
}

/// A non-ratio metric measured per unit (a column pair of the query).
struct ComponentInfo<'a> {
    key: String,
    definition: &'a MetricDefinition,
}

/// How an analysed metric reads its components.
enum Shape {
    Single(usize),
    Ratio(usize, usize),
}

struct AnalysedMetric<'a> {
    key: String,
    role: MetricRole,
    definition: &'a MetricDefinition,
    shape: Shape,
}

/// One unit: its variation, breakdown value, and its row in [`Columns`].
struct Unit {
    variation: usize,
    dimension: Option<String>,
    row: usize,
}

/// Every unit's value per component, one column per component (post-exposure and pre-exposure
/// totals; after [`finish_values`], metric values).
struct Columns {
    post: Vec<Vec<f64>>,
    pre: Vec<Vec<f64>>,
}

fn lookup<'a>(
    metrics: &'a BTreeMap<String, MetricDefinition>,
    key: &str,
    referenced_by: &str,
) -> Result<&'a MetricDefinition, ResultsError> {
    metrics.get(key).ok_or_else(|| ResultsError::UnknownMetric {
        metric: key.to_owned(),
        referenced_by: referenced_by.to_owned(),
    })
}

fn component_index<'a>(
    components: &mut Vec<ComponentInfo<'a>>,
    key: &str,
    definition: &'a MetricDefinition,
) -> usize {
    if let Some(index) = components.iter().position(|component| component.key == key) {
        return index;
    }
    components.push(ComponentInfo {
        key: key.to_owned(),
        definition,
    });
    components.len() - 1
}

/// Resolves the experiment's metrics into query components and analysed metrics.
fn plan_metrics<'a>(
    spec: &ExperimentSpec,
    metrics: &'a BTreeMap<String, MetricDefinition>,
) -> Result<(Vec<ComponentInfo<'a>>, Vec<AnalysedMetric<'a>>), ResultsError> {
    let mut components = Vec::new();
    let mut analysed = Vec::new();
    let referenced_by = format!("experiment `{}`", spec.key);
    let roles = spec
        .goal_metrics
        .iter()
        .map(|key| (key, MetricRole::Goal))
        .chain(
            spec.guardrail_metrics
                .iter()
                .map(|key| (key, MetricRole::Guardrail)),
        );
    for (key, role) in roles {
        if analysed
            .iter()
            .any(|metric: &AnalysedMetric| &metric.key == key)
        {
            continue;
        }
        let definition = lookup(metrics, key, &referenced_by)?;
        let shape = if definition.kind == MetricKind::Ratio {
            let mut sides = [0; 2];
            for (side, reference) in [&definition.numerator, &definition.denominator]
                .into_iter()
                .enumerate()
            {
                let component_key = reference.as_deref().unwrap_or_default();
                let component = lookup(metrics, component_key, &format!("ratio metric `{key}`"))?;
                if component.kind == MetricKind::Ratio {
                    return Err(ResultsError::NestedRatio {
                        metric: key.clone(),
                        component: component_key.to_owned(),
                    });
                }
                sides[side] = component_index(&mut components, component_key, component);
            }
            Shape::Ratio(sides[0], sides[1])
        } else {
            Shape::Single(component_index(&mut components, key, definition))
        };
        analysed.push(AnalysedMetric {
            key: key.clone(),
            role,
            definition,
            shape,
        });
    }
    Ok((components, analysed))
}

/// Per-unit rows from the scan: exposed units with a known single variation, each metric event
/// added to its component's post-exposure total when inside the metric's window after the
/// unit's first exposure, or to its pre-exposure total when inside the covariate lookback
/// before it. Counts exclusions.
fn fold_units(
    scanned: scan::Scanned,
    spec: &ExperimentSpec,
    components: &[ComponentInfo],
) -> Result<(Vec<Unit>, Columns, Exclusions), ResultsError> {
    let mut variation_index: HashMap<String, usize> = HashMap::new();
    for index in 0..spec.variations.len() {
        variation_index.insert(index.to_string(), index);
    }
    // Keys win over indexes when a key looks like another variation's index.
    for (index, variation) in spec.variations.iter().enumerate() {
        variation_index.insert(variation.key.clone(), index);
    }
    // The scan's variation ids, resolved once each.
    let variation_of: Vec<Option<usize>> = scanned
        .variation_ids
        .iter()
        .map(|id| variation_index.get(id).copied())
        .collect();
    const NOT_ANALYSED: u32 = u32::MAX;
    let mut position = vec![NOT_ANALYSED; scanned.units.len()];
    let mut first_times = Vec::new();
    let mut units = Vec::new();
    let mut excluded = Exclusions::default();
    for (index, unit) in scanned.units.into_iter().enumerate() {
        if unit.first_ts == i64::MAX {
            continue;
        }
        if unit.multiple {
            excluded.multiple_variations += 1;
            continue;
        }
        let found = unit.variation.and_then(|id| variation_of[id as usize]);
        let Some(variation) = found else {
            excluded.unknown_variation += 1;
            continue;
        };
        if units.len() == MAX_UNITS {
            return Err(ResultsError::Settings(format!(
                "more than {MAX_UNITS} units; narrow the analysis window"
            )));
        }
        position[index] = units.len() as u32;
        first_times.push(unit.first_ts);
        units.push(Unit {
            variation,
            dimension: unit.dimension,
            row: units.len(),
        });
    }
    let mut columns = Columns {
        post: vec![vec![0.0; units.len()]; components.len()],
        pre: vec![vec![0.0; units.len()]; components.len()],
    };
    let windows: Vec<(Option<i64>, Option<i64>)> = components
        .iter()
        .map(|component| {
            (
                component.definition.window_ms(),
                component.definition.lookback_ms(),
            )
        })
        .collect();
    for event in &scanned.metric_events {
        let at = position[event.unit as usize];
        if at == NOT_ANALYSED {
            continue;
        }
        let first_ts = first_times[at as usize];
        let component = event.component as usize;
        let (window, lookback) = windows[component];
        let row = at as usize;
        if event.ts >= first_ts {
            if window.is_none_or(|window| event.ts < first_ts.saturating_add(window)) {
                columns.post[component][row] += event.value;
            }
        } else if let Some(lookback) = lookback
            && event.ts >= first_ts.saturating_sub(lookback)
        {
            columns.pre[component][row] += event.value;
        }
    }
    Ok((units, columns, excluded))
}

/// Nearest-rank quantile of `values` (sorted in place).
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// Turns raw totals into metric values (0/1 for conversions) and applies caps; returns each
/// component's cap.
fn finish_values(columns: &mut Columns, components: &[ComponentInfo]) -> Vec<Option<f64>> {
    let mut caps = Vec::with_capacity(components.len());
    for (index, component) in components.iter().enumerate() {
        let definition = component.definition;
        if definition.kind == MetricKind::Conversion {
            for value in columns.post[index]
                .iter_mut()
                .chain(columns.pre[index].iter_mut())
            {
                *value = if *value > 0.0 { 1.0 } else { 0.0 };
            }
        }
        let cap = match definition.cap {
            Some(Cap::Absolute { value }) => Some(value),
            Some(Cap::Percentile {
                value,
                ignore_zeros,
            }) => {
                let mut values: Vec<f64> = columns.post[index]
                    .iter()
                    .copied()
                    .filter(|value| !ignore_zeros || *value != 0.0)
                    .collect();
                quantile(&mut values, value)
            }
            None => None,
        };
        if let Some(cap) = cap {
            for value in columns.post[index]
                .iter_mut()
                .chain(columns.pre[index].iter_mut())
            {
                *value = value.min(cap);
            }
        }
        caps.push(cap);
    }
    caps
}

/// Running sums of one component over a group of units.
#[derive(Clone, Copy, Default)]
struct Sums {
    n: u64,
    sum: f64,
    sum_squares: f64,
    pre_sum: f64,
    pre_sum_squares: f64,
    post_pre: f64,
}

fn base(kind: MetricKind, n: u64, sum: f64, sum_squares: f64) -> BaseStatistic {
    if kind == MetricKind::Conversion {
        BaseStatistic::Proportion(Proportion { n, sum })
    } else {
        BaseStatistic::SampleMean(SampleMean {
            n,
            sum,
            sum_squares,
        })
    }
}

/// One metric's statistic for one arm.
fn statistic(
    metric: &AnalysedMetric,
    components: &[ComponentInfo],
    columns: &Columns,
    units: &[&Unit],
) -> (Statistic, MetricValue) {
    match metric.shape {
        Shape::Single(index) => {
            let mut sums = Sums::default();
            let (posts, pres) = (&columns.post[index], &columns.pre[index]);
            for unit in units {
                let post = posts[unit.row];
                let pre = pres[unit.row];
                sums.n += 1;
                sums.sum += post;
                sums.sum_squares += post * post;
                sums.pre_sum += pre;
                sums.pre_sum_squares += pre * pre;
                sums.post_pre += post * pre;
            }
            let kind = metric.definition.kind;
            let post = base(kind, sums.n, sums.sum, sums.sum_squares);
            let statistic = if metric.definition.covariate.is_some() {
                Statistic::RegressionAdjusted(RegressionAdjusted {
                    n: sums.n,
                    post,
                    pre: base(kind, sums.n, sums.pre_sum, sums.pre_sum_squares),
                    post_pre_sum_of_products: sums.post_pre,
                })
            } else {
                match post {
                    BaseStatistic::Proportion(proportion) => Statistic::Proportion(proportion),
                    BaseStatistic::SampleMean(mean) => Statistic::SampleMean(mean),
                }
            };
            let mean = if sums.n == 0 {
                0.0
            } else {
                sums.sum / sums.n as f64
            };
            (
                statistic,
                MetricValue {
                    users: sums.n,
                    mean,
                    total: sums.sum,
                },
            )
        }
        Shape::Ratio(numerator, denominator) => {
            let (mut n, mut m, mut mm, mut d, mut dd, mut md) = (0u64, 0.0, 0.0, 0.0, 0.0, 0.0);
            let (numerators, denominators) = (&columns.post[numerator], &columns.post[denominator]);
            for unit in units {
                let (a, b) = (numerators[unit.row], denominators[unit.row]);
                n += 1;
                m += a;
                mm += a * a;
                d += b;
                dd += b * b;
                md += a * b;
            }
            let ratio = Ratio {
                n,
                numerator: base(components[numerator].definition.kind, n, m, mm),
                denominator: base(components[denominator].definition.kind, n, d, dd),
                m_d_sum_of_products: md,
            };
            let mean = ratio.mean();
            (
                Statistic::Ratio(ratio),
                MetricValue {
                    users: n,
                    mean,
                    total: m,
                },
            )
        }
    }
}

fn settings_for(
    options: &AnalysisOptions,
    definition: &MetricDefinition,
    weights: &[f64],
    phase_length_days: f64,
) -> AnalysisSettings {
    let mut settings = match options.engine {
        EngineChoice::Frequentist => {
            let mut settings = AnalysisSettings::frequentist();
            if let Engine::Frequentist {
                sequential_tuning_parameter,
                ..
            } = &mut settings.engine
            {
                *sequential_tuning_parameter = options.sequential_tuning;
            }
            settings
        }
        EngineChoice::Bayesian => AnalysisSettings::bayesian(),
    };
    settings.alpha = options.alpha;
    settings.inverse = definition.inverse;
    settings.traffic_weights = Some(weights.to_vec());
    settings.phase_length_days = phase_length_days;
    settings
}

/// What every group of units (the whole experiment, or one breakdown slice) is analysed with.
struct Analysis<'a> {
    arm_count: usize,
    columns: &'a Columns,
    analysed: &'a [AnalysedMetric<'a>],
    components: &'a [ComponentInfo<'a>],
    caps: &'a [Option<f64>],
    options: &'a AnalysisOptions,
    weights: &'a [f64],
    phase_length_days: f64,
}

/// The analysis of every metric over one group of units.
fn analyse_group(
    analysis: &Analysis,
    units: &[&Unit],
) -> Result<(Vec<u64>, Vec<MetricReport>), ResultsError> {
    let Analysis {
        arm_count,
        columns,
        analysed,
        components,
        caps,
        options,
        weights,
        phase_length_days,
    } = *analysis;
    let mut by_arm: Vec<Vec<&Unit>> = vec![Vec::new(); arm_count];
    for unit in units {
        by_arm[unit.variation].push(unit);
    }
    let users: Vec<u64> = by_arm.iter().map(|arm| arm.len() as u64).collect();
    let mut reports = Vec::with_capacity(analysed.len());
    for metric in analysed {
        let mut statistics = Vec::with_capacity(arm_count);
        let mut values = Vec::with_capacity(arm_count);
        for arm in &by_arm {
            let (statistic, value) = statistic(metric, components, columns, arm);
            statistics.push(statistic);
            values.push(value);
        }
        let settings = settings_for(options, metric.definition, weights, phase_length_days);
        let effects = analyze(&statistics[0], &statistics[1..], &settings)?;
        let cap_value = match metric.shape {
            Shape::Single(index) => caps[index],
            Shape::Ratio(..) => None,
        };
        reports.push(MetricReport {
            key: metric.key.clone(),
            name: metric.definition.name.clone(),
            role: metric.role,
            kind: metric.definition.kind,
            inverse: metric.definition.inverse,
            cuped: metric.definition.covariate.is_some(),
            cap_value,
            variations: values,
            effects,
            statistics,
        });
    }
    Ok((users, reports))
}

/// Holm or Benjamini–Hochberg over every (goal metric, treatment) p-value.
fn correct_goal_metrics(metrics: &mut [MetricReport], correction: Correction, alpha: f64) {
    let mut positions = Vec::new();
    let mut p_values = Vec::new();
    for (metric_index, metric) in metrics.iter().enumerate() {
        if metric.role != MetricRole::Goal {
            continue;
        }
        for (effect_index, effect) in metric.effects.iter().enumerate() {
            if let Some(p_value) = effect.p_value {
                positions.push((metric_index, effect_index));
                p_values.push(p_value);
            }
        }
    }
    let adjusted = adjust_p_values(&p_values, correction);
    for ((metric_index, effect_index), adjusted_p_value) in positions.into_iter().zip(adjusted) {
        let effect = &mut metrics[metric_index].effects[effect_index];
        effect.p_value_adjusted = Some(adjusted_p_value);
        effect.ci_adjusted = Some(adjusted_confidence_interval(
            adjusted_p_value,
            &effect.uplift,
            effect.ci,
            alpha,
        ));
    }
}

fn srm(users: &[u64], weights: &[f64]) -> SrmReport {
    let p_value = srm_p_value(users, weights);
    SrmReport {
        p_value,
        threshold: SRM_THRESHOLD,
        passed: p_value >= SRM_THRESHOLD,
    }
}

fn check_options(
    spec: &ExperimentSpec,
    options: &AnalysisOptions,
) -> Result<Vec<f64>, ResultsError> {
    if spec.variations.len() < 2 {
        return Err(ResultsError::NoVariations {
            experiment: spec.key.clone(),
        });
    }
    if !(options.alpha > 0.0 && options.alpha < 1.0) {
        return Err(ResultsError::Settings(format!(
            "alpha must be between 0 and 1 (exclusive), got {}",
            options.alpha
        )));
    }
    if let Some(tuning) = options.sequential_tuning {
        if options.engine != EngineChoice::Frequentist {
            return Err(ResultsError::Settings(
                "sequential testing applies to the frequentist engine only".into(),
            ));
        }
        if !(tuning.is_finite() && tuning > 0.0) {
            return Err(ResultsError::Settings(
                "the sequential tuning parameter must be a positive number".into(),
            ));
        }
    }
    if options.correction.is_some() && options.engine != EngineChoice::Frequentist {
        return Err(ResultsError::Settings(
            "p-value corrections apply to the frequentist engine only".into(),
        ));
    }
    if let Some(dimension) = &options.dimension
        && !DIMENSIONS.contains(&dimension.as_str())
    {
        return Err(ResultsError::UnknownDimension(dimension.clone()));
    }
    let arm_count = spec.variations.len();
    let weights = match &spec.weights {
        Some(weights) if weights.len() == arm_count && weights.iter().all(|w| *w >= 0.0) => {
            let total: f64 = weights.iter().sum();
            if total <= 0.0 {
                return Err(ResultsError::Settings("weights sum to 0".into()));
            }
            weights.iter().map(|weight| weight / total).collect()
        }
        Some(_) => {
            return Err(ResultsError::Settings(format!(
                "the experiment needs {arm_count} non-negative weights"
            )));
        }
        None => vec![1.0 / arm_count as f64; arm_count],
    };
    Ok(weights)
}

/// Computes the results of one experiment. Blocking (the query runs on the warehouse's
/// runtime; call this from a blocking thread).
pub fn experiment_results(
    warehouse: &Warehouse,
    spec: &ExperimentSpec,
    metrics: &BTreeMap<String, MetricDefinition>,
    options: &AnalysisOptions,
) -> Result<Report, ResultsError> {
    let weights = check_options(spec, options)?;
    let (components, analysed) = plan_metrics(spec, metrics)?;
    let plan = sql::QueryPlan {
        experiment: &spec.key,
        start_ms: spec.start_ms,
        end_ms: spec.end_ms,
        dimension: options.dimension.as_deref(),
        components: components
            .iter()
            .map(|component| sql::Component {
                definition: component.definition,
            })
            .collect(),
    };
    let started = Instant::now();
    let scanned = scan::scan(warehouse, &plan, options.timeout)?;
    let query_ms = started.elapsed().as_millis() as u64;
    let started = Instant::now();
    let (units, mut columns, excluded) = fold_units(scanned, spec, &components)?;
    let caps = finish_values(&mut columns, &components);
    let phase_length_days = match (spec.start_ms, spec.end_ms) {
        (Some(start), Some(end)) if end > start => (end - start) as f64 / 86_400_000.0,
        _ => 1.0,
    };
    let arm_count = spec.variations.len();
    let all: Vec<&Unit> = units.iter().collect();
    let analysis = Analysis {
        arm_count,
        columns: &columns,
        analysed: &analysed,
        components: &components,
        caps: &caps,
        options,
        weights: &weights,
        phase_length_days,
    };
    let (users, mut metric_reports) = analyse_group(&analysis, &all)?;
    if let Some(correction) = options.correction {
        correct_goal_metrics(&mut metric_reports, correction, options.alpha);
    }
    let dimension = match &options.dimension {
        None => None,
        Some(name) => {
            let mut groups: BTreeMap<String, Vec<&Unit>> = BTreeMap::new();
            for unit in &units {
                let value = unit
                    .dimension
                    .clone()
                    .unwrap_or_else(|| "(none)".to_owned());
                groups.entry(value).or_default().push(unit);
            }
            let mut groups: Vec<(String, Vec<&Unit>)> = groups.into_iter().collect();
            groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
            if groups.len() > MAX_DIMENSION_VALUES {
                let rest = groups.split_off(MAX_DIMENSION_VALUES - 1);
                let pooled: Vec<&Unit> = rest.into_iter().flat_map(|(_, units)| units).collect();
                groups.push(("(other)".to_owned(), pooled));
            }
            let mut slices = Vec::with_capacity(groups.len());
            for (value, group) in groups {
                let (slice_users, slice_metrics) = analyse_group(&analysis, &group)?;
                slices.push(DimensionSlice {
                    value,
                    srm: srm(&slice_users, &weights),
                    users: slice_users,
                    metrics: slice_metrics,
                });
            }
            Some(DimensionReport {
                dimension: name.clone(),
                slices,
            })
        }
    };
    let variations = spec
        .variations
        .iter()
        .zip(&users)
        .zip(&weights)
        .map(|((variation, users), weight)| VariationReport {
            key: variation.key.clone(),
            name: variation.name.clone(),
            users: *users,
            weight: *weight,
        })
        .collect();
    Ok(Report {
        experiment: spec.key.clone(),
        settings: SettingsReport {
            engine: options.engine,
            alpha: options.alpha,
            sequential_tuning: options.sequential_tuning,
            correction: options.correction,
            start_ms: spec.start_ms,
            end_ms: spec.end_ms,
        },
        srm: srm(&users, &weights),
        variations,
        excluded,
        metrics: metric_reports,
        dimension,
        query_ms,
        analysis_ms: started.elapsed().as_millis() as u64,
    })
}
