//! [`GraphCheckpointer`]: adk-graph's `Checkpointer` over this workspace's checkpointer
//! and store.

use std::sync::Arc;

use adk_graph::checkpoint::{Checkpointer as AdkCheckpointer, RetentionPolicy};
use adk_graph::error::GraphError;
use adk_graph::state::Checkpoint;
use async_trait::async_trait;
use persistence::{
    CheckpointId, CheckpointSelector, Checkpointer, Envelope, ErrorKind, ItemKey, ListCheckpoints,
    Namespace, NewCheckpoint, PutCheckpointOptions, PutItemOptions, Store, TenantId, ThreadKey,
    foreign_key,
};
use serde_json::{Value, json};

use crate::error::checkpoint_error;
use crate::part;

/// Schema version of a stored adk-graph checkpoint (adk's `Checkpoint` as JSON) and of
/// its index item.
pub const GRAPH_SCHEMA: u32 = 1;

/// The prefix of the thread ids of adk-graph threads.
pub const GRAPH_THREAD_PREFIX: &str = "adk-graph/";

/// The store namespace of the index from adk checkpoint ids to their threads.
const INDEX_NAMESPACE: &str = "adk-graph-checkpoints";

/// Checkpoints listed per round trip.
const LIST_BATCH: usize = 1000;

/// adk-graph checkpoints of one tenant. Cheap to clone.
///
/// Each adk thread is the thread [`thread_of`](Self::thread_of) of `checkpointer`; each
/// adk checkpoint is a checkpoint there, under a UUIDv7 minted when it is first saved.
/// An index item in `store` (namespace `["adk-graph-checkpoints"]`, keyed by adk's
/// checkpoint id) maps adk's id to that thread and UUIDv7: it is what finds a checkpoint
/// by id alone ([`load_by_id`](AdkCheckpointer::load_by_id)), and it makes a save retried
/// after a lost reply store the same checkpoint again instead of a second one.
#[derive(Clone)]
pub struct GraphCheckpointer {
    checkpointer: Arc<dyn Checkpointer>,
    store: Arc<dyn Store>,
    tenant: TenantId,
}

impl std::fmt::Debug for GraphCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphCheckpointer")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Where an adk checkpoint id points: its adk thread and the UUIDv7 it is stored under.
struct IndexEntry {
    thread: String,
    id: CheckpointId,
}

impl IndexEntry {
    fn to_json(&self) -> Value {
        json!({"thread": self.thread, "id": self.id.to_string()})
    }

    fn from_json(data: &Value) -> adk_graph::error::Result<Self> {
        let thread = data["thread"].as_str();
        let id = data["id"]
            .as_str()
            .and_then(|s| s.parse::<CheckpointId>().ok());
        match (thread, id) {
            (Some(thread), Some(id)) => Ok(IndexEntry {
                thread: thread.to_string(),
                id,
            }),
            _ => Err(GraphError::CheckpointError(
                "a stored checkpoint index entry does not decode".into(),
            )),
        }
    }
}

fn decode(state: &Envelope) -> adk_graph::error::Result<Checkpoint> {
    serde_json::from_value(state.data.clone()).map_err(|e| {
        GraphError::CheckpointError(format!(
            "a stored adk-graph checkpoint does not decode: {e}"
        ))
    })
}

impl GraphCheckpointer {
    /// adk-graph checkpoints of `tenant`: checkpoints in `checkpointer`, the id index in
    /// `store` (usually both of one [`persistence::Persistence`]).
    pub fn new(
        checkpointer: Arc<dyn Checkpointer>,
        store: Arc<dyn Store>,
        tenant: TenantId,
    ) -> Self {
        GraphCheckpointer {
            checkpointer,
            store,
            tenant,
        }
    }

    /// The tenant its checkpoints belong to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The thread of adk thread `thread_id`: [`foreign_key`]`("adk-graph/", thread_id)`,
    /// one to one.
    ///
    /// # Errors
    /// `CheckpointError` for an empty id, or one whose thread id is longer than 512
    /// bytes.
    pub fn thread_of(&self, thread_id: &str) -> adk_graph::error::Result<ThreadKey> {
        foreign_key(GRAPH_THREAD_PREFIX, thread_id)
            .and_then(ThreadKey::new)
            .map_err(|e| {
                GraphError::CheckpointError(format!(
                    "adk-graph thread id has no thread key: {}",
                    e.message()
                ))
            })
    }

