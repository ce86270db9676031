//! Checkpoints of graph/agent runs: history, parents and pending writes per thread.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::ids::{ChannelName, CheckpointId, TaskId, TenantId, ThreadKey};
use crate::lock::Lease;
use crate::page::Page;
use crate::retention::{Retention, RetentionOutcome};
use crate::time::Timestamp;

mod query;
pub use query::{ListCheckpoints, ListThreads};

/// Free-form metadata of a checkpoint, filterable by top-level key.
pub type Metadata = BTreeMap<String, Value>;

/// A checkpoint to store. `S` is the state: [`Envelope`] at the object-safe layer, a
/// user type in [`TypedCheckpointer`](crate::TypedCheckpointer).
///
/// ```
/// use persistence_core::{CheckpointId, Envelope, NewCheckpoint, serde_json::json};
///
/// let first = NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, json!({})));
/// let next = NewCheckpoint::new(CheckpointId::new(), 1, Envelope::new(1, json!({"n": 1})))
///     .with_parent(first.id)
///     .with_metadata_entry("source", json!("loop"));
/// assert_eq!(next.parent, Some(first.id));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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

impl<S> NewCheckpoint<S> {
    /// A checkpoint without parent or metadata.
    pub fn new(id: CheckpointId, step: i64, state: S) -> Self {
        NewCheckpoint {
            id,
            parent: None,
            step,
            state,
            metadata: Metadata::new(),
        }
    }
    /// Same, continuing from `parent` (`None`: a first checkpoint).
    #[must_use]
    pub fn with_parent(mut self, parent: impl Into<Option<CheckpointId>>) -> Self {
        self.parent = parent.into();
        self
    }
    /// Same, with `metadata` in place of its metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
    /// Same, with one more metadata entry.
    #[must_use]
    pub fn with_metadata_entry(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }
    /// The same checkpoint with its state mapped by `f` (the typed layer encodes with it).
    ///
    /// # Errors
    /// What `f` returns.
    pub fn try_map_state<T, E>(
        self,
        f: impl FnOnce(S) -> std::result::Result<T, E>,
    ) -> std::result::Result<NewCheckpoint<T>, E> {
        Ok(NewCheckpoint {
            id: self.id,
            parent: self.parent,
            step: self.step,
            state: f(self.state)?,
            metadata: self.metadata,
        })
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// The stored form of `new`, stored at `created_at`. Backends build checkpoints
    /// with this.
    pub fn from_new(new: NewCheckpoint<S>, created_at: Timestamp) -> Self {
        Checkpoint {
            id: new.id,
            parent: new.parent,
            step: new.step,
            state: new.state,
            metadata: new.metadata,
            created_at,
        }
    }

    /// The same checkpoint with its state mapped by `f` (the typed layer decodes with it).
    ///
    /// # Errors
    /// What `f` returns.
    pub fn try_map_state<T, E>(
        self,
        f: impl FnOnce(S) -> std::result::Result<T, E>,
    ) -> std::result::Result<Checkpoint<T>, E> {
        Ok(Checkpoint {
            id: self.id,
            parent: self.parent,
            step: self.step,
            state: f(self.state)?,
            metadata: self.metadata,
            created_at: self.created_at,
        })
    }

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
#[non_exhaustive]
pub struct Write {
    /// Target channel.
    pub channel: ChannelName,
    /// The value.
    pub value: Envelope,
}

impl Write {
    /// A write of `value` to `channel`.
    pub fn new(channel: ChannelName, value: Envelope) -> Self {
        Write { channel, value }
    }
}

/// A stored pending write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

impl PendingWrite {
    /// Write number `index` of `task_id`'s batch. Backends build pending writes with this.
    pub fn new(task_id: TaskId, index: u32, channel: ChannelName, value: Envelope) -> Self {
        PendingWrite {
            task_id,
            index,
            channel,
            value,
        }
    }
}

/// A checkpoint with its pending writes, ordered by `(task_id, index)`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CheckpointTuple {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Pending writes recorded against it.
    pub pending_writes: Vec<PendingWrite>,
}

impl CheckpointTuple {
    /// `checkpoint` with `pending_writes` (ordered by `(task_id, index)`). Backends build
    /// tuples with this.
    pub fn new(checkpoint: Checkpoint, pending_writes: Vec<PendingWrite>) -> Self {
        CheckpointTuple {
            checkpoint,
            pending_writes,
        }
    }
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
///
/// Exhaustive on purpose, like [`CheckpointSelector`]: every backend must implement every
/// guard, so a new one is a breaking change rather than a variant a backend could
/// silently not support.
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
///
/// ```
/// use persistence_core::{CheckpointId, ExpectLatest, PutCheckpointOptions};
///
/// let parent = CheckpointId::new();
/// let options = PutCheckpointOptions::default().with_expect_latest(ExpectLatest::Is(parent));
/// assert_eq!(options.expect_latest, ExpectLatest::Is(parent));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PutCheckpointOptions {
    /// Fail `Conflict`, writing nothing, unless the latest checkpoint is as expected.
    pub expect_latest: ExpectLatest,
    /// Lease of the thread's own lock ([`LockKey::for_thread`](crate::LockKey::for_thread)):
    /// a fence lower than one already seen fails `Fenced`; a lease of another lock or
    /// tenant fails `InvalidInput`.
    pub lease: Option<Lease>,
}

impl PutCheckpointOptions {
    /// Same, guarded by `expect_latest`.
    #[must_use]
    pub fn with_expect_latest(mut self, expect_latest: ExpectLatest) -> Self {
        self.expect_latest = expect_latest;
        self
    }
    /// Same, fenced by `lease` (a lease of [`LockKey::for_thread`](crate::LockKey::for_thread)).
    #[must_use]
    pub fn with_lease(mut self, lease: &Lease) -> Self {
        self.lease = Some(lease.clone());
        self
    }
}

/// Request of [`Checkpointer::put_writes`]: the pending writes of one task against one
/// checkpoint.
///
/// ```
/// use persistence_core::{ChannelName, CheckpointId, Envelope, PutWrites, TaskId, Write};
/// use persistence_core::serde_json::json;
///
/// # fn main() -> persistence_core::Result<()> {
/// let writes = vec![Write::new(ChannelName::new("messages")?, Envelope::new(1, json!("hi")))];
/// let request = PutWrites::new(CheckpointId::new(), TaskId::new("task-1")?, writes);
/// assert_eq!(request.writes.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PutWrites {
    /// The checkpoint the writes belong to; it must exist.
    pub checkpoint: CheckpointId,
    /// The task that produced them.
    pub task: TaskId,
    /// The writes; write `i` gets index `i`.
    pub writes: Vec<Write>,
    /// Lease of the thread's own lock, as in [`PutCheckpointOptions::lease`].
    pub lease: Option<Lease>,
}

