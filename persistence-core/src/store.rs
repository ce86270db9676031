//! Long-term memory: JSON items in hierarchical namespaces, with versions and TTL.

use std::time::Duration;

use async_trait::async_trait;

use crate::envelope::Envelope;
use crate::error::Result;
use crate::filter::Filter;
use crate::ids::{ItemKey, Namespace, TenantId};
use crate::page::{Cursor, Page};
use crate::patch::PatchItemOptions;
use crate::time::Timestamp;

/// Options of [`Store::put`].
///
/// ```
/// use std::time::Duration;
/// use persistence_core::PutItemOptions;
///
/// let options = PutItemOptions::default().with_if_version(3).with_ttl(Duration::from_secs(60));
/// assert_eq!(options.if_version, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct PutItemOptions {
    /// Expire the item this long after the put. `None`: never expires (a previous TTL is
    /// cleared).
    pub ttl: Option<Duration>,
    /// Compare-and-swap: `Some(0)` requires the item to be absent, `Some(v)` requires its
    /// current version to be `v`. Mismatch fails `Conflict` and writes nothing.
    pub if_version: Option<u64>,
}

impl PutItemOptions {
    /// Same, expiring this long after the put (`None`: never).
    #[must_use]
    pub fn with_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.ttl = ttl.into();
        self
    }
    /// Same, put only if the current version is `if_version` (0: absent).
    #[must_use]
    pub fn with_if_version(mut self, if_version: impl Into<Option<u64>>) -> Self {
        self.if_version = if_version.into();
        self
    }
}

/// Options of [`Store::get_with`].
///
/// ```
/// use persistence_core::GetItemOptions;
///
/// let options = GetItemOptions::default().with_refresh_ttl(true);
/// assert!(options.refresh_ttl);
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct GetItemOptions {
    /// Restart the item's TTL: a live item written with a TTL now expires that TTL (the
    /// one of its last put or patch) after this read, as LangGraph's `refresh_ttl`.
    /// Its value, version and `updated_at` stay; an item without a TTL is untouched.
    pub refresh_ttl: bool,
}

impl GetItemOptions {
    /// Same, restarting the item's TTL when `on`.
    #[must_use]
    pub fn with_refresh_ttl(mut self, on: bool) -> Self {
        self.refresh_ttl = on;
        self
    }
}

/// A stored item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Item {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its key.
    pub key: ItemKey,
    /// The value.
    pub value: Envelope,
    /// Starts at 1, +1 on every put. An item deleted (or expired) and written again
    /// starts at 1 again.
    pub version: u64,
    /// When the current incarnation was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// When it expires, if it has a TTL.
    pub expires_at: Option<Timestamp>,
}

impl Item {
    /// A stored item. Backends build items with this.
    pub fn new(
        namespace: Namespace,
        key: ItemKey,
        value: Envelope,
        version: u64,
        created_at: Timestamp,
        updated_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Self {
        Item {
            namespace,
            key,
            value,
            version,
            created_at,
            updated_at,
            expires_at,
        }
    }
}

/// Query of [`Store::list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListItems {
    /// Only keys starting with this string.
    pub key_prefix: Option<String>,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
    /// Page size, 1..=10 000.
    pub limit: usize,
}

impl Default for ListItems {
    fn default() -> Self {
        ListItems {
            key_prefix: None,
            cursor: None,
            limit: 100,
        }
    }
}

impl ListItems {
    /// Same, only keys starting with `key_prefix`.
    #[must_use]
    pub fn with_key_prefix(mut self, key_prefix: impl Into<Option<String>>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }
    /// Same, continuing after the page that returned `cursor` (`None`: from the start).
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.cursor = cursor.into();
        self
    }
    /// Same, with page size `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Query of [`Store::list_namespaces`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListNamespaces {
    /// Only namespaces under this one (whole labels).
    pub prefix: Option<Namespace>,
    /// Truncate results to this many labels (deduplicated). `None`: full depth.
    pub max_depth: Option<usize>,
    /// Continue after a previous page.
    pub cursor: Option<Cursor>,
    /// Page size, 1..=10 000.
    pub limit: usize,
}

