//! Leases in files. A lease names its owner process as `HOSTNAME:PID:START_TIME`; the
//! start time (from `/proc/<pid>/stat`) keeps a recycled PID from passing for the owner.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::{
    Error, ErrorKind, Fence, Lease, Lock, LockKey, LockOptions, Result, TenantId, Timestamp,
    acquire_with_backoff, new_lease_token, validate_ttl,
};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::{FsBackend, Inner};

/// The `HOSTNAME:PID:START_TIME` of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22); 0 if unknown.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessIdentity {
            host: hostname(),
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    /// Parses `HOSTNAME:PID:START_TIME`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.rsplitn(3, ':');
        let start_time = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        (!host.is_empty()).then_some(ProcessIdentity {
            host,
            pid,
            start_time,
        })
    }

    /// Whether this process is proven dead: same host as `me`, and no process with this
    /// PID and start time exists. A process on another host is never proven dead.
    pub fn is_proven_dead(&self, me: &ProcessIdentity) -> bool {
        if self.host != me.host || !Path::new("/proc/self/stat").exists() {
            return false;
        }
        match start_time(self.pid) {
            None => true,
            Some(t) => t != self.start_time,
        }
    }
}

impl std::fmt::Display for ProcessIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.start_time)
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Field 22 of `/proc/<pid>/stat`, `None` if the process does not exist.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The lease file's content.
#[derive(Serialize, Deserialize)]
struct LeaseFile {
    owner: String,
    token: String,
    fence: u64,
    expires_at: Timestamp,
}

fn read_lease(path: &Path) -> Result<Option<(LeaseFile, ProcessIdentity)>> {
    let Some(bytes) = files::read_optional(path).at(path)? else {
        return Ok(None);
    };
    let lease: LeaseFile = serde_json::from_slice(&bytes).map_err(|e| {
        corrupt(
            path,
            format!("lease file is not a lease ({e}); remove it once no worker holds the lock"),
        )
    })?;
    let owner = ProcessIdentity::parse(&lease.owner).ok_or_else(|| {
        corrupt(
            path,
            format!(
                "lease owner {:?} is not HOSTNAME:PID:START_TIME",
                lease.owner
            ),
        )
    })?;
    Ok(Some((lease, owner)))
}

impl Inner {
    fn try_acquire(&self, t: &TenantId, name: &LockKey, ttl: Duration) -> Result<Option<Lease>> {
        let ttl = validate_ttl("lease ttl", ttl)?;
        let (lock, lease_path, fence_path) = self.layout.lease(t, name);
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        let now = Timestamp::now();
        if let Some((held, owner)) = read_lease(&lease_path)?
            && held.expires_at > now
            && !owner.is_proven_dead(&self.me)
        {
            return Ok(None);
        }
        let previous = files::read_counter(&fence_path)
            .at(&fence_path)?
            .map_err(|m| corrupt(&fence_path, m))?;
        let fence = previous + 1;
        files::write_counter(&fence_path, fence, self.durability).at(&fence_path)?;
        let file = LeaseFile {
            owner: self.me.to_string(),
            token: new_lease_token(),
            fence,
            expires_at: now.saturating_add(ttl),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| Error::backend_error(e.to_string()))?;
        files::write_atomic(&lease_path, &bytes, self.durability).at(&lease_path)?;
        Ok(Some(Lease {
            tenant: t.clone(),
            name: name.clone(),
            token: file.token,
            fence: Fence(fence),
            expires_at: file.expires_at,
        }))
    }

    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let ttl = validate_ttl("lease ttl", ttl)?;
        let (lock, lease_path, _) = self.layout.lease(&lease.tenant, &lease.name);
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        let now = Timestamp::now();
        match read_lease(&lease_path)? {
            Some((mut held, _)) if held.token == lease.token && held.expires_at > now => {
                held.expires_at = now.saturating_add(ttl);
                let bytes =
                    serde_json::to_vec(&held).map_err(|e| Error::backend_error(e.to_string()))?;
                files::write_atomic(&lease_path, &bytes, self.durability).at(&lease_path)?;
                Ok(Lease {
                    expires_at: held.expires_at,
                    ..lease.clone()
                })
            }
            _ => Err(Error::lock_lost("lease expired or was taken over")),
        }
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        let (lock, lease_path, _) = self.layout.lease(&lease.tenant, &lease.name);
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        match read_lease(&lease_path)? {
            Some((held, _)) if held.token == lease.token => {
                std::fs::remove_file(&lease_path).at(&lease_path)?;
                Ok(held.expires_at > Timestamp::now())
            }
            _ => Ok(false),
        }
    }

    /// Who holds a lock, for timeout messages.
    fn describe_holder(&self, t: &TenantId, name: &LockKey) -> String {
        let (_, lease_path, _) = self.layout.lease(t, name);
        match read_lease(&lease_path) {
            Ok(Some((held, owner))) if owner.host != self.me.host => format!(
                "held by {owner} on another host until {} ms; a lease from another host is never \
                 broken early, only when it expires",
                held.expires_at.as_millis()
            ),
            Ok(Some((held, owner))) => {
                format!(
                    "held by live process {owner} until {} ms",
                    held.expires_at.as_millis()
                )
            }
            Ok(None) => "released meanwhile".into(),
            Err(e) => e.to_string(),
        }
    }
}

#[async_trait]
impl Lock for FsBackend {
    async fn try_acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let (t, n) = (tenant.clone(), name.clone());
        self.run("lock.try_acquire", format!("{tenant}/{name}"), move |i| {
            i.try_acquire(&t, &n, ttl)
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let l = lease.clone();
        self.run(
            "lock.renew",
            format!("{}/{}", lease.tenant, lease.name),
            move |i| i.renew(&l, ttl),
        )
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let l = lease.clone();
        self.run(
            "lock.release",
            format!("{}/{}", lease.tenant, lease.name),
            move |i| i.release(&l),
        )
        .await
    }

    async fn acquire(
        &self,
        tenant: &TenantId,
        name: &LockKey,
        options: LockOptions,
    ) -> Result<Lease> {
        match acquire_with_backoff(self, tenant, name, options).await {
            Err(e) if e.kind() == ErrorKind::Timeout => {
                let (t, n) = (tenant.clone(), name.clone());
                let holder = self
                    .run("lock.acquire", String::new(), move |i| {
                        Ok(i.describe_holder(&t, &n))
                    })
                    .await?;
                Err(Error::timeout(format!(
                    "lock not acquired within {:?}: {holder}",
                    options.wait
                ))
                .context(
                    crate::error::BACKEND,
                    "lock.acquire",
                    format!("{tenant}/{name}"),
                ))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_roundtrip_and_liveness() {
        let me = ProcessIdentity::current();
        assert!(me.start_time > 0, "no start time from /proc");
        assert_eq!(ProcessIdentity::parse(&me.to_string()), Some(me.clone()));
        assert!(!me.is_proven_dead(&me));
        let recycled = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me.clone()
        };
        assert!(recycled.is_proven_dead(&me));
        let foreign = ProcessIdentity {
            host: "elsewhere".into(),
            pid: 999_999,
            start_time: 1,
        };
        assert!(!foreign.is_proven_dead(&me));
        assert_eq!(ProcessIdentity::parse("garbage"), None);
    }
}
