//! KPIs per local period and breakdown value.
//!
//! Over the events in `[from, to)` that pass the filters:
//! - `visitors`: distinct profiles with any event; `purchasers`: distinct profiles with an
//!   `Order Completed`; `conversion_rate` = purchasers ÷ visitors;
//! - `orders`: `Order Completed` events; `revenue`: the sum of their `revenue` (missing = 0);
//!   `aov` = revenue ÷ orders;
//! - `new_customers`: purchasers whose first `Order Completed` ever (all history before `to`,
//!   same filters) falls in the bucket; `returning_customers` = purchasers − new;
//! - `refunds`: `Order Refunded` events; `refunded_revenue`: the sum of their `revenue`;
//! - `dau`, `wau`, `mau` (totals only): the mean, over the local days, Monday weeks or months
//!   overlapping the range, of distinct profiles active in that period within the range.
//!
//! With a breakdown, an event counts for its own value of the dimension (a profile active on
//! two channels is a visitor of both). Buckets without events are omitted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::calendar::Calendar;
use crate::load::{Dict, FastMap, GroupedSpec, LoadSpec, Matcher, load, load_grouped};
use crate::request::{Field, Filter, Granularity, Scope, ScopeFields};
use crate::table::{Tabular, TextTable, cell_opt, ratio};
use crate::{AnalyticsError, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KpiMetric {
    Revenue,
    Orders,
    Aov,
    Visitors,
    Purchasers,
    ConversionRate,
    NewCustomers,
    ReturningCustomers,
    Refunds,
    RefundedRevenue,
    Dau,
    Wau,
    Mau,
}

impl KpiMetric {
    pub const ALL: [KpiMetric; 13] = [
        KpiMetric::Revenue,
        KpiMetric::Orders,
        KpiMetric::Aov,
        KpiMetric::Visitors,
        KpiMetric::Purchasers,
        KpiMetric::ConversionRate,
        KpiMetric::NewCustomers,
        KpiMetric::ReturningCustomers,
        KpiMetric::Refunds,
        KpiMetric::RefundedRevenue,
        KpiMetric::Dau,
        KpiMetric::Wau,
        KpiMetric::Mau,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KpiMetric::Revenue => "revenue",
            KpiMetric::Orders => "orders",
            KpiMetric::Aov => "aov",
            KpiMetric::Visitors => "visitors",
            KpiMetric::Purchasers => "purchasers",
            KpiMetric::ConversionRate => "conversion_rate",
            KpiMetric::NewCustomers => "new_customers",
            KpiMetric::ReturningCustomers => "returning_customers",
            KpiMetric::Refunds => "refunds",
            KpiMetric::RefundedRevenue => "refunded_revenue",
            KpiMetric::Dau => "dau",
            KpiMetric::Wau => "wau",
            KpiMetric::Mau => "mau",
        }
    }

    fn needs_all_events(self) -> bool {
        matches!(
            self,
            KpiMetric::Visitors
                | KpiMetric::ConversionRate
                | KpiMetric::Dau
                | KpiMetric::Wau
                | KpiMetric::Mau
        )
    }

    fn counts_people(self) -> bool {
        !matches!(
            self,
            KpiMetric::Revenue
                | KpiMetric::Orders
                | KpiMetric::Aov
                | KpiMetric::Refunds
                | KpiMetric::RefundedRevenue
        )
    }

    fn totals_only(self) -> bool {
        matches!(self, KpiMetric::Dau | KpiMetric::Wau | KpiMetric::Mau)
    }
}

