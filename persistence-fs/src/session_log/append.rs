//! An append, and the sessions a process keeps open between its appends.
//!
//! Opening a session for an append checks every component of its paths for links,
//! takes its lock, opens its log and index and reads the log's ends back: about thirty
//! system calls around the one write and one sync that make the append. An agent appends
//! to the same few sessions again and again, so after an append the process keeps the
//! session's lock, log and index files open ([`OpenSessions`]) with what it knows of
//! them: head, first ordinal, record count, expiry, log length.
//!
//! The next append to the session takes the lock through the kept file, then checks,
//! under the lock, that the lock, log and index paths still name the kept files (device
//! and inode, by `statx` without following a final link) and that the log and index
//! still have the lengths this process left them with. A file this process holds open
//! keeps its inode number, so a match is the same file, unchanged since (logs only grow;
//! a trim, a delete or an index rebuild makes new files). Anything else another process
//! did in between (appended, trimmed, deleted, rebuilt the index, replaced the lock file,
//! put a link in the way) fails the check, and the append opens the session afresh, with
//! every check. Kept files are written only after the check passed under the lock.
//!
//! At most [`MAX_KEPT`] sessions are kept (three descriptors each), none idle for more
//! than [`MAX_IDLE`]: each append drops the idle ones, and one that finds the set full
//! drops another. A kept file of a session that another process deleted holds its disk
//! space until then (this process's own trims and deletes drop the kept files first).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use persistence_core::backend::{session_fence, validate_ttl};
use persistence_core::{
    AppendOptions, Envelope, Error, Fence, Result, SessionKey, TenantId, Timestamp,
};
use serde::Serialize;

use super::{SessionFiles, SessionState};
use crate::Inner;
use crate::checkpointer::{check_fence, ensure_entry, record_fence};
use crate::config::Durability;
use crate::error::IoContext;
use crate::files;
use crate::records::{self, HEADER, RecordAt};

/// Sessions whose files a process keeps open at most.
pub(crate) const MAX_KEPT: usize = 64;
/// How long a session's files stay kept without an append.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(10);

/// The sessions this process keeps open, by session directory. An append takes its
/// session out of the set for its duration, so two appends of this process never share
/// a lock file's open file (an flock excludes other open files, not other users of the
/// same one); a concurrent append of the same session opens its own.
#[derive(Debug, Default)]
pub(crate) struct OpenSessions {
    kept: Mutex<HashMap<PathBuf, KeptSession>>,
}

impl OpenSessions {
    fn take(&self, dir: &Path) -> Option<KeptSession> {
        self.lock().remove(dir)
    }

    fn keep(&self, dir: PathBuf, mut session: KeptSession) {
        let now = Instant::now();
        session.used = now;
        let mut kept = self.lock();
        kept.retain(|_, k| now.duration_since(k.used) < MAX_IDLE);
        if kept.len() >= MAX_KEPT
            && !kept.contains_key(&dir)
            && let Some(other) = kept.keys().next().cloned()
        {
            kept.remove(&other);
        }
        kept.insert(dir, session);
    }

