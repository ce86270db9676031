//! Production faults against servers these tests own: a listener that never answers, a
//! paused server, terminated and restarted connections, a role connection limit below
//! the pool size, concurrent migrations, privileged roles, refused acquires that must
//! not write, and passwords that must never show.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use persistence_conformance::harness::dedicated::{DedicatedPostgres, signal};
use persistence_core::{ErrorKind, Lock, LockKey, SessionKey, SessionLog, TenantId};
use persistence_postgres::{PgBackend, PgConfig, PrivilegedRole, migrate};
use sqlx::{Connection, Executor, PgConnection};

const SECRET: &str = "s3cret-pw-do-not-print";

fn session() -> (TenantId, SessionKey) {
    (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap())
}

/// A backend on a migrated dedicated server, as the app role.
async fn migrated(server: &DedicatedPostgres, config: impl Fn(PgConfig) -> PgConfig) -> PgBackend {
    migrate(&server.admin_url()).await.expect("migrate");
    PgBackend::connect(config(PgConfig::new(server.app_url(SECRET))))
        .await
        .expect("connect as app")
}

/// Processes of the server: the postmaster and its children.
fn server_processes(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn a_listener_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections, never answering.
    let _holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(8) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!(
        "postgres://persistence_app:{SECRET}@127.0.0.1:{port}/db?operation_timeout_ms=1500&connect_timeout_ms=1000"
    );
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        PgBackend::connect(PgConfig::new(url)),
    )
    .await
    .expect("connect must end within its deadline, not hang");
    let err = result.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Unavailable),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!err.to_string().contains("outcome is unknown"), "{err}");
}

#[tokio::test]
async fn a_paused_server_times_out_then_recovers() {
    let Some(server) = DedicatedPostgres::start() else {
        return;
    };
    let backend = migrated(&server, |c| {
        c.with_operation_timeout(Duration::from_millis(1500))
            .with_connect_timeout(Duration::from_millis(1000))
    })
    .await;
    let (t, s) = session();
    backend.head(&t, &s).await.unwrap();
    let paused = server_processes(server.pid());
    for pid in &paused {
        signal(*pid, "STOP");
    }
    let started = Instant::now();
    // The append sends on an idle connection: no answer, so its outcome is unknown.
    let append = tokio::time::timeout(
        Duration::from_secs(10),
        backend.append(
            &t,
            &s,
            vec![persistence_core::Envelope::new(1, serde_json::json!(1))],
            Default::default(),
        ),
    )
    .await;
    let read = tokio::time::timeout(Duration::from_secs(10), backend.head(&t, &s)).await;
    for pid in &paused {
        signal(*pid, "CONT");
    }
    let append = append
        .expect("append must end within its deadline")
        .unwrap_err();
    assert_eq!(append.kind(), ErrorKind::Timeout, "{append}");
    assert!(
        append.to_string().contains("outcome is unknown"),
        "{append}"
    );
    let read = read
        .expect("head must end within its deadline")
        .unwrap_err();
    assert!(
        matches!(read.kind(), ErrorKind::Timeout | ErrorKind::Unavailable),
        "{read}"
    );
    assert!(!read.to_string().contains("outcome is unknown"), "{read}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Resumed: the next calls work (the timed-out connections were dropped).
    backend.head(&t, &s).await.unwrap();
}

#[tokio::test]
async fn terminated_connections_never_serve_another_call() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()).with_max_connections(10))
        .await
        .unwrap();
    fill_pool(&backend).await;
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND usename = 'persistence_app'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "no app connection to terminate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failures = failed_reads(&backend, 20).await;
    assert!(
        failures.is_empty(),
        "calls failed after termination: {failures:?}"
    );
}

/// The errors of `n` sequential reads.
async fn failed_reads(backend: &PgBackend, n: usize) -> Vec<String> {
    let (t, s) = session();
    let mut failures = Vec::new();
    for _ in 0..n {
        if let Err(e) = backend.head(&t, &s).await {
            failures.push(e.to_string());
        }
    }
    failures
}

