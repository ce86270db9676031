//! Session logs: `persistence.session_*` functions. Ordinals come from the session row's
//! `head`, locked by the append, never from `MAX(seq) + 1`.

use async_trait::async_trait;
use persistence_core::backend::{
    PageExt, compaction_fence, session_fence, validate_limit, validate_ttl,
};
use persistence_core::{
    AppendOptions, CloseSession, Compaction, Cursor, Envelope, Error, ExpiredSession, ListSessions,
    Page, Result, SessionEvent, SessionInfo, SessionKey, SessionLog, TenantId, Timestamp,
};
use serde::Deserialize;
use sqlx::types::Json;

use crate::PgBackend;
use crate::checkpointer::{bad_cursor, fence_i64};
use crate::error::{BACKEND, map};

const APPEND: &str = "SELECT persistence.session_append($1, $2, $3, $4, $5, $6)";
const READ: &str = "SELECT persistence.session_read($1, $2, $3, $4)";
const HEAD: &str = "SELECT persistence.session_head($1, $2)";
const TRIM: &str = "SELECT persistence.session_trim_before($1, $2, $3)";
const DELETE: &str = "SELECT persistence.session_delete($1, $2)";
const LIST: &str = "SELECT persistence.session_list($1, $2, $3)";
const INFO: &str = "SELECT persistence.session_info($1, $2)";
const CLOSE: &str = "SELECT persistence.session_close($1, $2, $3 <> 0)";
const COMPACT: &str = "SELECT persistence.session_compact($1, $2, $3, $4, $5, $6)";
const LISTEN: &str = "SELECT persistence.session_listen($1, $2, $3)";
const REPLACE_EVENT: &str =
    "SELECT persistence.session_event_replace($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const PURGE: &str = "SELECT persistence.purge_expired_sessions_named()";

#[derive(Deserialize)]
struct Row {
    seq: u64,
    appended_at: Timestamp,
    event: Envelope,
}

/// `persistence.session_info_json()`.
#[derive(Deserialize)]
struct InfoRow {
    head: u64,
    oldest: Option<u64>,
    created_at: Option<Timestamp>,
    last_append_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    closed_at: Option<Timestamp>,
}

impl From<InfoRow> for SessionInfo {
    fn from(r: InfoRow) -> Self {
        SessionInfo::new(r.head)
            .with_oldest(r.oldest)
            .with_created_at(r.created_at)
            .with_last_append_at(r.last_append_at)
            .with_expires_at(r.expires_at)
            .with_closed_at(r.closed_at)
    }
}

