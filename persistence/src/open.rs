//! Choosing and opening a backend from a URL.

use std::sync::Arc;

use persistence_core::{
    Capabilities, Checkpointer, Error, Lock, MemoryBackend, Result, SessionLog, Store, TenantId,
    redact_url,
};

use crate::traced::Traced;

/// The four traits of one opened backend, each call traced (see the crate docs).
///
/// Cloning is cheap and shares the connection pool or directory handle.
#[derive(Clone)]
pub struct Persistence {
    /// Checkpoints of graph/agent runs.
    pub checkpointer: Arc<dyn Checkpointer>,
    /// Long-term memory items.
    pub store: Arc<dyn Store>,
    /// Session event logs.
    pub sessions: Arc<dyn SessionLog>,
    /// Leases with fences.
    pub lock: Arc<dyn Lock>,
    backend: Backend,
}

/// The concrete backend behind a [`Persistence`], for backend-specific calls
/// (closing a pool, the filesystem layout, ...).
#[derive(Clone)]
#[non_exhaustive]
pub enum Backend {
    /// `memory://`.
    Memory(MemoryBackend),
    /// `file://`.
    #[cfg(feature = "fs")]
    Fs(persistence_fs::FsBackend),
    /// `postgres://`.
    #[cfg(feature = "postgres")]
    Postgres(persistence_postgres::PgBackend),
    /// `redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`.
    #[cfg(feature = "redis")]
    Redis(persistence_redis::RedisBackend),
}

/// What [`Persistence::purge_expired`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Expired store items.
    pub items: u64,
    /// Expired sessions.
    pub sessions: u64,
    /// Lease records of locks unused for an hour (Postgres; Redis expires its own, the
    /// other backends report 0).
    pub leases: u64,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Persistence::name_of(self))
    }
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

/// Opens the backend named by `url` (see the crate docs for the schemes).
///
/// # Errors
/// `InvalidInput` for a URL without a known scheme or with a bad option;
/// `Unsupported` when the scheme's backend is not compiled in (the message names the
/// cargo feature); the backend's own errors when it cannot open (`Unavailable` for an
/// unreachable server, `SchemaTooOld` for an unmigrated database, `SchemaTooNew`, ...).
/// No error carries the URL's password. Errors raised here, before a backend is involved
/// (a malformed URL, an unknown option), name backend `"persistence"` and operation
/// `"open"`, with the URL (password hidden) as their key.
pub async fn open(url: &str) -> Result<Persistence> {
    open_url(url, Create::IfMissing).await
}

/// [`open`] for a store that must exist already, creating nothing: a `file://` root
/// that holds no store is `NotFound` ("no store at PATH"), so a tool that only reads
/// says that a path is mistyped instead of showing an empty store. Servers are connected
/// as by [`open`] (connecting creates nothing).
///
/// # Errors
/// As [`open`], and `NotFound` for a `file://` root without a store.
pub async fn open_existing(url: &str) -> Result<Persistence> {
    open_url(url, Create::Never).await
}

/// Whether opening a `file://` root that holds no store makes one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    IfMissing,
    Never,
}

/// [`open`] or [`open_existing`]; errors that no backend claimed are keyed
/// `persistence open [URL]`.
async fn open_url(url: &str, create: Create) -> Result<Persistence> {
    open_scheme(url, create).await.map_err(|e| {
        if e.backend().is_empty() {
            e.context("persistence", "open", redact_url(url))
        } else {
            e
        }
    })
}

async fn open_scheme(url: &str, create: Create) -> Result<Persistence> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::invalid_input(format!(
            "{:?} is not a persistence URL: expected memory://, file://PATH, postgres://..., \
             redis://... or redis+cluster://...",
            redact_url(url)
        ))
    })?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let options = Options::parse(query)?;
    let backend = match scheme {
        "memory" => {
            options.reject_all(scheme)?;
            Backend::Memory(MemoryBackend::new())
        }
        "file" => open_fs(location, options, create)?,
        "postgres" | "postgresql" => open_postgres(url).await?,
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            open_redis(scheme, location, options).await?
        }
        other => {
            return Err(Error::invalid_input(format!(
                "unknown URL scheme {other:?}: expected memory, file, postgres, redis, rediss, \
                 redis+cluster or rediss+cluster"
            )));
        }
    };
    Ok(Persistence::new(backend))
}

