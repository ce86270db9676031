//! [rig](https://docs.rs/rig-core)'s [`Conversation`] kept in this workspace's storage:
//! its changes as the events of a session log, a snapshot of the whole conversation as
//! a checkpoint every so many changes, on any backend, per [`TenantId`].
//!
//! ```
//! # async fn demo() -> persistence::Result<()> {
//! use persistence::TenantId;
//! use persistence_rig::ConversationStore;
//! use rig_core::conversation::Conversation;
//! use rig_core::message::Message;
//!
//! let p = persistence::open("memory://").await?;
//! let store = ConversationStore::new(p.sessions.clone(), p.checkpointer.clone(), TenantId::new("acme")?);
//! let mut conversation = Conversation::new();
//! conversation.push(Message::user("Hello"));
//! conversation.push(Message::assistant("Hi! How can I help?"));
//! store.save("chat-1", &mut conversation).await?;
//! let loaded = store.load("chat-1").await?.expect("saved");
//! assert_eq!(loaded, conversation);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # The contract it keeps
//!
//! rig 0.46 documents how a store keeps a conversation: every edit "builds a
//! [`Change`], applies it with the same code a fold
//! ([`apply`](Conversation::apply)) uses, and keeps it in the outbox"; "A store appends
//! a value's unsaved changes to a log only when the value holds what that log holds
//! ([`Conversation::continues`]): its lineage, and as many of its changes"; and once it
//! loaded the value from a log or saved it there, a store calls
//! [`Conversation::continue_log`]. Here:
//!
//! - A conversation is the session `rig/{id}` (see [`persistence::foreign_key`]): event
//!   1 names the log's [`Lineage`], each later event is one
//!   [`ChangeRecord`]. A save appends the outbox with `expect_head` at the head the value
//!   continues, so of two writers that loaded the same conversation, the first saves and
//!   the second fails `Conflict` (load again and redo its edits): nothing is lost or
//!   interleaved.
//! - A value that does not continue the log (another conversation's, one read back from
//!   its serde form, one that missed changes) is refused with `Conflict`, except onto an
//!   empty log, which it starts whole (a `Reset` change, as rig prescribes).
//! - Every [`snapshot_every`](ConversationStore::with_snapshot_every) changes (default
//!   64) the whole conversation is put as a checkpoint of thread `rig/{id}` at the
//!   log's head, so a load reads the latest snapshot and the changes after it, never the
//!   whole log. A crash between the append and the snapshot only delays the snapshot.
//! - [`ConversationStore::delete`] deletes the log and the snapshots.
//!
//! # Where it differs
//!
//! - rig's own stores keep the outbox in memory until saved; so does this one: edits
//!   not passed to [`save`](ConversationStore::save) are lost with the process.
//! - Unsaved asides stay unsaved, as rig defines them.
//! - Errors are this workspace's [`persistence::Error`]: `Conflict` for a lost race or a
//!   value that does not continue the log, `Corrupt` for a stored change that does not
//!   decode or apply, `InvalidInput` for an id without a key.

#![deny(missing_docs)]

use std::sync::Arc;

use persistence::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, Envelope, Error, ErrorKind,
    NewCheckpoint, PutCheckpointOptions, Result, SessionKey, SessionLog, TenantId, ThreadKey,
    foreign_key,
};
use rig_core::conversation::{Change, ChangeRecord, Conversation, Lineage};
use serde_json::{Value, json};

/// Schema version of the events (the log's header and [`ChangeRecord`]s) and snapshots.
pub const CONVERSATION_SCHEMA: u32 = 1;

/// Session and thread ids of conversations start with this.
pub const PREFIX: &str = "rig/";

/// Events read per round trip when a conversation is loaded.
const READ_BATCH: usize = 500;

/// Conversations of one tenant: their change logs and snapshots. Cheap to clone.
#[derive(Clone)]
pub struct ConversationStore {
    sessions: Arc<dyn SessionLog>,
    checkpointer: Arc<dyn Checkpointer>,
    tenant: TenantId,
    snapshot_every: u64,
}

