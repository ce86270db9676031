//! The benchmark workload: the same operations, payloads and key spread on every
//! backend, so figures compare across backends and with each raw baseline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, Envelope, Error, ExpectLatest,
    ItemKey, Lease, Lock, LockKey, Namespace, NewCheckpoint, PutCheckpointOptions, PutItemOptions,
    Result, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use serde_json::json;

use crate::{Stats, measure};

/// The tenant the workload writes under.
pub const TENANT: &str = "persistence-bench";
/// Threads and sessions are spread over this many ids.
const SPREAD: usize = 8;
/// Store keys are spread over this many ids.
const KEYS: usize = 100;
/// Unmeasured calls per task before a row: connections prepare statements and load
/// scripts on first use.
pub const WARM_UP: usize = 3;

/// The four traits of the backend under test.
#[derive(Clone)]
pub struct Stores {
    /// Checkpoints.
    pub checkpointer: Arc<dyn Checkpointer>,
    /// Memory items.
    pub store: Arc<dyn Store>,
    /// Session logs.
    pub sessions: Arc<dyn SessionLog>,
    /// Leases.
    pub lock: Arc<dyn Lock>,
    /// The threads of the guarded put row: each task's lease and latest checkpoint
    /// (shared by clones, so a row run on another backend value of the same storage
    /// continues them).
    pub guarded: GuardedThreads,
}

impl Stores {
    /// The four traits of one backend value.
    pub fn of<B>(backend: B) -> Self
    where
        B: Checkpointer + Store + SessionLog + Lock + Clone + 'static,
    {
        Stores {
            checkpointer: Arc::new(backend.clone()),
            store: Arc::new(backend.clone()),
            sessions: Arc::new(backend.clone()),
            lock: Arc::new(backend),
            guarded: GuardedThreads::default(),
        }
    }
}

/// Per task of the guarded put row: the lease its puts are fenced with and the latest
/// checkpoint of its thread, which each put expects.
#[derive(Clone, Default)]
pub struct GuardedThreads(Arc<Mutex<std::collections::HashMap<String, GuardedThread>>>);

#[derive(Clone)]
struct GuardedThread {
    lease: Lease,
    latest: Option<CheckpointId>,
}

/// How long a guarded row's lease lasts: a bench killed mid-row blocks the next run's
/// guarded row for at most this long. A row that outlasts it keeps writing: a fenced put
/// checks the fence, not the lease's expiry (and a late release changes nothing).
const GUARD_TTL: Duration = Duration::from_secs(300);

/// One row of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `Checkpointer::put` of a ~250-byte state, no guard.
    CheckpointPut,
    /// `Checkpointer::put` of the same state guarded as a single writer guards it: the
    /// task's lease fence and `expect_latest` of its thread's previous checkpoint.
    CheckpointPutGuarded,
    /// `Checkpointer::get(Latest)`.
    CheckpointGetLatest,
    /// `SessionLog::append` of one ~90-byte event.
    AppendOne,
    /// `SessionLog::append` of a 100-event batch.
    AppendHundred,
    /// `Store::put` over 100 keys.
    StorePut,
    /// `Store::get` over 100 keys.
    StoreGet,
    /// `Lock::try_acquire` then `Lock::release`, each task cycling its own lock name
    /// (one per task, the same every run: a fence record never goes away, so fresh
    /// names would leave one behind per operation).
    LockCycle,
}

impl Op {
    /// Every row, in print order.
    pub const ALL: [Op; 8] = [
        Op::CheckpointPut,
        Op::CheckpointPutGuarded,
        Op::CheckpointGetLatest,
        Op::AppendOne,
        Op::AppendHundred,
        Op::StorePut,
        Op::StoreGet,
        Op::LockCycle,
    ];

    /// The row's label.
    pub fn name(self) -> &'static str {
        match self {
            Op::CheckpointPut => "checkpoint put",
            Op::CheckpointPutGuarded => "checkpoint put (fence + expect)",
            Op::CheckpointGetLatest => "checkpoint get latest",
            Op::AppendOne => "session append 1 event",
            Op::AppendHundred => "session append 100 events",
            Op::StorePut => "store put",
            Op::StoreGet => "store get",
            Op::LockCycle => "lock cycle (acquire+release)",
        }
    }

    /// Whether the row only reads (compared with a raw read, not a raw write).
    pub fn is_read(self) -> bool {
        matches!(self, Op::CheckpointGetLatest | Op::StoreGet)
    }

    /// Operations in a row of `ops`: 100-event batches run a tenth as many.
    pub fn count(self, ops: usize) -> usize {
        match self {
            Op::AppendHundred => (ops / 10).max(1),
            _ => ops,
        }
    }
}

/// The one-event payload of the session rows (also the size the raw baselines write).
pub fn event() -> Envelope {
    Envelope::new(1, json!({"role": "assistant", "text": "x".repeat(64)}))
}

/// Runs `op` a few times per task, unmeasured.
///
/// # Errors
/// The first failed call.
pub async fn warm_up(stores: &Stores, op: Op, tasks: usize) -> Result<Stats> {
    measure_op(stores, op, WARM_UP * tasks.max(1), tasks).await
}

