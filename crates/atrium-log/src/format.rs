//! Byte-level encoding of segment files and a buffered scanner over their records.
//!
//! See the crate documentation for the layout. Everything here is pure encoding/decoding; the
//! policy for what a damaged record means (torn tail vs. corruption) lives with the callers.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{LogError, Offset};

/// Magic + format version at the start of every segment file.
pub(crate) const FILE_MAGIC: &[u8; 8] = b"ATRLOG01";
/// Segment file header: magic (8 bytes) + base offset (u64 LE).
pub(crate) const FILE_HEADER_LEN: u64 = 16;
/// Record header: payload_len (u32 LE) + crc32c (u32 LE) + offset (u64 LE).
pub(crate) const RECORD_HEADER_LEN: u64 = 16;
/// Largest payload a single record may carry.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// One sparse-index entry is kept for every this many records of a segment.
pub(crate) const INDEX_INTERVAL: u64 = 64;
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of temporary files written by `rewrite`; leftovers are deleted on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Width of the zero-padded base offset in segment file names (`u64::MAX` has 20 digits).
const NAME_DIGITS: usize = 20;

pub(crate) fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}{SEGMENT_SUFFIX}"))
}

pub(crate) fn temp_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:0NAME_DIGITS$}{SEGMENT_SUFFIX}{TEMP_SUFFIX}"))
}

/// Parses `00000000000000000042.log` into `42`; anything else is not a segment.
pub(crate) fn parse_segment_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn record_crc(offset: Offset, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&offset.to_le_bytes()), payload)
}

pub(crate) fn encoded_record_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN + payload_len as u64
}

pub(crate) fn encode_file_header(base: Offset) -> [u8; FILE_HEADER_LEN as usize] {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    header[..8].copy_from_slice(FILE_MAGIC);
    header[8..].copy_from_slice(&base.to_le_bytes());
    header
}

/// Appends one encoded record (header + payload) to `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, offset: Offset, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_BYTES);
    let payload_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&record_crc(offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Checks the segment file header; returns a description of the problem if it is wrong.
pub(crate) fn check_file_header(file: &File, base: Offset) -> io::Result<Result<(), String>> {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    if &header[..8] != FILE_MAGIC {
        return Ok(Err(
            "bad segment magic (not an atrium log segment or unsupported version)".into(),
        ));
    }
    let mut base_bytes = [0u8; 8];
    base_bytes.copy_from_slice(&header[8..]);
    let stored_base = u64::from_le_bytes(base_bytes);
    if stored_base != base {
        return Ok(Err(format!(
            "segment header says base offset {stored_base} but the file name says {base}"
        )));
    }
    Ok(Ok(()))
}

/// Decoded record header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHeader {
    pub payload_len: u32,
    pub crc: u32,
    pub offset: Offset,
    /// Byte position of the record header in the file.
    pub position: u64,
}

/// Why scanning stopped early.
#[derive(Debug)]
pub(crate) enum ScanError {
    Io(io::Error),
    /// The bytes at `position` are not a valid record.
    Damaged {
        position: u64,
        reason: String,
    },
}

impl From<io::Error> for ScanError {
    fn from(error: io::Error) -> Self {
        ScanError::Io(error)
    }
}

impl ScanError {
    /// Converts into a [`LogError`] for a file whose contents are supposed to be valid.
    pub(crate) fn into_log_error(self, path: &Path) -> LogError {
        match self {
            ScanError::Io(source) => LogError::io(format!("reading {}", path.display()), source),
            ScanError::Damaged { position, reason } => LogError::Corrupt {
                path: path.to_path_buf(),
                position,
                reason,
            },
        }
    }
}

/// `Read + Seek` over a byte range of a shared file using positional reads, so that many readers
/// can use the same `File` without sharing a cursor.
struct PositionedReader<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.end {
            return Ok(0);
        }
        let remaining = self.end - self.position;
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let read = self.file.read_at(&mut buf[..want], self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}

impl Seek for PositionedReader<'_> {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let new_position = match target {
            SeekFrom::Start(position) => Some(position),
            SeekFrom::End(delta) => self.end.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let Some(new_position) = new_position else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek out of range",
            ));
        };
        self.position = new_position;
        Ok(new_position)
    }
}

/// Sequential, buffered scanner over the records stored in `[start, end)` of a segment file.
pub(crate) struct RecordScanner<'a> {
    reader: BufReader<PositionedReader<'a>>,
    position: u64,
    end: u64,
}

