//! `atrium bench recs`: serving latency of top-10 `for_you` over a large catalog at a fixed
//! request rate through HTTP on loopback, next to `/healthz` at the same rate (the HTTP floor,
//! measured in the same run), plus how long a co-visitation takes to become visible after the
//! events are acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use atrium_server::{Config, Server, SourceEntry, hash_secret};
use atrium_types::{Channel, format_timestamp_ms};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const WRITE_KEY: &str = "wk_bench_recs_0001";
const ADMIN_KEY: &str = "sk_bench_recs_0001";

#[derive(Args, Clone)]
pub struct RecsBenchArgs {
    /// Catalog items.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Shoppers generating interactions.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Interaction events (views, add to cart, orders).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Requests per second during the latency phases.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds per latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// ALS factors.
    #[arg(long, default_value_t = 32)]
    factors: usize,
    /// ALS iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Co-visitation visibility probes.
    #[arg(long, default_value_t = 30)]
    probes: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

struct Latencies {
    sorted_ms: Vec<f64>,
    errors: usize,
    achieved_rate: f64,
    /// CPU time of the whole process (client and server) during the phase, per request.
    cpu_us_per_request: f64,
}

impl Latencies {
    fn quantile(&self, q: f64) -> f64 {
        if self.sorted_ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.sorted_ms.len() as f64 - 1.0) * q).round() as usize;
        self.sorted_ms[rank]
    }
}

pub fn run(args: RecsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.items >= 100 && args.users >= 10,
        "--items ≥ 100 and --users ≥ 10"
    );
    anyhow::ensure!(
        args.rate >= 1 && args.seconds >= 1,
        "--rate and --seconds must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("atrium-bench-recs-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        sources: vec![SourceEntry {
            name: "web".into(),
            channel: Channel::Web,
            write_key: WRITE_KEY.into(),
        }],
        admin_key_sha256: vec![hash_secret(ADMIN_KEY)],
        ..Config::default()
    };
    config.recs.train_interval_secs = 0;
    config.recs.factors = args.factors;
    config.recs.iterations = args.iterations;
    config.recs.train_threads = 2;
    crate::runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        let result = bench(&server, &args).await;
        server.stop().await;
        result
    })
}

fn item_json(n: usize) -> Value {
    const NOUNS: [&str; 8] = [
        "Shoe", "Jacket", "Lamp", "Mug", "Shirt", "Bag", "Chair", "Watch",
    ];
    const COLORS: [&str; 6] = ["red", "blue", "black", "white", "green", "grey"];
    let department = n % 10;
    let category = n % 50;
    json!({
        "id": format!("p{n}"),
        "name": format!("{} {} {n}", COLORS[n % 6], NOUNS[n % 8]),
        "category": format!("Department {department} > Category {category}"),
        "brand": format!("Brand {}", n % 200),
        "price": ((n * 37) % 500) as f64 + 0.99,
        "attributes": {"color": COLORS[n % 6]},
    })
}

/// A skewed item choice within the shopper's favourite category most of the time.
fn pick_item(rng: &mut ChaCha8Rng, items: usize, favourite: usize) -> usize {
    let per_category = items / 50;
    let skewed = |rng: &mut ChaCha8Rng, range: usize| {
        let r: f64 = rng.r#gen();
        ((r * r * r) * range as f64) as usize % range.max(1)
    };
    if rng.gen_bool(0.7) && per_category > 0 {
        // Items of category c are c, c + 50, c + 100, …
        favourite + 50 * skewed(rng, per_category)
    } else {
        skewed(rng, items)
    }
}

