//! The storage's own cost counters `persistence bench` prints beside each row:
//!
//! - files: flush requests completed by the disk (`/sys/dev/block/M:m/stat`);
//! - Postgres: WAL syncs from `pg_stat_wal` (WAL writes on a server with `fsync` off,
//!   which never syncs), with WAL writes and WAL bytes (from the insert position, exact)
//!   in the detail. A server backend publishes its counts when
//!   it exits, when asked (`pg_stat_force_next_flush()`, PostgreSQL 15+), or up to 10 s
//!   after it goes idle: so each Postgres row runs on a backend opened for it and closed
//!   before the reading, the baseline's connections are asked to publish, and the
//!   reading waits [`PG_SETTLE`] for closed connections' server processes to exit;
//! - Redis: CPU of the server's main thread (`INFO cpu`, the single thread that bounds
//!   it), with `INFO commandstats` calls per operation and `usec_per_call` per command in
//!   the detail (commands a script runs are counted inside the script's time too).
//!
//! A cluster and the memory backend have no single counter: their rows show none.

use std::collections::BTreeMap;
use std::time::Duration;

use persistence::Persistence;

use crate::bench_raw::BuiltIn;
use persistence_bench::{Cost, DeviceFlushes};
use tokio::sync::Mutex;

/// How long a reading waits for the server processes of just-closed connections to exit
/// (and so publish their counts).
pub const PG_SETTLE: Duration = Duration::from_millis(300);

/// The counter of one backend.
pub enum CostCounter {
    /// The disk under a filesystem root.
    Disk(DeviceFlushes),
    /// `pg_stat_wal` over a connection of its own.
    Wal {
        conn: Mutex<sqlx::PgConnection>,
        /// Whether the server has `fsync` on: WAL syncs are counted, else (a server
        /// that never syncs) WAL writes, and the unit says which.
        fsync: bool,
    },
    /// `INFO` over a connection of its own.
    Redis(redis::aio::MultiplexedConnection),
    /// Nothing to read.
    None,
}

/// A reading of a [`CostCounter`].
pub enum Reading {
    Disk(Option<u64>),
    Wal(Option<WalCounts>),
    Redis(Option<RedisCounts>),
    None,
}

#[derive(Clone, Copy)]
pub struct WalCounts {
    syncs: i64,
    writes: i64,
    /// WAL bytes inserted so far (`pg_current_wal_insert_lsn()`).
    bytes: f64,
}

pub struct RedisCounts {
    main_thread_cpu: f64,
    /// Command name → (calls, usec).
    commands: BTreeMap<String, (u64, u64)>,
}

