//! Paths: the most frequent sequences of events right after (or before) an event.
//!
//! Over each profile's events in `[from, to)` that pass the filters, in `(timestamp, offset)`
//! order: for every occurrence of the `anchor`, the keys of the next `depth` events
//! (`direction: previous`: the preceding ones, nearest first). When the stream ends first, the
//! sequence ends with `$end` (`$start` going backwards) and is shorter. Sequences are ranked
//! by occurrences (then profiles, then the sequence itself); `share` is occurrences ÷ anchor
//! occurrences of the same bucket and group. The bucket and the breakdown value are the
//! anchor's.

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::load::{FastMap, LoadSpec, Matcher, load};
use crate::request::{EventMatch, Filter, Granularity, Scope, ScopeFields};
use crate::table::{Tabular, TextTable, cell_opt, cell_ratio, ratio};
use crate::{AnalyticsError, Limits};

pub const MAX_DEPTH: u32 = 5;
pub const MAX_LIMIT: u32 = 1_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathDirection {
    #[default]
    Next,
    Previous,
}

/// `POST /v1/analytics/paths`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsRequest {
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
    pub anchor: EventMatch,
    #[serde(default)]
    pub direction: PathDirection,
    /// Events per sequence (1 to 5, default 1).
    #[serde(default)]
    pub depth: Option<u32>,
    /// Sequences kept per bucket and group (1 to 1000, default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathRow {
    pub bucket: Option<String>,
    pub group: Option<String>,
    /// Event keys, nearest to the anchor first.
    pub path: Vec<String>,
    pub occurrences: u64,
    /// Distinct profiles with this sequence.
    pub profiles: u64,
    pub share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathsResponse {
    pub time_zone: String,
    pub granularity: Granularity,
    pub direction: PathDirection,
    pub depth: u32,
    /// Anchor occurrences in the range.
    pub anchors: u64,
    pub rows: Vec<PathRow>,
}

const END: u32 = u32::MAX;

#[derive(Default)]
struct Count {
    occurrences: u64,
    profiles: u64,
    last_profile: Option<u32>,
}

pub(crate) fn run(
    warehouse: &atrium_warehouse::Warehouse,
    request: &PathsRequest,
    limits: &Limits,
) -> Result<PathsResponse, AnalyticsError> {
    let scope = Scope::compile(ScopeFields {
        from: &request.from,
        to: &request.to,
        time_zone: request.time_zone.as_deref(),
        granularity: request.granularity,
        filters: &request.filters,
        breakdown: request.breakdown.as_deref(),
    })?;
    let depth = request.depth.unwrap_or(1);
    if depth == 0 || depth > MAX_DEPTH {
        return Err(AnalyticsError::invalid(
            "depth",
            format!("must be between 1 and {MAX_DEPTH}"),
        ));
    }
    let limit = request.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AnalyticsError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let anchor: Matcher = request.anchor.compile("anchor")?;
    let spec = LoadSpec {
        from_ms: Some(scope.from_ms),
        to_ms: scope.to_ms,
        only_matching: false,
        matchers: vec![anchor],
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
    let depth = depth as usize;
    // (bucket, group, sequence) -> (occurrences, profiles); anchors per (bucket, group).
    let mut counts: FastMap<(u32, u32, Vec<u32>), Count> = FastMap::default();
    let mut anchors: FastMap<(u32, u32), u64> = FastMap::default();
    let mut total_anchors = 0u64;
    for profile in 0..loaded.people.count() {
        let events = &order[starts[profile]..starts[profile + 1]];
        for (position, &row) in events.iter().enumerate() {
            let row = row as usize;
            if rows.mask[row] & 1 == 0 {
                continue;
            }
            let bucket = calendar.index(rows.ts[row]) as u32;
            let group = rows.group[row];
            total_anchors += 1;
            *anchors.entry((bucket, group)).or_insert(0) += 1;
            let mut sequence = Vec::with_capacity(depth);
            for step in 1..=depth {
                let next = match request.direction {
                    PathDirection::Next => events.get(position + step),
                    PathDirection::Previous => position
                        .checked_sub(step)
                        .and_then(|index| events.get(index)),
                };
                match next {
                    Some(&other) => sequence.push(rows.name[other as usize]),
                    None => {
                        sequence.push(END);
                        break;
                    }
                }
            }
            let entry = counts.entry((bucket, group, sequence)).or_default();
            entry.occurrences += 1;
            // Profiles are visited one after the other, so "new profile" is "not the last".
            if entry.last_profile != Some(profile as u32) {
                entry.last_profile = Some(profile as u32);
                entry.profiles += 1;
            }
        }
    }
    let end_name = match request.direction {
        PathDirection::Next => "$end",
        PathDirection::Previous => "$start",
    };
    let mut by_cell: FastMap<(u32, u32), Vec<PathRow>> = FastMap::default();
    for ((bucket, group, sequence), count) in counts {
        let path: Vec<String> = sequence
            .iter()
            .map(|&id| {
                if id == END {
                    end_name.to_owned()
                } else {
                    loaded.name(id).to_owned()
                }
            })
            .collect();
        let anchor_count = anchors.get(&(bucket, group)).copied().unwrap_or(0);
        by_cell.entry((bucket, group)).or_default().push(PathRow {
            bucket: calendar.label(bucket as usize),
            group: loaded.group_label(group),
            path,
            occurrences: count.occurrences,
            profiles: count.profiles,
            share: ratio(count.occurrences as f64, anchor_count as f64),
        });
    }
    let mut cells: Vec<(u32, u32)> = by_cell.keys().copied().collect();
    cells.sort_by_key(|&(bucket, group)| (bucket, loaded.group_label(group)));
    let mut out_rows = Vec::new();
    for cell in cells {
        let mut list = by_cell.remove(&cell).unwrap_or_default();
        list.sort_by(|a, b| {
            b.occurrences
                .cmp(&a.occurrences)
                .then(b.profiles.cmp(&a.profiles))
                .then(a.path.cmp(&b.path))
        });
        list.truncate(limit as usize);
        out_rows.extend(list);
    }
    Ok(PathsResponse {
        time_zone: scope.tz.name().to_owned(),
        granularity: scope.granularity,
        direction: request.direction,
        depth: depth as u32,
        anchors: total_anchors,
        rows: out_rows,
    })
}

impl Tabular for PathsResponse {
    fn table(&self) -> TextTable {
        let mut table = TextTable::new(&[
            "bucket",
            "group",
            "path",
            "occurrences",
            "profiles",
            "share",
        ]);
        for row in &self.rows {
            table.rows.push(vec![
                cell_opt(&row.bucket),
                cell_opt(&row.group),
                row.path.join(" → "),
                row.occurrences.to_string(),
                row.profiles.to_string(),
                cell_ratio(row.share),
            ]);
        }
        table
    }
}
