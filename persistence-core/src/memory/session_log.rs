use std::ops::Bound;

use async_trait::async_trait;

use super::{
    MemoryBackend, SessionState, TenantState, check_fence, ctx, decode_cursor, encode_cursor,
    is_expired, record_fence,
};
use crate::backend::PageExt;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::ids::{SessionKey, TenantId};
use crate::maintenance::ExpiredSession;
use crate::page::{Page, validate_limit};
use crate::session_log::{
    AppendOptions, CloseSession, Compaction, ListSessions, SessionEvent, SessionInfo, SessionLog,
};
use crate::time::{Timestamp, validate_ttl};

/// The live session, if any; an expired one is treated as absent.
fn live<'a>(t: &'a TenantState, session: &SessionKey, now: Timestamp) -> Option<&'a SessionState> {
    t.sessions
        .get(session)
        .filter(|s| !is_expired(s.expires_at, now))
}

#[async_trait]
impl SessionLog for MemoryBackend {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        let now = self.now();
        let key = format!("{tenant}/{session}");
        if events.is_empty() {
            return Err(
                Error::invalid_input("append needs at least one event").context(
                    super::BACKEND,
                    "session.append",
                    key,
                ),
            );
        }
        let ttl = options
            .ttl
            .map(|t| validate_ttl("session ttl", t))
            .transpose()
            .map_err(ctx("session.append", &key))?;
        let fence = crate::backend::session_fence(tenant, session, options.lease.as_ref())
            .map_err(ctx("session.append", &key))?;
        self.with_tenant(tenant, |t| {
            check_fence(t.session_fences.get(session), fence)?;
            let head = live(t, session, now).map_or(0, |s| s.head);
            check_head(options.expect_head, head)?;
            if live(t, session, now).is_some_and(|s| s.closed_at.is_some()) {
                return Err(closed());
            }
            record_fence(&mut t.session_fences, session.clone(), fence);
            if live(t, session, now).is_none() {
                t.sessions.insert(
                    session.clone(),
                    SessionState {
                        created_at: Some(now),
                        ..SessionState::default()
                    },
                );
            }
            let state = t.sessions.entry(session.clone()).or_default();
            push_events(state, events, now);
            if let Some(ttl) = ttl {
                state.expires_at = Some(now.saturating_add(ttl));
            }
            Ok(state.head)
        })
        .map_err(ctx("session.append", key))
        .inspect(|_| self.session_changes.notify_waiters())
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        let limit =
            validate_limit(limit).map_err(ctx("session.read", format!("{tenant}/{session}")))?;
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            live(t, session, now).map_or_else(Vec::new, |s| {
                s.events
                    .range((Bound::Excluded(after), Bound::Unbounded))
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
        }))
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| live(t, session, now).map_or(0, |s| s.head)))
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            if live(t, session, now).is_none() {
                return 0;
            }
            let Some(state) = t.sessions.get_mut(session) else {
                return 0;
            };
            let kept = state.events.split_off(&seq);
            let removed = std::mem::replace(&mut state.events, kept);
            removed.len() as u64
        }))
        .inspect(|_| self.session_changes.notify_waiters())
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            let was_live = live(t, session, now).is_some();
            t.sessions.remove(session);
            was_live
        }))
        .inspect(|_| self.session_changes.notify_waiters())
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        let head = self.head(tenant, session);
        crate::backend::wait_on_notify(&self.session_changes, head, seen_head, timeout).await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| live(t, session, now).map(info)))
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        let now = self.now();
        self.with_tenant(tenant, |t| {
            if live(t, session, now).is_none() {
                return Err(Error::not_found("no such session"));
            }
            let state = t
                .sessions
                .get_mut(session)
                .ok_or_else(|| Error::not_found("no such session"))?;
            if state.closed_at.is_none() {
                state.closed_at = Some(now);
                if options.remove_events {
                    state.events.clear();
                }
            }
            Ok(info(state))
        })
        .map_err(ctx("session.close", format!("{tenant}/{session}")))
        .inspect(|_| self.session_changes.notify_waiters())
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        let now = self.now();
        let key = format!("{tenant}/{session}");
        let fence = crate::backend::compaction_fence(tenant, session, &compaction)
            .map_err(ctx("session.compact", &key))?;
        let Compaction {
            through,
            summary,
            expect_head,
            ..
        } = compaction;
        self.with_tenant(tenant, |t| {
            check_fence(t.session_fences.get(session), fence)?;
            let head = live(t, session, now)
                .map(|s| s.head)
                .ok_or_else(|| Error::not_found("no such session"))?;
            check_head(expect_head, head)?;
            check_through(through, head)?;
            if live(t, session, now).is_some_and(|s| s.closed_at.is_some()) {
                return Err(closed());
            }
            record_fence(&mut t.session_fences, session.clone(), fence);
            let state = t
                .sessions
                .get_mut(session)
                .ok_or_else(|| Error::not_found("no such session"))?;
            state.events = state.events.split_off(&through.saturating_add(1));
            push_events(state, summary, now);
            Ok(state.head)
        })
        .map_err(ctx("session.compact", key))
        .inspect(|_| self.session_changes.notify_waiters())
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        let ListSessions { cursor, limit, .. } = query;
        let limit = validate_limit(limit).map_err(ctx("session.list_sessions", tenant))?;
        let after: Option<SessionKey> = cursor
            .as_ref()
            .map(decode_cursor)
            .transpose()
            .map_err(ctx("session.list_sessions", tenant))?;
        let now = self.now();
        let items = self.with_tenant(tenant, |t| {
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            t.sessions
                .range::<SessionKey, _>((lower, Bound::Unbounded))
                .filter(|(_, s)| !is_expired(s.expires_at, now))
                .map(|(k, _)| k.clone())
                .take(limit + 1)
                .collect()
        });
        Ok(Page::from_overfetch(items, limit, encode_cursor))
    }

    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            let Some(state) = t
                .sessions
                .get_mut(session)
                .filter(|s| !is_expired(s.expires_at, now))
            else {
                return false;
            };
            match state.events.get_mut(&seq) {
                Some(stored) if stored.event == *expected => {
                    stored.event = new;
                    true
                }
                _ => false,
            }
        }))
    }
}

