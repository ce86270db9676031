//! Production faults against Redis servers these tests own: restarts that lose the fence
//! counter, a server loading its dataset, paused servers and cluster masters, replicas
//! that never confirm, and passwords that must never show.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use persistence_conformance::harness::dedicated::{DedicatedRedis, signal};
use persistence_conformance::harness::{LocalRedis, Server, redis_command, server_url};
use persistence_core::{
    Error, ErrorKind, Lock, LockKey, LockOptions, SessionKey, SessionLog, TenantId, with_lock,
};
use persistence_redis::{RedisBackend, RedisConfig, WaitReplicas};

const SECRET: &str = "s3cret-redis-pw-do-not-print";

fn ids() -> (TenantId, LockKey) {
    (TenantId::new("t").unwrap(), LockKey::new("worker").unwrap())
}

async fn backend(url: String, timeout: Duration) -> RedisBackend {
    let mut config = RedisConfig::new(url);
    config.timeout = timeout;
    RedisBackend::connect(config).await.expect("connect")
}

/// A fence taken after a restart that lost every key (no RDB, no AOF) is still greater
/// than every fence handed out before it, and so is one taken after the counter itself
/// was lost (as an eviction would).
#[tokio::test]
async fn fences_never_go_backwards_when_redis_loses_its_data() {
    let Some(mut server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_secs(2)).await;
    let (t, name) = ids();
    let mut highest = 0;
    for _ in 0..3 {
        let lease = b
            .try_acquire(&t, &name, Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(lease.fence.0 > highest, "{} after {highest}", lease.fence.0);
        highest = lease.fence.0;
        assert!(b.release(&lease).await.unwrap());
    }
    server.kill_and_restart();
    let after_restart = loop {
        // The first call may meet the dropped connection; the client reconnects.
        match b.try_acquire(&t, &name, Duration::from_secs(30)).await {
            Ok(lease) => break lease.unwrap(),
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        after_restart.fence.0 > highest,
        "fence {} after a restart, {highest} before",
        after_restart.fence.0
    );
    b.release(&after_restart).await.unwrap();
    // The counter alone lost (what `maxmemory-policy allkeys-*` eviction does).
    assert_eq!(
        redis_command(server.port(), "FLUSHALL").as_deref(),
        Some("+OK\r\n")
    );
    let after_eviction = b
        .try_acquire(&t, &name, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert!(after_eviction.fence.0 > after_restart.fence.0);
}

/// Unused lock names leave nothing behind for ever: the fence counter expires after the
/// lease (the clock floor keeps later fences higher).
#[tokio::test]
async fn fence_counters_of_unused_locks_expire() {
    let Some(server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_secs(2)).await;
    let (t, name) = ids();
    let lease = b
        .try_acquire(&t, &name, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    b.release(&lease).await.unwrap();
    let keys = redis_command(server.port(), "KEYS *").unwrap();
    let fence_key = keys
        .lines()
        .find(|l| l.ends_with(":fence"))
        .expect("a fence counter")
        .to_string();
    let ttl = redis_command(server.port(), &format!("PTTL {fence_key}")).unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 0, "fence counter {fence_key} has no expiry ({ttl})");
}

/// A server killed and restarted while it loads a large dataset: every call in between
/// fails `Unavailable` (retryable), never `Backend`, and then the data is there. (The
/// driver itself waits out `LOADING` on reconnect; the mapping of a `LOADING` reply
/// that does reach us is unit-tested in `error.rs`.)
#[tokio::test]
async fn a_restarting_server_is_unavailable_then_serves_its_data() {
    // 100 µs per key loaded: 30 000 keys keep the server loading for about 3 s.
    let Some(mut server) = DedicatedRedis::start(&[
        "--appendonly",
        "no",
        "--key-load-delay",
        "100",
        "--enable-debug-command",
        "local",
    ]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_secs(2)).await;
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    b.append(
        &t,
        &s,
        vec![persistence_core::Envelope::new(1, serde_json::json!(1))],
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        redis_command(server.port(), "DEBUG POPULATE 30000").as_deref(),
        Some("+OK\r\n")
    );
    assert_eq!(
        redis_command(server.port(), "SAVE").as_deref(),
        Some("+OK\r\n")
    );
    server.kill_and_restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let appended = b
            .append(
                &t,
                &s,
                vec![persistence_core::Envelope::new(1, serde_json::json!(2))],
                Default::default(),
            )
            .await;
        match appended {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(e.is_retryable());
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server never finished loading"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.head(&t, &s).await.unwrap(), 2);
}

/// `with_lock` on a server that stops answering ends as `LockLost` before the lease
/// lapses, not after the driver's own timeouts.
#[tokio::test]
async fn with_lock_on_a_paused_server_is_lock_lost_in_time() {
    let Some(server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    // The driver would wait 10 s; the lease lasts 3 s.
    let b = backend(server.url(), Duration::from_secs(10)).await;
    let (t, name) = ids();
    let pid = server.pid();
    let options = LockOptions::default()
        .with_ttl(Duration::from_secs(3))
        .with_wait(Duration::from_secs(1));
    let started = Instant::now();
    let outcome: Result<(), Error> = with_lock(&b, &t, &name, options, |_lease| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        signal(pid, "STOP");
        tokio::time::sleep(Duration::from_secs(20)).await;
        Ok(())
    })
    .await;
    let elapsed = started.elapsed();
    signal(pid, "CONT");
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost, "{err}");
    assert!(
        elapsed < Duration::from_secs(3),
        "LockLost after {elapsed:?}, past the 3 s lease"
    );
}

/// Every master of the cluster paused: calls end within the configured timeout instead
/// of waiting for the pause to end.
#[tokio::test]
async fn a_paused_cluster_master_times_out() {
    if std::env::var_os(Server::RedisCluster.url_var()).is_some() {
        eprintln!("SKIPPED: the cluster comes from the environment; its processes are not ours");
        return;
    }
    let Some(url) = server_url(Server::RedisCluster, &LocalRedis) else {
        return;
    };
    let b = backend(url.clone(), Duration::from_millis(1000)).await;
    let (t, name) = ids();
    b.try_acquire(&t, &name, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let pids: Vec<u32> = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .map(|node| {
            let port: u16 = node.rsplit(':').next().unwrap().parse().unwrap();
            let info = redis_command(port, "INFO server").unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("process_id:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    for pid in &pids {
        signal(*pid, "STOP");
    }
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        b.try_acquire(&t, &LockKey::new("other").unwrap(), Duration::from_secs(30)),
    )
    .await;
    let elapsed = started.elapsed();
    // A read is not retried past its deadline either.
    let read_started = Instant::now();
    let (tenant, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    let read = tokio::time::timeout(Duration::from_secs(15), b.head(&tenant, &s)).await;
    let read_elapsed = read_started.elapsed();
    for pid in &pids {
        signal(*pid, "CONT");
    }
    let err = result
        .expect("a call to a paused cluster must end within its deadline")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let err = read
        .expect("a read on a paused cluster must end within its deadline")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        read_elapsed < Duration::from_secs(5),
        "read took {read_elapsed:?}"
    );
}

/// A lease whose replica confirmation failed is released, not left held by a token
/// nobody has.
#[tokio::test]
async fn an_unconfirmed_lease_is_not_orphaned() {
    let Some(server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let mut config = RedisConfig::new(server.url());
    config.wait_replicas = Some(WaitReplicas::new(1, Duration::from_millis(100)));
    let waiting = RedisBackend::connect(config).await.unwrap();
    let (t, name) = ids();
    let err = waiting
        .try_acquire(&t, &name, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let plain = backend(server.url(), Duration::from_secs(2)).await;
    assert!(
        plain
            .try_acquire(&t, &name, Duration::from_secs(60))
            .await
            .unwrap()
            .is_some(),
        "the unconfirmed lease is still held by a token nobody has"
    );
}

#[tokio::test]
async fn no_password_in_errors_or_debug() {
    let mut config = RedisConfig::new(format!("redis://:{SECRET}@127.0.0.1:1/0"));
    config.timeout = Duration::from_millis(300);
    assert!(!format!("{config:?}").contains(SECRET), "{config:?}");
    let err = RedisBackend::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    let mut cluster = RedisConfig::new(format!("redis+cluster://u:{SECRET}@127.0.0.1:1"));
    cluster.timeout = Duration::from_millis(300);
    let err = RedisBackend::connect(cluster).await.unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
}

/// A write to a server that is gone fails `Unavailable`; it says its outcome is unknown
/// only when it may have reached the server.
#[tokio::test]
async fn a_refused_write_does_not_claim_an_unknown_outcome() {
    let Some(mut server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_secs(1)).await;
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    server.stop();
    let mut messages = Vec::new();
    for _ in 0..3 {
        let e = b
            .append(
                &t,
                &s,
                vec![persistence_core::Envelope::new(1, serde_json::json!(1))],
                Default::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        messages.push(e.to_string());
    }
    // The first may meet the connection as it drops; later ones are refused outright.
    let last = messages.last().unwrap();
    assert!(!last.contains("outcome is unknown"), "{messages:?}");
}

/// A server that evicts keys would drop leases: `connect` refuses it, naming the
/// setting, unless eviction is accepted explicitly.
#[tokio::test]
async fn an_evicting_server_is_refused_unless_accepted() {
    let Some(server) = DedicatedRedis::start(&["--save", "", "--maxmemory-policy", "allkeys-lru"])
    else {
        return;
    };
    let err = RedisBackend::connect(RedisConfig::new(server.url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains("maxmemory-policy is allkeys-lru"),
        "{err}"
    );
    let mut accepted = RedisConfig::new(server.url());
    accepted.allow_eviction = true;
    RedisBackend::connect(accepted).await.unwrap();
}

/// The health check of a paused server fails within its deadline (twice the timeout)
/// instead of hanging a readiness probe, and passes again once the server resumes.
#[tokio::test]
async fn health_of_a_paused_server_fails_in_time() {
    use persistence_core::Maintenance;
    let Some(server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_millis(500)).await;
    b.health().await.unwrap();
    signal(server.pid(), "STOP");
    let started = Instant::now();
    let outcome = b.health().await;
    let elapsed = started.elapsed();
    signal(server.pid(), "CONT");
    let err = outcome.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "health answered after {elapsed:?}"
    );
    b.health().await.unwrap();
}

/// A live tail across a server killed and restarted (with its append-only file): the
/// calls in between may fail (`next` is called again), and afterwards it delivers the
/// next events in order, none skipped or repeated, its listener reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_server_restart() {
    use persistence_core::{Envelope, Subscribe};
    let Some(mut server) = DedicatedRedis::start(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]) else {
        return;
    };
    let b = backend(server.url(), Duration::from_secs(2)).await;
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("live").unwrap(),
    );
    let one = |n: i64| vec![Envelope::new(1, serde_json::json!(n))];
    b.append(&t, &s, one(1), Default::default()).await.unwrap();
    let log: &dyn SessionLog = &b;
    let mut tail = log.subscribe(
        &t,
        &s,
        0,
        Subscribe::default().with_poll_interval(Duration::from_secs(1)),
    );
    assert_eq!(tail.next().await.unwrap().seq, 1);
    server.kill_and_restart();
    let writer = {
        let b = b.clone();
        let (t, s) = (t.clone(), s.clone());
        tokio::spawn(async move {
            for n in 2..=3 {
                loop {
                    match b.append(&t, &s, one(n), Default::default()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "events after the restart: {seen:?}"
        );
        match tokio::time::timeout(Duration::from_secs(5), tail.next()).await {
            Ok(Ok(event)) => seen.push(event.seq),
            Ok(Err(e)) => {
                assert!(e.is_retryable(), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {}
        }
    }
    writer.await.unwrap();
    assert_eq!(seen, [2, 3]);
}
