//! Queries of [`Checkpointer::list`] and [`Checkpointer::list_threads`].

use serde_json::Value;

#[cfg(doc)]
use super::Checkpointer;
use super::Metadata;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::page::Cursor;

/// Query of [`Checkpointer::list`].
///
/// ```
/// use persistence_core::{ListCheckpoints, serde_json::json};
///
/// let query = ListCheckpoints::default()
///     .with_limit(10)
///     .with_metadata_entry("source", json!("input"));
/// assert_eq!(query.limit, 10);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListCheckpoints {
    /// Only checkpoints with an id strictly below this one.
    pub before: Option<CheckpointId>,
    /// Page size, 1..=10 000. Default 100.
    pub limit: usize,
    /// Only checkpoints whose metadata has each of these top-level keys with an equal
    /// value.
    pub metadata: Metadata,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
}

impl Default for ListCheckpoints {
    fn default() -> Self {
        ListCheckpoints {
            before: None,
            limit: 100,
            metadata: Metadata::new(),
            cursor: None,
        }
    }
}

impl ListCheckpoints {
    /// Same, only ids strictly below `before`.
    #[must_use]
    pub fn with_before(mut self, before: impl Into<Option<CheckpointId>>) -> Self {
        self.before = before.into();
        self
    }
    /// Same, with page size `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Same, with `metadata` as the whole filter.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
    /// Same, also requiring top-level metadata `key` to equal `value`.
    #[must_use]
    pub fn with_metadata_entry(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }
    /// Same, continuing after the page that returned `cursor` (`None`: from the start).
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.cursor = cursor.into();
        self
    }
}

/// Query of [`Checkpointer::list_threads`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListThreads {
    /// Page size, 1..=10 000. Default 100.
    pub limit: usize,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
}

impl Default for ListThreads {
    fn default() -> Self {
        ListThreads {
            limit: 100,
            cursor: None,
        }
    }
}

impl ListThreads {
    /// Same, with page size `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Same, continuing after the page that returned `cursor` (`None`: from the start).
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.cursor = cursor.into();
        self
    }
}

impl ListCheckpoints {
    /// The exclusive upper id bound of the page: the lower of `before` and the cursor.
    /// Every backend encodes checkpoint cursors as the last id returned.
    ///
    /// # Errors
    /// `InvalidInput` if the cursor is not a checkpoint id.
    pub(crate) fn upper_bound(&self) -> Result<Option<CheckpointId>> {
        let after = self
            .cursor
            .as_ref()
            .map(|c| {
                c.as_str()
                    .parse::<CheckpointId>()
                    .map_err(|_| c.invalid_error())
            })
            .transpose()?;
        Ok(match (self.before, after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Whether `metadata` has every key of the query's filter with an equal value
    /// (numbers compare by value).
    pub(crate) fn matches(&self, metadata: &Metadata) -> bool {
        self.metadata.iter().all(|(k, v)| {
            metadata
                .get(k)
                .is_some_and(|have| crate::filter::json_values_equal(have, v))
        })
    }
}