impl CostCounter {
    /// The counter for `p`'s storage; [`CostCounter::None`] where there is none or it
    /// cannot be reached (the rows then show no cost, the bench still runs).
    pub async fn connect(p: &Persistence, url: &str) -> Self {
        match crate::bench_raw::built_in(p) {
            #[allow(unreachable_patterns)]
            BuiltIn::Fs(fs) => CostCounter::Disk(DeviceFlushes::of(fs.layout().base())),
            BuiltIn::Postgres => {
                use sqlx::Connection;
                let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
                    return CostCounter::None;
                };
                let fsync: Option<String> = sqlx::query_scalar("SHOW fsync")
                    .fetch_one(&mut conn)
                    .await
                    .ok();
                CostCounter::Wal {
                    conn: Mutex::new(conn),
                    fsync: fsync.as_deref() != Some("off"),
                }
            }
            BuiltIn::Redis if !url.contains("+cluster://") => {
                let conn = match crate::bench_raw::redis_client(url) {
                    Ok(client) => client.get_multiplexed_async_connection().await.ok(),
                    Err(_) => None,
                };
                conn.map_or(CostCounter::None, CostCounter::Redis)
            }
            _ => CostCounter::None,
        }
    }

    /// Whether a row's counts are complete only once the backend it ran on is closed
    /// (Postgres: see the module docs), so each row opens its own.
    pub fn counts_on_close(&self) -> bool {
        matches!(self, CostCounter::Wal { .. })
    }

    /// Reads the counter now.
    pub async fn read(&self) -> Reading {
        match self {
            CostCounter::Disk(d) => Reading::Disk(d.count()),
            CostCounter::Wal { conn, .. } => {
                let row: Option<(i64, i64, f64)> = sqlx::query_as(
                    "SELECT wal_sync, wal_write, \
                     pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8 \
                     FROM pg_stat_wal",
                )
                .fetch_one(&mut *conn.lock().await)
                .await
                .ok();
                Reading::Wal(row.map(|(syncs, writes, bytes)| WalCounts {
                    syncs,
                    writes,
                    bytes,
                }))
            }
            CostCounter::Redis(conn) => Reading::Redis(redis_counts(conn.clone()).await),
            CostCounter::None => Reading::None,
        }
    }

    /// The cost per operation of the `ops` operations run since `before`.
    pub async fn since(&self, before: Reading, ops: usize) -> Option<Cost> {
        if self.counts_on_close() {
            tokio::time::sleep(PG_SETTLE).await;
        }
        match (before, self.read().await) {
            (Reading::Disk(b), Reading::Disk(_)) => match self {
                CostCounter::Disk(d) => d.since(b, ops),
                _ => None,
            },
            (Reading::Wal(Some(b)), Reading::Wal(Some(a))) => {
                let per = |n: i64| n as f64 / ops.max(1) as f64;
                let bytes = (a.bytes - b.bytes) / ops.max(1) as f64;
                let cost = match self {
                    CostCounter::Wal { fsync: true, .. } => Cost::per_op(
                        (a.syncs - b.syncs) as f64,
                        ops,
                        "WAL syncs",
                        format!(
                            "pg_stat_wal: {:.2} WAL writes/op; {bytes:.0} WAL bytes/op (the \
                             whole server's)",
                            per(a.writes - b.writes)
                        ),
                    ),
                    _ => Cost::per_op(
                        (a.writes - b.writes) as f64,
                        ops,
                        "WAL writes",
                        format!(
                            "pg_stat_wal: this server has fsync off, so it never syncs: WAL \
                             writes counted instead; {bytes:.0} WAL bytes/op (the whole \
                             server's)"
                        ),
                    ),
                };
                Some(cost)
            }
            (Reading::Redis(Some(b)), Reading::Redis(Some(a))) => {
                let per = |n: u64| n as f64 / ops.max(1) as f64;
                let mut used: Vec<(String, u64, u64)> = a
                    .commands
                    .iter()
                    .filter(|(name, _)| name.as_str() != "info")
                    .filter_map(|(name, &(calls, usec))| {
                        let (c0, u0) = b.commands.get(name).copied().unwrap_or((0, 0));
                        let calls = calls.saturating_sub(c0);
                        (calls > 0).then(|| (name.clone(), calls, usec.saturating_sub(u0)))
                    })
                    .collect();
                used.sort_by_key(|u| std::cmp::Reverse(u.2));
                let detail = used
                    .iter()
                    .map(|(name, calls, usec)| {
                        format!(
                            "{name} {:.2} calls/op {:.2} usec_per_call",
                            per(*calls),
                            *usec as f64 / (*calls).max(1) as f64
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                Some(Cost::per_op(
                    (a.main_thread_cpu - b.main_thread_cpu).max(0.0) * 1e6,
                    ops,
                    "server CPU µs",
                    format!("INFO commandstats: {detail}"),
                ))
            }
            _ => None,
        }
    }
}

/// CPU seconds of the server's main thread (the whole process on servers that do not
/// report the thread apart) and each command's calls and usec.
async fn redis_counts(mut conn: redis::aio::MultiplexedConnection) -> Option<RedisCounts> {
    let cpu: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .ok()?;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .ok()?;
    let field = |name: &str| {
        cpu.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let main_thread_cpu = match (
        field("used_cpu_sys_main_thread"),
        field("used_cpu_user_main_thread"),
    ) {
        (Some(s), Some(u)) => s + u,
        _ => field("used_cpu_sys")? + field("used_cpu_user")?,
    };
    let commands = stats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let value = |key: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
            };
            Some((name.to_string(), (value("calls")?, value("usec")?)))
        })
        .collect();
    Some(RedisCounts {
        main_thread_cpu,
        commands,
    })
}
