//! `Persistence::with_lifecycle_audit`: every change of a session's or thread's life is
//! an event in the tenant's audit log (ids, kinds, reasons and counts only), and nothing
//! else is; without it, nothing is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use persistence::{
    AUDIT_SESSION, CheckpointId, CloseSession, Compaction, Envelope, MemoryBackend, NewCheckpoint,
    Persistence, SessionKey, TenantId, ThreadKey,
};
use serde_json::{Value, json};

async fn audit(p: &Persistence, t: &TenantId) -> Vec<Value> {
    p.sessions
        .read(t, &SessionKey::new(AUDIT_SESSION).unwrap(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.data)
        .collect()
}

fn event(n: i64) -> Vec<Envelope> {
    vec![Envelope::new(
        1,
        json!({"secret": format!("user data {n}")}),
    )]
}

async fn live_a_little(p: &Persistence, t: &TenantId) {
    let s = SessionKey::new("chat").unwrap();
    p.sessions
        .append(t, &s, event(1), Default::default())
        .await
        .unwrap();
    p.sessions
        .append(t, &s, event(2), Default::default())
        .await
        .unwrap();
    p.sessions
        .append(t, &s, event(3), Default::default())
        .await
        .unwrap();
    p.sessions.trim_before(t, &s, 2).await.unwrap();
    p.sessions
        .compact(t, &s, Compaction::new(2, event(4)))
        .await
        .unwrap();
    p.sessions
        .close_session(t, &s, CloseSession::default())
        .await
        .unwrap();
    p.sessions
        .close_session(t, &s, CloseSession::default())
        .await
        .unwrap();
    p.sessions.delete(t, &s).await.unwrap();
    p.sessions.delete(t, &s).await.unwrap();

    let (main, fork) = (
        ThreadKey::new("main").unwrap(),
        ThreadKey::new("fork").unwrap(),
    );
    let root = NewCheckpoint::new(CheckpointId::new(), 0, Envelope::new(1, json!({"s": 0})));
    let root_id = root.id;
    p.checkpointer
        .put(t, &main, root, Default::default())
        .await
        .unwrap();
    for step in 1..4 {
        let c = NewCheckpoint::new(
            CheckpointId::new(),
            step,
            Envelope::new(1, json!({"s": step})),
        )
        .with_parent(root_id);
        p.checkpointer
            .put(t, &main, c, Default::default())
            .await
            .unwrap();
    }
    p.checkpointer.copy_thread(t, &main, &fork).await.unwrap();
    p.checkpointer.prune(t, &main, 2).await.unwrap();
    p.checkpointer.prune(t, &main, 2).await.unwrap();
    p.checkpointer
        .prune_through(t, &fork, &root_id)
        .await
        .unwrap();
    p.checkpointer.delete_thread(t, &fork).await.unwrap();
    p.checkpointer.delete_thread(t, &fork).await.unwrap();
}

#[tokio::test]
async fn every_life_change_is_recorded_once_and_nothing_else() {
    let memory = Persistence::from_backend(MemoryBackend::new()).with_lifecycle_audit();
    recorded_once(&memory).await;
    if cfg!(feature = "fs") {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let fs = persistence::open(&url)
            .await
            .unwrap()
            .with_lifecycle_audit();
        recorded_once(&fs).await;
    }
}

async fn recorded_once(p: &Persistence) {
    let p = p.clone();
    let t = TenantId::new("acme").unwrap();
    live_a_little(&p, &t).await;
    let events = audit(&p, &t).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "session.created",
            "session.trimmed",
            "session.compacted",
            "session.closed",
            "session.deleted",
            "thread.created",
            "thread.copied",
            "thread.pruned",
            "thread.pruned",
            "thread.deleted",
        ],
        "{events:#?}"
    );
    assert_eq!(events[1]["events"], 1);
    assert_eq!(
        (events[2]["through"].as_u64(), events[2]["head"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(events[3]["events_removed"], false);
    assert_eq!(events[6]["checkpoints"], 4);
    assert_eq!(
        (
            events[7]["reason"].as_str(),
            events[7]["checkpoints"].as_u64()
        ),
        (Some("prune"), Some(2))
    );
    assert_eq!(events[8]["reason"], "prune_through");
    for e in &events {
        let text = e.to_string();
        assert!(
            !text.contains("user data"),
            "user data in an audit event: {text}"
        );
        for value in e.as_object().unwrap().values() {
            assert!(
                value.is_string() || value.is_number() || value.is_boolean(),
                "{e}"
            );
        }
    }
    // Another tenant's log holds nothing of this one.
    assert!(audit(&p, &TenantId::new("other").unwrap()).await.is_empty());
}

#[tokio::test]
async fn without_it_nothing_is_recorded() {
    let p = Persistence::from_backend(MemoryBackend::new());
    let t = TenantId::new("acme").unwrap();
    live_a_little(&p, &t).await;
    assert!(audit(&p, &t).await.is_empty());
}

/// Writing the audit log does not record the audit log's own creation.
#[tokio::test]
async fn the_audit_log_records_nothing_of_itself() {
    let p = Persistence::from_backend(MemoryBackend::new()).with_lifecycle_audit();
    let t = TenantId::new("acme").unwrap();
    let s = SessionKey::new("s").unwrap();
    p.sessions
        .append(&t, &s, event(1), Default::default())
        .await
        .unwrap();
    let events = audit(&p, &t).await;
    assert_eq!(events.len(), 1, "{events:?}");
}
