//! [`Persistence`]: one opened backend behind the five traits.

use std::any::Any;
use std::sync::Arc;

use persistence_core::{
    Capabilities, Checkpointer, Lock, Maintenance, PurgeCounts, Result, SessionLog, Store, TenantId,
};

use crate::traced::Traced;

/// One opened backend: the four data traits and [`Maintenance`], each call traced (see
/// the crate docs).
///
/// [`open`](crate::open) builds one from a URL; [`Persistence::from_backend`] from any
/// value implementing the five traits, a backend outside this workspace included.
/// Everything here goes through the traits, so such a backend gets the same facade, the
/// same spans and, with [`register_scheme`](crate::register_scheme), the same URLs and CLI.
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
    /// Status, health and upkeep across tenants (operators' API: hand tenant code the
    /// four data traits only).
    pub maintenance: Arc<dyn Maintenance>,
    /// The backend as given, untraced, for [`Persistence::backend`].
    backend: Arc<dyn Any + Send + Sync>,
    /// The traits as they were before [`with_codec`](Self::with_codec): what stored
    /// payloads look like, for [`key_usage`](Self::key_usage).
    #[cfg(feature = "codec")]
    unsealed: Option<Unsealed>,
    /// The checkpointer and session log under the audit wrappers, once
    /// [`with_lifecycle_audit`](Self::with_lifecycle_audit) applied them: a codec added
    /// later goes below the audit, so audit events are sealed too.
    before_audit: Option<(Arc<dyn Checkpointer>, Arc<dyn SessionLog>)>,
}

/// The payload traits under a codec.
#[cfg(feature = "codec")]
#[derive(Clone)]
struct Unsealed {
    checkpointer: Arc<dyn Checkpointer>,
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionLog>,
    /// The codec they are sealed with (the first, when codecs are stacked).
    codec: Arc<persistence_codec::Codec>,
}

