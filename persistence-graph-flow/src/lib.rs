//! [graph-flow](https://docs.rs/graph-flow)'s [`SessionStorage`] over this workspace's
//! [`Checkpointer`]: a graph-flow session is a thread, each save a checkpoint. Any
//! backend works (memory, filesystem, PostgreSQL, Redis, Redis Cluster, a third-party
//! one), every session belongs to a [`TenantId`], and switching storage is one
//! constructor:
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use graph_flow::{Session, SessionStorage};
//! use persistence::TenantId;
//! use persistence_graph_flow::CheckpointSessionStorage;
//!
//! let p = persistence::open("memory://").await?;
//! let storage = Arc::new(CheckpointSessionStorage::new(
//!     p.checkpointer.clone(),
//!     TenantId::new("acme")?,
//! ));
//! // From here on, what graph-flow's own storages do: `FlowRunner::new(graph, storage)`.
//! storage.save(Session::new_from_task("chat-1".into(), "start")).await?;
//! let session = storage.get("chat-1").await?.expect("saved");
//! assert_eq!(session.version, 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(demo())
//! # .map_err(|e| e.to_string())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The contract it keeps
//!
//! graph-flow 0.8 documents for `SessionStorage`: "Implementations must enforce
//! optimistic locking: `save` succeeds only when the incoming session's `version`
//! matches the stored version (or the session does not exist yet), and increments the
//! stored version on success. A mismatch returns `GraphError::SessionConflict`." Here:
//!
//! - The stored version of a session is the step of its latest checkpoint (a saved
//!   session at version `n` is the checkpoint of step `n`). A save of version `v` writes
//!   the checkpoint of step `v + 1` with `ExpectLatest::Is` the checkpoint of step `v`
//!   (`ExpectLatest::Absent` for `v = 0`), so of two executors that loaded the same
//!   version, exactly one saves and the other gets `SessionConflict`, on every backend
//!   (the conformance suite checks `expect_latest` under contention).
//! - `get` returns the latest checkpoint's session with `version` set to its step;
//!   `delete` deletes the thread (its checkpoints; a fence it had stays).
//! - A session's earlier versions stay readable as checkpoints:
//!   [`CheckpointSessionStorage::history`], and `persistence inspect thread`.
//!
//! # Where it differs from graph-flow's own storages
//!
//! - Session ids are mapped to thread ids ([`CheckpointSessionStorage::thread_of`]):
//!   the prefix (default `graph-flow/`), then the id with `%` and control characters
//!   percent-encoded, so two different ids never share a thread. An id whose thread id
//!   would exceed 512 bytes, or an empty one, is refused with `StorageError`.
//! - Every save keeps a checkpoint: storage grows with the steps of a session until a
//!   retention policy prunes it (the facade's `Sweeper`, or
//!   `Checkpointer::apply_retention`). graph-flow's storages keep the latest version
//!   only.
//! - A save is two round trips (the latest checkpoint, then the guarded put);
//!   graph-flow's Postgres storage makes one.
//! - Errors of the backend become `GraphError::StorageError` with the backend's message
//!   (never a payload); a lost race is `SessionConflict`.
//! - Graphs themselves (`GraphStorage`) hold code (`Arc<dyn Task>`) and are not stored.

#![deny(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use graph_flow::{GraphError, Session, SessionStorage};
use persistence::{
    CheckpointId, CheckpointSelector, Checkpointer, Envelope, ErrorKind, ExpectLatest,
    ListCheckpoints, NewCheckpoint, PutCheckpointOptions, TenantId, ThreadKey, foreign_key,
};

/// The schema version of the stored session (graph-flow's `Session` as JSON).
pub const SESSION_SCHEMA: u32 = 1;

/// The default prefix of the thread ids of graph-flow sessions.
pub const DEFAULT_PREFIX: &str = "graph-flow/";

/// graph-flow sessions as checkpointed threads of one tenant. Cheap to clone.
#[derive(Clone)]
pub struct CheckpointSessionStorage {
    checkpointer: Arc<dyn Checkpointer>,
    tenant: TenantId,
    prefix: String,
}

