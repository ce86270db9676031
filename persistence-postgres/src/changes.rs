//! Push for live tails: `LISTEN persistence_session_changes` on one connection of its
//! own per backend (started by the first `wait_for_change`), and a registration of each
//! followed session (`persistence.session_listen`, renewed every [`RENEW`]) so that its
//! appends, compactions and closes `NOTIFY` (see migration 0009: sessions nobody follows
//! never notify, so their commits never take NOTIFY's database-wide lock).
//!
//! Not through a pooler in transaction mode (`prepared_statements=off`): a `LISTEN` does
//! not stay on one server connection there, so subscriptions poll. A lost notice (the
//! listener was connecting) costs a waiter its poll interval; when the listening
//! connection fails, every waiter is woken to look again, and it reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

/// The channel the database notifies on.
const CHANNEL: &str = "persistence_session_changes";
/// How often a followed session's registration is renewed (it lasts twice as long).
pub(crate) const RENEW: Duration = Duration::from_secs(30);

/// Waiters by `tenant/session`, their registrations, and the listener task.
pub(crate) struct SessionChanges {
    /// Head reads of waiters, by waiter key: the waiters of one session woken by one
    /// notice look at its head once.
    pub(crate) heads: persistence_core::backend::SharedCalls<String, u64>,
    /// Where the listener connects; `None` without push.
    options: Option<PgConnectOptions>,
    waiters: Mutex<HashMap<String, Waiter>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Waiter {
    notify: Weak<Notify>,
    registered: Option<Instant>,
}

impl std::fmt::Debug for SessionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connect options: they hold the password.
        f.debug_struct("SessionChanges")
            .field("push", &self.options.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionChanges {
    /// Changes heard on a connection made with `options` (`None`: no push).
    pub(crate) fn new(options: Option<PgConnectOptions>) -> Self {
        SessionChanges {
            options,
            heads: persistence_core::backend::SharedCalls::default(),
            waiters: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
        }
    }

    /// The notifier of session `key` (`tenant/session`) and whether its registration is
    /// due, the listener started if it is not running. `None` without push.
    pub(crate) fn waiter(self: &Arc<Self>, key: &str) -> Option<(Arc<Notify>, bool)> {
        let options = self.options.clone()?;
        self.ensure_listener(options);
        let mut waiters = lock(&self.waiters);
        if let Some(w) = waiters.get_mut(key)
            && let Some(notify) = w.notify.upgrade()
        {
            let due = w.registered.is_none_or(|at| at.elapsed() >= RENEW);
            return Some((notify, due));
        }
        waiters.retain(|_, w| w.notify.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        waiters.insert(
            key.to_owned(),
            Waiter {
                notify: Arc::downgrade(&notify),
                registered: None,
            },
        );
        Some((notify, true))
    }

    /// Notes that session `key` was registered now.
    pub(crate) fn registered(&self, key: &str) {
        if let Some(w) = lock(&self.waiters).get_mut(key) {
            w.registered = Some(Instant::now());
        }
    }

    fn ensure_listener(self: &Arc<Self>, options: PgConnectOptions) {
        let mut listener = lock(&self.listener);
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        *listener = Some(tokio::spawn(listen(Arc::downgrade(self), options)));
    }

    fn wake(&self, key: &str) {
        if let Some(notify) = lock(&self.waiters)
            .get(key)
            .and_then(|w| w.notify.upgrade())
        {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for notify in lock(&self.waiters)
            .values()
            .filter_map(|w| w.notify.upgrade())
        {
            notify.notify_waiters();
        }
    }
}

impl Drop for SessionChanges {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.listener).take() {
            task.abort();
        }
    }
}

/// Listens and wakes waiters until the backend is dropped; reconnects after a pause.
async fn listen(changes: Weak<SessionChanges>, options: PgConnectOptions) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    loop {
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        })
        .await;
        if let Ok(Ok(mut listener)) = connected {
            // Registrations made before this connection listened may have notified
            // nobody: whoever waits looks again.
            match changes.upgrade() {
                Some(changes) => changes.wake_all(),
                None => return,
            }
            while let Ok(notice) = listener.recv().await {
                let Some(changes) = changes.upgrade() else {
                    return;
                };
                changes.wake(notice.payload());
            }
        }
        match changes.upgrade() {
            Some(changes) => changes.wake_all(),
            None => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
