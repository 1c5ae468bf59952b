//! `atrium analytics <kpis|funnel|retention|attribution|paths>`: the analytics API, offline,
//! over a data directory.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use atrium_analytics::{Limits, QueryKind};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::DataArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Revenue, orders, AOV, conversion, new vs returning, DAU/WAU/MAU, refunds.
    Kpis,
    /// Ordered steps within a conversion window.
    Funnel,
    /// Cohorts by first occurrence of an event, returns per period.
    Retention,
    /// Orders and revenue attributed to campaign touchpoints.
    Attribution,
    /// Most frequent next (or previous) events around an event.
    Paths,
}

#[derive(Args)]
#[command(
    after_help = "The request is the JSON body of POST /v1/analytics/<query> (see README); \
flags set or override its fields. Examples:\n  \
atrium analytics kpis --from 2026-01-01 --to 2026-02-01 --granularity day --breakdown channel\n  \
atrium analytics funnel --from 2026-01-01 --to 2026-02-01 --steps 'Product Viewed,Product Added,Order Completed' --window-days 7\n  \
atrium analytics retention --from 2026-01-05 --to 2026-03-30 --granularity week --start 'Product Viewed' --periods 8\n  \
atrium analytics attribution --request attribution.json --json"
)]
pub struct AnalyticsArgs {
    /// Which query.
    #[arg(value_enum)]
    kind: Kind,
    /// JSON request file (`-` for stdin).
    #[arg(long)]
    request: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Start of the range: a date (local midnight) or an RFC 3339 timestamp.
    #[arg(long)]
    from: Option<String>,
    /// End of the range (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// IANA time zone the periods are local to (default UTC).
    #[arg(long)]
    time_zone: Option<String>,
    /// total, day, week or month.
    #[arg(long)]
    granularity: Option<String>,
    /// Breakdown: a dimension (channel, utm_source, campaign, device, country, ...),
    /// properties.<key> or traits.<key>.
    #[arg(long)]
    breakdown: Option<String>,
    /// Funnel steps, comma-separated event keys.
    #[arg(long)]
    steps: Option<String>,
    /// Funnel conversion window in days.
    #[arg(long)]
    window_days: Option<u32>,
    /// Retention start event.
    #[arg(long)]
    start: Option<String>,
    /// Retention return event (default: any event).
    #[arg(long = "return")]
    return_event: Option<String>,
    /// Retention periods.
    #[arg(long)]
    periods: Option<u32>,
    /// Paths anchor event.
    #[arg(long)]
    anchor: Option<String>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    /// Cancel the warehouse reads after this many milliseconds.
    #[arg(long, default_value_t = 300_000)]
    timeout_ms: u64,
}

impl Kind {
    fn query(self) -> QueryKind {
        match self {
            Kind::Kpis => QueryKind::Kpis,
            Kind::Funnel => QueryKind::Funnel,
            Kind::Retention => QueryKind::Retention,
            Kind::Attribution => QueryKind::Attribution,
            Kind::Paths => QueryKind::Paths,
        }
    }
}

/// The request body: the file (if any) with the flags applied over it.
fn request_body(args: &AnalyticsArgs) -> anyhow::Result<Value> {
    let mut body = match &args.request {
        None => Map::new(),
        Some(path) => {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
            }
            match serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?
            {
                Value::Object(map) => map,
                _ => bail!("{}: the request must be a JSON object", path.display()),
            }
        }
    };
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(key.to_owned(), value);
        }
    };
    set("from", args.from.clone().map(Value::from));
    set("to", args.to.clone().map(Value::from));
    set("time_zone", args.time_zone.clone().map(Value::from));
    set("granularity", args.granularity.clone().map(Value::from));
    set("breakdown", args.breakdown.clone().map(Value::from));
    set(
        "steps",
        args.steps.as_ref().map(|steps| {
            steps
                .split(',')
                .map(|event| json!({"event": event.trim()}))
                .collect()
        }),
    );
    set(
        "window",
        args.window_days
            .map(|days| json!({"value": days, "unit": "day"})),
    );
    set(
        "start",
        args.start.as_ref().map(|event| json!({"event": event})),
    );
    set(
        "return",
        args.return_event
            .as_ref()
            .map(|event| json!({"event": event})),
    );
    set("periods", args.periods.map(Value::from));
    set(
        "anchor",
        args.anchor.as_ref().map(|event| json!({"event": event})),
    );
    Ok(Value::Object(body))
}

pub fn run(args: AnalyticsArgs) -> anyhow::Result<()> {
    let body = request_body(&args)?;
    let (_lock, warehouse) = crate::warehouse::open(&args.data)?;
    let limits = Limits {
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let started = std::time::Instant::now();
    let answer = atrium_analytics::run_json(
        &warehouse,
        args.kind.query(),
        &serde_json::to_vec(&body)?,
        &limits,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.json)?);
    } else {
        println!("{}", answer.table);
        eprintln!(
            "{} in {} ms",
            args.kind.query().name(),
            started.elapsed().as_millis()
        );
    }
    Ok(())
}