impl Default for ListNamespaces {
    fn default() -> Self {
        ListNamespaces {
            prefix: None,
            max_depth: None,
            cursor: None,
            limit: 100,
        }
    }
}

impl ListNamespaces {
    /// Same, only namespaces under `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<Option<Namespace>>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Same, truncating results to `max_depth` labels.
    #[must_use]
    pub fn with_max_depth(mut self, max_depth: impl Into<Option<usize>>) -> Self {
        self.max_depth = max_depth.into();
        self
    }
    /// Same, continuing after the page that returned `cursor` (`None`: from the start).
    #[must_use]
    pub fn with_cursor(mut self, cursor: impl Into<Option<Cursor>>) -> Self {
        self.cursor = cursor.into();
        self
    }
    /// Same, with page size `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// Query of [`Store::search`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SearchItems {
    /// Only items in this namespace or below it. `None`: the whole tenant.
    pub namespace_prefix: Option<Namespace>,
    /// Conditions on top-level fields of the value's data.
    pub filter: Filter,
    /// At most this many items, 1..=10 000.
    pub limit: usize,
    /// Skip this many matches first.
    pub offset: usize,
    /// Restart the TTL of every item returned, as [`GetItemOptions::refresh_ttl`] does
    /// for one (items matched but not returned, past `limit` or before `offset`, are
    /// untouched).
    pub refresh_ttl: bool,
}

impl Default for SearchItems {
    fn default() -> Self {
        SearchItems {
            namespace_prefix: None,
            filter: Filter::all(),
            limit: 100,
            offset: 0,
            refresh_ttl: false,
        }
    }
}

impl SearchItems {
    /// Same, only items in `namespace_prefix` or below.
    #[must_use]
    pub fn with_namespace_prefix(mut self, namespace_prefix: impl Into<Option<Namespace>>) -> Self {
        self.namespace_prefix = namespace_prefix.into();
        self
    }
    /// Same, matching `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Same, returning at most `limit` items.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    /// Same, skipping `offset` matches first.
    #[must_use]
    pub fn with_offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }
    /// Same, restarting the TTL of the items returned when `on`.
    #[must_use]
    pub fn with_refresh_ttl(mut self, on: bool) -> Self {
        self.refresh_ttl = on;
        self
    }
}

