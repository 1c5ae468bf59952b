//! One segment file: lazy loading, sparse index, reads, torn-tail recovery and rewriting.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::format::{
    FILE_HEADER_LEN, RecordScanner, ScanError, SparseIndex, check_file_header, encode_file_header,
    encode_record, segment_path, temp_path,
};
use crate::{LogError, Offset, Record};

/// The in-memory view of an opened segment.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Open handle of the active segment, shared by the writer (positional writes) and readers
    /// (positional reads). `None` for sealed segments: readers open the file per read, so a
    /// long log does not hold one descriptor per segment.
    pub file: Option<Arc<File>>,
    /// Number of readable bytes. For the active segment this only covers synced records.
    pub len: u64,
    pub index: SparseIndex,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base: Offset,
    pub path: PathBuf,
    /// Size of the file on disk, for stats (kept separately so stats never need the lock).
    disk_bytes: AtomicU64,
    /// `None` for a sealed segment nobody has read yet: it is opened and indexed on first use.
    state: RwLock<Option<Loaded>>,
}

/// What a reader needs from a segment, taken under the lock and used without it.
struct ReadView {
    file: Arc<File>,
    start: u64,
    end: u64,
}

impl Segment {
    pub(crate) fn unloaded(base: Offset, path: PathBuf, disk_bytes: u64) -> Self {
        Segment {
            base,
            path,
            disk_bytes: AtomicU64::new(disk_bytes),
            state: RwLock::new(None),
        }
    }

    pub(crate) fn loaded(base: Offset, path: PathBuf, loaded: Loaded) -> Self {
        Segment {
            base,
            path,
            disk_bytes: AtomicU64::new(loaded.len),
            state: RwLock::new(Some(loaded)),
        }
    }

    /// The shared file handle of the active segment.
    pub(crate) fn file_handle(&self) -> Arc<File> {
        let state = self.state.read();
        let Some(file) = state.as_ref().and_then(|loaded| loaded.file.as_ref()) else {
            unreachable!(
                "file_handle is only used on the active segment, which keeps its file open"
            );
        };
        Arc::clone(file)
    }

    /// Marks a formerly active segment as sealed: its file handle is closed.
    pub(crate) fn seal(&self) {
        if let Some(loaded) = self.state.write().as_mut() {
            loaded.file = None;
        }
    }

    /// Readable length and record count of a loaded segment (the active one always is).
    pub(crate) fn len_and_records(&self) -> (u64, u64) {
        let state = self.state.read();
        state
            .as_ref()
            .map_or((FILE_HEADER_LEN, 0), |l| (l.len, l.index.record_count()))
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Makes freshly synced bytes of the active segment visible to readers.
    pub(crate) fn publish(&self, len: u64, index_entries: Vec<(Offset, u64)>, record_count: u64) {
        let mut state = self.state.write();
        let Some(loaded) = state.as_mut() else {
            debug_assert!(false, "the active segment is always loaded");
            return;
        };
        debug_assert!(len >= loaded.len);
        loaded.len = len;
        loaded.index.extend(index_entries, record_count);
        self.disk_bytes.store(len, Ordering::Relaxed);
    }

    fn read_view(&self, from: Offset) -> Result<ReadView, LogError> {
        {
            let state = self.state.read();
            if let Some(loaded) = state.as_ref() {
                return self.view_of(loaded, from);
            }
        }
        let mut state = self.state.write();
        if state.is_none() {
            *state = Some(self.load_sealed()?);
        }
        let Some(loaded) = state.as_ref() else {
            unreachable!("segment state was just loaded");
        };
        self.view_of(loaded, from)
    }

    /// Must be called with the state lock held, so that the file opened matches the index
    /// (a rewrite renames the file only under the write lock).
    fn view_of(&self, loaded: &Loaded, from: Offset) -> Result<ReadView, LogError> {
        let file = match &loaded.file {
            Some(file) => Arc::clone(file),
            None => Arc::new(
                File::open(&self.path)
                    .map_err(|e| LogError::io(format!("opening {}", self.path.display()), e))?,
            ),
        };
        Ok(ReadView {
            file,
            start: loaded.index.start_position(from),
            end: loaded.len,
        })
    }

    /// Opens a sealed segment and builds its sparse index by scanning record headers only.
    /// Sealed segments are trusted to be complete: anything unexpected is corruption.
    fn load_sealed(&self) -> Result<Loaded, LogError> {
        let path = &self.path;
        let file =
            File::open(path).map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io(format!("reading metadata of {}", path.display()), e))?
            .len();
        if len < FILE_HEADER_LEN {
            return Err(LogError::Corrupt {
                path: path.clone(),
                position: 0,
                reason: format!("sealed segment is only {len} bytes long"),
            });
        }
        verify_header(&file, path, self.base)?;
        let mut index = SparseIndex::default();
        let mut scanner = RecordScanner::new(&file, FILE_HEADER_LEN, len);
        let mut previous: Option<Offset> = None;
        while let Some(header) = scanner.next_header().map_err(|e| e.into_log_error(path))? {
            let in_order = header.offset >= self.base && previous.is_none_or(|p| header.offset > p);
            if !in_order {
                return Err(LogError::Corrupt {
                    path: path.clone(),
                    position: header.position,
                    reason: format!("record offset {} is out of order", header.offset),
                });
            }
            index.note_record(header.offset, header.position);
            previous = Some(header.offset);
            scanner
                .skip_payload(&header)
                .map_err(|e| e.into_log_error(path))?;
        }
        self.disk_bytes.store(len, Ordering::Relaxed);
        Ok(Loaded {
            file: None,
            len,
            index,
        })
    }

