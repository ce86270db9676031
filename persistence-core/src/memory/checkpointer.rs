use std::ops::Bound;

use async_trait::async_trait;

use super::{
    BACKEND, MemoryBackend, ThreadState, check_fence, ctx, decode_cursor, encode_cursor,
    record_fence,
};
use crate::backend::PageExt;
use crate::checkpointer::{
    Checkpoint, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer, ExpectLatest,
    ListCheckpoints, ListThreads, NewCheckpoint, PendingWrite, PutCheckpointOptions, PutWrites,
};
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, TenantId, ThreadKey};
use crate::page::{Cursor, Page, validate_limit};

fn tuple(thread: &ThreadState, c: &Checkpoint) -> CheckpointTuple {
    CheckpointTuple {
        checkpoint: c.clone(),
        pending_writes: thread
            .writes
            .get(&c.id)
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default(),
    }
}

#[async_trait]
impl Checkpointer for MemoryBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let now = self.now();
        let fence = crate::backend::thread_fence(tenant, thread, options.lease.as_ref())
            .map_err(ctx("checkpoint.put", format!("{tenant}/{thread}")))?;
        self.with_tenant(tenant, |t| {
            check_fence(t.thread_fences.get(thread), fence)?;
            let state = t.threads.get(thread);
            if let Some(existing) = state.and_then(|s| s.checkpoints.get(&checkpoint.id)) {
                return if existing.same_as(&checkpoint) {
                    Ok(existing.clone())
                } else {
                    Err(Error::conflict(format!(
                        "checkpoint {} already exists with other content",
                        checkpoint.id
                    )))
                };
            }
            let latest = state.and_then(|s| s.checkpoints.keys().next_back().copied());
            match (options.expect_latest, latest) {
                (ExpectLatest::Any, _) | (ExpectLatest::Absent, None) => {}
                (ExpectLatest::Is(want), Some(have)) if want == have => {}
                (want, have) => {
                    return Err(Error::conflict(format!(
                        "expected latest checkpoint {want:?}, found {have:?}"
                    )));
                }
            }
            record_fence(&mut t.thread_fences, thread.clone(), fence);
            let stored = Checkpoint {
                id: checkpoint.id,
                parent: checkpoint.parent,
                step: checkpoint.step,
                state: checkpoint.state,
                metadata: checkpoint.metadata,
                created_at: now,
            };
            t.threads
                .entry(thread.clone())
                .or_default()
                .checkpoints
                .insert(stored.id, stored.clone());
            Ok(stored)
        })
        .map_err(ctx("checkpoint.put", format!("{tenant}/{thread}")))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        Ok(self.with_tenant(tenant, |t| {
            let state = t.threads.get(thread)?;
            let c = match selector {
                CheckpointSelector::Latest => state.checkpoints.values().next_back()?,
                CheckpointSelector::Id(id) => state.checkpoints.get(&id)?,
            };
            Some(tuple(state, c))
        }))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        let key = format!("{tenant}/{thread}");
        let limit = validate_limit(query.limit).map_err(ctx("checkpoint.list", &key))?;
        let upper = query.upper_bound().map_err(ctx("checkpoint.list", &key))?;
        let items: Vec<Checkpoint> = self.with_tenant(tenant, |t| {
            let Some(state) = t.threads.get(thread) else {
                return Vec::new();
            };
            let range = match upper {
                Some(u) => state
                    .checkpoints
                    .range((Bound::Unbounded, Bound::Excluded(u))),
                None => state.checkpoints.range(..),
            };
            range
                .rev()
                .map(|(_, c)| c)
                .filter(|c| query.matches(&c.metadata))
                .take(limit + 1)
                .cloned()
                .collect()
        });
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
        let PutWrites {
            checkpoint,
            task,
            writes,
            lease,
            ..
        } = request;
        let fence = crate::backend::thread_fence(tenant, thread, lease.as_ref()).map_err(ctx(
            "checkpoint.put_writes",
            format!("{tenant}/{thread}/{checkpoint}"),
        ))?;
        let task = &task;
        self.with_tenant(tenant, |t| {
            check_fence(t.thread_fences.get(thread), fence)?;
            let state = t
                .threads
                .get_mut(thread)
                .filter(|s| s.checkpoints.contains_key(&checkpoint))
                .ok_or_else(|| {
                    Error::not_found(format!("checkpoint {checkpoint} does not exist"))
                })?;
            let count = u32::try_from(writes.len())
                .map_err(|_| Error::invalid_input("too many writes in one batch"))?;
            let slot = state.writes.entry(checkpoint).or_default();
            for (index, write) in (0..count).zip(writes) {
                slot.entry((task.clone(), index)).or_insert(PendingWrite {
                    task_id: task.clone(),
                    index,
                    channel: write.channel,
                    value: write.value,
                });
            }
            record_fence(&mut t.thread_fences, thread.clone(), fence);
            Ok(())
        })
        .map_err(ctx(
            "checkpoint.put_writes",
            format!("{tenant}/{thread}/{checkpoint}"),
        ))
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        Ok(self.with_tenant(tenant, |t| t.threads.remove(thread).is_some()))
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        if keep_latest == 0 {
            return Err(Error::invalid_input(
                "keep_latest must be at least 1; use delete_thread to remove all",
            )
            .context(BACKEND, "checkpoint.prune", format!("{tenant}/{thread}")));
        }
        Ok(self.with_tenant(tenant, |t| {
            let Some(state) = t.threads.get_mut(thread) else {
                return 0;
            };
            let doomed: Vec<CheckpointId> = state
                .checkpoints
                .keys()
                .rev()
                .skip(keep_latest)
                .copied()
                .collect();
            for id in &doomed {
                state.checkpoints.remove(id);
                state.writes.remove(id);
            }
            doomed.len() as u64
        }))
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        Ok(self.with_tenant(tenant, |t| {
            let Some(state) = t.threads.get_mut(thread) else {
                return 0;
            };
            let doomed: Vec<CheckpointId> = state
                .checkpoints
                .range(..=*through)
                .map(|(id, _)| *id)
                .collect();
            for id in &doomed {
                state.checkpoints.remove(id);
                state.writes.remove(id);
            }
            if state.checkpoints.is_empty() {
                t.threads.remove(thread);
            }
            doomed.len() as u64
        }))
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        self.with_tenant(tenant, |t| {
            let source = t
                .threads
                .get(from)
                .filter(|s| !s.checkpoints.is_empty())
                .cloned()
                .ok_or_else(|| Error::not_found(format!("thread {from} has no checkpoint")))?;
            if t.threads.get(to).is_some_and(|s| !s.checkpoints.is_empty()) {
                return Err(Error::conflict(format!("target thread {to} is not empty")));
            }
            let copied = source.checkpoints.len() as u64;
            t.threads.insert(to.clone(), source);
            Ok(copied)
        })
        .map_err(ctx(
            "checkpoint.copy_thread",
            format!("{tenant}/{from}->{to}"),
        ))
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        let ListThreads { cursor, limit, .. } = query;
        let limit = validate_limit(limit).map_err(ctx("checkpoint.list_threads", tenant))?;
        let after: Option<ThreadKey> = cursor
            .as_ref()
            .map(decode_cursor)
            .transpose()
            .map_err(ctx("checkpoint.list_threads", tenant))?;
        let items = self.with_tenant(tenant, |t| {
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            t.threads
                .range::<ThreadKey, _>((lower, Bound::Unbounded))
                .filter(|(_, s)| !s.checkpoints.is_empty())
                .map(|(k, _)| k.clone())
                .take(limit + 1)
                .collect()
        });
        Ok(Page::from_overfetch(items, limit, encode_cursor))
    }

    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        Ok(self.with_tenant(tenant, |t| {
            let Some(state) = t.threads.get_mut(thread) else {
                return false;
            };
            let slot = match payload {
                CheckpointPayload::State(id) => state.checkpoints.get_mut(id).map(|c| &mut c.state),
                CheckpointPayload::Write {
                    checkpoint,
                    task,
                    index,
                } => state
                    .writes
                    .get_mut(checkpoint)
                    .and_then(|w| w.get_mut(&(task.clone(), *index)))
                    .map(|w| &mut w.value),
            };
            match slot {
                Some(stored) if stored == expected => {
                    *stored = new;
                    true
                }
                _ => false,
            }
        }))
    }
}
