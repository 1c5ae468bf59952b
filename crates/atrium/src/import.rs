//! `atrium import`: events from JSONL or CSV, normalized like HTTP input, appended to the log and
//! applied by the pipeline.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use atrium_log::EventLog;
use atrium_types::{Channel, SourceConfig};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

#[derive(Args)]
pub struct ImportArgs {
    /// File to import, or `-` for stdin.
    file: PathBuf,
    #[command(flatten)]
    data: crate::DataArgs,
    /// Input format (default: from the file extension, else JSONL).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Source name recorded on every imported event.
    #[arg(long, default_value = "import")]
    source: String,
    /// Channel recorded on every imported event.
    #[arg(long, default_value = "server")]
    channel: Channel,
    /// Events per log append.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// The file holds catalog items (JSONL objects, or CSV with item-field columns), not events.
    #[arg(long)]
    catalog: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.catalog {
        let csv = args.format == Some(Format::Csv)
            || (args.format.is_none()
                && args.file.extension().and_then(|e| e.to_str()) == Some("csv"));
        return crate::recs::import_catalog(&args.file, &args.data, csv);
    }
    let config = args.data.load()?;
    let _lock = atrium_server::state::lock_data_dir(&config.data_dir)?;
    let log = atrium_server::state::open_log(&config)?;
    let store = Arc::new(atrium_store::Store::open(
        atrium_server::state::store_path(&config),
    )?);
    let pipeline_config = atrium_server::state::pipeline_config(&config, &config.data_dir)?;
    let pipeline = atrium_pipeline::Pipeline::new(
        log.clone(),
        store,
        pipeline_config,
        Arc::new(atrium_types::SystemClock),
    )?;

    let format = args.format.unwrap_or_else(|| {
        match args
            .file
            .extension()
            .and_then(|extension| extension.to_str())
        {
            Some("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    });
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let total_bytes = std::fs::metadata(&args.file)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let bar = crate::progress_bar(total_bytes, "importing (bytes)");
    let source = SourceConfig {
        name: args.source.clone(),
        channel: args.channel,
    };
    let mut importer = Importer {
        source,
        log: log.clone(),
        pending: Vec::new(),
        batch: args.batch.max(1),
        accepted: 0,
        rejected: 0,
    };

    match format {
        Format::Jsonl => {
            for (line_number, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("reading line {}", line_number + 1))?;
                bar.inc(line.len() as u64 + 1);
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => importer.push(event)?,
                    Err(error) => {
                        importer.rejected += 1;
                        tracing::warn!(line = line_number + 1, %error, "skipping line that is not json");
                    }
                }
            }
        }
        Format::Csv => {
            let mut csv = csv::Reader::from_reader(reader);
            let headers = csv.headers().context("reading the csv header")?.clone();
            for (row_number, row) in csv.records().enumerate() {
                let row = row.with_context(|| format!("reading csv row {}", row_number + 2))?;
                bar.inc(row.as_slice().len() as u64 + 1);
                importer.push(csv_event(&headers, &row))?;
            }
        }
    }
    importer.flush()?;
    bar.finish();
    let end = log.end_offset();
    let apply_bar = crate::progress_bar(end.saturating_sub(pipeline.applied_offset()), "applying");
    let start = pipeline.applied_offset();
    while pipeline.applied_offset() < end {
        if pipeline.step()? == 0 {
            break;
        }
        apply_bar.set_position(pipeline.applied_offset() - start);
    }
    apply_bar.finish();
    println!(
        "imported {} events ({} rejected); log end offset {end}",
        importer.accepted, importer.rejected
    );
    if importer.accepted == 0 && importer.rejected > 0 {
        bail!("nothing was imported: every event was rejected");
    }
    Ok(())
}

struct Importer {
    source: SourceConfig,
    log: Arc<atrium_log::SegmentedLog>,
    pending: Vec<Value>,
    batch: usize,
    accepted: u64,
    rejected: u64,
}

impl Importer {
    fn push(&mut self, mut event: Value) -> anyhow::Result<()> {
        atrium_gen::take_source(&mut event);
        self.pending.push(event);
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.pending);
        let received_at_ms = atrium_types::Clock::now_ms(&atrium_types::SystemClock);
        let normalized =
            atrium_collect::normalize_events(&self.source, received_at_ms, None, &events)?;
        for rejection in &normalized.rejected {
            tracing::warn!(index = rejection.index, code = ?rejection.code, message = %rejection.message, "event rejected");
        }
        self.rejected += normalized.rejected.len() as u64;
        let payloads: Vec<&[u8]> = normalized
            .accepted
            .iter()
            .map(|event| event.payload.as_slice())
            .collect();
        if !payloads.is_empty() {
            self.log.append(&payloads)?;
        }
        self.accepted += payloads.len() as u64;
        Ok(())
    }
}

/// A CSV row as a Segment event: plain columns are top-level fields (`type`, `event`, `userId`,
/// `anonymousId`, `timestamp`, `messageId`); dotted columns nest (`properties.revenue`,
/// `traits.email`, `context.campaign.source`). Numbers and booleans are typed.
fn csv_event(headers: &csv::StringRecord, row: &csv::StringRecord) -> Value {
    let mut event = Map::new();
    for (header, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        let typed = match header {
            "userId" | "anonymousId" | "messageId" | "event" | "type" | "timestamp" | "name" => {
                Value::String(cell.to_owned())
            }
            _ => typed_cell(cell),
        };
        let mut target = &mut event;
        let mut parts = header.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                target.insert(part.to_owned(), typed.clone());
                break;
            }
            let entry = target
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            target = entry.as_object_mut().expect("just made an object");
        }
    }
    if !event.contains_key("type") {
        let implied = if event.contains_key("event") {
            "track"
        } else {
            "identify"
        };
        event.insert("type".into(), Value::String(implied.into()));
    }
    Value::Object(event)
}

fn typed_cell(cell: &str) -> Value {
    if let Ok(integer) = cell.parse::<i64>() {
        return Value::from(integer);
    }
    if let Ok(float) = cell.parse::<f64>()
        && float.is_finite()
    {
        return Value::from(float);
    }
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(cell.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_nested_events() {
        let headers = csv::StringRecord::from(vec![
            "userId",
            "event",
            "properties.revenue",
            "properties.order_id",
            "context.campaign.source",
        ]);
        let row = csv::StringRecord::from(vec!["42", "Order Completed", "19.5", "o-1", "google"]);
        let event = csv_event(&headers, &row);
        assert_eq!(event["type"], "track");
        assert_eq!(event["userId"], "42");
        assert_eq!(event["properties"]["revenue"], 19.5);
        assert_eq!(event["properties"]["order_id"], "o-1");
        assert_eq!(event["context"]["campaign"]["source"], "google");
    }
}