    /// Appends to `out` the records with `from <= offset < end`, until `out` holds `limit`.
    pub(crate) fn read_into(
        &self,
        from: Offset,
        end: Offset,
        limit: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        let view = self.read_view(from)?;
        let mut scanner = RecordScanner::new(&view.file, view.start, view.end);
        while out.len() < limit {
            let header = match scanner.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(()),
                Err(error) => return Err(error.into_log_error(&self.path)),
            };
            if header.offset >= end {
                return Ok(());
            }
            if header.offset < from {
                scanner
                    .skip_payload(&header)
                    .map_err(|e| e.into_log_error(&self.path))?;
                continue;
            }
            let payload = scanner
                .read_payload(&header)
                .map_err(|e| e.into_log_error(&self.path))?;
            debug_assert!(out.last().is_none_or(|last| last.offset < header.offset));
            out.push(Record {
                offset: header.offset,
                payload,
            });
        }
        Ok(())
    }

    /// Rewrites this (sealed) segment keeping only records for which `keep` is true.
    /// Returns the number of dropped records; the file is left untouched if nothing is dropped.
    pub(crate) fn rewrite(
        &self,
        dir: &Path,
        sync: bool,
        keep: &dyn Fn(Offset, &[u8]) -> bool,
    ) -> Result<u64, LogError> {
        let view = self.read_view(self.base)?;
        let tmp_path = temp_path(dir, self.base);
        let io_tmp = |e| LogError::io(format!("writing {}", tmp_path.display()), e);
        let tmp_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(io_tmp)?;
        let mut writer = BufWriter::with_capacity(256 * 1024, &tmp_file);
        writer
            .write_all(&encode_file_header(self.base))
            .map_err(io_tmp)?;

        let mut new_len = FILE_HEADER_LEN;
        let mut new_index = SparseIndex::default();
        let mut dropped = 0u64;
        let mut encoded = Vec::new();
        let mut scanner = RecordScanner::new(&view.file, FILE_HEADER_LEN, view.end);
        let scan_result: Result<(), ScanError> = (|| {
            while let Some(header) = scanner.next_header()? {
                let payload = scanner.read_payload(&header)?;
                if !keep(header.offset, &payload) {
                    dropped += 1;
                    continue;
                }
                encoded.clear();
                encode_record(&mut encoded, header.offset, &payload);
                writer.write_all(&encoded)?;
                new_index.note_record(header.offset, new_len);
                new_len += encoded.len() as u64;
            }
            writer.flush()?;
            Ok(())
        })();
        drop(writer);
        if let Err(error) = scan_result {
            let _ = fs::remove_file(&tmp_path);
            return Err(error.into_log_error(&self.path));
        }
        if dropped == 0 {
            drop(tmp_file);
            fs::remove_file(&tmp_path)
                .map_err(|e| LogError::io(format!("removing {}", tmp_path.display()), e))?;
            return Ok(0);
        }
        if sync {
            tmp_file.sync_all().map_err(io_tmp)?;
        }

        // Swap under the write lock so no reader picks up a half-installed state. Readers that
        // took a view before this point keep reading the old (now unlinked) file consistently.
        let mut state = self.state.write();
        fs::rename(&tmp_path, &self.path).map_err(|e| {
            LogError::io(
                format!(
                    "renaming {} over {}",
                    tmp_path.display(),
                    self.path.display()
                ),
                e,
            )
        })?;
        if sync {
            sync_dir(dir)?;
        }
        drop(tmp_file);
        *state = Some(Loaded {
            file: None,
            len: new_len,
            index: new_index,
        });
        self.disk_bytes.store(new_len, Ordering::Relaxed);
        Ok(dropped)
    }
}

