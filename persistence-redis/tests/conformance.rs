//! The whole conformance suite and the model test against a real Redis 7 node and a real
//! local 3-master Redis Cluster; every test uses its own key prefix (never FLUSHDB).

use std::sync::atomic::{AtomicUsize, Ordering};

use persistence_conformance::harness::{LocalRedis, Server, server_url};
use persistence_conformance::{Fixture, TimeControl, conformance_suite, model};
use persistence_redis::{RedisBackend, RedisConfig};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

async fn fixture(server: Server) -> Option<Fixture> {
    fixture_with(server, |config| config).await
}

/// A fixture whose backend's own config names the payload codec of the conformance
/// suite (compressed, encrypted, bound to each row): every call of its traits goes
/// through it.
#[cfg(feature = "codec")]
async fn sealed_fixture(server: Server) -> Option<Fixture> {
    let fixture = fixture_with(server, |config| {
        config.with_codec(persistence_conformance::sealed_fixture_codec())
    });
    let mut fixture = fixture.await?;
    fixture.name = format!("{}-sealed", fixture.name);
    Some(fixture)
}

async fn fixture_with(
    server: Server,
    configure: impl FnOnce(RedisConfig) -> RedisConfig,
) -> Option<Fixture> {
    let url = server_url(server, &LocalRedis)?;
    let prefix = format!(
        "test{}-{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    // A generous deadline: on a loaded 2-core CI machine a TLS cluster node once took
    // over the default 5 s to answer; operations here take milliseconds, and the
    // deadline itself is tested in `faults.rs`.
    let config = RedisConfig::new(url)
        .with_prefix(prefix)
        .with_timeout(std::time::Duration::from_secs(20));
    let backend = RedisBackend::connect(configure(config))
        .await
        .expect("connect to redis");
    let caps = backend.capabilities();
    Some(Fixture::new(
        server.name(),
        backend,
        caps,
        TimeControl::Real,
    ))
}

conformance_suite!(redis_single, fixture(Server::Redis));
conformance_suite!(redis_cluster, fixture(Server::RedisCluster));

// Through the payload codec of `RedisConfig::with_codec` (compressed, encrypted, bound
// to each row).
#[cfg(feature = "codec")]
conformance_suite!(redis_sealed, sealed_fixture(Server::Redis), lacks[Search]);
#[cfg(feature = "codec")]
conformance_suite!(
    redis_cluster_sealed,
    sealed_fixture(Server::RedisCluster),
    lacks[Search]
);

// The same suite over TLS with a client certificate (mutual TLS), on a node and on a
// cluster whose bus is TLS too; the servers have no plaintext client port in the URL.
conformance_suite!(redis_tls, fixture(Server::RedisTls));
conformance_suite!(redis_cluster_tls, fixture(Server::RedisClusterTls));

#[test]
fn redis_matches_the_model() {
    model::check_model(
        || async { fixture(Server::Redis).await.expect("redis unavailable") },
        model::cases_from_env(),
    );
}

#[cfg(feature = "codec")]
#[test]
fn redis_sealed_matches_the_model() {
    model::check_model(
        || async {
            sealed_fixture(Server::Redis)
                .await
                .expect("redis unavailable")
        },
        model::cases_from_env(),
    );
}

#[test]
fn redis_cluster_matches_the_model() {
    model::check_model(
        || async {
            fixture(Server::RedisCluster)
                .await
                .expect("redis cluster unavailable")
        },
        model::cases_from_env(),
    );
}

/// `RedisConfig::with_codec` seals every kind of payload on the server.
#[cfg(feature = "codec")]
#[tokio::test]
async fn redis_codec_in_config_seals_every_payload() {
    let Some(url) = server_url(Server::Redis, &LocalRedis) else {
        return;
    };
    for below in ["another backend", "without_codec"] {
        let prefix = format!(
            "test{}-{}:",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let config = RedisConfig::new(&url)
            .with_prefix(&prefix)
            .with_codec(persistence_conformance::sealed_fixture_codec());
        let sealed = RedisBackend::connect(config).await.expect("connect");
        assert!(sealed.codec().is_some());
        let shown = format!("{sealed:?}");
        for key in persistence_conformance::SEALED_FIXTURE_KEY_PREFIXES {
            assert!(!shown.contains(key), "a key in Debug: {shown}");
        }
        let raw = match below {
            "without_codec" => sealed.without_codec(),
            _ => RedisBackend::connect(RedisConfig::new(&url).with_prefix(&prefix))
                .await
                .expect("connect"),
        };
        assert!(raw.codec().is_none());
        persistence_conformance::every_payload_sealed_below(&sealed, &raw)
            .await
            .unwrap_or_else(|e| panic!("read through {below}: {e:#}"));
    }
}
