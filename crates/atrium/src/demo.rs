//! `atrium demo`: a server with a realistic demo shop, ingested through the real HTTP API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use atrium_server::{Config, Server, SourceEntry, hash_secret};
use atrium_types::Channel;
use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct DemoArgs {
    /// Data directory for the demo shop.
    #[arg(long, default_value = "./atrium-demo-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Events to generate on first start.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop after ingesting instead of serving (for scripted checks).
    #[arg(long)]
    exit_after_ingest: bool,
}

/// Demo write keys are kept in the data directory so a restarted demo keeps its sources.
fn demo_sources(data_dir: &Path) -> anyhow::Result<Vec<SourceEntry>> {
    let path = data_dir.join("demo-sources.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let keys: BTreeMap<String, String> =
            serde_json::from_str(&text).context("reading demo-sources.json")?;
        return Ok(sources_from(keys));
    }
    let mut keys = BTreeMap::new();
    for source in atrium_gen::demo_sources() {
        keys.insert(
            source.name.to_owned(),
            format!(
                "wk_{}_{}",
                source.name.replace('-', "_"),
                hex::encode(rand::random::<[u8; 8]>())
            ),
        );
    }
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, serde_json::to_vec_pretty(&keys)?)?;
    Ok(sources_from(keys))
}

fn sources_from(keys: BTreeMap<String, String>) -> Vec<SourceEntry> {
    let channels: BTreeMap<&str, &str> = atrium_gen::demo_sources()
        .into_iter()
        .map(|source| (source.name, source.channel))
        .collect();
    keys.into_iter()
        .map(|(name, write_key)| {
            let channel = channels
                .get(name.as_str())
                .and_then(|channel| channel.parse().ok())
                .unwrap_or(Channel::Other);
            SourceEntry {
                name,
                channel,
                write_key,
            }
        })
        .collect()
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = Config::load(None)?;
    config.data_dir = args.data_dir.clone();
    config.listen = args.listen;
    config.sources = demo_sources(&args.data_dir)?;
    let admin_key = std::env::var("ATRIUM_BOOTSTRAP_ADMIN_KEY")
        .ok()
        .filter(|key| !key.is_empty())
        .unwrap_or_else(|| format!("sk_demo_{}", hex::encode(rand::random::<[u8; 16]>())));
    config.admin_key_sha256.push(hash_secret(&admin_key));
    let keys: BTreeMap<String, String> = config
        .sources
        .iter()
        .map(|source| (source.name.clone(), source.write_key.clone()))
        .collect();

    crate::runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        let base = server.url();
        let already = atrium_log::EventLog::end_offset(&*server.state.log);
        if already == 0 {
            load_demo_catalog(&base, &admin_key, args.seed, args.events).await?;
            define_demo_segments(&base, &admin_key).await?;
            ingest_demo(&base, &keys, args.seed, args.events).await?;
            let web_key = keys.get("web").cloned().unwrap_or_default();
            crate::demo_experiments::define_and_ingest(
                &base,
                &admin_key,
                &web_key,
                args.seed,
                args.events,
            )
            .await?;
            let end = atrium_log::EventLog::end_offset(&*server.state.log);
            let pipeline = server.state.pipeline.clone();
            tokio::task::spawn_blocking(move || pipeline.wait_applied(end, std::time::Duration::from_secs(600))).await?;
        } else {
            eprintln!("demo data already present ({already} log records); serving it");
        }
        let profiles = server.state.store.read(|tables| tables.profile_count())?;
        let web_key = keys.get("web").cloned().unwrap_or_default();
        println!();
        println!("Atrium demo shop is running at {base}");
        println!("  profiles:        {profiles}");
        println!("  admin key:       {admin_key}");
        for (name, key) in &keys {
            println!("  write key {name:<12} {key}");
        }
        println!();
        println!("Try:");
        println!("  curl -u {web_key}: {base}/v1/track -H 'content-type: application/json' -d '{{\"userId\":\"u_1\",\"event\":\"Product Viewed\",\"properties\":{{\"product_id\":\"p-1\"}}}}'");
        println!("  curl -H 'authorization: Bearer {admin_key}' '{base}/v1/profiles?limit=3'");
        println!("  curl -H 'authorization: Bearer {admin_key}' {base}/v1/profiles/user_id:u_1");
        println!("  curl -H 'authorization: Bearer {admin_key}' {base}/v1/profiles/user_id:u_1/identity");
        println!("  curl -H 'authorization: Bearer {admin_key}' {base}/v1/experiments/{}/results", crate::demo_experiments::AB_EXPERIMENT);
        println!("  curl -H 'authorization: Bearer {admin_key}' '{base}/v1/recommendations?placement=trending&k=5'");
        println!("  curl -H 'authorization: Bearer {admin_key}' '{base}/v1/segments/recent_buyers/members?limit=5'");
        println!("  curl -H 'authorization: Bearer {admin_key}' {base}/v1/profiles/user_id:u_1/segments");
        println!("  curl {base}/metrics    curl {base}/openapi.json");
        println!();
        if !args.exit_after_ingest {
            println!("Press Ctrl-C to stop.");
            crate::wait_for_shutdown().await;
        }
        server.stop().await;
        Ok(())
    })
}

