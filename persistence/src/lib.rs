//! Tenant-keyed, schema-versioned state for AI-agent frameworks: checkpoints of graph
//! runs ([`Checkpointer`]), long-term memory ([`Store`]), session event logs
//! ([`SessionLog`]) and fenced leases ([`Lock`]), behind one set of object-safe traits.
//!
//! This facade picks a backend from a URL and hands back the four data traits and
//! [`Maintenance`] (status, health, purge: the one that crosses tenants) as
//! `Arc<dyn ...>` in a [`Persistence`], each call wrapped in a `tracing` span:
//!
//! ```
//! # async fn run() -> persistence::Result<()> {
//! use persistence::{AppendOptions, Envelope, SessionKey, TenantId};
//!
//! let p = persistence::open("memory://").await?;
//! let tenant = TenantId::new("acme")?;
//! let session = SessionKey::new("chat-1")?;
//! let events = vec![Envelope::new(1, serde_json::json!({"role": "user"}))];
//! let head = p.sessions.append(&tenant, &session, events, AppendOptions::default()).await?;
//! assert_eq!(head, 1);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(run()).unwrap();
//! ```
//!
//! | URL | backend | cargo feature |
//! |---|---|---|
//! | `memory://` | in-process reference backend (tests, demos) | always |
//! | `file:///var/lib/agent` or `file://relative/dir`, `?durability=none` to skip fsync | [`fs`] | `fs` (default) |
//! | `postgres://persistence_app:...@host/db` | [`postgres`], as the app role | `postgres` |
//! | `redis://host:6379/0`, `rediss://...` (TLS), `redis+cluster://h1:p,h2:p`, `rediss+cluster://...`; `?prefix=app:`, TLS files `sslrootcert=`, `sslcert=`, `sslkey=`, the driver's `protocol=resp3` | [`redis`] | `redis` |
//!
//! Options are percent-decoded, and one the backend does not know is `InvalidInput`
//! (the README lists each scheme's). After `file://` comes the path itself (absolute
//! with a third slash, else relative to the working directory); `file://localhost/...`
//! is refused (RFC 8089 reads it as an absolute path). [`open_existing`] opens a store
//! without creating one.
//!
//! `full` enables every backend. A URL whose backend is not compiled in fails with
//! `Unsupported` naming the feature to enable.
//!
//! # Other backends
//! The facade reaches backends through the traits only. [`Persistence::from_backend`]
//! wraps any value implementing the four data traits and [`Maintenance`];
//! [`register_scheme`] makes [`open`] (and a `persistence` command built with
//! `persistence_cli::run_from`) reach it by URL. What implementers need beyond the
//! traits is in [`backend`].
//!
//! # Tracing
//! Every operation runs in an `INFO` span named `persistence` with the fields
//! `backend`, `operation` (e.g. `checkpoint.put`), `tenant`, `duration_us` and, on
//! failure, `error_kind` and `error`. Payloads (states, events, values) are never
//! recorded; ids are. Install any `tracing` subscriber to see them.

#![deny(missing_docs)]

mod audit;
mod open;
mod persistence;
mod schemes;
mod sweeper;
mod traced;

pub use open::{open, open_existing};
pub use persistence::Persistence;
pub use persistence_core::*;
pub use schemes::{BUILT_IN_SCHEMES, OpenFuture, OpenRequest, known_schemes, register_scheme};
pub use sweeper::{
    AUDIT_SESSION, RETENTION_NAMESPACE, SWEEPER_LOCK, SYSTEM_TENANT, SweepConfig, SweepProgress,
    SweepReport, Sweeper, SweeperHandle,
};
pub use traced::Traced;

/// The README's code blocks, compiled as doc tests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Payload compression and encryption at rest ([`Persistence::with_codec`]).
#[cfg(feature = "codec")]
pub use persistence_codec as codec;
#[cfg(feature = "fs")]
pub use persistence_fs as fs;
#[cfg(feature = "postgres")]
pub use persistence_postgres as postgres;
#[cfg(feature = "redis")]
pub use persistence_redis as redis;
