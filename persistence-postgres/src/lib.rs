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
//! prepared once per pooled connection (or, with [`PgConfig::prepared_statements`] off,
//! sent as one simple query each); after that first use every operation is exactly one
//! network round trip, counted by a TCP proxy in `tests/security.rs`
//! (`one_round_trip_per_operation*`) and reported by the benchmark. The crate uses its own
//! small connection pool because sqlx's `Pool` pings each connection when it is returned,
//! which would double the round trips.
//!
//! # Performance
//! `persistence bench --ops 1000 --tasks 1,8` (release build) against a local
//! PostgreSQL 15 with `fsync` and `synchronous_commit` on, 2026-12-04, median of three
//! runs, each ratio over a raw baseline at the same concurrency measured around the row:
//! checkpoint put 0.85× / 0.82× (1 / 8 tasks) a durable `INSERT` of the same row, a
//! guarded put (fence + `expect_latest`) 0.82× / 0.68×, session append 0.72× / 0.74×,
//! store put 0.79× / 0.74×, each one WAL flush per operation at one task like the
//! `INSERT`; get latest 0.41× / 0.36× a `SELECT` by primary key; the lock cycle 0.22× /
//! 0.28× an advisory lock taken and released (one-task ratios moved by ±0.1 between the
//! runs, and by ±0.15 between days), with no WAL flush but two row writes where
//! the advisory lock writes nothing. An append writes two rows (its session's head and
//! the event) where the `INSERT` writes one: `pgbench` timed the append function at
//! 0.95× the `INSERT` on the same server, and an in-process loop alternating 1 500
//! appends with 1 500 raw inserts measured 0.87×. What an operation costs the server beyond the row it
//! writes is counted in `tests/costs.rs`: an append updates its session's row in place
//! (one lookup), a store put over an existing item is one update, a guarded put writes
//! the checkpoint alone (its thread's lock is held in memory), and no SQL-language
//! function is executed.
//!
//! `get(Latest)` on a 1 000-checkpoint thread costs 1.39× as much with 1 000 000 other
//! checkpoints in the table (p50 113 µs vs 157 µs): it is one descending probe of the
//! primary key.
//!
//! # Locks and fences
//! A lease is a row (tenant, name, token, fence, expires_at) judged by the database
//! clock; acquire, renew and release are one statement each. A refused acquire only
//! reads (no row lock, no WAL). New fences are one more than the row's and never less
//! than the database clock in microseconds, so [`PgBackend::purge_stale_leases`] (run by
//! `persistence gc` and `persistence.purge_expired()`) may delete the rows of locks
//! unused for an hour without a later fence repeating an earlier one. Fences are
//! `bigint`, `0..=Fence::MAX`. Checkpoint writes and session appends check the fence in
//! the same statement that writes. No session-level advisory locks.
//!
//! Since schema 8, the writes of one thread that check its state (fenced or guarded
//! puts, pending writes, prune, copy) serialize on a transaction-scoped advisory lock
//! (two-key form, class `1885696627`, key `hashtext(tenant || '/' || thread)`), held in
//! the server's memory until the statement's transaction ends, instead of a row lock
//! (which writes a WAL record). Threads whose keys collide only wait for each other; so
//! would an application's own two-key advisory locks of that class. The thread's row
//! keeps its fence high-water mark and is written only when a fence raises it.
//!
//! Since schema 7, acquire, renew and release commit without waiting for their WAL
//! flush (`synchronous_commit = off` for that transaction only; every other write
//! waits). A crash or immediate shutdown can lose the lease changes of its last
//! moments (up to three times `wal_writer_delay`, 200 ms by default), and only those:
//! - a lost acquire or renew leaves the lock free, or expiring earlier, after the
//!   restart, so another worker may take it while the earlier holder still believes it
//!   holds it. Its fence is above the lost one (the clock floor above), so once it
//!   writes, the earlier holder's fenced writes fail `Fenced`;
//! - a lost release leaves the lock held until its TTL runs out;
//! - a lease whose fence an acknowledged write used is never lost: that write waited
//!   for the flush, which covers the lease's earlier record.
//!
//! The same holds across a failover to a synchronous standby. Tested in
//! `tests/faults.rs` (`lease_changes_lost_in_a_crash_never_repeat_a_fence`: immediate
//! shutdowns right after acquires and releases). A lock cycle still writes its row
//! twice (about 400 WAL bytes), where the advisory lock `persistence bench` compares it
//! with writes nothing.
//!
//! # Deadlines and connections
//! Every operation has one client-side deadline, [`PgConfig::operation_timeout`]
//! (default 30 s), covering the pool wait, a new connection
//! ([`PgConfig::connect_timeout`], 5 s) and the round trip, so a stopped server or a
//! listener that never answers cannot hold a caller; the server's own
//! `statement_timeout` (25 s) fires first for slow statements. A write that times out
//! after it was sent says its outcome is unknown. The pool's rules are in `pool.rs`: a
//! connection that hit an I/O or FATAL error never serves another call, idle
//! connections older than such a failure are dropped, and a statement that met a
//! connection the server had already closed (FATAL shutdown notice) is sent again on a
//! fresh one, as are reads after an I/O error on a reused connection.
//!
//! # TLS
//! rustls (ring, no OpenSSL), libpq's options in the URL or [`PgConfig`]: `sslmode`
//! ([`SslMode`]: `disable`, `prefer` (default, as libpq), `require`, `verify-ca`,
//! `verify-full`; `allow` is refused), `sslrootcert` (PEM CA file; default the system's
//! roots from `/etc/ssl/certs`), `sslcert` + `sslkey` (client certificate for mutual
//! TLS). A root certificate without an `sslmode` means `verify-full`. Only
//! `verify-full` proves who answers; with sqlx 0.8.6 `verify-ca` checks the name too
//! (see [`SslMode::VerifyCa`]). Files are checked at connect (`InvalidInput` naming the
//! option) and read again by every new connection, so renewed files are picked up.
//! Failures are `ErrorKind::Tls` naming the host and what to set: untrusted certificate
//! (`sslrootcert`), name mismatch, server without TLS under `require` or stricter,
//! client certificate refused (`sslcert`/`sslkey`, including the server's
//! `clientcert=` rejection). TLS costs a handshake per new connection; each operation
//! stays one statement (`tests/tls.rs` counts them with `pg_stat_statements`), and the
//! whole conformance suite runs over mutual TLS with `verify-full` in CI.
//!
//! # Behind PgBouncer
//! With [`PgConfig::prepared_statements`] off (`?prepared_statements=off`), each
//! operation is one simple query with its arguments as escaped `E'...'` literals and its
//! own `SET LOCAL statement_timeout`: it works in transaction pooling mode on PgBouncer
//! versions that cannot keep prepared statements (before 1.21). The conformance suite
//! runs that way through a PgBouncer the tests start.
//!
//! # Schema versions and upgrades
//! [`SCHEMA_VERSION`] is what `migrate` brings a database to; [`MIN_DATABASE_SCHEMA`] is
//! the oldest this code opens (older: `SchemaTooOld`). A newer database is opened when
//! its `persistence.schema_compatible_from()` is at most [`SCHEMA_VERSION`], refused
//! with `SchemaTooNew` otherwise, and also when it records a migration this code does
//! not know without a newer schema version declaring compatibility.
//!
//! # Expiry
//! `Store::purge_expired` and `SessionLog::purge_expired` call
//! `persistence.purge_expired_items()` and `persistence.purge_expired_sessions()`,
//! `SECURITY DEFINER` functions owned by the migrator that delete only expired rows of
//! every tenant; `persistence.purge_expired()` runs both. Run them
//! periodically (`persistence gc`, or `SELECT * FROM persistence.purge_expired()` from a
//! scheduler such as pg_cron).
//!
//! # Encryption at rest
//! With the `codec` feature, `PgConfig::with_codec` names a `persistence-codec` codec
//! (zstd, AES-256-GCM under per-tenant, per-write keys, each payload bound to its row). The
//! connected backend then sends every [`Checkpointer`](persistence_core::Checkpointer),
//! [`Store`](persistence_core::Store) and [`SessionLog`](persistence_core::SessionLog) call
//! through it, so the backend value used directly stores sealed payloads (the sealed bytes
//! raw in the `bytea` columns): ids, ordinals, timestamps and checkpoint metadata stay in
//! clear (see the codec's docs for the full list and the threat model).
//! `PgBackend::without_codec` reads the stored form.
#![deny(missing_docs)]

