//! Row-level security and roles, checked in the catalog and with raw SQL as the
//! application role; schema-version refusal; migration idempotence; round trips per op.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use persistence_conformance::harness::{CountingProxy, round_trips_per_operation};
use persistence_core::{
    AppendOptions, CheckpointId, Checkpointer, Envelope, ErrorKind, ItemKey, Lock, LockKey,
    Namespace, NewCheckpoint, PutWrites, SessionKey, SessionLog, Store, TaskId, TenantId,
    ThreadKey, Write,
};
use persistence_postgres::{PgBackend, PgConfig, SCHEMA_VERSION, migrate};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

const TABLES: &[&str] = &[
    "threads",
    "checkpoints",
    "pending_writes",
    "sessions",
    "session_events",
    "items",
    "leases",
    "session_listeners",
];

/// A small first checkpoint.
fn checkpoint() -> NewCheckpoint {
    NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, json!({})))
}

/// Writes one row of every table under tenant `a` through the backend.
async fn seed(backend: &PgBackend) -> TenantId {
    let t = TenantId::new("a").unwrap();
    let th = ThreadKey::new("th").unwrap();
    let c = checkpoint();
    let id = c.id;
    Checkpointer::put(backend, &t, &th, c, Default::default())
        .await
        .unwrap();
    let lease = backend
        .try_acquire(&t, &LockKey::for_thread(&th), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let w = Write::new(
        persistence_core::ChannelName::new("ch").unwrap(),
        Envelope::new(1, json!(1)),
    );
    // Fenced, so the thread's row (its fence high-water mark) is written too.
    let task = TaskId::new("task").unwrap();
    backend
        .put_writes(
            &t,
            &th,
            PutWrites::new(id, task.clone(), vec![w]).with_lease(&lease),
        )
        .await
        .unwrap();
    backend
        .append(
            &t,
            &SessionKey::new("s").unwrap(),
            vec![Envelope::new(1, json!(1))],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    // A follower of the session registers it (`session_listeners`).
    backend
        .wait_for_change(
            &t,
            &SessionKey::new("s").unwrap(),
            1,
            std::time::Duration::from_millis(1),
        )
        .await
        .unwrap();
    Store::put(
        backend,
        &t,
        &Namespace::new(["ns"]).unwrap(),
        &ItemKey::new("k").unwrap(),
        Envelope::new(1, json!(1)),
        Default::default(),
    )
    .await
    .unwrap();
    t
}

async fn admin_counts(db: &support::TestDb) -> Vec<i64> {
    let mut conn = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let mut counts = Vec::new();
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM persistence.{t} WHERE tenant_id = 'a'"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        counts.push(n);
    }
    counts
}

#[tokio::test]
async fn catalog_gate() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut conn = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let (superuser, bypass, login): (bool, bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'persistence_app'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass && login,
        "app role must be LOGIN NOSUPERUSER NOBYPASSRLS"
    );
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'persistence_app'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(owned, 0, "the app role owns relations");
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'persistence' AND c.relkind = 'r'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables.len(), TABLES.len(), "tables: {tables:?}");
    for (table, enabled, forced) in &tables {
        assert!(
            *enabled && *forced,
            "{table}: RLS enabled {enabled}, forced {forced}"
        );
        let cmds: Vec<String> = sqlx::query_scalar(
            "SELECT p.polcmd::text FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relname = $1",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(
            cmds.iter().any(|c| c == "*"),
            "{table} has no policy for all commands: {cmds:?}"
        );
        let quals: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_expr(p.polqual, p.polrelid) || ' ' || pg_get_expr(p.polwithcheck, p.polrelid) \
             FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relname = $1",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(
            quals.iter().all(|q| q
                .to_lowercase()
                .matches("nullif(current_setting('persistence.tenant'")
                .count()
                == 2),
            "{table}: {quals:?}"
        );
        // tenant_id leads every primary and unique key.
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             WHERE c.relname = $1 AND (i.indisunique OR i.indisprimary)",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k.contains("(tenant_id,")),
            "{table}: {keys:?}"
        );
    }
    // The suite's fixtures connect with this URL: it really is the app role.
    let mut app = PgConnection::connect_with(&db.app_options()).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(user, "persistence_app");
}

