//! An agent-like loop on the in-memory backend: each step checkpoints its state, appends
//! events and writes a memory item under the thread's lock (`LockKey::for_thread`), whose
//! lease fences every checkpoint write. Halfway through, the worker "crashes" (stops
//! without releasing its lease); a second worker waits for the lease to lapse, resumes
//! from the latest checkpoint, and the crashed worker's late checkpoint is refused by its
//! stale fence.
//!
//! Run: `cargo run -p persistence-core --example quickstart`

use std::sync::Arc;
use std::time::Duration;

use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, CheckpointerExt, ErrorKind,
    ExpectLatest, ItemKey, Lease, Lock, LockKey, LockOptions, MemoryBackend, Namespace,
    NewCheckpoint, PutCheckpointOptions, PutItemOptions, Result, SessionKey, SessionLog,
    SessionLogExt, Store, StoreExt, TenantId, ThreadKey, Versioned,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AgentState {
    step: i64,
    notes: Vec<String>,
}
impl Versioned for AgentState {
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    kind: String,
    step: i64,
}
impl Versioned for Event {
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Memory {
    last_step: i64,
}
impl Versioned for Memory {
    const VERSION: u32 = 1;
}

struct Services {
    checkpoints: Arc<dyn Checkpointer>,
    sessions: Arc<dyn SessionLog>,
    store: Arc<dyn Store>,
    lock: Arc<dyn Lock>,
}

struct Ids {
    tenant: TenantId,
    thread: ThreadKey,
    session: SessionKey,
    lock: LockKey,
    namespace: Namespace,
    memory_key: ItemKey,
}

/// Runs steps until `until`, holding `lease`. Resumes from the latest checkpoint.
async fn run_steps(svc: &Services, ids: &Ids, lease: &Lease, until: i64) -> Result<i64> {
    let states = svc.checkpoints.typed::<AgentState>();
    let events = svc.sessions.typed::<Event>();
    let memories = svc.store.typed::<Memory>();
    let latest = states
        .get(&ids.tenant, &ids.thread, CheckpointSelector::Latest)
        .await?;
    let (mut state, mut parent) = match latest {
        Some(t) => (t.checkpoint.state, Some(t.checkpoint.id)),
        None => (
            AgentState {
                step: 0,
                notes: vec![],
            },
            None,
        ),
    };
    println!(
        "  worker (fence {}) starts at step {}",
        lease.fence.0, state.step
    );
    while state.step < until {
        state.step += 1;
        state
            .notes
            .push(format!("thought about step {}", state.step));
        let append = AppendOptions::default();
        let event = Event {
            kind: "step".into(),
            step: state.step,
        };
        let head = events
            .append(&ids.tenant, &ids.session, &[event], append)
            .await?;
        let memory = Memory {
            last_step: state.step,
        };
        memories
            .put(
                &ids.tenant,
                &ids.namespace,
                &ids.memory_key,
                &memory,
                PutItemOptions::default(),
            )
            .await?;
        let id = CheckpointId::new();
        let guard = parent.map_or(ExpectLatest::Absent, ExpectLatest::Is);
        let checkpoint = NewCheckpoint::new(id, state.step, state.clone()).with_parent(parent);
        let options = PutCheckpointOptions::default()
            .with_expect_latest(guard)
            .with_lease(lease);
        states
            .put(&ids.tenant, &ids.thread, checkpoint, options)
            .await?;
        parent = Some(id);
        println!("  step {} checkpointed (event #{head})", state.step);
    }
    Ok(state.step)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let backend = MemoryBackend::new();
    let svc = Services {
        checkpoints: Arc::new(backend.clone()),
        sessions: Arc::new(backend.clone()),
        store: Arc::new(backend.clone()),
        lock: Arc::new(backend),
    };
    let thread = ThreadKey::new("support/ticket-42")?;
    let ids = Ids {
        tenant: TenantId::new("acme")?,
        lock: LockKey::for_thread(&thread),
        thread,
        session: SessionKey::new("support/ticket-42")?,
        namespace: Namespace::new(["users", "u-7", "memories"])?,
        memory_key: ItemKey::new("progress")?,
    };

    println!("worker A takes the thread and runs 3 steps, then crashes without releasing");
    let ttl = Duration::from_millis(300);
    let options = LockOptions::default()
        .with_ttl(ttl)
        .with_wait(Duration::from_secs(5));
    let crashed = svc.lock.acquire(&ids.tenant, &ids.lock, options).await?;
    run_steps(&svc, &ids, &crashed, 3).await?;

    println!("worker B waits for A's lease to lapse, then resumes from the checkpoint");
    let done = svc
        .lock
        .with_lock(&ids.tenant, &ids.lock, options, |lease| {
            let (svc, ids) = (&svc, &ids);
            async move { run_steps(svc, ids, &lease.lease(), 6).await }
        })
        .await?;
    println!("worker B finished at step {done}");

    println!("worker A wakes up and tries to checkpoint with its old lease:");
    let zombie = AgentState {
        step: 4,
        notes: vec!["zombie".into()],
    };
    let late = PutCheckpointOptions::default().with_lease(&crashed);
    match svc
        .checkpoints
        .typed::<AgentState>()
        .put(
            &ids.tenant,
            &ids.thread,
            NewCheckpoint::new(CheckpointId::new(), 4, zombie),
            late,
        )
        .await
    {
        Err(e) if e.kind() == ErrorKind::Fenced => println!("  refused: {e}"),
        other => println!("  unexpected: {other:?}"),
    }

    let history = svc
        .sessions
        .typed::<Event>()
        .read(&ids.tenant, &ids.session, 0, 100)
        .await?;
    let steps: Vec<i64> = history.iter().map(|(_, e)| e.step).collect();
    println!(
        "session log ordinals 1..={}: steps {steps:?}",
        history.len()
    );
    let memory = svc
        .store
        .typed::<Memory>()
        .get(&ids.tenant, &ids.namespace, &ids.memory_key)
        .await?;
    println!("memory item: {memory:?}");
    let other = TenantId::new("globex")?;
    let leaked = svc
        .checkpoints
        .get(&other, &ids.thread, CheckpointSelector::Latest)
        .await?;
    println!("tenant globex sees acme's thread: {}", leaked.is_some());
    Ok(())
}
