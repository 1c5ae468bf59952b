//! A compact binary encoding of the per-profile evaluation states ([`ProfileState`],
//! [`TraitState`]) for storage.
//!
//! The encoding is canonical: `encode(decode(bytes)) == bytes` for every output of the encoder,
//! and `decode(encode(state)) == state`. The pipeline relies on both: states an event does not
//! touch are copied back verbatim, and replay must reproduce the stored bytes exactly.
//!
//! Layout: integers are LEB128 varints (signed ones zigzag-encoded), `f64` are their 8 IEEE
//! bytes, strings are a length and UTF-8 bytes. Sorted time lists are delta-encoded. A
//! [`ProfileState`]'s `profile_id` is not encoded: it is the row's key, passed to
//! [`decode_profile_state`].

use std::collections::BTreeMap;

use crate::TraitState;
use crate::incremental::{
    Extreme, Keyed, NodeState, NotFollowedByState, ProfileState, SequenceState,
};
use crate::store::{Entry, Store, Summary};

pub use atrium_types::codec::{CodecError, Reader, Writer};

fn write_entries(writer: &mut Writer, entries: &[Entry]) {
    writer.u64(entries.len() as u64);
    let (mut time, mut seq) = (0i64, 0i64);
    for entry in entries {
        writer.i64(entry.time.wrapping_sub(time));
        writer.i64((entry.seq as i64).wrapping_sub(seq));
        writer.value(&entry.value);
        time = entry.time;
        seq = entry.seq as i64;
    }
}

/// Room for one more element than decoded: a state is decoded to take an event, and a list
/// decoded at its exact length would be copied into a new allocation by that first insert.
fn with_spare<T>(count: usize) -> Vec<T> {
    Vec::with_capacity(count + 1)
}

fn read_entries(reader: &mut Reader<'_>) -> Result<Vec<Entry>, CodecError> {
    let count = reader.len()?;
    let mut entries = with_spare(count);
    let (mut time, mut seq) = (0i64, 0i64);
    for _ in 0..count {
        time = time.wrapping_add(reader.i64()?);
        seq = seq.wrapping_add(reader.i64()?);
        entries.push(Entry {
            time,
            seq: seq as u64,
            value: reader.value()?,
        });
    }
    Ok(entries)
}

fn write_entry(writer: &mut Writer, entry: &Entry) {
    writer.i64(entry.time);
    writer.u64(entry.seq);
    writer.value(&entry.value);
}

fn read_entry(reader: &mut Reader<'_>) -> Result<Entry, CodecError> {
    Ok(Entry {
        time: reader.i64()?,
        seq: reader.u64()?,
        value: reader.value()?,
    })
}

const HAS_MIN: u8 = 1;
const HAS_MAX: u8 = 2;
const HAS_MAX_TIME: u8 = 4;
const HAS_FIRST: u8 = 8;
const HAS_LAST: u8 = 16;
const TRUNCATED: u8 = 32;

fn write_summary(writer: &mut Writer, summary: &Summary) {
    let mut flags = 0;
    for (present, flag) in [
        (summary.min.is_some(), HAS_MIN),
        (summary.max.is_some(), HAS_MAX),
        (summary.max_time.is_some(), HAS_MAX_TIME),
        (summary.first.is_some(), HAS_FIRST),
        (summary.last.is_some(), HAS_LAST),
        (summary.truncated, TRUNCATED),
    ] {
        if present {
            flags |= flag;
        }
    }
    writer.u8(flags);
    writer.u64(summary.count);
    writer.u64(summary.numeric_count);
    writer.f64(summary.sum);
    if let Some(min) = summary.min {
        writer.f64(min);
    }
    if let Some(max) = summary.max {
        writer.f64(max);
    }
    if let Some(max_time) = summary.max_time {
        writer.i64(max_time);
    }
    if let Some(first) = &summary.first {
        write_entry(writer, first);
    }
    if let Some(last) = &summary.last {
        write_entry(writer, last);
    }
    writer.u64(summary.counts.len() as u64);
    for (key, count) in &summary.counts {
        writer.str(key);
        writer.u64(*count);
    }
}

