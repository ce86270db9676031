//! `persistence::open` for every scheme, and the conformance suite through the traced
//! facade (so the wrapper forwards every operation faithfully).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use persistence::{
    AppendOptions, CheckpointId, Envelope, ErrorKind, ItemKey, MemoryBackend, Namespace,
    NewCheckpoint, SessionKey, TenantId, ThreadKey, Traced, open,
};
use persistence_conformance::{Fixture, TimeControl, conformance_suite};
use serde_json::json;

conformance_suite!(traced_memory, async {
    let (backend, clock) = MemoryBackend::with_manual_clock();
    let capabilities = backend.capabilities();
    Some(Fixture::new(
        "traced-memory",
        Traced::new("memory", backend),
        capabilities,
        TimeControl::Manual(clock),
    ))
});

async fn round_trip(url: &str) -> persistence::Persistence {
    let p = open(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    let t = TenantId::new("t1").unwrap();
    let s = SessionKey::new("s").unwrap();
    let event = Envelope::new(1, json!({"n": 1}));
    let head = p
        .sessions
        .append(&t, &s, vec![event], AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(head, 1);
    let ns = Namespace::new(["a"]).unwrap();
    let key = ItemKey::new("k").unwrap();
    p.store
        .put(
            &t,
            &ns,
            &key,
            Envelope::new(1, json!(1)),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(p.store.get(&t, &ns, &key).await.unwrap().is_some());
    // A tenant whose only data is an unguarded checkpoint is a tenant too (Postgres
    // listed only tenants with a thread row, which only guarded writes create).
    let only_checkpoints = TenantId::new("t0").unwrap();
    let checkpoint = NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, json!({"s": 1})));
    p.checkpointer
        .put(
            &only_checkpoints,
            &ThreadKey::new("th").unwrap(),
            checkpoint,
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(p.tenants().await.unwrap(), vec![only_checkpoints, t]);
    p
}

#[tokio::test]
async fn memory_url() {
    let p = round_trip("memory://").await;
    assert_eq!(p.backend_name(), "memory");
    assert!(!p.capabilities().durable);
}

#[cfg(feature = "fs")]
#[tokio::test]
async fn file_url_with_and_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let p = round_trip(&url).await;
    assert_eq!(p.backend_name(), "fs");
    assert!(p.capabilities().durable);
    assert_eq!(p.purge_expired().await.unwrap(), Default::default());

    let fast = open(&format!(
        "file://{}?durability=none",
        dir.path().join("other").display()
    ))
    .await
    .unwrap();
    assert!(!fast.capabilities().durable);
}

/// File URLs are percent-decoded (`%20` is a space), and `file://localhost/PATH`, which
/// RFC 8089 reads as the absolute `/PATH` but this crate would read as the relative
/// `localhost/PATH`, is refused rather than guessed.
#[cfg(feature = "fs")]
#[tokio::test]
async fn file_urls_are_decoded_and_localhost_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/with%20space", dir.path().display());
    let p = open(&url).await.unwrap();
    assert!(p.schema().contains("with space"), "{}", p.schema());
    assert!(dir.path().join("with space").join("v1").is_dir());
    let e = open("file://localhost/tmp/x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("file:///"), "{e}");
    // Options too: `durability=n%6Fne` is `none`.
    let fast = open(&format!(
        "file://{}?durability=n%6Fne",
        dir.path().join("decoded").display()
    ))
    .await
    .unwrap();
    assert!(!fast.capabilities().durable);
}

/// An option no backend knows is refused on every scheme, before any connection (the
/// Postgres and Redis drivers ignored unknown ones, so a mistyped `sslmode` was lost).
#[tokio::test]
async fn unknown_url_options_are_refused_on_every_scheme() {
    let mut urls = vec!["memory://?colour=blue"];
    if cfg!(feature = "fs") {
        urls.push("file:///tmp/x?colour=blue");
    }
    if cfg!(feature = "postgres") {
        urls.extend([
            "postgres://app@127.0.0.1:1/db?colour=blue",
            "postgres://app@127.0.0.1:1/db?ssl-mode=disable",
        ]);
    }
    if cfg!(feature = "redis") {
        urls.extend([
            "redis://127.0.0.1:1?colour=blue",
            "redis+cluster://127.0.0.1:1,127.0.0.1:2?colour=blue",
        ]);
    }
    for url in urls {
        let e = open(url).await.expect_err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(
            e.to_string().contains("colour") || e.to_string().contains("ssl-mode"),
            "{url}: {e}"
        );
    }
}

/// `open_existing` creates nothing: a root without a store is `NotFound` and stays
/// absent; once a store is there it opens like `open`.
#[cfg(feature = "fs")]
#[tokio::test]
async fn open_existing_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let url = format!("file://{}", root.display());
    let e = persistence::open_existing(&url).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no store at"), "{e}");
    assert!(!root.exists(), "created {}", root.display());
    open(&url).await.unwrap();
    let p = persistence::open_existing(&url).await.unwrap();
    assert_eq!(p.backend_name(), "fs");
    // Other schemes connect as `open` does.
    assert_eq!(
        persistence::open_existing("memory://")
            .await
            .unwrap()
            .backend_name(),
        "memory"
    );
}

