//! `atrium bench analytics`: the four benchmark queries of the analytics API (a 4-step funnel
//! with a 7-day window, 12-week retention, daily revenue by channel over 90 days, last-touch
//! attribution) on a generated shop, timed through Atrium's engine and, in the same run and on
//! the same exported Parquet files, through DuckDB and chDB (`tests/duckdb/bench_engines.py`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use atrium_analytics::{Limits, QueryKind};
use atrium_types::{Channel, SourceConfig};
use clap::Args;
use serde_json::{Value, json};

use crate::DataArgs;

#[derive(Args)]
pub struct AnalyticsBenchArgs {
    /// Events in the generated shop (spread over 90 days).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to build the shop and its Parquet export (default: a new temporary directory,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use the shop already built in --dir instead of generating one.
    #[arg(long, requires = "dir")]
    reuse: bool,
    /// Timed runs per query and engine (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Python interpreter with the `duckdb` and `chdb` packages (a missing one is skipped).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The reference engine script.
    #[arg(long, default_value = "tests/duckdb/bench_engines.py")]
    engines_script: PathBuf,
    /// Run only these queries (comma-separated: funnel, retention, daily_revenue, last_touch).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
}

/// The benchmark requests, in the order the engine script expects them.
fn requests() -> Vec<(&'static str, QueryKind, Value)> {
    let range = json!({"from": "2026-01-01", "to": "2026-04-01"});
    let with = |extra: Value| {
        let mut request = range.clone();
        for (key, value) in extra.as_object().expect("object") {
            request[key] = value.clone();
        }
        request
    };
    vec![
        (
            "funnel",
            QueryKind::Funnel,
            with(json!({
                "steps": [{"event": "Product Viewed"}, {"event": "Product Added"},
                          {"event": "Checkout Started"}, {"event": "Order Completed"}],
                "window": {"value": 7, "unit": "day"}})),
        ),
        (
            "retention",
            QueryKind::Retention,
            with(
                json!({"granularity": "week", "start": {"event": "Product Viewed"}, "periods": 12}),
            ),
        ),
        (
            "daily_revenue",
            QueryKind::Kpis,
            with(json!({"granularity": "day", "breakdown": "channel", "metrics": ["revenue"]})),
        ),
        (
            "last_touch",
            QueryKind::Attribution,
            with(json!({"models": ["last_touch"], "breakdown": "utm_source"})),
        ),
    ]
}

/// Appends a generated shop to the log with the demo sources' channels.
fn generate(data: &DataArgs, events: usize, seed: u64) -> anyhow::Result<()> {
    let config = data.load()?;
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    anyhow::ensure!(
        atrium_log::EventLog::end_offset(&*log) == 0,
        "{} already holds events: use --reuse or another --dir",
        config.data_dir.display()
    );
    let mut gen_config = atrium_gen::GenConfig::for_events(seed, events);
    gen_config.days = 90;
    let bar = crate::progress_bar(events as u64, "generating");
    let received_at_ms = atrium_types::Clock::now_ms(&atrium_types::SystemClock);
    let mut pending: Vec<(String, Value)> = Vec::with_capacity(2_000);
    let flush = |pending: &mut Vec<(String, Value)>| -> anyhow::Result<()> {
        // One normalize call per source of the chunk, in order.
        let mut start = 0;
        while start < pending.len() {
            let source = pending[start].0.clone();
            let mut end = start;
            while end < pending.len() && pending[end].0 == source {
                end += 1;
            }
            let channel = match source.as_str() {
                "web" => Channel::Web,
                "pos" => Channel::Pos,
                "email" => Channel::Email,
                "backend" => Channel::Server,
                _ => Channel::App,
            };
            let events: Vec<Value> = pending[start..end].iter().map(|(_, e)| e.clone()).collect();
            let normalized = atrium_collect::normalize_events(
                &SourceConfig {
                    name: source,
                    channel,
                },
                received_at_ms,
                None,
                &events,
            )?;
            let payloads: Vec<&[u8]> = normalized
                .accepted
                .iter()
                .map(|event| event.payload.as_slice())
                .collect();
            if !payloads.is_empty() {
                atrium_log::EventLog::append(&*log, &payloads)?;
            }
            start = end;
        }
        pending.clear();
        Ok(())
    };
    for mut event in atrium_gen::Generator::new(gen_config) {
        let source = atrium_gen::take_source(&mut event).unwrap_or_else(|| "web".to_owned());
        pending.push((source, event));
        if pending.len() >= 2_000 {
            flush(&mut pending)?;
            bar.inc(2_000);
        }
    }
    flush(&mut pending)?;
    bar.finish();
    Ok(())
}

/// Peak resident memory since the last reset, in MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn reset_peak_rss() {
    // "5" resets the peak resident set size (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

