//! Test databases: one migrated template per server, one fresh clone per test, dropped
//! afterwards. The server comes from the harness (env URL or a throwaway local one).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use persistence_conformance::harness::{LocalPostgres, Server, server_url};
use persistence_conformance::{Fixture, TimeControl};
use persistence_postgres::{MIGRATOR, PgBackend, PgConfig, migrate};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

/// The app role's password in test and bench URLs: what `docker-compose.yml` sets; the
/// throwaway servers trust loopback connections and ignore it.
const APP_PASSWORD: &str = "persistence_app";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database cloned from the migrated template; dropped when this is dropped.
pub struct TestDb {
    pub name: String,
    pub admin: PgConnectOptions,
}

impl TestDb {
    /// Options to connect as the application role.
    pub fn app_options(&self) -> PgConnectOptions {
        self.admin
            .clone()
            .username("persistence_app")
            .password(APP_PASSWORD)
            .database(&self.name)
    }
    /// URL to connect as the application role.
    pub fn app_url(&self) -> String {
        self.app_options().to_url_lossy().to_string()
    }
    /// URL to connect as the admin (superuser) to this database.
    pub fn admin_options_url(&self) -> String {
        self.admin_options().to_url_lossy().to_string()
    }
    /// Options to connect as the admin (superuser) to this database.
    pub fn admin_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside a runtime; use a thread with its own to run async cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await.ok()?;
                conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

fn template_name() -> String {
    // A new template whenever any migration changes.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter() {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("persistence_tpl_{:012x}", hash & 0xffff_ffff_ffff)
}

/// A fresh migrated database, or `None` when no server is available (and not required).
pub async fn fresh_db() -> Option<TestDb> {
    fresh_db_on(Server::Postgres).await
}

/// [`fresh_db`] on `server` (the plaintext or the TLS one).
pub async fn fresh_db_on(server: Server) -> Option<TestDb> {
    let url = server_url(server, &LocalPostgres)?;
    let admin = PgConnectOptions::from_str(&url)
        .expect("admin URL")
        .disable_statement_logging();
    let template = template_name();
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("connect as admin");
    // Serialize template creation across test processes sharing the server.
    conn.execute("SELECT pg_advisory_lock(727274)")
        .await
        .expect("advisory lock");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&template)
        .fetch_optional(&mut conn)
        .await
        .expect("look for template");
    if exists.is_none() {
        conn.execute(format!(r#"CREATE DATABASE "{template}""#).as_str())
            .await
            .expect("create template");
        let tpl_url = admin.clone().database(&template).to_url_lossy().to_string();
        migrate(&tpl_url).await.expect("migrate template");
    }
    conn.execute("SELECT pg_advisory_unlock(727274)")
        .await
        .expect("advisory unlock");
    let name = format!(
        "persistence_t{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    conn.execute(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#).as_str())
        .await
        .expect("clone template");
    Some(TestDb { name, admin })
}

/// An empty database (no migration applied); dropped when this is dropped.
pub async fn empty_db() -> Option<TestDb> {
    let url = server_url(Server::Postgres, &LocalPostgres)?;
    let admin = PgConnectOptions::from_str(&url)
        .expect("admin URL")
        .disable_statement_logging();
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("connect as admin");
    let name = format!(
        "persistence_e{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create database");
    Some(TestDb { name, admin })
}

/// A fixture on a fresh database, connected as the application role.
pub async fn fixture() -> Option<Fixture> {
    let db = fresh_db().await?;
    let mut config = PgConfig::new(db.app_url());
    config.max_connections = 20;
    let backend = PgBackend::connect(config)
        .await
        .expect("connect as app role");
    let caps = backend.capabilities();
    Some(Fixture::new("postgres", backend, caps, TimeControl::Real).holding(db))
}

/// A fixture on a fresh database whose backend's own config names the payload codec
/// of the conformance suite (compressed, encrypted, bound to each row): every call of
/// its traits goes through it.
#[cfg(feature = "codec")]
pub async fn sealed_fixture() -> Option<Fixture> {
    let db = fresh_db().await?;
    let mut config =
        PgConfig::new(db.app_url()).with_codec(persistence_conformance::sealed_fixture_codec());
    config.max_connections = 20;
    let backend = PgBackend::connect(config)
        .await
        .expect("connect as app role");
    let caps = backend.capabilities();
    Some(Fixture::new("postgres-sealed", backend, caps, TimeControl::Real).holding(db))
}

/// A fixture on a fresh database of the TLS-only server, connected as the application
/// role with `sslmode=verify-full` and a client certificate.
pub async fn tls_fixture() -> Option<Fixture> {
    let db = fresh_db_on(Server::PostgresTls).await?;
    let mut config = PgConfig::new(db.app_url());
    config.max_connections = 20;
    let backend = PgBackend::connect(config)
        .await
        .expect("connect as app role over TLS");
    let caps = backend.capabilities();
    Some(Fixture::new("postgres-tls", backend, caps, TimeControl::Real).holding(db))
}

/// A fixture on a fresh database reached through a PgBouncer in transaction pooling
/// mode (few server connections, so consecutive operations change server connection),
/// without prepared statements.
pub async fn pgbouncer_fixture() -> Option<Fixture> {
    let db = fresh_db().await?;
    let port =
        persistence_conformance::harness::pgbouncer_port(db.admin.get_host(), db.admin.get_port())?;
    let url = db.app_options().port(port).to_url_lossy().to_string();
    let mut config = PgConfig::new(url).with_prepared_statements(false);
    config.max_connections = 20;
    let backend = PgBackend::connect(config)
        .await
        .expect("connect as app role through pgbouncer");
    let caps = backend.capabilities();
    Some(Fixture::new("postgres-pgbouncer", backend, caps, TimeControl::Real).holding(db))
}

/// A raw pool as the application role, for the security tests.
pub async fn app_pool(db: &TestDb) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(db.app_options())
        .await
        .expect("app pool")
}