/// With no tenant, an empty tenant, or another tenant, raw SELECT/UPDATE/DELETE/INSERT as
/// the app role touch no row of tenant `a`.
#[tokio::test]
async fn raw_sql_as_app_role_sees_nothing_of_another_tenant() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    seed(&backend).await;
    let before = admin_counts(&db).await;
    assert!(before.iter().all(|n| *n == 1), "seed wrote {before:?}");
    let mut conn = PgConnection::connect_with(&db.app_options()).await.unwrap();
    for setting in [None, Some(""), Some("b")] {
        for table in TABLES {
            let mut tx = conn.begin().await.unwrap();
            if let Some(tenant) = setting {
                sqlx::query("SELECT set_config('persistence.tenant', $1, true)")
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            let seen: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM persistence.{table}"))
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            assert_eq!(seen, 0, "{table} visible with tenant {setting:?}");
            let updated = tx
                .execute(format!("UPDATE persistence.{table} SET tenant_id = tenant_id").as_str())
                .await
                .unwrap();
            assert_eq!(
                updated.rows_affected(),
                0,
                "{table} updatable with tenant {setting:?}"
            );
            let deleted = tx
                .execute(format!("DELETE FROM persistence.{table}").as_str())
                .await
                .unwrap();
            assert_eq!(
                deleted.rows_affected(),
                0,
                "{table} deletable with tenant {setting:?}"
            );
            tx.rollback().await.unwrap();
        }
        // Inserting a row for tenant `a` is refused by the policy's WITH CHECK.
        let inserts = [
            "INSERT INTO persistence.threads (tenant_id, thread_id) VALUES ('a', 'x')",
            "INSERT INTO persistence.sessions (tenant_id, session_id) VALUES ('a', 'x')",
            "INSERT INTO persistence.leases (tenant_id, name) VALUES ('a', 'x')",
            "INSERT INTO persistence.items (tenant_id, namespace, key, value_version, value, version, created_at, updated_at) \
             VALUES ('a', '{x}', 'x', 1, '{}', 1, now(), now())",
            "INSERT INTO persistence.checkpoints (tenant_id, thread_id, checkpoint_id, step, state_version, state, metadata) \
             VALUES ('a', 'x', gen_random_uuid(), 0, 1, '{}', '{}')",
        ];
        for sql in inserts {
            let mut tx = conn.begin().await.unwrap();
            if let Some(tenant) = setting {
                sqlx::query("SELECT set_config('persistence.tenant', $1, true)")
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            let err = tx
                .execute(sql)
                .await
                .expect_err(&format!("insert allowed with tenant {setting:?}: {sql}"));
            let code = err
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
            tx.rollback().await.unwrap();
        }
    }
    // The tenant setting is transaction-local: it does not leak to the next statement.
    sqlx::query("SELECT set_config('persistence.tenant', 'a', true)")
        .execute(&mut conn)
        .await
        .unwrap();
    let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM persistence.items")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(leaked, 0, "tenant setting outlived its transaction");
    assert_eq!(admin_counts(&db).await, before, "tenant a's rows changed");
}

/// Rolling upgrades: a newer database that declares this library compatible opens; one
/// that does not, or that holds a migration this library does not know without saying
/// so, is `SchemaTooNew`; an older or unmigrated one is `SchemaTooOld`.
#[tokio::test]
async fn schema_versions_follow_the_compatibility_rules() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let mut conn = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let set = |version: i32, compatible_from: i32| {
        format!(
            "CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer LANGUAGE sql AS 'SELECT {version}'; \
             CREATE OR REPLACE FUNCTION persistence.schema_compatible_from() RETURNS integer LANGUAGE sql AS 'SELECT {compatible_from}'"
        )
    };
    // Newer, still compatible: opens.
    conn.execute(set(99, SCHEMA_VERSION).as_str())
        .await
        .unwrap();
    PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("a newer but compatible database opens");
    // Newer and incompatible.
    conn.execute(set(99, 99).as_str()).await.unwrap();
    let err = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaTooNew, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("99") && message.contains(&SCHEMA_VERSION.to_string()),
        "{message}"
    );
    // A migration this library does not know, with no version declaring compatibility.
    conn.execute(set(SCHEMA_VERSION, 5).as_str()).await.unwrap();
    conn.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    )
    .await
    .unwrap();
    let err = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaTooNew, "{err}");
    assert!(err.to_string().contains("9999"), "{err}");
    conn.execute("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .await
        .unwrap();
    // Older than this library runs against.
    conn.execute(set(5, 5).as_str()).await.unwrap();
    let err = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaTooOld, "{err}");
    assert_library_error(&err, &db.app_url());
    // Not migrated at all.
    conn.execute("DROP SCHEMA persistence CASCADE")
        .await
        .unwrap();
    let err = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaTooOld, "{err}");
    assert_library_error(&err, &db.app_url());
}

