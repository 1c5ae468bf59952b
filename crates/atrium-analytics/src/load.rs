//! Reading events from the warehouse into compact per-row vectors.
//!
//! One DataFusion query per load selects only the columns a request needs, with the time range
//! and (where it can) the event names pushed down; the batches are streamed and turned into
//! integers as they arrive: the resolved profile (through the `identities` snapshot, like the
//! `events_resolved` view), the interned event key, a bit per matcher (funnel step, retention
//! event, ...), the interned breakdown label. Row filters and trait filters are applied here, so
//! the operators above only see rows that count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atrium_warehouse::{IdMap, IdentityIndex, Warehouse, WarehouseError};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray, StringViewArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use foldhash::fast::RandomState;
use futures_util::StreamExt;
use serde_json::Value;

use crate::AnalyticsError;
use crate::calendar::Calendar;
use crate::request::{Field, Predicate, label, lookup};

pub(crate) type FastMap<K, V> = HashMap<K, V, RandomState>;

/// Interned strings; id 0 is "none".
#[derive(Debug)]
pub(crate) struct Dict {
    map: FastMap<Box<str>, u32>,
    values: Vec<Box<str>>,
}

impl Default for Dict {
    fn default() -> Self {
        Dict {
            map: FastMap::default(),
            values: vec!["".into()],
        }
    }
}

impl Dict {
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.map.get(text) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(text.into());
        self.map.insert(text.into(), id);
        id
    }

    /// The text of `id`, `None` for 0.
    pub fn text(&self, id: u32) -> Option<&str> {
        if id == 0 {
            None
        } else {
            Some(&self.values[id as usize])
        }
    }
}

/// Which events a matcher accepts: an event key (`None` or `$any`: every event) and filters.
#[derive(Clone, Debug)]
pub(crate) struct Matcher {
    pub name: Option<String>,
    pub filters: Vec<Predicate>,
}

impl Matcher {
    pub fn new(name: &str, filters: Vec<Predicate>) -> Matcher {
        let name = (name != "$any").then(|| name.to_owned());
        Matcher { name, filters }
    }
}

/// What one load reads.
#[derive(Clone, Debug)]
pub(crate) struct LoadSpec {
    /// Inclusive lower bound (`None`: all history).
    pub from_ms: Option<i64>,
    /// Exclusive upper bound.
    pub to_ms: i64,
    /// Only rows matching at least one matcher are kept (and read, where pushable).
    pub only_matching: bool,
    pub matchers: Vec<Matcher>,
    /// Read the `revenue` column.
    pub revenue: bool,
    /// A SQL condition that selects (a superset of) the matching rows, when the matcher names
    /// cannot say it (with `only_matching`).
    pub pushdown: Option<String>,
}

/// The rows of one load, column-wise.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub ts: Vec<i64>,
    pub offset: Vec<u64>,
    pub profile: Vec<u32>,
    pub name: Vec<u32>,
    /// Bit `i` set when matcher `i` accepts the row.
    pub mask: Vec<u32>,
    /// Interned breakdown label (0: none).
    pub group: Vec<u32>,
    /// NaN when null (only filled when asked for).
    pub revenue: Vec<f64>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Row indices grouped by profile, each profile's rows in `(timestamp, offset)` order:
    /// `(order, starts)` where profile `p`'s rows are `order[starts[p]..starts[p + 1]]`.
    pub fn by_profile(&self, profiles: usize) -> (Vec<u32>, Vec<usize>) {
        let mut starts = vec![0usize; profiles + 1];
        for &profile in &self.profile {
            starts[profile as usize + 1] += 1;
        }
        for index in 1..starts.len() {
            starts[index] += starts[index - 1];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; self.len()];
        for (row, &profile) in self.profile.iter().enumerate() {
            let slot = &mut next[profile as usize];
            order[*slot] = row as u32;
            *slot += 1;
        }
        for profile in 0..profiles {
            let slice = &mut order[starts[profile]..starts[profile + 1]];
            if slice.len() > 1 {
                slice.sort_by_key(|&row| (self.ts[row as usize], self.offset[row as usize]));
            }
        }
        (order, starts)
    }
}

/// People: the identity graph snapshot, trait filters and trait breakdown labels.
///
/// Profile numbers `0..graph.profiles` are the snapshot's ([`IdentityIndex`], built once per
/// snapshot and shared by every query on it); identifiers the graph does not know (yet), and
/// profiles with traits but no identifier, are numbered after them, per query.
#[derive(Default)]
pub(crate) struct People {
    graph: Arc<IdentityIndex>,
    /// Keys of the profiles numbered after the graph's (`graph.profiles + id - 1`).
    extra: Dict,
    /// Per profile number: passes the trait filters.
    allowed: Vec<bool>,
    /// Per profile number: interned trait breakdown label.
    trait_group: Vec<u32>,
    traits: FastMap<u32, Value>,
    trait_filters: Vec<Predicate>,
    trait_breakdown: Option<Vec<String>>,
}

