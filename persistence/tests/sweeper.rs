//! The sweeper: default and per-thread retention, bounded rounds that resume, one
//! sweeper at a time (two processes stood for by two backends on one directory), the
//! audit log, and a spawned sweeper that stops when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use persistence::{
    AUDIT_SESSION, CheckpointId, Envelope, ListCheckpoints, ManualClock, MemoryBackend,
    NewCheckpoint, Persistence, Retention, SYSTEM_TENANT, SessionKey, SweepConfig, Sweeper,
    TenantId, ThreadKey, Timestamp,
};
use serde_json::{Value, json};

const HOUR: u64 = 3_600_000;

fn ids(t: &str, th: &str) -> (TenantId, ThreadKey) {
    (TenantId::new(t).unwrap(), ThreadKey::new(th).unwrap())
}

/// Puts checkpoints minted `ago` milliseconds before `now`.
async fn put_at(p: &Persistence, t: &TenantId, th: &ThreadKey, now: Timestamp, agos: &[u64]) {
    for (step, ago) in agos.iter().enumerate() {
        let id = CheckpointId::last_of(Timestamp(now.0 - ago));
        let c = NewCheckpoint::new(id, step as i64, Envelope::new(1, json!({"step": step})));
        p.checkpointer
            .put(t, th, c, Default::default())
            .await
            .unwrap();
    }
}

async fn count(p: &Persistence, t: &TenantId, th: &ThreadKey) -> usize {
    p.checkpointer
        .list(t, th, ListCheckpoints::default())
        .await
        .unwrap()
        .items
        .len()
}

async fn audit(p: &Persistence, tenant: &str) -> Vec<Value> {
    p.sessions
        .read(
            &TenantId::new(tenant).unwrap(),
            &SessionKey::new(AUDIT_SESSION).unwrap(),
            0,
            1000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.data)
        .collect()
}

fn memory() -> (Persistence, ManualClock) {
    let (backend, _) = MemoryBackend::with_manual_clock();
    (
        Persistence::from_backend(backend),
        ManualClock::new(Timestamp::now()),
    )
}

#[tokio::test]
async fn a_round_applies_default_and_per_thread_policies_and_audits_them() {
    let (p, clock) = memory();
    let now = clock.now_for_test();
    let (t, busy) = ids("acme", "busy");
    let (_, own) = ids("acme", "own");
    let (_, idle) = ids("acme", "idle");
    put_at(&p, &t, &busy, now, &[5_000, 4_000, 3_000, 2_000, 1_000]).await;
    put_at(&p, &t, &own, now, &[5_000, 4_000, 3_000]).await;
    put_at(&p, &t, &idle, now, &[3 * HOUR, 2 * HOUR]).await;
    p.set_thread_retention(&t, &own, Some(&Retention::default().with_keep_last(1)))
        .await
        .unwrap();
    let config = SweepConfig::default()
        .with_retention(
            Retention::default()
                .with_keep_last(3)
                .with_thread_ttl(Duration::from_millis(HOUR)),
        )
        .with_clock(Arc::new(clock));
    let report = Sweeper::new(p.clone(), config)
        .round(&mut |_| {})
        .await
        .unwrap();
    assert!(report.ran && report.complete, "{report:?}");
    assert_eq!(
        (report.threads, report.checkpoints, report.threads_deleted),
        (3, 2 + 2 + 2, 1),
        "{report:?}"
    );
    assert_eq!(count(&p, &t, &busy).await, 3);
    assert_eq!(count(&p, &t, &own).await, 1);
    assert_eq!(count(&p, &t, &idle).await, 0);

    let events = audit(&p, "acme").await;
    let kinds: Vec<(&str, &str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["thread"].as_str().unwrap(),
                e["checkpoints"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("thread.pruned", "busy", 2),
            ("thread.deleted", "idle", 2),
            ("thread.pruned", "own", 2)
        ],
        "{events:?}"
    );
    let rounds = audit(&p, SYSTEM_TENANT).await;
    assert_eq!(rounds.len(), 1, "{rounds:?}");
    assert_eq!(rounds[0]["kind"], "sweep.round");
    assert_eq!(rounds[0]["threads_deleted"], 1);
    // No user data: every audit event is ids, kinds, reasons and counts.
    for e in events.iter().chain(&rounds) {
        for (field, value) in e.as_object().unwrap() {
            assert!(
                value.is_number() || value.is_boolean() || value.is_string(),
                "{field}: {value}"
            );
        }
    }
}

