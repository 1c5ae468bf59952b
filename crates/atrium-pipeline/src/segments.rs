//! The segment engine: real-time segment membership and computed traits, inside the pipeline's
//! ordered, transactional apply.
//!
//! - Definitions arrive as `atrium.definition.put` records of kind `segment` / `computed_trait`.
//!   A new or edited definition is backfilled at that log position: the log prefix is scanned once
//!   and every profile's events (by its current timeline, so merged history counts) are fed to a
//!   fresh evaluator, then membership is taken at the record's time. Only that definition is
//!   recomputed, and only events of the names it reads are decoded in full (`backfill`).
//! - Each event updates the evaluation state of its profile ([`ProfileSegmentState`], one record
//!   per profile), at processing time = the event's `receivedAt`.
//! - Windowed conditions ask for a timer; the profile's earliest timer is kept durably in
//!   `segment_timers`. Time reaches the pipeline through `atrium.tick` records, which
//!   [`crate::Pipeline::spawn_segment_services`] appends when a timer is due; so replay sees the
//!   same ticks at the same positions and reproduces every change.
//! - A merge rebuilds the survivor's state from its (now combined) timeline.
//! - A membership change updates `segment_members` and puts a `Segment Entered` / `Segment
//!   Exited` event in the `outbox` with a message id derived from the log position that caused
//!   it. The services thread appends outbox events to the log; when the pipeline reads one back it
//!   removes the outbox entry. Replaying from zero therefore re-derives each change and finds its
//!   event already in the log: nothing is appended twice.
//!
//! Time is the log's: `receivedAt` of events, `at` of ticks and definition records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use atrium_identity::{IdentityStore, ProfileId};
use atrium_log::EventLog;
use atrium_segments::codec::{Reader, Writer};
use atrium_segments::{
    Catalog, Change, ChangeKind, CodecError, Compiled, CompiledTrait, ComputedTraitDefinition,
    Definition, EventView, ProfileState, TraitState, decode_profile_state, decode_trait_state,
    encode_profile_state, encode_trait_state, on_event, on_profile, on_timer, profile_state_member,
    validate, validate_computed_trait,
};
use atrium_store::{ReadTables, StoreError, WriteTables};
use atrium_types::{DefinitionKind, LogRecord, format_timestamp_ms, parse_timestamp_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use self::backfill::{EventNames, Replay};
use crate::PipelineError;
use crate::slim::DecodeFilter;

mod backfill;

/// Message ids of derived membership events start with this.
pub const DERIVED_MESSAGE_PREFIX: &str = "atrium-seg-";

/// One profile's evaluation state for every segment and computed trait (stored in
/// `segment_states`, see [`ProfileSegmentState::decode`] for the layout).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileSegmentState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, ProfileState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traits: BTreeMap<String, TraitState>,
    /// The timer each segment asked for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segment_timers: BTreeMap<String, i64>,
    /// The timer each computed trait asked for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trait_timers: BTreeMap<String, i64>,
}

/// First byte of a binary `segment_states` row (JSON rows of earlier versions start with `{`).
/// Version 2 front-codes the definition ids; version 1 rows (ids written in full) are still
/// read.
const ROW_VERSION: u8 = 2;
const ROW_VERSION_FULL_IDS: u8 = 1;

fn is_binary_row(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&ROW_VERSION | &ROW_VERSION_FULL_IDS))
}

fn row_error(error: CodecError) -> StoreError {
    StoreError::Decode {
        table: "segment_states",
        source: <serde_json::Error as serde::de::Error>::custom(error),
    }
}

impl ProfileSegmentState {
    /// Decodes a stored row completely.
    ///
    /// Layout of a row (the binary form of `atrium_segments::codec`): the version byte, the
    /// profile id (once, not in every state), then for segments and for computed traits a
    /// count and, in id order, `id, timer, length, state`; then timers without a state (none
    /// are written today). Ids are front-coded within each list: the length of the prefix
    /// shared with the previous id, then the rest (version 1 rows hold whole ids). Rows
    /// written as JSON by earlier versions are still read.
    pub fn decode(bytes: &[u8]) -> Result<ProfileSegmentState, StoreError> {
        if !is_binary_row(bytes) {
            return decode_legacy_row(bytes);
        }
        let mut state = ProfileSegmentState::default();
        // The profile id precedes every entry; read it first for the states' decoding.
        let profile_id = Reader::new(&bytes[1..]).str().map_err(row_error)?;
        parse_row(bytes, |entry| {
            let id = entry.id.to_owned();
            match entry.list {
                List::Segments => {
                    if let Some(timer) = entry.timer {
                        state.segment_timers.insert(id.clone(), timer);
                    }
                    if let Some(range) = entry.state {
                        let decoded =
                            decode_profile_state(&bytes[range], profile_id).map_err(row_error)?;
                        state.segments.insert(id, decoded);
                    }
                }
                List::Traits => {
                    if let Some(timer) = entry.timer {
                        state.trait_timers.insert(id.clone(), timer);
                    }
                    if let Some(range) = entry.state {
                        let decoded = decode_trait_state(&bytes[range]).map_err(row_error)?;
                        state.traits.insert(id, decoded);
                    }
                }
            }
            Ok(())
        })?;
        Ok(state)
    }
}

/// A JSON row of an earlier version.
fn decode_legacy_row(bytes: &[u8]) -> Result<ProfileSegmentState, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table: "segment_states",
        source,
    })
}

/// The two lists of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    Segments,
    Traits,
}

/// One definition's entry in a binary row: its timer and where its state's bytes are (`None`:
/// a timer without a state).
struct RowEntry<'a> {
    list: List,
    id: &'a str,
    timer: Option<i64>,
    state: Option<Range<usize>>,
}

/// Parses a binary row (see [`ProfileSegmentState::decode`]): gives `visit` the entries,
/// segments first, each list in id order (timers without a state last), and returns the
/// profile id.
fn parse_row<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(RowEntry<'_>) -> Result<(), StoreError>,
) -> Result<&'a str, StoreError> {
    let front_coded = bytes.first() == Some(&ROW_VERSION);
    let mut reader = Reader::new(&bytes[1..]);
    let profile_id = reader.str().map_err(row_error)?;
    // The current id of the list being read (front-coded rows).
    let mut id = String::new();
    let next_id =
        |reader: &mut Reader<'a>, id: &mut String, first: bool| -> Result<(), CodecError> {
            if first {
                id.clear();
            }
            let shared = if front_coded { reader.len()? } else { 0 };
            if shared > id.len() || !id.is_char_boundary(shared) {
                return Err(reader.error("bad shared id prefix"));
            }
            id.truncate(shared);
            id.push_str(reader.str()?);
            Ok(())
        };
    for list in [List::Segments, List::Traits] {
        let count = reader.len().map_err(row_error)?;
        for index in 0..count {
            next_id(&mut reader, &mut id, index == 0).map_err(row_error)?;
            let timer = reader.opt_i64().map_err(row_error)?;
            let length = reader.len().map_err(row_error)?;
            let start = 1 + reader.position();
            reader.take(length).map_err(row_error)?;
            visit(RowEntry {
                list,
                id: &id,
                timer,
                state: Some(start..start + length),
            })?;
        }
    }
    for list in [List::Segments, List::Traits] {
        let count = reader.len().map_err(row_error)?;
        for index in 0..count {
            next_id(&mut reader, &mut id, index == 0).map_err(row_error)?;
            let timer = Some(reader.i64().map_err(row_error)?);
            visit(RowEntry {
                list,
                id: &id,
                timer,
                state: None,
            })?;
        }
    }
    if !reader.is_empty() {
        return Err(row_error(reader.error("trailing bytes")));
    }
    Ok(profile_id)
}

