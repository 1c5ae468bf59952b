//! The read of a results run: one scan of `events` for the exposures and every metric
//! component, folded into per-unit rows in Rust.
//!
//! The scan selects exposure rows (by the typed `experiment_id` column) and rows matching any
//! metric component, restricted to the experiment's dates on `event_date` (so Parquet row
//! groups of other days are skipped from their statistics) and on the exact timestamp. Units
//! are resolved here rather than in SQL: the identity graph snapshot's index maps a
//! row's `user_id`, else its `anonymous_id`, to the profile it belongs to now, and an
//! identifier the graph does not know stands for itself (`user_id:<id>` / `anonymous_id:<id>`),
//! exactly like the `events_resolved` view. [`crate::sql::results_query`] is the same
//! computation as one SQL query; tests check both agree.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use atrium_warehouse::IdentityIndex;
use atrium_warehouse::datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use atrium_warehouse::datafusion::arrow::compute::cast;
use atrium_warehouse::datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use atrium_warehouse::datafusion::common::runtime::SpawnedTask;
use atrium_warehouse::datafusion::prelude::SessionContext;
use atrium_warehouse::{Warehouse, WarehouseError};
use futures_util::StreamExt;

use crate::sql::{EXPOSURE_EVENT, QueryPlan, filter_condition, quote, value_expression};

const MS_PER_DAY: i64 = 86_400_000;
/// Most metric events one run buffers before the windows are applied.
pub const MAX_METRIC_ROWS: usize = 200_000_000;

/// One unit as the scan saw it.
#[derive(Clone, Debug)]
pub(crate) struct ScannedUnit {
    /// Earliest exposure (`i64::MAX` when the unit has none: it only has metric events).
    pub first_ts: i64,
    /// The variation id of its exposures (an index into [`Scanned::variation_ids`]) when they
    /// all name the same one.
    pub variation: Option<u32>,
    /// Its exposures named two or more variation ids.
    pub multiple: bool,
    /// The breakdown column's value on the earliest exposure.
    pub dimension: Option<String>,
}

/// A metric component's event: which unit, when, and the value it adds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetricEvent {
    pub unit: u32,
    pub component: u32,
    pub ts: i64,
    pub value: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Scanned {
    pub units: Vec<ScannedUnit>,
    /// The distinct variation ids the exposures named.
    pub variation_ids: Vec<String>,
    pub metric_events: Vec<MetricEvent>,
}