fn verify_header(file: &File, path: &Path, base: Offset) -> Result<(), LogError> {
    let check = check_file_header(file, base)
        .map_err(|e| LogError::io(format!("reading header of {}", path.display()), e))?;
    check.map_err(|reason| LogError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason,
    })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(format!("syncing directory {}", dir.display()), e))
}

/// Creates a new, empty segment file (header only) and makes its existence durable.
pub(crate) fn create_segment(dir: &Path, base: Offset, sync: bool) -> Result<Segment, LogError> {
    let path = segment_path(dir, base);
    let io_err = |e| LogError::io(format!("creating segment {}", path.display()), e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err)?;
    (&file)
        .write_all(&encode_file_header(base))
        .map_err(io_err)?;
    if sync {
        file.sync_data().map_err(io_err)?;
        sync_dir(dir)?;
    }
    let loaded = Loaded {
        file: Some(Arc::new(file)),
        len: FILE_HEADER_LEN,
        index: SparseIndex::default(),
    };
    Ok(Segment::loaded(base, path, loaded))
}

/// Result of recovering the last segment.
pub(crate) struct Recovered {
    pub segment: Segment,
    /// One past the last valid record (the next offset to assign).
    pub next_offset: Offset,
}

/// Opens the last segment for writing, validating every record (checksums included). The file
/// is truncated at the first record that is incomplete, fails its checksum or does not carry the
/// expected next offset: that is a torn tail from a crash in the middle of a write.
pub(crate) fn recover_last(dir: &Path, base: Offset, sync: bool) -> Result<Recovered, LogError> {
    let path = segment_path(dir, base);
    let io_err = |what: &str, e| LogError::io(format!("{what} {}", path.display()), e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("opening", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| io_err("reading metadata of", e))?
        .len();

    if file_len < FILE_HEADER_LEN {
        // Crash while creating the segment: its header never made it to disk.
        tracing::warn!(
            path = %path.display(),
            file_len,
            "segment header is incomplete; reinitializing the empty segment"
        );
        file.set_len(0).map_err(|e| io_err("truncating", e))?;
        (&file)
            .write_all(&encode_file_header(base))
            .map_err(|e| io_err("writing", e))?;
        if sync {
            file.sync_all().map_err(|e| io_err("syncing", e))?;
        }
        let loaded = Loaded {
            file: Some(Arc::new(file)),
            len: FILE_HEADER_LEN,
            index: SparseIndex::default(),
        };
        return Ok(Recovered {
            segment: Segment::loaded(base, path, loaded),
            next_offset: base,
        });
    }
    verify_header(&file, &path, base)?;

    let mut index = SparseIndex::default();
    let mut expected = base;
    let mut valid_len = FILE_HEADER_LEN;
    let mut cut_reason: Option<String> = None;
    {
        let mut scanner = RecordScanner::new(&file, FILE_HEADER_LEN, file_len);
        loop {
            let header = match scanner.next_header() {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(ScanError::Io(e)) => return Err(io_err("reading", e)),
                Err(ScanError::Damaged { reason, .. }) => {
                    cut_reason = Some(reason);
                    break;
                }
            };
            if header.offset != expected {
                cut_reason = Some(format!(
                    "record carries offset {} but {expected} was expected",
                    header.offset
                ));
                break;
            }
            match scanner.read_payload(&header) {
                Ok(_) => {}
                Err(ScanError::Io(e)) => return Err(io_err("reading", e)),
                Err(ScanError::Damaged { reason, .. }) => {
                    cut_reason = Some(reason);
                    break;
                }
            }
            index.note_record(header.offset, header.position);
            expected += 1;
            valid_len = scanner.position();
        }
    }

    if valid_len < file_len {
        tracing::warn!(
            path = %path.display(),
            cut_bytes = file_len - valid_len,
            position = valid_len,
            next_offset = expected,
            reason = cut_reason.as_deref().unwrap_or("unknown"),
            "truncating torn tail of the last log segment"
        );
        file.set_len(valid_len)
            .map_err(|e| io_err("truncating", e))?;
        if sync {
            file.sync_all().map_err(|e| io_err("syncing", e))?;
        }
    }
    debug_assert_eq!(index.record_count(), expected - base);
    let loaded = Loaded {
        file: Some(Arc::new(file)),
        len: valid_len,
        index,
    };
    Ok(Recovered {
        segment: Segment::loaded(base, path, loaded),
        next_offset: expected,
    })
}