#[tokio::test]
async fn rounds_are_bounded_and_resume_where_they_stopped() {
    let (p, clock) = memory();
    let now = clock.now_for_test();
    let mut threads = Vec::new();
    for tenant in ["a", "b"] {
        for i in 0..12 {
            let (t, th) = ids(tenant, &format!("th{i:02}"));
            put_at(&p, &t, &th, now, &[3_000, 2_000, 1_000]).await;
            threads.push((t, th));
        }
    }
    let config = SweepConfig::default()
        .with_retention(Retention::default().with_keep_last(1))
        .with_threads_per_round(10)
        .with_clock(Arc::new(clock));
    let mut sweeper = Sweeper::new(p.clone(), config);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = sweeper.round(&mut |_| {}).await.unwrap();
        seen.push((r.threads, r.complete));
    }
    // 24 threads (and the system tenant's none), 10 per round.
    assert_eq!(seen, [(10, false), (10, false), (4, true)]);
    for (t, th) in &threads {
        assert_eq!(count(&p, t, th).await, 1, "{t}/{th}");
    }
    // The next round starts over, and finds nothing left to do.
    let r = sweeper.round(&mut |_| {}).await.unwrap();
    assert_eq!((r.threads, r.checkpoints), (10, 0));
}

#[tokio::test]
async fn sweep_all_runs_rounds_until_the_pass_is_complete() {
    let (p, clock) = memory();
    let now = clock.now_for_test();
    for i in 0..7 {
        let (t, th) = ids("a", &format!("th{i}"));
        put_at(&p, &t, &th, now, &[2_000, 1_000]).await;
    }
    let config = SweepConfig::default()
        .with_retention(Retention::default().with_keep_last(1))
        .with_threads_per_round(3)
        .with_clock(Arc::new(clock));
    let mut progress = Vec::new();
    let report = Sweeper::new(p.clone(), config)
        .sweep_all(&mut |step| progress.push(step.threads))
        .await
        .unwrap();
    assert!(report.complete && report.ran);
    assert_eq!((report.threads, report.checkpoints), (7, 7), "{report:?}");
    assert!(!progress.is_empty());
}

#[cfg(feature = "fs")]
#[tokio::test]
async fn only_one_sweeper_works_at_a_time_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Persistence::from_backend(
            persistence::fs::FsBackend::open(persistence::fs::FsConfig::new(dir.path())).unwrap(),
        )
    };
    let (first, second) = (open(), open());
    let (t, th) = ids("a", "th");
    put_at(&first, &t, &th, Timestamp::now(), &[2_000, 1_000]).await;
    // The documented name is the lock the sweeper takes.
    assert_eq!(
        persistence::LockKey::new(persistence::SWEEPER_LOCK).unwrap(),
        persistence::LockKey::for_session(&SessionKey::new(AUDIT_SESSION).unwrap())
    );
    // The first process's sweeper is mid-round: it holds the lease.
    let held = first
        .lock
        .try_acquire(
            &TenantId::new(SYSTEM_TENANT).unwrap(),
            &persistence::LockKey::new(persistence::SWEEPER_LOCK).unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .expect("the lease is free");
    let config = SweepConfig::default().with_retention(Retention::default().with_keep_last(1));
    let report = Sweeper::new(second.clone(), config.clone())
        .round(&mut |_| {})
        .await
        .unwrap();
    assert!(
        !report.ran,
        "a second sweeper ran next to the first: {report:?}"
    );
    assert_eq!(count(&second, &t, &th).await, 2);
    first.lock.release(&held).await.unwrap();
    let report = Sweeper::new(second.clone(), config)
        .round(&mut |_| {})
        .await
        .unwrap();
    assert!(report.ran && report.checkpoints == 1, "{report:?}");
}