/// Sends a trait call to the codec of `PgConfig::with_codec` when the backend has one
/// (it calls this backend again without the codec, storing the sealed payloads).
macro_rules! through_codec {
    ($self:ident . $part:ident () . $method:ident ($($arg:ident),*)) => {
        #[cfg(feature = "codec")]
        if let Some(sealed) = &$self.sealed {
            return sealed.$part().$method($($arg),*).await;
        }
    };
}

mod changes;
mod checkpointer;
mod config;
mod error;
mod lock;
mod maintenance;
mod migrate;
mod pool;
mod session_log;
mod statement;
mod store;
mod tls;
mod url_options;

pub use config::{PgConfig, PrivilegedRole};
pub use migrate::{MIGRATOR, MIN_DATABASE_SCHEMA, SCHEMA_VERSION, migrate};
use persistence_core::backend::FromStored;
use persistence_core::{Capabilities, Error, Result, TenantId};
use std::sync::Arc;
pub use tls::SslMode;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::error::{BACKEND, map, map_unsent};

const LIST_TENANTS: &str = "SELECT persistence.list_tenants()";
const PURGE_STALE_LEASES: &str = "SELECT persistence.purge_stale_leases()";
const ROLE_PRIVILEGES: &str = "SELECT jsonb_build_object('role', current_user::text, \
    'superuser', rolsuper, 'bypass', rolbypassrls) FROM pg_roles WHERE rolname = current_user";

