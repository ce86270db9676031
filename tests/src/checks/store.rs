//! Store: versions and CAS, delete, listing, namespaces, search, TTL.

use anyhow::{Result, ensure};
use persistence_core::{
    AppendOptions, Filter, ListItems, ListNamespaces, PutItemOptions, SearchItems, serde_json::json,
};

use super::{all_item_pages, all_namespace_pages, env, item_key, ns, session, tenant};
use crate::Fixture;

fn cas(v: u64) -> PutItemOptions {
    PutItemOptions::default().with_if_version(v)
}

/// A new item has version 1 and reads back whole.
pub async fn store_put_get_roundtrip(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (
        tenant("a"),
        ns(&["users", "u1", "memories"]),
        item_key("fav-color"),
    );
    let value = env(json!({"color": "blue", "confidence": 0.9, "tags": ["a", "é"]}));
    ensure!(
        fx.store
            .put(&t, &n, &k, value.clone(), Default::default())
            .await?
            == 1
    );
    let item = fx
        .store
        .get(&t, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(
        item.value == value && item.version == 1 && item.namespace == n && item.key == k,
        "{item:?}"
    );
    ensure!(item.expires_at.is_none() && item.created_at <= item.updated_at);
    ensure!(fx.store.get(&t, &n, &item_key("other")).await?.is_none());
    ensure!(
        fx.store.get(&t, &ns(&["users"]), &k).await?.is_none(),
        "parent namespace saw the item"
    );
    Ok(())
}

/// Every put increments the version.
pub async fn store_put_increments_version(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["v"]), item_key("k"));
    for i in 1..=5u64 {
        ensure!(
            fx.store
                .put(&t, &n, &k, env(json!({"i": i})), Default::default())
                .await?
                == i
        );
    }
    let item = fx.store.get(&t, &n, &k).await?;
    ensure!(item.is_some_and(|i| i.version == 5 && i.value.data == json!({"i": 5})));
    Ok(())
}

/// `if_version` is compare-and-swap: a mismatch fails `Conflict` and changes nothing.
pub async fn store_if_version_cas(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["cas"]), item_key("k"));
    fx.store
        .put(&t, &n, &k, env(json!(1)), Default::default())
        .await?;
    ensure!(fx.store.put(&t, &n, &k, env(json!(2)), cas(1)).await? == 2);
    ensure_kind!(
        fx.store.put(&t, &n, &k, env(json!(3)), cas(1)).await,
        Conflict
    );
    ensure_kind!(
        fx.store.put(&t, &n, &k, env(json!(3)), cas(7)).await,
        Conflict
    );
    let item = fx.store.get(&t, &n, &k).await?;
    ensure!(
        item.is_some_and(|i| i.version == 2 && i.value.data == json!(2)),
        "CAS failure changed the item"
    );
    Ok(())
}

/// `if_version: Some(0)` creates only when absent.
pub async fn store_if_version_zero_creates_only(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["create"]), item_key("once"));
    ensure!(
        fx.store
            .put(&t, &n, &k, env(json!("first")), cas(0))
            .await?
            == 1
    );
    ensure_kind!(
        fx.store.put(&t, &n, &k, env(json!("second")), cas(0)).await,
        Conflict
    );
    let item = fx.store.get(&t, &n, &k).await?;
    ensure!(item.is_some_and(|i| i.value.data == json!("first")));
    Ok(())
}

/// `delete` removes an item, honours `if_version`, and reports whether it existed.
pub async fn store_delete(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["del"]));
    let (k1, k2) = (item_key("one"), item_key("two"));
    fx.store
        .put(&t, &n, &k1, env(json!(1)), Default::default())
        .await?;
    fx.store
        .put(&t, &n, &k2, env(json!(2)), Default::default())
        .await?;
    ensure!(fx.store.delete(&t, &n, &k1, None).await?);
    ensure!(!fx.store.delete(&t, &n, &k1, None).await?);
    ensure!(fx.store.get(&t, &n, &k1).await?.is_none());
    ensure_kind!(fx.store.delete(&t, &n, &k2, Some(5)).await, Conflict);
    ensure!(
        fx.store.get(&t, &n, &k2).await?.is_some(),
        "conflicting delete deleted"
    );
    ensure!(fx.store.delete(&t, &n, &k2, Some(1)).await?);
    ensure!(!fx.store.delete(&t, &n, &k2, Some(0)).await?);
    ensure_kind!(fx.store.delete(&t, &n, &k2, Some(1)).await, Conflict);
    Ok(())
}

