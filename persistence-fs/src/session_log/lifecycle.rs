//! A session's life cycle: its info, trimming, closing and compacting it.
//!
//! - Closed: a `~closed` file holds the time (milliseconds), written durably under the
//!   session's lock. Closing also replaces the index file (same entries, new inode):
//!   every process that kept the session open for its appends
//!   ([`super::append::OpenSessions`]) then finds its kept files stale and opens the
//!   session afresh, reading `~closed`.
//! - Created: a `~created` file written by the append that creates the session, not
//!   synced (it is information only: a crash can lose it, and info then says unknown).
//! - A compaction writes the kept tail of the log and the summary records to a new file
//!   and renames it over the log: one atomic step. The index is removed first and
//!   rebuilt after, so a crash in between leaves a log (old or new) without an index,
//!   which recovery rebuilds.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt;

use persistence_core::backend::compaction_fence;
use persistence_core::{
    AppendOptions, CloseSession, Compaction, Error, Result, SessionInfo, SessionKey, TenantId,
    Timestamp,
};

use super::{SessionFiles, SessionState, read_index_entry};
use crate::Inner;
use crate::checkpointer::record_fence;
use crate::config::Durability;
use crate::error::{IoContext, io_error};
use crate::files;

impl Inner {
    /// Removes the events before `seq`: the kept tail is copied to a new log renamed
    /// over the old one (the index first, shifted), the head kept in `~floor`.
    pub(super) fn trim(&self, t: &TenantId, s: &SessionKey, seq: u64) -> Result<u64> {
        let (_lock, f, _, state) = self.open_session(t, s)?;
        if state.count == 0 || seq <= state.first {
            return Ok(0);
        }
        let removed = (seq - state.first).min(state.count);
        files::write_counter(&f.floor, state.head, self.durability).at(&f.floor)?;
        if removed == state.count {
            self.empty_log(&f, &state)?;
            return Ok(removed);
        }
        let index = File::open(&f.index).at(&f.index)?;
        let cut = read_index_entry(&index, removed).at(&f.index)?;
        let mut shifted = Vec::with_capacity(((state.count - removed) * 8) as usize);
        for i in removed..state.count {
            shifted.extend_from_slice(
                &(read_index_entry(&index, i).at(&f.index)? - cut).to_le_bytes(),
            );
        }
        files::write_atomic(&f.index, &shifted, self.durability.no_sync()).at(&f.index)?;
        let log = File::open(&f.log).at(&f.log)?;
        let mut tail = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::fs::Permissions::from_mode(self.durability.file_mode))
            .tempfile_in(&f.dir)
            .at(&f.dir)?;
        let mut reader = io::Read::take(
            files::PositionedReader {
                file: &log,
                offset: cut,
            },
            state.log_len - cut,
        );
        io::copy(&mut reader, tail.as_file_mut()).at(&f.log)?;
        if self.durability == Durability::Fsync {
            tail.as_file().sync_all().at(&f.log)?;
        }
        tail.persist(&f.log)
            .map_err(|e| io_error(&f.log, e.error))?;
        if self.durability == Durability::Fsync {
            files::sync_dir(&f.dir).at(&f.dir)?;
        }
        Ok(removed)
    }

    /// Empties the log and its index, keeping the session's expiry in `~floor-expiry`
    /// (the caller wrote `~floor`).
    fn empty_log(&self, f: &SessionFiles, state: &SessionState) -> Result<()> {
        let expiry = state.expires_at.map_or(0, |e| e.0);
        files::write_counter(&f.floor_expiry, expiry, self.durability).at(&f.floor_expiry)?;
        files::write_atomic(&f.index, &[], self.durability.no_sync()).at(&f.index)?;
        files::write_atomic(&f.log, &[], self.durability).at(&f.log)
    }

    /// When the session was closed, read from `~closed`.
    pub(super) fn closed_at(&self, f: &SessionFiles) -> Result<Option<Timestamp>> {
        Ok(match files::read_counter(&f.closed).at(&f.closed)? {
            Ok(0) => None,
            Ok(ms) => Some(Timestamp(ms)),
            Err(message) => return Err(crate::error::corrupt(&f.closed, message)),
        })
    }

    /// Records the creation time of a session its first append is creating.
    pub(super) fn note_created(&self, f: &SessionFiles, at: Timestamp) -> Result<()> {
        files::write_counter(&f.created, at.0, self.durability.no_sync()).at(&f.created)
    }

    /// The creation time; `None` when it was not recorded or a crash damaged it.
    fn created_at(&self, f: &SessionFiles) -> Result<Option<Timestamp>> {
        Ok(match files::read_counter(&f.created).at(&f.created)? {
            Ok(ms) if ms > 0 => Some(Timestamp(ms)),
            _ => None,
        })
    }

    fn info_of(&self, f: &SessionFiles, state: &SessionState) -> Result<SessionInfo> {
        Ok(SessionInfo::new(state.head)
            .with_oldest((state.count > 0).then_some(state.first))
            .with_created_at(self.created_at(f)?)
            .with_last_append_at(state.last_at)
            .with_expires_at(state.expires_at)
            .with_closed_at(state.closed_at))
    }

    pub(super) fn session_info(&self, t: &TenantId, s: &SessionKey) -> Result<Option<SessionInfo>> {
        let (_lock, f, _, mut state) = self.open_session_shared(t, s)?;
        if !state.exists() {
            return Ok(None);
        }
        state.closed_at = self.closed_at(&f)?;
        self.info_of(&f, &state).map(Some)
    }

    pub(super) fn close_session(
        &self,
        t: &TenantId,
        s: &SessionKey,
        options: &CloseSession,
    ) -> Result<SessionInfo> {
        let (_lock, f, _, mut state) = self.open_session(t, s)?;
        if !state.exists() {
            return Err(Error::not_found("no such session"));
        }
        if state.closed_at.is_some() {
            return self.info_of(&f, &state);
        }
        // First make kept files stale everywhere (a new index or log), then record the
        // close: a crash in between leaves the session open, as the failed call said.
        if options.remove_events && state.count > 0 {
            files::write_counter(&f.floor, state.head, self.durability).at(&f.floor)?;
            self.empty_log(&f, &state)?;
            state.count = 0;
        } else {
            let entries = files::read_optional(&f.index)
                .at(&f.index)?
                .unwrap_or_default();
            files::write_atomic(&f.index, &entries, self.durability.no_sync()).at(&f.index)?;
        }
        let now = Timestamp::now();
        files::write_counter(&f.closed, now.0, self.durability).at(&f.closed)?;
        state.closed_at = Some(now);
        self.info_of(&f, &state)
    }

    pub(super) fn compact(
        &self,
        t: &TenantId,
        s: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        let fence = compaction_fence(t, s, &compaction)?;
        let (_lock, f, fence_path, state) = self.open_session(t, s)?;
        if !state.exists() {
            return Err(Error::not_found("no such session"));
        }
        if compaction.through > state.head {
            return Err(Error::conflict(format!(
                "cannot compact through ordinal {}: the head is {}",
                compaction.through, state.head
            )));
        }
        // Events kept: ordinals after `through`, from index entry `drop` on.
        let drop = if state.count == 0 {
            0
        } else {
            compaction
                .through
                .saturating_add(1)
                .saturating_sub(state.first)
                .min(state.count)
        };
        let cut = if drop == state.count {
            state.log_len
        } else {
            let index = state
                .index
                .as_ref()
                .ok_or_else(|| Error::backend_error("session files are not open"))?;
            read_index_entry(index, drop).at(&f.index)?
        };
        let tail_len = state.log_len - cut;
        // The summary's records, framed as if appended after the kept tail.
        let shape = SessionState {
            head: state.head,
            expires_at: state.expires_at,
            closed_at: state.closed_at,
            log_len: tail_len,
            ..SessionState::default()
        };
        let options = AppendOptions::default().with_expect_head(compaction.expect_head);
        let batch = self.batch(&shape, &fence_path, &compaction.summary, fence, &options)?;
        record_fence(&fence_path, batch.raise, self.durability)?;

        let mut entries = Vec::with_capacity(((state.count - drop) * 8) as usize);
        if let Some(index) = &state.index {
            for i in drop..state.count {
                let at = read_index_entry(index, i).at(&f.index)? - cut;
                entries.extend_from_slice(&at.to_le_bytes());
            }
        }
        entries.extend_from_slice(&batch.offsets);
        let mut log = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::fs::Permissions::from_mode(self.durability.file_mode))
            .tempfile_in(&f.dir)
            .at(&f.dir)?;
        if let Some(old) = &state.log {
            let mut reader = io::Read::take(
                files::PositionedReader {
                    file: old,
                    offset: cut,
                },
                tail_len,
            );
            io::copy(&mut reader, log.as_file_mut()).at(&f.log)?;
        }
        log.as_file_mut().write_all(&batch.bytes).at(&f.log)?;
        if self.durability == Durability::Fsync {
            log.as_file().sync_all().at(&f.log)?;
        }
        match std::fs::remove_file(&f.index) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&f.index, e)),
        }
        log.persist(&f.log).map_err(|e| io_error(&f.log, e.error))?;
        if self.durability == Durability::Fsync {
            files::sync_dir(&f.dir).at(&f.dir)?;
        }
        files::write_atomic(&f.index, &entries, self.durability.no_sync()).at(&f.index)?;
        Ok(batch.head)
    }
}
