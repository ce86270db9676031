//! Lifecycle events of sessions and threads in each tenant's audit log
//! ([`Persistence::with_lifecycle_audit`](crate::Persistence::with_lifecycle_audit)).
//!
//! The wrappers forward every call and, after one that changed a session's or thread's
//! life, append an event to the tenant's [`AUDIT_SESSION`]: ids, kinds, reasons and
//! counts, never user data. The event is written after the operation, as a second
//! write: a crash in between loses the event, never the operation, and a failed event
//! write is logged (`WARN`) without failing the operation that succeeded.
//!
//! The events are listed on
//! [`Persistence::with_lifecycle_audit`](crate::Persistence::with_lifecycle_audit).
//!
//! The sweeper records what it removes itself (`thread.pruned`, `thread.deleted`,
//! `session.expired`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::serde_json::{Value, json};
use persistence_core::{
    AppendOptions, Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector,
    CheckpointTuple, Checkpointer, CloseSession, Compaction, Envelope, ListCheckpoints,
    ListSessions, ListThreads, NewCheckpoint, Page, PutCheckpointOptions, PutWrites, Result,
    Retention, RetentionOutcome, SessionEvent, SessionInfo, SessionKey, SessionLog, TenantId,
    ThreadKey, Timestamp,
};

use crate::sweeper::AUDIT_SESSION;

/// Appends lifecycle events to tenants' audit logs.
#[derive(Clone)]
struct Recorder {
    log: Arc<dyn SessionLog>,
}

impl Recorder {
    async fn record(&self, tenant: &TenantId, event: Value) {
        let Ok(audit) = SessionKey::new(AUDIT_SESSION) else {
            return;
        };
        let written = self
            .log
            .append(
                tenant,
                &audit,
                vec![Envelope::new(1, event)],
                AppendOptions::default(),
            )
            .await;
        if let Err(e) = written {
            tracing::warn!(tenant = %tenant, error = %e, "audit event not written");
        }
    }
}

fn is_audit(session: &SessionKey) -> bool {
    session.as_str() == AUDIT_SESSION
}

/// A session log whose lifecycle changes are recorded.
pub(crate) struct AuditedSessions {
    inner: Arc<dyn SessionLog>,
    recorder: Recorder,
}

impl AuditedSessions {
    pub(crate) fn new(inner: Arc<dyn SessionLog>) -> Self {
        AuditedSessions {
            recorder: Recorder { log: inner.clone() },
            inner,
        }
    }
}

#[async_trait]
impl SessionLog for AuditedSessions {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        let count = events.len() as u64;
        let head = self.inner.append(tenant, session, events, options).await?;
        if head == count && !is_audit(session) {
            let event = json!({"kind": "session.created", "session": session.as_str()});
            self.recorder.record(tenant, event).await;
        }
        Ok(head)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        self.inner.read(tenant, session, after, limit).await
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        self.inner.head(tenant, session).await
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        let removed = self.inner.trim_before(tenant, session, seq).await?;
        if removed > 0 && !is_audit(session) {
            let event = json!({"kind": "session.trimmed", "session": session.as_str(),
                "events": removed});
            self.recorder.record(tenant, event).await;
        }
        Ok(removed)
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        let existed = self.inner.delete(tenant, session).await?;
        if existed && !is_audit(session) {
            let event = json!({"kind": "session.deleted", "session": session.as_str(),
                "reason": "delete"});
            self.recorder.record(tenant, event).await;
        }
        Ok(existed)
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        self.inner.list_sessions(tenant, query).await
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: Duration,
    ) -> Result<()> {
        self.inner
            .wait_for_change(tenant, session, seen_head, timeout)
            .await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        self.inner.session_info(tenant, session).await
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        // Closing a closed session changes nothing, and is not recorded again.
        let was_open = self
            .inner
            .session_info(tenant, session)
            .await?
            .is_some_and(|i| !i.is_closed());
        let remove = options.remove_events;
        let info = self.inner.close_session(tenant, session, options).await?;
        if was_open && !is_audit(session) {
            let event = json!({"kind": "session.closed", "session": session.as_str(),
                "events_removed": remove});
            self.recorder.record(tenant, event).await;
        }
        Ok(info)
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        let through = compaction.through;
        let head = self.inner.compact(tenant, session, compaction).await?;
        if !is_audit(session) {
            let event = json!({"kind": "session.compacted", "session": session.as_str(),
                "through": through, "head": head});
            self.recorder.record(tenant, event).await;
        }
        Ok(head)
    }

    /// Forwarded without an event: a replaced event is the same data re-encoded.
    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        self.inner
            .replace_event(tenant, session, seq, expected, new)
            .await
    }
}

/// A checkpointer whose threads' lifecycle changes are recorded.
pub(crate) struct AuditedCheckpointer {
    inner: Arc<dyn Checkpointer>,
    recorder: Recorder,
}

impl AuditedCheckpointer {
    pub(crate) fn new(inner: Arc<dyn Checkpointer>, log: Arc<dyn SessionLog>) -> Self {
        AuditedCheckpointer {
            inner,
            recorder: Recorder { log },
        }
    }

    async fn pruned(&self, tenant: &TenantId, thread: &ThreadKey, n: u64, reason: &str) {
        if n > 0 {
            let event = json!({"kind": "thread.pruned", "thread": thread.as_str(),
                "checkpoints": n, "reason": reason});
            self.recorder.record(tenant, event).await;
        }
    }
}

#[async_trait]
impl Checkpointer for AuditedCheckpointer {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let stored = self.inner.put(tenant, thread, checkpoint, options).await?;
        if stored.parent.is_none() {
            let event = json!({"kind": "thread.created", "thread": thread.as_str(),
                "checkpoint": stored.id.to_string()});
            self.recorder.record(tenant, event).await;
        }
        Ok(stored)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        self.inner.get(tenant, thread, selector).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        self.inner.list(tenant, thread, query).await
    }

    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
    ) -> Result<()> {
        self.inner.put_writes(tenant, thread, request).await
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        let existed = self.inner.delete_thread(tenant, thread).await?;
        if existed {
            let event = json!({"kind": "thread.deleted", "thread": thread.as_str(),
                "reason": "delete"});
            self.recorder.record(tenant, event).await;
        }
        Ok(existed)
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        let n = self.inner.prune(tenant, thread, keep_latest).await?;
        self.pruned(tenant, thread, n, "prune").await;
        Ok(n)
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        let n = self.inner.copy_thread(tenant, from, to).await?;
        let event = json!({"kind": "thread.copied", "from": from.as_str(), "to": to.as_str(),
            "checkpoints": n});
        self.recorder.record(tenant, event).await;
        Ok(n)
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        self.inner.list_threads(tenant, query).await
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        let n = self.inner.prune_through(tenant, thread, through).await?;
        self.pruned(tenant, thread, n, "prune_through").await;
        Ok(n)
    }

    /// Forwarded without an event: the sweeper, which applies retention, records it.
    async fn apply_retention(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        policy: &Retention,
        now: Timestamp,
    ) -> Result<RetentionOutcome> {
        self.inner
            .apply_retention(tenant, thread, policy, now)
            .await
    }

    /// Forwarded without an event: a replaced payload is the same data re-encoded.
    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        self.inner
            .replace_payload(tenant, thread, payload, expected, new)
            .await
    }
}
