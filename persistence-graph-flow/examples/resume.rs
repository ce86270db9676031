//! A graph-flow workflow on the filesystem backend: run one step, "crash" (drop the
//! runner and its storage), open the store again and finish from where it was saved.
//!
//! `cargo run -p persistence-graph-flow --example resume`

use std::sync::Arc;

use async_trait::async_trait;
use graph_flow::{
    Context, ExecutionStatus, FlowRunner, GraphBuilder, NextAction, Session, SessionStorage, Task,
    TaskResult,
};
use persistence::TenantId;
use persistence_graph_flow::CheckpointSessionStorage;

struct Greet;

#[async_trait]
impl Task for Greet {
    fn id(&self) -> &str {
        "greet"
    }
    async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
        let name: String = context.get("name").unwrap_or_else(|| "world".into());
        context.set("greeting", format!("Hello, {name}!"))?;
        Ok(TaskResult::new(
            Some("greeted".into()),
            NextAction::Continue,
        ))
    }
}

struct Farewell;

#[async_trait]
impl Task for Farewell {
    fn id(&self) -> &str {
        "farewell"
    }
    async fn run(&self, context: Context) -> graph_flow::Result<TaskResult> {
        let greeting: String = context.get("greeting").unwrap_or_default();
        Ok(TaskResult::new(
            Some(format!("{greeting} Goodbye.")),
            NextAction::End,
        ))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", dir.path().display());
    let graph = Arc::new(
        GraphBuilder::new("hello")
            .add_task(Arc::new(Greet))
            .add_task(Arc::new(Farewell))
            .add_edge("greet", "farewell")
            .build()?,
    );
    let tenant = TenantId::new("acme")?;

    {
        let p = persistence::open(&url).await?;
        let storage = Arc::new(CheckpointSessionStorage::new(
            p.checkpointer.clone(),
            tenant.clone(),
        ));
        let session = Session::new_from_task("visit-1".into(), "greet");
        session.context.set("name", "Ada")?;
        storage.save(session).await?;
        let step = FlowRunner::new(graph.clone(), storage)
            .run("visit-1")
            .await?;
        println!("first process: {:?}", step.response);
    } // the first process ends here

    let p = persistence::open(&url).await?;
    let storage = Arc::new(CheckpointSessionStorage::new(
        p.checkpointer.clone(),
        tenant,
    ));
    let runner = FlowRunner::new(graph, storage.clone());
    let last = runner.run("visit-1").await?;
    assert!(matches!(last.status, ExecutionStatus::Completed));
    println!("second process: {:?}", last.response);
    for saved in storage.history("visit-1", 10).await? {
        println!(
            "version {} at task {}",
            saved.version, saved.current_task_id
        );
    }
    Ok(())
}
