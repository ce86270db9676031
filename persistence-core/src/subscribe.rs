//! Live tail of a session: every event after an ordinal, then each new one as it is
//! appended, in order, without gaps or duplicates.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::ids::{SessionKey, TenantId};
use crate::session_log::{SessionEvent, SessionLog};
use crate::shared_calls::SharedCalls;

/// A session of one log: the log's address (alive while a call on it runs, so never
/// another log's), tenant and session.
type FeedKey = (usize, TenantId, SessionKey);

/// Reads of the events after an ordinal, by batch size.
type SharedReads = SharedCalls<(FeedKey, u64, usize), Arc<Vec<SessionEvent>>>;

/// The reads of subscriptions in flight, shared by the subscriptions of one session
/// that began waiting before they started (see [`SharedCalls`] and `Subscription::wait`).
static SHARED_READS: LazyLock<SharedReads> = LazyLock::new(SharedCalls::default);

/// The same for the head reads that tell a caught-up subscription from one behind a trim.
static SHARED_HEADS: LazyLock<SharedCalls<FeedKey, u64>> = LazyLock::new(SharedCalls::default);

/// Options of a [`Subscription`].
///
/// ```
/// use std::time::Duration;
/// use persistence_core::Subscribe;
///
/// let options = Subscribe::default().with_poll_interval(Duration::from_millis(100));
/// assert_eq!(options.batch, 100);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Subscribe {
    /// The longest a subscription waits between two looks at the session when nothing
    /// tells it of an append (its backend has no push, or a notice was lost). Default
    /// 250 ms.
    pub poll_interval: Duration,
    /// Events read per round trip when catching up. Default 100.
    pub batch: usize,
}

impl Default for Subscribe {
    fn default() -> Self {
        Subscribe {
            poll_interval: Duration::from_millis(250),
            batch: 100,
        }
    }
}

impl Subscribe {
    /// Same, looking at the session at least every `interval`.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
    /// Same, reading `batch` events per round trip.
    #[must_use]
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
}

/// A live tail of one session ([`SessionLog::subscribe`](trait.SessionLog.html#method.subscribe)
/// on a `dyn SessionLog`, or [`Subscription::new`]).
///
/// [`next`](Self::next) returns the events with ordinals after the `after` it was
/// created with, in order, each once, then waits for new ones. Between reads it waits
/// in [`SessionLog::wait_for_change`], which returns at once on a backend that is told
/// of appends (a push) and otherwise after the poll interval.
///
/// - Reconnects: the subscription holds no server state. After an error (a lost
///   connection, `Unavailable`), call `next` again, or make a new subscription with
///   `after` = [`last_seq`](Self::last_seq): nothing is skipped or repeated.
/// - Trims: when the next event was trimmed or compacted away before it was read (the
///   subscriber fell behind), or the session was deleted or expired, `next` fails
///   [`Trimmed`](ErrorKind::Trimmed) instead of skipping.
/// - Tenants: it reads through the tenant it was given, like every call.
///
/// ```
/// # async fn demo() -> persistence_core::Result<()> {
/// use persistence_core::{Envelope, MemoryBackend, SessionKey, SessionLog, Subscribe, TenantId};
///
/// let backend = MemoryBackend::new();
/// let (tenant, session) = (TenantId::new("acme")?, SessionKey::new("chat-1")?);
/// let log: &dyn SessionLog = &backend;
/// let mut tail = log.subscribe(&tenant, &session, 0, Subscribe::default());
/// log.append(&tenant, &session, vec![Envelope::new(1, "hi".into())], Default::default())
///     .await?;
/// assert_eq!(tail.next().await?.seq, 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Subscription<'a> {
    log: &'a dyn SessionLog,
    tenant: TenantId,
    session: SessionKey,
    after: u64,
    pending: VecDeque<SessionEvent>,
    options: Subscribe,
    /// The last read returned less than a batch: the session is read to its end as of
    /// that read, so the next look waits for a change first.
    caught_up: bool,
    /// Since when this subscription has had reason to read: a read or head started
    /// after it (by any subscription of the session) answers it.
    due_since: Instant,
}

impl std::fmt::Debug for Subscription<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("tenant", &self.tenant)
            .field("session", &self.session)
            .field("last_seq", &self.after)
            .finish_non_exhaustive()
    }
}

impl<'a> Subscription<'a> {
    /// A subscription to the events of `session` with ordinals after `after`.
    pub fn new(
        log: &'a dyn SessionLog,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        options: Subscribe,
    ) -> Self {
        Subscription {
            log,
            tenant: tenant.clone(),
            session: session.clone(),
            after,
            pending: VecDeque::new(),
            options,
            caught_up: false,
            due_since: Instant::now(),
        }
    }

    /// Ordinal of the last event delivered (the `after` it was made with, before the
    /// first): where a new subscription resumes.
    pub fn last_seq(&self) -> u64 {
        self.after
    }

