//! `atrium bench ingest`: durable acknowledged events/s, ack latency, pipeline throughput and
//! freshness, measured end to end through the real HTTP API on loopback; in the same run, the
//! same events written into PostgreSQL as JSONB rows with `COPY` (the baseline a team would build
//! instead), a full replay of the log (pure pipeline throughput), and the resident memory of a
//! server holding a million profiles. See BENCHMARKS.md for the method and the results.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use atrium_server::{Config, Server, SourceEntry, hash_secret};
use atrium_types::Channel;
use clap::Args;
use serde_json::Value;

#[derive(Args, Clone)]
pub struct IngestBenchArgs {
    /// Events to send in the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Offered load (events/s) of the freshness phase; 0 skips it.
    #[arg(long, default_value_t = 50_000)]
    pub paced_rate: usize,
    /// Duration of the freshness phase, in seconds.
    #[arg(long, default_value_t = 5)]
    pub paced_seconds: u64,
    /// Skip the replay phase (full rebuild of the state from the log: pure pipeline throughput).
    #[arg(long)]
    pub skip_replay: bool,
    /// PostgreSQL baseline: connection URL, e.g. postgres://user:pass@127.0.0.1/db. Unset: the
    /// baseline is skipped. The bench (re)creates and drops the table `atrium_bench_events`.
    #[arg(long, env = "ATRIUM_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Concurrent PostgreSQL writers (one connection each).
    #[arg(long, default_value_t = 4)]
    pub postgres_writers: usize,
    /// Memory phase: start `atrium serve` as a child process, load this many distinct profiles
    /// (one identify event each) through the HTTP API and report the server's RSS and disk use.
    /// 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub profiles_rss: usize,
    /// Data directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const WRITE_KEY: &str = "wk_bench_000000";
const PG_TABLE: &str = "atrium_bench_events";

/// One request: the pre-serialized `/v1/batch` body, and (for the PostgreSQL baseline) the same
/// events as `COPY ... FROM STDIN` text-format rows, one JSON document per line.
#[derive(Clone)]
struct Body {
    bytes: bytes::Bytes,
    events: usize,
    copy_rows: Option<bytes::Bytes>,
}

struct Bodies {
    bodies: Vec<Body>,
    wire_bytes: usize,
    event_json_bytes: usize,
}

/// Escapes one value for a `COPY` text-format column: backslash, newline, carriage return and tab
/// are the characters with a meaning there.
fn copy_text_escape(out: &mut Vec<u8>, value: &[u8]) {
    for &byte in value {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            other => out.push(other),
        }
    }
}

