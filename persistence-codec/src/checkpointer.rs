//! [`SealedCheckpointer`]: checkpoint states and pending writes through the codec.

use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::{
    Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer,
    Envelope, ErrorKind, ListCheckpoints, ListThreads, NewCheckpoint, Page, PendingWrite,
    PutCheckpointOptions, PutWrites, Result, Retention, RetentionOutcome, TenantId, ThreadKey,
    Timestamp, Write,
};

use super::{Codec, Row};

/// A [`Checkpointer`] whose checkpoint states and pending writes are sealed by the codec
/// (see [the crate docs](crate)); ids, steps, parents and metadata stay in clear.
#[derive(Clone)]
pub struct SealedCheckpointer {
    inner: Arc<dyn Checkpointer>,
    codec: Arc<Codec>,
}

impl std::fmt::Debug for SealedCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedCheckpointer")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl SealedCheckpointer {
    /// Seals what goes to `inner` with `codec`, and opens what comes back.
    pub fn new(inner: Arc<dyn Checkpointer>, codec: Arc<Codec>) -> Self {
        SealedCheckpointer { inner, codec }
    }

    async fn open_checkpoint(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        mut c: Checkpoint,
    ) -> Result<Checkpoint> {
        let row = Row::Checkpoint { thread, id: c.id };
        let state = std::mem::replace(&mut c.state, Envelope::new(0, serde_json::Value::Null));
        c.state = self.codec.open(tenant, row, state).await?;
        Ok(c)
    }

    async fn open_tuple(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        t: CheckpointTuple,
    ) -> Result<CheckpointTuple> {
        let id = t.checkpoint.id;
        let checkpoint = self.open_checkpoint(tenant, thread, t.checkpoint).await?;
        let mut writes = Vec::with_capacity(t.pending_writes.len());
        for w in t.pending_writes {
            let row = Row::Write {
                thread,
                checkpoint: id,
                task: w.task_id.as_str(),
                index: w.index,
            };
            let value = self.codec.open(tenant, row, w.value).await?;
            writes.push(PendingWrite::new(w.task_id, w.index, w.channel, value));
        }
        Ok(CheckpointTuple::new(checkpoint, writes))
    }

    async fn seal_new(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        new: &NewCheckpoint,
    ) -> Result<NewCheckpoint> {
        let row = Row::Checkpoint { thread, id: new.id };
        let state = self.codec.seal(tenant, row, &new.state).await?;
        Ok(NewCheckpoint::new(new.id, new.step, state)
            .with_parent(new.parent)
            .with_metadata(new.metadata.clone()))
    }
}

