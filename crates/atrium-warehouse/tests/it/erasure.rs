//! GDPR erasure: an `atrium.erase` record removes the person's rows from the hot tier and from
//! every Parquet file, and leaves everyone else's rows alone.

use std::path::Path;

use atrium_identity::Identifier;
use atrium_log::EventLog;
use atrium_types::{Channel, ControlRecord, LogRecord};
use atrium_warehouse::{ParquetCompression, WarehouseConfig};
use serde_json::json;

use crate::{Harness, manual_config, scalar};

const ERIN: [&str; 4] = [
    "u-erin-9",
    "anon-erin-9",
    "erin.erased@example.com",
    "o-erin-9",
];

/// Erin's rows per table (by any of her values), and the other person's.
fn counts(warehouse: &atrium_warehouse::Warehouse) -> [(i64, i64); 3] {
    let events = |who: &str| {
        scalar(
            warehouse,
            &format!(
                "SELECT count(*) FROM events WHERE user_id = 'u-{who}-9' \
                 OR anonymous_id = 'anon-{who}-9' OR traits ILIKE '%{who}.%' \
                 OR context ILIKE '%{who}.%' OR properties ILIKE '%{who}.%'"
            ),
        )
    };
    let orders = |table: &str, who: &str| {
        scalar(
            warehouse,
            &format!(
                "SELECT count(*) FROM {table} WHERE user_id = 'u-{who}-9' \
                 OR anonymous_id = 'anon-{who}-9' OR order_id = 'o-{who}-9'"
            ),
        )
    };
    [
        (events("erin"), events("kept")),
        (orders("orders", "erin"), orders("orders", "kept")),
        (orders("order_lines", "erin"), orders("order_lines", "kept")),
    ]
}

/// Files under `dir` whose bytes contain any of `needles`.
fn files_containing(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if needles.iter().any(|needle| {
                bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            }) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn an_erase_record_removes_the_persons_rows_from_hot_tier_and_parquet_files() {
    let harness = Harness::create();
    let order = |who: &str, products: usize| {
        json!({"type": "track", "event": "Order Completed", "userId": format!("u-{who}-9"),
            "timestamp": "2026-01-02T10:00:00Z",
            "properties": {"order_id": format!("o-{who}-9"), "revenue": 42,
                "products": (0..products).map(|i| json!({"product_id": format!("p{i}"), "price": 10}))
                    .collect::<Vec<_>>()}})
    };
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "page", "anonymousId": "anon-erin-9", "name": "Landing",
                "timestamp": "2026-01-01T10:00:00Z"}),
            json!({"type": "identify", "anonymousId": "anon-erin-9", "userId": "u-erin-9",
                "traits": {"email": "erin.erased@example.com"}, "timestamp": "2026-01-01T10:01:00Z"}),
            order("erin", 2),
            // Another device: only the email in context.traits links it to Erin.
            json!({"type": "track", "event": "Opened", "anonymousId": "anon-other-device",
                "context": {"traits": {"email": "Erin.Erased@example.com"}},
                "timestamp": "2026-01-03T10:00:00Z"}),
            json!({"type": "identify", "userId": "u-kept-9", "anonymousId": "anon-kept-9",
                "traits": {"email": "kept.person@example.com"}, "timestamp": "2026-01-01T11:00:00Z"}),
            order("kept", 3),
        ],
    );
    let config = WarehouseConfig {
        compression: ParquetCompression::None,
        ..manual_config()
    };
    let warehouse = harness.warehouse(config.clone());
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    let dir = harness.dir.path().join("warehouse");
    assert!(
        !files_containing(&dir, &["erin.erased@example.com"]).is_empty(),
        "uncompressed Parquet holds the value in plain bytes before the erasure"
    );
    // One more of Erin's events, only in the hot tier when the erasure arrives.
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "track", "event": "Clicked", "userId": "u-erin-9",
            "timestamp": "2026-01-04T10:00:00Z"}),
        ],
    );
    warehouse.catch_up().unwrap();
    assert_eq!(counts(&warehouse), [(5, 2), (1, 1), (2, 3)]);

    let hasher = harness.pipeline.hasher();
    let identifier_hashes = [
        ("user_id", "u-erin-9"),
        ("anonymous_id", "anon-erin-9"),
        ("email", "erin.erased@example.com"),
    ]
    .into_iter()
    .map(|(kind, value)| hasher.hash(&Identifier::new(kind, value)))
    .collect();
    let erase = LogRecord::encode_control(&ControlRecord::Erase {
        profile_id: "p_erin".into(),
        identifier_hashes,
        requested_at: "2026-06-01T00:00:00.000Z".into(),
        suppress: true,
    });
    // An event after the erase record: read in a later batch, it stays.
    let after = crate::normalize(
        "web",
        Channel::Web,
        &[
            json!({"type": "track", "event": "Later", "userId": "u-kept-9",
            "timestamp": "2026-01-05T10:00:00Z"}),
        ],
    );
    let mut records: Vec<&[u8]> = vec![erase.as_slice()];
    records.extend(after.iter().map(Vec::as_slice));
    harness.log.append(&records).unwrap();
    let files_before = warehouse.manifest().files;

    while warehouse.step().unwrap() > 0 {}
    assert_eq!(warehouse.visible_offset(), harness.log.end_offset());
    assert_eq!(counts(&warehouse), [(0, 3), (0, 1), (0, 3)]);
    assert_eq!(warehouse.hot_rows().get("events"), Some(&1), "only `Later`");
    let files_after = warehouse.manifest().files;
    assert_eq!(
        files_after.len(),
        files_before.len() - 1,
        "the file of a day with only Erin's rows is gone"
    );
    assert!(
        files_after.iter().any(|f| f.path.contains("-e")),
        "affected files were rewritten"
    );
    // No byte of Erin's values is left in the warehouse directory; the other person's are.
    assert_eq!(
        files_containing(&dir, &ERIN),
        Vec::<String>::new(),
        "erased values still on disk"
    );
    assert!(!files_containing(&dir, &["kept.person@example.com"]).is_empty());

    // Flush and reopen: still gone, and nothing else lost.
    warehouse.flush().unwrap();
    drop(warehouse);
    let warehouse = harness.warehouse(config);
    assert_eq!(warehouse.committed_offset(), harness.log.end_offset());
    assert_eq!(counts(&warehouse), [(0, 3), (0, 1), (0, 3)]);
    assert_eq!(scalar(&warehouse, "SELECT count(*) FROM events"), 3);
    assert!(files_containing(&dir, &ERIN).is_empty());
}

