//! For backend implementers: the helpers every backend of this workspace uses, kept out
//! of the user API at the crate root.
//!
//! A backend implements [`Checkpointer`](crate::Checkpointer), [`Store`](crate::Store),
//! [`SessionLog`](crate::SessionLog), [`Lock`](crate::Lock) and
//! [`Maintenance`](crate::Maintenance), builds result types with their constructors
//! ([`Checkpoint::from_new`](crate::Checkpoint::from_new), [`Item::new`](crate::Item::new),
//! [`Lease::new`], ...), and checks its inputs with what is here, so that every backend
//! refuses the same inputs with the same kinds. `persistence-conformance` checks the
//! result; `persistence::Persistence::from_backend` and `persistence::register_scheme`
//! plug it into the facade and the CLI.

use crate::checkpointer::{ListCheckpoints, Metadata};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, LockKey, SessionKey, TenantId, ThreadKey};
use crate::lock::{Fence, Lease};
use crate::page::{Cursor, Page};

pub use crate::filter::json_values_equal;
pub use crate::lock::{acquire_with_backoff, new_lease_token, validate_fence};
pub use crate::page::validate_limit;
pub use crate::patch::{PATCH_ATTEMPTS, patch_by_compare_and_swap};
pub use crate::shared_calls::SharedCalls;
pub use crate::stored_bytes::{
    PayloadRecord, append_bytes, attach_bytes, decode_record, encode_envelope, encode_record,
    envelope_without_bytes, split_bytes,
};
pub use crate::subscribe::wait_on_notify;
pub use crate::time::validate_ttl;
pub use crate::tls::{ClientPem, TlsPem};

/// Refuses envelopes carrying [`Envelope::bytes`](crate::Envelope::bytes), for a backend
/// that stores payloads as JSON only (one that does not declare
/// [`Capabilities::binary_payloads`](crate::Capabilities::binary_payloads) and has no
/// way to keep them): refused, never dropped.
///
/// # Errors
/// `InvalidInput` naming `what` (the payload kind) if one of `envelopes` has bytes.
pub fn refuse_bytes<'a>(
    what: &str,
    envelopes: impl IntoIterator<Item = &'a crate::Envelope>,
) -> Result<()> {
    if envelopes.into_iter().any(|e| e.bytes.is_some()) {
        return Err(crate::Error::invalid_input(format!(
            "{what}: this backend stores payloads as JSON only and refuses an envelope \
             with bytes (it does not declare Capabilities::binary_payloads)"
        )));
    }
    Ok(())
}

/// The fence a checkpoint write of `thread` carries, from the lease the caller passed.
///
/// # Errors
/// `InvalidInput` if the lease is of another tenant or of another lock than
/// [`LockKey::for_thread`]`(thread)`, or its fence is above [`Fence::MAX`].
pub fn thread_fence(
    tenant: &TenantId,
    thread: &ThreadKey,
    lease: Option<&Lease>,
) -> Result<Option<Fence>> {
    bound_fence(tenant, || LockKey::for_thread(thread), "thread", lease)
}

/// The fence an append to `session` carries, from the lease the caller passed.
///
/// # Errors
/// As [`thread_fence`], with [`LockKey::for_session`]`(session)`.
pub fn session_fence(
    tenant: &TenantId,
    session: &SessionKey,
    lease: Option<&Lease>,
) -> Result<Option<Fence>> {
    bound_fence(tenant, || LockKey::for_session(session), "session", lease)
}

/// Checks a compaction before a backend runs it: a summary of at least one event, and the
/// fence of its lease (as for an append).
///
/// # Errors
/// `InvalidInput` for an empty summary; as [`session_fence`].
pub fn compaction_fence(
    tenant: &TenantId,
    session: &SessionKey,
    compaction: &crate::Compaction,
) -> Result<Option<Fence>> {
    if compaction.summary.is_empty() {
        return Err(Error::invalid_input(
            "a compaction needs at least one summary event",
        ));
    }
    session_fence(tenant, session, compaction.lease.as_ref())
}

