//! `atrium recs eval` (offline evaluation over the data directory's events) and
//! `atrium import --catalog` (catalog items from JSONL or CSV, appended to the log).

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use atrium_log::EventLog;
use atrium_recserve::eval::{EvalOptions, SplitKind, offline_eval};
use atrium_types::{ControlRecord, LogRecord, format_timestamp_ms};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

#[derive(Subcommand)]
pub enum RecsCommand {
    /// Offline evaluation of ALS against the popularity baseline on the data directory's
    /// events: temporal and random splits, precision/recall/NDCG/MAP@k and catalog coverage.
    Eval(EvalArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SplitChoice {
    Random,
    Temporal,
    Both,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: crate::DataArgs,
    /// Cut-off of the ranked lists.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Share of the interactions held out for testing.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Which split(s) to run.
    #[arg(long, value_enum, default_value_t = SplitChoice::Both)]
    split: SplitChoice,
    /// Seed of the random split and of ALS.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// ALS factors (default: the config's `[recs]`).
    #[arg(long)]
    factors: Option<usize>,
    /// ALS iterations (default: the config's `[recs]`).
    #[arg(long)]
    iterations: Option<usize>,
    /// ALS regularization (default: the config's `[recs]`).
    #[arg(long)]
    regularization: Option<f32>,
    /// ALS confidence weight α (default: the config's `[recs]`).
    #[arg(long)]
    alpha: Option<f32>,
    /// ALS training threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: RecsCommand) -> anyhow::Result<()> {
    match command {
        RecsCommand::Eval(args) => eval(args),
    }
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.k >= 1, "--k must be at least 1");
    anyhow::ensure!(
        args.test_fraction > 0.0 && args.test_fraction < 1.0,
        "--test-fraction must be between 0 and 1"
    );
    let config = args.data.load()?;
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    let store_path = atrium_server::state::store_path(&config);
    let store = if store_path.exists() {
        Some(atrium_store::Store::open(&store_path)?)
    } else {
        None
    };
    let mut settings = config.recs.clone();
    settings.factors = args.factors.unwrap_or(settings.factors);
    settings.iterations = args.iterations.unwrap_or(settings.iterations);
    settings.regularization = args.regularization.unwrap_or(settings.regularization);
    settings.alpha = args.alpha.unwrap_or(settings.alpha);
    settings.train_threads = args.threads.max(1);
    settings.validate().map_err(anyhow::Error::msg)?;
    let splits = match args.split {
        SplitChoice::Random => vec![SplitKind::Random],
        SplitChoice::Temporal => vec![SplitKind::Temporal],
        SplitChoice::Both => vec![SplitKind::Random, SplitKind::Temporal],
    };
    let options = EvalOptions {
        k: args.k,
        test_fraction: args.test_fraction,
        seed: args.seed,
        splits,
        settings: settings.clone(),
    };
    eprintln!(
        "evaluating on {} log records (ALS: {} factors, {} iterations, λ {}, α {})",
        log.end_offset(),
        settings.factors,
        settings.iterations,
        settings.regularization,
        settings.alpha
    );
    let results = offline_eval(&*log, store.as_ref(), &options)?;
    if args.json {
        let documents: Vec<Value> = results.iter().map(|result| result.to_json()).collect();
        println!("{}", serde_json::to_string_pretty(&documents)?);
        return Ok(());
    }
    let k = args.k;
    println!(
        "{:<9} {:<11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "split",
        "model",
        format!("P@{k}"),
        format!("R@{k}"),
        format!("NDCG@{k}"),
        format!("MAP@{k}"),
        "coverage",
        "users"
    );
    for result in &results {
        for (name, metrics) in [("als", &result.als), ("popularity", &result.popularity)] {
            println!(
                "{:<9} {:<11} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>7}",
                result.split.as_str(),
                name,
                metrics.precision,
                metrics.recall,
                metrics.ndcg,
                metrics.map,
                metrics.coverage,
                metrics.users
            );
        }
        println!(
            "          {} profiles, {} items, {} train / {} test pairs, ALS trained in {:.2}s",
            result.profiles,
            result.items,
            result.train_pairs,
            result.test_pairs,
            result.als_seconds
        );
    }
    Ok(())
}

/// Items per `atrium.catalog.put` record.
const ITEMS_PER_RECORD: usize = 1_000;

/// Reads catalog items from JSONL (one item object per line) or CSV (columns named like the
/// item fields; `attributes.<name>` columns become attributes; `category` may use ` > `),
/// validates each, and appends them to the log in records of 1,000 items.
pub fn import_catalog(file: &Path, data: &crate::DataArgs, csv: bool) -> anyhow::Result<()> {
    let config = data.load()?;
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let mut writer = CatalogWriter {
        log,
        pending: Vec::new(),
        accepted: 0,
        rejected: 0,
    };
    if csv {
        let mut rows = csv::Reader::from_reader(reader);
        let headers = rows.headers().context("reading the csv header")?.clone();
        for (row_number, row) in rows.records().enumerate() {
            let row = row.with_context(|| format!("reading csv row {}", row_number + 2))?;
            writer.push(csv_item(&headers, &row), &format!("row {}", row_number + 2))?;
        }
    } else {
        for (line_number, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", line_number + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let place = format!("line {}", line_number + 1);
            match serde_json::from_str::<Value>(&line) {
                Ok(item) => writer.push(item, &place)?,
                Err(error) => {
                    writer.rejected += 1;
                    tracing::warn!(%place, %error, "skipping a line that is not json");
                }
            }
        }
    }
    writer.flush()?;
    println!(
        "imported {} catalog items ({} rejected); they are served once the server starts",
        writer.accepted, writer.rejected
    );
    if writer.accepted == 0 {
        bail!("nothing was imported");
    }
    Ok(())
}

struct CatalogWriter {
    log: Arc<atrium_log::SegmentedLog>,
    pending: Vec<Value>,
    accepted: u64,
    rejected: u64,
}

impl CatalogWriter {
    fn push(&mut self, item: Value, place: &str) -> anyhow::Result<()> {
        match atrium_recserve::validate_item(&item, "item") {
            Ok(valid) => {
                self.pending.push(valid.to_json());
                if self.pending.len() >= ITEMS_PER_RECORD {
                    self.flush()?;
                }
            }
            Err(error) => {
                self.rejected += 1;
                tracing::warn!(%place, %error, "catalog item rejected");
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.pending);
        let count = items.len() as u64;
        let record = ControlRecord::CatalogPut {
            items,
            at: format_timestamp_ms(atrium_types::Clock::now_ms(&atrium_types::SystemClock)),
        };
        self.log.append(&[&LogRecord::encode_control(&record)])?;
        self.accepted += count;
        Ok(())
    }
}

/// A CSV row as an item: numbers and booleans typed for `price`, `stock`, `available` and
/// `replenish_every_days`; `attributes.<name>` columns nest.
fn csv_item(headers: &csv::StringRecord, row: &csv::StringRecord) -> Value {
    let mut item = Map::new();
    let mut attributes = Map::new();
    for (header, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        if let Some(name) = header.strip_prefix("attributes.") {
            attributes.insert(name.to_owned(), Value::String(cell.to_owned()));
            continue;
        }
        let value = match header {
            "price" | "stock" | "replenish_every_days" => cell
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| cell.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| Value::String(cell.to_owned())),
            "available" => match cell {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            _ => Value::String(cell.to_owned()),
        };
        item.insert(header.to_owned(), value);
    }
    if !attributes.is_empty() {
        item.insert("attributes".into(), Value::Object(attributes));
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_valid_items() {
        let headers = csv::StringRecord::from(vec![
            "id",
            "name",
            "category",
            "price",
            "stock",
            "attributes.color",
        ]);
        let row =
            csv::StringRecord::from(vec!["p-1", "Shoe", "Apparel > Shoes", "79.5", "0", "red"]);
        let item = atrium_recserve::validate_item(&csv_item(&headers, &row), "item").unwrap();
        assert_eq!(item.category, ["Apparel", "Shoes"]);
        assert_eq!(item.price, 79.5);
        assert!(!item.in_stock());
        assert_eq!(item.attributes["color"], "red");
    }
}
