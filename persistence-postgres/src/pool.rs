//! A small connection pool with deadlines and health rules.
//!
//! sqlx's `Pool` pings every connection when it is returned (a `Sync` round trip), which
//! doubles the round trips of one-statement operations. This pool hands out plain
//! connections and takes them back without a ping, so the hot path stays one round trip.
//! Its rules:
//!
//! - **One deadline per operation** ([`PoolSettings::operation_timeout`]) covers the wait
//!   for a slot, a new connection (itself bounded by `connect_timeout`) and the round
//!   trip; a server that accepts and never answers, or is paused, cannot hold a caller.
//! - **A broken connection never serves another call.** A connection comes back only
//!   when its statement ran to completion or failed with an ordinary (non-FATAL) database
//!   error. I/O errors, FATAL errors (`57P01` admin shutdown, `57P02` crash, `57P03`,
//!   class `08` connection errors) and cancelled operations drop it.
//! - **After a failure, older idle connections are suspect.** A broken connection bumps
//!   the pool's generation; idle connections of an older generation are closed instead
//!   of used, so a restart costs one failed call, not one per pooled connection.
//! - **A call never fails for a connection the server had already closed.** When a
//!   reused idle connection answers with a FATAL shutdown error, the server closed it
//!   before reading the statement, which therefore never ran: the operation is sent again
//!   on a fresh connection, once.
//! - **Age limits.** Idle connections older than `idle_timeout` or `max_lifetime` are
//!   closed; one idle for longer than `check_idle_after` is pinged before use (the only
//!   extra round trip, and only after a quiet period).
//! - **Role connection limits queue.** When the server refuses a new connection because
//!   the role or database is at its limit (`53300`) while other connections of this pool
//!   are busy, the caller waits for one of those instead of failing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::statement::Protocol;

/// Limits of a [`ConnPool`], from [`PgConfig`](crate::PgConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub check_idle_after: Duration,
    pub protocol: Protocol,
}

struct IdleConn {
    conn: PgConnection,
    created: Instant,
    returned: Instant,
    generation: u64,
}

pub(crate) struct ConnPool {
    options: PgConnectOptions,
    settings: PoolSettings,
    idle: Mutex<Vec<IdleConn>>,
    permits: Arc<Semaphore>,
    generation: AtomicU64,
    returned: Notify,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connect options: they hold the password.
        f.debug_struct("ConnPool")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Why an operation failed, and whether its statement may have reached the server.
#[derive(Debug)]
pub(crate) struct DbError {
    /// `None` when the operation's deadline passed.
    pub error: Option<sqlx::Error>,
    /// Whether the statement was sent (so a write may have run).
    pub sent: bool,
    /// The deadline that passed, for messages.
    pub deadline: Duration,
}

impl DbError {
    /// An error before anything was sent.
    pub(crate) fn before_send(error: sqlx::Error) -> Self {
        DbError {
            error: Some(error),
            sent: false,
            deadline: Duration::ZERO,
        }
    }
    pub(crate) fn sent(error: sqlx::Error) -> Self {
        DbError {
            error: Some(error),
            sent: true,
            deadline: Duration::ZERO,
        }
    }
}

/// A connection out of the pool; call [`Pooled::finish`] to give it back.
pub(crate) struct Pooled<'a> {
    pool: &'a ConnPool,
    conn: Option<PgConnection>,
    created: Instant,
    generation: u64,
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

/// What to do after a statement: done (with its result), or send it again on a fresh
/// connection because the reused one was already closed by the server.
pub(crate) enum Outcome<T> {
    Done(Result<T, DbError>),
    Resend,
}

/// Errors after which a connection must not be used again: the server ended it (FATAL
/// `57P..`, connection class `08`) or the transport failed. Ordinary database errors and
/// results that do not decode leave it usable (every result was read to the end).
fn is_fatal(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        sqlx::Error::RowNotFound
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Encode(_) => false,
        _ => true,
    }
}