impl std::fmt::Debug for ConversationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationStore")
            .field("tenant", &self.tenant)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

/// Where a conversation's log stands: its lineage and head (0: empty).
struct LogState {
    lineage: Option<Lineage>,
    head: u64,
}

impl ConversationStore {
    /// Conversations of `tenant`: logs in `sessions`, snapshots in `checkpointer`.
    pub fn new(
        sessions: Arc<dyn SessionLog>,
        checkpointer: Arc<dyn Checkpointer>,
        tenant: TenantId,
    ) -> Self {
        ConversationStore {
            sessions,
            checkpointer,
            tenant,
            snapshot_every: 64,
        }
    }

    /// Same, snapshotting every `changes` changes (at least 1).
    #[must_use]
    pub fn with_snapshot_every(mut self, changes: u64) -> Self {
        self.snapshot_every = changes.max(1);
        self
    }

    /// The tenant its conversations belong to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    fn keys(id: &str) -> Result<(SessionKey, ThreadKey)> {
        let key = foreign_key(PREFIX, id)?;
        Ok((SessionKey::new(key.clone())?, ThreadKey::new(key)?))
    }

    /// The log's lineage (from its first event) and head.
    async fn log_state(&self, session: &SessionKey) -> Result<LogState> {
        let head = self.sessions.head(&self.tenant, session).await?;
        if head == 0 {
            return Ok(LogState {
                lineage: None,
                head,
            });
        }
        let first = self.sessions.read(&self.tenant, session, 0, 1).await?;
        let lineage = match first.first() {
            Some(event) if event.seq == 1 => header_lineage(&event.event)?,
            _ => {
                return Err(Error::corrupt(
                    "the conversation log's first event (its lineage) is gone",
                ));
            }
        };
        Ok(LogState {
            lineage: Some(lineage),
            head,
        })
    }

    /// Appends `conversation`'s unsaved changes to conversation `id`'s log and marks it
    /// as continuing that log (its outbox is then empty). An empty log is started with
    /// the value's changes, or with the value whole when it was not begun from nothing.
    /// Returns the number of changes in the log.
    ///
    /// # Errors
    /// `Conflict` when another writer saved first or the value does not continue the
    /// log (its outbox is kept: load again, redo the edits); `InvalidInput` for an id
    /// without a key; the backend's errors.
    pub async fn save(&self, id: &str, conversation: &mut Conversation) -> Result<u64> {
        let (session, thread) = Self::keys(id)?;
        let log = self.log_state(&session).await?;
        let (lineage, base, events) = match log.lineage {
            None => {
                let lineage = Lineage::fresh();
                let header = Envelope::new(CONVERSATION_SCHEMA, json!({"lineage": lineage}));
                let changes = if conversation.continues(lineage, 0) {
                    conversation.unsaved().to_vec()
                } else {
                    let state = Box::new(conversation.view());
                    vec![ChangeRecord {
                        change: Change::Reset { state },
                        by: None,
                        at: None,
                    }]
                };
                (
                    lineage,
                    0,
                    std::iter::once(Ok(header))
                        .chain(changes.iter().map(encode))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            Some(lineage) => {
                let changes = log.head - 1;
                if !conversation.continues(lineage, changes) {
                    return Err(Error::conflict(format!(
                        "conversation {id:?} does not continue its stored log ({changes} \
                         changes): load it again"
                    )));
                }
                let events = conversation
                    .unsaved()
                    .iter()
                    .map(encode)
                    .collect::<Result<Vec<_>>>()?;
                (lineage, log.head, events)
            }
        };
        if events.is_empty() {
            return Ok(log.head.saturating_sub(1));
        }
        let options = AppendOptions::default().with_expect_head(base);
        let head = self
            .sessions
            .append(&self.tenant, &session, events, options)
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Conflict => Error::conflict(format!(
                    "conversation {id:?} was saved by another writer meanwhile: load it again"
                )),
                _ => e,
            })?;
        conversation.take_unsaved();
        let changes = head - 1;
        conversation.continue_log(lineage, changes);
        let before = base.saturating_sub(1);
        if changes / self.snapshot_every > before / self.snapshot_every {
            self.snapshot(&thread, conversation, lineage, head).await?;
        }
        Ok(changes)
    }

    /// Puts `conversation`, the log's state at `head`, as a checkpoint of step `head`.
    async fn snapshot(
        &self,
        thread: &ThreadKey,
        conversation: &Conversation,
        lineage: Lineage,
        head: u64,
    ) -> Result<()> {
        let state = serde_json::to_value(conversation).map_err(|e| {
            Error::invalid_input(format!("the conversation does not serialize: {e}"))
        })?;
        let step = i64::try_from(head).map_err(|_| Error::invalid_input("log head past i64"))?;
        let snapshot = NewCheckpoint::new(
            CheckpointId::new(),
            step,
            Envelope::new(CONVERSATION_SCHEMA, state),
        )
        .with_metadata_entry("lineage", json!(lineage));
        self.checkpointer
            .put(
                &self.tenant,
                thread,
                snapshot,
                PutCheckpointOptions::default(),
            )
            .await?;
        Ok(())
    }

    /// Conversation `id` as saved: the latest snapshot, then the changes after it;
    /// `None` for a conversation never saved (or deleted). It continues the log, so it
    /// can be edited and saved.
    ///
    /// # Errors
    /// `Corrupt` for a stored change that does not decode or apply; `InvalidInput` for
    /// an id without a key; the backend's errors.
    pub async fn load(&self, id: &str) -> Result<Option<Conversation>> {
        let (session, thread) = Self::keys(id)?;
        let log = self.log_state(&session).await?;
        let Some(lineage) = log.lineage else {
            return Ok(None);
        };
        let snapshot = self
            .checkpointer
            .get(&self.tenant, &thread, CheckpointSelector::Latest)
            .await?
            .map(|t| t.checkpoint)
            .filter(|c| {
                c.metadata.get("lineage") == Some(&json!(lineage))
                    && u64::try_from(c.step).is_ok_and(|s| s <= log.head)
            });
        let (mut conversation, mut after) = match snapshot {
            Some(c) => (
                serde_json::from_value::<Conversation>(c.state.data)
                    .map_err(|e| Error::corrupt(format!("a conversation snapshot: {e}")))?,
                c.step as u64,
            ),
            None => (Conversation::new(), 1),
        };
        while after < log.head {
            let events = self
                .sessions
                .read(&self.tenant, &session, after, READ_BATCH)
                .await?;
            let Some(last) = events.last() else {
                break;
            };
            after = last.seq;
            for event in &events {
                let record: ChangeRecord = serde_json::from_value(event.event.data.clone())
                    .map_err(|e| Error::corrupt(format!("change {}: {e}", event.seq)))?;
                conversation
                    .apply(&record)
                    .map_err(|e| Error::corrupt(format!("change {}: {e}", event.seq)))?;
            }
        }
        conversation.continue_log(lineage, after.saturating_sub(1));
        Ok(Some(conversation))
    }

    /// Deletes conversation `id`: its log and its snapshots. Returns whether it existed.
    ///
    /// # Errors
    /// `InvalidInput` for an id without a key; the backend's errors.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let (session, thread) = Self::keys(id)?;
        let existed = self.sessions.delete(&self.tenant, &session).await?;
        self.checkpointer
            .delete_thread(&self.tenant, &thread)
            .await?;
        Ok(existed)
    }
}

fn encode(record: &ChangeRecord) -> Result<Envelope> {
    let data = serde_json::to_value(record)
        .map_err(|e| Error::invalid_input(format!("a change does not serialize: {e}")))?;
    Ok(Envelope::new(CONVERSATION_SCHEMA, data))
}

fn header_lineage(header: &Envelope) -> Result<Lineage> {
    let lineage = header.data.get("lineage").cloned().unwrap_or(Value::Null);
    serde_json::from_value(lineage)
        .map_err(|e| Error::corrupt(format!("the conversation log's header: {e}")))
}
