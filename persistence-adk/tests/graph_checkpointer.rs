//! adk-graph's checkpointer contract, checked on `GraphCheckpointer` over memory, the
//! filesystem, PostgreSQL, Redis and a Redis Cluster (servers from the harness; required
//! in CI), beside adk-graph's own `MemoryCheckpointer` where they should agree; and
//! adk's runtime on top: a graph run killed mid-step and resumed from storage, a pause
//! resumed by checkpoint id, retention while a graph runs, and adk's `Runner` driving a
//! `GraphAgent` with `LogSessionService` as its sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use adk_graph::checkpoint::{Checkpointer, MemoryCheckpointer, RetentionPolicy};
use adk_graph::edge::{END, START};
use adk_graph::graph::{CompiledGraph, StateGraph};
use adk_graph::node::{ExecutionConfig, NodeOutput};
use adk_graph::state::{Checkpoint, State};
use persistence::{Persistence, TenantId};
use persistence_adk::GraphCheckpointer;
use persistence_conformance::harness::backend_urls;
use serde_json::json;

/// Every backend the harness offers: name, URL (to open again, as a restarted process
/// would) and the opened backend, with the directory the fs one lives in.
async fn backends() -> (Vec<(&'static str, String, Persistence)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for backend in backend_urls(dir.path()) {
        if backend.needs_migration {
            persistence::postgres::migrate(&backend.url).await.unwrap();
        }
        let opened = persistence::open(&backend.url).await.unwrap();
        out.push((backend.name, backend.url, opened));
    }
    (out, dir)
}

/// A tenant of this test process alone (servers are shared between test runs).
fn tenant(test: &str) -> TenantId {
    TenantId::new(format!("adkg-{test}-{}", std::process::id())).unwrap()
}

/// The backend as a new process would open it: over new connections (the memory
/// backend lives in this process alone, so it is the same one).
async fn reopen(name: &str, url: &str, p: Persistence) -> Persistence {
    if name == "memory" {
        return p;
    }
    drop(p);
    persistence::open(url).await.unwrap()
}

fn checkpointer(p: &Persistence, tenant: &TenantId) -> GraphCheckpointer {
    GraphCheckpointer::new(p.checkpointer.clone(), p.store.clone(), tenant.clone())
}

fn checkpoint(thread: &str, step: usize, value: i64) -> Checkpoint {
    let mut state = State::new();
    state.insert("value".into(), json!(value));
    let mut c = Checkpoint::new(thread, state, step, vec![format!("node{step}")]);
    c.metadata.insert("source".into(), json!("test"));
    c.attempts.insert("node".into(), 2);
    c
}

/// What a test compares of a checkpoint: everything adk stores.
fn summary(c: &Checkpoint) -> serde_json::Value {
    serde_json::to_value(c).unwrap()
}

fn summaries(cs: &[Checkpoint]) -> Vec<serde_json::Value> {
    cs.iter().map(summary).collect()
}

/// save, load, load_by_id, list (oldest first), delete: the same answers as adk-graph's
/// `MemoryCheckpointer`, for thread ids with `/`, `%` and spaces, and a save retried
/// stores nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agrees_with_adks_memory_checkpointer() {
    let (backends, _dir) = backends().await;
    for (name, _, p) in backends {
        let ours = checkpointer(&p, &tenant("agree"));
        let adk = MemoryCheckpointer::new();
        for thread in ["plain", "a/b", "50% off", "a%2Fb"] {
            let saved: Vec<Checkpoint> = (0..4)
                .map(|i| checkpoint(thread, i, i as i64 * 10))
                .collect();
            for c in &saved {
                assert_eq!(ours.save(c).await.unwrap(), c.checkpoint_id, "{name}");
                adk.save(c).await.unwrap();
            }
            // A retry after a lost reply: same id, same content.
            ours.save(&saved[1]).await.unwrap();
            assert_eq!(
                summaries(&ours.list(thread).await.unwrap()),
                summaries(&adk.list(thread).await.unwrap()),
                "{name} {thread}: list"
            );
            assert_eq!(
                ours.load(thread).await.unwrap().map(|c| summary(&c)),
                adk.load(thread).await.unwrap().map(|c| summary(&c)),
                "{name} {thread}: load"
            );
            for c in &saved {
                assert_eq!(
                    ours.load_by_id(&c.checkpoint_id)
                        .await
                        .unwrap()
                        .map(|c| summary(&c)),
                    Some(summary(c)),
                    "{name} {thread}: load_by_id"
                );
            }
        }
        // The four threads stay apart ("a/b" and "a%2Fb" included).
        assert_eq!(ours.list("a/b").await.unwrap().len(), 4, "{name}");
        assert!(ours.load("unknown").await.unwrap().is_none(), "{name}");
        assert!(ours.load("").await.unwrap().is_none(), "{name}");
        assert!(ours.list("unknown").await.unwrap().is_empty(), "{name}");
        assert!(
            ours.load_by_id("no-such-id").await.unwrap().is_none(),
            "{name}"
        );

        let gone = ours.list("a/b").await.unwrap();
        ours.delete("a/b").await.unwrap();
        adk.delete("a/b").await.unwrap();
        assert!(ours.load("a/b").await.unwrap().is_none(), "{name}");
        assert!(ours.list("a/b").await.unwrap().is_empty(), "{name}");
        for c in &gone {
            assert!(
                ours.load_by_id(&c.checkpoint_id).await.unwrap().is_none(),
                "{name}"
            );
        }
        assert_eq!(
            ours.list("a%2Fb").await.unwrap().len(),
            4,
            "{name}: only a/b deleted"
        );
        assert!(ours.delete("unknown").await.is_ok(), "{name}");
    }
}

