//! Leases in files. A lease names its owner process as
//! `HOSTNAME@BOOT_ID@PID_NAMESPACE:PID:START_TIME`: the boot id and the PID namespace say
//! which PID space the PID belongs to (two containers of one pod share a host name, not
//! a PID namespace; a reboot starts a new one), and the start time (from
//! `/proc/<pid>/stat`) keeps a recycled PID from passing for the owner. A lease is broken
//! before it expires only when its owner is proven dead: same host, same boot, same PID
//! namespace, and no such process (or a zombie). Anything else — another host, another
//! container, an identity this process cannot establish, a lease written by an older
//! version without namespace — waits for expiry.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::backend::{acquire_with_backoff, new_lease_token, validate_ttl};
use persistence_core::{
    Error, ErrorKind, Fence, Lease, Lock, LockKey, LockOptions, Result, TenantId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::{FsBackend, Inner};

/// How long a lease operation waits for the lock file guarding the lease (held only for
/// a few file operations, but for as long as its holder is paused): past it,
/// `try_acquire` reports the lock as held and `renew`/`release` fail `Timeout`, so an
/// `acquire` never overruns its wait by more than this.
pub(crate) const GUARD_WAIT: Duration = Duration::from_millis(500);

/// The identity of a process, as written into the leases it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Host name (`/proc/sys/kernel/hostname`); `"unknown-host"` when none could be read
    /// (then [`is_proven_dead`](Self::is_proven_dead) never proves anything).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: which boot of the host; `None` if unknown (or
    /// a lease written before this field existed).
    pub boot_id: Option<String>,
    /// Inode of the PID namespace (`/proc/self/ns/pid`); `None` if unknown.
    pub pid_namespace: Option<u64>,
    /// Process id, in that namespace.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22); 0 if unknown.
    pub start_time: u64,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        static ME: OnceLock<(String, Option<String>, Option<u64>)> = OnceLock::new();
        let (host, boot_id, pid_namespace) = ME
            .get_or_init(|| {
                let host = hostname();
                let (boot, ns) = (boot_id(), pid_namespace());
                if host.is_none() || boot.is_none() || ns.is_none() {
                    tracing::warn!(
                        host = host.is_some(),
                        boot_id = boot.is_some(),
                        pid_namespace = ns.is_some(),
                        "persistence-fs: cannot establish this process's host, boot or PID \
                         namespace; leases of dead holders will only be taken over once \
                         they expire"
                    );
                }
                (host.unwrap_or_else(|| UNKNOWN_HOST.into()), boot, ns)
            })
            .clone();
        let pid = std::process::id();
        ProcessIdentity {
            host,
            boot_id,
            pid_namespace,
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    /// Parses `HOSTNAME@BOOT_ID@PID_NAMESPACE:PID:START_TIME`, or the older
    /// `HOSTNAME:PID:START_TIME` (boot and namespace unknown).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.rsplitn(3, ':');
        let start_time = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let machine = parts.next()?;
        let mut fields = machine.split('@');
        let host = fields.next()?.to_string();
        let (boot_id, pid_namespace) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => (None, None),
            (Some(boot), Some(ns), None) => (
                (!boot.is_empty()).then(|| boot.to_string()),
                if ns.is_empty() {
                    None
                } else {
                    Some(ns.parse().ok()?)
                },
            ),
            _ => return None,
        };
        (!host.is_empty()).then_some(ProcessIdentity {
            host,
            boot_id,
            pid_namespace,
            pid,
            start_time,
        })
    }

    /// Whether `me` can see this process's PID: same host, boot and PID namespace, all
    /// known.
    pub fn shares_pid_space_with(&self, me: &ProcessIdentity) -> bool {
        me.host != UNKNOWN_HOST
            && self.host == me.host
            && self.boot_id.is_some()
            && self.boot_id == me.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == me.pid_namespace
    }

    /// Whether this process is proven dead: it shares `me`'s PID space
    /// ([`shares_pid_space_with`](Self::shares_pid_space_with)) and no process with its
    /// PID and start time runs (a zombie, killed but not yet reaped, is dead). A process
    /// `me` cannot see is never proven dead.
    pub fn is_proven_dead(&self, me: &ProcessIdentity) -> bool {
        if !self.shares_pid_space_with(me) || !Path::new("/proc/self/stat").exists() {
            return false;
        }
        match process_stat(self.pid) {
            None => true,
            Some(stat) => {
                stat.start_time != self.start_time || stat.state == 'Z' || stat.state == 'X'
            }
        }
    }
}

