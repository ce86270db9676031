//! Session logs: `persistence.session_*` functions. Ordinals come from the session row's
//! `head`, locked by the append, never from `MAX(seq) + 1`.

use async_trait::async_trait;
use persistence_core::backend::{PageExt, session_fence, validate_limit, validate_ttl};
use persistence_core::{
    AppendOptions, Cursor, Envelope, Error, ListSessions, Page, Result, SessionEvent, SessionKey,
    SessionLog, TenantId, Timestamp,
};
use serde::Deserialize;
use serde_json::json;
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
const PURGE: &str = "SELECT persistence.purge_expired_sessions()";

#[derive(Deserialize)]
struct Row {
    seq: u64,
    appended_at: Timestamp,
    event: Envelope,
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
        let payload: Vec<serde_json::Value> = events
            .iter()
            .map(|e| json!({"schema_version": e.schema_version, "data": e.data}))
            .collect();
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
        let head: i64 = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(HEAD)
                .bind(tenant.as_str())
                .bind(session.as_str())
        )
        .map_err(|e| map(e, "session.head", format!("{tenant}/{session}")))?;
        Ok(head as u64)
    }

    async fn trim_before(&self, tenant: &TenantId, session: &SessionKey, seq: u64) -> Result<u64> {
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
}

impl PgBackend {
    /// Removes expired sessions of every tenant.
    pub(crate) async fn purge_expired_sessions(&self) -> Result<u64> {
        let sessions: i64 = crate::pool::fetch_single!(self.db, crate::statement::Call::new(PURGE))
            .map_err(|e| map(e, "session.purge_expired", ""))?;
        Ok(sessions as u64)
    }
}
