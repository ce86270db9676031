//! Redis backend: every multi-step operation is one Lua script (EVALSHA, atomic, one
//! round trip), keys carry hash tags so each script touches one slot, and it runs on a
//! single node or a Redis Cluster alike.
//!
//! ```no_run
//! use persistence_redis::{RedisBackend, RedisConfig};
//! # async fn run() -> persistence_core::Result<()> {
//! let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let cluster = RedisBackend::connect(RedisConfig::new("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")).await?;
//! let tls = RedisBackend::connect(
//!     RedisConfig::new("rediss://redis.internal:6380").with_tls_root_cert("/etc/app/redis-ca.pem"),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! See [`keys`]: one hash tag per thread, session, namespace and lock; tenant indexes
//! (sorted sets of thread ids, session ids, namespaces) under a per-tenant tag, so
//! listing never SCANs the keyspace. Writes that create an entity add it to its tenant
//! index in the same flight of requests; readers drop index entries whose entity is gone
//! (expired or deleted), and `purge_expired` cleans the rest.
//!
//! # Durability limits
//! Redis acknowledges a write once it is in memory; what survives a crash depends on the
//! server's settings, and the default is snapshots only (`appendonly no`, `save 3600 1
//! 300 100 60 10000`): a crash or restart loses every write since the last snapshot, and
//! a server started with `--save ""` and no AOF loses everything. `appendonly yes` with
//! `appendfsync everysec` loses about a second; `appendfsync always` none on one node.
//! Replication is asynchronous: a failover can lose acknowledged writes. Set
//! [`RedisConfig::wait_replicas`] to issue `WAIT` after every write (leases included;
//! a lease whose confirmation fails is released, not left held), which narrows that
//! window at the cost of a round trip. An evicting `maxmemory-policy` frees a held lock
//! early and loses items and events: `connect` refuses such a server unless
//! [`RedisConfig::allow_eviction`] is set.
//!
//! # Fences
//! Fences are decimal strings of up to 19 digits (`0..=Fence::MAX`), compared digit by
//! digit in the scripts, never as Lua doubles (exact only to 2^53). A new lease's fence
//! is one more than the lock's counter and never less than the server clock in
//! microseconds (`TIME`), so fences never go backwards even when the counter is lost
//! (restart without persistence, failover to a replica that missed it, eviction),
//! provided the server clock does not step back by more than the time since the
//! earlier fence. Because of that floor the counter expires an hour after its lease:
//! lock names used once leave no key behind. What a data loss does lose is a thread's
//! or session's record of the highest fence seen: until the new holder writes, a
//! stale holder's write can be accepted (tested in `tests/faults.rs`).
//!
//! # Deadlines and errors
//! [`RedisConfig::timeout`] bounds connecting and each response, on a single node and
//! a cluster alike; every request also has a client-side deadline of twice that. A
//! paused or lost server fails calls `Unavailable` within it. `LOADING` (a restarted
//! server reading its dataset), `TRYAGAIN`, `MASTERDOWN` and `CLUSTERDOWN` are
//! `Unavailable` too, and reads retry through them. No error, `Debug` output or span
//! shows the URL's password.
//!
//! # TLS
//! `rediss://host:port` (single node) and `rediss+cluster://h1:p1,h2:p2` (every node over
//! TLS; run the cluster with `tls-cluster yes` so it announces its TLS ports), through
//! rustls (ring, no OpenSSL). The server's certificate and name are always verified,
//! against the system's roots (`/etc/ssl/certs`) or the PEM CA file in
//! [`RedisConfig::tls_root_cert`] (URL option `sslrootcert`); a client certificate for
//! `tls-auth-clients yes` comes from [`RedisConfig::tls_client_cert`] and
//! [`RedisConfig::tls_client_key`] (`sslcert`, `sslkey`). Files are read and checked at
//! connect (`InvalidInput` naming the option); giving them with `redis://` is refused.
//! Failures are `ErrorKind::Tls` naming the host and what to set: untrusted
//! certificate, name mismatch, plaintext server (a silent handshake is followed by one
//! plaintext `PING` probe to tell it from an outage), client certificate refused. The
//! whole conformance suite runs over mutual TLS on a node and on a cluster (TLS bus);
//! each operation makes the server run the same commands as in plaintext
//! (`tests/tls.rs`, `INFO commandstats`). The process-wide rustls crypto provider is
//! ring's unless the application installed one first.
//!
//! # Round trips and performance
//! Every operation is one script, one command, or one `MULTI`/`EXEC` transaction of
//! plain commands (an item get; a checkpoint put with neither guard nor fence, whose
//! `HSETNX`es leave an existing id untouched and which reads the id back only then, to
//! tell an idempotent repeat from a conflict) on the entity's slot; writes that create an entity send
//! their tenant-index update concurrently on the same multiplexed connection, so they
//! still cost one network flight. Listings and searches read the tenant index and then
//! the entities (a few flights per page). `persistence bench` prints ops/s, latency,
//! round trips and each row's `INFO commandstats` beside raw baselines measured in the
//! same run; the README has the project's figures.
//!
//! What bounds a script is its server's cost per call. On Redis 7.0 on that VM
//! (`INFO commandstats`, `redis-benchmark`): an empty script costs 1.2 µs, each
//! `redis.call` inside it 2–3 µs more, a plain `SET` 1.4 µs; so a script with the four
//! or five commands a guarded, fenced, indexed write needs costs 12–19 µs
//! (`persistence bench` prints `raw EVALSHA of one SET` beside the baselines, and each
//! row's commandstats). The scripts use as few calls as their guarantees allow:
//! a guarded or fenced checkpoint put takes its created-at from the writer (as the
//! unguarded transaction does: the clock of the writer, whose UUIDv7 id orders the
//! checkpoint, not the server's `TIME`), session append reads head and expiry
//! with one `HMGET`, item put skips the index and expiry calls an existing item does not
//! need. With 8 tasks the single Redis thread is the bottleneck: in `persistence bench`
//! (2026-12-03, medians of three runs, on a VM where a `SET` costs Redis 0.6–0.7 µs and
//! an `EVALSHA` of a one-`SET` script 4.6–5.2 µs) the scripted writes reach 0.20–0.33× a
//! plain `SET`, where a script running nothing but one `SET` reaches 0.65×; an item get,
//! a transaction of plain commands (3–4 µs), 0.53× a `GET`. On 2026-12-04 an unguarded
//! checkpoint put, now a transaction (`EXEC` ~11 µs with its two `HSETNX` and `ZADD`),
//! reached 0.55× / 0.35× (1 / 8 tasks), from 0.37× / 0.25× as a script.
//!
//! # Encryption at rest
//! With the `codec` feature, `RedisConfig::with_codec` names a `persistence-codec` codec
//! (zstd, AES-256-GCM under per-tenant, per-write keys, each payload bound to its row). The
//! connected backend then sends every [`Checkpointer`](persistence_core::Checkpointer),
//! [`Store`](persistence_core::Store) and [`SessionLog`](persistence_core::SessionLog) call
//! through it, so the backend value used directly stores sealed payloads (raw bytes after
//! each value's JSON): ids, ordinals, timestamps and checkpoint metadata stay in clear (see
//! the codec's docs for the full list and the threat model). `RedisBackend::without_codec`
//! reads the stored form.
#![deny(missing_docs)]

