//! Windows, summaries of matching events, and the compact per-node store behind them.
//!
//! Memory bound (per stateful node of one profile):
//! - non-sliding windows (`all_time`, `absolute`, `since_entry`) keep a fixed-size [`Summary`]
//!   (count, sum, min, max, first/last entry), plus a distinct-value map only for measures
//!   that need it (`distinct_count`, most frequent, unique lists), capped at
//!   [`MAX_DISTINCT_VALUES`] keys;
//! - sliding windows (`last`, `between_ago`) keep the matching events `(time, value)` that
//!   can still be inside the window (older ones are pruned as `now` advances), capped at
//!   [`MAX_WINDOW_ENTRIES`] (oldest dropped first, counted in `dropped`). A `count`
//!   compared with `v` over a `last` window keeps only the newest `floor(v) + 1` events,
//!   which is exact.
//!
//! Results are exact while no cap is hit; explanations report when one was.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::as_number;

/// The most matching events one sliding-window node keeps for one profile.
pub const MAX_WINDOW_ENTRIES: usize = 10_000;
/// The most distinct values one node keeps for one profile.
pub const MAX_DISTINCT_VALUES: usize = 1_000;

/// A validated window with durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CWindow {
    AllTime,
    /// `time > now - length`.
    Last {
        length: i64,
    },
    /// `now - from < time <= now - to`.
    BetweenAgo {
        from: i64,
        to: i64,
    },
    /// `from <= time < to`.
    Absolute {
        from: i64,
        to: i64,
    },
    /// `time >= entry`.
    SinceEntry,
}

impl CWindow {
    pub fn contains(self, time: i64, now: i64, entry_ms: Option<i64>) -> bool {
        match self {
            CWindow::AllTime => true,
            CWindow::Last { length } => time > now.saturating_sub(length),
            CWindow::BetweenAgo { from, to } => {
                time > now.saturating_sub(from) && time <= now.saturating_sub(to)
            }
            CWindow::Absolute { from, to } => from <= time && time < to,
            CWindow::SinceEntry => entry_ms.is_some_and(|entry| time >= entry),
        }
    }

    /// Whether membership of an event in the window changes as time passes.
    pub fn is_sliding(self) -> bool {
        matches!(self, CWindow::Last { .. } | CWindow::BetweenAgo { .. })
    }

    /// Events at or before this time can never be in the window again (`now` only grows).
    pub fn horizon(self, now: i64) -> Option<i64> {
        match self {
            CWindow::Last { length } => Some(now.saturating_sub(length)),
            CWindow::BetweenAgo { from, .. } => Some(now.saturating_sub(from)),
            _ => None,
        }
    }

    /// The next instant after `now` at which an event at `time` enters or leaves the window.
    pub fn next_change_for(self, time: i64, now: i64) -> Option<i64> {
        let candidates: [Option<i64>; 2] = match self {
            CWindow::Last { length } => [Some(time.saturating_add(length)), None],
            CWindow::BetweenAgo { from, to } => [
                Some(time.saturating_add(to)),
                Some(time.saturating_add(from)),
            ],
            _ => [None, None],
        };
        candidates
            .into_iter()
            .flatten()
            .filter(|candidate| *candidate > now)
            .min()
    }

    pub fn describe(self) -> String {
        match self {
            CWindow::AllTime => "all time".to_string(),
            CWindow::Last { length } => format!("the last {}", describe_ms(length)),
            CWindow::BetweenAgo { from, to } => {
                format!("between {} and {} ago", describe_ms(from), describe_ms(to))
            }
            CWindow::Absolute { from, to } => {
                format!(
                    "[{}, {})",
                    crate::time::format_ms(from),
                    crate::time::format_ms(to)
                )
            }
            CWindow::SinceEntry => "since entry".to_string(),
        }
    }
}