/// Pre-serialized request bodies, so the client spends as little CPU as possible.
fn build_bodies(seed: u64, events: usize, batch: usize, with_copy: bool) -> Bodies {
    let bar = crate::progress_bar(events as u64, "generating events");
    let mut out = Bodies {
        bodies: Vec::with_capacity(events / batch + 1),
        wire_bytes: 0,
        event_json_bytes: 0,
    };
    let mut current: Vec<Value> = Vec::with_capacity(batch);
    let flush = |current: &mut Vec<Value>, out: &mut Bodies| {
        if current.is_empty() {
            return;
        }
        let count = current.len();
        let mut copy = Vec::new();
        for event in current.iter() {
            let json = serde_json::to_vec(event).expect("serializes");
            out.event_json_bytes += json.len();
            if with_copy {
                copy_text_escape(&mut copy, &json);
                copy.push(b'\n');
            }
        }
        let body = serde_json::to_vec(&serde_json::json!({"batch": std::mem::take(current)}))
            .expect("serializes");
        out.wire_bytes += body.len();
        out.bodies.push(Body {
            bytes: body.into(),
            events: count,
            copy_rows: with_copy.then(|| copy.into()),
        });
        bar.inc(count as u64);
    };
    for mut event in atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events)) {
        atrium_gen::take_source(&mut event);
        current.push(event);
        if current.len() == batch {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    bar.finish_and_clear();
    out
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Every figure of the run, for the summary table.
#[derive(Default)]
struct Results {
    events: usize,
    ingest_rate: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    end_to_end_rate: f64,
    warehouse_rate: f64,
    paced: Option<Paced>,
    replay: Option<Replay>,
    postgres: Option<PostgresResult>,
    postgres_skipped: Option<String>,
    rss: Option<RssResult>,
}

struct Paced {
    offered: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: u64,
    ack_p99_ms: f64,
    visible_p50_ms: f64,
    visible_p99_ms: f64,
    visible_max_ms: f64,
    visible_samples: usize,
    queryable_p50_ms: f64,
    queryable_p99_ms: f64,
    queryable_max_ms: f64,
}

/// Per request, sorted: ms from sending it until a consumer published an offset covering its
/// events (`visible`: when each offset was seen, in order).
fn lags_ms(sent: &[Sent], visible: &[(Instant, u64)]) -> Vec<f64> {
    let mut lags: Vec<f64> = sent
        .iter()
        .filter_map(|sent| {
            let index = visible.partition_point(|(_, offset)| *offset < sent.log_end);
            visible
                .get(index)
                .map(|(at, _)| at.saturating_duration_since(sent.sent).as_secs_f64() * 1_000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    lags
}

struct Replay {
    records: u64,
    seconds: f64,
    profiles: u64,
}

struct PostgresResult {
    rate: f64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    rows: i64,
    table_bytes: i64,
    version: String,
}

struct RssResult {
    profiles: u64,
    events: usize,
    load_seconds: f64,
    rss_mib: f64,
    hwm_mib: f64,
    restart_rss_mib: Option<f64>,
    disk_mib: f64,
    state_mib: f64,
    log_mib: f64,
}

pub fn run_ingest(args: IngestBenchArgs) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.clone());
    let result = run_phases(&args, &data_dir, &temporary);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    let results = result?;
    print_summary(&args, &results);
    Ok(())
}

fn run_phases(
    args: &IngestBenchArgs,
    data_dir: &std::path::Path,
    temporary: &std::path::Path,
) -> anyhow::Result<Results> {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        sources: vec![SourceEntry {
            name: "bench".into(),
            channel: Channel::Server,
            write_key: WRITE_KEY.into(),
        }],
        admin_key_sha256: vec![hash_secret("sk_bench_admin")],
        max_inflight_requests: 100_000,
        ..Config::default()
    };
    config.limits.max_request_bytes = 4 * 1024 * 1024;
    let batch = args.batch.max(1);

    let built = build_bodies(args.seed, args.events, batch, args.postgres_url.is_some());
    let bodies = Arc::new(built.bodies);
    let events: usize = bodies.iter().map(|body| body.events).sum();
    println!(
        "machine: {} cores; {events} events in {} requests of {batch}; {:.0} bytes/event on the wire (batch envelope included), {:.0} bytes/event as compact JSON",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        bodies.len(),
        built.wire_bytes as f64 / events as f64,
        built.event_json_bytes as f64 / events as f64,
    );
    let mut results = Results {
        events,
        ..Results::default()
    };

    let server_config = config.clone();
    let log = crate::runtime()?.block_on(async {
        let server = Server::start(server_config).await?;
        let url = format!("{}/v1/batch", server.url());
        let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;

        // Phase 1: throughput. Every client sends its share as fast as acknowledgements come back.
        let started = Instant::now();
        let latencies: Vec<f64> = send_all(&client, &url, bodies.clone(), args.concurrency, None).await?.into_iter().map(|sent| sent.latency_ms).collect();
        let elapsed = started.elapsed();
        let ingest_rate = events as f64 / elapsed.as_secs_f64();
        let pipeline = server.state.pipeline.clone();
        let end = atrium_log::EventLog::end_offset(&*server.state.log);
        anyhow::ensure!(end as usize == events, "log holds {end} records, expected {events}");
        let applied_at_ack = pipeline.applied_offset();
        tokio::task::spawn_blocking(move || pipeline.wait_applied(end, Duration::from_secs(600))).await?;
        let pipeline_elapsed = started.elapsed();
        let mut sorted = latencies;
        sorted.sort_by(f64::total_cmp);
        results.ingest_rate = ingest_rate;
        results.ack_p50_ms = percentile(&sorted, 0.5);
        results.ack_p99_ms = percentile(&sorted, 0.99);
        results.end_to_end_rate = events as f64 / pipeline_elapsed.as_secs_f64();
        println!(
            "ingest: {ingest_rate:.0} acknowledged events/s ({:.2}s); ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            elapsed.as_secs_f64(),
            results.ack_p50_ms,
            results.ack_p99_ms,
            sorted.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "pipeline: {applied_at_ack} of {events} events applied when the last ack came back; all applied {:.2}s after the first request ({:.0} events/s end to end)",
            pipeline_elapsed.as_secs_f64(),
            results.end_to_end_rate
        );
        // The paced phase measures lags from a caught-up state: the throughput phase's backlog
        // would otherwise be counted as lag (and steal the consumers' CPU).
        let warehouse = server.state.warehouse.clone();
        tokio::task::spawn_blocking(move || warehouse.wait_visible(end, Duration::from_secs(600))).await?;
        let warehouse_elapsed = started.elapsed();
        results.warehouse_rate = events as f64 / warehouse_elapsed.as_secs_f64();
        println!(
            "warehouse: all {events} events queryable {:.2}s after the first request ({:.0} events/s end to end)",
            warehouse_elapsed.as_secs_f64(),
            results.warehouse_rate
        );

        // Phase 2: freshness at a paced offered load.
        if args.paced_rate > 0 {
            let batches_per_second = (args.paced_rate / batch).max(1);
            let wanted = batches_per_second * args.paced_seconds as usize;
            // A new seed: repeated messageIds would be dropped as duplicates.
            let paced_bodies = Arc::new(build_bodies(args.seed + 1, wanted * batch, batch, false).bodies);
            let paced_events: usize = paced_bodies.iter().map(|body| body.events).sum();
            let freshness = &server.state.pipeline.metrics.freshness;
            let before = histogram_buckets(freshness);
            // Client-side freshness: a thread records when each pipeline commit becomes visible
            // (applied offset published after the state transaction committed).
            let watcher = VisibilityWatcher::pipeline(server.state.pipeline.clone());
            let warehouse_watcher = VisibilityWatcher::warehouse(server.state.warehouse.clone());
            let pace = Duration::from_secs_f64(1.0 / batches_per_second as f64);
            let started = Instant::now();
            let sent = send_all(&client, &url, paced_bodies, args.concurrency, Some(pace)).await?;
            // Offered load: events over the sending window only (not the catch-up wait below).
            let offered = paced_events as f64 / started.elapsed().as_secs_f64();
            let end = atrium_log::EventLog::end_offset(&*server.state.log);
            let pipeline = server.state.pipeline.clone();
            tokio::task::spawn_blocking(move || pipeline.wait_applied(end, Duration::from_secs(600))).await?;
            let warehouse = server.state.warehouse.clone();
            tokio::task::spawn_blocking(move || warehouse.wait_visible(end, Duration::from_secs(600))).await?;
            let lags = watcher.stop();
            let lags = lags_ms(&sent, &lags);
            let queryable = lags_ms(&sent, &warehouse_watcher.stop());
            let mut latencies: Vec<f64> = sent.iter().map(|sent| sent.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            let after = histogram_buckets(freshness);
            let window: Vec<(f64, u64)> = after.iter().zip(&before).map(|((bound, now), (_, then))| (*bound, now - then)).collect();
            let paced = Paced {
                offered,
                p50_ms: window_quantile(&window, 0.5),
                p99_ms: window_quantile(&window, 0.99),
                samples: window.iter().map(|(_, count)| count).sum(),
                ack_p99_ms: percentile(&latencies, 0.99),
                visible_p50_ms: percentile(&lags, 0.5),
                visible_p99_ms: percentile(&lags, 0.99),
                visible_max_ms: lags.last().copied().unwrap_or(f64::NAN),
                visible_samples: lags.len(),
                queryable_p50_ms: percentile(&queryable, 0.5),
                queryable_p99_ms: percentile(&queryable, 0.99),
                queryable_max_ms: queryable.last().copied().unwrap_or(f64::NAN),
            };
            println!(
                "freshness at {offered:.0} events/s offered: server histogram (apply time - receivedAt) p50 <= {} ms, p99 <= {} ms ({} samples; bucket upper bounds); ack p50 {:.2} ms, p99 {:.2} ms",
                paced.p50_ms,
                paced.p99_ms,
                paced.samples,
                percentile(&latencies, 0.5),
                paced.ack_p99_ms
            );
            println!(
                "freshness, client side (request sent -> pipeline commit covering it visible): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
                paced.visible_p50_ms, paced.visible_p99_ms, paced.visible_max_ms, paced.visible_samples
            );
            println!(
                "warehouse lag (request sent -> its rows visible to SQL): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                paced.queryable_p50_ms, paced.queryable_p99_ms, paced.queryable_max_ms
            );
            results.paced = Some(paced);
        }
        let rss = resident_memory_mib(None).0;
        let profiles = server.state.store.read(|tables| tables.profile_count())?;
        println!("state: {profiles} profiles; bench process RSS (client and server) {rss:.0} MiB");
        let log = server.state.log.clone();
        server.stop().await;
        anyhow::Ok(log)
    })?;

    // Phase 3: pure pipeline throughput — replay the whole log into a fresh state file.
    if !args.skip_replay {
        let records = atrium_log::EventLog::end_offset(&*log);
        let pipeline_config = atrium_server::state::pipeline_config(&config, data_dir)?;
        let store_path = data_dir.join("replay-bench.redb");
        let bar = crate::progress_bar(records, "replaying the log");
        let started = Instant::now();
        let log_dyn: Arc<dyn atrium_log::EventLog> = log.clone();
        let store = atrium_pipeline::rebuild(
            &store_path,
            log_dyn,
            pipeline_config,
            Arc::new(atrium_types::SystemClock),
            |applied, _| bar.set_position(applied),
        )?;
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let profiles = store.read(|tables| tables.profile_count())?;
        drop(store);
        let _ = std::fs::remove_file(&store_path);
        println!(
            "replay: {records} log records applied into a fresh state file in {seconds:.2}s = {:.0} events/s (one thread, {profiles} profiles)",
            records as f64 / seconds
        );
        results.replay = Some(Replay {
            records,
            seconds,
            profiles,
        });
    }
    drop(log);

    // Phase 4: PostgreSQL baseline with the same events.
    match &args.postgres_url {
        Some(url) => {
            let postgres = postgres_baseline(url, bodies.clone(), args.postgres_writers.max(1))?;
            println!(
                "postgresql: {:.0} events/s ({:.2}s, {} writers, COPY of {batch} JSONB rows per transaction, synchronous_commit=on); COPY latency p50 {:.2} ms, p99 {:.2} ms; {} rows, table {:.0} MiB",
                postgres.rate,
                postgres.seconds,
                args.postgres_writers.max(1),
                postgres.p50_ms,
                postgres.p99_ms,
                postgres.rows,
                postgres.table_bytes as f64 / 1_048_576.0
            );
            results.postgres = Some(postgres);
        }
        None => {
            let message =
                "PostgreSQL baseline skipped: pass --postgres-url or set ATRIUM_BENCH_POSTGRES_URL"
                    .to_owned();
            println!("{message}");
            results.postgres_skipped = Some(message);
        }
    }
    drop(bodies);

    // Phase 5: memory with many profiles, in a separate `atrium serve` process.
    if args.profiles_rss > 0 {
        results.rss = Some(profiles_rss(args, &temporary.join("profiles-rss"))?);
    }
    Ok(results)
}

/// One acknowledged request: when it was sent, its ack latency, and the log end it reported.
struct Sent {
    sent: Instant,
    latency_ms: f64,
    log_end: u64,
}

async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Body>>,
    concurrency: usize,
    pace: Option<Duration>,
) -> anyhow::Result<Vec<Sent>> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let url = url.to_owned();
        let next = next.clone();
        let bodies = bodies.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                if let Some(pace) = pace {
                    let due = started + pace * index as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let log_end = post_batch(&client, &url, body.bytes.clone()).await?;
                latencies.push(Sent {
                    sent,
                    latency_ms: sent.elapsed().as_secs_f64() * 1_000.0,
                    log_end,
                });
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::with_capacity(bodies.len());
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

/// Sends one batch; returns the `x-atrium-log-end` header (one past the last durable offset when
/// the request was acknowledged; at least the end of this request's own events).
async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
) -> anyhow::Result<u64> {
    let response = client
        .post(url)
        .basic_auth(WRITE_KEY, Some(""))
        .header("content-type", "application/json")
        .body(reqwest::Body::from(body))
        .send()
        .await
        .context("sending a batch")?;
    let status = response.status();
    let end = response
        .headers()
        .get("x-atrium-log-end")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(u64::MAX);
    let text = response.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "batch failed: {status} {text}");
    Ok(end)
}

/// Records when each new applied offset of the pipeline is published.
struct VisibilityWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, u64)>>,
}