#[cfg_attr(
    all(feature = "fs", feature = "postgres", feature = "redis"),
    allow(dead_code)
)]
fn feature_off(scheme: &str, feature: &str) -> Error {
    Error::unsupported(format!(
        "{scheme}:// needs the `{feature}` feature of the `persistence` crate \
         (features = [\"{feature}\"] or [\"full\"])"
    ))
}

/// `key=value` options after `?` (percent-decoded), consumed by the backend that
/// understands them.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(query: &str) -> Result<Self> {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if !pair.contains('=') {
                return Err(Error::invalid_input(format!(
                    "URL option {pair:?} is not key=value"
                )));
            }
        }
        let pairs = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Options(pairs))
    }

    /// The options left, encoded again for a URL's query.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.0)
            .finish()
    }

    #[cfg_attr(not(any(feature = "fs", feature = "redis")), allow(dead_code))]
    fn take(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    fn reject_all(self, scheme: &str) -> Result<()> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(Error::invalid_input(format!(
                "unknown option {k:?} for {scheme}:// URLs"
            ))),
        }
    }
}

#[cfg(feature = "fs")]
fn open_fs(location: &str, mut options: Options, create: Create) -> Result<Backend> {
    use persistence_fs::{Durability, FsBackend, FsConfig};
    if location.is_empty() {
        return Err(Error::invalid_input(
            "file:// URL without a path: use file:///absolute/dir or file://relative/dir",
        ));
    }
    // RFC 8089 reads `file://localhost/PATH` as the absolute `/PATH`; here the part after
    // `file://` is the path, so it would be the relative `localhost/PATH`: refuse it.
    if location == "localhost" || location.starts_with("localhost/") {
        return Err(Error::invalid_input(format!(
            "file://{location}: write file:///{} for an absolute path (after file:// comes \
             the path itself: file:///absolute/dir, file://relative/dir)",
            location
                .trim_start_matches("localhost")
                .trim_start_matches('/')
        )));
    }
    let location = percent_encoding::percent_decode_str(location)
        .decode_utf8()
        .map_err(|_| Error::invalid_input("file:// URL path is not UTF-8 once percent-decoded"))?;
    let location: &str = &location;
    let durability = match options.take("durability").as_deref() {
        None | Some("fsync") => Durability::Fsync,
        Some("none") => Durability::None,
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "durability={other:?}: expected fsync (default) or none"
            )));
        }
    };
    options.reject_all("file")?;
    let config = FsConfig::new(location)
        .with_durability(durability)
        .with_create_if_missing(create == Create::IfMissing);
    Ok(Backend::Fs(FsBackend::open(config)?))
}