/// `DATE 'YYYY-MM-DD'` of the UTC day holding `ms`; `None` outside years 1–9999 (no bound).
fn day_literal(ms: i64) -> Option<String> {
    let (year, month, day) = civil_date(ms.div_euclid(MS_PER_DAY));
    (1..=9999)
        .contains(&year)
        .then(|| format!("DATE '{year:04}-{month:02}-{day:02}'"))
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`.
fn civil_date(day_number: i64) -> (i64, i64, i64) {
    let shifted = day_number + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day_of_month)
}

/// Time bounds `[start, end)` on the row timestamp, with the matching (implied, prunable)
/// bounds on the day partition column.
fn bounds(start_ms: Option<i64>, end_ms: Option<i64>) -> String {
    let mut text = String::new();
    if let Some(start) = start_ms {
        if let Some(day) = day_literal(start) {
            let _ = write!(text, " AND event_date >= {day}");
        }
        let _ = write!(text, " AND CAST(\"timestamp\" AS BIGINT) >= {start}");
    }
    if let Some(end) = end_ms {
        if let Some(day) = day_literal(end.saturating_sub(1)) {
            let _ = write!(text, " AND event_date <= {day}");
        }
        let _ = write!(text, " AND CAST(\"timestamp\" AS BIGINT) < {end}");
    }
    text
}

/// The scan. Columns: `user_id`, `anonymous_id`, `ts`, `exposed` (the row is an exposure of
/// the experiment), `variation`, `dimension` (when asked), then `v_<i>` per component: the value
/// the row adds to component `i`, NULL when it does not match it.
pub(crate) fn scan_query(plan: &QueryPlan) -> String {
    let exposure = format!(
        "event = {} AND experiment_id = {}{}",
        quote(EXPOSURE_EVENT),
        quote(plan.experiment),
        bounds(plan.start_ms, plan.end_ms)
    );
    let longest_lookback = plan
        .components
        .iter()
        .filter_map(|component| component.definition.lookback_ms())
        .max()
        .unwrap_or(0);
    let metric_bounds = bounds(
        plan.start_ms
            .map(|start| start.saturating_sub(longest_lookback)),
        plan.end_ms,
    );
    let mut select = format!(
        "SELECT user_id, anonymous_id, CAST(\"timestamp\" AS BIGINT) AS ts, \
         ({exposure}) AS exposed, variation_id AS variation"
    );
    if let Some(column) = plan.dimension {
        let _ = write!(select, ", \"{column}\" AS dimension");
    }
    // Components reading the same events (same name and filters) share one condition.
    let mut conditions: Vec<String> = Vec::new();
    for (index, component) in plan.components.iter().enumerate() {
        let definition = component.definition;
        let mut condition = format!(
            "event = {}",
            quote(definition.event.as_deref().unwrap_or_default())
        );
        for filter in &definition.filters {
            let _ = write!(condition, " AND {}", filter_condition(filter));
        }
        let _ = write!(
            select,
            ", CASE WHEN {condition}{metric_bounds} THEN {} END AS v_{index}",
            value_expression(definition)
        );
        if !conditions.contains(&condition) {
            conditions.push(condition);
        }
    }
    let mut wanted = format!("({exposure})");
    for condition in &conditions {
        let _ = write!(wanted, " OR ({condition}{metric_bounds})");
    }
    format!("{select} FROM events WHERE {wanted}")
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl ScannedUnit {
    fn unseen() -> Self {
        ScannedUnit {
            first_ts: i64::MAX,
            variation: None,
            multiple: false,
            dimension: None,
        }
    }

    /// Folds in one exposure (`variation` already interned).
    fn expose(&mut self, ts: i64, dimension: Option<&str>, variation: Option<u32>) {
        // The earliest exposure's breakdown value; ties go to the smaller value so the result
        // does not depend on the scan order.
        if ts < self.first_ts || (ts == self.first_ts && dimension < self.dimension.as_deref()) {
            self.dimension = dimension.map(str::to_owned);
        }
        self.first_ts = self.first_ts.min(ts);
        if let Some(variation) = variation {
            self.see_variation(variation);
        }
    }

    fn see_variation(&mut self, variation: u32) {
        match self.variation {
            None => self.variation = Some(variation),
            Some(seen) if seen != variation => self.multiple = true,
            Some(_) => {}
        }
    }

    /// Folds in what another partition saw of the same unit (its variation renumbered): the
    /// same result as if one scan had seen both partitions' rows, in any order.
    fn absorb(&mut self, other: ScannedUnit) {
        if other.first_ts < self.first_ts
            || (other.first_ts == self.first_ts && other.dimension < self.dimension)
        {
            self.dimension = other.dimension;
        }
        self.first_ts = self.first_ts.min(other.first_ts);
        if let Some(variation) = other.variation {
            self.see_variation(variation);
        }
        self.multiple |= other.multiple;
    }
}

/// Number of shards of an [`Interner`]: enough that the partitions rarely wait on each other.
const INTERNER_SHARDS: usize = 64;

/// Raw identifiers → unit numbers, shared by the partitions of the scan: each identifier is
/// hashed into one map once, whichever partition meets it first numbers it.
struct Interner {
    shards: Vec<Mutex<FastMap<String, u32>>>,
    shard_of: foldhash::fast::FixedState,
}

impl Interner {
    fn new() -> Self {
        Interner {
            shards: (0..INTERNER_SHARDS)
                .map(|_| Mutex::new(FastMap::default()))
                .collect(),
            shard_of: foldhash::fast::FixedState::default(),
        }
    }

    fn unit(&self, id: &str, next: &AtomicU32) -> u32 {
        let shard = self.shard_of.hash_one(id) as usize % INTERNER_SHARDS;
        // A poisoned shard only means another partition panicked; its map is still whole.
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(unit) = map.get(id) {
            return *unit;
        }
        let unit = next.fetch_add(1, Ordering::Relaxed);
        map.insert(id.to_owned(), unit);
        unit
    }

    #[cfg(test)]
    fn entries(&self) -> Vec<(String, u32)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let map = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                map.iter()
                    .map(|(id, unit)| (id.clone(), *unit))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Unit numbers of the whole scan: the graph's profiles are `0..graph.profiles()`; a user or
/// anonymous id the graph does not know stands for itself and gets the next free number.
struct Units {
    graph: Arc<IdentityIndex>,
    raw_user_ids: Interner,
    raw_anonymous_ids: Interner,
    next: AtomicU32,
}

impl Units {
    fn new(graph: Arc<IdentityIndex>) -> Self {
        let next = AtomicU32::new(graph.profiles as u32);
        Units {
            graph,
            raw_user_ids: Interner::new(),
            raw_anonymous_ids: Interner::new(),
            next,
        }
    }

    /// The unit of a row, like `COALESCE(profile_id, 'user_id:' || user_id, 'anonymous_id:' ||
    /// anonymous_id)` over `events_resolved`; `None` for a row without identifiers.
    fn resolve(&self, user_id: Option<&str>, anonymous_id: Option<&str>) -> Option<u32> {
        if let Some(unit) = user_id.and_then(|id| self.graph.user_ids.get(id)) {
            return Some(unit);
        }
        if let Some(unit) = anonymous_id.and_then(|id| self.graph.anonymous_ids.get(id)) {
            return Some(unit);
        }
        match (user_id, anonymous_id) {
            (Some(id), _) => Some(self.raw_user_ids.unit(id, &self.next)),
            (None, Some(id)) => Some(self.raw_anonymous_ids.unit(id, &self.next)),
            (None, None) => None,
        }
    }

    fn count(&self) -> usize {
        self.next.load(Ordering::Relaxed) as usize
    }
}

/// What one partition of the scan saw, by unit number ([`Units`]); variation ids are local
/// until [`merge`] renumbers them.
#[derive(Default)]
struct Part {
    units: Vec<ScannedUnit>,
    variation_ids: Vec<String>,
    events: Vec<MetricEvent>,
}

impl Part {
    /// The index of a variation id (an experiment has a handful: a linear search).
    fn variation(&mut self, id: &str) -> u32 {
        intern_variation(&mut self.variation_ids, id)
    }

    fn unit_mut(&mut self, unit: u32) -> &mut ScannedUnit {
        let index = unit as usize;
        if index >= self.units.len() {
            self.units.resize(index + 1, ScannedUnit::unseen());
        }
        &mut self.units[index]
    }
}

/// An exposure row's variation id and breakdown value.
struct Exposure<'a> {
    variation: Option<&'a str>,
    dimension: Option<&'a str>,
}