/// One tenant's checkpoints are invisible to another, by thread and by id; an id saved
/// for one thread cannot be saved for another; a changed checkpoint under a saved id is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_ids_are_not_reused() {
    let (backends, _dir) = backends().await;
    for (name, _, p) in backends {
        let a = checkpointer(&p, &tenant("iso-a"));
        let b = checkpointer(&p, &tenant("iso-b"));
        let c = checkpoint("shared", 0, 1);
        a.save(&c).await.unwrap();
        assert!(b.load("shared").await.unwrap().is_none(), "{name}");
        assert!(
            b.load_by_id(&c.checkpoint_id).await.unwrap().is_none(),
            "{name}"
        );

        let mut moved = c.clone();
        moved.thread_id = "other".into();
        let err = a.save(&moved).await.unwrap_err().to_string();
        assert!(err.contains("another thread"), "{name}: {err}");
        assert!(a.load("other").await.unwrap().is_none(), "{name}");

        let mut changed = c.clone();
        changed.step = 9;
        let err = a.save(&changed).await.unwrap_err().to_string();
        assert!(err.contains("other content"), "{name}: {err}");
        assert_eq!(
            a.load("shared").await.unwrap().map(|c| c.step),
            Some(0),
            "{name}"
        );
    }
}

/// `prune` removes what adk's policy discards (by count and by age), the newest always
/// kept, as `MemoryCheckpointer` does; the pruned ids are gone from `load_by_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_the_policy_keeps() {
    let (backends, _dir) = backends().await;
    for (name, _, p) in backends {
        let ours = checkpointer(&p, &tenant("prune"));
        let adk = MemoryCheckpointer::new();
        let now = chrono::Utc::now();
        let saved: Vec<Checkpoint> = (0..6)
            .map(|i| {
                let mut c = checkpoint("t", i, i as i64);
                // Oldest first, an hour apart, the last two recent.
                c.created_at = now - chrono::Duration::hours(6 - i as i64);
                c
            })
            .collect();
        for c in &saved {
            ours.save(c).await.unwrap();
            adk.save(c).await.unwrap();
        }
        let by_age = RetentionPolicy::max_age(Duration::from_secs(3 * 3600 + 60));
        assert_eq!(ours.prune("t", &by_age).await.unwrap(), 3, "{name}");
        assert_eq!(adk.prune("t", &by_age).await.unwrap(), 3);
        assert_eq!(
            summaries(&ours.list("t").await.unwrap()),
            summaries(&adk.list("t").await.unwrap()),
            "{name}: by age"
        );
        let by_count = RetentionPolicy::keep_last(1);
        assert_eq!(ours.prune("t", &by_count).await.unwrap(), 2, "{name}");
        adk.prune("t", &by_count).await.unwrap();
        assert_eq!(
            summaries(&ours.list("t").await.unwrap()),
            summaries(&adk.list("t").await.unwrap()),
            "{name}: by count"
        );
        assert_eq!(
            ours.prune("t", &by_count).await.unwrap(),
            0,
            "{name}: nothing more"
        );
        for c in &saved[..5] {
            assert!(
                ours.load_by_id(&c.checkpoint_id).await.unwrap().is_none(),
                "{name}"
            );
        }
        assert!(
            ours.load_by_id(&saved[5].checkpoint_id)
                .await
                .unwrap()
                .is_some(),
            "{name}"
        );
    }
}

/// A chain `step0 -> .. -> step{n-1}` adding 1 to `count` and appending its name to
/// `trail`; `step{stall}` never finishes while `stall` is `Some`. Counts node runs.
fn chain(
    steps: usize,
    stall: Option<usize>,
    runs: Arc<AtomicUsize>,
    checkpointer: Arc<dyn Checkpointer>,
) -> CompiledGraph {
    let names: Vec<String> = (0..steps).map(|i| format!("step{i}")).collect();
    let mut graph = StateGraph::with_channels(&["count", "trail"]);
    for (i, name) in names.iter().enumerate() {
        let runs = runs.clone();
        let name_in = name.clone();
        graph = graph.add_node_fn(name, move |ctx| {
            let runs = runs.clone();
            let name = name_in.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if stall == Some(i) {
                    std::future::pending::<()>().await;
                }
                let count = ctx.get("count").and_then(|v| v.as_i64()).unwrap_or(0);
                let mut trail = ctx.get("trail").cloned().unwrap_or(json!([]));
                trail.as_array_mut().unwrap().push(json!(name));
                Ok(NodeOutput::new()
                    .with_update("count", json!(count + 1))
                    .with_update("trail", trail))
            }
        });
    }
    graph = graph.add_edge(START, &names[0]);
    for pair in names.windows(2) {
        graph = graph.add_edge(&pair[0], &pair[1]);
    }
    graph
        .add_edge(&names[steps - 1], END)
        .compile()
        .unwrap()
        .with_checkpointer_arc(checkpointer)
}