/// The compiled definitions, kept in memory and in step with the `definitions` table.
#[derive(Default)]
pub struct SegmentCatalog {
    pub segments: BTreeMap<String, Arc<Compiled>>,
    pub traits: BTreeMap<String, Arc<CompiledTrait>>,
    definitions: Catalog,
    /// The segments and computed traits in id order. A definition's position here is where the
    /// engine keeps its per-profile state and timer; positions change only when definitions do.
    segment_list: Vec<(String, Arc<Compiled>)>,
    trait_list: Vec<(String, Arc<CompiledTrait>)>,
    /// Per event name, the positions of the segments and computed traits an event of that name
    /// can affect (`event_relevant`), in order.
    by_event: HashMap<String, Relevant>,
    /// Whether some segment reads profile traits.
    reads_traits: bool,
    /// What the decoder keeps of events for these definitions; a new one whenever they change.
    filter: Arc<DecodeFilter>,
}

/// The definitions one event name is relevant to.
#[derive(Default)]
struct Relevant {
    segments: Vec<usize>,
    traits: Vec<usize>,
}

impl SegmentCatalog {
    /// Compiles the stored definitions. A definition that no longer compiles (it referenced a
    /// segment deleted since) is left out with a warning.
    pub fn load(tables: &ReadTables) -> Result<SegmentCatalog, StoreError> {
        let mut catalog = SegmentCatalog::default();
        for (key, stored) in tables.definitions(DefinitionKind::ComputedTrait.as_str())? {
            match serde_json::from_value::<ComputedTraitDefinition>(stored.body) {
                Ok(definition) => {
                    catalog.definitions.computed_traits.insert(key, definition);
                }
                Err(error) => tracing::warn!(%key, %error, "stored computed trait does not parse"),
            }
        }
        for (key, stored) in tables.definitions(DefinitionKind::Segment.as_str())? {
            match serde_json::from_value::<Definition>(stored.body) {
                Ok(definition) => {
                    catalog.definitions.segments.insert(key, definition);
                }
                Err(error) => tracing::warn!(%key, %error, "stored segment does not parse"),
            }
        }
        catalog.compile_all();
        Ok(catalog)
    }

    fn compile_all(&mut self) {
        self.traits.clear();
        for (key, definition) in &self.definitions.computed_traits {
            match validate_computed_trait(definition) {
                Ok(compiled) => {
                    self.traits.insert(key.clone(), Arc::new(compiled));
                }
                Err(errors) => tracing::warn!(%key, ?errors, "computed trait left out"),
            }
        }
        self.segments.clear();
        for (key, definition) in &self.definitions.segments {
            match validate(definition, &self.definitions) {
                Ok(compiled) => {
                    self.segments.insert(key.clone(), Arc::new(compiled));
                }
                Err(errors) => tracing::warn!(%key, ?errors, "segment left out"),
            }
        }
        self.index_events();
    }

    fn index_events(&mut self) {
        self.segment_list = self
            .segments
            .iter()
            .map(|(id, compiled)| (id.clone(), compiled.clone()))
            .collect();
        self.trait_list = self
            .traits
            .iter()
            .map(|(id, compiled)| (id.clone(), compiled.clone()))
            .collect();
        self.by_event.clear();
        for (position, (_, compiled)) in self.segment_list.iter().enumerate() {
            for name in compiled.event_names() {
                self.by_event
                    .entry(name.to_owned())
                    .or_default()
                    .segments
                    .push(position);
            }
        }
        for (position, (_, compiled)) in self.trait_list.iter().enumerate() {
            self.by_event
                .entry(compiled.event_name().to_owned())
                .or_default()
                .traits
                .push(position);
        }
        self.reads_traits = self
            .segments
            .values()
            .any(|compiled| compiled.reads_traits());
        let mut roots = std::collections::BTreeSet::new();
        for compiled in self.segments.values() {
            compiled.property_roots(&mut roots);
        }
        for compiled in self.traits.values() {
            compiled.property_roots(&mut roots);
        }
        self.filter = Arc::new(DecodeFilter {
            active: !self.is_empty(),
            events: self.by_event.keys().cloned().collect(),
            property_keys: roots.into_iter().map(str::to_owned).collect(),
        });
    }

    /// What the decoder keeps of events for these definitions (shared with the read-ahead).
    pub(crate) fn filter(&self) -> &Arc<DecodeFilter> {
        &self.filter
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.traits.is_empty()
    }

    /// Which events the pipeline decodes with their properties for this catalog.
    pub(crate) fn keep(&self) -> crate::slim::Keep<'_> {
        self.filter.keep()
    }

    /// Where the engine keeps the state of the segment `id` (compiled).
    fn segment_position(&self, id: &str) -> usize {
        position_of(&self.segment_list, &mut 0, id).expect("a compiled segment")
    }

    /// Where the engine keeps the state of the computed trait `id` (compiled).
    fn trait_position(&self, id: &str) -> usize {
        position_of(&self.trait_list, &mut 0, id).expect("a compiled computed trait")
    }

    /// The catalog definitions are validated against (other segments, computed traits).
    pub fn definitions(&self) -> &Catalog {
        &self.definitions
    }
}

/// One definition's state in a cached profile.
enum Slot<S> {
    /// No state yet (the profile was never evaluated for the definition).
    Absent,
    /// Not decoded (not touched in this batch): the state's bytes in the row.
    Raw(Range<usize>),
    Decoded(S),
}

impl<S> Slot<S> {
    fn is_present(&self) -> bool {
        !matches!(self, Slot::Absent)
    }
}

/// A profile's states and timers, by the definitions' catalog positions.
struct Cached {
    /// The row as stored (states not decoded yet point into it).
    row: Vec<u8>,
    segments: Vec<Slot<ProfileState>>,
    traits: Vec<Slot<TraitState>>,
    /// The timer each segment asked for.
    segment_timers: Vec<Option<i64>>,
    /// The timer each computed trait asked for.
    trait_timers: Vec<Option<i64>>,
    /// The timer currently stored for the profile.
    stored_timer: Option<i64>,
}

impl Cached {
    /// No state for any definition of `catalog`.
    fn empty(catalog: &SegmentCatalog) -> Cached {
        Cached {
            row: Vec::new(),
            segments: std::iter::repeat_with(|| Slot::Absent)
                .take(catalog.segment_list.len())
                .collect(),
            traits: std::iter::repeat_with(|| Slot::Absent)
                .take(catalog.trait_list.len())
                .collect(),
            segment_timers: vec![None; catalog.segment_list.len()],
            trait_timers: vec![None; catalog.trait_list.len()],
            stored_timer: None,
        }
    }