impl std::fmt::Debug for People {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("People")
            .field("graph_profiles", &self.graph.profiles)
            .field("extra", &self.extra)
            .finish_non_exhaustive()
    }
}

impl People {
    /// Number of profile numbers handed out (including unresolved identifiers).
    pub fn count(&self) -> usize {
        self.graph.profiles + self.extra.values.len() - 1
    }

    /// Whether traits filter or break down profiles (each profile then needs its flags).
    fn uses_traits(&self) -> bool {
        !self.trait_filters.is_empty() || self.trait_breakdown.is_some()
    }

    /// The number of a profile key outside the graph (interned on first sight).
    fn extra_number(&mut self, key: &str) -> u32 {
        self.graph.profiles as u32 + self.extra.intern(key) - 1
    }

    /// The number of the profile an identifier key outside the graph stands for, with its
    /// trait flags computed on first sight.
    fn profile_index(&mut self, key: &str, labels: &mut Dict) -> u32 {
        let known = self.extra.values.len();
        let number = self.extra_number(key);
        if self.extra.values.len() > known && self.uses_traits() {
            self.flag(number, labels);
        }
        number
    }

    /// Computes the trait-filter flag and trait breakdown label of profile `id`.
    fn flag(&mut self, id: u32, labels: &mut Dict) {
        let traits = self.traits.get(&id);
        let allowed = self
            .trait_filters
            .iter()
            .all(|filter| match (&filter.field, traits) {
                (Field::Trait(path), Some(traits)) => filter.matches(lookup(traits, path)),
                _ => filter.matches(None),
            });
        let group = match (&self.trait_breakdown, traits) {
            (Some(path), Some(traits)) => label(lookup(traits, path))
                .map(|text| labels.intern(&text))
                .unwrap_or(0),
            _ => 0,
        };
        let index = id as usize;
        if self.allowed.len() <= index {
            self.allowed.resize(index + 1, true);
            self.trait_group.resize(index + 1, 0);
        }
        self.allowed[index] = allowed;
        self.trait_group[index] = group;
    }

    /// The profile an event belongs to now: its user id's, else its anonymous id's (like the
    /// `events_resolved` view); `None` when the graph knows neither (yet). Each distinct id of
    /// a dictionary is looked up once (`cache`).
    fn resolve(&self, ids: &IdCols<'_>, row: usize, cache: &mut IdCache) -> Option<u32> {
        cache
            .user
            .profile(&ids.user, row, &self.graph.user_ids)
            .or_else(|| {
                cache
                    .anonymous
                    .profile(&ids.anonymous, row, &self.graph.anonymous_ids)
            })
    }

    /// The key a row's identifiers stand for themselves under when the graph knows neither.
    fn unknown_key(ids: &IdCols<'_>, row: usize) -> String {
        let user_id = ids.user.get(row).filter(|text| !text.is_empty());
        let anonymous_id = ids.anonymous.get(row).filter(|text| !text.is_empty());
        match (user_id, anonymous_id) {
            (Some(user), _) => format!("user_id:{user}"),
            (None, Some(anonymous)) => format!("anonymous_id:{anonymous}"),
            (None, None) => "unknown".to_owned(),
        }
    }

    pub fn allowed(&self, profile: u32) -> bool {
        self.allowed.get(profile as usize).copied().unwrap_or(true)
    }
}

/// Everything one request read.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub people: People,
    pub names: Dict,
    pub labels: Dict,
    pub rows: Vec<Rows>,
}

impl Loaded {
    /// The text of an interned breakdown label.
    pub fn group_label(&self, id: u32) -> Option<String> {
        self.labels.text(id).map(str::to_owned)
    }

    pub fn name(&self, id: u32) -> &str {
        self.names.text(id).unwrap_or("")
    }
}

/// Reads the identity graph (and traits when filters or the breakdown need them), then each
/// load, in one warehouse session. With `people` false (a query that counts no one), ids are
/// neither read nor resolved: every row belongs to one anonymous profile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn load(
    warehouse: &Warehouse,
    timeout: Duration,
    people: bool,
    filters: Vec<Predicate>,
    trait_filters: Vec<Predicate>,
    breakdown: Option<Field>,
    specs: Vec<LoadSpec>,
) -> Result<Loaded, AnalyticsError> {
    let graph = if people {
        warehouse.graph_snapshot()?.index()
    } else {
        Arc::default()
    };
    let loaded = warehouse.with_session(timeout, move |ctx| async move {
        read_all(ctx, graph, people, filters, trait_filters, breakdown, specs).await
    })?;
    Ok(loaded)
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, WarehouseError> {
    let frame = ctx.sql(sql).await?;
    if !tracing::enabled!(tracing::Level::TRACE) {
        return Ok(frame.collect().await?);
    }
    // At trace level, the executed plan with each operator's metrics (rows, time).
    let plan = frame.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx()).await?;
    tracing::trace!(
        sql,
        plan = %datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(false),
        "analytics query executed"
    );
    Ok(batches)
}

