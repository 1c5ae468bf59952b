//! The store's identity graph and profiles as SQL sees them (`identities`, `profiles`): a
//! snapshot read from the store, rebuilt when the pipeline has moved.
//!
//! Freshness policy. A graph whose last rebuild took less than
//! [`WarehouseConfig::graph_sync_rebuild`](crate::WarehouseConfig) is rebuilt on the query path,
//! so queries see the pipeline's latest commit. A larger graph (a million profiles take seconds
//! to read) is refreshed on a background thread while queries keep using the previous snapshot;
//! between two background rebuilds the refresher pauses [`REFRESH_PAUSE_FACTOR`] times the
//! rebuild's own duration, so refreshing never takes more than a fifth of a core. A snapshot
//! older than an erase record the materializer has met is never served stale: erased profiles
//! leave SQL before the erase record's rows are reported gone. The server reads the first
//! snapshot in the background at start ([`Snapshots::warm`]); a query arriving before it is
//! done waits for that read instead of starting a second one.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use atrium_store::{Profile, Store};
use datafusion::arrow::array::{
    Array, ArrayRef, Float64Builder, Int64Builder, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Condvar, Mutex};

use crate::WarehouseError;

/// Pause between background rebuilds, as a multiple of the last rebuild's duration.
pub const REFRESH_PAUSE_FACTOR: u32 = 4;

/// Profiles read from the store per page while building the `profiles` table.
const PROFILE_PAGE: usize = 1_000;

/// Store tables at one pipeline offset.
pub struct GraphSnapshot {
    /// The pipeline offset the snapshot was read at.
    pub offset: u64,
    pub(crate) identities: RecordBatch,
    pub(crate) profiles: RecordBatch,
    built_in: Duration,
    index: OnceLock<Arc<IdentityIndex>>,
}

/// The identity graph for code that resolves rows itself instead of joining `identities`:
/// each `user_id` / `anonymous_id` value to its profile's number (`0..profiles`).
#[derive(Default)]
pub struct IdentityIndex {
    pub user_ids: IdMap,
    pub anonymous_ids: IdMap,
    pub profiles: usize,
    /// Each number's profile id (`profiles` of them).
    pub profile_ids: Vec<String>,
}

/// Identifier text → profile number, keyed by a 128-bit hash of the text (two 64-bit foldhash
/// hashes with independent random seeds), the way ClickHouse's `uniqExact` keys strings.
///
/// A lookup reads one table slot and never the key's text: the tables of a large graph do not
/// fit in cache, and comparing the text meant a second memory access per row. Two different
/// ids share a key with probability about n² / 2¹²⁹ (10⁻²⁶ for a million ids).
pub struct IdMap {
    seeds: [foldhash::fast::FixedState; 2],
    map: HashMap<u128, u32, BuildKeyHasher>,
}

impl Default for IdMap {
    fn default() -> Self {
        use std::hash::BuildHasher;
        let random = foldhash::fast::RandomState::default();
        let seed = |n: u64| foldhash::fast::FixedState::with_seed(random.hash_one(n));
        IdMap {
            seeds: [seed(1), seed(2)],
            map: HashMap::default(),
        }
    }
}

impl IdMap {
    fn key(&self, id: &str) -> u128 {
        use std::hash::BuildHasher;
        let [low, high] = &self.seeds;
        (u128::from(high.hash_one(id)) << 64) | u128::from(low.hash_one(id))
    }

