//! Push for live tails: appends, compactions and closes announce the session's change,
//! and one listener per backend, started by the first `wait_for_change`, wakes that
//! session's waiters. Messages carry keys (ids), never payloads.
//!
//! - A node: `PUBLISH` of the session's meta key on one channel per prefix
//!   ([`Keys::session_changes`]); the listener `SUBSCRIBE`s to it.
//! - A cluster: `SPUBLISH` (sharded pub/sub, Redis 7) on the session's own channel
//!   ([`SessionKeys::changes`], in the session's slot), so a message travels to the
//!   shard's nodes only, not over the whole cluster bus; the listener (a RESP3 cluster
//!   connection) `SSUBSCRIBE`s to the channel of each followed session, on the node that
//!   owns its slot.
//!
//! On a cluster the listener `SUNSUBSCRIBE`s from a session's channel once nobody has
//! waited on it for two [`IDLE_CHECK`] periods, so a long-running process does not
//! keep a subscription (and its shard's messages) per session it ever followed.
//!
//! A notice can be lost (the listener was still subscribing, or reconnecting): a waiter
//! then wakes at its timeout, the poll interval, as without push. When the listener's
//! connection drops, every waiter is woken to look again.
//!
//! [`Keys::session_changes`]: crate::keys::Keys::session_changes
//! [`SessionKeys::changes`]: crate::keys::SessionKeys::changes

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::tls::Endpoint;

/// How often a cluster's listener looks for channels nobody waits on; one found idle at
/// two looks in a row is unsubscribed from.
pub(crate) const IDLE_CHECK: Duration = Duration::from_secs(5);

/// How changes are announced and heard.
enum Mode {
    /// A node: one channel, heard through this client.
    Node {
        client: redis::Client,
        channel: String,
    },
    /// A cluster: a channel per session, heard through a RESP3 cluster connection.
    Cluster {
        endpoint: Endpoint,
        timeout: Duration,
    },
}

/// The waiters of each session (by the key its messages carry) and the listener task.
pub(crate) struct SessionChanges {
    /// Head reads of waiters, by waiter key: the waiters of one session woken by one
    /// notice look at its head once.
    pub(crate) heads: persistence_core::backend::SharedCalls<String, u64>,
    mode: Mode,
    waiters: Mutex<HashMap<String, Weak<Notify>>>,
    listener: Mutex<Option<Listener>>,
}

struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// Channels to `SSUBSCRIBE` to (a cluster's listener only).
    subscribe: UnboundedSender<String>,
}

impl std::fmt::Debug for SessionChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Node { .. } => "node",
            Mode::Cluster { .. } => "cluster",
        };
        f.debug_struct("SessionChanges")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

/// What a script announces a change with: the command (`PUBLISH`, `SPUBLISH`) and the
/// channel.
pub(crate) struct Announce<'a> {
    pub(crate) command: &'static str,
    pub(crate) channel: &'a str,
}

impl SessionChanges {
    /// Changes of a node, announced on `channel`.
    pub(crate) fn node(client: redis::Client, channel: String) -> Self {
        Self::with_mode(Mode::Node { client, channel })
    }

    /// Changes of a cluster, announced on each session's channel.
    pub(crate) fn cluster(endpoint: Endpoint, timeout: Duration) -> Self {
        Self::with_mode(Mode::Cluster { endpoint, timeout })
    }

    fn with_mode(mode: Mode) -> Self {
        SessionChanges {
            mode,
            heads: persistence_core::backend::SharedCalls::default(),
            waiters: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
        }
    }

    /// How a script announces a change of the session with meta key `meta` and change
    /// channel `session_channel`; the message is always `meta` on a node and the channel
    /// on a cluster ([`Self::waiter_key`]).
    pub(crate) fn announce<'a>(&'a self, session_channel: &'a str) -> Announce<'a> {
        match &self.mode {
            Mode::Node { channel, .. } => Announce {
                command: "PUBLISH",
                channel,
            },
            Mode::Cluster { .. } => Announce {
                command: "SPUBLISH",
                channel: session_channel,
            },
        }
    }

    /// The key a session's waiters are found by: its meta key on a node (the message
    /// published), its channel on a cluster (where the message arrives).
    pub(crate) fn waiter_key<'a>(&self, meta: &'a str, session_channel: &'a str) -> &'a str {
        match self.mode {
            Mode::Node { .. } => meta,
            Mode::Cluster { .. } => session_channel,
        }
    }

