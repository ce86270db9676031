//! Benchmark of the filesystem backend beside a raw baseline measured in the same run.
//!
//! `cargo run --release -p persistence-fs --example fs_bench -- [--ops N] [--dir PATH]
//! [--scale N]`
//!
//! Prints ops/s, p50 and p99 for each operation with `Durability::Fsync` and
//! `Durability::None`, the raw baseline (a plain `write` + `fdatasync` loop of the same
//! record size as a one-event append), store puts at 1 and 8 tasks, `get(Latest)` and
//! `put` on a thread of 1 000 and of `--scale` checkpoints (default 100 000), and reading
//! 100 events at ordinal 1 000 versus ordinal 999 000 of a 1 000 000-event session, and
//! paging through `--sessions` sessions and as many items (default 10 000).

#![allow(clippy::expect_used)] // a benchmark: a failed operation should stop it loudly

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use persistence_conformance::bench::workload::{self, Op, Stores};
use persistence_conformance::bench::{arg, measure, print_header, print_row};
use persistence_core::{
    AppendOptions, CheckpointSelector, Checkpointer, Envelope, NewCheckpoint, SessionKey,
    SessionLog, TenantId, ThreadKey,
};
use persistence_fs::{Durability, FsBackend, FsConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> persistence_core::Result<()> {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let parent = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(&parent).expect("scratch dir");
    let t = TenantId::new("bench")?;
    let event = workload::event();
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

    // The workload every backend runs (`persistence_bench::workload`), once per setting.
    for durability in [Durability::Fsync, Durability::None] {
        let b = FsBackend::open(
            FsConfig::new(scratch.path().join(format!("{durability:?}")))
                .with_durability(durability),
        )?;
        let stores = Stores::of(b);
        let base = (durability == Durability::Fsync).then_some(raw_stats.ops_per_sec);
        for op in Op::ALL {
            workload::warm_up(&stores, op, 1).await?;
            let mut s = workload::measure_op(&stores, op, op.count(ops), 1).await?;
            s.name = format!("{} ({durability:?})", s.name);
            print_row(&s, base);
        }
    }

    // Writers of distinct keys of one namespace (per-item locks), durable.
    let b = FsBackend::open(FsConfig::new(scratch.path().join("store-tasks")))?;
    let stores = Stores::of(b);
    let mut one_task = 0.0;
    for tasks in [1, 8] {
        workload::warm_up(&stores, Op::StorePut, tasks).await?;
        let s = workload::measure_op(&stores, Op::StorePut, ops, tasks).await?;
        print_row(&s, None);
        if tasks == 1 {
            one_task = s.ops_per_sec;
        } else {
            println!("store put, 8 tasks vs 1: {:.2}x", s.ops_per_sec / one_task);
        }
    }

    // get(Latest) and put on long threads: flat, from the `.latest` pointer.
    let scale: usize = arg("--scale")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let b = FsBackend::open(
        FsConfig::new(scratch.path().join("threads")).with_durability(Durability::None),
    )?;
    let mut latest_p50 = Vec::new();
    for size in [1_000usize, scale] {
        let th = ThreadKey::new(format!("thread-{size}"))?;
        for step in 0..size {
            let c = NewCheckpoint {
                id: Default::default(),
                parent: None,
                step: step as i64,
                state: Envelope::new(1, serde_json::json!({"step": step})),
                metadata: Default::default(),
            };
            Checkpointer::put(&b, &t, &th, c, Default::default()).await?;
        }
        let (b2, t2, th2) = (b.clone(), t.clone(), th.clone());
        let get = measure(
            &format!("get latest, {size} checkpoints"),
            2_000,
            1,
            move |_| {
                let (b, t, th) = (b2.clone(), t2.clone(), th2.clone());
                async move {
                    Checkpointer::get(&b, &t, &th, CheckpointSelector::Latest)
                        .await
                        .expect("get latest");
                }
            },
        )
        .await;
        print_row(&get, None);
        let (b2, t2, th2) = (b.clone(), t.clone(), th.clone());
        let put = measure(
            &format!("put (None), {size} checkpoints"),
            2_000,
            1,
            move |i| {
                let (b, t, th) = (b2.clone(), t2.clone(), th2.clone());
                async move {
                    let c = NewCheckpoint {
                        id: Default::default(),
                        parent: None,
                        step: i as i64,
                        state: Envelope::new(1, serde_json::json!({"i": i})),
                        metadata: Default::default(),
                    };
                    Checkpointer::put(&b, &t, &th, c, Default::default())
                        .await
                        .expect("put");
                }
            },
        )
        .await;
        print_row(&put, None);
        latest_p50.push((get.p50, put.p50));
    }
    println!(
        "get latest / put at {scale} vs 1 000 checkpoints: {:.2}x / {:.2}x (p50)",
        latest_p50[1].0.as_secs_f64() / latest_p50[0].0.as_secs_f64(),
        latest_p50[1].1.as_secs_f64() / latest_p50[0].1.as_secs_f64()
    );

    // Paging through every session and every item of a namespace: pages read the
    // catalogs, so the whole pass grows with N, each page with its size only.
    let b = FsBackend::open(
        FsConfig::new(scratch.path().join("sessions")).with_durability(Durability::None),
    )?;
    let entries: usize = arg("--sessions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ns = persistence_core::Namespace::new(["bench"])?;
    for i in 0..entries {
        let s = SessionKey::new(format!("s{i:07}"))?;
        b.append(&t, &s, vec![event.clone()], AppendOptions::default())
            .await?;
        let key = persistence_core::ItemKey::new(format!("k{i:07}"))?;
        persistence_core::Store::put(&b, &t, &ns, &key, event.clone(), Default::default()).await?;
    }
    for page in [100usize, 1_000] {
        let started = std::time::Instant::now();
        let (mut cursor, mut seen) = (None, 0);
        loop {
            let p = b.list_sessions(&t, cursor, page).await?;
            seen += p.items.len();
            match p.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        println!(
            "list all {seen} sessions, pages of {page}: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let started = std::time::Instant::now();
        let (mut cursor, mut seen) = (None, 0);
        loop {
            let query = persistence_core::ListItems {
                cursor,
                limit: page,
                ..Default::default()
            };
            let p = persistence_core::Store::list(&b, &t, &ns, query).await?;
            seen += p.items.len();
            match p.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        println!(
            "list all {seen} items, pages of {page}: {:.2} s",
            started.elapsed().as_secs_f64()
        );
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