impl VisibilityWatcher {
    /// Watches a consumer's published offset: `wait(next)` blocks (briefly) until `next` is
    /// covered or a short timeout passes, and returns the offset published now.
    fn start(wait: impl Fn(u64) -> u64 + Send + 'static) -> VisibilityWatcher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut last = wait(0);
            while !flag.load(Ordering::Acquire) {
                let now = wait(last + 1);
                if now > last {
                    seen.push((Instant::now(), now));
                    last = now;
                }
            }
            seen
        });
        VisibilityWatcher { stop, thread }
    }

    fn pipeline(pipeline: Arc<atrium_pipeline::Pipeline>) -> VisibilityWatcher {
        VisibilityWatcher::start(move |next| {
            pipeline.wait_applied(next, Duration::from_millis(20));
            pipeline.applied_offset()
        })
    }

    fn warehouse(warehouse: Arc<atrium_warehouse::Warehouse>) -> VisibilityWatcher {
        VisibilityWatcher::start(move |next| {
            warehouse.wait_visible(next, Duration::from_millis(20));
            warehouse.visible_offset()
        })
    }

    fn stop(self) -> Vec<(Instant, u64)> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

/// (upper bound in ms, count) per bucket of a histogram, read from its Prometheus rendering.
fn histogram_buckets(histogram: &atrium_types::metrics::Histogram) -> Vec<(f64, u64)> {
    let mut text = String::new();
    histogram.render(&mut text, "h", "");
    let mut previous = 0;
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("h_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse::<f64>().ok()? * 1_000.0
            };
            let cumulative: u64 = count.trim().parse().ok()?;
            let count = cumulative - previous;
            previous = cumulative;
            Some((bound, count))
        })
        .collect()
}