/// Events as the SQL functions take them: `[{"schema_version", "data", "bytes"}]`.
fn events_json(events: &[Envelope]) -> Result<Vec<serde_json::Value>> {
    events
        .iter()
        .map(|e| crate::envelope_json(e).map(serde_json::Value::Object))
        .collect()
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

#[async_trait]
impl SessionLog for PgBackend {
    async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: Vec<Envelope>,
        options: AppendOptions,
    ) -> Result<u64> {
        through_codec!(self.sessions().append(tenant, session, events, options));
        let key = format!("{tenant}/{session}");
        let ctx = |e: Error| e.context(BACKEND, "session.append", &key);
        if events.is_empty() {
            return Err(ctx(Error::invalid_input("append needs at least one event")));
        }
        let ttl_ms = options
            .ttl
            .map(|t| validate_ttl("session ttl", t).map(|t| t.as_millis() as i64))
            .transpose()
            .map_err(ctx)?;
        let fence = session_fence(tenant, session, options.lease.as_ref())
            .and_then(|f| f.map(|f| fence_i64(f.0)).transpose())
            .map_err(ctx)?;
        let payload = events_json(&events).map_err(ctx)?;
        let head: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(APPEND)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(Json(&payload))
                .bind(options.expect_head.map(seq_i64))
                .bind(fence)
                .bind(ttl_ms)
        )
        .map_err(|e| map(e, "session.append", &key))?;
        Ok(head as u64)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        through_codec!(self.sessions().read(tenant, session, after, limit));
        let key = format!("{tenant}/{session}");
        let limit = validate_limit(limit).map_err(|e| e.context(BACKEND, "session.read", &key))?;
        let Json(rows): Json<Vec<Row>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(READ)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(seq_i64(after))
                .bind(limit as i32)
        )
        .map_err(|e| map(e, "session.read", &key))?;
        Ok(rows
            .into_iter()
            .map(|r| SessionEvent::new(r.seq, r.event, r.appended_at))
            .collect())
    }

    async fn head(&self, tenant: &TenantId, session: &SessionKey) -> Result<u64> {
        through_codec!(self.sessions().head(tenant, session));
        let head: i64 = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(HEAD)
                .bind(tenant.as_str())
                .bind(session.as_str())
        )
        .map_err(|e| map(e, "session.head", format!("{tenant}/{session}")))?;
        Ok(head as u64)
    }

    async fn replace_event(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        through_codec!(
            self.sessions()
                .replace_event(tenant, session, seq, expected, new)
        );
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(false);
        };
        let replaced: bool = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(REPLACE_EVENT)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(seq)
                .bind(i64::from(expected.schema_version))
                .bind(Json(&expected.data))
                .bind(expected.bytes.as_deref())
                .bind(i64::from(new.schema_version))
                .bind(Json(&new.data))
                .bind(new.bytes.as_deref())
        )
        .map_err(|e| map(e, "session.replace_event", format!("{tenant}/{session}")))?;
        Ok(replaced)
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
        through_codec!(self.sessions().trim_before(tenant, session, seq));
        let n: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(TRIM)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(seq_i64(seq))
        )
        .map_err(|e| map(e, "session.trim_before", format!("{tenant}/{session}")))?;
        Ok(n as u64)
    }

    async fn delete(&self, tenant: &TenantId, session: &SessionKey) -> Result<bool> {
        through_codec!(self.sessions().delete(tenant, session));
        crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(DELETE)
                .bind(tenant.as_str())
                .bind(session.as_str())
        )
        .map_err(|e| map(e, "session.delete", format!("{tenant}/{session}")))
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        query: ListSessions,
    ) -> Result<Page<SessionKey>> {
        through_codec!(self.sessions().list_sessions(tenant, query));
        let ListSessions { cursor, limit, .. } = query;
        let ctx = |e: Error| e.context(BACKEND, "session.list_sessions", tenant);
        let limit = validate_limit(limit).map_err(ctx)?;
        let after = cursor
            .as_ref()
            .map(|c| SessionKey::new(c.as_str()).map_err(|_| bad_cursor(c)))
            .transpose()
            .map_err(ctx)?;
        let Json(items): Json<Vec<SessionKey>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(LIST)
                .bind(tenant.as_str())
                .bind(after.as_ref().map(SessionKey::as_str))
                .bind(limit as i32 + 1)
        )
        .map_err(|e| map(e, "session.list_sessions", tenant))?;
        Ok(Page::from_overfetch(items, limit, |k| {
            Cursor::new(k.as_str())
        }))
    }

    async fn wait_for_change(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        seen_head: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        through_codec!(
            self.sessions()
                .wait_for_change(tenant, session, seen_head, timeout)
        );
        let key = format!("{tenant}/{session}");
        let Some((notify, due)) = self.changes.waiter(&key) else {
            tokio::time::sleep(timeout).await;
            return Ok(());
        };
        let head = async {
            if due {
                let ttl_ms =
                    i64::try_from(2 * crate::changes::RENEW.as_millis()).unwrap_or(i64::MAX);
                let _: () = crate::pool::fetch_single!(
                    self.db,
                    crate::statement::Call::new(LISTEN)
                        .bind(tenant.as_str())
                        .bind(session.as_str())
                        .bind(ttl_ms)
                )
                .map_err(|e| map(e, "session.listen", &key))?;
                self.changes.registered(&key);
            }
            // Registered for notices from here: a head read since answers this waiter.
            let not_before = std::time::Instant::now();
            let read_head = || self.head(tenant, session);
            self.changes
                .heads
                .call(key.clone(), not_before, read_head)
                .await
        };
        // The session is registered (its appends notify) before its head is read.
        persistence_core::backend::wait_on_notify(&notify, head, seen_head, timeout).await
    }

    async fn session_info(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
    ) -> Result<Option<SessionInfo>> {
        through_codec!(self.sessions().session_info(tenant, session));
        let info: Option<Json<InfoRow>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(INFO)
                .bind(tenant.as_str())
                .bind(session.as_str())
        )
        .map_err(|e| map(e, "session.info", format!("{tenant}/{session}")))?;
        Ok(info.map(|Json(row)| row.into()))
    }

    async fn close_session(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        options: CloseSession,
    ) -> Result<SessionInfo> {
        through_codec!(self.sessions().close_session(tenant, session, options));
        let Json(row): Json<InfoRow> = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(CLOSE)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(i16::from(options.remove_events))
        )
        .map_err(|e| map(e, "session.close", format!("{tenant}/{session}")))?;
        Ok(row.into())
    }

    async fn compact(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        compaction: Compaction,
    ) -> Result<u64> {
        through_codec!(self.sessions().compact(tenant, session, compaction));
        let key = format!("{tenant}/{session}");
        let ctx = |e: Error| e.context(BACKEND, "session.compact", &key);
        let fence = compaction_fence(tenant, session, &compaction)
            .and_then(|f| f.map(|f| fence_i64(f.0)).transpose())
            .map_err(ctx)?;
        let summary = events_json(&compaction.summary).map_err(ctx)?;
        let head: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(COMPACT)
                .bind(tenant.as_str())
                .bind(session.as_str())
                .bind(Json(&summary))
                .bind(compaction.expect_head.map(seq_i64))
                .bind(fence)
                .bind(seq_i64(compaction.through))
        )
        .map_err(|e| map(e, "session.compact", &key))?;
        Ok(head as u64)
    }
}

impl PgBackend {
    /// Removes expired sessions of every tenant and names them.
    pub(crate) async fn purge_expired_sessions(&self) -> Result<Vec<ExpiredSession>> {
        let Json(named): Json<Vec<(TenantId, SessionKey)>> =
            crate::pool::fetch_single!(self.db, crate::statement::Call::new(PURGE))
                .map_err(|e| map(e, "session.purge_expired", ""))?;
        Ok(named
            .into_iter()
            .map(|(tenant, session)| ExpiredSession::new(tenant, session))
            .collect())
    }
}
