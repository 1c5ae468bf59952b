use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use atrium_log::{EventLog, LogConfig, SegmentedLog};

use crate::common::read_all;

const THREADS: usize = 8;
const APPENDS_PER_THREAD: usize = 200;

fn payload(thread: usize, sequence: usize, part: usize) -> Vec<u8> {
    format!("t{thread}-s{sequence}-p{part}").into_bytes()
}

/// Runs 8 threads x 200 appends (1-3 records each) with real fdatasync and checks that every
/// record is stored exactly once, batches are contiguous and offsets are dense.
fn hammer(config: LogConfig) {
    let log = Arc::new(SegmentedLog::open(config.clone()).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut acknowledged = Vec::new();
                for sequence in 0..APPENDS_PER_THREAD {
                    let parts = 1 + (thread + sequence) % 3;
                    let payloads: Vec<Vec<u8>> = (0..parts)
                        .map(|part| payload(thread, sequence, part))
                        .collect();
                    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    let first = log.append(&slices).unwrap();
                    assert!(
                        log.end_offset() >= first + parts as u64,
                        "acknowledged means visible"
                    );
                    acknowledged.push((first, payloads));
                }
                acknowledged
            })
        })
        .collect();
    let mut expected: HashMap<u64, Vec<u8>> = HashMap::new();
    for worker in workers {
        let acknowledged = worker.join().unwrap();
        assert!(
            acknowledged.windows(2).all(|w| w[0].0 < w[1].0),
            "one thread's batches get increasing offsets"
        );
        for (first, payloads) in acknowledged {
            for (i, payload) in payloads.into_iter().enumerate() {
                let previous = expected.insert(first + i as u64, payload);
                assert!(
                    previous.is_none(),
                    "offset {} assigned twice",
                    first + i as u64
                );
            }
        }
    }

    let records = read_all(&log);
    assert_eq!(records.len(), expected.len());
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.offset, index as u64, "offsets are dense");
        assert_eq!(Some(&record.payload), expected.get(&record.offset));
    }
    let stats = log.stats();
    assert_eq!(stats.appends, (THREADS * APPENDS_PER_THREAD) as u64);
    assert_eq!(stats.end_offset, records.len() as u64);
    assert!(
        stats.syncs < stats.appends,
        "group commit must share syncs between writers: {stats:?}"
    );
    drop(log);

    let reopened = SegmentedLog::open(config).unwrap();
    assert_eq!(read_all(&reopened), records, "everything survives a reopen");
}

#[test]
fn concurrent_appenders_get_dense_offsets_and_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    hammer(LogConfig::new(dir.path()));
}

#[test]
fn concurrent_appenders_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path());
    config.segment_bytes = 4 * 1024;
    config.max_batch_bytes = 512;
    hammer(config);
}

#[test]
fn readers_never_see_gaps_while_writers_roll_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path());
    config.sync = false;
    config.segment_bytes = 1024;
    let log = Arc::new(SegmentedLog::open(config).unwrap());
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                log.append(&[format!("record-{i}").as_bytes()]).unwrap();
            }
        })
    };
    let mut next = 0u64;
    while next < 3000 {
        log.wait_for(next, std::time::Duration::from_secs(5));
        for record in log.read(next, 97).unwrap() {
            assert_eq!(
                record.offset, next,
                "a tailing reader sees every offset in order"
            );
            assert_eq!(record.payload, format!("record-{next}").into_bytes());
            next += 1;
        }
    }
    writer.join().unwrap();
}
