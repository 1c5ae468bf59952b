//! Attribution of conversions (orders) and their revenue to marketing touchpoints.
//!
//! A *conversion* is a `conversion` event (default `Order Completed`) in `[from, to)`; its
//! value is its `revenue` (missing = 0). A *touch* is any event carrying a campaign source
//! (`context.campaign.source`, the `utm_source` dimension). A conversion's touches are the
//! same profile's touches strictly before it in `(timestamp, offset)` order and at most
//! `lookback` earlier (inclusive; touches before `from` count). Credit per model, for `n`
//! touches in time order:
//! - `first_touch` / `last_touch`: all to the first / last;
//! - `linear`: 1/n each;
//! - `position_based`: 40 % first, 40 % last, 20 % shared by the middle ones (one touch: all;
//!   two: half each);
//! - `time_decay`: weight 2^(−Δt / half_life) with Δt the time from touch to conversion
//!   (`half_life` default 7 days), normalized to sum to 1.
//!
//! Credit goes to the touch's value of `breakdown` (default `utm_source`; `null` when the
//! touch has none); a conversion without touches is credited to `(direct)`.

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::load::{FastMap, LoadSpec, Matcher, load, names_condition};
use crate::request::{
    EventMatch, Field, Filter, FilterOp, Granularity, Predicate, Scope, ScopeFields, Span, SpanUnit,
};
use crate::table::{Tabular, TextTable, cell_f64, cell_opt};
use crate::{AnalyticsError, Limits};

pub const MAX_LOOKBACK_DAYS: i64 = 365;
/// The group conversions without any touch are credited to.
pub const DIRECT: &str = "(direct)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    FirstTouch,
    LastTouch,
    Linear,
    PositionBased,
    TimeDecay,
}

impl AttributionModel {
    pub const ALL: [AttributionModel; 5] = [
        AttributionModel::FirstTouch,
        AttributionModel::LastTouch,
        AttributionModel::Linear,
        AttributionModel::PositionBased,
        AttributionModel::TimeDecay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttributionModel::FirstTouch => "first_touch",
            AttributionModel::LastTouch => "last_touch",
            AttributionModel::Linear => "linear",
            AttributionModel::PositionBased => "position_based",
            AttributionModel::TimeDecay => "time_decay",
        }
    }

    /// Credit of each touch (`ages_ms[i]`: conversion time − touch time, in time order).
    fn credits(self, ages_ms: &[i64], half_life_ms: i64, out: &mut Vec<f64>) {
        out.clear();
        let n = ages_ms.len();
        match self {
            AttributionModel::FirstTouch => {
                out.resize(n, 0.0);
                out[0] = 1.0;
            }
            AttributionModel::LastTouch => {
                out.resize(n, 0.0);
                out[n - 1] = 1.0;
            }
            AttributionModel::Linear => out.resize(n, 1.0 / n as f64),
            AttributionModel::PositionBased => match n {
                1 => out.push(1.0),
                2 => out.extend([0.5, 0.5]),
                _ => {
                    out.resize(n, 0.2 / (n - 2) as f64);
                    out[0] = 0.4;
                    out[n - 1] = 0.4;
                }
            },
            AttributionModel::TimeDecay => {
                // Relative to the newest touch, so old touches never underflow all weights.
                let half_life = half_life_ms as f64;
                let newest = ages_ms.iter().copied().min().unwrap_or(0);
                out.extend(
                    ages_ms
                        .iter()
                        .map(|&age| (-((age - newest) as f64) / half_life).exp2()),
                );
                let total: f64 = out.iter().sum();
                for weight in out.iter_mut() {
                    *weight /= total;
                }
            }
        }
    }
}

