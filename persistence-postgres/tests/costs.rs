//! What operations cost the server, from its own counters: the functions it executes,
//! the index lookups and the WAL records of the hot writes. Each figure is a defect that
//! was measured and fixed; these tests keep it fixed (speed itself is measured by
//! `persistence bench`, never asserted in a timed test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use persistence_conformance::harness::dedicated::DedicatedPostgres;
use persistence_core::{
    CheckpointId, Checkpointer, Envelope, ExpectLatest, ItemKey, Lock, LockKey, Namespace,
    NewCheckpoint, PutCheckpointOptions, PutWrites, SessionKey, SessionLog, Store, TenantId,
    ThreadKey,
};
use persistence_postgres::{PgBackend, PgConfig, migrate};
use sqlx::{Connection, Executor, PgConnection};

fn session() -> (TenantId, SessionKey) {
    (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap())
}

/// Waits until the app role's connections are gone: a connection publishes its counts
/// to the server's statistics when it closes.
async fn wait_closed(admin: &mut PgConnection) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'persistence_app' \
             AND datname = current_database()",
        )
        .fetch_one(&mut *admin)
        .await
        .unwrap();
        if open == 0 {
            return;
        }
    }
}

/// Every operation runs PL/pgSQL functions, whose plans the server caches per
/// connection, and no SQL-language function that is not inlined: such a function is
/// parsed and planned again in every transaction (it cost `persistence.ms()` tens of
/// microseconds per call, several calls per operation). The server counts the
/// functions it executes (`track_functions = 'all'`, which leaves inlined ones out):
/// no SQL-language one for these operations.
#[tokio::test]
async fn operations_execute_no_sql_function() {
    use persistence_core::{TaskId, Write};
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let track = format!(
        r#"ALTER DATABASE "{}" SET track_functions = 'all'"#,
        db.name
    );
    admin.execute(track.as_str()).await.unwrap();
    admin.execute("SELECT pg_stat_reset()").await.unwrap();
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    // Counted from here. Each new connection checks the schema with SQL functions
    // (left out below: once per connection, not per operation).
    admin.execute("SELECT pg_stat_reset()").await.unwrap();
    let (t, s) = session();
    let th = ThreadKey::new("th").unwrap();
    let lease = backend
        .try_acquire(&t, &LockKey::for_thread(&th), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let lease = backend
        .renew(&lease, Duration::from_secs(60))
        .await
        .unwrap();
    let fenced = PutCheckpointOptions::default().with_lease(&lease);
    let first = Checkpointer::put(&backend, &t, &th, checkpoint(None), Default::default())
        .await
        .unwrap();
    let second = Checkpointer::put(&backend, &t, &th, checkpoint(Some(first.id)), fenced)
        .await
        .unwrap();
    let write = Write::new(
        persistence_core::ChannelName::new("c").unwrap(),
        Envelope::new(1, serde_json::json!(1)),
    );
    backend
        .put_writes(
            &t,
            &th,
            PutWrites::new(second.id, TaskId::new("task").unwrap(), vec![write]).with_lease(&lease),
        )
        .await
        .unwrap();
    Checkpointer::get(
        &backend,
        &t,
        &th,
        persistence_core::CheckpointSelector::Latest,
    )
    .await
    .unwrap()
    .unwrap();
    let session_lease = backend
        .try_acquire(&t, &LockKey::for_session(&s), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let append = persistence_core::AppendOptions::default().with_lease(&session_lease);
    let event = vec![Envelope::new(1, serde_json::json!("e"))];
    backend.append(&t, &s, event, append).await.unwrap();
    backend.read(&t, &s, 0, 10).await.unwrap();
    backend.head(&t, &s).await.unwrap();
    let ns = Namespace::new(["n"]).unwrap();
    let key = ItemKey::new("k").unwrap();
    Store::put(
        &backend,
        &t,
        &ns,
        &key,
        Envelope::new(1, serde_json::json!(1)),
        Default::default(),
    )
    .await
    .unwrap();
    Store::get(&backend, &t, &ns, &key).await.unwrap().unwrap();
    Store::delete(&backend, &t, &ns, &key, None).await.unwrap();
    backend.release(&lease).await.unwrap();
    // Connections publish their counts when they close.
    backend.close().await;
    let executed: Vec<(String, i64)> = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT f.funcname::text, f.calls FROM pg_stat_user_functions f \
             JOIN pg_proc p ON p.oid = f.funcid JOIN pg_language l ON l.oid = p.prolang \
             WHERE l.lanname = 'sql' \
             AND f.funcname NOT IN ('schema_version', 'schema_compatible_from', 'applied_migrations') \
             ORDER BY f.funcname",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        let closed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'persistence_app' \
             AND datname = current_database()",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if closed == 0 {
            break rows;
        }
    };
    assert!(
        executed.is_empty(),
        "SQL functions executed (not inlined) per operation: {executed:?}"
    );
}

/// A counter of the dedicated server (`sql` returns one bigint).
async fn counter(admin: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut *admin)
        .await
        .unwrap()
}

const WAL_RECORDS: &str = "SELECT wal_records::bigint FROM pg_stat_wal";
const SESSION_LOOKUPS: &str = "SELECT idx_scan FROM pg_stat_user_indexes \
     WHERE indexrelname = 'sessions_pkey'";

