//! Checkpoints: one hash tag per thread; content and creation time in hashes, ids in a
//! sorted set (lexicographic = UUIDv7 order), pending writes in one hash per checkpoint.

use async_trait::async_trait;
use persistence_core::backend::{
    CursorExt, ListCheckpointsExt, PageExt, PayloadRecord, decode_record, encode_record,
    thread_fence, validate_limit,
};
use persistence_core::{
    Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer,
    Cursor, Envelope, Error, ExpectLatest, ListCheckpoints, ListThreads, Metadata, NewCheckpoint,
    Page, PendingWrite, PutCheckpointOptions, PutWrites, Result, TenantId, ThreadKey, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::{BACKEND, Effect, corrupt, map};
use crate::keys::{Index, ThreadKeys, encode};
use crate::{RedisBackend, expect_ok, invocation, parse_u64, scripts};

/// What is stored per checkpoint; serialized deterministically so an identical retry
/// compares equal byte for byte.
#[derive(Serialize, Deserialize)]
struct Content {
    id: CheckpointId,
    parent: Option<CheckpointId>,
    step: i64,
    state: Envelope,
    metadata: Metadata,
}

impl PayloadRecord for Content {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.state
    }
}

fn decode(content: &[u8], created: &str, operation: &'static str, key: &str) -> Result<Checkpoint> {
    let c: Content = decode_record(content).map_err(|e| corrupt(e, operation, key))?;
    Ok(Checkpoint::from_new(
        NewCheckpoint::new(c.id, c.step, c.state)
            .with_parent(c.parent)
            .with_metadata(c.metadata),
        Timestamp(parse_u64(created, operation, key)?),
    ))
}

impl RedisBackend {
    /// A put without a guard or a fence: plain commands in one transaction (`HSETNX`
    /// content, `HSETNX` created-at, `ZADD` id), atomic and one round trip like a script,
    /// at a fraction of a script's cost to the server. Replies like the script:
    /// `["ok", created_at]` or `["conflict", why]`. An id that exists already (the
    /// transaction then changed nothing) is read back: the same content is an idempotent
    /// repeat, other content a conflict.
    async fn put_plain(
        &self,
        k: &ThreadKeys,
        id: &str,
        json: &[u8],
        created: &str,
        key: &str,
    ) -> Result<Vec<String>> {
        let mut put = redis::pipe();
        put.atomic()
            .cmd("HSETNX")
            .arg(k.content())
            .arg(id)
            .arg(json)
            .cmd("HSETNX")
            .arg(k.created())
            .arg(id)
            .arg(created)
            .cmd("ZADD")
            .arg(k.ids())
            .arg(0)
            .arg(id);
        let (new, _, _): (bool, bool, i64) = self
            .query_pipeline(put)
            .await
            .map_err(|e| map(e, Effect::Write, "checkpoint.put", key))?;
        if new {
            return Ok(vec!["ok".into(), created.into()]);
        }
        let mut existing = redis::pipe();
        existing
            .atomic()
            .cmd("HGET")
            .arg(k.content())
            .arg(id)
            .cmd("HGET")
            .arg(k.created())
            .arg(id);
        let (content, created): (Option<Vec<u8>>, Option<String>) = self
            .read("checkpoint.put", key, || {
                self.query_pipeline(existing.clone())
            })
            .await?;
        Ok(match (content, created) {
            (Some(content), Some(created)) if content == json => vec!["ok".into(), created],
            (Some(_), _) => vec![
                "conflict".into(),
                format!("checkpoint {id} already exists with other content"),
            ],
            // Deleted (a prune, a thread delete) between the transaction and the read.
            (None, _) => vec![
                "conflict".into(),
                format!("checkpoint {id} was deleted while it was being put; put it again"),
            ],
        })
    }

    async fn list_page(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        upper: Option<CheckpointId>,
        count: usize,
        key: &str,
    ) -> Result<Vec<Checkpoint>> {
        let k = self.keys.thread(t, th);
        let upper = upper.map(|u| u.to_string()).unwrap_or_default();
        let flat: Vec<Vec<u8>> = self
            .read("checkpoint.list", key, || {
                self.invoke(invocation!(
                    scripts::CHECKPOINT_LIST,
                    [k.content(), k.created(), k.ids()],
                    [&upper, count]
                ))
            })
            .await?;
        flat.chunks(2)
            .map(|pair| match pair {
                [content, created] => {
                    let created = std::str::from_utf8(created)
                        .map_err(|e| corrupt(e, "checkpoint.list", key))?;
                    decode(content, created, "checkpoint.list", key)
                }
                _ => Err(corrupt("odd reply", "checkpoint.list", key)),
            })
            .collect()
    }
}