/// `POST /v1/analytics/attribution`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributionRequest {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub granularity: Granularity,
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// What touches are credited by (default `utm_source`; e.g. `utm_medium`, `campaign`,
    /// `channel`).
    #[serde(default)]
    pub breakdown: Option<String>,
    /// The conversion event (default `Order Completed`).
    #[serde(default)]
    pub conversion: Option<EventMatch>,
    /// How far before a conversion touches count (default 30 days, at most 365).
    #[serde(default)]
    pub lookback: Option<Span>,
    /// Models to compute (default: all five).
    #[serde(default)]
    pub models: Option<Vec<AttributionModel>>,
    /// Half-life of `time_decay` (default 7 days).
    #[serde(default)]
    pub half_life: Option<Span>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    pub model: AttributionModel,
    /// Local period of the conversion (`null` for granularity `total`).
    pub bucket: Option<String>,
    /// The touch's value of the breakdown, or `(direct)`.
    pub group: Option<String>,
    /// Conversions credited (fractional).
    pub conversions: f64,
    /// Revenue credited.
    pub revenue: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributionResponse {
    pub time_zone: String,
    pub granularity: Granularity,
    pub breakdown: String,
    pub lookback_seconds: f64,
    pub half_life_seconds: f64,
    /// Conversions in the range and their revenue (each model distributes exactly these).
    pub conversions: u64,
    pub revenue: f64,
    pub rows: Vec<AttributionRow>,
}

#[derive(Default, Clone, Copy)]
struct Credit {
    conversions: f64,
    revenue: f64,
}

pub(crate) fn run(
    warehouse: &atrium_warehouse::Warehouse,
    request: &AttributionRequest,
    limits: &Limits,
) -> Result<AttributionResponse, AnalyticsError> {
    let breakdown = request.breakdown.as_deref().unwrap_or("utm_source");
    let scope = Scope::compile(ScopeFields {
        from: &request.from,
        to: &request.to,
        time_zone: request.time_zone.as_deref(),
        granularity: request.granularity,
        filters: &request.filters,
        breakdown: Some(breakdown),
    })?;
    let lookback = request
        .lookback
        .unwrap_or(Span {
            value: 30,
            unit: SpanUnit::Day,
        })
        .check("lookback", MAX_LOOKBACK_DAYS)?;
    let half_life = request
        .half_life
        .unwrap_or(Span {
            value: 7,
            unit: SpanUnit::Day,
        })
        .check("half_life", MAX_LOOKBACK_DAYS)?;
    let mut models = match &request.models {
        Some(list) if list.is_empty() => {
            return Err(AnalyticsError::invalid("models", "name at least one model"));
        }
        Some(list) => list.clone(),
        None => AttributionModel::ALL.to_vec(),
    };
    models.sort();
    models.dedup();
    let conversion = match &request.conversion {
        Some(event) => event.compile("conversion")?,
        None => Matcher::new("Order Completed", Vec::new()),
    };
    let touch = Matcher {
        name: None,
        filters: vec![Predicate {
            field: Field::Column("campaign_source"),
            op: FilterOp::Exists,
            value: serde_json::Value::Null,
        }],
    };
    let conversion_condition = match conversion.name.as_deref() {
        Some(name) => names_condition(&[name]),
        None => "TRUE".to_owned(),
    };
    let spec = LoadSpec {
        from_ms: Some(scope.from_ms.saturating_sub(lookback)),
        to_ms: scope.to_ms,
        only_matching: true,
        matchers: vec![conversion, touch],
        revenue: true,
        pushdown: Some(format!(
            "{conversion_condition} OR (campaign_source IS NOT NULL AND campaign_source <> '')"
        )),
    };
    let loaded = load(
        warehouse,
        limits.timeout,
        true,
        scope.filters.clone(),
        scope.profile_filters.clone(),
        scope.breakdown.clone(),
        vec![spec],
    )?;
    let rows = &loaded.rows[0];
    let calendar = Calendar::new(scope.tz, scope.granularity, scope.from_ms, scope.to_ms);
    let (order, starts) = rows.by_profile(loaded.people.count());
    // Credit per (model index, bucket, group); group u32::MAX is "(direct)".
    const DIRECT_GROUP: u32 = u32::MAX;
    let mut credit: FastMap<(usize, u32, u32), Credit> = FastMap::default();
    let mut conversions = 0u64;
    let mut revenue_total = 0.0;
    let mut touches: Vec<usize> = Vec::new();
    let mut ages: Vec<i64> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for profile in 0..loaded.people.count() {
        let events = &order[starts[profile]..starts[profile + 1]];
        touches.clear();
        for &row in events {
            let row = row as usize;
            let ts = rows.ts[row];
            let mask = rows.mask[row];
            if mask & 1 != 0 && ts >= scope.from_ms {
                let value = if rows.revenue[row].is_nan() {
                    0.0
                } else {
                    rows.revenue[row]
                };
                conversions += 1;
                revenue_total += value;
                let bucket = calendar.index(ts) as u32;
                ages.clear();
                let window: Vec<usize> = touches
                    .iter()
                    .copied()
                    .filter(|&touch| ts - rows.ts[touch] <= lookback)
                    .collect();
                ages.extend(window.iter().map(|&touch| ts - rows.ts[touch]));
                for (index, model) in models.iter().enumerate() {
                    if window.is_empty() {
                        let entry = credit.entry((index, bucket, DIRECT_GROUP)).or_default();
                        entry.conversions += 1.0;
                        entry.revenue += value;
                        continue;
                    }
                    model.credits(&ages, half_life, &mut weights);
                    for (&touch, &weight) in window.iter().zip(&weights) {
                        if weight == 0.0 {
                            continue;
                        }
                        let entry = credit
                            .entry((index, bucket, rows.group[touch]))
                            .or_default();
                        entry.conversions += weight;
                        entry.revenue += weight * value;
                    }
                }
            }
            if mask & 2 != 0 {
                touches.push(row);
            }
        }
    }
    let label = |group: u32| -> Option<String> {
        if group == DIRECT_GROUP {
            Some(DIRECT.to_owned())
        } else {
            loaded.group_label(group)
        }
    };
    let mut keys: Vec<(usize, u32, u32)> = credit.keys().copied().collect();
    keys.sort_by_key(|&(model, bucket, group)| (model, bucket, label(group)));
    let out_rows = keys
        .into_iter()
        .map(|key| {
            let value = credit[&key];
            AttributionRow {
                model: models[key.0],
                bucket: calendar.label(key.1 as usize),
                group: label(key.2),
                conversions: value.conversions,
                revenue: value.revenue,
            }
        })
        .collect();
    Ok(AttributionResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        breakdown: breakdown.to_owned(),
        lookback_seconds: lookback as f64 / 1000.0,
        half_life_seconds: half_life as f64 / 1000.0,
        conversions,
        revenue: revenue_total,
        rows: out_rows,
    })
}

