//! Append-only session event logs with gapless ordinals.

use std::time::Duration;

use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::ids::{SessionKey, TenantId};
use crate::lock::Fence;
use crate::page::{Cursor, Page};
use crate::time::Timestamp;

/// Options of [`SessionLog::append`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOptions {
    /// Fail `Conflict`, writing nothing, unless the head is this ordinal (0: empty).
    pub expect_head: Option<u64>,
    /// Fence from the session's lock; lower than one already seen fails `Fenced`.
    pub fence: Option<Fence>,
    /// Makes the session ephemeral: it expires `ttl` after this append (sliding).
    /// `None` leaves the current expiry as it is.
    pub ttl: Option<Duration>,
}

/// A stored event and its ordinal.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// Ordinal: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// The event.
    pub event: Envelope,
    /// When it was appended (backend clock).
    pub appended_at: Timestamp,
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
    /// `Fenced` for a stale fence. Nothing is written on error.
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64>;

    /// Up to `limit` events with ordinal greater than `after`, ascending.
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
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<SessionKey>>;

    /// Deletes expired sessions (all tenants). Returns how many were removed.
    ///
    /// # Errors
    /// `Unsupported` on backends without TTL.
    async fn purge_expired(&self) -> Result<u64>;
}
