//! `atrium bench ingest`: durable acknowledged events/s, ack latency, pipeline throughput and
//! freshness, measured end to end through the real HTTP API on loopback.

use std::sync::Arc;
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
    /// Data directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

const WRITE_KEY: &str = "wk_bench_000000";

/// Pre-serialized request bodies, so the client spends as little CPU as possible.
fn build_bodies(seed: u64, events: usize, batch: usize) -> (Vec<bytes_body::Body>, usize) {
    let bar = crate::progress_bar(events as u64, "generating events");
    let mut bodies = Vec::with_capacity(events / batch + 1);
    let mut current: Vec<Value> = Vec::with_capacity(batch);
    let mut total_bytes = 0;
    for mut event in atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events)) {
        atrium_gen::take_source(&mut event);
        current.push(event);
        if current.len() == batch {
            let body = serde_json::to_vec(&serde_json::json!({"batch": std::mem::take(&mut current)})).expect("serializes");
            total_bytes += body.len();
            bodies.push(bytes_body::Body { bytes: body.into(), events: batch });
            bar.inc(batch as u64);
        }
    }
    if !current.is_empty() {
        let count = current.len();
        let body = serde_json::to_vec(&serde_json::json!({"batch": current})).expect("serializes");
        total_bytes += body.len();
        bodies.push(bytes_body::Body { bytes: body.into(), events: count });
    }
    bar.finish_and_clear();
    (bodies, total_bytes)
}

mod bytes_body {
    #[derive(Clone)]
    pub struct Body {
        pub bytes: bytes::Bytes,
        pub events: usize,
    }
    impl Body {
        pub fn to_request_body(&self) -> reqwest::Body {
            reqwest::Body::from(self.bytes.clone())
        }
    }
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn run_ingest(args: IngestBenchArgs) -> anyhow::Result<()> {
    let temporary = tempfile_dir()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temporary.clone());
    let mut config = Config::default();
    config.data_dir = data_dir.clone();
    config.listen = "127.0.0.1:0".parse()?;
    config.sources = vec![SourceEntry { name: "bench".into(), channel: Channel::Server, write_key: WRITE_KEY.into() }];
    config.admin_key_sha256 = vec![hash_secret("sk_bench_admin")];
    config.max_inflight_requests = 100_000;
    config.limits.max_request_bytes = 4 * 1024 * 1024;

    let (bodies, total_bytes) = build_bodies(args.seed, args.events, args.batch.max(1));
    let events: usize = bodies.iter().map(|body| body.events).sum();
    println!("machine: {} cores; {events} events in {} requests of {}, {:.0} bytes/event on the wire", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), bodies.len(), args.batch, total_bytes as f64 / events as f64);

    let result = crate::runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        let url = format!("{}/v1/batch", server.url());
        let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;

        // Phase 1: throughput. Every client sends its share as fast as acknowledgements come back.
        let started = Instant::now();
        let latencies = send_all(&client, &url, &bodies, args.concurrency, None).await?;
        let elapsed = started.elapsed();
        let ingest_rate = events as f64 / elapsed.as_secs_f64();
        let pipeline = server.state.pipeline.clone();
        let end = atrium_log::EventLog::end_offset(&*server.state.log);
        anyhow::ensure!(end as usize == events, "log holds {end} records, expected {events}");
        let caught_up = tokio::task::spawn_blocking(move || {
            pipeline.wait_applied(end, Duration::from_secs(600));
        });
        caught_up.await?;
        let pipeline_elapsed = started.elapsed();
        let mut sorted = latencies;
        sorted.sort_by(f64::total_cmp);
        println!("ingest: {ingest_rate:.0} acknowledged events/s ({:.2}s); ack latency p50 {:.2} ms, p99 {:.2} ms", elapsed.as_secs_f64(), percentile(&sorted, 0.5), percentile(&sorted, 0.99));
        println!("pipeline: all {events} events applied to profiles {:.2}s after the first request ({:.0} events/s end to end)", pipeline_elapsed.as_secs_f64(), events as f64 / pipeline_elapsed.as_secs_f64());

        // Phase 2: freshness at a paced offered load.
        if args.paced_rate > 0 {
            let batches_per_second = (args.paced_rate / args.batch.max(1)).max(1);
            let wanted = batches_per_second * args.paced_seconds as usize;
            // A new seed: repeated messageIds would be dropped as duplicates.
            let (paced_bodies, _) = build_bodies(args.seed + 1, wanted * args.batch, args.batch);
            let before = server.state.pipeline.metrics.freshness.count();
            let pace = Duration::from_secs_f64(1.0 / batches_per_second as f64);
            let started = Instant::now();
            send_all(&client, &url, &paced_bodies, args.concurrency, Some(pace)).await?;
            let end = atrium_log::EventLog::end_offset(&*server.state.log);
            let pipeline = server.state.pipeline.clone();
            tokio::task::spawn_blocking(move || pipeline.wait_applied(end, Duration::from_secs(600))).await?;
            let offered = (paced_bodies.len() * args.batch) as f64 / started.elapsed().as_secs_f64();
            let freshness = &server.state.pipeline.metrics.freshness;
            println!(
                "freshness at {offered:.0} events/s offered: p50 <= {} ms, p99 <= {} ms ({} samples, bucket upper bounds, receivedAt has ms resolution)",
                freshness.quantile_ms(0.5).unwrap_or(f64::NAN),
                freshness.quantile_ms(0.99).unwrap_or(f64::NAN),
                freshness.count() - before
            );
        }
        let rss = resident_memory_mib();
        let profiles = server.state.store.read(|tables| tables.profile_count())?;
        println!("state: {profiles} profiles; process RSS {rss:.0} MiB");
        server.stop().await;
        anyhow::Ok(())
    });
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    result
}

async fn send_all(client: &reqwest::Client, url: &str, bodies: &[bytes_body::Body], concurrency: usize, pace: Option<Duration>) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies.to_vec());
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
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(index) else { break };
                if let Some(pace) = pace {
                    let due = started + pace * index as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .basic_auth(WRITE_KEY, Some(""))
                    .header("content-type", "application/json")
                    .body(body.to_request_body())
                    .send()
                    .await
                    .context("sending a batch")?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                anyhow::ensure!(status.is_success(), "batch failed: {status} {text}");
                latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
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

fn resident_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("atrium-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
