//! Store items: one JSON file per item under its namespace's directory tree; a per-item
//! flock (`~locks/{key}.lock`) serializes the writes of one item (CAS, TTL), so writers
//! of different keys run side by side.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use persistence_core::backend::{CursorExt, PageExt, validate_limit, validate_ttl};
use persistence_core::{
    Cursor, Envelope, Error, GetItemOptions, Item, ItemKey, ListItems, ListNamespaces, Namespace,
    Page, PutItemOptions, Result, SearchItems, Store, TenantId, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Range};
use crate::checkpointer::{ensure_entry, entry_id};
use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::item_file::{self, ItemFile, Latest};
use crate::layout::{ITEM_CATALOG_DIR, ITEM_LOCKS_DIR, ITEMS_DIR, decode, encode};
use crate::{FsBackend, Inner};

mod refresh;

#[derive(Serialize, Deserialize)]
struct StoredItem {
    namespace: Namespace,
    key: ItemKey,
    value: Envelope,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
    /// The TTL of the last write in ms, which a refreshing read restarts. Absent from
    /// items written before it was stored (older libraries skip it when reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
}

impl crate::payload_record::PayloadRecord for StoredItem {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.value
    }
}

impl StoredItem {
    fn live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
    fn into_item(self) -> Item {
        Item::new(
            self.namespace,
            self.key,
            self.value,
            self.version,
            self.created_at,
            self.updated_at,
            self.expires_at,
        )
    }
}

/// The item stored at `path`, as a reader sees it (no lock held).
///
/// # Errors
/// `Corrupt` naming the file (and `key` when known) when it does not decode.
fn load_key(path: &Path, key: Option<&ItemKey>) -> Result<Option<StoredItem>> {
    decode_item(item_file::read_latest(path).at(path)?, path, key)
}

fn load(path: &Path) -> Result<Option<StoredItem>> {
    load_key(path, None)
}

/// The item in `latest`, decoded.
///
/// # Errors
/// `Corrupt` naming the file (and `key` when known) when it is damaged or does not decode.
fn decode_item(latest: Latest, path: &Path, key: Option<&ItemKey>) -> Result<Option<StoredItem>> {
    let damaged = |what: String| match key {
        Some(key) => corrupt(path, format!("item {key:?} {what}")),
        None => corrupt(path, what),
    };
    match latest {
        Latest::Absent => Ok(None),
        Latest::Damaged(what) => Err(damaged(what)),
        Latest::Item(bytes) => crate::payload_record::decode(&bytes)
            .map(Some)
            .map_err(|e| damaged(format!("does not decode: {e}"))),
    }
}

/// What a write finds at its item's path: the item, nothing, or a corrupt file (which a
/// put replaces and a delete removes, so damage can always be cleared through the API).
enum Current {
    Item(StoredItem),
    Absent,
    Corrupt(Error),
}

/// The item at `path` for a caller holding its lock, with the open file a put writes.
fn current(path: &Path, key: &ItemKey) -> Result<(Current, ItemFile)> {
    let file = ItemFile::open(path).at(path)?;
    let found = match decode_item(file.latest(), path, Some(key)) {
        Ok(Some(item)) => Current::Item(item),
        Ok(None) => Current::Absent,
        Err(e) if e.kind() == persistence_core::ErrorKind::Corrupt => Current::Corrupt(e),
        Err(e) => return Err(e),
    };
    Ok((found, file))
}

fn check_version(if_version: Option<u64>, current: u64) -> Result<()> {
    match if_version {
        Some(want) if want != current => Err(Error::conflict(format!(
            "expected version {want}, found {current}"
        ))),
        _ => Ok(()),
    }
}

fn bad_cursor(c: &Cursor) -> Error {
    c.invalid()
}

impl Inner {
    fn item_path(&self, t: &TenantId, ns: &Namespace, key: &ItemKey) -> Result<PathBuf> {
        let ns_dir = self.inside(self.layout.namespace(t, ns))?;
        self.item_path_in(&ns_dir, key)
    }

    /// The file of `key` in `ns_dir`, a namespace directory checked already.
    fn item_path_in(&self, ns_dir: &Path, key: &ItemKey) -> Result<PathBuf> {
        self.inside_below(ns_dir, ns_dir.join(ITEMS_DIR).join(encode(key.as_str())))
    }

    /// The lock of one item in `ns_dir`, a namespace directory checked already (CAS and
    /// TTL checks happen under it).
    fn item_lock(&self, ns_dir: &Path, key: &ItemKey) -> Result<FileLock> {
        let path = self.inside_below(
            ns_dir,
            ns_dir
                .join(ITEM_LOCKS_DIR)
                .join(format!("{}.lock", encode(key.as_str()))),
        )?;
        FileLock::exclusive(&path, self.durability).at(&path)
    }

