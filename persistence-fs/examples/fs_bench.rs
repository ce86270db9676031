//! Benchmark of the filesystem backend beside a raw baseline measured in the same run.
//!
//! `cargo run --release -p persistence-fs --example fs_bench -- [--ops N] [--dir PATH]
//! [--scale N]`
//!
//! Prints ops/s, p50 and p99 for each operation with `Durability::Fsync` and
//! `Durability::None`, the raw baseline (a plain `write` + `fdatasync` loop of the same
//! record size as a one-event append), store puts at 1 and 8 tasks beside a bare
//! append with `fdatasync` and a bare atomic replace at 1 and 8 tasks (the disk's own
//! scaling), each durable row with the disk's flush requests per operation (the
//! device's own cost counter, `/sys/dev/block/M:m/stat`), and the scale checks of
//! `persistence_bench::scale` at `--scale N` (default 100 000): get latest and put on a
//! thread of 1 000 and N checkpoints, reads at ordinal 1 000 and N − 1 000 of an N-event
//! session, and paging through N sessions and N items.

#![allow(clippy::expect_used)] // a benchmark: a failed operation should stop it loudly

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use persistence_conformance::bench::scale;
use persistence_conformance::bench::workload::{self, Op, Stores};
use persistence_conformance::bench::{DeviceFlushes, arg, measure, print_header, print_row};
use persistence_fs::{Durability, FsBackend, FsConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> persistence_core::Result<()> {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let parent = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(&parent).expect("scratch dir");
    let event = workload::event();
    let record_size = serde_json::to_vec(&event)
        .map(|v| v.len() + 60)
        .unwrap_or(128);

    println!(
        "persistence-fs benchmark, {ops} ops per row, files under {}",
        parent.display()
    );
    let flushes = DeviceFlushes::of(scratch.path());
    print_header();
    let raw = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.path().join("raw"))
            .expect("raw file"),
    ));
    let record = vec![b'r'; record_size];
    let before = flushes.count();
    let mut raw_stats = measure(
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
    raw_stats.cost = flushes.since(before, ops);
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
            let before = flushes.count();
            let mut s = workload::measure_op(&stores, op, op.count(ops), 1).await?;
            s.name = format!("{} ({durability:?})", s.name);
            if durability == Durability::Fsync {
                s.cost = flushes.since(before, op.count(ops));
            }
            print_row(&s, base);
        }
    }

    // Writers of distinct keys of one namespace (per-item locks, one append and one
    // fdatasync per put), durable, beside the same number of tasks doing what a put does
    // to the disk, bare: an append + fdatasync + commit byte to one of 100 files; and a
    // bare atomic replace (temp file, write, fsync, rename, directory fsync), what a put
    // did before items were logs. Their scaling from 1 to 8 tasks is what the disk allows.
    let b = FsBackend::open(FsConfig::new(scratch.path().join("store-tasks")))?;
    let stores = Stores::of(b);
    let raw_dir = scratch.path().join("raw-files");
    std::fs::create_dir_all(&raw_dir).expect("raw files dir");
    let mut one_task: Option<[f64; 3]> = None;
    for tasks in [1, 8] {
        let mut rates = [0.0; 3];
        for (slot, name) in [(0, "raw append+fdatasync"), (1, "raw atomic replace")] {
            let dir = raw_dir.clone();
            let before = flushes.count();
            let mut raw = measure(&format!("{name} {record_size} B"), ops, tasks, move |i| {
                let dir = dir.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        if slot == 0 {
                            raw_append(&dir, i % 100, record_size)
                        } else {
                            raw_replace(&dir, i % 100, record_size)
                        }
                    })
                    .await
                    .expect("raw task")
                    .expect("raw write");
                }
            })
            .await;
            raw.cost = flushes.since(before, ops);
            print_row(&raw, None);
            rates[slot] = raw.ops_per_sec;
        }
        workload::warm_up(&stores, Op::StorePut, tasks).await?;
        let before = flushes.count();
        let mut s = workload::measure_op(&stores, Op::StorePut, ops, tasks).await?;
        s.cost = flushes.since(before, ops);
        print_row(&s, Some(rates[0]));
        rates[2] = s.ops_per_sec;
        match one_task {
            None => one_task = Some(rates),
            Some(one) => println!(
                "8 tasks vs 1: store put {:.2}x, raw append {:.2}x, raw atomic replace {:.2}x",
                rates[2] / one[2],
                rates[0] / one[0],
                rates[1] / one[1]
            ),
        }
    }

    // Flat as data grows: the scale checks every backend's bench runs, on a root without
    // fsync so filling it takes seconds (the costs measured are reads and listings).
    let size: usize = arg("--scale")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let b = FsBackend::open(
        FsConfig::new(scratch.path().join("scale")).with_durability(Durability::None),
    )?;
    let report = scale::run(&Stores::of(b), size, &|what| eprintln!("{what}...")).await?;
    report.print();
    Ok(())
}

/// What a store put does to the disk, bare: append a record to file `n` of `dir`,
/// fdatasync it, then append its commit byte.
fn raw_append(dir: &std::path::Path, n: usize, size: usize) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("a{n}")))?;
    file.write_all(&vec![b'r'; size])?;
    file.sync_data()?;
    file.write_all(b"C")
}

/// One atomic replace of file `n` in `dir`, as durable as a store put's: temp file,
/// write, fsync, rename, fsync of the directory.
fn raw_replace(dir: &std::path::Path, n: usize, size: usize) -> std::io::Result<()> {
    let target = dir.join(format!("f{n}"));
    let temp = dir.join(format!(".tmp{n}-{:?}", std::thread::current().id()));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&vec![b'r'; size])?;
    file.sync_all()?;
    std::fs::rename(&temp, &target)?;
    std::fs::File::open(dir)?.sync_all()
}
