//! What a repeated append costs in system calls. Alone in its binary: it reads the
//! process's own I/O counters (`/proc/self/io`), which other tests running in the same
//! process would move.

#![allow(clippy::unwrap_used, missing_docs)]

use persistence_core::{AppendOptions, Envelope, SessionKey, SessionLog, TenantId};
use persistence_fs::{FsBackend, FsConfig};

/// Read-family system calls (`read`, `pread`, ...) this process has made so far.
fn read_calls() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .and_then(|v| v.trim().parse().ok())
}

/// An agent appends to the same session again and again: after the first append the
/// process keeps the session's files open and knows their state, so a later append
/// checks them with `statx`, reads back only the last record (one `pread`) and writes
/// (it used to make eight reads of records and index entries).
#[tokio::test]
async fn a_repeated_append_reads_only_the_last_record() {
    if read_calls().is_none() {
        // CI (`PERSISTENCE_TEST_REQUIRE` set) runs on Linux with task I/O accounting:
        // there a missing counter is a failure, not a pass.
        assert!(
            std::env::var_os("PERSISTENCE_TEST_REQUIRE").is_none(),
            "/proc/self/io is not readable, and PERSISTENCE_TEST_REQUIRE is set"
        );
        eprintln!("SKIPPED: /proc/self/io is not readable here (no task I/O accounting)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = FsBackend::open(FsConfig::new(dir.path())).unwrap();
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    let append = || {
        backend.append(
            &t,
            &s,
            vec![Envelope::new(1, serde_json::json!({"n": 1}))],
            AppendOptions::default(),
        )
    };
    for _ in 0..3 {
        append().await.unwrap();
    }
    const APPENDS: u64 = 50;
    let before = read_calls().unwrap();
    for _ in 0..APPENDS {
        append().await.unwrap();
    }
    let reads = read_calls().unwrap() - before;
    assert!(
        reads <= APPENDS + APPENDS / 5,
        "{reads} read calls for {APPENDS} appends to a session this process keeps open"
    );
    assert_eq!(backend.head(&t, &s).await.unwrap(), APPENDS + 3);
}
