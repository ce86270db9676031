//! Push for live tails: appends, compactions and closes `PUBLISH` the session's meta key
//! (ids only, never payloads) on one channel per prefix ([`Keys::session_changes`]);
//! one listener per backend, started by the first `wait_for_change`, wakes the waiters
//! of that session.
//!
//! Only on a single node. On a cluster a `PUBLISH` is relayed to every node over the
//! cluster bus, a cost every append would pay; subscriptions there poll instead (the
//! scripts are given no channel and publish nothing).
//!
//! A notice can be lost (the listener was still subscribing, or reconnecting): a waiter
//! then wakes at its timeout, the poll interval, as without push. When the listener's
//! connection drops, every waiter is woken to look again.
//!
//! [`Keys::session_changes`]: crate::keys::Keys::session_changes

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

/// The waiters of each session, by meta key, and the listener task.
pub(crate) struct SessionChanges {
    /// Where the listener connects; `None` on a cluster (no push).
    client: Option<redis::Client>,
    channel: String,
    waiters: Mutex<HashMap<String, Weak<Notify>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SessionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionChanges")
            .field("push", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionChanges {
    /// Changes announced on `channel`, heard through `client` (`None`: no push).
    pub(crate) fn new(client: Option<redis::Client>, channel: String) -> Self {
        SessionChanges {
            client,
            channel,
            waiters: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
        }
    }

    /// The channel the scripts publish on (`""`: publish nothing).
    pub(crate) fn publish_channel(&self) -> &str {
        if self.client.is_some() {
            &self.channel
        } else {
            ""
        }
    }

    /// The notifier of the session with meta key `key`, the listener started if it is
    /// not running. `None` without push.
    pub(crate) fn waiter(self: &Arc<Self>, key: &str) -> Option<Arc<Notify>> {
        let client = self.client.clone()?;
        self.ensure_listener(client);
        let mut waiters = lock(&self.waiters);
        if let Some(notify) = waiters.get(key).and_then(Weak::upgrade) {
            return Some(notify);
        }
        waiters.retain(|_, w| w.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        waiters.insert(key.to_owned(), Arc::downgrade(&notify));
        Some(notify)
    }

    fn ensure_listener(self: &Arc<Self>, client: redis::Client) {
        let mut listener = lock(&self.listener);
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let changes = Arc::downgrade(self);
        *listener = Some(tokio::spawn(listen(changes, client)));
    }

    fn wake(&self, key: &str) {
        if let Some(notify) = lock(&self.waiters).get(key).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for notify in lock(&self.waiters).values().filter_map(Weak::upgrade) {
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

/// Subscribes and wakes waiters until the backend is dropped; reconnects after a pause.
async fn listen(changes: Weak<SessionChanges>, client: redis::Client) {
    loop {
        let Some(channel) = changes.upgrade().map(|c| c.channel.clone()) else {
            return;
        };
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = connected {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Some(changes) = changes.upgrade() else {
                    return;
                };
                if let Ok(key) = message.get_payload::<String>() {
                    changes.wake(&key);
                }
            }
        }
        // Lost (or never had) the subscription: whoever waits looks again.
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
