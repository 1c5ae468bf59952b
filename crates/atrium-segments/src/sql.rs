//! Compilation of a validated segment to one SQL query over the warehouse (DataFusion dialect).
//!
//! The query reads `events_resolved` (every event attributed to the profile its identifiers
//! resolve to now, so merged history counts) and `profiles` (the trait snapshot), and returns
//! the column `profile_id` of every profile that is a member at the evaluation time `now_ms`,
//! ordered by id. **Invariant:** its result equals [`crate::evaluate_from_history`] for every
//! profile, given the same history (tested by property in the warehouse crate).
//!
//! How the language maps onto SQL:
//! - time is event time (`timestamp`, after skew correction; `receivedAt` when missing), as the
//!   evaluators see it; ties are broken by arrival order (the log offset);
//! - an event's name is `event` for `track`, `name` for `page` / `screen`, empty otherwise;
//! - windows use the evaluator's edges: `last` is `t > now - length`, `between_ago` is
//!   `now - from < t <= now - to`, `absolute` is `from <= t < to`;
//! - each event node is one CTE (one row per profile) left-joined to `profiles`, and every
//!   boolean is two-valued (`COALESCE(…, FALSE)`), so `not` never meets SQL `NULL`;
//! - values are JSON text and the `seg_*` functions of [`crate::sql_functions`] give their
//!   types, numbers, equality keys and instants (time zones resolved per profile);
//! - referenced segments and computed traits are inlined.
//!
//! Not compilable (a [`SqlError::Unsupported`] naming the node's path, never wrong SQL):
//! `since_entry` windows (the entry time of a journey is not in the warehouse).
//!
//! Differences by construction: the evaluators cap what they keep per profile (at most
//! [`crate::MAX_DISTINCT_VALUES`] distinct values, [`crate::MAX_WINDOW_ENTRIES`] events per
//! sliding window); SQL is exact. Sums of non-integer values may differ in the last bit
//! (SQL adds in any order).

use std::fmt::Write as _;

use serde_json::Value;

use crate::condition::{CompiledCondition, Matcher, Operand, TzRule};
use crate::model::{AggregateFn, Operator, TraitKind};
use crate::sql_functions::{equality_key, zone_name};
use crate::store::CWindow;
use crate::time::{DAY_MS, TimeValue};
use crate::validate::{CMeasure, CNode, Compiled, Kind};
use crate::{CmpOp, CompiledTrait, ConsentState, SubscriptionState};

/// Why a segment cannot be compiled to SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("{path}: {node} cannot be compiled to SQL: {reason}")]
    Unsupported {
        /// JSON pointer of the node, as in validation errors.
        path: String,
        node: String,
        reason: String,
    },
}

/// The SQL text of `compiled` evaluated at `now_ms` (see the module docs).
pub fn compile_sql(compiled: &Compiled, now_ms: i64) -> Result<String, SqlError> {
    let mut builder = Builder::new(now_ms);
    let predicate = builder.node(&compiled.root)?;
    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "-- segment {:?} at {} ({now_ms})",
        compiled.id,
        crate::time::format_ms(now_ms)
    );
    sql.push_str(EVENTS_CTE);
    for cte in &builder.ctes {
        let _ = write!(sql, ",\n{cte}");
    }
    sql.push_str("\nSELECT p.profile_id FROM profiles p");
    for join in &builder.joins {
        let _ = write!(sql, "\n  LEFT JOIN {join} ON {join}.pid = p.profile_id");
    }
    let _ = write!(sql, "\nWHERE {predicate}\nORDER BY p.profile_id");
    Ok(sql)
}

/// The `ev` common table expression every query starts with: each attributed event's profile
/// (`pid`), arrival order (`seq`), time (`t`), name and properties.
const EVENTS_CTE: &str = "WITH ev AS (
  SELECT profile_id AS pid, \"offset\" AS seq, CAST(\"timestamp\" AS BIGINT) AS t,
    CASE \"type\" WHEN 'track' THEN COALESCE(\"event\", '') WHEN 'page' THEN COALESCE(\"name\", '')
      WHEN 'screen' THEN COALESCE(\"name\", '') ELSE '' END AS name,
    properties AS props
  FROM events_resolved WHERE profile_id IS NOT NULL
)";