    /// A stored row (empty: none) laid out by `catalog`'s positions. States and timers of
    /// definitions deleted since the row was written are dropped; `stored_timer` still counts
    /// their timers (it must name the profile's current entry in the `segment_timers` table).
    fn from_row(row: Vec<u8>, catalog: &SegmentCatalog) -> Result<Cached, StoreError> {
        let mut cached = Cached::empty(catalog);
        let mut stored_timer: Option<i64> = None;
        let mut earliest = |timer: Option<i64>| {
            if let Some(timer) = timer {
                stored_timer = Some(stored_timer.map_or(timer, |held| held.min(timer)));
            }
        };
        if is_binary_row(&row) {
            let (mut segment_hint, mut trait_hint) = (0, 0);
            parse_row(&row, |entry| {
                earliest(entry.timer);
                match entry.list {
                    List::Segments => {
                        let Some(position) =
                            position_of(&catalog.segment_list, &mut segment_hint, entry.id)
                        else {
                            return Ok(());
                        };
                        if entry.timer.is_some() {
                            cached.segment_timers[position] = entry.timer;
                        }
                        if let Some(range) = entry.state {
                            cached.segments[position] = Slot::Raw(range);
                        }
                    }
                    List::Traits => {
                        let Some(position) =
                            position_of(&catalog.trait_list, &mut trait_hint, entry.id)
                        else {
                            return Ok(());
                        };
                        if entry.timer.is_some() {
                            cached.trait_timers[position] = entry.timer;
                        }
                        if let Some(range) = entry.state {
                            cached.traits[position] = Slot::Raw(range);
                        }
                    }
                }
                Ok(())
            })?;
        } else if !row.is_empty() {
            let legacy = decode_legacy_row(&row)?;
            let mut hint = 0;
            for (id, timer) in legacy.segment_timers {
                earliest(Some(timer));
                if let Some(position) = position_of(&catalog.segment_list, &mut hint, &id) {
                    cached.segment_timers[position] = Some(timer);
                }
            }
            let mut hint = 0;
            for (id, timer) in legacy.trait_timers {
                earliest(Some(timer));
                if let Some(position) = position_of(&catalog.trait_list, &mut hint, &id) {
                    cached.trait_timers[position] = Some(timer);
                }
            }
            let mut hint = 0;
            for (id, state) in legacy.segments {
                if let Some(position) = position_of(&catalog.segment_list, &mut hint, &id) {
                    cached.segments[position] = Slot::Decoded(state);
                }
            }
            let mut hint = 0;
            for (id, state) in legacy.traits {
                if let Some(position) = position_of(&catalog.trait_list, &mut hint, &id) {
                    cached.traits[position] = Slot::Decoded(state);
                }
            }
        }
        cached.row = row;
        cached.stored_timer = stored_timer;
        Ok(cached)
    }

    /// Whether the profile has state for every definition.
    fn is_complete(&self) -> bool {
        self.segments.iter().all(Slot::is_present) && self.traits.iter().all(Slot::is_present)
    }

    fn segment_mut(
        &mut self,
        position: usize,
        profile: &str,
    ) -> Result<Option<&mut ProfileState>, StoreError> {
        if let Slot::Raw(range) = &self.segments[position] {
            let decoded =
                decode_profile_state(&self.row[range.clone()], profile).map_err(row_error)?;
            self.segments[position] = Slot::Decoded(decoded);
        }
        Ok(match &mut self.segments[position] {
            Slot::Decoded(state) => Some(state),
            _ => None,
        })
    }

    /// Whether the profile is a member of the segment at `position`, as its state says (the
    /// state and `segment_members` change together), without decoding a state not decoded yet.
    fn segment_member(&self, position: usize) -> Result<bool, StoreError> {
        match &self.segments[position] {
            Slot::Absent => Ok(false),
            Slot::Raw(range) => profile_state_member(&self.row[range.clone()]).map_err(row_error),
            Slot::Decoded(state) => Ok(state.member),
        }
    }

    fn trait_mut(&mut self, position: usize) -> Result<Option<&mut TraitState>, StoreError> {
        if let Slot::Raw(range) = &self.traits[position] {
            let decoded = decode_trait_state(&self.row[range.clone()]).map_err(row_error)?;
            self.traits[position] = Slot::Decoded(decoded);
        }
        Ok(match &mut self.traits[position] {
            Slot::Decoded(state) => Some(state),
            _ => None,
        })
    }

    /// Forgets every state and timer.
    fn clear(&mut self) {
        self.segments
            .iter_mut()
            .for_each(|slot| *slot = Slot::Absent);
        self.traits.iter_mut().for_each(|slot| *slot = Slot::Absent);
        self.segment_timers
            .iter_mut()
            .for_each(|timer| *timer = None);
        self.trait_timers.iter_mut().for_each(|timer| *timer = None);
    }

    fn next_timer(&self) -> Option<i64> {
        self.segment_timers
            .iter()
            .chain(&self.trait_timers)
            .flatten()
            .copied()
            .min()
    }

    fn is_empty(&self) -> bool {
        !self.segments.iter().any(Slot::is_present)
            && !self.traits.iter().any(Slot::is_present)
            && self.next_timer().is_none()
    }

    /// The row to store (see [`ProfileSegmentState::decode`]), written into `out` (cleared
    /// first); `scratch` is reused.
    fn encode(
        &self,
        catalog: &SegmentCatalog,
        profile: &str,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        out.clear();
        let mut writer = Writer::new(std::mem::take(out));
        writer.u8(ROW_VERSION);
        writer.str(profile);
        // Segments, then computed traits, in id order (= catalog order).
        write_slots(
            &mut writer,
            &self.row,
            &self.segments,
            &self.segment_timers,
            |position| &catalog.segment_list[position].0,
            scratch,
            encode_profile_state,
        );
        write_slots(
            &mut writer,
            &self.row,
            &self.traits,
            &self.trait_timers,
            |position| &catalog.trait_list[position].0,
            scratch,
            encode_trait_state,
        );
        // Timers without a state.
        write_orphan_timers(
            &mut writer,
            &self.segments,
            &self.segment_timers,
            |position| &catalog.segment_list[position].0,
        );
        write_orphan_timers(&mut writer, &self.traits, &self.trait_timers, |position| {
            &catalog.trait_list[position].0
        });
        *out = writer.bytes;
    }
}

/// Writes `id` front-coded after `previous` (the list's previous id, `""` for the first).
fn write_id(writer: &mut Writer, previous: &str, id: &str) {
    let mut shared = previous
        .bytes()
        .zip(id.bytes())
        .take_while(|(left, right)| left == right)
        .count();
    while !id.is_char_boundary(shared) {
        shared -= 1;
    }
    writer.u64(shared as u64);
    writer.str(&id[shared..]);
}

fn write_slot(writer: &mut Writer, previous: &str, id: &str, timer: Option<i64>, state: &[u8]) {
    write_id(writer, previous, id);
    writer.opt_i64(timer);
    writer.u64(state.len() as u64);
    writer.raw(state);
}