impl Part {
    /// Folds one row: its unit, the exposure it records, the value it adds to each component
    /// (`None`: it does not match the component).
    fn fold_row(
        &mut self,
        units: &Units,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        ts: i64,
        exposure: Option<Exposure<'_>>,
        values: &[Option<f64>],
    ) {
        let user_id = user_id.filter(|id| !id.is_empty());
        let anonymous_id = anonymous_id.filter(|id| !id.is_empty());
        let Some(unit) = units.resolve(user_id, anonymous_id) else {
            return;
        };
        if let Some(exposure) = exposure {
            let variation = exposure.variation.map(|id| self.variation(id));
            self.unit_mut(unit)
                .expose(ts, exposure.dimension, variation);
        }
        for (component, value) in values.iter().enumerate() {
            if let Some(value) = value {
                self.events.push(MetricEvent {
                    unit,
                    component: component as u32,
                    ts,
                    value: *value,
                });
            }
        }
    }
}

fn intern_variation(ids: &mut Vec<String>, id: &str) -> u32 {
    match ids.iter().position(|known| known == id) {
        Some(index) => index as u32,
        None => {
            ids.push(id.to_owned());
            (ids.len() - 1) as u32
        }
    }
}

/// Folds the partitions into one [`Scanned`]: units are already numbered alike, so each unit's
/// parts are absorbed in place; only variation ids are renumbered.
fn merge(units: &Units, parts: Vec<Part>) -> Scanned {
    let mut merged = vec![ScannedUnit::unseen(); units.count()];
    let mut variation_ids = Vec::new();
    let mut events = Vec::with_capacity(parts.iter().map(|part| part.events.len()).sum());
    for part in parts {
        let variations: Vec<u32> = part
            .variation_ids
            .iter()
            .map(|id| intern_variation(&mut variation_ids, id))
            .collect();
        for (index, mut unit) in part.units.into_iter().enumerate() {
            unit.variation = unit
                .variation
                .map(|variation| variations[variation as usize]);
            merged[index].absorb(unit);
        }
        events.extend(part.events);
    }
    Scanned {
        units: merged,
        variation_ids,
        metric_events: events,
    }
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, WarehouseError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| WarehouseError::Engine(format!("results scan: column `{name}` missing")))?;
    cast(array, to)
        .map_err(|error| WarehouseError::Engine(format!("results scan: column `{name}`: {error}")))
}

