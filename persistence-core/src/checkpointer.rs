//! Checkpoints of graph/agent runs: history, parents and pending writes per thread.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::ids::{ChannelName, CheckpointId, TaskId, TenantId, ThreadKey};
use crate::lock::Fence;
use crate::page::{Cursor, Page};
use crate::time::Timestamp;

/// Free-form metadata of a checkpoint, filterable by top-level key.
pub type Metadata = BTreeMap<String, Value>;

/// A checkpoint to store. `S` is the state: [`Envelope`] at the object-safe layer, a
/// user type in [`TypedCheckpointer`](crate::TypedCheckpointer).
#[derive(Debug, Clone, PartialEq)]
pub struct NewCheckpoint<S = Envelope> {
    /// Its id (generate with [`CheckpointId::new`]).
    pub id: CheckpointId,
    /// The checkpoint this one continues from, if any.
    pub parent: Option<CheckpointId>,
    /// Step number in the run.
    pub step: i64,
    /// The state snapshot.
    pub state: S,
    /// Metadata, filterable in [`Checkpointer::list`].
    pub metadata: Metadata,
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint<S = Envelope> {
    /// Its id.
    pub id: CheckpointId,
    /// Its parent, if any.
    pub parent: Option<CheckpointId>,
    /// Step number in the run.
    pub step: i64,
    /// The state snapshot.
    pub state: S,
    /// Metadata.
    pub metadata: Metadata,
    /// When the backend stored it (backend clock).
    pub created_at: Timestamp,
}

impl<S> Checkpoint<S> {
    /// Whether `new` describes the same checkpoint (everything but `created_at`).
    pub fn same_as(&self, new: &NewCheckpoint<S>) -> bool
    where
        S: PartialEq,
    {
        self.id == new.id
            && self.parent == new.parent
            && self.step == new.step
            && self.state == new.state
            && self.metadata == new.metadata
    }
}

/// One pending write of a task, as given to [`Checkpointer::put_writes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// Target channel.
    pub channel: ChannelName,
    /// The value.
    pub value: Envelope,
}

/// A stored pending write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// Task that produced it.
    pub task_id: TaskId,
    /// Position in the task's batch.
    pub index: u32,
    /// Target channel.
    pub channel: ChannelName,
    /// The value.
    pub value: Envelope,
}

/// A checkpoint with its pending writes, ordered by `(task_id, index)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTuple {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Pending writes recorded against it.
    pub pending_writes: Vec<PendingWrite>,
}

/// Which checkpoint [`Checkpointer::get`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSelector {
    /// The one with the greatest id.
    Latest,
    /// This one.
    Id(CheckpointId),
}

/// Guard on the thread's latest checkpoint for [`Checkpointer::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectLatest {
    /// No guard.
    #[default]
    Any,
    /// The thread must have no checkpoint yet.
    Absent,
    /// The thread's latest checkpoint must be this one.
    Is(CheckpointId),
}

/// Options of [`Checkpointer::put`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PutCheckpointOptions {
    /// Fail `Conflict`, writing nothing, unless the latest checkpoint is as expected.
    pub expect_latest: ExpectLatest,
    /// Fence from the thread's lock; lower than one already seen fails `Fenced`.
    pub fence: Option<Fence>,
}

/// Query of [`Checkpointer::list`].
#[derive(Debug, Clone)]
pub struct ListCheckpoints {
    /// Only checkpoints with an id strictly below this one.
    pub before: Option<CheckpointId>,
    /// Page size, 1..=10 000.
    pub limit: usize,
    /// Only checkpoints whose metadata has each of these top-level keys with an equal
    /// value.
    pub metadata: Metadata,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
}

impl Default for ListCheckpoints {
    fn default() -> Self {
        ListCheckpoints {
            before: None,
            limit: 100,
            metadata: Metadata::new(),
            cursor: None,
        }
    }
}

impl ListCheckpoints {
    /// The exclusive upper id bound of the page: the lower of `before` and the cursor.
    /// Every backend encodes checkpoint cursors as the last id returned.
    ///
    /// # Errors
    /// `InvalidInput` if the cursor is not a checkpoint id.
    pub fn upper_bound(&self) -> Result<Option<CheckpointId>> {
        let after = self
            .cursor
            .as_ref()
            .map(|c| c.as_str().parse::<CheckpointId>().map_err(|_| c.invalid()))
            .transpose()?;
        Ok(match (self.before, after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Whether `metadata` has every key of the query's filter with an equal value
    /// (numbers compare by value).
    pub fn matches(&self, metadata: &Metadata) -> bool {
        self.metadata.iter().all(|(k, v)| {
            metadata
                .get(k)
                .is_some_and(|have| crate::filter::json_values_equal(have, v))
        })
    }
}

/// Snapshots of graph/agent runs, keyed by tenant and thread.
///
/// Ordering is by [`CheckpointId`] (UUIDv7: creation time); "latest" is the greatest id.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Stores a checkpoint.
    ///
    /// Idempotent: putting the same checkpoint again succeeds without change (so a retry
    /// after a lost reply is safe), even when `expect_latest` no longer holds.
    ///
    /// # Errors
    /// `Fenced` if `fence` is below the thread's highest; `Conflict` if the id exists
    /// with other content or `expect_latest` fails. Nothing is written on error.
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint>;

    /// The latest checkpoint or the one with the given id, with its pending writes;
    /// `None` if absent.
    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>>;

    /// History, newest first, one page at a time.
    ///
    /// # Errors
    /// `InvalidInput` for a bad limit or cursor.
    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>>;

    /// Records pending writes of `task` against a checkpoint. Write `i` gets index `i`;
    /// an existing `(task, index)` is kept as is, so retries are safe.
    ///
    /// # Errors
    /// `NotFound` if the checkpoint does not exist; `Fenced` as for `put`.
    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: CheckpointId,
        task: &TaskId,
        writes: Vec<Write>,
        fence: Option<Fence>,
    ) -> Result<()>;

    /// Deletes every checkpoint and write of a thread. Returns whether it existed.
    /// The thread's fence high-water mark is kept.
    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool>;

    /// Deletes all but the `keep_latest` newest checkpoints (and their writes).
    /// Returns how many were deleted.
    ///
    /// # Errors
    /// `InvalidInput` if `keep_latest` is 0 (use `delete_thread`).
    async fn prune(&self, tenant: &TenantId, thread: &ThreadKey, keep_latest: usize)
    -> Result<u64>;

    /// Copies (forks) a thread's checkpoints and writes to an empty thread. Returns how
    /// many checkpoints were copied.
    ///
    /// # Errors
    /// `NotFound` if `from` has no checkpoint; `Conflict` if `to` has any.
    async fn copy_thread(&self, tenant: &TenantId, from: &ThreadKey, to: &ThreadKey)
    -> Result<u64>;

    /// Threads that have at least one checkpoint, in ascending id order.
    async fn list_threads(
        &self,
        tenant: &TenantId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<ThreadKey>>;
}