#[tokio::test]
async fn a_spawned_sweeper_runs_rounds_and_stops_when_dropped() {
    let (p, _) = memory();
    let config = SweepConfig::default()
        .with_interval(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(5));
    let handle = Sweeper::new(p.clone(), config).spawn();
    let mut rounds = 0;
    for _ in 0..200 {
        rounds = audit(&p, SYSTEM_TENANT).await.len();
        if rounds >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rounds >= 2, "only {rounds} rounds ran");
    drop(handle);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped_at = audit(&p, SYSTEM_TENANT).await.len();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        audit(&p, SYSTEM_TENANT).await.len(),
        stopped_at,
        "rounds ran after the handle was dropped"
    );

    let handle = Sweeper::new(
        p.clone(),
        SweepConfig::default().with_interval(Duration::from_millis(20)),
    )
    .spawn();
    handle.stop().await;
}

#[tokio::test]
async fn invalid_policies_are_refused() {
    let (p, _) = memory();
    let (t, th) = ids("a", "th");
    let err = p
        .set_thread_retention(&t, &th, Some(&Retention::default().with_keep_last(0)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), persistence::ErrorKind::InvalidInput, "{err}");
    let err = Sweeper::new(
        p,
        SweepConfig::default().with_retention(Retention::default().with_max_age(Duration::ZERO)),
    )
    .round(&mut |_| {})
    .await
    .unwrap_err();
    assert_eq!(err.kind(), persistence::ErrorKind::InvalidInput, "{err}");
}

trait NowForTest {
    fn now_for_test(&self) -> Timestamp;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> Timestamp {
        persistence::Clock::now(self)
    }
}

/// A round renews its lease after every page; one that lost it (its process stalled
/// past the lease's time to live) stops with `LockLost` instead of sweeping next to
/// the sweeper that took over.
#[tokio::test]
async fn a_round_that_lost_its_lease_stops() {
    let (backend, backend_clock) = MemoryBackend::with_manual_clock();
    let p = Persistence::from_backend(backend);
    let now = Timestamp::now();
    for i in 0..501 {
        let (t, th) = ids("a", &format!("th{i:03}"));
        put_at(&p, &t, &th, now, &[2_000, 1_000]).await;
    }
    let config = SweepConfig::default()
        .with_retention(Retention::default().with_keep_last(1))
        .with_lease_ttl(Duration::from_secs(60));
    let mut stalled = false;
    let err = Sweeper::new(p.clone(), config.clone())
        .round(&mut |_| {
            if !stalled {
                // The process stalls after its first page: the lease runs out.
                backend_clock.advance(Duration::from_secs(120));
                stalled = true;
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), persistence::ErrorKind::LockLost, "{err}");
    let (t, last) = ids("a", "th500");
    assert_eq!(count(&p, &t, &last).await, 2, "the stalled round swept on");
    let report = Sweeper::new(p.clone(), config)
        .round(&mut |_| {})
        .await
        .unwrap();
    assert!(report.ran && report.threads == 501, "{report:?}");
}

/// A session whose TTL ran out is named in its tenant's audit log as the sweeper purges
/// it.
#[tokio::test]
async fn expired_sessions_are_recorded_as_they_are_purged() {
    let (backend, backend_clock) = MemoryBackend::with_manual_clock();
    let p = Persistence::from_backend(backend);
    let (t, s) = (
        TenantId::new("acme").unwrap(),
        SessionKey::new("chat").unwrap(),
    );
    let ttl = persistence::AppendOptions::default().with_ttl(Duration::from_secs(60));
    let event = vec![Envelope::new(1, json!({"user": "data"}))];
    p.sessions.append(&t, &s, event, ttl).await.unwrap();
    backend_clock.advance(Duration::from_secs(120));
    let report = Sweeper::new(p.clone(), SweepConfig::default())
        .round(&mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.sessions_purged, 1, "{report:?}");
    let events = audit(&p, "acme").await;
    assert_eq!(
        events,
        [json!({"kind": "session.expired", "session": "chat", "reason": "ttl"})],
        "{events:?}"
    );
}