/// Writes the present slots of one list (count, then each front-coded id, timer and state);
/// raw states are copied from `row`, decoded ones encoded through `scratch`.
fn write_slots<'a, S>(
    writer: &mut Writer,
    row: &[u8],
    slots: &[Slot<S>],
    timers: &[Option<i64>],
    id_of: impl Fn(usize) -> &'a str,
    scratch: &mut Vec<u8>,
    encode_state: fn(&S, &mut Vec<u8>),
) {
    let present = slots.iter().filter(|slot| slot.is_present()).count();
    writer.u64(present as u64);
    let mut previous = "";
    for (position, slot) in slots.iter().enumerate() {
        let id = id_of(position);
        let timer = timers[position];
        match slot {
            Slot::Absent => continue,
            Slot::Raw(range) => write_slot(writer, previous, id, timer, &row[range.clone()]),
            Slot::Decoded(state) => {
                scratch.clear();
                encode_state(state, scratch);
                write_slot(writer, previous, id, timer, scratch);
            }
        }
        previous = id;
    }
}

fn write_orphan_timers<'a, S>(
    writer: &mut Writer,
    slots: &[Slot<S>],
    timers: &[Option<i64>],
    id_of: impl Fn(usize) -> &'a str,
) {
    let orphans = || {
        timers
            .iter()
            .enumerate()
            .filter(|(position, timer)| timer.is_some() && !slots[*position].is_present())
    };
    writer.u64(orphans().count() as u64);
    let mut previous = "";
    for (position, timer) in orphans() {
        let id = id_of(position);
        write_id(writer, previous, id);
        writer.i64(timer.expect("filtered"));
        previous = id;
    }
}

/// The position of `id` in `list` (sorted by id). `hint` is one past the previous answer, so
/// looking up ids in order costs one comparison each.
fn position_of<T>(list: &[(String, T)], hint: &mut usize, id: &str) -> Option<usize> {
    let position = match list.get(*hint) {
        Some((candidate, _)) if candidate == id => *hint,
        _ => list
            .binary_search_by(|(candidate, _)| candidate.as_str().cmp(id))
            .ok()?,
    };
    *hint = position + 1;
    Some(position)
}

/// The engine: the catalog plus a per-batch write-back cache of profile states.
#[derive(Default)]
pub(crate) struct SegmentEngine {
    pub catalog: SegmentCatalog,
    cache: HashMap<String, Cached>,
    /// Derived events created for the current log record (numbering their message ids).
    derived_in_record: u64,
    record_offset: u64,
    /// (profile, user id, anonymous id) of the current record's derived events.
    record_ids: Option<(String, Option<String>, Option<String>)>,
    /// Reused buffers of `record_change`: the message id and the derived event's JSON.
    message_id: String,
    derived_json: Vec<u8>,
}

/// The event as the evaluators see it.
fn event_view(event: &Value, time_ms: i64) -> EventView<'_> {
    static NULL: Value = Value::Null;
    let event_type = event.get("type").and_then(Value::as_str).unwrap_or("track");
    let name = match event_type {
        "track" => event.get("event").and_then(Value::as_str),
        "page" | "screen" => event.get("name").and_then(Value::as_str),
        _ => None,
    }
    .unwrap_or("");
    EventView {
        name,
        event_type,
        time_ms,
        properties: event.get("properties").unwrap_or(&NULL),
    }
}

/// Processing time of a logged event: its `receivedAt`.
fn processing_time(event: &Value, fallback: i64) -> i64 {
    event
        .get("receivedAt")
        .and_then(Value::as_str)
        .and_then(parse_timestamp_ms)
        .unwrap_or(fallback)
}

/// Event time of a logged event.
fn event_time(event: &Value) -> i64 {
    event
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp_ms)
        .or_else(|| {
            event
                .get("receivedAt")
                .and_then(Value::as_str)
                .and_then(parse_timestamp_ms)
        })
        .unwrap_or(0)
}

impl SegmentEngine {
    pub fn new(catalog: SegmentCatalog) -> SegmentEngine {
        SegmentEngine {
            catalog,
            ..SegmentEngine::default()
        }
    }

    /// Starts a log record: derived events are numbered from 0 within it.
    pub fn begin_record(&mut self, offset: u64) {
        self.record_offset = offset;
        self.derived_in_record = 0;
        self.record_ids = None;
    }

    /// Forgets the cache (after a failed transaction) and reloads the catalog.
    pub fn reset(&mut self, catalog: SegmentCatalog) {
        self.cache.clear();
        self.catalog = catalog;
    }

    fn load<'a>(
        &'a mut self,
        tables: &WriteTables<'_>,
        profile: &str,
    ) -> Result<&'a mut Cached, StoreError> {
        load_cached(&mut self.cache, &self.catalog, tables, profile)
    }
}

/// The cached state of `profile`, loaded from the store on first use in a batch.
fn load_cached<'a>(
    cache: &'a mut HashMap<String, Cached>,
    catalog: &SegmentCatalog,
    tables: &WriteTables<'_>,
    profile: &str,
) -> Result<&'a mut Cached, StoreError> {
    if !cache.contains_key(profile) {
        let row = tables.segment_state(profile)?.unwrap_or_default();
        cache.insert(profile.to_owned(), Cached::from_row(row, catalog)?);
    }
    Ok(cache.get_mut(profile).expect("just inserted"))
}

impl SegmentEngine {
    /// Writes cached states and timers back (end of batch).
    pub fn flush(&mut self, tables: &mut WriteTables<'_>) -> Result<(), StoreError> {
        let mut entries: Vec<(String, Cached)> = self.cache.drain().collect();
        entries.sort_by(|left, right| left.0.cmp(&right.0));
        // One buffer for every row and one for every state: no allocation per row.
        let (mut row, mut scratch) = (Vec::new(), Vec::new());
        for (profile, cached) in entries {
            let timer = cached.next_timer();
            tables.replace_segment_timer(&profile, cached.stored_timer, timer)?;
            if cached.is_empty() {
                if !cached.row.is_empty() {
                    tables.remove_segment_state(&profile)?;
                }
            } else {
                cached.encode(&self.catalog, &profile, &mut row, &mut scratch);
                tables.put_segment_state(&profile, &row)?;
            }
        }
        Ok(())
    }

