//! Filesystem-specific behaviour: ids never escape the root, damaged logs, leases of
//! dead, live and foreign processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use persistence_conformance::checks::HOSTILE_IDS;
use persistence_core::{
    AppendOptions, Checkpointer, Envelope, ErrorKind, ItemKey, ListSessions, ListThreads, Lock,
    LockKey, LockOptions, Namespace, SessionKey, SessionLog, Store, TenantId, ThreadKey, Timestamp,
};
use persistence_fs::{FsBackend, FsConfig, ProcessIdentity};
use serde_json::json;

fn open(root: &Path) -> FsBackend {
    FsBackend::open(FsConfig::new(root)).unwrap()
}

/// Every path below `dir`; the backend makes no symbolic link.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        assert!(!meta.file_type().is_symlink(), "symlink {:?}", entry.path());
        out.push(entry.path());
        if meta.is_dir() {
            walk(&entry.path(), out);
        }
    }
}

/// Every hostile id, as thread, session, key, namespace label and lock name, lands inside
/// the root with a short, safe file name; the root's parent gains nothing.
#[tokio::test]
async fn hostile_ids_stay_inside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("root");
    let backend = open(&root);
    let t = TenantId::new("Tenant.A").unwrap();
    for id in HOSTILE_IDS {
        let c = common::checkpoint(None, 0, json!(id));
        Checkpointer::put(
            &backend,
            &t,
            &ThreadKey::new(*id).unwrap(),
            c,
            Default::default(),
        )
        .await
        .unwrap();
        backend
            .append(
                &t,
                &SessionKey::new(*id).unwrap(),
                vec![Envelope::new(1, json!(id))],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        let ns = Namespace::new([*id, *id]).unwrap();
        Store::put(
            &backend,
            &t,
            &ns,
            &ItemKey::new(*id).unwrap(),
            Envelope::new(1, json!(id)),
            Default::default(),
        )
        .await
        .unwrap();
        backend
            .try_acquire(&t, &LockKey::new(*id).unwrap(), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let siblings: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        siblings,
        vec![std::ffi::OsString::from("root")],
        "something was written beside the root"
    );
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let canonical_root = root.canonicalize().unwrap();
    for p in &paths {
        assert!(
            p.canonicalize().unwrap().starts_with(&canonical_root),
            "{p:?} escapes"
        );
        let name = p.file_name().unwrap().to_str().expect("names are ASCII");
        assert!(
            name.len() <= 255 && name != "." && name != "..",
            "bad name {name:?}"
        );
        assert!(name.is_ascii() && !name.contains('\\'), "bad name {name:?}");
    }
    // Everything reads back through the API.
    let threads = backend
        .list_threads(&t, ListThreads::default().with_limit(1000))
        .await
        .unwrap();
    assert_eq!(threads.items.len(), HOSTILE_IDS.len());
    let namespaces = backend
        .list_namespaces(&t, Default::default())
        .await
        .unwrap();
    assert_eq!(namespaces.items.len(), HOSTILE_IDS.len());
}

fn session_log_path(backend: &FsBackend, t: &TenantId, s: &SessionKey) -> std::path::PathBuf {
    backend.layout().session(t, s).join("log")
}

async fn write_events(backend: &FsBackend, t: &TenantId, s: &SessionKey, n: u64) {
    for i in 0..n {
        backend
            .append(
                t,
                s,
                vec![Envelope::new(1, json!({"i": i}))],
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
}

/// A damaged record in the middle of a log is `Corrupt`, naming file and offset; it is
/// never skipped and the log is not rewritten.
#[tokio::test]
async fn damage_in_the_middle_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    write_events(&backend, &t, &s, 10).await;
    let path = session_log_path(&backend, &t, &s);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    // Drop the index so the backend must scan the log.
    std::fs::remove_file(path.with_file_name("index")).unwrap();
    let err = backend.read(&t, &s, 0, 100).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("offset") && err.to_string().contains("log"),
        "{err}"
    );
    let err = backend
        .append(
            &t,
            &s,
            vec![Envelope::new(1, json!(0))],
            AppendOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a corrupt log was modified"
    );
}

/// A torn last record (a crash mid-append) is truncated and the next append is gapless.
#[tokio::test]
async fn torn_tail_is_truncated() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    write_events(&backend, &t, &s, 5).await;
    let path = session_log_path(&backend, &t, &s);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 3).unwrap();
    // As a crash leaves it: the index is written once a batch is durable, so it never
    // lists the torn record.
    let index = std::fs::OpenOptions::new()
        .write(true)
        .open(path.with_file_name("index"))
        .unwrap();
    index.set_len(4 * 8).unwrap();
    assert_eq!(
        backend.head(&t, &s).await.unwrap(),
        4,
        "torn record not dropped"
    );
    assert_eq!(
        backend
            .append(
                &t,
                &s,
                vec![Envelope::new(1, json!(5))],
                AppendOptions::default()
            )
            .await
            .unwrap(),
        5
    );
    // Trailing zeros, as a crash can leave after extending a file, are a torn tail too.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 64]).unwrap();
    let events = backend.read(&t, &s, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
}

