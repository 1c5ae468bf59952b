//! The `atrium` command: a thin binary that wires the crates together. Every subcommand has
//! `--help`; long work shows a progress bar on stderr.

mod analytics;
mod demo;
mod demo_experiments;
mod experiments;
mod import;
mod recs;
mod segments;
mod warehouse;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use atrium_server::{Config, Server};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "atrium",
    version,
    about = "Self-hosted, Segment-compatible customer data and experience platform for commerce"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ATRIUM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: collection API, pipeline and profile API.
    Serve(ServeArgs),
    /// Run a server with a realistic demo shop ingested through the real HTTP API, and keep serving.
    Demo(demo::DemoArgs),
    /// Write a deterministic demo event stream as JSONL to stdout.
    Gen(GenArgs),
    /// Import events from a JSONL or CSV file (or - for stdin) through the pipeline.
    Import(import::ImportArgs),
    /// Rebuild all derived state by replaying the event log from offset 0.
    Replay(DataArgs),
    /// Print a digest of the derived state (equal digests mean equal state).
    Digest(DigestArgs),
    /// Run a read-only SQL query over the warehouse tables and print the result.
    Sql(warehouse::SqlArgs),
    /// Export the warehouse tables as Parquet or JSON lines.
    Export(warehouse::ExportArgs),
    /// KPIs, funnels, retention, attribution and paths over the warehouse, as a table or JSON.
    Analytics(analytics::AnalyticsArgs),
    /// Feature definitions on a running server (list, get, put, delete).
    #[command(subcommand)]
    Features(experiments::DefinitionCommand),
    /// Experiments on a running server (list, get, put, delete, start, stop), and results.
    #[command(subcommand)]
    Experiments(experiments::ExperimentCommand),
    /// Metric definitions on a running server (list, get, put, delete).
    #[command(subcommand)]
    Metrics(experiments::DefinitionCommand),
    /// Segments on a running server: definitions, members, preview, a profile's segments, explain.
    #[command(subcommand)]
    Segments(segments::SegmentCommand),
    /// Computed traits on a running server (list, get, put, delete).
    #[command(subcommand, name = "computed-traits")]
    ComputedTraits(experiments::DefinitionCommand),
    /// Recommendations: offline evaluation over the data directory's events.
    #[command(subcommand)]
    Recs(recs::RecsCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable ingest throughput, ack latency and pipeline freshness (see BENCHMARKS.md).
    Ingest(atrium_bench_args::IngestBenchArgs),
    /// The analytics API's funnel, retention, daily revenue and last-touch queries vs DuckDB
    /// and chDB on the same Parquet files (see BENCHMARKS.md).
    Analytics(bench_analytics::AnalyticsBenchArgs),
    /// Flag evaluation per core vs GrowthBook's Python SDK, and /api/features latency.
    Eval(bench_experiments::EvalBenchArgs),
    /// Experiment results latency over a generated experiment.
    Results(bench_experiments::ResultsBenchArgs),
    /// Top-10 `for_you` latency over a large catalog at a fixed rate, and real-time
    /// co-visitation visibility (see BENCHMARKS.md).
    Recs(bench_recs::RecsBenchArgs),
    /// What real-time segments and computed traits cost the pipeline, backfill time and state
    /// size per profile (see BENCHMARKS.md).
    Segments(bench_segments::SegmentsBenchArgs),
}

/// Kept in its own module so the bench implementation can grow without touching the CLI tree.
mod atrium_bench_args {
    pub use crate::bench::IngestBenchArgs;
}
mod bench;
mod bench_analytics;
mod bench_experiments;
mod bench_recs;
mod bench_segments;

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on (overrides the config file).
    #[arg(long, env = "ATRIUM_LISTEN")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Clone)]
pub struct DataArgs {
    /// TOML config file; `ATRIUM_*` environment variables override it.
    #[arg(long, env = "ATRIUM_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file).
    #[arg(long, env = "ATRIUM_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Args)]
struct DigestArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Also print one digest per table, to see where two states differ.
    #[arg(long)]
    tables: bool,
}