/// An item written again after delete starts over at version 1.
pub async fn store_recreate_restarts_version(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["re"]), item_key("k"));
    fx.store
        .put(&t, &n, &k, env(json!(1)), Default::default())
        .await?;
    fx.store
        .put(&t, &n, &k, env(json!(2)), Default::default())
        .await?;
    fx.store.delete(&t, &n, &k, None).await?;
    ensure!(fx.store.put(&t, &n, &k, env(json!(3)), cas(0)).await? == 1);
    Ok(())
}

/// `list` covers exactly one namespace, filters by key prefix and pages exactly once.
pub async fn store_list_prefix_paginated(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let n = ns(&["docs"]);
    let mut want = Vec::new();
    for i in 0..15 {
        let k = format!("note:{i:02}");
        fx.store
            .put(&t, &n, &item_key(&k), env(json!(i)), Default::default())
            .await?;
        want.push(k);
    }
    fx.store
        .put(
            &t,
            &n,
            &item_key("other"),
            env(json!(0)),
            Default::default(),
        )
        .await?;
    fx.store
        .put(&t, &n, &item_key("note"), env(json!(0)), Default::default())
        .await?;
    fx.store
        .put(
            &t,
            &ns(&["docs", "child"]),
            &item_key("note:99"),
            env(json!(0)),
            Default::default(),
        )
        .await?;
    for limit in [1, 4, 15, 100] {
        let got: Vec<String> = all_item_pages(fx, &t, &n, Some("note:"), limit)
            .await?
            .into_iter()
            .map(|i| i.key.to_string())
            .collect();
        ensure!(got == want, "limit {limit}: {got:?}");
    }
    let everything = all_item_pages(fx, &t, &n, None, 7).await?;
    ensure!(
        everything.len() == 17,
        "whole namespace: {}",
        everything.len()
    );
    ensure_kind!(
        fx.store
            .list(&t, &n, ListItems::default().with_limit(0))
            .await,
        InvalidInput
    );
    Ok(())
}

/// `list_namespaces` filters by whole-label prefix and truncates to `max_depth`.
pub async fn store_list_namespaces_prefix_and_depth(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    for labels in [
        &["a", "b", "c"][..],
        &["a", "b", "d"],
        &["a", "x"],
        &["ab", "b"],
        &["z"],
    ] {
        fx.store
            .put(
                &t,
                &ns(labels),
                &item_key("k"),
                env(json!(1)),
                Default::default(),
            )
            .await?;
    }
    let all = all_namespace_pages(fx, &t, ListNamespaces::default()).await?;
    let want = vec![
        ns(&["a", "b", "c"]),
        ns(&["a", "b", "d"]),
        ns(&["a", "x"]),
        ns(&["ab", "b"]),
        ns(&["z"]),
    ];
    ensure!(all == want, "all {all:?}");
    let under_a =
        all_namespace_pages(fx, &t, ListNamespaces::default().with_prefix(ns(&["a"]))).await?;
    ensure!(under_a == want[..3].to_vec(), "under a: {under_a:?}");
    let depth2 = all_namespace_pages(fx, &t, ListNamespaces::default().with_max_depth(2)).await?;
    ensure!(
        depth2
            == vec![
                ns(&["a", "b"]),
                ns(&["a", "x"]),
                ns(&["ab", "b"]),
                ns(&["z"])
            ],
        "depth 2: {depth2:?}"
    );
    let d1 = all_namespace_pages(
        fx,
        &t,
        ListNamespaces::default()
            .with_prefix(ns(&["a"]))
            .with_max_depth(1),
    )
    .await?;
    ensure!(d1 == vec![ns(&["a"])], "a depth 1: {d1:?}");
    ensure_kind!(
        fx.store
            .list_namespaces(&t, ListNamespaces::default().with_max_depth(0))
            .await,
        InvalidInput
    );
    Ok(())
}

/// Namespaces page exactly once, and a namespace whose items are all deleted vanishes.
pub async fn store_list_namespaces_paginated(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let mut want = Vec::new();
    for i in 0..11 {
        let n = ns(&["p", &format!("n{i:02}")]);
        fx.store
            .put(&t, &n, &item_key("k"), env(json!(i)), Default::default())
            .await?;
        want.push(n);
    }
    for limit in [1, 3, 11] {
        let got = all_namespace_pages(fx, &t, ListNamespaces::default().with_limit(limit)).await?;
        ensure!(got == want, "limit {limit}: {got:?}");
    }
    fx.store.delete(&t, &want[0], &item_key("k"), None).await?;
    let got = all_namespace_pages(fx, &t, ListNamespaces::default()).await?;
    ensure!(got == want[1..].to_vec(), "emptied namespace still listed");
    Ok(())
}