    pub fn insert(&mut self, id: &str, number: u32) {
        let key = self.key(id);
        self.map.insert(key, number);
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.map.get(&self.key(id)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The keys of an [`IdMap`] are already hashes: its table uses their low 64 bits as they are.
#[derive(Clone, Copy, Default)]
struct BuildKeyHasher;

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here (`write_u128`); fold anything else in anyway.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

impl GraphSnapshot {
    fn build(store: Option<&Store>) -> Result<GraphSnapshot, WarehouseError> {
        let started = Instant::now();
        let mut identities = IdentitiesBuilder::default();
        let mut profiles = ProfilesBuilder::default();
        let offset = match store {
            None => 0,
            Some(store) => store.read(|tables| {
                let offset = tables.pipeline_offset()?;
                for (key, profile) in tables.search_identifiers("", usize::MAX)? {
                    identities.push(&key, &profile.0);
                }
                let mut cursor: Option<String> = None;
                loop {
                    let page = tables.list_profiles(cursor.as_deref(), PROFILE_PAGE)?;
                    for profile in &page.profiles {
                        profiles.push(profile);
                    }
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Ok(offset)
            })?,
        };
        Ok(GraphSnapshot {
            offset,
            identities: identities.finish()?,
            profiles: profiles.finish()?,
            built_in: started.elapsed(),
            index: OnceLock::new(),
        })
    }

    /// The snapshot's identity graph as hash maps, built on first use.
    pub fn index(&self) -> Arc<IdentityIndex> {
        self.index
            .get_or_init(|| Arc::new(index_of(&self.identities)))
            .clone()
    }
}

fn index_of(identities: &RecordBatch) -> IdentityIndex {
    let text = |index: usize| {
        identities
            .column(index)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("identities columns are Utf8")
    };
    let (kinds, values, profiles) = (text(0), text(1), text(2));
    let mut index = IdentityIndex::default();
    let mut numbers: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    for row in 0..identities.num_rows() {
        let next = numbers.len() as u32;
        let number = *numbers.entry(profiles.value(row)).or_insert_with(|| {
            index.profile_ids.push(profiles.value(row).to_owned());
            next
        });
        let map = match kinds.value(row) {
            "user_id" => &mut index.user_ids,
            "anonymous_id" => &mut index.anonymous_ids,
            _ => continue,
        };
        map.insert(values.value(row), number);
    }
    index.profiles = index.profile_ids.len();
    index
}

/// The current snapshot and its refresh state (see the module documentation).
pub(crate) struct Snapshots {
    store: Option<Arc<Store>>,
    sync_rebuild: Duration,
    state: Mutex<State>,
    /// Signalled when a background read ends.
    refreshed: Condvar,
}

#[derive(Default)]
struct State {
    current: Option<Arc<GraphSnapshot>>,
    refreshing: bool,
    next_refresh: Option<Instant>,
    /// Snapshots read below this pipeline offset predate an erase record.
    erase_barrier: u64,
}

impl Snapshots {
    pub(crate) fn new(store: Option<Arc<Store>>, sync_rebuild: Duration) -> Snapshots {
        Snapshots {
            store,
            sync_rebuild,
            state: Mutex::new(State::default()),
            refreshed: Condvar::new(),
        }
    }

    /// Starts reading the first snapshot in the background (no-op once there is one).
    pub(crate) fn warm(self: &Arc<Self>) {
        let mut state = self.state.lock();
        if state.current.is_none() {
            self.start_refresh(&mut state);
        }
    }

    /// The snapshot queries use now.
    pub(crate) fn current(self: &Arc<Self>) -> Result<Arc<GraphSnapshot>, WarehouseError> {
        let offset = match &self.store {
            Some(store) => store.pipeline_offset()?,
            None => 0,
        };
        let mut state = self.state.lock();
        while state.current.is_none() && state.refreshing {
            self.refreshed.wait(&mut state);
        }
        if let Some(snapshot) = state.current.clone() {
            if snapshot.offset == offset {
                return Ok(snapshot);
            }
            if snapshot.built_in >= self.sync_rebuild && snapshot.offset >= state.erase_barrier {
                self.start_refresh(&mut state);
                return Ok(snapshot);
            }
        }
        // Rebuilt under the lock: concurrent queries wait for this one read of the store.
        let snapshot = Arc::new(GraphSnapshot::build(self.store.as_deref())?);
        state.current = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Called when the materializer meets an erase record at `offset`.
    pub(crate) fn erased_at(&self, offset: u64) {
        let mut state = self.state.lock();
        state.erase_barrier = state.erase_barrier.max(offset + 1);
    }

    fn start_refresh(self: &Arc<Self>, state: &mut State) {
        if state.refreshing || state.next_refresh.is_some_and(|at| Instant::now() < at) {
            return;
        }
        state.refreshing = true;
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("atrium-graph-refresh".into())
            .spawn(move || {
                atrium_log::priority::run_in_background();
                this.refresh();
            });
        if let Err(error) = spawned {
            state.refreshing = false;
            tracing::warn!(%error, "could not start the identity graph refresh");
        }
    }

    fn refresh(&self) {
        // When queries used the current snapshot's index, the next one gets its index here, off
        // the query path.
        let indexed = self
            .state
            .lock()
            .current
            .as_ref()
            .is_some_and(|current| current.index.get().is_some());
        let built = GraphSnapshot::build(self.store.as_deref()).inspect(|snapshot| {
            if indexed {
                snapshot.index();
            }
        });
        let mut state = self.state.lock();
        state.refreshing = false;
        self.refreshed.notify_all();
        match built {
            Ok(snapshot) => {
                tracing::debug!(
                    offset = snapshot.offset,
                    ms = snapshot.built_in.as_millis() as u64,
                    "identity graph snapshot refreshed"
                );
                state.next_refresh =
                    Some(Instant::now() + snapshot.built_in * REFRESH_PAUSE_FACTOR);
                if state
                    .current
                    .as_ref()
                    .is_none_or(|current| current.offset < snapshot.offset)
                {
                    state.current = Some(Arc::new(snapshot));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "identity graph refresh failed; retrying in a second");
                state.next_refresh = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

pub(crate) fn identities_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("profile_id", DataType::Utf8, false),
    ]))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

pub(crate) fn profiles_schema() -> SchemaRef {
    let text = |name| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("profile_id", DataType::Utf8, false),
        Field::new("first_seen", timestamp(), true),
        Field::new("last_seen", timestamp(), true),
        Field::new("event_count", DataType::Int64, false),
        Field::new("order_count", DataType::Int64, false),
        Field::new("gross_revenue", DataType::Float64, false),
        Field::new("net_revenue", DataType::Float64, false),
        Field::new("last_order_at", timestamp(), true),
        text("first_touch_source"),
        text("first_touch_medium"),
        text("first_touch_campaign"),
        text("last_touch_source"),
        text("last_touch_medium"),
        text("last_touch_campaign"),
        text("traits"),
    ]))
}

/// Rows of `identities`: the store key `kind:value` split, and the profile it belongs to.
#[derive(Default)]
struct IdentitiesBuilder {
    kind: StringBuilder,
    value: StringBuilder,
    profile: StringBuilder,
}

impl IdentitiesBuilder {
    fn push(&mut self, key: &str, profile_id: &str) {
        let (kind, value) = key.split_once(':').unwrap_or(("", key));
        self.kind.append_value(kind);
        self.value.append_value(value);
        self.profile.append_value(profile_id);
    }

    fn finish(mut self) -> Result<RecordBatch, WarehouseError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.kind.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.profile.finish()),
        ];
        Ok(RecordBatch::try_new(identities_schema(), columns)?)
    }
}

