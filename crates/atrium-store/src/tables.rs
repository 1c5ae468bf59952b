//! Table definitions and whole-database operations over them.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::StoreError;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const IDENTIFIERS: TableDefinition<&str, &str> = TableDefinition::new("identifiers");
pub const GRAPHS: TableDefinition<&str, &[u8]> = TableDefinition::new("graphs");
pub const REDIRECTS: TableDefinition<&str, &str> = TableDefinition::new("redirects");
pub const MERGE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("merge_log");
pub const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
pub const TIMELINE: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("timeline");
pub const SUPPRESSED: TableDefinition<&str, i64> = TableDefinition::new("suppressed");
/// (kind, key) → current [`crate::StoredDefinition`] (JSON); deleted definitions are removed.
pub const DEFINITIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("definitions");
/// (kind, key, version) → [`crate::StoredDefinition`] (JSON), every version including deletions.
pub const DEFINITION_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("definition_history");

/// Profile id → the profile's segment and computed-trait evaluation state (bytes owned by the
/// pipeline's segment engine).
pub const SEGMENT_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("segment_states");
/// (segment id, profile id) → entry time (epoch ms): current memberships.
pub const SEGMENT_MEMBERS: TableDefinition<(&str, &str), i64> =
    TableDefinition::new("segment_members");
/// (fire time ms, profile id) → (): one durable timer per profile, the earliest instant any of its
/// segments or computed traits can change with time alone.
pub const SEGMENT_TIMERS: TableDefinition<(i64, &str), ()> = TableDefinition::new("segment_timers");
/// Message id → a derived event (`Segment Entered` / `Segment Exited`) waiting to be appended to
/// the log. Removed when the pipeline reads the appended event back.
pub const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// `<attributeName>||<attributeValue>` → sticky bucket assignments (JSON `StickyBucketDoc`).
pub const STICKY_BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("sticky_buckets");

pub const PIPELINE_OFFSET_KEY: &str = "pipeline_offset";
/// Meta key: one past the log offset of the last applied definition record (0: none yet).
pub const DEFINITIONS_OFFSET_KEY: &str = "definitions_offset";

pub(crate) fn create_all(transaction: &WriteTransaction) -> Result<(), StoreError> {
    transaction.open_table(META)?;
    transaction.open_table(IDENTIFIERS)?;
    transaction.open_table(GRAPHS)?;
    transaction.open_table(REDIRECTS)?;
    transaction.open_table(MERGE_LOG)?;
    transaction.open_table(PROFILES)?;
    transaction.open_table(TIMELINE)?;
    transaction.open_table(SUPPRESSED)?;
    transaction.open_table(DEFINITIONS)?;
    transaction.open_table(DEFINITION_HISTORY)?;
    transaction.open_table(SEGMENT_STATES)?;
    transaction.open_table(SEGMENT_MEMBERS)?;
    transaction.open_table(SEGMENT_TIMERS)?;
    transaction.open_table(OUTBOX)?;
    transaction.open_table(STICKY_BUCKETS)?;
    Ok(())
}

macro_rules! copy_table {
    ($read:expr, $write:expr, $definition:expr) => {{
        let source = $read.open_table($definition)?;
        let mut target = $write.open_table($definition)?;
        for entry in source.iter()? {
            let (key, value) = entry?;
            target.insert(key.value(), value.value())?;
        }
    }};
}

pub(crate) fn copy_all(read: &ReadTransaction, write: &WriteTransaction) -> Result<(), StoreError> {
    copy_table!(read, write, META);
    copy_table!(read, write, IDENTIFIERS);
    copy_table!(read, write, GRAPHS);
    copy_table!(read, write, REDIRECTS);
    copy_table!(read, write, MERGE_LOG);
    copy_table!(read, write, PROFILES);
    copy_table!(read, write, TIMELINE);
    copy_table!(read, write, SUPPRESSED);
    copy_table!(read, write, DEFINITIONS);
    copy_table!(read, write, DEFINITION_HISTORY);
    copy_table!(read, write, SEGMENT_STATES);
    copy_table!(read, write, SEGMENT_MEMBERS);
    copy_table!(read, write, SEGMENT_TIMERS);
    copy_table!(read, write, OUTBOX);
    copy_table!(read, write, STICKY_BUCKETS);
    Ok(())
}
