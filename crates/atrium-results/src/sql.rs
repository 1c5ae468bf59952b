//! A results run as one SQL query: first exposure per unit, and per metric component the unit's
//! total inside its window after that exposure (and over the covariate lookback before it).
//! Runs read through [`crate::scan`] instead (one scan, units folded in Rust, several times
//! faster); this formulation is kept as the readable definition and the tests' oracle, and the
//! helpers below build the scan's conditions too.
//!
//! Every literal in the text comes from a validated definition; strings are quoted with
//! [`quote`], property names are restricted to `[A-Za-z0-9_$-]` by validation, numbers are
//! finite.

use std::fmt::Write;

use serde_json::Value;

use crate::metric::{FilterOp, MetricDefinition, MetricKind, PropertyFilter, PropertyRef};

/// Event columns a breakdown may use (their value on the unit's first exposure).
pub const DIMENSIONS: [&str; 12] = [
    "channel",
    "source",
    "device_type",
    "os_name",
    "app_name",
    "app_version",
    "locale",
    "country",
    "city",
    "campaign_source",
    "campaign_medium",
    "campaign_name",
];

/// The event name server-side evaluation and SDKs use for exposures.
pub const EXPOSURE_EVENT: &str = "Experiment Viewed";

/// The analysis unit: the profile the event resolves to now, or the raw id before the pipeline
/// has seen it.
const UNIT: &str = "COALESCE(profile_id, 'user_id:' || user_id, 'anonymous_id:' || anonymous_id)";
const TIME: &str = "CAST(\"timestamp\" AS BIGINT)";

/// A SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn number(value: f64) -> String {
    // Validation guarantees finiteness; `{:?}` keeps a decimal point SQL reads as a double.
    format!("{value:?}")
}

fn json_text(name: &str) -> String {
    format!("prop_text(properties, {})", quote(name))
}

fn json_number(name: &str) -> String {
    format!("prop_number(properties, {})", quote(name))
}

fn scalar_literal(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        Value::Number(number_value) => number(number_value.as_f64().unwrap_or(0.0)),
        Value::Bool(flag) => quote(if *flag { "true" } else { "false" }),
        _ => "NULL".to_owned(),
    }
}

/// The SQL condition of one validated filter.
pub fn filter_condition(filter: &PropertyFilter) -> String {
    let Ok(reference) = crate::metric::property_ref(&filter.property) else {
        return "FALSE".to_owned();
    };
    let value = filter.value.as_ref();
    let numeric = match filter.op {
        FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => true,
        FilterOp::Eq | FilterOp::Neq => value.is_some_and(Value::is_number),
        FilterOp::In | FilterOp::NotIn => value
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().all(Value::is_number)),
        FilterOp::Exists | FilterOp::Contains => false,
    };
    let operand = match (&reference, numeric) {
        (PropertyRef::TextColumn(column), _) | (PropertyRef::NumberColumn(column), _) => {
            format!("\"{column}\"")
        }
        (PropertyRef::Json(name), true) => json_number(name),
        (PropertyRef::Json(name), false) => json_text(name),
    };
    let literal = || value.map(scalar_literal).unwrap_or_else(|| "NULL".into());
    let list = || {
        value
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .map(scalar_literal)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "NULL".into())
    };
    match filter.op {
        FilterOp::Eq => format!("{operand} = {}", literal()),
        FilterOp::Neq => format!("({operand} IS NULL OR {operand} <> {})", literal()),
        FilterOp::In => format!("{operand} IN ({})", list()),
        FilterOp::NotIn => format!("({operand} IS NULL OR {operand} NOT IN ({}))", list()),
        FilterOp::Gt => format!("{operand} > {}", literal()),
        FilterOp::Gte => format!("{operand} >= {}", literal()),
        FilterOp::Lt => format!("{operand} < {}", literal()),
        FilterOp::Lte => format!("{operand} <= {}", literal()),
        FilterOp::Exists => format!("{operand} IS NOT NULL"),
        FilterOp::Contains => {
            let needle = value.and_then(Value::as_str).unwrap_or_default();
            let pattern = needle
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!(
                "{operand} LIKE {} ESCAPE '\\'",
                quote(&format!("%{pattern}%"))
            )
        }
    }
}

/// What the query needs to know about one metric component (a non-ratio metric).
pub struct Component<'a> {
    pub definition: &'a MetricDefinition,
}

/// Inputs of [`results_query`].
pub struct QueryPlan<'a> {
    pub experiment: &'a str,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub dimension: Option<&'a str>,
    pub components: Vec<Component<'a>>,
}

pub(crate) fn value_expression(definition: &MetricDefinition) -> String {
    match (definition.kind, definition.value.as_deref()) {
        (MetricKind::Sum, Some(value)) => match crate::metric::property_ref(value) {
            Ok(PropertyRef::NumberColumn(column)) => format!("CAST(\"{column}\" AS DOUBLE)"),
            Ok(PropertyRef::Json(name)) => json_number(&name),
            _ => "CAST(NULL AS DOUBLE)".into(),
        },
        _ => "CAST(1.0 AS DOUBLE)".into(),
    }
}