    fn put_item(
        &self,
        t: &TenantId,
        ns: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        let ttl = options
            .ttl
            .map(|t| validate_ttl("item ttl", t))
            .transpose()?;
        let ns_dir = self.inside(self.layout.namespace(t, ns))?;
        let _lock = self.item_lock(&ns_dir, key)?;
        let now = Timestamp::now();
        let path = self.item_path_in(&ns_dir, key)?;
        let (found, file) = current(&path, key)?;
        let created = matches!(found, Current::Absent);
        let current = match found {
            Current::Item(item) => Some(item).filter(|i| i.live(now)),
            Current::Absent => None,
            // A conditional put cannot know what it would replace.
            Current::Corrupt(e) if options.if_version.is_some() => return Err(e),
            Current::Corrupt(_) => None,
        };
        check_version(
            options.if_version,
            current.as_ref().map_or(0, |i| i.version),
        )?;
        // Below the store's root, checked as part of `ns_dir`.
        let mut dir = self.layout.store(t);
        for label in ns.labels() {
            dir.push(encode(label));
            ensure_entry(&dir, label, self.durability, || Ok(None))?;
        }
        let stored = StoredItem {
            namespace: ns.clone(),
            key: key.clone(),
            value,
            version: current.as_ref().map_or(1, |i| i.version + 1),
            created_at: current.as_ref().map_or(now, |i| i.created_at),
            updated_at: now,
            expires_at: ttl.map(|ttl| now.saturating_add(ttl)),
            ttl_ms: ttl.map(|ttl| ttl.as_millis() as u64),
        };
        let mut stored = stored;
        let bytes = crate::payload_record::encode(&mut stored)?;
        if created {
            self.note_namespace(t, ns, &dir)?;
            self.item_catalog(t, ns)?.add(key.as_str())?;
        }
        file.write(&path, &bytes, self.durability).at(&path)?;
        Ok(stored.version)
    }

