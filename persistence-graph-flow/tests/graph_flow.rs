//! graph-flow's own runner (`FlowRunner`, one step per call) with the adapter as its
//! storage, on memory, the filesystem, PostgreSQL, Redis and a Redis Cluster (servers
//! from the harness: env URLs or throwaway local ones; required in CI): a run killed in
//! the middle of a step resumes from storage to the same result as an uninterrupted
//! one, racing executors cannot both save, and session ids map to threads one to one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use graph_flow::{
    Context, ExecutionStatus, FlowRunner, Graph, GraphBuilder, GraphError, InMemorySessionStorage,
    NextAction, Session, SessionStorage, Task, TaskResult,
};
use persistence::{Persistence, TenantId};
use persistence_conformance::harness::backend_urls;
use persistence_graph_flow::CheckpointSessionStorage;

/// A step of the test graph: counts in the context and says so in the chat history,
/// after a pause (long enough, in the slow graph, to be killed in the middle of).
struct Step {
    id: &'static str,
    next: NextAction,
    pause: Duration,
}

#[async_trait]
impl Task for Step {
    fn id(&self) -> &str {
        self.id
    }
    async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
        tokio::time::sleep(self.pause).await;
        let n: u64 = context.get("n").unwrap_or(0);
        context.set("n", n + 1)?;
        context.add_assistant_message(format!("{} saw {n}", self.id));
        Ok(TaskResult::new(
            Some(format!("{}:{n}", self.id)),
            self.next.clone(),
        ))
    }
}

/// collect -> think -> answer (end); `think` pauses for `pause`.
fn graph(pause: Duration) -> Arc<Graph> {
    let step = |id, next, pause| Arc::new(Step { id, next, pause });
    Arc::new(
        GraphBuilder::new("test")
            .add_task(step("collect", NextAction::Continue, Duration::ZERO))
            .add_task(step("think", NextAction::Continue, pause))
            .add_task(step("answer", NextAction::End, Duration::ZERO))
            .add_edge("collect", "think")
            .add_edge("think", "answer")
            .build()
            .unwrap(),
    )
}

/// What a finished run left: the count and the chat history's contents.
fn outcome(session: &Session) -> (u64, Vec<String>, String) {
    let n = session.context.get("n").unwrap();
    let said = session
        .context
        .get_all_messages()
        .into_iter()
        .map(|m| m.content)
        .collect();
    (n, said, session.current_task_id.clone())
}

/// Runs `id` step by step to its end.
async fn run_to_end(runner: &FlowRunner, id: &str) {
    for _ in 0..10 {
        let result = runner.run(id).await.unwrap();
        if matches!(result.status, ExecutionStatus::Completed) {
            return;
        }
    }
    panic!("{id} did not complete in 10 steps");
}

/// One backend: its name, how to open it again (as another process would), and an
/// open instance.
struct Target {
    name: &'static str,
    url: String,
    first: Persistence,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// The backend opened again: a new connection (the same store for memory).
    async fn reopen(&self) -> Persistence {
        if self.url == "memory://" {
            return self.first.clone();
        }
        persistence::open(&self.url).await.unwrap()
    }
}

/// Every backend the harness offers.
async fn targets() -> Vec<Target> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for backend in backend_urls(dir.path()) {
        if backend.needs_migration {
            persistence::postgres::migrate(&backend.url).await.unwrap();
        }
        out.push(Target {
            name: backend.name,
            first: persistence::open(&backend.url).await.unwrap(),
            url: backend.url,
            _dir: None,
        });
    }
    if let Some(fs) = out.iter_mut().find(|t| t.name == "fs") {
        fs._dir = Some(dir);
    }
    out
}

/// A tenant of this test process alone (servers are shared between test runs).
fn tenant(test: &str) -> TenantId {
    TenantId::new(format!("gf-{test}-{}", std::process::id())).unwrap()
}

fn storage(p: &Persistence, tenant: &TenantId) -> Arc<CheckpointSessionStorage> {
    Arc::new(CheckpointSessionStorage::new(
        p.checkpointer.clone(),
        tenant.clone(),
    ))
}