#[test]
fn an_erasure_found_on_reopen_is_applied_and_survives_the_next_restart() {
    let harness = Harness::create();
    harness.ingest(
        "web",
        Channel::Web,
        &[
            json!({"type": "identify", "userId": "u-erin-9", "traits": {"email": "erin.erased@example.com"}}),
            json!({"type": "identify", "userId": "u-kept-9"}),
        ],
    );
    let warehouse = harness.warehouse(manual_config());
    warehouse.catch_up().unwrap();
    warehouse.flush().unwrap();
    drop(warehouse); // the erase record arrives while the warehouse is down
    let erase = LogRecord::encode_control(&ControlRecord::Erase {
        profile_id: "p_erin".into(),
        identifier_hashes: vec![
            harness
                .pipeline
                .hasher()
                .hash(&Identifier::new("email", "erin.erased@example.com")),
        ],
        requested_at: "2026-06-01T00:00:00.000Z".into(),
        suppress: false,
    });
    harness.log.append(&[erase.as_slice()]).unwrap();
    let warehouse = harness.warehouse(manual_config());
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(*) FROM events WHERE user_id = 'u-erin-9'"
        ),
        1,
        "not applied yet"
    );
    warehouse.catch_up().unwrap();
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(*) FROM events WHERE user_id = 'u-erin-9'"
        ),
        0
    );
    assert_eq!(scalar(&warehouse, "SELECT count(*) FROM events"), 1);
    // Committed to the manifest even though the offset did not move (no flush yet).
    drop(warehouse);
    let warehouse = harness.warehouse(manual_config());
    assert_eq!(
        scalar(
            &warehouse,
            "SELECT count(*) FROM events WHERE user_id = 'u-erin-9'"
        ),
        0
    );
}
