use atrium_log::EventLog;
use std::collections::BTreeSet;

use atrium_warehouse::datafusion::arrow::array::{Array, AsArray};
use atrium_warehouse::{ExportFormat, MANIFEST_FILE, WarehouseConfig};
use serde_json::Value;

use crate::{Harness, manual_config, query, scalar};

fn is_order_event(event: &Value) -> bool {
    event["type"] == "track"
        && matches!(
            event["event"].as_str(),
            Some("Order Completed" | "Order Updated" | "Order Refunded" | "Order Cancelled")
        )
}

/// Every message id in `events`, from SQL.
fn warehouse_message_ids(warehouse: &atrium_warehouse::Warehouse) -> Vec<String> {
    let output = query(warehouse, "SELECT message_id FROM events");
    let mut ids = Vec::new();
    for batch in &output.batches {
        let column = batch.column(0).as_string::<i32>();
        ids.extend(column.iter().map(|id| id.unwrap().to_owned()));
    }
    ids
}

fn assert_matches_log(harness: &Harness, warehouse: &atrium_warehouse::Warehouse) {
    let events = harness.log_events();
    let offsets: i64 = events.iter().map(|(offset, _)| *offset as i64).sum();
    assert_eq!(
        scalar(warehouse, "SELECT count(*) FROM events"),
        events.len() as i64
    );
    assert_eq!(
        scalar(warehouse, "SELECT sum(\"offset\") FROM events"),
        offsets,
        "offset checksum"
    );
    let mut ids = warehouse_message_ids(warehouse);
    ids.sort();
    let mut expected: Vec<String> = events
        .iter()
        .map(|(_, event)| event["messageId"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(ids, expected, "message ids: none missing, none duplicated");
}

#[test]
fn generated_events_become_typed_rows_visible_before_any_flush() {
    let harness = Harness::create();
    harness.ingest_generated(11, 1_500);
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    assert_eq!(warehouse.committed_offset(), 0, "nothing flushed yet");
    assert!(warehouse.manifest().files.is_empty());
    // Hot tier only.
    assert_matches_log(&harness, &warehouse);

    let events = harness.log_events();
    let orders: Vec<&Value> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| is_order_event(e))
        .collect();
    assert!(!orders.is_empty(), "the generator produces orders");
    let lines: usize = orders
        .iter()
        .map(|e| e["properties"]["products"].as_array().map_or(0, Vec::len))
        .sum();
    let completed_revenue: f64 = orders
        .iter()
        .filter(|e| e["event"] == "Order Completed")
        .filter_map(|e| e["properties"]["revenue"].as_f64())
        .sum();
    let check = |warehouse: &atrium_warehouse::Warehouse| {
        assert_eq!(
            scalar(warehouse, "SELECT count(*) FROM orders"),
            orders.len() as i64
        );
        assert_eq!(
            scalar(warehouse, "SELECT count(*) FROM order_lines"),
            lines as i64
        );
        let revenue = scalar(
            warehouse,
            "SELECT CAST(round(sum(revenue) * 100) AS BIGINT) FROM orders WHERE status = 'completed'",
        );
        assert_eq!(revenue, (completed_revenue * 100.0).round() as i64);
        // Typed e-commerce columns on `events` agree with `orders`.
        assert_eq!(
            scalar(
                warehouse,
                "SELECT count(*) FROM events WHERE event = 'Order Completed' AND revenue IS NOT NULL"
            ),
            scalar(
                warehouse,
                "SELECT count(*) FROM orders WHERE status = 'completed' AND revenue IS NOT NULL"
            )
        );
        assert_eq!(
            scalar(
                warehouse,
                "SELECT count(*) FROM events WHERE source IS NULL OR channel IS NULL OR type IS NULL"
            ),
            0
        );
        assert!(
            scalar(
                warehouse,
                "SELECT count(DISTINCT event_date) FROM events WHERE timestamp >= TIMESTAMP '2026-01-01T00:00:00Z'"
            ) > 10
        );
    };
    check(&warehouse);

    warehouse.flush().unwrap();
    assert_eq!(warehouse.committed_offset(), harness.log.end_offset());
    assert!(warehouse.hot_rows().is_empty());
    let manifest = warehouse.manifest();
    assert!(
        manifest
            .files
            .iter()
            .all(|f| f.path.contains("/date=2026-") && f.path.ends_with(".parquet"))
    );
    assert!(manifest.files.iter().any(|f| f.table == "order_lines"));
    assert_matches_log(&harness, &warehouse);
    check(&warehouse);

    // Reopen: everything comes from the committed files.
    drop(warehouse);
    let warehouse = harness.warehouse(manual_config());
    assert_eq!(warehouse.committed_offset(), harness.log.end_offset());
    assert_matches_log(&harness, &warehouse);
    check(&warehouse);
}

#[test]
fn a_crash_between_parquet_write_and_manifest_commit_loses_and_duplicates_nothing() {
    let harness = Harness::create();
    harness.ingest_generated(5, 900);
    let dir = harness.dir.path().join("warehouse");

    let warehouse = harness.warehouse(manual_config());
    warehouse.step().unwrap();
    warehouse.step().unwrap();
    warehouse.flush().unwrap();
    let committed = warehouse.committed_offset();
    assert!(committed > 0 && committed < harness.log.end_offset());
    warehouse.step().unwrap();
    warehouse.flush_without_commit().unwrap();
    let listed: BTreeSet<String> = warehouse
        .manifest()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    drop(warehouse); // the "crash": hot tier gone, orphan files on disk

    let on_disk = parquet_files(&dir);
    let orphans: Vec<&String> = on_disk.iter().filter(|f| !listed.contains(*f)).collect();
    assert!(!orphans.is_empty(), "the crashed flush left files behind");

    let warehouse = harness.warehouse(manual_config());
    assert_eq!(warehouse.committed_offset(), committed);
    assert_eq!(parquet_files(&dir), listed, "orphans deleted on open");
    warehouse.catch_up().unwrap();
    assert_matches_log(&harness, &warehouse);
    warehouse.flush().unwrap();
    assert_matches_log(&harness, &warehouse);

    // More events after the restart, then another reopen.
    harness.ingest_generated(6, 200);
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    drop(warehouse);
    let warehouse = harness.warehouse(manual_config());
    assert_matches_log(&harness, &warehouse);
    assert!(dir.join(MANIFEST_FILE).is_file());
}

#[test]
fn compaction_merges_settled_days_down_to_one_file() {
    let harness = Harness::create();
    // Seven days, each flushed in two halves: two files per day partition.
    let config = WarehouseConfig {
        compact_files: 8,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config);
    for day in 1..=7 {
        for hour in [9, 15] {
            let events: Vec<Value> = (0..3)
                .map(|i| {
                    serde_json::json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("a{i}"),
                        "timestamp": format!("2026-01-{day:02}T{hour:02}:0{i}:00Z")})
                })
                .collect();
            harness.ingest("web", atrium_types::Channel::Web, &events);
            warehouse.catch_up().unwrap();
            warehouse.flush().unwrap();
        }
    }
    let files_per_day = |warehouse: &atrium_warehouse::Warehouse| {
        let mut counts = std::collections::BTreeMap::new();
        for file in warehouse
            .manifest()
            .files
            .iter()
            .filter(|f| f.table == "events")
        {
            *counts.entry(file.day).or_insert(0) += 1;
        }
        counts.into_values().collect::<Vec<usize>>()
    };
    assert_eq!(files_per_day(&warehouse), vec![2; 7]);
    // One pass merges at most SETTLED_MERGES settled days; the two newest days are not settled.
    warehouse.compact().unwrap();
    assert_eq!(files_per_day(&warehouse), vec![1, 1, 1, 1, 2, 2, 2]);
    warehouse.compact().unwrap();
    assert_eq!(files_per_day(&warehouse), vec![1, 1, 1, 1, 1, 2, 2]);
    assert_eq!(atrium_warehouse::SETTLED_DAYS, 2);
    assert_eq!(atrium_warehouse::SETTLED_MERGES, 4);
    assert_matches_log(&harness, &warehouse);
}

