//! The suite is known to bite: deliberately broken variants of the in-memory backend
//! must fail the checks that guard the broken behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use persistence_conformance::{Fixture, SuiteReport, run_suite};
use persistence_core::{
    AppendOptions, Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector,
    CheckpointTuple, Checkpointer, CloseSession, Compaction, Envelope, Fence, Lease,
    ListCheckpoints, ListSessions, ListThreads, Lock, LockKey, MemoryBackend, NewCheckpoint, Page,
    PutCheckpointOptions, PutWrites, Result, SessionEvent, SessionInfo, SessionKey, SessionLog,
    TenantId, ThreadKey,
};

/// Lets a second holder in: when the lock is held, hands out a forged lease anyway.
struct SecondHolderLock(MemoryBackend);

#[async_trait]
impl Lock for SecondHolderLock {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        Ok(Some(match self.0.try_acquire(tenant, name, ttl).await? {
            Some(lease) => lease,
            None => Lease::new(
                tenant.clone(),
                name.clone(),
                "forged",
                Fence(1),
                persistence_core::Timestamp::now(),
            ),
        }))
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.0.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.0.release(lease).await
    }
}

/// Reuses ordinals: trimming rewrites the log so the survivors are renumbered from 1.
struct RenumberingLog(MemoryBackend);

#[async_trait]
impl SessionLog for RenumberingLog {
    async fn append(
        &self,
        t: &TenantId,
        s: &SessionKey,
        e: Vec<Envelope>,
        o: AppendOptions,
    ) -> Result<u64> {
        self.0.append(t, s, e, o).await
    }
    async fn read(
        &self,
        t: &TenantId,
        s: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        self.0.read(t, s, after, limit).await
    }
    async fn head(&self, t: &TenantId, s: &SessionKey) -> Result<u64> {
        self.0.head(t, s).await
    }
    async fn trim_before(&self, t: &TenantId, s: &SessionKey, seq: u64) -> Result<u64> {
        let kept = self.0.read(t, s, seq.saturating_sub(1), 10_000).await?;
        let before = self.0.read(t, s, 0, 10_000).await?.len();
        self.0.delete(t, s).await?;
        if !kept.is_empty() {
            let events = kept.iter().map(|e| e.event.clone()).collect();
            self.0
                .append(t, s, events, AppendOptions::default())
                .await?;
        }
        Ok((before - kept.len()) as u64)
    }
    async fn delete(&self, t: &TenantId, s: &SessionKey) -> Result<bool> {
        self.0.delete(t, s).await
    }
    async fn list_sessions(&self, t: &TenantId, q: ListSessions) -> Result<Page<SessionKey>> {
        self.0.list_sessions(t, q).await
    }
    async fn session_info(&self, t: &TenantId, s: &SessionKey) -> Result<Option<SessionInfo>> {
        self.0.session_info(t, s).await
    }
    async fn close_session(
        &self,
        t: &TenantId,
        s: &SessionKey,
        o: CloseSession,
    ) -> Result<SessionInfo> {
        self.0.close_session(t, s, o).await
    }
    async fn compact(&self, t: &TenantId, s: &SessionKey, c: Compaction) -> Result<u64> {
        self.0.compact(t, s, c).await
    }
}

/// Ignores fences and tenants on checkpoints: every tenant writes into one shared space.
struct LeakyCheckpointer(MemoryBackend);

fn shared() -> TenantId {
    TenantId::new("shared").unwrap_or_else(|_| unreachable!())
}

#[async_trait]
impl Checkpointer for LeakyCheckpointer {
    async fn put(
        &self,
        _: &TenantId,
        th: &ThreadKey,
        c: NewCheckpoint,
        o: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let mut o = o;
        o.lease = None;
        self.0.put(&shared(), th, c, o).await
    }
    async fn get(
        &self,
        _: &TenantId,
        th: &ThreadKey,
        s: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        self.0.get(&shared(), th, s).await
    }
    async fn list(
        &self,
        _: &TenantId,
        th: &ThreadKey,
        q: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        self.0.list(&shared(), th, q).await
    }
    async fn put_writes(&self, _: &TenantId, th: &ThreadKey, r: PutWrites) -> Result<()> {
        let mut r = r;
        r.lease = None;
        self.0.put_writes(&shared(), th, r).await
    }
    async fn delete_thread(&self, _: &TenantId, th: &ThreadKey) -> Result<bool> {
        self.0.delete_thread(&shared(), th).await
    }
    async fn prune(&self, _: &TenantId, th: &ThreadKey, keep: usize) -> Result<u64> {
        self.0.prune(&shared(), th, keep).await
    }
    async fn copy_thread(&self, _: &TenantId, from: &ThreadKey, to: &ThreadKey) -> Result<u64> {
        self.0.copy_thread(&shared(), from, to).await
    }
    async fn list_threads(&self, _: &TenantId, q: ListThreads) -> Result<Page<ThreadKey>> {
        self.0.list_threads(&shared(), q).await
    }
    async fn prune_through(&self, _: &TenantId, th: &ThreadKey, id: &CheckpointId) -> Result<u64> {
        self.0.prune_through(&shared(), th, id).await
    }
}