/// A FATAL shutdown-class error: the server closed the connection, so a statement
/// arriving afterwards was never executed.
fn is_closed_by_server(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03")))
}

fn is_too_many_connections(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("53300"))
}

impl ConnPool {
    pub(crate) fn new(options: PgConnectOptions, settings: PoolSettings) -> Self {
        ConnPool {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(settings.max_connections.max(1) as usize)),
            generation: AtomicU64::new(0),
            returned: Notify::new(),
            settings,
        }
    }

    /// How statements are sent.
    pub(crate) fn protocol(&self) -> Protocol {
        self.settings.protocol
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        self.settings.operation_timeout
    }

    fn take_idle(&self) -> Option<IdleConn> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// A usable idle connection (closing stale ones), or `None`.
    async fn usable_idle(&self) -> Option<IdleConn> {
        let now = Instant::now();
        while let Some(mut idle) = self.take_idle() {
            let current = self.generation.load(Ordering::Acquire);
            let too_old = now.duration_since(idle.created) >= self.settings.max_lifetime
                || now.duration_since(idle.returned) >= self.settings.idle_timeout;
            if idle.generation < current || too_old {
                drop(idle.conn);
                continue;
            }
            if now.duration_since(idle.returned) >= self.settings.check_idle_after
                && idle.conn.ping().await.is_err()
            {
                continue;
            }
            return Some(idle);
        }
        None
    }

    /// A new connection within the connect timeout.
    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        tokio::time::timeout(self.settings.connect_timeout, async {
            self.options
                .connect()
                .await
                .map_err(|e| crate::tls::name_failure(e, &self.options))
        })
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the server did not complete a connection within {:?}",
                    self.settings.connect_timeout
                ),
            ))
        })?
    }

    /// An idle connection (unless `fresh`), or a new one, waiting at most the acquire
    /// timeout for a slot.
    pub(crate) async fn acquire(&self, fresh: bool) -> Result<Pooled<'_>, DbError> {
        let permit = tokio::time::timeout(
            self.settings.acquire_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| DbError::before_send(sqlx::Error::PoolTimedOut))?
        .map_err(|_| DbError::before_send(sqlx::Error::PoolClosed))?;
        loop {
            if !fresh && let Some(idle) = self.usable_idle().await {
                return Ok(Pooled {
                    pool: self,
                    conn: Some(idle.conn),
                    created: idle.created,
                    generation: idle.generation,
                    reused: true,
                    _permit: permit,
                });
            }
            let generation = self.generation.load(Ordering::Acquire);
            match self.connect().await {
                Ok(conn) => {
                    return Ok(Pooled {
                        pool: self,
                        conn: Some(conn),
                        created: Instant::now(),
                        generation,
                        reused: false,
                        _permit: permit,
                    });
                }
                // Others hold connections that work (or just gave one back): wait for
                // one of them. The operation deadline bounds the wait.
                Err(e) if is_too_many_connections(&e) && (self.busy() > 1 || self.has_idle()) => {
                    tokio::select! {
                        () = self.returned.notified() => {}
                        () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
                Err(e) => return Err(DbError::before_send(e)),
            }
        }
    }

    fn has_idle(&self) -> bool {
        !self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Connections currently handed out.
    fn busy(&self) -> usize {
        self.settings.max_connections.max(1) as usize - self.permits.available_permits()
    }

    /// Closes idle connections.
    pub(crate) async fn close(&self) {
        let idle: Vec<IdleConn> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for idle in idle {
            let _ = idle.conn.close().await;
        }
    }
}

impl Pooled<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("the connection is only taken by finish, which consumes self"),
        }
    }

    /// Returns the connection to the pool unless `result` says it may be broken, and says
    /// whether the statement must be sent again on a fresh connection.
    ///
    /// `read_only`: the statement changes nothing, so it may be sent again after an I/O
    /// error too (a server killed or shut down immediately closes without a FATAL).
    pub(crate) fn finish<T>(
        mut self,
        result: Result<T, sqlx::Error>,
        read_only: bool,
    ) -> Outcome<T> {
        let error = match result {
            Ok(v) => {
                self.give_back();
                return Outcome::Done(Ok(v));
            }
            Err(e) => e,
        };
        if !is_fatal(&error) {
            self.give_back();
            return Outcome::Done(Err(DbError::sent(error)));
        }
        // Every idle connection as old as this one is suspect now.
        self.pool
            .generation
            .fetch_max(self.generation + 1, Ordering::AcqRel);
        self.pool.returned.notify_one();
        let io = matches!(error, sqlx::Error::Io(_) | sqlx::Error::Protocol(_));
        if self.reused && (is_closed_by_server(&error) || (read_only && io)) {
            return Outcome::Resend;
        }
        Outcome::Done(Err(DbError::sent(error)))
    }

    fn give_back(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(IdleConn {
                    conn,
                    created: self.created,
                    returned: Instant::now(),
                    generation: self.generation,
                });
            self.pool.returned.notify_one();
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        // A connection dropped mid-operation (a deadline, a cancelled caller) is closed
        // with its socket; a waiter for a slot under a role limit may connect now.
        if self.conn.is_some() {
            self.pool.returned.notify_one();
        }
    }
}