impl std::fmt::Debug for CheckpointSessionStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSessionStorage")
            .field("tenant", &self.tenant)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl CheckpointSessionStorage {
    /// Sessions of `tenant` in `checkpointer`, under thread ids starting with
    /// [`DEFAULT_PREFIX`].
    pub fn new(checkpointer: Arc<dyn Checkpointer>, tenant: TenantId) -> Self {
        CheckpointSessionStorage {
            checkpointer,
            tenant,
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }

    /// Same, with thread ids starting with `prefix` (e.g. one per graph or application
    /// sharing a tenant). The prefix is taken as it is: two storages whose prefixes are
    /// not each other's prefix never see each other's sessions.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The tenant its sessions belong to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The thread of session `session_id`: [`foreign_key`]`(prefix, session_id)`, the
    /// prefix, then the id with `%` and control characters percent-encoded (their UTF-8
    /// bytes as `%XX`), so the mapping is one-to-one.
    ///
    /// # Errors
    /// `StorageError` for an empty id, or one whose thread id is longer than 512 bytes.
    pub fn thread_of(&self, session_id: &str) -> graph_flow::Result<ThreadKey> {
        foreign_key(&self.prefix, session_id)
            .and_then(ThreadKey::new)
            .map_err(|e| {
                GraphError::StorageError(format!(
                    "graph-flow session id has no thread id: {}",
                    e.message()
                ))
            })
    }

    /// The saved versions of a session, newest first, at most `limit` (1..=10 000): what
    /// each save stored, with `version` set.
    ///
    /// # Errors
    /// `StorageError` for a bad id or limit, or when the backend fails.
    pub async fn history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> graph_flow::Result<Vec<Session>> {
        let thread = self.thread_of(session_id)?;
        let page = self
            .checkpointer
            .list(
                &self.tenant,
                &thread,
                ListCheckpoints::default().with_limit(limit),
            )
            .await
            .map_err(storage_error)?;
        page.items
            .into_iter()
            .map(|c| decode(&c.state, c.step))
            .collect()
    }
}

/// A backend error as graph-flow reports storage failures (messages carry ids and
/// kinds, never payloads).
fn storage_error(e: persistence::Error) -> GraphError {
    GraphError::StorageError(e.to_string())
}

fn decode(state: &Envelope, step: i64) -> graph_flow::Result<Session> {
    let mut session: Session = serde_json::from_value(state.data.clone())
        .map_err(|e| GraphError::StorageError(format!("a stored session does not decode: {e}")))?;
    session.version = u64::try_from(step)
        .map_err(|_| GraphError::StorageError(format!("a stored session has step {step}")))?;
    Ok(session)
}

#[async_trait]
impl SessionStorage for CheckpointSessionStorage {
    /// Saves `session` as the checkpoint of step `version + 1`, if the session's latest
    /// checkpoint is still the one of step `version` (none for 0).
    async fn save(&self, mut session: Session) -> graph_flow::Result<()> {
        let thread = self.thread_of(&session.id)?;
        let loaded = session.version;
        let step = i64::try_from(loaded)
            .ok()
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| GraphError::StorageError(format!("session version {loaded}")))?;
        let latest = self
            .checkpointer
            .get(&self.tenant, &thread, CheckpointSelector::Latest)
            .await
            .map_err(storage_error)?
            .map(|t| (t.checkpoint.id, t.checkpoint.step));
        let id = session.id.clone();
        let conflict = |stored: &str| {
            GraphError::SessionConflict(format!(
                "session '{id}' was modified concurrently (stored version {stored}, \
                 attempted save from version {loaded})"
            ))
        };
        let (expect, parent) = match latest {
            None if loaded == 0 => (ExpectLatest::Absent, None),
            None => return Err(conflict("none")),
            Some((id, stored)) if stored == step - 1 => (ExpectLatest::Is(id), Some(id)),
            Some((_, stored)) => return Err(conflict(&stored.to_string())),
        };
        session.version = loaded + 1;
        let data = serde_json::to_value(&session).map_err(|e| {
            GraphError::StorageError(format!("the session does not serialize: {e}"))
        })?;
        let checkpoint = NewCheckpoint::new(
            CheckpointId::new(),
            step,
            Envelope::new(SESSION_SCHEMA, data),
        )
        .with_parent(parent)
        .with_metadata_entry("graph_id", session.graph_id.clone().into())
        .with_metadata_entry("task", session.current_task_id.clone().into());
        let options = PutCheckpointOptions::default().with_expect_latest(expect);
        match self
            .checkpointer
            .put(&self.tenant, &thread, checkpoint, options)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Conflict => Err(conflict("newer, saved meanwhile")),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn get(&self, id: &str) -> graph_flow::Result<Option<Session>> {
        // An id with no thread id was never saved.
        let Ok(thread) = self.thread_of(id) else {
            return Ok(None);
        };
        let latest = self
            .checkpointer
            .get(&self.tenant, &thread, CheckpointSelector::Latest)
            .await
            .map_err(storage_error)?;
        latest
            .map(|t| decode(&t.checkpoint.state, t.checkpoint.step))
            .transpose()
    }

    async fn delete(&self, id: &str) -> graph_flow::Result<()> {
        let Ok(thread) = self.thread_of(id) else {
            return Ok(());
        };
        self.checkpointer
            .delete_thread(&self.tenant, &thread)
            .await
            .map_err(storage_error)?;
        Ok(())
    }
}
