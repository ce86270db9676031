//! adk's own runtime on this workspace's storage: an adk `Runner` driving a graph agent
//! (adk-graph's `GraphAgent`) whose sessions are a `LogSessionService` and whose graph
//! checkpoints are a `GraphCheckpointer`, on memory, the filesystem, PostgreSQL, Redis and
//! a Redis Cluster, turn by turn, with a new process (new connections) for the last turn;
//! checked against the same runner on adk's in-memory services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;

use adk_core::{Content, Event, SessionId, UserId};
use adk_graph::agent::GraphAgent;
use adk_graph::checkpoint::{Checkpointer, MemoryCheckpointer};
use adk_graph::edge::{END, START};
use adk_graph::node::NodeOutput;
use adk_runner::Runner;
use adk_session::{CreateRequest, GetRequest, InMemorySessionService, SessionService};
use futures::StreamExt;
use persistence::{Persistence, TenantId};
use persistence_adk::{GraphCheckpointer, LogSessionService};
use persistence_conformance::harness::backend_urls;
use serde_json::{Value, json};

const APP: &str = "counter";
const USER: &str = "u/1";
const SESSION: &str = "s 1";

/// A one-node graph counting turns in its checkpointed state; its answer event carries
/// state deltas of every tier adk has (session, `user:`, `temp:`).
fn agent(checkpointer: Arc<dyn Checkpointer>) -> Arc<GraphAgent> {
    let agent = GraphAgent::builder("counter")
        .channels(&["input", "output", "turns", "messages", "session_id"])
        .node_fn("count", |ctx| async move {
            let input = ctx
                .get("input")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let turns = ctx.get("turns").and_then(Value::as_i64).unwrap_or(0) + 1;
            Ok(NodeOutput::new()
                .with_update("turns", json!(turns))
                .with_update("output", json!(format!("turn {turns}: {input}"))))
        })
        .edge(START, "count")
        .edge("count", END)
        .checkpointer_arc(checkpointer)
        .output_mapper(|state| {
            let mut event = Event::new("graph_output");
            event.author = "counter".into();
            let text = state.get("output").and_then(Value::as_str).unwrap_or("");
            event.set_content(Content::new("model").with_text(text));
            let delta = &mut event.actions.state_delta;
            delta.insert(
                "turns".into(),
                state.get("turns").cloned().unwrap_or_default(),
            );
            delta.insert(
                "user:last".into(),
                state.get("input").cloned().unwrap_or_default(),
            );
            delta.insert("temp:scratch".into(), json!(1));
            vec![event]
        })
        .build()
        .unwrap();
    Arc::new(agent)
}

fn runner(sessions: Arc<dyn SessionService>, checkpointer: Arc<dyn Checkpointer>) -> Runner {
    Runner::builder()
        .app_name(APP)
        .agent(agent(checkpointer))
        .session_service(sessions)
        .build()
        .unwrap()
}

/// One turn: the texts of the events the runner yields.
async fn turn(runner: &Runner, text: &str) -> Vec<String> {
    let stream = runner
        .run(
            UserId::try_from(USER).unwrap(),
            SessionId::try_from(SESSION).unwrap(),
            Content::new("user").with_text(text),
        )
        .await
        .unwrap();
    let events: Vec<Event> = stream.map(|e| e.unwrap()).collect().await;
    events
        .iter()
        .filter_map(|e| e.llm_response.content.as_ref())
        .flat_map(|c| c.parts.iter().filter_map(|p| p.text()))
        .map(str::to_string)
        .collect()
}

/// What a session holds after the turns: each event's author and text, and its state.
async fn stored(sessions: &dyn SessionService) -> (Vec<(String, String)>, Value) {
    let session = sessions
        .get(GetRequest {
            app_name: APP.into(),
            user_id: USER.into(),
            session_id: SESSION.into(),
            num_recent_events: None,
            after: None,
        })
        .await
        .unwrap();
    let events = session
        .events()
        .all()
        .into_iter()
        .map(|e| {
            let text = e
                .llm_response
                .content
                .as_ref()
                .and_then(|c| c.parts.iter().find_map(|p| p.text().map(str::to_string)))
                .unwrap_or_default();
            (e.author.clone(), text)
        })
        .collect();
    (events, json!(session.state().all()))
}

async fn create(sessions: &dyn SessionService) {
    sessions
        .create(CreateRequest {
            app_name: APP.into(),
            user_id: USER.into(),
            session_id: Some(SESSION.into()),
            state: Default::default(),
        })
        .await
        .unwrap();
}

/// Three turns, the third from a new process: the same answers, events and state as on
/// adk's in-memory services, the graph's turn count carried by its checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adks_runner_keeps_its_sessions_and_graph_state_here() {
    let adk_sessions: Arc<dyn SessionService> = Arc::new(InMemorySessionService::new());
    let adk_checkpoints: Arc<dyn Checkpointer> = Arc::new(MemoryCheckpointer::new());
    create(adk_sessions.as_ref()).await;
    let adk_runner = runner(adk_sessions.clone(), adk_checkpoints);
    let mut expected = Vec::new();
    for text in ["hello", "again", "bye"] {
        expected.push(turn(&adk_runner, text).await);
    }
    assert_eq!(expected[2], vec!["turn 3: bye".to_string()]);
    let expected_stored = stored(adk_sessions.as_ref()).await;
    assert_eq!(
        expected_stored.0.len(),
        6,
        "a user and an agent event per turn"
    );

    let dir = tempfile::tempdir().unwrap();
    for backend in backend_urls(dir.path()) {
        let name = backend.name;
        if backend.needs_migration {
            persistence::postgres::migrate(&backend.url).await.unwrap();
        }
        let tenant = TenantId::new(format!("adk-runner-{}", std::process::id())).unwrap();
        let open = |p: &Persistence| {
            let sessions: Arc<dyn SessionService> = Arc::new(LogSessionService::new(
                p.sessions.clone(),
                p.store.clone(),
                tenant.clone(),
            ));
            let checkpoints: Arc<dyn Checkpointer> = Arc::new(GraphCheckpointer::new(
                p.checkpointer.clone(),
                p.store.clone(),
                tenant.clone(),
            ));
            (sessions, checkpoints)
        };
        let p = persistence::open(&backend.url).await.unwrap();
        let (sessions, checkpoints) = open(&p);
        create(sessions.as_ref()).await;
        let first = runner(sessions, checkpoints);
        let mut answers = vec![turn(&first, "hello").await, turn(&first, "again").await];
        drop(first);

        // A new process: the memory backend lives in this one, so only it is kept.
        let p = if name == "memory" {
            p
        } else {
            drop(p);
            persistence::open(&backend.url).await.unwrap()
        };
        let (sessions, checkpoints) = open(&p);
        let second = runner(sessions.clone(), checkpoints);
        answers.push(turn(&second, "bye").await);
        assert_eq!(answers, expected, "{name}: answers");
        assert_eq!(
            stored(sessions.as_ref()).await,
            expected_stored,
            "{name}: session"
        );
    }
}
