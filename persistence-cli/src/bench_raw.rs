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
    Redis {
        /// The client (TLS files applied), for new connections.
        client: Box<redis::Client>,
        /// The connection the `EVAL`s use.
        conn: redis::aio::MultiplexedConnection,
    },
    /// An insert into a map under a mutex (the memory backend has no storage below it).
    Memory(Arc<std::sync::Mutex<std::collections::HashMap<usize, usize>>>),
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
                let client = redis_client(&target.open_url)?;
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| raw_error("connect", e))?;
                Ok(Baseline::Redis {
                    client: Box::new(client),
                    conn,
                })
            }
            _ => Ok(Baseline::Memory(Arc::default())),
        }
    }

    /// Measures `ops` raw operations on one task.
    pub async fn measure(&self, ops: usize) -> Result<Stats> {
        let (failure, fail) = first_failure();
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
            Baseline::Redis { conn, .. } => {
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

    /// Whether the baseline talks to a server (so [`Self::connection_setup`] applies).
    pub fn opens_connections(&self) -> bool {
        matches!(self, Baseline::Postgres(_) | Baseline::Redis { .. })
    }

    /// Opens `count` new raw connections one after another (TCP, TLS handshake when the
    /// URL asks for it, authentication): what a pool pays once per connection, never per
    /// operation.
    ///
    /// # Errors
    /// The first failed connection; `InvalidInput` for a baseline without a server
    /// (see [`Self::opens_connections`]).
    pub async fn connection_setup(&self, target: &Target, count: usize) -> Result<Stats> {
        let (failure, fail) = first_failure();
        let name = if target.tls {
            "new connection (with TLS)"
        } else {
            "new connection"
        };
        let stats = match self {
            Baseline::Postgres(_) => {
                let url = target.open_url.clone();
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
            Baseline::Redis { client, .. } => {
                let client = (**client).clone();
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
        let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failed {
            Some(e) => Err(raw_error("connect", e)),
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

/// A client of the first node of a Redis URL (an `EVAL` without keys runs on any node of
/// a cluster), with the URL's TLS files (`sslrootcert`, `sslcert`, `sslkey`) applied.
fn redis_client(url: &str) -> Result<redis::Client> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let node = match base.split_once("+cluster://") {
        Some((scheme, nodes)) => format!(
            "{scheme}://{}",
            nodes
                .split(',')
                .next()
                .unwrap_or(nodes)
                .trim_end_matches('/')
        ),
        None => base.to_string(),
    };
    let option = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(std::path::PathBuf::from)
    };
    let (root, cert, key) = (option("sslrootcert"), option("sslcert"), option("sslkey"));
    let pem = persistence::TlsPem::read(root.as_deref(), cert.as_deref(), key.as_deref())?;
    if pem.is_empty() {
        return redis::Client::open(node.as_str()).map_err(|e| raw_error("url", e));
    }
    let certs = redis::TlsCertificates {
        client_tls: pem.client.map(|c| redis::ClientTlsConfig {
            client_cert: c.cert,
            client_key: c.key,
        }),
        root_cert: pem.root_cert,
    };
    redis::Client::build_with_tls(node.as_str(), certs).map_err(|e| raw_error("url", e))
}
