//! Real PostgreSQL, Redis and Redis Cluster servers for tests, without Docker: what the
//! `persistence` workspace's own tests run against, published for yours.
//!
//! - [`server_url`] with [`LocalPostgres`] / [`LocalRedis`]: one throwaway server per
//!   test process, started on first use (as the `postgres` user when run as root), on a
//!   free loopback port, in a temporary directory; a watchdog stops it and deletes the
//!   directory as soon as the test process exits, `kill -9` included.
//! - [`dedicated`]: servers owned by one test (stopped on drop), for fault injection:
//!   SIGSTOP/SIGCONT, restarts and kills by PID.
//! - [`named`]: servers a later test run reuses, under a validated name.
//! - [`docker`] (feature `testcontainers`): the same servers as containers, through the
//!   `testcontainers` crate, where a Docker engine answers.
//!
//! ```no_run
//! use persistence_testing::{LocalPostgres, Server, server_url};
//!
//! // `None` (with the reason printed) when no server can be found or started here,
//! // unless `PERSISTENCE_TEST_REQUIRE=postgres`: then it panics, so CI cannot skip.
//! if let Some(url) = server_url(Server::Postgres, &LocalPostgres) {
//!     // postgres://postgres@127.0.0.1:PORT/postgres, a superuser on a fresh cluster
//! }
//! ```
//!
//! # Where a server comes from
//! For each [`Server`], in order:
//! 1. the URL in its environment variable (`PERSISTENCE_TEST_POSTGRES_URL`,
//!    `PERSISTENCE_TEST_REDIS_URL`, `PERSISTENCE_TEST_REDIS_CLUSTER_URL`);
//! 2. a throwaway local server started by a [`Launcher`] the backend's tests pass in
//!    (e.g. `initdb` + `postgres`, or `redis-server`, in a temp dir on a free port);
//! 3. otherwise nothing: the test prints why and does not run, unless
//!    `PERSISTENCE_TEST_REQUIRE` names the server (`postgres`, `redis`, `redis-cluster`,
//!    or `all`), in which case it fails. CI sets `PERSISTENCE_TEST_REQUIRE=all`.
//!
//! The resolution is a pure function of an environment lookup ([`resolve`]), so the
//! policy itself is unit-tested without touching the process environment.

#![deny(missing_docs)]

use std::fmt;

pub mod dedicated;
#[cfg(feature = "testcontainers")]
pub mod docker;
pub mod named;
mod pgbouncer;
mod postgres;
mod redis;
pub mod tls;
pub use pgbouncer::{POOL_SIZE as PGBOUNCER_POOL_SIZE, pgbouncer_port};
pub use postgres::{LocalPostgres, find_bin_dir};
pub use redis::{LocalRedis, command as redis_command};

