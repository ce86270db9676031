//! [`Traced`]: a backend wrapper that runs every operation in a `tracing` span.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use persistence_core::{
    AppendOptions, Capabilities, Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector,
    CheckpointTuple, Checkpointer, CloseSession, Compaction, Envelope, Error, ErrorKind,
    GetItemOptions, Item, ItemKey, Lease, ListCheckpoints, ListItems, ListNamespaces, ListSessions,
    ListThreads, Lock, LockKey, LockOptions, Maintenance, Namespace, NewCheckpoint, Page,
    PatchItemOptions, PurgeCounts, PurgeReport, PutCheckpointOptions, PutItemOptions, PutWrites,
    Result, Retention, RetentionOutcome, SearchItems, SessionEvent, SessionInfo, SessionKey,
    SessionLog, Store, TenantId, ThreadKey, Timestamp,
};
use tracing::Instrument;
use tracing::field::Empty;

/// Wraps a backend so that every call is an `INFO` span `persistence` with `backend`,
/// `operation`, `tenant` and `duration_us`, plus `error_kind` and `error` on failure.
/// Payloads are never recorded.
#[derive(Clone, Debug)]
pub struct Traced<B> {
    backend: Arc<str>,
    inner: B,
    /// What `inner` declares, when known: a call it cannot serve fails `Unsupported`
    /// here rather than be served in part.
    declared: Option<Capabilities>,
}

impl<B> Traced<B> {
    /// Traces `inner`, naming it `backend` in every span.
    pub fn new(backend: impl Into<Arc<str>>, inner: B) -> Self {
        Traced {
            backend: backend.into(),
            inner,
            declared: None,
        }
    }

    /// Same, knowing what `inner` declares: an option it does not declare (a search
    /// with [`SearchItems::refresh_ttl`] without [`Capabilities::lifecycle`]) fails
    /// `Unsupported` instead of reaching a backend that may not know the option.
    #[must_use]
    pub fn with_capabilities(mut self, declared: Capabilities) -> Self {
        self.declared = Some(declared);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        tenant: Option<&TenantId>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::info_span!(
            "persistence",
            backend = &*self.backend,
            operation,
            tenant = tenant.map(TenantId::as_str),
            duration_us = Empty,
            error_kind = Empty,
            error = Empty,
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        span.record("duration_us", micros(started.elapsed()));
        if let Err(e) = &result {
            span.record("error_kind", e.kind().as_str());
            span.record("error", tracing::field::display(e.report()));
            report(&span, e);
        }
        result
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Expected outcomes callers handle (a lost CAS race, a held lock) are `DEBUG` events;
/// faults (unreachable server, corrupt data) are `WARN`.
fn report(span: &tracing::Span, e: &Error) {
    let expected = matches!(
        e.kind(),
        ErrorKind::InvalidInput
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Fenced
            | ErrorKind::LockLost
            | ErrorKind::Timeout
    );
    if expected {
        tracing::debug!(parent: span, error_kind = e.kind().as_str(), "{}", e.report());
    } else {
        tracing::warn!(parent: span, error_kind = e.kind().as_str(), "{}", e.report());
    }
}

#[async_trait]
impl<B: Checkpointer> Checkpointer for Traced<B> {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let call = self.inner.put(tenant, thread, checkpoint, options);
        self.run("checkpoint.put", Some(tenant), call).await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        let call = self.inner.get(tenant, thread, selector);
        self.run("checkpoint.get", Some(tenant), call).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        let call = self.inner.list(tenant, thread, query);
        self.run("checkpoint.list", Some(tenant), call).await
    }

    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
    ) -> Result<()> {
        let call = self.inner.put_writes(tenant, thread, request);
        self.run("checkpoint.put_writes", Some(tenant), call).await
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        let call = self.inner.delete_thread(tenant, thread);
        self.run("checkpoint.delete_thread", Some(tenant), call)
            .await
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        let call = self.inner.prune(tenant, thread, keep_latest);
        self.run("checkpoint.prune", Some(tenant), call).await
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        let call = self.inner.copy_thread(tenant, from, to);
        self.run("checkpoint.copy_thread", Some(tenant), call).await
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        let call = self.inner.list_threads(tenant, query);
        self.run("checkpoint.list_threads", Some(tenant), call)
            .await
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        let call = self.inner.prune_through(tenant, thread, through);
        self.run("checkpoint.prune_through", Some(tenant), call)
            .await
    }

    async fn apply_retention(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        policy: &Retention,
        now: Timestamp,
    ) -> Result<RetentionOutcome> {
        let call = self.inner.apply_retention(tenant, thread, policy, now);
        self.run("checkpoint.apply_retention", Some(tenant), call)
            .await
    }

    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let call = self
            .inner
            .replace_payload(tenant, thread, payload, expected, new);
        self.run("checkpoint.replace_payload", Some(tenant), call)
            .await
    }
}

