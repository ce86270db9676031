//! [`Row`]: what a sealed payload is bound to, and its associated data.

use std::fmt;

use persistence_core::{CheckpointId, ItemKey, Namespace, SessionKey, TenantId, ThreadKey};

/// The row a payload belongs to: what its ciphertext is bound to.
#[derive(Clone, Copy)]
pub(crate) enum Row<'a> {
    Checkpoint {
        thread: &'a ThreadKey,
        id: CheckpointId,
    },
    Write {
        thread: &'a ThreadKey,
        checkpoint: CheckpointId,
        task: &'a str,
        index: u32,
    },
    Item {
        namespace: &'a Namespace,
        key: &'a ItemKey,
        version: u64,
    },
    Event {
        session: &'a SessionKey,
        seq: u64,
    },
}

impl fmt::Display for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Checkpoint { thread, id } => write!(f, "checkpoint {id} of thread {thread}"),
            Row::Write {
                thread,
                checkpoint,
                task,
                index,
            } => write!(
                f,
                "pending write {task}/{index} of checkpoint {checkpoint} of thread {thread}"
            ),
            Row::Item {
                namespace,
                key,
                version,
            } => write!(f, "item {namespace}/{key} version {version}"),
            Row::Event { session, seq } => write!(f, "event {seq} of session {session}"),
        }
    }
}

impl Row<'_> {
    /// The associated data: tenant, kind, identity (for an item, with its fields kept in
    /// clear as canonical JSON), schema version and whether the plaintext is
    /// compressed, NUL-separated (ids contain no NUL; JSON escapes it).
    pub(crate) fn associated_data(
        &self,
        tenant: &TenantId,
        schema: u32,
        compressed: bool,
        clear: &str,
    ) -> Vec<u8> {
        let parts: Vec<String> = match self {
            Row::Checkpoint { thread, id } => {
                vec!["checkpoint".into(), thread.to_string(), id.to_string()]
            }
            Row::Write {
                thread,
                checkpoint,
                task,
                index,
            } => vec![
                "write".into(),
                thread.to_string(),
                checkpoint.to_string(),
                task.to_string(),
                index.to_string(),
            ],
            Row::Item {
                namespace,
                key,
                version,
            } => {
                let mut parts = vec!["item".to_string(), namespace.labels().len().to_string()];
                parts.extend(namespace.labels().iter().cloned());
                parts.push(key.to_string());
                parts.push(version.to_string());
                parts.push(clear.to_string());
                parts
            }
            Row::Event { session, seq } => {
                vec!["event".into(), session.to_string(), seq.to_string()]
            }
        };
        let mut aad = b"persistence codec v1".to_vec();
        for part in [tenant.as_str().to_string()]
            .into_iter()
            .chain(parts)
            .chain([schema.to_string(), u8::from(compressed).to_string()])
        {
            aad.push(0);
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}