impl Tabular for AttributionResponse {
    fn table(&self) -> TextTable {
        let mut table = TextTable::new(&["model", "bucket", "group", "conversions", "revenue"]);
        for row in &self.rows {
            table.rows.push(vec![
                row.model.name().to_owned(),
                cell_opt(&row.bucket),
                cell_opt(&row.group),
                format!("{:.3}", row.conversions),
                cell_f64(row.revenue),
            ]);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credits(model: AttributionModel, ages: &[i64]) -> Vec<f64> {
        let mut out = Vec::new();
        model.credits(ages, 1_000, &mut out);
        out
    }

    #[test]
    fn models_split_one_conversion() {
        use AttributionModel::*;
        assert_eq!(credits(FirstTouch, &[3, 2, 1]), vec![1.0, 0.0, 0.0]);
        assert_eq!(credits(LastTouch, &[3, 2, 1]), vec![0.0, 0.0, 1.0]);
        assert_eq!(credits(PositionBased, &[5]), vec![1.0]);
        assert_eq!(credits(PositionBased, &[5, 1]), vec![0.5, 0.5]);
        let four = credits(PositionBased, &[4, 3, 2, 1]);
        assert_eq!(four, vec![0.4, 0.1, 0.1, 0.4]);
        // One half-life older: half the weight of the newer touch.
        let decay = credits(TimeDecay, &[1_000, 0]);
        assert!((decay[0] - 1.0 / 3.0).abs() < 1e-12 && (decay[1] - 2.0 / 3.0).abs() < 1e-12);
    }

    proptest::proptest! {
        #[test]
        fn every_model_distributes_exactly_one(ages in proptest::collection::vec(0i64..10_000_000, 1..30)) {
            let mut ages = ages;
            ages.sort_unstable_by(|a, b| b.cmp(a));
            for model in AttributionModel::ALL {
                let weights = credits(model, &ages);
                let total: f64 = weights.iter().sum();
                proptest::prop_assert!((total - 1.0).abs() < 1e-9, "{model:?} {total}");
                proptest::prop_assert!(weights.iter().all(|w| *w >= 0.0));
            }
        }
    }
}