    /// The next event, waiting for it to be appended.
    ///
    /// # Errors
    /// `Trimmed` when the next event is gone (trimmed, compacted, or the session deleted
    /// or expired); `InvalidInput` for a batch outside 1..=10 000; whatever reads fail
    /// with (`Unavailable`, `Timeout`): call `next` again to retry, nothing is lost.
    pub async fn next(&mut self) -> Result<SessionEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.after = event.seq;
                return Ok(event);
            }
            if self.caught_up {
                // Read to the end a moment ago: wait for a change (which returns at once
                // if the head has moved since) rather than read again at once.
                self.caught_up = false;
                self.wait().await?;
                continue;
            }
            if self.read_on().await? {
                continue;
            }
            // Nothing after `after`: caught up, or what follows was trimmed. The head
            // tells, but an append may land between the read and the look at the head,
            // so a head past `after` is checked by a second read, made after the events
            // up to that head were appended: if they are not there, they were trimmed.
            // A head read after the read that found nothing (and so after every event
            // delivered so far was appended), by this subscription or a sibling.
            self.due_since = Instant::now();
            let head = self.head().await?;
            if head > self.after {
                // Only a read started now is sure to come after the events up to `head`.
                self.due_since = Instant::now();
                if self.read_on().await? {
                    continue;
                }
                return Err(self.gone(format!(
                    "events {} to {head} were trimmed before they were read",
                    self.after + 1
                )));
            }
            if head < self.after {
                return Err(self.gone(format!(
                    "the session's head is {head}, below ordinal {} already read: it was \
                     deleted or expired",
                    self.after
                )));
            }
            self.wait().await?;
        }
    }

    /// Waits for the session to change after `after` (or the poll interval).
    ///
    /// The read that follows may be shared with any read of the session started since
    /// the wait began: all the subscriptions woken by one notice then read once. A read
    /// started before the change that woke this one may miss it; that costs a round,
    /// not an event: the next wait's own head check (fresh: made after it registers)
    /// returns at once, and a `Trimmed` verdict is only reached through reads made after
    /// the head was read.
    async fn wait(&mut self) -> Result<()> {
        let waiting_since = Instant::now();
        self.log
            .wait_for_change(
                &self.tenant,
                &self.session,
                self.after,
                self.options.poll_interval,
            )
            .await?;
        self.due_since = waiting_since;
        self.caught_up = false;
        Ok(())
    }

    fn feed_key(&self) -> FeedKey {
        let log = std::ptr::from_ref(self.log).cast::<()>() as usize;
        (log, self.tenant.clone(), self.session.clone())
    }

    /// The session's head, read by this subscription or by another of the session that
    /// started reading it since this one became due.
    async fn head(&self) -> Result<u64> {
        let (log, tenant, session) = (self.log, &self.tenant, &self.session);
        SHARED_HEADS
            .call(self.feed_key(), self.due_since, || {
                log.head(tenant, session)
            })
            .await
    }

    /// Reads the events after `after` into `pending`; `false` when there are none.
    ///
    /// # Errors
    /// `Trimmed` when the first event read is not the one after `after`.
    async fn read_on(&mut self) -> Result<bool> {
        let (log, tenant, session) = (self.log, &self.tenant, &self.session);
        let (after, batch) = (self.after, self.options.batch);
        let key = (self.feed_key(), after, batch);
        let events = SHARED_READS
            .call(key, self.due_since, || async move {
                Ok(Arc::new(log.read(tenant, session, after, batch).await?))
            })
            .await?;
        self.caught_up = events.len() < batch;
        let Some(first) = events.first() else {
            return Ok(false);
        };
        if first.seq != self.after + 1 {
            return Err(self.gone(format!(
                "events {} to {} were trimmed before they were read",
                self.after + 1,
                first.seq - 1
            )));
        }
        self.pending.extend(events.iter().cloned());
        Ok(true)
    }

    fn gone(&self, message: String) -> Error {
        Error::new(
            ErrorKind::Trimmed,
            format!(
                "subscription to {}/{}: {message}",
                self.tenant, self.session
            ),
        )
    }
}

/// [`SessionLog::wait_for_change`] for a backend whose push wakes `notify`: registers
/// with it first, then awaits `head` (the session's head now; it may also register the
/// session with the backend's push), and returns at once if the head is no longer
/// `seen_head`, else at the next wake-up or after `timeout`. Registering before looking
/// means a change after the look is never missed.
///
/// # Errors
/// What `head` fails with.
pub async fn wait_on_notify<F>(
    notify: &tokio::sync::Notify,
    head: F,
    seen_head: u64,
    timeout: Duration,
) -> Result<()>
where
    F: std::future::Future<Output = Result<u64>>,
{
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if head.await? != seen_head {
        return Ok(());
    }
    let _ = tokio::time::timeout(timeout, notified).await;
    Ok(())
}

impl<'s> dyn SessionLog + 's {
    /// A live tail of `session` from the event after `after` (0: from the start): see
    /// [`Subscription`].
    pub fn subscribe(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        options: Subscribe,
    ) -> Subscription<'_> {
        Subscription::new(self, tenant, session, after, options)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Envelope, MemoryBackend, SessionKey, SessionLog, Subscribe, TenantId};

    /// The memory backend wakes a waiting subscriber on an append: the event arrives long
    /// before the poll interval.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_subscriptions_are_pushed() {
        let backend = MemoryBackend::new();
        let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
        let log: &dyn SessionLog = &backend;
        let slow = Subscribe::default().with_poll_interval(Duration::from_secs(60));
        let mut tail = log.subscribe(&t, &s, 0, slow);
        let writer = {
            let backend = backend.clone();
            let (t, s) = (t.clone(), s.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let event = vec![Envelope::new(1, serde_json::json!(1))];
                backend
                    .append(&t, &s, event, Default::default())
                    .await
                    .unwrap();
            })
        };
        let event = tokio::time::timeout(Duration::from_secs(5), tail.next())
            .await
            .expect("the append did not wake the subscriber")
            .unwrap();
        assert_eq!(event.seq, 1);
        writer.await.unwrap();
    }
}
