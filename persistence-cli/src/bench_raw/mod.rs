//! The raw baselines `persistence bench` compares with: the least a backend's operation
//! could cost on the same storage, at the same durability and the same concurrency,
//! measured in the same run. A write and a read baseline per backend:
//!
//! | backend | write | read |
//! |---|---|---|
//! | files | `write` + `fdatasync` (plain `write` without fsync) of a record to the task's own file | `pread` of a record |
//! | Postgres | a plain `INSERT` of a checkpoint row into `persistence.checkpoints` (durable: the same table, indexes and commit as a put), one connection per task | `SELECT` of one row by primary key |
//! | Redis | `SET` of a record-sized value | `GET` of it |
//! | Redis cluster | `EVAL` returning a constant (no key: any node) | `ECHO` of a record |
//!
//! Postgres also has a lock cycle baseline: `pg_try_advisory_lock` + `pg_advisory_unlock`
//! (two round trips, nothing written), which the lock cycle row is compared with; on
//! the other backends that row is compared with the raw write. A single Redis node also
//! has `EVALSHA` of a script running one `SET`: no row's baseline, but the least any
//! atomic multi-step operation costs that server (its `INFO commandstats` beside it).
//!
//! Everything a baseline writes is removed by [`Baseline::finish`].

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use persistence::{CheckpointId, Error, Persistence, Result};
use persistence_bench::{Stats, measure};
use tokio::sync::Mutex;

mod postgres;
mod redis_raw;

use postgres::{PG_TENANT, PG_THREAD, pg_advisory_cycle, pg_connect, pg_insert, pg_select};
pub use redis_raw::redis_client;
use redis_raw::{ONE_SET, ONE_SET_SHA, redis_prefix};

/// What a raw operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawOp {
    /// The cheapest durable write of a record.
    Write,
    /// The cheapest read of a record.
    Read,
    /// The server's own lock taken and released (Postgres: an advisory lock); only
    /// where [`Baseline::kinds`] has it.
    LockCycle,
    /// The least an atomic script costs (Redis: `EVALSHA` of a script running one
    /// `SET`); only where [`Baseline::kinds`] has it.
    Script,
    /// A new file made, written and closed, without a sync: what a store of one file
    /// per entry (checkpoints on the filesystem) pays besides its flush; only where
    /// [`Baseline::kinds`] has it.
    Create,
}

/// Distinguishes the files of successive [`RawOp::Create`] measurements.
static CREATE_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The baseline's own files or connections, one per task of the widest row.
pub struct Baseline {
    kind: Kind,
}

enum Kind {
    File {
        files: Vec<Arc<std::sync::Mutex<std::fs::File>>>,
        paths: Vec<PathBuf>,
        /// Where [`RawOp::Create`] makes its files.
        created: PathBuf,
        record: Arc<Vec<u8>>,
        sync: bool,
    },
    Postgres {
        conns: Vec<Arc<Mutex<sqlx::PgConnection>>>,
        read_id: uuid::Uuid,
    },
    Redis {
        conn: redis::aio::MultiplexedConnection,
        /// `None` on a cluster: keyless commands only.
        keys: Option<RedisKeys>,
        record: Arc<Vec<u8>>,
    },
    Memory(Arc<std::sync::Mutex<std::collections::HashMap<usize, usize>>>),
}

struct RedisKeys {
    write: Vec<String>,
    read: String,
}

type FailureSlot = Arc<std::sync::Mutex<Option<String>>>;

/// A slot for the first failure of measured operations, and the closure that fills it.
fn first_failure() -> (FailureSlot, impl Fn(String) + Clone + Send + Sync + 'static) {
    let failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = failure.clone();
    let fail = move |e: String| {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    };
    (failure, fail)
}

fn take_failure(failure: &FailureSlot, what: &str) -> Result<()> {
    match failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        Some(e) => Err(raw_error(what, e)),
        None => Ok(()),
    }
}

fn raw_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("raw baseline: {what}: {e}"))
}

