//! GDPR erasure in the warehouse: when the materializer reaches an `atrium.erase` control record
//! it removes every row of an event carrying one of the erased identifier hashes, from the hot
//! tier and from every committed Parquet file (rewritten: new file, fsync, manifest commit, old
//! file deleted).
//!
//! A row's identifiers are computed by the pipeline's own
//! [`atrium_pipeline::event_identifier_hashes`] on an event rebuilt from the row's stored columns
//! (`type`, `user_id`, `anonymous_id`, `traits`, raw `context`), so the warehouse matches exactly
//! the events the pipeline drops from the log. `orders` and `order_lines` rows (which keep no
//! traits or context) go with the `events` row of the same log offset, and also on their own
//! `user_id` / `anonymous_id`.

use std::collections::HashSet;

use atrium_identity::CompiledRules;
use atrium_pipeline::{IdentifierHasher, event_identifier_hashes};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::rows::Table;

/// What the warehouse needs to recognize an erased person's rows: the pipeline's compiled
/// identity rules and its salted identifier hasher (the same ones, or hashes will not match).
#[derive(Clone)]
pub struct ErasureKeys {
    pub rules: CompiledRules,
    pub hasher: IdentifierHasher,
}

impl ErasureKeys {
    pub fn new(rules: CompiledRules, hasher: IdentifierHasher) -> ErasureKeys {
        ErasureKeys { rules, hasher }
    }
}

/// One erasure being applied: the erased hashes, and the offsets of the erased `events` rows
/// found so far (the `orders` / `order_lines` rows of those offsets go too).
pub(crate) struct Eraser<'a> {
    keys: &'a ErasureKeys,
    hashes: HashSet<String>,
    pub(crate) erased_offsets: HashSet<u64>,
}

/// The columns a table's rows are matched on (a projection of the table's schema).
pub(crate) fn match_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events => &[
            "offset",
            "type",
            "user_id",
            "anonymous_id",
            "traits",
            "context",
        ],
        Table::Orders | Table::OrderLines => &["offset", "user_id", "anonymous_id"],
    }
}

impl<'a> Eraser<'a> {
    pub(crate) fn new(keys: &'a ErasureKeys, hashes: Vec<String>) -> Eraser<'a> {
        Eraser {
            keys,
            hashes: hashes.into_iter().collect(),
            erased_offsets: HashSet::new(),
        }
    }

    /// Which rows of `batch` (any projection holding [`match_columns`]) to keep; `None` when
    /// every row stays. Erased `events` rows record their offset.
    pub(crate) fn keep_mask(
        &mut self,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<Option<BooleanArray>, ArrowError> {
        let offsets = column::<UInt64Array>(batch, "offset")?;
        let text = |name: &str| column::<StringArray>(batch, name);
        // Identifiers are dictionary-encoded (`rows::id_type`); their text is what matches.
        let id_text = |name: &str| -> Result<ArrayRef, ArrowError> {
            let ids = batch.column_by_name(name).ok_or_else(|| {
                ArrowError::SchemaError(format!("warehouse column {name} missing"))
            })?;
            cast(ids, &DataType::Utf8)
        };
        let (user_ids, anonymous_ids) = (id_text("user_id")?, id_text("anonymous_id")?);
        let (user_ids, anonymous_ids) = (
            user_ids.as_string::<i32>(),
            anonymous_ids.as_string::<i32>(),
        );
        let (types, traits, contexts) = match table {
            Table::Events => (
                Some(text("type")?),
                Some(text("traits")?),
                Some(text("context")?),
            ),
            Table::Orders | Table::OrderLines => (None, None, None),
        };
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut removed = false;
        for row in 0..batch.num_rows() {
            let offset = offsets.is_valid(row).then(|| offsets.value(row));
            let by_offset = table != Table::Events
                && offset.is_some_and(|offset| self.erased_offsets.contains(&offset));
            let mut event = Map::new();
            let event_type = value_at(types, row).unwrap_or("track");
            event.insert("type".into(), Value::String(event_type.into()));
            if let Some(id) = value_at(Some(user_ids), row) {
                event.insert("userId".into(), Value::String(id.into()));
            }
            if let Some(id) = value_at(Some(anonymous_ids), row) {
                event.insert("anonymousId".into(), Value::String(id.into()));
            }
            for (key, array) in [("traits", traits), ("context", contexts)] {
                if let Some(json) = value_at(array, row)
                    && let Ok(value) = serde_json::from_str::<Value>(json)
                {
                    event.insert(key.into(), value);
                }
            }
            let erased = by_offset
                || event_identifier_hashes(
                    &Value::Object(event),
                    &self.keys.rules,
                    &self.keys.hasher,
                )
                .iter()
                .any(|hash| self.hashes.contains(hash));
            if erased {
                removed = true;
                if table == Table::Events
                    && let Some(offset) = offset
                {
                    self.erased_offsets.insert(offset);
                }
            }
            keep.push(!erased);
        }
        Ok(removed.then(|| BooleanArray::from(keep)))
    }

    /// `batch` (full rows) without the erased rows; `None` when nothing is removed.
    pub(crate) fn filter(
        &mut self,
        table: Table,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        match self.keep_mask(table, batch)? {
            Some(mask) => Ok(Some(filter_record_batch(batch, &mask)?)),
            None => Ok(None),
        }
    }
}

fn value_at(array: Option<&StringArray>, row: usize) -> Option<&str> {
    array.filter(|a| a.is_valid(row)).map(|a| a.value(row))
}

fn column<'b, T: Array + 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("warehouse column {name} missing")))
}
