//! Leases with fencing tokens, so one worker owns a thread at a time.
//!
//! A [`Lease`] carries a random token (proof of ownership for `renew`/`release`) and a
//! [`Fence`]: a number that strictly increases per (tenant, name) across all holders and
//! survives restarts. Only the order of fences is part of the contract: backends may
//! floor them at a clock (Postgres and Redis do, so that a lost counter cannot repeat a
//! value). Pass the lease to checkpoint and session writes (a lease of the written
//! thread's or session's own lock, [`LockKey::for_thread`] / [`LockKey::for_session`]):
//! a worker that lost its lease and still writes is refused with `Fenced` once a newer
//! holder has written, and a lease of another lock is refused with `InvalidInput`.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{LockKey, TenantId};
use crate::time::Timestamp;

mod with_lock;
pub use with_lock::{HeldLease, with_lock};

/// A fencing token: higher means a newer holder.
///
/// Fences range over `0..=Fence::MAX` (`i64::MAX`) on every backend, so that each can
/// store and compare them exactly (Postgres `bigint`, Redis strings compared digit by
/// digit, not as Lua doubles). A write carrying a fence above [`Fence::MAX`] fails
/// `InvalidInput` on every backend and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fence(pub u64);

impl Fence {
    /// The greatest fence any backend hands out or accepts: `i64::MAX`.
    pub const MAX: Fence = Fence(i64::MAX as u64);

    /// This fence if it is within `0..=Fence::MAX`.
    ///
    /// # Errors
    /// `InvalidInput` naming the value when it is above [`Fence::MAX`].
    pub fn checked(self) -> Result<Fence> {
        if self > Fence::MAX {
            return Err(Error::invalid_input(format!(
                "fence {} is above the greatest fence {}",
                self.0,
                Fence::MAX.0
            )));
        }
        Ok(self)
    }
}

/// Checks an optional fence of a write against [`Fence::MAX`]; backends call it before
/// writing.
///
/// # Errors
/// As [`Fence::checked`].
pub fn validate_fence(fence: Option<Fence>) -> Result<Option<Fence>> {
    fence.map(Fence::checked).transpose()
}

/// Proof of holding a lock until `expires_at`.
///
/// Pass it (not just its fence) to fenced writes: [`PutCheckpointOptions::with_lease`],
/// [`PutWrites::with_lease`] and [`AppendOptions::with_lease`] accept only a lease of the
/// written thread's or session's own lock ([`LockKey::for_thread`],
/// [`LockKey::for_session`]) under the same tenant, so a lease of another lock is
/// `InvalidInput` instead of a raised high-water mark that locks the rightful holder out.
///
/// `Debug` does not print the token: it is the proof of ownership.
///
/// [`PutCheckpointOptions::with_lease`]: crate::PutCheckpointOptions::with_lease
/// [`PutWrites::with_lease`]: crate::PutWrites::with_lease
/// [`AppendOptions::with_lease`]: crate::AppendOptions::with_lease
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// Tenant of the lock.
    pub tenant: TenantId,
    /// Lock name.
    pub name: LockKey,
    /// Random token identifying this holder.
    pub token: String,
    /// Fence of this holder.
    pub fence: Fence,
    /// Expiry by the backend's clock.
    pub expires_at: Timestamp,
}

impl Lease {
    /// A lease as a [`Lock`] hands it out. Backends build leases with this; callers get
    /// theirs from [`Lock::try_acquire`], [`Lock::acquire`] or [`with_lock`].
    pub fn new(
        tenant: TenantId,
        name: LockKey,
        token: impl Into<String>,
        fence: Fence,
        expires_at: Timestamp,
    ) -> Self {
        Lease {
            tenant,
            name,
            token: token.into(),
            fence,
            expires_at,
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .field("fence", &self.fence)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A random 128-bit token, hex encoded.
pub fn new_lease_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// How [`Lock::acquire`] and [`with_lock`] wait and hold.
///
/// ```
/// use std::time::Duration;
/// use persistence_core::LockOptions;
///
/// let options = LockOptions::default()
///     .with_ttl(Duration::from_secs(10))
///     .with_wait(Duration::from_secs(2));
/// assert_eq!(options.ttl, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LockOptions {
    /// Lease time to live; renewed every `ttl / 3` by `with_lock`. Default 30 s.
    pub ttl: Duration,
    /// How long to wait for a held lock before `Timeout`. Default 10 s.
    pub wait: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            wait: Duration::from_secs(10),
        }
    }
}

impl LockOptions {
    /// Same, with the lease time to live set to `ttl`.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// Same, waiting up to `wait` for a held lock.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// Leases keyed by tenant and lock name.
#[async_trait]
pub trait Lock: Send + Sync {
    /// Takes the lock if it is free (never held, released, or expired). `None` if another
    /// holder has it. A new holder always gets a higher fence than every earlier one.
    ///
    /// # Errors
    /// `InvalidInput` for a TTL outside 1 ms..=10 years.
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>>;

    /// Extends a held lease to `ttl` from now. Returns the updated lease.
    ///
    /// # Errors
    /// `LockLost` if the lease expired or another holder took the lock.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;

    /// Frees the lock if `lease` still holds it. Returns `false`, changing nothing, when
    /// the lease was already lost: a late release never frees the next holder.
    async fn release(&self, lease: &Lease) -> Result<bool>;

    /// Waits up to `options.wait` for the lock, retrying with exponential backoff and
    /// jitter.
    ///
    /// # Errors
    /// `Timeout` when still held by another after `wait`.
    async fn acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        options: LockOptions,
    ) -> Result<Lease> {
        acquire_with_backoff(self, tenant, name, options).await
    }
}

/// The default [`Lock::acquire`]: `try_acquire` until it succeeds or `options.wait`
/// runs out, sleeping with exponential backoff (5 ms doubling to 500 ms) plus up to 50 %
/// random jitter so waiting workers do not retry in lockstep. Backends that override
/// `acquire` (to explain who holds the lock, say) call this.
///
/// # Errors
/// `Timeout` when still held after `wait`; errors of `try_acquire`.
pub async fn acquire_with_backoff<L: Lock + ?Sized>(
    lock: &L,
    tenant: &TenantId,
    name: &LockKey,
    options: LockOptions,
) -> Result<Lease> {
    let start = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        if let Some(lease) = lock.try_acquire(tenant, name, options.ttl).await? {
            return Ok(lease);
        }
        let waited = start.elapsed();
        if waited >= options.wait {
            return Err(Error::timeout(format!(
                "lock is held by another holder; gave up after {waited:?}"
            ))
            .context("core", "lock.acquire", format!("{tenant}/{name}")));
        }
        let jitter_ms = fastrand::u64(0..=backoff.as_millis() as u64 / 2);
        let sleep = (backoff + Duration::from_millis(jitter_ms)).min(options.wait - waited);
        tokio::time::sleep(sleep).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// A shared lock is a lock: `Arc<dyn Lock>` (what the facade hands out) and `Arc<B>`
/// work wherever a `Lock` does, [`with_lock`] included.
#[async_trait]
impl<T: Lock + ?Sized> Lock for std::sync::Arc<T> {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        (**self).try_acquire(tenant, name, ttl).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        (**self).renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        (**self).release(lease).await
    }
    async fn acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        options: LockOptions,
    ) -> Result<Lease> {
        (**self).acquire(tenant, name, options).await
    }
}