impl std::fmt::Display for ProcessIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}@{}:{}:{}",
            self.host,
            self.boot_id.as_deref().unwrap_or(""),
            self.pid_namespace
                .map(|n| n.to_string())
                .unwrap_or_default(),
            self.pid,
            self.start_time
        )
    }
}

const UNKNOWN_HOST: &str = "unknown-host";

fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(['@', ':']))
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(['@', ':']))
}

/// The inode in `pid:[4026531836]`, the link `/proc/self/ns/pid` points to.
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Fields 3 (state) and 22 (start time) of `/proc/<pid>/stat`.
struct ProcessStat {
    state: char,
    start_time: u64,
}

/// `None` if the process does not exist.
fn process_stat(pid: u32) -> Option<ProcessStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let mut after = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = after.next()?.chars().next()?;
    let start_time = after.nth(18)?.parse().ok()?;
    Some(ProcessStat { state, start_time })
}

fn start_time(pid: u32) -> Option<u64> {
    process_stat(pid).map(|s| s.start_time)
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
    // An empty lease is a released one, or what a power loss leaves of one created but
    // never flushed (lease files are not fsynced): its holder died with the host.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
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

/// The lease's guard within [`GUARD_WAIT`].
///
/// # Errors
/// `Timeout` when another process keeps it longer.
fn guard(path: &Path, durability: crate::config::Writes) -> Result<FileLock> {
    FileLock::exclusive_within(path, durability, GUARD_WAIT)
        .at(path)?
        .ok_or_else(|| {
            Error::timeout(format!(
                "the lease's lock file {} stayed locked for {GUARD_WAIT:?} (its holder is \
                 paused or stuck)",
                path.display()
            ))
        })
}

/// The fence after the one in `fence_path`: one more than the counter, and never less
/// than the clock in microseconds. The floor is what keeps fences from going backwards
/// when a power loss takes the counter back or away (it is not fsynced): every fence
/// handed out before was at most the clock of its moment, which has passed, unless the
/// clock was set back by more than the time since. An empty counter is such a loss.
fn next_fence(fence_path: &Path) -> Result<u64> {
    let bytes = files::read_optional(fence_path)
        .at(fence_path)?
        .unwrap_or_default();
    let text = std::str::from_utf8(&bytes).map(str::trim);
    let previous = match text {
        Ok("") => Some(0),
        Ok(text) => text.parse::<u64>().ok(),
        Err(_) => None,
    }
    .ok_or_else(|| {
        corrupt(
            fence_path,
            format!("{} does not hold a number", fence_path.display()),
        )
    })?;
    let clock_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(Fence::MAX.0));
    let fence = previous.saturating_add(1).max(clock_us);
    if fence > Fence::MAX.0 {
        return Err(corrupt(
            fence_path,
            format!(
                "the fence counter is past the largest fence ({})",
                Fence::MAX.0
            ),
        ));
    }
    Ok(fence)
}

