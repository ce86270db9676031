//! An adk-graph graph checkpointed on the filesystem backend: the run pauses for an
//! approval, a second "process" finds the pause by its checkpoint id and resumes it.
//!
//! `cargo run -p persistence-adk --example graph_resume`

use std::sync::Arc;

use adk_graph::checkpoint::{Checkpointer, RetentionPolicy};
use adk_graph::edge::{END, START};
use adk_graph::error::GraphError;
use adk_graph::graph::{CompiledGraph, StateGraph};
use adk_graph::node::{ExecutionConfig, NodeOutput};
use adk_graph::state::State;
use persistence::TenantId;
use persistence_adk::GraphCheckpointer;
use serde_json::json;

/// draft -> (approval) -> send, keeping the last 10 checkpoints of each thread.
fn graph(checkpointer: GraphCheckpointer) -> Result<CompiledGraph, GraphError> {
    Ok(StateGraph::with_channels(&["draft", "sent"])
        .add_node_fn("draft", |_ctx| async {
            Ok(NodeOutput::new().with_update("draft", json!("Dear customer, ...")))
        })
        .add_node_fn("send", |ctx| async move {
            let draft = ctx.get("draft").cloned().unwrap_or_default();
            Ok(NodeOutput::new().with_update("sent", draft))
        })
        .add_edge(START, "draft")
        .add_edge("draft", "send")
        .add_edge("send", END)
        .compile()?
        .with_checkpointer_arc(Arc::new(checkpointer) as Arc<dyn Checkpointer>)
        .with_checkpoint_retention(RetentionPolicy::keep_last(10))
        .with_interrupt_before(&["send"]))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("file://{}", dir.path().display());
    let tenant = TenantId::new("acme")?;

    let pause = {
        let p = persistence::open(&url).await?;
        let checkpoints =
            GraphCheckpointer::new(p.checkpointer.clone(), p.store.clone(), tenant.clone());
        match graph(checkpoints)?
            .invoke(State::new(), ExecutionConfig::new("ticket-42"))
            .await
        {
            Err(GraphError::Interrupted(pause)) => pause,
            other => return Err(format!("expected a pause, got {other:?}").into()),
        }
    };
    println!("paused before 'send' at checkpoint {}", pause.checkpoint_id);

    // Another process: the pause's checkpoint id is all it needs.
    let p = persistence::open(&url).await?;
    let checkpoints = GraphCheckpointer::new(p.checkpointer.clone(), p.store.clone(), tenant);
    let config = ExecutionConfig::new("ticket-42").with_resume_from(&pause.checkpoint_id);
    let done = graph(checkpoints.clone())?
        .invoke(State::new(), config)
        .await?;
    println!("sent: {}", done.get("sent").cloned().unwrap_or_default());
    println!(
        "checkpoints kept: {}",
        checkpoints.list("ticket-42").await?.len()
    );
    Ok(())
}