async fn read_all(
    ctx: SessionContext,
    graph: Arc<IdentityIndex>,
    resolve: bool,
    filters: Vec<Predicate>,
    trait_filters: Vec<Predicate>,
    breakdown: Option<Field>,
    specs: Vec<LoadSpec>,
) -> Result<Loaded, WarehouseError> {
    let mut labels = Dict::default();
    let mut people = People {
        graph,
        trait_breakdown: match &breakdown {
            Some(Field::Trait(path)) => Some(path.clone()),
            _ => None,
        },
        trait_filters,
        ..People::default()
    };
    if people.uses_traits() {
        let batches = collect(&ctx, "SELECT profile_id, traits FROM profiles").await?;
        let graph = people.graph.clone();
        let numbers: FastMap<&str, u32> = graph
            .profile_ids
            .iter()
            .enumerate()
            .map(|(number, id)| (id.as_str(), number as u32))
            .collect();
        for batch in &batches {
            let ids = StrCol::new(batch.column(0))?;
            let traits = StrCol::new(batch.column(1))?;
            for row in 0..batch.num_rows() {
                let (Some(id), Some(text)) = (ids.get(row), traits.get(row)) else {
                    continue;
                };
                let number = match numbers.get(id) {
                    Some(&number) => number,
                    None => people.extra_number(id),
                };
                let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                people.traits.insert(number, value);
            }
        }
        for number in 0..people.count() as u32 {
            people.flag(number, &mut labels);
        }
    }
    let mut names = Dict::default();
    let mut all_rows = Vec::new();
    for spec in specs {
        late_materialization(&ctx, spec.pushdown.is_some());
        let plan = Plan::new(&spec, &filters, breakdown.as_ref(), resolve);
        let frame = ctx.sql(&plan.sql).await?;
        let streams = frame.execute_stream_partitioned().await?;
        // Each partition of the scan is converted on its own task, with its own dictionaries
        // and the graph shared read-only; the parts are then renumbered into one.
        let conversion = Arc::new(Conversion {
            plan,
            spec,
            filters: filters.clone(),
            breakdown: breakdown.clone(),
        });
        let shared_people = Arc::new(people);
        let mut tasks = Vec::with_capacity(streams.len());
        for stream in streams {
            let conversion = conversion.clone();
            let people = shared_people.clone();
            tasks.push(SpawnedTask::spawn(async move {
                conversion.convert(stream, &people).await
            }));
        }
        let mut parts = Vec::with_capacity(tasks.len());
        for task in tasks {
            let part = task
                .join()
                .await
                .map_err(|error| engine(&format!("conversion task failed: {error}")))??;
            parts.push(part);
        }
        people = Arc::try_unwrap(shared_people)
            .map_err(|_| engine("a conversion task still holds the identity graph"))?;
        let mut rows = Rows::default();
        for part in parts {
            merge(
                part,
                breakdown.as_ref(),
                &mut people,
                &mut names,
                &mut labels,
                &mut rows,
            );
        }
        all_rows.push(rows);
    }
    Ok(Loaded {
        people,
        names,
        labels,
        rows: all_rows,
    })
}

/// Whether the Parquet scan applies the load's filter itself, decoding the other columns only
/// for the rows it keeps, and hands batches over uncoalesced (with their row group's
/// dictionaries, see [`KeyCache`]). It pays for a selective filter that is not only on names
/// (attribution keeps ~9 % of the rows: 8–15 % faster at 10M events) and costs time for a
/// funnel's event-name filter, which keeps more (10–15 % slower), so only loads with their
/// own `pushdown` condition use it (see BENCHMARKS.md, analytics).
fn late_materialization(ctx: &SessionContext, on: bool) {
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    options.execution.parquet.pushdown_filters = on;
    options.execution.coalesce_batches = !on;
}

/// What a grouped load reads: events in `[from_ms, to_ms)` with these keys, counted and their
/// `revenue` summed per calendar period, event type and name and the values of `columns`.
pub(crate) struct GroupedSpec {
    pub from_ms: i64,
    pub to_ms: i64,
    pub names: Vec<String>,
    /// Further text columns of `events` to group by (never `type` or `event`).
    pub columns: Vec<&'static str>,
    pub calendar: Calendar,
}

impl GroupedSpec {
    /// Whether the `orders` table holds every row and column this load reads (every name an
    /// order event, every column one of `orders`'): then it is read instead of `events`, the
    /// same rows in a fraction of the bytes.
    fn reads_orders(&self) -> bool {
        let schema = atrium_warehouse::Table::Orders.schema();
        self.names
            .iter()
            .all(|name| atrium_warehouse::order_status(name).is_some())
            && self
                .columns
                .iter()
                .all(|column| schema.index_of(column).is_ok())
    }
}