#[test]
fn compaction_merges_small_files_without_changing_results() {
    let harness = Harness::create();
    let events: Vec<Value> = (0..30)
        .map(|i| {
            serde_json::json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("a{}", i % 4),
                "properties": {"product_id": format!("p{i}"), "price": i},
                "timestamp": format!("2026-01-01T10:{:02}:00Z", i)})
        })
        .collect();
    harness.ingest("web", atrium_types::Channel::Web, &events);
    let config = WarehouseConfig {
        compact_files: 3,
        read_batch: 5,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config);
    for _ in 0..5 {
        warehouse.step().unwrap();
        warehouse.flush().unwrap();
    }
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    let before = warehouse.manifest().files.len();
    let merged = warehouse.compact().unwrap();
    assert!(merged > 0, "some day partition had 3+ files");
    assert!(warehouse.manifest().files.len() < before);
    assert_matches_log(&harness, &warehouse);
    drop(warehouse);
    // Files replaced by compaction are deleted on reopen at the latest.
    let warehouse = harness.warehouse(manual_config());
    let listed: BTreeSet<String> = warehouse
        .manifest()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(parquet_files(&harness.dir.path().join("warehouse")), listed);
    assert_matches_log(&harness, &warehouse);
}

#[test]
fn compaction_clusters_a_day_by_event_in_small_pages() {
    use atrium_warehouse::datafusion::parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };
    use atrium_warehouse::datafusion::parquet::file::metadata::PageIndexPolicy;
    let harness = Harness::create();
    let names = ["Product Viewed", "Order Completed", "Product Added"];
    // Interleaved names, some campaign touches, timestamps running backwards.
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let context = if i % 4 == 0 {
                serde_json::json!({"campaign": {"source": format!("s{}", i % 3)}})
            } else {
                serde_json::json!({})
            };
            serde_json::json!({"type": "track", "event": names[i % 3], "anonymousId": format!("a{}", i % 5),
                "context": context, "timestamp": format!("2026-01-01T10:{:02}:00Z", 59 - i)})
        })
        .collect();
    harness.ingest("web", atrium_types::Channel::Web, &events);
    let config = WarehouseConfig {
        compact_files: 2,
        read_batch: 10,
        page_rows: 4,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config);
    while warehouse.step().unwrap() > 0 {
        warehouse.flush().unwrap();
    }
    assert!(warehouse.compact().unwrap() > 0);
    assert_matches_log(&harness, &warehouse);
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(*) FROM events WHERE event = 'Order Completed'"
        ),
        13
    );

    let manifest = warehouse.manifest();
    let files: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == "events")
        .collect();
    assert_eq!(files.len(), 1, "one compacted file for the day");
    let path = harness.dir.path().join("warehouse").join(&files[0].path);
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        std::fs::File::open(&path).unwrap(),
        options,
    )
    .unwrap();
    let schema = builder.schema().clone();
    let event_column = schema.index_of("event").unwrap();
    let offsets = builder
        .metadata()
        .offset_index()
        .expect("page index written");
    assert_eq!(
        offsets[0][event_column].page_locations().len(),
        10,
        "40 rows, 4 per page"
    );
    let mut keys = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column(schema.index_of(name).unwrap())
                .as_string::<i32>()
                .clone()
        };
        let (kinds, names, sources) = (text("type"), text("event"), text("campaign_source"));
        let times = batch.column(schema.index_of("timestamp").unwrap()).as_primitive::<
            atrium_warehouse::datafusion::arrow::datatypes::TimestampMillisecondType,
        >();
        for row in 0..batch.num_rows() {
            let source = sources.is_valid(row).then(|| sources.value(row).to_owned());
            keys.push((
                kinds.value(row).to_owned(),
                names.value(row).to_owned(),
                source.is_none(),
                source,
                times.value(row),
            ));
        }
    }
    assert_eq!(keys.len(), 40);
    assert!(
        keys.is_sorted(),
        "rows clustered by type, event, campaign source (nulls last), time"
    );
}

