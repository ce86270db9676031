//! Leases: rows judged by the database clock; acquire, renew and release are one
//! statement each.

use std::time::Duration;

use async_trait::async_trait;
use persistence_core::backend::{new_lease_token, validate_ttl};
use persistence_core::{Error, Fence, Lease, Lock, LockKey, Result, TenantId, Timestamp};
use serde::Deserialize;
use sqlx::types::Json;

use crate::PgBackend;
use crate::error::{BACKEND, map};

const ACQUIRE: &str = "SELECT persistence.lease_acquire($1, $2, $3, $4)";
const RENEW: &str = "SELECT persistence.lease_renew($1, $2, $3, $4)";
const RELEASE: &str = "SELECT persistence.lease_release($1, $2, $3)";

#[derive(Deserialize)]
struct Acquired {
    fence: u64,
    expires_at: Timestamp,
}

fn ttl_ms(ttl: Duration, operation: &'static str, key: &str) -> Result<i64> {
    validate_ttl("lease ttl", ttl)
        .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
        .map_err(|e| e.context(BACKEND, operation, key))
}

#[async_trait]
impl Lock for PgBackend {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let key = format!("{tenant}/{name}");
        let ttl = ttl_ms(ttl, "lock.try_acquire", &key)?;
        let token = new_lease_token();
        let row: Option<Json<Acquired>> = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(ACQUIRE)
                .bind(tenant.as_str())
                .bind(name.as_str())
                .bind(&token)
                .bind(ttl)
        )
        .map_err(|e| map(e, "lock.try_acquire", &key))?;
        Ok(row.map(|Json(a)| {
            Lease::new(
                tenant.clone(),
                name.clone(),
                token,
                Fence(a.fence),
                a.expires_at,
            )
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let key = format!("{}/{}", lease.tenant, lease.name);
        let ttl = ttl_ms(ttl, "lock.renew", &key)?;
        let expires: Option<i64> = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(RENEW)
                .bind(lease.tenant.as_str())
                .bind(lease.name.as_str())
                .bind(&lease.token)
                .bind(ttl)
        )
        .map_err(|e| map(e, "lock.renew", &key))?;
        match expires {
            Some(ms) => {
                let mut renewed = lease.clone();
                renewed.expires_at = Timestamp(ms.max(0) as u64);
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
        crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(RELEASE)
                .bind(lease.tenant.as_str())
                .bind(lease.name.as_str())
                .bind(&lease.token)
        )
        .map_err(|e| {
            map(
                e,
                "lock.release",
                format!("{}/{}", lease.tenant, lease.name),
            )
        })
    }
}
