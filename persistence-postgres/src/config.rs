//! Connection settings.

use std::time::Duration;

/// Settings of [`PgBackend::connect`](crate::PgBackend::connect).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://persistence_app:...@host:5432/db`: connect as the application role
    /// (NOSUPERUSER, NOBYPASSRLS, owning no table), never as the migrator.
    pub url: String,
    /// Pool size. Default 10.
    pub max_connections: u32,
    /// Server-side `statement_timeout` of every statement. Default 30 s.
    pub statement_timeout: Duration,
    /// How long to wait for a pooled connection before `Unavailable`. Default 10 s.
    pub acquire_timeout: Duration,
    /// `application_name` shown in `pg_stat_activity`. Default `"persistence"`.
    pub application_name: String,
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            max_connections: 10,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
            application_name: "persistence".into(),
        }
    }
}