fn window_quantile(buckets: &[(f64, u64)], quantile: f64) -> f64 {
    let total: u64 = buckets.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = (quantile * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bound, count) in buckets {
        seen += count;
        if seen >= rank {
            return *bound;
        }
    }
    f64::INFINITY
}

/// The baseline: `writers` connections, each sending whole batches as one `COPY ... FROM STDIN`
/// (text format, one JSONB document per row). A `COPY` outside an explicit transaction block is
/// its own transaction, and with `synchronous_commit = on` it returns only after the WAL is
/// flushed — the same durability contract as Atrium's acknowledgement.
fn postgres_baseline(
    url: &str,
    bodies: Arc<Vec<Body>>,
    writers: usize,
) -> anyhow::Result<PostgresResult> {
    let connect = || -> anyhow::Result<postgres::Client> {
        let mut client = postgres::Client::connect(url, postgres::NoTls)
            .with_context(|| "connecting to PostgreSQL (--postgres-url)".to_owned())?;
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(client)
    };
    let mut admin = connect()?;
    let version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    let fsync: String = admin.query_one("SHOW fsync", &[])?.get(0);
    let wal_sync: String = admin.query_one("SHOW wal_sync_method", &[])?.get(0);
    println!(
        "postgresql {version}: fsync={fsync}, wal_sync_method={wal_sync}, synchronous_commit=on; table {PG_TABLE}(id bigserial, body jsonb)"
    );
    anyhow::ensure!(
        fsync == "on",
        "PostgreSQL runs with fsync={fsync}: the baseline would not be durable"
    );
    admin.batch_execute(&format!(
        "DROP TABLE IF EXISTS {PG_TABLE}; CREATE TABLE {PG_TABLE} (id bigserial, body jsonb)"
    ))?;
    admin.batch_execute("CHECKPOINT").ok(); // needs superuser; harmless if refused

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let mut client = connect()?;
            let next = next.clone();
            let bodies = bodies.clone();
            Ok(std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut latencies = Vec::new();
                let statement = format!("COPY {PG_TABLE} (body) FROM STDIN");
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(index) else { break };
                    let rows = body
                        .copy_rows
                        .as_ref()
                        .expect("COPY rows are built when a PostgreSQL URL is given");
                    let sent = Instant::now();
                    let mut writer = client.copy_in(statement.as_str())?;
                    writer.write_all(rows)?;
                    let copied = writer.finish()?;
                    anyhow::ensure!(
                        copied as usize == body.events,
                        "COPY stored {copied} rows, expected {}",
                        body.events
                    );
                    latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
                }
                Ok(latencies)
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut latencies = Vec::with_capacity(bodies.len());
    for thread in threads {
        latencies.extend(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a PostgreSQL writer panicked"))??,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let events: usize = bodies.iter().map(|body| body.events).sum();
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {PG_TABLE}"), &[])?
        .get(0);
    anyhow::ensure!(
        rows as usize == events,
        "PostgreSQL holds {rows} rows, expected {events}"
    );
    let table_bytes: i64 = admin
        .query_one(&format!("SELECT pg_total_relation_size('{PG_TABLE}')"), &[])?
        .get(0);
    admin.batch_execute(&format!("DROP TABLE {PG_TABLE}"))?;
    Ok(PostgresResult {
        rate: events as f64 / seconds,
        seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        rows,
        table_bytes,
        version,
    })
}

/// A small identify event with a distinct user: one profile per event.
fn identify_event(seed: u64, n: usize) -> Value {
    serde_json::json!({
        "type": "identify",
        "messageId": format!("rss-{seed}-{n}"),
        "userId": format!("rss-user-{n:07}"),
        "anonymousId": format!("rss-anon-{seed}-{n:07}"),
        "timestamp": "2026-01-01T12:00:00.000Z",
        "traits": {
            "email": format!("user{n:07}@example.com"),
            "firstName": "Ada",
            "lastName": "Lovelace",
            "plan": if n.is_multiple_of(3) { "pro" } else { "free" },
            "city": "Lyon",
        },
        "context": {"library": {"name": "atrium-bench", "version": "1"}},
    })
}

/// Starts `atrium serve` (this executable) on a fresh data directory, loads `profiles_rss`
/// profiles through the HTTP API, waits for the pipeline, and reads the child's RSS from /proc.
fn profiles_rss(args: &IngestBenchArgs, dir: &std::path::Path) -> anyhow::Result<RssResult> {
    let total = args.profiles_rss;
    let batch = args.batch.max(1);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut child = ChildServer::start(dir)?;
    let pid = child.pid();
    let base = child.base.clone();
    println!("profiles-rss: loading {total} profiles into `atrium serve` (pid {pid}) at {base}");
    let runtime = crate::runtime()?;
    let started = Instant::now();
    let (load_seconds, profiles) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?;
        let url = format!("{base}/v1/batch");
        let next = Arc::new(AtomicUsize::new(0));
        let batches = total.div_ceil(batch);
        let bar = crate::progress_bar(total as u64, "profiles-rss: acknowledged");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency.clamp(1, 16) {
            let (client, url, next, bar) = (client.clone(), url.clone(), next.clone(), bar.clone());
            let seed = args.seed;
            tasks.spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= batches {
                        break;
                    }
                    let range = index * batch..((index + 1) * batch).min(total);
                    let count = range.len();
                    let events: Vec<Value> = range.map(|n| identify_event(seed, n)).collect();
                    let body = serde_json::to_vec(&serde_json::json!({ "batch": events }))?;
                    post_batch(&client, &url, body.into()).await?;
                    bar.inc(count as u64);
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        bar.finish_and_clear();
        println!(
            "profiles-rss: {total} events acknowledged in {:.1}s; waiting for the pipeline",
            started.elapsed().as_secs_f64()
        );
        let mut last_print = Instant::now();
        loop {
            let metrics = client
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await?;
            let applied =
                metric(&metrics, "atrium_pipeline_applied_offset").unwrap_or(0.0) as usize;
            if applied >= total {
                let profiles = metric(&metrics, "atrium_profiles").unwrap_or(f64::NAN) as u64;
                break anyhow::Ok((started.elapsed().as_secs_f64(), profiles));
            }
            if last_print.elapsed() > Duration::from_secs(10) {
                println!(
                    "profiles-rss: pipeline applied {applied}/{total} ({:.0}s)",
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?;
    let (rss_mib, hwm_mib) = resident_memory_mib(Some(pid));
    println!(
        "profiles-rss: {profiles} profiles after {load_seconds:.1}s; server RSS {rss_mib:.0} MiB (peak {hwm_mib:.0} MiB)"
    );
    child.stop();
    // A restart: what the server needs to hold the same state after recovery.
    let restart_rss_mib = match ChildServer::start(dir) {
        Ok(mut restarted) => {
            std::thread::sleep(Duration::from_secs(2));
            let (rss, _) = resident_memory_mib(Some(restarted.pid()));
            restarted.stop();
            println!("profiles-rss: after a restart on the same data: RSS {rss:.0} MiB");
            Some(rss)
        }
        Err(error) => {
            println!("profiles-rss: restart failed: {error:#}");
            None
        }
    };
    let state_mib = dir_size(&dir.join("state.redb")) as f64 / 1_048_576.0;
    let log_mib = dir_size(&dir.join("log")) as f64 / 1_048_576.0;
    let disk_mib = dir_size(dir) as f64 / 1_048_576.0;
    println!(
        "profiles-rss: on disk {disk_mib:.0} MiB (state.redb {state_mib:.0} MiB, log {log_mib:.0} MiB)"
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(RssResult {
        profiles,
        events: total,
        load_seconds,
        rss_mib,
        hwm_mib,
        restart_rss_mib,
        disk_mib,
        state_mib,
        log_mib,
    })
}

/// `atrium serve` as a child process on loopback, stopped with SIGTERM.
struct ChildServer {
    child: std::process::Child,
    base: String,
}

impl ChildServer {
    fn start(dir: &std::path::Path) -> anyhow::Result<ChildServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .env_remove("ATRIUM_CONFIG")
            .env("ATRIUM_DATA_DIR", dir)
            .env("ATRIUM_LISTEN", &listen)
            .env("ATRIUM_BOOTSTRAP_WRITE_KEY", WRITE_KEY)
            .env("ATRIUM_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting `atrium serve`")?;
        let mut server = ChildServer {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("`atrium serve` exited early: {status}");
            }
            if std::net::TcpStream::connect(&listen).is_ok() {
                return Ok(server);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "`atrium serve` did not listen within 120s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of an unlabelled metric in Prometheus text format.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|entry| dir_size(&entry.path())).sum())
        .unwrap_or(0)
}

/// (VmRSS, VmHWM) in MiB of this process or of `pid`.
fn resident_memory_mib(pid: Option<u32>) -> (f64, f64) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn print_summary(args: &IngestBenchArgs, results: &Results) {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let thousands = |value: f64| format_thousands(value);
    rows.push([
        format!(
            "Durable acknowledged events/s ({} events, batches of {}, {} clients)",
            results.events, args.batch, args.concurrency
        ),
        thousands(results.ingest_rate),
        "≥ 200,000".into(),
        format!("{:.2}×", results.ingest_rate / 200_000.0),
        verdict(results.ingest_rate >= 200_000.0).into(),
    ]);
    rows.push([
        "Ack latency p50 / p99 (saturated)".into(),
        format!("{:.1} / {:.1} ms", results.ack_p50_ms, results.ack_p99_ms),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    if let Some(postgres) = &results.postgres {
        let ratio = results.ingest_rate / postgres.rate;
        rows.push([
            format!(
                "PostgreSQL {} COPY JSONB, {} writers, synchronous_commit=on",
                postgres.version, args.postgres_writers
            ),
            thousands(postgres.rate),
            format!(
                "COPY p50 / p99 {:.1} / {:.1} ms",
                postgres.p50_ms, postgres.p99_ms
            ),
            "—".into(),
            "baseline".into(),
        ]);
        rows.push([
            "Atrium acked ÷ PostgreSQL".into(),
            format!("{ratio:.2}×"),
            "≥ 3×".into(),
            format!("{:.2}×", ratio / 3.0),
            verdict(ratio >= 3.0).into(),
        ]);
    } else {
        rows.push([
            "PostgreSQL baseline".into(),
            "skipped".into(),
            results.postgres_skipped.clone().unwrap_or_default(),
            "—".into(),
            "—".into(),
        ]);
    }
    rows.push([
        "Pipeline, end to end (first request → last profile updated), events/s".into(),
        thousands(results.end_to_end_rate),
        "≥ 100,000".into(),
        format!("{:.2}×", results.end_to_end_rate / 100_000.0),
        verdict(results.end_to_end_rate >= 100_000.0).into(),
    ]);
    rows.push([
        "Warehouse, end to end (first request → last row queryable), events/s".into(),
        thousands(results.warehouse_rate),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    if let Some(replay) = &results.replay {
        let rate = replay.records as f64 / replay.seconds;
        rows.push([
            format!(
                "Pipeline alone: full replay of {} records ({} profiles), events/s",
                replay.records, replay.profiles
            ),
            thousands(rate),
            "≥ 100,000".into(),
            format!("{:.2}×", rate / 100_000.0),
            verdict(rate >= 100_000.0).into(),
        ]);
    }
    if let Some(paced) = &results.paced {
        rows.push([
            format!("Profile freshness p99 at {} events/s offered", thousands(paced.offered)),
            format!("{:.1} ms measured by the client (p50 {:.1}, max {:.1}); server histogram p99 ≤ {} ms", paced.visible_p99_ms, paced.visible_p50_ms, paced.visible_max_ms, paced.p99_ms),
            "< 100 ms".into(),
            "—".into(),
            verdict(paced.visible_p99_ms < 100.0).into(),
        ]);
        rows.push([
            format!(
                "Event-to-queryable lag p99 at {} events/s offered",
                thousands(paced.offered)
            ),
            format!(
                "{:.1} ms measured by the client (p50 {:.1}, max {:.1})",
                paced.queryable_p99_ms, paced.queryable_p50_ms, paced.queryable_max_ms
            ),
            "< 5 s".into(),
            "—".into(),
            verdict(paced.queryable_p99_ms < 5_000.0).into(),
        ]);
    }
    if let Some(rss) = &results.rss {
        rows.push([
            format!(
                "Server RSS holding {} profiles ({} events)",
                thousands(rss.profiles as f64),
                thousands(rss.events as f64)
            ),
            format!(
                "{:.0} MiB (peak {:.0}, after restart {})",
                rss.rss_mib,
                rss.hwm_mib,
                rss.restart_rss_mib
                    .map_or("n/a".into(), |mib| format!("{mib:.0}"))
            ),
            "< 2,048 MiB".into(),
            format!("{:.2}×", rss.hwm_mib.max(rss.rss_mib) / 2048.0),
            verdict(rss.hwm_mib.max(rss.rss_mib) < 2048.0).into(),
        ]);
        rows.push([
            "  disk for those profiles (state.redb + log)".into(),
            format!(
                "{:.0} MiB ({:.0} + {:.0})",
                rss.disk_mib, rss.state_mib, rss.log_mib
            ),
            format!("loaded in {:.0}s", rss.load_seconds),
            "—".into(),
            "—".into(),
        ]);
    }
    println!();
    println!("| Metric | Atrium | Reference / target | Ratio | Target |");
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    let _ = std::io::stdout().flush();
}

fn format_thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", value.round());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("atrium-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A pipeline over `log` with its store at `<dir>/state.redb` and the server's default
/// configuration (identity rules, salt under `dir`), as `atrium serve` would open it.
pub fn pipeline_in(
    log: Arc<atrium_log::SegmentedLog>,
    dir: &std::path::Path,
) -> anyhow::Result<Arc<atrium_pipeline::Pipeline>> {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let pipeline_config = atrium_server::state::pipeline_config(&config, dir)?;
    let store = Arc::new(atrium_store::Store::open(dir.join("state.redb"))?);
    Ok(Arc::new(atrium_pipeline::Pipeline::new(
        log,
        store,
        pipeline_config,
        Arc::new(atrium_types::SystemClock),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_escaping_protects_the_text_format_specials() {
        let mut out = Vec::new();
        copy_text_escape(
            &mut out,
            br#"{"a":"x\"y\\z","b":"t	n
r"}"#,
        );
        assert_eq!(
            out,
            b"{\"a\":\"x\\\\\"y\\\\\\\\z\",\"b\":\"t\\tn\\nr\"}".to_vec()
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(format_thousands(1_234_567.4), "1,234,567");
        assert_eq!(format_thousands(999.0), "999");
    }

    #[test]
    fn windowed_histogram_quantiles() {
        let histogram = atrium_types::metrics::Histogram::default();
        histogram.observe_ms(5_000.0);
        let before = histogram_buckets(&histogram);
        for _ in 0..99 {
            histogram.observe_ms(3.0);
        }
        histogram.observe_ms(40.0);
        let after = histogram_buckets(&histogram);
        let window: Vec<(f64, u64)> = after
            .iter()
            .zip(&before)
            .map(|((bound, now), (_, then))| (*bound, now - then))
            .collect();
        assert_eq!(window.iter().map(|(_, count)| count).sum::<u64>(), 100);
        assert_eq!(window_quantile(&window, 0.5), 5.0);
        assert_eq!(window_quantile(&window, 0.99), 5.0);
        assert_eq!(window_quantile(&window, 1.0), 50.0);
    }

    #[test]
    fn reads_an_unlabelled_metric() {
        let text = "# HELP x\natrium_profiles_total 3\natrium_profiles 12\n";
        assert_eq!(metric(text, "atrium_profiles"), Some(12.0));
    }
}