/// A library error names the server it was connecting to as its key (never a word such
/// as `schema`, and without the password), and carries no instructions for the CLI: the
/// kind tells a caller what to do.
fn assert_library_error(err: &persistence_core::Error, url: &str) {
    assert_eq!(err.key(), persistence_core::redact_url(url), "{err}");
    let text = err.report().to_string();
    for cli in ["persistence migrate", "--url", "running?"] {
        assert!(!text.contains(cli), "{text}");
    }
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let url = sqlx::ConnectOptions::to_url_lossy(&db.admin_options()).to_string();
    assert!(
        migrate(&url).await.unwrap().is_empty(),
        "re-running migrations applied something"
    );
}

/// `tenants()` (which `persistence status` prints) sees past row-level security to
/// every tenant holding data, including one whose only data is an unguarded checkpoint:
/// such a put creates no thread row, and the listing read only thread rows.
#[tokio::test]
async fn tenants_include_one_with_only_unguarded_checkpoints() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let t = TenantId::new("only-checkpoints").unwrap();
    let c = checkpoint();
    Checkpointer::put(
        &backend,
        &t,
        &ThreadKey::new("th").unwrap(),
        c,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(backend.tenants().await.unwrap(), vec![t]);
}

/// Every operation is one network round trip once its statement is prepared on the
/// connection, counted by a proxy between the pool and the server.
#[tokio::test]
async fn one_round_trip_per_operation() {
    assert_round_trips(1, |c| c).await;
}

/// The simple-query form (for PgBouncer) is one round trip per operation too.
#[tokio::test]
async fn one_round_trip_per_operation_without_prepared_statements() {
    assert_round_trips(1, |c| c.with_prepared_statements(false)).await;
}

/// A connection idle for longer than `check_idle_after` is pinged before use: with the
/// threshold at zero every operation pays that extra round trip (which is why the
/// default keeps it to connections idle for 30 s).
#[tokio::test]
async fn idle_connections_past_the_threshold_are_pinged() {
    assert_round_trips(2, |c| c.with_check_idle_after(std::time::Duration::ZERO)).await;
}

/// Every operation of a one-connection backend (configured by `tweak`) through the
/// counting proxy takes `expected` round trips.
async fn assert_round_trips(expected: u64, tweak: impl Fn(PgConfig) -> PgConfig) {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let opts = db.app_options();
    let upstream = tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = CountingProxy::start(upstream).await.unwrap();
    let via_proxy = opts.host("127.0.0.1").port(proxy.addr.port());
    let mut config = tweak(PgConfig::new(
        sqlx::ConnectOptions::to_url_lossy(&via_proxy).to_string(),
    ));
    config.max_connections = 1;
    let b = PgBackend::connect(config).await.unwrap();
    let report = round_trips_per_operation(&b, &proxy).await.unwrap();
    for (op, trips) in &report {
        eprintln!("{op:<24} {trips} round trip(s)");
    }
    for (op, trips) in &report {
        assert_eq!(*trips, expected, "{op} took {trips} round trips");
    }
}

/// A refusal from the database's own SQL (a conflicting checkpoint id) says what the
/// database said once: the message is the database's, not repeated as the source.
#[tokio::test]
async fn a_database_refusal_is_reported_once() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let id = CheckpointId::new();
    let put = |n: i64| NewCheckpoint::new(id, n, Envelope::new(1, json!(n)));
    Checkpointer::put(&backend, &t, &th, put(1), Default::default())
        .await
        .unwrap();
    let e = Checkpointer::put(&backend, &t, &th, put(2), Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let text = e.report().to_string();
    assert_eq!(text.matches("already exists").count(), 1, "{text}");
}