/// JSON items keyed by tenant, namespace and key. Expired items are never returned.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes an item. Returns its new version.
    ///
    /// # Errors
    /// `Conflict` if `if_version` does not hold; `Unsupported` for a TTL on a backend
    /// without TTL.
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64>;

    /// The item, or `None` if absent or expired.
    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>>;

    /// Deletes an item. Returns whether a live item was deleted.
    ///
    /// # Errors
    /// `Conflict` if `if_version` is given and the item's version differs (an absent
    /// item has version 0).
    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool>;

    /// Items of exactly `namespace`, ascending by key.
    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>>;

    /// Namespaces holding live items, ascending label by label.
    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>>;

    /// [`get`](Store::get) with options. With
    /// [`refresh_ttl`](GetItemOptions::refresh_ttl), the read and the restart of the
    /// item's TTL are one atomic step, and the item returned shows its new expiry. A
    /// backend stores each item's TTL with it; an item written before it did counts
    /// the time from its last write to its expiry as its TTL, which is what it was.
    ///
    /// The default implementation is `get` and fails `Unsupported` for `refresh_ttl`:
    /// a backend declaring [`Capabilities::lifecycle`](crate::Capabilities::lifecycle)
    /// implements it.
    ///
    /// # Errors
    /// As [`get`](Store::get); `Unsupported` as said.
    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        if options.refresh_ttl {
            return Err(refresh_unsupported().context(
                "core",
                "store.get",
                format!("{tenant}/{namespace}/{key}"),
            ));
        }
        self.get(tenant, namespace, key).await
    }

    /// Items under a namespace prefix matching a filter, ordered by (namespace, key).
    /// With [`refresh_ttl`](SearchItems::refresh_ttl), the TTLs of the items returned
    /// restart in the same step (a backend that cannot fails `Unsupported` rather than
    /// ignore it).
    ///
    /// # Errors
    /// `Unsupported` on backends without search, and for `refresh_ttl` on backends
    /// without [`Capabilities::lifecycle`](crate::Capabilities::lifecycle).
    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>>;

    /// Applies a JSON merge patch (RFC 7396) to an item's data, atomically: fields the
    /// patch does not name are kept, a `null` removes a field, and concurrent patches of
    /// different fields all survive. The item keeps its schema version. Returns the new
    /// version.
    ///
    /// The default implementation is
    /// [`patch_by_compare_and_swap`](crate::backend::patch_by_compare_and_swap)
    /// (get, merge, `put` with `if_version`, again on a conflict); a backend may override
    /// it with one round trip.
    ///
    /// # Errors
    /// `NotFound` for an absent or expired item; `Conflict` if `options.if_version` does
    /// not hold.
    async fn patch(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        patch: serde_json::Value,
        options: PatchItemOptions,
    ) -> Result<u64> {
        crate::patch::patch_by_compare_and_swap(self, tenant, namespace, key, patch, options).await
    }

    /// Deletes every item of `namespace` and of the namespaces below it (whole labels:
    /// `["a"]` covers `["a", "b"]`, not `["ab"]`). Returns how many items were deleted.
    ///
    /// Not one atomic step: items written while it runs may survive it, and a failure
    /// part way leaves the rest (run it again). The default implementation pages through
    /// [`list_namespaces`](Store::list_namespaces) and [`list`](Store::list), deleting
    /// each item; a backend may override it.
    ///
    /// # Errors
    /// Errors of the listings and deletes.
    async fn delete_namespace(&self, tenant: &TenantId, namespace: &Namespace) -> Result<u64> {
        delete_namespace_by_items(self, tenant, namespace).await
    }
}

/// The error of a TTL refresh on a backend that does not declare it.
pub(crate) fn refresh_unsupported() -> crate::Error {
    crate::Error::unsupported("refresh_ttl: this backend does not declare Capabilities::lifecycle")
}

/// The default [`Store::delete_namespace`]: every namespace under `prefix` (and
/// `prefix` itself), each drained page by page with [`Store::delete`].
///
/// # Errors
/// Errors of the listings and deletes.
async fn delete_namespace_by_items<S: Store + ?Sized>(
    store: &S,
    tenant: &TenantId,
    prefix: &Namespace,
) -> Result<u64> {
    const PAGE: usize = 500;
    let mut namespaces = Vec::new();
    let mut cursor = None;
    loop {
        let query = ListNamespaces::default()
            .with_prefix(prefix.clone())
            .with_cursor(cursor)
            .with_limit(PAGE);
        let page = store.list_namespaces(tenant, query).await?;
        namespaces.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let mut deleted = 0;
    for namespace in &namespaces {
        // Deleting while paging: always read the first page again.
        loop {
            let page = store
                .list(tenant, namespace, ListItems::default().with_limit(PAGE))
                .await?;
            let mut deleted_here = 0;
            for item in &page.items {
                if store.delete(tenant, namespace, &item.key, None).await? {
                    deleted_here += 1;
                }
            }
            deleted += deleted_here;
            // A page of items that were all gone already (deleted by someone else) ends
            // it too, so a listing that lags its deletes cannot loop for ever.
            if deleted_here == 0 || page.next.is_none() {
                break;
            }
        }
    }
    Ok(deleted)
}
