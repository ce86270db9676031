//! Checkpoints: `persistence.checkpoint_*` functions.

use async_trait::async_trait;
use persistence_core::backend::{
    CursorExt, ListCheckpointsExt, PageExt, thread_fence, validate_limit,
};
use persistence_core::{
    Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer,
    Cursor, Envelope, Error, ExpectLatest, Fence, ListCheckpoints, ListThreads, Metadata,
    NewCheckpoint, Page, PendingWrite, PutCheckpointOptions, PutWrites, Result, TenantId,
    ThreadKey, Timestamp,
};
use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;

use crate::PgBackend;
use crate::error::{corrupt, map};

const PUT: &str =
    "SELECT persistence.checkpoint_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const GET: &str = "SELECT persistence.checkpoint_get($1, $2, $3)";
const LIST: &str = "SELECT persistence.checkpoint_list($1, $2, $3, $4, $5)";
const PUT_WRITES: &str =
    "SELECT 1::bigint FROM persistence.checkpoint_put_writes($1, $2, $3, $4, $5, $6)";
const DELETE_THREAD: &str = "SELECT persistence.checkpoint_delete_thread($1, $2)";
const PRUNE: &str = "SELECT persistence.checkpoint_prune($1, $2, $3)";
const PRUNE_THROUGH: &str = "SELECT persistence.checkpoint_prune_through($1, $2, $3)";
const COPY_THREAD: &str = "SELECT persistence.checkpoint_copy_thread($1, $2, $3)";
const LIST_THREADS: &str = "SELECT persistence.checkpoint_list_threads($1, $2, $3)";
const REPLACE_STATE: &str =
    "SELECT persistence.checkpoint_replace_state($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const REPLACE_WRITE: &str =
    "SELECT persistence.pending_write_replace($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

#[derive(Deserialize)]
struct Row {
    id: CheckpointId,
    parent: Option<CheckpointId>,
    step: i64,
    state: Envelope,
    metadata: Metadata,
    created_at: Timestamp,
    #[serde(default)]
    writes: Vec<PendingWrite>,
}

impl Row {
    fn split(self) -> (Checkpoint, Vec<PendingWrite>) {
        let checkpoint = Checkpoint::from_new(
            NewCheckpoint::new(self.id, self.step, self.state)
                .with_parent(self.parent)
                .with_metadata(self.metadata),
            self.created_at,
        );
        (checkpoint, self.writes)
    }
}

fn limit_i32(limit: usize) -> Result<i32> {
    Ok(validate_limit(limit)? as i32)
}

pub(crate) fn bad_cursor(c: &Cursor) -> Error {
    c.invalid()
}