/// A free loopback port for a throwaway server, below Linux's ephemeral range
/// (32768..) so that no outgoing connection or `bind(0)` of a concurrent test process
/// takes it between this check and the server's own bind. Launchers still retry on
/// another port when the server fails to start (two processes may pick the same one).
pub(crate) fn free_port() -> Result<u16, String> {
    for _ in 0..200 {
        let port = 20_000 + fastrand::u16(..12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free loopback port in 20000..32000".into())
}

/// Attempts at starting a throwaway server, each on a fresh port.
pub(crate) const START_ATTEMPTS: usize = 4;

/// A server some backend's tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// A single Redis node.
    Redis,
    /// A Redis Cluster (3 masters).
    RedisCluster,
    /// PostgreSQL speaking TLS only, requiring a client certificate (its URL carries
    /// `sslmode=verify-full` and the test CA and client files, see [`tls::TlsFiles`]).
    PostgresTls,
    /// A single Redis node on a TLS port, requiring a client certificate.
    RedisTls,
    /// A Redis Cluster (3 masters) over TLS, cluster bus included.
    RedisClusterTls,
}

impl Server {
    /// Name used in `PERSISTENCE_TEST_REQUIRE`.
    pub fn name(self) -> &'static str {
        match self {
            Server::Postgres => "postgres",
            Server::Redis => "redis",
            Server::RedisCluster => "redis-cluster",
            Server::PostgresTls => "postgres-tls",
            Server::RedisTls => "redis-tls",
            Server::RedisClusterTls => "redis-cluster-tls",
        }
    }
    /// The same server without TLS.
    pub fn plaintext(self) -> Server {
        match self {
            Server::PostgresTls => Server::Postgres,
            Server::RedisTls => Server::Redis,
            Server::RedisClusterTls => Server::RedisCluster,
            plain => plain,
        }
    }
    /// The variable holding a URL to use instead of starting a server.
    pub fn url_var(self) -> &'static str {
        match self {
            Server::Postgres => "PERSISTENCE_TEST_POSTGRES_URL",
            Server::Redis => "PERSISTENCE_TEST_REDIS_URL",
            Server::RedisCluster => "PERSISTENCE_TEST_REDIS_CLUSTER_URL",
            Server::PostgresTls => "PERSISTENCE_TEST_POSTGRES_TLS_URL",
            Server::RedisTls => "PERSISTENCE_TEST_REDIS_TLS_URL",
            Server::RedisClusterTls => "PERSISTENCE_TEST_REDIS_CLUSTER_TLS_URL",
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The variable naming servers whose absence fails the run.
pub const REQUIRE_VAR: &str = "PERSISTENCE_TEST_REQUIRE";

/// Whether the comma-separated `spec` (the value of [`REQUIRE_VAR`]) names `server`.
/// `all` names every server; `redis` also names the cluster; a server's name also names
/// its TLS variant (`postgres` requires `postgres-tls`).
pub fn is_required(spec: &str, server: Server) -> bool {
    let plain = server.plaintext();
    spec.split(',').map(str::trim).any(|name| {
        name == "all"
            || name == server.name()
            || name == plain.name()
            || (name == "redis" && plain == Server::RedisCluster)
    })
}

/// Starts a throwaway server. Backends' test suites implement this; the harness only
/// decides when to call it.
pub trait Launcher {
    /// Starts (or reuses) a local server and returns its URL.
    ///
    /// # Errors
    /// A human-readable reason when no server can be started here (binary not found,
    /// port unavailable, ...).
    fn launch(&self, server: Server) -> Result<String, String>;
}

/// A launcher that never starts anything: for servers without a local launcher yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLauncher;

impl Launcher for NoLauncher {
    fn launch(&self, server: Server) -> Result<String, String> {
        Err(format!("no local launcher for {server}"))
    }
}

/// What [`resolve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Use this URL.
    Found {
        /// The server URL.
        url: String,
        /// Where it came from, for messages.
        origin: &'static str,
    },
    /// No server; tests print `reason` and do not run.
    Skip {
        /// Why.
        reason: String,
    },
    /// No server, and [`REQUIRE_VAR`] demands one: tests fail with `reason`.
    Fail {
        /// Why.
        reason: String,
    },
}

/// Decides where `server` comes from, given an environment lookup and a launcher.
pub fn resolve(
    server: Server,
    env: &dyn Fn(&str) -> Option<String>,
    launcher: &dyn Launcher,
) -> Resolution {
    if let Some(url) = env(server.url_var()).filter(|u| !u.trim().is_empty()) {
        return Resolution::Found {
            url,
            origin: server.url_var(),
        };
    }
    let reason = match launcher.launch(server) {
        Ok(url) => {
            return Resolution::Found {
                url,
                origin: "throwaway local server",
            };
        }
        Err(reason) => format!(
            "no {server} for tests: {} is not set and {reason}",
            server.url_var()
        ),
    };
    let required = env(REQUIRE_VAR).is_some_and(|spec| is_required(&spec, server));
    if required {
        Resolution::Fail {
            reason: format!("{reason}; {REQUIRE_VAR} requires it"),
        }
    } else {
        Resolution::Skip { reason }
    }
}

/// [`resolve`] against the process environment: `Some(url)`, or `None` after printing
/// why tests will not run.
///
/// # Panics
/// When the server is missing and [`REQUIRE_VAR`] names it, so CI fails instead of
/// silently skipping.
pub fn server_url(server: Server, launcher: &dyn Launcher) -> Option<String> {
    match resolve(server, &|name| std::env::var(name).ok(), launcher) {
        Resolution::Found { url, .. } => Some(url),
        Resolution::Skip { reason } => {
            eprintln!("{reason}; set {REQUIRE_VAR}={server} to make this a failure");
            None
        }
        Resolution::Fail { reason } => panic!("{reason}"),
    }
}

/// A backend a test runs on through `persistence::open`: its name and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendUrl {
    /// `memory`, `fs`, `postgres`, `redis` or `redis-cluster`.
    pub name: &'static str,
    /// What `persistence::open` takes.
    pub url: String,
    /// A Postgres database must be migrated (`persistence::postgres::migrate`) before it
    /// is opened.
    pub needs_migration: bool,
}