impl Baseline {
    /// Opens the baseline's files or connections next to the backend's: `tasks` of them
    /// (the widest row's concurrency), to `url` directly (never through the counting
    /// proxy).
    pub async fn connect(
        p: &Persistence,
        url: &str,
        record_size: usize,
        tasks: usize,
    ) -> Result<Self> {
        let tasks = tasks.max(1);
        let record = Arc::new(vec![b'r'; record_size]);
        let kind = match crate::bench_raw::built_in(p) {
            #[allow(unreachable_patterns)]
            BuiltIn::Fs(fs) => {
                // Beside the layout directory, in the store's root (same filesystem).
                let base = fs.layout().base();
                let root = base.parent().unwrap_or(base).to_path_buf();
                let mut files = Vec::new();
                let mut paths = Vec::new();
                for k in 0..tasks {
                    let path = root.join(format!("bench-raw-{}-{k}", std::process::id()));
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .read(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| raw_error("open", e))?;
                    // The record the read baseline reads.
                    file.write_all(&record).map_err(|e| raw_error("write", e))?;
                    files.push(Arc::new(std::sync::Mutex::new(file)));
                    paths.push(path);
                }
                let created = root.join(format!("bench-raw-{}-new", std::process::id()));
                std::fs::create_dir_all(&created).map_err(|e| raw_error("mkdir", e))?;
                Kind::File {
                    files,
                    paths,
                    created,
                    record,
                    sync: p.capabilities().durable,
                }
            }
            BuiltIn::Postgres => {
                let mut conns = Vec::new();
                for _ in 0..tasks {
                    conns.push(Arc::new(Mutex::new(pg_connect(url).await?)));
                }
                let read_id = CheckpointId::new().as_uuid();
                if let Some(conn) = conns.first() {
                    pg_insert(&mut *conn.lock().await, read_id, 0)
                        .await
                        .map_err(|e| raw_error("insert", e))?;
                }
                Kind::Postgres { conns, read_id }
            }
            BuiltIn::Redis => {
                let client = redis_client(url)?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| raw_error("connect", e))?;
                let keys = if url.contains("+cluster://") {
                    None
                } else {
                    let prefix = format!("{}bench-raw:{}:", redis_prefix(url), std::process::id());
                    let keys = RedisKeys {
                        write: (0..tasks).map(|k| format!("{prefix}{k}")).collect(),
                        read: format!("{prefix}read"),
                    };
                    redis::cmd("SET")
                        .arg(&keys.read)
                        .arg(record.as_slice())
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(|e| raw_error("SET", e))?;
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(ONE_SET)
                        .query_async::<String>(&mut conn)
                        .await
                        .map_err(|e| raw_error("SCRIPT LOAD", e))?;
                    Some(keys)
                };
                Kind::Redis { conn, keys, record }
            }
            _ => Kind::Memory(Arc::default()),
        };
        Ok(Baseline { kind })
    }

    /// The row's label.
    pub fn name(&self, op: RawOp) -> &'static str {
        match (&self.kind, op) {
            (Kind::File { sync: true, .. }, RawOp::Write) => "raw write+fdatasync",
            (Kind::File { sync: false, .. }, RawOp::Write) => "raw write",
            (Kind::File { .. }, RawOp::Read) => "raw pread",
            (Kind::File { .. }, RawOp::Create) => "raw new file (no sync)",
            (_, RawOp::Create) => "raw new file (none)",
            (Kind::Postgres { .. }, RawOp::Write) => "raw INSERT (durable)",
            (Kind::Postgres { .. }, RawOp::Read) => "raw SELECT by key",
            (Kind::Postgres { .. }, RawOp::LockCycle) => "raw advisory lock cycle",
            (Kind::Redis { keys: Some(_), .. }, RawOp::Script) => "raw EVALSHA of one SET",
            (_, RawOp::LockCycle) => "raw lock cycle (none)",
            (_, RawOp::Script) => "raw script (none)",
            (Kind::Redis { keys: Some(_), .. }, RawOp::Write) => "raw SET",
            (Kind::Redis { keys: Some(_), .. }, RawOp::Read) => "raw GET",
            (Kind::Redis { keys: None, .. }, RawOp::Write) => "raw EVAL returning a constant",
            (Kind::Redis { keys: None, .. }, RawOp::Read) => "raw ECHO",
            (Kind::Memory(_), RawOp::Write) => "raw HashMap insert under a mutex",
            (Kind::Memory(_), RawOp::Read) => "raw HashMap get under a mutex",
        }
    }

    /// Measures `ops` raw operations on `tasks` concurrent tasks, each task on its own
    /// file or connection (Redis: one multiplexed connection, as the backend uses).
    ///
    /// # Errors
    /// The first failed operation.
    pub async fn measure(&self, op: RawOp, ops: usize, tasks: usize) -> Result<Stats> {
        if !self.kinds().contains(&op) {
            return Err(Error::invalid_input(format!(
                "bench: this backend has no baseline {}",
                self.name(op)
            )));
        }
        let (failure, fail) = first_failure();
        let name = self.name(op);
        let stats = match &self.kind {
            Kind::File {
                files,
                created,
                record,
                sync,
                ..
            } => {
                let (files, record, sync) = (files.clone(), record.clone(), *sync);
                // Names unique across calls: a fresh file per operation.
                let run = CREATE_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let created = created.clone();
                measure(name, ops, tasks, move |i| {
                    let file = files[i % tasks % files.len()].clone();
                    let (record, fail) = (record.clone(), fail.clone());
                    let new_file = created.join(format!("{run}-{i}"));
                    async move {
                        let done = tokio::task::spawn_blocking(move || {
                            if op == RawOp::Create {
                                return std::fs::write(&new_file, record.as_slice());
                            }
                            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                            match op {
                                // LockCycle, Script: refused above; Create: done.
                                RawOp::Write | RawOp::LockCycle | RawOp::Script | RawOp::Create => {
                                    f.write_all(&record)
                                        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
                                }
                                RawOp::Read => {
                                    use std::os::unix::fs::FileExt;
                                    let mut buf = vec![0; record.len()];
                                    f.read_exact_at(&mut buf, 0)
                                }
                            }
                        })
                        .await;
                        match done {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => fail(e.to_string()),
                            Err(e) => fail(e.to_string()),
                        }
                    }
                })
                .await
            }
            Kind::Postgres { conns, read_id } => {
                let (conns, read_id) = (conns.clone(), *read_id);
                measure(name, ops, tasks, move |i| {
                    let conn = conns[i % tasks % conns.len()].clone();
                    let fail = fail.clone();
                    async move {
                        let conn = &mut *conn.lock().await;
                        let done = match op {
                            RawOp::Write => {
                                pg_insert(conn, CheckpointId::new().as_uuid(), i as i64).await
                            }
                            RawOp::Read => pg_select(conn, read_id).await,
                            RawOp::LockCycle => pg_advisory_cycle(conn, i % tasks).await,
                            // Refused above.
                            RawOp::Script | RawOp::Create => Ok(()),
                        };
                        if let Err(e) = done {
                            fail(e.to_string());
                        }
                    }
                })
                .await
            }
            Kind::Redis {
                conn, keys, record, ..
            } => {
                let (conn, record) = (conn.clone(), record.clone());
                let keys = keys.as_ref().map(|k| (k.write.clone(), k.read.clone()));
                measure(name, ops, tasks, move |i| {
                    let (mut conn, fail) = (conn.clone(), fail.clone());
                    let cmd = match (&keys, op) {
                        (Some((write, _)), RawOp::Script) => {
                            let mut c = redis::cmd("EVALSHA");
                            c.arg(ONE_SET_SHA.as_str())
                                .arg(1)
                                .arg(&write[i % tasks % write.len()])
                                .arg(record.as_slice());
                            c
                        }
                        // LockCycle, Create: refused above.
                        (Some((write, _)), RawOp::Write | RawOp::LockCycle | RawOp::Create) => {
                            let mut c = redis::cmd("SET");
                            c.arg(&write[i % tasks % write.len()])
                                .arg(record.as_slice());
                            c
                        }
                        (Some((_, read)), RawOp::Read) => {
                            let mut c = redis::cmd("GET");
                            c.arg(read);
                            c
                        }
                        (None, RawOp::Write | RawOp::LockCycle | RawOp::Script | RawOp::Create) => {
                            let mut c = redis::cmd("EVAL");
                            c.arg("return 1").arg(0);
                            c
                        }
                        (None, RawOp::Read) => {
                            let mut c = redis::cmd("ECHO");
                            c.arg(record.as_slice());
                            c
                        }
                    };
                    async move {
                        if let Err(e) = cmd.query_async::<redis::Value>(&mut conn).await {
                            fail(e.to_string());
                        }
                    }
                })
                .await
            }
            Kind::Memory(map) => {
                let map = map.clone();
                measure(name, ops, tasks, move |i| {
                    let map = map.clone();
                    async move {
                        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
                        match op {
                            RawOp::Write | RawOp::LockCycle | RawOp::Script | RawOp::Create => {
                                map.insert(i, i);
                            }
                            RawOp::Read => {
                                std::hint::black_box(map.get(&i));
                            }
                        }
                    }
                })
                .await
            }
        };
        take_failure(&failure, "operation")?;
        Ok(stats)
    }

    /// Asks the server to publish the statistics of the baseline's connections now
    /// (`pg_stat_force_next_flush()`, PostgreSQL 15+; older servers publish within
    /// 10 s). Nothing to do elsewhere.
    pub async fn publish_stats(&self) {
        if let Kind::Postgres { conns, .. } = &self.kind {
            for conn in conns {
                let _ = sqlx::query("SELECT pg_stat_force_next_flush()")
                    .execute(&mut *conn.lock().await)
                    .await;
            }
        }
    }

    /// The baselines this backend has: always a write and a read; Postgres also its
    /// own lock ([`RawOp::LockCycle`], an advisory lock, which the lock cycle row is
    /// compared with; elsewhere that row is compared with the raw write); a single
    /// Redis node also the least a script costs ([`RawOp::Script`]); the filesystem
    /// also a new file ([`RawOp::Create`]).
    pub fn kinds(&self) -> Vec<RawOp> {
        let mut kinds = vec![RawOp::Write, RawOp::Read];
        match &self.kind {
            Kind::File { .. } => kinds.push(RawOp::Create),
            Kind::Postgres { .. } => kinds.push(RawOp::LockCycle),
            Kind::Redis { keys: Some(_), .. } => kinds.push(RawOp::Script),
            _ => {}
        }
        kinds
    }

    /// Whether the baseline talks to a server (so [`connection_setup`] applies).
    pub fn opens_connections(&self) -> bool {
        matches!(self.kind, Kind::Postgres { .. } | Kind::Redis { .. })
    }

    /// Removes what the baseline wrote: its files, its Postgres rows, its Redis keys.
    ///
    /// # Errors
    /// A failed delete (the rows or keys are named in the message, never their values).
    pub async fn finish(self) -> Result<()> {
        match self.kind {
            Kind::File { paths, created, .. } => {
                for path in paths {
                    let _ = std::fs::remove_file(path);
                }
                let _ = std::fs::remove_dir_all(created);
            }
            Kind::Postgres { conns, .. } => {
                if let Some(conn) = conns.first() {
                    sqlx::query(
                        "DELETE FROM persistence.checkpoints WHERE tenant_id = $1 \
                         AND thread_id = $2",
                    )
                    .bind(PG_TENANT)
                    .bind(PG_THREAD)
                    .execute(&mut *conn.lock().await)
                    .await
                    .map_err(|e| raw_error("delete the baseline's rows", e))?;
                }
            }
            Kind::Redis {
                mut conn,
                keys: Some(keys),
                ..
            } => {
                let mut del = redis::cmd("DEL");
                del.arg(&keys.read).arg(&keys.write);
                del.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| raw_error("delete the baseline's keys", e))?;
            }
            Kind::Redis { keys: None, .. } | Kind::Memory(_) => {}
        }
        Ok(())
    }
}

