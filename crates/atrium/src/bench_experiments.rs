//! `atrium bench eval` and `atrium bench results`.
//!
//! `eval`: a realistic GrowthBook payload (50 features, 20 of them running an experiment,
//! conditions on 10 attributes) evaluated in-process for many users, every feature per user, on
//! one thread; in the same run GrowthBook's Python SDK evaluates the same payload for the same
//! users (`tests/growthbook/bench_eval.py`, when its venv exists) and both agree value for value
//! on a sample of users. Then `/api/features` latency at a fixed request rate on loopback, next to
//! `/healthz` at the same rate as the reference.
//!
//! `results`: an experiment's events (exposures, orders, and browsing filler to the requested
//! size) written to a fresh data directory's log, materialized by the warehouse, then the results
//! computation timed next to a plain scan of the same table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use atrium_experiments::{CompiledPayload, Context as EvalContext, Payload, eval_feature};
use clap::Args;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

const COUNTRIES: [&str; 8] = ["US", "GB", "FR", "DE", "ES", "IT", "BR", "JP"];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const BROWSERS: [&str; 4] = ["chrome", "safari", "firefox", "edge"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const LANGUAGES: [&str; 5] = ["en", "fr", "de", "es", "pt"];

#[derive(Args)]
pub struct EvalBenchArgs {
    /// Users to evaluate (every feature for each).
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Python with the `growthbook` package (default: crates/atrium/tests/growthbook/.venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the GrowthBook Python SDK reference.
    #[arg(long)]
    no_python: bool,
    /// `/api/features` requests per second for the latency run (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Seconds of the latency run, per route.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// One condition on one of the ten attributes.
fn condition(rng: &mut ChaCha8Rng) -> Value {
    match rng.gen_range(0..10) {
        0 => json!({"country": {"$in": COUNTRIES.choose_multiple(rng, 3).collect::<Vec<_>>()}}),
        1 => json!({"plan": PLANS.choose(rng)}),
        2 => json!({"age": {"$gte": rng.gen_range(18..60)}}),
        3 => json!({"browser": {"$ne": BROWSERS.choose(rng)}}),
        4 => json!({"device": DEVICES.choose(rng)}),
        5 => json!({"appVersion": {"$vgte": format!("1.{}.0", rng.gen_range(0..8))}}),
        6 => json!({"loggedIn": true}),
        7 => json!({"orders": {"$gt": rng.gen_range(0..10)}}),
        8 => json!({"language": {"$nin": LANGUAGES.choose_multiple(rng, 2).collect::<Vec<_>>()}}),
        _ => json!({"company": {"$exists": true}}),
    }
}

fn combined_condition(rng: &mut ChaCha8Rng) -> Value {
    let parts: Vec<Value> = (0..rng.gen_range(1..=3)).map(|_| condition(rng)).collect();
    if parts.len() > 1 && rng.gen_bool(0.3) {
        json!({"$or": parts})
    } else {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(map) = part {
                merged.extend(map);
            }
        }
        Value::Object(merged)
    }
}

/// 50 features: 30 with targeted force rules, 20 running an experiment (after an optional
/// targeted force rule).
pub fn bench_features(seed: u64) -> BTreeMap<String, Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut features = BTreeMap::new();
    for index in 0..30 {
        let rules: Vec<Value> = (0..rng.gen_range(1..=3))
            .map(|rule| json!({"condition": combined_condition(&mut rng), "force": rule + 1}))
            .collect();
        features.insert(
            format!("flag-{index:02}"),
            json!({"defaultValue": 0, "rules": rules}),
        );
    }
    for index in 0..20 {
        let mut rules = Vec::new();
        if rng.gen_bool(0.3) {
            rules.push(json!({"condition": condition(&mut rng), "force": "forced"}));
        }
        let arms = rng.gen_range(2..=3);
        let variations: Vec<Value> = (0..arms).map(|arm| json!(format!("v{arm}"))).collect();
        let weights: Vec<f64> = vec![1.0 / arms as f64; arms];
        let coverage = [1.0, 0.9, 0.8][rng.gen_range(0..3)];
        rules.push(json!({
            "key": format!("exp-{index:02}"),
            "condition": condition(&mut rng),
            "coverage": coverage,
            "variations": variations,
            "weights": weights,
            "hashAttribute": "id",
            "hashVersion": 2,
            "meta": (0..arms).map(|arm| json!({"key": arm.to_string()})).collect::<Vec<_>>(),
        }));
        features.insert(
            format!("experiment-{index:02}"),
            json!({"defaultValue": "v0", "rules": rules}),
        );
    }
    features
}

pub fn bench_users(seed: u64, count: usize) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    (0..count)
        .map(|index| {
            let mut user = json!({
                "id": format!("user-{index}"),
                "country": COUNTRIES.choose(&mut rng),
                "plan": PLANS.choose(&mut rng),
                "age": rng.gen_range(16..80),
                "browser": BROWSERS.choose(&mut rng),
                "device": DEVICES.choose(&mut rng),
                "appVersion": format!("1.{}.{}", rng.gen_range(0..10), rng.gen_range(0..20)),
                "loggedIn": rng.gen_bool(0.6),
                "orders": rng.gen_range(0..30),
                "language": LANGUAGES.choose(&mut rng),
            });
            if rng.gen_bool(0.2) {
                user["company"] = json!("Acme");
            }
            user
        })
        .collect()
}