    fn delete_item(
        &self,
        t: &TenantId,
        ns: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        let ns_dir = self.inside(self.layout.namespace(t, ns))?;
        let _lock = self.item_lock(&ns_dir, key)?;
        let path = self.item_path_in(&ns_dir, key)?;
        let (live, was_corrupt) = match current(&path, key)?.0 {
            Current::Item(item) => (Some(item).filter(|i| i.live(Timestamp::now())), false),
            Current::Absent => (None, false),
            Current::Corrupt(e) if if_version.is_some() => return Err(e),
            Current::Corrupt(_) => (None, true),
        };
        check_version(if_version, live.as_ref().map_or(0, |i| i.version))?;
        match std::fs::remove_file(&path) {
            Ok(()) => self.item_catalog(t, ns)?.remove(key.as_str()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(crate::error::io_error(&path, e)),
        }
        if self.durability == crate::Durability::Fsync
            && let Some(dir) = path.parent()
        {
            files::sync_dir(dir).at(dir)?;
        }
        Ok(live.is_some() || was_corrupt)
    }

    /// The keys of one namespace directory's items, any order: what its item catalog is
    /// built from.
    pub(crate) fn item_ids(&self, ns_dir: &Path) -> Result<Vec<String>> {
        Ok(self
            .item_keys(ns_dir)?
            .iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect())
    }

    /// Whether the item file at `path` (of key `id`) holds a live item.
    ///
    /// # Errors
    /// `Corrupt` naming the key when it does not decode.
    pub(crate) fn live_item_at(&self, path: &Path, id: &str, now: Timestamp) -> Result<bool> {
        let key = ItemKey::new(id).ok();
        Ok(load_key(path, key.as_ref())?.is_some_and(|i| i.live(now)))
    }

    /// Items of one namespace directory, in key order (keys only read from file names,
    /// or from the item for hashed names).
    fn item_keys(&self, ns_dir: &Path) -> Result<Vec<(ItemKey, PathBuf)>> {
        let dir = ns_dir.join(ITEMS_DIR);
        let mut out = Vec::new();
        for name in files::list_names(&dir).at(&dir)? {
            let path = dir.join(&name);
            let key = match decode(&name) {
                Some(k) => ItemKey::new(k).ok(),
                None if name.starts_with('=') => load(&path)?.map(|i| i.key),
                None => None,
            };
            if let Some(key) = key {
                out.push((key, path));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every namespace with at least one live item under `root` (labels so far given).
    fn walk_namespaces(
        &self,
        dir: &Path,
        labels: &mut Vec<String>,
        now: Timestamp,
        out: &mut Vec<(Namespace, PathBuf)>,
    ) -> Result<()> {
        if !labels.is_empty() {
            let mut has_live = false;
            for (key, path) in self.item_keys(dir)? {
                if load_key(&path, Some(&key))?.is_some_and(|i| i.live(now)) {
                    has_live = true;
                    break;
                }
            }
            if has_live && let Ok(ns) = Namespace::new(labels.clone()) {
                out.push((ns, dir.to_path_buf()));
            }
        }
        if labels.len() >= persistence_core::MAX_NAMESPACE_DEPTH {
            return Ok(());
        }
        for name in files::list_names(dir).at(dir)? {
            if name.starts_with('~') {
                continue;
            }
            let child = dir.join(&name);
            if !child.is_dir() {
                continue;
            }
            let Some(label) = entry_id(dir, &name)? else {
                continue;
            };
            labels.push(label);
            self.walk_namespaces(&child, labels, now, out)?;
            labels.pop();
        }
        Ok(())
    }

    fn namespaces_under(
        &self,
        t: &TenantId,
        prefix: Option<&Namespace>,
    ) -> Result<Vec<(Namespace, PathBuf)>> {
        let (start, mut labels) = match prefix {
            Some(p) => (
                self.inside(self.layout.namespace(t, p))?,
                p.labels().to_vec(),
            ),
            None => (self.inside(self.layout.store(t))?, Vec::new()),
        };
        let mut out = Vec::new();
        if start.is_dir() {
            self.walk_namespaces(&start, &mut labels, Timestamp::now(), &mut out)?;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub(crate) fn purge_items(&self) -> Result<u64> {
        let tenants = self.layout.tenants();
        let tenants = self.inside(tenants)?;
        let mut removed = 0;
        for name in files::list_dirs(&tenants).at(&tenants)? {
            let Ok(t) = TenantId::new(decode(&name).unwrap_or_default()) else {
                continue;
            };
            let mut all = Vec::new();
            let root = self.layout.store(&t);
            if root.is_dir() {
                self.walk_all(&root, &mut all)?;
            }
            for ns_dir in all {
                let ns_dir = self.inside(ns_dir)?;
                for (key, path) in self.item_keys(&ns_dir)? {
                    let _lock = self.item_lock(&ns_dir, &key)?;
                    let held = ItemFile::open(&path).at(&path)?.latest();
                    if decode_item(held, &path, Some(&key))?
                        .is_some_and(|i| !i.live(Timestamp::now()))
                    {
                        std::fs::remove_file(&path).at(&path)?;
                        let items = ns_dir.join(ITEMS_DIR);
                        Catalog::new(ns_dir.join(ITEM_CATALOG_DIR), items, self.durability)
                            .remove(key.as_str());
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Every namespace directory holding an items directory.
    fn walk_all(&self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        if dir.join(ITEMS_DIR).is_dir() {
            out.push(dir.to_path_buf());
        }
        for name in files::list_names(dir).at(dir)? {
            let child = dir.join(&name);
            if !name.starts_with('~') && child.is_dir() {
                self.walk_all(&child, out)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FsBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        through_codec!(self.store().put(tenant, namespace, key, value, options));
        let (t, ns, k) = (tenant.clone(), namespace.clone(), key.clone());
        self.run(
            "store.put",
            format!("{tenant}/{namespace}/{key}"),
            move |i| i.put_item(&t, &ns, &k, value, options),
        )
        .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>> {
        through_codec!(self.store().get(tenant, namespace, key));
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
        through_codec!(self.store().get_with(tenant, namespace, key, options));
        let (t, ns, k) = (tenant.clone(), namespace.clone(), key.clone());
        self.run(
            "store.get",
            format!("{tenant}/{namespace}/{key}"),
            move |i| {
                let found = load_key(&i.item_path(&t, &ns, &k)?, Some(&k))?
                    .filter(|x| x.live(Timestamp::now()));
                // Only an item read live with an expiry has a TTL to restart.
                let found = match found {
                    Some(item) if options.refresh_ttl && item.expires_at.is_some() => {
                        i.refresh_item(&t, &ns, &k)?
                    }
                    found => found,
                };
                Ok(found.map(StoredItem::into_item))
            },
        )
        .await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        through_codec!(self.store().delete(tenant, namespace, key, if_version));
        let (t, ns, k) = (tenant.clone(), namespace.clone(), key.clone());
        self.run(
            "store.delete",
            format!("{tenant}/{namespace}/{key}"),
            move |i| i.delete_item(&t, &ns, &k, if_version),
        )
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        through_codec!(self.store().list(tenant, namespace, query));
        let (t, ns) = (tenant.clone(), namespace.clone());
        self.run("store.list", format!("{tenant}/{namespace}"), move |i| {
            let limit = validate_limit(query.limit)?;
            let after = query
                .cursor
                .as_ref()
                .map(|c| ItemKey::new(c.as_str()).map_err(|_| bad_cursor(c)))
                .transpose()?;
            let prefix = query.key_prefix.unwrap_or_default();
            let now = Timestamp::now();
            let ns_dir = i.inside(i.layout.namespace(&t, &ns))?;
            let range = Range {
                after: after.as_ref().map(ItemKey::as_str),
                prefix: &prefix,
            };
            let scan = || i.item_ids(&ns_dir);
            let items_dir = i.inside_below(&ns_dir, ns_dir.join(ITEMS_DIR))?;
            let items = i
                .item_catalog(&t, &ns)?
                .collect(range, limit, &scan, |id| {
                    let Ok(key) = ItemKey::new(id) else {
                        return Ok(None);
                    };
                    let name = encode(key.as_str());
                    let path = i.inside_below(&items_dir, items_dir.join(name))?;
                    Ok(load_key(&path, Some(&key))?
                        .filter(|x| x.live(now))
                        .map(StoredItem::into_item))
                })?;
            Ok(Page::from_overfetch(items, limit, |item| {
                Cursor::new(item.key.as_str())
            }))
        })
        .await
    }

    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>> {
        through_codec!(self.store().list_namespaces(tenant, query));
        let t = tenant.clone();
        self.run("store.list_namespaces", tenant.to_string(), move |i| {
            let limit = validate_limit(query.limit)?;
            if query.max_depth == Some(0) {
                return Err(Error::invalid_input("max_depth must be at least 1"));
            }
            let after: Option<Namespace> = query
                .cursor
                .as_ref()
                .map(|c| serde_json::from_str(c.as_str()).map_err(|_| bad_cursor(c)))
                .transpose()?;
            let found = i.namespace_page(&t, &query, after.as_ref(), limit)?;
            Ok(Page::from_overfetch(found, limit, |ns| {
                Cursor::new(serde_json::to_string(ns).unwrap_or_default())
            }))
        })
        .await
    }

    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        through_codec!(self.store().search(tenant, query));
        let t = tenant.clone();
        self.run("store.search", tenant.to_string(), move |i| {
            let limit = validate_limit(query.limit)?;
            let now = Timestamp::now();
            let mut skipped = 0;
            let mut out = Vec::new();
            for (_, dir) in i.namespaces_under(&t, query.namespace_prefix.as_ref())? {
                for (key, path) in i.item_keys(&dir)? {
                    let Some(item) = load_key(&path, Some(&key))?.filter(|x| x.live(now)) else {
                        continue;
                    };
                    if !query.filter.matches(&item.value.data) {
                        continue;
                    }
                    if skipped < query.offset {
                        skipped += 1;
                        continue;
                    }
                    out.push(item);
                    if out.len() == limit {
                        break;
                    }
                }
                if out.len() == limit {
                    break;
                }
            }
            if query.refresh_ttl {
                out = refresh_all(i, &t, out)?;
            }
            Ok(out.into_iter().map(StoredItem::into_item).collect())
        })
        .await
    }
}

/// `found`, each item with an expiry refreshed (one that expired or went meanwhile is
/// left out, as a search a moment later would).
fn refresh_all(i: &Inner, t: &TenantId, found: Vec<StoredItem>) -> Result<Vec<StoredItem>> {
    let mut out = Vec::with_capacity(found.len());
    for item in found {
        if item.expires_at.is_none() {
            out.push(item);
        } else if let Some(fresh) = i.refresh_item(t, &item.namespace, &item.key)? {
            out.push(fresh);
        }
    }
    Ok(out)
}

impl FsBackend {
    /// Removes expired items of every tenant. Also deletes what interrupted writes left
    /// behind (temp files, trash, staging copies older than ten minutes), which are not
    /// items and are not counted.
    pub(crate) async fn purge_expired_items(&self) -> Result<u64> {
        self.run("store.purge_expired", String::new(), |i| {
            let base = i.layout.base();
            files::remove_leftovers(base).at(base)?;
            let purged = i.purge_items()?;
            i.rebuild_catalogs()?;
            Ok(purged)
        })
        .await
    }
}