    fn index_at() -> adk_graph::error::Result<Namespace> {
        Namespace::new([INDEX_NAMESPACE]).map_err(checkpoint_error)
    }

    fn index_key(checkpoint_id: &str) -> adk_graph::error::Result<ItemKey> {
        ItemKey::new(part(checkpoint_id)).map_err(|e| {
            GraphError::CheckpointError(format!("adk-graph checkpoint id: {}", e.message()))
        })
    }

    async fn index_entry(
        &self,
        checkpoint_id: &str,
    ) -> adk_graph::error::Result<Option<IndexEntry>> {
        let ns = Self::index_at()?;
        let Ok(key) = Self::index_key(checkpoint_id) else {
            // An id with no key was never saved.
            return Ok(None);
        };
        self.store
            .get(&self.tenant, &ns, &key)
            .await
            .map_err(checkpoint_error)?
            .map(|item| IndexEntry::from_json(&item.value.data))
            .transpose()
    }

    /// The UUIDv7 adk checkpoint `checkpoint` is stored under: the one its index entry
    /// names, or a fresh one, indexed first (so a checkpoint is never stored without its
    /// entry).
    async fn stored_id(&self, checkpoint: &Checkpoint) -> adk_graph::error::Result<CheckpointId> {
        let ns = Self::index_at()?;
        let key = Self::index_key(&checkpoint.checkpoint_id)?;
        let fresh = IndexEntry {
            thread: checkpoint.thread_id.clone(),
            id: CheckpointId::new(),
        };
        let absent = PutItemOptions::default().with_if_version(0);
        let value = Envelope::new(GRAPH_SCHEMA, fresh.to_json());
        let entry = match self.store.put(&self.tenant, &ns, &key, value, absent).await {
            Ok(_) => return Ok(fresh.id),
            Err(e) if e.kind() == ErrorKind::Conflict => self
                .index_entry(&checkpoint.checkpoint_id)
                .await?
                .ok_or_else(|| {
                    GraphError::CheckpointError(
                        "an adk-graph checkpoint index entry changed under a save".into(),
                    )
                })?,
            Err(e) => return Err(checkpoint_error(e)),
        };
        if entry.thread != checkpoint.thread_id {
            return Err(GraphError::CheckpointError(format!(
                "adk-graph checkpoint id '{}' is already saved for another thread",
                checkpoint.checkpoint_id
            )));
        }
        Ok(entry.id)
    }