/// Search filters on top-level fields with `$eq $ne $gt $gte $lt $lte`.
pub async fn store_search_filters(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["facts"]));
    let docs = [
        ("a", json!({"kind": "note", "score": 1, "who": "ann"})),
        ("b", json!({"kind": "note", "score": 5, "who": "bob"})),
        ("c", json!({"kind": "todo", "score": 7.5, "who": "cy"})),
        ("d", json!({"kind": "note"})),
        ("e", json!(["not", "an", "object"])),
    ];
    for (k, v) in &docs {
        fx.store
            .put(&t, &n, &item_key(k), env(v.clone()), Default::default())
            .await?;
    }
    let keys = |filter: serde_json_value::Value| {
        let fx = fx.clone();
        let t = t.clone();
        async move {
            let query = SearchItems::default().with_filter(Filter::from_json(&filter)?);
            let found = fx.store.search(&t, query).await?;
            anyhow::Ok(
                found
                    .into_iter()
                    .map(|i| i.key.to_string())
                    .collect::<Vec<_>>(),
            )
        }
    };
    ensure!(keys(json!({})).await? == ["a", "b", "c", "d", "e"]);
    ensure!(keys(json!({"kind": "note"})).await? == ["a", "b", "d"]);
    ensure!(keys(json!({"kind": {"$eq": "todo"}})).await? == ["c"]);
    ensure!(keys(json!({"kind": {"$ne": "note"}})).await? == ["c", "e"]);
    ensure!(keys(json!({"score": {"$gt": 1}})).await? == ["b", "c"]);
    ensure!(keys(json!({"score": {"$gte": 5}})).await? == ["b", "c"]);
    ensure!(keys(json!({"score": {"$lt": 5}})).await? == ["a"]);
    ensure!(keys(json!({"score": {"$lte": 7.5}, "kind": "note"})).await? == ["a", "b"]);
    ensure!(keys(json!({"score": 5.0})).await? == ["b"]);
    ensure!(keys(json!({"who": {"$gte": "b"}})).await? == ["b", "c"]);
    Ok(())
}

/// Search covers a namespace prefix (whole labels), in (namespace, key) order, with
/// offset and limit.
pub async fn store_search_prefix_offset_limit(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    for (labels, k) in [
        (&["m", "b"][..], "2"),
        (&["m", "a"], "1"),
        (&["m", "a"], "0"),
        (&["m"], "9"),
        (&["mm"], "x"),
    ] {
        fx.store
            .put(
                &t,
                &ns(labels),
                &item_key(k),
                env(json!({"k": k})),
                Default::default(),
            )
            .await?;
    }
    let search = |prefix: Option<Vec<&str>>, limit, offset| {
        let fx = fx.clone();
        let t = t.clone();
        let prefix = prefix.map(|p| ns(&p));
        async move {
            let q = SearchItems::default()
                .with_namespace_prefix(prefix)
                .with_limit(limit)
                .with_offset(offset);
            let found = fx.store.search(&t, q).await?;
            anyhow::Ok(
                found
                    .into_iter()
                    .map(|i| i.key.to_string())
                    .collect::<Vec<_>>(),
            )
        }
    };
    ensure!(search(Some(vec!["m"]), 10, 0).await? == ["9", "0", "1", "2"]);
    ensure!(search(Some(vec!["m", "a"]), 10, 0).await? == ["0", "1"]);
    ensure!(search(Some(vec!["m"]), 2, 1).await? == ["0", "1"]);
    ensure!(search(Some(vec!["m"]), 10, 10).await?.is_empty());
    ensure!(search(None, 10, 0).await?.len() == 5);
    ensure_kind!(
        fx.store
            .search(&t, SearchItems::default().with_limit(0))
            .await,
        InvalidInput
    );
    Ok(())
}

