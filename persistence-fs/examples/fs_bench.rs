//! Benchmark of the filesystem backend beside a raw baseline measured in the same run.
//!
//! `cargo run --release -p persistence-fs --example fs_bench -- [--ops N] [--dir PATH]`
//!
//! Prints ops/s, p50 and p99 for each operation with `Durability::Fsync` and
//! `Durability::None`, the raw baseline (a plain `write` + `fdatasync` loop of the same
//! record size as a one-event append), and reading 100 events at ordinal 1 000 versus
//! ordinal 999 000 of a 1 000 000-event session.

#![allow(clippy::expect_used)] // a benchmark: a failed operation should stop it loudly

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persistence_conformance::bench::{arg, measure, print_header, print_row};
use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey, Lock,
    LockKey, Namespace, NewCheckpoint, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use persistence_fs::{Durability, FsBackend, FsConfig};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> persistence_core::Result<()> {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let parent = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(&parent).expect("scratch dir");
    let t = TenantId::new("bench")?;
    let event = Envelope::new(1, json!({"role": "assistant", "text": "x".repeat(64)}));
    let record_size = serde_json::to_vec(&event)
        .map(|v| v.len() + 60)
        .unwrap_or(128);

    println!(
        "persistence-fs benchmark, {ops} ops per row, files under {}",
        parent.display()
    );
    print_header();
    let raw = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.path().join("raw"))
            .expect("raw file"),
    ));
    let record = vec![b'r'; record_size];
    let raw_stats = measure(
        &format!("raw write+fdatasync {record_size} B"),
        ops,
        1,
        move |_| {
            let mut f = raw.lock().expect("raw lock");
            f.write_all(&record).expect("raw write");
            f.sync_data().expect("raw fdatasync");
            async {}
        },
    )
    .await;
    print_row(&raw_stats, None);

    for durability in [Durability::Fsync, Durability::None] {
        let b = FsBackend::open(
            FsConfig::new(scratch.path().join(format!("{durability:?}")))
                .with_durability(durability),
        )?;
        let base = (durability == Durability::Fsync).then_some(raw_stats.ops_per_sec);
        let label = |op: &str| format!("{op} ({durability:?})");
        let thread = ThreadKey::new("thread")?;
        let (b2, t2, th, e) = (b.clone(), t.clone(), thread.clone(), event.clone());
        let s = measure(&label("checkpoint put"), ops, 1, move |i| {
            let c = NewCheckpoint {
                id: CheckpointId::new(),
                parent: None,
                step: i as i64,
                state: e.clone(),
                metadata: Default::default(),
            };
            let (b, t, th) = (b2.clone(), t2.clone(), th.clone());
            async move {
                Checkpointer::put(&b, &t, &th, c, Default::default())
                    .await
                    .expect("put");
            }
        })
        .await;
        print_row(&s, base);
        let (b2, t2, th) = (b.clone(), t.clone(), thread.clone());
        let s = measure(&label("checkpoint get latest"), ops, 1, move |_| {
            let (b, t, th) = (b2.clone(), t2.clone(), th.clone());
            async move {
                Checkpointer::get(&b, &t, &th, CheckpointSelector::Latest)
                    .await
                    .expect("get");
            }
        })
        .await;
        print_row(&s, None);
        for (name, size, count) in [
            ("session append 1 event", 1, ops),
            ("session append 100 events", 100, ops / 10),
        ] {
            let (b2, t2, e) = (b.clone(), t.clone(), event.clone());
            let session = SessionKey::new(format!("session-{size}"))?;
            let s = measure(&label(name), count, 1, move |_| {
                let (b, t, s, batch) = (
                    b2.clone(),
                    t2.clone(),
                    session.clone(),
                    vec![e.clone(); size],
                );
                async move {
                    b.append(&t, &s, batch, AppendOptions::default())
                        .await
                        .expect("append");
                }
            })
            .await;
            print_row(&s, base);
        }
        let ns = Namespace::new(["users", "u1"])?;
        let (b2, t2, n2, e) = (b.clone(), t.clone(), ns.clone(), event.clone());
        let s = measure(&label("store put"), ops, 1, move |i| {
            let (b, t, n, e) = (b2.clone(), t2.clone(), n2.clone(), e.clone());
            async move {
                let key = ItemKey::new(format!("k{}", i % 100)).expect("key");
                Store::put(&b, &t, &n, &key, e, Default::default())
                    .await
                    .expect("put");
            }
        })
        .await;
        print_row(&s, base);
        let (b2, t2, n2) = (b.clone(), t.clone(), ns.clone());
        let s = measure(&label("store get"), ops, 1, move |i| {
            let (b, t, n) = (b2.clone(), t2.clone(), n2.clone());
            async move {
                let key = ItemKey::new(format!("k{}", i % 100)).expect("key");
                Store::get(&b, &t, &n, &key).await.expect("get");
            }
        })
        .await;
        print_row(&s, None);
        let (b2, t2, name) = (b.clone(), t.clone(), LockKey::new("lock")?);
        let s = measure(&label("lock cycle (acquire+release)"), ops, 1, move |_| {
            let (b, t, n) = (b2.clone(), t2.clone(), name.clone());
            async move {
                let lease = b
                    .try_acquire(&t, &n, Duration::from_secs(30))
                    .await
                    .expect("acquire")
                    .expect("free");
                b.release(&lease).await.expect("release");
            }
        })
        .await;
        print_row(&s, None);
    }

    let b = FsBackend::open(
        FsConfig::new(scratch.path().join("long")).with_durability(Durability::None),
    )?;
    let long = SessionKey::new("million")?;
    for _ in 0..1000 {
        b.append(
            &t,
            &long,
            vec![event.clone(); 1000],
            AppendOptions::default(),
        )
        .await?;
    }
    let mut p50 = Vec::new();
    for at in [1_000u64, 999_000] {
        let (b2, t2, l2) = (b.clone(), t.clone(), long.clone());
        let s = measure(&format!("read 100 events after #{at}"), 500, 1, move |_| {
            let (b, t, l) = (b2.clone(), t2.clone(), l2.clone());
            async move {
                b.read(&t, &l, at, 100).await.expect("read");
            }
        })
        .await;
        print_row(&s, None);
        p50.push(s.p50);
    }
    println!(
        "read cost at ordinal 999 000 vs 1 000: {:.2}x (p50)",
        p50[1].as_secs_f64() / p50[0].as_secs_f64()
    );
    Ok(())
}
