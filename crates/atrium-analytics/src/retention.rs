//! Retention: cohorts by the local period of a profile's first occurrence of an event, and
//! the share of each cohort coming back in each following period.
//!
//! A profile's *first occurrence* is its earliest `start` event in all history before `to`
//! (filters applied); the profile belongs to the cohort of that event's local period when it
//! falls in `[from, to)`. It is *retained* in period `p` (1 ≤ p ≤ `periods`) when it has a
//! `return` event in `[from, to)` in the `p`-th local period after its cohort's. Period 0 is
//! the cohort itself. A cell whose period starts at or after `to` cannot be observed and is
//! `null`. The breakdown value is the first occurrence's.

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::load::{FastMap, LoadSpec, load};
use crate::request::{EventMatch, Filter, Granularity, Scope, ScopeFields};
use crate::table::{Tabular, TextTable, cell_opt, ratio};
use crate::{AnalyticsError, Limits};

pub const MAX_PERIODS: u32 = 400;

/// `POST /v1/analytics/retention`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `day`, `week` or `month`: the cohort and period length.
    pub granularity: Granularity,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub breakdown: Option<String>,
    /// The event whose first occurrence defines the cohort.
    pub start: EventMatch,
    /// The event that counts as coming back (default: any event).
    #[serde(default)]
    pub r#return: Option<EventMatch>,
    /// Periods after the cohort's to report (1 to 400).
    pub periods: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionRow {
    /// First local date of the cohort's period.
    pub cohort: String,
    pub group: Option<String>,
    pub size: u64,
    /// `retained[p]`: profiles retained in period `p` (`retained[0]` = size); `null` when the
    /// period is not observable yet.
    pub retained: Vec<Option<u64>>,
    /// `retained[p]` ÷ size.
    pub rates: Vec<Option<f64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionResponse {
    pub time_zone: String,
    pub granularity: Granularity,
    pub periods: u32,
    pub rows: Vec<RetentionRow>,
}

pub(crate) fn run(
    warehouse: &atrium_warehouse::Warehouse,
    request: &RetentionRequest,
    limits: &Limits,
) -> Result<RetentionResponse, AnalyticsError> {
    let scope = Scope::compile(ScopeFields {
        from: &request.from,
        to: &request.to,
        time_zone: request.time_zone.as_deref(),
        granularity: request.granularity,
        filters: &request.filters,
        breakdown: request.breakdown.as_deref(),
    })?;
    if scope.granularity == Granularity::Total {
        return Err(AnalyticsError::invalid(
            "granularity",
            "retention needs periods: use day, week or month",
        ));
    }
    if request.periods == 0 || request.periods > MAX_PERIODS {
        return Err(AnalyticsError::invalid(
            "periods",
            format!("must be between 1 and {MAX_PERIODS}"),
        ));
    }
    let start = request.start.compile("start")?;
    let back = match &request.r#return {
        Some(event) => event.compile("return")?,
        None => crate::load::Matcher::new("$any", Vec::new()),
    };
    let specs = vec![
        LoadSpec {
            from_ms: None,
            to_ms: scope.to_ms,
            only_matching: true,
            matchers: vec![start],
            revenue: false,
            pushdown: None,
        },
        LoadSpec {
            from_ms: Some(scope.from_ms),
            to_ms: scope.to_ms,
            only_matching: true,
            matchers: vec![back],
            revenue: false,
            pushdown: None,
        },
    ];
    let loaded = load(
        warehouse,
        limits.timeout,
        true,
        scope.filters.clone(),
        scope.profile_filters.clone(),
        scope.breakdown.clone(),
        specs,
    )?;
    let calendar = Calendar::new(scope.tz, scope.granularity, scope.from_ms, scope.to_ms);
    let profiles = loaded.people.count();
    // First occurrence per profile: (timestamp, offset, row).
    let starts = &loaded.rows[0];
    let mut first: Vec<Option<(i64, u64, usize)>> = vec![None; profiles];
    for row in 0..starts.len() {
        let candidate = (starts.ts[row], starts.offset[row], row);
        let slot = &mut first[starts.profile[row] as usize];
        if slot.is_none_or(|current| (candidate.0, candidate.1) < (current.0, current.1)) {
            *slot = Some(candidate);
        }
    }
    // Cohort per profile: (period, group).
    let mut cohort: Vec<Option<(u32, u32)>> = vec![None; profiles];
    for (profile, slot) in first.iter().enumerate() {
        if let Some((ts, _, row)) = slot
            && *ts >= scope.from_ms
        {
            cohort[profile] = Some((calendar.index(*ts) as u32, starts.group[*row]));
        }
    }
    let periods = request.periods as usize;
    let returns = &loaded.rows[1];
    let mut seen: Vec<(u32, u32)> = Vec::new();
    for row in 0..returns.len() {
        let profile = returns.profile[row];
        let Some((period, _)) = cohort[profile as usize] else {
            continue;
        };
        let at = calendar.index(returns.ts[row]) as u32;
        if at > period && ((at - period) as usize) <= periods {
            seen.push((profile, at - period));
        }
    }
    seen.sort_unstable();
    seen.dedup();
    let mut cells: FastMap<(u32, u32), Vec<u64>> = FastMap::default();
    for cohort in cohort.iter().flatten() {
        let counts = cells.entry(*cohort).or_insert_with(|| vec![0; periods + 1]);
        counts[0] += 1;
    }
    for (profile, offset) in seen {
        let key = cohort[profile as usize].expect("only cohort members are kept");
        cells.get_mut(&key).expect("cohort counted")[offset as usize] += 1;
    }
    let mut keys: Vec<(u32, u32)> = cells.keys().copied().collect();
    keys.sort_by_key(|&(period, group)| (period, loaded.group_label(group)));
    let mut rows = Vec::new();
    for key in keys {
        let counts = &cells[&key];
        let size = counts[0];
        let retained: Vec<Option<u64>> = (0..=periods)
            .map(|p| (key.0 as usize + p < calendar.len()).then_some(counts[p]))
            .collect();
        let rates = retained
            .iter()
            .map(|cell| cell.and_then(|n| ratio(n as f64, size as f64)))
            .collect();
        rows.push(RetentionRow {
            cohort: calendar.label(key.0 as usize).unwrap_or_default(),
            group: loaded.group_label(key.1),
            size,
            retained,
            rates,
        });
    }
    Ok(RetentionResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        periods: request.periods,
        rows,
    })
}

impl Tabular for RetentionResponse {
    fn table(&self) -> TextTable {
        let mut headers = vec!["cohort".to_owned(), "group".to_owned(), "size".to_owned()];
        headers.extend((1..=self.periods).map(|p| format!("+{p}")));
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut table = TextTable::new(&header_refs);
        for row in &self.rows {
            let mut cells = vec![
                row.cohort.clone(),
                cell_opt(&row.group),
                row.size.to_string(),
            ];
            for p in 1..row.retained.len() {
                cells.push(match (row.retained[p], row.rates[p]) {
                    (Some(n), Some(rate)) => format!("{n} ({:.0}%)", rate * 100.0),
                    (Some(n), None) => n.to_string(),
                    _ => "-".to_owned(),
                });
            }
            table.rows.push(cells);
        }
        table
    }
}
