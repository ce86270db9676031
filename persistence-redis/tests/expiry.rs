//! Who removes what has run out on Redis, as `Capabilities` declares it: expired
//! sessions are deleted by the server (key expiry), expired items (fields of their
//! namespace's hashes) by a purge; and an item's TTL, kept beside its meta record so
//! libraries that read 4-field records still read, is what a refresh restarts, whichever
//! library version wrote the item last.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use persistence_core::{
    AppendOptions, Enforcement, Envelope, GetItemOptions, ItemKey, Maintenance, Namespace,
    PutItemOptions, SessionKey, SessionLog, Store, TenantId, Timestamp,
};
use persistence_redis::keys::Keys;
use redis::AsyncCommands;

/// A session's keys are gone once its TTL has passed, with no purge run: the server
/// enforces session expiry, as declared. An expired item's fields stay until a purge.
#[tokio::test]
async fn the_server_deletes_expired_sessions_and_a_purge_expired_items() {
    let Some((_server, backend, mut conn)) = support::dedicated().await else {
        return;
    };
    let caps = Maintenance::capabilities(&backend);
    assert_eq!(caps.session_expiry, Enforcement::Backend);
    assert_eq!(caps.item_expiry, Enforcement::Sweeper);
    assert_eq!(caps.checkpoint_retention, Enforcement::Sweeper);

    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    let ns = Namespace::new(["n"]).unwrap();
    let ttl = Duration::from_millis(300);
    backend
        .append(
            &t,
            &s,
            vec![Envelope::new(1, 1.into())],
            AppendOptions::default().with_ttl(ttl),
        )
        .await
        .unwrap();
    Store::put(
        &backend,
        &t,
        &ns,
        &ItemKey::new("k").unwrap(),
        Envelope::new(1, 1.into()),
        PutItemOptions::default().with_ttl(ttl),
    )
    .await
    .unwrap();
    let keys = Keys::new("persistence:");
    let session = keys.session(&t, &s);
    let meta_hash = keys.namespace(&t, &ns).meta();
    assert!(conn.exists::<_, bool>(session.meta()).await.unwrap());
    tokio::time::sleep(ttl * 3).await;
    // Redis expires keys lazily on access and by sampling; EXISTS is an access.
    assert!(
        !conn.exists::<_, bool>(session.meta()).await.unwrap()
            && !conn.exists::<_, bool>(session.events()).await.unwrap(),
        "an expired session's keys outlived its TTL without a purge"
    );
    assert!(
        conn.hexists::<_, _, bool>(&meta_hash, "k").await.unwrap(),
        "the expired item's field is gone before any purge: declare item expiry Backend"
    );
    assert_eq!(backend.purge_expired().await.unwrap().items, 1);
    assert!(!conn.hexists::<_, _, bool>(&meta_hash, "k").await.unwrap());
}

/// The TTL a refresh restarts is the one of the item's last write: stored by this
/// version's put, or, for a write by an older library (a meta record with no TTL record
/// of the same write time), the time from that write to its expiry.
#[tokio::test]
async fn a_refresh_restarts_the_ttl_of_the_last_write_whoever_wrote_it() {
    let Some((_server, backend, mut conn)) = support::dedicated().await else {
        return;
    };
    let (t, ns, k) = (
        TenantId::new("t").unwrap(),
        Namespace::new(["n"]).unwrap(),
        ItemKey::new("k").unwrap(),
    );
    let refresh = GetItemOptions::default().with_refresh_ttl(true);
    let ttl_after_refresh = async |backend: &persistence_redis::RedisBackend| {
        let item = backend
            .get_with(&t, &ns, &k, refresh)
            .await
            .unwrap()
            .unwrap();
        item.expires_at.unwrap().0 as i64 - Timestamp::now().0 as i64
    };
    Store::put(
        &backend,
        &t,
        &ns,
        &k,
        Envelope::new(1, 1.into()),
        PutItemOptions::default().with_ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let left = ttl_after_refresh(&backend).await;
    assert!(
        (55_000..=60_500).contains(&left),
        "60 s TTL: {left} ms left"
    );

    // An older library puts again with a 90 s TTL: it rewrites the meta record
    // ("version|created|updated|expires") and knows nothing of the TTL record.
    let meta_hash = Keys::new("persistence:").namespace(&t, &ns).meta();
    let meta: String = conn.hget(&meta_hash, "k").await.unwrap();
    let parts: Vec<u64> = meta.split('|').map(|p| p.parse().unwrap()).collect();
    let updated = parts[2] + 7;
    let old_put = format!("2|{}|{updated}|{}", parts[1], updated + 90_000);
    let _: () = conn.hset(&meta_hash, "k", old_put).await.unwrap();
    let left = ttl_after_refresh(&backend).await;
    assert!(
        (85_000..=97_500).contains(&left),
        "after an older library's put with a 90 s TTL: {left} ms left"
    );
    // And that TTL is now stored: a second refresh keeps it.
    let left = ttl_after_refresh(&backend).await;
    assert!(
        (85_000..=90_500).contains(&left),
        "second refresh: {left} ms left"
    );
}