#[tokio::test]
async fn bad_urls_are_invalid_input() {
    let mut urls = vec![
        "no-scheme",
        "ftp://host/x",
        "memory://?x=1",
        "memory://?novalue",
    ];
    if cfg!(feature = "fs") {
        urls.extend([
            "file://",
            "file:///tmp/x?durability=sometimes",
            "file:///tmp/x?color=blue",
        ]);
    }
    for url in urls {
        let e = open(url).await.expect_err(url);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        // Where it arose, as fields a caller (the CLI's hints) can branch on.
        assert_eq!(
            (e.backend(), e.operation()),
            ("persistence", "open"),
            "{url}"
        );
        assert_eq!(e.key(), url, "{url}");
    }
    // The key hides a password like the message.
    let e = open("ftp://user:secret@host/x").await.unwrap_err();
    assert_eq!(e.key(), "ftp://user:***@host/x");
    assert!(!e.report().to_string().contains("secret"), "{}", e.report());
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_without_its_feature_names_the_feature() {
    let e = open("postgres://app@localhost/db").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("`postgres` feature"), "{e}");
}

#[cfg(not(feature = "redis"))]
#[tokio::test]
async fn redis_without_its_feature_names_the_feature() {
    for url in [
        "redis://localhost",
        "redis+cluster://a:1,b:2",
        "rediss://x",
        "rediss+cluster://a:1,b:2",
    ] {
        let e = open(url).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("`redis` feature"), "{e}");
    }
}

#[cfg(not(feature = "fs"))]
#[tokio::test]
async fn file_without_its_feature_names_the_feature() {
    let e = open("file:///tmp/x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("`fs` feature"), "{e}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_urls_with_a_prefix() {
    use persistence_conformance::harness::{LocalRedis, Server, server_url};
    // TLS URLs carry their files as options (`rediss://...?sslrootcert=...`).
    for server in [
        Server::Redis,
        Server::RedisCluster,
        Server::RedisTls,
        Server::RedisClusterTls,
    ] {
        let Some(url) = server_url(server, &LocalRedis) else {
            return;
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let prefix = format!("facade-{}-{}:", std::process::id(), server);
        let p = round_trip(&format!("{url}{sep}prefix={prefix}")).await;
        assert_eq!(p.backend_name(), "redis");
        // Another prefix is another store.
        let other = open(&format!("{url}{sep}prefix={prefix}other:"))
            .await
            .unwrap();
        assert!(other.tenants().await.unwrap().is_empty());
        // Options other than the prefix and TLS files are the driver's (for a cluster,
        // every node's).
        let driver = open(&format!("{url}{sep}protocol=resp3&prefix={prefix}")).await;
        assert_eq!(
            driver.unwrap().tenants().await.unwrap().len(),
            2,
            "{server}"
        );
        let bogus = open(&format!("{url}{sep}protocol=bogus")).await;
        assert!(bogus.is_err(), "{server}");
        // Options are percent-decoded: `%3A` is the prefix's `:`.
        let encoded = prefix.replace(':', "%3A");
        let decoded = open(&format!("{url}{sep}prefix={encoded}")).await.unwrap();
        assert_eq!(decoded.tenants().await.unwrap().len(), 2, "{server}");
    }
}

/// A search with `refresh_ttl` through the facade on a backend that does not declare
/// `Capabilities::lifecycle` fails `Unsupported` instead of reaching a backend that may
/// not know the option (and would return items without restarting their TTLs).
#[tokio::test]
async fn a_refreshing_search_on_a_backend_without_lifecycle_is_unsupported() {
    use persistence::{Capabilities, PutItemOptions, SearchItems, Store};

    let backend = MemoryBackend::new();
    let declared = Capabilities::none().with_ttl(true).with_search(true);
    let traced = Traced::new("older", backend.clone()).with_capabilities(declared);
    let (t, ns, k) = (
        TenantId::new("t").unwrap(),
        Namespace::new(["n"]).unwrap(),
        ItemKey::new("k").unwrap(),
    );
    let ttl = PutItemOptions::default().with_ttl(std::time::Duration::from_secs(60));
    traced
        .put(&t, &ns, &k, Envelope::new(1, json!({"a": 1})), ttl)
        .await
        .unwrap();
    let err = traced
        .search(&t, SearchItems::default().with_refresh_ttl(true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(
        traced
            .search(&t, SearchItems::default())
            .await
            .unwrap()
            .len(),
        1
    );
}
