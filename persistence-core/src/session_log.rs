//! Append-only session event logs with gapless ordinals.

use std::time::Duration;

use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::ids::{SessionKey, TenantId};
use crate::lock::Lease;
use crate::page::{Cursor, Page};
use crate::time::Timestamp;

/// Options of [`SessionLog::append`].
///
/// ```
/// use std::time::Duration;
/// use persistence_core::AppendOptions;
///
/// let options = AppendOptions::default()
///     .with_expect_head(4)
///     .with_ttl(Duration::from_secs(3600));
/// assert_eq!(options.expect_head, Some(4));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AppendOptions {
    /// Fail `Conflict`, writing nothing, unless the head is this ordinal (0: empty).
    pub expect_head: Option<u64>,
    /// Lease of the session's own lock ([`LockKey::for_session`](crate::LockKey::for_session)):
    /// a fence lower than one already seen fails `Fenced`; a lease of another lock or
    /// tenant fails `InvalidInput`.
    pub lease: Option<Lease>,
    /// Makes the session ephemeral: it expires `ttl` after this append (sliding).
    /// `None` leaves the current expiry as it is.
    pub ttl: Option<Duration>,
}

impl AppendOptions {
    /// Same, guarded: the head must be `head` (0: the session is empty).
    #[must_use]
    pub fn with_expect_head(mut self, head: impl Into<Option<u64>>) -> Self {
        self.expect_head = head.into();
        self
    }
    /// Same, fenced by `lease` (a lease of [`LockKey::for_session`](crate::LockKey::for_session)).
    #[must_use]
    pub fn with_lease(mut self, lease: &Lease) -> Self {
        self.lease = Some(lease.clone());
        self
    }
    /// Same, making the session expire `ttl` after this append (`None`: keep its expiry).
    #[must_use]
    pub fn with_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.ttl = ttl.into();
        self
    }
}

/// Query of [`SessionLog::list_sessions`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListSessions {
    /// Page size, 1..=10 000. Default 100.
    pub limit: usize,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
}

impl Default for ListSessions {
    fn default() -> Self {
        ListSessions {
            limit: 100,
            cursor: None,
        }
    }
}

impl ListSessions {
    /// Same, with page size `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Same, continuing after the page that returned `cursor` (`None`: from the start).
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.cursor = cursor.into();
        self
    }
}

/// A stored event and its ordinal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// Ordinal: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// The event.
    pub event: Envelope,
    /// When it was appended (backend clock).
    pub appended_at: Timestamp,
}

impl SessionEvent {
    /// Event number `seq`, appended at `appended_at`. Backends build events with this.
    pub fn new(seq: u64, event: Envelope, appended_at: Timestamp) -> Self {
        SessionEvent {
            seq,
            event,
            appended_at,
        }
    }
}

/// What [`SessionLog::session_info`] knows of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Ordinal of the last event ever appended (trims and compactions do not lower it).
    pub head: u64,
    /// Lowest ordinal still stored; `None` when every event was trimmed or removed.
    pub oldest: Option<u64>,
    /// When its first event was appended; `None` for a session created before the backend
    /// recorded it (written by 0.1).
    pub created_at: Option<Timestamp>,
    /// When events were last appended (or compacted in); `None` as for `created_at`.
    pub last_append_at: Option<Timestamp>,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<Timestamp>,
    /// When it was closed, if it was.
    pub closed_at: Option<Timestamp>,
}

