//! Calls whose answers are shared between callers that can all use them: when many live
//! tails of one session wake at the same notice, one read answers them all, so a
//! hundred subscribers cost the server one query, not a hundred.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;

use crate::error::Result;

/// A table of calls in flight, by key. A caller states the earliest start it accepts
/// (`not_before`: e.g. when it learnt there is something new to read); it joins a call
/// of the same key started at or after that instant and takes its answer, or else makes
/// the call itself, which later callers may join.
///
/// Joining is only as good as the call it joins: it suits reads whose answer any call
/// started after `not_before` gives correctly. A failed or cancelled call is not shared:
/// who joined it makes its own.
///
/// ```
/// # async fn demo() -> persistence_core::Result<()> {
/// use std::time::Instant;
/// use persistence_core::backend::SharedCalls;
///
/// let heads: SharedCalls<&str, u64> = SharedCalls::default();
/// let woken = Instant::now();
/// let head = heads.call("acme/chat-1", woken, || async { Ok(7) }).await?;
/// assert_eq!(head, 7);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct SharedCalls<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
    next_id: AtomicU64,
}

struct Flight<V> {
    id: u64,
    started: Instant,
    answer: watch::Receiver<Option<V>>,
}

impl<K, V> Default for SharedCalls<K, V> {
    fn default() -> Self {
        SharedCalls {
            flights: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K, V> std::fmt::Debug for SharedCalls<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCalls").finish_non_exhaustive()
    }
}

/// Takes the flight out of the table when its call ends, however it ends.
struct Landing<'a, K: Eq + Hash, V> {
    calls: &'a SharedCalls<K, V>,
    key: Option<K>,
    id: u64,
}

impl<K: Eq + Hash, V> Drop for Landing<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut flights = lock(&self.calls.flights);
            if flights.get(&key).is_some_and(|f| f.id == self.id) {
                flights.remove(&key);
            }
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SharedCalls<K, V> {
    /// The answer of a call of `key` started at or after `not_before`: one in flight,
    /// joined, or `call` made now.
    ///
    /// # Errors
    /// What `call` fails with (a joined call that failed is made again, by this caller).
    pub async fn call<F, Fut>(&self, key: K, not_before: Instant, call: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let joined = lock(&self.flights)
            .get(&key)
            .filter(|f| f.started >= not_before)
            .map(|f| f.answer.clone());
        if let Some(mut answer) = joined
            && let Ok(shared) = answer.wait_for(Option::is_some).await
            && let Some(value) = shared.clone()
        {
            return Ok(value);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = watch::channel(None);
        let started = Instant::now();
        lock(&self.flights).insert(
            key.clone(),
            Flight {
                id,
                started,
                answer,
            },
        );
        let _landing = Landing {
            calls: self,
            key: Some(key),
            id,
        };
        let result = call().await;
        if let Ok(value) = &result {
            sender.send_replace(Some(value.clone()));
        }
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::SharedCalls;
    use crate::Error;

    /// Callers woken before a call started share it; one woken after it started makes
    /// its own (the answer it needs may be newer); a failed call is made again by whoever
    /// joined it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_are_shared_only_by_callers_they_can_answer() {
        let calls: Arc<SharedCalls<&str, usize>> = Arc::default();
        let made = Arc::new(AtomicUsize::new(0));
        let woken = Instant::now();
        let slow_call = |made: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(made.fetch_add(1, Ordering::SeqCst) + 1)
        };
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (calls, made) = (calls.clone(), made.clone());
            tasks.push(tokio::spawn(async move {
                calls.call("k", woken, || slow_call(made)).await.unwrap()
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1, "a caller made its own call");
        }
        assert_eq!(made.load(Ordering::SeqCst), 1);

        // Woken after the call in flight started: not joined.
        let first = {
            let (calls, made) = (calls.clone(), made.clone());
            tokio::spawn(async move {
                calls
                    .call("k", Instant::now(), || slow_call(made))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let late = calls
            .call("k", Instant::now(), || slow_call(made.clone()))
            .await
            .unwrap();
        assert_eq!((first.await.unwrap(), late), (2, 3));

        // A failed call is not shared.
        let woken = Instant::now();
        let failing = {
            let calls = calls.clone();
            tokio::spawn(async move {
                calls
                    .call("k", woken, || async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err(Error::unavailable("down"))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let retried = calls.call("k", woken, || async { Ok(42) }).await.unwrap();
        assert!(failing.await.unwrap().is_err());
        assert_eq!(retried, 42);
    }
}
