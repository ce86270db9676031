//! Checkpoint puts through the thread's journal: what one costs the disk, counted by the
//! disk itself (flush requests of a loop device holding a small ext4 file system of the
//! test's own, so no other process's syncs are counted; counts, not timings), and what a
//! full disk leaves.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::path::Path;

use persistence_conformance::bench::DeviceFlushes;
use persistence_core::{CheckpointSelector, Checkpointer, ListCheckpoints, TenantId, ThreadKey};
use persistence_fs::{FsBackend, FsConfig};

const PUTS: usize = 32;

/// Flush requests the device completes for `PUTS` appends + `fdatasync` of a file that
/// exists: what one durable write must cost at least.
fn raw_flushes(dir: &Path, flushes: &DeviceFlushes) -> u64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw"))
        .unwrap();
    let before = flushes.count().unwrap();
    for _ in 0..PUTS {
        file.write_all(&[b'r'; 400]).unwrap();
        file.sync_data().unwrap();
    }
    flushes.count().unwrap() - before
}

/// A durable checkpoint put costs the disk what one append + `fdatasync` costs: its
/// journal record is the only thing synced (a new file and its directory entry cost
/// two, as puts did before the journal).
#[tokio::test]
async fn a_checkpoint_put_costs_one_flush() {
    let Some(disk) = common::LoopExt4::mount() else {
        return;
    };
    let flushes = DeviceFlushes::of(disk.path());
    if flushes.count().is_none() {
        eprintln!("SKIP: the loop device has no flush counter (Linux 5.5+)");
        return;
    }
    let backend = FsBackend::open(FsConfig::new(disk.path().join("store"))).unwrap();
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    // The thread's directories, catalog entry and journal: made once.
    common::first_checkpoint(&backend, &t, &th).await;

    let raw = raw_flushes(disk.path(), &flushes);
    let before = flushes.count().unwrap();
    for step in 1..=PUTS {
        let c = common::checkpoint(None, step as i64, serde_json::json!({"step": step}));
        backend.put(&t, &th, c, Default::default()).await.unwrap();
    }
    let puts = flushes.count().unwrap() - before;
    eprintln!("{PUTS} puts: {puts} flushes; {PUTS} appends + fdatasync: {raw}");
    // A background journal commit of ext4 may add one or two.
    assert!(
        puts <= raw + raw / 8 + 2,
        "{PUTS} puts cost {puts} flushes, {PUTS} raw appends {raw}"
    );
}

/// On a full disk a put fails whole, whether its journal record or its file did not fit:
/// nothing of it is read back, later puts are not confused by it, and every put that
/// succeeded reads back.
#[tokio::test]
async fn a_put_that_fails_on_a_full_disk_leaves_nothing() {
    let Some(disk) = common::SmallDisk::mount("4m") else {
        return;
    };
    let backend = FsBackend::open(FsConfig::new(disk.path().join("store"))).unwrap();
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let mut stored = vec![common::first_checkpoint(&backend, &t, &th).await];
    let filler = common::fill(disk.path());
    let mut failed = 0;
    for (step, size) in [65_536, 6_000, 5_000, 3_000, 2_000, 1_000]
        .into_iter()
        .enumerate()
    {
        let c = common::checkpoint(None, step as i64, serde_json::json!("x".repeat(size)));
        let id = c.id;
        match backend.put(&t, &th, c, Default::default()).await {
            Ok(_) => stored.push(id),
            Err(_) => failed += 1,
        }
    }
    assert!(failed > 0, "the disk was not full");
    std::fs::remove_file(filler).unwrap();
    let c = common::checkpoint(None, 99, serde_json::json!("after"));
    stored.push(c.id);
    backend.put(&t, &th, c, Default::default()).await.unwrap();

    let reopened = FsBackend::open(FsConfig::new(disk.path().join("store"))).unwrap();
    let page = reopened
        .list(&t, &th, ListCheckpoints::default())
        .await
        .unwrap();
    let mut listed: Vec<_> = page.items.iter().map(|c| c.id).collect();
    listed.sort();
    stored.sort();
    assert_eq!(listed, stored);
    let latest = reopened
        .get(&t, &th, CheckpointSelector::Latest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(&latest.checkpoint.id), stored.last());
}
