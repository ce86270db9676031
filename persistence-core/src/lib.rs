//! Core of the `persistence` workspace: tenant-keyed, schema-versioned state for agent
//! frameworks.
//!
//! This crate holds the contract every backend implements and does no I/O:
//!
//! - validated ids ([`TenantId`], [`ThreadKey`], [`SessionKey`], [`LockKey`],
//!   [`ItemKey`], [`Namespace`], [`CheckpointId`]);
//! - the [`Envelope`] every stored payload travels in, and the [`Versioned`] trait with
//!   upcasters for user types;
//! - the four object-safe traits: [`Checkpointer`], [`Store`], [`SessionLog`], [`Lock`]
//!   (plus [`with_lock`]), each scoped to one tenant per call, and [`Maintenance`], the
//!   one that crosses tenants (status, health, purge of expired data);
//! - typed handles ([`TypedCheckpointer`], [`TypedStore`], [`TypedSessionLog`]);
//! - one [`Error`] with an [`ErrorKind`] callers branch on;
//! - [`Capabilities`] a backend declares;
//! - [`MemoryBackend`], the reference implementation the conformance suite and the
//!   model-based tests compare every backend against;
//! - [`backend`]: what implementers need beyond the traits (input checks shared by
//!   every backend, page building, lease binding), kept apart from the user API.
//!
//! ```
//! use std::sync::Arc;
//! use persistence_core::*;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
//! let backend = MemoryBackend::new();
//! let log: Arc<dyn SessionLog> = Arc::new(backend.clone());
//! let tenant = TenantId::new("acme")?;
//! let session = SessionKey::new("chat/42")?;
//! let head = log
//!     .append(&tenant, &session, vec![Envelope::new(1, json!({"role": "user"}))], AppendOptions::default())
//!     .await?;
//! assert_eq!(head, 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod backend;
mod capabilities;
mod checkpointer;
mod envelope;
mod error;
mod filter;
mod ids;
mod lock;
mod maintenance;
mod memory;
mod page;
mod patch;
mod redact;
mod retention;
mod session_log;
mod shared_calls;
mod store;
mod stored_bytes;
mod subscribe;
mod time;
mod tls;
mod typed;

pub use capabilities::{Capabilities, Enforcement};
pub use checkpointer::{
    Checkpoint, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer, ExpectLatest,
    ListCheckpoints, ListThreads, Metadata, NewCheckpoint, PendingWrite, PutCheckpointOptions,
    PutWrites, Write,
};
pub use envelope::{Envelope, Upcaster, Versioned, decode, encode};
pub use error::{Error, ErrorKind, ErrorReport, Result, SchemaVersions};
pub use filter::{Condition, Filter, FilterOp};
pub use ids::{
    ChannelName, CheckpointId, ItemKey, LockKey, MAX_KEY_BYTES, MAX_NAMESPACE_DEPTH,
    MAX_TENANT_BYTES, Namespace, SessionKey, TaskId, TenantId, ThreadKey, foreign_key,
};
pub use lock::{Fence, HeldLease, Lease, Lock, LockOptions, with_lock};
pub use maintenance::{ExpiredSession, Maintenance, PurgeCounts, PurgeReport};
pub use memory::MemoryBackend;
pub use page::{Cursor, MAX_PAGE_LIMIT, Page};
pub use patch::{PatchItemOptions, merge_patch};
pub use redact::redact_url;
pub use retention::{Retention, RetentionOutcome};
pub use session_log::{
    AppendOptions, CloseSession, Compaction, ListSessions, SessionEvent, SessionInfo, SessionLog,
};
pub use store::{
    GetItemOptions, Item, ListItems, ListNamespaces, PutItemOptions, SearchItems, Store,
};
pub use subscribe::{Subscribe, Subscription};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use tls::TlsFailure;
pub use typed::{
    CheckpointerExt, SessionLogExt, StoreExt, TypedCheckpointTuple, TypedCheckpointer,
    TypedSessionLog, TypedStore,
};

pub use serde_json;
