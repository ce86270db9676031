//! Recovery of a session's files under its lock: the fast check of a log's ends against
//! its index, the once-per-process check of every record (`crate::verified`), and the
//! full scan that cuts a torn batch, fails on damage and rewrites the index.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use persistence_core::{Result, Timestamp};
use serde::Deserialize;

use super::{SessionFiles, SessionState, StoredEvent, read_index_entry};
use crate::Inner;
use crate::config::Durability;
use crate::error::{IoContext, corrupt, io_error};
use crate::files;
use crate::records::{self, RecordAt, ScanError};

/// The fields of a stored event that recovery needs (the event itself is skipped, not
/// decoded).
#[derive(Deserialize)]
pub(super) struct StoredEventMeta {
    pub(super) seq: u64,
    #[serde(default)]
    pub(super) exp: Option<Timestamp>,
    #[serde(default)]
    pub(super) at: Option<Timestamp>,
    #[allow(dead_code)] // checked for presence: a record without an event is corrupt
    event: serde::de::IgnoredAny,
}

pub(super) fn decode_meta(path: &Path, offset: u64, payload: &[u8]) -> Result<StoredEventMeta> {
    let (json, _) = persistence_core::backend::split_bytes(payload);
    serde_json::from_slice(json)
        .map_err(|e| corrupt(path, format!("record at offset {offset}: {e}")))
}

pub(super) fn decode_event(path: &Path, offset: u64, payload: &[u8]) -> Result<StoredEvent> {
    crate::payload_record::decode(payload)
        .map_err(|e| corrupt(path, format!("record at offset {offset}: {e}")))
}

/// The offset of the last record an index lists, `None` when it lists none (or is not a
/// whole number of entries, as a torn write of it can leave).
fn last_listed(index: &File, path: &Path) -> Result<Option<u64>> {
    let len = index.metadata().at(path)?.len();
    if len == 0 || len % 8 != 0 {
        return Ok(None);
    }
    Ok(Some(read_index_entry(index, len / 8 - 1).at(path)?))
}

