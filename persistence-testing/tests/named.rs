//! Named servers: started once, found again by a later call (as by a later run), stopped
//! for good; names that could reach foreign paths are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use persistence_testing::named::{self, NamedServer};
use persistence_testing::{REQUIRE_VAR, Server, is_required, redis_command};

/// A name of this test process only, so concurrent runs never share one.
fn name(kind: &str) -> String {
    format!("itest-{kind}-{}", std::process::id())
}

/// The server, or `None` (printed) when it cannot be started here and CI does not
/// require it.
fn started(server: Server, result: Result<NamedServer, String>) -> Option<NamedServer> {
    match result {
        Ok(s) => Some(s),
        Err(reason) => {
            let required = std::env::var(REQUIRE_VAR).is_ok_and(|spec| is_required(&spec, server));
            assert!(
                !required,
                "{server} is required ({REQUIRE_VAR}) but: {reason}"
            );
            eprintln!("no {server} here, not run: {reason}");
            None
        }
    }
}

#[test]
fn names_that_could_reach_other_paths_are_refused() {
    for bad in ["", "../x", "a/b", "A", "-x", "x y", "x.y", &"a".repeat(33)] {
        assert!(named::validate_name(bad).is_err(), "{bad:?} accepted");
        assert!(named::redis(bad).is_err(), "{bad:?} started a server");
    }
    for good in ["a", "ci-1", &"a".repeat(32)] {
        named::validate_name(good).unwrap();
    }
}

#[test]
fn a_named_redis_is_reused_then_stopped() {
    let name = name("redis");
    let Some(first) = started(Server::Redis, named::redis(&name)) else {
        return;
    };
    assert!(!first.reused());
    assert!(first.dir().to_string_lossy().contains(named::PREFIX));
    assert!(redis_command(first.port(), "SET k v").is_some());
    let again = named::redis(&name).unwrap();
    assert!(again.reused(), "a running server was not reused");
    assert_eq!(again.url(), first.url());
    let value = redis_command(again.port(), "GET k").unwrap();
    assert!(value.contains('v'), "another server answered: {value:?}");
    let (port, dir) = (first.port(), first.dir().to_path_buf());
    drop(first);
    again.stop().unwrap();
    assert!(
        redis_command(port, "PING").is_none(),
        "still answering after stop"
    );
    assert!(!dir.exists(), "directory left behind");
}

#[test]
fn a_named_postgres_is_reused_then_stopped() {
    let name = name("pg");
    let Some(first) = started(Server::Postgres, named::postgres(&name)) else {
        return;
    };
    assert!(!first.reused());
    assert!(first.url().starts_with("postgres://postgres@127.0.0.1:"));
    let again = named::postgres(&name).unwrap();
    assert!(again.reused(), "a running server was not reused");
    assert_eq!(again.url(), first.url());
    let (port, dir) = (first.port(), first.dir().to_path_buf());
    drop(first);
    again.stop().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after stop"
    );
    assert!(!dir.exists(), "directory left behind");
    // A stopped name starts afresh.
    let fresh = named::postgres(&name).unwrap();
    assert!(!fresh.reused());
    fresh.stop().unwrap();
}
