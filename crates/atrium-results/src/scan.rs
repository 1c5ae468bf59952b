//! The read of a results run: one scan of `events` for the exposures and every metric
//! component, folded into per-unit rows in Rust.
//!
//! The scan selects exposure rows (by the typed `experiment_id` column) and rows matching any
//! metric component, restricted to the experiment's dates on `event_date` (so Parquet row
//! groups of other days are skipped from their statistics) and on the exact timestamp. Units
//! are resolved here rather than in SQL: the identity graph snapshot (`identities`) maps a
//! row's `user_id`, else its `anonymous_id`, to the profile it belongs to now, and an
//! identifier the graph does not know stands for itself (`user_id:<id>` / `anonymous_id:<id>`),
//! exactly like the `events_resolved` view. [`crate::sql::results_query`] is the same
//! computation as one SQL query; tests check both agree.

use std::collections::HashMap;
use std::fmt::Write;

use atrium_warehouse::datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use atrium_warehouse::datafusion::arrow::compute::cast;
use atrium_warehouse::datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
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

/// Interns units (the identity graph's profiles and the raw identifiers it does not know) and
/// variation ids.
#[derive(Default)]
struct Units {
    graph_user_ids: FastMap<String, u32>,
    graph_anonymous_ids: FastMap<String, u32>,
    raw_user_ids: FastMap<String, u32>,
    raw_anonymous_ids: FastMap<String, u32>,
    profiles: FastMap<String, u32>,
    units: Vec<ScannedUnit>,
    variation_ids: Vec<String>,
}

impl Units {
    /// The index of a variation id (an experiment has a handful: a linear search).
    fn variation(&mut self, id: &str) -> u32 {
        match self.variation_ids.iter().position(|known| known == id) {
            Some(index) => index as u32,
            None => {
                self.variation_ids.push(id.to_owned());
                (self.variation_ids.len() - 1) as u32
            }
        }
    }

    fn new_unit(&mut self) -> u32 {
        self.units.push(ScannedUnit {
            first_ts: i64::MAX,
            variation: None,
            multiple: false,
            dimension: None,
        });
        (self.units.len() - 1) as u32
    }

    fn add_graph_identifier(&mut self, kind: &str, value: &str, profile: &str) {
        let unit = match self.profiles.get(profile) {
            Some(unit) => *unit,
            None => {
                let unit = self.new_unit();
                self.profiles.insert(profile.to_owned(), unit);
                unit
            }
        };
        match kind {
            "user_id" => self.graph_user_ids.insert(value.to_owned(), unit),
            "anonymous_id" => self.graph_anonymous_ids.insert(value.to_owned(), unit),
            _ => None,
        };
    }

    /// The unit of a row, like `COALESCE(profile_id, 'user_id:' || user_id, 'anonymous_id:' ||
    /// anonymous_id)` over `events_resolved`; `None` for a row without identifiers.
    fn resolve(&mut self, user_id: Option<&str>, anonymous_id: Option<&str>) -> Option<u32> {
        if let Some(unit) = user_id.and_then(|id| self.graph_user_ids.get(id)) {
            return Some(*unit);
        }
        if let Some(unit) = anonymous_id.and_then(|id| self.graph_anonymous_ids.get(id)) {
            return Some(*unit);
        }
        if let Some(id) = user_id {
            if let Some(unit) = self.raw_user_ids.get(id) {
                return Some(*unit);
            }
            let unit = self.new_unit();
            self.raw_user_ids.insert(id.to_owned(), unit);
            return Some(unit);
        }
        let id = anonymous_id?;
        if let Some(unit) = self.raw_anonymous_ids.get(id) {
            return Some(*unit);
        }
        let unit = self.new_unit();
        self.raw_anonymous_ids.insert(id.to_owned(), unit);
        Some(unit)
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

/// Folds one batch of the scan into `units` and `events`.
fn add_batch(
    batch: &RecordBatch,
    component_count: usize,
    with_dimension: bool,
    units: &mut Units,
    events: &mut Vec<MetricEvent>,
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
    for row in 0..batch.num_rows() {
        let user_id = text_at(&user_ids, row).filter(|id| !id.is_empty());
        let anonymous_id = text_at(&anonymous_ids, row).filter(|id| !id.is_empty());
        let Some(unit_index) = units.resolve(user_id, anonymous_id) else {
            continue;
        };
        if times.is_null(row) {
            continue;
        }
        let ts = times.value(row);
        if exposed.is_valid(row) && exposed.value(row) {
            let unit = &mut units.units[unit_index as usize];
            let dimension = dimensions.as_ref().and_then(|array| text_at(array, row));
            // The earliest exposure's breakdown value; ties go to the smaller value so the
            // result does not depend on the scan order.
            if ts < unit.first_ts || (ts == unit.first_ts && dimension < unit.dimension.as_deref())
            {
                unit.dimension = dimension.map(str::to_owned);
            }
            unit.first_ts = unit.first_ts.min(ts);
            if let Some(variation) = text_at(&variations, row) {
                let variation = units.variation(variation);
                let unit = &mut units.units[unit_index as usize];
                match unit.variation {
                    None => unit.variation = Some(variation),
                    Some(seen) if seen != variation => unit.multiple = true,
                    Some(_) => {}
                }
            }
        }
        for (component, array) in values.iter().enumerate() {
            if array.is_valid(row) {
                events.push(MetricEvent {
                    unit: unit_index,
                    component: component as u32,
                    ts,
                    value: array.value(row),
                });
            }
        }
        if events.len() > MAX_METRIC_ROWS {
            return Err(WarehouseError::Engine(format!(
                "more than {MAX_METRIC_ROWS} metric events; narrow the analysis window or filter the metrics"
            )));
        }
    }
    Ok(())
}

async fn scan_in(
    ctx: SessionContext,
    query: String,
    component_count: usize,
    with_dimension: bool,
) -> Result<Scanned, WarehouseError> {
    let mut units = Units::default();
    let graph = ctx
        .sql(
            "SELECT kind, value, profile_id FROM identities \
             WHERE kind IN ('user_id', 'anonymous_id')",
        )
        .await?
        .collect()
        .await?;
    for batch in &graph {
        let kinds = column(batch, "kind", &DataType::Utf8)?;
        let identifiers = column(batch, "value", &DataType::Utf8)?;
        let profiles = column(batch, "profile_id", &DataType::Utf8)?;
        for row in 0..batch.num_rows() {
            let (Some(kind), Some(identifier), Some(profile)) = (
                text_at(&kinds, row),
                text_at(&identifiers, row),
                text_at(&profiles, row),
            ) else {
                continue;
            };
            units.add_graph_identifier(kind, identifier, profile);
        }
    }
    // Late materialization: the scan's predicate is evaluated inside the Parquet reader, so the
    // identifier and value columns are decoded only for the rows that match (exposures of this
    // experiment and metric events, a small share of `events`).
    for setting in [
        "SET datafusion.execution.parquet.pushdown_filters = true",
        "SET datafusion.execution.parquet.reorder_filters = true",
    ] {
        ctx.sql(setting).await?.collect().await?;
    }
    let mut events = Vec::new();
    let mut stream = ctx.sql(&query).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        add_batch(
            &batch?,
            component_count,
            with_dimension,
            &mut units,
            &mut events,
        )?;
    }
    Ok(Scanned {
        units: units.units,
        variation_ids: units.variation_ids,
        metric_events: events,
    })
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
    warehouse.with_session(timeout, move |ctx| {
        scan_in(ctx, query, component_count, with_dimension)
    })
}

#[cfg(test)]
mod tests {
    use super::{civil_date, day_literal};

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
