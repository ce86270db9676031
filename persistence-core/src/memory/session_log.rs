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
use crate::page::{Page, validate_limit};
use crate::session_log::{AppendOptions, ListSessions, SessionEvent, SessionLog};
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
            if let Some(expected) = options.expect_head
                && expected != head
            {
                return Err(Error::conflict(format!(
                    "expected head {expected}, found {head}"
                )));
            }
            record_fence(&mut t.session_fences, session.clone(), fence);
            if live(t, session, now).is_none() {
                t.sessions.insert(session.clone(), SessionState::default());
            }
            let state = t.sessions.entry(session.clone()).or_default();
            for event in events {
                state.head += 1;
                state.events.insert(
                    state.head,
                    SessionEvent {
                        seq: state.head,
                        event,
                        appended_at: now,
                    },
                );
            }
            if let Some(ttl) = ttl {
                state.expires_at = Some(now.saturating_add(ttl));
            }
            Ok(state.head)
        })
        .map_err(ctx("session.append", key))
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
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            let was_live = live(t, session, now).is_some();
            t.sessions.remove(session);
            was_live
        }))
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
}

impl MemoryBackend {
    /// Removes expired sessions of every tenant.
    pub(super) fn purge_expired_sessions(&self) -> u64 {
        let now = self.now();
        let mut state = self.lock_state();
        let mut removed = 0;
        for t in state.tenants.values_mut() {
            let before = t.sessions.len();
            t.sessions.retain(|_, s| !is_expired(s.expires_at, now));
            removed += (before - t.sessions.len()) as u64;
        }
        removed
    }
}