pub(crate) fn describe_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (7 * 86_400_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    for (size, name) in UNITS {
        if ms % size == 0 && ms >= size {
            return format!("{}{name}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// One matching event: its time, arrival sequence number (ties), and the measured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: i64,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
}

/// Which optional parts of a [`Summary`] a node needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracks {
    /// Keep the first and last entries (first/last value traits).
    pub ends: bool,
    /// Keep counts per distinct value.
    pub counts: bool,
    /// Count each element of an array value separately.
    pub flatten_arrays: bool,
}

/// An order-independent summary of a set of entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub count: u64,
    pub numeric_count: u64,
    pub sum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Entry>,
    /// Occurrences per distinct value, keyed by the value's JSON text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Set when a distinct value was ignored because of [`MAX_DISTINCT_VALUES`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Summary {
    pub fn add(&mut self, entry: &Entry, tracks: Tracks) {
        self.count += 1;
        if let Some(number) = as_number(&entry.value) {
            self.numeric_count += 1;
            self.sum += number;
            self.min = Some(self.min.map_or(number, |min| min.min(number)));
            self.max = Some(self.max.map_or(number, |max| max.max(number)));
        }
        self.max_time = Some(self.max_time.map_or(entry.time, |max| max.max(entry.time)));
        if tracks.ends {
            let earlier = |held: &Entry| (entry.time, entry.seq) < (held.time, held.seq);
            if self.first.as_ref().is_none_or(earlier) {
                self.first = Some(entry.clone());
            }
            let later = |held: &Entry| (entry.time, entry.seq) > (held.time, held.seq);
            if self.last.as_ref().is_none_or(later) {
                self.last = Some(entry.clone());
            }
        }
        if tracks.counts {
            match &entry.value {
                Value::Null => {}
                Value::Array(items) if tracks.flatten_arrays => {
                    for item in items {
                        self.count_value(item);
                    }
                }
                value => self.count_value(value),
            }
        }
    }

    fn count_value(&mut self, value: &Value) {
        if value.is_null() {
            return;
        }
        // The key is the value's JSON text, written into a reused buffer: a value already
        // counted costs no allocation (summaries of sliding windows are rebuilt per evaluation).
        thread_local! {
            static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            write_json_key(key, value);
            let key = std::str::from_utf8(key).expect("JSON text is UTF-8");
            if let Some(count) = self.counts.get_mut(key) {
                *count += 1;
            } else if self.counts.len() < MAX_DISTINCT_VALUES {
                self.counts.insert(key.to_owned(), 1);
            } else {
                self.truncated = true;
            }
        });
    }

    pub fn avg(&self) -> Option<f64> {
        if self.numeric_count == 0 {
            None
        } else {
            Some(self.sum / self.numeric_count as f64)
        }
    }
}

/// Appends `value`'s JSON text as `serde_json` writes it; a string that needs no escape
/// (the usual property value) is copied between quotes without going through the serializer.
fn write_json_key(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) if !text.bytes().any(needs_escape) => {
            out.reserve(text.len() + 2);
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        _ => serde_json::to_writer(&mut *out, value).expect("a JSON value serializes"),
    }
}

/// The bytes `serde_json` escapes in a string: the quote, the backslash and control characters
/// below 0x20.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The state of one event-measuring node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Store {
    Summary(Box<Summary>),
    Entries {
        /// Sorted by `(time, seq)`.
        entries: Vec<Entry>,
        /// Entries dropped because of a cap.
        #[serde(default)]
        dropped: u64,
    },
}

/// How a [`Store`] is configured by its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSpec {
    pub window: CWindow,
    pub tracks: Tracks,
    /// For `count` over a `last` window: keep only this many newest entries (exact).
    pub keep_newest: Option<usize>,
}

impl StoreSpec {
    pub fn new_store(&self) -> Store {
        if self.window.is_sliding() {
            Store::Entries {
                entries: Vec::new(),
                dropped: 0,
            }
        } else {
            Store::Summary(Box::default())
        }
    }
}

impl Store {
    pub fn insert(&mut self, spec: &StoreSpec, entry: Entry, now: i64, entry_ms: Option<i64>) {
        match self {
            Store::Summary(summary) => {
                if spec.window.contains(entry.time, now, entry_ms) {
                    summary.add(&entry, spec.tracks);
                }
            }
            Store::Entries { entries, dropped } => {
                if spec
                    .window
                    .horizon(now)
                    .is_some_and(|horizon| entry.time <= horizon)
                {
                    return;
                }
                let position =
                    entries.partition_point(|held| (held.time, held.seq) < (entry.time, entry.seq));
                entries.insert(position, entry);
                if let Some(keep) = spec.keep_newest
                    && entries.len() > keep
                {
                    let excess = entries.len() - keep;
                    entries.drain(..excess);
                }
                if entries.len() > MAX_WINDOW_ENTRIES {
                    let excess = entries.len() - MAX_WINDOW_ENTRIES;
                    entries.drain(..excess);
                    *dropped += excess as u64;
                }
            }
        }
    }

    /// Drops entries that can never be in the window again.
    pub fn prune(&mut self, spec: &StoreSpec, now: i64) {
        if let (Store::Entries { entries, .. }, Some(horizon)) = (self, spec.window.horizon(now)) {
            let stale = entries.partition_point(|held| held.time <= horizon);
            entries.drain(..stale);
        }
    }

