//! A small connection pool.
//!
//! sqlx's `Pool` pings every connection when it is returned (a `Sync` round trip), which
//! doubles the round trips of one-statement operations. This pool hands out plain
//! connections and takes them back without a ping. A connection comes back only when
//! its statement ran to completion or failed with a database error (after which the
//! connection is in a clean state); one whose operation was cancelled mid-flight, or
//! that hit an I/O error, is dropped and closed instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(crate) struct ConnPool {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

/// A connection out of the pool; call [`Pooled::finish`] to give it back.
pub(crate) struct Pooled<'a> {
    pool: &'a ConnPool,
    conn: Option<PgConnection>,
    _permit: OwnedSemaphorePermit,
}

impl ConnPool {
    pub(crate) fn new(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> Self {
        ConnPool {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1) as usize)),
            acquire_timeout,
        }
    }

    /// An idle connection, or a new one, waiting at most the acquire timeout for a slot.
    pub(crate) async fn acquire(&self) -> Result<Pooled<'_>, sqlx::Error> {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }

    /// Closes idle connections.
    pub(crate) async fn close(&self) {
        let idle: Vec<PgConnection> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for conn in idle {
            let _ = conn.close().await;
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

    /// Returns the connection to the pool unless `result` says it may be broken.
    pub(crate) fn finish<T>(mut self, result: &Result<T, sqlx::Error>) {
        let clean = match result {
            Ok(_) => true,
            Err(sqlx::Error::Database(_)) | Err(sqlx::Error::RowNotFound) => true,
            Err(_) => false,
        };
        if clean && let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

/// Runs one statement on a pooled connection and reads it to completion: `fetch_all`
/// (not `fetch_one`, which would leave a `Sync` for the next operation to pay for).
macro_rules! fetch_all {
    ($pool:expr, $query:expr) => {
        async {
            let mut pooled = $pool.acquire().await?;
            let result = $query.fetch_all(pooled.conn()).await;
            pooled.finish(&result);
            result
        }
        .await
    };
}

/// [`fetch_all!`] for a statement returning exactly one row.
macro_rules! fetch_single {
    ($pool:expr, $query:expr) => {
        $crate::pool::fetch_all!($pool, $query).and_then($crate::pool::single)
    };
}

pub(crate) use {fetch_all, fetch_single};

/// The one row of a one-row statement.
pub(crate) fn single<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}