/// One row per profile with counted orders: `pid`, `recency_days` (whole days since the
/// latest at `now`, at least 0), `orders`, `revenue` (sum of the numeric values, 0 without);
/// the [`crate::RfmInputs`] of the evaluators.
fn rfm_inputs_select(counted: &str, revenue: &str, now: i64) -> String {
    format!(
        "SELECT e.pid, CAST(GREATEST(({now} - max(e.t)) / {DAY_MS}, 0) AS DOUBLE) AS recency_days, \
         CAST(count(*) AS DOUBLE) AS orders, COALESCE(sum(seg_num({revenue})), 0.0) AS revenue \
         FROM ev e WHERE {counted} GROUP BY e.pid"
    )
}

/// Each profile's RFM inputs for an `rfm` computed trait at `now_ms`, as one SQL query over
/// `events_resolved` (so a profile's merged history counts, as in the evaluators): columns
/// `profile_id`, `recency_days`, `orders`, `revenue` (all `DOUBLE` but the id), one row per
/// profile with at least one counted order (the trait's event, filters and window), ordered by
/// id. The population [`crate::rfm_quintiles`] reads. Errors name the definition's path
/// (`/window`: `since_entry`; `/where`: a filter that needs a time).
pub fn compile_rfm_inputs_sql(definition: &CompiledTrait, now_ms: i64) -> Result<String, SqlError> {
    let builder = Builder::new(now_ms);
    let matches = matcher_sql("/where", &definition.matcher, "e")?;
    let window = builder.window_sql("/window", definition.spec.window, "e.t")?;
    let counted = format!("{matches} AND {window}");
    let revenue = format!(
        "seg_json(e.props, {})",
        lit(definition.property.as_deref().unwrap_or("revenue"))
    );
    let inputs = rfm_inputs_select(&counted, &revenue, now_ms);
    let mut sql = String::new();
    let _ = writeln!(
        sql,
        "-- rfm inputs of {:?} at {} ({now_ms})",
        definition.id,
        crate::time::format_ms(now_ms)
    );
    sql.push_str(EVENTS_CTE);
    let _ = write!(
        sql,
        "\nSELECT x.pid AS profile_id, x.recency_days, x.orders, x.revenue FROM ({inputs}) x\nORDER BY x.pid"
    );
    Ok(sql)
}

struct Builder {
    now: i64,
    ctes: Vec<String>,
    joins: Vec<String>,
}

/// A SQL string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL float literal (always with a `.` or an exponent).
fn float(number: f64) -> String {
    format!("({number:?})")
}

/// `path`: the JSON pointer of the node (empty: the segment's root condition).
fn unsupported(path: &str, what: &str, reason: &str) -> SqlError {
    SqlError::Unsupported {
        path: if path.is_empty() {
            "/condition".into()
        } else {
            path.to_owned()
        },
        node: what.to_string(),
        reason: reason.to_string(),
    }
}

/// What a condition's "now" is: the evaluation time, or (event filters) the event's time.
#[derive(Clone, Copy)]
enum Now<'a> {
    At(i64),
    Column(&'a str),
}

/// Where a condition's time zone comes from, as SQL.
fn zone_sql(rule: TzRule, traits: &str) -> String {
    match rule {
        TzRule::Fixed(zone) => lit(&zone_name(zone)),
        TzRule::Profile { fallback } => format!(
            "seg_zone(seg_json({traits}, 'timezone'), {})",
            lit(&zone_name(fallback))
        ),
    }
}

fn cmp_symbol(operator: CmpOp) -> &'static str {
    match operator {
        CmpOp::Eq => "=",
        CmpOp::Neq => "<>",
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
    }
}

/// `condition` over the JSON text `value` (SQL `NULL` when missing), as a two-valued boolean.
fn condition_sql(
    condition: &CompiledCondition,
    value: &str,
    zone: &str,
    now: Now<'_>,
) -> Option<String> {
    let missing = matches!(
        condition.operator,
        Operator::Neq
            | Operator::NotIn
            | Operator::NotContains
            | Operator::ContainsNone
            | Operator::NotExists
    );
    let present = present_sql(condition, value, zone, now)?;
    Some(format!(
        "(CASE WHEN {value} IS NULL THEN {} ELSE COALESCE({present}, FALSE) END)",
        if missing { "TRUE" } else { "FALSE" }
    ))
}