/// A run whose executor is killed in the middle of a step (the task aborted before
/// the step saved) resumes, through a new connection, from what was saved, and ends
/// as an uninterrupted run with graph-flow's in-memory storage does; every save is in
/// the session's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_step_resumes_to_the_same_result() {
    let reference = {
        let storage = Arc::new(InMemorySessionStorage::new());
        let runner = FlowRunner::new(graph(Duration::ZERO), storage.clone());
        storage
            .save(Session::new_from_task("run".into(), "collect"))
            .await
            .unwrap();
        run_to_end(&runner, "run").await;
        outcome(&storage.get("run").await.unwrap().unwrap())
    };
    let t = tenant("resume");
    for target in targets().await {
        let first = storage(&target.first, &t);
        first.delete("run").await.unwrap();
        first
            .save(Session::new_from_task("run".into(), "collect"))
            .await
            .unwrap();
        let runner = FlowRunner::new(graph(Duration::from_secs(5)), first.clone());
        runner.run("run").await.unwrap(); // collect
        // The executor dies during `think`, before its step is saved.
        let killed = tokio::spawn(async move { runner.run("run").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        killed.abort();
        assert!(killed.await.unwrap_err().is_cancelled());
        drop(first);

        let resumed = storage(&target.reopen().await, &t);
        let at = resumed.get("run").await.unwrap().unwrap();
        assert_eq!(
            (at.version, at.current_task_id.as_str()),
            (2, "think"),
            "{}",
            target.name
        );
        let runner = FlowRunner::new(graph(Duration::ZERO), resumed.clone());
        run_to_end(&runner, "run").await;
        let done = resumed.get("run").await.unwrap().unwrap();
        assert_eq!(outcome(&done), reference, "{}", target.name);
        let versions: Vec<u64> = resumed
            .history("run", 10)
            .await
            .unwrap()
            .iter()
            .map(|s| s.version)
            .collect();
        assert_eq!(versions, [4, 3, 2, 1], "{}", target.name);
        resumed.delete("run").await.unwrap();
        assert!(
            resumed.get("run").await.unwrap().is_none(),
            "{}",
            target.name
        );
    }
}

/// Two executors that loaded the same version cannot both save: one does, the other
/// gets `SessionConflict` and nothing of its save is stored; so do two runners stepping
/// one session at once. A stale version 0 (a "new" session over an existing one) is a
/// conflict too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_executors_cannot_both_save() {
    let t = tenant("race");
    for target in targets().await {
        let (a, b) = (
            storage(&target.first, &t),
            storage(&target.reopen().await, &t),
        );
        a.delete("race").await.unwrap();
        a.save(Session::new_from_task("race".into(), "collect"))
            .await
            .unwrap();
        let (mine, theirs) = (
            a.get("race").await.unwrap().unwrap(),
            b.get("race").await.unwrap().unwrap(),
        );
        mine.context.set("by", "a").unwrap();
        theirs.context.set("by", "b").unwrap();
        let (ra, rb) = tokio::join!(a.save(mine), b.save(theirs));
        let won = match (&ra, &rb) {
            (Ok(()), Err(GraphError::SessionConflict(_))) => "a",
            (Err(GraphError::SessionConflict(_)), Ok(())) => "b",
            other => panic!("{}: {other:?}", target.name),
        };
        let stored = a.get("race").await.unwrap().unwrap();
        assert_eq!(stored.version, 2, "{}", target.name);
        assert_eq!(stored.context.get::<String>("by").unwrap(), won);

        let fresh = Session::new_from_task("race".into(), "collect");
        assert!(
            matches!(a.save(fresh).await, Err(GraphError::SessionConflict(_))),
            "{}: a new session saved over an existing one",
            target.name
        );

        // Two runners stepping one session at once: one step is saved, one refused.
        let slow = graph(Duration::from_millis(300));
        let (ra, rb) = (
            FlowRunner::new(slow.clone(), a.clone()),
            FlowRunner::new(slow, b.clone()),
        );
        ra.run("race").await.unwrap(); // collect: both now at `think`
        let (x, y) = tokio::join!(ra.run("race"), rb.run("race"));
        let refused = [&x, &y]
            .iter()
            .filter(|r| matches!(r, Err(GraphError::SessionConflict(_))))
            .count();
        assert!(
            refused == 1 && (x.is_ok() || y.is_ok()),
            "{}: {x:?} {y:?}",
            target.name
        );
        assert_eq!(
            a.get("race").await.unwrap().unwrap().version,
            4,
            "{}",
            target.name
        );
        a.delete("race").await.unwrap();
    }
}

/// Session ids map to thread ids one to one: ids that differ only by what the mapping
/// encodes stay apart, and an id without a thread id is refused on save and absent on
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_map_to_threads_one_to_one() {
    let t = tenant("ids");
    let ids = [
        "a",
        "A",
        "%41",
        "a%",
        "a/b",
        "x\ny",
        "x%0Ay",
        "\u{1F600}",
        " ",
    ];
    for target in targets().await {
        let s = storage(&target.first, &t);
        for id in ids {
            s.delete(id).await.unwrap();
            let session = Session::new_from_task(id.into(), "collect");
            session.context.set("id", id).unwrap();
            s.save(session).await.unwrap();
        }
        for id in ids {
            let found = s.get(id).await.unwrap().unwrap();
            assert_eq!(
                (
                    found.id.as_str(),
                    found.context.get::<String>("id").unwrap()
                ),
                (id, id.to_string()),
                "{}",
                target.name
            );
            s.delete(id).await.unwrap();
        }
        let long = "x".repeat(600);
        for bad in ["", long.as_str()] {
            let refused = s.save(Session::new_from_task(bad.into(), "collect")).await;
            assert!(
                matches!(refused, Err(GraphError::StorageError(_))),
                "{}: {refused:?}",
                target.name
            );
            assert!(s.get(bad).await.unwrap().is_none());
        }
    }
    let s = CheckpointSessionStorage::new(Arc::new(persistence::MemoryBackend::new()), t);
    assert_eq!(s.thread_of("a%\n").unwrap().as_str(), "graph-flow/a%25%0A");
}