/// Ten idle connections, via ten concurrent calls.
async fn fill_pool(backend: &PgBackend) {
    let (t, s) = session();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let b = backend.clone();
            let (t, s) = (t.clone(), s.clone());
            tokio::spawn(async move { b.head(&t, &s).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// A fast restart (the server tells each connection it is closing) costs no call that
/// starts after it. An immediate one closes connections without a word: reads are sent
/// again on a fresh connection, a write's outcome would be unknown so it fails once
/// (`Unavailable`) and clears every older idle connection, so the next call succeeds.
#[tokio::test]
async fn a_restart_costs_no_call_that_starts_after_it() {
    let Some(mut server) = DedicatedPostgres::start() else {
        return;
    };
    let backend = migrated(&server, |c| c.with_max_connections(10)).await;
    let (t, s) = session();
    for mode in ["fast", "immediate"] {
        fill_pool(&backend).await;
        server.restart(mode);
        let failures = failed_reads(&backend, 20).await;
        assert!(
            failures.is_empty(),
            "{mode} restart: reads failed: {failures:?}"
        );

        fill_pool(&backend).await;
        server.restart(mode);
        let mut failures = Vec::new();
        for i in 0..20 {
            let event = persistence_core::Envelope::new(1, serde_json::json!(i));
            if let Err(e) = backend
                .append(&t, &s, vec![event], Default::default())
                .await
            {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                failures.push(e.to_string());
            }
        }
        let allowed = if mode == "fast" { 0 } else { 1 };
        assert!(
            failures.len() <= allowed,
            "{mode} restart: {} writes failed (at most {allowed}): {failures:?}",
            failures.len()
        );
    }
}

#[tokio::test]
async fn a_role_connection_limit_below_the_pool_queues() {
    let Some(server) = DedicatedPostgres::start() else {
        return;
    };
    let backend = migrated(&server, |c| c.with_max_connections(10)).await;
    let mut admin = PgConnection::connect(&server.admin_url()).await.unwrap();
    admin
        .execute("ALTER ROLE persistence_app CONNECTION LIMIT 3")
        .await
        .unwrap();
    let (t, s) = session();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let b = backend.clone();
            let t = t.clone();
            let s = SessionKey::new(format!("{s}-{i}")).unwrap();
            tokio::spawn(async move {
                b.append(
                    &t,
                    &s,
                    vec![persistence_core::Envelope::new(1, serde_json::json!(i))],
                    Default::default(),
                )
                .await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 50 failed: {failures:?}",
        failures.len()
    );
}

async fn wal_position(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refused_acquire_writes_nothing() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("held").unwrap());
    let _lease = backend
        .try_acquire(&t, &name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let before = wal_position(&mut admin).await;
    for _ in 0..50 {
        assert!(
            backend
                .try_acquire(&t, &name, Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
    }
    let after = wal_position(&mut admin).await;
    // 50 row locks with commits would be kilobytes; allow a background record or two.
    assert!(
        after - before < 400,
        "50 refused acquires wrote {} bytes of WAL",
        after - before
    );
}

#[tokio::test]
async fn concurrent_migrations_of_one_cluster_all_succeed() {
    let Some(server) = DedicatedPostgres::start() else {
        return;
    };
    let mut admin = PgConnection::connect(&server.admin_url()).await.unwrap();
    let mut urls = Vec::new();
    for i in 0..8 {
        admin
            .execute(format!("CREATE DATABASE app{i}").as_str())
            .await
            .unwrap();
        urls.push(format!(
            "postgres://postgres@127.0.0.1:{}/app{i}",
            server.port()
        ));
    }
    // One thread (and runtime) per database, all at once.
    let threads: Vec<_> = urls
        .into_iter()
        .map(|u| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(migrate(&u))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .unwrap()
            .expect("every concurrent migration succeeds");
    }
}

#[tokio::test]
async fn a_privileged_role_is_refused_when_asked() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let admin_url = sqlx::ConnectOptions::to_url_lossy(&db.admin_options()).to_string();
    let err = PgBackend::connect(
        PgConfig::new(admin_url.clone()).with_privileged_role(PrivilegedRole::Refuse),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("SUPERUSER"), "{err}");
    // The default warns and connects.
    PgBackend::connect(PgConfig::new(admin_url)).await.unwrap();
}

#[tokio::test]
async fn no_password_in_errors_or_debug() {
    let config = PgConfig::new(format!(
        "postgres://persistence_app:{SECRET}@127.0.0.1:1/db?password={SECRET}"
    ));
    assert!(!format!("{config:?}").contains(SECRET), "{config:?}");
    let err = PgBackend::connect(config.with_connect_timeout(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    let bad = PgBackend::connect(PgConfig::new(format!(
        "postgres://u:{SECRET}@127.0.0.1:1/db?operation_timeout_ms=soon"
    )))
    .await
    .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{bad}");
    assert!(!bad.to_string().contains(SECRET), "{bad}");
}

/// Lease rows of locks unused for an hour are deleted, held ones never are, and a name
/// taken again afterwards still gets a higher fence than it ever had.
#[tokio::test]
async fn stale_lease_rows_are_purged_and_fences_still_grow() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let t = TenantId::new("t").unwrap();
    let (idle, held) = (LockKey::new("idle").unwrap(), LockKey::new("held").unwrap());
    let first = backend
        .try_acquire(&t, &idle, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(backend.release(&first).await.unwrap());
    let _held = backend
        .try_acquire(&t, &held, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    // Nothing is an hour old yet.
    assert_eq!(backend.purge_stale_leases().await.unwrap(), 0);
    // Age every row by two hours (the held one's expiry stays in the future) and make
    // the idle one's fence look like an old counter.
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE persistence.leases SET expires_at = expires_at - interval '2 hours' \
             WHERE name = 'idle'; \
             UPDATE persistence.leases SET fence = fence - 7200000000 WHERE name = 'idle'",
        )
        .await
        .unwrap();
    assert_eq!(backend.purge_stale_leases().await.unwrap(), 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM persistence.leases")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the held lease must stay");
    let again = backend
        .try_acquire(&t, &idle, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        again.fence > first.fence,
        "fence {} after purge, {} before",
        again.fence.0,
        first.fence.0
    );
}

/// Backend PIDs of the app role's connections to `db`.
async fn app_backends(admin: &mut PgConnection) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND usename = 'persistence_app' ORDER BY pid",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

/// The app connections once the closed ones are gone (a server notices a dropped
/// socket a moment later): polls until there is one, for up to 5 s.
async fn settled_backends(admin: &mut PgConnection) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = app_backends(admin).await;
        if pids.len() <= 1 || Instant::now() > deadline {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An idle connection past `idle_timeout` is closed, not reused; a connection past
/// `max_lifetime` is closed when it comes back, even if used all the time.
#[tokio::test]
async fn idle_and_old_connections_are_replaced() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let (t, s) = session();

    let mut config = PgConfig::new(db.app_url()).with_max_connections(1);
    config.idle_timeout = Duration::from_millis(300);
    let idle = PgBackend::connect(config).await.unwrap();
    idle.head(&t, &s).await.unwrap();
    let first = app_backends(&mut admin).await;
    assert_eq!(first.len(), 1, "{first:?}");
    idle.head(&t, &s).await.unwrap();
    assert_eq!(app_backends(&mut admin).await, first, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(500)).await;
    idle.head(&t, &s).await.unwrap();
    let second = settled_backends(&mut admin).await;
    assert_eq!(
        second.len(),
        1,
        "the idle connection was not closed: {second:?}"
    );
    assert_ne!(
        second, first,
        "an idle connection past idle_timeout was reused"
    );
    drop(idle);

    let mut config = PgConfig::new(db.app_url()).with_max_connections(1);
    config.max_lifetime = Duration::from_millis(300);
    let aging = PgBackend::connect(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    aging.head(&t, &s).await.unwrap();
    let young: Vec<i32> = app_backends(&mut admin).await;
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        aging.head(&t, &s).await.unwrap();
    }
    let later = settled_backends(&mut admin).await;
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(
        later.iter().all(|p| !young.contains(p)),
        "a connection past max_lifetime is still in use: {young:?} -> {later:?}"
    );
}

/// `with_lock` on a Postgres server that stops answering ends as `LockLost` before the
/// lease lapses, not after the operation deadline (or never).
#[tokio::test]
async fn with_lock_on_a_paused_server_is_lock_lost_in_time() {
    let Some(server) = DedicatedPostgres::start() else {
        return;
    };
    // The client would wait 10 s for an answer; the lease lasts 3 s.
    let backend = migrated(&server, |c| {
        c.with_operation_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(10))
    })
    .await;
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("worker").unwrap());
    let options = persistence_core::LockOptions::default()
        .with_ttl(Duration::from_secs(3))
        .with_wait(Duration::from_secs(1));
    let postmaster = server.pid();
    let started = Instant::now();
    let paused = std::sync::Mutex::new(Vec::new());
    let outcome: Result<(), persistence_core::Error> =
        persistence_core::with_lock(&backend, &t, &name, options, |_lease| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let pids = server_processes(postmaster);
            for pid in &pids {
                signal(*pid, "STOP");
            }
            *paused.lock().unwrap() = pids;
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok(())
        })
        .await;
    let elapsed = started.elapsed();
    for pid in paused.lock().unwrap().iter() {
        signal(*pid, "CONT");
    }
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockLost, "{err}");
    assert!(
        elapsed < Duration::from_secs(3),
        "LockLost after {elapsed:?}, past the 3 s lease"
    );
}

/// Lease changes commit without waiting for a WAL flush, so an immediate shutdown can
/// lose the last of them. What must hold anyway: a lease whose fence an acknowledged
/// write used is never lost (that write's flush covers the earlier lease record), and
/// a fence handed out after the restart is above every fence handed out before it
/// (floored at the database clock), so a writer with a fence from before is refused
/// once the new holder has written.
#[tokio::test]
async fn lease_changes_lost_in_a_crash_never_repeat_a_fence() {
    let Some(mut server) = DedicatedPostgres::start() else {
        return;
    };
    let backend = migrated(&server, |c| c).await;
    // The WAL writer waits as long as it can, so unflushed lease changes stay unwritten
    // until the immediate shutdown throws them away.
    let mut admin = PgConnection::connect(&server.admin_url()).await.unwrap();
    admin
        .execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        .await
        .unwrap();
    admin.execute("SELECT pg_reload_conf()").await.unwrap();
    drop(admin);
    let t = TenantId::new("t").unwrap();
    let ttl = Duration::from_millis(500);
    let fenced = |lease: &persistence_core::Lease| {
        persistence_core::AppendOptions::default().with_lease(lease)
    };
    let event = || vec![persistence_core::Envelope::new(1, serde_json::json!("e"))];

    // A lease whose fence was used by an acknowledged write survives the crash.
    let s_used = SessionKey::new("used").unwrap();
    let used = LockKey::for_session(&s_used);
    let held = backend
        .try_acquire(&t, &used, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    backend
        .append(&t, &s_used, event(), fenced(&held))
        .await
        .unwrap();
    server.restart("immediate");
    let taken = retry_unavailable(|| backend.try_acquire(&t, &used, Duration::from_secs(60))).await;
    assert!(
        taken.is_none(),
        "a lease whose fence was written with was lost in the crash"
    );

    // Leases taken, released or left to expire just before a crash: whatever the crash
    // kept, the next holder's fence is above theirs and fences out their writers.
    for round in 0..3 {
        let session = SessionKey::new(format!("lost-{round}")).unwrap();
        let name = LockKey::for_session(&session);
        let first = backend.try_acquire(&t, &name, ttl).await.unwrap().unwrap();
        if round % 2 == 1 {
            backend.release(&first).await.unwrap();
        }
        server.restart("immediate");
        let wait = persistence_core::LockOptions::default()
            .with_ttl(ttl)
            .with_wait(Duration::from_secs(10));
        let next = retry_unavailable(|| backend.acquire(&t, &name, wait)).await;
        assert!(
            next.fence > first.fence,
            "round {round}: fence {} after the crash is not above {}",
            next.fence.0,
            first.fence.0
        );
        backend
            .append(&t, &session, event(), fenced(&next))
            .await
            .unwrap();
        let stale = backend
            .append(&t, &session, event(), fenced(&first))
            .await
            .unwrap_err();
        assert_eq!(stale.kind(), ErrorKind::Fenced, "round {round}: {stale}");
    }
}

/// The first answer that is not `Unavailable` (the pool's connections from before a
/// restart fail once).
async fn retry_unavailable<T, F, Fut>(call: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = persistence_core::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