impl Inner {
    /// Validates the log against its index, repairing a torn tail and a stale index.
    /// Caller holds the session lock. The returned state keeps both files open.
    pub(super) fn recover(&self, f: &SessionFiles) -> Result<SessionState> {
        let log = match OpenOptions::new().read(true).write(true).open(&f.log) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(SessionState {
                    head: self.floor(f)?,
                    expires_at: self.floor_expiry(f)?,
                    closed_at: self.closed_at(f)?,
                    ..Default::default()
                });
            }
            Err(e) => return Err(io_error(&f.log, e)),
        };
        let log_len = log.metadata().at(&f.log)?.len();
        let open_index = || files::open_rw(&f.index, self.durability).at(&f.index);
        let index = open_index()?;
        let mut state = match self.fast_check(f, &log, &index, log_len)? {
            Some(state) => {
                // The fast check saw the ends; the first writer of this process to open
                // the log checks the records in between (once; later only new ones).
                match self.verified.check(&log, log_len) {
                    Ok(()) => state,
                    Err(ScanError::Io(e)) => return Err(io_error(&f.log, e)),
                    Err(ScanError::Corrupt(offset)) => {
                        return Err(corrupt(
                            &f.log,
                            format!("damaged record at offset {offset} (not a torn tail)"),
                        ));
                    }
                }
            }
            None => self.rebuild(f, &log, Some(&index), log_len)?,
        };
        if state.count == 0 {
            state.head = self.floor(f)?;
            state.expires_at = self.floor_expiry(f)?;
        }
        state.closed_at = self.closed_at(f)?;
        // A rebuild replaced the index file: use the new one.
        state.index = Some(if state.rebuilt { open_index()? } else { index });
        state.log = Some(log);
        Ok(state)
    }

    /// The expiry kept by a trim that emptied the log (`None` if none).
    pub(super) fn floor_expiry(&self, f: &SessionFiles) -> Result<Option<Timestamp>> {
        Ok(
            match files::read_counter(&f.floor_expiry).at(&f.floor_expiry)? {
                Ok(0) => None,
                Ok(ms) => Some(Timestamp(ms)),
                Err(m) => return Err(corrupt(&f.floor_expiry, m)),
            },
        )
    }

    /// The head kept by a trim that emptied the log (0 if none).
    pub(super) fn floor(&self, f: &SessionFiles) -> Result<u64> {
        files::read_counter(&f.floor)
            .at(&f.floor)?
            .map_err(|m| corrupt(&f.floor, m))
    }

    /// The common case: index entries 0 and n-1 point at the first and last records and
    /// the last record ends the file.
    pub(super) fn fast_check(
        &self,
        f: &SessionFiles,
        log: &File,
        index: &File,
        log_len: u64,
    ) -> Result<Option<SessionState>> {
        let index_len = index.metadata().at(&f.index)?.len();
        if index_len % 8 != 0 {
            return Ok(None);
        }
        let n = index_len / 8;
        if n == 0 {
            return Ok((log_len == 0).then(SessionState::default));
        }
        let first_offset = read_index_entry(index, 0).at(&f.index)?;
        let last_offset = if n == 1 {
            first_offset
        } else {
            read_index_entry(index, n - 1).at(&f.index)?
        };
        let RecordAt::Valid {
            payload: last,
            end,
            more: false,
        } = records::read_record(log, last_offset, log_len).at(&f.log)?
        else {
            return Ok(None);
        };
        let last = decode_meta(&f.log, last_offset, &last)?;
        let first = if n == 1 {
            StoredEventMeta {
                seq: last.seq,
                exp: None,
                at: None,
                event: serde::de::IgnoredAny,
            }
        } else {
            let RecordAt::Valid { payload: first, .. } =
                records::read_record(log, first_offset, log_len).at(&f.log)?
            else {
                return Ok(None);
            };
            decode_meta(&f.log, first_offset, &first)?
        };
        if first_offset != 0 || end != log_len || last.seq != first.seq + n - 1 {
            return Ok(None);
        }
        Ok(Some(SessionState {
            first: first.seq,
            count: n,
            head: last.seq,
            expires_at: last.exp,
            last_at: last.at,
            log_len,
            ..Default::default()
        }))
    }

    /// Scans the whole log: cuts a torn batch (or tail), fails on corruption and on an
    /// index listing records the log no longer holds (acknowledged events lost), and
    /// writes a fresh index.
    pub(super) fn rebuild(
        &self,
        f: &SessionFiles,
        log: &File,
        index: Option<&File>,
        log_len: u64,
    ) -> Result<SessionState> {
        let scan = match records::scan(log) {
            Ok(scan) => scan,
            Err(ScanError::Io(e)) => return Err(io_error(&f.log, e)),
            Err(ScanError::Corrupt(offset)) => {
                return Err(corrupt(
                    &f.log,
                    format!("damaged record at offset {offset} (not a torn tail)"),
                ));
            }
        };
        let mut state = SessionState {
            rebuilt: true,
            ..Default::default()
        };
        let mut offsets = Vec::with_capacity(scan.records.len() * 8);
        for (offset, payload) in &scan.records {
            let event = decode_event(&f.log, *offset, payload)?;
            if state.count > 0 && event.seq != state.first + state.count {
                return Err(corrupt(
                    &f.log,
                    format!(
                        "ordinal {} at offset {offset} breaks the sequence",
                        event.seq
                    ),
                ));
            }
            if state.count == 0 {
                state.first = event.seq;
            }
            state.count += 1;
            state.head = event.seq;
            state.expires_at = event.exp;
            state.last_at = Some(event.at);
            offsets.extend_from_slice(&offset.to_le_bytes());
        }
        if self.durability == Durability::Fsync
            && let Some(listed) = index
                .map(|i| last_listed(i, &f.index))
                .transpose()?
                .flatten()
            && listed >= scan.committed_end
        {
            return Err(corrupt(
                &f.log,
                format!(
                    "the index lists a record at offset {listed} but the log's acknowledged \
                     records end at {}: acknowledged events are missing",
                    scan.committed_end
                ),
            ));
        }
        if scan.committed_end < log_len {
            log.set_len(scan.committed_end).at(&f.log)?;
            log.sync_all().at(&f.log)?;
        }
        state.log_len = scan.committed_end;
        files::write_atomic(&f.index, &offsets, self.durability.no_sync()).at(&f.index)?;
        if let Some((last, _)) = scan.records.last() {
            self.verified
                .record(log, *last, scan.committed_end)
                .at(&f.log)?;
        }
        Ok(state)
    }

    /// The state when the log and index agree (the fast check), opening both read-only;
    /// `None` when only a full recovery can tell.
    pub(super) fn recover_read_only(&self, f: &SessionFiles) -> Result<Option<SessionState>> {
        let log = match File::open(&f.log) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Some(SessionState {
                    head: self.floor(f)?,
                    expires_at: self.floor_expiry(f)?,
                    ..Default::default()
                }));
            }
            Err(e) => return Err(io_error(&f.log, e)),
        };
        let index = match File::open(&f.index) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&f.index, e)),
        };
        let log_len = log.metadata().at(&f.log)?.len();
        let Some(mut state) = self.fast_check(f, &log, &index, log_len)? else {
            return Ok(None);
        };
        if state.count == 0 {
            state.head = self.floor(f)?;
            state.expires_at = self.floor_expiry(f)?;
        }
        state.log = Some(log);
        state.index = Some(index);
        Ok(Some(state))
    }
}