fn push_events(state: &mut SessionState, events: Vec<Envelope>, now: Timestamp) {
    for event in events {
        state.head += 1;
        state
            .events
            .insert(state.head, SessionEvent::new(state.head, event, now));
    }
    state.last_append_at = Some(now);
}

fn check_head(expected: Option<u64>, head: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != head => Err(Error::conflict(format!(
            "expected head {expected}, found {head}"
        ))),
        _ => Ok(()),
    }
}

fn check_through(through: u64, head: u64) -> Result<()> {
    if through > head {
        return Err(Error::conflict(format!(
            "cannot compact through ordinal {through}: the head is {head}"
        )));
    }
    Ok(())
}

fn closed() -> Error {
    Error::closed("the session is closed: it takes no more appends")
}

fn info(s: &SessionState) -> SessionInfo {
    SessionInfo::new(s.head)
        .with_oldest(s.events.keys().next().copied())
        .with_created_at(s.created_at)
        .with_last_append_at(s.last_append_at)
        .with_expires_at(s.expires_at)
        .with_closed_at(s.closed_at)
}

impl MemoryBackend {
    /// Removes expired sessions of every tenant.
    pub(super) fn purge_expired_sessions(&self) -> Vec<ExpiredSession> {
        let now = self.now();
        let mut state = self.lock_state();
        let mut removed = Vec::new();
        for (tenant, t) in state.tenants.iter_mut() {
            t.sessions.retain(|session, s| {
                let expired = is_expired(s.expires_at, now);
                if expired {
                    removed.push(ExpiredSession::new(tenant.clone(), session.clone()));
                }
                !expired
            });
        }
        removed.sort();
        removed
    }
}