/// Sends a trait call to the codec of `RedisConfig::with_codec` when the backend has one
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
mod conn;
mod error;
pub mod keys;
mod lock;
mod maintenance;
mod replace;
mod scripts;
mod session_log;
mod store;
mod tls;

use persistence_core::backend::FromStored;
use std::future::Future;
use std::time::Duration;

pub use config::{RedisConfig, WaitReplicas};
use persistence_core::{Capabilities, Error, Result, TenantId, redact_url};
use redis::AsyncCommands;

use crate::conn::Conn;
use crate::error::{BACKEND, Effect, map};
use crate::keys::{Index, Keys};

/// The Redis backend. Clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    conn: Conn,
    keys: Keys,
    config: RedisConfig,
    /// Push for live tails (`None`: the node's pub/sub client could not be made: poll).
    changes: Option<std::sync::Arc<changes::SessionChanges>>,
    /// The codec of [`RedisConfig::with_codec`], over a clone of this backend without one.
    #[cfg(feature = "codec")]
    sealed: Option<std::sync::Arc<persistence_codec::SealedBackend>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to a node or a cluster (see [`RedisConfig::url`]).
    ///
    /// # Errors
    /// `InvalidInput` for a prefix with braces, TLS files that cannot be read or are not
    /// PEM (or given with a plaintext URL), or a server whose `maxmemory-policy` evicts
    /// keys (unless [`RedisConfig::allow_eviction`]); `Tls` when the TLS handshake fails
    /// (the message names the host and what to set); `Unavailable` if Redis cannot be
    /// reached.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        // The codec wraps the connected backend; the connection never sees it.
        #[cfg(feature = "codec")]
        let (config, codec) = {
            let mut config = config;
            let codec = config.codec.take();
            (config, codec)
        };
        if config.prefix.contains(['{', '}']) {
            return Err(
                Error::invalid_input("the key prefix must not contain '{' or '}'").context(
                    BACKEND,
                    "connect",
                    &config.prefix,
                ),
            );
        }
        let endpoint = tls::Endpoint::parse(&config)?;
        if config.wait_replicas.is_some() && endpoint.cluster {
            return Err(
                Error::invalid_input("wait_replicas needs a single-node connection").context(
                    BACKEND,
                    "connect",
                    redact_url(&config.url),
                ),
            );
        }
        let url = redact_url(&config.url);
        let at_connect = |e: redis::RedisError, key: &str| match endpoint.tls_error(&e) {
            Some(tls) => tls.context(BACKEND, "connect", &url).with_source(e),
            None => map(e, Effect::Read, "connect", key),
        };
        let conn = match within(config.timeout, Conn::connect(&endpoint, config.timeout)).await {
            Ok(conn) => conn,
            Err(e) if e.is_timeout() || e.is_io_error() => match endpoint.plaintext_probe().await {
                Some(tls) => return Err(tls.context(BACKEND, "connect", &url).with_source(e)),
                None => return Err(at_connect(e, &url)),
            },
            Err(e) => return Err(at_connect(e, &url)),
        };
        let keys = Keys::new(&config.prefix);
        let changes = if endpoint.cluster {
            Some(changes::SessionChanges::cluster(
                endpoint.clone(),
                config.timeout,
            ))
        } else {
            conn::single_client(&endpoint)
                .ok()
                .map(|client| changes::SessionChanges::node(client, keys.session_changes()))
        };
        let backend = RedisBackend {
            conn,
            keys,
            config,
            changes: changes.map(std::sync::Arc::new),
            #[cfg(feature = "codec")]
            sealed: None,
        };
        // Fail now, not on first use, if the server is unreachable.
        let _: String = within(backend.config.timeout, async {
            redis::cmd("PING").query_async(&mut backend.conn()).await
        })
        .await
        .map_err(|e| at_connect(e, &url))?;
        if !backend.config.allow_eviction {
            backend.refuse_eviction().await?;
        }
        #[cfg(feature = "codec")]
        let backend = backend.sealed_by(codec);
        Ok(backend)
    }

    /// The codec of [`RedisConfig::with_codec`], if any: for
    /// [`rekey`](persistence_codec::rekey) and [`key_usage`](persistence_codec::key_usage)
    /// with [`without_codec`](Self::without_codec).
    #[cfg(feature = "codec")]
    pub fn codec(&self) -> Option<&std::sync::Arc<persistence_codec::Codec>> {
        self.sealed.as_ref().map(|s| s.codec())
    }

    /// The same connection without the codec of [`RedisConfig::with_codec`]: its calls
    /// store and return payloads as given, so it reads what the codec stored (sealed).
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn without_codec(&self) -> Self {
        RedisBackend {
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
                RedisBackend {
                    sealed: Some(std::sync::Arc::new(sealed)),
                    ..self
                }
            }
        }
    }

    /// Refuses a server whose `maxmemory-policy` evicts keys (see
    /// [`RedisConfig::allow_eviction`]). A server that hides `CONFIG` is not judged.
    async fn refuse_eviction(&self) -> Result<()> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        let Ok(reply) = self.query::<Vec<String>>(cmd).await else {
            return Ok(());
        };
        let policy = reply.get(1).map(String::as_str).unwrap_or("noeviction");
        if policy.starts_with("allkeys-") || policy.starts_with("volatile-") {
            return Err(Error::invalid_input(format!(
                "the server's maxmemory-policy is {policy}: evictions would drop leases (a \
                 second worker would take a held lock), items and events; set \
                 maxmemory-policy noeviction, or RedisConfig::allow_eviction to accept it"
            ))
            .context(BACKEND, "connect", redact_url(&self.config.url)));
        }
        Ok(())
    }

    /// TTL, search, multi-process, cluster-safe, session life cycle, replacing payloads,
    /// binary payloads (stored raw after a value's JSON); not durable in the
    /// sense of the contract (see the crate docs). Expired sessions are deleted by the
    /// server (key expiry); expired items, which share their namespace's hashes, by a
    /// sweep.
    ///
    /// Through a codec (`RedisConfig::with_codec`): no `binary_payloads`, and no `search`
    /// unless the codec keeps fields in clear.
    pub fn capabilities(&self) -> Capabilities {
        #[cfg(feature = "codec")]
        if let Some(sealed) = &self.sealed {
            use persistence_core::Maintenance;
            return sealed.maintenance().capabilities();
        }
        Capabilities::none()
            .with_ttl(true)
            .with_search(true)
            .with_multi_process(true)
            .with_cluster_safe(true)
            .with_lifecycle(true)
            .with_replace(true)
            .with_binary_payloads(true)
            .with_session_expiry(persistence_core::Enforcement::Backend)
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Runs a script invocation on a clone of the connection (the future owns both).
    fn invoke<T: redis::FromRedisValue + Send>(
        &self,
        invocation: redis::ScriptInvocation<'static>,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send + 'static {
        let mut conn = self.conn();
        let deadline = self.config.timeout;
        async move { within(deadline, invocation.invoke_async(&mut conn)).await }
    }

    /// Runs a command on a clone of the connection (the future owns both).
    fn query<T: redis::FromRedisValue + Send>(
        &self,
        cmd: redis::Cmd,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send + 'static {
        let mut conn = self.conn();
        let deadline = self.config.timeout;
        async move { within(deadline, cmd.query_async(&mut conn)).await }
    }

    /// Runs a pipeline (a `MULTI`/`EXEC` transaction when it is atomic) on a clone of the
    /// connection. On a cluster it goes to the node of its first keyed command, so every
    /// key in it must share a slot (one entity's keys do).
    fn query_pipeline<T: redis::FromRedisValue + Send>(
        &self,
        pipeline: redis::Pipeline,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send + 'static {
        let mut conn = self.conn();
        let deadline = self.config.timeout;
        async move { within(deadline, pipeline.query_async(&mut conn)).await }
    }

    /// Adds `member` to a tenant index and the tenant to the tenant list.
    async fn index_add(&self, t: &TenantId, what: Index, member: &str) -> redis::RedisResult<()> {
        let mut add_member = redis::cmd("ZADD");
        add_member
            .arg(self.keys.index(t, what))
            .arg("NX")
            .arg(0)
            .arg(member);
        let mut add_tenant = redis::cmd("ZADD");
        add_tenant
            .arg(self.keys.tenants())
            .arg("NX")
            .arg(0)
            .arg(t.as_str());
        let add_member = self.query::<redis::Value>(add_member);
        let add_tenant = self.query::<redis::Value>(add_tenant);
        tokio::try_join!(add_member, add_tenant).map(|_| ())
    }

    /// Members of a tenant index after `after` (exclusive), up to `count`.
    async fn index_page(
        &self,
        t: &TenantId,
        what: Index,
        after: Option<&str>,
        count: usize,
    ) -> redis::RedisResult<Vec<String>> {
        let from = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(self.keys.index(t, what))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(count);
        self.query(cmd).await
    }

    /// Whether each key exists: one pipeline on a single node, one request per key on a
    /// cluster (the keys live in different slots).
    async fn exists_many(&self, keys: &[String]) -> redis::RedisResult<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        match &conn {
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                for k in keys {
                    pipe.exists(k);
                }
                pipe.query_async(&mut conn).await
            }
            Conn::Cluster(_) => {
                let mut out = Vec::with_capacity(keys.len());
                for k in keys {
                    out.push(conn.exists(k).await?);
                }
                Ok(out)
            }
        }
    }

    /// Up to `limit + 1` members of a tenant index after `after` whose entity still
    /// exists: `probe` maps a member to the key whose existence proves it (or `None` for a
    /// member that is not a valid id). Index entries of deleted or expired entities are
    /// skipped, never returned.
    async fn live_members(
        &self,
        t: &TenantId,
        what: Index,
        mut after: Option<String>,
        limit: usize,
        operation: &'static str,
        probe: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>> {
        let key = t.to_string();
        let mut live = Vec::new();
        loop {
            let page = self
                .read(operation, &key, || {
                    self.index_page(t, what, after.as_deref(), limit + 1)
                })
                .await?;
            let candidates: Vec<(String, String)> = page
                .iter()
                .filter_map(|m| probe(m).map(|k| (m.clone(), k)))
                .collect();
            let keys: Vec<String> = candidates.iter().map(|(_, k)| k.clone()).collect();
            let exists = self
                .read(operation, &key, || self.exists_many(&keys))
                .await?;
            live.extend(
                candidates
                    .into_iter()
                    .zip(exists)
                    .filter(|(_, e)| *e)
                    .map(|((m, _), _)| m),
            );
            if page.len() <= limit || live.len() > limit {
                live.truncate(limit + 1);
                return Ok(live);
            }
            after = page.last().cloned();
        }
    }

    /// With [`RedisConfig::wait_replicas`], waits until the configured number of replicas
    /// acknowledged the writes made so far on this connection.
    async fn confirm_write(&self, operation: &'static str, key: &str) -> Result<()> {
        let Some(wait) = self.config.wait_replicas else {
            return Ok(());
        };
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wait.replicas).arg(wait.timeout.as_millis() as u64);
        let acked: u64 = self
            .query(cmd)
            .await
            .map_err(|e| map(e, Effect::Write, operation, key))?;
        if acked < u64::from(wait.replicas) {
            return Err(Error::unavailable(format!(
                "write acknowledged by {acked} of {} replicas within {:?}: it is on the primary but may \
                 not survive a failover",
                wait.replicas, wait.timeout
            ))
            .context(BACKEND, operation, key));
        }
        Ok(())
    }

    /// Tenants that ever wrote, ascending.
    ///
    /// # Errors
    /// `Unavailable` if the server cannot be reached; `Corrupt` for an invalid stored id.
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        let names = self.read("tenants", "", || self.tenant_names()).await?;
        let mut tenants = names
            .into_iter()
            .map(TenantId::from_stored)
            .collect::<Result<Vec<_>>>()?;
        tenants.sort();
        Ok(tenants)
    }

    /// Tenants that ever wrote, as stored.
    async fn tenant_names(&self) -> redis::RedisResult<Vec<String>> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.keys.tenants()).arg(0).arg(-1);
        self.query(cmd).await
    }

    /// Runs a read, retrying with backoff after a lost connection.
    async fn read<T, F, Fut>(&self, operation: &'static str, key: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                // A timed-out request is not retried: the server is not answering, and
                // retrying would multiply the caller's wait.
                Err(e)
                    if attempt < self.config.read_retries
                        && !e.is_timeout()
                        && (e.is_io_error()
                            || e.is_connection_dropped()
                            || error::is_transient_server_state(&e)) =>
                {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(map(e, Effect::Read, operation, key)),
            }
        }
    }
}

/// Bounds one request by the client's own clock, whatever the driver does: a request
/// (and its driver-level retries) ends after about twice the configured timeout at most.
async fn within<T>(
    timeout: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(timeout * 2, request).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from Redis within {:?}", timeout * 2),
        ))),
    }
}

/// An owned script invocation: `invocation!(SCRIPT, [keys...], [args...])`.
macro_rules! invocation {
    ($script:expr, [$($key:expr),* $(,)?], [$($arg:expr),* $(,)?]) => {{
        let mut invocation = $script.prepare_invoke();
        $(invocation.key($key);)*
        $(invocation.arg($arg);)*
        invocation
    }};
}
pub(crate) use invocation;

/// Parses a script's `{status, value}` reply, mapping non-`ok` statuses to errors.
fn expect_ok(reply: Vec<String>, operation: &'static str, key: &str) -> Result<String> {
    match reply.as_slice() {
        [status, value] if status == "ok" => Ok(value.clone()),
        [status, message] => Err(error::status(status, message, operation, key)),
        other => Err(error::corrupt(
            format!("script reply {other:?}"),
            operation,
            key,
        )),
    }
}

fn parse_u64(s: &str, operation: &'static str, key: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| error::corrupt(format!("{s:?} is not a number"), operation, key))
}