fn read_summary(reader: &mut Reader<'_>) -> Result<Summary, CodecError> {
    let flags = reader.u8()?;
    if flags & !(HAS_MIN | HAS_MAX | HAS_MAX_TIME | HAS_FIRST | HAS_LAST | TRUNCATED) != 0 {
        return Err(reader.error("bad summary flags"));
    }
    let count = reader.u64()?;
    let numeric_count = reader.u64()?;
    let sum = reader.f64()?;
    let min = if flags & HAS_MIN != 0 {
        Some(reader.f64()?)
    } else {
        None
    };
    let max = if flags & HAS_MAX != 0 {
        Some(reader.f64()?)
    } else {
        None
    };
    let max_time = if flags & HAS_MAX_TIME != 0 {
        Some(reader.i64()?)
    } else {
        None
    };
    let first = if flags & HAS_FIRST != 0 {
        Some(read_entry(reader)?)
    } else {
        None
    };
    let last = if flags & HAS_LAST != 0 {
        Some(read_entry(reader)?)
    } else {
        None
    };
    let mut counts = BTreeMap::new();
    let entries = reader.len()?;
    let mut previous: Option<String> = None;
    for _ in 0..entries {
        let key = reader.str()?.to_owned();
        if previous.as_ref().is_some_and(|previous| *previous >= key) {
            return Err(reader.error("distinct values out of order"));
        }
        let count = reader.u64()?;
        previous = Some(key.clone());
        counts.insert(key, count);
    }
    Ok(Summary {
        count,
        numeric_count,
        sum,
        min,
        max,
        max_time,
        first,
        last,
        counts,
        truncated: flags & TRUNCATED != 0,
    })
}

fn write_store(writer: &mut Writer, store: &Store) {
    match store {
        Store::Summary(summary) => {
            writer.u8(0);
            write_summary(writer, summary);
        }
        Store::Entries { entries, dropped } => {
            writer.u8(1);
            writer.u64(*dropped);
            write_entries(writer, entries);
        }
    }
}

fn read_store(reader: &mut Reader<'_>) -> Result<Store, CodecError> {
    match reader.u8()? {
        0 => Ok(Store::Summary(Box::new(read_summary(reader)?))),
        1 => {
            let dropped = reader.u64()?;
            let entries = read_entries(reader)?;
            Ok(Store::Entries { entries, dropped })
        }
        _ => Err(reader.error("bad store tag")),
    }
}

fn write_times(writer: &mut Writer, times: &[i64]) {
    writer.u64(times.len() as u64);
    let mut previous = 0i64;
    for time in times {
        writer.i64(time.wrapping_sub(previous));
        previous = *time;
    }
}

fn read_times(reader: &mut Reader<'_>) -> Result<Vec<i64>, CodecError> {
    let count = reader.len()?;
    let mut times = with_spare(count);
    let mut previous = 0i64;
    for _ in 0..count {
        previous = previous.wrapping_add(reader.i64()?);
        times.push(previous);
    }
    Ok(times)
}

fn write_keyed(writer: &mut Writer, list: &[Keyed]) {
    writer.u64(list.len() as u64);
    let mut previous = 0i64;
    for keyed in list {
        writer.i64(keyed.time.wrapping_sub(previous));
        previous = keyed.time;
        match &keyed.key {
            None => writer.u8(0),
            Some(values) => {
                writer.u8(1);
                writer.u64(values.len() as u64);
                for value in values {
                    writer.value(value);
                }
            }
        }
    }
}

fn read_keyed(reader: &mut Reader<'_>) -> Result<Vec<Keyed>, CodecError> {
    let count = reader.len()?;
    let mut list = with_spare(count);
    let mut previous = 0i64;
    for _ in 0..count {
        previous = previous.wrapping_add(reader.i64()?);
        let key = match reader.u8()? {
            0 => None,
            1 => {
                let length = reader.len()?;
                let mut values = Vec::with_capacity(length);
                for _ in 0..length {
                    values.push(reader.value()?);
                }
                Some(values)
            }
            _ => return Err(reader.error("bad key tag")),
        };
        list.push(Keyed {
            time: previous,
            key,
        });
    }
    Ok(list)
}

fn write_node(writer: &mut Writer, node: &NodeState) {
    match node {
        NodeState::Stateless => writer.u8(0),
        NodeState::Measure(store) => {
            writer.u8(1);
            write_store(writer, store);
        }
        NodeState::Extreme { held: None } => writer.u8(2),
        NodeState::Extreme {
            held: Some(extreme),
        } => {
            writer.u8(3);
            writer.i64(extreme.time);
            writer.u64(extreme.seq);
            writer.bool(extreme.has);
        }
        NodeState::Sequence(sequence) => {
            writer.u8(4);
            writer.bool(sequence.done);
            writer.u64(sequence.dropped);
            writer.u64(sequence.steps.len() as u64);
            for step in &sequence.steps {
                write_times(writer, step);
            }
        }
        NodeState::NotFollowedBy(pattern) => {
            writer.u8(5);
            writer.u64(pattern.dropped);
            write_keyed(writer, &pattern.pending);
            write_keyed(writer, &pattern.thens);
        }
        NodeState::Computed(store) => {
            writer.u8(6);
            write_store(writer, store);
        }
    }
}