fn key_literal(value: &Value) -> String {
    lit(&equality_key(value))
}

/// The condition on a present value (may be SQL `NULL` where the evaluator says false).
fn present_sql(
    condition: &CompiledCondition,
    value: &str,
    zone: &str,
    now: Now<'_>,
) -> Option<String> {
    let time = || format!("seg_time({value}, {zone})");
    let text = |needle: &str| lit(needle);
    let any_of = |items: &[Value]| -> String {
        if items.is_empty() {
            "FALSE".into()
        } else {
            let parts: Vec<String> = items
                .iter()
                .map(|item| format!("seg_has({value}, {})", key_literal(item)))
                .collect();
            format!("({})", parts.join(" OR "))
        }
    };
    Some(match (&condition.operator, &condition.operand) {
        (Operator::Exists, _) => "TRUE".into(),
        (Operator::NotExists, _) => "FALSE".into(),
        (Operator::Eq, Operand::Scalar(expected)) => {
            format!("(seg_key({value}) = {})", key_literal(expected))
        }
        (Operator::Neq, Operand::Scalar(expected)) => {
            format!("(seg_key({value}) <> {})", key_literal(expected))
        }
        (Operator::Gt, Operand::Number(bound)) => format!("(seg_num({value}) > {})", float(*bound)),
        (Operator::Gte, Operand::Number(bound)) => {
            format!("(seg_num({value}) >= {})", float(*bound))
        }
        (Operator::Lt, Operand::Number(bound)) => format!("(seg_num({value}) < {})", float(*bound)),
        (Operator::Lte, Operand::Number(bound)) => {
            format!("(seg_num({value}) <= {})", float(*bound))
        }
        (Operator::Between, Operand::Range(low, high)) => format!(
            "(seg_num({value}) >= {} AND seg_num({value}) <= {})",
            float(*low),
            float(*high)
        ),
        (Operator::In, Operand::List(items)) | (Operator::NotIn, Operand::List(items)) => {
            let inside = if items.is_empty() {
                "FALSE".to_string()
            } else {
                let keys: Vec<String> = items.iter().map(key_literal).collect();
                format!("(seg_key({value}) IN ({}))", keys.join(", "))
            };
            if condition.operator == Operator::In {
                inside
            } else {
                format!("(NOT {inside})")
            }
        }
        (Operator::Contains, Operand::Text(needle))
        | (Operator::NotContains, Operand::Text(needle)) => {
            let inside = format!(
                "(CASE seg_kind({value}) WHEN 'string' THEN contains(seg_str({value}), {}) \
                 WHEN 'array' THEN seg_has({value}, {}) ELSE FALSE END)",
                text(needle),
                key_literal(&Value::String(needle.clone()))
            );
            if condition.operator == Operator::Contains {
                inside
            } else {
                format!("(NOT {inside})")
            }
        }
        (Operator::StartsWith, Operand::Text(prefix)) => {
            format!("starts_with(seg_str({value}), {})", text(prefix))
        }
        (Operator::EndsWith, Operand::Text(suffix)) => {
            format!("ends_with(seg_str({value}), {})", text(suffix))
        }
        (Operator::Regex, Operand::Pattern(pattern)) => {
            format!("seg_regex(seg_str({value}), {})", text(pattern.as_str()))
        }
        (Operator::ContainsAny, Operand::List(items)) => any_of(items),
        (Operator::ContainsNone, Operand::List(items)) => format!("(NOT {})", any_of(items)),
        (Operator::ContainsAll, Operand::List(items)) => {
            if items.is_empty() {
                "TRUE".into()
            } else {
                let parts: Vec<String> = items
                    .iter()
                    .map(|item| format!("seg_has({value}, {})", key_literal(item)))
                    .collect();
                format!("({})", parts.join(" AND "))
            }
        }
        (Operator::Before, Operand::Time(bound)) => {
            format!("({} < {})", time(), time_bound(*bound, zone))
        }
        (Operator::After, Operand::Time(bound)) => {
            format!("({} > {})", time(), time_bound(*bound, zone))
        }
        (Operator::WithinLast, Operand::DurationMs(length)) => {
            let Now::At(now) = now else { return None };
            format!(
                "({t} <= {now} AND {t} > {})",
                now.saturating_sub(*length),
                t = time()
            )
        }
        (Operator::WithinNext, Operand::DurationMs(length)) => {
            let Now::At(now) = now else { return None };
            format!(
                "({t} > {now} AND {t} <= {})",
                now.saturating_add(*length),
                t = time()
            )
        }
        (Operator::MoreThanAgo, Operand::DurationMs(length)) => {
            let Now::At(now) = now else { return None };
            format!("({} <= {})", time(), now.saturating_sub(*length))
        }
        (Operator::Anniversary, _) => {
            let today = match now {
                Now::At(now) => format!("seg_local_date({now}, {zone})"),
                Now::Column(column) => format!("seg_local_date({column}, {zone})"),
            };
            let origin = format!("seg_local_date({}, {zone})", time());
            // The anniversary of 29 February is 28 February in common years.
            format!(
                "(({o} % 10000) = ({d} % 10000) OR (({o} % 10000) = 229 AND ({d} % 10000) = 228 \
                 AND NOT ((({d} / 10000) % 4 = 0 AND ({d} / 10000) % 100 <> 0) OR ({d} / 10000) % 400 = 0)))",
                o = origin,
                d = today
            )
        }
        // Validation pairs every operator with its operand; the evaluator reads others as false.
        _ => "FALSE".into(),
    })
}