#[derive(serde::Deserialize)]
struct RolePrivileges {
    role: String,
    superuser: bool,
    bypass: bool,
}

/// Warns about or refuses a role that row-level security does not bind.
async fn check_role(
    conn: &mut sqlx::PgConnection,
    policy: PrivilegedRole,
    protocol: statement::Protocol,
) -> Result<()> {
    if policy == PrivilegedRole::Allow {
        return Ok(());
    }
    let sqlx::types::Json(RolePrivileges {
        role,
        superuser,
        bypass,
    }) = statement::Call::new(ROLE_PRIVILEGES)
        .fetch_all(&mut *conn, protocol)
        .await
        .and_then(pool::single)
        .map_err(|e| map_unsent(e, "connect", ""))?;
    if !(superuser || bypass) {
        return Ok(());
    }
    let what = if superuser { "SUPERUSER" } else { "BYPASSRLS" };
    if policy == PrivilegedRole::Refuse {
        return Err(Error::invalid_input(format!(
            "connected as role {role:?}, which is {what}: row-level security does not \
             separate tenants for it; connect as persistence_app"
        ))
        .context(BACKEND, "connect", ""));
    }
    tracing::warn!(
        role = %role,
        privilege = what,
        "persistence: connected to Postgres as a {what} role; row-level security does not \
         separate tenants for it (connect as persistence_app, or set PrivilegedRole::Refuse)"
    );
    Ok(())
}

/// The PostgreSQL backend. Clones share one connection pool.
#[derive(Clone, Debug)]
pub struct PgBackend {
    db: Arc<pool::ConnPool>,
    /// Push for live tails (LISTEN/NOTIFY), not through a transaction pooler.
    changes: Arc<changes::SessionChanges>,
    /// The codec of [`PgConfig::with_codec`], over a clone of this backend without one.
    #[cfg(feature = "codec")]
    sealed: Option<std::sync::Arc<persistence_codec::SealedBackend>>,
}