/// One group of a grouped load.
#[derive(Debug)]
pub(crate) struct Group {
    /// The period, as [`Calendar::index`] numbers it.
    pub bucket: u32,
    pub kind: Option<String>,
    pub event: Option<String>,
    /// Values of [`GroupedSpec::columns`], in order.
    pub columns: Vec<Option<String>>,
    pub rows: u64,
    /// The sum of `revenue`, a missing one counting 0.
    pub revenue: f64,
}

/// The name of the period function a grouped load registers on its session.
const BUCKET_FUNCTION: &str = "atrium_analytics_bucket";

/// Aggregates inside DataFusion instead of converting rows: one `GROUP BY` query (vectorized,
/// on every partition) whose groups are few (periods × names × column values). For loads that
/// need no profile, so no identifier is read or resolved.
pub(crate) fn load_grouped(
    warehouse: &Warehouse,
    timeout: Duration,
    spec: GroupedSpec,
) -> Result<Vec<Group>, AnalyticsError> {
    let groups =
        warehouse.with_session(
            timeout,
            move |ctx| async move { read_grouped(ctx, spec).await },
        )?;
    Ok(groups)
}

/// The period function: UTC milliseconds to the index of the calendar period holding them.
fn bucket_function(calendar: Calendar) -> ScalarUDF {
    let calendar = Arc::new(calendar);
    let function = move |arguments: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let times = match &arguments[0] {
            ColumnarValue::Array(array) => array.clone(),
            ColumnarValue::Scalar(scalar) => scalar.to_array()?,
        };
        let times = times
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(
                    "analytics: timestamp is not Timestamp(ms)".into(),
                )
            })?;
        let buckets: UInt32Array = times
            .iter()
            .map(|time| time.map(|ms| calendar.index(ms) as u32))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(buckets)))
    };
    create_udf(
        BUCKET_FUNCTION,
        vec![DataType::Timestamp(
            TimeUnit::Millisecond,
            Some("UTC".into()),
        )],
        DataType::UInt32,
        Volatility::Immutable,
        Arc::new(function),
    )
}

fn grouped_sql(spec: &GroupedSpec) -> String {
    let mut keys = vec![
        "bucket".to_owned(),
        "\"type\"".to_owned(),
        "\"event\"".to_owned(),
    ];
    keys.extend(spec.columns.iter().map(|column| format!("\"{column}\"")));
    let names: Vec<&str> = spec.names.iter().map(String::as_str).collect();
    // `orders` rows are all `track` events.
    let (table, kind, condition) = if spec.reads_orders() {
        let quoted: Vec<String> = names.iter().map(|name| quote(name)).collect();
        (
            "orders",
            "'track' AS \"type\"",
            format!("event IN ({})", quoted.join(", ")),
        )
    } else {
        ("events", "\"type\"", names_condition(&names))
    };
    let inner = keys[2..].join(", ");
    let keys = keys.join(", ");
    format!(
        "SELECT {keys}, count(*) AS n, sum(coalesce(revenue, 0.0)) AS revenue \
         FROM (SELECT {BUCKET_FUNCTION}(\"timestamp\") AS bucket, {kind}, {inner}, revenue \
               FROM {table} \
               WHERE \"timestamp\" >= {} AND \"timestamp\" < {} AND {condition}) \
         GROUP BY {keys}",
        quote(&atrium_types::format_timestamp_ms(spec.from_ms)),
        quote(&atrium_types::format_timestamp_ms(spec.to_ms)),
    )
}

async fn read_grouped(
    ctx: SessionContext,
    spec: GroupedSpec,
) -> Result<Vec<Group>, WarehouseError> {
    let sql = grouped_sql(&spec);
    ctx.register_udf(bucket_function(spec.calendar.clone()));
    let batches = collect(&ctx, &sql).await?;
    let mut groups = Vec::new();
    for batch in &batches {
        let buckets = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| engine("bucket is not UInt32"))?;
        let kinds = StrCol::new(batch.column(1))?;
        let events = StrCol::new(batch.column(2))?;
        let mut columns = Vec::with_capacity(spec.columns.len());
        for index in 0..spec.columns.len() {
            columns.push(StrCol::new(batch.column(3 + index))?);
        }
        let counts = batch
            .column(3 + spec.columns.len())
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| engine("count is not Int64"))?;
        let revenues = batch
            .column(4 + spec.columns.len())
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| engine("revenue sum is not Float64"))?;
        for row in 0..batch.num_rows() {
            if buckets.is_null(row) {
                continue;
            }
            groups.push(Group {
                bucket: buckets.value(row),
                kind: kinds.get(row).map(str::to_owned),
                event: events.get(row).map(str::to_owned),
                columns: columns
                    .iter()
                    .map(|column| column.get(row).map(str::to_owned))
                    .collect(),
                rows: counts.value(row) as u64,
                revenue: if revenues.is_null(row) {
                    0.0
                } else {
                    revenues.value(row)
                },
            });
        }
    }
    Ok(groups)
}

