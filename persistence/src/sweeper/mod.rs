//! The sweeper: retention of checkpoints, purge of expired data, and an audit log of what
//! it removed, in bounded rounds, one sweeper at a time across processes and hosts.
//!
//! A round takes the sweeper's lease ([`SWEEPER_LOCK`]: the lock of the audit log of the
//! [`SYSTEM_TENANT`]), so of several sweepers (one per process, say) one works and the
//! others skip the round. It then visits up to [`SweepConfig::threads_per_round`]
//! threads, tenant by tenant, continuing where the previous round stopped, applies to
//! each its retention policy (its own, set with [`Persistence::set_thread_retention`],
//! or the configured default), records what it removed in each tenant's audit log
//! ([`AUDIT_SESSION`]), trims the audit logs to [`SweepConfig::audit_keep`] events, and
//! runs [`Maintenance::purge_expired`]. Its own summary goes to the system tenant's audit
//! log, appended with the lease: a sweeper that lost its lease cannot write it.
//!
//! Audit events carry ids, kinds, reasons and counts, never user data:
//!
//! | `kind` | fields |
//! |---|---|
//! | `thread.pruned` | `thread`, `checkpoints`, `reason: "retention"` |
//! | `thread.deleted` | `thread`, `checkpoints`, `reason: "thread_ttl"` |
//! | `session.expired` | `session`, `reason: "ttl"` (a session whose TTL ran out, purged) |
//! | `sweep.round` (system tenant) | `tenants`, `threads`, `checkpoints`, `threads_deleted`, `items_purged`, `sessions_purged`, `leases_purged`, `complete` |

use std::collections::HashMap;
use std::time::Duration;

use persistence_core::serde_json::json;
use persistence_core::{
    AppendOptions, Envelope, Error, ItemKey, ListItems, ListThreads, LockKey, Namespace,
    PutItemOptions, Result, Retention, SessionKey, TenantId, ThreadKey,
};

use tracing::Instrument;

use crate::Persistence;

mod config;
pub use config::{SweepConfig, SweepProgress, SweepReport};

/// The reserved tenant of the sweeper's lease and round summaries.
pub const SYSTEM_TENANT: &str = "persistence.system";
/// The reserved session, in every tenant, that holds its audit log.
pub const AUDIT_SESSION: &str = "persistence.audit";
/// The reserved store namespace (one label) of per-thread retention policies, keyed by
/// thread id.
pub const RETENTION_NAMESPACE: &str = "persistence.retention";
/// The sweeper's lock: [`LockKey::for_session`] of [`AUDIT_SESSION`] in [`SYSTEM_TENANT`].
pub const SWEEPER_LOCK: &str = "session:persistence.audit";

/// Where the next round continues.
#[derive(Debug, Clone, Default)]
struct Resume {
    tenant: Option<TenantId>,
    cursor: Option<persistence_core::Cursor>,
}

