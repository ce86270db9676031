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

use persistence_conformance::bench::workload::{self, Op, Stores};
use persistence_conformance::bench::{Stats, arg, measure, print_header, print_row};
use persistence_conformance::harness::{CountingProxy, LocalRedis, Server, server_url};
use persistence_redis::{RedisBackend, RedisConfig};

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

    // The workload every backend runs (`persistence_bench::workload`).
    let stores = Stores::of(b);
    for tasks in [1usize, 8] {
        let base = (tasks == 1).then_some(eval.ops_per_sec);
        for op in Op::ALL {
            workload::warm_up(&stores, op, tasks)
                .await
                .expect("warm-up");
            let count = op.count(ops);
            let run = async {
                workload::measure_op(&stores, op, count, tasks)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", op.name()))
            };
            print_row(&counted(proxy, count, run).await, base);
        }
    }
    workload::cleanup(&stores).await.expect("cleanup");
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
