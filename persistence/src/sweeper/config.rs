//! What a sweeper does and how often, and what it reports.

use std::sync::Arc;
use std::time::Duration;

use persistence_core::{Clock, Retention, SystemClock, TenantId};

/// What a sweeper does and how often.
///
/// ```
/// use std::time::Duration;
/// use persistence::{Retention, SweepConfig};
///
/// let config = SweepConfig::default()
///     .with_retention(Retention::default().with_keep_last(20))
///     .with_interval(Duration::from_secs(600));
/// assert_eq!(config.threads_per_round, 1000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SweepConfig {
    /// Policy of threads without their own. Default: keep everything.
    pub retention: Retention,
    /// Time between rounds. Default 5 minutes.
    pub interval: Duration,
    /// Each wait is `interval` plus or minus up to this, at random, so sweepers started
    /// together do not stay in step. Default 30 s.
    pub jitter: Duration,
    /// Threads visited per round at most, so a large backlog does not stall one round.
    /// Default 1000.
    pub threads_per_round: usize,
    /// The sweeper's lease time to live (renewed between pages). Default 60 s.
    pub lease_ttl: Duration,
    /// Events each audit log keeps (older ones are trimmed); `None` keeps all.
    /// Default 10 000.
    pub audit_keep: Option<u64>,
    /// The clock retention measures ages against. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            retention: Retention::default(),
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            threads_per_round: 1000,
            lease_ttl: Duration::from_secs(60),
            audit_keep: Some(10_000),
            clock: Arc::new(SystemClock),
        }
    }
}

impl SweepConfig {
    /// Same, with the default retention policy.
    #[must_use]
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }
    /// Same, with rounds every `interval`.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// Same, with up to `jitter` added to or taken from each wait.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
    /// Same, visiting at most `threads` threads per round.
    #[must_use]
    pub fn with_threads_per_round(mut self, threads: usize) -> Self {
        self.threads_per_round = threads;
        self
    }
    /// Same, with the lease time to live.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }
    /// Same, keeping `events` events per audit log (`None`: all).
    #[must_use]
    pub fn with_audit_keep(mut self, events: impl Into<Option<u64>>) -> Self {
        self.audit_keep = events.into();
        self
    }
    /// Same, measuring ages against `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Whether this sweeper held the lease and worked (another one did otherwise).
    pub ran: bool,
    /// Tenants visited.
    pub tenants: u64,
    /// Threads visited.
    pub threads: u64,
    /// Checkpoints deleted by retention (deleted threads' included).
    pub checkpoints: u64,
    /// Threads deleted for being idle past their TTL.
    pub threads_deleted: u64,
    /// Expired store items purged.
    pub items_purged: u64,
    /// Expired sessions purged.
    pub sessions_purged: u64,
    /// Unused lease rows purged.
    pub leases_purged: u64,
    /// Audit events trimmed.
    pub audit_trimmed: u64,
    /// Whether the round reached the last thread of the last tenant (the next round
    /// starts over).
    pub complete: bool,
}

/// Where a round is, for a progress display.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SweepProgress {
    /// The tenant being swept.
    pub tenant: TenantId,
    /// Threads visited so far in this round.
    pub threads: u64,
}
