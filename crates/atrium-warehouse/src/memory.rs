//! Decoded copies of the data files of the small tables, so queries over them skip opening and
//! decoding Parquet.
//!
//! `orders` and `order_lines` hold a few percent of the rows of `events` (one row per order or
//! order line), yet KPI dashboards read them on every refresh. At 10 M events a day's `orders`
//! file holds ~2,000 rows: a query over 90 days spent most of its time opening 90 small files
//! and decoding them in small pieces, more than the aggregation itself. Files are written once
//! under unique names, so a decoded copy keyed by the file's path never goes stale; the
//! materializer keeps what it writes (flushes, compactions, erasure rewrites), a query decodes
//! what is missing (after a restart), and entries of files the manifest no longer lists are
//! dropped whenever it changes. [`WarehouseConfig::memory_files_bytes`] bounds the total:
//! files beyond it are read from disk as before.
//!
//! [`WarehouseConfig::memory_files_bytes`]: crate::WarehouseConfig::memory_files_bytes

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use crate::Table;
use crate::manifest::Manifest;

/// The tables whose files are kept decoded.
pub(crate) fn keeps(table: Table) -> bool {
    matches!(table, Table::Orders | Table::OrderLines)
}

/// The decoded contents of one data file.
pub(crate) type FileBatches = Arc<[RecordBatch]>;

pub(crate) struct MemoryFiles {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, FileBatches>,
    bytes: usize,
    /// A file did not fit: queries read missing files from disk instead of decoding them
    /// (again and again) until something is freed.
    full: bool,
}

impl MemoryFiles {
    pub(crate) fn new(budget: usize) -> MemoryFiles {
        MemoryFiles {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps `batches` as the contents of the data file at `path` (relative to the warehouse
    /// directory), if it belongs to a kept table and fits the budget.
    pub(crate) fn insert(&self, table: Table, path: &str, batches: Vec<RecordBatch>) {
        if !keeps(table) {
            return;
        }
        let bytes = size_of(&batches);
        let mut inner = self.inner.lock();
        if inner.files.contains_key(path) {
            return;
        }
        if inner.bytes + bytes > self.budget {
            inner.full = true;
            return;
        }
        inner.bytes += bytes;
        inner.files.insert(path.to_owned(), batches.into());
    }

    /// The kept contents of the files among `paths`, in their order, and the paths not kept.
    pub(crate) fn split<'p>(&self, paths: &[&'p str]) -> (Vec<FileBatches>, Vec<&'p str>) {
        let inner = self.inner.lock();
        let mut kept = Vec::new();
        let mut missing = Vec::new();
        for path in paths {
            match inner.files.get(*path) {
                Some(batches) => kept.push(batches.clone()),
                None => missing.push(*path),
            }
        }
        (kept, missing)
    }

    /// Whether a query should decode a missing file to keep it: no file was refused for the
    /// budget since the last one was freed.
    pub(crate) fn has_room(&self) -> bool {
        !self.inner.lock().full
    }

    /// Forgets files `manifest` does not list (replaced by a compaction or an erasure rewrite).
    pub(crate) fn retain_listed(&self, manifest: &Manifest) {
        let listed: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let mut inner = self.inner.lock();
        let mut freed = 0;
        inner.files.retain(|path, batches| {
            let keep = listed.contains(path.as_str());
            if !keep {
                freed += size_of(batches);
            }
            keep
        });
        inner.bytes -= freed;
        if freed > 0 {
            inner.full = false;
        }
    }

    /// Decoded bytes kept now.
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

fn size_of(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DataFile;

    fn orders_batch(rows: usize) -> RecordBatch {
        use crate::rows::Cell;
        let mut row = vec![Cell::Null; Table::Orders.schema().fields().len()];
        row[0] = Cell::UInt(7); // `offset`, the one non-nullable column
        let rows = vec![row; rows];
        crate::rows::build_batch(Table::Orders, &rows).expect("batch")
    }

    fn listing(paths: &[&str]) -> Manifest {
        Manifest {
            files: paths
                .iter()
                .map(|path| DataFile {
                    table: "orders".into(),
                    path: (*path).into(),
                    day: 0,
                    rows: 1,
                    first_offset: 0,
                    last_offset: 0,
                })
                .collect(),
            ..Manifest::default()
        }
    }

    #[test]
    fn a_file_over_the_budget_stops_decoding_until_something_is_freed() {
        let small = orders_batch(10);
        let budget = size_of(std::slice::from_ref(&small)) * 3 / 2;
        let memory = MemoryFiles::new(budget);
        memory.insert(Table::Events, "events/a", vec![small.clone()]);
        assert_eq!(memory.bytes(), 0, "events files are never kept");
        memory.insert(Table::Orders, "orders/a", vec![small.clone()]);
        assert!(memory.bytes() > 0 && memory.has_room());
        memory.insert(Table::Orders, "orders/b", vec![orders_batch(1_000)]);
        assert!(!memory.has_room(), "a refused file marks the budget full");
        let (kept, missing) = memory.split(&["orders/a", "orders/b"]);
        assert_eq!((kept.len(), missing), (1, vec!["orders/b"]));
        memory.retain_listed(&listing(&["orders/b"]));
        assert_eq!(memory.bytes(), 0);
        assert!(memory.has_room(), "freeing a file makes room again");
    }
}
