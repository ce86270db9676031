//! [`Maintenance`] for Redis: status, health and purge across tenants.

use async_trait::async_trait;
use persistence_core::{Capabilities, Maintenance, PurgeCounts, PurgeReport, Result, TenantId};

use crate::RedisBackend;
use crate::error::{BACKEND, Effect, map};

#[async_trait]
impl Maintenance for RedisBackend {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        RedisBackend::capabilities(self)
    }

    fn schema(&self) -> String {
        "key layout v1".to_string()
    }

    async fn tenants(&self) -> Result<Vec<TenantId>> {
        RedisBackend::tenants(self).await
    }

    /// Items and sessions expire by themselves (key TTLs); this removes the index entries
    /// they leave and counts them. Leases expire by themselves too.
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        Ok(self.purge_expired_report().await?.counts)
    }

    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        let items = self.purge_expired_items().await?;
        let sessions = self.purge_expired_sessions().await?;
        let counts = PurgeCounts::new(items, sessions.len() as u64, 0);
        Ok(PurgeReport::named(counts, sessions))
    }

    /// A `PING` within the configured timeout.
    async fn health(&self) -> Result<()> {
        let _: String = crate::within(self.config.timeout, async {
            redis::cmd("PING").query_async(&mut self.conn()).await
        })
        .await
        .map_err(|e| map(e, Effect::Read, "health", ""))?;
        Ok(())
    }
}