    /// Every checkpoint of a thread, newest first, with the UUIDv7 each is stored under.
    async fn all(
        &self,
        thread: &ThreadKey,
    ) -> adk_graph::error::Result<Vec<(CheckpointId, Checkpoint)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let query = ListCheckpoints::default()
                .with_limit(LIST_BATCH)
                .with_cursor(cursor);
            let page = self
                .checkpointer
                .list(&self.tenant, thread, query)
                .await
                .map_err(checkpoint_error)?;
            for c in &page.items {
                out.push((c.id, decode(&c.state)?));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Deletes the index entries of checkpoints that are gone. An entry left behind (by a
    /// crash before this) names a checkpoint that no longer exists: `load_by_id` then
    /// finds nothing, as for an id never saved.
    async fn unindex(
        &self,
        checkpoints: &[(CheckpointId, Checkpoint)],
    ) -> adk_graph::error::Result<()> {
        let ns = Self::index_at()?;
        for (_, checkpoint) in checkpoints {
            let key = Self::index_key(&checkpoint.checkpoint_id)?;
            self.store
                .delete(&self.tenant, &ns, &key, None)
                .await
                .map_err(checkpoint_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl AdkCheckpointer for GraphCheckpointer {
    /// Stores `checkpoint` under its thread and returns its (adk) id. Saving the same
    /// checkpoint again stores nothing new.
    ///
    /// # Errors
    /// `CheckpointError` for an id or thread id with no key, a checkpoint id already
    /// saved for another thread or with other content, or a backend failure.
    async fn save(&self, checkpoint: &Checkpoint) -> adk_graph::error::Result<String> {
        let thread = self.thread_of(&checkpoint.thread_id)?;
        let step = i64::try_from(checkpoint.step).map_err(|_| {
            GraphError::CheckpointError(format!("checkpoint step {} is too large", checkpoint.step))
        })?;
        let data = serde_json::to_value(checkpoint)?;
        let id = self.stored_id(checkpoint).await?;
        let new = NewCheckpoint::new(id, step, Envelope::new(GRAPH_SCHEMA, data))
            .with_metadata_entry("adk_checkpoint_id", checkpoint.checkpoint_id.clone().into());
        match self
            .checkpointer
            .put(&self.tenant, &thread, new, PutCheckpointOptions::default())
            .await
        {
            Ok(_) => Ok(checkpoint.checkpoint_id.clone()),
            Err(e) if e.kind() == ErrorKind::Conflict => Err(GraphError::CheckpointError(format!(
                "adk-graph checkpoint '{}' is already saved with other content",
                checkpoint.checkpoint_id
            ))),
            Err(e) => Err(checkpoint_error(e)),
        }
    }

    /// The thread's checkpoint saved last (the greatest UUIDv7: by the savers' clocks).
    async fn load(&self, thread_id: &str) -> adk_graph::error::Result<Option<Checkpoint>> {
        let Ok(thread) = self.thread_of(thread_id) else {
            return Ok(None);
        };
        self.checkpointer
            .get(&self.tenant, &thread, CheckpointSelector::Latest)
            .await
            .map_err(checkpoint_error)?
            .map(|t| decode(&t.checkpoint.state))
            .transpose()
    }

    async fn load_by_id(
        &self,
        checkpoint_id: &str,
    ) -> adk_graph::error::Result<Option<Checkpoint>> {
        let Some(entry) = self.index_entry(checkpoint_id).await? else {
            return Ok(None);
        };
        let thread = self.thread_of(&entry.thread)?;
        let found = self
            .checkpointer
            .get(&self.tenant, &thread, CheckpointSelector::Id(entry.id))
            .await
            .map_err(checkpoint_error)?;
        found.map(|t| decode(&t.checkpoint.state)).transpose()
    }

    /// Every checkpoint of the thread, oldest first (as adk's in-memory and SQLite
    /// checkpointers list).
    async fn list(&self, thread_id: &str) -> adk_graph::error::Result<Vec<Checkpoint>> {
        let Ok(thread) = self.thread_of(thread_id) else {
            return Ok(Vec::new());
        };
        Ok(self
            .all(&thread)
            .await?
            .into_iter()
            .rev()
            .map(|(_, c)| c)
            .collect())
    }

    /// Deletes the thread's checkpoints, then their index entries.
    async fn delete(&self, thread_id: &str) -> adk_graph::error::Result<()> {
        let Ok(thread) = self.thread_of(thread_id) else {
            return Ok(());
        };
        let gone = self.all(&thread).await?;
        self.checkpointer
            .delete_thread(&self.tenant, &thread)
            .await
            .map_err(checkpoint_error)?;
        self.unindex(&gone).await
    }

    /// Removes what `policy` discards ([`RetentionPolicy::expired`], adk's own choice),
    /// newest kept, in one atomic step of the backend (`prune_through`): a checkpoint
    /// saved meanwhile is newer and stays. Should the savers' clocks disagree with
    /// `created_at` order, only the oldest checkpoints up to the first one the policy
    /// keeps are removed: never one it keeps.
    ///
    /// # Errors
    /// `CheckpointError` when the backend fails, or does not declare
    /// `Capabilities::lifecycle` (no `prune_through`) while the policy discards something.
    async fn prune(
        &self,
        thread_id: &str,
        policy: &RetentionPolicy,
    ) -> adk_graph::error::Result<usize> {
        let Ok(thread) = self.thread_of(thread_id) else {
            return Ok(0);
        };
        let all = self.all(&thread).await?;
        let checkpoints: Vec<Checkpoint> = all.iter().map(|(_, c)| c.clone()).collect();
        let expired = policy.expired(&checkpoints);
        // Oldest first: the run of expired checkpoints at the old end.
        let removable: Vec<(CheckpointId, Checkpoint)> = all
            .into_iter()
            .rev()
            .take_while(|(_, c)| expired.contains(&c.checkpoint_id))
            .collect();
        let Some((through, _)) = removable.last() else {
            return Ok(0);
        };
        let removed = self
            .checkpointer
            .prune_through(&self.tenant, &thread, through)
            .await
            .map_err(checkpoint_error)?;
        self.unindex(&removable).await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}
