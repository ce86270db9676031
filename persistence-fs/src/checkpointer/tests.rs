//! The checkpoint journal against what a crash or a power loss leaves (see [`journal`]):
//! files gone, empty or short, a pointer that lags, a writer that died after its sync.
//! A new backend stands for a new process; records of "another boot" for a reboot.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use persistence_core::{
    Checkpoint, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ErrorKind,
    ListCheckpoints, NewCheckpoint, TenantId, ThreadKey,
};
use serde_json::json;

use super::journal::{COMPACT_RECORDS, JOURNAL};
use super::{CHECKPOINTS, LATEST};
use crate::records;
use crate::{FsBackend, FsConfig};

fn ids() -> (TenantId, ThreadKey) {
    (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap())
}

fn open(root: &Path) -> FsBackend {
    FsBackend::open(FsConfig::new(root)).unwrap()
}

fn checkpoints_dir(backend: &FsBackend) -> PathBuf {
    let (t, th) = ids();
    backend.inner.layout.thread(&t, &th).join(CHECKPOINTS)
}

async fn put(backend: &FsBackend, step: i64) -> Checkpoint {
    let (t, th) = ids();
    let c = NewCheckpoint::new(
        CheckpointId::new(),
        step,
        Envelope::new(1, json!({ "step": step, "pad": "x".repeat(300) })),
    );
    Checkpointer::put(backend, &t, &th, c, Default::default())
        .await
        .unwrap()
}

/// The journal's records, as (boot, rest of the payload).
fn journal_records(cdir: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(cdir.join(JOURNAL)).unwrap();
    records::scan(&file)
        .unwrap()
        .records
        .into_iter()
        .map(|(_, payload)| {
            let space = payload.iter().position(|&b| b == b' ').unwrap();
            let boot = String::from_utf8(payload[..space].to_vec()).unwrap();
            (boot, payload[space..].to_vec())
        })
        .collect()
}

fn write_journal(cdir: &Path, records: &[(String, Vec<u8>)]) {
    let payloads: Vec<Vec<u8>> = records
        .iter()
        .map(|(boot, rest)| [boot.as_bytes(), rest].concat())
        .collect();
    let mut bytes = Vec::new();
    for p in &payloads {
        records::frame_batch(std::iter::once(p.as_slice()), &mut bytes);
    }
    std::fs::write(cdir.join(JOURNAL), bytes).unwrap();
}

/// What the next boot finds: the same records, written in another boot.
fn as_if_rebooted(cdir: &Path) {
    let records: Vec<_> = journal_records(cdir)
        .into_iter()
        .map(|(_, rest)| ("0a1b2c3d-another-boot".to_owned(), rest))
        .collect();
    write_journal(cdir, &records);
}

fn same(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!((a.id, a.step, &a.state), (b.id, b.step, &b.state));
}

/// After a power loss, files written without a sync may be gone, empty or short, and
/// `.latest` may lag. The first reader of the next boot replays the journal: every
/// acknowledged checkpoint reads back whole, the latest is the greatest, and the journal
/// is empty afterwards.
#[tokio::test]
async fn a_power_loss_is_repaired_from_the_journal_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    let mut written = Vec::new();
    for step in 0..5 {
        written.push(put(&backend, step).await);
    }
    let cdir = checkpoints_dir(&backend);
    drop(backend);
    assert_eq!(
        journal_records(&cdir).len(),
        5,
        "every put is in the journal"
    );

    as_if_rebooted(&cdir);
    let file = |c: &Checkpoint| cdir.join(c.id.to_string());
    std::fs::remove_file(file(&written[4])).unwrap();
    std::fs::write(file(&written[3]), b"").unwrap();
    let whole = std::fs::read(file(&written[2])).unwrap();
    std::fs::write(file(&written[2]), &whole[..whole.len() / 2]).unwrap();
    std::fs::remove_file(cdir.join(LATEST)).unwrap();
    std::os::unix::fs::symlink(written[1].id.to_string(), cdir.join(LATEST)).unwrap();

    let backend = open(dir.path());
    let (t, th) = ids();
    let latest = backend
        .get(&t, &th, CheckpointSelector::Latest)
        .await
        .unwrap()
        .unwrap();
    same(&latest.checkpoint, &written[4]);
    for c in &written {
        let got = backend
            .get(&t, &th, CheckpointSelector::Id(c.id))
            .await
            .unwrap()
            .unwrap();
        same(&got.checkpoint, c);
    }
    let page = backend
        .list(&t, &th, ListCheckpoints::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(std::fs::metadata(cdir.join(JOURNAL)).unwrap().len(), 0);
    assert_eq!(
        std::fs::read_to_string(cdir.join(LATEST)).unwrap(),
        written[4].id.to_string()
    );
}