fn text_at(array: &ArrayRef, row: usize) -> Option<&str> {
    let strings = array.as_string::<i32>();
    (!strings.is_null(row)).then(|| strings.value(row))
}

/// Folds one batch of the scan into a partition's units and events; `buffered` counts metric
/// events over every partition, for the limit.
fn add_batch(
    batch: &RecordBatch,
    component_count: usize,
    with_dimension: bool,
    units: &Units,
    part: &mut Part,
    buffered: &AtomicUsize,
) -> Result<(), WarehouseError> {
    let user_ids = column(batch, "user_id", &DataType::Utf8)?;
    let anonymous_ids = column(batch, "anonymous_id", &DataType::Utf8)?;
    let times = column(batch, "ts", &DataType::Int64)?;
    let times = times.as_primitive::<Int64Type>();
    let exposed = column(batch, "exposed", &DataType::Boolean)?;
    let exposed = exposed.as_boolean();
    let variations = column(batch, "variation", &DataType::Utf8)?;
    let dimensions = if with_dimension {
        Some(column(batch, "dimension", &DataType::Utf8)?)
    } else {
        None
    };
    let mut values = Vec::with_capacity(component_count);
    for index in 0..component_count {
        values.push(column(batch, &format!("v_{index}"), &DataType::Float64)?);
    }
    let values: Vec<_> = values
        .iter()
        .map(|array| array.as_primitive::<Float64Type>())
        .collect();
    let events_before = part.events.len();
    let mut row_values = Vec::with_capacity(component_count);
    for row in 0..batch.num_rows() {
        if times.is_null(row) {
            continue;
        }
        row_values.clear();
        row_values.extend(
            values
                .iter()
                .map(|array| array.is_valid(row).then(|| array.value(row))),
        );
        let exposure = (exposed.is_valid(row) && exposed.value(row)).then(|| Exposure {
            variation: text_at(&variations, row),
            dimension: dimensions.as_ref().and_then(|array| text_at(array, row)),
        });
        part.fold_row(
            units,
            text_at(&user_ids, row),
            text_at(&anonymous_ids, row),
            times.value(row),
            exposure,
            &row_values,
        );
    }
    let added = part.events.len() - events_before;
    if buffered.fetch_add(added, Ordering::Relaxed) + added > MAX_METRIC_ROWS {
        return Err(WarehouseError::Engine(format!(
            "more than {MAX_METRIC_ROWS} metric events; narrow the analysis window or filter the metrics"
        )));
    }
    Ok(())
}

