//! Leases: `SET NX PX` of the holder's token plus `INCR` of a fence counter without TTL,
//! in one script; renew and release compare the token.

use std::time::Duration;

use async_trait::async_trait;
use persistence_core::backend::{new_lease_token, validate_ttl};
use persistence_core::{Error, Fence, Lease, Lock, LockKey, Result, TenantId, Timestamp};

use crate::error::{BACKEND, Effect, map};
use crate::{RedisBackend, invocation, parse_u64, scripts};

#[async_trait]
impl Lock for RedisBackend {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let key = format!("{tenant}/{name}");
        let ttl = validate_ttl("lease ttl", ttl)
            .map_err(|e| e.context(BACKEND, "lock.try_acquire", &key))?;
        let (lease_key, fence_key) = self.keys.lease(tenant, name);
        let token = new_lease_token();
        let reply: Option<(String, String)> = self
            .invoke(invocation!(
                scripts::LEASE_ACQUIRE,
                [&lease_key, &fence_key],
                [&token, ttl.as_millis().to_string()]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, "lock.try_acquire", &key))?;
        let Some((fence, expires)) = reply else {
            return Ok(None);
        };
        let lease = Lease::new(
            tenant.clone(),
            name.clone(),
            token,
            Fence(parse_u64(&fence, "lock.try_acquire", &key)?),
            Timestamp(parse_u64(&expires, "lock.try_acquire", &key)?),
        );
        if let Err(unconfirmed) = self.confirm_write("lock.try_acquire", &key).await {
            // Nobody will ever hold this token: free the lock now rather than leave it
            // held for its whole TTL. (If this release fails too, the lease lapses.)
            let _ = self.release(&lease).await;
            return Err(unconfirmed);
        }
        Ok(Some(lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let key = format!("{}/{}", lease.tenant, lease.name);
        let ttl =
            validate_ttl("lease ttl", ttl).map_err(|e| e.context(BACKEND, "lock.renew", &key))?;
        let (lease_key, _) = self.keys.lease(&lease.tenant, &lease.name);
        let reply: Option<String> = self
            .read("lock.renew", &key, || {
                self.invoke(invocation!(
                    scripts::LEASE_RENEW,
                    [&lease_key],
                    [&lease.token, ttl.as_millis().to_string()]
                ))
            })
            .await?;
        match reply {
            Some(expires) => {
                let mut renewed = lease.clone();
                renewed.expires_at = Timestamp(parse_u64(&expires, "lock.renew", &key)?);
                Ok(renewed)
            }
            None => Err(Error::lock_lost("lease expired or was taken over").context(
                BACKEND,
                "lock.renew",
                key,
            )),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let key = format!("{}/{}", lease.tenant, lease.name);
        let (lease_key, _) = self.keys.lease(&lease.tenant, &lease.name);
        let deleted: u64 = self
            .read("lock.release", &key, || {
                self.invoke(invocation!(
                    scripts::LEASE_RELEASE,
                    [&lease_key],
                    [&lease.token]
                ))
            })
            .await?;
        Ok(deleted > 0)
    }
}
