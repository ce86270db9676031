//! Benchmark of the PostgreSQL backend beside a raw baseline in the same run: one plain
//! `INSERT` of the same checkpoint row over one sqlx connection. All traffic goes through
//! a counting proxy, which reports round trips per operation.
//!
//! `cargo run --release -p persistence-postgres --example pg_bench -- [--ops N] [--url ADMIN_URL]`
//!
//! Without `--url` (or `PERSISTENCE_TEST_POSTGRES_URL`) it starts a throwaway local server
//! (fsync off: absolute numbers are optimistic; the ratios are what matter). It creates,
//! migrates and finally drops its own database.

#![allow(clippy::expect_used)] // a benchmark: a failed operation should stop it loudly

use std::str::FromStr;
use std::sync::Arc;

use persistence_conformance::bench::workload::{self, Op, Stores};
use persistence_conformance::bench::{Stats, arg, measure, print_header, print_row};
use persistence_conformance::harness::{CountingProxy, LocalPostgres, Server, server_url};
use persistence_core::{
    CheckpointId, CheckpointSelector, Checkpointer, Envelope, NewCheckpoint, TenantId, ThreadKey,
};
use persistence_postgres::{PgBackend, PgConfig, migrate};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use tokio::sync::Mutex;

/// The app role's password in test and bench URLs: what `docker-compose.yml` sets; the
/// throwaway servers trust loopback connections and ignore it.
const APP_PASSWORD: &str = "persistence_app";

async fn with_round_trips<F: std::future::Future<Output = Stats>>(
    proxy: &CountingProxy,
    ops: usize,
    run: F,
) -> Stats {
    let before = proxy.flights();
    let mut stats = run.await;
    stats.round_trips = Some((proxy.flights() - before) as f64 / ops as f64);
    stats
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> persistence_core::Result<()> {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let admin_url = arg("--url")
        .or_else(|| server_url(Server::Postgres, &LocalPostgres))
        .expect("no PostgreSQL: pass --url or install postgresql");
    let admin = PgConnectOptions::from_str(&admin_url)
        .expect("admin url")
        .disable_statement_logging();
    let db = format!("persistence_bench_{}", std::process::id());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("connect as admin");
    conn.execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("create database");
    migrate(admin.clone().database(&db).to_url_lossy().as_ref()).await?;

    let upstream = tokio::net::lookup_host((admin.get_host(), admin.get_port()))
        .await
        .expect("resolve")
        .next()
        .expect("address");
    let proxy = Arc::new(CountingProxy::start(upstream).await.expect("proxy"));
    let via_proxy = admin
        .clone()
        .host("127.0.0.1")
        .port(proxy.addr.port())
        .database(&db);
    let app_url = via_proxy
        .clone()
        .username("persistence_app")
        .password(APP_PASSWORD)
        .to_url_lossy()
        .to_string();
    let mut config = PgConfig::new(app_url);
    config.max_connections = 8;
    let b = PgBackend::connect(config).await?;

    let mut raw = PgConnection::connect_with(&via_proxy)
        .await
        .expect("raw connection");
    raw.execute("CREATE TABLE bench_raw (LIKE persistence.checkpoints INCLUDING ALL)")
        .await
        .expect("raw table");
    let raw = Arc::new(Mutex::new(raw));
    let t = TenantId::new("bench")?;
    let state = json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});

    println!(
        "persistence-postgres benchmark, {ops} ops per row, server {}:{}",
        admin.get_host(),
        admin.get_port()
    );
    print_header();
    let (r, s2) = (raw.clone(), state.clone());
    let raw_run = measure("raw INSERT (one sqlx connection)", ops, 1, move |_| {
        let (r, s) = (r.clone(), s2.clone());
        async move {
            sqlx::query(
                "INSERT INTO bench_raw (tenant_id, thread_id, checkpoint_id, step, \
                 state_version, state, metadata) VALUES ($1, $2, $3, $4, 1, $5, '{}')",
            )
            .bind("bench")
            .bind("raw")
            .bind(CheckpointId::new().as_uuid())
            .bind(1i64)
            .bind(sqlx::types::Json(s))
            .execute(&mut *r.lock().await)
            .await
            .expect("raw insert");
        }
    });
    let raw_stats = with_round_trips(&proxy, ops, raw_run).await;
    print_row(&raw_stats, None);

    // The workload every backend runs (`persistence_bench::workload`).
    let stores = Stores::of(b.clone());
    for tasks in [1usize, 8] {
        let base = (tasks == 1).then_some(raw_stats.ops_per_sec);
        for op in Op::ALL {
            workload::warm_up(&stores, op, tasks).await?;
            let count = op.count(ops);
            let run = async {
                workload::measure_op(&stores, op, count, tasks)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", op.name()))
            };
            print_row(&with_round_trips(&proxy, count, run).await, base);
        }
    }

    // get latest on a 1 000-checkpoint thread, before and after 1 000 000 rows elsewhere.
    let hot = ThreadKey::new("hot")?;
    for i in 0..1000 {
        let c = NewCheckpoint::new(CheckpointId::new(), i, Envelope::new(1, json!({})));
        Checkpointer::put(&b, &t, &hot, c, Default::default()).await?;
    }
    let mut p50 = Vec::new();
    for label in [
        "get latest, 1 000 rows in table",
        "get latest, 1 000 000 rows in table",
    ] {
        if p50.len() == 1 {
            let mut admin_db = PgConnection::connect_with(&admin.clone().database(&db))
                .await
                .expect("admin db");
            admin_db
                .execute(
                    "INSERT INTO persistence.checkpoints (tenant_id, thread_id, checkpoint_id, \
                     step, state_version, state, metadata) SELECT 'bench', 'bulk-' || (g % 1000), \
                     gen_random_uuid(), g, 1, '{}', '{}' FROM generate_series(1, 1000000) g; \
                     ANALYZE persistence.checkpoints",
                )
                .await
                .expect("bulk insert");
        }
        let (b2, t2, h2) = (b.clone(), t.clone(), hot.clone());
        let s = measure(label, 1000, 1, move |_| {
            let (b, t, h) = (b2.clone(), t2.clone(), h2.clone());
            async move {
                Checkpointer::get(&b, &t, &h, CheckpointSelector::Latest)
                    .await
                    .expect("get");
            }
        })
        .await;
        print_row(&s, None);
        p50.push(s.p50);
    }
    println!(
        "get latest at 1 000 000 vs 1 000 rows: {:.2}x (p50)",
        p50[1].as_secs_f64() / p50[0].as_secs_f64()
    );
    b.close().await;
    drop(proxy);
    conn.execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
        .await
        .expect("drop database");
    Ok(())
}