    /// Drops what is kept of the session in `dir` (before this process trims or deletes
    /// it, so that it holds no file the session no longer uses).
    pub(crate) fn forget(&self, dir: &Path) {
        self.lock().remove(dir);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, KeptSession>> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Device and inode: which file a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A session's files kept open after an append, unlocked, with the state they were left
/// in.
#[derive(Debug)]
struct KeptSession {
    lock: File,
    lock_id: FileId,
    log_id: FileId,
    index_id: FileId,
    /// Where the log's last record starts (known once this process wrote it).
    last_offset: Option<u64>,
    /// When it was last kept.
    used: Instant,
    /// Its `log` and `index` are open.
    state: SessionState,
}

impl KeptSession {
    /// Keeps `lock` (held) and the state's open log and index.
    fn new(lock: File, state: SessionState) -> std::io::Result<Self> {
        let id = |f: Option<&File>| -> std::io::Result<FileId> {
            let f = f.ok_or_else(|| std::io::Error::other("session files are not open"))?;
            Ok(FileId::of(&f.metadata()?))
        };
        Ok(KeptSession {
            lock_id: id(Some(&lock))?,
            log_id: id(state.log.as_ref())?,
            index_id: id(state.index.as_ref())?,
            last_offset: None,
            used: Instant::now(),
            lock,
            state,
        })
    }

    /// Whether the paths still name the kept files, in the state they were left in, and
    /// the log's last record is still the one this process wrote, whole (damage to it
    /// must not pass for a torn tail later, so the append leaves it to recovery). Called
    /// under the lock.
    fn is_current(&self, lock: &Path, f: &SessionFiles) -> bool {
        let named = |path: &Path, id: FileId, len: Option<u64>| {
            std::fs::symlink_metadata(path).is_ok_and(|m| {
                m.file_type().is_file() && FileId::of(&m) == id && len.is_none_or(|l| m.len() == l)
            })
        };
        let (Some(log), Some(last)) = (&self.state.log, self.last_offset) else {
            return false;
        };
        named(lock, self.lock_id, None)
            && named(&f.log, self.log_id, Some(self.state.log_len))
            && named(&f.index, self.index_id, Some(self.state.count * 8))
            && last_record_is_whole(log, last, self.state.log_len)
    }
}

/// Whether the record at `last` is valid, ends its batch and ends the log at `len`: one
/// `pread`.
fn last_record_is_whole(log: &File, last: u64, len: u64) -> bool {
    let Some(size) = len.checked_sub(last).and_then(|n| usize::try_from(n).ok()) else {
        return false;
    };
    let mut buf = vec![0u8; size];
    log.read_exact_at(&mut buf, last).is_ok()
        && matches!(
            records::parse_record(&buf, 0),
            RecordAt::Valid { end, more: false, .. } if end == size as u64
        )
}

#[derive(Serialize)]
struct StoredEventRef<'a> {
    seq: u64,
    at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<Timestamp>,
    /// Its bytes go after the record's JSON (see `payload_record`).
    #[serde(serialize_with = "persistence_core::backend::envelope_without_bytes")]
    event: &'a Envelope,
}

/// An append's batch, built before anything is written.
pub(super) struct Batch {
    /// The framed records.
    pub(super) bytes: Vec<u8>,
    /// Their index entries (log offsets, little-endian).
    pub(super) offsets: Vec<u8>,
    /// Where the last record starts.
    pub(super) last_offset: u64,
    /// Its ordinal: the new head.
    pub(super) head: u64,
    pub(super) events: u64,
    pub(super) expires_at: Option<Timestamp>,
    /// When its records were appended.
    pub(super) at: Timestamp,
    /// The fence to record before writing, if the append raises it.
    pub(super) raise: Option<u64>,
}

impl Inner {
    pub(super) fn append(
        &self,
        t: &TenantId,
        s: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        if events.is_empty() {
            return Err(Error::invalid_input("append needs at least one event"));
        }
        if let Some(ttl) = options.ttl {
            validate_ttl("session ttl", ttl)?;
        }
        let fence = session_fence(t, s, options.lease.as_ref())?;
        let dir = self.layout.session(t, s);
        if let Some(kept) = self.open_sessions.take(&dir)
            && let Some(head) = self.append_kept(kept, t, s, &events, fence, &options)?
        {
            return Ok(head);
        }
        let (lock, f, fence_path, mut state) = self.open_session(t, s)?;
        let batch = self.batch(&state, &fence_path, &events, fence, &options)?;
        record_fence(&fence_path, batch.raise, self.durability)?;
        let creating = !state.exists();
        if state.log.is_none() || state.index.is_none() {
            ensure_entry(&f.dir, s.as_str(), self.durability, || {
                self.session_catalog(t).map(Some)
            })?;
            let open = |p: &Path| files::open_rw(p, self.durability).at(p);
            state.log = Some(open(&f.log)?);
            state.index = Some(open(&f.index)?);
            if self.durability == Durability::Fsync {
                files::sync_dir(&f.dir).at(&f.dir)?;
            }
        }
        if creating {
            self.note_created(&f, batch.at)?;
        }
        let mut kept = KeptSession::new(lock.into_file(), state).at(&f.log)?;
        self.write_batch(&f, &mut kept, batch)?;
        let head = kept.state.head;
        if kept.lock.unlock().is_ok() {
            self.open_sessions.keep(f.dir, kept);
        }
        Ok(head)
    }

