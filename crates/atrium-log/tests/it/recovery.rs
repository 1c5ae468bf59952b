use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use atrium_log::{EventLog, LogError};

use crate::common::{fast_config, last_segment, open, payload_for, read_all, segment_files};

fn write_ten(dir: &Path) {
    let log = open(&fast_config(dir));
    for offset in 0..10 {
        log.append(&[&payload_for(offset)]).unwrap();
    }
}

fn assert_recovered_to(dir: &Path, expected_end: u64) {
    let log = open(&fast_config(dir));
    assert_eq!(log.end_offset(), expected_end);
    let records = read_all(&log);
    assert_eq!(records.len() as u64, expected_end);
    for record in &records {
        assert_eq!(record.payload, payload_for(record.offset));
    }
    assert_eq!(
        log.append(&[b"next"]).unwrap(),
        expected_end,
        "next append reuses the cut offset"
    );
    drop(log);
    let log = open(&fast_config(dir));
    assert_eq!(log.end_offset(), expected_end + 1);
    assert_eq!(log.read(expected_end, 1).unwrap()[0].payload, b"next");
}

#[test]
fn truncated_tail_is_cut_back_to_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let last = last_segment(dir.path());
    let len = fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert_recovered_to(dir.path(), 9);
}

#[test]
fn truncation_inside_a_record_header_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let last = last_segment(dir.path());
    let len = fs::metadata(&last).unwrap().len();
    let last_record_len = 16 + payload_for(9).len() as u64;
    // Leave 5 bytes of the last record's header.
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - last_record_len + 5)
        .unwrap();
    assert_recovered_to(dir.path(), 9);
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let last = last_segment(dir.path());
    let len_before = fs::metadata(&last).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[0xAB; 37]).unwrap();
    drop(file);
    assert_recovered_to(dir.path(), 10);
    // 10 records were kept and exactly one more (`next`) was added after them.
    let expected = len_before + 16 + 4;
    assert_eq!(fs::metadata(&last).unwrap().len(), expected);
}

#[test]
fn zeroed_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let mut file = OpenOptions::new()
        .append(true)
        .open(last_segment(dir.path()))
        .unwrap();
    file.write_all(&[0u8; 64]).unwrap();
    drop(file);
    assert_recovered_to(dir.path(), 10);
}

#[test]
fn flipped_byte_in_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let last = last_segment(dir.path());
    let mut bytes = fs::read(&last).unwrap();
    let position = bytes.len() - 2;
    bytes[position] ^= 0x40;
    fs::write(&last, bytes).unwrap();
    assert_recovered_to(dir.path(), 9);
}

#[test]
fn flipped_byte_in_middle_of_last_segment_cuts_from_there() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let last = last_segment(dir.path());
    let mut bytes = fs::read(&last).unwrap();
    // Somewhere inside the payload of record 4.
    let position: usize = 16 + (0..4).map(|o| 16 + payload_for(o).len()).sum::<usize>() + 20;
    bytes[position] ^= 0x01;
    fs::write(&last, bytes).unwrap();
    assert_recovered_to(dir.path(), 4);
}

#[test]
fn last_segment_with_torn_file_header_is_reinitialized() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 200;
    {
        let log = open(&config);
        for offset in 0..20 {
            log.append(&[&payload_for(offset)]).unwrap();
        }
    }
    // Simulate a crash right after creating the next segment file.
    let next = dir.path().join("00000000000000000020.log");
    fs::write(&next, b"ATRL").unwrap();
    let log = open(&config);
    assert_eq!(log.end_offset(), 20);
    assert_eq!(log.append(&[b"x"]).unwrap(), 20);
    assert_eq!(read_all(&log).len(), 21);
}

#[test]
fn damage_in_sealed_segment_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 300;
    {
        let log = open(&config);
        for offset in 0..50 {
            log.append(&[&payload_for(offset)]).unwrap();
        }
    }
    let first = segment_files(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let position = 16 + 16 + 3; // inside the payload of record 0
    bytes[position] ^= 0xFF;
    fs::write(&first, bytes).unwrap();

    let log = open(&config);
    assert_eq!(log.end_offset(), 50, "sealed segments are trusted on open");
    let error = log.read(0, 10).unwrap_err();
    match &error {
        LogError::Corrupt { path, position, .. } => {
            assert_eq!(path, &first);
            assert_eq!(*position, 16);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains("00000000000000000000.log"), "{message}");
    assert!(message.contains("crc"), "{message}");
    // Records past the damaged one are still readable.
    assert!(!log.read(10, 10).unwrap().is_empty());
}

#[test]
fn leftover_temp_files_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    write_ten(dir.path());
    let leftover = dir.path().join("00000000000000000000.log.tmp");
    fs::write(&leftover, b"half-written rewrite with SECRET").unwrap();
    let log = open(&fast_config(dir.path()));
    assert!(!leftover.exists());
    assert_eq!(read_all(&log).len(), 10);
}
