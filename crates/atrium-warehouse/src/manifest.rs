//! The manifest: the warehouse's committed log offset and the Parquet files that hold every row
//! below it. It is the commit point: written atomically (temp file, fsync, rename, fsync dir)
//! after the Parquet files it lists are synced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::WarehouseError;

pub const MANIFEST_FILE: &str = "manifest.json";
/// The table layout files are written with. A manifest of an older layout is discarded on open
/// (its files deleted) and the tables are rebuilt from the log, which is the source of truth.
/// 2: `events` gained `experiment_id` and `variation_id`.
pub const LAYOUT_VERSION: u32 = 2;
const TEMP_FILE: &str = "manifest.json.tmp";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// One past the last log offset whose rows are in `files`.
    pub offset: u64,
    pub files: Vec<DataFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub table: String,
    /// Relative to the warehouse directory, with `/` separators.
    pub path: String,
    pub day: i32,
    pub rows: u64,
    pub first_offset: u64,
    pub last_offset: u64,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest, WarehouseError> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| WarehouseError::Corrupt {
                path,
                reason: error.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: LAYOUT_VERSION,
                ..Manifest::default()
            }),
            Err(source) => Err(WarehouseError::io(&path, source)),
        }
    }

    pub fn store(&self, dir: &Path) -> Result<(), WarehouseError> {
        let temp = dir.join(TEMP_FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut file = File::create(&temp).map_err(|e| WarehouseError::io(&temp, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| WarehouseError::io(&temp, e))?;
        let path = dir.join(MANIFEST_FILE);
        std::fs::rename(&temp, &path).map_err(|e| WarehouseError::io(&path, e))?;
        sync_dir(dir)
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), WarehouseError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WarehouseError::io(dir, e))
}

/// Every `*.parquet` file under `dir` (recursively), relative to `dir` with `/` separators.
pub fn parquet_files(dir: &Path) -> Result<Vec<String>, WarehouseError> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(WarehouseError::io(&current, source)),
        };
        for entry in entries {
            let path = entry.map_err(|e| WarehouseError::io(&current, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(found)
}