/// A `before` / `after` bound: an instant, or a date at local midnight in the zone.
fn time_bound(bound: TimeValue, zone: &str) -> String {
    match bound {
        TimeValue::Millis(ms) => ms.to_string(),
        TimeValue::Date(date) => format!(
            "seg_time({}, {zone})",
            lit(&Value::String(date.format("%Y-%m-%d").to_string()).to_string())
        ),
    }
}

impl Builder {
    fn new(now: i64) -> Builder {
        Builder {
            now,
            ctes: Vec::new(),
            joins: Vec::new(),
        }
    }

    fn alias(&self) -> String {
        format!("n{}", self.joins.len() + 1)
    }

    fn add(&mut self, alias: &str, body: String) {
        self.ctes.push(format!("{alias} AS (\n  {body}\n)"));
        self.joins.push(alias.to_string());
    }

    fn node(&mut self, node: &CNode) -> Result<String, SqlError> {
        match &node.kind {
            Kind::All(children) | Kind::Any(children) => {
                let joiner = if matches!(node.kind, Kind::All(_)) {
                    " AND "
                } else {
                    " OR "
                };
                if children.is_empty() {
                    return Ok(if joiner == " AND " { "TRUE" } else { "FALSE" }.into());
                }
                let mut parts = Vec::with_capacity(children.len());
                for child in children {
                    parts.push(self.node(child)?);
                }
                Ok(format!("({})", parts.join(joiner)))
            }
            Kind::Not(child) => Ok(format!("(NOT {})", self.node(child)?)),
            Kind::InSegment { root, .. } => self.node(root),
            Kind::Trait(condition) => {
                let value = format!("seg_json(p.traits, {})", lit(&condition.path));
                let zone = zone_sql(condition.tz, "p.traits");
                condition_sql(condition, &value, &zone, Now::At(self.now)).ok_or_else(|| {
                    unsupported(&node.path, "trait condition", "operator needs a time")
                })
            }
            Kind::Consent { purpose, state } => {
                let value = format!("seg_json(p.traits, {})", lit(&format!("consent.{purpose}")));
                Ok(match state {
                    ConsentState::Granted => {
                        format!("COALESCE({value} IN ('true', '\"granted\"', '\"true\"'), FALSE)")
                    }
                    ConsentState::Denied => {
                        format!("COALESCE({value} IN ('false', '\"denied\"', '\"false\"'), FALSE)")
                    }
                    ConsentState::Unset => format!(
                        "COALESCE({value} NOT IN ('true', '\"granted\"', '\"true\"', 'false', '\"denied\"', '\"false\"'), TRUE)"
                    ),
                })
            }
            Kind::Subscription { group, state } => {
                let value = format!(
                    "seg_json(p.traits, {})",
                    lit(&format!("subscriptions.{group}"))
                );
                Ok(match state {
                    SubscriptionState::Subscribed => {
                        format!("COALESCE({value} IN ('true', '\"subscribed\"'), FALSE)")
                    }
                    SubscriptionState::Unsubscribed => {
                        format!("COALESCE({value} IN ('false', '\"unsubscribed\"'), FALSE)")
                    }
                    SubscriptionState::Unset => format!(
                        "COALESCE({value} NOT IN ('true', '\"subscribed\"', 'false', '\"unsubscribed\"'), TRUE)"
                    ),
                })
            }
            Kind::RandomBucket { salt, from, to } => Ok(format!(
                "(seg_bucket({s}, p.profile_id) >= {} AND seg_bucket({s}, p.profile_id) < {})",
                float(*from),
                float(*to),
                s = lit(salt)
            )),
            Kind::Performed {
                matcher,
                spec,
                measure,
                cmp,
                ..
            } => {
                let alias = self.alias();
                let matches = matcher_sql(&node.path, matcher, "e")?;
                let window = self.window_sql(&node.path, spec.window, "e.t")?;
                let property = |path: &str| format!("seg_num(seg_json(e.props, {}))", lit(path));
                let (aggregate, zero_default) = match measure {
                    CMeasure::Count => ("CAST(count(*) AS DOUBLE)".to_string(), true),
                    CMeasure::Sum(path) => (format!("sum({})", property(path)), true),
                    CMeasure::Avg(path) => (format!("avg({})", property(path)), false),
                    CMeasure::Min(path) => (format!("min({})", property(path)), false),
                    CMeasure::Max(path) => (format!("max({})", property(path)), false),
                    CMeasure::Distinct(path) => (
                        format!(
                            "CAST(count(DISTINCT seg_json(e.props, {})) AS DOUBLE)",
                            lit(path)
                        ),
                        true,
                    ),
                };
                self.add(
                    &alias,
                    format!(
                        "SELECT e.pid, {aggregate} AS v FROM ev e WHERE {matches} AND {window} GROUP BY e.pid"
                    ),
                );
                let symbol = cmp_symbol(cmp.operator);
                let bound = float(cmp.value);
                Ok(if zero_default {
                    format!("(COALESCE({alias}.v, 0.0) {symbol} {bound})")
                } else {
                    format!("COALESCE({alias}.v {symbol} {bound}, FALSE)")
                })
            }
            Kind::FirstLast {
                matcher, has, last, ..
            } => {
                let alias = self.alias();
                let matches = matcher_sql(&node.path, matcher, "e")?;
                let zone = lit(&zone_name(matcher.zone));
                let mut checks = Vec::with_capacity(has.len());
                for condition in has {
                    let value = format!("seg_json(x.props, {})", lit(&condition.path));
                    checks.push(
                        condition_sql(condition, &value, &zone, Now::Column("x.t")).ok_or_else(
                            || {
                                unsupported(
                                    &node.path,
                                    "first/last condition",
                                    "operator needs a time",
                                )
                            },
                        )?,
                    );
                }
                let has_sql = if checks.is_empty() {
                    "TRUE".to_string()
                } else {
                    checks.join(" AND ")
                };
                let order = if *last {
                    "e.t DESC, e.seq DESC"
                } else {
                    "e.t ASC, e.seq ASC"
                };
                self.add(
                    &alias,
                    format!(
                        "SELECT x.pid, {has_sql} AS v FROM (SELECT e.pid, e.t, e.props, \
                         row_number() OVER (PARTITION BY e.pid ORDER BY {order}) AS rn \
                         FROM ev e WHERE {matches}) x WHERE x.rn = 1"
                    ),
                );
                Ok(format!("COALESCE({alias}.v, FALSE)"))
            }
            Kind::Sequence { steps, within, .. } => {
                let alias = self.alias();
                let mut body = String::new();
                let first = steps
                    .first()
                    .ok_or_else(|| unsupported(&node.path, "sequence", "no steps"))?;
                let _ = write!(
                    body,
                    "WITH s0 AS (SELECT DISTINCT e.pid, e.t AS t0, e.t AS cur FROM ev e WHERE {})",
                    matcher_sql(&node.path, first, "e")?
                );
                for (index, step) in steps.iter().enumerate().skip(1) {
                    // The earliest later event for the step (greedy is optimal for "exists").
                    let _ = write!(
                        body,
                        ",\n    s{index} AS (SELECT s.pid, s.t0, min(e.t) AS cur FROM s{prev} s \
                         JOIN ev e ON e.pid = s.pid AND e.t > s.cur WHERE {} GROUP BY s.pid, s.t0)",
                        matcher_sql(&node.path, step, "e")?,
                        prev = index - 1
                    );
                }
                let _ = write!(
                    body,
                    "\n  SELECT pid, TRUE AS v FROM s{} WHERE cur - t0 <= {within} GROUP BY pid",
                    steps.len() - 1
                );
                self.add(&alias, body);
                Ok(format!("COALESCE({alias}.v, FALSE)"))
            }
            Kind::NotFollowedBy {
                first,
                then,
                within,
                join,
                window,
                ..
            } => {
                let alias = self.alias();
                let first_sql = matcher_sql(&node.path, first, "e")?;
                let then_sql = matcher_sql(&node.path, then, "e")?;
                let window_sql = self.window_sql(&node.path, *window, "e.t")?;
                // A candidate counts once `within` has elapsed: now >= t + within.
                let elapsed = self.now.saturating_sub(*within);
                let mut on = format!("f.pid = c.pid AND f.t >= c.t AND f.t < c.t + {within}");
                for path in join {
                    let _ = write!(
                        on,
                        " AND seg_key(seg_json(f.props, {p})) = seg_key(seg_json(c.props, {p}))",
                        p = lit(path)
                    );
                }
                self.add(
                    &alias,
                    format!(
                        "SELECT c.pid, TRUE AS v FROM \
                         (SELECT e.pid, e.seq, e.t, e.props FROM ev e WHERE {first_sql} AND {window_sql} AND e.t <= {elapsed}) c \
                         LEFT JOIN (SELECT e.pid, e.t, e.props FROM ev e WHERE {then_sql}) f ON {on} \
                         WHERE f.pid IS NULL GROUP BY c.pid"
                    ),
                );
                Ok(format!("COALESCE({alias}.v, FALSE)"))
            }
            Kind::Computed {
                definition,
                condition,
                ..
            } => {
                let alias = self.alias();
                let (body, default) = self.computed_sql(&node.path, definition)?;
                self.add(&alias, body);
                let value = match default {
                    Some(default) => format!("COALESCE({alias}.v, {})", lit(default)),
                    None => format!("{alias}.v"),
                };
                condition_sql(condition, &value, &lit("UTC"), Now::At(self.now)).ok_or_else(|| {
                    unsupported(
                        &node.path,
                        "computed trait condition",
                        "operator needs a time",
                    )
                })
            }
        }
    }