#[async_trait]
impl Checkpointer for SealedCheckpointer {
    /// Seals the state and puts it. A fresh nonce makes every sealing differ, so a put
    /// of a checkpoint already stored is recognised here: the stored one is opened and
    /// compared, keeping `put` idempotent.
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let sealed = self.seal_new(tenant, thread, &checkpoint).await?;
        match self.inner.put(tenant, thread, sealed, options).await {
            // What was put, as put: no need to open what was just sealed.
            Ok(mut stored) => {
                stored.state = checkpoint.state;
                Ok(stored)
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                let existing = self
                    .inner
                    .get(tenant, thread, CheckpointSelector::Id(checkpoint.id))
                    .await?;
                match existing {
                    Some(t) => {
                        let stored = self.open_checkpoint(tenant, thread, t.checkpoint).await?;
                        if stored.same_as(&checkpoint) {
                            Ok(stored)
                        } else {
                            Err(e)
                        }
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        match self.inner.get(tenant, thread, selector).await? {
            Some(t) => Ok(Some(self.open_tuple(tenant, thread, t).await?)),
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        let mut page = self.inner.list(tenant, thread, query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for c in std::mem::take(&mut page.items) {
            items.push(self.open_checkpoint(tenant, thread, c).await?);
        }
        page.items = items;
        Ok(page)
    }

    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
    ) -> Result<()> {
        let mut writes = Vec::with_capacity(request.writes.len());
        for (i, w) in request.writes.into_iter().enumerate() {
            let index = u32::try_from(i)
                .map_err(|_| persistence_core::Error::invalid_input("too many pending writes"))?;
            let row = Row::Write {
                thread,
                checkpoint: request.checkpoint,
                task: request.task.as_str(),
                index,
            };
            let value = self.codec.seal(tenant, row, &w.value).await?;
            writes.push(Write::new(w.channel, value));
        }
        let mut sealed = PutWrites::new(request.checkpoint, request.task, writes);
        sealed.lease = request.lease;
        self.inner.put_writes(tenant, thread, sealed).await
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        self.inner.delete_thread(tenant, thread).await
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        self.inner.prune(tenant, thread, keep_latest).await
    }

    /// Copies checkpoint by checkpoint, each opened and sealed again for its new thread
    /// (a ciphertext is bound to its thread): not one atomic step like the backends'
    /// own copy. A failure part way leaves `to` with the checkpoints copied so far.
    ///
    /// # Errors
    /// `NotFound` if `from` has no checkpoint; `Conflict` if `to` has any.
    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        let mut ids: Vec<CheckpointId> = Vec::new();
        let mut cursor = None;
        loop {
            let query = ListCheckpoints::default()
                .with_limit(1000)
                .with_cursor(cursor);
            let page = self.inner.list(tenant, from, query).await?;
            ids.extend(page.items.iter().map(|c| c.id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if ids.is_empty() {
            return Err(persistence_core::Error::not_found(format!(
                "copy_thread: thread {from} has no checkpoint"
            )));
        }
        if self
            .inner
            .get(tenant, to, CheckpointSelector::Latest)
            .await?
            .is_some()
        {
            return Err(persistence_core::Error::conflict(format!(
                "copy_thread: thread {to} already has checkpoints"
            )));
        }
        // Oldest first, so the copy's latest is written last.
        let mut copied = 0;
        for id in ids.into_iter().rev() {
            let Some(t) = self.get(tenant, from, CheckpointSelector::Id(id)).await? else {
                continue; // pruned meanwhile
            };
            let c = t.checkpoint;
            let new = NewCheckpoint::new(c.id, c.step, c.state)
                .with_parent(c.parent)
                .with_metadata(c.metadata);
            self.put(tenant, to, new, PutCheckpointOptions::default())
                .await?;
            let mut by_task: Vec<(persistence_core::TaskId, Vec<Write>)> = Vec::new();
            for w in t.pending_writes {
                match by_task.last_mut() {
                    Some((task, writes)) if *task == w.task_id => {
                        writes.push(Write::new(w.channel, w.value));
                    }
                    _ => by_task.push((w.task_id, vec![Write::new(w.channel, w.value)])),
                }
            }
            for (task, writes) in by_task {
                self.put_writes(tenant, to, PutWrites::new(id, task, writes))
                    .await?;
            }
            copied += 1;
        }
        Ok(copied)
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
        self.inner.prune_through(tenant, thread, through).await
    }

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

    /// Opens the stored payload and compares it with `expected` (every sealing
    /// differs, so the sealed forms cannot be compared), then replaces the sealed form
    /// read with `new` sealed for the same row: a payload changed in between is not
    /// overwritten.
    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let Some((row, stored)) = stored_payload(&*self.inner, tenant, thread, payload).await?
        else {
            return Ok(false);
        };
        if self.codec.open(tenant, row, stored.clone()).await? != *expected {
            return Ok(false);
        }
        let sealed = self.codec.seal(tenant, row, &new).await?;
        self.inner
            .replace_payload(tenant, thread, payload, &stored, sealed)
            .await
    }
}

/// The row a payload is bound to and the payload as `checkpointer` stores it; `None`
/// when it is absent.
pub(crate) async fn stored_payload<'a>(
    checkpointer: &dyn Checkpointer,
    tenant: &TenantId,
    thread: &'a ThreadKey,
    payload: &'a CheckpointPayload,
) -> Result<Option<(Row<'a>, Envelope)>> {
    let (id, row) = match payload {
        CheckpointPayload::State(id) => (*id, Row::Checkpoint { thread, id: *id }),
        CheckpointPayload::Write {
            checkpoint,
            task,
            index,
        } => (
            *checkpoint,
            Row::Write {
                thread,
                checkpoint: *checkpoint,
                task: task.as_str(),
                index: *index,
            },
        ),
        _ => return Ok(None),
    };
    let Some(tuple) = checkpointer
        .get(tenant, thread, CheckpointSelector::Id(id))
        .await?
    else {
        return Ok(None);
    };
    let stored = match payload {
        CheckpointPayload::State(_) => Some(tuple.checkpoint.state),
        CheckpointPayload::Write { task, index, .. } => tuple
            .pending_writes
            .into_iter()
            .find(|w| w.task_id == *task && w.index == *index)
            .map(|w| w.value),
        _ => None,
    };
    Ok(stored.map(|s| (row, s)))
}