/// (codecs of every column chunk, encodings of `message_id`) of a data file.
/// The `events` data files the manifest lists.
fn events_files(
    harness: &Harness,
    warehouse: &atrium_warehouse::Warehouse,
) -> Vec<std::path::PathBuf> {
    let dir = harness.dir.path().join("warehouse");
    let manifest = warehouse.manifest();
    let files = manifest.files.iter().filter(|f| f.table == "events");
    files.map(|f| dir.join(&f.path)).collect()
}

/// A warehouse that flushed 20 `events` as two files of 10 rows, and compacts any two files.
fn flushed_in_two_files(
    events: &[Value],
) -> (
    Harness,
    atrium_warehouse::Warehouse,
    Vec<std::path::PathBuf>,
) {
    let harness = Harness::create();
    harness.ingest("web", atrium_types::Channel::Web, events);
    let warehouse = harness.warehouse(WarehouseConfig {
        compact_files: 2,
        read_batch: 10,
        ..manual_config()
    });
    while warehouse.step().unwrap() > 0 {
        warehouse.flush().unwrap();
    }
    let flushed = events_files(&harness, &warehouse);
    assert_eq!(flushed.len(), 2);
    (harness, warehouse, flushed)
}

fn file_encoding(path: &std::path::Path) -> (BTreeSet<String>, BTreeSet<String>) {
    (file_codecs(path), column_encodings(path, "message_id"))
}