/// Reading far into a long log seeks through the index instead of scanning.
#[tokio::test]
async fn reads_seek_by_ordinal() {
    let root = tempfile::tempdir().unwrap();
    let backend = FsBackend::open(
        FsConfig::new(root.path()).with_durability(persistence_fs::Durability::None),
    )
    .unwrap();
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("long").unwrap(),
    );
    for chunk in 0..20 {
        let batch = (0..500)
            .map(|i| Envelope::new(1, json!(chunk * 500 + i)))
            .collect();
        backend
            .append(&t, &s, batch, AppendOptions::default())
            .await
            .unwrap();
    }
    let page = backend.read(&t, &s, 9_000, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![9_001, 9_002, 9_003]
    );
    assert_eq!(page[0].event.data, json!(9_000));
    backend.trim_before(&t, &s, 5_000).await.unwrap();
    let page = backend.read(&t, &s, 0, 1).await.unwrap();
    assert_eq!(page[0].seq, 5_000);
    assert_eq!(backend.read(&t, &s, 9_998, 5).await.unwrap().len(), 2);
}

fn write_lease(
    backend: &FsBackend,
    t: &TenantId,
    name: &LockKey,
    owner: &str,
    fence: u64,
    expires_at: Timestamp,
) {
    let (_, lease, fence_file) = backend.layout().lease(t, name);
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let body =
        json!({"owner": owner, "token": "someone-else", "fence": fence, "expires_at": expires_at});
    std::fs::write(&lease, serde_json::to_vec(&body).unwrap()).unwrap();
    std::fs::write(&fence_file, fence.to_string()).unwrap();
}

fn far_future() -> Timestamp {
    Timestamp::now().saturating_add(Duration::from_secs(3600))
}

/// A lease whose owner on this host is dead is taken over at once, without its TTL.
#[tokio::test]
async fn dead_owner_is_taken_over_immediately() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("l").unwrap());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let me = ProcessIdentity::current();
    let dead = ProcessIdentity {
        pid,
        start_time: 12345,
        ..me
    };
    write_lease(&backend, &t, &name, &dead.to_string(), 7, far_future());
    let lease = backend
        .try_acquire(&t, &name, Duration::from_secs(10))
        .await
        .unwrap();
    // Fences are floored at the clock in microseconds, so above the dead owner's 7.
    let fence = lease.map(|l| l.fence.0);
    assert!(
        fence.is_some_and(|f| f > 7),
        "dead owner's lease not taken over: {fence:?}"
    );
}

/// A live owner on this host (here: this very process under another token) keeps it.
#[tokio::test]
async fn live_owner_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("l").unwrap());
    write_lease(
        &backend,
        &t,
        &name,
        &ProcessIdentity::current().to_string(),
        3,
        far_future(),
    );
    assert!(
        backend
            .try_acquire(&t, &name, Duration::from_secs(10))
            .await
            .unwrap()
            .is_none()
    );
    // A recycled PID (same pid, other start time) is not the owner.
    let recycled = ProcessIdentity {
        start_time: 1,
        ..ProcessIdentity::current()
    };
    write_lease(&backend, &t, &name, &recycled.to_string(), 3, far_future());
    assert!(
        backend
            .try_acquire(&t, &name, Duration::from_secs(10))
            .await
            .unwrap()
            .is_some()
    );
}

