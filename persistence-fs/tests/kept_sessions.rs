//! A process keeps the files of the sessions it appends to open between appends
//! (`session_log::append`); whatever other processes do to those sessions in between, an
//! append writes where a fresh open would have, and nothing is lost or reordered. Two
//! backends on one root stand for two processes: they share nothing in memory.

#![allow(clippy::unwrap_used, missing_docs)]

use persistence_core::{AppendOptions, Envelope, SessionKey, SessionLog, TenantId};
use persistence_fs::{FsBackend, FsConfig};
use serde_json::json;

fn open(root: &std::path::Path) -> FsBackend {
    FsBackend::open(FsConfig::new(root)).unwrap()
}

async fn append(backend: &FsBackend, t: &TenantId, s: &SessionKey, n: i64) -> u64 {
    backend
        .append(
            t,
            s,
            vec![Envelope::new(1, json!(n))],
            AppendOptions::default(),
        )
        .await
        .unwrap()
}

/// `(ordinal, payload)` of every event of the session.
async fn events(backend: &FsBackend, t: &TenantId, s: &SessionKey) -> Vec<(u64, i64)> {
    backend
        .read(t, s, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.event.data.as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn appends_stay_in_order_whatever_another_process_did_in_between() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()), open(dir.path()));
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());

    // Another process appended: the log grew.
    assert_eq!(append(&a, &t, &s, 1).await, 1);
    assert_eq!(append(&b, &t, &s, 2).await, 2);
    assert_eq!(append(&a, &t, &s, 3).await, 3);
    assert_eq!(events(&b, &t, &s).await, [(1, 1), (2, 2), (3, 3)]);

    // Trimmed part of it (a new log file of another length).
    assert_eq!(b.trim_before(&t, &s, 3).await.unwrap(), 2);
    assert_eq!(append(&a, &t, &s, 4).await, 4);
    assert_eq!(events(&b, &t, &s).await, [(3, 3), (4, 4)]);

    // Trimmed all of it: ordinals continue after the head the trim kept.
    assert_eq!(b.trim_before(&t, &s, 5).await.unwrap(), 2);
    assert_eq!(append(&a, &t, &s, 5).await, 5);
    assert_eq!(events(&b, &t, &s).await, [(5, 5)]);

    // Deleted it, then started it again as a new session with one event.
    assert!(b.delete(&t, &s).await.unwrap());
    append(&b, &t, &s, 10).await;
    assert_eq!(append(&a, &t, &s, 11).await, 2);
    assert_eq!(events(&b, &t, &s).await, [(1, 10), (2, 11)]);

    // Deleted it and appended the same number of bytes: same length, other files.
    append(&a, &t, &s, 12).await;
    assert!(b.delete(&t, &s).await.unwrap());
    for n in [20, 21, 22] {
        append(&b, &t, &s, n).await;
    }
    assert_eq!(append(&a, &t, &s, 23).await, 4);
    assert_eq!(
        events(&a, &t, &s).await,
        [(1, 20), (2, 21), (3, 22), (4, 23)]
    );
}

/// The index is a cache that a reader may rebuild (a new file): a later append through
/// the old one would leave the new one behind the log.
#[tokio::test]
async fn an_append_after_the_index_was_rebuilt_writes_the_new_index() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()), open(dir.path()));
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    for n in 1..=3 {
        append(&a, &t, &s, n).await;
    }
    let index = a.layout().session(&t, &s).join("index");
    std::fs::remove_file(&index).unwrap();
    assert_eq!(events(&b, &t, &s).await.len(), 3); // rebuilds it
    let rebuilt = std::fs::metadata(&index).unwrap().len();
    append(&a, &t, &s, 4).await;
    assert_eq!(std::fs::metadata(&index).unwrap().len(), rebuilt + 8);
    assert_eq!(events(&b, &t, &s).await.len(), 4);
}

/// The lock file is what keeps two writers of a session apart: one deleted and made
/// anew (by an operator's cleanup, say) must be the one a later append locks, or it
/// would exclude no one.
#[tokio::test]
async fn an_append_locks_the_lock_file_that_is_there_now() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    append(&a, &t, &s, 1).await;
    let (lock, _) = a.layout().session_guards(&t, &s);
    std::fs::remove_file(&lock).unwrap();
    append(&a, &t, &s, 2).await;
    assert!(
        lock.exists(),
        "the append locked a file no other process can find"
    );
    // Held by another open file of it: an append must wait for it, not go ahead.
    let held = std::fs::File::open(&lock).unwrap();
    held.lock().unwrap();
    let waiting = tokio::spawn({
        let (t, s) = (t.clone(), s.clone());
        async move { append(&a, &t, &s, 3).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "appended while another holder had the lock"
    );
    held.unlock().unwrap();
    assert_eq!(waiting.await.unwrap(), 3);
}

/// Files this process has open below `dir` (by `/proc/self/fd`), deleted ones included.
fn open_files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}

/// A trim or delete by this process leaves no file of the old session open (a kept
/// file would hold its disk space).
#[tokio::test]
async fn a_deleted_session_leaves_no_file_open() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    append(&a, &t, &s, 1).await;
    let session = a.layout().session(&t, &s);
    assert!(!open_files_below(&session).is_empty(), "nothing kept open");
    assert!(a.delete(&t, &s).await.unwrap());
    assert_eq!(open_files_below(&session), Vec::<std::path::PathBuf>::new());
    append(&a, &t, &s, 2).await;
    a.trim_before(&t, &s, 2).await.unwrap();
    assert_eq!(open_files_below(&session), Vec::<std::path::PathBuf>::new());
}