    /// The append through a kept session: `None` (and nothing written) when its files are
    /// no longer the session's, or it expired; then the caller opens it afresh.
    fn append_kept(
        &self,
        mut kept: KeptSession,
        t: &TenantId,
        s: &SessionKey,
        events: &[Envelope],
        fence: Option<Fence>,
        options: &AppendOptions,
    ) -> Result<Option<u64>> {
        let (lock_path, fence_path) = self.layout.session_guards(t, s);
        let f = SessionFiles::new(self.layout.session(t, s));
        kept.lock.lock().at(&lock_path)?;
        if !kept.is_current(&lock_path, &f) || kept.state.expired(Timestamp::now()) {
            return Ok(None); // dropping the file releases the lock
        }
        let batch = match self.batch(&kept.state, &fence_path, events, fence, options) {
            Ok(batch) => batch,
            Err(refused) => {
                // Nothing written: the files stay as they were, worth keeping.
                if kept.lock.unlock().is_ok() {
                    self.open_sessions.keep(f.dir, kept);
                }
                return Err(refused);
            }
        };
        record_fence(&fence_path, batch.raise, self.durability)?;
        self.write_batch(&f, &mut kept, batch)?;
        let head = kept.state.head;
        if kept.lock.unlock().is_ok() {
            self.open_sessions.keep(f.dir, kept);
        }
        Ok(Some(head))
    }

    /// Checks the append's conditions against `state` and frames its records.
    pub(super) fn batch(
        &self,
        state: &SessionState,
        fence_path: &Path,
        events: &[Envelope],
        fence: Option<Fence>,
        options: &AppendOptions,
    ) -> Result<Batch> {
        let raise = check_fence(fence_path, fence)?;
        if let Some(expected) = options.expect_head
            && expected != state.head
        {
            return Err(Error::conflict(format!(
                "expected head {expected}, found {}",
                state.head
            )));
        }
        if state.closed_at.is_some() && state.exists() {
            return Err(Error::closed(
                "the session is closed: it takes no more appends",
            ));
        }
        let now = Timestamp::now();
        let expires_at = options
            .ttl
            .map(|ttl| now.saturating_add(ttl))
            .or(state.expires_at);
        let mut payloads = Vec::with_capacity(events.len());
        let mut offsets = Vec::with_capacity(events.len() * 8);
        let (mut next_offset, mut last_offset) = (state.log_len, state.log_len);
        let mut seq = state.head;
        for event in events {
            seq += 1;
            let mut payload = serde_json::to_vec(&StoredEventRef {
                seq,
                at: now,
                exp: expires_at,
                event,
            })
            .map_err(|e| Error::invalid_input(format!("event does not serialize: {e}")))?;
            persistence_core::backend::append_bytes(&mut payload, event.bytes.as_deref());
            offsets.extend_from_slice(&next_offset.to_le_bytes());
            last_offset = next_offset;
            next_offset += (HEADER + payload.len()) as u64;
            payloads.push(payload);
        }
        let mut bytes = Vec::with_capacity((next_offset - state.log_len) as usize);
        records::frame_batch(payloads.iter().map(Vec::as_slice), &mut bytes);
        Ok(Batch {
            bytes,
            offsets,
            last_offset,
            head: seq,
            events: events.len() as u64,
            expires_at,
            at: now,
            raise,
        })
    }

    /// Writes `batch` after the log's end (durable, or nothing), then its index entries,
    /// and brings the kept state up to date.
    fn write_batch(&self, f: &SessionFiles, kept: &mut KeptSession, batch: Batch) -> Result<()> {
        let state = &mut kept.state;
        let (Some(log), Some(index)) = (&state.log, &state.index) else {
            return Err(Error::backend_error("session files are not open"));
        };
        records::append_at(log, state.log_len, &batch.bytes, self.durability.durability)
            .at(&f.log)?;
        let end = state.log_len + batch.bytes.len() as u64;
        let header_at = (batch.last_offset - state.log_len) as usize;
        if let Some(header) = batch.bytes.get(header_at..header_at + HEADER) {
            let key = (kept.log_id.dev, kept.log_id.ino);
            self.verified.note(key, batch.last_offset, end, header);
        }
        kept.last_offset = Some(batch.last_offset);
        // Then the index, a cache never fsynced: written only once the batch is durable,
        // so it never lists a record a crash could tear. The events are acknowledged
        // whatever happens to it; an index that disagrees is rebuilt on the next call
        // (and its length no longer matches a kept session's).
        let start = state.count * 8;
        let indexed = if state.count == 0 {
            // Empty log (new, or emptied by a trim): the index restarts with this batch.
            index
                .set_len(0)
                .and_then(|()| index.write_all_at(&batch.offsets, 0))
        } else {
            index.write_all_at(&batch.offsets, start)
        };
        if indexed.is_err() {
            let _ = index.set_len(start);
        }
        if state.count == 0 {
            state.first = state.head + 1;
        }
        state.count += batch.events;
        state.head = batch.head;
        state.expires_at = batch.expires_at;
        state.last_at = Some(batch.at);
        state.log_len = end;
        state.rebuilt = false;
        Ok(())
    }
}