pub fn run(args: AnalyticsBenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let known: Vec<&str> = requests().iter().map(|(name, _, _)| *name).collect();
    if let Some(unknown) = args.queries.iter().find(|q| !known.contains(&q.as_str())) {
        bail!("unknown query {unknown:?} in --queries; the queries are {known:?}");
    }
    let selected = |name: &str| args.queries.is_empty() || args.queries.iter().any(|q| q == name);
    let temporary = args.dir.is_none();
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("atrium-bench-analytics-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let data = DataArgs {
        config: None,
        data_dir: Some(dir.join("data")),
    };
    let export = dir.join("export");
    let build_started = Instant::now();
    if !args.reuse {
        generate(&data, args.events, args.seed)?;
    }
    let (_lock, warehouse) = crate::warehouse::open(&data)?;
    if !args.reuse || !export.exists() {
        if export.exists() {
            std::fs::remove_dir_all(&export)?;
        }
        warehouse.export(&export, atrium_warehouse::ExportFormat::Parquet)?;
    }
    let build_seconds = build_started.elapsed().as_secs_f64();
    let event_count = warehouse
        .sql(
            "SELECT count(*) AS n FROM events",
            &atrium_warehouse::SqlLimits::default(),
        )?
        .to_json_rows()?;
    let parquet_bytes = dir_bytes(&export.join("events"));
    eprintln!(
        "shop ready in {build_seconds:.0} s: {} events, {:.0} MiB of event Parquet",
        String::from_utf8_lossy(&event_count),
        parquet_bytes as f64 / 1048576.0
    );

    let limits = Limits {
        timeout: Duration::from_secs(600),
    };
    let mut atrium_times: Vec<(&str, f64, f64)> = Vec::new();
    for (name, kind, request) in requests() {
        if !selected(name) {
            continue;
        }
        let body = serde_json::to_vec(&request)?;
        let mut seconds = Vec::new();
        let mut peak: f64 = 0.0;
        for _ in 0..args.runs {
            reset_peak_rss();
            let started = Instant::now();
            atrium_analytics::run_json(&warehouse, kind, &body, &limits)
                .with_context(|| format!("atrium {name}"))?;
            seconds.push(started.elapsed().as_secs_f64());
            peak = peak.max(peak_rss_mib());
        }
        eprintln!("atrium {name}: {seconds:?}");
        atrium_times.push((name, median(&mut seconds), peak));
    }

    let requests_file = dir.join("requests.json");
    let request_values: Vec<Value> = requests().into_iter().map(|(_, _, r)| r).collect();
    std::fs::write(&requests_file, serde_json::to_vec(&request_values)?)?;
    let output = std::process::Command::new(&args.python)
        .arg(&args.engines_script)
        .arg("--export")
        .arg(&export)
        .arg("--requests")
        .arg(&requests_file)
        .arg("--runs")
        .arg(args.runs.to_string())
        .args(if args.queries.is_empty() {
            Vec::new()
        } else {
            vec!["--queries".to_owned(), args.queries.join(",")]
        })
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", args.python, args.engines_script.display()))?;
    let mut reference: Vec<Value> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            reference.push(value);
        }
    }
    if !output.status.success() {
        eprintln!("the reference engines exited with {}", output.status);
    }
    let seconds_median = |value: &Value| -> Option<f64> {
        let list = value["seconds"].as_array()?;
        let mut values: Vec<f64> = list.iter().filter_map(Value::as_f64).collect();
        Some(median(&mut values))
    };
    // An engine's time for a query is its fastest form's (`<query>` or `<query>_<form>`).
    let engine_median = |engine: &str, query: &str| -> Option<f64> {
        reference
            .iter()
            .filter(|v| {
                v["engine"] == engine
                    && v["query"].as_str().is_some_and(|name| {
                        name == query
                            || name
                                .strip_prefix(query)
                                .is_some_and(|rest| rest.starts_with('_'))
                    })
            })
            .filter_map(seconds_median)
            .min_by(f64::total_cmp)
    };
    for value in &reference {
        if let (Some(query), Some(seconds)) = (value["query"].as_str(), seconds_median(value)) {
            eprintln!("{} {query}: {seconds:.3} s (median)", value["engine"]);
        }
    }
    for value in &reference {
        if let Some(error) = value.get("error") {
            eprintln!("{} {}: {error}", value["engine"], value["query"]);
        }
    }

    println!();
    println!(
        "analytics benchmark: {} events, {} runs per query (median), machine: {} cores",
        String::from_utf8_lossy(&event_count).trim(),
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<15} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14}",
        "query", "atrium s", "duckdb s", "chdb s", "vs duckdb", "vs chdb", "atrium peak"
    );
    for (name, atrium, peak) in &atrium_times {
        let duck = engine_median("duckdb", name);
        let ch = engine_median("chdb", name);
        let cell = |value: Option<f64>| value.map(|v| format!("{v:.3}")).unwrap_or("-".into());
        let ratio = |value: Option<f64>| {
            value
                .map(|v| format!("{:.2}x", atrium / v))
                .unwrap_or("-".into())
        };
        println!(
            "{:<15} {:>10.3} {:>10} {:>10} {:>12} {:>12} {:>10.0} MiB",
            name,
            atrium,
            cell(duck),
            cell(ch),
            ratio(duck),
            ratio(ch),
            peak
        );
    }
    println!(
        "(ratio = atrium time / engine time, against the engine's fastest form of the query; \
         <= 1.00x means atrium is at least as fast)"
    );
    drop(warehouse);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_requests_are_valid_requests() {
        for (name, kind, request) in requests() {
            let body = serde_json::to_vec(&request).unwrap();
            let parsed: Result<Value, _> = match kind {
                QueryKind::Funnel => {
                    serde_json::from_slice::<atrium_analytics::FunnelRequest>(&body)
                        .map(|_| Value::Null)
                }
                QueryKind::Retention => {
                    serde_json::from_slice::<atrium_analytics::RetentionRequest>(&body)
                        .map(|_| Value::Null)
                }
                QueryKind::Kpis => serde_json::from_slice::<atrium_analytics::KpiRequest>(&body)
                    .map(|_| Value::Null),
                QueryKind::Attribution => {
                    serde_json::from_slice::<atrium_analytics::AttributionRequest>(&body)
                        .map(|_| Value::Null)
                }
                QueryKind::Paths => serde_json::from_slice::<atrium_analytics::PathsRequest>(&body)
                    .map(|_| Value::Null),
            };
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
    }
}
