use std::time::{Duration, Instant};

use atrium_log::{EventLog, LogConfig, LogError, MAX_PAYLOAD_BYTES, SegmentedLog};

use crate::common::{fast_config, open, payload_for, read_all};

#[test]
fn log_is_shareable_as_a_trait_object() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SegmentedLog>();
    let dir = tempfile::tempdir().unwrap();
    let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(open(&fast_config(dir.path())));
    assert_eq!(log.append(&[b"via dyn"]).unwrap(), 0);
    assert_eq!(log.read(0, 1).unwrap()[0].payload, b"via dyn");
}

#[test]
fn append_then_read_round_trips_with_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentedLog::open(LogConfig::new(dir.path())).unwrap();
    assert_eq!(log.end_offset(), 0);
    assert!(log.read(0, 10).unwrap().is_empty());

    let first = log.append(&[b"a", b"bb", b""]).unwrap();
    assert_eq!(first, 0);
    let second = log.append(&[b"ccc"]).unwrap();
    assert_eq!(second, 3);
    assert_eq!(log.end_offset(), 4);

    let records = read_all(&log);
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"a"[..], b"bb", b"", b"ccc"]);
}

#[test]
fn read_honours_from_and_max_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&fast_config(dir.path()));
    for offset in 0..500 {
        assert_eq!(log.append(&[&payload_for(offset)]).unwrap(), offset);
    }
    let page = log.read(130, 7).unwrap();
    assert_eq!(page.len(), 7);
    for (i, record) in page.iter().enumerate() {
        assert_eq!(record.offset, 130 + i as u64);
        assert_eq!(record.payload, payload_for(record.offset));
    }
    assert_eq!(log.read(499, 10).unwrap().len(), 1);
    assert!(log.read(500, 10).unwrap().is_empty());
    assert!(log.read(10, 0).unwrap().is_empty());
}

#[test]
fn empty_batch_returns_next_offset_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&fast_config(dir.path()));
    log.append(&[b"x"]).unwrap();
    assert_eq!(log.append(&[]).unwrap(), 1);
    assert_eq!(log.end_offset(), 1);
    assert_eq!(log.append(&[b"y"]).unwrap(), 1);
}

#[test]
fn oversized_payload_is_rejected_and_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&fast_config(dir.path()));
    let too_big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    let error = log.append(&[b"ok", &too_big]).unwrap_err();
    assert!(
        matches!(error, LogError::PayloadTooLarge { index: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("limit"), "{error}");
    assert_eq!(
        log.end_offset(),
        0,
        "nothing of a rejected batch is written"
    );
    assert_eq!(log.append(&[b"fine"]).unwrap(), 0);
}

#[test]
fn reopen_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path());
    {
        let log = open(&config);
        log.append(&[b"one", b"two"]).unwrap();
    }
    let log = open(&config);
    assert_eq!(log.end_offset(), 2);
    assert_eq!(log.append(&[b"three"]).unwrap(), 2);
    let payloads: Vec<Vec<u8>> = read_all(&log).into_iter().map(|r| r.payload).collect();
    assert_eq!(
        payloads,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config(dir.path());
    config.segment_bytes = 0;
    let error = SegmentedLog::open(config).unwrap_err();
    assert!(matches!(error, LogError::InvalidConfig { .. }), "{error}");
}

#[test]
fn wait_for_wakes_when_another_thread_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(&fast_config(dir.path())));
    log.append(&[b"first"]).unwrap();

    let appender = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            log.append(&[b"second"]).unwrap()
        })
    };
    let started = Instant::now();
    let end = log.wait_for(1, Duration::from_secs(10));
    assert_eq!(end, 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the append, not the timeout"
    );
    assert_eq!(appender.join().unwrap(), 1);
}

#[test]
fn wait_for_returns_at_once_or_after_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&fast_config(dir.path()));
    log.append(&[b"a", b"b"]).unwrap();
    assert_eq!(
        log.wait_for(1, Duration::from_secs(10)),
        2,
        "already past: no waiting"
    );

    let started = Instant::now();
    assert_eq!(log.wait_for(2, Duration::from_millis(50)), 2);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[test]
fn append_async_from_many_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(&LogConfig::new(dir.path())));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut firsts: Vec<u64> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..50u64 {
            let log = std::sync::Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                let payloads = vec![payload_for(task), payload_for(task + 1000)];
                log.append_async(payloads).await.unwrap()
            }));
        }
        let mut firsts = Vec::new();
        for task in tasks {
            firsts.push(task.await.unwrap());
        }
        firsts
    });
    firsts.sort_unstable();
    let expected: Vec<u64> = (0..50).map(|i| i * 2).collect();
    assert_eq!(firsts, expected, "each batch gets two consecutive offsets");

    let records = read_all(&log);
    assert_eq!(records.len(), 100);
    for pair in records.chunks(2) {
        let task: u64 = std::str::from_utf8(&pair[0].payload).unwrap()[9..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            pair[1].payload,
            payload_for(task + 1000),
            "a batch stays together"
        );
    }
    assert!(log.stats().syncs <= log.stats().appends);
}