#[async_trait]
impl<B: Store> Store for Traced<B> {
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        let call = self.inner.put(tenant, namespace, key, value, options);
        self.run("store.put", Some(tenant), call).await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>> {
        let call = self.inner.get(tenant, namespace, key);
        self.run("store.get", Some(tenant), call).await
    }

    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        let call = self.inner.get_with(tenant, namespace, key, options);
        self.run("store.get", Some(tenant), call).await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        let call = self.inner.delete(tenant, namespace, key, if_version);
        self.run("store.delete", Some(tenant), call).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        let call = self.inner.list(tenant, namespace, query);
        self.run("store.list", Some(tenant), call).await
    }

    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>> {
        let call = self.inner.list_namespaces(tenant, query);
        self.run("store.list_namespaces", Some(tenant), call).await
    }

    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        let undeclared = query.refresh_ttl && self.declared.is_some_and(|c| !c.lifecycle);
        let call = async {
            if undeclared {
                return Err(Error::unsupported(
                    "refresh_ttl: this backend does not declare Capabilities::lifecycle",
                )
                .context("persistence", "store.search", tenant.as_str()));
            }
            self.inner.search(tenant, query).await
        };
        self.run("store.search", Some(tenant), call).await
    }

    async fn patch(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        patch: persistence_core::serde_json::Value,
        options: PatchItemOptions,
    ) -> Result<u64> {
        let call = self.inner.patch(tenant, namespace, key, patch, options);
        self.run("store.patch", Some(tenant), call).await
    }

    async fn delete_namespace(&self, tenant: &TenantId, namespace: &Namespace) -> Result<u64> {
        let call = self.inner.delete_namespace(tenant, namespace);
        self.run("store.delete_namespace", Some(tenant), call).await
    }
}

#[async_trait]
impl<B: SessionLog> SessionLog for Traced<B> {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        let call = self.inner.append(tenant, session, events, options);
        self.run("session.append", Some(tenant), call).await
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        let call = self.inner.read(tenant, session, after, limit);
        self.run("session.read", Some(tenant), call).await
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        let call = self.inner.head(tenant, session);
        self.run("session.head", Some(tenant), call).await
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        let call = self.inner.trim_before(tenant, session, seq);
        self.run("session.trim_before", Some(tenant), call).await
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        let call = self.inner.delete(tenant, session);
        self.run("session.delete", Some(tenant), call).await
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        let call = self.inner.list_sessions(tenant, query);
        self.run("session.list_sessions", Some(tenant), call).await
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        // A wait, not an operation: no span of its own.
        self.inner
            .wait_for_change(tenant, session, seen_head, timeout)
            .await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        let call = self.inner.session_info(tenant, session);
        self.run("session.info", Some(tenant), call).await
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        let call = self.inner.close_session(tenant, session, options);
        self.run("session.close", Some(tenant), call).await
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        let call = self.inner.compact(tenant, session, compaction);
        self.run("session.compact", Some(tenant), call).await
    }

    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let call = self
            .inner
            .replace_event(tenant, session, seq, expected, new);
        self.run("session.replace_event", Some(tenant), call).await
    }
}

#[async_trait]
impl<B: Maintenance> Maintenance for Traced<B> {
    fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn schema(&self) -> String {
        self.inner.schema()
    }
    async fn tenants(&self) -> Result<Vec<TenantId>> {
        let call = self.inner.tenants();
        self.run("maintenance.tenants", None, call).await
    }
    async fn purge_expired_report(&self) -> Result<PurgeReport> {
        let call = self.inner.purge_expired_report();
        self.run("maintenance.purge_expired", None, call).await
    }

    async fn purge_expired(&self) -> Result<PurgeCounts> {
        let call = self.inner.purge_expired();
        self.run("maintenance.purge_expired", None, call).await
    }
    async fn health(&self) -> Result<()> {
        let call = self.inner.health();
        self.run("maintenance.health", None, call).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

#[async_trait]
impl<B: Lock> Lock for Traced<B> {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let call = self.inner.try_acquire(tenant, name, ttl);
        self.run("lock.try_acquire", Some(tenant), call).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let call = self.inner.renew(lease, ttl);
        self.run("lock.renew", Some(&lease.tenant), call).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let call = self.inner.release(lease);
        self.run("lock.release", Some(&lease.tenant), call).await
    }

    async fn acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        options: LockOptions,
    ) -> Result<Lease> {
        let call = self.inner.acquire(tenant, name, options);
        self.run("lock.acquire", Some(tenant), call).await
    }
}