/// A lease from another host is never broken early: refused until it expires, and the
/// timeout says why.
#[tokio::test]
async fn foreign_host_waits_for_expiry() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("l").unwrap());
    let expires = Timestamp::now().saturating_add(Duration::from_millis(600));
    write_lease(&backend, &t, &name, "some-other-host:1:1", 4, expires);
    assert!(
        backend
            .try_acquire(&t, &name, Duration::from_secs(10))
            .await
            .unwrap()
            .is_none()
    );
    let options = LockOptions::default()
        .with_ttl(Duration::from_secs(10))
        .with_wait(Duration::from_millis(100));
    let err = backend.acquire(&t, &name, options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains("another host"), "{err}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let lease = backend
        .try_acquire(&t, &name, Duration::from_secs(10))
        .await
        .unwrap();
    let fence = lease.map(|l| l.fence.0);
    assert!(
        fence.is_some_and(|f| f > 4),
        "not taken after expiry: {fence:?}"
    );
}

/// A garbage lease file gives a clear `Corrupt` error naming the file, never a panic.
#[tokio::test]
async fn garbage_lease_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("l").unwrap());
    let (_, lease, _) = backend.layout().lease(&t, &name);
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    for garbage in [
        &b"\x00\xffnot json"[..],
        br#"{"owner": "no-colons", "token": "x", "fence": 1, "expires_at": 1}"#,
    ] {
        std::fs::write(&lease, garbage).unwrap();
        let err = backend
            .try_acquire(&t, &name, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains(".lease"), "{err}");
    }
}

/// A root written by a newer layout is refused.
#[test]
fn newer_layout_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let newer = format!("v{}", persistence_fs::FORMAT_VERSION + 1);
    std::fs::create_dir_all(root.path().join(newer)).unwrap();
    let err = FsBackend::open(FsConfig::new(root.path())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SchemaTooNew);
}

/// A root opened by this version carries the `v6` marker, which earlier versions refuse
/// (they refuse any `vN` above their own) instead of ignoring checkpoint journals after a
/// power loss, misreading emptied leases, item logs or creating entries the catalogs
/// would not list; a root written before (only `v1`, or `v2` to `v5`) opens and reads as
/// before.
#[tokio::test]
async fn the_format_marker_keeps_older_versions_out() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    assert!(root.path().join("v6").is_dir());
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    write_events(&backend, &t, &s, 3).await;
    drop(backend);
    for older in [Some("v5"), Some("v4"), Some("v3"), Some("v2"), None] {
        std::fs::remove_dir(root.path().join("v6")).unwrap();
        if let Some(marker) = older {
            std::fs::create_dir(root.path().join(marker)).unwrap();
        }
        let reopened = open(root.path());
        assert!(root.path().join("v6").is_dir(), "{older:?}");
        assert_eq!(
            reopened.read(&t, &s, 0, 10).await.unwrap().len(),
            3,
            "{older:?}"
        );
        if let Some(marker) = older {
            std::fs::remove_dir(root.path().join(marker)).unwrap();
        }
    }
}

/// Readers share the session's lock (another process reading does not block a read),
/// and a writer still waits for them: the append completes only after the reader lets go.
#[tokio::test]
async fn readers_share_the_session_lock() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("shared").unwrap(),
    );
    write_events(&backend, &t, &s, 3).await;
    let (lock_path, _) = backend.layout().session_guards(&t, &s);
    let reader = std::fs::File::open(&lock_path).unwrap();
    reader.lock_shared().unwrap();

    let read = tokio::time::timeout(Duration::from_secs(10), backend.read(&t, &s, 0, 10));
    assert_eq!(
        read.await
            .expect("a read waited for another reader")
            .unwrap()
            .len(),
        3
    );
    let head = tokio::time::timeout(Duration::from_secs(10), backend.head(&t, &s));
    assert_eq!(head.await.expect("head waited for a reader").unwrap(), 3);

    let writer = {
        let (backend, t, s) = (backend.clone(), t.clone(), s.clone());
        tokio::spawn(async move {
            let event = vec![Envelope::new(1, json!("late"))];
            backend
                .append(&t, &s, event, AppendOptions::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "an append ran while a reader held the lock"
    );
    reader.unlock().unwrap();
    assert_eq!(writer.await.unwrap().unwrap(), 4);
}

/// A paused process holding a lease's lock file (mid-operation) does not stretch an
/// acquire past its wait: the wait is a hard limit (plus the guard's half second).
#[tokio::test]
async fn acquire_waits_no_longer_than_asked_when_the_lock_file_is_held() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, name) = (TenantId::new("t").unwrap(), LockKey::new("l").unwrap());
    let (guard, _, _) = backend.layout().lease(&t, &name);
    std::fs::create_dir_all(guard.parent().unwrap()).unwrap();
    // Another open file description: excluded like another process.
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard)
        .unwrap();
    held.lock().unwrap();
    let started = std::time::Instant::now();
    let e = backend
        .acquire(
            &t,
            &name,
            LockOptions::default()
                .with_ttl(Duration::from_secs(10))
                .with_wait(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        took < Duration::from_millis(3_000),
        "waited {took:?} for a 2 s wait"
    );
    drop(held);
}