/// Puts the generator's catalog through `PUT /v1/catalog/items`, so the shop serves
/// recommendations for the products its events mention.
async fn load_demo_catalog(
    base: &str,
    admin_key: &str,
    seed: u64,
    events: usize,
) -> anyhow::Result<()> {
    let generator = atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events));
    let items: Vec<Value> = generator
        .catalog()
        .iter()
        .map(|product| {
            serde_json::json!({
                "id": product.product_id,
                "name": product.name,
                "category": product.category,
                "brand": product.brand,
                "price": product.price,
                "currency": "USD",
                "url": format!("/products/{}", product.slug()),
                "attributes": {"sku": product.sku},
            })
        })
        .collect();
    let client = reqwest::Client::new();
    for chunk in items.chunks(1_000) {
        let response = client
            .put(format!("{base}/v1/catalog/items"))
            .bearer_auth(admin_key)
            .json(&serde_json::json!({"items": chunk}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "demo catalog load failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    eprintln!("demo catalog: {} products", items.len());
    Ok(())
}

/// Defines the demo shop's computed traits and segments before any event, so they are
/// evaluated in real time as the history streams in.
async fn define_demo_segments(base: &str, admin_key: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let definitions = atrium_gen::segments::demo_computed_traits()
        .into_iter()
        .map(|(id, body)| (format!("/v1/computed-traits/{id}"), body))
        .chain(
            atrium_gen::segments::demo_segments()
                .into_iter()
                .map(|(id, body)| (format!("/v1/segments/{id}"), body)),
        );
    for (path, body) in definitions {
        crate::demo_experiments::put(&client, base, admin_key, &path, body).await?;
    }
    eprintln!(
        "demo segments: {} segments, {} computed traits",
        atrium_gen::segments::demo_segments().len(),
        atrium_gen::segments::demo_computed_traits().len()
    );
    Ok(())
}

/// Sends the generated stream through the HTTP API in batches of 100 per source.
async fn ingest_demo(
    base: &str,
    keys: &BTreeMap<String, String>,
    seed: u64,
    events: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let bar = crate::progress_bar(events as u64, "ingesting demo shop over HTTP");
    let mut buffers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut in_flight = tokio::task::JoinSet::new();
    // The shop's 60 days end today, so time windows ("ordered in the last 30 days") select
    // customers.
    let now_ms = atrium_types::Clock::now_ms(&atrium_types::SystemClock);
    let generator = atrium_gen::Generator::new(
        atrium_gen::GenConfig::for_events(seed, events).ending_before(now_ms),
    );
    let send = |source: String,
                batch: Vec<Value>,
                in_flight: &mut tokio::task::JoinSet<anyhow::Result<usize>>| {
        let client = client.clone();
        let url = format!("{base}/v1/batch");
        let key = keys.get(&source).cloned().unwrap_or_default();
        in_flight.spawn(async move {
            let count = batch.len();
            let response = client
                .post(url)
                .basic_auth(key, Some(""))
                .json(&serde_json::json!({"batch": batch}))
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "demo ingest failed: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            Ok(count)
        });
    };
    for mut event in generator {
        let source = atrium_gen::take_source(&mut event).unwrap_or_else(|| "web".to_owned());
        let buffer = buffers.entry(source.clone()).or_default();
        buffer.push(event);
        if buffer.len() >= 100 {
            let batch = std::mem::take(buffer);
            send(source, batch, &mut in_flight);
            while in_flight.len() >= 4 {
                if let Some(done) = in_flight.join_next().await {
                    bar.inc(done?? as u64);
                }
            }
        }
    }
    for (source, batch) in std::mem::take(&mut buffers) {
        if !batch.is_empty() {
            send(source, batch, &mut in_flight);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        bar.inc(done?? as u64);
    }
    bar.finish();
    Ok(())
}
