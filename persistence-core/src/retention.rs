//! Retention of checkpoints: how many and how old a thread's checkpoints may be, and how
//! long an untouched thread lives.

use std::time::Duration;

use crate::checkpointer::{CheckpointSelector, Checkpointer};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, TenantId, ThreadKey};
use crate::time::Timestamp;

/// A retention policy for a thread's checkpoints. Empty by default (keeps everything).
///
/// Ages are measured from the time in a checkpoint's UUIDv7 id ([`CheckpointId::timestamp`],
/// the writer's clock when it minted the id) to the `now` the policy is applied at.
/// No rule ever drops the latest checkpoint of a thread that is not idle for longer than
/// [`thread_ttl`](Self::thread_ttl), and none ever drops a checkpoint put while the policy
/// is applied.
///
/// ```
/// use std::time::Duration;
/// use persistence_core::Retention;
///
/// let policy = Retention::default()
///     .with_keep_last(50)
///     .with_max_age(Duration::from_secs(7 * 24 * 3600))
///     .with_thread_ttl(Duration::from_secs(90 * 24 * 3600));
/// assert_eq!(policy.keep_last, Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Retention {
    /// Keep at most this many newest checkpoints (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// Drop checkpoints older than this, except the latest.
    #[serde(default, with = "duration_ms", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Delete the whole thread (checkpoints and pending writes; its fence high-water mark
    /// stays) once its latest checkpoint is older than this.
    #[serde(default, with = "duration_ms", skip_serializing_if = "Option::is_none")]
    pub thread_ttl: Option<Duration>,
}

impl Retention {
    /// Same, keeping at most `n` newest checkpoints.
    #[must_use]
    pub fn with_keep_last(mut self, n: impl Into<Option<usize>>) -> Self {
        self.keep_last = n.into();
        self
    }
    /// Same, dropping checkpoints older than `age` (never the latest).
    #[must_use]
    pub fn with_max_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.max_age = age.into();
        self
    }
    /// Same, deleting a thread whose latest checkpoint is older than `ttl`.
    #[must_use]
    pub fn with_thread_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.thread_ttl = ttl.into();
        self
    }
    /// Whether the policy keeps everything.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.max_age.is_none() && self.thread_ttl.is_none()
    }
    /// Checks the policy.
    ///
    /// # Errors
    /// `InvalidInput` for `keep_last` 0 or a zero duration.
    pub fn validate(&self) -> Result<()> {
        if self.keep_last == Some(0) {
            return Err(Error::invalid_input(
                "retention keep_last must be at least 1 (a thread_ttl deletes whole threads)",
            ));
        }
        for (name, d) in [("max_age", self.max_age), ("thread_ttl", self.thread_ttl)] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(Error::invalid_input(format!(
                    "retention {name} must be longer than zero"
                )));
            }
        }
        Ok(())
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// What applying a [`Retention`] to one thread removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionOutcome {
    /// Checkpoints deleted (with their pending writes).
    pub checkpoints: u64,
    /// Whether the thread was deleted for being idle past its TTL.
    pub thread_deleted: bool,
}

/// [`Checkpointer::apply_retention`]'s default: the latest checkpoint decides the thread
/// TTL, then `prune_through` (atomic, so a checkpoint put meanwhile, being newer, stays)
/// and `prune` apply the age and count rules.
pub(crate) async fn apply<C: Checkpointer + ?Sized>(
    checkpointer: &C,
    tenant: &TenantId,
    thread: &ThreadKey,
    policy: &Retention,
    now: Timestamp,
) -> Result<RetentionOutcome> {
    policy.validate()?;
    let mut outcome = RetentionOutcome::default();
    if policy.is_empty() {
        return Ok(outcome);
    }
    let Some(latest) = checkpointer
        .get(tenant, thread, CheckpointSelector::Latest)
        .await?
    else {
        return Ok(outcome);
    };
    let latest = latest.checkpoint.id;
    let older_than = |age: Duration| {
        let cutoff = now
            .0
            .saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        // Ids minted strictly before the cutoff millisecond.
        CheckpointId::last_of(Timestamp(cutoff.saturating_sub(1)))
    };
    if let Some(ttl) = policy.thread_ttl
        && latest <= older_than(ttl)
    {
        outcome.checkpoints = checkpointer.prune_through(tenant, thread, &latest).await?;
        outcome.thread_deleted = outcome.checkpoints > 0;
        return Ok(outcome);
    }
    if let Some(age) = policy.max_age {
        let through = older_than(age);
        outcome.checkpoints += if through < latest {
            checkpointer.prune_through(tenant, thread, &through).await?
        } else {
            // Every checkpoint is too old: all but the newest go.
            checkpointer.prune(tenant, thread, 1).await?
        };
    }
    if let Some(keep) = policy.keep_last {
        outcome.checkpoints += checkpointer.prune(tenant, thread, keep).await?;
    }
    Ok(outcome)
}
