//! [`SealedStore`]: store values through the codec.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::backend::patch_by_compare_and_swap;
use persistence_core::{
    Envelope, Error, ErrorKind, GetItemOptions, Item, ItemKey, ListItems, ListNamespaces,
    Namespace, Page, PatchItemOptions, PutItemOptions, Result, SearchItems, Store, TenantId,
};

use super::{Codec, Row};

/// How many times an unconditional put is tried again when another writer changed the
/// item between the version read and the put.
const PUT_ATTEMPTS: u32 = 64;

/// A [`Store`] whose values are sealed by the codec (see [the crate docs](crate)),
/// bound to namespace, key and the version the put creates.
///
/// A value is sealed for the version its put will create, so a put without
/// `if_version` reads the current version first and puts with it as `if_version`,
/// again when another writer got there first (one more round trip per put). A search
/// with a filter fails `Unsupported`: the fields it would compare are sealed.
#[derive(Clone)]
pub struct SealedStore {
    inner: Arc<dyn Store>,
    codec: Arc<Codec>,
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl SealedStore {
    /// Seals what goes to `inner` with `codec`, and opens what comes back.
    pub fn new(inner: Arc<dyn Store>, codec: Arc<Codec>) -> Self {
        SealedStore { inner, codec }
    }

    async fn open_item(&self, tenant: &TenantId, mut item: Item) -> Result<Item> {
        let row = Row::Item {
            namespace: &item.namespace,
            key: &item.key,
            version: item.version,
        };
        let sealed = std::mem::replace(&mut item.value, Envelope::new(0, serde_json::Value::Null));
        item.value = self.codec.open(tenant, row, sealed).await?;
        Ok(item)
    }

    async fn open_items(&self, tenant: &TenantId, items: Vec<Item>) -> Result<Vec<Item>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.open_item(tenant, item).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SealedStore {
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        for attempt in 0..PUT_ATTEMPTS {
            let expected = match options.if_version {
                Some(v) => v,
                None => self
                    .inner
                    .get(tenant, namespace, key)
                    .await?
                    .map_or(0, |item| item.version),
            };
            let version = expected
                .checked_add(1)
                .ok_or_else(|| Error::invalid_input("item version overflow"))?;
            let row = Row::Item {
                namespace,
                key,
                version,
            };
            let sealed = self.codec.seal(tenant, row, &value).await?;
            let put = options.with_if_version(expected);
            match self.inner.put(tenant, namespace, key, sealed, put).await {
                Ok(stored) if stored == version => return Ok(stored),
                Ok(stored) => {
                    return Err(Error::corrupt(format!(
                        "item {namespace}/{key}: the backend gave version {stored} where \
                         {version} follows {expected}; the sealed value is bound to {version}"
                    )));
                }
                Err(e) if e.kind() == ErrorKind::Conflict && options.if_version.is_none() => {
                    let pause = fastrand::u64(0..=(1u64 << attempt.min(6)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "item {namespace}/{key} changed under every one of {PUT_ATTEMPTS} attempts"
        )))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>> {
        match self.inner.get(tenant, namespace, key).await? {
            Some(item) => Ok(Some(self.open_item(tenant, item).await?)),
            None => Ok(None),
        }
    }

    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        match self.inner.get_with(tenant, namespace, key, options).await? {
            Some(item) => Ok(Some(self.open_item(tenant, item).await?)),
            None => Ok(None),
        }
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        self.inner.delete(tenant, namespace, key, if_version).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        let mut page = self.inner.list(tenant, namespace, query).await?;
        page.items = self
            .open_items(tenant, std::mem::take(&mut page.items))
            .await?;
        Ok(page)
    }

    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>> {
        self.inner.list_namespaces(tenant, query).await
    }

    /// # Errors
    /// `Unsupported` for a filter on a field that is sealed (not one of
    /// [`CodecConfig::clear_fields`](crate::CodecConfig::clear_fields)).
    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        if let Some(c) = query
            .filter
            .conditions()
            .iter()
            .find(|c| !self.codec.searchable(&c.field))
        {
            return Err(Error::unsupported(format!(
                "search: field {:?} of store values is sealed by the codec, so a filter \
                 cannot read it (keep it in clear with CodecConfig::with_clear_fields; \
                 search by namespace prefix works)",
                c.field
            )));
        }
        let items = self.inner.search(tenant, query).await?;
        self.open_items(tenant, items).await
    }

    /// Get, merge and put with `if_version` here (a backend's own patch would merge into
    /// the sealed form).
    async fn patch(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        patch: serde_json::Value,
        options: PatchItemOptions,
    ) -> Result<u64> {
        patch_by_compare_and_swap(self, tenant, namespace, key, patch, options).await
    }

    async fn delete_namespace(&self, tenant: &TenantId, namespace: &Namespace) -> Result<u64> {
        self.inner.delete_namespace(tenant, namespace).await
    }
}