/// Rows of `profiles`, appended one profile at a time (no list of profiles is held).
struct ProfilesBuilder {
    id: StringBuilder,
    first_seen: TimestampMillisecondBuilder,
    last_seen: TimestampMillisecondBuilder,
    events: Int64Builder,
    orders: Int64Builder,
    gross: Float64Builder,
    net: Float64Builder,
    last_order: TimestampMillisecondBuilder,
    /// first touch source, medium, campaign; then last touch.
    touches: [StringBuilder; 6],
    traits: StringBuilder,
}

impl Default for ProfilesBuilder {
    fn default() -> Self {
        let time = || TimestampMillisecondBuilder::new().with_timezone("UTC");
        ProfilesBuilder {
            id: StringBuilder::new(),
            first_seen: time(),
            last_seen: time(),
            events: Int64Builder::new(),
            orders: Int64Builder::new(),
            gross: Float64Builder::new(),
            net: Float64Builder::new(),
            last_order: time(),
            touches: Default::default(),
            traits: StringBuilder::new(),
        }
    }
}

impl ProfilesBuilder {
    fn push(&mut self, profile: &Profile) {
        self.id.append_value(&profile.id);
        self.first_seen.append_value(profile.first_seen_ms);
        self.last_seen.append_value(profile.last_seen_ms);
        self.events.append_value(profile.event_total as i64);
        self.orders
            .append_value(profile.commerce.order_count as i64);
        self.gross.append_value(profile.commerce.gross_revenue);
        self.net.append_value(profile.commerce.net_revenue);
        self.last_order
            .append_option(profile.commerce.last_order_ms);
        for (index, touch) in [profile.first_touch.as_ref(), profile.last_touch.as_ref()]
            .into_iter()
            .enumerate()
        {
            self.touches[index * 3].append_option(touch.and_then(|t| t.source.as_deref()));
            self.touches[index * 3 + 1].append_option(touch.and_then(|t| t.medium.as_deref()));
            self.touches[index * 3 + 2].append_option(touch.and_then(|t| t.name.as_deref()));
        }
        self.traits
            .append_value(serde_json::Value::Object(profile.trait_values()).to_string());
    }

    fn finish(mut self) -> Result<RecordBatch, WarehouseError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.first_seen.finish()),
            Arc::new(self.last_seen.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.orders.finish()),
            Arc::new(self.gross.finish()),
            Arc::new(self.net.finish()),
            Arc::new(self.last_order.finish()),
        ];
        columns.extend(
            self.touches
                .iter_mut()
                .map(|builder| Arc::new(builder.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.traits.finish()));
        Ok(RecordBatch::try_new(profiles_schema(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn id_map_finds_exactly_the_ids_it_holds() {
        let mut map = IdMap::default();
        let ids: Vec<String> = (0..50_000).map(|n| format!("anon-{n:08}")).collect();
        for (number, id) in ids.iter().enumerate() {
            map.insert(id, number as u32);
        }
        assert_eq!(map.len(), ids.len(), "no two ids share a key");
        for (number, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id), Some(number as u32));
        }
        for absent in [
            "",
            "anon-",
            "anon-00050000",
            "anon-0000000",
            "ANON-00000001",
        ] {
            assert_eq!(map.get(absent), None, "{absent:?}");
        }
        map.insert("anon-00000007", 1);
        assert_eq!(map.get("anon-00000007"), Some(1), "a later insert replaces");
        assert!(IdMap::default().is_empty());
    }
}
