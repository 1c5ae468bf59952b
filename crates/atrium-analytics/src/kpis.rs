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
use crate::load::{FastMap, LoadSpec, Matcher, load};
use crate::request::{Filter, Granularity, Scope, ScopeFields};
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
        || matches!(scope.breakdown, Some(crate::request::Field::Trait(_)));
    let loaded = load(
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

    let mut keys: Vec<u64> = sums.keys().copied().collect();
    keys.sort_by_key(|&k| {
        let group = k as u32;
        ((k >> 32) as u32, loaded.group_label(group))
    });
    let mut out_rows = Vec::new();
    let mut totals = Vec::new();
    for pair_key in keys {
        let bucket = (pair_key >> 32) as u32;
        let group = pair_key as u32;
        let sum = sums[&pair_key];
        let visitors = visitor_counts.get(&pair_key).copied().unwrap_or(0);
        let purchasers = purchaser_counts.get(&pair_key).copied().unwrap_or(0);
        let new = new_counts.get(&pair_key).copied().unwrap_or(0);
        if !all_events && sum.orders == 0 && sum.refunds == 0 {
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
                    json!(averages.get(&(metric, group)).copied().unwrap_or(0.0))
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
            group: loaded.group_label(group),
            values,
        };
        if bucket == TOTAL {
            totals.push(row);
        } else if scope.granularity != Granularity::Total {
            out_rows.push(row);
        }
    }
    Ok(KpiResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        metrics,
        rows: out_rows,
        totals,
    })
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
