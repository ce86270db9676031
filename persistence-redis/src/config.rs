//! Connection settings.

use std::path::PathBuf;

/// Settings of [`RedisBackend::connect`](crate::RedisBackend::connect).
///
/// The `Debug` output never shows the password. Build with [`RedisConfig::new`] and the
/// `with_*` methods (fields may be added).
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://host:port/db` (TLS), or
    /// `redis+cluster://host:port,host:port` (`rediss+cluster://` over TLS) for a Redis
    /// Cluster. Query options `sslrootcert`, `sslcert` and `sslkey` set the TLS files
    /// below (and override them); they are taken out before the URL reaches the driver.
    pub url: String,
    /// PEM file of the CA certificates to trust for TLS instead of the system's roots
    /// (`/etc/ssl/certs` through `rustls-native-certs`). URL option `sslrootcert`.
    /// Default `None`. The server's certificate is always verified, its name included.
    pub tls_root_cert: Option<PathBuf>,
    /// PEM client certificate (chain) presented for mutual TLS (`tls-auth-clients yes`).
    /// URL option `sslcert`; needs [`tls_client_key`](Self::tls_client_key). Default
    /// `None`.
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of [`tls_client_cert`](Self::tls_client_cert). URL option
    /// `sslkey`. Default `None`.
    pub tls_client_key: Option<PathBuf>,
    /// Prepended to every key, so several applications (or test runs) share a server
    /// without seeing each other. Must not contain `{` or `}`. Default `"persistence:"`.
    pub prefix: String,
    /// Retries of an operation that is safe to repeat (reads, releases) after a lost
    /// connection, with exponential backoff from 50 ms. Default 3.
    pub read_retries: u32,
    /// After each write, wait until this many replicas acknowledged it (Redis `WAIT`),
    /// narrowing the window in which a failover loses acknowledged writes. A lease whose
    /// confirmation fails is released and the acquire fails `Unavailable`. `None`
    /// (default): return once the primary has it. Single node only.
    pub wait_replicas: Option<WaitReplicas>,
    /// Connect and response timeout of a node (single or cluster); a call fails
    /// `Unavailable` after about this long when the server is down or paused. Every
    /// request also has a client-side deadline of twice this, whatever the driver does.
    /// Default 5 s.
    pub timeout: std::time::Duration,
    /// Connect even when the server's `maxmemory-policy` evicts keys (`allkeys-*`,
    /// `volatile-*`). Eviction drops leases (another worker then takes a lock its holder
    /// still uses), items and events, so by default `connect` refuses such a server with
    /// `InvalidInput` naming the setting. Default `false`. Servers that hide `CONFIG` are
    /// not checked.
    pub allow_eviction: bool,
    /// The payload codec every call of the backend goes through (compression,
    /// encryption at rest; see [`with_codec`](Self::with_codec)). Default `None`:
    /// payloads are stored as given.
    #[cfg(feature = "codec")]
    pub codec: Option<persistence_codec::CodecConfig>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("RedisConfig");
        f.field("url", &persistence_core::redact_url(&self.url))
            .field("tls_root_cert", &self.tls_root_cert)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .field("prefix", &self.prefix)
            .field("read_retries", &self.read_retries)
            .field("wait_replicas", &self.wait_replicas)
            .field("timeout", &self.timeout)
            .field("allow_eviction", &self.allow_eviction);
        #[cfg(feature = "codec")]
        f.field("codec", &self.codec);
        f.finish()
    }
}

impl RedisConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            tls_root_cert: None,
            tls_client_cert: None,
            tls_client_key: None,
            prefix: "persistence:".into(),
            read_retries: 3,
            wait_replicas: None,
            timeout: std::time::Duration::from_secs(5),
            allow_eviction: false,
            #[cfg(feature = "codec")]
            codec: None,
        }
    }
    /// Same settings, every payload (checkpoint state, pending write, store value,
    /// session event) compressed and encrypted by `config` on its way to Redis and
    /// opened on its way back, bound to its row: every [`Checkpointer`], [`Store`] and
    /// [`SessionLog`] call of the connected backend goes through the codec (see
    /// `persistence-codec` for the format, what stays in clear and the threat model).
    /// The backend then declares no `search` unless `config` keeps fields in clear,
    /// and no `binary_payloads`. [`RedisBackend::without_codec`] reads the stored form
    /// (for rekeying).
    ///
    /// [`RedisBackend::without_codec`]: crate::RedisBackend::without_codec
    ///
    /// [`Checkpointer`]: persistence_core::Checkpointer
    /// [`Store`]: persistence_core::Store
    /// [`SessionLog`]: persistence_core::SessionLog
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn with_codec(mut self, config: persistence_codec::CodecConfig) -> Self {
        self.codec = Some(config);
        self
    }
    /// Same settings with another key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Same settings trusting the CA certificates in `pem_file` (see
    /// [`tls_root_cert`](Self::tls_root_cert)).
    #[must_use]
    pub fn with_tls_root_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(pem_file.into());
        self
    }
    /// Same settings presenting a client certificate for mutual TLS (see
    /// [`tls_client_cert`](Self::tls_client_cert)).
    #[must_use]
    pub fn with_tls_client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.tls_client_cert = Some(cert_file.into());
        self.tls_client_key = Some(key_file.into());
        self
    }
    /// Same settings with another number of retries (see
    /// [`read_retries`](Self::read_retries)).
    #[must_use]
    pub fn with_read_retries(mut self, retries: u32) -> Self {
        self.read_retries = retries;
        self
    }
    /// Same settings waiting for replicas after each write (see
    /// [`wait_replicas`](Self::wait_replicas)).
    #[must_use]
    pub fn with_wait_replicas(mut self, wait: Option<WaitReplicas>) -> Self {
        self.wait_replicas = wait;
        self
    }
    /// Same settings with another node timeout (see [`timeout`](Self::timeout)).
    #[must_use]
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Same settings, connecting even to a server that evicts keys (see
    /// [`allow_eviction`](Self::allow_eviction)).
    #[must_use]
    pub fn with_allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }
}

/// See [`RedisConfig::wait_replicas`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WaitReplicas {
    /// Replicas that must acknowledge each write.
    pub replicas: u32,
    /// How long to wait for them; a write not confirmed in time fails `Unavailable`
    /// (it is on the primary, but may not survive a failover).
    pub timeout: std::time::Duration,
}

impl WaitReplicas {
    /// Wait for `replicas` replicas to acknowledge each write, for up to `timeout`.
    pub fn new(replicas: u32, timeout: std::time::Duration) -> Self {
        WaitReplicas { replicas, timeout }
    }
}
