//! Typed handles: the object-safe traits with user types instead of [`Envelope`]s.
//!
//! Writes stamp `T::VERSION`; reads decode with upcasting, failing `SchemaTooNew` for
//! data written by newer code and `Corrupt` for data that does not decode. Reads never
//! change stored data.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpointer::{
    Checkpoint, CheckpointSelector, Checkpointer, ListCheckpoints, NewCheckpoint, PendingWrite,
    PutCheckpointOptions,
};
use crate::envelope::{Versioned, decode, encode};
use crate::error::Result;
use crate::ids::{ItemKey, Namespace, SessionKey, TenantId, ThreadKey};
use crate::page::Page;
use crate::session_log::{AppendOptions, SessionLog};
use crate::store::{PutItemOptions, Store};
use crate::time::Timestamp;

fn decode_checkpoint<S: Versioned>(c: Checkpoint) -> Result<Checkpoint<S>> {
    Ok(Checkpoint {
        state: decode(&c.state)?,
        id: c.id,
        parent: c.parent,
        step: c.step,
        metadata: c.metadata,
        created_at: c.created_at,
    })
}

/// A checkpoint with typed state and its (untyped) pending writes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TypedCheckpointTuple<S> {
    /// The checkpoint.
    pub checkpoint: Checkpoint<S>,
    /// Pending writes, ordered by `(task_id, index)`.
    pub pending_writes: Vec<PendingWrite>,
}

/// A [`Checkpointer`] whose state is `S`.
pub struct TypedCheckpointer<S> {
    inner: Arc<dyn Checkpointer>,
    _state: PhantomData<fn() -> S>,
}

impl<S: Versioned> TypedCheckpointer<S> {
    /// Wraps a checkpointer.
    pub fn new(inner: Arc<dyn Checkpointer>) -> Self {
        TypedCheckpointer {
            inner,
            _state: PhantomData,
        }
    }

    /// Stores a checkpoint with state `S` (see [`Checkpointer::put`]).
    ///
    /// # Errors
    /// As [`Checkpointer::put`], plus `InvalidInput` if the state does not serialize.
    pub async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint<S>,
        options: PutCheckpointOptions,
    ) -> Result<Timestamp> {
        let raw = NewCheckpoint {
            state: encode(&checkpoint.state)?,
            id: checkpoint.id,
            parent: checkpoint.parent,
            step: checkpoint.step,
            metadata: checkpoint.metadata,
        };
        Ok(self
            .inner
            .put(tenant, thread, raw, options)
            .await?
            .created_at)
    }

    /// Reads a checkpoint and decodes its state.
    ///
    /// # Errors
    /// As [`Checkpointer::get`], plus `SchemaTooNew` / `Corrupt` from decoding.
    pub async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<TypedCheckpointTuple<S>>> {
        match self.inner.get(tenant, thread, selector).await? {
            None => Ok(None),
            Some(t) => Ok(Some(TypedCheckpointTuple {
                checkpoint: decode_checkpoint(t.checkpoint)?,
                pending_writes: t.pending_writes,
            })),
        }
    }

    /// Lists history with decoded states.
    ///
    /// # Errors
    /// As [`Checkpointer::list`], plus decoding errors.
    pub async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint<S>>> {
        let page = self.inner.list(tenant, thread, query).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(decode_checkpoint)
                .collect::<Result<_>>()?,
            next: page.next,
        })
    }

    /// The untyped checkpointer.
    pub fn inner(&self) -> &Arc<dyn Checkpointer> {
        &self.inner
    }
}

/// A [`SessionLog`] whose events are `E`.
pub struct TypedSessionLog<E> {
    inner: Arc<dyn SessionLog>,
    _event: PhantomData<fn() -> E>,
}

impl<E: Versioned> TypedSessionLog<E> {
    /// Wraps a session log.
    pub fn new(inner: Arc<dyn SessionLog>) -> Self {
        TypedSessionLog {
            inner,
            _event: PhantomData,
        }
    }

    /// Appends events (see [`SessionLog::append`]).
    ///
    /// # Errors
    /// As [`SessionLog::append`], plus `InvalidInput` if an event does not serialize.
    pub async fn append(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        events: &[E],
        options: AppendOptions,
    ) -> Result<u64> {
        let raw = events.iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.inner.append(tenant, session, raw, options).await
    }

    /// Reads events with their ordinals.
    ///
    /// # Errors
    /// As [`SessionLog::read`], plus decoding errors.
    pub async fn read(
        &self,
        tenant: &TenantId,
        session: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, E)>> {
        self.inner
            .read(tenant, session, after, limit)
            .await?
            .into_iter()
            .map(|e| Ok((e.seq, decode(&e.event)?)))
            .collect()
    }

    /// The untyped log.
    pub fn inner(&self) -> &Arc<dyn SessionLog> {
        &self.inner
    }
}

/// A [`Store`] whose values are `V`.
pub struct TypedStore<V> {
    inner: Arc<dyn Store>,
    _value: PhantomData<fn() -> V>,
}

impl<V: Versioned> TypedStore<V> {
    /// Wraps a store.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        TypedStore {
            inner,
            _value: PhantomData,
        }
    }

    /// Writes a value (see [`Store::put`]). Returns the new version.
    ///
    /// # Errors
    /// As [`Store::put`], plus `InvalidInput` if the value does not serialize.
    pub async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: &V,
        options: PutItemOptions,
    ) -> Result<u64> {
        self.inner
            .put(tenant, namespace, key, encode(value)?, options)
            .await
    }

    /// Reads and decodes a value with its version.
    ///
    /// # Errors
    /// As [`Store::get`], plus decoding errors.
    pub async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<(V, u64)>> {
        match self.inner.get(tenant, namespace, key).await? {
            None => Ok(None),
            Some(item) => Ok(Some((decode(&item.value)?, item.version))),
        }
    }

    /// The untyped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

/// `.typed::<S>()` on a shared checkpointer.
pub trait CheckpointerExt {
    /// A typed handle over this checkpointer.
    fn typed<S: Versioned>(&self) -> TypedCheckpointer<S>;
}
impl CheckpointerExt for Arc<dyn Checkpointer> {
    fn typed<S: Versioned>(&self) -> TypedCheckpointer<S> {
        TypedCheckpointer::new(self.clone())
    }
}

/// `.typed::<E>()` on a shared session log.
pub trait SessionLogExt {
    /// A typed handle over this log.
    fn typed<E: Versioned>(&self) -> TypedSessionLog<E>;
}
impl SessionLogExt for Arc<dyn SessionLog> {
    fn typed<E: Versioned>(&self) -> TypedSessionLog<E> {
        TypedSessionLog::new(self.clone())
    }
}

/// `.typed::<V>()` on a shared store.
pub trait StoreExt {
    /// A typed handle over this store.
    fn typed<V: Versioned>(&self) -> TypedStore<V>;
}
impl StoreExt for Arc<dyn Store> {
    fn typed<V: Versioned>(&self) -> TypedStore<V> {
        TypedStore::new(self.clone())
    }
}