#[cfg(not(feature = "fs"))]
fn open_fs(_: &str, _: Options, _: Create) -> Result<Backend> {
    Err(feature_off("file", "fs"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Backend> {
    use persistence_postgres::{PgBackend, PgConfig};
    Ok(Backend::Postgres(
        PgBackend::connect(PgConfig::new(url)).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str) -> Result<Backend> {
    Err(feature_off("postgres", "postgres"))
}

#[cfg(feature = "redis")]
async fn open_redis(scheme: &str, location: &str, mut options: Options) -> Result<Backend> {
    use persistence_redis::{RedisBackend, RedisConfig};
    let prefix = options.take("prefix");
    // Other options (TLS files, `protocol=resp3`, ...) belong to the backend and the
    // driver (for a cluster, to every node).
    let url = if options.0.is_empty() {
        format!("{scheme}://{location}")
    } else {
        format!("{scheme}://{location}?{}", options.encode())
    };
    let mut config = RedisConfig::new(url);
    if let Some(prefix) = prefix {
        config = config.with_prefix(prefix);
    }
    Ok(Backend::Redis(RedisBackend::connect(config).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(scheme: &str, _: &str, _: Options) -> Result<Backend> {
    Err(feature_off(scheme, "redis"))
}

impl Persistence {
    /// Wraps an already opened backend (with tracing), for configurations a URL cannot
    /// express.
    pub fn new(backend: Backend) -> Self {
        fn bundle<B>(name: &'static str, b: B) -> Bundle
        where
            B: Checkpointer + Store + SessionLog + Lock + Clone + 'static,
        {
            let traced = Arc::new(Traced::new(name, b));
            (traced.clone(), traced.clone(), traced.clone(), traced)
        }
        type Bundle = (
            Arc<dyn Checkpointer>,
            Arc<dyn Store>,
            Arc<dyn SessionLog>,
            Arc<dyn Lock>,
        );
        let (checkpointer, store, sessions, lock) = match &backend {
            Backend::Memory(b) => bundle(Self::name_of(&backend), b.clone()),
            #[cfg(feature = "fs")]
            Backend::Fs(b) => bundle(Self::name_of(&backend), b.clone()),
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => bundle(Self::name_of(&backend), b.clone()),
            #[cfg(feature = "redis")]
            Backend::Redis(b) => bundle(Self::name_of(&backend), b.clone()),
        };
        Persistence {
            checkpointer,
            store,
            sessions,
            lock,
            backend,
        }
    }

    /// The concrete backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// `memory`, `fs`, `postgres` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        Self::name_of(&self.backend)
    }

    fn name_of(backend: &Backend) -> &'static str {
        match backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "fs")]
            Backend::Fs(_) => "fs",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
        }
    }

    /// What the backend supports.
    pub fn capabilities(&self) -> Capabilities {
        match &self.backend {
            Backend::Memory(b) => b.capabilities(),
            #[cfg(feature = "fs")]
            Backend::Fs(b) => b.capabilities(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.capabilities(),
            #[cfg(feature = "redis")]
            Backend::Redis(b) => b.capabilities(),
        }
    }

    /// The version of the stored layout: the filesystem layout directory, the
    /// database schema version, or the key layout.
    pub fn schema(&self) -> String {
        match &self.backend {
            Backend::Memory(_) => "in-process (not stored)".to_string(),
            #[cfg(feature = "fs")]
            Backend::Fs(b) => format!(
                "layout {}, format v{}",
                b.layout().base().display(),
                persistence_fs::FORMAT_VERSION
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => {
                format!("schema version {}", persistence_postgres::SCHEMA_VERSION)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "key layout v1".to_string(),
        }
    }

    /// Tenants holding any data, ascending. An operations view across tenants: the
    /// four traits never cross a tenant boundary.
    ///
    /// # Errors
    /// The backend's errors (`Unavailable`, `Corrupt`).
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        match &self.backend {
            Backend::Memory(b) => Ok(b.tenants()),
            #[cfg(feature = "fs")]
            Backend::Fs(b) => b.tenants().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.tenants().await,
            #[cfg(feature = "redis")]
            Backend::Redis(b) => b.tenants().await,
        }
    }

    /// Removes expired store items and sessions of every tenant: run it periodically
    /// (`persistence gc`).
    ///
    /// # Errors
    /// The backend's errors.
    pub async fn purge_expired(&self) -> Result<PurgeCounts> {
        let leases = match &self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.purge_stale_leases().await?,
            _ => 0,
        };
        Ok(PurgeCounts::new(
            self.store.purge_expired().await?,
            self.sessions.purge_expired().await?,
            leases,
        ))
    }

    /// Closes pooled connections, where the backend has any. Calls still in flight
    /// finish.
    pub async fn close(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Postgres(b) = &self.backend {
            b.close().await;
        }
    }
}
