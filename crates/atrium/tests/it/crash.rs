//! Crash safety of the real binary: SIGKILL while batches stream in, restart on the same data
//! directory, and check through the public API that every acknowledged event survived exactly
//! once, that the profiles caught up, and that deduplication survived the crash.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Served, admin_get, client, serve, serve_with_env};

const WRITE_KEY: &str = "wk_crash_test_1";
const ADMIN_KEY: &str = "sk_crash_test_1";
const EVENTS_PER_BATCH: usize = 20;
const USERS: usize = 16;
const SENDERS: usize = 2;
/// Upper bound on batches, so the re-send after the restart stays small even on a fast machine.
const MAX_BATCHES: usize = 1_500;
/// Each wait below is bounded; the whole test stays well under 30 s.
const STEP_LIMIT: Duration = Duration::from_secs(10);

fn user(index: usize) -> String {
    format!("crash_u_{index:02}")
}

fn message_id(batch: usize, event: usize) -> String {
    format!("crash-b{batch:05}-e{event:02}")
}

fn batch_body(batch: usize) -> Value {
    let events: Vec<Value> = (0..EVENTS_PER_BATCH)
        .map(|event| {
            json!({
                "type": "track",
                "event": "Crash Test Event",
                "userId": user((batch * EVENTS_PER_BATCH + event) % USERS),
                "messageId": message_id(batch, event),
                "properties": {"batch": batch, "event": event},
            })
        })
        .collect();
    json!({"batch": events, "writeKey": WRITE_KEY})
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// 200 with every event accepted.
    Acked,
    /// No 200 (connection error, timeout or error status): may or may not be stored.
    Unacked,
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_event_and_keeps_dedup() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut first = serve(dir.path(), WRITE_KEY, ADMIN_KEY, STEP_LIMIT);

    let outcomes = stream_then_kill(&mut first, 0..MAX_BATCHES, Duration::from_millis(1_500));
    let first_stderr = first.stderr.lock().expect("stderr").clone();
    let acked: BTreeSet<usize> = outcomes
        .iter()
        .filter(|(_, outcome)| **outcome == Outcome::Acked)
        .map(|(batch, _)| *batch)
        .collect();
    let attempted = outcomes.len();
    assert!(
        acked.len() >= 5,
        "only {} batches were acknowledged in 1.5 s; server stderr:\n{first_stderr}",
        acked.len()
    );
    assert!(
        attempted < MAX_BATCHES,
        "the sender ran out of batches before the kill; raise MAX_BATCHES"
    );
    eprintln!(
        "crash test: {} batches acknowledged, {} attempted before SIGKILL",
        acked.len(),
        attempted
    );

    // Restart on the same data directory.
    let second = serve(dir.path(), WRITE_KEY, ADMIN_KEY, STEP_LIMIT);
    let http = client(Duration::from_secs(5));
    let wait_caught_up = |what: &str| {
        let started = Instant::now();
        loop {
            let (status, body) =
                admin_get(&http, &format!("{}/v1/pipeline", second.base), ADMIN_KEY);
            assert_eq!(status, 200, "GET /v1/pipeline: {body}");
            if body["applied_offset"] == body["log_end_offset"] {
                return body;
            }
            assert!(
                started.elapsed() < STEP_LIMIT,
                "pipeline did not catch up ({what}): {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let status = wait_caught_up("after restart");
    let log_end_after_restart = status["log_end_offset"].as_u64().expect("log_end_offset");
    let acked_events = (acked.len() * EVENTS_PER_BATCH) as u64;
    assert!(
        log_end_after_restart >= acked_events,
        "log has {log_end_after_restart} records but {acked_events} events were acknowledged"
    );

    // Every acknowledged event is in its user's timeline exactly once.
    let timelines = read_timelines(&http, &second.base);
    for &batch in &acked {
        for event in 0..EVENTS_PER_BATCH {
            let user = user((batch * EVENTS_PER_BATCH + event) % USERS);
            let id = message_id(batch, event);
            let count = timelines
                .get(&user)
                .and_then(|ids| ids.get(&id))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                count, 1,
                "acknowledged event {id} of {user} appears {count} times after the crash"
            );
        }
    }
    for (user, ids) in &timelines {
        for (id, count) in ids {
            assert_eq!(*count, 1, "event {id} of {user} appears {count} times");
        }
    }

    // Re-send everything: acknowledged batches are duplicates (dedup survived the crash).
    let mut newly_accepted = 0u64;
    for (&batch, &outcome) in &outcomes {
        let response = http
            .post(format!("{}/v1/batch", second.base))
            .json(&batch_body(batch))
            .send()
            .unwrap_or_else(|error| panic!("re-sending batch {batch}: {error}"));
        assert_eq!(response.status().as_u16(), 200, "re-sending batch {batch}");
        let body: Value = response.json().expect("json response");
        let accepted = body["accepted"].as_u64().expect("accepted");
        let duplicates = body["duplicates"].as_u64().expect("duplicates");
        assert_eq!(
            accepted + duplicates,
            EVENTS_PER_BATCH as u64,
            "batch {batch}: {body}"
        );
        if outcome == Outcome::Acked {
            assert_eq!(
                duplicates, EVENTS_PER_BATCH as u64,
                "acknowledged batch {batch} was not deduplicated after the crash: {body}"
            );
        }
        newly_accepted += accepted;
    }
    let status = wait_caught_up("after re-sending");
    let log_end = status["log_end_offset"].as_u64().expect("log_end_offset");
    assert_eq!(
        log_end,
        log_end_after_restart + newly_accepted,
        "the log grew by something other than the newly accepted events"
    );

    // Now every attempted event is stored exactly once and the profiles count each once.
    let distinct = (attempted * EVENTS_PER_BATCH) as u64;
    assert_eq!(log_end, distinct, "log records vs distinct events sent");
    let timelines = read_timelines(&http, &second.base);
    let stored: usize = timelines.values().map(BTreeMap::len).sum();
    assert_eq!(stored as u64, distinct, "distinct events in the timelines");
    for (user, ids) in &timelines {
        for (id, count) in ids {
            assert_eq!(
                *count, 1,
                "event {id} of {user} appears {count} times after re-sending"
            );
        }
    }
    let mut event_total = 0;
    for index in 0..USERS {
        let user = user(index);
        let (status, profile) = admin_get(
            &http,
            &format!("{}/v1/profiles/user_id:{user}", second.base),
            ADMIN_KEY,
        );
        assert_eq!(status, 200, "profile of {user}: {profile}");
        let total = profile["event_total"].as_u64().expect("event_total");
        assert_eq!(
            total as usize,
            timelines.get(&user).map(BTreeMap::len).unwrap_or(0),
            "event_total of {user} vs its timeline"
        );
        event_total += total;
    }
    assert_eq!(
        event_total, distinct,
        "sum of event_total vs distinct events"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "crash test took {:?}",
        started.elapsed()
    );
}

/// Streams batches from `batches` (in order, from `SENDERS` threads) into `served` for
/// `run_for`, then SIGKILLs it. Returns each attempted batch's outcome; a sender stops at its
/// first unacknowledged batch.
fn stream_then_kill(
    served: &mut Served,
    batches: std::ops::Range<usize>,
    run_for: Duration,
) -> BTreeMap<usize, Outcome> {
    let next_batch = Arc::new(AtomicUsize::new(batches.start));
    let killed = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let base = served.base.clone();
        let next_batch = next_batch.clone();
        let killed = killed.clone();
        let end = batches.end;
        senders.push(std::thread::spawn(move || {
            let http = client(Duration::from_secs(5));
            let mut outcomes = Vec::new();
            loop {
                let batch = next_batch.fetch_add(1, Ordering::SeqCst);
                if batch >= end {
                    break;
                }
                let response = http
                    .post(format!("{base}/v1/batch"))
                    .json(&batch_body(batch))
                    .send();
                let outcome = match response {
                    Ok(response) if response.status().as_u16() == 200 => {
                        let body: Value = response.json().unwrap_or(Value::Null);
                        assert_eq!(
                            body["accepted"],
                            json!(EVENTS_PER_BATCH),
                            "batch {batch} before the crash: {body}"
                        );
                        Outcome::Acked
                    }
                    Ok(response) => {
                        assert!(
                            killed.load(Ordering::SeqCst),
                            "batch {batch} refused before the crash: {}",
                            response.status()
                        );
                        Outcome::Unacked
                    }
                    Err(error) => {
                        assert!(
                            killed.load(Ordering::SeqCst),
                            "batch {batch} failed before the crash: {error}"
                        );
                        Outcome::Unacked
                    }
                };
                outcomes.push((batch, outcome));
                if outcome == Outcome::Unacked {
                    break;
                }
            }
            outcomes
        }));
    }
    std::thread::sleep(run_for);
    killed.store(true, Ordering::SeqCst);
    served.guard.kill();
    let mut outcomes = BTreeMap::new();
    for sender in senders {
        for (batch, outcome) in sender.join().expect("sender thread") {
            outcomes.insert(batch, outcome);
        }
    }
    outcomes
}

/// messageId → occurrences in each user's timeline, following `next_cursor` pages.
fn read_timelines(
    http: &reqwest::blocking::Client,
    base: &str,
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut timelines = BTreeMap::new();
    for index in 0..USERS {
        let user = user(index);
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{base}/v1/profiles/user_id:{user}/events?limit=500");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&before={cursor}"));
            }
            let (status, page) = admin_get(http, &url, ADMIN_KEY);
            if status == 404 && cursor.is_none() {
                break;
            }
            assert_eq!(status, 200, "{url}: {page}");
            for event in page["events"].as_array().expect("events array") {
                let id = event["messageId"].as_str().expect("messageId").to_owned();
                *ids.entry(id).or_default() += 1;
            }
            pages += 1;
            assert!(pages < 1_000, "timeline paging of {user} does not end");
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        timelines.insert(user, ids);
    }
    timelines
}