/// The fencing of 0.1: any lease's fence is taken as the written thread's or session's,
/// whatever lock or tenant it came from (rebinds the lease to the right lock, so the
/// memory backend sees only its fence).
#[derive(Clone)]
struct UnboundFences(MemoryBackend);

fn rebound(lease: &mut Option<Lease>, tenant: &TenantId, name: LockKey) {
    if let Some(lease) = lease {
        lease.tenant = tenant.clone();
        lease.name = name;
    }
}

#[async_trait]
impl Checkpointer for UnboundFences {
    async fn put(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        c: NewCheckpoint,
        o: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        let mut o = o;
        rebound(&mut o.lease, t, LockKey::for_thread(th));
        self.0.put(t, th, c, o).await
    }
    async fn get(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        s: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        self.0.get(t, th, s).await
    }
    async fn list(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        q: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        self.0.list(t, th, q).await
    }
    async fn put_writes(&self, t: &TenantId, th: &ThreadKey, r: PutWrites) -> Result<()> {
        let mut r = r;
        rebound(&mut r.lease, t, LockKey::for_thread(th));
        self.0.put_writes(t, th, r).await
    }
    async fn delete_thread(&self, t: &TenantId, th: &ThreadKey) -> Result<bool> {
        self.0.delete_thread(t, th).await
    }
    async fn prune(&self, t: &TenantId, th: &ThreadKey, keep: usize) -> Result<u64> {
        self.0.prune(t, th, keep).await
    }
    async fn copy_thread(&self, t: &TenantId, from: &ThreadKey, to: &ThreadKey) -> Result<u64> {
        self.0.copy_thread(t, from, to).await
    }
    async fn list_threads(&self, t: &TenantId, q: ListThreads) -> Result<Page<ThreadKey>> {
        self.0.list_threads(t, q).await
    }
    async fn prune_through(&self, t: &TenantId, th: &ThreadKey, id: &CheckpointId) -> Result<u64> {
        self.0.prune_through(t, th, id).await
    }
    async fn replace_payload(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        p: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        self.0.replace_payload(t, th, p, expected, new).await
    }
}

fn memory_parts() -> (Fixture, MemoryBackend) {
    let (backend, clock) = MemoryBackend::with_manual_clock();
    let caps = backend.capabilities();
    let fx = Fixture::new(
        "broken",
        backend.clone(),
        caps,
        persistence_conformance::TimeControl::Manual(clock),
    );
    (fx, backend)
}

fn assert_fails(report: &SuiteReport, checks: &[&str]) {
    let failed: Vec<&str> = report.failed.iter().map(|(name, _)| *name).collect();
    for check in checks {
        assert!(
            failed.contains(check),
            "{check} did not catch the broken backend; failed: {failed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthy_memory_backend_passes_everything() {
    let report = run_suite(|| async { Fixture::memory() }).await;
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(report.passed.len() >= 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_lock_holder_is_caught() {
    let report = run_suite(|| async {
        let (mut fx, backend) = memory_parts();
        fx.lock = Arc::new(SecondHolderLock(backend));
        fx
    })
    .await;
    assert_fails(
        &report,
        &[
            "lock_try_acquire_is_exclusive",
            "concurrency_one_lock_holder",
            "tenancy_hostile_lock_names",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reused_ordinals_are_caught() {
    let report = run_suite(|| async {
        let (mut fx, backend) = memory_parts();
        fx.sessions = Arc::new(RenumberingLog(backend));
        fx
    })
    .await;
    assert_fails(
        &report,
        &[
            "session_trim_never_reuses_ordinals",
            "session_trim_beyond_head",
        ],
    );
}

/// The fencing of 0.1 took a fence from any lock: a higher fence of another lock locked
/// the rightful holder out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fences_of_another_lock_are_caught() {
    let report = run_suite(|| async {
        let (mut fx, backend) = memory_parts();
        fx.checkpointer = Arc::new(UnboundFences(backend));
        fx
    })
    .await;
    assert_fails(&report, &["lock_lease_of_another_lock_refused"]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ignored_tenants_and_fences_are_caught() {
    let report = run_suite(|| async {
        let (mut fx, backend) = memory_parts();
        fx.checkpointer = Arc::new(LeakyCheckpointer(backend));
        fx
    })
    .await;
    assert_fails(
        &report,
        &[
            "tenancy_checkpoints_isolated",
            "tenancy_hostile_ids_never_collide",
            "checkpoint_fenced_put",
            "checkpoint_fenced_put_writes",
            "lock_lease_of_another_lock_refused",
            "checkpoint_fence_survives_delete",
        ],
    );
}

#[test]
#[should_panic(expected = "model test diverged")]
fn the_model_test_catches_a_leaky_checkpointer() {
    persistence_conformance::model::check_model_with_seed(
        || async {
            let (mut fx, backend) = memory_parts();
            fx.checkpointer = Arc::new(LeakyCheckpointer(backend));
            fx
        },
        200,
        persistence_conformance::model::DEFAULT_SEED,
    );
}

#[test]
#[should_panic(expected = "model test diverged")]
fn the_model_test_catches_reused_ordinals() {
    persistence_conformance::model::check_model_with_seed(
        || async {
            let (mut fx, backend) = memory_parts();
            fx.sessions = Arc::new(RenumberingLog(backend));
            fx
        },
        200,
        persistence_conformance::model::DEFAULT_SEED,
    );
}
