//! Store items: per namespace (one hash tag) a hash of values, a hash of
//! `version|created|updated|expires`, a sorted set of keys and one of expiries. The
//! tenant's namespace index lists namespaces as labels joined by NUL, which sorts label
//! by label.

use async_trait::async_trait;
use persistence_core::backend::{
    CursorExt, PageExt, decode_record, encode_envelope, validate_limit, validate_ttl,
};
use persistence_core::{
    Cursor, Envelope, Error, GetItemOptions, Item, ItemKey, ListItems, ListNamespaces, Namespace,
    Page, PutItemOptions, Result, SearchItems, Store, TenantId, Timestamp,
};
use redis::AsyncCommands;

use crate::error::{BACKEND, Effect, corrupt, map};
use crate::keys::{Index, namespace_member};
use crate::{RedisBackend, expect_ok, invocation, parse_u64, scripts};

fn parse_items(
    ns: &Namespace,
    flat: Vec<Vec<u8>>,
    operation: &'static str,
    key: &str,
) -> Result<Vec<Item>> {
    flat.chunks(3)
        .map(|triple| {
            let [k, value, meta] = triple else {
                return Err(corrupt("odd reply", operation, key));
            };
            let k = std::str::from_utf8(k).map_err(|e| corrupt(e, operation, key))?;
            let meta = std::str::from_utf8(meta).map_err(|e| corrupt(e, operation, key))?;
            let parts: Vec<&str> = meta.split('|').collect();
            let [version, created, updated, expires] = parts.as_slice() else {
                return Err(corrupt(format!("item meta {meta:?}"), operation, key));
            };
            Ok(Item::new(
                ns.clone(),
                ItemKey::new(k).map_err(|e| corrupt(e, operation, key))?,
                decode_record(value).map_err(|e| corrupt(e, operation, key))?,
                parse_u64(version, operation, key)?,
                Timestamp(parse_u64(created, operation, key)?),
                Timestamp(parse_u64(updated, operation, key)?),
                if expires.is_empty() {
                    None
                } else {
                    Some(Timestamp(parse_u64(expires, operation, key)?))
                },
            ))
        })
        .collect()
}

impl RedisBackend {
    /// Up to `limit` live items of a namespace after `after`, with key prefix `prefix`.
    async fn items_page(
        &self,
        t: &TenantId,
        ns: &Namespace,
        after: &str,
        prefix: &str,
        limit: usize,
        key: &str,
    ) -> Result<Vec<Item>> {
        let k = self.keys.namespace(t, ns);
        let flat: Vec<Vec<u8>> = self
            .read("store.list", key, || {
                self.invoke(invocation!(
                    scripts::ITEM_LIST,
                    [k.values(), k.meta(), k.keys()],
                    [after, prefix, limit]
                ))
            })
            .await?;
        parse_items(ns, flat, "store.list", key)
    }

    /// The live items `keys` of one namespace, their TTLs restarted, in the order given
    /// (absent and expired ones left out), in one script.
    async fn refresh_items(
        &self,
        t: &TenantId,
        ns: &Namespace,
        keys: &[&str],
        operation: &'static str,
        key: &str,
    ) -> Result<Vec<Item>> {
        let k = self.keys.namespace(t, ns);
        let invocation = || {
            let mut invocation = scripts::ITEM_REFRESH.prepare_invoke();
            invocation
                .key(k.values())
                .key(k.meta())
                .key(k.expiry())
                .key(k.ttls());
            for item_key in keys {
                invocation.arg(*item_key);
            }
            invocation
        };
        // Sent again after a lost connection, a refresh only restarts the TTLs once
        // more: it is retried like a read.
        let flat: Vec<Vec<u8>> = self
            .read(operation, key, || self.invoke(invocation()))
            .await?;
        parse_items(ns, flat, operation, key)
    }