/// Warehouse settings that keep the materializer flushing (Parquet write, fsync, manifest
/// commit) and compacting all the time, so a SIGKILL lands in the middle of that work.
const BUSY_WAREHOUSE: [(&str, &str); 2] = [
    ("ATRIUM_WAREHOUSE_FLUSH_INTERVAL_MS", "20"),
    ("ATRIUM_WAREHOUSE_FLUSH_ROWS", "200"),
];

#[test]
fn sigkill_during_warehouse_materialization_loses_and_duplicates_no_row() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temporary directory");

    // Three lives, each SIGKILLed while batches stream in and the warehouse flushes, compacts
    // and (after each restart) catches up on the backlog the previous life left behind.
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut next_batch = 0;
    for life in 0..3 {
        let mut served = serve_with_env(
            dir.path(),
            WRITE_KEY,
            ADMIN_KEY,
            STEP_LIMIT,
            &BUSY_WAREHOUSE,
        );
        let lived = stream_then_kill(
            &mut served,
            next_batch..MAX_BATCHES,
            Duration::from_millis(700),
        );
        let acked = lived
            .values()
            .filter(|outcome| **outcome == Outcome::Acked)
            .count();
        assert!(
            acked >= 3,
            "life {life}: only {acked} batches acknowledged; stderr:\n{}",
            served.stderr.lock().expect("stderr")
        );
        next_batch = lived.keys().max().map_or(next_batch, |last| last + 1);
        outcomes.extend(lived);
    }
    assert!(
        next_batch < MAX_BATCHES,
        "ran out of batches; raise MAX_BATCHES"
    );

    // Last life: re-send every attempted batch (deduplicated where it was stored), then the
    // warehouse must hold exactly one row per distinct event — no more, no less.
    let served = serve_with_env(
        dir.path(),
        WRITE_KEY,
        ADMIN_KEY,
        STEP_LIMIT,
        &BUSY_WAREHOUSE,
    );
    let http = client(Duration::from_secs(5));
    let (_, before) = admin_get(&http, &format!("{}/v1/pipeline", served.base), ADMIN_KEY);
    assert!(
        before["warehouse"]["committed_offset"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "no Parquet file was committed before the last restart: {before}"
    );
    for &batch in outcomes.keys() {
        let response = http
            .post(format!("{}/v1/batch", served.base))
            .json(&batch_body(batch))
            .send()
            .unwrap_or_else(|error| panic!("re-sending batch {batch}: {error}"));
        assert_eq!(response.status().as_u16(), 200, "re-sending batch {batch}");
    }
    let distinct = (outcomes.len() * EVENTS_PER_BATCH) as u64;
    let wait_started = Instant::now();
    let status = loop {
        let (status, body) = admin_get(&http, &format!("{}/v1/pipeline", served.base), ADMIN_KEY);
        assert_eq!(status, 200, "GET /v1/pipeline: {body}");
        if body["warehouse"]["lag_records"] == json!(0) && body["log_end_offset"] == json!(distinct)
        {
            break body;
        }
        assert!(
            wait_started.elapsed() < STEP_LIMIT,
            "warehouse did not catch up with the log: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    // Count and checksum against the log: the log holds exactly the distinct events sent.
    let expected_checksum: u64 = outcomes
        .keys()
        .flat_map(|&batch| (0..EVENTS_PER_BATCH).map(move |event| (batch * 100 + event) as u64))
        .sum();
    let query = "SELECT count(*) AS n, count(DISTINCT message_id) AS distinct_ids, \
        CAST(sum(prop_number(properties, 'batch') * 100 + prop_number(properties, 'event')) AS BIGINT) \
        AS checksum FROM events";
    let response = http
        .post(format!("{}/v1/sql", served.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"query": query}))
        .send()
        .expect("POST /v1/sql");
    assert_eq!(response.status().as_u16(), 200, "POST /v1/sql");
    let body: Value = response.json().expect("json");
    let row = &body["rows"][0];
    assert_eq!(
        row["n"],
        json!(distinct),
        "rows vs log records ({status}): {body}"
    );
    assert_eq!(
        row["distinct_ids"],
        json!(distinct),
        "duplicated rows: {body}"
    );
    assert_eq!(
        row["checksum"],
        json!(expected_checksum),
        "row contents vs events sent: {body}"
    );
    eprintln!(
        "warehouse crash test: {} batches over 3 SIGKILLed lives, {distinct} rows, {:?}",
        outcomes.len(),
        started.elapsed()
    );
}