#[async_trait]
impl Checkpointer for PgBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        c: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        through_codec!(self.checkpointer().put(tenant, thread, c, options));
        let key = format!("{tenant}/{thread}");
        let (expect, expect_id): (i16, Option<uuid::Uuid>) = match options.expect_latest {
            ExpectLatest::Any => (0, None),
            ExpectLatest::Absent => (1, None),
            ExpectLatest::Is(id) => (2, Some(id.as_uuid())),
        };
        let fence = thread_fence(tenant, thread, options.lease.as_ref())
            .and_then(|f| f.map(|f| fence_i64(f.0)).transpose())
            .map_err(|e| e.context(crate::error::BACKEND, "checkpoint.put", &key))?;
        let created: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(PUT)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(c.id.as_uuid())
                .bind(c.parent.map(|p| p.as_uuid()))
                .bind(c.step)
                .bind(i64::from(c.state.schema_version))
                .bind(Json(&c.state.data))
                .bind(Json(&c.metadata))
                .bind(expect)
                .bind(expect_id)
                .bind(fence)
                .bind(c.state.bytes.as_deref())
        )
        .map_err(|e| map(e, "checkpoint.put", &key))?;
        Ok(Checkpoint::from_new(
            NewCheckpoint::new(c.id, c.step, c.state)
                .with_parent(c.parent)
                .with_metadata(c.metadata),
            Timestamp(created.max(0) as u64),
        ))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        through_codec!(self.checkpointer().get(tenant, thread, selector));
        let key = format!("{tenant}/{thread}");
        let id = match selector {
            CheckpointSelector::Latest => None,
            CheckpointSelector::Id(id) => Some(id.as_uuid()),
        };
        let row: Option<Json<serde_json::Value>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(GET)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(id)
        )
        .map_err(|e| map(e, "checkpoint.get", &key))?;
        let Some(Json(value)) = row else {
            return Ok(None);
        };
        let row: Row =
            serde_json::from_value(value).map_err(|e| corrupt(e, "checkpoint.get", &key))?;
        let (checkpoint, pending_writes) = row.split();
        Ok(Some(CheckpointTuple::new(checkpoint, pending_writes)))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        through_codec!(self.checkpointer().list(tenant, thread, query));
        let key = format!("{tenant}/{thread}");
        let ctx = |e: Error| e.context(crate::error::BACKEND, "checkpoint.list", &key);
        let limit = limit_i32(query.limit).map_err(ctx)?;
        let upper = query.upper_bound().map_err(ctx)?;
        let Json(rows): Json<Vec<Row>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(LIST)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(upper.map(|u| u.as_uuid()))
                .bind(limit + 1)
                .bind(Json(&query.metadata))
        )
        .map_err(|e| map(e, "checkpoint.list", &key))?;
        let items = rows.into_iter().map(|r| r.split().0).collect();
        Ok(Page::from_overfetch(items, limit as usize, |c| {
            Cursor::new(c.id.to_string())
        }))
    }

    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
    ) -> Result<()> {
        through_codec!(self.checkpointer().put_writes(tenant, thread, request));
        let PutWrites {
            checkpoint,
            task,
            writes,
            lease,
            ..
        } = request;
        let key = format!("{tenant}/{thread}/{checkpoint}");
        let fence = thread_fence(tenant, thread, lease.as_ref())
            .and_then(|f| f.map(|f| fence_i64(f.0)).transpose())
            .map_err(|e| e.context(crate::error::BACKEND, "checkpoint.put_writes", &key))?;
        let payload: Vec<serde_json::Value> = writes
            .iter()
            .map(|w| {
                let mut write = crate::envelope_json(&w.value)?;
                write.insert("channel".into(), json!(w.channel));
                Ok(serde_json::Value::Object(write))
            })
            .collect::<Result<_>>()
            .map_err(|e| e.context(crate::error::BACKEND, "checkpoint.put_writes", &key))?;
        let _: Vec<i64> = crate::pool::fetch_all!(
            self.db,
            crate::statement::Call::new(PUT_WRITES)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(checkpoint.as_uuid())
                .bind(task.as_str())
                .bind(Json(&payload))
                .bind(fence)
        )
        .map_err(|e| map(e, "checkpoint.put_writes", &key))?;
        Ok(())
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        through_codec!(self.checkpointer().delete_thread(tenant, thread));
        crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(DELETE_THREAD)
                .bind(tenant.as_str())
                .bind(thread.as_str())
        )
        .map_err(|e| map(e, "checkpoint.delete_thread", format!("{tenant}/{thread}")))
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().prune(tenant, thread, keep_latest));
        let key = format!("{tenant}/{thread}");
        if keep_latest == 0 {
            return Err(Error::invalid_input(
                "keep_latest must be at least 1; use delete_thread to remove all",
            )
            .context(crate::error::BACKEND, "checkpoint.prune", key));
        }
        let keep = i32::try_from(keep_latest).unwrap_or(i32::MAX);
        let n: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(PRUNE)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(keep)
        )
        .map_err(|e| map(e, "checkpoint.prune", &key))?;
        Ok(n as u64)
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().prune_through(tenant, thread, through));
        let n: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(PRUNE_THROUGH)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(through.as_uuid())
        )
        .map_err(|e| map(e, "checkpoint.prune_through", format!("{tenant}/{thread}")))?;
        Ok(n as u64)
    }

    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        through_codec!(
            self.checkpointer()
                .replace_payload(tenant, thread, payload, expected, new)
        );
        let (sql, id, write) = match payload {
            CheckpointPayload::State(id) => (REPLACE_STATE, id, None),
            CheckpointPayload::Write {
                checkpoint,
                task,
                index,
            } => {
                let Ok(index) = i32::try_from(*index) else {
                    return Ok(false);
                };
                (REPLACE_WRITE, checkpoint, Some((task.as_str(), index)))
            }
            _ => return Ok(false),
        };
        let replaced: bool = crate::pool::fetch_single!(self.db, {
            let call = crate::statement::Call::new(sql)
                .bind(tenant.as_str())
                .bind(thread.as_str())
                .bind(id.as_uuid());
            match write {
                Some((task, index)) => call.bind(task).bind(index),
                None => call,
            }
            .bind(i64::from(expected.schema_version))
            .bind(Json(&expected.data))
            .bind(expected.bytes.as_deref())
            .bind(i64::from(new.schema_version))
            .bind(Json(&new.data))
            .bind(new.bytes.as_deref())
        })
        .map_err(|e| {
            map(
                e,
                "checkpoint.replace_payload",
                format!("{tenant}/{thread}"),
            )
        })?;
        Ok(replaced)
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().copy_thread(tenant, from, to));
        let n: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(COPY_THREAD)
                .bind(tenant.as_str())
                .bind(from.as_str())
                .bind(to.as_str())
        )
        .map_err(|e| {
            map(
                e,
                "checkpoint.copy_thread",
                format!("{tenant}/{from}->{to}"),
            )
        })?;
        Ok(n as u64)
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        through_codec!(self.checkpointer().list_threads(tenant, query));
        let ListThreads { cursor, limit, .. } = query;
        let ctx = |e: Error| e.context(crate::error::BACKEND, "checkpoint.list_threads", tenant);
        let limit = limit_i32(limit).map_err(ctx)?;
        let after = cursor
            .as_ref()
            .map(|c| ThreadKey::new(c.as_str()).map_err(|_| bad_cursor(c)))
            .transpose()
            .map_err(ctx)?;
        let Json(items): Json<Vec<ThreadKey>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(LIST_THREADS)
                .bind(tenant.as_str())
                .bind(after.as_ref().map(ThreadKey::as_str))
                .bind(limit + 1)
        )
        .map_err(|e| map(e, "checkpoint.list_threads", tenant))?;
        Ok(Page::from_overfetch(items, limit as usize, |k| {
            Cursor::new(k.as_str())
        }))
    }
}

/// Fences are u64 in the API and bigint in the database.
/// A fence as the database's `bigint`, after the core range check (`Fence::MAX` is
/// `i64::MAX`, so every valid fence fits).
pub(crate) fn fence_i64(f: u64) -> Result<i64> {
    let Fence(f) = Fence(f).checked()?;
    i64::try_from(f).map_err(|_| Error::invalid_input(format!("fence {f} is out of range")))
}
