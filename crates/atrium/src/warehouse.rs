//! `atrium sql` and `atrium export`: the warehouse, offline, over a data directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use atrium_warehouse::{ExportFormat, SqlLimits, Warehouse};
use clap::{Args, ValueEnum};

use crate::DataArgs;

#[derive(Args)]
pub struct SqlArgs {
    /// The query (read-only: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE). Tables: events, orders,
    /// order_lines, profiles, identities; views events_resolved and orders_resolved.
    query: String,
    #[command(flatten)]
    data: DataArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    format: SqlFormat,
    /// Most result rows.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Cancel the query after this many milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum SqlFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArgs,
    /// parquet: the day-partitioned files plus profiles/identities; jsonl: one file per table.
    #[arg(long, value_enum)]
    format: ExportKind,
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportKind {
    Parquet,
    Jsonl,
}

/// Takes the data-dir lock, brings the profile state and the warehouse up to the end of the log.
pub(crate) fn open(data: &DataArgs) -> anyhow::Result<(std::fs::File, Warehouse)> {
    let (lock, warehouse, _) = open_with_store(data)?;
    Ok((lock, warehouse))
}

/// [`open`], also returning the state store (definitions live there).
pub(crate) fn open_with_store(
    data: &DataArgs,
) -> anyhow::Result<(std::fs::File, Warehouse, Arc<atrium_store::Store>)> {
    let config = data.load()?;
    let lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    let store = Arc::new(atrium_store::Store::open(
        atrium_server::state::store_path(&config),
    )?);
    let pipeline = atrium_pipeline::Pipeline::new(
        log.clone(),
        store.clone(),
        atrium_server::state::pipeline_config(&config, &config.data_dir)?,
        Arc::new(atrium_types::SystemClock),
    )?;
    pipeline.run_until_caught_up()?;
    store.sync()?;
    let warehouse = atrium_server::state::open_warehouse(&config, log, store.clone(), &pipeline)?;
    warehouse.catch_up()?;
    warehouse.flush().context("flushing the warehouse")?;
    Ok((lock, warehouse, store))
}

pub fn run_sql(args: SqlArgs) -> anyhow::Result<()> {
    let (_lock, warehouse) = open(&args.data)?;
    let limits = SqlLimits {
        timeout: Duration::from_millis(args.timeout_ms),
        max_rows: args.limit,
    };
    let output = warehouse.sql(&args.query, &limits)?;
    let text = match args.format {
        SqlFormat::Table => {
            let mut table = output.to_table()?;
            let plural = if output.row_count == 1 { "" } else { "s" };
            table.push_str(&format!("\n{} row{plural}\n", output.row_count));
            table
        }
        SqlFormat::Json => {
            let mut json = String::from_utf8(output.to_json_rows()?)?;
            json.push('\n');
            json
        }
        SqlFormat::Csv => String::from_utf8(output.to_csv()?)?,
    };
    print!("{text}");
    Ok(())
}

pub fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let (_lock, warehouse) = open(&args.data)?;
    let format = match args.format {
        ExportKind::Parquet => ExportFormat::Parquet,
        ExportKind::Jsonl => ExportFormat::Jsonl,
    };
    let counts = warehouse.export(&args.out, format)?;
    for (table, rows) in counts {
        println!("{table:<12} {rows} rows");
    }
    println!("exported to {}", args.out.display());
    Ok(())
}
