//! [`with_lock`]: work under a lease that is renewed while it runs, handed a
//! [`HeldLease`] that follows the renewals, and released however the work ends,
//! including when the caller drops the future (a timeout).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Fence, Lease, Lock, LockOptions};
use crate::error::{Error, ErrorKind};
use crate::ids::{LockKey, TenantId};
use crate::time::Timestamp;

/// The lease [`with_lock`] holds while its work runs: the lease as last renewed (so
/// [`expires_at`](Self::expires_at) moves on with each renewal; the lease handed out at
/// acquire would go stale) and whether it has been lost. Cheap to clone; every clone
/// sees the same lease.
#[derive(Debug, Clone)]
pub struct HeldLease {
    current: Arc<Mutex<Lease>>,
    lost: Arc<AtomicBool>,
}

impl HeldLease {
    fn new(lease: Lease) -> Self {
        HeldLease {
            current: Arc::new(Mutex::new(lease)),
            lost: Arc::new(AtomicBool::new(false)),
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// The lease as last renewed (token, fence, current expiry).
    pub fn lease(&self) -> Lease {
        self.lock().clone()
    }
    /// The fence to pass to writes (it never changes while the lease is held).
    pub fn fence(&self) -> Fence {
        self.lock().fence
    }
    /// Expiry by the backend's clock, as of the last renewal.
    pub fn expires_at(&self) -> Timestamp {
        self.lock().expires_at
    }
    /// Whether the lease is known lost (then [`with_lock`] stops the work at its next
    /// await and returns `LockLost`): check it before an effect outside the storage
    /// that a fence cannot guard.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Releases the lease when dropped armed: the caller dropped [`with_lock`]'s future
/// (a timeout, a `select!`). The release runs as a task of the current runtime.
struct ReleaseOnDrop<L: Lock + Clone + 'static> {
    lock: L,
    held: HeldLease,
    armed: bool,
}

impl<L: Lock + Clone + 'static> Drop for ReleaseOnDrop<L> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (lock, lease) = (self.lock.clone(), self.held.lease());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // A failed release only means the lease lapses at its TTL.
            runtime.spawn(async move {
                let _ = lock.release(&lease).await;
            });
        }
    }
}

/// Runs `work` while holding the lock `name`, renewing the lease in the background.
///
/// `work` gets a [`HeldLease`]; pass its [`fence`](HeldLease::fence) to writes.
/// Renewal runs every `ttl / 3` on the same task, concurrently with `work`; transient
/// renewal errors are retried, each attempt bounded by the lease's remaining validity,
/// until just before the lease would lapse. If the lease is lost (or can no longer be
/// proven held, e.g. the backend stopped answering), `work` is dropped (stopped at its
/// next await) and `LockLost` is returned. The lease is released when `work` finishes,
/// and also when this future is dropped before that (a caller's timeout): then the
/// release runs as a task of the current tokio runtime, so other workers do not wait
/// for the TTL.
///
/// `lock` is anything that is a [`Lock`] and can be cloned into that task: a backend,
/// or the facade's `Arc<dyn Lock>`.
///
/// # Errors
/// `Timeout` if the lock is not acquired within `options.wait`; `LockLost` if the lease
/// is lost while `work` runs; whatever `work` returns.
pub async fn with_lock<L, T, E, F, Fut>(
    lock: &L,
    tenant: &TenantId,
    name: &LockKey,
    options: LockOptions,
    work: F,
) -> std::result::Result<T, E>
where
    L: Lock + Clone + 'static,
    F: FnOnce(HeldLease) -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: From<Error>,
{
    let lease = lock.acquire(tenant, name, options).await?;
    let mut guard = ReleaseOnDrop {
        lock: lock.clone(),
        held: HeldLease::new(lease),
        armed: true,
    };
    let held = guard.held.clone();
    let outcome = tokio::select! {
        result = work(held.clone()) => Ok(result),
        lost = keep_renewed(lock, &held, options.ttl) => Err(lost),
    };
    match outcome {
        Ok(result) => {
            // A failed release only means the lease lapses at its TTL. The guard stays
            // armed until it is done: dropped while releasing, it releases again.
            let _ = lock.release(&held.lease()).await;
            guard.armed = false;
            result
        }
        Err(lost) => {
            // Lost: there is nothing left to release.
            guard.armed = false;
            // Why is the source (the renewal's own error), not repeated here.
            Err(
                Error::lock_lost("lease was lost while the work was running")
                    .context("core", "lock.with_lock", format!("{tenant}/{name}"))
                    .with_source(lost)
                    .into(),
            )
        }
    }
}

/// Renews `held` until renewal fails for good (then marks it lost); returns the error
/// that ended it.
///
/// The lease is known valid until `ttl` after the last successful renewal was *sent*
/// (not answered): the backend judged its expiry from a later moment, so this estimate
/// errs early. Attempts start a period after the previous one was sent, however long
/// that one took, and each has its own deadline a twentieth of the TTL (slack for clocks
/// and timers) before the estimate, so a backend that hangs (a paused server, a lost network)
/// ends the work as `LockLost` while the lease is still ours, never after it lapsed.
async fn keep_renewed<L: Lock + ?Sized>(lock: &L, held: &HeldLease, ttl: Duration) -> Error {
    let period = (ttl / 3).max(Duration::from_millis(1));
    let margin = ttl / 20;
    let start = tokio::time::Instant::now();
    let mut valid_until = start + ttl;
    let mut next = start + period;
    loop {
        let give_up_at = valid_until.checked_sub(margin).unwrap_or(valid_until);
        tokio::time::sleep_until(next.min(give_up_at)).await;
        let sent = tokio::time::Instant::now();
        if sent >= give_up_at {
            held.lost.store(true, Ordering::SeqCst);
            return Error::lock_lost("the lease could not be renewed before it would lapse");
        }
        next = sent + period;
        match tokio::time::timeout_at(give_up_at, lock.renew(&held.lease(), ttl)).await {
            Ok(Ok(renewed)) => {
                valid_until = sent + ttl;
                *held.lock() = renewed;
            }
            Ok(Err(e)) if e.kind() == ErrorKind::LockLost => {
                held.lost.store(true, Ordering::SeqCst);
                return e;
            }
            Ok(Err(_)) => {}
            Err(_) => {
                held.lost.store(true, Ordering::SeqCst);
                return Error::lock_lost("renewing the lease did not finish before it would lapse");
            }
        }
    }
}

impl dyn Lock {
    /// [`with_lock`] on the facade's `Arc<dyn Lock>` (`p.lock.with_lock(...)`).
    ///
    /// # Errors
    /// As [`with_lock`].
    pub async fn with_lock<T, E, F, Fut>(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: &LockKey,
        options: LockOptions,
        work: F,
    ) -> std::result::Result<T, E>
    where
        F: FnOnce(HeldLease) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
    {
        with_lock(self, tenant, name, options, work).await
    }
}
