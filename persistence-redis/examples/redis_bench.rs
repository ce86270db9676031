//! Benchmark of the Redis backend beside raw baselines in the same run: one plain `EVAL`
//! returning a constant, and one plain `SET`. On a single node all traffic goes through a
//! counting proxy that reports round trips per operation; the cluster is measured
//! directly (its nodes advertise their own addresses).
//!
//! `cargo run --release -p persistence-redis --example redis_bench -- [--ops N] [--url URL] [--cluster-url URL]`
//!
//! Without URLs (or `PERSISTENCE_TEST_REDIS_URL` / `..._CLUSTER_URL`) it starts throwaway
//! local servers. Keys go under a fresh prefix; nothing else on the server is touched.

#![allow(clippy::expect_used)] // a benchmark: a failed operation should stop it loudly

use std::sync::Arc;
use std::time::Duration;

use persistence_conformance::bench::{Stats, arg, measure, print_header, print_row};
use persistence_conformance::harness::{CountingProxy, LocalRedis, Server, server_url};
use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey, Lock,
    LockKey, Namespace, NewCheckpoint, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use persistence_redis::{RedisBackend, RedisConfig};
use serde_json::json;

async fn counted<F: std::future::Future<Output = Stats>>(
    proxy: Option<&CountingProxy>,
    ops: usize,
    run: F,
) -> Stats {
    let before = proxy.map(|p| p.flights());
    let mut stats = run.await;
    if let (Some(p), Some(b)) = (proxy, before) {
        stats.round_trips = Some((p.flights() - b) as f64 / ops as f64);
    }
    stats
}