/// The query. Columns: `unit`, `variation`, `variations` (distinct variation ids seen),
/// `dimension` (when asked), then `post_<i>` and `pre_<i>` per component (NULL when none).
pub fn results_query(plan: &QueryPlan) -> String {
    let mut time_bounds = String::new();
    if let Some(start) = plan.start_ms {
        let _ = write!(time_bounds, " AND {TIME} >= {start}");
    }
    if let Some(end) = plan.end_ms {
        let _ = write!(time_bounds, " AND {TIME} < {end}");
    }
    let dimension_select = plan
        .dimension
        .map(|column| format!(", \"{column}\" AS dimension"))
        .unwrap_or_default();
    let dimension_first = if plan.dimension.is_some() {
        ", first_value(dimension ORDER BY ts) AS dimension"
    } else {
        ""
    };
    let dimension_column = if plan.dimension.is_some() {
        ", u.dimension"
    } else {
        ""
    };
    let mut sql = format!(
        "WITH exposures AS (\
           SELECT {UNIT} AS unit, {TIME} AS ts, \
             variation_id AS variation{dimension_select} \
           FROM events_resolved \
           WHERE event = {event} AND experiment_id = {key}{time_bounds}), \
         units AS (\
           SELECT unit, MIN(ts) AS first_ts, MIN(variation) AS variation, \
             COUNT(DISTINCT variation) AS variations{dimension_first} \
           FROM exposures GROUP BY unit)",
        event = quote(EXPOSURE_EVENT),
        key = quote(plan.experiment),
    );
    if plan.components.is_empty() {
        let _ = write!(
            sql,
            " SELECT u.unit, u.variation, u.variations{dimension_column} FROM units u"
        );
        return sql;
    }
    let longest_lookback = plan
        .components
        .iter()
        .filter_map(|component| component.definition.lookback_ms())
        .max()
        .unwrap_or(0);
    let mut metric_bounds = String::new();
    if let Some(start) = plan.start_ms {
        let _ = write!(
            metric_bounds,
            " AND {TIME} >= {}",
            start.saturating_sub(longest_lookback)
        );
    }
    if let Some(end) = plan.end_ms {
        let _ = write!(metric_bounds, " AND {TIME} < {end}");
    }
    // Components that read the same events (same event name and filters) share one scan: each
    // scan yields one value column per component, NULL for the components of other scans.
    let mut scans: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, component) in plan.components.iter().enumerate() {
        let definition = component.definition;
        let mut conditions = format!(
            "event = {}",
            quote(definition.event.as_deref().unwrap_or_default())
        );
        for filter in &definition.filters {
            let _ = write!(conditions, " AND {}", filter_condition(filter));
        }
        match scans
            .iter_mut()
            .find(|(existing, _)| *existing == conditions)
        {
            Some((_, members)) => members.push(index),
            None => scans.push((conditions, vec![index])),
        }
    }
    sql.push_str(", metric_events AS (");
    for (scan_index, (conditions, members)) in scans.iter().enumerate() {
        if scan_index > 0 {
            sql.push_str(" UNION ALL ");
        }
        let _ = write!(sql, "SELECT {UNIT} AS unit, {TIME} AS ts");
        for (index, component) in plan.components.iter().enumerate() {
            if members.contains(&index) {
                let _ = write!(
                    sql,
                    ", {} AS v_{index}",
                    value_expression(component.definition)
                );
            } else {
                let _ = write!(sql, ", CAST(NULL AS DOUBLE) AS v_{index}");
            }
        }
        let _ = write!(
            sql,
            " FROM events_resolved WHERE {conditions}{metric_bounds}"
        );
    }
    sql.push(')');
    let _ = write!(
        sql,
        " SELECT u.unit, u.variation, u.variations{dimension_column}"
    );
    for (index, component) in plan.components.iter().enumerate() {
        let definition = component.definition;
        let window = definition
            .window_ms()
            .map(|window| format!(" AND m.ts < u.first_ts + {window}"))
            .unwrap_or_default();
        let _ = write!(
            sql,
            ", SUM(CASE WHEN m.ts >= u.first_ts{window} THEN m.v_{index} END) AS post_{index}"
        );
        match definition.lookback_ms() {
            Some(lookback) => {
                let _ = write!(
                    sql,
                    ", SUM(CASE WHEN m.ts < u.first_ts AND m.ts >= u.first_ts - {lookback} \
                     THEN m.v_{index} END) AS pre_{index}"
                );
            }
            None => {
                let _ = write!(sql, ", CAST(NULL AS DOUBLE) AS pre_{index}");
            }
        }
    }
    let _ = write!(
        sql,
        " FROM units u LEFT JOIN metric_events m ON m.unit = u.unit \
         GROUP BY u.unit, u.variation, u.variations{dimension_column}"
    );
    sql
}
