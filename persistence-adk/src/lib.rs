//! [adk-rust](https://docs.rs/adk-session)'s storage traits over this workspace's, on any
//! backend, per [`TenantId`](persistence::TenantId):
//! - [`LogSessionService`], adk-session's [`SessionService`](adk_session::SessionService)
//!   over [`SessionLog`](persistence::SessionLog) and [`Store`](persistence::Store): a
//!   session's events are a session log, its state and the app's and user's state are
//!   store items;
//! - [`GraphCheckpointer`], adk-graph's [`Checkpointer`](adk_graph::checkpoint::Checkpointer)
//!   over [`Checkpointer`](persistence::Checkpointer) and [`Store`](persistence::Store):
//!   a graph thread's checkpoints are a thread's checkpoints.
//!
//! Both together keep what adk's `Runner` needs to run a `GraphAgent` turn after turn,
//! across processes (the crate's `tests/runner.rs` does so on every backend).
//!
//! # SessionService
//!
//! ```
//! # async fn demo() -> adk_core::Result<()> {
//! use std::collections::HashMap;
//! use adk_session::{CreateRequest, GetRequest, SessionService};
//! use persistence::TenantId;
//! use persistence_adk::LogSessionService;
//!
//! let p = persistence::open("memory://").await.unwrap();
//! let service = LogSessionService::new(p.sessions.clone(), p.store.clone(), TenantId::new("acme").unwrap());
//! let state = HashMap::from([("user:lang".to_string(), "fr".into())]);
//! let created = service
//!     .create(CreateRequest { app_name: "weather".into(), user_id: "u1".into(), session_id: None, state })
//!     .await?;
//! let got = service
//!     .get(GetRequest {
//!         app_name: "weather".into(),
//!         user_id: "u1".into(),
//!         session_id: created.id().to_string(),
//!         num_recent_events: None,
//!         after: None,
//!     })
//!     .await?;
//! assert_eq!(got.state().get("user:lang"), Some("fr".into()));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## The contract it keeps
//!
//! adk-session 2.3 documents, and its own services do:
//! - "When that valid identity has no matching record, implementations return an
//!   `AdkError` with code `session.not_found` and a `NotFound` category. Backend and
//!   transport failures must not be reported as not-found errors": `get` does so;
//!   identities are validated with adk's own rules first (invalid input).
//! - State tiers (`state_utils`): "`app:` → app-level state, `user:` → user-level state,
//!   `temp:` → ephemeral, dropped on persistence, everything else → session-level
//!   state". App state is shared by the app's sessions, user state by the user's; both
//!   are store items updated by compare-and-swap (a key set replaces the key's value, as
//!   adk's `extend` does).
//! - `num_recent_events` keeps the last N events, then `after` keeps those at or after
//!   a time, as adk's in-memory service filters.
//! - `list` pages with `offset` and `limit`, newest update first.
//!
//! Events are appended to the session log `adk/{app}/{user}/{session}` (each part
//! percent-encoded): concurrent `append_event`s on one session get consecutive ordinals,
//! none lost. The session's own state is folded from the events' deltas; its record (a
//! store item) caches the fold with the ordinal it covers, so a read folds only what came
//! after.
//!
//! ## Where it differs
//!
//! - `create` of a session that exists fails (adk's in-memory service replaces it,
//!   dropping its events).
//! - `append_event(session_id, ..)` (without app and user) finds the session through an
//!   index item by session id: the last session created with that id. Use
//!   `append_event_for_identity` where ids repeat across apps or users.
//! - adk's API takes no lease, so a stale writer cannot be fenced: appends from two
//!   processes both land, in some order.
//! - App and user state deltas are applied after the event is appended, each by a
//!   compare-and-swap: a crash in between keeps the event and loses those deltas.
//! - `list` returns each session's state without its events (call `get` for those),
//!   from the session's record: after a crash between an append and the record's
//!   update it lags that event's delta until the next append (`get` always folds it).
//! - Backend errors are `AdkError`s of the session component, category `Unavailable`,
//!   `Timeout` or `Internal` after the backend's kind, with its message (never a
//!   payload).
//!
//! # Checkpointer (adk-graph)
//!
//! ```
//! # async fn demo() -> adk_graph::error::Result<()> {
//! use adk_graph::checkpoint::Checkpointer;
//! use adk_graph::state::{Checkpoint, State};
//! use persistence::TenantId;
//! use persistence_adk::GraphCheckpointer;
//!
//! let p = persistence::open("memory://").await.unwrap();
//! let tenant = TenantId::new("acme").unwrap();
//! let checkpoints = GraphCheckpointer::new(p.checkpointer.clone(), p.store.clone(), tenant);
//! let saved = Checkpoint::new("thread-1", State::new(), 0, vec!["plan".into()]);
//! let id = checkpoints.save(&saved).await?;
//! assert_eq!(checkpoints.load_by_id(&id).await?.map(|c| c.step), Some(0));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Pass it to a graph with `CompiledGraph::with_checkpointer` (or `GraphAgent`'s
//! builder's `checkpointer`).
//!
//! ## The contract it keeps
//!
//! adk-graph 2.3's `Checkpointer` trait says little beyond its method names; what its
//! executor relies on, and its in-memory and SQLite checkpointers do:
//! - `load` returns the thread's checkpoint saved last; `list` returns them oldest
//!   first; `load_by_id` finds a checkpoint by its id alone (the executor's
//!   `resume_from`, a pause's `checkpoint_id`); `delete` removes the thread.
//! - `prune`: "Removes the checkpoints a retention policy discards, keeping the
//!   newest." The checkpoints removed are the ones adk's own
//!   [`RetentionPolicy::expired`](adk_graph::checkpoint::RetentionPolicy::expired)
//!   selects ("Shared by every backend so they cannot disagree about what to keep").
//!
//! adk mints checkpoint ids as UUIDv4 strings; this workspace's are UUIDv7 (their
//! order is "latest"). Each adk checkpoint is stored under a UUIDv7 minted at its first
//! save, and an index item (store namespace `["adk-graph-checkpoints"]`, keyed by adk's
//! id) maps adk's id to its thread and UUIDv7: two adk ids never share a checkpoint,
//! and every adk id reads back as itself. Threads are
//! [`foreign_key`](persistence::foreign_key)`("adk-graph/", thread_id)`.
//!
//! ## Where it differs
//!
//! - "Saved last" is by the UUIDv7s, minted from the saving process's clock (strictly
//!   increasing within a process), where SQLite orders by `created_at`: with two
//!   processes saving one thread and clocks apart, `load` follows the clocks.
//! - A save retried with the same checkpoint stores nothing new (adk's in-memory
//!   checkpointer would keep a duplicate); the same id saved for another thread, or
//!   with other content, is refused with `CheckpointError`.
//! - adk-graph's API takes no lease, so two executors on one thread cannot be fenced:
//!   both saves land, and `load` returns the later. Run one executor per thread (a
//!   [`Lock`](persistence::Lock) lease around the run, say).
//! - A save is two round trips (index item, then checkpoint); `load_by_id` two;
//!   `list`, `delete` and `prune` read every checkpoint of the thread.
//! - `prune` needs `Capabilities::lifecycle` (`prune_through`: a checkpoint saved
//!   meanwhile stays); every backend in this workspace has it. Should clocks make
//!   `created_at` order disagree with save order, it removes only the oldest
//!   checkpoints up to the first one the policy keeps.
//! - A crash between deleting checkpoints (`delete`, `prune`) and their index items
//!   leaves index items that name nothing: `load_by_id` returns `None` for them, as
//!   for an id never saved.
//! - Errors are `GraphError::CheckpointError` with the backend's message (ids and
//!   kinds, never a payload).

#![deny(missing_docs)]

mod error;
mod graph;
mod session;
mod stored;

pub use graph::GraphCheckpointer;
pub use session::{ADK_SCHEMA, LogSessionService};

/// One percent-encoded part of a key: `%`, `/` and control characters as `%XX`, so
/// parts joined by `/` map back one to one.
pub(crate) fn part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == '/' || c.is_control() {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The id a record key encodes (see [`part`]).
pub(crate) fn decode_part(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