impl SessionInfo {
    /// Info of a session with head `head`. Backends build it with this and the `with_*`
    /// builders.
    pub fn new(head: u64) -> Self {
        SessionInfo {
            head,
            oldest: None,
            created_at: None,
            last_append_at: None,
            expires_at: None,
            closed_at: None,
        }
    }
    /// Same, with the lowest stored ordinal.
    #[must_use]
    pub fn with_oldest(mut self, oldest: impl Into<Option<u64>>) -> Self {
        self.oldest = oldest.into();
        self
    }
    /// Same, with its creation time.
    #[must_use]
    pub fn with_created_at(mut self, at: impl Into<Option<Timestamp>>) -> Self {
        self.created_at = at.into();
        self
    }
    /// Same, with the time of its last append.
    #[must_use]
    pub fn with_last_append_at(mut self, at: impl Into<Option<Timestamp>>) -> Self {
        self.last_append_at = at.into();
        self
    }
    /// Same, with its expiry.
    #[must_use]
    pub fn with_expires_at(mut self, at: impl Into<Option<Timestamp>>) -> Self {
        self.expires_at = at.into();
        self
    }
    /// Same, closed at `at`.
    #[must_use]
    pub fn with_closed_at(mut self, at: impl Into<Option<Timestamp>>) -> Self {
        self.closed_at = at.into();
        self
    }
    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.closed_at.is_some()
    }
}

/// Options of [`SessionLog::close_session`].
///
/// ```
/// use persistence_core::CloseSession;
///
/// let options = CloseSession::default().with_events_removed();
/// assert!(options.remove_events);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CloseSession {
    /// Remove the session's events in the same step (its head and info stay, so its
    /// ordinals are still never reused). Default: keep them readable.
    pub remove_events: bool,
}

impl CloseSession {
    /// Same, removing the events as the session closes.
    #[must_use]
    pub fn with_events_removed(mut self) -> Self {
        self.remove_events = true;
        self
    }
}

/// A compaction ([`SessionLog::compact`]): remove the events up to `through` and append
/// `summary` in one atomic step, as an agent runtime does when its context window fills.
///
/// ```
/// use persistence_core::{Compaction, Envelope};
/// use serde_json::json;
///
/// let summary = Envelope::new(1, json!({"summary": "the user wants a refund"}));
/// let compaction = Compaction::new(40, vec![summary]).with_expect_head(42);
/// assert_eq!(compaction.through, 40);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Compaction {
    /// Events with ordinals up to and including this one are removed (0: none).
    pub through: u64,
    /// Events appended after the head, as by [`SessionLog::append`]: at least one.
    pub summary: Vec<Envelope>,
    /// Fail `Conflict`, changing nothing, unless the head is this ordinal.
    pub expect_head: Option<u64>,
    /// Lease of the session's own lock, as for [`AppendOptions::lease`].
    pub lease: Option<Lease>,
}

impl Compaction {
    /// Remove the events through ordinal `through`, append `summary`.
    pub fn new(through: u64, summary: Vec<Envelope>) -> Self {
        Compaction {
            through,
            summary,
            expect_head: None,
            lease: None,
        }
    }
    /// Same, guarded: the head must be `head`.
    #[must_use]
    pub fn with_expect_head(mut self, head: impl Into<Option<u64>>) -> Self {
        self.expect_head = head.into();
        self
    }
    /// Same, fenced by `lease` (a lease of [`LockKey::for_session`](crate::LockKey::for_session)).
    #[must_use]
    pub fn with_lease(mut self, lease: &Lease) -> Self {
        self.lease = Some(lease.clone());
        self
    }
}

/// Append-only event logs keyed by tenant and session.
///
/// Ordinals start at 1 and grow by exactly 1 per event; an append batch is atomic;
/// concurrent appenders never get the same ordinal; trimmed ordinals are never reused.
/// A deleted or expired session starts again at 1.
#[async_trait]
pub trait SessionLog: Send + Sync {
    /// Appends a batch atomically. Returns the new head (ordinal of the last event).
    ///
    /// # Errors
    /// `InvalidInput` for an empty batch; `Conflict` if `expect_head` does not hold;
    /// `Fenced` for a lease with a stale fence, `InvalidInput` for a lease of another
    /// lock than [`LockKey::for_session`](crate::LockKey::for_session). Nothing is written
    /// on error.
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64>;

    /// Up to `limit` events with ordinal greater than `after`, ascending.
    ///
    /// Unlike the other listings this returns the events, not a [`Page`]: the ordinals
    /// are the cursor. Pass the last `seq` you got as `after` to read on; fewer than
    /// `limit` events means you reached the head as it was when read. A reader that
    /// keeps its last ordinal resumes after a restart with no cursor to store, and
    /// ordinals (unlike cursors) mean the same on every backend.
    ///
    /// # Errors
    /// `InvalidInput` for a limit outside 1..=10 000.
    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>>;

