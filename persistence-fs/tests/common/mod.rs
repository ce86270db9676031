//! Helpers shared by this crate's integration tests.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses some of them

use persistence_core::{
    AppendOptions, CheckpointId, Checkpointer, Envelope, NewCheckpoint, SessionKey, SessionLog,
    TenantId, ThreadKey,
};
use persistence_fs::FsBackend;

/// A new checkpoint (fresh id) with `state`.
pub fn checkpoint(
    parent: Option<CheckpointId>,
    step: i64,
    state: serde_json::Value,
) -> NewCheckpoint {
    NewCheckpoint {
        id: Default::default(),
        parent,
        step,
        state: Envelope::new(1, state),
        metadata: Default::default(),
    }
}

/// Puts an empty first checkpoint on `th` and returns its id.
pub async fn first_checkpoint(backend: &FsBackend, t: &TenantId, th: &ThreadKey) -> CheckpointId {
    let c = checkpoint(None, 0, serde_json::json!({}));
    let id = c.id;
    Checkpointer::put(backend, t, th, c, Default::default())
        .await
        .unwrap();
    id
}

/// Tenant `t`, session `s`, holding one event.
pub async fn one_event_session(backend: &FsBackend) -> (TenantId, SessionKey) {
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    backend
        .append(
            &t,
            &s,
            vec![Envelope::new(1, serde_json::json!(1))],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    (t, s)
}
