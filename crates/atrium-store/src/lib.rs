//! The state store: every piece of derived state, in one redb database file.
//!
//! Tables (keys → values; values are JSON unless noted):
//! - `meta`: `pipeline_offset` (u64 LE: the next log offset to apply), `hour:<epoch hour>` (u64
//!   LE: the first offset received in that hour, used to rebuild the dedup window).
//! - `identifiers`: `kind:value` → profile id.
//! - `graphs`: profile id → [`ProfileGraph`].
//! - `redirects`: merged-away profile id → surviving profile id.
//! - `merge_log`: offset of the merging event → [`MergeLogEntry`] (append-only, except for erasure).
//! - `profiles`: profile id → [`Profile`] in the binary layout of the [`codec`] module (rows
//!   written as JSON by earlier versions still decode).
//! - `timeline`: (profile id, event time ms, log offset) → () — the profile's events, by event time.
//! - `suppressed`: salted identifier hash → erasure time (GDPR suppression list).
//! - `definitions`: (kind, key) → [`StoredDefinition`]: the current feature, experiment and
//!   saved-group definitions (from `atrium.definition.*` control records).
//! - `definition_history`: (kind, key, version) → [`StoredDefinition`], deletions included.
//! - `segment_states`: profile id → the segment engine's per-profile state (opaque bytes).
//! - `segment_members`: (segment id, profile id) → entry time ms.
//! - `segment_timers`: (fire time ms, profile id) → (): one durable timer per profile.
//! - `outbox`: message id → a derived event waiting to be appended to the log.
//!
//! Architecture invariant: the store is derived state. Deleting the file and replaying the event
//! log from offset 0 produces a byte-identical [`Store::digest`].
//! Architecture invariant: one writer — the pipeline — writes, through [`WriteTables`], and commits
//! its log offset in the same transaction as the state it derived.

pub mod codec;
mod read;
mod segments;
mod sticky;
mod tables;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::RwLock;

use redb::ReadableDatabase;
use sha2::{Digest, Sha256};

pub use read::{ProfilePage, ReadTables, TimelineEntry};
pub use segments::MemberPage;
pub use sticky::{StickyBucketDoc, sticky_bucket_key};
pub use tables::*;
pub use write::WriteTables;

pub use atrium_identity::{Identifier, MergeLogEntry, ProfileGraph, ProfileId};
pub use atrium_profiles::Profile;

/// One version of a definition, as the pipeline stored it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredDefinition {
    pub version: u64,
    /// `null` for a deletion.
    pub body: serde_json::Value,
    pub updated_at: String,
    /// Log offset of the record that wrote this version.
    pub offset: u64,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store error: {0}")]
    Redb(#[from] redb::Error),
    #[error("state store holds undecodable data in table `{table}`: {source}")]
    Decode {
        table: &'static str,
        source: serde_json::Error,
    },
    #[error("state store holds an undecodable profile: {0}")]
    Profile(#[from] codec::ProfileDecodeError),
    #[error("state store io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

macro_rules! from_redb {
    ($($kind:ty),*) => {$(
        impl From<$kind> for StoreError {
            fn from(error: $kind) -> Self {
                StoreError::Redb(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Whether a commit waits for its data to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Durable,
    CrashConsistent,
}

/// The redb database holding all derived state. Cheap to share: readers take a snapshot of the
/// current database handle, so [`Store::vacuum`] can swap the file underneath them.
pub struct Store {
    path: PathBuf,
    database: RwLock<Arc<redb::Database>>,
}

impl Store {
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let database = redb::Database::create(&path)?;
        let store = Store {
            path,
            database: RwLock::new(Arc::new(database)),
        };
        store.create_tables()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn handle(&self) -> Arc<redb::Database> {
        self.database.read().expect("store lock poisoned").clone()
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let transaction = self.handle().begin_write()?;
        tables::create_all(&transaction)?;
        transaction.commit()?;
        Ok(())
    }

    /// Runs `work` in one write transaction and commits durably when it returns `Ok`.
    pub fn write<T, E>(
        &self,
        work: impl FnOnce(&mut WriteTables<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.write_with(Durability::Durable, work)
    }

    /// Like [`Store::write`], choosing whether the commit waits for fsync. A
    /// [`Durability::CrashConsistent`] commit is visible at once; after a crash the store rolls
    /// back to the last durable commit. Because the pipeline's offset commits together with its
    /// state, a rollback only means re-applying those log records.
    pub fn write_with<T, E>(
        &self,
        durability: Durability,
        work: impl FnOnce(&mut WriteTables<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let database = self.handle();
        let mut transaction = database.begin_write().map_err(StoreError::from)?;
        if durability == Durability::CrashConsistent {
            transaction
                .set_durability(redb::Durability::None)
                .map_err(StoreError::from)?;
        }
        let result = {
            let mut tables = WriteTables::open(&transaction)?;
            let result = work(&mut tables)?;
            tables.flush()?;
            result
        };
        transaction.commit().map_err(StoreError::from)?;
        Ok(result)
    }

    /// Runs `work` against a consistent snapshot.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&ReadTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let database = self.handle();
        let transaction = database.begin_read()?;
        let tables = ReadTables::open(&transaction)?;
        work(&tables)
    }

    /// Makes every earlier crash-consistent commit durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let transaction = self.handle().begin_write()?;
        transaction.commit()?;
        Ok(())
    }

    /// The next log offset the pipeline will apply.
    pub fn pipeline_offset(&self) -> Result<u64, StoreError> {
        self.read(|tables| tables.pipeline_offset())
    }

    /// A SHA-256 over every table's keys and values in key order: equal digests mean equal state.
    pub fn digest(&self) -> Result<String, StoreError> {
        let mut hasher = Sha256::new();
        for (name, digest) in self.read(|tables| tables.table_digests())? {
            hasher.update(name.as_bytes());
            hasher.update(digest.as_bytes());
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Rewrites the database into a fresh file holding only live data and swaps it in, so that
    /// values deleted by erasure do not survive in freed pages. Must be called by the single writer.
    pub fn vacuum(&self) -> Result<(), StoreError> {
        let temporary = self.path.with_extension("vacuum");
        let _ = std::fs::remove_file(&temporary);
        {
            let source = self.handle();
            let target = redb::Database::create(&temporary)?;
            let read = source.begin_read()?;
            let write = target.begin_write()?;
            tables::copy_all(&read, &write)?;
            write.commit()?;
        }
        let mut guard = self.database.write().expect("store lock poisoned");
        std::fs::rename(&temporary, &self.path).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        *guard = Arc::new(redb::Database::create(&self.path)?);
        tracing::info!(path = %self.path.display(), "state store vacuumed");
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode { table, source })
}

fn decode_profile(bytes: &[u8]) -> Result<Profile, StoreError> {
    Ok(codec::decode_profile(bytes)?)
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state values always serialize")
}