/// Every backend the harness offers, for tests that run the same code on each (the
/// framework adapters): `memory://`, `file://{dir}`, then Postgres, a Redis node and a
/// Redis Cluster as [`server_url`] finds or starts them (a missing server is left out,
/// or fails the test when required).
pub fn backend_urls(dir: &std::path::Path) -> Vec<BackendUrl> {
    let mut out = vec![
        BackendUrl {
            name: "memory",
            url: "memory://".into(),
            needs_migration: false,
        },
        BackendUrl {
            name: "fs",
            url: format!("file://{}", dir.display()),
            needs_migration: false,
        },
    ];
    let servers: [(&'static str, Server, &dyn Launcher); 3] = [
        ("postgres", Server::Postgres, &LocalPostgres),
        ("redis", Server::Redis, &LocalRedis),
        ("redis-cluster", Server::RedisCluster, &LocalRedis),
    ];
    for (name, server, launcher) in servers {
        if let Some(url) = server_url(server, launcher) {
            out.push(BackendUrl {
                name,
                url,
                needs_migration: server == Server::Postgres,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<String, String>);
    impl Launcher for Fixed {
        fn launch(&self, _: Server) -> Result<String, String> {
            self.0.clone()
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_url_wins() {
        let env = env_of(&[("PERSISTENCE_TEST_REDIS_URL", "redis://127.0.0.1:7000")]);
        let r = resolve(Server::Redis, &env, &Fixed(Ok("redis://elsewhere".into())));
        assert_eq!(
            r,
            Resolution::Found {
                url: "redis://127.0.0.1:7000".into(),
                origin: "PERSISTENCE_TEST_REDIS_URL"
            }
        );
    }

    #[test]
    fn launcher_is_second() {
        let env = env_of(&[]);
        let r = resolve(Server::Postgres, &env, &Fixed(Ok("postgres://x".into())));
        assert!(matches!(r, Resolution::Found { ref url, .. } if url == "postgres://x"));
    }

    #[test]
    fn missing_skips_unless_required() {
        let none = Fixed(Err("initdb not found".into()));
        assert!(matches!(
            resolve(Server::Postgres, &env_of(&[]), &none),
            Resolution::Skip { .. }
        ));
        let env = env_of(&[(REQUIRE_VAR, "redis, postgres")]);
        assert!(matches!(
            resolve(Server::Postgres, &env, &none),
            Resolution::Fail { .. }
        ));
        let env = env_of(&[(REQUIRE_VAR, "redis")]);
        assert!(matches!(
            resolve(Server::Postgres, &env, &none),
            Resolution::Skip { .. }
        ));
        assert!(matches!(
            resolve(Server::RedisCluster, &env, &none),
            Resolution::Fail { .. }
        ));
        let env = env_of(&[(REQUIRE_VAR, "all")]);
        assert!(matches!(
            resolve(Server::Redis, &env, &NoLauncher),
            Resolution::Fail { .. }
        ));
    }

    #[test]
    fn empty_url_is_not_a_url() {
        let env = env_of(&[("PERSISTENCE_TEST_POSTGRES_URL", " ")]);
        assert!(matches!(
            resolve(Server::Postgres, &env, &NoLauncher),
            Resolution::Skip { .. }
        ));
    }
}