/// A process that keeps a session open for its appends sees another process close it
/// (`Closed`), and sees its compaction (ordinals continue after the compacted head).
#[tokio::test]
async fn a_close_or_compaction_by_another_process_is_seen_by_kept_sessions() {
    use persistence_core::{CloseSession, Compaction, ErrorKind};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()), open(dir.path()));
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    append(&a, &t, &s, 1).await;
    append(&a, &t, &s, 2).await;

    let head = b
        .compact(
            &t,
            &s,
            Compaction::new(1, vec![Envelope::new(1, json!(10))]),
        )
        .await
        .unwrap();
    assert_eq!(head, 3);
    assert_eq!(append(&a, &t, &s, 4).await, 4);
    assert_eq!(events(&a, &t, &s).await, [(2, 2), (3, 10), (4, 4)]);
    // A third process, opening the files afresh, reads the same.
    assert_eq!(
        events(&open(dir.path()), &t, &s).await,
        [(2, 2), (3, 10), (4, 4)]
    );

    b.close_session(&t, &s, CloseSession::default())
        .await
        .unwrap();
    let err = a
        .append(
            &t,
            &s,
            vec![Envelope::new(1, json!(5))],
            AppendOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert_eq!(events(&a, &t, &s).await, [(2, 2), (3, 10), (4, 4)]);
}

/// A crash between a compaction's rename of the log and the write of its index leaves
/// a log without an index: the next reader rebuilds it and reads the compacted session.
#[tokio::test]
async fn a_compaction_cut_before_its_index_is_rebuilt() {
    use persistence_core::Compaction;
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    for n in 1..=4 {
        append(&a, &t, &s, n).await;
    }
    a.compact(
        &t,
        &s,
        Compaction::new(2, vec![Envelope::new(1, json!(20))]),
    )
    .await
    .unwrap();
    let index = a.layout().session(&t, &s).join("index");
    std::fs::remove_file(&index).unwrap();
    let b = open(dir.path());
    assert_eq!(events(&b, &t, &s).await, [(3, 3), (4, 4), (5, 20)]);
    assert_eq!(append(&b, &t, &s, 6).await, 6);
}

/// A subscriber is woken by inotify when another process appends (the first append,
/// which creates the session, included), not by its poll interval, here far longer than
/// the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_woken_by_another_process_append() {
    use persistence_core::Subscribe;
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = (open(dir.path()), open(dir.path()));
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("live").unwrap(),
    );
    // The tenant exists (its sessions directory is what is watched before the session
    // has one of its own).
    append(&writer, &t, &SessionKey::new("other").unwrap(), 0).await;
    let log: &dyn SessionLog = &reader;
    let mut tail = log.subscribe(
        &t,
        &s,
        0,
        Subscribe::default().with_poll_interval(std::time::Duration::from_secs(30)),
    );
    let appender = tokio::spawn(async move {
        for n in 1..=3 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            append(&writer, &t, &s, n).await;
        }
    });
    for want in 1..=3 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), tail.next())
            .await
            .unwrap_or_else(|_| panic!("event {want} did not wake the subscriber"))
            .unwrap();
        assert_eq!(event.seq, want);
    }
    appender.await.unwrap();
}

/// A process watches a followed session once, however many subscribers follow it, and
/// the watch follows the session's directory through its life: watched through the
/// tenant's directory before it exists, itself once an append creates it, the tenant's
/// again after a delete, and itself again when written anew. Every append along the
/// way wakes all subscribers (the poll interval is far longer than the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_are_pushed_through_a_session_deleted_and_written_again() {
    use persistence_core::{ErrorKind, Subscribe};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = (open(dir.path()), open(dir.path()));
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("reborn").unwrap(),
    );
    append(&writer, &t, &SessionKey::new("other").unwrap(), 0).await;
    let slow = Subscribe::default().with_poll_interval(Duration::from_secs(30));
    let follow = |events: u64| {
        let (reader, t, s, slow) = (reader.clone(), t.clone(), s.clone(), slow.clone());
        tokio::spawn(async move {
            let log: &dyn SessionLog = &reader;
            let mut tail = log.subscribe(&t, &s, 0, slow);
            for want in 1..=events {
                let event = tokio::time::timeout(Duration::from_secs(5), tail.next())
                    .await
                    .unwrap_or_else(|_| panic!("event {want} did not wake a subscriber"))
                    .unwrap();
                assert_eq!(event.seq, want);
            }
            // Waiting for one more: woken by the delete, which it is told of.
            let gone = tokio::time::timeout(Duration::from_secs(5), tail.next()).await;
            gone.map(|r| r.map(|e| e.seq))
        })
    };
    for round in 0..2 {
        let tails: Vec<_> = (0..10).map(|_| follow(3)).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in 1..=3 {
            append(&writer, &t, &s, n).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        SessionLog::delete(&writer, &t, &s).await.unwrap();
        for tail in tails {
            let ended = tail.await.unwrap();
            assert!(
                matches!(&ended, Ok(Err(e)) if e.kind() == ErrorKind::Trimmed),
                "round {round}: after the delete a subscriber got {ended:?}"
            );
        }
    }
}
