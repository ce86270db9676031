use std::time::Duration;

use async_trait::async_trait;

use super::{HeldLease, MemoryBackend, ctx};
use crate::error::{Error, Result};
use crate::ids::{LockKey, TenantId};
use crate::lock::{Fence, Lease, Lock, new_lease_token};
use crate::time::validate_ttl;

#[async_trait]
impl Lock for MemoryBackend {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let ttl = validate_ttl("lease ttl", ttl)
            .map_err(ctx("lock.try_acquire", format!("{tenant}/{name}")))?;
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            if t.leases.get(name).is_some_and(|l| l.expires_at > now) {
                return None;
            }
            let fence = t.lock_fences.entry(name.clone()).or_insert(0);
            *fence += 1;
            let held = HeldLease {
                token: new_lease_token(),
                fence: *fence,
                expires_at: now.saturating_add(ttl),
            };
            let lease = Lease {
                tenant: tenant.clone(),
                name: name.clone(),
                token: held.token.clone(),
                fence: Fence(held.fence),
                expires_at: held.expires_at,
            };
            t.leases.insert(name.clone(), held);
            Some(lease)
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let key = format!("{}/{}", lease.tenant, lease.name);
        let ttl = validate_ttl("lease ttl", ttl).map_err(ctx("lock.renew", &key))?;
        let now = self.now();
        self.with_tenant(&lease.tenant, |t| match t.leases.get_mut(&lease.name) {
            Some(held) if held.token == lease.token && held.expires_at > now => {
                held.expires_at = now.saturating_add(ttl);
                Ok(Lease {
                    expires_at: held.expires_at,
                    ..lease.clone()
                })
            }
            _ => Err(Error::lock_lost("lease expired or was taken over")),
        })
        .map_err(ctx("lock.renew", key))
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let now = self.now();
        Ok(
            self.with_tenant(&lease.tenant, |t| match t.leases.get(&lease.name) {
                Some(held) if held.token == lease.token => {
                    let was_held = held.expires_at > now;
                    t.leases.remove(&lease.name);
                    was_held
                }
                _ => false,
            }),
        )
    }
}
