//! Connection settings.

/// Settings of [`RedisBackend::connect`](crate::RedisBackend::connect).
///
/// The `Debug` output never shows the password.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://...` (TLS), or
    /// `redis+cluster://host:port,host:port` for a Redis Cluster.
    pub url: String,
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
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &persistence_core::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("read_retries", &self.read_retries)
            .field("wait_replicas", &self.wait_replicas)
            .field("timeout", &self.timeout)
            .field("allow_eviction", &self.allow_eviction)
            .finish()
    }
}

impl RedisConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "persistence:".into(),
            read_retries: 3,
            wait_replicas: None,
            timeout: std::time::Duration::from_secs(5),
            allow_eviction: false,
        }
    }
    /// Same settings with another key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// See [`RedisConfig::wait_replicas`].
#[derive(Debug, Clone, Copy)]
pub struct WaitReplicas {
    /// Replicas that must acknowledge each write.
    pub replicas: u32,
    /// How long to wait for them; a write not confirmed in time fails `Unavailable`
    /// (it is on the primary, but may not survive a failover).
    pub timeout: std::time::Duration,
}