async fn bench(server: &Server, args: &RecsBenchArgs) -> anyhow::Result<()> {
    let base = server.url();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Catalog.
    let started = Instant::now();
    let bar = crate::progress_bar(args.items as u64, "catalog items over HTTP");
    for chunk_start in (0..args.items).step_by(2_000) {
        let items: Vec<Value> = (chunk_start..(chunk_start + 2_000).min(args.items))
            .map(item_json)
            .collect();
        let count = items.len();
        let response = client
            .put(format!("{base}/v1/catalog/items"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"items": items}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "catalog write failed: {}",
            response.text().await.unwrap_or_default()
        );
        bar.inc(count as u64);
    }
    bar.finish();
    let catalog_seconds = started.elapsed().as_secs_f64();

    // Interactions.
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let now_ms = atrium_types::Clock::now_ms(&atrium_types::SystemClock);
    let start_ms = now_ms - 30 * 86_400_000;
    let favourites: Vec<usize> = (0..args.users).map(|_| rng.gen_range(0..50)).collect();
    let bar = crate::progress_bar(args.events as u64, "interaction events over HTTP");
    let mut batch = Vec::with_capacity(500);
    let mut sent = 0usize;
    let mut order = 0usize;
    while sent < args.events {
        let user = rng.gen_range(0..args.users);
        let session_ms = start_ms + rng.gen_range(0..30 * 86_400_000i64);
        let views = rng.gen_range(3..10);
        let mut viewed = Vec::new();
        for view in 0..views {
            let item = pick_item(&mut rng, args.items, favourites[user]);
            viewed.push(item);
            batch.push(json!({"type": "track", "anonymousId": format!("v{user}"), "event": "Product Viewed",
                "properties": {"product_id": format!("p{item}")},
                "timestamp": format_timestamp_ms(session_ms + view * 60_000)}));
        }
        if rng.gen_bool(0.2) {
            order += 1;
            let lines: Vec<Value> = viewed
                .iter()
                .take(rng.gen_range(1..3))
                .map(|item| json!({"product_id": format!("p{item}"), "price": 10.0}))
                .collect();
            batch.push(json!({"type": "track", "anonymousId": format!("v{user}"), "event": "Order Completed",
                "properties": {"order_id": format!("o{order}"), "products": lines},
                "timestamp": format_timestamp_ms(session_ms + views * 60_000)}));
        }
        if batch.len() >= 500 {
            sent += batch.len();
            post_batch(&client, &base, std::mem::take(&mut batch)).await?;
            bar.set_position(sent as u64);
        }
    }
    if !batch.is_empty() {
        post_batch(&client, &base, batch).await?;
    }
    bar.finish();
    let end = atrium_log::EventLog::end_offset(&*server.state.log);
    let recs = server.state.recs.clone();
    let pipeline = server.state.pipeline.clone();
    tokio::task::spawn_blocking(move || {
        pipeline.wait_applied(end, Duration::from_secs(600))
            && recs.wait_applied(end, Duration::from_secs(600))
    })
    .await?;

    // Training.
    let started = Instant::now();
    let response = client
        .post(format!("{base}/v1/recommendations/train"))
        .bearer_auth(ADMIN_KEY)
        .timeout(Duration::from_secs(3_600))
        .send()
        .await?;
    let trained: Value = response.json().await?;
    let train_seconds = started.elapsed().as_secs_f64();
    eprintln!("trained: {trained}");

    // Latency phases: for_you, then the HTTP floor at the same rate.
    let users = args.users;
    let mut request_rng = ChaCha8Rng::seed_from_u64(args.seed + 1);
    let profiles: Vec<String> = (0..(args.rate as u64 * args.seconds))
        .map(|_| format!("anonymous_id:v{}", request_rng.gen_range(0..users)))
        .collect();
    let agreement = retrieval_agreement(server, &profiles[..profiles.len().min(1_000)]).await?;
    // Bodies, URLs and headers are built before the clock starts: the client's own work per
    // request stays small next to the server's.
    let bodies: Vec<bytes::Bytes> = profiles
        .iter()
        .map(|profile| {
            let body = json!({"placement": "for_you", "profile": profile, "k": 10});
            bytes::Bytes::from(serde_json::to_vec(&body).expect("serializable"))
        })
        .collect();
    let recommendations_url = reqwest::Url::parse(&format!("{base}/v1/recommendations"))?;
    let healthz_url = reqwest::Url::parse(&format!("{base}/healthz"))?;
    let authorization = format!("Bearer {ADMIN_KEY}");
    let for_you = paced(&client, args, |client, n| {
        client
            .post(recommendations_url.clone())
            .header(reqwest::header::AUTHORIZATION, &authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bodies[n].clone())
    })
    .await?;
    let healthz = paced(&client, args, |client, _| client.get(healthz_url.clone())).await?;

    // Co-visitation visibility: two items never viewed together, viewed by a new visitor.
    let mut visible_ms = Vec::new();
    let mut ack_ms = Vec::new();
    let mut not_visible = 0usize;
    for probe in 0..args.probes {
        let a = format!("p{}", args.items - 1 - 2 * probe);
        let b = format!("p{}", args.items - 2 - 2 * probe);
        let at = format_timestamp_ms(atrium_types::Clock::now_ms(&atrium_types::SystemClock));
        let events = vec![
            json!({"type": "track", "anonymousId": format!("probe{probe}"), "event": "Product Viewed", "properties": {"product_id": a}, "timestamp": at}),
            json!({"type": "track", "anonymousId": format!("probe{probe}"), "event": "Product Viewed", "properties": {"product_id": b}, "timestamp": at}),
        ];
        let started = Instant::now();
        post_batch(&client, &base, events).await?;
        ack_ms.push(started.elapsed().as_secs_f64() * 1e3);
        loop {
            let response: Value = client
                .get(format!(
                    "{base}/v1/recommendations?placement=similar&item={a}&k=100&in_stock=false"
                ))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await?
                .json()
                .await?;
            let found = response["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|item| item["id"] == b.as_str() && item["source"] == "covisit")
            });
            if found {
                visible_ms.push(started.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if started.elapsed() >= Duration::from_secs(10) {
                not_visible += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    visible_ms.sort_by(f64::total_cmp);
    ack_ms.sort_by(f64::total_cmp);
    let visible = Latencies {
        sorted_ms: visible_ms,
        errors: 0,
        achieved_rate: 0.0,
        cpu_us_per_request: f64::NAN,
    };
    let acked = Latencies {
        sorted_ms: ack_ms,
        errors: 0,
        achieved_rate: 0.0,
        cpu_us_per_request: f64::NAN,
    };

    println!();
    println!("## atrium bench recs");
    println!(
        "catalog {} items (uploaded in {catalog_seconds:.1}s), {} shoppers, {} events; ALS {} factors × {} iterations trained in {train_seconds:.1}s",
        args.items, args.users, args.events, args.factors, args.iterations
    );
    println!();
    println!(
        "| phase | requests | errors | achieved req/s | p50 ms | p99 ms | max ms | process CPU µs/request |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, phase) in [
        ("top-10 for_you", &for_you),
        ("GET /healthz (HTTP floor)", &healthz),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} |",
            phase.sorted_ms.len(),
            phase.errors,
            phase.achieved_rate,
            phase.quantile(0.5),
            phase.quantile(0.99),
            phase.sorted_ms.last().copied().unwrap_or(f64::NAN),
            phase.cpu_us_per_request
        );
    }
    println!(
        "process CPU per for_you request above the /healthz floor: {:.0} µs",
        for_you.cpu_us_per_request - healthz.cpu_us_per_request
    );
    println!(
        "in process, {} profiles: two-stage {:.0} µs vs exhaustive {:.0} µs per for_you answer; \
         identical top-10 lists {:.1} %, mean overlap {:.2} of 10",
        agreement.profiles,
        agreement.two_stage_us,
        agreement.exhaustive_us,
        agreement.identical_share * 100.0,
        agreement.mean_overlap
    );
    println!(
        "for_you / healthz: p50 {:.1}x, p99 {:.1}x; target p99 < 5 ms: {}",
        for_you.quantile(0.5) / healthz.quantile(0.5),
        for_you.quantile(0.99) / healthz.quantile(0.99),
        if for_you.quantile(0.99) < 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!();
    println!(
        "co-visitation visible after the batch was sent ({} probes, {not_visible} not visible within 10 s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; the ingest ack itself: p50 {:.1} ms, p99 {:.1} ms; target < 1 s: {}",
        visible.sorted_ms.len(),
        visible.quantile(0.5),
        visible.quantile(0.99),
        visible.sorted_ms.last().copied().unwrap_or(f64::NAN),
        acked.quantile(0.5),
        acked.quantile(0.99),
        if not_visible == 0 && visible.sorted_ms.last().is_some_and(|max| *max < 1_000.0) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

async fn post_batch(client: &reqwest::Client, base: &str, batch: Vec<Value>) -> anyhow::Result<()> {
    let response = client
        .post(format!("{base}/v1/batch"))
        .basic_auth(WRITE_KEY, Some(""))
        .json(&json!({"batch": batch}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "ingest failed: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Sends `rate × seconds` requests open-loop at a fixed rate (each on its own task, at most
/// 2,000 outstanding) and measures each one's latency.
async fn paced(
    client: &reqwest::Client,
    args: &RecsBenchArgs,
    build: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder,
) -> anyhow::Result<Latencies> {
    let total = (u64::from(args.rate) * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let cpu_before = atrium_gen::harness::cpu_seconds();
    let outstanding = Arc::new(tokio::sync::Semaphore::new(2_000));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        ticker.tick().await;
        let permit = outstanding.clone().acquire_owned().await?;
        let request = build(client, n);
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = match request.send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    ok && response.bytes().await.is_ok()
                }
                Err(_) => false,
            };
            drop(permit);
            (sent.elapsed().as_secs_f64() * 1e3, ok)
        });
    }
    let mut sorted_ms = Vec::with_capacity(total);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (ms, ok) = done?;
        if ok {
            sorted_ms.push(ms);
        } else {
            errors += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_seconds = atrium_gen::harness::cpu_seconds() - cpu_before;
    sorted_ms.sort_by(f64::total_cmp);
    Ok(Latencies {
        sorted_ms,
        errors,
        achieved_rate: total as f64 / elapsed,
        cpu_us_per_request: cpu_seconds * 1e6 / total as f64,
    })
}

struct Agreement {
    profiles: usize,
    two_stage_us: f64,
    exhaustive_us: f64,
    identical_share: f64,
    mean_overlap: f64,
}

/// Answers top-10 `for_you` for `profiles` in process, two-stage and exhaustive, and compares
/// the item lists (and the time each takes, without HTTP).
async fn retrieval_agreement(server: &Server, profiles: &[String]) -> anyhow::Result<Agreement> {
    let recs = server.state.recs.clone();
    let profiles = profiles.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut two_stage_seconds = 0.0;
        let mut exhaustive_seconds = 0.0;
        let mut identical = 0usize;
        let mut overlap = 0usize;
        for profile in &profiles {
            let request = atrium_recserve::RecRequest::from_json(
                &json!({"placement": "for_you", "profile": profile, "k": 10}),
            )?;
            let started = Instant::now();
            let two_stage = recs.recommend_with(&request, atrium_recserve::Retrieval::TwoStage)?;
            two_stage_seconds += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let exhaustive =
                recs.recommend_with(&request, atrium_recserve::Retrieval::Exhaustive)?;
            exhaustive_seconds += started.elapsed().as_secs_f64();
            let ids = |response: &atrium_recserve::RecResponse| -> Vec<String> {
                response.items.iter().map(|item| item.id.clone()).collect()
            };
            let (two_stage_ids, exhaustive_ids) = (ids(&two_stage), ids(&exhaustive));
            identical += usize::from(two_stage_ids == exhaustive_ids);
            overlap += two_stage_ids
                .iter()
                .filter(|id| exhaustive_ids.contains(id))
                .count();
        }
        let count = profiles.len().max(1) as f64;
        Ok(Agreement {
            profiles: profiles.len(),
            two_stage_us: two_stage_seconds * 1e6 / count,
            exhaustive_us: exhaustive_seconds * 1e6 / count,
            identical_share: identical as f64 / count,
            mean_overlap: overlap as f64 / count,
        })
    })
    .await?
}