    /// Feeds one applied event of `profile` (after the profile absorbed it).
    pub fn on_event(
        &mut self,
        tables: &mut WriteTables<'_>,
        profile: &ProfileId,
        event: &Value,
        time_ms: i64,
    ) -> Result<(), PipelineError> {
        if self.catalog.is_empty() {
            return Ok(());
        }
        let now_ms = processing_time(event, time_ms);
        let view = event_view(event, time_ms);
        let traits_may_change = matches!(view.event_type, "identify" | "group")
            || event
                .get("context")
                .and_then(|context| context.get("traits"))
                .is_some();
        let mut trait_values = None;
        let mut changes = Vec::new();
        let mut trait_updates = Vec::new();
        {
            let SegmentEngine { catalog, cache, .. } = self;
            // An event no definition mentions changes nothing but time, which timers cover: a
            // profile that already has state is not even loaded.
            static NONE: Relevant = Relevant {
                segments: Vec::new(),
                traits: Vec::new(),
            };
            let relevant_here = catalog.by_event.get(view.name).unwrap_or(&NONE);
            let concerns_no_definition = relevant_here.segments.is_empty()
                && relevant_here.traits.is_empty()
                && !(traits_may_change && catalog.reads_traits);
            if concerns_no_definition
                && (cache.contains_key(profile.as_str())
                    || tables.has_segment_state(profile.as_str())?)
            {
                return Ok(());
            }
            let cached = load_cached(cache, catalog, tables, profile.as_str())?;
            // When the profile has state for every definition and its traits cannot have
            // changed, only the definitions the event is relevant to do anything: then the
            // positions visited are `relevant_here`'s, otherwise every position.
            let complete = cached.is_complete();
            let segments_all_relevant = complete && !traits_may_change;
            let segments_visited = if segments_all_relevant {
                relevant_here.segments.len()
            } else {
                catalog.segment_list.len()
            };
            for index in 0..segments_visited {
                let position = if segments_all_relevant {
                    relevant_here.segments[index]
                } else {
                    index
                };
                let compiled = &catalog.segment_list[position].1;
                let fresh = !complete && !cached.segments[position].is_present();
                let relevant = segments_all_relevant
                    || relevant_here.segments.binary_search(&position).is_ok();
                let feed_traits = fresh || (traits_may_change && compiled.reads_traits());
                if !relevant && !feed_traits {
                    continue;
                }
                if fresh {
                    cached.segments[position] =
                        Slot::Decoded(ProfileState::new(compiled, profile.as_str()));
                }
                let state = cached
                    .segment_mut(position, profile.as_str())?
                    .expect("present");
                let mut timer = None;
                if feed_traits {
                    if trait_values.is_none() {
                        trait_values = Some(profile_traits(tables, profile)?);
                    }
                    let traits = trait_values.as_ref().expect("just loaded");
                    let outcome = on_profile(compiled, state, traits, now_ms);
                    changes.extend(outcome.changed);
                    timer = Some(outcome.next_timer_ms);
                }
                if relevant {
                    let outcome = on_event(compiled, state, &view, now_ms);
                    changes.extend(outcome.changed);
                    timer = Some(outcome.next_timer_ms);
                }
                if let Some(timer) = timer {
                    cached.segment_timers[position] = timer;
                }
            }
            let traits_visited = if complete {
                relevant_here.traits.len()
            } else {
                catalog.trait_list.len()
            };
            for index in 0..traits_visited {
                let position = if complete {
                    relevant_here.traits[index]
                } else {
                    index
                };
                let (id, compiled) = &catalog.trait_list[position];
                let fresh = !complete && !cached.traits[position].is_present();
                let relevant = complete || relevant_here.traits.binary_search(&position).is_ok();
                if !relevant && !fresh {
                    continue;
                }
                if fresh {
                    cached.traits[position] = Slot::Decoded(compiled.new_state());
                }
                let state = cached.trait_mut(position)?.expect("present");
                let outcome = if relevant {
                    compiled.on_event(state, &view, now_ms)
                } else {
                    compiled.on_timer(state, now_ms)
                };
                cached.trait_timers[position] = outcome.next_timer_ms;
                if outcome.changed || fresh {
                    trait_updates.push((id.clone(), outcome.value));
                }
            }
        }
        for change in changes {
            self.record_change(tables, profile, &change)?;
        }
        set_computed_traits(tables, profile, trait_updates)?;
        Ok(())
    }

    /// Updates `segment_members` and queues the derived event.
    fn record_change(
        &mut self,
        tables: &mut WriteTables<'_>,
        profile: &ProfileId,
        change: &Change,
    ) -> Result<(), PipelineError> {
        let entered = match change.kind {
            ChangeKind::Entered => Some(change.time_ms),
            ChangeKind::Exited => None,
        };
        tables.set_segment_member(&change.segment_id, profile.as_str(), entered)?;
        let mut message_id = std::mem::take(&mut self.message_id);
        message_id.clear();
        write!(
            message_id,
            "{DERIVED_MESSAGE_PREFIX}{:020}-{:08}",
            self.record_offset, self.derived_in_record
        )
        .expect("writing to a string");
        self.derived_in_record += 1;
        // The profile's user and anonymous ids, looked up once per log record.
        if self
            .record_ids
            .as_ref()
            .is_none_or(|(owner, _, _)| owner != profile.as_str())
        {
            let (mut user_id, mut anonymous_id) = (None, None);
            if let Some(graph) = tables.graph(profile)? {
                for (kind, slot) in [
                    ("user_id", &mut user_id),
                    ("anonymous_id", &mut anonymous_id),
                ] {
                    if let Some(record) = graph
                        .identifiers
                        .iter()
                        .find(|record| record.id.kind == kind)
                    {
                        *slot = Some(record.id.value.clone());
                    }
                }
            }
            self.record_ids = Some((profile.as_str().to_owned(), user_id, anonymous_id));
        }
        let (_, user_id, anonymous_id) = self.record_ids.as_ref().expect("just set");
        let timestamp = format_timestamp_ms(change.time_ms);
        let event = DerivedEvent {
            event: change.event_name(),
            message_id: &message_id,
            timestamp: &timestamp,
            segment_id: &change.segment_id,
            profile_id: profile.as_str(),
            user_id: user_id.as_deref(),
            anonymous_id: anonymous_id.as_deref(),
        };
        self.derived_json.clear();
        event.write_json(&mut self.derived_json);
        tables.put_outbox(&message_id, &self.derived_json)?;
        self.message_id = message_id;
        Ok(())
    }

    /// Fires the timers due at `at_ms` (an `atrium.tick`).
    pub fn on_tick(
        &mut self,
        tables: &mut WriteTables<'_>,
        at_ms: i64,
    ) -> Result<(), PipelineError> {
        // Timers set earlier in this batch are still in the cache.
        self.flush(tables)?;
        let due = tables.due_segment_timers(at_ms)?;
        for (_, profile) in due {
            let profile = ProfileId(profile);
            let mut changes = Vec::new();
            let mut trait_updates = Vec::new();
            {
                let SegmentEngine { catalog, cache, .. } = &mut *self;
                let cached = load_cached(cache, catalog, tables, profile.as_str())?;
                for (position, (_, compiled)) in catalog.segment_list.iter().enumerate() {
                    let due = cached.segment_timers[position].is_some_and(|time| time <= at_ms);
                    if !due {
                        continue;
                    }
                    if let Some(state) = cached.segment_mut(position, profile.as_str())? {
                        let outcome = on_timer(compiled, state, at_ms);
                        cached.segment_timers[position] = outcome.next_timer_ms;
                        changes.extend(outcome.changed);
                    }
                }
                for (position, (id, compiled)) in catalog.trait_list.iter().enumerate() {
                    let due = cached.trait_timers[position].is_some_and(|time| time <= at_ms);
                    if !due {
                        continue;
                    }
                    if let Some(state) = cached.trait_mut(position)? {
                        let outcome = compiled.on_timer(state, at_ms);
                        cached.trait_timers[position] = outcome.next_timer_ms;
                        if outcome.changed {
                            trait_updates.push((id.clone(), outcome.value));
                        }
                    }
                }
            }
            for change in changes {
                self.record_change(tables, &profile, &change)?;
            }
            set_computed_traits(tables, &profile, trait_updates)?;
        }
        Ok(())
    }

