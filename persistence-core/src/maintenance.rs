//! Cross-tenant administration: what a backend is, what it holds, and its upkeep.

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::ids::{SessionKey, TenantId};

/// What one [`Maintenance::purge_expired`] run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeCounts {
    /// Expired store items.
    pub items: u64,
    /// Expired sessions.
    pub sessions: u64,
    /// Lease rows of locks unused for longer than the backend keeps them (0 where
    /// leases need no purging).
    pub leases: u64,
}

impl PurgeCounts {
    /// Counts of a purge. Backends build them with this.
    pub fn new(items: u64, sessions: u64, leases: u64) -> Self {
        PurgeCounts {
            items,
            sessions,
            leases,
        }
    }
}

/// A session [`Maintenance::purge_expired_report`] removed because its TTL ran out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct ExpiredSession {
    /// Its tenant.
    pub tenant: TenantId,
    /// The session.
    pub session: SessionKey,
}

impl ExpiredSession {
    /// Session `session` of `tenant`. Backends build reports with this.
    pub fn new(tenant: TenantId, session: SessionKey) -> Self {
        ExpiredSession { tenant, session }
    }
}

/// What [`Maintenance::purge_expired_report`] removed: the counts, and which sessions
/// expired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// The counts, as [`Maintenance::purge_expired`] returns them.
    pub counts: PurgeCounts,
    /// The expired sessions removed; empty when the backend does not name them
    /// (`named` is then false), even if `counts.sessions` is not 0.
    pub expired_sessions: Vec<ExpiredSession>,
    /// Whether the backend named the sessions it removed.
    pub named: bool,
}

impl PurgeReport {
    /// A report that names the removed sessions.
    pub fn named(counts: PurgeCounts, expired_sessions: Vec<ExpiredSession>) -> Self {
        PurgeReport {
            counts,
            expired_sessions,
            named: true,
        }
    }
    /// A report of counts only.
    pub fn counts_only(counts: PurgeCounts) -> Self {
        PurgeReport {
            counts,
            expired_sessions: Vec::new(),
            named: false,
        }
    }
}

/// The one trait that crosses tenants: status, health and upkeep of a whole backend.
///
/// The four data traits ([`Checkpointer`](crate::Checkpointer), [`Store`](crate::Store),
/// [`SessionLog`](crate::SessionLog), [`Lock`](crate::Lock)) take a tenant on every call
/// and never reach past it; everything that does is here, so that an application can
/// hand tenant code the data traits and keep this one for operators. The facade's
/// `Persistence` and the `persistence` CLI reach every backend through it, a third-party
/// one included.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Short name of the backend, as in URLs and logs: `memory`, `fs`, `postgres`, `redis`,
    /// or a third-party backend's own.
    fn backend_name(&self) -> &str;

    /// What the backend supports.
    fn capabilities(&self) -> Capabilities;

    /// The stored format this backend reads and writes, for humans (`schema version 3`,
    /// `layout /var/lib/app/v1, format v2`).
    fn schema(&self) -> String;

    /// Tenants with any stored data, in ascending order.
    ///
    /// # Errors
    /// `Unavailable` when the backend cannot be reached.
    async fn tenants(&self) -> Result<Vec<TenantId>>;

    /// Removes expired store items and sessions of every tenant, and lease rows nobody
    /// uses; returns the counts. Reads never return expired data whether or not this ran:
    /// it only frees the space.
    ///
    /// # Errors
    /// `Unavailable` when the backend cannot be reached.
    async fn purge_expired(&self) -> Result<PurgeCounts>;

    /// [`purge_expired`](Self::purge_expired), naming the sessions it removed, so the
    /// sweeper can record each one's end in its tenant's audit log. The default names
    /// none (`named: false`); every built-in backend names them.
    ///
    /// # Errors
    /// As [`purge_expired`](Self::purge_expired).
    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        Ok(PurgeReport::counts_only(self.purge_expired().await?))
    }

    /// One round trip to the storage behind the backend (a query, a `PING`, a look at
    /// the root directory), so a readiness probe can tell it works now.
    ///
    /// # Errors
    /// `Unavailable` (or the kind of what failed) when it does not answer.
    async fn health(&self) -> Result<()>;

    /// Closes connections the backend holds; later calls may reconnect or fail. The
    /// default does nothing.
    async fn close(&self) {}
}

#[async_trait]
impl<T: Maintenance + ?Sized> Maintenance for std::sync::Arc<T> {
    fn backend_name(&self) -> &str {
        (**self).backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn schema(&self) -> String {
        (**self).schema()
    }
    async fn tenants(&self) -> Result<Vec<TenantId>> {
        (**self).tenants().await
    }
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        (**self).purge_expired().await
    }
    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        (**self).purge_expired_report().await
    }
    async fn health(&self) -> Result<()> {
        (**self).health().await
    }
    async fn close(&self) {
        (**self).close().await
    }
}
