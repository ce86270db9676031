use std::collections::BTreeSet;
use std::ops::Bound;

use async_trait::async_trait;

use super::{MemoryBackend, StoredItem, ctx, decode_cursor, encode_cursor, is_expired};
use crate::backend::PageExt;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::ids::{ItemKey, Namespace, TenantId};
use crate::page::{Page, validate_limit};
use crate::store::{
    GetItemOptions, Item, ListItems, ListNamespaces, PutItemOptions, SearchItems, Store,
};
use crate::time::validate_ttl;

fn to_item(namespace: &Namespace, key: &ItemKey, stored: &StoredItem) -> Item {
    Item {
        namespace: namespace.clone(),
        key: key.clone(),
        value: stored.value.clone(),
        version: stored.version,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        expires_at: stored.expires_at,
    }
}

/// Restarts a live item's TTL (none: nothing to restart).
fn refresh(item: &mut StoredItem, now: crate::time::Timestamp) {
    if let Some(ttl) = item.ttl {
        item.expires_at = Some(now.saturating_add(ttl));
    }
}

fn check_version(if_version: Option<u64>, current: u64) -> Result<()> {
    match if_version {
        Some(want) if want != current => Err(Error::conflict(format!(
            "expected version {want}, found {current}{}",
            if current == 0 { " (absent)" } else { "" }
        ))),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for MemoryBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        let now = self.now();
        let err_key = format!("{tenant}/{namespace}/{key}");
        let ttl = options
            .ttl
            .map(|t| validate_ttl("item ttl", t))
            .transpose()
            .map_err(ctx("store.put", &err_key))?;
        self.with_tenant(tenant, |t| {
            let slot = t.items.entry(namespace.clone()).or_default();
            let current = slot.get(key).filter(|i| !is_expired(i.expires_at, now));
            check_version(options.if_version, current.map_or(0, |i| i.version))?;
            let stored = StoredItem {
                value,
                version: current.map_or(1, |i| i.version + 1),
                created_at: current.map_or(now, |i| i.created_at),
                updated_at: now,
                expires_at: ttl.map(|ttl| now.saturating_add(ttl)),
                ttl,
            };
            let version = stored.version;
            slot.insert(key.clone(), stored);
            Ok(version)
        })
        .map_err(ctx("store.put", err_key))
    }

    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>> {
        self.get_with(tenant, namespace, key, GetItemOptions::default())
            .await
    }

    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            let item = t
                .items
                .get_mut(namespace)?
                .get_mut(key)
                .filter(|i| !is_expired(i.expires_at, now))?;
            if options.refresh_ttl {
                refresh(item, now);
            }
            Some(to_item(namespace, key, item))
        }))
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        let now = self.now();
        self.with_tenant(tenant, |t| {
            let Some(slot) = t.items.get_mut(namespace) else {
                check_version(if_version, 0)?;
                return Ok(false);
            };
            let current = slot.get(key).filter(|i| !is_expired(i.expires_at, now));
            check_version(if_version, current.map_or(0, |i| i.version))?;
            let was_live = current.is_some();
            slot.remove(key);
            if slot.is_empty() {
                t.items.remove(namespace);
            }
            Ok(was_live)
        })
        .map_err(ctx("store.delete", format!("{tenant}/{namespace}/{key}")))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        let err_key = format!("{tenant}/{namespace}");
        let limit = validate_limit(query.limit).map_err(ctx("store.list", &err_key))?;
        let after: Option<ItemKey> = query
            .cursor
            .as_ref()
            .map(decode_cursor)
            .transpose()
            .map_err(ctx("store.list", &err_key))?;
        let prefix = query.key_prefix.unwrap_or_default();
        let now = self.now();
        let items = self.with_tenant(tenant, |t| {
            let Some(slot) = t.items.get(namespace) else {
                return Vec::new();
            };
            let lower = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
            slot.range::<ItemKey, _>((lower, Bound::Unbounded))
                .filter(|(k, i)| k.as_str().starts_with(&prefix) && !is_expired(i.expires_at, now))
                .take(limit + 1)
                .map(|(k, i)| to_item(namespace, k, i))
                .collect()
        });
        Ok(Page::from_overfetch(items, limit, |i| {
            encode_cursor(&i.key)
        }))
    }

    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>> {
        let limit = validate_limit(query.limit).map_err(ctx("store.list_namespaces", tenant))?;
        if query.max_depth == Some(0) {
            return Err(
                Error::invalid_input("max_depth must be at least 1").context(
                    super::BACKEND,
                    "store.list_namespaces",
                    tenant,
                ),
            );
        }
        let after: Option<Namespace> = query
            .cursor
            .as_ref()
            .map(decode_cursor)
            .transpose()
            .map_err(ctx("store.list_namespaces", tenant))?;
        let now = self.now();
        let items: Vec<Namespace> = self.with_tenant(tenant, |t| {
            let found: BTreeSet<Namespace> = t
                .items
                .iter()
                .filter(|(ns, _)| query.prefix.as_ref().is_none_or(|p| ns.starts_with(p)))
                .filter(|(_, slot)| slot.values().any(|i| !is_expired(i.expires_at, now)))
                .map(|(ns, _)| {
                    query
                        .max_depth
                        .map_or_else(|| ns.clone(), |d| ns.truncated(d))
                })
                .collect();
            found
                .into_iter()
                .filter(|ns| after.as_ref().is_none_or(|a| ns > a))
                .take(limit + 1)
                .collect()
        });
        Ok(Page::from_overfetch(items, limit, encode_cursor))
    }

    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        let limit = validate_limit(query.limit).map_err(ctx("store.search", tenant))?;
        let now = self.now();
        Ok(self.with_tenant(tenant, |t| {
            let found: Vec<Item> = t
                .items
                .iter()
                .filter(|(ns, _)| {
                    query
                        .namespace_prefix
                        .as_ref()
                        .is_none_or(|p| ns.starts_with(p))
                })
                .flat_map(|(ns, slot)| slot.iter().map(move |(k, i)| (ns, k, i)))
                .filter(|(_, _, i)| {
                    !is_expired(i.expires_at, now) && query.filter.matches(&i.value.data)
                })
                .skip(query.offset)
                .take(limit)
                .map(|(ns, k, i)| to_item(ns, k, i))
                .collect();
            if !query.refresh_ttl {
                return found;
            }
            found
                .into_iter()
                .map(|item| {
                    let stored = t
                        .items
                        .get_mut(&item.namespace)
                        .and_then(|slot| slot.get_mut(&item.key));
                    match stored {
                        Some(stored) => {
                            refresh(stored, now);
                            to_item(&item.namespace, &item.key, stored)
                        }
                        None => item,
                    }
                })
                .collect()
        }))
    }
}

impl MemoryBackend {
    /// Removes expired items of every tenant.
    pub(super) fn purge_expired_items(&self) -> u64 {
        let now = self.now();
        let mut state = self.lock_state();
        let mut removed = 0;
        for t in state.tenants.values_mut() {
            for slot in t.items.values_mut() {
                let before = slot.len();
                slot.retain(|_, i| !is_expired(i.expires_at, now));
                removed += (before - slot.len()) as u64;
            }
            t.items.retain(|_, slot| !slot.is_empty());
        }
        removed
    }
}
