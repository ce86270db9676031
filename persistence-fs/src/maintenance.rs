//! [`Maintenance`] for the filesystem backend: status, health and purge of the whole root.

use async_trait::async_trait;
use persistence_core::{Capabilities, Maintenance, PurgeCounts, PurgeReport, Result, TenantId};

use crate::FsBackend;
use crate::error::{BACKEND, IoContext};

#[async_trait]
impl Maintenance for FsBackend {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        FsBackend::capabilities(self)
    }

    fn schema(&self) -> String {
        format!(
            "layout {}, format v{}",
            self.layout().base().display(),
            crate::FORMAT_VERSION
        )
    }

    async fn tenants(&self) -> Result<Vec<TenantId>> {
        FsBackend::tenants(self).await
    }

    /// Expired items and sessions; leases need no purging here (one small file per lock
    /// name, kept for its fence).
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        Ok(self.purge_expired_report().await?.counts)
    }

    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        let items = self.purge_expired_items().await?;
        let sessions = self.purge_expired_sessions().await?;
        let counts = PurgeCounts::new(items, sessions.len() as u64, 0);
        Ok(PurgeReport::named(counts, sessions))
    }

    /// Reads the root's layout directory.
    async fn health(&self) -> Result<()> {
        let base = self.layout().base().to_path_buf();
        self.run("health", String::new(), move |_| {
            std::fs::read_dir(&base).at(&base)?;
            Ok(())
        })
        .await
    }
}