    fn window_sql(&self, path: &str, window: CWindow, time: &str) -> Result<String, SqlError> {
        let now = self.now;
        Ok(match window {
            CWindow::AllTime => "TRUE".into(),
            CWindow::Last { length } => format!("{time} > {}", now.saturating_sub(length)),
            CWindow::BetweenAgo { from, to } => format!(
                "({time} > {} AND {time} <= {})",
                now.saturating_sub(from),
                now.saturating_sub(to)
            ),
            CWindow::Absolute { from, to } => format!("({time} >= {from} AND {time} < {to})"),
            CWindow::SinceEntry => {
                return Err(unsupported(
                    path,
                    "since_entry window",
                    "the entry time (journeys) is not in the warehouse",
                ));
            }
        })
    }

    /// A CTE body giving each profile with counted events its computed value as JSON text
    /// (`v`), and the value of a profile without any (`None`: null).
    fn computed_sql(
        &self,
        path: &str,
        definition: &CompiledTrait,
    ) -> Result<(String, Option<&'static str>), SqlError> {
        let matches = matcher_sql(path, &definition.matcher, "e")?;
        let window = self.window_sql(path, definition.spec.window, "e.t")?;
        let counted = format!("{matches} AND {window}");
        let property = definition.property.as_deref();
        // The value an event contributes (kinds with a required property skip events without it).
        let value_of = |path: &str| format!("seg_json(e.props, {})", lit(path));
        let number_json = |expr: &str| {
            format!("(CASE WHEN ({expr}) - ({expr}) = 0 THEN CAST(({expr}) AS VARCHAR) END)")
        };
        let required =
            || property.ok_or_else(|| unsupported(path, "computed trait", "no property"));
        let revenue = value_of(property.unwrap_or("revenue"));
        let now = self.now;
        Ok(match definition.kind {
            TraitKind::EventCounter | TraitKind::OrderCount => (
                format!(
                    "SELECT e.pid, CAST(count(*) AS VARCHAR) AS v FROM ev e WHERE {counted} GROUP BY e.pid"
                ),
                Some("0"),
            ),
            TraitKind::Aggregation => {
                let value = value_of(required()?);
                let (aggregate, default) = match definition.function.unwrap_or(AggregateFn::Sum) {
                    AggregateFn::Sum => ("COALESCE(sum(seg_num(x.v)), 0.0)", Some("0")),
                    AggregateFn::Avg => ("avg(seg_num(x.v))", None),
                    AggregateFn::Min => ("min(seg_num(x.v))", None),
                    AggregateFn::Max => ("max(seg_num(x.v))", None),
                };
                (
                    format!(
                        "SELECT x.pid, {} AS v FROM (SELECT e.pid, {value} AS v FROM ev e WHERE {counted}) x \
                         WHERE x.v IS NOT NULL GROUP BY x.pid",
                        number_json(aggregate)
                    ),
                    default,
                )
            }
            TraitKind::LifetimeValue => (
                format!(
                    "SELECT e.pid, {} AS v FROM ev e WHERE {counted} GROUP BY e.pid",
                    number_json(&format!("COALESCE(sum(seg_num({revenue})), 0.0)"))
                ),
                Some("0"),
            ),
            TraitKind::AverageOrderValue => (
                format!(
                    "SELECT e.pid, {} AS v FROM ev e WHERE {counted} GROUP BY e.pid",
                    number_json(&format!(
                        "COALESCE(sum(seg_num({revenue})), 0.0) / CAST(count(*) AS DOUBLE)"
                    ))
                ),
                None,
            ),
            TraitKind::DaysSinceLastOrder => (
                format!(
                    "SELECT e.pid, CAST(GREATEST(({now} - max(e.t)) / {DAY_MS}, 0) AS VARCHAR) AS v \
                     FROM ev e WHERE {counted} GROUP BY e.pid"
                ),
                None,
            ),
            TraitKind::Rfm => {
                let Some(thresholds) = definition.rfm.as_ref() else {
                    return Err(unsupported(
                        path,
                        "computed trait",
                        "rfm without thresholds",
                    ));
                };
                let Some(cuts) = thresholds.cut_points() else {
                    // Quintiles not computed yet: every profile's value is null.
                    return Ok((
                        "SELECT e.pid, CAST(NULL AS VARCHAR) AS v FROM ev e WHERE FALSE".into(),
                        None,
                    ));
                };
                // The rule of `crate::rfm_score`: recency counts `days > cut`, frequency and
                // monetary `>= cut` (fixed) or `> cut` (quintiles).
                let above = |value: &str, cuts: &[f64; 4], strict: bool| -> String {
                    let parts: Vec<String> = cuts
                        .iter()
                        .map(|cut| {
                            format!(
                                "CASE WHEN {value} {} {} THEN 1 ELSE 0 END",
                                if strict { ">" } else { ">=" },
                                float(*cut)
                            )
                        })
                        .collect();
                    format!("({})", parts.join(" + "))
                };
                let right_closed = thresholds.quintiles;
                let recency = format!(
                    "(5 - {})",
                    above("x.recency_days", &cuts.recency_days, true)
                );
                let frequency =
                    format!("(1 + {})", above("x.orders", &cuts.frequency, right_closed));
                let monetary =
                    format!("(1 + {})", above("x.revenue", &cuts.monetary, right_closed));
                let inputs = rfm_inputs_select(&counted, &revenue, now);
                (
                    format!(
                        "SELECT x.pid, '{{\"r\":' || CAST({recency} AS VARCHAR) || ',\"f\":' || CAST({frequency} AS VARCHAR) \
                         || ',\"m\":' || CAST({monetary} AS VARCHAR) || ',\"score\":\"' || CAST({recency} AS VARCHAR) \
                         || CAST({frequency} AS VARCHAR) || CAST({monetary} AS VARCHAR) || '\"}}' AS v \
                         FROM ({inputs}) x"
                    ),
                    None,
                )
            }
            TraitKind::FirstValue | TraitKind::LastValue => {
                let value = value_of(required()?);
                let order = if definition.kind == TraitKind::LastValue {
                    "e.t DESC, e.seq DESC"
                } else {
                    "e.t ASC, e.seq ASC"
                };
                (
                    format!(
                        "SELECT x.pid, x.v FROM (SELECT e.pid, {value} AS v, \
                         row_number() OVER (PARTITION BY e.pid ORDER BY {order}) AS rn \
                         FROM ev e WHERE {counted} AND {value} IS NOT NULL) x WHERE x.rn = 1"
                    ),
                    None,
                )
            }
            TraitKind::MostFrequent | TraitKind::FavouriteCategory => {
                let keys = if definition.kind == TraitKind::MostFrequent {
                    format!(
                        "SELECT e.pid, {} AS k FROM ev e WHERE {counted}",
                        value_of(required()?)
                    )
                } else {
                    // `category` and every `products[].category`, when they are strings.
                    format!(
                        "SELECT e.pid, seg_json(e.props, 'category') AS k FROM ev e WHERE {counted} \
                         AND seg_kind(seg_json(e.props, 'category')) = 'string' \
                         UNION ALL SELECT y.pid, seg_json(y.item, 'category') AS k FROM \
                         (SELECT e.pid, UNNEST(seg_items(e.props, 'products')) AS item FROM ev e WHERE {counted}) y \
                         WHERE seg_kind(seg_json(y.item, 'category')) = 'string'"
                    )
                };
                let at_least = if definition.kind == TraitKind::MostFrequent {
                    2
                } else {
                    1
                };
                (
                    format!(
                        "SELECT c.pid, c.k AS v FROM (SELECT g.pid, g.k, g.n, row_number() OVER \
                         (PARTITION BY g.pid ORDER BY g.n DESC, g.k ASC) AS rn FROM \
                         (SELECT z.pid, z.k, count(*) AS n FROM ({keys}) z WHERE z.k IS NOT NULL GROUP BY z.pid, z.k) g) c \
                         WHERE c.rn = 1 AND c.n >= {at_least}"
                    ),
                    None,
                )
            }
            TraitKind::UniqueList | TraitKind::UniqueListCount => {
                let value = value_of(required()?);
                let distinct = format!(
                    "SELECT DISTINCT e.pid, {value} AS k FROM ev e WHERE {counted} AND {value} IS NOT NULL"
                );
                if definition.kind == TraitKind::UniqueList {
                    (
                        format!(
                            "SELECT d.pid, '[' || string_agg(d.k, ',' ORDER BY d.k) || ']' AS v FROM ({distinct}) d GROUP BY d.pid"
                        ),
                        Some("[]"),
                    )
                } else {
                    (
                        format!(
                            "SELECT d.pid, CAST(count(*) AS VARCHAR) AS v FROM ({distinct}) d GROUP BY d.pid"
                        ),
                        Some("0"),
                    )
                }
            }
        })
    }
}

/// Whether the event aliased `alias` matches: its name and every property filter (in the
/// matcher's zone, "now" being the event's time, as [`Matcher::matches`]).
fn matcher_sql(path: &str, matcher: &Matcher, alias: &str) -> Result<String, SqlError> {
    let time = format!("{alias}.t");
    let mut parts = vec![format!("{alias}.name = {}", lit(&matcher.event))];
    for filter in &matcher.filters {
        let zone = lit(&zone_name(filter.event_zone(matcher.zone)));
        let value = format!("seg_json({alias}.props, {})", lit(&filter.path));
        parts.push(
            condition_sql(filter, &value, &zone, Now::Column(&time)).ok_or_else(|| {
                unsupported(path, "event property condition", "operator needs a time")
            })?,
        );
    }
    Ok(format!("({})", parts.join(" AND ")))
}
