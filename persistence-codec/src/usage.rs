//! Which keys a tenant's stored payloads are sealed with: what tells an operator a key
//! can be retired (nothing uses it any more).

use std::collections::BTreeMap;

use persistence_core::{
    CheckpointSelector, Checkpointer, Envelope, ListCheckpoints, ListItems, ListNamespaces,
    ListSessions, ListThreads, Result, SessionLog, Store, TenantId,
};
use serde_json::Value;

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
    let mut threads_cursor = None;
    loop {
        let query = ListThreads::default()
            .with_limit(BATCH)
            .with_cursor(threads_cursor);
        let threads = checkpointer.list_threads(tenant, query).await?;
        for thread in &threads.items {
            let mut cursor = None;
            loop {
                let query = ListCheckpoints::default()
                    .with_limit(BATCH)
                    .with_cursor(cursor);
                let page = checkpointer.list(tenant, thread, query).await?;
                for c in &page.items {
                    usage.add(&c.state);
                    let with_writes = checkpointer
                        .get(tenant, thread, CheckpointSelector::Id(c.id))
                        .await?;
                    for w in with_writes.iter().flat_map(|t| &t.pending_writes) {
                        usage.add(&w.value);
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        match threads.next {
            Some(next) => threads_cursor = Some(next),
            None => break,
        }
    }
    let mut sessions_cursor = None;
    loop {
        let query = ListSessions::default()
            .with_limit(BATCH)
            .with_cursor(sessions_cursor);
        let page = sessions.list_sessions(tenant, query).await?;
        for session in &page.items {
            let mut after = 0;
            loop {
                let events = sessions.read(tenant, session, after, BATCH).await?;
                for e in &events {
                    usage.add(&e.event);
                }
                match events.last() {
                    Some(last) if events.len() == BATCH => after = last.seq,
                    _ => break,
                }
            }
        }
        match page.next {
            Some(next) => sessions_cursor = Some(next),
            None => break,
        }
    }
    let mut namespaces_cursor = None;
    loop {
        let query = ListNamespaces::default()
            .with_limit(BATCH)
            .with_cursor(namespaces_cursor);
        let page = store.list_namespaces(tenant, query).await?;
        for namespace in &page.items {
            let mut cursor = None;
            loop {
                let query = ListItems::default().with_limit(BATCH).with_cursor(cursor);
                let items = store.list(tenant, namespace, query).await?;
                for item in &items.items {
                    usage.add(&item.value);
                }
                match items.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        match page.next {
            Some(next) => namespaces_cursor = Some(next),
            None => break,
        }
    }
    Ok(usage)
}
