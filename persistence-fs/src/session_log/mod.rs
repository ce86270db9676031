//! Session logs: an append-only record file per session plus a fixed-width offset index
//! (entry `i` is the byte offset of ordinal `first + i`), so reading from any ordinal is
//! one seek. The index is a cache: it is not fsynced and is rebuilt from the log whenever
//! it disagrees with it (after a crash). It is written only after the log's batch is
//! durable, so an entry always points at an acknowledged record: an index that lists
//! records the log no longer holds means lost data (`Corrupt`), not a crash. Reads check
//! every record's ordinal against the one asked for. A `~floor` file keeps the head when a
//! trim empties the log, so ordinals are never reused, and `~floor-expiry` its expiry
//! (the records carry it otherwise), so an emptied session with a TTL still expires. One append is one batch of
//! records ([`crate::records`]): after a crash or a failed write, all of it or none.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use async_trait::async_trait;
use persistence_core::backend::{CursorExt, PageExt, validate_limit};
use persistence_core::{
    AppendOptions, CloseSession, Compaction, Cursor, Envelope, ExpiredSession, ListSessions, Page,
    Result, SessionEvent, SessionInfo, SessionKey, SessionLog, TenantId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::catalog::Range;
use crate::error::{IoContext, corrupt, io_error};
use crate::files::{self, FileLock};
use crate::records::{self, RecordAt};
use crate::{FsBackend, Inner};

mod append;
pub(crate) mod changes;
mod lifecycle;
mod listing;
mod recovery;
mod replace;
mod scan;
pub(crate) use append::OpenSessions;
use recovery::decode_event;

const LOG: &str = "log";
const INDEX: &str = "index";
const FLOOR: &str = "~floor";
const FLOOR_EXPIRY: &str = "~floor-expiry";
const CLOSED: &str = "~closed";
const CREATED: &str = "~created";

#[derive(Serialize, Deserialize)]
struct StoredEvent {
    seq: u64,
    at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<Timestamp>,
    event: Envelope,
}

impl crate::payload_record::PayloadRecord for StoredEvent {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.event
    }
}

/// The state of a session's files, valid while its lock is held.
#[derive(Debug, Default)]
struct SessionState {
    /// Ordinal of the first record in the log (meaningless when `count == 0`).
    first: u64,
    /// Records in the log.
    count: u64,
    /// Last ordinal ever appended.
    head: u64,
    /// Expiry carried by the last record.
    expires_at: Option<Timestamp>,
    /// When the last record was appended (unknown when the log is empty).
    last_at: Option<Timestamp>,
    /// When the session was closed (read by [`Inner::recover`], not by the read-only
    /// check: readers do not need it).
    closed_at: Option<Timestamp>,
    /// Log length in bytes.
    log_len: u64,
    /// The open log (read + write), if it exists.
    log: Option<File>,
    /// The open index (read + write), if the log exists.
    index: Option<File>,
    /// Whether recovery rewrote the index file.
    rebuilt: bool,
}

impl SessionState {
    fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
    fn exists(&self) -> bool {
        self.head > 0
    }
}

/// A tenant's session directories, checked for links (see [`Inner::inside`]).
struct SessionDirs {
    guards: PathBuf,
    sessions: PathBuf,
}

struct SessionFiles {
    dir: PathBuf,
    log: PathBuf,
    index: PathBuf,
    floor: PathBuf,
    /// The session's expiry (milliseconds, 0: none) while its log is empty: the records
    /// carry it otherwise.
    floor_expiry: PathBuf,
    /// When the session was closed (milliseconds), if it was.
    closed: PathBuf,
    /// When the session was created (milliseconds); informational, written unsynced.
    created: PathBuf,
}

impl SessionFiles {
    fn new(dir: PathBuf) -> Self {
        SessionFiles {
            log: dir.join(LOG),
            index: dir.join(INDEX),
            floor: dir.join(FLOOR),
            floor_expiry: dir.join(FLOOR_EXPIRY),
            closed: dir.join(CLOSED),
            created: dir.join(CREATED),
            dir,
        }
    }
}

fn read_index_entry(index: &File, i: u64) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    index.read_exact_at(&mut buf, i * 8)?;
    Ok(u64::from_le_bytes(buf))
}

impl Inner {
    /// The directories of a tenant's sessions, checked for links.
    fn session_dirs(&self, t: &TenantId) -> Result<SessionDirs> {
        let tenant = self.inside(self.layout.tenant(t))?;
        Ok(SessionDirs {
            guards: self.inside_below(&tenant, self.layout.session_guards_dir(t))?,
            sessions: self.inside_below(&tenant, self.layout.sessions(t))?,
        })
    }