    /// After `merged` were merged into `survivor` (timelines already moved): drops the merged
    /// profiles' state and rebuilds the survivor's from its combined history.
    pub fn on_merge(
        &mut self,
        tables: &mut WriteTables<'_>,
        log: &dyn EventLog,
        survivor: &ProfileId,
        merged: &[ProfileId],
        now_ms: i64,
    ) -> Result<(), PipelineError> {
        if self.catalog.is_empty() {
            return Ok(());
        }
        for gone in merged {
            self.forget_profile(tables, gone)?;
        }
        let offsets = tables.timeline_offsets(survivor)?;
        let mut events = Vec::with_capacity(offsets.len());
        for offset in offsets {
            // Only the events some definition reads are fed with their properties.
            if let Some(event) = read_event(log, offset, self.catalog.keep())? {
                events.push(event);
            }
        }
        // Each event's view and processing time, computed once for every definition.
        let history: Vec<(EventView<'_>, i64)> = events
            .iter()
            .map(|event| {
                let time_ms = event_time(event);
                (event_view(event, time_ms), processing_time(event, time_ms))
            })
            .collect();
        // What each event is relevant to, by catalog position (as `event_relevant` answers).
        let relevance: Vec<Option<&Relevant>> = history
            .iter()
            .map(|(view, _)| self.catalog.by_event.get(view.name))
            .collect();
        let traits = profile_traits(tables, survivor)?;
        // The survivor's memberships before the merge, as its states say.
        let segment_count = self.catalog.segment_list.len();
        let previous = load_cached(&mut self.cache, &self.catalog, tables, survivor.as_str())?;
        let mut was_member = Vec::with_capacity(segment_count);
        for position in 0..segment_count {
            was_member.push(previous.segment_member(position)?);
        }
        // The rebuilt states by catalog position, and the survivor's memberships after.
        let mut segments = Vec::with_capacity(segment_count);
        let mut segment_timers = Vec::with_capacity(segment_count);
        let mut changes = Vec::new();
        for (position, (id, compiled)) in self.catalog.segment_list.iter().enumerate() {
            let replay = SegmentReplay(compiled);
            let mut state = replay.new_state(survivor.as_str());
            replay_history(&replay, &mut state, &history, |index| {
                relevance[index]
                    .is_some_and(|relevant| relevant.segments.binary_search(&position).is_ok())
            });
            on_profile(compiled, &mut state, &traits, now_ms);
            let outcome = on_timer(compiled, &mut state, now_ms);
            segment_timers.push(outcome.next_timer_ms);
            if was_member[position] != state.member {
                changes.push(membership_change(id, state.member, now_ms));
            }
            segments.push(Slot::Decoded(state));
        }
        let trait_count = self.catalog.trait_list.len();
        let mut trait_states = Vec::with_capacity(trait_count);
        let mut trait_timers = Vec::with_capacity(trait_count);
        let mut trait_updates = Vec::new();
        for (position, (id, compiled)) in self.catalog.trait_list.iter().enumerate() {
            let replay = TraitReplay(compiled);
            let mut state = replay.new_state(survivor.as_str());
            replay_history(&replay, &mut state, &history, |index| {
                relevance[index]
                    .is_some_and(|relevant| relevant.traits.binary_search(&position).is_ok())
            });
            let outcome = compiled.on_timer(&mut state, now_ms);
            trait_timers.push(outcome.next_timer_ms);
            trait_updates.push((id.clone(), outcome.value));
            trait_states.push(Slot::Decoded(state));
        }
        let cached = self.load(tables, survivor.as_str())?;
        cached.segments = segments;
        cached.segment_timers = segment_timers;
        cached.traits = trait_states;
        cached.trait_timers = trait_timers;
        for change in changes {
            self.record_change(tables, survivor, &change)?;
        }
        set_computed_traits(tables, survivor, trait_updates)?;
        Ok(())
    }

    /// Removes a profile's state, memberships and timer (merged away or erased).
    pub fn forget_profile(
        &mut self,
        tables: &mut WriteTables<'_>,
        profile: &ProfileId,
    ) -> Result<(), PipelineError> {
        let SegmentEngine { catalog, cache, .. } = self;
        let cached = load_cached(cache, catalog, tables, profile.as_str())?;
        let mut member_of = Vec::new();
        for (position, (id, _)) in catalog.segment_list.iter().enumerate() {
            if cached.segment_member(position)? {
                member_of.push(id.clone());
            }
        }
        cached.clear();
        for segment in member_of {
            tables.set_segment_member(&segment, profile.as_str(), None)?;
        }
        Ok(())
    }

    /// Erasure: forgets the profiles and drops their queued derived events.
    pub fn erase(
        &mut self,
        tables: &mut WriteTables<'_>,
        profiles: &[ProfileId],
    ) -> Result<(), PipelineError> {
        for profile in profiles {
            self.forget_profile(tables, profile)?;
        }
        tables.retain_outbox(|bytes| {
            serde_json::from_slice::<Value>(bytes).is_ok_and(|event| {
                event
                    .pointer("/properties/profile_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| profiles.iter().any(|profile| profile.as_str() == id))
            })
        })?;
        Ok(())
    }

    /// A segment or computed trait definition was written (or deleted: `body` is `None`) at
    /// log `offset`, time `at_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_definition(
        &mut self,
        tables: &mut WriteTables<'_>,
        log: &dyn EventLog,
        kind: DefinitionKind,
        key: &str,
        body: Option<&Value>,
        offset: u64,
        at_ms: i64,
    ) -> Result<(), PipelineError> {
        // Every cached state is written first: backfill works profile by profile on stored
        // state, and the cache is laid out by catalog positions, which change below.
        self.flush(tables)?;
        match kind {
            DefinitionKind::Segment => {
                let previous = self.catalog.segments.contains_key(key);
                match body.map(|body| serde_json::from_value::<Definition>(body.clone())) {
                    Some(Ok(definition)) => {
                        self.catalog
                            .definitions
                            .segments
                            .insert(key.to_owned(), definition);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%key, %error, "segment definition does not parse; ignored");
                        return Ok(());
                    }
                    None => {
                        self.catalog.definitions.segments.remove(key);
                    }
                }
                self.catalog.compile_all();
                match self.catalog.segments.get(key).cloned() {
                    Some(compiled) => {
                        self.backfill_segment(tables, log, key, &compiled, offset, at_ms)?
                    }
                    None if previous || body.is_none() => {
                        tables.clear_segment_members(key)?;
                    }
                    None => {}
                }
            }
            DefinitionKind::ComputedTrait => {
                match body
                    .map(|body| serde_json::from_value::<ComputedTraitDefinition>(body.clone()))
                {
                    Some(Ok(definition)) => {
                        self.catalog
                            .definitions
                            .computed_traits
                            .insert(key.to_owned(), definition);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%key, %error, "computed trait definition does not parse; ignored");
                        return Ok(());
                    }
                    None => {
                        self.catalog.definitions.computed_traits.remove(key);
                    }
                }
                self.catalog.compile_all();
                match self.catalog.traits.get(key).cloned() {
                    Some(compiled) => {
                        self.backfill_trait(tables, log, key, &compiled, offset, at_ms)?
                    }
                    None => {
                        for profile in tables.segment_state_profiles()? {
                            let profile = ProfileId(profile);
                            if let Some(stored) = tables.profile_mut(&profile)? {
                                stored.computed_traits.remove(key);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        self.flush(tables)?;
        Ok(())
    }

    fn backfill_segment(
        &mut self,
        tables: &mut WriteTables<'_>,
        log: &dyn EventLog,
        key: &str,
        compiled: &Arc<Compiled>,
        offset: u64,
        at_ms: i64,
    ) -> Result<(), PipelineError> {
        let entries = tables.all_timeline_offsets()?;
        let mut states = segment_states_from_history(&entries, log, offset, compiled)?;
        drop(entries);
        // Members without history before the definition (their events came later) are
        // evaluated too; in profile-id order with the rest.
        let mut previous_members = Vec::new();
        for profile in tables.segment_state_profiles()? {
            let has_history = states
                .binary_search_by(|(other, _)| other.as_str().cmp(&profile))
                .is_ok();
            if !has_history && tables.segment_member(key, &profile)?.is_some() {
                previous_members.push(profile);
            }
        }
        if !previous_members.is_empty() {
            for profile in previous_members {
                let state = ProfileState::new(compiled, &profile);
                states.push((profile, state));
            }
            states.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        }
        // A segment that reads no trait is given none: the same evaluation, without loading
        // (and writing back) every profile.
        let reads_traits = compiled.reads_traits();
        let position = self.catalog.segment_position(key);
        for (profile, mut state) in states {
            let profile = ProfileId(profile);
            let traits = if reads_traits {
                profile_traits(tables, &profile)?
            } else {
                Map::new()
            };
            on_profile(compiled, &mut state, &traits, at_ms);
            let outcome = on_timer(compiled, &mut state, at_ms);
            let was = tables.segment_member(key, profile.as_str())?.is_some();
            let cached = self.load(tables, profile.as_str())?;
            cached.segment_timers[position] = outcome.next_timer_ms;
            let member = state.member;
            cached.segments[position] = Slot::Decoded(state);
            if member != was {
                self.record_change(tables, &profile, &membership_change(key, member, at_ms))?;
            }
            if self.cache.len() >= 10_000 {
                self.flush(tables)?;
            }
        }
        Ok(())
    }

    fn backfill_trait(
        &mut self,
        tables: &mut WriteTables<'_>,
        log: &dyn EventLog,
        key: &str,
        compiled: &Arc<CompiledTrait>,
        offset: u64,
        at_ms: i64,
    ) -> Result<(), PipelineError> {
        let entries = tables.all_timeline_offsets()?;
        let names = EventNames::new(vec![compiled.event_name()]);
        let states = backfill::replay(&entries, log, offset, &names, &TraitReplay(compiled))?;
        let position = self.catalog.trait_position(key);
        for (profile, mut state) in states {
            let profile = ProfileId(profile);
            let outcome = compiled.on_timer(&mut state, at_ms);
            let cached = self.load(tables, profile.as_str())?;
            cached.trait_timers[position] = outcome.next_timer_ms;
            cached.traits[position] = Slot::Decoded(state);
            set_computed_traits(tables, &profile, vec![(key.to_owned(), outcome.value)])?;
            if self.cache.len() >= 10_000 {
                self.flush(tables)?;
            }
        }
        Ok(())
    }
}

/// A segment's evaluator over history.
struct SegmentReplay<'a>(&'a Compiled);

impl Replay for SegmentReplay<'_> {
    type State = ProfileState;

    fn new_state(&self, profile: &str) -> ProfileState {
        ProfileState::new(self.0, profile)
    }

    fn event(&self, state: &mut ProfileState, event: &EventView<'_>, now_ms: i64) {
        on_event(self.0, state, event, now_ms);
    }

    fn skipped(&self, state: &mut ProfileState, count: u64, now_ms: i64) {
        // An event no node matches only advances time and takes an arrival number.
        on_timer(self.0, state, now_ms);
        state.next_seq += count;
    }
}

/// A computed trait's evaluator over history.
struct TraitReplay<'a>(&'a CompiledTrait);

impl Replay for TraitReplay<'_> {
    type State = TraitState;

    fn new_state(&self, _profile: &str) -> TraitState {
        self.0.new_state()
    }

    fn event(&self, state: &mut TraitState, event: &EventView<'_>, now_ms: i64) {
        self.0.on_event(state, event, now_ms);
    }

    fn skipped(&self, state: &mut TraitState, _count: u64, now_ms: i64) {
        // `CompiledTrait::on_event` of an event it does not count is a timer call.
        self.0.on_timer(state, now_ms);
    }
}

/// Feeds `history` (views with their processing times, in order) to one evaluator. A run of
/// events `relevant` (given the event's index) rejects reaches it as one `skipped` call at the
/// run's latest processing time, as in the backfill: the same state, without evaluating after
/// every event.
fn replay_history<R: Replay>(
    replay: &R,
    state: &mut R::State,
    history: &[(EventView<'_>, i64)],
    relevant: impl Fn(usize) -> bool,
) {
    let mut skipped: Option<(u64, i64)> = None;
    for (index, (view, now_ms)) in history.iter().enumerate() {
        if relevant(index) {
            if let Some((count, latest_ms)) = skipped.take() {
                replay.skipped(state, count, latest_ms);
            }
            replay.event(state, view, *now_ms);
        } else {
            skipped = Some(match skipped {
                Some((count, latest_ms)) => (count + 1, latest_ms.max(*now_ms)),
                None => (1, *now_ms),
            });
        }
    }
    if let Some((count, latest_ms)) = skipped {
        replay.skipped(state, count, latest_ms);
    }
}

/// Each profile's state for `compiled` after its history before log offset `until`, in
/// profile-id order.
fn segment_states_from_history(
    entries: &[(u64, String)],
    log: &dyn EventLog,
    until: u64,
    compiled: &Compiled,
) -> Result<Vec<(String, ProfileState)>, PipelineError> {
    let names = EventNames::new(compiled.event_names());
    backfill::replay(entries, log, until, &names, &SegmentReplay(compiled))
}

/// A `Segment Entered` / `Segment Exited` event as queued in the outbox.
struct DerivedEvent<'a> {
    event: &'a str,
    message_id: &'a str,
    timestamp: &'a str,
    segment_id: &'a str,
    profile_id: &'a str,
    user_id: Option<&'a str>,
    anonymous_id: Option<&'a str>,
}

impl DerivedEvent<'_> {
    /// Appends the event as compact JSON, members in this order: `type`, `event`, `messageId`,
    /// `timestamp`, `properties` (`segment_id`, `profile_id`), `context.library.name`,
    /// `atrium` (`source`, `channel`), then `userId` and `anonymousId` when known. Written
    /// directly, without building a value; strings are escaped by `serde_json`.
    fn write_json(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, text: &str| {
            serde_json::to_writer(&mut *out, text).expect("a string serializes")
        };
        out.extend_from_slice(br#"{"type":"track","event":"#);
        string(out, self.event);
        out.extend_from_slice(br#","messageId":"#);
        string(out, self.message_id);
        out.extend_from_slice(br#","timestamp":"#);
        string(out, self.timestamp);
        out.extend_from_slice(br#","properties":{"segment_id":"#);
        string(out, self.segment_id);
        out.extend_from_slice(br#","profile_id":"#);
        string(out, self.profile_id);
        out.extend_from_slice(
            br#"},"context":{"library":{"name":"atrium-segments"}},"atrium":{"source":"atrium","channel":"server"}"#,
        );
        if let Some(user_id) = self.user_id {
            out.extend_from_slice(br#","userId":"#);
            string(out, user_id);
        }
        if let Some(anonymous_id) = self.anonymous_id {
            out.extend_from_slice(br#","anonymousId":"#);
            string(out, anonymous_id);
        }
        out.push(b'}');
    }
}

/// The change that makes `segment_id` membership `member` at `time_ms`.
fn membership_change(segment_id: &str, member: bool, time_ms: i64) -> Change {
    Change {
        segment_id: segment_id.to_owned(),
        kind: if member {
            ChangeKind::Entered
        } else {
            ChangeKind::Exited
        },
        time_ms,
    }
}

/// The logged event at `offset`, decoded as the pipeline decodes events it applies (the fields
/// the evaluators read; properties as `keep` says).
fn read_event(
    log: &dyn EventLog,
    offset: u64,
    keep: crate::slim::Keep<'_>,
) -> Result<Option<Value>, PipelineError> {
    let records = log.read(offset, 1)?;
    Ok(records
        .into_iter()
        .find(|record| record.offset == offset)
        .and_then(|record| match crate::slim::decode(&record.payload, keep) {
            Ok(LogRecord::Event(event)) => Some(event),
            _ => None,
        }))
}

fn profile_traits(
    tables: &mut WriteTables<'_>,
    profile: &ProfileId,
) -> Result<Map<String, Value>, StoreError> {
    Ok(tables
        .profile_mut(profile)?
        .map(|profile| profile.trait_values())
        .unwrap_or_default())
}

fn set_computed_traits(
    tables: &mut WriteTables<'_>,
    profile: &ProfileId,
    updates: Vec<(String, Value)>,
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    if let Some(stored) = tables.profile_mut(profile)? {
        for (id, value) in updates {
            stored.computed_traits.insert(id, value);
        }
    }
    Ok(())
}

/// What a segment definition would select now, before it is saved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Preview {
    /// Profiles that would be members.
    pub count: u64,
    /// Profiles evaluated (every profile with history).
    pub evaluated: u64,
    /// The first members in profile-id order.
    pub sample: Vec<String>,
    /// The log position the preview reflects (one past the last applied offset).
    pub as_of_offset: u64,
}

/// Evaluates `compiled` over every profile's history as of the store's current snapshot, at
/// time `now_ms`, without changing anything (the same evaluator and history the backfill uses).
pub fn preview(
    store: &atrium_store::Store,
    log: &dyn EventLog,
    compiled: &Compiled,
    now_ms: i64,
    sample: usize,
) -> Result<Preview, PipelineError> {
    let (entries, as_of_offset) =
        store.read(|tables| Ok((tables.all_timeline_offsets()?, tables.pipeline_offset()?)))?;
    let states = segment_states_from_history(&entries, log, as_of_offset, compiled)?;
    let mut preview = Preview {
        count: 0,
        evaluated: states.len() as u64,
        sample: Vec::new(),
        as_of_offset,
    };
    for (profile, mut state) in states {
        let traits = store.read(|tables| {
            Ok(tables
                .profile(&ProfileId(profile.clone()))?
                .map(|profile| profile.trait_values())
                .unwrap_or_default())
        })?;
        on_profile(compiled, &mut state, &traits, now_ms);
        if on_timer(compiled, &mut state, now_ms).membership {
            preview.count += 1;
            if preview.sample.len() < sample {
                preview.sample.push(profile);
            }
        }
    }
    Ok(preview)
}

#[cfg(test)]
mod tests {
    use atrium_segments::codec::Writer;
    use serde_json::json;

    use super::{DerivedEvent, List, ROW_VERSION, ROW_VERSION_FULL_IDS, parse_row, write_slot};

    /// An entry as `parse_row` gives it: list, id, timer, state bytes (`None`: timer only).
    type Seen = (List, String, Option<i64>, Option<Vec<u8>>);

    /// The profile id and entries of a row.
    fn entries(row: &[u8]) -> (String, Vec<Seen>) {
        let mut seen = Vec::new();
        let profile = parse_row(row, |entry| {
            let state = entry.state.map(|range| row[range].to_vec());
            seen.push((entry.list, entry.id.to_owned(), entry.timer, state));
            Ok(())
        })
        .unwrap();
        (profile.to_owned(), seen)
    }

    /// Front-coded ids (version 2) read back as the whole ids a version 1 row holds, including
    /// ids whose common bytes end inside a character.
    #[test]
    fn front_coded_ids_read_like_whole_ids() {
        let segments = ["bench_001", "bench_002", "bench_010", "zé", "zê", "zêa"];
        let traits = ["a", "ab", "b"];
        let mut rows = Vec::new();
        for version in [ROW_VERSION_FULL_IDS, ROW_VERSION] {
            let mut writer = Writer::new(Vec::new());
            writer.u8(version);
            writer.str("profile-1");
            for ids in [&segments[..], &traits[..]] {
                writer.u64(ids.len() as u64);
                let mut previous = "";
                for (index, id) in ids.iter().enumerate() {
                    let state = [index as u8; 3];
                    let timer = (index % 2 == 0).then_some(index as i64 * 1_000);
                    if version == ROW_VERSION {
                        write_slot(&mut writer, previous, id, timer, &state);
                    } else {
                        writer.str(id);
                        writer.opt_i64(timer);
                        writer.u64(state.len() as u64);
                        writer.raw(&state);
                    }
                    previous = id;
                }
            }
            writer.u64(0);
            writer.u64(0);
            rows.push(writer.bytes);
        }
        let (full, front_coded) = (entries(&rows[0]), entries(&rows[1]));
        assert_eq!(full, front_coded);
        assert_eq!(full.0, "profile-1");
        let ids: Vec<&str> = full.1.iter().map(|entry| entry.1.as_str()).collect();
        assert_eq!(ids, [&segments[..], &traits[..]].concat());
        assert!(rows[1].len() < rows[0].len());
    }

    /// The hand-written JSON equals what `serde_json` makes of the same members.
    #[test]
    fn derived_events_are_written_as_serde_json_would() {
        let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀 </script>";
        for (user_id, anonymous_id) in [
            (Some("u-1"), Some(tricky)),
            (Some(tricky), None),
            (None, Some("a-1")),
            (None, None),
        ] {
            let event = DerivedEvent {
                event: "Segment Entered",
                message_id: "atrium-seg-00000000000000000042-00000001",
                timestamp: "2026-11-23T21:00:00.000Z",
                segment_id: tricky,
                profile_id: "p:\u{1}\u{1f}",
                user_id,
                anonymous_id,
            };
            let mut written = Vec::new();
            event.write_json(&mut written);
            let mut expected = json!({
                "type": "track",
                "event": event.event,
                "messageId": event.message_id,
                "timestamp": event.timestamp,
                "properties": {"segment_id": event.segment_id, "profile_id": event.profile_id},
                "context": {"library": {"name": "atrium-segments"}},
                "atrium": {"source": "atrium", "channel": "server"},
            });
            if let Some(user_id) = user_id {
                expected["userId"] = json!(user_id);
            }
            if let Some(anonymous_id) = anonymous_id {
                expected["anonymousId"] = json!(anonymous_id);
            }
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }
}
