//! Which keys a tenant's stored payloads are sealed with: what tells an operator a key
//! can be retired (nothing uses it any more).

use std::collections::BTreeMap;

use async_trait::async_trait;
use persistence_core::{Checkpointer, Envelope, Result, SessionLog, Store, TenantId};
use serde_json::Value;

use crate::walk::{Found, Stored, Visitor, walk};

/// Listing and reading batch size of the scan.
const BATCH: usize = 1000;

/// How a tenant's stored payloads are sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUsage {
    /// Payloads encrypted under each key id.
    pub by_key: BTreeMap<String, u64>,
    /// Payloads not encrypted (plain, compressed only, or written without the codec).
    pub unencrypted: u64,
}

impl KeyUsage {
    fn add(&mut self, envelope: &Envelope) {
        match sealed_key(envelope) {
            Some(id) => *self.by_key.entry(id.to_string()).or_default() += 1,
            None => self.unencrypted += 1,
        }
    }

    /// Payloads a [`rekey`](crate::rekey) to key `writer` would rewrite: those under
    /// another key or not encrypted.
    pub fn not_under(&self, writer: &str) -> u64 {
        let others: u64 = self
            .by_key
            .iter()
            .filter(|(id, _)| id.as_str() != writer)
            .map(|(_, n)| n)
            .sum();
        others + self.unencrypted
    }
}

#[async_trait]
impl Visitor for KeyUsage {
    async fn visit(&mut self, batch: Vec<Found>) -> Result<bool> {
        for found in &batch {
            self.add(&found.payload);
        }
        Ok(true)
    }
}

/// The key id a stored payload is encrypted under; `None` when it is not encrypted.
pub fn sealed_key(envelope: &Envelope) -> Option<&str> {
    match &envelope.data {
        Value::Object(map) => map.get("$sealed")?.get("k")?.as_str(),
        _ => None,
    }
}

/// Counts the payloads of `tenant` per key id: every checkpoint state and pending write,
/// store value and session event, read from the traits as stored (pass the backend's
/// own traits, not sealed ones: through the codec every payload reads as opened). Reads
/// everything the tenant holds, a page at a time, and one `get` per checkpoint for its
/// pending writes: an operator's command, not a request path.
///
/// # Errors
/// Whatever a listing or read fails with.
pub async fn key_usage(
    checkpointer: &dyn Checkpointer,
    store: &dyn Store,
    sessions: &dyn SessionLog,
    tenant: &TenantId,
) -> Result<KeyUsage> {
    let mut usage = KeyUsage::default();
    let stored = Stored {
        checkpointer,
        store,
        sessions,
    };
    walk(stored, tenant, BATCH, &mut usage).await?;
    Ok(usage)
}
