//! A walk over every stored payload of a tenant, a batch at a time, read from the
//! backend's own traits (below the codec): what [`key_usage`](crate::key_usage) counts
//! and [`rekey`](crate::rekey) rewrites.

use async_trait::async_trait;
use persistence_core::{
    CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey, ListCheckpoints, ListItems,
    ListNamespaces, ListSessions, ListThreads, Namespace, Result, SessionKey, SessionLog, Store,
    TaskId, TenantId, ThreadKey, Timestamp,
};

use crate::Row;

/// A backend's own traits, below any codec: payloads as they are stored. What
/// [`key_usage`](crate::key_usage) and [`rekey`](crate::rekey) read (through a codec
/// every payload reads as opened).
#[derive(Clone, Copy)]
pub struct Stored<'a> {
    /// Checkpoint states and pending writes.
    pub checkpointer: &'a dyn Checkpointer,
    /// Store values.
    pub store: &'a dyn Store,
    /// Session events.
    pub sessions: &'a dyn SessionLog,
}

impl std::fmt::Debug for Stored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored").finish_non_exhaustive()
    }
}

/// Where a payload is stored.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    Checkpoint {
        thread: ThreadKey,
        id: CheckpointId,
    },
    Write {
        thread: ThreadKey,
        checkpoint: CheckpointId,
        task: TaskId,
        index: u32,
    },
    Item {
        namespace: Namespace,
        key: ItemKey,
        version: u64,
        expires_at: Option<Timestamp>,
    },
    Event {
        session: SessionKey,
        seq: u64,
    },
}

impl Place {
    /// The row the payload stored here is bound to.
    pub(crate) fn row(&self) -> Row<'_> {
        match self {
            Place::Checkpoint { thread, id } => Row::Checkpoint { thread, id: *id },
            Place::Write {
                thread,
                checkpoint,
                task,
                index,
            } => Row::Write {
                thread,
                checkpoint: *checkpoint,
                task: task.as_str(),
                index: *index,
            },
            Place::Item {
                namespace,
                key,
                version,
                ..
            } => Row::Item {
                namespace,
                key,
                version: *version,
            },
            Place::Event { session, seq } => Row::Event { session, seq: *seq },
        }
    }
}

/// A stored payload and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) place: Place,
    pub(crate) payload: Envelope,
}

/// What a walk hands its batches to.
#[async_trait]
pub(crate) trait Visitor: Send {
    /// One batch of payloads (at most the walk's batch size); `false` stops the walk.
    async fn visit(&mut self, batch: Vec<Found>) -> Result<bool>;
}

/// Reads every payload of `tenant`, `batch` listed at a time (a checkpoint's pending
/// writes come with it), and hands them to `visitor`: checkpoints thread by thread,
/// then sessions, then store items. Returns whether it reached the end (`false`: the
/// visitor stopped it).
///
/// # Errors
/// Whatever a listing, a read or the visitor fails with.
pub(crate) async fn walk(
    stored: Stored<'_>,
    tenant: &TenantId,
    batch: usize,
    visitor: &mut dyn Visitor,
) -> Result<bool> {
    Ok(
        walk_checkpoints(stored.checkpointer, tenant, batch, visitor).await?
            && walk_sessions(stored.sessions, tenant, batch, visitor).await?
            && walk_items(stored.store, tenant, batch, visitor).await?,
    )
}

async fn walk_checkpoints(
    checkpointer: &dyn Checkpointer,
    tenant: &TenantId,
    batch: usize,
    visitor: &mut dyn Visitor,
) -> Result<bool> {
    let mut threads_cursor = None;
    loop {
        let query = ListThreads::default()
            .with_limit(batch)
            .with_cursor(threads_cursor);
        let threads = checkpointer.list_threads(tenant, query).await?;
        for thread in &threads.items {
            let mut cursor = None;
            loop {
                let query = ListCheckpoints::default()
                    .with_limit(batch)
                    .with_cursor(cursor);
                let page = checkpointer.list(tenant, thread, query).await?;
                let mut found = Vec::with_capacity(page.items.len());
                for c in page.items {
                    let with_writes = checkpointer
                        .get(tenant, thread, CheckpointSelector::Id(c.id))
                        .await?;
                    found.push(Found {
                        place: Place::Checkpoint {
                            thread: thread.clone(),
                            id: c.id,
                        },
                        payload: c.state,
                    });
                    for w in with_writes.into_iter().flat_map(|t| t.pending_writes) {
                        found.push(Found {
                            place: Place::Write {
                                thread: thread.clone(),
                                checkpoint: c.id,
                                task: w.task_id,
                                index: w.index,
                            },
                            payload: w.value,
                        });
                    }
                }
                if !visitor.visit(found).await? {
                    return Ok(false);
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        match threads.next {
            Some(next) => threads_cursor = Some(next),
            None => return Ok(true),
        }
    }
}

async fn walk_sessions(
    sessions: &dyn SessionLog,
    tenant: &TenantId,
    batch: usize,
    visitor: &mut dyn Visitor,
) -> Result<bool> {
    let mut sessions_cursor = None;
    loop {
        let query = ListSessions::default()
            .with_limit(batch)
            .with_cursor(sessions_cursor);
        let page = sessions.list_sessions(tenant, query).await?;
        for session in &page.items {
            let mut after = 0;
            loop {
                let events = sessions.read(tenant, session, after, batch).await?;
                let full = events.len() == batch;
                let last = events.last().map(|e| e.seq);
                let found = events
                    .into_iter()
                    .map(|e| Found {
                        place: Place::Event {
                            session: session.clone(),
                            seq: e.seq,
                        },
                        payload: e.event,
                    })
                    .collect();
                if !visitor.visit(found).await? {
                    return Ok(false);
                }
                match last {
                    Some(last) if full => after = last,
                    _ => break,
                }
            }
        }
        match page.next {
            Some(next) => sessions_cursor = Some(next),
            None => return Ok(true),
        }
    }
}

async fn walk_items(
    store: &dyn Store,
    tenant: &TenantId,
    batch: usize,
    visitor: &mut dyn Visitor,
) -> Result<bool> {
    let mut namespaces_cursor = None;
    loop {
        let query = ListNamespaces::default()
            .with_limit(batch)
            .with_cursor(namespaces_cursor);
        let page = store.list_namespaces(tenant, query).await?;
        for namespace in &page.items {
            let mut cursor = None;
            loop {
                let query = ListItems::default().with_limit(batch).with_cursor(cursor);
                let items = store.list(tenant, namespace, query).await?;
                let found = items
                    .items
                    .into_iter()
                    .map(|item| Found {
                        place: Place::Item {
                            namespace: item.namespace,
                            key: item.key,
                            version: item.version,
                            expires_at: item.expires_at,
                        },
                        payload: item.value,
                    })
                    .collect();
                if !visitor.visit(found).await? {
                    return Ok(false);
                }
                match items.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        match page.next {
            Some(next) => namespaces_cursor = Some(next),
            None => return Ok(true),
        }
    }
}