/// A symbolic link planted inside the root — a session, namespace or checkpoints
/// directory, or a session's log file, pointing outside — is never followed: the write
/// fails `Corrupt` naming the link and nothing lands outside the root.
#[tokio::test]
async fn planted_symlinks_are_never_followed() {
    let parent = tempfile::tempdir().unwrap();
    let (root, outside) = (parent.path().join("root"), parent.path().join("outside"));
    std::fs::create_dir_all(&outside).unwrap();
    let backend = open(&root);
    let t = TenantId::new("t").unwrap();
    let (s, th) = (SessionKey::new("s").unwrap(), ThreadKey::new("th").unwrap());
    let ns = Namespace::new(["ns"]).unwrap();
    let key = ItemKey::new("k").unwrap();
    let event = || vec![Envelope::new(1, json!(1))];
    let checkpoint = || common::checkpoint(None, 0, json!({}));
    // Create everything once, then replace pieces with links.
    backend
        .append(&t, &s, event(), AppendOptions::default())
        .await
        .unwrap();
    Store::put(
        &backend,
        &t,
        &ns,
        &key,
        Envelope::new(1, json!(1)),
        Default::default(),
    )
    .await
    .unwrap();
    Checkpointer::put(&backend, &t, &th, checkpoint(), Default::default())
        .await
        .unwrap();
    let plant = |path: &Path| {
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
        std::os::unix::fs::symlink(&outside, path).unwrap();
    };
    let assert_refused = |e: persistence_core::Error, link: &Path| {
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(e.to_string().contains(&link.display().to_string()), "{e}");
    };

    let session_dir = backend.layout().session(&t, &s);
    plant(&session_dir);
    let e = backend
        .append(&t, &s, event(), AppendOptions::default())
        .await
        .unwrap_err();
    assert_refused(e, &session_dir);
    let e = backend.read(&t, &s, 0, 10).await.unwrap_err();
    assert_refused(e, &session_dir);
    std::fs::remove_file(&session_dir).unwrap();

    backend
        .append(&t, &s, event(), AppendOptions::default())
        .await
        .unwrap();
    let log = session_dir.join("log");
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(outside.join("stolen-log"), &log).unwrap();
    let e = backend
        .append(&t, &s, event(), AppendOptions::default())
        .await
        .unwrap_err();
    assert_refused(e, &log);

    let namespace_dir = backend.layout().namespace(&t, &ns);
    plant(&namespace_dir);
    let e = Store::put(
        &backend,
        &t,
        &ns,
        &key,
        Envelope::new(1, json!(2)),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert_refused(e, &namespace_dir);

    let checkpoints = backend.layout().thread(&t, &th).join("checkpoints");
    plant(&checkpoints);
    let e = Checkpointer::put(&backend, &t, &th, checkpoint(), Default::default())
        .await
        .unwrap_err();
    assert_refused(e, &checkpoints);

    let mut leaked = Vec::new();
    walk(&outside, &mut leaked);
    assert!(leaked.is_empty(), "written outside the root: {leaked:?}");
}

/// Entries this backend never writes (a stray file among sessions, `.DS_Store` among
/// tenants) are skipped; a corrupt item is reported with its key by listings and can be
/// replaced by a put or removed by a delete.
#[tokio::test]
async fn one_bad_entry_does_not_break_a_tenant() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, s) = common::one_event_session(&backend).await;
    let sessions = backend
        .layout()
        .session(&t, &s)
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::write(sessions.join("stray-file"), b"x").unwrap();
    std::fs::write(sessions.join("=stray-hashed"), b"x").unwrap();
    let page = backend
        .list_sessions(&t, ListSessions::default().with_limit(10))
        .await
        .unwrap();
    assert_eq!(page.items, vec![s.clone()]);
    std::fs::write(backend.layout().tenants().join(".DS_Store"), b"x").unwrap();
    std::fs::write(backend.layout().tenants().join("stray"), b"x").unwrap();
    assert_eq!(backend.tenants().await.unwrap(), vec![t.clone()]);

    let ns = Namespace::new(["ns"]).unwrap();
    let (good, bad) = (ItemKey::new("good").unwrap(), ItemKey::new("bad").unwrap());
    for k in [&good, &bad] {
        Store::put(
            &backend,
            &t,
            &ns,
            k,
            Envelope::new(1, json!(1)),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let bad_path = backend
        .layout()
        .namespace(&t, &ns)
        .join("~items")
        .join("bad");
    std::fs::write(&bad_path, b"{not json").unwrap();
    let e = Store::list(&backend, &t, &ns, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("\"bad\""), "names the key: {e}");
    // A conditional write cannot know what it replaces; an unconditional one can.
    let e = Store::put(
        &backend,
        &t,
        &ns,
        &bad,
        Envelope::new(1, json!(2)),
        persistence_core::PutItemOptions::default().with_if_version(1),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    Store::put(
        &backend,
        &t,
        &ns,
        &bad,
        Envelope::new(1, json!(2)),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        Store::list(&backend, &t, &ns, Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    std::fs::write(&bad_path, b"{not json").unwrap();
    assert!(Store::delete(&backend, &t, &ns, &bad, None).await.unwrap());
    let items = Store::list(&backend, &t, &ns, Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        items.iter().map(|i| i.key.clone()).collect::<Vec<_>>(),
        vec![good]
    );
}

/// `open` errors name the backend and the operation besides the path.
#[test]
fn open_errors_carry_their_context() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = FsBackend::open(FsConfig::new(&file)).unwrap_err();
    assert_eq!(e.backend(), "fs", "{e}");
    assert_eq!(e.operation(), "open", "{e}");
    assert!(e.to_string().contains("a-file"), "{e}");
}

/// `purge_expired` (what `persistence gc` runs) deletes what interrupted writes left
/// behind — temp files, trash and staging copies — once they are ten minutes old, and
/// leaves a fresh temp file (a live writer's) alone.
#[tokio::test]
async fn gc_removes_leftovers_of_interrupted_writes() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, s) = common::one_event_session(&backend).await;
    let dir = backend.layout().session(&t, &s);
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let age = |path: &Path| {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    let (tmp, trash, copy, fresh) = (
        dir.join(".tmpAbC123"),
        dir.parent().unwrap().join(".trash-00ff"),
        dir.parent().unwrap().join(".copy-0194"),
        dir.join(".tmpFresh1"),
    );
    std::fs::write(&tmp, b"half a write").unwrap();
    std::fs::create_dir_all(trash.join("inner")).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::write(&fresh, b"in flight").unwrap();
    for p in [&tmp, &trash, &copy] {
        age(p);
    }
    persistence_core::Maintenance::purge_expired(&backend)
        .await
        .unwrap();
    for p in [&tmp, &trash, &copy] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(fresh.exists(), "a live writer's temp file was removed");
    assert_eq!(backend.head(&t, &s).await.unwrap(), 1);
}

/// `get(Latest)` and `put` read the thread's `.latest` pointer, not its directory (what
/// keeps them flat from 1 000 to 1 000 000 checkpoints; the figures are in the bench):
/// a stray file named after every checkpoint id, which a listing would meet first, is
/// neither read nor mistaken for one. Without the pointer (a thread written before it),
/// the directory is scanned once and the pointer written by the next put. The pointer
/// is a regular file holding the id, overwritten in place: no new inode per put (a
/// symbolic link replaced by a rename, format 5's pointer, cost one), no rename (ext4
/// flushes a regular file renamed over another). A link found there is read as text,
/// never followed, and replaced by the next put, never written through.
#[tokio::test]
async fn latest_comes_from_the_pointer_not_a_listing() {
    let root = tempfile::tempdir().unwrap();
    let backend = open(root.path());
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let checkpoints = backend.layout().thread(&t, &th).join("checkpoints");
    let pointer = || {
        let path = checkpoints.join(".latest");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        std::fs::read_to_string(&path).unwrap()
    };
    let mut last = None;
    for step in 0..20 {
        let c = common::checkpoint(last, step, json!({"step": step}));
        last = Some(c.id);
        Checkpointer::put(&backend, &t, &th, c, Default::default())
            .await
            .unwrap();
        assert_eq!(pointer(), last.unwrap().to_string());
    }
    std::fs::write(checkpoints.join("zzzz-not-a-checkpoint"), b"{").unwrap();
    let latest = |b: FsBackend| async move {
        Checkpointer::get(
            &b,
            &t_(),
            &th_(),
            persistence_core::CheckpointSelector::Latest,
        )
        .await
        .unwrap()
        .unwrap()
        .checkpoint
        .id
    };
    assert_eq!(Some(latest(backend.clone()).await), last);
    let c = common::checkpoint(last, 20, json!({}));
    let newest = c.id;
    Checkpointer::put(
        &backend,
        &t,
        &th,
        c,
        persistence_core::PutCheckpointOptions::default()
            .with_expect_latest(persistence_core::ExpectLatest::Is(last.unwrap())),
    )
    .await
    .unwrap();
    assert_eq!(latest(backend.clone()).await, newest);
    // A link planted to a file outside the store that names an older checkpoint is read
    // as text (not an id), never followed: the directory answers.
    let outside = tempfile::tempdir().unwrap();
    let planted = outside.path().join("pointer");
    std::fs::write(&planted, last.unwrap().to_string()).unwrap();
    std::fs::remove_file(checkpoints.join(".latest")).unwrap();
    std::os::unix::fs::symlink(&planted, checkpoints.join(".latest")).unwrap();
    assert_eq!(latest(backend.clone()).await, newest);
    // The next put replaces the link, never writes through it.
    let c = common::checkpoint(Some(newest), 21, json!({}));
    let newest = c.id;
    Checkpointer::put(&backend, &t, &th, c, Default::default())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        last.unwrap().to_string()
    );
    assert_eq!(pointer(), newest.to_string());
    // A pointer as format 5 wrote it (a link naming the id) still reads.
    std::fs::remove_file(checkpoints.join(".latest")).unwrap();
    std::os::unix::fs::symlink(newest.to_string(), checkpoints.join(".latest")).unwrap();
    assert_eq!(latest(backend.clone()).await, newest);
    // An older thread without the pointer: scanned, still right.
    std::fs::remove_file(checkpoints.join(".latest")).unwrap();
    assert_eq!(latest(backend.clone()).await, newest);
}

fn t_() -> TenantId {
    TenantId::new("t").unwrap()
}

fn th_() -> ThreadKey {
    ThreadKey::new("th").unwrap()
}

/// The process umask, from `/proc/self/status`.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).unwrap()
}

