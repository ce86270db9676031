//! The writes of a thread that hold its lock: a checkpoint put (through the journal)
//! and the pending writes of a task.

use persistence_core::backend::thread_fence;
use std::path::PathBuf;

use persistence_core::{
    Checkpoint, CheckpointId, Error, ExpectLatest, Fence, NewCheckpoint, PendingWrite,
    PutCheckpointOptions, Result, TaskId, TenantId, ThreadKey, Timestamp, Write,
};

use super::{CHECKPOINTS, StoredCheckpoint, WRITES, check_fence, ensure_entry, record_fence};
use crate::Inner;
use crate::config::Durability;
use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::records;

/// The paths a thread's writes use, checked for links (see [`Inner::inside`]), the
/// tenant's directory once for all of them.
struct ThreadPaths {
    tenant: PathBuf,
    lock: PathBuf,
    fence: PathBuf,
    /// The thread's directory (its `checkpoints` checked too).
    dir: PathBuf,
}

impl Inner {
    fn thread_paths(&self, t: &TenantId, th: &ThreadKey) -> Result<ThreadPaths> {
        let tenant = self.inside(self.layout.tenant(t))?;
        let (lock, fence) = self.layout.thread_guards(t, th);
        let lock = self.inside_below(&tenant, lock)?;
        let dir = self.inside_below(&tenant, self.layout.thread(t, th))?;
        self.inside_below(&dir, dir.join(CHECKPOINTS))?;
        Ok(ThreadPaths {
            tenant,
            lock,
            fence,
            dir,
        })
    }

    pub(super) fn put_checkpoint(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        c: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let fence = thread_fence(t, th, options.lease.as_ref())?;
        let ThreadPaths {
            tenant,
            lock,
            fence: fence_path,
            dir,
        } = self.thread_paths(t, th)?;
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        let raise = check_fence(&fence_path, fence)?;
        // Opened (not made) before anything is read: it may owe the files a redo or a
        // replay. A put that is refused below leaves no journal behind.
        let journal = self.open_journal(&dir, false)?;
        if let Some(existing) = self.load_checkpoint(&dir, c.id)? {
            return if existing.same_as(&c) {
                Ok(existing)
            } else {
                Err(Error::conflict(format!(
                    "checkpoint {} already exists with other content",
                    c.id
                )))
            };
        }
        let latest = self.latest_id(&dir)?;
        match (options.expect_latest, latest) {
            (ExpectLatest::Any, _) | (ExpectLatest::Absent, None) => {}
            (ExpectLatest::Is(want), Some(have)) if want == have => {}
            (want, have) => {
                return Err(Error::conflict(format!(
                    "expected latest checkpoint {want:?}, found {have:?}"
                )));
            }
        }
        record_fence(&fence_path, raise, self.durability)?;
        ensure_entry(&dir, th.as_str(), self.durability, || {
            self.thread_catalog_in(&tenant, t).map(Some)
        })?;
        let stored = StoredCheckpoint {
            id: c.id,
            parent: c.parent,
            step: c.step,
            state: c.state,
            metadata: c.metadata,
            created_at: Timestamp::now(),
        };
        let path = dir.join(CHECKPOINTS).join(c.id.to_string());
        let mut stored = stored;
        let bytes = crate::payload_record::encode(&mut stored)?;
        // The pointer first (see `latest_id`): it may name a checkpoint that a crash or
        // a failed write then loses, never lag behind one that exists.
        if latest.is_none_or(|l| c.id > l) {
            self.set_latest_pointer(&dir, c.id)?;
        }
        let journal = match journal {
            Some(journal) => Some(journal),
            None => self.open_journal(&dir, true)?,
        };
        match (journal, self.me.boot_id.as_deref()) {
            // Durable once in the journal (one flush); the file needs no sync of its own.
            (Some(mut journal), Some(boot)) if self.durability == Durability::Fsync => {
                let before = journal.append(boot, c.id, &bytes)?;
                let written = files::write_atomic(&path, &bytes, self.durability.no_sync());
                if let Err(e) = written {
                    journal.cut_back(before)?;
                    return Err(crate::error::io_error(&path, e));
                }
                journal.finish(self.durability)?;
            }
            _ => files::write_atomic(&path, &bytes, self.durability).at(&path)?,
        }
        Ok(stored.into())
    }

    pub(super) fn put_writes(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        id: CheckpointId,
        task: &TaskId,
        writes: Vec<Write>,
        fence: Option<Fence>,
    ) -> Result<()> {
        let ThreadPaths {
            lock,
            fence: fence_path,
            dir,
            ..
        } = self.thread_paths(t, th)?;
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        let raise = check_fence(&fence_path, fence)?;
        self.open_journal(&dir, false)?;
        if self.load_checkpoint(&dir, id)?.is_none() {
            return Err(Error::not_found(format!("checkpoint {id} does not exist")));
        }
        let path = self.inside_below(&dir, dir.join(WRITES).join(id.to_string()))?;
        // Under the lock: cut a torn batch left by a crash before appending after it.
        records::read_all(&path, true)
            .at(&path)?
            .map_err(|offset| corrupt(&path, format!("damaged record at offset {offset}")))?;
        let existing = self.load_writes(&dir, id)?;
        let mut payloads = Vec::new();
        for (index, write) in writes.into_iter().enumerate() {
            let index = u32::try_from(index)
                .map_err(|_| Error::invalid_input("too many writes in one batch"))?;
            if existing
                .iter()
                .any(|w| &w.task_id == task && w.index == index)
            {
                continue;
            }
            let mut record = PendingWrite::new(task.clone(), index, write.channel, write.value);
            let payload = crate::payload_record::encode(&mut record)?;
            payloads.push(payload);
        }
        record_fence(&fence_path, raise, self.durability)?;
        if !payloads.is_empty() {
            // One batch: after a crash or a failed write, all of it or none is there.
            let mut batch = Vec::new();
            records::frame_batch(payloads.iter().map(Vec::as_slice), &mut batch);
            records::append(&path, &batch, self.durability).at(&path)?;
        }
        Ok(())
    }
}