impl PutWrites {
    /// `writes` of `task` against `checkpoint`, unfenced.
    pub fn new(checkpoint: CheckpointId, task: TaskId, writes: Vec<Write>) -> Self {
        PutWrites {
            checkpoint,
            task,
            writes,
            lease: None,
        }
    }
    /// Same, fenced by `lease` (a lease of [`LockKey::for_thread`](crate::LockKey::for_thread)).
    #[must_use]
    pub fn with_lease(mut self, lease: &Lease) -> Self {
        self.lease = Some(lease.clone());
        self
    }
}

/// Which stored payload of a thread [`Checkpointer::replace_payload`] replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointPayload {
    /// The state of this checkpoint.
    State(CheckpointId),
    /// Pending write `index` of `task` against `checkpoint`.
    Write {
        /// The checkpoint the write is recorded against.
        checkpoint: CheckpointId,
        /// The task that wrote it.
        task: TaskId,
        /// Its index among the task's writes.
        index: u32,
    },
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
    /// `Fenced` if the lease's fence is below the thread's highest; `InvalidInput` if the
    /// lease is not of this tenant's [`LockKey::for_thread`](crate::LockKey::for_thread)
    /// lock; `Conflict` if the id exists with other content or `expect_latest` fails.
    /// Nothing is written on error.
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

    /// Records pending writes of a task against a checkpoint. Write `i` gets index `i`;
    /// an existing `(task, index)` is kept as is, so retries are safe.
    ///
    /// # Errors
    /// `NotFound` if the checkpoint does not exist; `Fenced` and `InvalidInput` for the
    /// lease as for `put`.
    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
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
    ///
    /// # Errors
    /// `InvalidInput` for a bad limit or cursor.
    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>>;

    /// Deletes the thread's checkpoints whose ids are at most `through` (ids sort by the
    /// time they were minted), with their pending writes, in one atomic step: a checkpoint
    /// put meanwhile has a greater id and stays. The fence high-water mark stays. Returns
    /// how many were deleted. What retention is built on.
    ///
    /// # Errors
    /// `Unsupported` on a backend without
    /// [`Capabilities::lifecycle`](crate::Capabilities::lifecycle) (this method's default).
    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        let _ = (tenant, thread, through);
        Err(crate::Error::unsupported(
            "prune_through: this backend does not declare Capabilities::lifecycle",
        ))
    }

    /// Applies a retention policy to one thread at time `now` (the caller's clock, against
    /// the writer's clock in the ids: see [`Retention`]). A thread idle past the policy's
    /// thread TTL is deleted; otherwise checkpoints older than `max_age` and beyond
    /// `keep_last` go, never the latest. Safe next to writers: a checkpoint put meanwhile
    /// is newer than anything this deletes by age or TTL, and a fenced writer keeps its
    /// fence (the high-water mark stays).
    ///
    /// # Errors
    /// `InvalidInput` for an invalid policy; `Unsupported` for an age or TTL rule on a
    /// backend without [`prune_through`](Self::prune_through).
    async fn apply_retention(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        policy: &Retention,
        now: Timestamp,
    ) -> Result<RetentionOutcome> {
        crate::retention::apply(self, tenant, thread, policy, now).await
    }

    /// Replaces one stored payload of a thread (a checkpoint's state or a pending write)
    /// with `new`, if it still equals `expected`; nothing else changes (ids, step,
    /// metadata, `created_at`, channels, order). Returns whether it replaced: `false`
    /// when the payload is absent (deleted meanwhile) or is no longer `expected`. For
    /// re-encoding what is stored (the codec's rekey) next to live writers; to everything
    /// else checkpoints stay immutable.
    ///
    /// # Errors
    /// `Unsupported` on a backend without
    /// [`Capabilities::replace`](crate::Capabilities::replace) (this method's default).
    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let _ = (tenant, thread, payload, expected, new);
        Err(crate::Error::unsupported(
            "replace_payload: this backend does not declare Capabilities::replace",
        ))
    }
}