/// A SQL condition selecting the events with these keys (`$page` etc. by type).
pub(crate) fn names_condition(names: &[&str]) -> String {
    let mut tracks = Vec::new();
    let mut kinds = Vec::new();
    for name in names {
        match name.strip_prefix('$') {
            Some(kind) => kinds.push(quote(kind)),
            None => tracks.push(quote(name)),
        }
    }
    let mut alternatives = Vec::new();
    if !tracks.is_empty() {
        alternatives.push(format!(
            "(type = 'track' AND event IN ({}))",
            tracks.join(", ")
        ));
    }
    if !kinds.is_empty() {
        alternatives.push(format!("type IN ({})", kinds.join(", ")));
    }
    format!("({})", alternatives.join(" OR "))
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL of one load and where its columns land in the batches.
struct Plan {
    sql: String,
    /// Text columns read for filters and the breakdown, by column name.
    columns: Vec<&'static str>,
    properties: bool,
}

const BASE_COLUMNS: [&str; 6] = [
    "offset",
    "timestamp",
    "type",
    "event",
    "user_id",
    "anonymous_id",
];

impl Plan {
    fn new(
        spec: &LoadSpec,
        filters: &[Predicate],
        breakdown: Option<&Field>,
        resolve: bool,
    ) -> Plan {
        let mut columns: Vec<&'static str> = Vec::new();
        let mut properties = false;
        let mut note = |field: &Field| match field {
            Field::Column(column) => {
                if !columns.contains(column) && !BASE_COLUMNS.contains(column) {
                    columns.push(column);
                }
            }
            Field::Property(_) => properties = true,
            Field::Trait(_) => {}
        };
        for filter in filters {
            note(&filter.field);
        }
        for matcher in &spec.matchers {
            for filter in &matcher.filters {
                note(&filter.field);
            }
        }
        if let Some(field) = breakdown {
            note(field);
        }
        let mut select: Vec<String> = BASE_COLUMNS
            .iter()
            .map(|c| match *c {
                "user_id" | "anonymous_id" if !resolve => format!("CAST(NULL AS VARCHAR) AS {c}"),
                _ => format!("\"{c}\""),
            })
            .collect();
        select.extend(columns.iter().map(|c| format!("\"{c}\"")));
        if properties {
            select.push("properties".into());
        }
        if spec.revenue {
            select.push("revenue".into());
        }
        let mut conditions = Vec::new();
        if let Some(from) = spec.from_ms {
            conditions.push(format!(
                "\"timestamp\" >= {}",
                quote(&atrium_types::format_timestamp_ms(from))
            ));
        }
        conditions.push(format!(
            "\"timestamp\" < {}",
            quote(&atrium_types::format_timestamp_ms(spec.to_ms))
        ));
        if let Some(pushdown) = &spec.pushdown {
            conditions.push(format!("({pushdown})"));
        } else if spec.only_matching && spec.matchers.iter().all(|m| m.name.is_some()) {
            let names: Vec<&str> = spec
                .matchers
                .iter()
                .filter_map(|m| m.name.as_deref())
                .collect();
            conditions.push(names_condition(&names));
        }
        let sql = format!(
            "SELECT {} FROM events WHERE {}",
            select.join(", "),
            conditions.join(" AND ")
        );
        Plan {
            sql,
            columns,
            properties,
        }
    }

    fn add_batch(
        &self,
        batch: &RecordBatch,
        spec: &LoadSpec,
        filters: &[Predicate],
        breakdown: Option<&Field>,
        people: &People,
        part: &mut Part,
    ) -> Result<(), WarehouseError> {
        let Part {
            rows,
            names,
            labels,
            unknown,
            ids: ids_cache,
        } = part;
        let offsets = batch
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| engine("offset is not UInt64"))?;
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| engine("timestamp is not Timestamp(ms)"))?;
        let types = StrCol::new(batch.column(2))?;
        let events = StrCol::new(batch.column(3))?;
        let ids = IdCols {
            user: IdCol::new(batch.column(4))?,
            anonymous: IdCol::new(batch.column(5))?,
        };
        ids_cache.user.prepare(&ids.user);
        ids_cache.anonymous.prepare(&ids.anonymous);
        let mut texts = Vec::with_capacity(self.columns.len());
        for index in 0..self.columns.len() {
            texts.push(StrCol::new(batch.column(6 + index))?);
        }
        let mut next = 6 + self.columns.len();
        let properties = if self.properties {
            next += 1;
            Some(StrCol::new(batch.column(next - 1))?)
        } else {
            None
        };
        let revenue: Option<&Float64Array> = if spec.revenue {
            Some(
                batch
                    .column(next)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(|| engine("revenue is not Float64"))?,
            )
        } else {
            None
        };
        // Matcher names resolved to interned keys once per batch.
        let matcher_names: Vec<Option<u32>> = spec
            .matchers
            .iter()
            .map(|m| m.name.as_deref().map(|name| names.intern(name)))
            .collect();
        let mut key_buffer = String::new();
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let kind = types.get(row).unwrap_or("");
            let name = if kind == "track" {
                names.intern(events.get(row).unwrap_or(""))
            } else {
                key_buffer.clear();
                key_buffer.push('$');
                key_buffer.push_str(kind);
                names.intern(&key_buffer)
            };
            let mut parsed: Option<Value> = None;
            let mut props = |properties: &Option<StrCol>| -> Value {
                if parsed.is_none() {
                    let text = properties.as_ref().and_then(|p| p.get(row)).unwrap_or("");
                    parsed = Some(serde_json::from_str(text).unwrap_or(Value::Null));
                }
                parsed.clone().unwrap_or(Value::Null)
            };
            let pass =
                |filter: &Predicate, props: &mut dyn FnMut(&Option<StrCol>) -> Value| -> bool {
                    match &filter.field {
                        Field::Column(column) => {
                            let value = if *column == "event" {
                                events.get(row)
                            } else if *column == "type" {
                                Some(kind)
                            } else {
                                let index = self.columns.iter().position(|c| c == column);
                                index.and_then(|i| texts[i].get(row))
                            };
                            filter.matches_text(value)
                        }
                        Field::Property(path) => {
                            let value = props(&properties);
                            filter.matches(lookup(&value, path))
                        }
                        Field::Trait(_) => true,
                    }
                };
            if !filters.iter().all(|filter| pass(filter, &mut props)) {
                continue;
            }
            let mut mask = 0u32;
            for (index, matcher) in spec.matchers.iter().enumerate() {
                let name_ok = matcher_names[index].is_none_or(|id| id == name);
                if name_ok
                    && matcher
                        .filters
                        .iter()
                        .all(|filter| pass(filter, &mut props))
                {
                    mask |= 1 << index;
                }
            }
            if spec.only_matching && mask == 0 {
                continue;
            }
            let profile = match people.resolve(&ids, row, ids_cache) {
                Some(profile) if !people.allowed(profile) => continue,
                Some(profile) => profile,
                None => UNKNOWN | unknown.intern(&People::unknown_key(&ids, row)),
            };
            let group = match breakdown {
                // Filled in by `merge`, once every profile has its global index.
                None | Some(Field::Trait(_)) => 0,
                Some(Field::Column(column)) => {
                    let text = if *column == "event" {
                        events.get(row)
                    } else if *column == "type" {
                        Some(kind)
                    } else {
                        let index = self.columns.iter().position(|c| c == column);
                        index.and_then(|i| texts[i].get(row))
                    };
                    match text {
                        Some(text) if !text.is_empty() => labels.intern(text),
                        _ => 0,
                    }
                }
                Some(Field::Property(path)) => {
                    let value = props(&properties);
                    label(lookup(&value, path))
                        .map(|text| labels.intern(&text))
                        .unwrap_or(0)
                }
            };
            rows.ts.push(times.value(row));
            rows.offset.push(offsets.value(row));
            rows.profile.push(profile);
            rows.name.push(name);
            rows.mask.push(mask);
            rows.group.push(group);
            if let Some(revenue) = revenue {
                rows.revenue.push(if revenue.is_null(row) {
                    f64::NAN
                } else {
                    revenue.value(row)
                });
            }
        }
        Ok(())
    }
}

