//! Funnels: ordered steps within a conversion window, computed over each profile's event
//! stream in `(timestamp, offset)` order (events in `[from, to)` that pass the filters).
//!
//! An *attempt* starts at an event matching step 1; each next step is the earliest later
//! event matching it (`loose`: other events may come between; `strict`: it must be the very
//! next event of the profile) whose time is at most `window` after the attempt's start
//! (inclusive). A profile's attempt is the one reaching the most steps, the earliest such
//! start on ties; the profile counts as reaching every step up to that depth. Medians are over
//! the seconds between consecutive steps of the counted attempts (mean of the two middle
//! values for an even count). The breakdown value and the bucket are the attempt's first
//! event's.

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::load::{FastMap, LoadSpec, Matcher, load};
use crate::request::{
    Filter, Granularity, Scope, ScopeFields, Span, check_event_name, compile_filters,
};
use crate::table::{Tabular, TextTable, cell_opt, cell_ratio, median, ratio};
use crate::{AnalyticsError, Limits};

pub const MAX_STEPS: usize = 10;
pub const MAX_WINDOW_DAYS: i64 = 365;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelStep {
    /// Event key (`Product Viewed`, `$page`, `$any`).
    pub event: String,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunnelOrder {
    /// Other events may come between steps.
    #[default]
    Loose,
    /// Each step must be the profile's very next event after the previous step.
    Strict,
}

/// `POST /v1/analytics/funnel`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelRequest {
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
    pub steps: Vec<FunnelStep>,
    /// Conversion window from the first step (1 second to 365 days).
    pub window: Span,
    #[serde(default)]
    pub order: FunnelOrder,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub event: String,
    /// Profiles reaching this step.
    pub profiles: u64,
    /// `profiles` ÷ the previous step's (`null` for step 1 or a zero denominator).
    pub conversion_from_previous: Option<f64>,
    /// `profiles` ÷ step 1's.
    pub conversion_from_start: Option<f64>,
    /// Profiles reaching the previous step but not this one.
    pub drop_off: u64,
    /// Median seconds from the previous step (`null` for step 1 or nobody).
    pub median_seconds_from_previous: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunnelRow {
    pub bucket: Option<String>,
    pub group: Option<String>,
    pub steps: Vec<StepResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunnelResponse {
    pub time_zone: String,
    pub granularity: Granularity,
    pub order: FunnelOrder,
    pub window_seconds: f64,
    /// Per bucket of the attempt's start (empty for granularity `total`).
    pub rows: Vec<FunnelRow>,
    /// Per breakdown value over the whole range.
    pub totals: Vec<FunnelRow>,
}

/// Per (bucket, group): profiles per depth reached and step durations.
#[derive(Default)]
struct Tally {
    reached: Vec<u64>,
    durations: Vec<Vec<f64>>,
}

impl Tally {
    fn add(&mut self, steps: usize, times: &[i64]) {
        if self.reached.is_empty() {
            self.reached = vec![0; steps];
            self.durations = vec![Vec::new(); steps];
        }
        for (step, time) in times.iter().enumerate() {
            self.reached[step] += 1;
            if step > 0 {
                self.durations[step].push((time - times[step - 1]) as f64 / 1000.0);
            }
        }
    }

    fn results(&mut self, labels: &[String]) -> Vec<StepResult> {
        let steps = labels.len();
        if self.reached.is_empty() {
            self.reached = vec![0; steps];
            self.durations = vec![Vec::new(); steps];
        }
        let mut out = Vec::with_capacity(steps);
        for (step, event) in labels.iter().enumerate() {
            let profiles = self.reached[step];
            let previous = if step == 0 {
                None
            } else {
                Some(self.reached[step - 1])
            };
            out.push(StepResult {
                event: event.clone(),
                profiles,
                conversion_from_previous: previous.and_then(|p| ratio(profiles as f64, p as f64)),
                conversion_from_start: ratio(profiles as f64, self.reached[0] as f64),
                drop_off: previous.map(|p| p - profiles).unwrap_or(0),
                median_seconds_from_previous: if step == 0 {
                    None
                } else {
                    median(&mut self.durations[step])
                },
            });
        }
        out
    }
}

const NONE: u32 = u32::MAX;

pub(crate) fn run(
    warehouse: &atrium_warehouse::Warehouse,
    request: &FunnelRequest,
    limits: &Limits,
) -> Result<FunnelResponse, AnalyticsError> {
    let scope = Scope::compile(ScopeFields {
        from: &request.from,
        to: &request.to,
        time_zone: request.time_zone.as_deref(),
        granularity: request.granularity,
        filters: &request.filters,
        breakdown: request.breakdown.as_deref(),
    })?;
    if request.steps.len() < 2 || request.steps.len() > MAX_STEPS {
        return Err(AnalyticsError::invalid(
            "steps",
            format!(
                "a funnel has 2 to {MAX_STEPS} steps, got {}",
                request.steps.len()
            ),
        ));
    }
    let window = request.window.check("window", MAX_WINDOW_DAYS)?;
    let mut matchers = Vec::new();
    for (index, step) in request.steps.iter().enumerate() {
        check_event_name(&format!("steps[{index}].event"), &step.event)?;
        let filters = compile_filters(&format!("steps[{index}].filters"), &step.filters)?;
        matchers.push(Matcher::new(&step.event, filters));
    }
    let steps = matchers.len();
    let spec = LoadSpec {
        from_ms: Some(scope.from_ms),
        to_ms: scope.to_ms,
        only_matching: request.order == FunnelOrder::Loose,
        matchers,
        revenue: false,
        pushdown: None,
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

    let mut tallies: FastMap<(u32, u32), Tally> = FastMap::default();
    let mut totals: FastMap<u32, Tally> = FastMap::default();
    // next[k * (len + 1) + pos]: the first position >= pos matching step k (loose only).
    let mut next: Vec<u32> = Vec::new();
    let mut times: Vec<i64> = Vec::with_capacity(steps);
    let mut best: Vec<i64> = Vec::with_capacity(steps);
    for profile in 0..loaded.people.count() {
        let events = &order[starts[profile]..starts[profile + 1]];
        if events.is_empty() {
            continue;
        }
        let len = events.len();
        if request.order == FunnelOrder::Loose {
            next.clear();
            next.resize(steps * (len + 1), NONE);
            for step in 1..steps {
                let base = step * (len + 1);
                for pos in (0..len).rev() {
                    next[base + pos] = if rows.mask[events[pos] as usize] & (1 << step) != 0 {
                        pos as u32
                    } else {
                        next[base + pos + 1]
                    };
                }
            }
        }
        best.clear();
        let mut best_start = 0usize;
        for start in 0..len {
            let first = events[start] as usize;
            if rows.mask[first] & 1 == 0 {
                continue;
            }
            let t0 = rows.ts[first];
            times.clear();
            times.push(t0);
            let mut pos = start;
            for step in 1..steps {
                let candidate = match request.order {
                    FunnelOrder::Loose => {
                        let found = next[step * (len + 1) + pos + 1];
                        (found != NONE).then_some(found as usize)
                    }
                    FunnelOrder::Strict => {
                        let following = pos + 1;
                        (following < len
                            && rows.mask[events[following] as usize] & (1 << step) != 0)
                            .then_some(following)
                    }
                };
                let Some(found) = candidate else { break };
                let ts = rows.ts[events[found] as usize];
                if ts - t0 > window {
                    break;
                }
                times.push(ts);
                pos = found;
            }
            if times.len() > best.len() {
                best.clone_from(&times);
                best_start = start;
                if best.len() == steps {
                    break;
                }
            }
        }
        if best.is_empty() {
            continue;
        }
        let first = events[best_start] as usize;
        let group = rows.group[first];
        if scope.granularity != Granularity::Total {
            let bucket = calendar.index(rows.ts[first]) as u32;
            tallies
                .entry((bucket, group))
                .or_default()
                .add(steps, &best);
        }
        totals.entry(group).or_default().add(steps, &best);
    }

    let labels: Vec<String> = request.steps.iter().map(|s| s.event.clone()).collect();
    let mut keys: Vec<(u32, u32)> = tallies.keys().copied().collect();
    keys.sort_by_key(|&(bucket, group)| (bucket, loaded.group_label(group)));
    let mut out_rows = Vec::new();
    for key in keys {
        let tally = tallies.get_mut(&key).expect("key from the map");
        out_rows.push(FunnelRow {
            bucket: calendar.label(key.0 as usize),
            group: loaded.group_label(key.1),
            steps: tally.results(&labels),
        });
    }
    let mut groups: Vec<u32> = totals.keys().copied().collect();
    groups.sort_by_key(|&group| loaded.group_label(group));
    if groups.is_empty() && scope.breakdown.is_none() {
        groups.push(0);
    }
    let mut out_totals = Vec::new();
    for group in groups {
        let tally = totals.entry(group).or_default();
        out_totals.push(FunnelRow {
            bucket: None,
            group: loaded.group_label(group),
            steps: tally.results(&labels),
        });
    }
    Ok(FunnelResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        order: request.order,
        window_seconds: window as f64 / 1000.0,
        rows: out_rows,
        totals: out_totals,
    })
}

impl Tabular for FunnelResponse {
    fn table(&self) -> TextTable {
        let mut table = TextTable::new(&[
            "bucket",
            "group",
            "step",
            "event",
            "profiles",
            "from_previous",
            "from_start",
            "drop_off",
            "median_s",
        ]);
        for (rows, total) in [(&self.rows, false), (&self.totals, true)] {
            for row in rows {
                for (index, step) in row.steps.iter().enumerate() {
                    table.rows.push(vec![
                        if total {
                            "total".to_owned()
                        } else {
                            cell_opt(&row.bucket)
                        },
                        cell_opt(&row.group),
                        (index + 1).to_string(),
                        step.event.clone(),
                        step.profiles.to_string(),
                        cell_ratio(step.conversion_from_previous),
                        cell_ratio(step.conversion_from_start),
                        step.drop_off.to_string(),
                        step.median_seconds_from_previous
                            .map(|s| format!("{s:.1}"))
                            .unwrap_or_else(|| "-".into()),
                    ]);
                }
            }
        }
        table
    }
}
