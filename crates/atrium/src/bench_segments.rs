//! `atrium bench segments`: what real-time segments cost the pipeline. The same generated shop
//! history is applied twice by the real pipeline over a real log and state store — once with no
//! definitions (the reference, measured in the same run) and once with `--segments` segments and
//! `--traits` computed traits defined before the first event — then one more segment is defined
//! over the full history (backfill), and the per-profile state is measured. Finally the pipeline
//! runs on its thread while events are appended at `--paced-rate`, and the time from the
//! durable append to the committed membership (same transaction as the profile) is reported.
//!
//! With `--backfill-events N` only backfill is measured, at a size the history cannot be held
//! in memory: N generated events (about one profile per ten events) are streamed into the log
//! and applied with no definitions (the reference), then one new segment on a rare event, one
//! on a frequent event, one on traits only, and one computed trait are defined in turn and each
//! backfill is timed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::Pipeline;
use atrium_types::{Clock, DefinitionKind, LogRecord, SystemClock, format_timestamp_ms};
use clap::Args;
use serde_json::Value;

#[derive(Args, Clone)]
pub struct SegmentsBenchArgs {
    /// Generated events in the history.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Active segments (a realistic mix of every condition kind).
    #[arg(long, default_value_t = 100)]
    pub segments: usize,
    /// Active computed traits.
    #[arg(long, default_value_t = 20)]
    pub traits: usize,
    /// Offered load (events/s) of the freshness phase; 0 skips it.
    #[arg(long, default_value_t = 5_000)]
    pub paced_rate: usize,
    /// Duration of the freshness phase, in seconds.
    #[arg(long, default_value_t = 5)]
    pub paced_seconds: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Measure only backfill over this many generated events (about one profile per ten
    /// events); 0 runs the benchmark above.
    #[arg(long, default_value_t = 0)]
    pub backfill_events: usize,
    /// Data directory of the backfill measurement. When it already holds an applied history,
    /// that history is reused (nothing is generated); otherwise it is created and kept.
    /// Default: a temporary directory, deleted afterwards.
    #[arg(long)]
    pub backfill_dir: Option<PathBuf>,
}

/// The generated history as log payloads, received at their event time.
fn history(events: usize, seed: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let bar = crate::progress_bar(events as u64, "generating");
    let mut payloads = Vec::with_capacity(events);
    for event in atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events)) {
        payloads.extend(atrium_gen::harness::log_payloads(event)?.0);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(payloads)
}

struct Run {
    _dir: tempfile::TempDir,
    log: Arc<SegmentedLog>,
    pipeline: Arc<Pipeline>,
}

fn open(records: &[Vec<u8>]) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let (log, pipeline) = open_in(dir.path())?;
    for chunk in records.chunks(1_000) {
        let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        log.append(&slices)?;
    }
    Ok(Run {
        _dir: dir,
        log,
        pipeline,
    })
}

/// The log and the pipeline of a data directory (created when missing).
fn open_in(dir: &Path) -> anyhow::Result<(Arc<SegmentedLog>, Arc<Pipeline>)> {
    let log = Arc::new(SegmentedLog::open(LogConfig::new(dir.join("log")))?);
    let pipeline = crate::bench::pipeline_in(log.clone(), dir)?;
    Ok((log, pipeline))
}