/// Measures `op` `ops` times on `tasks` concurrent tasks. A failed call fails the row:
/// figures of failing operations would be meaningless.
///
/// # Errors
/// The first failed call.
pub async fn measure_op(stores: &Stores, op: Op, ops: usize, tasks: usize) -> Result<Stats> {
    let tenant = Arc::new(TenantId::new(TENANT)?);
    let stores = stores.clone();
    let failure = Arc::new(Mutex::new(None::<Error>));
    let seen = failure.clone();
    let stats = measure(op.name(), ops, tasks, move |i| {
        let (stores, t, seen) = (stores.clone(), tenant.clone(), seen.clone());
        async move {
            if let Err(e) = call(&stores, &t, op, i, tasks).await {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    })
    .await;
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

fn spread(kind: &str, i: usize) -> String {
    format!("{kind}-{}", i % SPREAD)
}

fn namespace() -> Result<Namespace> {
    Namespace::new(["bench", "items"])
}

/// Operation `i` of a row; `measure` gives task `k` of `tasks` the `i` with
/// `i % tasks == k`.
async fn call(s: &Stores, t: &TenantId, op: Op, i: usize, tasks: usize) -> Result<()> {
    match op {
        Op::CheckpointPut => {
            let thread = ThreadKey::new(spread("thread", i))?;
            s.checkpointer
                .put(t, &thread, checkpoint(i, None), Default::default())
                .await?;
        }
        Op::CheckpointPutGuarded => guarded_put(s, t, i, tasks).await?,
        Op::CheckpointGetLatest => {
            let thread = ThreadKey::new(spread("thread", i))?;
            s.checkpointer
                .get(t, &thread, CheckpointSelector::Latest)
                .await?;
        }
        Op::AppendOne | Op::AppendHundred => {
            let size = if op == Op::AppendOne { 1 } else { 100 };
            let session = SessionKey::new(spread(&format!("session-{size}"), i))?;
            s.sessions
                .append(t, &session, vec![event(); size], AppendOptions::default())
                .await?;
        }
        Op::StorePut => {
            let key = ItemKey::new(format!("k{}", i % KEYS))?;
            s.store
                .put(t, &namespace()?, &key, event(), PutItemOptions::default())
                .await?;
        }
        Op::StoreGet => {
            let key = ItemKey::new(format!("k{}", i % KEYS))?;
            s.store.get(t, &namespace()?, &key).await?;
        }
        Op::LockCycle => {
            let name = lock_name(i % tasks.max(1))?;
            let lease = s
                .lock
                .try_acquire(t, &name, Duration::from_secs(30))
                .await?
                .ok_or_else(|| Error::conflict(format!("bench lock {name} is held")))?;
            s.lock.release(&lease).await?;
        }
    }
    Ok(())
}

/// The ~250-byte checkpoint of operation `i`.
fn checkpoint(i: usize, parent: Option<CheckpointId>) -> NewCheckpoint {
    let state = json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});
    NewCheckpoint::new(CheckpointId::new(), i as i64, Envelope::new(1, state)).with_parent(parent)
}

/// The thread and lock of task `k` in the guarded put row: the same names at every
/// concurrency and in every run, since each leaves a fence record behind (fences never
/// go back), one per task of the widest row. Rows at another concurrency continue the
/// threads and leases of the tasks they share.
fn guarded_names(k: usize) -> Result<(ThreadKey, LockKey)> {
    let thread = ThreadKey::new(format!("guarded-{k}"))?;
    let lock = LockKey::for_thread(&thread);
    Ok((thread, lock))
}

/// A put fenced with the task's lease and expecting its thread's latest checkpoint. The
/// task's first call takes the lease and reads the latest checkpoint (warm-up, not
/// timed).
async fn guarded_put(s: &Stores, t: &TenantId, i: usize, tasks: usize) -> Result<()> {
    let k = i % tasks.max(1);
    let (thread, name) = guarded_names(k)?;
    let known = s
        .guarded
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(thread.as_str())
        .cloned();
    let mut state = match known {
        Some(state) => state,
        None => {
            let lease = s
                .lock
                .try_acquire(t, &name, GUARD_TTL)
                .await?
                .ok_or_else(|| {
                    Error::conflict(format!(
                        "bench lock {name} is held (by a run that did not finish? it \
                         expires within {} s)",
                        GUARD_TTL.as_secs()
                    ))
                })?;
            let latest = s
                .checkpointer
                .get(t, &thread, CheckpointSelector::Latest)
                .await?
                .map(|tuple| tuple.checkpoint.id);
            GuardedThread { lease, latest }
        }
    };
    let options = PutCheckpointOptions::default()
        .with_expect_latest(state.latest.map_or(ExpectLatest::Absent, ExpectLatest::Is))
        .with_lease(&state.lease);
    let put = s
        .checkpointer
        .put(t, &thread, checkpoint(i, state.latest), options)
        .await?;
    state.latest = Some(put.id);
    s.guarded
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(thread.as_str().to_owned(), state);
    Ok(())
}

/// The lock task `k` cycles.
fn lock_name(k: usize) -> Result<LockKey> {
    LockKey::new(format!("bench-lock-{k}"))
}

/// Deletes what the workload wrote. Leases are released by every cycle; their fence
/// records stay (fences never go back), one per task of the widest row, the same names
/// in every run.
///
/// # Errors
/// The first failed delete.
pub async fn cleanup(s: &Stores) -> Result<()> {
    let t = TenantId::new(TENANT)?;
    let guarded: Vec<(String, GuardedThread)> = s
        .guarded
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (thread, state) in guarded {
        s.lock.release(&state.lease).await?;
        s.checkpointer
            .delete_thread(&t, &ThreadKey::new(thread)?)
            .await?;
    }
    for i in 0..SPREAD {
        let thread = ThreadKey::new(spread("thread", i))?;
        s.checkpointer.delete_thread(&t, &thread).await?;
        for size in [1, 100] {
            let session = SessionKey::new(spread(&format!("session-{size}"), i))?;
            s.sessions.delete(&t, &session).await?;
        }
    }
    for i in 0..KEYS {
        let key = ItemKey::new(format!("k{i}"))?;
        s.store.delete(&t, &namespace()?, &key, None).await?;
    }
    Ok(())
}
