//! The in-memory backend: complete, thread-safe, and the reference model every other
//! backend is compared against.
//!
//! All state sits behind one mutex, so every operation is trivially atomic. Time comes
//! from a [`Clock`]: use [`MemoryBackend::with_manual_clock`] in tests to expire leases
//! and TTLs without sleeping. Nothing survives the process.

mod checkpointer;
mod lock;
mod session_log;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::capabilities::Capabilities;
use crate::checkpointer::{Checkpoint, PendingWrite};
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::ids::{
    CheckpointId, ItemKey, LockKey, Namespace, SessionKey, TaskId, TenantId, ThreadKey,
};
use crate::lock::Fence;
use crate::maintenance::{Maintenance, PurgeCounts, PurgeReport};
use crate::page::Cursor;
use crate::session_log::SessionEvent;
use crate::time::{Clock, ManualClock, SystemClock, Timestamp};

const BACKEND: &str = "memory";

/// The in-memory backend. Clones share the same data.
#[derive(Clone, Debug)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    /// Woken on every change of any session: what `wait_for_change` waits on (a push,
    /// so subscriptions see appends at once).
    session_changes: Arc<tokio::sync::Notify>,
}

#[derive(Default, Debug)]
struct State {
    tenants: HashMap<TenantId, TenantState>,
}

#[derive(Default, Debug)]
struct TenantState {
    threads: BTreeMap<ThreadKey, ThreadState>,
    thread_fences: HashMap<ThreadKey, u64>,
    sessions: BTreeMap<SessionKey, SessionState>,
    session_fences: HashMap<SessionKey, u64>,
    items: BTreeMap<Namespace, BTreeMap<ItemKey, StoredItem>>,
    leases: HashMap<LockKey, HeldLease>,
    lock_fences: HashMap<LockKey, u64>,
}

#[derive(Default, Debug, Clone)]
struct ThreadState {
    checkpoints: BTreeMap<CheckpointId, Checkpoint>,
    writes: BTreeMap<CheckpointId, BTreeMap<(TaskId, u32), PendingWrite>>,
}

#[derive(Default, Debug)]
struct SessionState {
    events: BTreeMap<u64, SessionEvent>,
    head: u64,
    expires_at: Option<Timestamp>,
    created_at: Option<Timestamp>,
    last_append_at: Option<Timestamp>,
    closed_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct StoredItem {
    value: Envelope,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
    /// The TTL of the last write, which a refreshing read restarts.
    ttl: Option<std::time::Duration>,
}

#[derive(Debug)]
struct HeldLease {
    token: String,
    fence: u64,
    expires_at: Timestamp,
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty backend on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            state: Arc::new(Mutex::new(State::default())),
            clock,
            session_changes: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// An empty backend on a [`ManualClock`], returned too so tests can advance it.
    pub fn with_manual_clock() -> (Self, ManualClock) {
        let clock = ManualClock::default();
        (Self::with_clock(Arc::new(clock.clone())), clock)
    }

    /// What this backend supports: TTL, search, life cycle, replace, binary payloads
    /// (kept as they are in memory); not durable, one process only.
    pub fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.ttl = true;
        caps.search = true;
        caps.lifecycle = true;
        caps.replace = true;
        caps.binary_payloads = true;
        caps
    }

    /// Tenants that ever wrote, ascending.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut tenants: Vec<TenantId> = self.lock_state().tenants.keys().cloned().collect();
        tenants.sort();
        tenants
    }

    /// Removes expired items and sessions of every tenant (what
    /// [`Maintenance::purge_expired`] does here).
    pub fn purge_expired(&self) -> PurgeCounts {
        self.purge_expired_report().counts
    }

    /// [`purge_expired`](Self::purge_expired), naming the sessions removed.
    pub fn purge_expired_report(&self) -> PurgeReport {
        let items = self.purge_expired_items();
        let sessions = self.purge_expired_sessions();
        PurgeReport::named(PurgeCounts::new(items, sessions.len() as u64, 0), sessions)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Runs `f` on the tenant's state under the lock. The mutex is never held across an
    /// await, and a panic elsewhere cannot leave the data half-written (every operation
    /// validates before it mutates), so a poisoned lock is safe to reuse.
    fn with_tenant<T>(&self, tenant: &TenantId, f: impl FnOnce(&mut TenantState) -> T) -> T {
        let mut state = self.lock_state();
        f(state.tenants.entry(tenant.clone()).or_default())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Maintenance for MemoryBackend {
    fn backend_name(&self) -> &str {
        BACKEND
    }
    fn capabilities(&self) -> Capabilities {
        MemoryBackend::capabilities(self)
    }
    fn schema(&self) -> String {
        "in-process (not stored)".to_string()
    }
    async fn tenants(&self) -> Result<Vec<TenantId>> {
        Ok(MemoryBackend::tenants(self))
    }
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        Ok(MemoryBackend::purge_expired(self))
    }
    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        Ok(MemoryBackend::purge_expired_report(self))
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Attaches the memory backend's context to errors of one operation.
fn ctx(operation: &'static str, key: impl Display) -> impl FnOnce(Error) -> Error {
    move |e| e.context(BACKEND, operation, key)
}

fn encode_cursor<T: Serialize>(position: &T) -> Cursor {
    Cursor::new(serde_json::to_string(position).unwrap_or_default())
}

fn decode_cursor<T: DeserializeOwned>(cursor: &Cursor) -> Result<T> {
    serde_json::from_str(cursor.as_str()).map_err(|_| cursor.invalid_error())
}

/// Checks `fence` against the high-water mark without recording it.
fn check_fence(highest: Option<&u64>, fence: Option<Fence>) -> Result<()> {
    crate::backend::validate_fence(fence)?;
    match (fence, highest) {
        (Some(Fence(presented)), Some(&highest)) if presented < highest => {
            Err(Error::fenced(presented, highest))
        }
        _ => Ok(()),
    }
}

fn record_fence<K: std::hash::Hash + Eq>(
    fences: &mut HashMap<K, u64>,
    key: K,
    fence: Option<Fence>,
) {
    if let Some(Fence(f)) = fence {
        let highest = fences.entry(key).or_insert(0);
        *highest = (*highest).max(f);
    }
}

fn is_expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|t| t <= now)
}