/// A writer that died after its journal sync, before it wrote the checkpoint's file: the
/// next writer of the thread writes the file (the put was durable), then its own.
#[tokio::test]
async fn the_next_writer_completes_a_put_that_died_after_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    put(&backend, 0).await;
    let dying = put(&backend, 1).await;
    let cdir = checkpoints_dir(&backend);
    drop(backend);
    std::fs::remove_file(cdir.join(dying.id.to_string())).unwrap();

    let backend = open(dir.path());
    put(&backend, 2).await;
    let (t, th) = ids();
    let got = backend
        .get(&t, &th, CheckpointSelector::Id(dying.id))
        .await
        .unwrap()
        .expect("the dead writer's durable put is completed");
    same(&got.checkpoint, &dying);
}

/// Prune empties the journal before it removes files, so no replay brings a pruned
/// checkpoint back.
#[tokio::test]
async fn a_replay_never_brings_back_a_pruned_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    for step in 0..4 {
        put(&backend, step).await;
    }
    let (t, th) = ids();
    assert_eq!(backend.prune(&t, &th, 1).await.unwrap(), 3);
    let cdir = checkpoints_dir(&backend);
    drop(backend);
    assert!(journal_records(&cdir).is_empty());
    as_if_rebooted(&cdir);

    let backend = open(dir.path());
    let page = backend
        .list(&t, &th, ListCheckpoints::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

/// The journal is emptied every `COMPACT_RECORDS` puts (after a `syncfs`), so it stays
/// small and a replay short.
#[tokio::test]
async fn the_journal_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    for step in 0..=i64::from(COMPACT_RECORDS) {
        put(&backend, step).await;
    }
    let cdir = checkpoints_dir(&backend);
    assert_eq!(journal_records(&cdir).len(), 1);
}

/// A damaged journal is `Corrupt` for the reader that must replay it, wherever the
/// damage is (the first record, which names the boot, or one in the middle, which only
/// a replay reads); nothing is rewritten from it.
#[tokio::test]
async fn a_damaged_journal_is_corrupt_not_replayed() {
    for damaged in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let backend = open(dir.path());
        let first = put(&backend, 0).await;
        put(&backend, 1).await;
        put(&backend, 2).await;
        let cdir = checkpoints_dir(&backend);
        drop(backend);
        as_if_rebooted(&cdir);
        let file = std::fs::File::open(cdir.join(JOURNAL)).unwrap();
        let (offset, _) = records::scan(&file).unwrap().records[damaged];
        let mut bytes = std::fs::read(cdir.join(JOURNAL)).unwrap();
        bytes[offset as usize + records::HEADER + 100] ^= 0xff;
        std::fs::write(cdir.join(JOURNAL), &bytes).unwrap();
        std::fs::remove_file(cdir.join(first.id.to_string())).unwrap();

        let backend = open(dir.path());
        let (t, th) = ids();
        let err = backend
            .get(&t, &th, CheckpointSelector::Latest)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "record {damaged}: {err}");
        assert_eq!(std::fs::read(cdir.join(JOURNAL)).unwrap(), bytes);
        assert!(
            !cdir.join(first.id.to_string()).exists(),
            "record {damaged}"
        );
    }
}

/// A put refused by its guard writes nothing: no journal, no directory.
#[tokio::test]
async fn a_refused_put_leaves_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    let (t, th) = ids();
    let c = NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, json!({})));
    let guarded = persistence_core::PutCheckpointOptions::default()
        .with_expect_latest(persistence_core::ExpectLatest::Is(CheckpointId::new()));
    let err = Checkpointer::put(&backend, &t, &th, c, guarded)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let cdir = checkpoints_dir(&backend);
    assert!(!cdir.join(JOURNAL).exists());
    assert!(!cdir.exists());
}

/// A journal of another boot on a read-only mount cannot be replayed: reading the
/// thread is `Unavailable` (never files a power loss may have cut short), and once the
/// mount is writable again the replay brings everything back.
#[tokio::test]
async fn a_read_only_mount_refuses_a_thread_whose_journal_needs_a_replay() {
    let mountpoint = tempfile::tempdir().unwrap();
    let mount = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .arg(mountpoint.path())
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !mount(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"]) {
        eprintln!("SKIP: cannot mount a tmpfs (needs root)");
        return;
    }
    /// Unmounts even when an assertion fails.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mountpoint.path());
    let root = mountpoint.path().join("store");
    let backend = open(&root);
    let written = put(&backend, 0).await;
    let cdir = checkpoints_dir(&backend);
    drop(backend);
    as_if_rebooted(&cdir);
    std::fs::remove_file(cdir.join(written.id.to_string())).unwrap();
    let (t, th) = ids();

    assert!(mount(&["-o", "remount,ro"]));
    let backend = open(&root);
    let err = backend
        .get(&t, &th, CheckpointSelector::Latest)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    drop(backend);

    assert!(mount(&["-o", "remount,rw"]));
    let backend = open(&root);
    let got = backend
        .get(&t, &th, CheckpointSelector::Latest)
        .await
        .unwrap()
        .unwrap();
    same(&got.checkpoint, &written);
}