/// The compression codecs of a data file's column chunks.
fn file_codecs(path: &std::path::Path) -> BTreeSet<String> {
    use atrium_warehouse::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut codecs = BTreeSet::new();
    for group in reader.metadata().row_groups() {
        for column in group.columns() {
            codecs.insert(format!("{:?}", column.compression()));
        }
    }
    codecs
}

/// The encodings one column of a data file uses.
fn column_encodings(path: &std::path::Path, name: &str) -> BTreeSet<String> {
    use atrium_warehouse::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut encodings = BTreeSet::new();
    for group in reader.metadata().row_groups() {
        for column in group.columns() {
            if column.column_path().string() == name {
                encodings.extend(column.encodings().map(|e| format!("{e:?}")));
            }
        }
    }
    encodings
}

/// Offsets and times are written as deltas, without a dictionary.
fn assert_delta_encoded(path: &std::path::Path) {
    for name in ["offset", "timestamp", "received_at"] {
        let encodings = column_encodings(path, name);
        assert!(
            encodings.contains("DELTA_BINARY_PACKED")
                && !encodings.iter().any(|e| e.contains("DICTIONARY")),
            "{name} in {path:?}: {encodings:?}"
        );
    }
}

#[test]
fn flushes_write_snappy_and_compaction_rewrites_them_as_zstd() {
    let events: Vec<Value> = (0..20)
        .map(|i| {
            serde_json::json!({"type": "track", "event": "Product Viewed", "anonymousId": format!("a{i}"),
                "properties": {"product_id": format!("p{i}")},
                "timestamp": format!("2026-01-01T10:{i:02}:00Z")})
        })
        .collect();
    let (harness, warehouse, flushed) = flushed_in_two_files(&events);
    for path in &flushed {
        let (codecs, message_id) = file_encoding(path);
        assert_eq!(codecs, BTreeSet::from(["SNAPPY".to_owned()]), "{path:?}");
        assert!(
            !message_id.iter().any(|e| e.contains("DICTIONARY")),
            "message ids are not dictionary-encoded: {message_id:?}"
        );
        assert_delta_encoded(path);
    }
    assert_eq!(warehouse.compact().unwrap(), 1);
    let compacted = events_files(&harness, &warehouse);
    assert_eq!(compacted.len(), 1);
    let codecs = file_codecs(&compacted[0]);
    assert!(
        codecs.iter().all(|codec| codec.starts_with("ZSTD")),
        "{codecs:?}"
    );
    assert_delta_encoded(&compacted[0]);
    assert_matches_log(&harness, &warehouse);
}

#[test]
fn catch_up_flushes_a_long_backlog_as_it_goes() {
    let harness = Harness::create();
    harness.ingest_generated(4, 400);
    let config = WarehouseConfig {
        flush_rows: 100,
        read_batch: 50,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config);
    warehouse.catch_up().unwrap();
    let hot: usize = warehouse.hot_rows().values().sum();
    assert!(
        warehouse.committed_offset() > 0 && hot < 100 + 50 * 3,
        "the backlog went to files as it was read (hot tier: {hot} rows)"
    );
    assert_matches_log(&harness, &warehouse);
}

/// `orders` and `order_lines` as text, in log order, for comparing two warehouses.
fn order_tables(warehouse: &atrium_warehouse::Warehouse) -> String {
    let orders = query(warehouse, "SELECT * FROM orders ORDER BY \"offset\"");
    let lines = query(
        warehouse,
        "SELECT * FROM order_lines ORDER BY \"offset\", line",
    );
    format!(
        "{}\n{}",
        orders.to_table().unwrap(),
        lines.to_table().unwrap()
    )
}

#[test]
fn small_tables_answer_from_decoded_files_exactly_as_from_disk() {
    let harness = Harness::create();
    harness.ingest_generated(9, 3_000);
    let config = WarehouseConfig {
        flush_rows: 300,
        read_batch: 100,
        compact_files: 3,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config.clone());
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    let orders = scalar(&warehouse, "SELECT count(*) FROM orders");
    assert!(orders > 20, "the shop has orders ({orders})");
    assert!(
        warehouse.memory_files_bytes() > 0,
        "the files the materializer wrote are kept decoded"
    );
    let from_memory = order_tables(&warehouse);
    drop(warehouse);

    let on_disk = harness.warehouse(WarehouseConfig {
        memory_files_bytes: 0,
        ..config.clone()
    });
    assert_eq!(order_tables(&on_disk), from_memory);
    assert_eq!(on_disk.memory_files_bytes(), 0);
    drop(on_disk);

    // After a restart, the first query decodes the files and later ones use the copies.
    let reopened = harness.warehouse(config);
    assert_eq!(reopened.memory_files_bytes(), 0);
    assert_eq!(order_tables(&reopened), from_memory);
    let kept = reopened.memory_files_bytes();
    assert!(kept > 0);
    assert_eq!(order_tables(&reopened), from_memory);
    assert_eq!(reopened.memory_files_bytes(), kept);
    assert_matches_log(&harness, &reopened);
}