fn bound_fence(
    tenant: &TenantId,
    owner: impl FnOnce() -> LockKey,
    what: &str,
    lease: Option<&Lease>,
) -> Result<Option<Fence>> {
    let Some(lease) = lease else {
        return Ok(None);
    };
    if &lease.tenant != tenant {
        return Err(Error::invalid_input(format!(
            "the lease is of tenant {}, not of the written {what}'s tenant {tenant}",
            lease.tenant
        )));
    }
    let owner = owner();
    if lease.name != owner {
        return Err(Error::invalid_input(format!(
            "the lease is of lock {:?}, not of the written {what}'s own lock {:?} \
             (take it with LockKey::for_{what})",
            lease.name.as_str(),
            owner.as_str()
        )));
    }
    lease.fence.checked().map(Some)
}

/// Ids read back from storage.
pub trait FromStored: Sized {
    /// Re-validates an id read back from storage.
    ///
    /// # Errors
    /// `Corrupt` (not `InvalidInput`): a stored id that fails validation means the
    /// stored data was damaged, not that the caller passed bad input.
    fn from_stored(value: impl Into<String>) -> Result<Self>;
}

/// Building pages.
pub trait PageExt<T>: Sized {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only tells that
    /// more follow, and `cursor_of` encodes the position after the last kept item.
    fn from_overfetch(items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> Cursor) -> Self;
}

impl<T> PageExt<T> for Page<T> {
    fn from_overfetch(items: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        Page::from_overfetch_impl(items, limit, cursor_of)
    }
}

/// Decoding cursors.
pub trait CursorExt {
    /// The `InvalidInput` error for a cursor this backend cannot decode.
    fn invalid(&self) -> Error;
}

impl CursorExt for Cursor {
    fn invalid(&self) -> Error {
        self.invalid_error()
    }
}

/// Evaluating a [`ListCheckpoints`] query.
pub trait ListCheckpointsExt {
    /// The exclusive upper id bound of the page: the lower of `before` and the cursor.
    /// Every backend encodes checkpoint cursors as the last id returned.
    ///
    /// # Errors
    /// `InvalidInput` if the cursor is not a checkpoint id.
    fn upper_bound(&self) -> Result<Option<CheckpointId>>;

    /// Whether `metadata` has every key of the query's filter with an equal value
    /// (numbers compare by value).
    fn matches(&self, metadata: &Metadata) -> bool;
}

impl ListCheckpointsExt for ListCheckpoints {
    fn upper_bound(&self) -> Result<Option<CheckpointId>> {
        ListCheckpoints::upper_bound(self)
    }
    fn matches(&self, metadata: &Metadata) -> bool {
        ListCheckpoints::matches(self, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::time::Timestamp;

    fn lease(tenant: &str, name: LockKey, fence: u64) -> Lease {
        Lease::new(
            TenantId::new(tenant).unwrap(),
            name,
            "token",
            Fence(fence),
            Timestamp(0),
        )
    }

    #[test]
    fn a_lease_fences_only_its_own_thread_or_session() {
        let t = TenantId::new("t").unwrap();
        let (th, s) = (ThreadKey::new("x").unwrap(), SessionKey::new("x").unwrap());
        let own = lease("t", LockKey::for_thread(&th), 7);
        assert_eq!(thread_fence(&t, &th, Some(&own)).unwrap(), Some(Fence(7)));
        assert_eq!(thread_fence(&t, &th, None).unwrap(), None);
        let wrong = [
            lease("t", LockKey::new("x").unwrap(), 7),
            lease("u", LockKey::for_thread(&th), 7),
            lease("t", LockKey::for_thread(&ThreadKey::new("y").unwrap()), 7),
            lease("t", LockKey::for_thread(&th), u64::MAX),
        ];
        for l in &wrong {
            let e = thread_fence(&t, &th, Some(l)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{l:?}");
        }
        // A thread's lock does not fence the session of the same id, nor the reverse.
        assert!(session_fence(&t, &s, Some(&own)).is_err());
        let own_session = lease("t", LockKey::for_session(&s), 3);
        assert_eq!(
            session_fence(&t, &s, Some(&own_session)).unwrap(),
            Some(Fence(3))
        );
        assert!(thread_fence(&t, &th, Some(&own_session)).is_err());
    }

    #[test]
    fn lease_debug_hides_the_token() {
        let l = lease("t", LockKey::new("x").unwrap(), 1);
        let shown = format!("{l:?}");
        assert!(!shown.contains("\"token\""), "{shown}");
    }
}
