//! [`SealedMaintenance`]: what a sealed backend declares.

use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::{Capabilities, Maintenance, PurgeCounts, PurgeReport, Result, TenantId};

use crate::Codec;

/// A backend's [`Maintenance`] as seen through the codec: the same, except that
/// `search` is declared off when the codec seals store values whole (no field kept in
/// clear to filter on). Tell users of the sealed traits what they can do with this.
#[derive(Clone)]
pub struct SealedMaintenance {
    inner: Arc<dyn Maintenance>,
    codec: Arc<Codec>,
}

impl std::fmt::Debug for SealedMaintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedMaintenance")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl SealedMaintenance {
    /// `inner` as declared through `codec`.
    pub fn new(inner: Arc<dyn Maintenance>, codec: Arc<Codec>) -> Self {
        SealedMaintenance { inner, codec }
    }
}

#[async_trait]
impl Maintenance for SealedMaintenance {
    fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        let mut capabilities = self.inner.capabilities();
        if !self.codec.searches() {
            capabilities.search = false;
        }
        if self.codec.seals_values() {
            // The layer seals JSON payloads and refuses envelopes with bytes.
            capabilities.binary_payloads = false;
        }
        capabilities
    }
    fn schema(&self) -> String {
        self.inner.schema()
    }
    async fn tenants(&self) -> Result<Vec<TenantId>> {
        self.inner.tenants().await
    }
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        self.inner.purge_expired().await
    }
    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        self.inner.purge_expired_report().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}