/// A graph run whose task is aborted inside step 3 (its process gone, as far as storage
/// can tell) resumes over a new connection from the last checkpoint: the steps before
/// it do not run again, and the result is the uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_step_resumes_from_storage() {
    const STEPS: usize = 6;
    let reference = chain(
        STEPS,
        None,
        Arc::default(),
        Arc::new(MemoryCheckpointer::new()),
    )
    .invoke(State::new(), ExecutionConfig::new("t"))
    .await
    .unwrap();
    assert_eq!(reference.get("count"), Some(&json!(STEPS)));

    let (backends, _dir) = backends().await;
    for (name, url, p) in backends {
        let tenant = tenant("resume");
        let thread = format!("run/{name}");
        let first_runs = Arc::new(AtomicUsize::new(0));
        let first = chain(
            STEPS,
            Some(3),
            first_runs.clone(),
            Arc::new(checkpointer(&p, &tenant)),
        );
        let config = ExecutionConfig::new(&thread);
        let task = tokio::spawn(async move { first.invoke(State::new(), config).await });
        // Step 3 has started: every step before it is checkpointed.
        tokio::time::timeout(Duration::from_secs(30), async {
            while first_runs.load(Ordering::SeqCst) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the run reaches step 3");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let reopened = reopen(name, &url, p).await;
        let storage = Arc::new(checkpointer(&reopened, &tenant));
        let stored = storage.load(&thread).await.unwrap().expect("a checkpoint");
        assert_eq!(stored.pending_nodes, vec!["step3".to_string()], "{name}");

        let second_runs = Arc::new(AtomicUsize::new(0));
        let second = chain(STEPS, None, second_runs.clone(), storage.clone());
        let resumed = second
            .invoke(State::new(), ExecutionConfig::new(&thread))
            .await
            .unwrap();
        assert_eq!(
            resumed, reference,
            "{name}: the same result as a run never killed"
        );
        assert_eq!(
            second_runs.load(Ordering::SeqCst),
            STEPS - 3,
            "{name}: steps 0-2 not rerun"
        );
        // One checkpoint per finished step, the killed one's step never saved twice.
        let steps: Vec<usize> = storage
            .list(&thread)
            .await
            .unwrap()
            .iter()
            .map(|c| c.step)
            .collect();
        let mut sorted = steps.clone();
        sorted.dedup();
        assert_eq!(steps, sorted, "{name}: {steps:?}");
    }
}

/// A run paused by `interrupt_before` resumes from the pause's checkpoint id (adk's
/// `resume_from`, which loads by id alone) on a new connection, with retention on: the
/// pruned thread still resumes and ends with the policy's count of checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_resumes_by_checkpoint_id_under_retention() {
    let (backends, _dir) = backends().await;
    for (name, url, p) in backends {
        let tenant = tenant("pause");
        let build = |storage: GraphCheckpointer| {
            chain(4, None, Arc::default(), Arc::new(storage))
                .with_checkpoint_retention(RetentionPolicy::keep_last(2))
                .with_interrupt_before(&["step2"])
        };
        let paused = build(checkpointer(&p, &tenant))
            .invoke(State::new(), ExecutionConfig::new("paused"))
            .await;
        let Err(adk_graph::error::GraphError::Interrupted(pause)) = paused else {
            panic!("{name}: the run pauses before step2");
        };
        let reopened = reopen(name, &url, p).await;
        let storage = checkpointer(&reopened, &tenant);
        assert_eq!(
            storage.list("paused").await.unwrap().len(),
            2,
            "{name}: pruned to 2"
        );
        let at_pause = storage
            .load_by_id(&pause.checkpoint_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at_pause.pending_nodes, vec!["step2".to_string()], "{name}");

        let done = build(storage.clone())
            .invoke(
                State::new(),
                ExecutionConfig::new("paused").with_resume_from(&pause.checkpoint_id),
            )
            .await
            .unwrap();
        assert_eq!(done.get("count"), Some(&json!(4)), "{name}");
        assert_eq!(
            done.get("trail"),
            Some(&json!(["step0", "step1", "step2", "step3"])),
            "{name}"
        );
        assert_eq!(
            storage.list("paused").await.unwrap().len(),
            2,
            "{name}: still 2"
        );
    }
}
