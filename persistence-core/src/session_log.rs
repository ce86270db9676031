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

    /// Live sessions in ascending id order.
    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>>;
}