#[derive(Args)]
struct GenArgs {
    /// Random seed; the same seed gives the same stream, byte for byte.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of events.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Number of customers (default: about one per 40 events).
    #[arg(long)]
    customers: Option<usize>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATRIUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo::run(args),
        Command::Gen(args) => gen_events(args),
        Command::Import(args) => import::run(args),
        Command::Replay(args) => replay(args),
        Command::Digest(args) => digest(args),
        Command::Sql(args) => warehouse::run_sql(args),
        Command::Export(args) => warehouse::run_export(args),
        Command::Analytics(args) => analytics::run(args),
        Command::Features(command) => experiments::run_definitions("features", command),
        Command::Experiments(command) => experiments::run_experiments(command),
        Command::Metrics(command) => experiments::run_definitions("metrics", command),
        Command::Segments(command) => segments::run(command),
        Command::ComputedTraits(command) => {
            experiments::run_definitions("computed-traits", command)
        }
        Command::Recs(command) => recs::run(command),
        Command::Bench(BenchCommand::Ingest(args)) => bench::run_ingest(args),
        Command::Bench(BenchCommand::Analytics(args)) => bench_analytics::run(args),
        Command::Bench(BenchCommand::Eval(args)) => bench_experiments::run_eval(args),
        Command::Bench(BenchCommand::Results(args)) => bench_experiments::run_results(args),
        Command::Bench(BenchCommand::Recs(args)) => bench_recs::run(args),
        Command::Bench(BenchCommand::Segments(args)) => bench_segments::run(args),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = args.data.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if config.sources.is_empty() {
        tracing::warn!(
            "no sources configured: set [[sources]] in the config or ATRIUM_BOOTSTRAP_WRITE_KEY, or nothing can be ingested"
        );
    }
    if config.admin_key_sha256.is_empty() {
        tracing::warn!(
            "no admin key configured: set admin_key_sha256 or ATRIUM_BOOTSTRAP_ADMIN_KEY to use the profile API"
        );
    }
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        eprintln!("atrium serving on {}", server.url());
        wait_for_shutdown().await;
        eprintln!("shutting down");
        server.stop().await;
        Ok(())
    })
}

pub async fn wait_for_shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn gen_events(args: GenArgs) -> anyhow::Result<()> {
    let mut config = atrium_gen::GenConfig::for_events(args.seed, args.events);
    if let Some(customers) = args.customers {
        config.customers = customers.max(1);
    }
    let mut generator = atrium_gen::Generator::new(config);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    generator.write_jsonl(&mut out)?;
    out.flush()?;
    Ok(())
}

fn replay(args: DataArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    let end = atrium_log::EventLog::end_offset(&*log);
    let bar = progress_bar(end, "replaying");
    let pipeline_config = atrium_server::state::pipeline_config(&config, &config.data_dir)?;
    let store_path = atrium_server::state::store_path(&config);
    let started = std::time::Instant::now();
    let store = atrium_pipeline::rebuild(
        &store_path,
        log,
        pipeline_config,
        Arc::new(atrium_types::SystemClock),
        |applied, _| bar.set_position(applied),
    )?;
    bar.finish();
    let (profiles, identifiers) =
        store.read(|tables| Ok((tables.profile_count()?, tables.identifier_count()?)))?;
    println!(
        "replayed {end} log records in {:.1}s: {profiles} profiles, {identifiers} identifiers, state digest {}",
        started.elapsed().as_secs_f64(),
        store.digest()?
    );
    Ok(())
}

fn digest(args: DigestArgs) -> anyhow::Result<()> {
    let config = args.data.load()?;
    let store_path = atrium_server::state::store_path(&config);
    anyhow::ensure!(
        store_path.exists(),
        "no state store at {}: is --data-dir right?",
        store_path.display()
    );
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let store = atrium_store::Store::open(&store_path)?;
    println!("{}", store.digest()?);
    if args.tables {
        for (table, digest) in store.read(|tables| tables.table_digests())? {
            println!("{table:<12} {digest}");
        }
    }
    Ok(())
}