impl Inner {
    fn try_acquire(&self, t: &TenantId, name: &LockKey, ttl: Duration) -> Result<Option<Lease>> {
        let ttl = validate_ttl("lease ttl", ttl)?;
        let (lock, lease_path, fence_path) = self.layout.lease(t, name);
        let lock = self.inside(lock)?;
        // A guard held past GUARD_WAIT (its holder paused mid-operation): the lock is busy.
        let Some(_guard) =
            FileLock::exclusive_within(&lock, self.durability, GUARD_WAIT).at(&lock)?
        else {
            return Ok(None);
        };
        let now = Timestamp::now();
        if let Some((held, owner)) = read_lease(&lease_path)?
            && held.expires_at > now
            && !owner.is_proven_dead(&self.me)
        {
            return Ok(None);
        }
        let fence = next_fence(&fence_path)?;
        // Fixed width, so every value overwrites the last whole.
        let counter = format!("{fence:020}");
        files::overwrite_in_place(&fence_path, counter.as_bytes(), self.durability)
            .at(&fence_path)?;
        let file = LeaseFile {
            owner: self.me.to_string(),
            token: new_lease_token(),
            fence,
            expires_at: now.saturating_add(ttl),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| Error::backend_error(e.to_string()))?;
        files::overwrite_in_place(&lease_path, &bytes, self.durability).at(&lease_path)?;
        Ok(Some(Lease::new(
            t.clone(),
            name.clone(),
            file.token,
            Fence(fence),
            file.expires_at,
        )))
    }

    fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let ttl = validate_ttl("lease ttl", ttl)?;
        let (lock, lease_path, _) = self.layout.lease(&lease.tenant, &lease.name);
        let lock = self.inside(lock)?;
        let _guard = guard(&lock, self.durability)?;
        let now = Timestamp::now();
        match read_lease(&lease_path)? {
            Some((mut held, _)) if held.token == lease.token && held.expires_at > now => {
                held.expires_at = now.saturating_add(ttl);
                let bytes =
                    serde_json::to_vec(&held).map_err(|e| Error::backend_error(e.to_string()))?;
                files::overwrite_in_place(&lease_path, &bytes, self.durability).at(&lease_path)?;
                let mut renewed = lease.clone();
                renewed.expires_at = held.expires_at;
                Ok(renewed)
            }
            _ => Err(Error::lock_lost("lease expired or was taken over")),
        }
    }

    fn release(&self, lease: &Lease) -> Result<bool> {
        let (lock, lease_path, _) = self.layout.lease(&lease.tenant, &lease.name);
        let lock = self.inside(lock)?;
        let _guard = guard(&lock, self.durability)?;
        match read_lease(&lease_path)? {
            Some((held, _)) if held.token == lease.token => {
                // Emptied, not removed: an empty lease is a free one, and the file is
                // overwritten in place by the next acquire (no directory change).
                files::overwrite_in_place(&lease_path, b"", self.durability).at(&lease_path)?;
                Ok(held.expires_at > Timestamp::now())
            }
            _ => Ok(false),
        }
    }

    /// Who holds a lock, for timeout messages.
    fn describe_holder(&self, t: &TenantId, name: &LockKey) -> String {
        let (_, lease_path, _) = self.layout.lease(t, name);
        match read_lease(&lease_path) {
            Ok(Some((held, owner))) if !owner.shares_pid_space_with(&self.me) => format!(
                "held by {owner} on another host, boot or PID namespace (container) until {} \
                 ms; such a lease is never broken early, only when it expires",
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
        let gone = ProcessIdentity {
            pid: 999_999_999,
            ..me.clone()
        };
        assert!(gone.is_proven_dead(&me));
        // Another host, another boot, another PID namespace (a container of the same
        // pod), an older lease without namespace, an unknown host: never proven dead.
        let others = [
            ProcessIdentity {
                host: "elsewhere".into(),
                ..gone.clone()
            },
            ProcessIdentity {
                boot_id: Some("another-boot".into()),
                ..gone.clone()
            },
            ProcessIdentity {
                pid_namespace: me.pid_namespace.map(|n| n + 1),
                ..gone.clone()
            },
            ProcessIdentity::parse(&format!("{}:999999999:1", me.host)).unwrap(),
        ];
        for other in others {
            assert!(!other.is_proven_dead(&me), "{other}");
        }
        let unknown = ProcessIdentity {
            host: UNKNOWN_HOST.into(),
            ..me.clone()
        };
        let gone_unknown = ProcessIdentity {
            pid: 999_999_999,
            ..unknown.clone()
        };
        assert!(!gone_unknown.is_proven_dead(&unknown));
        assert_eq!(ProcessIdentity::parse("garbage"), None);
        assert_eq!(ProcessIdentity::parse("a@b:1:2"), None);
    }
}
