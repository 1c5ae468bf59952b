//! The analytics engine over the warehouse: KPIs, funnels, retention, attribution and paths.
//!
//! Every request names a time range (`from` inclusive, `to` exclusive; dates are local
//! midnights), an IANA time zone whose local calendar buckets results (DST-correct: a local
//! day is 23 or 25 hours across a change), a granularity, filters on event columns, event
//! properties (`properties.<key>`) and profile traits (`traits.<key>`), and an optional
//! breakdown. People are counted by the profile their identifiers resolve to *now* (the
//! warehouse's identity snapshot), so merged identities count once and anonymous history
//! counts for the merged profile.
//!
//! Each operator reads only the columns and events it needs through one DataFusion query per
//! input ([`load`]) into compact integer vectors, then computes in Rust over per-profile event
//! streams sorted by `(timestamp, offset)`: the funnel, retention, attribution and path
//! operators are specialized, not SQL. The semantics are spelled out on each request type;
//! `tests/duckdb/crosscheck.py` checks every one against hand-written DuckDB SQL over the
//! exported Parquet files.
//!
//! Event keys: a `track` event is its `event` name; other types are `$page`, `$screen`,
//! `$identify`, `$group`, `$alias`; `$any` matches every event.

mod attribution;
mod calendar;
mod funnel;
mod kpis;
mod load;
mod paths;
mod request;
mod retention;
mod table;

use std::time::Duration;

use atrium_warehouse::{Warehouse, WarehouseError};

pub use attribution::{AttributionModel, AttributionRequest, AttributionResponse, AttributionRow};
pub use calendar::{local_date, local_midnight_ms};
pub use funnel::{FunnelOrder, FunnelRequest, FunnelResponse, FunnelRow, FunnelStep, StepResult};
pub use kpis::{KpiMetric, KpiRequest, KpiResponse, KpiRow};
pub use paths::{PathDirection, PathRow, PathsRequest, PathsResponse};
pub use request::{DIMENSIONS, Filter, FilterOp, Granularity, Span, SpanUnit};
pub use retention::{RetentionRequest, RetentionResponse, RetentionRow};
pub use table::TextTable;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The request is malformed; `path` names the field (e.g. `steps[2].event`).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// Reading from the warehouse failed (or hit its time limit).
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

impl AnalyticsError {
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> AnalyticsError {
        AnalyticsError::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// True when the caller can fix it (a 4xx).
    pub fn is_client_error(&self) -> bool {
        match self {
            AnalyticsError::Invalid { .. } => true,
            AnalyticsError::Warehouse(error) => error.is_client_error(),
        }
    }
}

/// Limits of one analytics query.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Reading from the warehouse is cancelled after this long.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(60),
        }
    }
}

/// The five queries, for callers that dispatch by name (the CLI, the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Kpis,
    Funnel,
    Retention,
    Attribution,
    Paths,
}

impl QueryKind {
    pub const ALL: [QueryKind; 5] = [
        QueryKind::Kpis,
        QueryKind::Funnel,
        QueryKind::Retention,
        QueryKind::Attribution,
        QueryKind::Paths,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QueryKind::Kpis => "kpis",
            QueryKind::Funnel => "funnel",
            QueryKind::Retention => "retention",
            QueryKind::Attribution => "attribution",
            QueryKind::Paths => "paths",
        }
    }

    pub fn parse(name: &str) -> Option<QueryKind> {
        QueryKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// A computed result: JSON for APIs, a text table for terminals.
pub struct Answer {
    pub json: serde_json::Value,
    pub table: TextTable,
}

/// Parses a JSON request of `kind` (unknown fields refused) and runs it.
/// Blocking: call it from a blocking thread.
pub fn run_json(
    warehouse: &Warehouse,
    kind: QueryKind,
    body: &[u8],
    limits: &Limits,
) -> Result<Answer, AnalyticsError> {
    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AnalyticsError> {
        serde_json::from_slice(body)
            .map_err(|error| AnalyticsError::invalid("body", format!("{error}")))
    }
    fn answer<T: serde::Serialize + table::Tabular>(response: T) -> Result<Answer, AnalyticsError> {
        let json = serde_json::to_value(&response)
            .map_err(|error| AnalyticsError::invalid("response", error.to_string()))?;
        Ok(Answer {
            table: response.table(),
            json,
        })
    }
    match kind {
        QueryKind::Kpis => answer(kpis(warehouse, &parse(body)?, limits)?),
        QueryKind::Funnel => answer(funnel(warehouse, &parse(body)?, limits)?),
        QueryKind::Retention => answer(retention(warehouse, &parse(body)?, limits)?),
        QueryKind::Attribution => answer(attribution(warehouse, &parse(body)?, limits)?),
        QueryKind::Paths => answer(paths(warehouse, &parse(body)?, limits)?),
    }
}

/// Revenue, orders, AOV, conversion, new vs returning customers, active users, refunds.
pub fn kpis(
    warehouse: &Warehouse,
    request: &KpiRequest,
    limits: &Limits,
) -> Result<KpiResponse, AnalyticsError> {
    kpis::run(warehouse, request, limits)
}

/// [`kpis`] through the general row-by-row path even where the request could be aggregated
/// inside DataFusion: the reference that tests compare the `GROUP BY` path with.
#[doc(hidden)]
pub fn kpis_by_rows(
    warehouse: &Warehouse,
    request: &KpiRequest,
    limits: &Limits,
) -> Result<KpiResponse, AnalyticsError> {
    kpis::run_by_rows(warehouse, request, limits)
}

/// Ordered steps with a conversion window.
pub fn funnel(
    warehouse: &Warehouse,
    request: &FunnelRequest,
    limits: &Limits,
) -> Result<FunnelResponse, AnalyticsError> {
    funnel::run(warehouse, request, limits)
}

/// Cohorts by first occurrence of an event, returns per period.
pub fn retention(
    warehouse: &Warehouse,
    request: &RetentionRequest,
    limits: &Limits,
) -> Result<RetentionResponse, AnalyticsError> {
    retention::run(warehouse, request, limits)
}

/// Orders and revenue attributed to touchpoints under several models.
pub fn attribution(
    warehouse: &Warehouse,
    request: &AttributionRequest,
    limits: &Limits,
) -> Result<AttributionResponse, AnalyticsError> {
    attribution::run(warehouse, request, limits)
}

/// The most frequent next (or previous) events around an event.
pub fn paths(
    warehouse: &Warehouse,
    request: &PathsRequest,
    limits: &Limits,
) -> Result<PathsResponse, AnalyticsError> {
    paths::run(warehouse, request, limits)
}