impl PgBackend {
    /// Connects a pool, checks the database schema and the role's privileges.
    ///
    /// The whole call is bounded by [`PgConfig::operation_timeout`].
    ///
    /// # Errors
    /// `InvalidInput` for a malformed URL or option (TLS files included), or a privileged
    /// role under [`PrivilegedRole::Refuse`]; `Tls` when TLS cannot be set up (the
    /// message names the host and what to set); `Unavailable` if the server cannot be
    /// reached;
    /// `Timeout` if it does not answer in time; `SchemaTooOld` if the database is not
    /// migrated (or older than this code runs against); `SchemaTooNew` if it was
    /// migrated by a newer version of this library that is not compatible with this one.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        // The codec wraps the connected backend; the connection never sees it.
        #[cfg(feature = "codec")]
        let (config, codec) = {
            let mut config = config;
            let codec = config.codec.take();
            (config, codec)
        };
        let config = url_options::apply(config)?;
        // The key of every error below: the server, without the password.
        let target = persistence_core::redact_url(&config.config.url);
        let timeout_ms = config.config.statement_timeout.as_millis().to_string();
        let mut options: PgConnectOptions = config
            .driver_url
            .parse::<PgConnectOptions>()
            .map_err(|e| map_unsent(e, "connect", &target))?
            .application_name(&config.config.application_name)
            .disable_statement_logging();
        let c = &config.config;
        options = tls::apply(options, c)?;
        let protocol = if c.prepared_statements {
            options = options.options([("statement_timeout", timeout_ms.as_str())]);
            statement::Protocol::Prepared
        } else {
            // Poolers refuse (or drop) the `options` startup parameter; each statement
            // sets its own timeout instead.
            statement::Protocol::Simple {
                statement_timeout_ms: u64::try_from(c.statement_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            }
        };
        let push = matches!(protocol, statement::Protocol::Prepared).then(|| options.clone());
        let db = Arc::new(pool::ConnPool::new(
            options,
            pool::PoolSettings {
                max_connections: c.max_connections,
                acquire_timeout: c.acquire_timeout,
                connect_timeout: c.connect_timeout,
                operation_timeout: c.operation_timeout,
                idle_timeout: c.idle_timeout,
                max_lifetime: c.max_lifetime,
                check_idle_after: c.check_idle_after,
                protocol,
            },
        ));
        let check = async {
            let mut pooled = db
                .acquire(false)
                .await
                .map_err(|e| map(e, "connect", &target))?;
            let checked = async {
                migrate::check_schema(pooled.conn(), protocol).await?;
                check_role(pooled.conn(), c.privileged_role, protocol).await
            }
            .await
            .map_err(|e| e.context(BACKEND, "connect", &target));
            let _ = pooled.finish(Ok::<(), sqlx::Error>(()), true);
            checked
        };
        tokio::time::timeout(c.operation_timeout, check)
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "no answer from the database within the operation deadline of {:?}",
                    c.operation_timeout
                ))
                .context(BACKEND, "connect", &target)
            })??;
        let backend = PgBackend {
            db,
            changes: Arc::new(changes::SessionChanges::new(push)),
            #[cfg(feature = "codec")]
            sealed: None,
        };
        #[cfg(feature = "codec")]
        let backend = backend.sealed_by(codec);
        Ok(backend)
    }

    /// The codec of [`PgConfig::with_codec`], if any: for
    /// [`rekey`](persistence_codec::rekey) and [`key_usage`](persistence_codec::key_usage)
    /// with [`without_codec`](Self::without_codec).
    #[cfg(feature = "codec")]
    pub fn codec(&self) -> Option<&std::sync::Arc<persistence_codec::Codec>> {
        self.sealed.as_ref().map(|s| s.codec())
    }

    /// The same pool without the codec of [`PgConfig::with_codec`]: its calls store and
    /// return payloads as given, so it reads what the codec stored (sealed).
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn without_codec(&self) -> Self {
        PgBackend {
            sealed: None,
            ..self.clone()
        }
    }

    /// `self` (without a codec) through the codec of `config`, if any.
    #[cfg(feature = "codec")]
    fn sealed_by(self, config: Option<persistence_codec::CodecConfig>) -> Self {
        match config {
            None => self,
            Some(codec) => {
                let sealed = persistence_codec::SealedBackend::new(self.clone(), codec);
                PgBackend {
                    sealed: Some(std::sync::Arc::new(sealed)),
                    ..self
                }
            }
        }
    }

    /// Tenants holding any thread, session, item or lease, ascending (through the
    /// `persistence.list_tenants()` function, which sees past row-level security and
    /// returns ids only).
    ///
    /// # Errors
    /// `Unavailable` if the server cannot be reached; `Corrupt` for an invalid stored id.
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        let names: Vec<String> =
            pool::fetch_all!(read self.db, crate::statement::Call::new(LIST_TENANTS))
                .map_err(|e| map(e, "tenants", ""))?;
        names.into_iter().map(TenantId::from_stored).collect()
    }

    /// Deletes the lease rows of locks unused for an hour, across tenants (through the
    /// `persistence.purge_stale_leases()` function), so lock names that are never used
    /// again leave nothing behind. Safe at any time: fences are floored at the database
    /// clock, so a name taken again later still gets a fence above every earlier one
    /// (unless the database clock is stepped back by more than an hour). Returns the
    /// number of rows deleted; `persistence gc` runs it.
    ///
    /// # Errors
    /// `Unavailable` or `Timeout` if the server cannot be reached in time.
    pub async fn purge_stale_leases(&self) -> Result<u64> {
        let n: i64 = pool::fetch_single!(self.db, crate::statement::Call::new(PURGE_STALE_LEASES))
            .map_err(|e| map(e, "lock.purge_stale_leases", ""))?;
        Ok(n.max(0) as u64)
    }

    /// Closes idle connections (open ones close when their operation ends).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// TTL, search, multi-process, durable, session life cycle, replacing payloads,
    /// binary payloads (in a `bytea` beside each payload's `jsonb`, schema 13).
    ///
    /// Through a codec (`PgConfig::with_codec`): no `binary_payloads`, and no `search`
    /// unless the codec keeps fields in clear.
    pub fn capabilities(&self) -> Capabilities {
        #[cfg(feature = "codec")]
        if let Some(sealed) = &self.sealed {
            use persistence_core::Maintenance;
            return sealed.maintenance().capabilities();
        }
        let mut caps = Capabilities::none();
        caps.lifecycle = true;
        caps.replace = true;
        caps.binary_payloads = true;
        caps.ttl = true;
        caps.search = true;
        caps.multi_process = true;
        caps.durable = true;
        caps
    }
}

/// An envelope as the SQL functions take it: `{"schema_version", "data", "bytes"}`, the
/// bytes as base64 and only when there are some (the functions store them raw).
///
/// # Errors
/// `InvalidInput` if it does not serialize (a JSON value always does).
pub(crate) fn envelope_json(
    envelope: &persistence_core::Envelope,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(envelope) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(Error::invalid_input("a payload does not serialize as JSON")),
    }
}
