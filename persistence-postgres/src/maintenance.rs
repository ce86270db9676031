//! [`Maintenance`] for Postgres: status, health and purge across tenants.

use async_trait::async_trait;
use persistence_core::{Capabilities, Maintenance, PurgeCounts, PurgeReport, Result, TenantId};

use crate::PgBackend;
use crate::error::{BACKEND, map};

/// One round trip that touches no table.
const HEALTH: &str = "SELECT 1::bigint";

#[async_trait]
impl Maintenance for PgBackend {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        PgBackend::capabilities(self)
    }

    fn schema(&self) -> String {
        format!("schema version {}", crate::SCHEMA_VERSION)
    }

    async fn tenants(&self) -> Result<Vec<TenantId>> {
        PgBackend::tenants(self).await
    }

    /// Expired items and sessions, and the lease rows of locks unused for an hour
    /// ([`PgBackend::purge_stale_leases`]).
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        Ok(self.purge_expired_report().await?.counts)
    }

    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        let items = self.purge_expired_items().await?;
        let sessions = self.purge_expired_sessions().await?;
        let leases = self.purge_stale_leases().await?;
        let counts = PurgeCounts::new(items, sessions.len() as u64, leases);
        Ok(PurgeReport::named(counts, sessions))
    }

    async fn health(&self) -> Result<()> {
        let _: i64 = crate::pool::fetch_single!(read self.db, crate::statement::Call::new(HEALTH))
            .map_err(|e| map(e, "health", ""))?;
        Ok(())
    }

    async fn close(&self) {
        PgBackend::close(self).await;
    }
}
