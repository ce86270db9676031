//! Upgrades: a database written by the previous schema, migrated, keeps its data and
//! gains what the new migrations add.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use persistence_core::{CloseSession, ErrorKind, SessionKey, SessionLog, TenantId};
use persistence_postgres::{PgBackend, PgConfig, migrate};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

/// Applies the migrations up to `version` only, as that release's `migrate` did.
async fn migrate_up_to(db: &support::TestDb, version: i64) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let number: i64 = name[..4].parse().unwrap();
        if number <= version {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let mut conn = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    migrator.run(&mut conn).await.unwrap();
}

/// Sessions written by schema 8 (no life-cycle columns) read after the upgrade with
/// unknown creation times, keep their events and head, and can be closed; new sessions
/// get their times.
#[tokio::test]
async fn sessions_of_schema_8_gain_a_life_cycle() {
    let Some(db) = support::empty_db().await else {
        return;
    };
    migrate_up_to(&db, 8).await;
    let mut app = PgConnection::connect_with(&db.app_options()).await.unwrap();
    // What a schema-8 library sends for an append of two events.
    app.execute(
        "SELECT persistence.session_append('t', 'old', \
         '[{\"schema_version\": 1, \"data\": 1}, {\"schema_version\": 1, \"data\": 2}]'::jsonb, \
         NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    drop(app);

    migrate(db.admin_options().to_url_lossy().as_ref())
        .await
        .expect("migrate from schema 8");
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("the migrated database opens");
    let (t, old) = (TenantId::new("t").unwrap(), SessionKey::new("old").unwrap());
    let info = backend
        .session_info(&t, &old)
        .await
        .unwrap()
        .expect("the old session has info");
    assert_eq!((info.head, info.oldest), (2, Some(1)), "{info:?}");
    assert!(info.created_at.is_none() && !info.is_closed(), "{info:?}");
    assert_eq!(backend.read(&t, &old, 0, 10).await.unwrap().len(), 2);
    assert_eq!(
        backend
            .append(
                &t,
                &old,
                vec![persistence_core::Envelope::new(1, 3.into())],
                Default::default()
            )
            .await
            .unwrap(),
        3
    );
    let closed = backend
        .close_session(&t, &old, CloseSession::default())
        .await
        .unwrap();
    assert!(
        closed.is_closed() && closed.last_append_at.is_some(),
        "{closed:?}"
    );
    let err = backend
        .append(
            &t,
            &old,
            vec![persistence_core::Envelope::new(1, 4.into())],
            Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

/// An item written with a TTL by schema 10 (no `ttl_ms`) refreshes after the upgrade by
/// the time from its last write to its expiry, which was its TTL, and a schema-10
/// library's put (same function signature) stores its TTL for later refreshes.
#[tokio::test]
async fn items_of_schema_10_refresh_by_their_ttl() {
    use persistence_core::{GetItemOptions, ItemKey, Namespace, Store};

    let Some(db) = support::empty_db().await else {
        return;
    };
    migrate_up_to(&db, 10).await;
    let mut app = PgConnection::connect_with(&db.app_options()).await.unwrap();
    // What a schema-10 library sends for a put with a 60 s TTL.
    app.execute(
        "SELECT persistence.item_put('t', ARRAY['ns'], 'old', 1, '{\"v\": 1}'::jsonb, 60000, NULL)",
    )
    .await
    .unwrap();
    migrate(db.admin_options().to_url_lossy().as_ref())
        .await
        .expect("migrate from schema 10");
    // A schema-10 library keeps putting after the migration: its TTL is stored.
    app.execute(
        "SELECT persistence.item_put('t', ARRAY['ns'], 'later', 1, '{\"v\": 1}'::jsonb, 90000, NULL)",
    )
    .await
    .unwrap();
    drop(app);

    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("the migrated database opens");
    let (t, ns) = (TenantId::new("t").unwrap(), Namespace::new(["ns"]).unwrap());
    let refresh = GetItemOptions::default().with_refresh_ttl(true);
    for (key, ttl_ms) in [("old", 60_000), ("later", 90_000)] {
        let key = ItemKey::new(key).unwrap();
        let before = backend.get(&t, &ns, &key).await.unwrap().unwrap();
        let item = backend
            .get_with(&t, &ns, &key, refresh)
            .await
            .unwrap()
            .unwrap();
        let (updated, expires) = (item.updated_at.0, item.expires_at.unwrap().0);
        assert!(
            expires >= updated + ttl_ms && expires < updated + ttl_ms + 10_000,
            "{key}: a {ttl_ms} ms TTL refreshed to {} ms after the last write",
            expires - updated
        );
        assert_eq!(
            (item.version, item.updated_at),
            (before.version, before.updated_at)
        );
    }
}

/// Payloads written by schema 12 (no bytes columns) read after the upgrade exactly as
/// written, without bytes, and the migrated database takes payloads with bytes.
#[tokio::test]
async fn payloads_of_schema_12_read_unchanged_and_bytes_follow() {
    use persistence_core::{Envelope, ItemKey, Namespace, Store};

    let Some(db) = support::empty_db().await else {
        return;
    };
    migrate_up_to(&db, 12).await;
    let mut app = PgConnection::connect_with(&db.app_options()).await.unwrap();
    // What a schema-12 library sends for a put and for an append.
    app.execute(
        "SELECT persistence.item_put('t', ARRAY['ns'], 'old', 1, '{\"v\": 1}'::jsonb, NULL, NULL)",
    )
    .await
    .unwrap();
    app.execute(
        "SELECT persistence.session_append('t', 's', \
         '[{\"schema_version\": 2, \"data\": {\"e\": 1}}]'::jsonb, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    drop(app);
    migrate(db.admin_options().to_url_lossy().as_ref())
        .await
        .expect("migrate from schema 12");

    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("the migrated database opens");
    let (t, ns) = (TenantId::new("t").unwrap(), Namespace::new(["ns"]).unwrap());
    let old = ItemKey::new("old").unwrap();
    let item = backend.get(&t, &ns, &old).await.unwrap().unwrap();
    assert_eq!(item.value, Envelope::new(1, serde_json::json!({"v": 1})));
    let events = backend
        .read(&t, &SessionKey::new("s").unwrap(), 0, 10)
        .await;
    let events = events.unwrap();
    assert_eq!(
        events[0].event,
        Envelope::new(2, serde_json::json!({"e": 1}))
    );

    let with_bytes = Envelope::new(1, serde_json::json!({"h": 1})).with_bytes(vec![0, 255]);
    let new = ItemKey::new("new").unwrap();
    backend
        .put(&t, &ns, &new, with_bytes.clone(), Default::default())
        .await
        .unwrap();
    let item = backend.get(&t, &ns, &new).await.unwrap().unwrap();
    assert_eq!(item.value, with_bytes);
}

/// Bytes read the same from schema 13 and, once migrated, from 14 (whose
/// `envelope_json` drops base64's line breaks another way): long ones, whose base64
/// spans many lines, included; and this library opens a database of schema 13.
#[tokio::test]
async fn bytes_of_schema_13_read_the_same_after_14() {
    use persistence_core::{Envelope, ItemKey, Namespace, Store};

    let Some(db) = support::empty_db().await else {
        return;
    };
    migrate_up_to(&db, 13).await;
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("this library opens a database of schema 13");
    let (t, ns) = (TenantId::new("t").unwrap(), Namespace::new(["ns"]).unwrap());
    let values: Vec<Envelope> = [0usize, 1, 2, 3, 57, 58, 1000, 65_536]
        .iter()
        .map(|&len| {
            let bytes = (0..len).map(|i| (i * 131 + len) as u8).collect();
            Envelope::new(1, serde_json::json!({"len": len})).with_bytes(bytes)
        })
        .collect();
    for (i, value) in values.iter().enumerate() {
        let key = ItemKey::new(format!("k{i}")).unwrap();
        backend
            .put(&t, &ns, &key, value.clone(), Default::default())
            .await
            .unwrap();
    }
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    let texts = "SELECT persistence.envelope_json(value_version, value, value_bytes)::text \
                 FROM persistence.items ORDER BY key";
    let before: Vec<String> = sqlx::query_scalar(texts)
        .fetch_all(&mut admin)
        .await
        .unwrap();
    migrate(db.admin_options().to_url_lossy().as_ref())
        .await
        .expect("migrate from schema 13");
    let after: Vec<String> = sqlx::query_scalar(texts)
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert_eq!(after, before, "envelope_json of schema 14 = of schema 13");
    assert!(after.iter().all(|t| !t.contains("\\n")), "{after:?}");
    for (i, value) in values.iter().enumerate() {
        let key = ItemKey::new(format!("k{i}")).unwrap();
        let item = backend.get(&t, &ns, &key).await.unwrap().unwrap();
        assert_eq!(&item.value, value, "item {i}");
    }
}