#[test]
fn export_writes_parquet_and_jsonl() {
    let harness = Harness::create();
    harness.ingest_generated(3, 300);
    harness.pipeline.run_until_caught_up().unwrap();
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    let events = harness.log_events().len() as u64;

    let out = harness.dir.path().join("export-jsonl");
    let counts = warehouse.export(&out, ExportFormat::Jsonl).unwrap();
    assert_eq!(counts["events"], events);
    assert!(counts["profiles"] > 0);
    let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, events);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["message_id"].is_string());

    let out = harness.dir.path().join("export-parquet");
    let counts = warehouse.export(&out, ExportFormat::Parquet).unwrap();
    assert_eq!(counts["events"], events);
    assert!(out.join("profiles.parquet").is_file());
    assert!(!parquet_files(&out.join("events")).is_empty());
}

fn parquet_files(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.insert(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found
}

/// The Arrow type of each identifier column as a data file stores it.
fn stored_id_types(path: &std::path::Path) -> Vec<String> {
    use atrium_warehouse::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    ["anonymous_id", "user_id"]
        .iter()
        .map(|name| {
            reader
                .schema()
                .field_with_name(name)
                .unwrap()
                .data_type()
                .to_string()
        })
        .collect()
}

/// Rewrites a data file the way the warehouse wrote it before identifiers were dictionaries in
/// Arrow: the same rows, `anonymous_id` and `user_id` as plain text.
fn rewrite_with_text_ids(path: &std::path::Path) {
    use atrium_warehouse::datafusion::arrow::compute::cast;
    use atrium_warehouse::datafusion::arrow::datatypes::{DataType, Field, Schema};
    use atrium_warehouse::datafusion::arrow::record_batch::RecordBatch;
    use atrium_warehouse::datafusion::parquet::arrow::ArrowWriter;
    use atrium_warehouse::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let old = batches[0].schema();
    let fields: Vec<Field> = old
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "anonymous_id" | "user_id" => field.as_ref().clone().with_data_type(DataType::Utf8),
            _ => field.as_ref().clone(),
        })
        .collect();
    let schema = std::sync::Arc::new(Schema::new(fields));
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema.clone(), None).unwrap();
    for batch in &batches {
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| cast(column, field.data_type()).unwrap())
            .collect();
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn files_written_with_text_identifiers_still_read_and_compact_to_dictionaries() {
    let events: Vec<Value> = (0..20)
        .map(|i| {
            serde_json::json!({"type": "track", "event": "Product Viewed",
                "anonymousId": format!("a{}", i % 7), "userId": format!("u{}", i % 3),
                "timestamp": format!("2026-01-01T10:{i:02}:00Z")})
        })
        .collect();
    let (harness, warehouse, flushed) = flushed_in_two_files(&events);
    let dictionary = "Dictionary(Int32, Utf8)".to_owned();
    assert_eq!(stored_id_types(&flushed[0]), vec![dictionary.clone(); 2]);
    rewrite_with_text_ids(&flushed[0]);
    assert_eq!(stored_id_types(&flushed[0]), vec!["Utf8".to_owned(); 2]);

    let distinct =
        "SELECT count(DISTINCT anonymous_id) * 100 + count(DISTINCT user_id) FROM events";
    let filtered = "SELECT count(*) FROM events WHERE anonymous_id = 'a3' AND user_id = 'u0'";
    assert_eq!(scalar(&warehouse, distinct), 703);
    assert_eq!(scalar(&warehouse, filtered), 1);
    assert_matches_log(&harness, &warehouse);

    assert_eq!(warehouse.compact().unwrap(), 1);
    let compacted = events_files(&harness, &warehouse);
    assert_eq!(compacted.len(), 1);
    assert_eq!(stored_id_types(&compacted[0]), vec![dictionary; 2]);
    assert_eq!(scalar(&warehouse, distinct), 703);
    assert_eq!(scalar(&warehouse, filtered), 1);
    assert_matches_log(&harness, &warehouse);
}
