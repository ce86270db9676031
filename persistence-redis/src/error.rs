//! Mapping of Redis errors and script outcomes into [`persistence_core::Error`].

use persistence_core::{Error, ErrorKind};

/// Backend name used in error messages.
pub const BACKEND: &str = "redis";

/// Whether the write may or may not have happened: a lost connection during a write
/// leaves its outcome unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reading, or a write that is safe to repeat.
    Read,
    /// A write whose outcome is unknown if the connection drops.
    Write,
}

/// Maps a client error of `operation` on `key`.
pub fn map(
    e: redis::RedisError,
    effect: Effect,
    operation: &'static str,
    key: impl std::fmt::Display,
) -> Error {
    let err = if is_transient_server_state(&e) {
        Error::unavailable(
            "Redis is not serving yet (loading its dataset after a restart, or a failover); retry",
        )
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_cluster_error()
    {
        // A refused connection never carried the write; anything else may have.
        let outcome = match effect {
            Effect::Write if !e.is_connection_refusal() => "; the write's outcome is unknown",
            _ => "",
        };
        Error::unavailable(format!("cannot reach Redis{outcome}"))
    } else {
        Error::backend_error("Redis error")
    };
    err.context(BACKEND, operation, key).with_source(e)
}

/// A reply that means "not now": `LOADING` (a restarted server reading its dataset),
/// `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`. Retrying later succeeds.
pub fn is_transient_server_state(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::{BusyLoading, ClusterDown, MasterDown, TryAgain};
    matches!(
        e.kind(),
        redis::ErrorKind::Server(BusyLoading | TryAgain | MasterDown | ClusterDown)
    )
}

/// Maps a script's `{status, message}` reply.
pub fn status(
    status: &str,
    message: &str,
    operation: &'static str,
    key: impl std::fmt::Display,
) -> Error {
    let err = match status {
        "conflict" => Error::conflict(message),
        "notfound" => Error::not_found(message),
        "closed" => Error::closed(message),
        "fenced" => Error::new(
            ErrorKind::Fenced,
            format!("fence is lower than fence {message} already seen"),
        ),
        other => Error::backend_error(format!("unexpected script status {other:?}: {message}")),
    };
    err.context(BACKEND, operation, key)
}

/// Stored data that does not decode.
pub fn corrupt(
    what: impl std::fmt::Display,
    operation: &'static str,
    key: impl std::fmt::Display,
) -> Error {
    Error::corrupt(format!("stored data does not decode: {what}")).context(BACKEND, operation, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(kind: redis::ServerErrorKind, text: &'static str) -> redis::RedisError {
        redis::RedisError::from((redis::ErrorKind::from(kind), text))
    }

    /// `LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN` are "retry later", for reads
    /// and writes alike; other server errors stay `Backend`.
    #[test]
    fn transient_server_states_are_unavailable() {
        use redis::ServerErrorKind::*;
        for kind in [BusyLoading, TryAgain, MasterDown, ClusterDown] {
            for effect in [Effect::Read, Effect::Write] {
                let e = map(server_error(kind, "LOADING"), effect, "session.head", "t/s");
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{kind:?}: {e}");
                assert!(e.is_retryable());
            }
        }
        let e = map(server_error(ResponseError, "ERR"), Effect::Read, "x", "y");
        assert_eq!(e.kind(), ErrorKind::Backend);
    }
}