fn read_node(reader: &mut Reader<'_>) -> Result<NodeState, CodecError> {
    Ok(match reader.u8()? {
        0 => NodeState::Stateless,
        1 => NodeState::Measure(read_store(reader)?),
        2 => NodeState::Extreme { held: None },
        3 => NodeState::Extreme {
            held: Some(Extreme {
                time: reader.i64()?,
                seq: reader.u64()?,
                has: reader.bool()?,
            }),
        },
        4 => {
            let done = reader.bool()?;
            let dropped = reader.u64()?;
            let count = reader.len()?;
            let mut steps = Vec::with_capacity(count);
            for _ in 0..count {
                steps.push(read_times(reader)?);
            }
            NodeState::Sequence(SequenceState {
                done,
                steps,
                dropped,
            })
        }
        5 => {
            let dropped = reader.u64()?;
            let pending = read_keyed(reader)?;
            let thens = read_keyed(reader)?;
            NodeState::NotFollowedBy(NotFollowedByState {
                pending,
                thens,
                dropped,
            })
        }
        6 => NodeState::Computed(read_store(reader)?),
        _ => return Err(reader.error("bad node tag")),
    })
}

/// Appends one segment's state (all but `profile_id`).
pub fn encode_profile_state(state: &ProfileState, out: &mut Vec<u8>) {
    let mut writer = Writer::new(std::mem::take(out));
    writer.opt_i64(state.entry_ms);
    writer.bool(state.member);
    writer.i64(state.last_now_ms);
    writer.u64(state.next_seq);
    writer.u64(state.traits.len() as u64);
    for (path, value) in &state.traits {
        writer.str(path);
        writer.value(value);
    }
    writer.u64(state.nodes.len() as u64);
    for node in &state.nodes {
        write_node(&mut writer, node);
    }
    *out = writer.bytes;
}

/// Whether a segment's state written by [`encode_profile_state`] says the profile is a member,
/// read without decoding the rest.
pub fn profile_state_member(bytes: &[u8]) -> Result<bool, CodecError> {
    let mut reader = Reader::new(bytes);
    reader.opt_i64()?;
    reader.bool()
}

/// Decodes one segment's state written by [`encode_profile_state`]; the whole slice must be
/// consumed.
pub fn decode_profile_state(bytes: &[u8], profile_id: &str) -> Result<ProfileState, CodecError> {
    let mut reader = Reader::new(bytes);
    let entry_ms = reader.opt_i64()?;
    let member = reader.bool()?;
    let last_now_ms = reader.i64()?;
    let next_seq = reader.u64()?;
    let count = reader.len()?;
    let mut traits = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for _ in 0..count {
        let path = reader.str()?;
        if previous.is_some_and(|previous| previous >= path) {
            return Err(reader.error("trait paths out of order"));
        }
        previous = Some(path);
        traits.insert(path.to_owned(), reader.value()?);
    }
    let count = reader.len()?;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(read_node(&mut reader)?);
    }
    if !reader.is_empty() {
        return Err(reader.error("trailing bytes"));
    }
    Ok(ProfileState {
        profile_id: profile_id.to_owned(),
        entry_ms,
        member,
        last_now_ms,
        next_seq,
        traits,
        nodes,
    })
}

/// Appends one computed trait's state.
pub fn encode_trait_state(state: &TraitState, out: &mut Vec<u8>) {
    let mut writer = Writer::new(std::mem::take(out));
    writer.value(&state.value);
    write_store(&mut writer, &state.store);
    writer.u64(state.next_seq);
    writer.i64(state.last_now_ms);
    writer.opt_i64(state.entry_ms);
    *out = writer.bytes;
}

/// Decodes one computed trait's state written by [`encode_trait_state`]; the whole slice must
/// be consumed.
pub fn decode_trait_state(bytes: &[u8]) -> Result<TraitState, CodecError> {
    let mut reader = Reader::new(bytes);
    let value = reader.value()?;
    let store = read_store(&mut reader)?;
    let next_seq = reader.u64()?;
    let last_now_ms = reader.i64()?;
    let entry_ms = reader.opt_i64()?;
    if !reader.is_empty() {
        return Err(reader.error("trailing bytes"));
    }
    Ok(TraitState {
        value,
        store,
        next_seq,
        last_now_ms,
        entry_ms,
    })
}
