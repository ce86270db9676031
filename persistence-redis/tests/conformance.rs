//! The whole conformance suite and the model test against a real Redis 7 node and a real
//! local 3-master Redis Cluster; every test uses its own key prefix (never FLUSHDB).

use std::sync::atomic::{AtomicUsize, Ordering};

use persistence_conformance::harness::{LocalRedis, Server, server_url};
use persistence_conformance::{Fixture, TimeControl, conformance_suite, model};
use persistence_redis::{RedisBackend, RedisConfig};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

async fn fixture(server: Server) -> Option<Fixture> {
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
    let backend = RedisBackend::connect(config)
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

// Through the payload codec (compressed, encrypted, bound to each row).
conformance_suite!(
    redis_sealed,
    async { fixture(Server::Redis).await.map(|f| f.sealed()) },
    lacks[Search]
);
conformance_suite!(
    redis_cluster_sealed,
    async { fixture(Server::RedisCluster).await.map(|f| f.sealed()) },
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

#[test]
fn redis_sealed_matches_the_model() {
    model::check_model(
        || async {
            fixture(Server::Redis)
                .await
                .expect("redis unavailable")
                .sealed()
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
