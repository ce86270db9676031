//! Redis-specific behaviour: keys of one entity share a cluster slot whatever the ids
//! contain; a restarted server is reconnected without a new client; lease edge cases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use persistence_conformance::checks::HOSTILE_IDS;
use persistence_conformance::harness::{LocalRedis, Server, server_url};
use persistence_core::{
    AppendOptions, Envelope, Error, ErrorKind, LockKey, LockOptions, Namespace, SessionKey,
    SessionLog, TenantId, ThreadKey, with_lock,
};
use persistence_redis::keys::{Index, Keys};
use persistence_redis::{RedisBackend, RedisConfig};

async fn keyslot(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// Every key of one thread, session, namespace or lock maps to one slot (checked with
/// `CLUSTER KEYSLOT` on the local cluster), for hostile ids too.
#[tokio::test]
async fn one_entity_one_slot() {
    let Some(url) = server_url(Server::RedisCluster, &LocalRedis) else {
        return;
    };
    let node = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .next()
        .unwrap();
    let client = redis::Client::open(format!("redis://{node}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = Keys::new("p:");
    let t = TenantId::new("tenant.x").unwrap();
    let mut slots = std::collections::HashSet::new();
    for id in HOSTILE_IDS {
        let th = keys.thread(&t, &ThreadKey::new(*id).unwrap());
        let thread_keys = [
            th.content(),
            th.created(),
            th.ids(),
            th.fence(),
            format!("{}some-id", th.writes_prefix()),
        ];
        let s = keys.session(&t, &SessionKey::new(*id).unwrap());
        let ns = keys.namespace(&t, &Namespace::new([*id, "x"]).unwrap());
        let (lease, fence) = keys.lease(&t, &LockKey::new(*id).unwrap());
        for group in [
            thread_keys.to_vec(),
            vec![s.meta(), s.events(), s.fence()],
            vec![ns.values(), ns.meta(), ns.keys(), ns.expiry()],
            vec![lease, fence],
        ] {
            let first = keyslot(&mut conn, &group[0]).await;
            for k in &group {
                assert_eq!(
                    keyslot(&mut conn, k).await,
                    first,
                    "{k} is not in the slot of {}",
                    group[0]
                );
            }
            slots.insert(first);
        }
    }
    assert!(
        slots.len() > 10,
        "hash tags do not spread entities over slots: {}",
        slots.len()
    );
    let a = keys.index(&t, Index::Threads);
    let b = keys.index(&t, Index::Sessions);
    assert_eq!(keyslot(&mut conn, &a).await, keyslot(&mut conn, &b).await);
}

struct Server1 {
    child: Child,
    dir: Option<tempfile::TempDir>,
    port: u16,
}

impl Server1 {
    fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        for _ in 0..200 {
            if persistence_conformance::harness::redis_command(port, "PING")
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Server1 {
            child,
            dir: Some(dir),
            port,
        }
    }
    fn stop(mut self) -> (u16, tempfile::TempDir) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.port, self.dir.take().expect("dir"))
    }
}

impl Drop for Server1 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// While the server is down operations fail `Unavailable` (retryable); once it is back on
/// the same port they succeed with the same client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_server_restart() {
    if server_url(Server::Redis, &LocalRedis).is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server1::start(port, tempfile::tempdir().unwrap());
    let mut config = RedisConfig::new(format!("redis://127.0.0.1:{port}"));
    config.read_retries = 0;
    config.timeout = Duration::from_millis(500);
    let backend = RedisBackend::connect(config).await.unwrap();
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    for _ in 0..50 {
        backend
            .append(
                &t,
                &s,
                vec![Envelope::new(1, serde_json::json!(1))],
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
    let (port, dir) = server.stop();
    let mut saw_unavailable = false;
    for _ in 0..3 {
        match backend
            .append(
                &t,
                &s,
                vec![Envelope::new(1, serde_json::json!(2))],
                AppendOptions::default(),
            )
            .await
        {
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                assert!(e.is_retryable());
                saw_unavailable = true;
            }
            Err(e) => panic!("expected Unavailable while down, got {e}"),
            Ok(_) => panic!("a write succeeded with the server down"),
        }
    }
    assert!(saw_unavailable);
    let _server = Server1::start(port, dir);
    let mut recovered = false;
    for _ in 0..100 {
        if backend
            .append(
                &t,
                &s,
                vec![Envelope::new(1, serde_json::json!(3))],
                AppendOptions::default(),
            )
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        recovered,
        "the client did not reconnect to the restarted server"
    );
}

/// `with_lock` never panics or underflows its renewal schedule, for 1 ms up to 1 h TTLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_handles_tiny_and_huge_ttls() {
    let Some(url) = server_url(Server::Redis, &LocalRedis) else {
        return;
    };
    let backend = RedisBackend::connect(
        RedisConfig::new(url).with_prefix(format!("ttl{}:", std::process::id())),
    )
    .await
    .unwrap();
    let t = TenantId::new("t").unwrap();
    for (i, ttl) in [1u64, 2, 3, 10, 3_600_000].into_iter().enumerate() {
        let name = LockKey::new(format!("l{i}")).unwrap();
        let options = LockOptions::default()
            .with_ttl(Duration::from_millis(ttl))
            .with_wait(Duration::from_secs(5));
        let result = with_lock(&backend, &t, &name, options, |_lease| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok::<_, Error>(())
        })
        .await;
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::LockLost && ttl < 30 => {}
            Err(e) => panic!("ttl {ttl} ms: {e}"),
        }
    }
}