/// How much `counter_sql` grows while `work` runs on a backend of its own (connected
/// after the first reading, closed before the second, so every count is published).
async fn growth_of(
    server: &DedicatedPostgres,
    admin: &mut PgConnection,
    counter_sql: &str,
    work: impl AsyncFnOnce(&PgBackend),
) -> i64 {
    let before = counter(admin, counter_sql).await;
    let backend = PgBackend::connect(PgConfig::new(server.app_url("pw")))
        .await
        .unwrap();
    work(&backend).await;
    backend.close().await;
    wait_closed(admin).await;
    counter(admin, counter_sql).await - before
}

/// The hot writes touch only the rows they must: an append updates the session's row
/// in place (one lookup, no separate locking read, no foreign-key check per event: the
/// old function read the row `FOR UPDATE`, then updated it, and every event's foreign
/// key looked it up again), and a store put updates an existing item without first
/// locking it (the upsert's conflict path wrote a lock record before its update).
///
/// `pg_stat_wal` counts for the whole server, so the server is the test's own with
/// autovacuum off; a background record or two (a checkpoint, a standby snapshot) is
/// allowed for.
#[tokio::test]
async fn hot_writes_touch_only_the_rows_they_must() {
    let Some(server) = DedicatedPostgres::start() else {
        return;
    };
    migrate(&server.admin_url()).await.expect("migrate");
    let mut admin = PgConnection::connect(&server.admin_url()).await.unwrap();
    admin
        .execute("ALTER SYSTEM SET autovacuum = off")
        .await
        .unwrap();
    admin.execute("SELECT pg_reload_conf()").await.unwrap();
    let (t, s) = session();
    let ns = Namespace::new(["n"]).unwrap();
    let key = ItemKey::new("k").unwrap();
    let event = || vec![Envelope::new(1, serde_json::json!({"text": "e"}))];
    const OPS: i64 = 40;
    let th = ThreadKey::new("th").unwrap();
    let mut lease = None;
    let mut latest = None;
    // The session, the item, the lease and the thread exist before anything is counted.
    growth_of(&server, &mut admin, WAL_RECORDS, async |b| {
        let held = b
            .try_acquire(&t, &LockKey::for_thread(&th), Duration::from_secs(300))
            .await
            .unwrap()
            .unwrap();
        let first = checkpoint(None);
        latest = Some(first.id);
        let fenced = PutCheckpointOptions::default().with_lease(&held);
        Checkpointer::put(b, &t, &th, first, fenced).await.unwrap();
        lease = Some(held);
        b.append(&t, &s, event(), Default::default()).await.unwrap();
        let value = Envelope::new(1, serde_json::json!(0));
        Store::put(b, &t, &ns, &key, value, Default::default())
            .await
            .unwrap();
    })
    .await;

    let lookups = growth_of(&server, &mut admin, SESSION_LOOKUPS, async |b| {
        for _ in 0..OPS {
            b.append(&t, &s, event(), Default::default()).await.unwrap();
        }
        let hundred = (0..100)
            .map(|i| Envelope::new(1, serde_json::json!(i)))
            .collect();
        b.append(&t, &s, hundred, Default::default()).await.unwrap();
    })
    .await;
    assert_eq!(
        lookups,
        OPS + 1,
        "appends should look their session up once each (the old function: 4 per \
         one-event append, 103 for 100 events)"
    );

    let appends = growth_of(&server, &mut admin, WAL_RECORDS, async |b| {
        for _ in 0..OPS {
            b.append(&t, &s, event(), Default::default()).await.unwrap();
        }
    })
    .await;
    // The event (heap and index), the session's row (a HOT update) and the commit.
    assert!(
        appends <= 4 * OPS + 4,
        "{appends} WAL records for {OPS} appends (the old function wrote 5 per append)"
    );

    let puts = growth_of(&server, &mut admin, WAL_RECORDS, async |b| {
        for i in 0..OPS {
            let value = Envelope::new(1, serde_json::json!(i));
            Store::put(b, &t, &ns, &key, value, Default::default())
                .await
                .unwrap();
        }
    })
    .await;
    // The item's row (a HOT update) and the commit.
    assert!(
        puts <= 2 * OPS + 4,
        "{puts} WAL records for {OPS} puts of an existing item (the old function wrote 3)"
    );

    let lease = lease.unwrap();
    let guarded = growth_of(&server, &mut admin, WAL_RECORDS, async |b| {
        for _ in 0..OPS {
            let next = checkpoint(latest);
            let options = PutCheckpointOptions::default()
                .with_expect_latest(ExpectLatest::Is(latest.unwrap()))
                .with_lease(&lease);
            latest = Some(next.id);
            Checkpointer::put(b, &t, &th, next, options).await.unwrap();
        }
    })
    .await;
    // The checkpoint (heap and index) and the commit: the thread's lock is held in
    // memory, and its fence, unchanged, is not written.
    assert!(
        guarded <= 3 * OPS + 4,
        "{guarded} WAL records for {OPS} fenced puts expecting the latest (the old \
         function locked the thread's row: 4 each)"
    );
}

/// A small checkpoint after `parent`.
fn checkpoint(parent: Option<CheckpointId>) -> NewCheckpoint {
    NewCheckpoint::new(
        CheckpointId::new(),
        0,
        Envelope::new(1, serde_json::json!({"s": 1})),
    )
    .with_parent(parent)
}