/// Marks a [`Part`]'s profile index as one of its own unknown identifiers.
const UNKNOWN: u32 = 1 << 31;

/// One partition's rows, with ids of its own: event keys in `names`, breakdown labels in
/// `labels`, and identifiers the graph does not know as `UNKNOWN | index in unknown`.
#[derive(Default)]
struct Part {
    rows: Rows,
    names: Dict,
    labels: Dict,
    unknown: Dict,
    ids: IdCache,
}

/// What every partition's conversion of one load shares.
struct Conversion {
    plan: Plan,
    spec: LoadSpec,
    filters: Vec<Predicate>,
    breakdown: Option<Field>,
}

impl Conversion {
    async fn convert(
        &self,
        mut stream: SendableRecordBatchStream,
        people: &People,
    ) -> Result<Part, WarehouseError> {
        let mut part = Part::default();
        while let Some(batch) = stream.next().await {
            self.plan.add_batch(
                &batch?,
                &self.spec,
                &self.filters,
                self.breakdown.as_ref(),
                people,
                &mut part,
            )?;
        }
        Ok(part)
    }
}

/// Appends a partition's rows to `rows`, renumbered into the load's dictionaries; unknown
/// identifiers get their profile index here, and rows of profiles the trait filters exclude
/// are dropped.
fn merge(
    part: Part,
    breakdown: Option<&Field>,
    people: &mut People,
    names: &mut Dict,
    labels: &mut Dict,
    rows: &mut Rows,
) {
    let renumber = |local: &Dict, global: &mut Dict| -> Vec<u32> {
        let mut ids = vec![0u32];
        ids.extend(local.values[1..].iter().map(|text| global.intern(text)));
        ids
    };
    let name_ids = renumber(&part.names, names);
    let label_ids = renumber(&part.labels, labels);
    let mut unknown_ids = vec![0u32];
    for key in &part.unknown.values[1..] {
        unknown_ids.push(people.profile_index(key, labels));
    }
    let trait_breakdown = matches!(breakdown, Some(Field::Trait(_)));
    let source = part.rows;
    rows.ts.reserve(source.len());
    for row in 0..source.len() {
        let local = source.profile[row];
        let profile = if local & UNKNOWN != 0 {
            let profile = unknown_ids[(local & !UNKNOWN) as usize];
            if !people.allowed(profile) {
                continue;
            }
            profile
        } else {
            local
        };
        let group = if trait_breakdown {
            people
                .trait_group
                .get(profile as usize)
                .copied()
                .unwrap_or(0)
        } else {
            label_ids[source.group[row] as usize]
        };
        rows.ts.push(source.ts[row]);
        rows.offset.push(source.offset[row]);
        rows.profile.push(profile);
        rows.name.push(name_ids[source.name[row] as usize]);
        rows.mask.push(source.mask[row]);
        rows.group.push(group);
        if let Some(&revenue) = source.revenue.get(row) {
            rows.revenue.push(revenue);
        }
    }
}