/// The stored form and codec of a built-in backend whose own config names a codec
/// (`FsConfig::with_codec`, ...), so that [`Persistence::key_usage`] and
/// [`Persistence::rekey`] read payloads as stored.
#[cfg(feature = "codec")]
fn codec_in_config(backend: &dyn Any) -> Option<Unsealed> {
    #[cfg_attr(
        not(any(feature = "fs", feature = "postgres", feature = "redis")),
        allow(dead_code)
    )]
    fn unsealed<B>(raw: B, codec: &Arc<persistence_codec::Codec>) -> Unsealed
    where
        B: Checkpointer + Store + SessionLog + Maintenance + Clone + 'static,
    {
        let traced = Arc::new(
            Traced::new(raw.backend_name(), raw.clone()).with_capabilities(raw.capabilities()),
        );
        Unsealed {
            checkpointer: traced.clone(),
            store: traced.clone(),
            sessions: traced,
            codec: codec.clone(),
        }
    }
    #[cfg(feature = "fs")]
    if let Some(fs) = backend.downcast_ref::<persistence_fs::FsBackend>() {
        return fs.codec().map(|codec| unsealed(fs.without_codec(), codec));
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = backend.downcast_ref::<persistence_postgres::PgBackend>() {
        return pg.codec().map(|codec| unsealed(pg.without_codec(), codec));
    }
    #[cfg(feature = "redis")]
    if let Some(redis) = backend.downcast_ref::<persistence_redis::RedisBackend>() {
        return redis
            .codec()
            .map(|codec| unsealed(redis.without_codec(), codec));
    }
    let _ = backend;
    None
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

impl Persistence {
    /// Wraps `backend` (one value implementing the five traits; clones must share its
    /// data) with the facade's tracing.
    ///
    /// ```
    /// use persistence::{MemoryBackend, Persistence};
    ///
    /// let p = Persistence::from_backend(MemoryBackend::new());
    /// assert_eq!(p.backend_name(), "memory");
    /// assert!(p.backend::<MemoryBackend>().is_some());
    /// ```
    pub fn from_backend<B>(backend: B) -> Self
    where
        B: Checkpointer + Store + SessionLog + Lock + Maintenance + Clone + 'static,
    {
        let traced = Arc::new(
            Traced::new(backend.backend_name(), backend.clone())
                .with_capabilities(backend.capabilities()),
        );
        #[cfg(feature = "codec")]
        let unsealed = codec_in_config(&backend);
        Persistence {
            checkpointer: traced.clone(),
            store: traced.clone(),
            sessions: traced.clone(),
            lock: traced.clone(),
            maintenance: traced,
            backend: Arc::new(backend),
            #[cfg(feature = "codec")]
            unsealed,
            before_audit: None,
        }
    }

    /// The backend given to [`Persistence::from_backend`] (or opened by
    /// [`open`](crate::open)), if it is a `B`: for calls only that backend has (the
    /// filesystem layout, say). Calls through it are not traced.
    pub fn backend<B: Any>(&self) -> Option<&B> {
        self.backend.downcast_ref::<B>()
    }

    /// Same, recording the life of sessions and threads (created, trimmed, compacted,
    /// closed, deleted, copied, pruned) in each tenant's audit log, the session
    /// [`AUDIT_SESSION`](crate::AUDIT_SESSION): ids, kinds, reasons and counts, never
    /// user data:
    ///
    /// | `kind` | recorded after | fields |
    /// |---|---|---|
    /// | `session.created` | an append that started a session (its first ordinal is 1) | `session` |
    /// | `session.trimmed` | `trim_before` that removed events | `session`, `events` |
    /// | `session.compacted` | `compact` | `session`, `through`, `head` |
    /// | `session.closed` | `close_session` of an open session | `session`, `events_removed` |
    /// | `session.deleted` | `delete` of a live session | `session`, `reason: "delete"` |
    /// | `thread.created` | a `put` of a checkpoint without parent (a thread's root) | `thread`, `checkpoint` |
    /// | `thread.copied` | `copy_thread` | `from`, `to`, `checkpoints` |
    /// | `thread.pruned` | `prune` or `prune_through` that deleted checkpoints | `thread`, `checkpoints`, `reason` |
    /// | `thread.deleted` | `delete_thread` of a thread that existed | `thread`, `reason: "delete"` |
    ///
    ///
    /// The sweeper records what it removes itself: `thread.pruned` and `thread.deleted`
    /// with `reason` `retention` or `thread_ttl`, and `session.expired` for each session
    /// whose TTL ran out, as it purges it.
    ///
    /// Each recorded change costs one more append (the first append of every session
    /// among them), written after the change: a crash in between loses the event, and a
    /// failed event write is logged without failing the change. Off by default.
    ///
    /// ```
    /// # async fn demo() -> persistence::Result<()> {
    /// use persistence::{AUDIT_SESSION, Envelope, MemoryBackend, Persistence, SessionKey, TenantId};
    ///
    /// let p = Persistence::from_backend(MemoryBackend::new()).with_lifecycle_audit();
    /// let (tenant, chat) = (TenantId::new("acme")?, SessionKey::new("chat")?);
    /// p.sessions.append(&tenant, &chat, vec![Envelope::new(1, "hi".into())], Default::default()).await?;
    /// let audit = p.sessions.read(&tenant, &SessionKey::new(AUDIT_SESSION)?, 0, 10).await?;
    /// assert_eq!(audit[0].event.data["kind"], "session.created");
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    #[must_use]
    pub fn with_lifecycle_audit(mut self) -> Self {
        self.before_audit = Some((self.checkpointer.clone(), self.sessions.clone()));
        self.audit_over_current()
    }

    /// Wraps the current checkpointer and session log in the audit wrappers.
    fn audit_over_current(mut self) -> Self {
        let sessions: Arc<dyn SessionLog> =
            Arc::new(crate::audit::AuditedSessions::new(self.sessions.clone()));
        self.checkpointer = Arc::new(crate::audit::AuditedCheckpointer::new(
            self.checkpointer.clone(),
            self.sessions.clone(),
        ));
        self.sessions = sessions;
        self
    }

    /// Passes every payload (checkpoint states, pending writes, store values, session
    /// events) through a codec: compression and encryption bound to each payload's row
    /// (see [`codec`](crate::codec) for the format, what stays in clear and the threat
    /// model). Rows written before read as they are unless the policy is
    /// [`Required`](crate::codec::EncryptionPolicy::Required).
    ///
    /// It goes below the audit of [`with_lifecycle_audit`](Self::with_lifecycle_audit)
    /// in either order, so audit events are sealed too. With compression or encryption on, store values are
    /// sealed whole unless the config keeps fields in clear: without such fields
    /// [`capabilities`](Self::capabilities) says `search: false`, and a search filters
    /// only on fields kept in clear (another fails `Unsupported`).
    ///
    /// ```
    /// # async fn demo() -> persistence::Result<()> {
    /// use std::sync::Arc;
    /// use persistence::codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
    /// use persistence::{Envelope, MemoryBackend, Persistence, SessionKey, TenantId};
    ///
    /// let keys = StaticKeyring::parse("k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
    /// let codec = CodecConfig::default().with_encryption(Arc::new(keys), EncryptionPolicy::Required);
    /// let backend = MemoryBackend::new();
    /// let p = Persistence::from_backend(backend.clone()).with_codec(codec);
    /// let (tenant, chat) = (TenantId::new("acme")?, SessionKey::new("chat")?);
    /// p.sessions.append(&tenant, &chat, vec![Envelope::new(1, "hi".into())], Default::default()).await?;
    /// assert_eq!(p.sessions.read(&tenant, &chat, 0, 10).await?[0].event.data, "hi");
    /// // What the backend holds is sealed.
    /// let raw = Persistence::from_backend(backend);
    /// assert!(raw.sessions.read(&tenant, &chat, 0, 10).await?[0].event.data.get("$sealed").is_some());
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn with_codec(mut self, config: persistence_codec::CodecConfig) -> Self {
        use persistence_codec::{
            Codec, SealedCheckpointer, SealedMaintenance, SealedSessions, SealedStore,
        };
        let codec = Codec::for_backend(config, &self.maintenance.capabilities());
        let audited = self.before_audit.take();
        if let Some((checkpointer, sessions)) = &audited {
            self.checkpointer = checkpointer.clone();
            self.sessions = sessions.clone();
        }
        if self.unsealed.is_none() {
            self.unsealed = Some(Unsealed {
                checkpointer: self.checkpointer.clone(),
                store: self.store.clone(),
                sessions: self.sessions.clone(),
                codec: codec.clone(),
            });
        }
        self.checkpointer = Arc::new(SealedCheckpointer::new(self.checkpointer, codec.clone()));
        self.store = Arc::new(SealedStore::new(self.store, codec.clone()));
        self.sessions = Arc::new(SealedSessions::new(self.sessions, codec.clone()));
        self.maintenance = Arc::new(SealedMaintenance::new(self.maintenance, codec));
        if audited.is_some() {
            self = self.with_lifecycle_audit();
        }
        self
    }

    /// How `tenant`'s stored payloads are sealed: counts per key id and of those not
    /// encrypted, read as stored (under the codec when there is one). A key can be
    /// retired from the keyring once no tenant counts a payload under it. Reads every
    /// payload of the tenant (see [`key_usage`](persistence_codec::key_usage)).
    ///
    /// # Errors
    /// Whatever a listing or read fails with.
    #[cfg(feature = "codec")]
    pub async fn key_usage(&self, tenant: &TenantId) -> Result<persistence_codec::KeyUsage> {
        let (checkpointer, store, sessions) = match &self.unsealed {
            Some(raw) => (&raw.checkpointer, &raw.store, &raw.sessions),
            None => (&self.checkpointer, &self.store, &self.sessions),
        };
        persistence_codec::key_usage(
            checkpointer.as_ref(),
            store.as_ref(),
            sessions.as_ref(),
            tenant,
        )
        .await
    }

    /// Re-encrypts `tenant`'s stored payloads that are not under the writer's key (an
    /// older key, or none) with it, in bounded batches, resumably and safely next to
    /// live writers; `progress` is called after each batch. See
    /// [`rekey`](persistence_codec::rekey) for what it guarantees.
    ///
    /// # Errors
    /// `InvalidInput` without a codec that encrypts ([`with_codec`](Self::with_codec));
    /// otherwise as [`rekey`](persistence_codec::rekey).
    #[cfg(feature = "codec")]
    pub async fn rekey(
        &self,
        tenant: &TenantId,
        options: persistence_codec::RekeyOptions,
        progress: &mut (dyn FnMut(&persistence_codec::RekeyReport) + Send),
    ) -> Result<persistence_codec::RekeyReport> {
        let Some(raw) = &self.unsealed else {
            return Err(persistence_core::Error::invalid_input(
                "rekey: no codec is configured (with_codec, or the URL's encryption options)",
            ));
        };
        let stored = persistence_codec::Stored {
            checkpointer: raw.checkpointer.as_ref(),
            store: raw.store.as_ref(),
            sessions: raw.sessions.as_ref(),
        };
        persistence_codec::rekey(stored, &raw.codec, tenant, options, progress).await
    }

    /// The backend's name (`memory`, `fs`, `postgres`, `redis`, or a third party's).
    pub fn backend_name(&self) -> &str {
        self.maintenance.backend_name()
    }

    /// What the backend supports.
    pub fn capabilities(&self) -> Capabilities {
        self.maintenance.capabilities()
    }

    /// The stored format, for humans: Postgres schema version, fs layout and format, ...
    pub fn schema(&self) -> String {
        self.maintenance.schema()
    }

    /// Tenants holding any data, ascending.
    ///
    /// # Errors
    /// As [`Maintenance::tenants`].
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        self.maintenance.tenants().await
    }

    /// Removes expired items and sessions of every tenant, and lease rows nobody uses.
    ///
    /// # Errors
    /// As [`Maintenance::purge_expired`].
    pub async fn purge_expired(&self) -> Result<PurgeCounts> {
        self.maintenance.purge_expired().await
    }

    /// One round trip to the storage behind the backend, for readiness probes.
    ///
    /// # Errors
    /// As [`Maintenance::health`].
    pub async fn health(&self) -> Result<()> {
        self.maintenance.health().await
    }

    /// Closes connections the backend holds (a no-op where there are none).
    pub async fn close(&self) {
        self.maintenance.close().await;
    }
}
