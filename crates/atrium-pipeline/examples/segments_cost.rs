//! What real-time segments cost the pipeline, without the full `atrium` binary: the core of
//! `atrium bench segments` (the reference pass with no definitions, then the same history with
//! `atrium_gen::segments::bench_segments` and `bench_computed_traits` defined before the first
//! event), as a quick release-mode A/B harness for engine work.
//!
//! ```sh
//! cargo run --release -p atrium-pipeline --example segments_cost -- [events] [segments] [traits] [mode]
//! ```
//! `mode` is `both` (default), `reference` or `with` (the latter two for profiling one pass).
//! With `SEGMENTS_COST_NO_DIGEST=1` the store is not hashed afterwards (instruction counts of the
//! pipeline alone: `valgrind --tool=callgrind`, total minus the reference pass's total).

use std::sync::Arc;
use std::time::Instant;

use atrium_identity::IdentityRules;
use atrium_log::{EventLog, LogConfig, SegmentedLog};
use atrium_pipeline::{IdentifierHasher, Pipeline, PipelineConfig, ProfileSegmentState};
use atrium_store::Store;
use atrium_types::SystemClock;
use sha2::{Digest, Sha256};

/// The generated history as log payloads, received at their event time; with the first
/// `receivedAt`.
fn history(events: usize, seed: u64) -> (Vec<Vec<u8>>, i64) {
    let mut payloads = Vec::with_capacity(events);
    let mut first_ms = None;
    for event in atrium_gen::Generator::new(atrium_gen::GenConfig::for_events(seed, events)) {
        let (normalized, received) =
            atrium_gen::harness::log_payloads(event).expect("generated events normalize");
        first_ms.get_or_insert(received);
        payloads.extend(normalized);
    }
    (payloads, first_ms.unwrap_or(0))
}

/// A digest of the store that does not depend on how segment states are laid out in their
/// rows: every other table as stored, and each profile's decoded segment state (equal before
/// and after a change of the row format when the evaluation is the same).
fn semantic_digest(store: &Store) -> String {
    let mut hasher = Sha256::new();
    let digests = store
        .read(|tables| tables.table_digests())
        .expect("table digests");
    for (name, digest) in digests {
        if name != "segment_states" {
            hasher.update(name.as_bytes());
            hasher.update(digest.as_bytes());
        }
    }
    // Reading through a write transaction that changes nothing: only it lists the profiles.
    store
        .write(|tables| -> Result<(), atrium_store::StoreError> {
            for profile in tables.segment_state_profiles()? {
                let row = tables.segment_state(&profile)?.unwrap_or_default();
                let decoded = ProfileSegmentState::decode(&row)?;
                hasher.update(profile.as_bytes());
                hasher.update(serde_json::to_vec(&decoded).expect("a state serializes"));
            }
            Ok(())
        })
        .expect("decoded segment states");
    hex::encode(hasher.finalize())
}

/// Applies `records` through a fresh log and store; returns the seconds the pipeline took,
/// (state bytes, profiles with state), and the digest of every table (equal digests: the same
/// state, memberships and queued derived events).
fn apply(records: &[Vec<u8>]) -> (f64, u64, u64, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(SegmentedLog::open(LogConfig::new(dir.path().join("log"))).expect("log"));
    for chunk in records.chunks(1_000) {
        let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        log.append(&slices).expect("append");
    }
    let store = Arc::new(Store::open(dir.path().join("state.redb")).expect("store"));
    let config = PipelineConfig {
        // The server's default.
        batch_records: 2_000,
        rules: IdentityRules::default().compile().expect("default rules"),
        hasher: IdentifierHasher::new(b"bench-salt".to_vec()),
    };
    let pipeline =
        Pipeline::new(log.clone(), store, config, Arc::new(SystemClock)).expect("pipeline");
    let end = log.end_offset();
    let started = Instant::now();
    let cpu_started = atrium_gen::harness::cpu_seconds();
    while pipeline.applied_offset() < end {
        pipeline.step().expect("step");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  (pipeline CPU {:.2} s)",
        atrium_gen::harness::cpu_seconds() - cpu_started
    );
    let (bytes, states, derived) = pipeline
        .store()
        .read(|tables| {
            let (bytes, states) = tables.segment_state_size()?;
            Ok((bytes, states, tables.outbox_len()?))
        })
        .expect("state size");
    if derived > 0 {
        println!("  ({derived} derived Segment Entered/Exited events queued)");
    }
    // `SEGMENTS_COST_NO_DIGEST=1` skips hashing the store (for instruction counts of the
    // pipeline alone, e.g. under callgrind).
    if std::env::var_os("SEGMENTS_COST_NO_DIGEST").is_some() {
        return (seconds, bytes, states, "-".repeat(16));
    }
    let digest = pipeline.store().digest().expect("digest");
    if states > 0 {
        println!(
            "  (semantic digest {})",
            &semantic_digest(pipeline.store())[..16]
        );
    }
    (seconds, bytes, states, digest)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: usize| {
        args.get(index)
            .map(|text| text.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (events, segments, traits) = (number(0, 100_000), number(1, 100), number(2, 20));
    let mode = args.get(3).map(String::as_str).unwrap_or("both");
    let (payloads, first_ms) = history(events, 11);
    let n = payloads.len() as f64;
    let mut reference_seconds = None;
    if mode != "with" {
        let (seconds, _, _, _) = apply(&payloads);
        println!("reference: {:>8.0} events/s ({seconds:.2} s)", n / seconds);
        reference_seconds = Some(seconds);
    }
    if mode != "reference" {
        let mut records =
            atrium_gen::harness::bench_definition_records(segments, traits, first_ms - 1);
        records.extend(payloads.iter().cloned());
        let (seconds, bytes, states, digest) = apply(&records);
        println!(
            "with {segments} segments + {traits} traits: {:>8.0} events/s ({seconds:.2} s), state {:.0} bytes/profile, digest {}",
            n / seconds,
            bytes as f64 / states.max(1) as f64,
            &digest[..16]
        );
        if let Some(reference) = reference_seconds {
            println!(
                "added per event: {:.1} µs (ratio {:.2})",
                (seconds - reference) / n * 1e6,
                reference / seconds
            );
        }
    }
}
