//! Envelope bytes (`Capabilities::binary_payloads`, schema 13): stored raw in a `bytea`
//! beside each payload's `jsonb`, not as base64; a library of schema 12, whose calls go
//! to the old signatures, never leaves stale bytes under a value it writes and never
//! replaces a payload that has bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use persistence_conformance::checks::binary::{incompressible, write_one_of_each_kind};
use persistence_core::{
    CheckpointPayload, CheckpointSelector, Checkpointer, Envelope, ItemKey, Namespace, Store,
    TenantId, ThreadKey,
};
use persistence_postgres::{PgBackend, PgConfig};
use sqlx::{Connection, PgConnection};

const LEN: usize = 48 << 10;

#[tokio::test]
async fn bytes_are_stored_raw_and_read_back() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    write_one_of_each_kind(&backend, LEN).await.unwrap();
    let mut admin = PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    for (table, json, bytes) in [
        ("checkpoints", "state", "state_bytes"),
        ("pending_writes", "value", "value_bytes"),
        ("items", "value", "value_bytes"),
        ("session_events", "event", "event_bytes"),
    ] {
        let sql = format!(
            "SELECT octet_length({bytes})::bigint, pg_column_size({json})::bigint \
             FROM persistence.{table}"
        );
        let (raw, data): (i64, i64) = sqlx::query_as(&sql).fetch_one(&mut admin).await.unwrap();
        assert_eq!(raw, LEN as i64, "{table}: the bytes are stored as they are");
        assert!(data < 256, "{table}: {data} bytes of JSON beside them");
    }
    assert!(backend.capabilities().binary_payloads);
}

/// A schema-12 library's put over an item with bytes replaces them with none; its
/// replace of a state compares only a payload without bytes.
#[tokio::test]
async fn old_signatures_never_leave_or_match_bytes() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let (t, ns, key) = (
        TenantId::new("t").unwrap(),
        Namespace::new(["n"]).unwrap(),
        ItemKey::new("k").unwrap(),
    );
    Store::put(
        &backend,
        &t,
        &ns,
        &key,
        incompressible(1, 64),
        Default::default(),
    )
    .await
    .unwrap();
    let mut app = PgConnection::connect_with(&db.app_options()).await.unwrap();
    // What a schema-12 library sends for a put, and for a replace of a state.
    sqlx::query(
        "SELECT persistence.item_put('t', ARRAY['n'], 'k', 1, '{\"old\": 1}'::jsonb, NULL, NULL)",
    )
    .execute(&mut app)
    .await
    .unwrap();
    let item = Store::get(&backend, &t, &ns, &key).await.unwrap().unwrap();
    assert_eq!(
        item.value.bytes, None,
        "no stale bytes under the old library's value"
    );
    assert_eq!(item.value.data, serde_json::json!({"old": 1}));

    write_one_of_each_kind(&backend, 64).await.unwrap();
    let (t, th) = (
        TenantId::new("binary").unwrap(),
        ThreadKey::new("binary").unwrap(),
    );
    let latest = Checkpointer::get(&backend, &t, &th, CheckpointSelector::Latest).await;
    let id = latest.unwrap().unwrap().checkpoint.id;
    let with_bytes = incompressible(1, 64);
    let header = with_bytes.data.to_string();
    let old_replace = format!(
        "SELECT persistence.checkpoint_replace_state('binary', 'binary', '{id}'::uuid, \
         1, '{header}'::jsonb, 1, '{{\"new\": 1}}'::jsonb)"
    );
    let replaced: bool = sqlx::query_scalar(&old_replace)
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert!(
        !replaced,
        "a payload with bytes is not the one a schema-12 library read"
    );
    // The same state without its bytes is.
    let slot = CheckpointPayload::State(id);
    let without = Envelope::new(1, with_bytes.data.clone());
    let swapped = backend.replace_payload(&t, &th, &slot, &with_bytes, without);
    assert!(swapped.await.unwrap());
    let replaced: bool = sqlx::query_scalar(&old_replace)
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert!(
        replaced,
        "the old signature replaces a payload without bytes"
    );
}