/// With `wait_replicas`, a write no replica confirmed fails `Unavailable` and says so; the
/// primary still has it.
#[tokio::test]
async fn unconfirmed_writes_are_reported() {
    let Some(url) = server_url(Server::Redis, &LocalRedis) else {
        return;
    };
    let mut config = RedisConfig::new(url).with_prefix(format!("wait{}:", std::process::id()));
    config.wait_replicas = Some(persistence_redis::WaitReplicas::new(
        1,
        Duration::from_millis(50),
    ));
    let backend = RedisBackend::connect(config).await.unwrap();
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    let err = backend
        .append(
            &t,
            &s,
            vec![Envelope::new(1, serde_json::json!(1))],
            AppendOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("replicas"), "{err}");
    assert_eq!(
        backend.head(&t, &s).await.unwrap(),
        1,
        "the write is on the primary"
    );
    let cluster = RedisConfig::new("redis+cluster://127.0.0.1:1").with_wait_replicas(Some(
        persistence_redis::WaitReplicas::new(1, Duration::from_millis(1)),
    ));
    let err = RedisBackend::connect(cluster).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Each operation is one network flight to a single node (counted by a proxy), once the
/// scripts are loaded and the entity is indexed.
#[tokio::test]
async fn one_round_trip_per_operation() {
    use persistence_conformance::harness::{CountingProxy, round_trips_per_operation};
    let Some(url) = server_url(Server::Redis, &LocalRedis) else {
        return;
    };
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = CountingProxy::start(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}", proxy.addr.port()))
        .with_prefix(format!("rt-{}:", std::process::id()));
    let b = RedisBackend::connect(config).await.unwrap();
    let report = round_trips_per_operation(&b, &proxy).await.unwrap();
    for (op, trips) in &report {
        eprintln!("{op:<24} {trips} round trip(s)");
    }
    for (op, trips) in &report {
        assert_eq!(*trips, 1, "{op} took {trips} round trips");
    }
}

/// A Redis script costs its server about 2–3 µs per command it runs, so the hot writes
/// run no command their guarantees do not need. Counted by a server of the test's own
/// (`INFO commandstats`, the script's `EVALSHA` and the tenant-index `ZADD`s included)
/// for writes to an entity that exists: a checkpoint put with a new id, a one-event
/// append, an item put over an existing key.
#[tokio::test]
async fn hot_writes_run_only_the_commands_they_need() {
    let Some((_server, backend, conn)) = support::dedicated().await else {
        return;
    };
    let counts = support::commands_per_operation(&backend, conn).await;
    // MULTI, HSETNX, HSETNX, ZADD, EXEC; two index ZADDs beside it (a script running
    // HSETNX, TIME, HSET, ZADD before; HGET then HSET of the content before that, 8). Appends: TIME, HMGET, ZADD, HSET, and
    // the PUBLISH that wakes live tails on a single node (9 with HGET head and HGET exp). Item puts: TIME, HGET, HSET, HSET (9 with the ZREM
    // and ZADD an existing item does not need).
    for (op, most) in [
        ("checkpoint put", 7),
        ("session append", 8),
        ("store put", 7),
    ] {
        let (_, n) = counts
            .iter()
            .find(|(name, _)| *name == op)
            .unwrap_or_else(|| panic!("{op} not counted: {counts:?}"));
        assert!(
            *n <= most,
            "{op} ran {n} commands (at most {most}): {counts:?}"
        );
    }
}

/// A checkpoint put with neither guard nor fence writes with plain commands in one
/// transaction (`MULTI`, `HSETNX` content, `HSETNX` created-at, `ZADD`, `EXEC`): atomic,
/// one round trip, no script (a script cost the server 23–31 µs a put on the project's
/// VM). A repeat of the same put is still idempotent, other content under its id still a
/// conflict, and a guarded put still runs its script.
#[tokio::test]
async fn an_unguarded_checkpoint_put_runs_no_script() {
    use persistence_core::{Checkpointer, ErrorKind, ExpectLatest, NewCheckpoint, ThreadKey};
    let Some((_server, backend, mut conn)) = support::dedicated().await else {
        return;
    };
    let t = TenantId::new("t").unwrap();
    let th = ThreadKey::new("th").unwrap();
    let checkpoint = |step: i64| {
        NewCheckpoint::new(
            Default::default(),
            step,
            Envelope::new(1, serde_json::json!({"step": step})),
        )
    };
    let scripts = async |conn: &mut redis::aio::MultiplexedConnection| {
        support::calls_of(conn, "evalsha").await + support::calls_of(conn, "eval").await
    };
    let before = scripts(&mut conn).await;
    let mut last = None;
    for step in 0..10 {
        let c = checkpoint(step);
        last = Some(c.clone());
        backend.put(&t, &th, c, Default::default()).await.unwrap();
    }
    assert_eq!(
        scripts(&mut conn).await - before,
        0,
        "unguarded puts ran a script"
    );
    let last = last.unwrap();
    let first = backend
        .put(&t, &th, last.clone(), Default::default())
        .await
        .unwrap();
    let again = backend
        .put(&t, &th, last.clone(), Default::default())
        .await
        .unwrap();
    assert_eq!(first.created_at, again.created_at, "a repeat is idempotent");
    let mut other = last.clone();
    other.step = 99;
    let err = backend
        .put(&t, &th, other, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let guarded = persistence_core::PutCheckpointOptions::default()
        .with_expect_latest(ExpectLatest::Is(last.id));
    backend.put(&t, &th, checkpoint(10), guarded).await.unwrap();
    // (Its first run may count twice: an EVALSHA refused with NOSCRIPT, then the EVAL.)
    assert!(
        scripts(&mut conn).await > before,
        "a guarded put runs its script"
    );
}

/// An item get reads with plain commands in one transaction (`MULTI`, two `HGET`s,
/// `TIME`, `EXEC`: atomic, one round trip, no script): a script cost the server 14–20 µs
/// for what these commands do in a few.
#[tokio::test]
async fn item_get_runs_no_script() {
    use persistence_core::{ItemKey, Store};
    let Some((_server, backend, mut conn)) = support::dedicated().await else {
        return;
    };
    let t = TenantId::new("t").unwrap();
    let ns = Namespace::new(["n"]).unwrap();
    let (live, gone) = (ItemKey::new("k").unwrap(), ItemKey::new("none").unwrap());
    let value = Envelope::new(1, serde_json::json!({"v": 1}));
    Store::put(&backend, &t, &ns, &live, value.clone(), Default::default())
        .await
        .unwrap();
    let scripts = async |conn: &mut redis::aio::MultiplexedConnection| {
        support::calls_of(conn, "evalsha").await + support::calls_of(conn, "eval").await
    };
    let (before, calls) = (
        scripts(&mut conn).await,
        support::server_calls(&mut conn).await,
    );
    for _ in 0..10 {
        let item = Store::get(&backend, &t, &ns, &live).await.unwrap().unwrap();
        assert_eq!(item.value, value);
        assert!(
            Store::get(&backend, &t, &ns, &gone)
                .await
                .unwrap()
                .is_none()
        );
    }
    let calls = support::server_calls(&mut conn).await.unwrap() - calls.unwrap();
    assert_eq!(
        scripts(&mut conn).await - before,
        0,
        "item gets ran a script"
    );
    assert!(calls <= 20 * 5, "{calls} commands for 20 item gets");
}

/// A failed connect names the server it tried (the URL without its password) as its key,
/// and carries no instructions meant for the CLI ("is it running?"): the kind,
/// `Unavailable`, says what to do.
#[tokio::test]
async fn a_failed_connect_is_keyed_by_the_server_and_gives_no_cli_advice() {
    let url = "redis://:secret@127.0.0.1:1";
    let e = RedisBackend::connect(RedisConfig::new(url).with_timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
    assert_eq!(e.key(), persistence_core::redact_url(url));
    let text = e.report().to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(!text.contains("running?"), "{text}");
}

/// A subscription is woken by the append's `PUBLISH` (a node) or `SPUBLISH` (a
/// cluster), not by its poll interval (here far longer than the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_pushed() {
    use persistence_core::{Envelope, SessionLog, Subscribe};
    for server in [
        Server::Redis,
        Server::RedisTls,
        Server::RedisCluster,
        Server::RedisClusterTls,
    ] {
        let Some(url) = server_url(server, &LocalRedis) else {
            continue;
        };
        let config = RedisConfig::new(url).with_prefix(format!("push{}:", std::process::id()));
        let backend = RedisBackend::connect(config).await.unwrap();
        let log: &dyn SessionLog = &backend;
        let (t, s) = (
            TenantId::new("t").unwrap(),
            SessionKey::new("live").unwrap(),
        );
        let slow = Subscribe::default().with_poll_interval(Duration::from_secs(30));
        let mut tail = log.subscribe(&t, &s, 0, slow);
        let writer = {
            let backend = backend.clone();
            let (t, s) = (t.clone(), s.clone());
            tokio::spawn(async move {
                for n in 0..3 {
                    // Give the tail time to wait, so the events come by push.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let event = vec![Envelope::new(1, serde_json::json!(n))];
                    backend
                        .append(&t, &s, event, Default::default())
                        .await
                        .unwrap();
                }
            })
        };
        for want in 1..=3 {
            let event = tokio::time::timeout(Duration::from_secs(5), tail.next())
                .await
                .unwrap_or_else(|_| panic!("{}: event {want} was not pushed", server.name()))
                .unwrap();
            assert_eq!(event.seq, want);
        }
        writer.await.unwrap();
        backend.delete(&t, &s).await.unwrap();
    }
}