/// `POST /v1/analytics/kpis`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiRequest {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub granularity: Granularity,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub breakdown: Option<String>,
    /// Metrics to compute (default: all). Asking only for order metrics reads only order events.
    #[serde(default)]
    pub metrics: Option<Vec<KpiMetric>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KpiRow {
    /// First local date of the period (`None` for granularity `total` and for totals).
    pub bucket: Option<String>,
    /// Breakdown value (`None`: no breakdown, or the event has no value).
    pub group: Option<String>,
    /// The requested metrics by name (`null` where a ratio's denominator is zero).
    #[serde(flatten)]
    pub values: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KpiResponse {
    pub time_zone: String,
    pub granularity: Granularity,
    pub metrics: Vec<KpiMetric>,
    pub rows: Vec<KpiRow>,
    /// One row per breakdown value over the whole range.
    pub totals: Vec<KpiRow>,
}

const ORDER_COMPLETED: &str = "Order Completed";
const ORDER_REFUNDED: &str = "Order Refunded";
const TOTAL: u32 = u32::MAX;

#[derive(Default, Clone, Copy)]
struct Sums {
    orders: u64,
    revenue: f64,
    refunds: u64,
    refunded: f64,
}

fn key(bucket: u32, group: u32) -> u64 {
    (u64::from(bucket) << 32) | u64::from(group)
}

/// Distinct profiles per key.
fn count_distinct(mut pairs: Vec<(u64, u32)>) -> FastMap<u64, u64> {
    pairs.sort_unstable();
    pairs.dedup();
    let mut counts = FastMap::default();
    for (key, _) in pairs {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

pub(crate) fn run(
    warehouse: &atrium_warehouse::Warehouse,
    request: &KpiRequest,
    limits: &Limits,
) -> Result<KpiResponse, AnalyticsError> {
    let (scope, metrics) = compile(request)?;
    let tally = if can_group_in_engine(&scope, &metrics) {
        tally_grouped(warehouse, &scope, limits)?
    } else {
        tally_rows(warehouse, &scope, &metrics, limits)?
    };
    Ok(respond(&scope, metrics, tally))
}

/// [`run`] through the general row-by-row path only, for tests that check the `GROUP BY`
/// path against it.
pub(crate) fn run_by_rows(
    warehouse: &atrium_warehouse::Warehouse,
    request: &KpiRequest,
    limits: &Limits,
) -> Result<KpiResponse, AnalyticsError> {
    let (scope, metrics) = compile(request)?;
    let tally = tally_rows(warehouse, &scope, &metrics, limits)?;
    Ok(respond(&scope, metrics, tally))
}

fn compile(request: &KpiRequest) -> Result<(Scope, Vec<KpiMetric>), AnalyticsError> {
    let scope = Scope::compile(ScopeFields {
        from: &request.from,
        to: &request.to,
        time_zone: request.time_zone.as_deref(),
        granularity: request.granularity,
        filters: &request.filters,
        breakdown: request.breakdown.as_deref(),
    })?;
    let mut metrics = match &request.metrics {
        Some(list) if list.is_empty() => {
            return Err(AnalyticsError::invalid(
                "metrics",
                "name at least one metric",
            ));
        }
        Some(list) => list.clone(),
        None => KpiMetric::ALL.to_vec(),
    };
    metrics.sort();
    metrics.dedup();
    Ok((scope, metrics))
}

/// What the metrics are computed from, per `key(bucket, group)`; groups are ids of `labels`.
struct Tally {
    labels: Dict,
    sums: FastMap<u64, Sums>,
    visitors: FastMap<u64, u64>,
    purchasers: FastMap<u64, u64>,
    new_customers: FastMap<u64, u64>,
    /// Active users per metric (DAU, WAU, MAU) and group.
    averages: BTreeMap<(KpiMetric, u32), f64>,
    /// Only keys with events of any kind are reported, not just those with orders.
    all_events: bool,
}

/// Order sums over event columns need no profile and no row order: DataFusion can count and
/// sum them per period and column values, and the filters then run once per group.
fn can_group_in_engine(scope: &Scope, metrics: &[KpiMetric]) -> bool {
    metrics.iter().all(|metric| !metric.counts_people())
        && scope.profile_filters.is_empty()
        && scope
            .filters
            .iter()
            .all(|filter| matches!(filter.field, Field::Column(_)))
        && matches!(scope.breakdown, None | Some(Field::Column(_)))
}

/// The order sums through one `GROUP BY` query (see [`can_group_in_engine`]).
fn tally_grouped(
    warehouse: &atrium_warehouse::Warehouse,
    scope: &Scope,
    limits: &Limits,
) -> Result<Tally, AnalyticsError> {
    let mut columns: Vec<&'static str> = Vec::new();
    let fields = scope.filters.iter().map(|filter| &filter.field);
    for field in fields.chain(scope.breakdown.as_ref()) {
        if let Field::Column(column) = field
            && !matches!(*column, "type" | "event")
            && !columns.contains(column)
        {
            columns.push(column);
        }
    }
    let calendar = Calendar::new(scope.tz, scope.granularity, scope.from_ms, scope.to_ms);
    let groups = load_grouped(
        warehouse,
        limits.timeout,
        GroupedSpec {
            from_ms: scope.from_ms,
            to_ms: scope.to_ms,
            names: vec![ORDER_COMPLETED.to_owned(), ORDER_REFUNDED.to_owned()],
            columns: columns.clone(),
            calendar,
        },
    )?;
    let mut labels = Dict::default();
    let mut sums: FastMap<u64, Sums> = FastMap::default();
    for group in &groups {
        let kind = group.kind.as_deref().unwrap_or("");
        let event = group.event.as_deref();
        // The same column values the row path reads: `type` and `event` themselves, the
        // grouped columns by position.
        let value_of = |column: &str| -> Option<&str> {
            match column {
                "event" => event,
                "type" => Some(kind),
                _ => {
                    let index = columns.iter().position(|c| *c == column)?;
                    group.columns[index].as_deref()
                }
            }
        };
        let passes = scope.filters.iter().all(|filter| match &filter.field {
            Field::Column(column) => filter.matches_text(value_of(column)),
            Field::Property(_) | Field::Trait(_) => true,
        });
        if !passes {
            continue;
        }
        let key_name = if kind == "track" {
            event.unwrap_or("").to_owned()
        } else {
            format!("${kind}")
        };
        let group_id = match &scope.breakdown {
            Some(Field::Column(column)) => match value_of(column) {
                Some(text) if !text.is_empty() => labels.intern(text),
                _ => 0,
            },
            _ => 0,
        };
        for bucket in [group.bucket, TOTAL] {
            let entry = sums.entry(key(bucket, group_id)).or_default();
            if key_name == ORDER_COMPLETED {
                entry.orders += group.rows;
                entry.revenue += group.revenue;
            }
            if key_name == ORDER_REFUNDED {
                entry.refunds += group.rows;
                entry.refunded += group.revenue;
            }
        }
    }
    Ok(Tally {
        labels,
        sums,
        visitors: FastMap::default(),
        purchasers: FastMap::default(),
        new_customers: FastMap::default(),
        averages: BTreeMap::new(),
        all_events: false,
    })
}

/// Every metric, from rows converted to integers (see [`load`]).
fn tally_rows(
    warehouse: &atrium_warehouse::Warehouse,
    scope: &Scope,
    metrics: &[KpiMetric],
    limits: &Limits,
) -> Result<Tally, AnalyticsError> {
    let all_events = metrics.iter().any(|m| m.needs_all_events());
    let first_orders = metrics
        .iter()
        .any(|m| matches!(m, KpiMetric::NewCustomers | KpiMetric::ReturningCustomers));
    let order_matchers = vec![
        Matcher::new(ORDER_COMPLETED, Vec::new()),
        Matcher::new(ORDER_REFUNDED, Vec::new()),
    ];
    let mut specs = vec![LoadSpec {
        from_ms: Some(scope.from_ms),
        to_ms: scope.to_ms,
        only_matching: !all_events,
        matchers: order_matchers,
        revenue: true,
        pushdown: None,
    }];
    if first_orders {
        specs.push(LoadSpec {
            from_ms: None,
            to_ms: scope.to_ms,
            only_matching: true,
            matchers: vec![Matcher::new(ORDER_COMPLETED, Vec::new())],
            revenue: false,
            pushdown: None,
        });
    }
    // Order sums need no one: skip reading and resolving identities.
    let people = metrics.iter().any(|m| m.counts_people())
        || !scope.profile_filters.is_empty()
        || matches!(scope.breakdown, Some(Field::Trait(_)));
    let mut loaded = load(
        warehouse,
        limits.timeout,
        people,
        scope.filters.clone(),
        scope.profile_filters.clone(),
        scope.breakdown.clone(),
        specs,
    )?;
    let rows = &loaded.rows[0];
    let calendar = Calendar::new(scope.tz, scope.granularity, scope.from_ms, scope.to_ms);

    // First order per profile, as a bucket index (or before the range / none).
    let profiles = loaded.people.count();
    let mut first_order: Vec<Option<i64>> = vec![None; profiles];
    if let Some(history) = loaded.rows.get(1) {
        for row in 0..history.len() {
            let slot = &mut first_order[history.profile[row] as usize];
            let ts = history.ts[row];
            if slot.is_none_or(|first| ts < first) {
                *slot = Some(ts);
            }
        }
    }

    let mut sums: FastMap<u64, Sums> = FastMap::default();
    let mut visitors = Vec::new();
    let mut purchasers = Vec::new();
    for row in 0..rows.len() {
        let bucket = calendar.index(rows.ts[row]) as u32;
        let group = rows.group[row];
        let profile = rows.profile[row];
        let mask = rows.mask[row];
        for bucket in [bucket, TOTAL] {
            let entry = sums.entry(key(bucket, group)).or_default();
            let revenue = rows.revenue[row];
            let revenue = if revenue.is_nan() { 0.0 } else { revenue };
            if mask & 1 != 0 {
                entry.orders += 1;
                entry.revenue += revenue;
                purchasers.push((key(bucket, group), profile));
            }
            if mask & 2 != 0 {
                entry.refunds += 1;
                entry.refunded += revenue;
            }
            if all_events {
                visitors.push((key(bucket, group), profile));
            }
        }
    }
    let visitor_counts = count_distinct(visitors);
    // New customers: purchasers whose first order is in the same bucket.
    let mut purchaser_pairs = purchasers;
    purchaser_pairs.sort_unstable();
    purchaser_pairs.dedup();
    let mut purchaser_counts: FastMap<u64, u64> = FastMap::default();
    let mut new_counts: FastMap<u64, u64> = FastMap::default();
    for &(pair_key, profile) in &purchaser_pairs {
        *purchaser_counts.entry(pair_key).or_insert(0) += 1;
        let bucket = (pair_key >> 32) as u32;
        let is_new = match first_order[profile as usize] {
            None => false,
            Some(first) if bucket == TOTAL => first >= scope.from_ms,
            Some(first) => first >= scope.from_ms && calendar.index(first) as u32 == bucket,
        };
        if is_new {
            *new_counts.entry(pair_key).or_insert(0) += 1;
        }
    }
    // Active users per local day, week and month, averaged (totals only).
    let mut averages: BTreeMap<(KpiMetric, u32), f64> = BTreeMap::new();
    for (metric, granularity) in [
        (KpiMetric::Dau, Granularity::Day),
        (KpiMetric::Wau, Granularity::Week),
        (KpiMetric::Mau, Granularity::Month),
    ] {
        if !metrics.contains(&metric) {
            continue;
        }
        let periods = Calendar::new(scope.tz, granularity, scope.from_ms, scope.to_ms);
        let mut pairs = Vec::with_capacity(rows.len());
        for row in 0..rows.len() {
            let period = periods.index(rows.ts[row]) as u32;
            pairs.push((key(period, rows.group[row]), rows.profile[row]));
        }
        let mut per_group: FastMap<u32, u64> = FastMap::default();
        for (pair_key, count) in count_distinct(pairs) {
            *per_group.entry(pair_key as u32).or_insert(0) += count;
        }
        for (group, total) in per_group {
            averages.insert((metric, group), total as f64 / periods.len().max(1) as f64);
        }
    }
    Ok(Tally {
        labels: std::mem::take(&mut loaded.labels),
        sums,
        visitors: visitor_counts,
        purchasers: purchaser_counts,
        new_customers: new_counts,
        averages,
        all_events,
    })
}

fn respond(scope: &Scope, metrics: Vec<KpiMetric>, tally: Tally) -> KpiResponse {
    let calendar = Calendar::new(scope.tz, scope.granularity, scope.from_ms, scope.to_ms);
    let group_label = |group: u32| tally.labels.text(group).map(str::to_owned);
    let mut keys: Vec<u64> = tally.sums.keys().copied().collect();
    keys.sort_by_key(|&k| ((k >> 32) as u32, group_label(k as u32)));
    let mut out_rows = Vec::new();
    let mut totals = Vec::new();
    for pair_key in keys {
        let bucket = (pair_key >> 32) as u32;
        let group = pair_key as u32;
        let sum = tally.sums[&pair_key];
        let visitors = tally.visitors.get(&pair_key).copied().unwrap_or(0);
        let purchasers = tally.purchasers.get(&pair_key).copied().unwrap_or(0);
        let new = tally.new_customers.get(&pair_key).copied().unwrap_or(0);
        if !tally.all_events && sum.orders == 0 && sum.refunds == 0 {
            continue;
        }
        let mut values = Map::new();
        for &metric in &metrics {
            if metric.totals_only() && bucket != TOTAL {
                continue;
            }
            let value = match metric {
                KpiMetric::Revenue => json!(sum.revenue),
                KpiMetric::Orders => json!(sum.orders),
                KpiMetric::Aov => json!(ratio(sum.revenue, sum.orders as f64)),
                KpiMetric::Visitors => json!(visitors),
                KpiMetric::Purchasers => json!(purchasers),
                KpiMetric::ConversionRate => json!(ratio(purchasers as f64, visitors as f64)),
                KpiMetric::NewCustomers => json!(new),
                KpiMetric::ReturningCustomers => json!(purchasers - new),
                KpiMetric::Refunds => json!(sum.refunds),
                KpiMetric::RefundedRevenue => json!(sum.refunded),
                KpiMetric::Dau | KpiMetric::Wau | KpiMetric::Mau => {
                    json!(tally.averages.get(&(metric, group)).copied().unwrap_or(0.0))
                }
            };
            values.insert(metric.name().to_owned(), value);
        }
        let row = KpiRow {
            bucket: if bucket == TOTAL {
                None
            } else {
                calendar.label(bucket as usize)
            },
            group: group_label(group),
            values,
        };
        if bucket == TOTAL {
            totals.push(row);
        } else if scope.granularity != Granularity::Total {
            out_rows.push(row);
        }
    }
    KpiResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        metrics,
        rows: out_rows,
        totals,
    }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::Number(number)) if number.is_f64() => {
            format!("{:.2}", number.as_f64().unwrap_or_default())
        }
        Some(other) => other.to_string(),
    }
}

impl Tabular for KpiResponse {
    fn table(&self) -> TextTable {
        let mut headers = vec!["bucket", "group"];
        headers.extend(self.metrics.iter().map(|m| m.name()));
        let mut table = TextTable::new(&headers);
        for (rows, total) in [(&self.rows, false), (&self.totals, true)] {
            for row in rows {
                let mut cells = vec![
                    if total {
                        "total".to_owned()
                    } else {
                        cell_opt(&row.bucket)
                    },
                    cell_opt(&row.group),
                ];
                cells.extend(self.metrics.iter().map(|m| cell(row.values.get(m.name()))));
                table.rows.push(cells);
            }
        }
        table
    }
}