#[async_trait]
impl Checkpointer for RedisBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        c: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        through_codec!(self.checkpointer().put(tenant, thread, c, options));
        let key = format!("{tenant}/{thread}");
        let k = self.keys.thread(tenant, thread);
        let mut content = Content {
            id: c.id,
            parent: c.parent,
            step: c.step,
            state: c.state,
            metadata: c.metadata,
        };
        let json = encode_record(&mut content)?;
        let (guard, expected) = match options.expect_latest {
            ExpectLatest::Any => ("0", String::new()),
            ExpectLatest::Absent => ("1", String::new()),
            ExpectLatest::Is(id) => ("2", id.to_string()),
        };
        let fence = thread_fence(tenant, thread, options.lease.as_ref())
            .map_err(|e| e.context(BACKEND, "checkpoint.put", &key))?
            .map(|f| f.0.to_string())
            .unwrap_or_default();
        // The writer's clock, like the checkpoint's id (UUIDv7) that orders it.
        let now = Timestamp::now().0.to_string();
        let id = c.id.to_string();
        let write = async {
            if guard == "0" && fence.is_empty() {
                self.put_plain(&k, &id, &json, &now, &key).await
            } else {
                self.invoke::<Vec<String>>(invocation!(
                    scripts::CHECKPOINT_PUT,
                    [k.content(), k.created(), k.ids(), k.fence()],
                    [&id, &json, guard, &expected, &fence, &now]
                ))
                .await
                .map_err(|e| map(e, Effect::Write, "checkpoint.put", &key))
            }
        };
        let (index, reply) = tokio::join!(
            self.index_add(tenant, Index::Threads, thread.as_str()),
            write
        );
        index.map_err(|e| map(e, Effect::Write, "checkpoint.put", &key))?;
        let created = expect_ok(reply?, "checkpoint.put", &key)?;
        self.confirm_write("checkpoint.put", &key).await?;
        Ok(Checkpoint::from_new(
            NewCheckpoint::new(content.id, content.step, content.state)
                .with_parent(content.parent)
                .with_metadata(content.metadata),
            Timestamp(parse_u64(&created, "checkpoint.put", &key)?),
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
        let k = self.keys.thread(tenant, thread);
        let id = match selector {
            CheckpointSelector::Latest => String::new(),
            CheckpointSelector::Id(id) => id.to_string(),
        };
        let reply: Option<(Vec<u8>, String, Vec<Vec<u8>>)> = self
            .read("checkpoint.get", &key, || {
                self.invoke(invocation!(
                    scripts::CHECKPOINT_GET,
                    [k.content(), k.created(), k.ids()],
                    [&id, k.writes_prefix()]
                ))
            })
            .await?;
        let Some((content, created, writes)) = reply else {
            return Ok(None);
        };
        let checkpoint = decode(&content, &created, "checkpoint.get", &key)?;
        let mut pending_writes = writes
            .iter()
            .map(|w| {
                decode_record::<PendingWrite>(w).map_err(|e| corrupt(e, "checkpoint.get", &key))
            })
            .collect::<Result<Vec<_>>>()?;
        pending_writes.sort_by(|a, b| (&a.task_id, a.index).cmp(&(&b.task_id, b.index)));
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
        let limit =
            validate_limit(query.limit).map_err(|e| e.context(BACKEND, "checkpoint.list", &key))?;
        let mut upper = query
            .upper_bound()
            .map_err(|e| e.context(BACKEND, "checkpoint.list", &key))?;
        let batch = (limit + 1).max(64);
        let mut items = Vec::new();
        loop {
            let page = self.list_page(tenant, thread, upper, batch, &key).await?;
            let exhausted = page.len() < batch;
            upper = page.last().map(|c| c.id);
            items.extend(page.into_iter().filter(|c| query.matches(&c.metadata)));
            if exhausted || items.len() > limit {
                break;
            }
        }
        items.truncate(limit + 1);
        Ok(Page::from_overfetch(items, limit, |c| {
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
        let task = &task;
        let key = format!("{tenant}/{thread}/{checkpoint}");
        let fence = thread_fence(tenant, thread, lease.as_ref())
            .map_err(|e| e.context(BACKEND, "checkpoint.put_writes", &key))?;
        let k = self.keys.thread(tenant, thread);
        let mut invocation = invocation!(
            scripts::CHECKPOINT_PUT_WRITES,
            [
                k.content(),
                k.fence(),
                format!("{}{checkpoint}", k.writes_prefix())
            ],
            [
                checkpoint.to_string(),
                fence.map(|f| f.0.to_string()).unwrap_or_default()
            ]
        );
        for (index, write) in writes.into_iter().enumerate() {
            let index = u32::try_from(index)
                .map_err(|_| Error::invalid_input("too many writes in one batch"))?;
            let mut record = PendingWrite::new(task.clone(), index, write.channel, write.value);
            let json = encode_record(&mut record)?;
            invocation
                .arg(format!("{}|{index}", encode(task.as_str())))
                .arg(json);
        }
        let reply: Vec<String> = self
            .invoke(invocation)
            .await
            .map_err(|e| map(e, Effect::Write, "checkpoint.put_writes", &key))?;
        expect_ok(reply, "checkpoint.put_writes", &key)?;
        self.confirm_write("checkpoint.put_writes", &key).await
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
        self.replace_checkpoint_payload(tenant, thread, payload, expected, new)
            .await
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        through_codec!(self.checkpointer().delete_thread(tenant, thread));
        let key = format!("{tenant}/{thread}");
        let k = self.keys.thread(tenant, thread);
        let deleted: u64 = self
            .invoke(invocation!(
                scripts::CHECKPOINT_PRUNE,
                [k.content(), k.created(), k.ids()],
                [0, k.writes_prefix()]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, "checkpoint.delete_thread", &key))?;
        self.confirm_write("checkpoint.delete_thread", &key).await?;
        Ok(deleted > 0)
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().prune_through(tenant, thread, through));
        let key = format!("{tenant}/{thread}");
        let k = self.keys.thread(tenant, thread);
        let deleted: u64 = self
            .invoke(invocation!(
                scripts::CHECKPOINT_PRUNE_THROUGH,
                [k.content(), k.created(), k.ids()],
                [through.to_string(), k.writes_prefix()]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, "checkpoint.prune_through", &key))?;
        self.confirm_write("checkpoint.prune_through", &key).await?;
        Ok(deleted)
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
            .context(BACKEND, "checkpoint.prune", key));
        }
        let k = self.keys.thread(tenant, thread);
        self.invoke(invocation!(
            scripts::CHECKPOINT_PRUNE,
            [k.content(), k.created(), k.ids()],
            [keep_latest, k.writes_prefix()]
        ))
        .await
        .map_err(|e| map(e, Effect::Write, "checkpoint.prune", &key))
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().copy_thread(tenant, from, to));
        // The two threads live in different slots: export from one, import into the other
        // (which must be empty). The source is never modified.
        let key = format!("{tenant}/{from}->{to}");
        let (src, dst) = (self.keys.thread(tenant, from), self.keys.thread(tenant, to));
        let exported: Vec<Vec<u8>> = self
            .read("checkpoint.copy_thread", &key, || {
                self.invoke(invocation!(
                    scripts::CHECKPOINT_EXPORT,
                    [src.content(), src.created(), src.ids()],
                    [src.writes_prefix()]
                ))
            })
            .await?;
        if exported.is_empty() {
            return Err(
                Error::not_found(format!("thread {from} has no checkpoint")).context(
                    BACKEND,
                    "checkpoint.copy_thread",
                    key,
                ),
            );
        }
        let mut invocation = invocation!(
            scripts::CHECKPOINT_IMPORT,
            [dst.content(), dst.created(), dst.ids()],
            [dst.writes_prefix()]
        );
        for part in &exported {
            invocation.arg(part);
        }
        let import = self.invoke::<Vec<String>>(invocation);
        let (index, reply) =
            tokio::join!(self.index_add(tenant, Index::Threads, to.as_str()), import);
        index.map_err(|e| map(e, Effect::Write, "checkpoint.copy_thread", &key))?;
        let copied = expect_ok(
            reply.map_err(|e| map(e, Effect::Write, "checkpoint.copy_thread", &key))?,
            "checkpoint.copy_thread",
            &key,
        )?;
        self.confirm_write("checkpoint.copy_thread", &key).await?;
        parse_u64(&copied, "checkpoint.copy_thread", &key)
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        through_codec!(self.checkpointer().list_threads(tenant, query));
        let ListThreads { cursor, limit, .. } = query;
        let key = tenant.to_string();
        let limit = validate_limit(limit)
            .map_err(|e| e.context(BACKEND, "checkpoint.list_threads", &key))?;
        let after = cursor
            .as_ref()
            .map(|c| {
                ThreadKey::new(c.as_str()).map_err(|_| {
                    c.invalid()
                        .context(BACKEND, "checkpoint.list_threads", &key)
                })
            })
            .transpose()?
            .map(ThreadKey::into_string);
        let members = self
            .live_members(
                tenant,
                Index::Threads,
                after,
                limit,
                "checkpoint.list_threads",
                |m| {
                    ThreadKey::new(m)
                        .ok()
                        .map(|th| self.keys.thread(tenant, &th).ids())
                },
            )
            .await?;
        let items: Vec<ThreadKey> = members
            .into_iter()
            .filter_map(|m| ThreadKey::new(m).ok())
            .collect();
        Ok(Page::from_overfetch(items, limit, |k| {
            Cursor::new(k.as_str())
        }))
    }
}