impl<'a> RecordScanner<'a> {
    pub(crate) fn new(file: &'a File, start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        let inner = PositionedReader {
            file,
            position: start,
            end,
        };
        RecordScanner {
            reader: BufReader::with_capacity(64 * 1024, inner),
            position: start,
            end,
        }
    }

    /// Byte position of the next record header (= end of the last fully consumed record).
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Reads the next record header. `Ok(None)` at a clean end of the range. On success the
    /// caller must call exactly one of [`Self::read_payload`] or [`Self::skip_payload`].
    pub(crate) fn next_header(&mut self) -> Result<Option<RecordHeader>, ScanError> {
        if self.position == self.end {
            return Ok(None);
        }
        let position = self.position;
        let available = self.end - position;
        if available < RECORD_HEADER_LEN {
            return Err(ScanError::Damaged {
                position,
                reason: format!("incomplete record header ({available} bytes)"),
            });
        }
        let mut bytes = [0u8; RECORD_HEADER_LEN as usize];
        self.reader.read_exact(&mut bytes)?;
        let [
            l0,
            l1,
            l2,
            l3,
            c0,
            c1,
            c2,
            c3,
            o0,
            o1,
            o2,
            o3,
            o4,
            o5,
            o6,
            o7,
        ] = bytes;
        let header = RecordHeader {
            payload_len: u32::from_le_bytes([l0, l1, l2, l3]),
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
            offset: u64::from_le_bytes([o0, o1, o2, o3, o4, o5, o6, o7]),
            position,
        };
        let payload_len = header.payload_len as usize;
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(ScanError::Damaged {
                position,
                reason: format!(
                    "record at offset {} claims a payload of {payload_len} bytes, over the limit",
                    header.offset
                ),
            });
        }
        if available < encoded_record_len(payload_len) {
            return Err(ScanError::Damaged {
                position,
                reason: format!(
                    "incomplete payload for record at offset {} ({} of {payload_len} bytes)",
                    header.offset,
                    available - RECORD_HEADER_LEN
                ),
            });
        }
        Ok(Some(header))
    }

    /// Reads the payload belonging to `header` and verifies its checksum.
    pub(crate) fn read_payload(&mut self, header: &RecordHeader) -> Result<Vec<u8>, ScanError> {
        let mut payload = vec![0u8; header.payload_len as usize];
        self.reader.read_exact(&mut payload)?;
        if record_crc(header.offset, &payload) != header.crc {
            return Err(ScanError::Damaged {
                position: header.position,
                reason: format!("crc mismatch in record at offset {}", header.offset),
            });
        }
        self.position = header.position + encoded_record_len(payload.len());
        Ok(payload)
    }

    /// Skips the payload belonging to `header` without reading or verifying it.
    pub(crate) fn skip_payload(&mut self, header: &RecordHeader) -> Result<(), ScanError> {
        self.reader.seek_relative(i64::from(header.payload_len))?;
        self.position = header.position + encoded_record_len(header.payload_len as usize);
        Ok(())
    }
}

/// Sparse offset -> byte position index of one segment: one entry every [`INDEX_INTERVAL`]
/// records, so that a read can start scanning close to the requested offset.
#[derive(Debug, Default, Clone)]
pub(crate) struct SparseIndex {
    entries: Vec<(Offset, u64)>,
    record_count: u64,
}

impl SparseIndex {
    /// Registers the next record of the segment (records must be noted in file order).
    pub(crate) fn note_record(&mut self, offset: Offset, position: u64) {
        debug_assert!(self.entries.last().is_none_or(|&(last, _)| last < offset));
        if self.record_count.is_multiple_of(INDEX_INTERVAL) {
            self.entries.push((offset, position));
        }
        self.record_count += 1;
    }

    /// Adds entries computed elsewhere (by the writer) together with the new record count.
    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = (Offset, u64)>, count: u64) {
        self.entries.extend(entries);
        debug_assert!(count >= self.record_count);
        self.record_count = count;
    }

    pub(crate) fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Byte position at which to start scanning for the first record with offset >= `from`.
    pub(crate) fn start_position(&self, from: Offset) -> u64 {
        let after = self.entries.partition_point(|&(offset, _)| offset <= from);
        match after.checked_sub(1) {
            Some(index) => self.entries[index].1,
            None => FILE_HEADER_LEN,
        }
    }
}
