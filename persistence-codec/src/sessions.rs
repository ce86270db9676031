//! [`SealedSessions`]: session events through the codec.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use persistence_core::{
    AppendOptions, CloseSession, Compaction, Envelope, ErrorKind, ListSessions, Page, Result,
    SessionEvent, SessionInfo, SessionKey, SessionLog, TenantId,
};

use super::{Codec, Row};

/// How long an append without `expect_head` keeps trying when other appenders take the
/// ordinals it sealed for.
const APPEND_DEADLINE: Duration = Duration::from_secs(30);

/// A [`SessionLog`] whose events are sealed by the codec (see [the crate docs](crate)),
/// each bound to its session and ordinal.
///
/// An event is sealed for the ordinal it will get, so an append without `expect_head`
/// reads the head first and appends with it as `expect_head`, again (with a short
/// random pause) when another appender got there first: one more round trip per
/// append, and appenders to one session take turns. Ordinals stay gapless and
/// unique; an append still fails `Conflict` only for the caller's own `expect_head`
/// (or after 30 s of losing every race).
#[derive(Clone)]
pub struct SealedSessions {
    inner: Arc<dyn SessionLog>,
    codec: Arc<Codec>,
}

impl std::fmt::Debug for SealedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSessions")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl SealedSessions {
    /// Seals what goes to `inner` with `codec`, and opens what comes back.
    pub fn new(inner: Arc<dyn SessionLog>, codec: Arc<Codec>) -> Self {
        SealedSessions { inner, codec }
    }

    async fn seal_from(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        head: u64,
        events: &[Envelope],
    ) -> Result<Vec<Envelope>> {
        let mut out = Vec::with_capacity(events.len());
        for (seq, event) in (head + 1..).zip(events) {
            let row = Row::Event { session, seq };
            out.push(self.codec.seal(tenant, row, event).await?);
        }
        Ok(out)
    }

    /// Runs `attempt(head)` with the session's head (or `given`), again on a conflict
    /// when the head was not given and has moved.
    async fn at_head<F, Fut>(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        given: Option<u64>,
        attempt: F,
    ) -> Result<u64>
    where
        F: Fn(u64) -> Fut + Send,
        Fut: std::future::Future<Output = Result<u64>> + Send,
    {
        if let Some(head) = given {
            return attempt(head).await;
        }
        let started = Instant::now();
        let mut round = 0u32;
        loop {
            let head = self.inner.head(tenant, session).await?;
            match attempt(head).await {
                Err(e)
                    if e.kind() == ErrorKind::Conflict && started.elapsed() < APPEND_DEADLINE =>
                {
                    if self.inner.head(tenant, session).await? == head {
                        return Err(e); // not a race: the operation itself conflicts
                    }
                    let pause = fastrand::u64(0..=(1u64 << round.min(4)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    round += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl SessionLog for SealedSessions {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        if events.is_empty() {
            return self.inner.append(tenant, session, events, options).await;
        }
        let given = options.expect_head;
        self.at_head(tenant, session, given, |head| {
            let options = options.clone().with_expect_head(head);
            let events = &events;
            async move {
                let sealed = self.seal_from(tenant, session, head, events).await?;
                self.inner.append(tenant, session, sealed, options).await
            }
        })
        .await
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        let events = self.inner.read(tenant, session, after, limit).await?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let row = Row::Event {
                session,
                seq: e.seq,
            };
            let event = self.codec.open(tenant, row, e.event).await?;
            out.push(SessionEvent::new(e.seq, event, e.appended_at));
        }
        Ok(out)
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        self.inner.head(tenant, session).await
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        self.inner.trim_before(tenant, session, seq).await
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        self.inner.delete(tenant, session).await
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
        self.inner.close_session(tenant, session, options).await
    }

    /// Seals the summary for the ordinals after the head (read first when the
    /// compaction does not name it).
    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        if compaction.summary.is_empty() {
            return self.inner.compact(tenant, session, compaction).await;
        }
        let given = compaction.expect_head;
        self.at_head(tenant, session, given, |head| {
            let compaction = &compaction;
            async move {
                let summary = self
                    .seal_from(tenant, session, head, &compaction.summary)
                    .await?;
                let mut sealed =
                    Compaction::new(compaction.through, summary).with_expect_head(head);
                sealed.lease = compaction.lease.clone();
                self.inner.compact(tenant, session, sealed).await
            }
        })
        .await
    }

    /// Opens the stored event and compares it with `expected`, then replaces the sealed
    /// form read with `new` sealed for the same ordinal, as
    /// [`SealedCheckpointer`](crate::SealedCheckpointer) replaces payloads.
    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let Some(stored) = stored_event(&*self.inner, tenant, session, seq).await? else {
            return Ok(false);
        };
        let row = Row::Event { session, seq };
        if self.codec.open(tenant, row, stored.clone()).await? != *expected {
            return Ok(false);
        }
        let sealed = self.codec.seal(tenant, row, &new).await?;
        self.inner
            .replace_event(tenant, session, seq, &stored, sealed)
            .await
    }
}

/// Event `seq` as `sessions` stores it; `None` when it is absent.
pub(crate) async fn stored_event(
    sessions: &dyn SessionLog,
    tenant: &TenantId,
    session: &SessionKey,
    seq: u64,
) -> Result<Option<Envelope>> {
    let Some(after) = seq.checked_sub(1) else {
        return Ok(None);
    };
    let events = sessions.read(tenant, session, after, 1).await?;
    Ok(events.into_iter().find(|e| e.seq == seq).map(|e| e.event))
}