fn engine(message: &str) -> WarehouseError {
    WarehouseError::Engine(format!("analytics: {message}"))
}

/// A text column, whichever string layout the scan produced.
enum StrCol<'a> {
    Utf8(&'a StringArray),
    View(&'a StringViewArray),
    Large(&'a datafusion::arrow::array::LargeStringArray),
}

impl<'a> StrCol<'a> {
    fn new(array: &'a ArrayRef) -> Result<StrCol<'a>, WarehouseError> {
        match array.data_type() {
            DataType::Utf8 => Ok(StrCol::Utf8(array.as_string::<i32>())),
            DataType::Utf8View => Ok(StrCol::View(array.as_string_view())),
            DataType::LargeUtf8 => Ok(StrCol::Large(array.as_string::<i64>())),
            other => Err(engine(&format!("expected a text column, got {other}"))),
        }
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            StrCol::Utf8(array) => (!array.is_null(row)).then(|| array.value(row)),
            StrCol::View(array) => (!array.is_null(row)).then(|| array.value(row)),
            StrCol::Large(array) => (!array.is_null(row)).then(|| array.value(row)),
        }
    }
}

/// A row's two identifier columns.
struct IdCols<'a> {
    user: IdCol<'a>,
    anonymous: IdCol<'a>,
}

/// An identifier column: dictionary-encoded as the warehouse stores it, or plain text.
enum IdCol<'a> {
    Dictionary {
        keys: &'a datafusion::arrow::array::Int32Array,
        values: StrCol<'a>,
        array: &'a ArrayRef,
    },
    Text(StrCol<'a>),
}

impl<'a> IdCol<'a> {
    fn new(array: &'a ArrayRef) -> Result<IdCol<'a>, WarehouseError> {
        match array.data_type() {
            DataType::Dictionary(key, _) if **key == DataType::Int32 => {
                let dictionary = array.as_dictionary::<Int32Type>();
                Ok(IdCol::Dictionary {
                    keys: dictionary.keys(),
                    values: StrCol::new(dictionary.values())?,
                    array: dictionary.values(),
                })
            }
            _ => Ok(IdCol::Text(StrCol::new(array)?)),
        }
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            IdCol::Dictionary { keys, values, .. } => {
                (!keys.is_null(row)).then(|| values.get(keys.value(row) as usize))?
            }
            IdCol::Text(text) => text.get(row),
        }
    }
}

/// The identity graph's profile of each distinct id of the dictionaries read last.
#[derive(Default)]
struct IdCache {
    user: KeyCache,
    anonymous: KeyCache,
}

/// Per key of one dictionary: the profile its id resolves to, [`NOT_FOUND`], or [`UNSEEN`].
/// The dictionary's values are held, so their buffers (compared by address) cannot be reused
/// by another dictionary while cached.
#[derive(Default)]
struct KeyCache {
    values: Option<ArrayRef>,
    profiles: Vec<u32>,
    /// Whether the batch being read uses `profiles` (set by [`KeyCache::prepare`]).
    active: bool,
}

const UNSEEN: u32 = u32::MAX;
const NOT_FOUND: u32 = u32::MAX - 1;

/// Most entries of a dictionary given a cache (4 bytes each, reset once per new dictionary);
/// a larger one is looked up per row. A row group's dictionary holds one day's distinct ids.
const MAX_CACHED_VALUES: usize = 1 << 20;

impl KeyCache {
    /// Readies the cache for a batch's column: kept when the batch shares the dictionary read
    /// last (batches of one row group do), reset for a new one.
    fn prepare(&mut self, ids: &IdCol<'_>) {
        self.active = false;
        let IdCol::Dictionary { array, .. } = ids else {
            return;
        };
        let same = self.values.as_ref().is_some_and(|held| {
            held.len() == array.len() && held.to_data().ptr_eq(&array.to_data())
        });
        if !same {
            if array.len() > MAX_CACHED_VALUES {
                return;
            }
            self.values = Some((*array).clone());
            self.profiles.clear();
            self.profiles.resize(array.len(), UNSEEN);
        }
        self.active = true;
    }

    fn profile(&mut self, ids: &IdCol<'_>, row: usize, graph: &IdMap) -> Option<u32> {
        let lookup = |id: Option<&str>| {
            id.filter(|text| !text.is_empty())
                .and_then(|text| graph.get(text))
        };
        match ids {
            IdCol::Dictionary { keys, values, .. } if self.active => {
                if keys.is_null(row) {
                    return None;
                }
                let key = keys.value(row) as usize;
                let slot = &mut self.profiles[key];
                if *slot == UNSEEN {
                    *slot = lookup(values.get(key)).unwrap_or(NOT_FOUND);
                }
                (*slot != NOT_FOUND).then_some(*slot)
            }
            _ => lookup(ids.get(row)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::DictionaryArray;

    fn ids(keys: Vec<Option<i32>>, values: Vec<&str>) -> ArrayRef {
        let values: ArrayRef = Arc::new(StringArray::from(values));
        let keys = datafusion::arrow::array::Int32Array::from(keys);
        Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
    }

    /// Resolves every row of (user ids, anonymous ids) batches through one cache, as a
    /// partition's conversion does, each row also without a cache.
    fn resolve_all(people: &People, batches: &[(ArrayRef, ArrayRef)]) -> Vec<Vec<Option<u32>>> {
        let mut cache = IdCache::default();
        let mut out = Vec::new();
        for (users, anonymous) in batches {
            let ids = IdCols {
                user: IdCol::new(users).unwrap(),
                anonymous: IdCol::new(anonymous).unwrap(),
            };
            cache.user.prepare(&ids.user);
            cache.anonymous.prepare(&ids.anonymous);
            let mut rows = Vec::new();
            for row in 0..users.len() {
                let cached = people.resolve(&ids, row, &mut cache);
                let plain = people.resolve(&ids, row, &mut IdCache::default());
                assert_eq!(cached, plain, "row {row}");
                rows.push(cached);
            }
            out.push(rows);
        }
        out
    }

    #[test]
    fn dictionary_ids_resolve_like_text_across_changing_dictionaries() {
        let mut graph = IdentityIndex::default();
        graph.user_ids.insert("u1", 0);
        graph.anonymous_ids.insert("a1", 0);
        graph.anonymous_ids.insert("a2", 1);
        graph.profiles = 2;
        let people = People {
            graph: Arc::new(graph),
            ..People::default()
        };
        let users = ids(vec![Some(0), None, Some(1), Some(2)], vec!["u1", "u9", ""]);
        let anonymous = ids(
            vec![Some(1), Some(0), Some(0), Some(2)],
            vec!["a1", "a2", "a7"],
        );
        // The second batch shares the first's dictionaries (one row group); the third has new
        // ones at the same keys, which must not reuse the first's answers.
        let shared = (
            ids_with_values(&users, vec![Some(2), Some(0)]),
            ids_with_values(&anonymous, vec![Some(0), Some(1)]),
        );
        let swapped = (
            ids(vec![Some(0), Some(1)], vec!["u9", "u1"]),
            ids(vec![Some(0), Some(1)], vec!["a2", "a1"]),
        );
        let text_users: ArrayRef = Arc::new(StringArray::from(vec![Some("u1"), None]));
        let text_anonymous: ArrayRef = Arc::new(StringArray::from(vec![Some("a9"), Some("a2")]));
        let resolved = resolve_all(
            &people,
            &[
                (users.clone(), anonymous.clone()),
                shared,
                swapped,
                (text_users, text_anonymous),
            ],
        );
        assert_eq!(
            resolved,
            vec![
                vec![Some(0), Some(0), Some(0), None],
                vec![Some(0), Some(0)],
                vec![Some(1), Some(0)],
                vec![Some(0), Some(1)],
            ]
        );
        let plain = IdCols {
            user: IdCol::new(&users).unwrap(),
            anonymous: IdCol::new(&anonymous).unwrap(),
        };
        assert_eq!(People::unknown_key(&plain, 3), "anonymous_id:a7");
        assert_eq!(People::unknown_key(&plain, 2), "user_id:u9");
        assert_eq!(People::unknown_key(&plain, 0), "user_id:u1");
    }

    /// A dictionary array with `keys` over the values of `of` (the same buffers).
    fn ids_with_values(of: &ArrayRef, keys: Vec<Option<i32>>) -> ArrayRef {
        let values = of.as_dictionary::<Int32Type>().values().clone();
        let keys = datafusion::arrow::array::Int32Array::from(keys);
        Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap())
    }
}
