//! Connection settings.

use std::path::PathBuf;
use std::time::Duration;

use persistence_core::redact_url;

use crate::SslMode;

/// What [`PgBackend::connect`](crate::PgBackend::connect) does when the role it connects
/// as is a superuser or has BYPASSRLS, which turns off the row-level security that keeps
/// tenants apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PrivilegedRole {
    /// Connect, and log a `tracing` warning naming the role's privileges (default).
    #[default]
    Warn,
    /// Fail with `InvalidInput`: production deployments should set this.
    Refuse,
    /// Connect silently (tests and tools that run as the owner on purpose).
    Allow,
}

/// Settings of [`PgBackend::connect`](crate::PgBackend::connect).
///
/// The `Debug` output never shows the password. URL query options (stripped before the
/// URL reaches the driver) override these settings: `operation_timeout_ms`,
/// `connect_timeout_ms`, `max_connections`, `prepared_statements=off`, and TLS's
/// `sslmode`, `sslrootcert`, `sslcert`, `sslkey` (libpq's names and meanings). Unset TLS
/// settings fall back to libpq's environment variables (`PGSSLMODE`, `PGSSLROOTCERT`,
/// ...), then to `sslmode=prefer`.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// `postgres://persistence_app:...@host:5432/db`: connect as the application role
    /// (NOSUPERUSER, NOBYPASSRLS, owning no table), never as the migrator.
    pub url: String,
    /// Pool size. Default 10. A server or role limit below it is fine: callers queue for
    /// the connections that work.
    pub max_connections: u32,
    /// Server-side `statement_timeout` of every statement. Default 25 s, below the
    /// operation deadline, so a slow statement is cancelled by the server (`Timeout`)
    /// before the client gives up on it.
    pub statement_timeout: Duration,
    /// Client-side deadline of one operation: waiting for a pooled connection, opening a
    /// new one and the round trip together. Past it the call fails `Timeout` (its
    /// message says when a write's outcome is unknown); it holds when the server is
    /// stopped, partitioned or a listener never answers. Default 30 s.
    pub operation_timeout: Duration,
    /// How long opening one connection (TCP, startup, authentication) may take. Default
    /// 5 s.
    pub connect_timeout: Duration,
    /// How long to wait for a free pool slot before `Unavailable`. Default 10 s.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long unused. Default 10 min.
    pub idle_timeout: Duration,
    /// Connections are closed once this old, when next returned idle. Default 30 min.
    pub max_lifetime: Duration,
    /// A connection idle for longer than this is pinged before use (one extra round trip
    /// after a quiet period; none on the hot path). Default 30 s.
    pub check_idle_after: Duration,
    /// Send each operation as a prepared statement (parsed once per connection, binary
    /// arguments; default `true`). Set `false` behind a pooler that cannot keep prepared
    /// statements, such as PgBouncer in transaction pooling mode before 1.21 (Debian 12
    /// ships 1.18): each operation is then one simple query with its arguments written
    /// as escaped literals, still one round trip. URL option `prepared_statements=off`.
    pub prepared_statements: bool,
    /// What to do when connected as a superuser or BYPASSRLS role. Default
    /// [`PrivilegedRole::Warn`].
    pub privileged_role: PrivilegedRole,
    /// `application_name` shown in `pg_stat_activity`. Default `"persistence"`.
    pub application_name: String,
    /// TLS policy (URL option `sslmode`). `None` (default): `PGSSLMODE`, else
    /// [`SslMode::VerifyFull`] when [`tls_root_cert`](Self::tls_root_cert) is set (a CA
    /// file given is a CA to check against), else [`SslMode::Prefer`] as in libpq.
    /// `Require` with a root certificate checks the CA, as in libpq (`VerifyCa`).
    pub ssl_mode: Option<SslMode>,
    /// PEM file of the CA certificates to trust instead of the system's roots (URL option
    /// `sslrootcert`). Default `None`. Read at every new connection, so a renewed file
    /// is picked up without a restart.
    pub tls_root_cert: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS (URL option `sslcert`); needs
    /// [`tls_client_key`](Self::tls_client_key). Default `None`.
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate (URL option `sslkey`). Default `None`.
    pub tls_client_key: Option<PathBuf>,
    /// The payload codec every call of the backend goes through (compression,
    /// encryption at rest; see [`with_codec`](Self::with_codec)). Default `None`:
    /// payloads are stored as given.
    #[cfg(feature = "codec")]
    pub codec: Option<persistence_codec::CodecConfig>,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("PgConfig");
        f.field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("check_idle_after", &self.check_idle_after)
            .field("prepared_statements", &self.prepared_statements)
            .field("privileged_role", &self.privileged_role)
            .field("application_name", &self.application_name)
            .field("ssl_mode", &self.ssl_mode)
            .field("tls_root_cert", &self.tls_root_cert)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key);
        #[cfg(feature = "codec")]
        f.field("codec", &self.codec);
        f.finish()
    }
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            max_connections: 10,
            statement_timeout: Duration::from_secs(25),
            operation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            check_idle_after: Duration::from_secs(30),
            prepared_statements: true,
            privileged_role: PrivilegedRole::Warn,
            application_name: "persistence".into(),
            ssl_mode: None,
            tls_root_cert: None,
            tls_client_cert: None,
            tls_client_key: None,
            #[cfg(feature = "codec")]
            codec: None,
        }
    }
    /// Same settings, every payload (checkpoint state, pending write, store value,
    /// session event) compressed and encrypted by `config` on its way to the database and
    /// opened on its way back, bound to its row: every [`Checkpointer`], [`Store`] and
    /// [`SessionLog`] call of the connected backend goes through the codec (see
    /// `persistence-codec` for the format, what stays in clear and the threat model).
    /// The backend then declares no `search` unless `config` keeps fields in clear,
    /// and no `binary_payloads`. [`PgBackend::without_codec`] reads the stored form
    /// (for rekeying).
    ///
    /// [`PgBackend::without_codec`]: crate::PgBackend::without_codec
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
    /// Same settings with another TLS policy (see [`ssl_mode`](Self::ssl_mode)).
    #[must_use]
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }
    /// Same settings trusting the CA certificates in `pem_file` (see
    /// [`tls_root_cert`](Self::tls_root_cert)).
    #[must_use]
    pub fn with_tls_root_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.tls_root_cert = Some(pem_file.into());
        self
    }
    /// Same settings presenting a client certificate for mutual TLS.
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
    /// Same settings with another pool size.
    #[must_use]
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }
    /// Same settings with another operation deadline.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
    /// Same settings with another connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Same settings with the statement cache on or off (see
    /// [`prepared_statements`](Self::prepared_statements)).
    #[must_use]
    pub fn with_prepared_statements(mut self, on: bool) -> Self {
        self.prepared_statements = on;
        self
    }
    /// Same settings with another policy for privileged roles.
    #[must_use]
    pub fn with_privileged_role(mut self, policy: PrivilegedRole) -> Self {
        self.privileged_role = policy;
        self
    }
    /// Same settings with another idle-check threshold.
    #[must_use]
    pub fn with_check_idle_after(mut self, after: Duration) -> Self {
        self.check_idle_after = after;
        self
    }
}