/// Opens `count` new raw connections one after another (TCP, TLS handshake when the URL
/// asks for it, authentication): what a pool pays once per connection, never per
/// operation. `url` is the backend's URL (or the counting proxy's, to count round trips).
///
/// # Errors
/// The first failed connection; `InvalidInput` for a backend without a server.
pub async fn connection_setup(
    p: &Persistence,
    url: &str,
    tls: bool,
    count: usize,
) -> Result<Stats> {
    let (failure, fail) = first_failure();
    let name = if tls {
        "new connection (with TLS)"
    } else {
        "new connection"
    };
    let url = url.to_string();
    let stats = match crate::bench_raw::built_in(p) {
        BuiltIn::Postgres => {
            measure(name, count, 1, move |_| {
                let (url, fail) = (url.clone(), fail.clone());
                async move {
                    use sqlx::Connection;
                    match sqlx::PgConnection::connect(&url).await {
                        Ok(conn) => {
                            let _ = conn.close().await;
                        }
                        Err(e) => fail(e.to_string()),
                    }
                }
            })
            .await
        }
        BuiltIn::Redis => {
            let client = redis_client(&url)?;
            measure(name, count, 1, move |_| {
                let (client, fail) = (client.clone(), fail.clone());
                async move {
                    if let Err(e) = client.get_multiplexed_async_connection().await {
                        fail(e.to_string());
                    }
                }
            })
            .await
        }
        _ => {
            return Err(Error::invalid_input(
                "connection setup is measured for server backends only",
            ));
        }
    };
    take_failure(&failure, "connect")?;
    Ok(stats)
}

/// The built-in backend a bench runs on: the raw baselines and cost counters exist for
/// these only.
pub(crate) enum BuiltIn<'a> {
    Fs(&'a persistence::fs::FsBackend),
    Postgres,
    Redis,
    Other,
}

/// Which [`BuiltIn`] backend `p` is.
pub(crate) fn built_in(p: &Persistence) -> BuiltIn<'_> {
    if let Some(fs) = p.backend::<persistence::fs::FsBackend>() {
        BuiltIn::Fs(fs)
    } else if p.backend::<persistence::postgres::PgBackend>().is_some() {
        BuiltIn::Postgres
    } else if p.backend::<persistence::redis::RedisBackend>().is_some() {
        BuiltIn::Redis
    } else {
        BuiltIn::Other
    }
}
