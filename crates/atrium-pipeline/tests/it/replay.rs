use std::sync::Arc;

use atrium_gen::{GenConfig, Generator};
use atrium_pipeline::{Pipeline, rebuild};
use atrium_store::Store;
use atrium_types::{Channel, SystemClock};
use proptest::prelude::*;

use crate::{Harness, config, normalize};

fn generated_events(seed: u64, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut config = GenConfig::for_events(seed, count);
    config.customers = config.customers.min(40);
    let mut out = Vec::new();
    for mut event in Generator::new(config) {
        let source = event
            .as_object_mut()
            .unwrap()
            .remove("_source")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "web".into());
        let channel = match source.as_str() {
            "web" => Channel::Web,
            "pos" => Channel::Pos,
            "email" => Channel::Email,
            "backend" => Channel::Server,
            _ => Channel::App,
        };
        for payload in normalize(&source, channel, &[event]) {
            out.push((source.clone(), payload));
        }
    }
    out
}

fn ingest_all(harness: &Harness, events: &[(String, Vec<u8>)], append_batch: usize) {
    use atrium_log::EventLog;
    for chunk in events.chunks(append_batch.max(1)) {
        let slices: Vec<&[u8]> = chunk
            .iter()
            .map(|(_, payload)| payload.as_slice())
            .collect();
        harness.log.append(&slices).unwrap();
    }
}

#[test]
fn replay_from_zero_yields_identical_state() {
    let harness = Harness::new(64);
    let events = generated_events(7, 1_500);
    ingest_all(&harness, &events, 100);
    harness.catch_up();
    let original = harness.pipeline.store().digest().unwrap();
    let profiles = harness
        .pipeline
        .store()
        .read(|tables| tables.profile_count())
        .unwrap();
    assert!(profiles > 5, "generator produced profiles");

    let replay_path = harness.dir.path().join("replayed.redb");
    let replayed = rebuild(
        &replay_path,
        harness.log.clone(),
        config(500),
        Arc::new(SystemClock),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(replayed.digest().unwrap(), original);
}

#[test]
fn restart_resumes_exactly_where_it_stopped() {
    let harness = Harness::new(50);
    let events = generated_events(11, 800);
    ingest_all(&harness, &events, 100);
    // Apply a few batches, then "crash" (drop the pipeline and store) and reopen.
    for _ in 0..5 {
        harness.pipeline.step().unwrap();
    }
    let stopped_at = harness.pipeline.applied_offset();
    assert!(stopped_at > 0 && stopped_at < 800);
    let Harness { dir, log, pipeline } = harness;
    drop(pipeline);
    let store = Arc::new(Store::open(dir.path().join("state.redb")).unwrap());
    assert_eq!(store.pipeline_offset().unwrap(), stopped_at);
    let resumed = Pipeline::new(
        log.clone(),
        store.clone(),
        config(50),
        Arc::new(SystemClock),
    )
    .unwrap();
    resumed.run_until_caught_up().unwrap();

    let replayed = rebuild(
        &dir.path().join("fresh.redb"),
        log,
        config(1_000),
        Arc::new(SystemClock),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(store.digest().unwrap(), replayed.digest().unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// State does not depend on how the log was cut into batches, by writers or by the pipeline.
    #[test]
    fn state_is_independent_of_batch_boundaries(seed in 0u64..1_000, append_batch in 1usize..200, pipeline_batch in 1usize..300) {
        let events = generated_events(seed, 400);
        let harness = Harness::new(pipeline_batch);
        ingest_all(&harness, &events, append_batch);
        harness.catch_up();
        let reference = Harness::new(10_000);
        ingest_all(&reference, &events, 10_000);
        reference.catch_up();
        prop_assert_eq!(harness.pipeline.store().digest().unwrap(), reference.pipeline.store().digest().unwrap());
    }
}