    fn session_files(
        &self,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<(SessionFiles, PathBuf, PathBuf)> {
        self.session_files_in(&self.session_dirs(t)?, t, s)
    }

    /// [`Self::session_files`] with the tenant's directories checked already (a listing
    /// checks them once per page).
    fn session_files_in(
        &self,
        dirs: &SessionDirs,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<(SessionFiles, PathBuf, PathBuf)> {
        let (lock, fence) = self.layout.session_guards(t, s);
        let lock = self.inside_below(&dirs.guards, lock)?;
        let dir = self.inside_below(&dirs.sessions, self.layout.session(t, s))?;
        let files = SessionFiles::new(dir);
        self.inside_below(&files.dir, files.log.clone())?;
        self.inside_below(&files.dir, files.index.clone())?;
        Ok((files, lock, fence))
    }

    /// Locks and recovers a session; an expired session is deleted and reported empty.
    fn open_session(
        &self,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<(FileLock, SessionFiles, PathBuf, SessionState)> {
        let (f, lock_path, fence) = self.session_files(t, s)?;
        // Whoever opens a session this way may trim, delete or rebuild it: what this
        // process kept of it goes (an append keeps it again).
        self.open_sessions.forget(&f.dir);
        let lock = FileLock::exclusive(&lock_path, self.durability).at(&lock_path)?;
        let mut state = self.recover(&f)?;
        if state.expired(Timestamp::now()) {
            files::remove_dir_atomic(&f.dir, self.durability).at(&f.dir)?;
            self.session_catalog(t)?.remove(s.as_str());
            state = SessionState::default();
        }
        Ok((lock, f, fence, state))
    }

    /// For reads: a shared lock and the read-only fast check, so readers of a session run
    /// side by side. Falls back to the exclusive [`Self::open_session`] whenever recovery
    /// (a torn tail, a stale index) or the removal of an expired session is needed.
    fn open_session_shared(
        &self,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<(Option<FileLock>, SessionFiles, PathBuf, SessionState)> {
        self.open_session_shared_in(&self.session_dirs(t)?, t, s)
    }

    /// [`Self::open_session_shared`] with the tenant's directories checked already.
    fn open_session_shared_in(
        &self,
        dirs: &SessionDirs,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<(Option<FileLock>, SessionFiles, PathBuf, SessionState)> {
        let (f, lock_path, fence) = self.session_files_in(dirs, t, s)?;
        let lock = FileLock::shared(&lock_path, self.durability).at(&lock_path)?;
        if let Some(state) = self.recover_read_only(&f)?
            && !state.expired(Timestamp::now())
        {
            return Ok((lock, f, fence, state));
        }
        drop(lock);
        let (lock, f, fence, state) = self.open_session(t, s)?;
        Ok((Some(lock), f, fence, state))
    }

    fn read(
        &self,
        t: &TenantId,
        s: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        let limit = validate_limit(limit)?;
        let (lock, f, _, state) = self.open_session_shared(t, s)?;
        if let Some(events) = self.read_indexed(&f, &state, after, limit)? {
            return Ok(events);
        }
        // The index points elsewhere than the ordinals asked for (a stale cache): rebuild
        // it from the log under the exclusive lock, and read again.
        drop((lock, state));
        let (f, lock_path, _) = self.session_files(t, s)?;
        let _lock = FileLock::exclusive(&lock_path, self.durability).at(&lock_path)?;
        match std::fs::remove_file(&f.index) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&f.index, e)),
        }
        let state = self.recover(&f)?;
        self.read_indexed(&f, &state, after, limit)?.ok_or_else(|| {
            corrupt(
                &f.log,
                format!("records after ordinal {after} do not hold the ordinals that follow it"),
            )
        })
    }

    /// Up to `limit` events after `after` through the index; `None` when a record found
    /// through it does not hold the ordinal expected there.
    fn read_indexed(
        &self,
        f: &SessionFiles,
        state: &SessionState,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<SessionEvent>>> {
        if state.count == 0 {
            return Ok(Some(Vec::new()));
        }
        let start = after.saturating_add(1).max(state.first);
        let last = state.first + state.count - 1;
        if start > last {
            return Ok(Some(Vec::new()));
        }
        let (Some(index), Some(log)) = (&state.index, &state.log) else {
            return Ok(Some(Vec::new()));
        };
        let mut offset = read_index_entry(index, start - state.first).at(&f.index)?;
        let mut out = Vec::new();
        while out.len() < limit && start + (out.len() as u64) <= last {
            match records::read_record(log, offset, state.log_len).at(&f.log)? {
                RecordAt::Valid { payload, end, .. } => {
                    let e = decode_event(&f.log, offset, &payload)?;
                    if e.seq != start + out.len() as u64 {
                        return Ok(None);
                    }
                    out.push(SessionEvent::new(e.seq, e.event, e.at));
                    offset = end;
                }
                RecordAt::End | RecordAt::Torn | RecordAt::Corrupt => {
                    // Inside the acknowledged log: a bad index entry, or damage.
                    if out.is_empty() {
                        return Ok(None);
                    }
                    return Err(corrupt(
                        &f.log,
                        format!("damaged record at offset {offset}"),
                    ));
                }
            }
        }
        Ok(Some(out))
    }
}

#[async_trait]
impl SessionLog for FsBackend {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        through_codec!(self.sessions().append(tenant, session, events, options));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.append", format!("{tenant}/{session}"), move |i| {
            i.append(&t, &s, events, options)
        })
        .await
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        through_codec!(self.sessions().read(tenant, session, after, limit));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.read", format!("{tenant}/{session}"), move |i| {
            i.read(&t, &s, after, limit)
        })
        .await
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        through_codec!(self.sessions().head(tenant, session));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.head", format!("{tenant}/{session}"), move |i| {
            Ok(i.open_session_shared(&t, &s)?.3.head)
        })
        .await
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        through_codec!(self.sessions().trim_before(tenant, session, seq));
        let (t, s) = (tenant.clone(), session.clone());
        self.run(
            "session.trim_before",
            format!("{tenant}/{session}"),
            move |i| i.trim(&t, &s, seq),
        )
        .await
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        through_codec!(self.sessions().delete(tenant, session));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.delete", format!("{tenant}/{session}"), move |i| {
            let (_lock, f, _, state) = i.open_session(&t, &s)?;
            files::remove_dir_atomic(&f.dir, i.durability).at(&f.dir)?;
            i.session_catalog(&t)?.remove(s.as_str());
            Ok(state.exists())
        })
        .await
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        through_codec!(self.sessions().list_sessions(tenant, query));
        let t = tenant.clone();
        let ListSessions { cursor, limit, .. } = query;
        self.run("session.list_sessions", tenant.to_string(), move |i| {
            let limit = validate_limit(limit)?;
            let after = cursor
                .map(|c| SessionKey::new(c.as_str()).map_err(|_| c.invalid()))
                .transpose()?;
            let range = Range {
                after: after.as_ref().map(SessionKey::as_str),
                prefix: "",
            };
            let scan = || i.session_names(&t);
            let dirs = i.session_dirs(&t)?;
            let sessions_dir = listing::SessionsDir::open(&dirs.sessions);
            let items = i.session_catalog(&t)?.collect(range, limit, &scan, |id| {
                let Ok(s) = SessionKey::new(id) else {
                    return Ok(None);
                };
                let listed = match sessions_dir.probe(&s, Timestamp::now()) {
                    listing::Probe::Listed => true,
                    listing::Probe::Check => false,
                    listing::Probe::ByPath => i.listed_unlocked(&dirs, &t, &s)?,
                };
                if listed {
                    return Ok(Some(s));
                }
                Ok(i.open_session_shared_in(&dirs, &t, &s)?
                    .3
                    .exists()
                    .then_some(s))
            })?;
            Ok(Page::from_overfetch(items, limit, |k| {
                Cursor::new(k.as_str())
            }))
        })
        .await
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        through_codec!(
            self.sessions()
                .wait_for_change(tenant, session, seen_head, timeout)
        );
        // Only watched, never opened: the path needs no link check (the watch does not
        // follow a link either).
        let dir = self.inner.layout.session(tenant, session);
        let Some(watcher) = self.inner.changes.watcher(&dir) else {
            if self.head(tenant, session).await? == seen_head {
                tokio::time::sleep(timeout).await;
            }
            return Ok(());
        };
        let head = async {
            // Registered for wake-ups from here: a head read since answers this waiter.
            let not_before = std::time::Instant::now();
            let read_head = || self.head(tenant, session);
            self.inner
                .changes
                .heads
                .call(dir.clone(), not_before, read_head)
                .await
        };
        persistence_core::backend::wait_on_notify(watcher.notify(), head, seen_head, timeout).await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        through_codec!(self.sessions().session_info(tenant, session));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.info", format!("{tenant}/{session}"), move |i| {
            i.session_info(&t, &s)
        })
        .await
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        through_codec!(self.sessions().close_session(tenant, session, options));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.close", format!("{tenant}/{session}"), move |i| {
            i.close_session(&t, &s, &options)
        })
        .await
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        through_codec!(self.sessions().compact(tenant, session, compaction));
        let (t, s) = (tenant.clone(), session.clone());
        self.run("session.compact", format!("{tenant}/{session}"), move |i| {
            i.compact(&t, &s, compaction)
        })
        .await
    }

    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        through_codec!(
            self.sessions()
                .replace_event(tenant, session, seq, expected, new)
        );
        let (t, s, expected) = (tenant.clone(), session.clone(), expected.clone());
        self.run(
            "session.replace_event",
            format!("{tenant}/{session}"),
            move |i| i.replace_event(&t, &s, seq, &expected, new),
        )
        .await
    }
}

impl FsBackend {
    /// Removes expired sessions of every tenant.
    pub(crate) async fn purge_expired_sessions(&self) -> Result<Vec<ExpiredSession>> {
        self.run("session.purge_expired", String::new(), |i| {
            i.purge_sessions()
        })
        .await
    }
}
