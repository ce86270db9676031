//! Pagination: opaque cursors and pages.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest `limit` any listing call accepts.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Where the next page starts. Opaque to callers: pass back what a [`Page`] returned.
/// Each backend chooses its own encoding; a cursor from one backend means nothing to
/// another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a backend-encoded position. Backends call this; callers should not.
    pub fn new(encoded: impl Into<String>) -> Self {
        Cursor(encoded.into())
    }
    /// The encoded position.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `InvalidInput` error for a cursor a backend cannot decode.
    pub(crate) fn invalid_error(&self) -> Error {
        Error::invalid_input(format!("cursor {:?} was not made by this backend", self.0))
    }
}

/// One page of results and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// `Some` when more items may follow; pass it back to get them.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// `items`, followed by more from `next` if it is `Some`.
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Page { items, next }
    }

    /// Builds a page from up to `limit + 1` fetched items: the extra one only tells that
    /// more follow, and `cursor_of` encodes the position after the last kept item.
    pub(crate) fn from_overfetch_impl(
        mut items: Vec<T>,
        limit: usize,
        cursor_of: impl Fn(&T) -> Cursor,
    ) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next }
    }
}

/// Checks a caller's page size: 1..=[`MAX_PAGE_LIMIT`].
///
/// # Errors
/// `InvalidInput` when `limit` is 0 or too large.
pub fn validate_limit(limit: usize) -> Result<usize> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid_input(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}"
        )));
    }
    Ok(limit)
}
