//! [`Row`]: what a sealed payload is bound to, and its associated data.

use std::fmt;
use std::io::Write as _;

use persistence_core::{CheckpointId, ItemKey, Namespace, SessionKey, TenantId, ThreadKey};

use crate::FORMAT;

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
    /// The associated data: the format, tenant, kind, identity (for an item, with its
    /// fields kept in clear as canonical JSON), schema version and whether the plaintext
    /// is compressed, NUL-separated (ids contain no NUL; JSON escapes it). Written in
    /// place: it is built for every payload sealed or opened.
    pub(crate) fn associated_data(
        &self,
        tenant: &TenantId,
        schema: u32,
        compressed: bool,
        clear: &str,
    ) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96 + clear.len());
        aad.extend_from_slice(b"persistence codec v");
        push(&mut aad, FORMAT, false);
        push(&mut aad, tenant, true);
        match self {
            Row::Checkpoint { thread, id } => {
                push(&mut aad, "checkpoint", true);
                push(&mut aad, thread, true);
                push(&mut aad, id, true);
            }
            Row::Write {
                thread,
                checkpoint,
                task,
                index,
            } => {
                push(&mut aad, "write", true);
                push(&mut aad, thread, true);
                push(&mut aad, checkpoint, true);
                push(&mut aad, task, true);
                push(&mut aad, index, true);
            }
            Row::Item {
                namespace,
                key,
                version,
            } => {
                push(&mut aad, "item", true);
                push(&mut aad, namespace.labels().len(), true);
                for label in namespace.labels() {
                    push(&mut aad, label, true);
                }
                push(&mut aad, key, true);
                push(&mut aad, version, true);
                push(&mut aad, clear, true);
            }
            Row::Event { session, seq } => {
                push(&mut aad, "event", true);
                push(&mut aad, session, true);
                push(&mut aad, seq, true);
            }
        }
        push(&mut aad, schema, true);
        push(&mut aad, u8::from(compressed), true);
        aad
    }
}

/// Appends `part` to `aad`, after a NUL when `separated`.
fn push(aad: &mut Vec<u8>, part: impl fmt::Display, separated: bool) {
    if separated {
        aad.push(0);
    }
    // Writing to a Vec cannot fail.
    let _ = write!(aad, "{part}");
}