async fn run_suite(label: &str, url: String, proxy: Option<&CountingProxy>, ops: usize) {
    let config = RedisConfig::new(url.clone()).with_prefix(format!("bench{}:", std::process::id()));
    let b = RedisBackend::connect(config).await.expect("connect");
    let t = TenantId::new("bench").expect("tenant");
    let state = json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});
    let event = Envelope::new(1, json!({"role": "assistant", "text": "x".repeat(64)}));
    println!("\n{label}: {ops} ops per row");
    print_header();

    let client = if let Some(nodes) = url.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        Raw::Cluster(
            redis::cluster::ClusterClient::new(nodes)
                .expect("cluster client")
                .get_async_connection()
                .await
                .expect("cluster"),
        )
    } else {
        Raw::Single(
            redis::Client::open(url.as_str())
                .expect("client")
                .get_multiplexed_async_connection()
                .await
                .expect("conn"),
        )
    };
    let raw = Arc::new(client);
    let r = raw.clone();
    let eval = counted(
        proxy,
        ops,
        measure("raw EVAL returning a constant", ops, 1, move |_| {
            let r = r.clone();
            async move { r.query(redis::cmd("EVAL").arg("return 1").arg(0)).await }
        }),
    )
    .await;
    print_row(&eval, None);
    let r = raw.clone();
    let set = counted(
        proxy,
        ops,
        measure("raw SET", ops, 1, move |i| {
            let r = r.clone();
            async move {
                r.query(
                    redis::cmd("SET")
                        .arg(format!("bench-raw-{}", i % 100))
                        .arg("x".repeat(200)),
                )
                .await
            }
        }),
    )
    .await;
    print_row(&set, None);

    for tasks in [1usize, 8] {
        let base = (tasks == 1).then_some(eval.ops_per_sec);
        let (b2, t2, s2) = (b.clone(), t.clone(), state.clone());
        let run = measure("checkpoint put", ops, tasks, move |i| {
            let (b, t, s) = (b2.clone(), t2.clone(), s2.clone());
            async move {
                let th = ThreadKey::new(format!("thread-{}", i % 8)).expect("thread");
                let c = NewCheckpoint {
                    id: CheckpointId::new(),
                    parent: None,
                    step: i as i64,
                    state: Envelope::new(1, s),
                    metadata: Default::default(),
                };
                Checkpointer::put(&b, &t, &th, c, Default::default())
                    .await
                    .expect("put");
            }
        });
        print_row(&counted(proxy, ops, run).await, base);
        let (b2, t2) = (b.clone(), t.clone());
        let run = measure("checkpoint get latest", ops, tasks, move |i| {
            let (b, t) = (b2.clone(), t2.clone());
            async move {
                let th = ThreadKey::new(format!("thread-{}", i % 8)).expect("thread");
                Checkpointer::get(&b, &t, &th, CheckpointSelector::Latest)
                    .await
                    .expect("get");
            }
        });
        print_row(&counted(proxy, ops, run).await, base);
        for (name, size, count) in [
            ("session append 1 event", 1usize, ops),
            ("session append 100 events", 100, ops / 10),
        ] {
            let (b2, t2, e) = (b.clone(), t.clone(), event.clone());
            let run = measure(name, count, tasks, move |i| {
                let (b, t, batch) = (b2.clone(), t2.clone(), vec![e.clone(); size]);
                async move {
                    let s = SessionKey::new(format!("session-{size}-{}", i % 8)).expect("session");
                    b.append(&t, &s, batch, AppendOptions::default())
                        .await
                        .expect("append");
                }
            });
            print_row(
                &counted(proxy, count, run).await,
                if size == 1 { base } else { None },
            );
        }
        let ns = Namespace::new(["users", "u1"]).expect("ns");
        let (b2, t2, n2, e) = (b.clone(), t.clone(), ns.clone(), event.clone());
        let run = measure("store put", ops, tasks, move |i| {
            let (b, t, n, e) = (b2.clone(), t2.clone(), n2.clone(), e.clone());
            async move {
                Store::put(
                    &b,
                    &t,
                    &n,
                    &ItemKey::new(format!("k{}", i % 100)).expect("key"),
                    e,
                    Default::default(),
                )
                .await
                .expect("put");
            }
        });
        print_row(&counted(proxy, ops, run).await, base);
        let (b2, t2, n2) = (b.clone(), t.clone(), ns.clone());
        let run = measure("store get", ops, tasks, move |i| {
            let (b, t, n) = (b2.clone(), t2.clone(), n2.clone());
            async move {
                Store::get(
                    &b,
                    &t,
                    &n,
                    &ItemKey::new(format!("k{}", i % 100)).expect("key"),
                )
                .await
                .expect("get");
            }
        });
        print_row(&counted(proxy, ops, run).await, base);
        let (b2, t2) = (b.clone(), t.clone());
        let run = measure("lock cycle (acquire+release)", ops, tasks, move |i| {
            let (b, t) = (b2.clone(), t2.clone());
            async move {
                let name = LockKey::new(format!("lock-{i}")).expect("lock");
                let lease = b
                    .try_acquire(&t, &name, Duration::from_secs(30))
                    .await
                    .expect("acquire")
                    .expect("free");
                b.release(&lease).await.expect("release");
            }
        });
        print_row(&counted(proxy, ops, run).await, None);
    }
}

enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    async fn query(&self, cmd: &mut redis::Cmd) {
        let result: redis::RedisResult<redis::Value> = match self {
            Raw::Single(c) => cmd.query_async(&mut c.clone()).await,
            Raw::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        };
        result.expect("raw command");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let single = arg("--url")
        .or_else(|| server_url(Server::Redis, &LocalRedis))
        .expect("no Redis: pass --url or install redis-server");
    let host_port = single
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let upstream = tokio::net::lookup_host(host_port)
        .await
        .expect("resolve")
        .next()
        .expect("address");
    let proxy = CountingProxy::start(upstream).await.expect("proxy");
    let via_proxy = format!("redis://127.0.0.1:{}", proxy.addr.port());
    run_suite(
        "single node (through a counting proxy)",
        via_proxy,
        Some(&proxy),
        ops,
    )
    .await;
    if let Some(cluster) =
        arg("--cluster-url").or_else(|| server_url(Server::RedisCluster, &LocalRedis))
    {
        run_suite("3-master cluster (direct)", cluster, None, ops).await;
    }
}