    /// Namespaces of a tenant under `prefix` that hold a live item, in order.
    async fn live_namespaces(
        &self,
        t: &TenantId,
        prefix: Option<&Namespace>,
        key: &str,
    ) -> Result<Vec<Namespace>> {
        let index = self.keys.index(t, Index::Namespaces);
        let from = prefix.map_or_else(|| "-".to_string(), |p| format!("[{}", namespace_member(p)));
        let members: Vec<String> = self
            .read("store.list_namespaces", key, || {
                let mut cmd = redis::cmd("ZRANGEBYLEX");
                cmd.arg(&index).arg(&from).arg("+");
                self.query(cmd)
            })
            .await?;
        let mut out = Vec::new();
        for member in members {
            let Ok(ns) = Namespace::new(member.split('\0')) else {
                continue;
            };
            if let Some(p) = prefix
                && !ns.starts_with(p)
            {
                if ns > *p {
                    break;
                }
                continue;
            }
            if !self.items_page(t, &ns, "", "", 1, key).await?.is_empty() {
                out.push(ns);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for RedisBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        value: Envelope,
        options: PutItemOptions,
    ) -> Result<u64> {
        through_codec!(self.store().put(tenant, namespace, key, value, options));
        let err_key = format!("{tenant}/{namespace}/{key}");
        let ttl = options
            .ttl
            .map(|t| validate_ttl("item ttl", t))
            .transpose()
            .map_err(|e| e.context(BACKEND, "store.put", &err_key))?;
        let k = self.keys.namespace(tenant, namespace);
        let json = encode_envelope(&value)?;
        let script = self.invoke::<Vec<String>>(invocation!(
            scripts::ITEM_PUT,
            [k.values(), k.meta(), k.keys(), k.expiry(), k.ttls()],
            [
                key.as_str(),
                &json,
                ttl.map(|t| t.as_millis().to_string()).unwrap_or_default(),
                options
                    .if_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ]
        ));
        let member = namespace_member(namespace);
        let (index, reply) =
            tokio::join!(self.index_add(tenant, Index::Namespaces, &member), script);
        index.map_err(|e| map(e, Effect::Write, "store.put", &err_key))?;
        let version = expect_ok(
            reply.map_err(|e| map(e, Effect::Write, "store.put", &err_key))?,
            "store.put",
            &err_key,
        )?;
        self.confirm_write("store.put", &err_key).await?;
        parse_u64(&version, "store.put", &err_key)
    }

    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        through_codec!(self.store().get_with(tenant, namespace, key, options));
        if !options.refresh_ttl {
            return self.get(tenant, namespace, key).await;
        }
        let err_key = format!("{tenant}/{namespace}/{key}");
        let mut found = self
            .refresh_items(tenant, namespace, &[key.as_str()], "store.get", &err_key)
            .await?;
        Ok(found.pop())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
    ) -> Result<Option<Item>> {
        through_codec!(self.store().get(tenant, namespace, key));
        let err_key = format!("{tenant}/{namespace}/{key}");
        let k = self.keys.namespace(tenant, namespace);
        // Plain commands in one transaction, atomic like a script and a fraction of its
        // cost to the server: the meta record, the value, and the server's clock to judge
        // the expiry by (the meta record is first, so a cluster routes by its key).
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("HGET")
            .arg(k.meta())
            .arg(key.as_str())
            .cmd("HGET")
            .arg(k.values())
            .arg(key.as_str())
            .cmd("TIME");
        let (meta, value, (secs, micros)): (Option<String>, Option<Vec<u8>>, (u64, u64)) = self
            .read("store.get", &err_key, || {
                self.query_pipeline(pipeline.clone())
            })
            .await?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let now = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let expires = meta.rsplit('|').next().unwrap_or_default();
        if !expires.is_empty() && parse_u64(expires, "store.get", &err_key)? <= now {
            return Ok(None);
        }
        let value = value.ok_or_else(|| {
            corrupt(
                "an item's meta record without its value",
                "store.get",
                &err_key,
            )
        })?;
        let flat = vec![key.as_str().as_bytes().to_vec(), value, meta.into_bytes()];
        Ok(parse_items(namespace, flat, "store.get", &err_key)?.pop())
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        through_codec!(self.store().delete(tenant, namespace, key, if_version));
        let err_key = format!("{tenant}/{namespace}/{key}");
        let k = self.keys.namespace(tenant, namespace);
        let reply: Vec<String> = self
            .invoke(invocation!(
                scripts::ITEM_DELETE,
                [k.values(), k.meta(), k.keys(), k.expiry(), k.ttls()],
                [
                    key.as_str(),
                    if_version.map(|v| v.to_string()).unwrap_or_default()
                ]
            ))
            .await
            .map_err(|e| map(e, Effect::Write, "store.delete", &err_key))?;
        let deleted = expect_ok(reply, "store.delete", &err_key)? == "1";
        self.confirm_write("store.delete", &err_key).await?;
        Ok(deleted)
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        through_codec!(self.store().list(tenant, namespace, query));
        let err_key = format!("{tenant}/{namespace}");
        let limit =
            validate_limit(query.limit).map_err(|e| e.context(BACKEND, "store.list", &err_key))?;
        let after = query
            .cursor
            .as_ref()
            .map(|c| {
                ItemKey::new(c.as_str())
                    .map_err(|_| c.invalid().context(BACKEND, "store.list", &err_key))
            })
            .transpose()?;
        let after = after.as_ref().map_or("", ItemKey::as_str);
        let prefix = query.key_prefix.unwrap_or_default();
        let items = self
            .items_page(tenant, namespace, after, &prefix, limit + 1, &err_key)
            .await?;
        Ok(Page::from_overfetch(items, limit, |i| {
            Cursor::new(i.key.as_str())
        }))
    }

    async fn list_namespaces(
        &self,
        tenant: &TenantId,
        query: ListNamespaces,
    ) -> Result<Page<Namespace>> {
        through_codec!(self.store().list_namespaces(tenant, query));
        let key = tenant.to_string();
        let ctx = |e: Error| e.context(BACKEND, "store.list_namespaces", &key);
        let limit = validate_limit(query.limit).map_err(ctx)?;
        if query.max_depth == Some(0) {
            return Err(ctx(Error::invalid_input("max_depth must be at least 1")));
        }
        let after: Option<Namespace> = query
            .cursor
            .as_ref()
            .map(|c| serde_json::from_str(c.as_str()).map_err(|_| c.invalid()))
            .transpose()
            .map_err(ctx)?;
        let mut found: Vec<Namespace> = self
            .live_namespaces(tenant, query.prefix.as_ref(), &key)
            .await?
            .into_iter()
            .map(|ns| {
                query
                    .max_depth
                    .map_or_else(|| ns.clone(), |d| ns.truncated(d))
            })
            .filter(|ns| after.as_ref().is_none_or(|a| ns > a))
            .collect();
        found.sort();
        found.dedup();
        found.truncate(limit + 1);
        Ok(Page::from_overfetch(found, limit, |ns| {
            Cursor::new(serde_json::to_string(ns).unwrap_or_default())
        }))
    }

    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        through_codec!(self.store().search(tenant, query));
        let key = tenant.to_string();
        let limit =
            validate_limit(query.limit).map_err(|e| e.context(BACKEND, "store.search", &key))?;
        let mut skipped = 0;
        let mut out = Vec::new();
        for ns in self
            .live_namespaces(tenant, query.namespace_prefix.as_ref(), &key)
            .await?
        {
            let mut after = String::new();
            loop {
                let page = self.items_page(tenant, &ns, &after, "", 200, &key).await?;
                let done = page.len() < 200;
                if let Some(last) = page.last() {
                    after = last.key.as_str().to_string();
                }
                for item in page {
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
                if done || out.len() == limit {
                    break;
                }
            }
            if out.len() == limit {
                break;
            }
        }
        if query.refresh_ttl {
            out = self.refresh_found(tenant, out, &key).await?;
        }
        Ok(out)
    }
}

impl RedisBackend {
    /// `found` (in namespace order), each namespace's items with an expiry refreshed in
    /// one script; one that expired or went meanwhile is left out.
    async fn refresh_found(&self, t: &TenantId, found: Vec<Item>, key: &str) -> Result<Vec<Item>> {
        let mut out = Vec::with_capacity(found.len());
        let mut rest = found.as_slice();
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take_while(|i| i.namespace == first.namespace)
                .count();
            let (group, tail) = rest.split_at(run);
            rest = tail;
            if group.iter().all(|i| i.expires_at.is_none()) {
                out.extend(group.iter().cloned());
                continue;
            }
            let keys: Vec<&str> = group.iter().map(|i| i.key.as_str()).collect();
            out.extend(
                self.refresh_items(t, &first.namespace, &keys, "store.search", key)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Removes expired items' index entries (the items expire by themselves) and counts
    /// them.
    pub(crate) async fn purge_expired_items(&self) -> Result<u64> {
        let mut removed = 0;
        for t in self.tenants().await? {
            let index = self.keys.index(&t, Index::Namespaces);
            let members: Vec<String> = self
                .conn()
                .zrange(&index, 0, -1)
                .await
                .map_err(|e| map(e, Effect::Read, "store.purge_expired", &t))?;
            for member in members {
                let Ok(ns) = Namespace::new(member.split('\0')) else {
                    continue;
                };
                let k = self.keys.namespace(&t, &ns);
                let (count, _remaining): (u64, u64) = self
                    .invoke(invocation!(
                        scripts::ITEM_PURGE,
                        [k.values(), k.meta(), k.keys(), k.expiry(), k.ttls()],
                        []
                    ))
                    .await
                    .map_err(|e| map(e, Effect::Write, "store.purge_expired", &t))?;
                removed += count;
            }
        }
        Ok(removed)
    }
}
