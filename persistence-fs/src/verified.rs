//! How much of each session log this process has checked record by record.
//!
//! An append's fast check reads only a log's first and last records; damage in between
//! would go unnoticed by writers. So the first exclusive open of a log in a process scans
//! it whole, and later ones check only the records added since (by this or another
//! process). Damage that happens to already-checked records while the process runs is
//! found by the reads that reach it and by the next process.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;

use crate::records::{self, HEADER, RecordAt, ScanError};

/// Entries kept before the map is cleared (each costs a rescan on its next open).
const MAX_ENTRIES: usize = 16_384;

/// A checked prefix of one log file: it ends with the record at `last` whose header was
/// `header`, at byte `end`. Identified by device and inode, and the header is re-read
/// before the prefix is trusted, so a recreated file with a reused inode is rescanned.
#[derive(Debug, Clone, Copy)]
struct Checked {
    end: u64,
    last: u64,
    header: [u8; HEADER],
}

/// The checked prefixes of the logs this backend opened.
#[derive(Debug, Default)]
pub struct VerifiedLogs {
    checked: Mutex<HashMap<(u64, u64), Checked>>,
}

impl VerifiedLogs {
    /// Checks every record of `log` (of length `len`) not yet checked by this process.
    /// The caller holds the session's exclusive lock and has seen a valid last record
    /// ending at `len`.
    ///
    /// # Errors
    /// [`ScanError::Corrupt`] at the first damaged record; I/O errors.
    pub fn check(&self, log: &File, len: u64) -> Result<(), ScanError> {
        let key = file_key(log)?;
        let known = self.lock().get(&key).copied();
        let from = match known {
            Some(c) if c.end <= len && header_at(log, c.last)? == Some(c.header) => c.end,
            _ => 0,
        };
        let mut offset = from;
        let mut last = None;
        while offset < len {
            match records::read_record(log, offset, len)? {
                RecordAt::Valid { end, .. } => {
                    last = Some(offset);
                    offset = end;
                }
                RecordAt::End => break,
                RecordAt::Torn | RecordAt::Corrupt => return Err(ScanError::Corrupt(offset)),
            }
        }
        if let Some(last) = last {
            self.record(log, last, len)?;
        }
        Ok(())
    }

    /// Notes that `log` is checked up to `end`, its last record starting at `last` (after
    /// an append or a full scan).
    ///
    /// # Errors
    /// I/O errors reading the header back.
    pub fn record(&self, log: &File, last: u64, end: u64) -> io::Result<()> {
        let key = file_key(log)?;
        let Some(header) = header_at(log, last)? else {
            return Ok(());
        };
        let mut checked = self.lock();
        if checked.len() >= MAX_ENTRIES && !checked.contains_key(&key) {
            checked.clear();
        }
        checked.insert(key, Checked { end, last, header });
        Ok(())
    }

    /// [`Self::record`] for a writer that knows the log's identity (device, inode) and
    /// the last record's `header` (it just wrote it): reads nothing back.
    pub fn note(&self, key: (u64, u64), last: u64, end: u64, header: &[u8]) {
        let Ok(header) = <[u8; HEADER]>::try_from(header) else {
            return;
        };
        let mut checked = self.lock();
        if checked.len() >= MAX_ENTRIES && !checked.contains_key(&key) {
            checked.clear();
        }
        checked.insert(key, Checked { end, last, header });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Checked>> {
        self.checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn file_key(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

fn header_at(file: &File, offset: u64) -> io::Result<Option<[u8; HEADER]>> {
    let mut header = [0u8; HEADER];
    match file.read_exact_at(&mut header, offset) {
        Ok(()) => Ok(Some(header)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