    /// The summary of the entries inside the window at `now`.
    pub fn summary(&self, spec: &StoreSpec, now: i64, entry_ms: Option<i64>) -> Cow<'_, Summary> {
        match self {
            Store::Summary(summary) => Cow::Borrowed(summary.as_ref()),
            Store::Entries { entries, .. } => {
                let mut summary = Summary::default();
                for entry in entries {
                    if spec.window.contains(entry.time, now, entry_ms) {
                        summary.add(entry, spec.tracks);
                    }
                }
                Cow::Owned(summary)
            }
        }
    }

    /// `summary(spec, now, entry_ms).counts.len()` (the distinct values of the entries inside
    /// the window, by JSON text, at most [`MAX_DISTINCT_VALUES`]) without building the map: a
    /// sliding window's values are written into one reused buffer, sorted and counted.
    pub fn distinct_count(&self, spec: &StoreSpec, now: i64, entry_ms: Option<i64>) -> usize {
        let entries = match self {
            Store::Summary(summary) => return summary.counts.len(),
            Store::Entries { .. } if !spec.tracks.counts => return 0,
            Store::Entries { entries, .. } => entries,
        };
        thread_local! {
            /// JSON texts of the values, and where each one is in the text.
            static KEYS: std::cell::RefCell<(Vec<u8>, Vec<Range<usize>>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        KEYS.with_borrow_mut(|(text, ranges)| {
            text.clear();
            ranges.clear();
            let mut push = |value: &Value| {
                // As `Summary::count_value`: nulls are not values.
                if !value.is_null() {
                    let start = text.len();
                    write_json_key(text, value);
                    ranges.push(start..text.len());
                }
            };
            for entry in entries {
                if !spec.window.contains(entry.time, now, entry_ms) {
                    continue;
                }
                match &entry.value {
                    Value::Array(items) if spec.tracks.flatten_arrays => {
                        items.iter().for_each(&mut push)
                    }
                    value => push(value),
                }
            }
            ranges.sort_unstable_by(|left, right| text[left.clone()].cmp(&text[right.clone()]));
            ranges.dedup_by(|right, left| text[right.clone()] == text[left.clone()]);
            ranges.len().min(MAX_DISTINCT_VALUES)
        })
    }

    /// The next instant after `now` at which an entry enters or leaves the window.
    pub fn next_change(&self, spec: &StoreSpec, now: i64) -> Option<i64> {
        match self {
            Store::Summary(_) => None,
            Store::Entries { entries, .. } => entries
                .iter()
                .filter_map(|entry| spec.window.next_change_for(entry.time, now))
                .min(),
        }
    }

    pub fn held_entries(&self) -> usize {
        match self {
            Store::Summary(_) => 0,
            Store::Entries { entries, .. } => entries.len(),
        }
    }

    pub fn dropped(&self) -> u64 {
        match self {
            Store::Summary(summary) => u64::from(summary.truncated),
            Store::Entries { dropped, .. } => *dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{CWindow, Entry, StoreSpec, Tracks, write_json_key};

    /// `distinct_count` counts what the summary's distinct-value map holds, for sliding and
    /// fixed windows, with nulls, arrays (flattened or not) and values equal as numbers but
    /// not as text.
    #[test]
    fn distinct_count_equals_the_summary_count() {
        let values = [
            json!("a"),
            json!("b"),
            json!("a"),
            Value::Null,
            json!(1),
            json!(1.0),
            json!(["a", "c"]),
            json!(["a", null]),
            json!("quote \""),
            json!({"k": 1}),
        ];
        for flatten_arrays in [false, true] {
            for window in [
                CWindow::Last { length: 5_000 },
                CWindow::BetweenAgo {
                    from: 8_000,
                    to: 2_000,
                },
                CWindow::AllTime,
            ] {
                let spec = StoreSpec {
                    window,
                    tracks: Tracks {
                        ends: false,
                        counts: true,
                        flatten_arrays,
                    },
                    keep_newest: None,
                };
                let mut store = spec.new_store();
                for (seq, value) in values.iter().enumerate() {
                    let entry = Entry {
                        time: seq as i64 * 1_000,
                        seq: seq as u64,
                        value: value.clone(),
                    };
                    store.insert(&spec, entry, 9_000, None);
                }
                for now in [9_000, 11_000, 30_000] {
                    let expected = store.summary(&spec, now, None).counts.len();
                    assert_eq!(
                        store.distinct_count(&spec, now, None),
                        expected,
                        "{window:?} {now}"
                    );
                }
            }
        }
    }

    /// The fast path for plain strings writes what `serde_json` writes.
    #[test]
    fn json_keys_are_serde_json_text() {
        let mut values: Vec<Value> = [
            "",
            "shoes",
            "é 😀",
            "</script>",
            "a/b",
            "\u{7f}",
            "quote \"",
            "back\\slash",
            "tab\t",
            "nul\u{0}",
            "\u{1f}",
            " ",
        ]
        .into_iter()
        .map(Value::from)
        .collect();
        values.extend([
            json!(1),
            json!(1.5),
            json!(true),
            json!(["a", 1]),
            json!({"k": "v"}),
        ]);
        for value in values {
            let mut written = Vec::new();
            write_json_key(&mut written, &value);
            assert_eq!(written, serde_json::to_vec(&value).unwrap(), "{value:?}");
        }
    }
}
