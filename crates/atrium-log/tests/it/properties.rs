use std::fs::{self, OpenOptions};
use std::io::Write;

use atrium_log::{EventLog, LogConfig, SegmentedLog};
use proptest::prelude::*;

use crate::common::{last_segment, read_all};

#[derive(Debug, Clone)]
enum Op {
    /// Append one batch with payloads of these sizes.
    Append(Vec<usize>),
    /// Clean close and reopen: nothing may be lost.
    Reopen,
    /// Close, cut this many bytes off the end of the last segment, reopen.
    CutTail(u64),
    /// Close, append these garbage bytes to the last segment, reopen.
    Garbage(Vec<u8>),
    /// Drop every record whose payload starts with this byte.
    Rewrite(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(0usize..200, 1..4).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        1 => (1u64..120).prop_map(Op::CutTail),
        1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(Op::Garbage),
        1 => (0u8..4).prop_map(Op::Rewrite),
    ]
}

/// Payload bytes that are unique per offset, with a first byte used by `Op::Rewrite`.
fn payload(offset: u64, size: usize) -> Vec<u8> {
    let mut bytes = vec![(offset % 4) as u8];
    bytes.extend_from_slice(&offset.to_le_bytes());
    bytes.extend((0..size).map(|i| (offset as usize + i) as u8));
    bytes
}

fn base_of_last_segment(config: &LogConfig) -> u64 {
    let name = last_segment(&config.dir);
    let stem = name.file_stem().unwrap().to_str().unwrap();
    stem.parse().unwrap()
}

fn run(segment_bytes: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path());
    config.sync = false;
    config.segment_bytes = segment_bytes;

    // What the log must contain, in order, and the next offset it will hand out.
    let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next_offset = 0u64;
    let mut log = Some(SegmentedLog::open(config.clone()).unwrap());

    for op in ops {
        match op {
            Op::Append(sizes) => {
                let handle = log.as_ref().unwrap();
                let payloads: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &size)| payload(next_offset + i as u64, size))
                    .collect();
                let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let first = handle.append(&slices).unwrap();
                prop_assert_eq!(first, next_offset);
                for (i, payload) in payloads.into_iter().enumerate() {
                    model.push((first + i as u64, payload));
                }
                next_offset += sizes.len() as u64;
            }
            Op::Rewrite(first_byte) => {
                let handle = log.as_ref().unwrap();
                let before = model.len();
                model.retain(|(_, payload)| payload[0] != first_byte);
                let dropped = handle
                    .rewrite(&|_, payload| payload[0] != first_byte)
                    .unwrap();
                prop_assert_eq!(dropped, (before - model.len()) as u64);
            }
            Op::Reopen => {
                drop(log.take());
                log = Some(SegmentedLog::open(config.clone()).unwrap());
            }
            Op::CutTail(_) | Op::Garbage(_) => {
                drop(log.take());
                let last = last_segment(&config.dir);
                let last_base = base_of_last_segment(&config);
                match &op {
                    Op::CutTail(cut) => {
                        let len = fs::metadata(&last).unwrap().len();
                        let file = OpenOptions::new().write(true).open(&last).unwrap();
                        file.set_len(len.saturating_sub(*cut)).unwrap();
                    }
                    Op::Garbage(bytes) => {
                        let mut file = OpenOptions::new().append(true).open(&last).unwrap();
                        file.write_all(bytes).unwrap();
                    }
                    _ => unreachable!(),
                }
                let reopened = SegmentedLog::open(config.clone()).unwrap();
                let records = read_all(&reopened);
                prop_assert!(records.len() <= model.len());
                for (record, (offset, payload)) in records.iter().zip(&model) {
                    prop_assert_eq!(record.offset, *offset, "recovered log is a prefix");
                    prop_assert_eq!(&record.payload, payload);
                }
                let sealed = model
                    .iter()
                    .filter(|(offset, _)| *offset < last_base)
                    .count();
                prop_assert!(
                    records.len() >= sealed,
                    "only the last segment may lose data"
                );
                if matches!(op, Op::Garbage(_)) {
                    prop_assert_eq!(records.len(), model.len(), "garbage costs no records");
                }
                model.truncate(records.len());
                let end = reopened.end_offset();
                prop_assert!(end >= last_base && end <= next_offset);
                prop_assert!(model.last().is_none_or(|(offset, _)| *offset < end));
                next_offset = end;
                log = Some(reopened);
            }
        }
        let handle = log.as_ref().unwrap();
        let records = read_all(handle);
        let stored: Vec<(u64, Vec<u8>)> =
            records.into_iter().map(|r| (r.offset, r.payload)).collect();
        prop_assert_eq!(&stored, &model);
        prop_assert_eq!(handle.end_offset(), next_offset);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_survives_random_appends_reopens_and_torn_tails(
        segment_bytes in prop::sample::select(vec![64u64, 300, 4096, 1 << 20]),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(segment_bytes, ops)?;
    }
}