/// Every file and directory the backend creates has the configured mode (less the
/// umask): `0600`/`0700` by default, `0640`/`0750` for a store a group may read.
#[tokio::test]
async fn created_files_have_the_configured_modes() {
    for (file_mode, dir_mode, custom) in [(0o600, 0o700, false), (0o640, 0o750, true)] {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("root");
        let config = FsConfig::new(&root);
        let config = if custom {
            config.with_modes(file_mode, dir_mode)
        } else {
            config
        };
        let backend = FsBackend::open(config).unwrap();
        let (t, s) = common::one_event_session(&backend).await;
        backend.read(&t, &s, 0, 10).await.unwrap();
        let th = ThreadKey::new("th").unwrap();
        let c = common::checkpoint(None, 0, json!({}));
        Checkpointer::put(&backend, &t, &th, c, Default::default())
            .await
            .unwrap();
        let ns = Namespace::new(["ns"]).unwrap();
        Store::put(
            &backend,
            &t,
            &ns,
            &ItemKey::new("k").unwrap(),
            Envelope::new(1, json!(1)),
            Default::default(),
        )
        .await
        .unwrap();
        let lease = backend
            .try_acquire(&t, &LockKey::new("l").unwrap(), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        backend.trim_before(&t, &s, 1).await.unwrap();
        let mut all = Vec::new();
        walk(&root, &mut all);
        assert!(all.len() > 10, "{all:?}");
        for path in all {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions(),
            ) & 0o777;
            let want = if path.is_dir() { dir_mode } else { file_mode } & !umask();
            assert_eq!(mode, want, "{} is {mode:o}, want {want:o}", path.display());
        }
        drop(lease);
    }
}
