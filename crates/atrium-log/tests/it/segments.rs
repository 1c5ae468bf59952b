use atrium_log::{EventLog, SegmentedLog};

use crate::common::{fast_config, open, payload_for, read_all, segment_files};

#[test]
fn tiny_segments_roll_and_reads_cross_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 300;
    let log = open(&config);
    for offset in 0..400 {
        assert_eq!(log.append(&[&payload_for(offset)]).unwrap(), offset);
    }
    let stats = log.stats();
    assert!(stats.segments > 20, "{stats:?}");
    assert_eq!(stats.segments, segment_files(dir.path()).len());
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(stats.total_bytes, on_disk);

    // Every start offset, with a page size that crosses several segment boundaries.
    for from in (0..400).step_by(7) {
        let page = log.read(from, 25).unwrap();
        let expected_len = 25.min(400 - from) as usize;
        assert_eq!(page.len(), expected_len, "from {from}");
        for (i, record) in page.iter().enumerate() {
            assert_eq!(record.offset, from + i as u64);
            assert_eq!(record.payload, payload_for(record.offset));
        }
    }

    // File names carry the base offset of each segment.
    let first_name = segment_files(dir.path())[0].file_name().unwrap().to_owned();
    assert_eq!(first_name, "00000000000000000000.log");
    drop(log);

    let log = open(&config);
    assert_eq!(log.end_offset(), 400);
    assert_eq!(log.append(&[b"after reopen"]).unwrap(), 400);
    assert_eq!(read_all(&log).len(), 401);
    assert_eq!(log.read(399, 5).unwrap()[1].payload, b"after reopen");
}

#[test]
fn batch_larger_than_a_segment_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 100;
    let log = open(&config);
    log.append(&[b"small"]).unwrap();
    let big = vec![7u8; 1000];
    assert_eq!(log.append(&[&big, &big]).unwrap(), 1);
    log.append(&[b"small again"]).unwrap();
    assert_eq!(log.stats().segments, 3);
    let records = read_all(&log);
    assert_eq!(records.len(), 4);
    assert_eq!(records[2].payload, big);
}

#[test]
fn index_lookup_in_large_sealed_segment_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 200 * 1024;
    {
        let log = open(&config);
        let payloads: Vec<Vec<u8>> = (0..5000).map(payload_for).collect();
        for chunk in payloads.chunks(100) {
            let slices: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            log.append(&slices).unwrap();
        }
        assert!(log.stats().segments >= 2);
    }
    let log = SegmentedLog::open(config).unwrap();
    for from in [0u64, 63, 64, 65, 1000, 2047, 4999] {
        let record = &log.read(from, 1).unwrap()[0];
        assert_eq!(record.offset, from);
        assert_eq!(record.payload, payload_for(from));
    }
}