/// Runs `operation` within the pool's operation deadline; `sent` tells whether a
/// statement left for the server before the deadline passed.
pub(crate) async fn with_deadline<T>(
    pool: &ConnPool,
    sent: &AtomicBool,
    operation: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    let deadline = pool.operation_timeout();
    match tokio::time::timeout(deadline, operation).await {
        Ok(result) => result,
        Err(_) => Err(DbError {
            error: None,
            sent: sent.load(Ordering::Acquire),
            deadline,
        }),
    }
}

/// Runs one statement on a pooled connection within the operation deadline and reads it
/// to completion: `fetch_all` (not `fetch_one`, which would leave a `Sync` for the next
/// operation to pay for). The statement is sent again, once, on a fresh connection when
/// the reused one turns out to have been closed by the server.
///
/// `fetch_all!(read self.db, query)` marks a statement that changes nothing: it is also
/// sent again after an I/O error on a reused connection.
macro_rules! fetch_all {
    (read $pool:expr, $query:expr) => {
        $crate::pool::fetch_all!(@run true, $pool, $query)
    };
    ($pool:expr, $query:expr) => {
        $crate::pool::fetch_all!(@run false, $pool, $query)
    };
    (@run $read_only:expr, $pool:expr, $query:expr) => {{
        let sent = std::sync::atomic::AtomicBool::new(false);
        $crate::pool::with_deadline(&$pool, &sent, async {
            let mut fresh = false;
            loop {
                let mut pooled = $pool.acquire(fresh).await?;
                sent.store(true, std::sync::atomic::Ordering::Release);
                let protocol = $pool.protocol();
                let result = $query.fetch_all(pooled.conn(), protocol).await;
                match pooled.finish(result, $read_only) {
                    $crate::pool::Outcome::Done(result) => break result,
                    // Only a reused connection asks for this, so it happens at most once.
                    $crate::pool::Outcome::Resend => {
                        sent.store(false, std::sync::atomic::Ordering::Release);
                        fresh = true;
                    }
                }
            }
        })
        .await
    }};
}

/// [`fetch_all!`] for a statement returning exactly one row.
macro_rules! fetch_single {
    (read $pool:expr, $query:expr) => {
        $crate::pool::fetch_all!(read $pool, $query)
            .and_then(|rows| $crate::pool::single(rows).map_err($crate::pool::DbError::sent))
    };
    ($pool:expr, $query:expr) => {
        $crate::pool::fetch_all!($pool, $query)
            .and_then(|rows| $crate::pool::single(rows).map_err($crate::pool::DbError::sent))
    };
}

pub(crate) use {fetch_all, fetch_single};

/// The one row of a one-row statement.
pub(crate) fn single<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}
