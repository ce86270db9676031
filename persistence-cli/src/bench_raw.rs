//! The raw baselines `persistence bench` compares with: the least a backend's operation
//! could cost on the same storage, measured in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use persistence::{Backend, CheckpointId, Error, Persistence, Result};
use persistence_bench::{Stats, measure};
use tokio::sync::Mutex;

use crate::bench::Target;

/// A connection or file for the raw baseline.
pub enum Baseline {
    /// `write` (+ `fdatasync` when the store is durable) of one record to a file.
    File {
        file: Arc<std::sync::Mutex<std::fs::File>>,
        path: PathBuf,
        record: Arc<Vec<u8>>,
        sync: bool,
    },
    /// One plain `INSERT` of a checkpoint-sized row over one connection.
    Postgres(Arc<Mutex<sqlx::PgConnection>>),
    /// One plain `EVAL` returning a constant.
    Redis(redis::aio::MultiplexedConnection),
    /// An insert into a map under a mutex (the memory backend has no storage below it).
    Memory(Arc<std::sync::Mutex<std::collections::HashMap<usize, usize>>>),
}

fn raw_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("raw baseline: {what}: {e}"))
}

impl Baseline {
    /// Opens the baseline's own file or connection next to the backend's.
    pub async fn connect(p: &Persistence, target: &Target, record_size: usize) -> Result<Self> {
        match p.backend() {
            #[allow(unreachable_patterns)]
            Backend::Fs(fs) => {
                // Beside the layout directory, in the store's root (same filesystem).
                let base = fs.layout().base();
                let root = base.parent().unwrap_or(base).to_path_buf();
                let path = root.join(format!("bench-raw-{}", std::process::id()));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| raw_error("open", e))?;
                Ok(Baseline::File {
                    file: Arc::new(std::sync::Mutex::new(file)),
                    path,
                    record: Arc::new(vec![b'r'; record_size]),
                    sync: p.capabilities().durable,
                })
            }
            Backend::Postgres(_) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&target.open_url)
                    .await
                    .map_err(|e| raw_error("connect", e))?;
                sqlx::query(
                    "CREATE TEMP TABLE bench_raw (tenant_id text, thread_id text, \
                     checkpoint_id uuid PRIMARY KEY, step bigint, state jsonb, metadata jsonb)",
                )
                .execute(&mut conn)
                .await
                .map_err(|e| raw_error("create table", e))?;
                Ok(Baseline::Postgres(Arc::new(Mutex::new(conn))))
            }
            Backend::Redis(_) => {
                let url = first_node(&target.open_url);
                let client = redis::Client::open(url.as_str()).map_err(|e| raw_error("url", e))?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| raw_error("connect", e))?;
                Ok(Baseline::Redis(conn))
            }
            _ => Ok(Baseline::Memory(Arc::default())),
        }
    }

    /// Measures `ops` raw operations on one task.
    pub async fn measure(&self, ops: usize) -> Result<Stats> {
        let failure = Arc::new(std::sync::Mutex::new(None::<String>));
        let seen = failure.clone();
        let fail = move |e: String| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        };
        let stats = match self {
            Baseline::File {
                file, record, sync, ..
            } => {
                let (file, record, sync) = (file.clone(), record.clone(), *sync);
                let name = if sync {
                    "raw write+fdatasync"
                } else {
                    "raw write"
                };
                measure(name, ops, 1, move |_| {
                    let (file, record, fail) = (file.clone(), record.clone(), fail.clone());
                    async move {
                        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                        let written = f
                            .write_all(&record)
                            .and_then(|()| if sync { f.sync_data() } else { Ok(()) });
                        if let Err(e) = written {
                            fail(e.to_string());
                        }
                    }
                })
                .await
            }
            Baseline::Postgres(conn) => {
                let conn = conn.clone();
                let state =
                    serde_json::json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});
                measure("raw INSERT (one connection)", ops, 1, move |i| {
                    let (conn, state, fail) = (conn.clone(), state.clone(), fail.clone());
                    async move {
                        let inserted =
                            sqlx::query("INSERT INTO bench_raw VALUES ($1, $2, $3, $4, $5, '{}')")
                                .bind("persistence-bench")
                                .bind("raw")
                                .bind(CheckpointId::new().as_uuid())
                                .bind(i as i64)
                                .bind(sqlx::types::Json(state))
                                .execute(&mut *conn.lock().await)
                                .await;
                        if let Err(e) = inserted {
                            fail(e.to_string());
                        }
                    }
                })
                .await
            }
            Baseline::Redis(conn) => {
                let conn = conn.clone();
                measure("raw EVAL returning a constant", ops, 1, move |_| {
                    let (mut conn, fail) = (conn.clone(), fail.clone());
                    async move {
                        let mut eval = redis::cmd("EVAL");
                        eval.arg("return 1").arg(0);
                        if let Err(e) = eval.query_async::<i64>(&mut conn).await {
                            fail(e.to_string());
                        }
                    }
                })
                .await
            }
            Baseline::Memory(map) => {
                let map = map.clone();
                measure("raw HashMap insert under a mutex", ops, 1, move |i| {
                    let map = map.clone();
                    async move {
                        map.lock().unwrap_or_else(|e| e.into_inner()).insert(i, i);
                    }
                })
                .await
            }
        };
        let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failed {
            Some(e) => Err(raw_error("operation", e)),
            None => Ok(stats),
        }
    }

    /// Removes the baseline's file; connections close when dropped.
    pub async fn finish(self) {
        if let Baseline::File { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `redis://first-host:port` of a `redis+cluster://h1:p1,h2:p2` URL (an `EVAL` without
/// keys runs on any node); other URLs without their `?options`.
fn first_node(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    match url.strip_prefix("redis+cluster://") {
        Some(nodes) => format!("redis://{}", nodes.split(',').next().unwrap_or(nodes)),
        None => url.to_string(),
    }
}
