//! Helpers shared by the Redis test files: the commands a server ran, from its own
//! statistics.

#![allow(dead_code, clippy::expect_used)] // each test file uses part of it

use persistence_conformance::harness::counted_per_operation;
use persistence_conformance::harness::dedicated::DedicatedRedis;
use persistence_core::Error;
use persistence_redis::{RedisBackend, RedisConfig};

/// A server of the test's own without persistence (so its counters are the test's
/// alone), a backend on it, and a plain connection to read its statistics; `None` when
/// no server can be started and Redis is not required.
pub async fn dedicated() -> Option<(
    DedicatedRedis,
    RedisBackend,
    redis::aio::MultiplexedConnection,
)> {
    let server = DedicatedRedis::start(&["--save", "", "--appendonly", "no"])?;
    let backend = RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .expect("connect");
    let conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("statistics connection");
    Some((server, backend, conn))
}

/// Sum of `calls` in `INFO commandstats`, without the INFO and CONFIG calls of the
/// counting itself.
pub async fn server_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> persistence_core::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| Error::backend_error(e.to_string()))?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// The commands the server runs for each operation of
/// [`counted_per_operation`], read from `conn`'s server.
pub async fn commands_per_operation(
    backend: &RedisBackend,
    mut conn: redis::aio::MultiplexedConnection,
) -> Vec<(&'static str, u64)> {
    let conn = tokio::sync::Mutex::new(&mut conn);
    counted_per_operation(backend, || async { server_calls(*conn.lock().await).await })
        .await
        .expect("operations")
}

/// `calls` of one command in `INFO commandstats` (0 before its first call).
pub async fn calls_of(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}