/// Applies the whole log; returns the seconds it took.
fn apply_all(run: &Run, label: &str) -> anyhow::Result<f64> {
    let end = run.log.end_offset();
    let bar = crate::progress_bar(end, label);
    let started = Instant::now();
    while run.pipeline.applied_offset() < end {
        run.pipeline.step()?;
        bar.set_position(run.pipeline.applied_offset());
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(args: SegmentsBenchArgs) -> anyhow::Result<()> {
    if args.backfill_events > 0 {
        return run_backfill(&args);
    }
    let events = history(args.events, args.seed)?;
    let first_ms = events
        .first()
        .and_then(|payload| serde_json::from_slice::<Value>(payload).ok())
        .and_then(|event| {
            event
                .get("receivedAt")
                .and_then(Value::as_str)
                .and_then(atrium_types::parse_timestamp_ms)
        })
        .context("the generator produced no events")?;
    let last_ms = events
        .last()
        .and_then(|payload| serde_json::from_slice::<Value>(payload).ok())
        .and_then(|event| {
            event
                .get("receivedAt")
                .and_then(Value::as_str)
                .and_then(atrium_types::parse_timestamp_ms)
        })
        .unwrap_or(first_ms);

    // Reference: the same history, no definitions.
    let reference = open(&events)?;
    let reference_seconds = apply_all(&reference, "reference (no segments)")?;
    let profiles = reference
        .pipeline
        .store()
        .read(|tables| tables.profile_count())?;
    drop(reference);

    // With definitions before the first event.
    let mut records =
        atrium_gen::harness::bench_definition_records(args.segments, args.traits, first_ms - 1);
    records.extend(events.iter().cloned());
    let with = open(&records)?;
    let with_seconds = apply_all(&with, "with segments")?;
    let (state_bytes, states, members) = with.pipeline.store().read(|tables| {
        let (bytes, count) = tables.segment_state_size()?;
        let mut members = 0;
        for (id, _) in atrium_gen::segments::bench_segments(args.segments) {
            members += tables.segment_member_count(&id)?;
        }
        Ok((bytes, count, members))
    })?;

    // Backfill: one more segment over the whole history.
    let (backfill_id, backfill_body) = atrium_gen::segments::bench_segments(args.segments + 1)
        .pop()
        .context("one more segment")?;
    let backfill_id = format!("{backfill_id}_backfill");
    let mut backfill_body = backfill_body;
    backfill_body["id"] = Value::String(backfill_id.clone());
    with.log.append(&[&atrium_gen::harness::definition_record(
        DefinitionKind::Segment,
        &backfill_id,
        backfill_body,
        last_ms + 1,
    )])?;
    let started = Instant::now();
    with.pipeline.run_until_caught_up()?;
    let backfill_seconds = started.elapsed().as_secs_f64();
    let backfill_members = with
        .pipeline
        .store()
        .read(|tables| tables.segment_member_count(&backfill_id))?;

    // Freshness under a paced load, with every definition active.
    let mut freshness = None;
    if args.paced_rate > 0 {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = with.pipeline.clone().spawn(stop.clone());
        let paced = history(args.paced_rate * args.paced_seconds as usize, args.seed + 1)?;
        // A watcher records when each appended batch becomes visible (its offsets applied:
        // memberships are committed in the same transaction).
        let pending = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<(
            u64,
            Instant,
        )>::new()));
        let watcher_stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let pending = pending.clone();
            let pipeline = with.pipeline.clone();
            let watcher_stop = watcher_stop.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                loop {
                    let applied = pipeline.applied_offset();
                    let mut queue = pending.lock().expect("watcher lock");
                    while queue.front().is_some_and(|(end, _)| *end <= applied) {
                        let (_, appended) = queue.pop_front().expect("front exists");
                        latencies.push(appended.elapsed().as_secs_f64() * 1e3);
                    }
                    let done = queue.is_empty() && watcher_stop.load(Ordering::Acquire);
                    drop(queue);
                    if done {
                        return latencies;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let tick = Duration::from_millis(10);
        let per_tick = (args.paced_rate / 100).max(1);
        let started = Instant::now();
        for (index, chunk) in paced.chunks(per_tick).enumerate() {
            let due = started + tick * index as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let now = format_timestamp_ms(SystemClock.now_ms());
            let stamped: Vec<Vec<u8>> = chunk
                .iter()
                .map(|payload| {
                    let mut event: Value = serde_json::from_slice(payload).expect("our payload");
                    event["receivedAt"] = Value::String(now.clone());
                    serde_json::to_vec(&event).expect("serializes")
                })
                .collect();
            let slices: Vec<&[u8]> = stamped.iter().map(Vec::as_slice).collect();
            let appended = Instant::now();
            let first = with.log.append(&slices)?;
            pending
                .lock()
                .expect("watcher lock")
                .push_back((first + slices.len() as u64, appended));
        }
        let end = with.log.end_offset();
        with.pipeline.wait_applied(end, Duration::from_secs(120));
        watcher_stop.store(true, Ordering::Release);
        let mut latencies = watcher.join().expect("watcher thread");
        stop.store(true, Ordering::Release);
        thread.join().ok();
        latencies.sort_by(f64::total_cmp);
        let at = |quantile: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * quantile).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        freshness = Some((paced.len() as u64, at(0.5), at(0.99)));
    }

    let n = events.len() as f64;
    let reference_rate = n / reference_seconds;
    let with_rate = n / with_seconds;
    println!(
        "segments benchmark ({} events, {profiles} profiles)",
        events.len()
    );
    println!(
        "  reference pipeline (no definitions):     {reference_rate:>10.0} events/s ({reference_seconds:.2} s)"
    );
    println!(
        "  with {} segments + {} computed traits:  {with_rate:>10.0} events/s ({with_seconds:.2} s), ratio {:.2}",
        args.segments,
        args.traits,
        with_rate / reference_rate
    );
    println!(
        "  added per event (mean):                  {:>10.1} µs",
        (with_seconds - reference_seconds) / n * 1e6
    );
    println!(
        "  segment state:                           {:>10.0} bytes per profile ({states} profiles, {members} memberships)",
        state_bytes as f64 / states.max(1) as f64
    );
    println!(
        "  backfill of one new segment:             {backfill_seconds:>10.2} s over {} events ({backfill_members} members)",
        events.len()
    );
    if let Some((count, p50, p99)) = freshness {
        println!(
            "  append-to-visible at {} events/s ({count} events): p50 {p50:.1} ms, p99 {p99:.1} ms",
            args.paced_rate
        );
    }
    Ok(())
}

/// Streams `events` generated events into `log` as collection would store them (received at
/// their event time, so the shop has been live all along); returns the last `receivedAt`.
fn stream_history(log: &SegmentedLog, events: usize, seed: u64) -> anyhow::Result<i64> {
    let config = atrium_gen::GenConfig {
        // About one profile per ten events (a customer has 1.4 profiles on average).
        customers: (events / 14).max(50),
        ..atrium_gen::GenConfig::for_events(seed, events)
    };
    let bar = crate::progress_bar(events as u64, "generating");
    let mut last_ms = 0;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(1_000);
    let append = |batch: &mut Vec<Vec<u8>>| -> anyhow::Result<()> {
        let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        log.append(&slices)?;
        batch.clear();
        Ok(())
    };
    for event in atrium_gen::Generator::new(config) {
        let (payloads, received) = atrium_gen::harness::log_payloads(event)?;
        last_ms = last_ms.max(received);
        batch.extend(payloads);
        if batch.len() >= 1_000 {
            append(&mut batch)?;
        }
        bar.inc(1);
    }
    if !batch.is_empty() {
        append(&mut batch)?;
    }
    bar.finish_and_clear();
    Ok(last_ms)
}

/// `--backfill-events`: backfill of new definitions over a large applied history.
fn run_backfill(args: &SegmentsBenchArgs) -> anyhow::Result<()> {
    let temporary = match &args.backfill_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let dir = match (&args.backfill_dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temporary)) => temporary.path().to_path_buf(),
        (None, None) => unreachable!("one of them is set"),
    };
    std::fs::create_dir_all(&dir)?;
    let (log, pipeline) = open_in(&dir)?;
    let mut reference = None;
    if log.end_offset() == 0 {
        let started = Instant::now();
        stream_history(&log, args.backfill_events, args.seed)?;
        let generate_seconds = started.elapsed().as_secs_f64();
        let applied_seconds = {
            let end = log.end_offset();
            let bar = crate::progress_bar(end, "reference (no definitions)");
            let started = Instant::now();
            while pipeline.applied_offset() < end {
                pipeline.step()?;
                bar.set_position(pipeline.applied_offset());
            }
            bar.finish_and_clear();
            started.elapsed().as_secs_f64()
        };
        reference = Some((generate_seconds, applied_seconds));
    } else {
        pipeline.run_until_caught_up()?;
    }
    let history_end = log.end_offset();
    let last_ms = log
        .read(history_end.saturating_sub(1), 1)?
        .first()
        .and_then(|record| serde_json::from_slice::<Value>(&record.payload).ok())
        .and_then(|event| {
            event
                .get("receivedAt")
                .and_then(Value::as_str)
                .and_then(atrium_types::parse_timestamp_ms)
        })
        .unwrap_or(0);
    let (profiles, log_bytes) = (
        pipeline.store().read(|tables| tables.profile_count())?,
        directory_bytes(&dir.join("log"))?,
    );
    println!(
        "backfill benchmark ({history_end} log records, {profiles} profiles, log {:.2} GB)",
        log_bytes as f64 / 1e9
    );
    if let Some((generate_seconds, applied_seconds)) = reference {
        println!(
            "  generated and appended in {generate_seconds:.1} s; reference pipeline (no definitions): {:>8.0} events/s ({applied_seconds:.1} s)",
            history_end as f64 / applied_seconds
        );
    }

    // Reference for the scan: what backfill did per event before it filtered by event name —
    // read every record and decode it into a `serde_json::Value` (one thread).
    let started = Instant::now();
    let mut from = 0;
    let mut decoded = 0u64;
    while from < history_end {
        let records = log.read(from, 4_096)?;
        let Some(last) = records.last() else { break };
        from = last.offset + 1;
        for record in &records {
            if matches!(LogRecord::decode(&record.payload), Ok(LogRecord::Event(_))) {
                decoded += 1;
            }
        }
    }
    let full_seconds = started.elapsed().as_secs_f64();
    println!(
        "  reference scan, every record decoded in full: {full_seconds:>7.2} s = {:>9.0} events/s ({decoded} events)",
        history_end as f64 / full_seconds
    );

    // Unique ids, so a reused directory measures new definitions again.
    let run_id = format!("{:x}", SystemClock.now_ms());
    let segments = atrium_gen::segments::bench_segments(104);
    let mut definitions = Vec::new();
    for (index, what) in [
        (
            100,
            "segment on a rare event (Order Completed in the last 41 days)",
        ),
        (
            98,
            "segment on a frequent event (Product Viewed, between-ago window)",
        ),
        (103, "segment on traits only (tier)"),
    ] {
        let (_, mut body) = segments[index].clone();
        let id = format!("backfill_{run_id}_{index}");
        body["id"] = Value::String(id.clone());
        definitions.push((DefinitionKind::Segment, id, body, what));
    }
    let (_, mut trait_body) = atrium_gen::segments::bench_computed_traits(1)
        .pop()
        .context("one computed trait")?;
    let trait_id = format!("backfill_{run_id}_trait");
    trait_body["id"] = Value::String(trait_id.clone());
    definitions.push((
        DefinitionKind::ComputedTrait,
        trait_id,
        trait_body,
        "computed trait on a frequent event (Product Viewed count, 7 days)",
    ));
    for (step, (kind, id, body, what)) in definitions.into_iter().enumerate() {
        log.append(&[&atrium_gen::harness::definition_record(
            kind,
            &id,
            body,
            last_ms + 1 + step as i64,
        )])?;
        let started = Instant::now();
        pipeline.run_until_caught_up()?;
        let seconds = started.elapsed().as_secs_f64();
        let members = match kind {
            DefinitionKind::Segment => pipeline
                .store()
                .read(|tables| tables.segment_member_count(&id))?
                .to_string(),
            _ => "-".to_owned(),
        };
        println!(
            "  backfill, {what}: {seconds:>7.2} s = {:>9.0} events/s ({members} members)",
            history_end as f64 / seconds
        );
    }
    drop(pipeline);
    drop(log);
    drop(temporary);
    Ok(())
}

fn directory_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}
