use std::fs;
use std::path::{Path, PathBuf};

use atrium_log::{EventLog, LogConfig, Offset, Record, SegmentedLog};

/// A config for tests that do not care about durability across power loss.
pub fn fast_config(dir: &Path) -> LogConfig {
    let mut config = LogConfig::new(dir);
    config.sync = false;
    config
}

pub fn open(config: &LogConfig) -> SegmentedLog {
    SegmentedLog::open(config.clone()).expect("open log")
}

pub fn read_all(log: &SegmentedLog) -> Vec<Record> {
    let records = log.read(0, usize::MAX).expect("read log");
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "records come back in strictly increasing offset order"
    );
    records
}

pub fn payload_for(offset: Offset) -> Vec<u8> {
    format!(
        "{{\"event\":{offset},\"pad\":\"{}\"}}",
        "x".repeat((offset % 37) as usize)
    )
    .into_bytes()
}

/// Segment files of the log directory, in offset order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

pub fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().expect("at least one segment")
}