    /// Ordinal of the last event ever appended (0 for an absent session). Trimming does
    /// not lower it.
    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64>;

    /// Removes events with ordinal below `seq`. Returns how many were removed.
    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64>;

    /// Deletes the whole session. Returns whether it existed.
    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool>;

    /// Live sessions in ascending id order (closed ones included).
    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>>;

    /// Waits until `session` may have changed since the caller saw head `seen_head` (an
    /// append, trim, compaction, close or delete), or until `timeout` passes, whichever
    /// comes first; [`Subscription`](crate::Subscription)s call it between reads. Returning
    /// early without a change is allowed; returning late is not.
    ///
    /// The default sleeps `timeout` (polling). A backend with a push mechanism returns as
    /// soon as it is told of a change, and at once when the head is no longer
    /// `seen_head`.
    ///
    /// # Errors
    /// Whatever the backend's mechanism fails with; the default never fails.
    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: Duration,
    ) -> Result<()> {
        let _ = (tenant, session, seen_head);
        tokio::time::sleep(timeout).await;
        Ok(())
    }

    /// What is known of a live session; `None` when it is absent (never appended to,
    /// deleted or expired).
    ///
    /// # Errors
    /// `Unsupported` on a backend without
    /// [`Capabilities::lifecycle`](crate::Capabilities::lifecycle) (the
    /// default of this method).
    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        let _ = (tenant, session);
        Err(lifecycle_unsupported("session_info"))
    }

    /// Closes a session: later appends and compactions fail [`Closed`](crate::ErrorKind::Closed).
    /// Reads, `head`, `session_info`, trims and `delete` work as before, and its TTL
    /// still runs. Closing is not deleting (the session and its head stay) and not
    /// expiring (which hides it at once). With [`CloseSession::remove_events`] its events
    /// go in the same step. Closing a closed session changes nothing and returns its info
    /// (with the first close time). Returns the info of the closed session.
    ///
    /// # Errors
    /// `NotFound` for an absent session; `Unsupported` as for
    /// [`session_info`](Self::session_info).
    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        let _ = (tenant, session, options);
        Err(lifecycle_unsupported("close_session"))
    }

    /// Removes the events through [`Compaction::through`] and appends its summary events
    /// after the head, atomically: a reader sees the session before or after, never
    /// between. Ordinals are never reused: the summary gets `head + 1, ...`. Returns the
    /// new head. The expiry is kept.
    ///
    /// # Errors
    /// `InvalidInput` for an empty summary or a lease of another lock; `NotFound` for an
    /// absent session; `Conflict` if `expect_head` does not hold or `through` is past the
    /// head; `Fenced` for a stale lease; `Closed` for a closed session; `Unsupported` as
    /// for [`session_info`](Self::session_info). Nothing changes on error.
    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        let _ = (tenant, session, compaction);
        Err(lifecycle_unsupported("compact"))
    }

    /// Replaces the payload of event `seq` of a live session (closed ones included) with
    /// `new`, if it still equals `expected`; its ordinal, `appended_at`, the head and
    /// the expiry stay. Returns whether it replaced: `false` when the event is absent
    /// (trimmed, compacted away, or its session deleted or expired) or is no longer
    /// `expected`. For re-encoding what is stored (the codec's rekey) next to live
    /// appenders; to everything else events stay immutable.
    ///
    /// # Errors
    /// `Unsupported` on a backend without
    /// [`Capabilities::replace`](crate::Capabilities::replace) (this method's default).
    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let _ = (tenant, session, seq, expected, new);
        Err(crate::Error::unsupported(
            "replace_event: this backend does not declare Capabilities::replace",
        ))
    }
}

fn lifecycle_unsupported(operation: &str) -> crate::Error {
    crate::Error::unsupported(format!(
        "{operation}: this backend does not declare Capabilities::lifecycle"
    ))
}