/// Users whose values the two implementations must agree on.
const AGREEMENT_USERS: usize = 500;

fn default_python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/growthbook/.venv/bin/python")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/growthbook/bench_eval.py")
}

pub fn run_eval(args: EvalBenchArgs) -> anyhow::Result<()> {
    let features = bench_features(args.seed);
    let users = bench_users(args.seed, args.users);
    let payload: Payload = serde_json::from_value(json!({"features": features}))
        .context("the bench payload parses")?;
    let payload = Arc::new(CompiledPayload::new(Arc::new(payload)));
    let keys: Vec<String> = payload.payload().features.keys().cloned().collect();

    // Warm up (and keep the values Python must match), then timed passes over every user, one
    // thread, a fresh context per user, every feature evaluated, and the recorded exposures
    // taken from the context as a server does to log them.
    let mut sample_values: Vec<Vec<Value>> = Vec::with_capacity(AGREEMENT_USERS);
    for user in users.iter().take(AGREEMENT_USERS) {
        let mut context = EvalContext::with_compiled(payload.clone(), user.clone());
        let owned: Vec<Value> = keys
            .iter()
            .map(|key| eval_feature(&mut context, key).value)
            .collect();
        let mut context = EvalContext::with_compiled(payload.clone(), user.clone());
        for (key, value) in keys.iter().zip(&owned) {
            anyhow::ensure!(
                *payload.evaluate(&mut context, key).value == *value,
                "CompiledPayload::evaluate and eval_feature disagree on {key}"
            );
        }
        sample_values.push(owned);
    }
    let evaluations = (users.len() * keys.len()) as f64;

    // `eval_feature`: owned results (`FeatureResult`, the experiment copied into each) and owned
    // exposures (`take_tracking_calls`).
    // The attribute objects are handed to the contexts (as a server hands over a request's
    // attributes), so the copies for that are made before the clock starts.
    let timed_users = users.clone();
    let started = Instant::now();
    let mut in_experiment = 0usize;
    let mut exposures = 0usize;
    for user in timed_users {
        let mut context = EvalContext::with_compiled(payload.clone(), user);
        for key in &keys {
            let result = eval_feature(&mut context, key);
            in_experiment += usize::from(result.experiment_result.is_some());
        }
        exposures += context.take_tracking_calls().len();
    }
    let owned_seconds = started.elapsed().as_secs_f64();
    let owned_rate = evaluations / owned_seconds;

    // `CompiledPayload::evaluate`: the same evaluation, results sharing the payload's values and
    // experiments (`Evaluation`), exposures taken as `Exposure`s (experiment shared, not copied).
    let timed_users = users.clone();
    let started = Instant::now();
    let mut shared_in_experiment = 0usize;
    let mut shared_exposures = 0usize;
    for user in timed_users {
        let mut context = EvalContext::with_compiled(payload.clone(), user);
        for key in &keys {
            let result = payload.evaluate(&mut context, key);
            shared_in_experiment += usize::from(result.experiment_result.is_some());
        }
        shared_exposures += context.take_exposures().len();
    }
    let rust_seconds = started.elapsed().as_secs_f64();
    let rust_rate = evaluations / rust_seconds;
    anyhow::ensure!(
        (shared_in_experiment, shared_exposures) == (in_experiment, exposures),
        "the two evaluation APIs disagree on experiment results or exposures"
    );
    println!(
        "payload: {} features ({} with an experiment), conditions on 10 attributes; {} users",
        keys.len(),
        keys.iter()
            .filter(|key| key.starts_with("experiment-"))
            .count(),
        users.len()
    );
    println!(
        "atrium eval_feature (owned results, 1 thread):  {owned_rate:>12.0} evaluations/s  ({owned_seconds:.2} s, {in_experiment} experiment results, {exposures} exposures)"
    );
    println!(
        "atrium evaluate (shared results, 1 thread):     {rust_rate:>12.0} evaluations/s  ({rust_seconds:.2} s)"
    );

    if !args.no_python {
        let python = args.python.clone().unwrap_or_else(default_python);
        if python.exists() {
            let dir = tempfile::tempdir()?;
            let payload_path = dir.path().join("features.json");
            let users_path = dir.path().join("users.json");
            std::fs::write(&payload_path, serde_json::to_vec(&features)?)?;
            std::fs::write(&users_path, serde_json::to_vec(&users)?)?;
            let output = Command::new(&python)
                .arg(script())
                .arg(&payload_path)
                .arg(&users_path)
                .arg(AGREEMENT_USERS.to_string())
                .output()
                .with_context(|| format!("running {}", python.display()))?;
            anyhow::ensure!(
                output.status.success(),
                "the GrowthBook reference failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let reference: Value = serde_json::from_slice(&output.stdout)
                .context("the GrowthBook reference prints JSON")?;
            let python_rate = reference["evaluations_per_second"].as_f64().unwrap_or(0.0);
            let sample = reference["sample"].as_array().cloned().unwrap_or_default();
            let agreeing = sample
                .iter()
                .zip(&sample_values)
                .filter(|(theirs, ours)| theirs.as_array() == Some(ours))
                .count();
            println!(
                "growthbook {} (Python, 1 thread):              {python_rate:>12.0} evaluations/s  ({:.2} s)",
                reference["version"].as_str().unwrap_or("?"),
                reference["seconds"].as_f64().unwrap_or(0.0)
            );
            println!(
                "ratio atrium / growthbook-python: evaluate {:.1}x, eval_feature {:.1}x; identical values for {agreeing}/{} sampled users",
                rust_rate / python_rate,
                owned_rate / python_rate,
                sample.len()
            );
        } else {
            println!(
                "growthbook (Python): skipped, no venv at {} (python3 -m venv ... && pip install growthbook)",
                python.display()
            );
        }
    }

    if args.rate > 0 {
        crate::runtime()?.block_on(http_latency(&features, args.rate, args.seconds))?;
    }
    Ok(())
}

const BENCH_ADMIN_KEY: &str = "sk_bench_admin_key";
const BENCH_CLIENT_KEY: &str = "sdk_bench_client";

/// Sends `rate` requests per second (open loop) for `seconds`; returns sorted latencies in ms.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate as u64 * seconds;
    for _ in 0..total {
        ticker.tick().await;
        let client = client.clone();
        let url = url.to_owned();
        tasks.spawn(async move {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            let status = response.status();
            response.bytes().await?;
            anyhow::ensure!(status.is_success(), "{url}: {status}");
            Ok::<f64, anyhow::Error>(started.elapsed().as_secs_f64() * 1_000.0)
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn http_latency(
    features: &BTreeMap<String, Value>,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = atrium_server::Config::load(None)?;
    config.data_dir = dir.path().to_path_buf();
    config.listen = "127.0.0.1:0".parse()?;
    config.admin_key_sha256 = vec![atrium_server::hash_secret(BENCH_ADMIN_KEY)];
    config.sdk_connections = vec![atrium_server::SdkConnection {
        name: "bench".into(),
        client_key: BENCH_CLIENT_KEY.into(),
        encryption_key: None,
    }];
    let server = atrium_server::Server::start(config).await?;
    let base = server.url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut last_offset = 0;
    for (key, body) in features {
        let response = client
            .put(format!("{base}/v1/features/{key}"))
            .bearer_auth(BENCH_ADMIN_KEY)
            .json(body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "defining {key}: {}",
            response.status()
        );
        let written: Value = response.json().await?;
        last_offset = written["min_offset"].as_u64().unwrap_or(last_offset);
    }
    let pipeline = server.state.pipeline.clone();
    tokio::task::spawn_blocking(move || {
        pipeline.wait_applied(last_offset, Duration::from_secs(30))
    })
    .await?;
    let features_url = format!("{base}/api/features/{BENCH_CLIENT_KEY}");
    let body = client.get(&features_url).send().await?.bytes().await?;
    println!(
        "http: open loop at {rate} requests/s for {seconds} s per route, client and server on the same 2 cores ({} byte payload)",
        body.len()
    );
    for (name, url) in [
        ("/healthz (reference)", format!("{base}/healthz")),
        ("/api/features", features_url),
    ] {
        let latencies = open_loop(&client, &url, rate, seconds).await?;
        println!(
            "  {name:<22} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            latencies.len()
        );
    }
    server.stop().await;
    Ok(())
}

#[derive(Args)]
pub struct ResultsBenchArgs {
    /// Total events to generate (exposures, orders, and browsing filler).
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Exposed users (the rest of the events are browsing by the same users).
    #[arg(long, default_value_t = 200_000)]
    users: usize,
    /// Timed runs of each query (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep the data directory here instead of a temporary one (reused when it has data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Normalizes `batch` as collection would (source `web`) and appends it to the log.
fn append_normalized(log: &atrium_log::SegmentedLog, batch: &[Value]) -> anyhow::Result<()> {
    use atrium_log::EventLog;

    let normalized = atrium_collect::normalize_events(
        &atrium_gen::harness::source_config("web"),
        atrium_types::Clock::now_ms(&atrium_types::SystemClock),
        None,
        batch,
    )?;
    let payloads: Vec<Vec<u8>> = normalized
        .accepted
        .into_iter()
        .map(|event| event.payload)
        .collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    log.append(&slices)?;
    Ok(())
}

pub fn run_results(args: ResultsBenchArgs) -> anyhow::Result<()> {
    use atrium_log::EventLog;

    let temporary = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let mut log_config = atrium_log::LogConfig::new(dir.join("log"));
    log_config.sync = false;
    let log = Arc::new(atrium_log::SegmentedLog::open(log_config)?);
    let planted = atrium_gen::PlantedExperiment::ab(args.seed, "bench-exp", args.users, 0.1);
    if log.end_offset() == 0 {
        let started = Instant::now();
        let experiment_events = planted.events();
        let filler = args.events.saturating_sub(experiment_events.len());
        let bar = crate::progress_bar(args.events as u64, "writing events to the log");
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let start_ms = planted.start.timestamp_millis();
        let mut batch: Vec<Value> = Vec::with_capacity(1_000);
        let flush = |batch: &mut Vec<Value>| -> anyhow::Result<()> {
            append_normalized(&log, batch)?;
            bar.inc(batch.len() as u64);
            batch.clear();
            Ok(())
        };
        for event in experiment_events {
            let mut event = event;
            atrium_gen::take_source(&mut event);
            batch.push(event);
            if batch.len() == 1_000 {
                flush(&mut batch)?;
            }
        }
        for _ in 0..filler {
            let user = rng.gen_range(0..args.users.max(1));
            let at = start_ms + rng.gen_range(-14 * 86_400_000i64..30 * 86_400_000);
            batch.push(json!({
                "type": "track",
                "userId": format!("bench-exp-user-{user}"),
                "event": "Product Viewed",
                "timestamp": atrium_types::format_timestamp_ms(at),
                "properties": {"product_id": format!("p-{}", rng.gen_range(0..5_000)), "price": rng.gen_range(5..200)},
            }));
            if batch.len() == 1_000 {
                flush(&mut batch)?;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch)?;
        }
        bar.finish();
        println!(
            "wrote {} events in {:.1} s",
            log.end_offset(),
            started.elapsed().as_secs_f64()
        );
    }
    // The identity graph comes from the real pipeline, as in a server: results resolve every
    // row's user to its profile through it.
    let pipeline = crate::bench::pipeline_in(log.clone(), &dir)?;
    let started = Instant::now();
    let bar = crate::progress_bar(log.end_offset(), "identity graph (pipeline)");
    while pipeline.applied_offset() < log.end_offset() {
        pipeline.step()?;
        bar.set_position(pipeline.applied_offset());
    }
    bar.finish_and_clear();
    let graph_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let warehouse = atrium_warehouse::Warehouse::open(
        dir.join("warehouse"),
        log.clone(),
        Some(pipeline.store().clone()),
        atrium_warehouse::ErasureKeys::new(pipeline.rules().clone(), pipeline.hasher().clone()),
        atrium_warehouse::WarehouseConfig::default(),
    )?;
    // As `atrium serve` does: the graph snapshot is read in the background from the start.
    warehouse.warm_graph();
    warehouse.catch_up()?;
    warehouse.flush()?;
    let compacted = warehouse.compact()?;
    println!(
        "identity graph applied in {graph_seconds:.1} s; warehouse materialized in {:.1} s ({compacted} files compacted)",
        started.elapsed().as_secs_f64()
    );

    let metrics: BTreeMap<String, atrium_results::MetricDefinition> = [
        ("purchase", json!({"type": "conversion", "event": "Order Completed"})),
        ("revenue", json!({"type": "sum", "event": "Order Completed", "value": "revenue", "covariate": {"lookback_days": 14}})),
        ("orders", json!({"type": "count", "event": "Order Completed"})),
        ("aov", json!({"type": "ratio", "numerator": "revenue", "denominator": "orders"})),
    ]
    .into_iter()
    .map(|(key, body)| {
        let definition = atrium_results::MetricDefinition::parse(key, &body)
            .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
        Ok((key.to_owned(), definition))
    })
    .collect::<anyhow::Result<_>>()?;
    let spec = atrium_results::ExperimentSpec {
        key: "bench-exp".into(),
        variations: vec![
            atrium_results::VariationSpec {
                key: "0".into(),
                name: None,
            },
            atrium_results::VariationSpec {
                key: "1".into(),
                name: None,
            },
        ],
        weights: None,
        start_ms: Some(planted.start.timestamp_millis()),
        end_ms: None,
        goal_metrics: vec!["purchase".into(), "revenue".into()],
        guardrail_metrics: vec!["aov".into()],
    };
    let options = atrium_results::AnalysisOptions::default();
    let limits = atrium_warehouse::SqlLimits {
        timeout: Duration::from_secs(600),
        max_rows: 100,
    };
    let scan = "SELECT count(*), sum(revenue), count(DISTINCT user_id) FROM events";
    let mut scan_seconds = Vec::new();
    let mut results_seconds = Vec::new();
    // The first query after start reads the identity graph snapshot on the query path.
    let started = Instant::now();
    atrium_results::experiment_results(&warehouse, &spec, &metrics, &options)?;
    let cold_seconds = started.elapsed().as_secs_f64();
    let mut live_seconds = Vec::new();
    let mut report = None;
    for run in 0..args.runs.max(1) {
        let started = Instant::now();
        warehouse.sql(scan, &limits)?;
        scan_seconds.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let cached = atrium_results::experiment_results(&warehouse, &spec, &metrics, &options)?;
        results_seconds.push(started.elapsed().as_secs_f64());
        // A live server: new events have moved the identity graph since the last query.
        append_normalized(
            &log,
            &[json!({"type": "identify", "userId": format!("bench-late-{run}"), "traits": {}})],
        )?;
        pipeline.run_until_caught_up()?;
        let started = Instant::now();
        report = Some(atrium_results::experiment_results(
            &warehouse, &spec, &metrics, &options,
        )?);
        live_seconds.push(started.elapsed().as_secs_f64());
        let exposed = |report: &atrium_results::Report| -> Vec<u64> {
            report.variations.iter().map(|v| v.users).collect()
        };
        anyhow::ensure!(
            report.as_ref().map(exposed) == Some(exposed(&cached)),
            "an identify without exposure changed the exposed users"
        );
    }
    let report = report.expect("at least one run");
    let scan_median = median(&mut scan_seconds);
    let results_median = median(&mut results_seconds);
    let live_median = median(&mut live_seconds);
    let users: u64 = report
        .variations
        .iter()
        .map(|variation| variation.users)
        .sum();
    println!(
        "{} events, {users} exposed users, 4 metrics (conversion, sum with CUPED, count, ratio)",
        log.end_offset()
    );
    println!("  reference scan ({scan}): median {scan_median:.3} s");
    println!(
        "  first results query after start:       {cold_seconds:.3} s (waits for the identity graph snapshot if its read is not done)"
    );
    println!(
        "  experiment results:                    median {results_median:.3} s ({:.1}x the scan; query {} ms, analysis {} ms in the last run)",
        results_median / scan_median,
        report.query_ms,
        report.analysis_ms
    );
    println!(
        "  after one new event (graph re-read):  median {live_median:.3} s ({:.1}x the scan)",
        live_median / scan_median
    );
    let purchase = &report.metrics[0].effects[0];
    println!(
        "  planted lift 10%: purchase {:+.1}% [{:+.1}%, {:+.1}%]",
        purchase.expected * 100.0,
        purchase.ci[0] * 100.0,
        purchase.ci[1] * 100.0
    );
    Ok(())
}