/// Sweeps a [`Persistence`] in rounds (see the module docs).
pub struct Sweeper {
    persistence: Persistence,
    config: SweepConfig,
    resume: Resume,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("backend", &self.persistence.backend_name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn reserved<T>(r: Result<T>) -> T {
    #[allow(clippy::expect_used)] // constants that pass the id rules
    r.expect("reserved ids are valid")
}

/// The reserved ids as typed values.
fn system_tenant() -> TenantId {
    reserved(TenantId::new(SYSTEM_TENANT))
}
fn audit_session() -> SessionKey {
    reserved(SessionKey::new(AUDIT_SESSION))
}
fn retention_namespace() -> Namespace {
    reserved(Namespace::new([RETENTION_NAMESPACE]))
}

impl Sweeper {
    /// A sweeper of `persistence`; nothing runs until [`round`](Self::round) or
    /// [`spawn`](Self::spawn).
    pub fn new(persistence: Persistence, config: SweepConfig) -> Self {
        Sweeper {
            persistence,
            config,
            resume: Resume::default(),
        }
    }

    /// One round, if this sweeper gets the lease (`ran: false` otherwise). `progress` is
    /// called after every page of threads.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid default policy; whatever the backend fails with.
    /// A failed round leaves the lease to expire and the next round starts where this one
    /// did.
    pub async fn round(
        &mut self,
        progress: &mut (dyn FnMut(&SweepProgress) + Send),
    ) -> Result<SweepReport> {
        self.config.retention.validate()?;
        let p = self.persistence.clone();
        let (system, audit) = (system_tenant(), audit_session());
        let lock = LockKey::for_session(&audit);
        let Some(lease) = p
            .lock
            .try_acquire(&system, &lock, self.config.lease_ttl)
            .await?
        else {
            return Ok(SweepReport::default());
        };
        let span = tracing::info_span!("persistence.sweep", backend = %p.backend_name());
        self.round_with_lease(lease, progress)
            .instrument(span)
            .await
    }

    /// The round's work under `lease`, which it releases.
    async fn round_with_lease(
        &mut self,
        mut lease: persistence_core::Lease,
        progress: &mut (dyn FnMut(&SweepProgress) + Send),
    ) -> Result<SweepReport> {
        let p = self.persistence.clone();
        let (system, audit) = (system_tenant(), audit_session());
        let mut report = SweepReport {
            ran: true,
            ..SweepReport::default()
        };
        let tenants = p.maintenance.tenants().await?;
        let start = self.resume.tenant.clone();
        let mut budget = self.config.threads_per_round.max(1) as u64;
        let mut complete = true;
        for tenant in tenants
            .iter()
            .filter(|t| start.as_ref().is_none_or(|s| *t >= s))
        {
            report.tenants += 1;
            let done = self
                .sweep_tenant(tenant, &mut lease, &mut budget, &mut report, progress)
                .await?;
            if !done {
                complete = false;
                break;
            }
            self.resume.cursor = None;
        }
        if complete {
            self.resume = Resume::default();
        }
        report.complete = complete;
        let purged = p.maintenance.purge_expired_report().await?;
        report.items_purged = purged.counts.items;
        report.sessions_purged = purged.counts.sessions;
        report.leases_purged = purged.counts.leases;
        self.record_expired(&purged.expired_sessions).await?;
        let summary = json!({
            "kind": "sweep.round",
            "tenants": report.tenants,
            "threads": report.threads,
            "checkpoints": report.checkpoints,
            "threads_deleted": report.threads_deleted,
            "items_purged": report.items_purged,
            "sessions_purged": report.sessions_purged,
            "leases_purged": report.leases_purged,
            "complete": report.complete,
        });
        p.sessions
            .append(
                &system,
                &audit,
                vec![Envelope::new(1, summary)],
                AppendOptions::default().with_lease(&lease),
            )
            .await?;
        report.audit_trimmed += self.trim_audit(&system).await?;
        let _ = p.lock.release(&lease).await;
        tracing::info!(
            tenants = report.tenants,
            threads = report.threads,
            checkpoints = report.checkpoints,
            threads_deleted = report.threads_deleted,
            items_purged = report.items_purged,
            sessions_purged = report.sessions_purged,
            complete = report.complete,
            "sweep round"
        );
        Ok(report)
    }

    /// Rounds until one completes its pass over every tenant (what `persistence gc`
    /// runs). Reports of the rounds summed; `ran: false` if another sweeper held the
    /// lease at the first round.
    ///
    /// # Errors
    /// As [`round`](Self::round).
    pub async fn sweep_all(
        &mut self,
        progress: &mut (dyn FnMut(&SweepProgress) + Send),
    ) -> Result<SweepReport> {
        let mut total = SweepReport::default();
        loop {
            let r = self.round(progress).await?;
            if !r.ran {
                return Ok(total);
            }
            total.ran = true;
            total.tenants += r.tenants;
            total.threads += r.threads;
            total.checkpoints += r.checkpoints;
            total.threads_deleted += r.threads_deleted;
            total.items_purged += r.items_purged;
            total.sessions_purged += r.sessions_purged;
            total.leases_purged += r.leases_purged;
            total.audit_trimmed += r.audit_trimmed;
            if r.complete {
                total.complete = true;
                return Ok(total);
            }
        }
    }

    /// Runs rounds every interval (with jitter) on the current tokio runtime until the
    /// returned handle is dropped or stopped. A failed round is logged and retried at the
    /// next interval.
    pub fn spawn(mut self) -> SweeperHandle {
        let task = tokio::spawn(async move {
            loop {
                match self.round(&mut |_| {}).await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep round failed"),
                }
                tokio::time::sleep(jittered(self.config.interval, self.config.jitter)).await;
            }
        });
        SweeperHandle { task: Some(task) }
    }

    /// Visits the tenant's threads from where the last round stopped; `false` when the
    /// budget ran out first.
    async fn sweep_tenant(
        &mut self,
        tenant: &TenantId,
        lease: &mut persistence_core::Lease,
        budget: &mut u64,
        report: &mut SweepReport,
        progress: &mut (dyn FnMut(&SweepProgress) + Send),
    ) -> Result<bool> {
        let p = self.persistence.clone();
        let policies = self.thread_policies(tenant).await?;
        let default = self.config.retention.clone();
        let now = self.config.clock.now();
        let mut events = Vec::new();
        if self.resume.tenant.as_ref() != Some(tenant) {
            self.resume = Resume {
                tenant: Some(tenant.clone()),
                cursor: None,
            };
        }
        let done = loop {
            if *budget == 0 {
                break false;
            }
            let limit = usize::try_from((*budget).min(500)).unwrap_or(500);
            let page = p
                .checkpointer
                .list_threads(
                    tenant,
                    ListThreads::default()
                        .with_limit(limit)
                        .with_cursor(self.resume.cursor.clone()),
                )
                .await?;
            for thread in &page.items {
                let policy = policies.get(thread).unwrap_or(&default);
                *budget -= 1;
                report.threads += 1;
                if policy.is_empty() {
                    continue;
                }
                let out = p
                    .checkpointer
                    .apply_retention(tenant, thread, policy, now)
                    .await?;
                report.checkpoints += out.checkpoints;
                if out.thread_deleted {
                    report.threads_deleted += 1;
                    events.push(json!({"kind": "thread.deleted", "thread": thread.as_str(),
                        "checkpoints": out.checkpoints, "reason": "thread_ttl"}));
                } else if out.checkpoints > 0 {
                    events.push(json!({"kind": "thread.pruned", "thread": thread.as_str(),
                        "checkpoints": out.checkpoints, "reason": "retention"}));
                }
            }
            progress(&SweepProgress {
                tenant: tenant.clone(),
                threads: report.threads,
            });
            // Renewed after every page: a round holds its lease however long it takes,
            // and one that lost it stops here (`LockLost`) instead of sweeping next to
            // its successor.
            *lease = p.lock.renew(lease, self.config.lease_ttl).await?;
            match page.next {
                Some(next) => self.resume.cursor = Some(next),
                None => break true,
            }
        };
        if !events.is_empty() {
            p.sessions
                .append(
                    tenant,
                    &audit_session(),
                    events.into_iter().map(|e| Envelope::new(1, e)).collect(),
                    AppendOptions::default(),
                )
                .await?;
        }
        report.audit_trimmed += self.trim_audit(tenant).await?;
        Ok(done)
    }

    /// Records each purged session's end (`session.expired`) in its tenant's audit log,
    /// one append per tenant.
    async fn record_expired(&self, expired: &[persistence_core::ExpiredSession]) -> Result<()> {
        let audit = audit_session();
        let mut expired = expired.to_vec();
        expired.sort();
        for tenant_sessions in expired.chunk_by(|a, b| a.tenant == b.tenant) {
            let tenant = &tenant_sessions[0].tenant;
            let events = tenant_sessions
                .iter()
                .filter(|e| e.session != audit)
                .map(|e| {
                    Envelope::new(
                        1,
                        json!({"kind": "session.expired", "session": e.session.as_str(),
                            "reason": "ttl"}),
                    )
                })
                .collect::<Vec<_>>();
            if !events.is_empty() {
                self.persistence
                    .sessions
                    .append(tenant, &audit, events, AppendOptions::default())
                    .await?;
            }
        }
        Ok(())
    }

    /// Per-thread policies of a tenant.
    async fn thread_policies(&self, tenant: &TenantId) -> Result<HashMap<ThreadKey, Retention>> {
        let mut out = HashMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .persistence
                .store
                .list(
                    tenant,
                    &retention_namespace(),
                    ListItems::default().with_cursor(cursor),
                )
                .await?;
            for item in page.items {
                if let (Ok(thread), Ok(policy)) = (
                    ThreadKey::new(item.key.as_str()),
                    persistence_core::serde_json::from_value::<Retention>(item.value.data),
                ) {
                    out.insert(thread, policy);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Trims a tenant's audit log to `audit_keep` events.
    async fn trim_audit(&self, tenant: &TenantId) -> Result<u64> {
        let Some(keep) = self.config.audit_keep else {
            return Ok(0);
        };
        let sessions = &self.persistence.sessions;
        let head = sessions.head(tenant, &audit_session()).await?;
        if head <= keep {
            return Ok(0);
        }
        sessions
            .trim_before(tenant, &audit_session(), head - keep + 1)
            .await
    }
}

/// `interval` plus or minus up to `jitter`.
fn jittered(interval: Duration, jitter: Duration) -> Duration {
    let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    let offset = Duration::from_millis(fastrand::u64(0..=jitter_ms.saturating_mul(2)));
    (interval + offset).saturating_sub(jitter)
}

/// A running sweeper ([`Sweeper::spawn`]): it stops when this is dropped.
#[derive(Debug)]
pub struct SweeperHandle {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SweeperHandle {
    /// Stops the sweeper (a round in progress is cut at its next await; its lease then
    /// expires) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Persistence {
    /// Sets (or with `None` removes) a thread's own retention policy, which the sweeper
    /// applies instead of its default. Stored in the tenant's store, namespace
    /// [`RETENTION_NAMESPACE`], key the thread id.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid policy or a thread id that is not a valid store key.
    pub async fn set_thread_retention(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        policy: Option<&Retention>,
    ) -> Result<()> {
        let key = ItemKey::new(thread.as_str())?;
        match policy {
            Some(policy) => {
                policy.validate()?;
                let value = persistence_core::serde_json::to_value(policy)
                    .map_err(|e| Error::invalid_input(e.to_string()))?;
                self.store
                    .put(
                        tenant,
                        &retention_namespace(),
                        &key,
                        Envelope::new(1, value),
                        PutItemOptions::default(),
                    )
                    .await?;
            }
            None => {
                self.store
                    .delete(tenant, &retention_namespace(), &key, None)
                    .await?;
            }
        }
        Ok(())
    }
}