/// An expired item disappears from get, list, namespaces and search, and
/// `purge_expired` removes and counts it.
pub async fn store_ttl_expiry(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["ttl"]));
    let (tmp, keep) = (item_key("tmp"), item_key("keep"));
    let ttl = PutItemOptions::default().with_ttl(fx.short_ttl());
    fx.store
        .put(&t, &n, &tmp, env(json!({"x": 1})), ttl)
        .await?;
    fx.store
        .put(&t, &ns(&["ttl-only"]), &tmp, env(json!({"x": 1})), ttl)
        .await?;
    fx.store
        .put(&t, &n, &keep, env(json!({"x": 1})), Default::default())
        .await?;
    let live = fx.store.get(&t, &n, &tmp).await?;
    ensure!(
        live.is_some_and(|i| i.expires_at.is_some()),
        "no expiry reported"
    );
    fx.expire().await;
    ensure!(
        fx.maintenance.purge_expired().await?.items >= 2,
        "purge counted fewer than 2"
    );
    ensure!(
        fx.store.get(&t, &n, &tmp).await?.is_none(),
        "expired item readable"
    );
    let listed: Vec<String> = all_item_pages(fx, &t, &n, None, 10)
        .await?
        .into_iter()
        .map(|i| i.key.to_string())
        .collect();
    ensure!(listed == ["keep"], "listed {listed:?}");
    let namespaces = all_namespace_pages(fx, &t, ListNamespaces::default()).await?;
    ensure!(namespaces == vec![n.clone()], "namespaces {namespaces:?}");
    Ok(())
}

/// Each kind's purge reports its own kind across tenants: purging items first neither
/// removes nor swallows the count of expired sessions, which a later session purge
/// reports.
pub async fn store_and_session_purges_count_their_own_kind(fx: &Fixture) -> Result<()> {
    let ttl = Some(fx.short_ttl());
    let item = PutItemOptions::default().with_ttl(ttl);
    for t in [tenant("a"), tenant("b")] {
        fx.store
            .put(&t, &ns(&["purge"]), &item_key("k"), env(json!(1)), item)
            .await?;
    }
    let append = AppendOptions::default().with_ttl(ttl);
    fx.sessions
        .append(&tenant("a"), &session("short"), vec![env(json!(1))], append)
        .await?;
    fx.expire().await;
    let purged = fx.maintenance.purge_expired().await?;
    ensure!(
        purged.items >= 2,
        "purge counted {} of 2 expired items",
        purged.items
    );
    ensure!(
        purged.sessions >= 1,
        "purge counted {} of 1 expired session as sessions",
        purged.sessions
    );
    ensure!(fx.sessions.head(&tenant("a"), &session("short")).await? == 0);
    Ok(())
}

/// Expired items are hidden even before any purge, and a put without TTL clears one.
pub async fn store_ttl_hidden_before_purge_and_cleared(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["ttl2"]));
    let (gone, kept) = (item_key("gone"), item_key("kept"));
    let ttl = PutItemOptions::default().with_ttl(fx.short_ttl());
    fx.store
        .put(&t, &n, &gone, env(json!({"x": 1})), ttl)
        .await?;
    fx.store
        .put(&t, &n, &kept, env(json!({"x": 1})), ttl)
        .await?;
    fx.store
        .put(&t, &n, &kept, env(json!({"x": 2})), Default::default())
        .await?;
    fx.expire().await;
    ensure!(fx.store.get(&t, &n, &gone).await?.is_none());
    let found: Vec<String> = fx
        .store
        .search(&t, SearchItems::default())
        .await?
        .into_iter()
        .map(|i| i.key.to_string())
        .collect();
    ensure!(found == ["kept"], "search found {found:?}");
    let listed = all_item_pages(fx, &t, &n, None, 10).await?;
    ensure!(
        listed.len() == 1 && listed[0].expires_at.is_none(),
        "listed {listed:?}"
    );
    Ok(())
}

/// An expired item counts as absent for CAS and versions.
pub async fn store_expired_is_absent_for_cas(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["ttl3"]), item_key("k"));
    let ttl = PutItemOptions::default().with_ttl(fx.short_ttl());
    fx.store.put(&t, &n, &k, env(json!(1)), ttl).await?;
    fx.store.put(&t, &n, &k, env(json!(2)), ttl).await?;
    fx.expire().await;
    ensure_kind!(
        fx.store.put(&t, &n, &k, env(json!(3)), cas(2)).await,
        Conflict
    );
    ensure!(fx.store.put(&t, &n, &k, env(json!(3)), cas(0)).await? == 1);
    Ok(())
}

/// A zero TTL is `InvalidInput` and writes nothing.
pub async fn store_zero_ttl_is_invalid(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["zero"]), item_key("k"));
    let zero = PutItemOptions::default().with_ttl(std::time::Duration::ZERO);
    ensure_kind!(
        fx.store.put(&t, &n, &k, env(json!(1)), zero).await,
        InvalidInput
    );
    ensure!(fx.store.get(&t, &n, &k).await?.is_none());
    Ok(())
}

mod serde_json_value {
    pub use persistence_core::serde_json::Value;
}
