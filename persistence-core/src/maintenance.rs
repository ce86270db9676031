//! Cross-tenant administration: what a backend is, what it holds, and its upkeep.

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::Result;
use crate::ids::TenantId;

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
    async fn health(&self) -> Result<()> {
        (**self).health().await
    }
    async fn close(&self) {
        (**self).close().await
    }
}
