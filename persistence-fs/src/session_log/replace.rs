//! Replacing one event's payload in place, compared with what was read
//! (`SessionLog::replace_event`): what re-encrypting stored rows needs.
//!
//! A payload of another length moves every record after it, so the log is rewritten
//! whole as a compaction rewrites it: a new file renamed over the log, the index
//! removed first and rebuilt after (a crash in between leaves a log, old or new,
//! without an index, which recovery rebuilds), and the new inode makes every process
//! that kept the session open for appends open it afresh.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;

use persistence_core::{Envelope, Result, SessionKey, TenantId};

use super::StoredEvent;
use super::recovery::decode_event;
use crate::Inner;
use crate::config::Durability;
use crate::error::{IoContext, corrupt, io_error};
use crate::files;
use crate::records::{self, HEADER};

impl Inner {
    /// Under the session's exclusive lock: rewrites the log with event `seq`'s payload
    /// replaced, if it is `expected`. Ordinals, times and expiry stay.
    pub(super) fn replace_event(
        &self,
        t: &TenantId,
        s: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let (_lock, f, _, state) = self.open_session(t, s)?;
        if state.count == 0 || seq < state.first || seq - state.first >= state.count {
            return Ok(false);
        }
        let stored = records::read_all(&f.log, false)
            .at(&f.log)?
            .map_err(|offset| corrupt(&f.log, format!("damaged record at offset {offset}")))?;
        let mut new = Some(new);
        let mut log = Vec::with_capacity(state.log_len as usize);
        let mut index = Vec::with_capacity(stored.len() * 8);
        for payload in &stored {
            let offset = log.len() as u64;
            let mut event: StoredEvent = decode_event(&f.log, offset, payload)?;
            let payload = if event.seq == seq {
                if event.event != *expected {
                    return Ok(false);
                }
                event.event = new
                    .take()
                    .ok_or_else(|| corrupt(&f.log, format!("ordinal {seq} is stored twice")))?;
                std::borrow::Cow::Owned(crate::payload_record::encode(&mut event)?)
            } else {
                std::borrow::Cow::Borrowed(payload.as_slice())
            };
            index.extend_from_slice(&offset.to_le_bytes());
            records::frame_batch(std::iter::once(&*payload), &mut log);
            debug_assert_eq!(log.len() as u64, offset + (HEADER + payload.len()) as u64);
        }
        if new.is_some() {
            return Ok(false);
        }
        let mut file = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::fs::Permissions::from_mode(self.durability.file_mode))
            .tempfile_in(&f.dir)
            .at(&f.dir)?;
        file.as_file_mut().write_all(&log).at(&f.log)?;
        if self.durability == Durability::Fsync {
            file.as_file().sync_all().at(&f.log)?;
        }
        match std::fs::remove_file(&f.index) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&f.index, e)),
        }
        file.persist(&f.log)
            .map_err(|e| io_error(&f.log, e.error))?;
        if self.durability == Durability::Fsync {
            files::sync_dir(&f.dir).at(&f.dir)?;
        }
        files::write_atomic(&f.index, &index, self.durability.no_sync()).at(&f.index)?;
        Ok(true)
    }
}