async fn scan_in(
    ctx: SessionContext,
    graph: Arc<IdentityIndex>,
    query: String,
    component_count: usize,
    with_dimension: bool,
) -> Result<Scanned, WarehouseError> {
    // Late materialization: the scan's predicate is evaluated inside the Parquet reader, so the
    // identifier and value columns are decoded only for the rows that match (exposures of this
    // experiment and metric events, a small share of `events`).
    for setting in [
        "SET datafusion.execution.parquet.pushdown_filters = true",
        "SET datafusion.execution.parquet.reorder_filters = true",
    ] {
        ctx.sql(setting).await?.collect().await?;
    }
    let started = std::time::Instant::now();
    // Each partition of the scan is folded on its own task; unit numbers are shared (the graph
    // read-only, raw identifiers through a sharded interner), so the parts merge in place.
    let streams = ctx.sql(&query).await?.execute_stream_partitioned().await?;
    let units = Arc::new(Units::new(graph));
    let buffered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(streams.len());
    for mut stream in streams {
        let units = units.clone();
        let buffered = buffered.clone();
        tasks.push(SpawnedTask::spawn(async move {
            let mut part = Part::default();
            while let Some(batch) = stream.next().await {
                add_batch(
                    &batch?,
                    component_count,
                    with_dimension,
                    &units,
                    &mut part,
                    &buffered,
                )?;
            }
            Ok::<Part, WarehouseError>(part)
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        let part = task.join().await.map_err(|error| {
            WarehouseError::Engine(format!("results scan: a partition task failed: {error}"))
        })??;
        parts.push(part);
    }
    let scanned_ms = started.elapsed().as_millis() as u64;
    let partitions = parts.len();
    let scanned = merge(&units, parts);
    tracing::debug!(
        partitions,
        units = scanned.units.len(),
        metric_events = scanned.metric_events.len(),
        scanned_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "results scan"
    );
    Ok(scanned)
}

/// Runs the scan on the warehouse's runtime within `timeout`.
pub(crate) fn scan(
    warehouse: &Warehouse,
    plan: &QueryPlan,
    timeout: std::time::Duration,
) -> Result<Scanned, WarehouseError> {
    let query = scan_query(plan);
    let component_count = plan.components.len();
    let with_dimension = plan.dimension.is_some();
    let graph = warehouse.graph_snapshot()?.index();
    warehouse.with_session(timeout, move |ctx| {
        scan_in(ctx, graph, query, component_count, with_dimension)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use std::sync::Arc;

    use atrium_warehouse::IdentityIndex;

    use super::{Exposure, Part, Units, civil_date, day_literal, merge};

    /// One generated row: user and anonymous id (indexes into small pools, so units repeat
    /// and some are in the graph), time (small, so ties happen), exposure (variation,
    /// breakdown value) and two component values.
    type Row = (
        Option<u8>,
        Option<u8>,
        i64,
        Option<(Option<u8>, Option<u8>)>,
        [Option<i8>; 2],
    );

    fn units() -> Units {
        // Profiles p0 (unit 0: user u0, anonymous a2) and p1 (unit 1: anonymous a1).
        let mut graph = IdentityIndex::default();
        graph.user_ids.insert("u0", 0);
        graph.anonymous_ids.insert("a1", 1);
        graph.anonymous_ids.insert("a2", 0);
        graph.profiles = 2;
        Units::new(Arc::new(graph))
    }

    type Canonical = (
        BTreeMap<String, (i64, Option<String>, bool, Option<String>)>,
        Vec<(String, u32, i64, u64)>,
    );

    /// Folds the rows of each part (in the given order) on its own and merges the parts;
    /// returns units by identity and the sorted metric events, independent of numbering.
    fn fold(parts: &[Vec<Row>]) -> Canonical {
        let units = &units();
        let folded = parts
            .iter()
            .map(|rows| {
                let mut part = Part::default();
                for (user, anonymous, ts, exposure, values) in rows {
                    let user = user.map(|index| format!("u{index}"));
                    let anonymous = anonymous.map(|index| format!("a{index}"));
                    let variation =
                        exposure.and_then(|(variation, _)| variation.map(|v| format!("v{v}")));
                    let dimension =
                        exposure.and_then(|(_, dimension)| dimension.map(|d| format!("d{d}")));
                    let values: Vec<Option<f64>> =
                        values.iter().map(|value| value.map(f64::from)).collect();
                    part.fold_row(
                        units,
                        user.as_deref(),
                        anonymous.as_deref(),
                        *ts,
                        exposure.map(|_| Exposure {
                            variation: variation.as_deref(),
                            dimension: dimension.as_deref(),
                        }),
                        &values,
                    );
                }
                part
            })
            .collect();
        let scanned = merge(units, folded);
        let mut names = vec![String::new(); scanned.units.len()];
        for (profile, unit) in [("p0", 0), ("p1", 1)] {
            names[unit] = format!("profile:{profile}");
        }
        for (id, unit) in units.raw_user_ids.entries() {
            names[unit as usize] = format!("user_id:{id}");
        }
        for (id, unit) in units.raw_anonymous_ids.entries() {
            names[unit as usize] = format!("anonymous_id:{id}");
        }
        let units = scanned
            .units
            .iter()
            .enumerate()
            .map(|(index, unit)| {
                // A unit exposed to several variations is excluded whatever it saw first.
                let variation = unit
                    .variation
                    .filter(|_| !unit.multiple)
                    .map(|variation| scanned.variation_ids[variation as usize].clone());
                (
                    names[index].clone(),
                    (
                        unit.first_ts,
                        variation,
                        unit.multiple,
                        unit.dimension.clone(),
                    ),
                )
            })
            .collect();
        let mut events: Vec<_> = scanned
            .metric_events
            .iter()
            .map(|event| {
                (
                    names[event.unit as usize].clone(),
                    event.component,
                    event.ts,
                    event.value.to_bits(),
                )
            })
            .collect();
        events.sort();
        (units, events)
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            prop::option::of(0u8..5),
            prop::option::of(0u8..5),
            0i64..20,
            prop::option::of((prop::option::of(0u8..3), prop::option::of(0u8..3))),
            [prop::option::of(-5i8..5), prop::option::of(-5i8..5)],
        )
    }

    proptest! {
        /// Folding the scan's partitions separately and merging gives what one sequential fold
        /// of all rows gives, whatever the split and the order of rows.
        #[test]
        fn partitions_merge_like_one_scan(
            rows in prop::collection::vec(row(), 0..60),
            assignment in prop::collection::vec(0usize..4, 60),
            reverse in any::<bool>(),
        ) {
            let whole = fold(std::slice::from_ref(&rows));
            let mut parts = vec![Vec::new(); 4];
            for (index, row) in rows.iter().enumerate() {
                parts[assignment[index]].push(*row);
            }
            if reverse {
                for part in &mut parts {
                    part.reverse();
                }
            }
            prop_assert_eq!(whole, fold(&parts));
        }
    }

    #[test]
    fn civil_dates_and_day_literals() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_415), (2025, 11, 23));
        assert_eq!(
            day_literal(86_399_999).as_deref(),
            Some("DATE '1970-01-01'")
        );
        assert_eq!(day_literal(-1).as_deref(), Some("DATE '1969-12-31'"));
        assert_eq!(day_literal(i64::MAX), None);
    }
}
