//! PostgreSQL backend: row-level security per tenant, one network round trip per
//! operation, leases with fences on the database clock.
//!
//! ```no_run
//! use persistence_postgres::{PgBackend, PgConfig, migrate};
//! # async fn run() -> persistence_core::Result<()> {
//! // Ops, once per release, as the owner/migrator role:
//! migrate("postgres://postgres@localhost/app").await?;
//! // The application, as the restricted role:
//! let backend = PgBackend::connect(PgConfig::new("postgres://persistence_app@localhost/app")).await?;
//! # Ok(()) }
//! ```
//!
//! # Schema and roles
//! `migrations/` (sqlx-compatible, also embedded here and run by `persistence migrate`)
//! creates schema `persistence`, its tables and one SQL function per operation, and the
//! role `persistence_app` (LOGIN, NOSUPERUSER, NOBYPASSRLS, DML grants only, owning
//! nothing). Every table has `tenant_id` first in its primary key, row-level security
//! enabled and forced, and a policy for all commands comparing `tenant_id` with
//! `nullif(current_setting('persistence.tenant', true), '')`: a connection that has not
//! set a tenant, or set it empty, sees no row. Minimum server version: PostgreSQL 15.
//!
//! # One round trip per operation
//! Each operation is one `SELECT persistence.<operation>(...)`: the function sets the
//! tenant with `set_config(..., true)` (transaction-local, so safe behind PgBouncer in
//! transaction mode) and acts, in the statement's own transaction. Statements are
//! prepared once per pooled connection, so after that first use every operation is one
//! round trip (measured with `pg_stat_statements` in this crate's tests).
//!
//! # Locks and fences
//! A lease is a row (tenant, name, token, fence, expires_at) judged by the database
//! clock; acquire, renew and release are one statement each; the row stays after release
//! so the fence only grows. Checkpoint writes and session appends check the fence in the
//! same statement that writes. No session-level advisory locks.
//!
//! # Expiry
//! `purge_expired()` calls `persistence.purge_expired()`, a `SECURITY DEFINER` function
//! owned by the migrator that deletes only expired rows of every tenant. Run it
//! periodically (`persistence gc`, or `SELECT * FROM persistence.purge_expired()` from a
//! scheduler such as pg_cron).
#![deny(missing_docs)]

mod checkpointer;
mod config;
mod error;
mod lock;
mod migrate;
mod pool;
mod session_log;
mod store;

pub use config::PgConfig;
pub use migrate::{MIGRATOR, SCHEMA_VERSION, migrate};
use persistence_core::{Capabilities, Result};
use std::sync::Arc;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::error::map;

/// The PostgreSQL backend. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct PgBackend {
    db: Arc<pool::ConnPool>,
}

impl PgBackend {
    /// Connects a pool and checks the database schema version.
    ///
    /// # Errors
    /// `Unavailable` if the server cannot be reached; `NotFound` if the database is not
    /// migrated (or is older than this code); `SchemaTooNew` if it was migrated by a
    /// newer version of this library.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let options: PgConnectOptions = config
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| map(e, "connect", "url"))?
            .application_name(&config.application_name)
            .options([("statement_timeout", timeout_ms.as_str())])
            .disable_statement_logging();
        let db = Arc::new(pool::ConnPool::new(
            options,
            config.max_connections,
            config.acquire_timeout,
        ));
        let mut pooled = db.acquire().await.map_err(|e| map(e, "connect", "pool"))?;
        let checked = migrate::check_schema(pooled.conn()).await;
        pooled.finish(&Ok::<(), sqlx::Error>(()));
        checked?;
        Ok(PgBackend { db })
    }

    /// Closes idle connections (open ones close when their operation ends).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// TTL, search, multi-process, durable.
    pub fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::none();
        caps.ttl = true;
        caps.search = true;
        caps.multi_process = true;
        caps.durable = true;
        caps
    }
}
