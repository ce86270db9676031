//! Batches are all or nothing, and damage is never mistaken for a torn tail: a full disk
//! (a small tmpfs), a crash cutting a batch at every offset, a flipped byte in the last
//! record, an index that points elsewhere or lists records the log lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use persistence_core::{
    AppendOptions, ChannelName, CheckpointSelector, Checkpointer, Envelope, ErrorKind,
    ListSessions, PutWrites, SessionKey, SessionLog, TaskId, TenantId, ThreadKey, Write,
};
use persistence_fs::{FsBackend, FsConfig};
use serde_json::json;

fn open(root: &Path) -> FsBackend {
    FsBackend::open(FsConfig::new(root)).unwrap()
}

fn ids() -> (TenantId, SessionKey) {
    (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap())
}

fn session_dir(backend: &FsBackend) -> PathBuf {
    let (t, s) = ids();
    backend.layout().session(&t, &s)
}

async fn append(
    backend: &FsBackend,
    events: &[serde_json::Value],
) -> persistence_core::Result<u64> {
    let (t, s) = ids();
    let events = events.iter().map(|e| Envelope::new(1, e.clone())).collect();
    backend
        .append(&t, &s, events, AppendOptions::default())
        .await
}

async fn ordinals(backend: &FsBackend) -> persistence_core::Result<Vec<u64>> {
    let (t, s) = ids();
    Ok(backend
        .read(&t, &s, 0, 1000)
        .await?
        .into_iter()
        .map(|e| e.seq)
        .collect())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn cut(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// A crash that tears the last 3-event batch, at every byte offset inside it, leaves
/// exactly the earlier events (never 1 or 2 of the 3), and the next append continues
/// the ordinals without a gap or a reuse.
#[tokio::test]
async fn a_torn_batch_is_never_partly_visible() {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    let backend = open(&original);
    for i in 0..5 {
        append(&backend, &[json!({"single": i})]).await.unwrap();
    }
    let log = session_dir(&backend).join("log");
    let committed = std::fs::metadata(&log).unwrap().len();
    append(&backend, &[json!("a"), json!("b"), json!("c")])
        .await
        .unwrap();
    let full = std::fs::metadata(&log).unwrap().len();
    drop(backend);
    for at in committed..full {
        let root = base.path().join(format!("cut-{at}"));
        copy_dir(&original, &root);
        let backend = open(&root);
        let dir = session_dir(&backend);
        cut(&dir.join("log"), at);
        // The index never lists a batch that was not durable when the crash came.
        cut(&dir.join("index"), 5 * 8);
        assert_eq!(
            ordinals(&backend).await.unwrap(),
            [1, 2, 3, 4, 5],
            "cut at {at}"
        );
        assert_eq!(
            append(&backend, &[json!("next")]).await.unwrap(),
            6,
            "cut at {at}"
        );
        assert_eq!(
            ordinals(&backend).await.unwrap(),
            [1, 2, 3, 4, 5, 6],
            "cut at {at}"
        );
        drop(backend);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// The same for pending writes: a torn `put_writes` batch is never partly returned.
#[tokio::test]
async fn a_torn_pending_writes_batch_is_never_partly_visible() {
    let base = tempfile::tempdir().unwrap();
    let original = base.path().join("original");
    let backend = open(&original);
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let id = common::first_checkpoint(&backend, &t, &th).await;
    let write = |v: i64| Write::new(ChannelName::new("c").unwrap(), Envelope::new(1, json!(v)));
    let first = TaskId::new("first").unwrap();
    backend
        .put_writes(&t, &th, PutWrites::new(id, first.clone(), vec![write(1)]))
        .await
        .unwrap();
    let writes_file = backend
        .layout()
        .thread(&t, &th)
        .join("writes")
        .join(id.to_string());
    let committed = std::fs::metadata(&writes_file).unwrap().len();
    let second = TaskId::new("second").unwrap();
    backend
        .put_writes(
            &t,
            &th,
            PutWrites::new(id, second.clone(), vec![write(2), write(3), write(4)]),
        )
        .await
        .unwrap();
    let full = std::fs::metadata(&writes_file).unwrap().len();
    drop(backend);
    for at in committed..full {
        let root = base.path().join(format!("cut-{at}"));
        copy_dir(&original, &root);
        let backend = open(&root);
        cut(
            &backend
                .layout()
                .thread(&t, &th)
                .join("writes")
                .join(id.to_string()),
            at,
        );
        let got = backend
            .get(&t, &th, CheckpointSelector::Id(id))
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<&str> = got
            .pending_writes
            .iter()
            .map(|w| w.task_id.as_str())
            .collect();
        assert_eq!(tasks, ["first"], "cut at {at}");
        drop(backend);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// One flipped byte in the last of 10 fsynced events is `Corrupt` for head, read and
/// append: not a torn tail to cut (which would hand ordinal 10 to other content).
#[tokio::test]
async fn damage_to_the_last_record_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    for i in 0..10 {
        append(&backend, &[json!({"i": i, "pad": "x".repeat(40)})])
            .await
            .unwrap();
    }
    let log = session_dir(&backend).join("log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let (t, s) = ids();
    let head = backend.head(&t, &s).await.unwrap_err();
    assert_eq!(head.kind(), ErrorKind::Corrupt, "{head}");
    let appended = append(&backend, &[json!("other")]).await.unwrap_err();
    assert_eq!(appended.kind(), ErrorKind::Corrupt, "{appended}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "a corrupt log was modified"
    );
}

/// A flipped byte in a middle record (5 of 10) is `Corrupt` for the next process's
/// first append to the session, which scans the log once: an append after damage is
/// never accepted silently. The log is not modified.
#[tokio::test]
async fn damage_in_the_middle_is_corrupt_for_the_next_append() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let mut ends = Vec::new();
    let log = session_dir(&backend).join("log");
    for i in 0..10 {
        append(&backend, &[json!({"i": i, "pad": "x".repeat(40)})])
            .await
            .unwrap();
        ends.push(std::fs::metadata(&log).unwrap().len() as usize);
    }
    drop(backend);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[ends[4] - 10] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let next_process = open(root.path());
    let appended = append(&next_process, &[json!("after damage")])
        .await
        .unwrap_err();
    assert_eq!(appended.kind(), ErrorKind::Corrupt, "{appended}");
    assert!(
        appended
            .to_string()
            .contains(&format!("offset {}", ends[3])),
        "{appended}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "a corrupt log was modified"
    );
    // An intact log costs one scan per process: later appends check only what is new.
    let other = tempfile::tempdir().unwrap();
    let backend = open(other.path());
    for i in 0..3 {
        append(&backend, &[json!(i)]).await.unwrap();
    }
    assert_eq!(append(&open(other.path()), &[json!(3)]).await.unwrap(), 4);
}

/// The same for pending writes: the damaged last write is `Corrupt`, not dropped.
#[tokio::test]
async fn damage_to_the_last_pending_write_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let id = common::first_checkpoint(&backend, &t, &th).await;
    for task in ["a", "b"] {
        let w = Write::new(
            ChannelName::new("c").unwrap(),
            Envelope::new(1, json!({"task": task, "pad": "y".repeat(40)})),
        );
        backend
            .put_writes(
                &t,
                &th,
                PutWrites::new(id, (TaskId::new(task).unwrap()).clone(), vec![w]),
            )
            .await
            .unwrap();
    }
    let path = backend
        .layout()
        .thread(&t, &th)
        .join("writes")
        .join(id.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let e = backend
        .get(&t, &th, CheckpointSelector::Id(id))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

/// Reads check ordinals: an index entry pointing at the wrong record (the index is a
/// cache, never fsynced) is repaired, never followed.
#[tokio::test]
async fn reads_never_follow_a_wrong_index_entry() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    for i in 0..20 {
        append(&backend, &[json!(i)]).await.unwrap();
    }
    let index = session_dir(&backend).join("index");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &0u64.to_le_bytes(), 10 * 8).unwrap();
    let (t, s) = ids();
    let got: Vec<u64> = backend
        .read(&t, &s, 10, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, [11, 12, 13]);
}

/// A log emptied behind the backend's back while its index lists events: acknowledged
/// events are gone, which is `Corrupt`, not a fresh session restarting at ordinal 1.
#[tokio::test]
async fn an_emptied_log_is_corrupt_not_a_new_session() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    append(&backend, &[json!(1)]).await.unwrap();
    append(&backend, &[json!(2)]).await.unwrap();
    cut(&session_dir(&backend).join("log"), 0);
    let (t, s) = ids();
    let e = backend.head(&t, &s).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let e = append(&backend, &[json!(3)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

/// On a full disk a batch fails whole: after freeing space the log holds only what was
/// there before, and the next append gets the next ordinal (a retry does not duplicate).
#[tokio::test]
async fn a_failed_append_on_a_full_disk_leaves_nothing() {
    let Some(disk) = common::SmallDisk::mount("1m") else {
        return;
    };
    let backend = open(&disk.path().join("store"));
    append(&backend, &[json!(1)]).await.unwrap();
    append(&backend, &[json!(2)]).await.unwrap();
    let filler = common::fill(disk.path());
    let big: Vec<_> = (0..5)
        .map(|i| json!({"i": i, "pad": "z".repeat(3000)}))
        .collect();
    let e = append(&backend, &big).await.unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Corrupt, "{e}");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(ordinals(&backend).await.unwrap(), [1, 2]);
    assert_eq!(append(&backend, &big).await.unwrap(), 7);
    assert_eq!(ordinals(&backend).await.unwrap(), [1, 2, 3, 4, 5, 6, 7]);
}

/// A compaction that meets a full disk changes nothing: the session reads as before,
/// and the same compaction succeeds once there is room.
#[tokio::test]
async fn a_failed_compaction_on_a_full_disk_changes_nothing() {
    use persistence_core::Compaction;
    let Some(disk) = common::SmallDisk::mount("1m") else {
        return;
    };
    let backend = open(&disk.path().join("store"));
    for n in 1..=4 {
        append(&backend, &[json!({"n": n, "pad": "y".repeat(2000)})])
            .await
            .unwrap();
    }
    let filler = common::fill(disk.path());
    let (t, s) = ids();
    let summary: Vec<_> = (0..5)
        .map(|i| Envelope::new(1, json!({"i": i, "pad": "z".repeat(3000)})))
        .collect();
    let e = backend
        .compact(&t, &s, Compaction::new(2, summary.clone()))
        .await
        .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(ordinals(&backend).await.unwrap(), [1, 2, 3, 4]);
    assert_eq!(
        ordinals(&open(&disk.path().join("store"))).await.unwrap(),
        [1, 2, 3, 4]
    );
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        backend
            .compact(&t, &s, Compaction::new(2, summary))
            .await
            .unwrap(),
        9
    );
    assert_eq!(ordinals(&backend).await.unwrap(), [3, 4, 5, 6, 7, 8, 9]);
}

/// The same for pending writes on a full disk.
#[tokio::test]
async fn failed_pending_writes_on_a_full_disk_leave_nothing() {
    let Some(disk) = common::SmallDisk::mount("1m") else {
        return;
    };
    let backend = open(&disk.path().join("store"));
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let id = common::first_checkpoint(&backend, &t, &th).await;
    let filler = common::fill(disk.path());
    let writes: Vec<Write> = (0..5)
        .map(|i| {
            Write::new(
                ChannelName::new("c").unwrap(),
                Envelope::new(1, json!({"i": i, "pad": "w".repeat(3000)})),
            )
        })
        .collect();
    let task = TaskId::new("task").unwrap();
    assert!(
        backend
            .put_writes(&t, &th, PutWrites::new(id, task.clone(), writes.clone()))
            .await
            .is_err()
    );
    std::fs::remove_file(filler).unwrap();
    let got = backend
        .get(&t, &th, CheckpointSelector::Id(id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.pending_writes.is_empty(),
        "{:?}",
        got.pending_writes.len()
    );
    backend
        .put_writes(&t, &th, PutWrites::new(id, task.clone(), writes))
        .await
        .unwrap();
    let got = backend
        .get(&t, &th, CheckpointSelector::Id(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.pending_writes.len(), 5);
}

/// Everything reads from a read-only root (a read-only mount here; a user with read
/// permission only is the same): sessions too, whose readers used to open the lock file
/// for writing.
#[tokio::test]
async fn a_read_only_root_reads_everything() {
    let Some(disk) = common::SmallDisk::mount("4m") else {
        return;
    };
    let root = disk.path().join("store");
    let backend = open(&root);
    let (t, s) = ids();
    append(&backend, &[json!(1), json!(2)]).await.unwrap();
    let th = ThreadKey::new("th").unwrap();
    let c = common::checkpoint(None, 0, json!({"x": 1}));
    Checkpointer::put(&backend, &t, &th, c, Default::default())
        .await
        .unwrap();
    let ns = persistence_core::Namespace::new(["ns"]).unwrap();
    let key = persistence_core::ItemKey::new("k").unwrap();
    persistence_core::Store::put(
        &backend,
        &t,
        &ns,
        &key,
        Envelope::new(1, json!(1)),
        Default::default(),
    )
    .await
    .unwrap();
    drop(backend);
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(disk.path())
        .status()
        .unwrap();
    assert!(remounted.success());
    let backend = open(&root);
    assert_eq!(backend.head(&t, &s).await.unwrap(), 2);
    assert_eq!(ordinals(&backend).await.unwrap(), [1, 2]);
    assert_eq!(
        backend
            .list_sessions(&t, ListSessions::default().with_limit(10))
            .await
            .unwrap()
            .items,
        vec![s.clone()]
    );
    assert!(
        backend
            .get(&t, &th, CheckpointSelector::Latest)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        persistence_core::Store::get(&backend, &t, &ns, &key)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(backend.tenants().await.unwrap(), vec![t.clone()]);
}

/// What a power loss leaves of a lease file and its fence counter.
type PowerLoss = fn(lease: &Path, fence: &Path);

/// Leases and fence counters are written without fsync: a process crash keeps them (the
/// page cache), and a power loss ends every holder on the host. What a power loss can
/// leave is a lease or counter file that is gone, empty (created but never flushed) or
/// back at an older value. None of them may stop the lock or repeat a fence: fences
/// are floored at the clock in microseconds.
#[tokio::test]
async fn leases_and_fences_lost_in_a_power_loss_never_repeat_a_fence() {
    use persistence_core::{Lock, LockKey};
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path());
    let t = TenantId::new("t").unwrap();
    let session = SessionKey::new("fenced").unwrap();
    let name = LockKey::for_session(&session);
    let (_, lease_path, fence_path) = backend.layout().lease(&t, &name);
    let ttl = std::time::Duration::from_secs(60);
    let fenced = |lease: &persistence_core::Lease| AppendOptions::default().with_lease(lease);
    let event = || vec![Envelope::new(1, json!("e"))];

    let mut highest = backend.try_acquire(&t, &name, ttl).await.unwrap().unwrap();
    backend
        .append(&t, &session, event(), fenced(&highest))
        .await
        .unwrap();
    let remains: [(&str, PowerLoss); 4] = [
        ("lease and counter gone", |lease, fence| {
            std::fs::remove_file(lease).unwrap();
            std::fs::remove_file(fence).unwrap();
        }),
        ("both files empty", |lease, fence| {
            std::fs::write(lease, b"").unwrap();
            std::fs::write(fence, b"").unwrap();
        }),
        ("counter back at 1, lease gone", |lease, fence| {
            std::fs::remove_file(lease).unwrap();
            std::fs::write(fence, b"1").unwrap();
        }),
        ("empty lease, counter intact", |lease, _| {
            std::fs::write(lease, b"").unwrap();
        }),
    ];
    for (what, leave) in remains {
        leave(&lease_path, &fence_path);
        // A new process after the power loss.
        let backend = open(dir.path());
        let next = backend
            .try_acquire(&t, &name, ttl)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: the lock stayed held"));
        assert!(
            next.fence > highest.fence,
            "{what}: fence {} is not above {}",
            next.fence.0,
            highest.fence.0
        );
        backend
            .append(&t, &session, event(), fenced(&next))
            .await
            .unwrap();
        let stale = backend
            .append(&t, &session, event(), fenced(&highest))
            .await
            .unwrap_err();
        assert_eq!(stale.kind(), ErrorKind::Fenced, "{what}: {stale}");
        highest = next;
    }
    // Damage that no lost write leaves is still reported, never read as free.
    std::fs::write(&lease_path, b"{\"owner\":").unwrap();
    let err = open(dir.path())
        .try_acquire(&t, &name, ttl)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}