    /// The notifier of the session with waiter key `key`, its channel subscribed to and
    /// the listener started if need be.
    pub(crate) fn waiter(self: &Arc<Self>, key: &str) -> Arc<Notify> {
        let subscribe = self.ensure_listener();
        let mut waiters = lock(&self.waiters);
        if let Some(notify) = waiters.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        waiters.retain(|_, w| w.strong_count() > 0);
        let notify = Arc::new(Notify::new());
        waiters.insert(key.to_owned(), Arc::downgrade(&notify));
        if let Mode::Cluster { .. } = self.mode {
            let _ = subscribe.send(key.to_owned());
        }
        notify
    }

    /// The running listener's subscription requests, the listener started if it is not
    /// running.
    fn ensure_listener(self: &Arc<Self>) -> UnboundedSender<String> {
        let mut listener = lock(&self.listener);
        if let Some(running) = listener.as_ref().filter(|l| !l.task.is_finished()) {
            return running.subscribe.clone();
        }
        let (subscribe, requests) = unbounded_channel();
        let changes = Arc::downgrade(self);
        let task = match &self.mode {
            Mode::Node { client, channel } => {
                tokio::spawn(listen_node(changes, client.clone(), channel.clone()))
            }
            Mode::Cluster { endpoint, timeout } => tokio::spawn(listen_cluster(
                changes,
                endpoint.clone(),
                *timeout,
                requests,
            )),
        };
        *listener = Some(Listener {
            task,
            subscribe: subscribe.clone(),
        });
        subscribe
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

    /// The keys of sessions someone waits for.
    fn followed(&self) -> Vec<String> {
        lock(&self.waiters)
            .iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Drop for SessionChanges {
    fn drop(&mut self) {
        if let Some(listener) = lock(&self.listener).take() {
            listener.task.abort();
        }
    }
}

/// A node's listener: subscribes and wakes waiters until the backend is dropped;
/// reconnects after a pause.
async fn listen_node(changes: Weak<SessionChanges>, client: redis::Client, channel: String) {
    loop {
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

/// A cluster's listener: `SSUBSCRIBE`s to each requested session channel and wakes the
/// waiters of the channel a message arrives on; after a disconnect it connects again
/// and subscribes to every followed session's channel.
async fn listen_cluster(
    changes: Weak<SessionChanges>,
    endpoint: Endpoint,
    timeout: Duration,
    mut requests: UnboundedReceiver<String>,
) {
    loop {
        let (push_tx, mut pushes) = unbounded_channel();
        let connected = async {
            let client = crate::conn::cluster_push_client(&endpoint, timeout, push_tx)?;
            tokio::time::timeout(timeout, client.get_async_connection())
                .await
                .map_err(|_| redis::RedisError::from(std::io::Error::other("connect timed out")))?
        }
        .await;
        if let Ok(mut conn) = connected {
            let mut subscribed = HashSet::new();
            let Some(followed) = changes.upgrade().map(|c| c.followed()) else {
                return;
            };
            for channel in followed {
                if conn.ssubscribe(&channel).await.is_ok() {
                    subscribed.insert(channel);
                }
            }
            // Subscriptions made before this connection may have missed notices.
            if let Some(changes) = changes.upgrade() {
                changes.wake_all();
            }
            let mut idle_check = tokio::time::interval(IDLE_CHECK);
            idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut idle_before = HashSet::new();
            loop {
                tokio::select! {
                    _ = idle_check.tick() => {
                        let Some(followed) = changes.upgrade().map(|c| c.followed()) else {
                            return;
                        };
                        let followed: HashSet<String> = followed.into_iter().collect();
                        let idle: HashSet<String> =
                            subscribed.difference(&followed).cloned().collect();
                        for channel in idle.intersection(&idle_before) {
                            if conn.sunsubscribe(channel).await.is_ok() {
                                subscribed.remove(channel);
                            }
                        }
                        idle_before = idle.into_iter().filter(|c| subscribed.contains(c)).collect();
                    }
                    request = requests.recv() => {
                        let Some(channel) = request else { return };
                        if !subscribed.contains(&channel) && conn.ssubscribe(&channel).await.is_ok() {
                            subscribed.insert(channel);
                        }
                    }
                    push = pushes.recv() => {
                        let Some(push) = push else { break };
                        let Some(changes) = changes.upgrade() else { return };
                        match push.kind {
                            redis::PushKind::SMessage => {
                                if let Some(redis::Value::BulkString(channel)) = push.data.first() {
                                    changes.wake(&String::from_utf8_lossy(channel));
                                }
                            }
                            redis::PushKind::Disconnection => changes.wake_all(),
                            _ => {}
                        }
                    }
                }
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
