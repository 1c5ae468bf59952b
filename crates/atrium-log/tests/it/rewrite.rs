use std::fs;
use std::path::Path;
use std::sync::Arc;

use atrium_log::{EventLog, LogConfig, SegmentedLog};

use crate::common::{fast_config, open, read_all};

const MARKER: &[u8] = b"user-4711@example.com";

fn event(offset: u64) -> Vec<u8> {
    if offset % 5 == 2 {
        let mut payload = b"{\"email\":\"".to_vec();
        payload.extend_from_slice(MARKER);
        payload.extend_from_slice(format!("\",\"n\":{offset}}}").as_bytes());
        payload
    } else {
        format!("{{\"email\":\"someone-else@example.com\",\"n\":{offset}}}").into_bytes()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// grep -r over every file under `dir`.
fn marker_on_disk(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if contains(&fs::read(&path).unwrap(), MARKER) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

fn drop_marked(_offset: u64, payload: &[u8]) -> bool {
    !contains(payload, MARKER)
}

fn check_rewrite(config: LogConfig) {
    let dir = config.dir.clone();
    let log = open(&config);
    for offset in 0..200 {
        assert_eq!(log.append(&[&event(offset)]).unwrap(), offset);
    }
    assert!(!marker_on_disk(&dir).is_empty());

    let dropped = log.rewrite(&drop_marked).unwrap();
    assert_eq!(dropped, 40);
    assert_eq!(
        marker_on_disk(&dir),
        Vec::<String>::new(),
        "erased bytes are gone from disk"
    );

    let expected: Vec<u64> = (0..200).filter(|o| o % 5 != 2).collect();
    let check = |log: &SegmentedLog, extra: &[u64]| {
        let records = read_all(log);
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        let mut want = expected.clone();
        want.extend_from_slice(extra);
        assert_eq!(
            offsets, want,
            "kept offsets are unchanged, gaps are skipped"
        );
        for record in records.iter().filter(|r| r.offset < 200) {
            assert_eq!(record.payload, event(record.offset));
        }
    };
    check(&log, &[]);
    // Reads starting inside a gap begin at the next kept record.
    assert_eq!(log.read(2, 1).unwrap()[0].offset, 3);
    assert_eq!(log.read(197, 1).unwrap()[0].offset, 198);
    assert_eq!(log.end_offset(), 200);

    assert_eq!(log.append(&[b"after rewrite"]).unwrap(), 200);
    check(&log, &[200]);
    assert_eq!(
        log.rewrite(&drop_marked).unwrap(),
        0,
        "nothing left to drop"
    );
    drop(log);

    let log = open(&config);
    assert_eq!(log.end_offset(), 201);
    check(&log, &[200]);
    assert_eq!(log.append(&[b"after reopen"]).unwrap(), 201);
    check(&log, &[200, 201]);
    assert!(marker_on_disk(&dir).is_empty());
}

#[test]
fn rewrite_drops_marked_records_from_a_single_segment() {
    let dir = tempfile::tempdir().unwrap();
    check_rewrite(LogConfig::new(dir.path()));
}

#[test]
fn rewrite_drops_marked_records_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path());
    config.segment_bytes = 512;
    check_rewrite(config);
}

#[test]
fn dropping_the_newest_records_does_not_reuse_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path());
    let log = open(&config);
    log.append(&[b"keep", b"secret", b"secret"]).unwrap();
    assert_eq!(
        log.rewrite(&|_, payload: &[u8]| payload != b"secret")
            .unwrap(),
        2
    );
    assert_eq!(log.end_offset(), 3);
    drop(log);
    let log = open(&config);
    assert_eq!(
        log.end_offset(),
        3,
        "erased offsets are never handed out again"
    );
    assert_eq!(log.append(&[b"new"]).unwrap(), 3);
    let offsets: Vec<u64> = read_all(&log).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 3]);
}

#[test]
fn rewrite_while_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 2048;
    let log = Arc::new(open(&config));
    for offset in 0..300 {
        log.append(&[&event(offset)]).unwrap();
    }
    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..300 {
                log.append(&[format!("live-{i}").as_bytes()]).unwrap();
            }
        })
    };
    let mut dropped = 0;
    for _ in 0..5 {
        dropped += log.rewrite(&drop_marked).unwrap();
    }
    appender.join().unwrap();
    assert_eq!(dropped, 60);
    assert!(marker_on_disk(dir.path()).is_empty());

    let records = read_all(&log);
    assert_eq!(records.len(), 240 + 300);
    let live: Vec<&[u8]> = records
        .iter()
        .filter(|r| r.offset >= 300)
        .map(|r| r.payload.as_slice())
        .collect();
    assert_eq!(live.len(), 300);
    for (i, payload) in live.iter().enumerate() {
        assert_eq!(*payload, format!("live-{i}").as_bytes());
    }
    drop(records);
    let reopened_records = {
        drop(Arc::try_unwrap(log).expect("sole owner"));
        read_all(&open(&config))
    };
    assert_eq!(reopened_records.len(), 540);
}
