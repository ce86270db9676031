//! Store items: `persistence.item_*` functions. Namespaces are `text[]` in the "C"
//! collation, so they order label by label, bytewise.

use async_trait::async_trait;
use persistence_core::backend::{PageExt, validate_limit, validate_ttl};
use persistence_core::{
    Cursor, Envelope, Error, GetItemOptions, Item, ItemKey, ListItems, ListNamespaces, Namespace,
    Page, PutItemOptions, Result, SearchItems, Store, TenantId, Timestamp,
};
use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;

use crate::PgBackend;
use crate::checkpointer::bad_cursor;
use crate::error::{BACKEND, map};

const PUT: &str = "SELECT persistence.item_put($1, $2, $3, $4, $5, $6, $7, $8)";
const GET: &str = "SELECT persistence.item_get($1, $2, $3)";
const GET_REFRESHED: &str = "SELECT persistence.item_get_refreshed($1, $2, $3)";
const DELETE: &str = "SELECT persistence.item_delete($1, $2, $3, $4)";
const LIST: &str = "SELECT persistence.item_list($1, $2, $3, $4, $5)";
const LIST_NAMESPACES: &str = "SELECT persistence.item_list_namespaces($1, $2, $3, $4, $5)";
const SEARCH: &str = "SELECT persistence.item_search($1, $2, $3, $4, $5)";
const SEARCH_REFRESHED: &str = "SELECT persistence.item_search_refreshed($1, $2, $3, $4, $5)";
const PURGE: &str = "SELECT persistence.purge_expired_items()";

#[derive(Deserialize)]
struct Row {
    namespace: Namespace,
    key: ItemKey,
    value: Envelope,
    version: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Option<Timestamp>,
}

impl From<Row> for Item {
    fn from(r: Row) -> Self {
        Item::new(
            r.namespace,
            r.key,
            r.value,
            r.version,
            r.created_at,
            r.updated_at,
            r.expires_at,
        )
    }
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgBackend {
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
        let ttl_ms = options
            .ttl
            .map(|t| validate_ttl("item ttl", t).map(|t| t.as_millis() as i64))
            .transpose()
            .map_err(|e| e.context(BACKEND, "store.put", &err_key))?;
        let version: i64 = crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(PUT)
                .bind(tenant.as_str())
                .bind(namespace.labels())
                .bind(key.as_str())
                .bind(i64::from(value.schema_version))
                .bind(Json(&value.data))
                .bind(ttl_ms)
                .bind(options.if_version.map(version_i64))
                .bind(value.bytes.as_deref())
        )
        .map_err(|e| map(e, "store.put", &err_key))?;
        Ok(version as u64)
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

    /// A refresh is a write, but sent again after a lost connection it only restarts
    /// the TTL once more: it is retried like a read.
    async fn get_with(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        options: GetItemOptions,
    ) -> Result<Option<Item>> {
        through_codec!(self.store().get_with(tenant, namespace, key, options));
        let sql = if options.refresh_ttl {
            GET_REFRESHED
        } else {
            GET
        };
        let row: Option<Json<Row>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(sql)
                .bind(tenant.as_str())
                .bind(namespace.labels())
                .bind(key.as_str())
        )
        .map_err(|e| map(e, "store.get", format!("{tenant}/{namespace}/{key}")))?;
        Ok(row.map(|Json(r)| r.into()))
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        key: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        through_codec!(self.store().delete(tenant, namespace, key, if_version));
        crate::pool::fetch_single!(
            self.db,
            crate::statement::Call::new(DELETE)
                .bind(tenant.as_str())
                .bind(namespace.labels())
                .bind(key.as_str())
                .bind(if_version.map(version_i64))
        )
        .map_err(|e| map(e, "store.delete", format!("{tenant}/{namespace}/{key}")))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        namespace: &Namespace,
        query: ListItems,
    ) -> Result<Page<Item>> {
        through_codec!(self.store().list(tenant, namespace, query));
        let err_key = format!("{tenant}/{namespace}");
        let ctx = |e: Error| e.context(BACKEND, "store.list", &err_key);
        let limit = validate_limit(query.limit).map_err(ctx)?;
        let after = query
            .cursor
            .as_ref()
            .map(|c| ItemKey::new(c.as_str()).map_err(|_| bad_cursor(c)))
            .transpose()
            .map_err(ctx)?;
        let Json(rows): Json<Vec<Row>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(LIST)
                .bind(tenant.as_str())
                .bind(namespace.labels())
                .bind(query.key_prefix.as_deref())
                .bind(after.as_ref().map(ItemKey::as_str))
                .bind(limit as i32 + 1)
        )
        .map_err(|e| map(e, "store.list", &err_key))?;
        let items: Vec<Item> = rows.into_iter().map(Item::from).collect();
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
        let ctx = |e: Error| e.context(BACKEND, "store.list_namespaces", tenant);
        let limit = validate_limit(query.limit).map_err(ctx)?;
        if query.max_depth == Some(0) {
            return Err(ctx(Error::invalid_input("max_depth must be at least 1")));
        }
        let after: Option<Namespace> = query
            .cursor
            .as_ref()
            .map(|c| serde_json::from_str(c.as_str()).map_err(|_| bad_cursor(c)))
            .transpose()
            .map_err(ctx)?;
        let depth = query
            .max_depth
            .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
        let Json(items): Json<Vec<Namespace>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(LIST_NAMESPACES)
                .bind(tenant.as_str())
                .bind(query.prefix.as_ref().map(Namespace::labels))
                .bind(depth)
                .bind(after.as_ref().map(Namespace::labels))
                .bind(limit as i32 + 1)
        )
        .map_err(|e| map(e, "store.list_namespaces", tenant))?;
        Ok(Page::from_overfetch(items, limit, |ns| {
            Cursor::new(serde_json::to_string(ns).unwrap_or_default())
        }))
    }

    async fn search(&self, tenant: &TenantId, query: SearchItems) -> Result<Vec<Item>> {
        through_codec!(self.store().search(tenant, query));
        let limit =
            validate_limit(query.limit).map_err(|e| e.context(BACKEND, "store.search", tenant))?;
        let conditions: Vec<serde_json::Value> = query
            .filter
            .conditions()
            .iter()
            .map(|c| json!({"field": c.field, "op": c.op.as_str(), "value": c.value}))
            .collect();
        let offset = i32::try_from(query.offset).unwrap_or(i32::MAX);
        let sql = if query.refresh_ttl {
            SEARCH_REFRESHED
        } else {
            SEARCH
        };
        let Json(rows): Json<Vec<Row>> = crate::pool::fetch_single!(
            read self.db,
            crate::statement::Call::new(sql)
                .bind(tenant.as_str())
                .bind(query.namespace_prefix.as_ref().map(Namespace::labels))
                .bind(Json(&conditions))
                .bind(limit as i32)
                .bind(offset)
        )
        .map_err(|e| map(e, "store.search", tenant))?;
        Ok(rows.into_iter().map(Item::from).collect())
    }
}

impl PgBackend {
    /// Removes expired items of every tenant.
    pub(crate) async fn purge_expired_items(&self) -> Result<u64> {
        let items: i64 = crate::pool::fetch_single!(self.db, crate::statement::Call::new(PURGE))
            .map_err(|e| map(e, "store.purge_expired", ""))?;
        Ok(items as u64)
    }
}
