//! TTL refresh on read (`GetItemOptions::refresh_ttl`, `SearchItems::refresh_ttl`, as
//! LangGraph's `refresh_ttl`): a read restarts the TTL of the items it returns, in the
//! same step, without touching their value, version or `updated_at`.
//!
//! Expiries are compared as stored timestamps (from one clock: the backend's or its
//! server's), so a slow machine only widens the gaps these checks look for.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use persistence_core::serde_json::json;
use persistence_core::{
    Filter, GetItemOptions, Item, ItemKey, Namespace, PatchItemOptions, PutItemOptions,
    SearchItems, TenantId, Timestamp,
};

use super::{env, item_key, ns, tenant};
use crate::Fixture;

fn refresh() -> GetItemOptions {
    GetItemOptions::default().with_refresh_ttl(true)
}

/// The stored expiry of a live item.
async fn expiry(fx: &Fixture, t: &TenantId, n: &Namespace, k: &ItemKey) -> Result<Timestamp> {
    let item = fx.store.get(t, n, k).await?.context("item missing")?;
    item.expires_at.context("item has no expiry")
}

/// A TTL this check's timing can rely on: long on a manual clock, 2 s on a real one.
fn check_ttl(fx: &Fixture) -> Duration {
    fx.short_ttl() * 5
}

/// A refreshing `get` moves the expiry to now + the item's TTL and returns it; the value,
/// version and `updated_at` stay; the new expiry is stored, so the item outlives its old
/// deadline and a purge at that deadline (which takes its sibling) leaves it.
pub async fn store_refresh_on_read_restarts_ttl(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["refresh"]));
    let (kept, sibling) = (item_key("kept"), item_key("sibling"));
    let ttl = check_ttl(fx);
    let put = PutItemOptions::default().with_ttl(ttl);
    fx.store
        .put(&t, &n, &kept, env(json!({"x": 1})), put)
        .await?;
    fx.store
        .put(&t, &n, &sibling, env(json!({"x": 2})), put)
        .await?;
    let before = fx.store.get(&t, &n, &kept).await?.context("item missing")?;
    let old_deadline = before.expires_at.context("no expiry")?;
    let waited = ttl * 3 / 5;
    fx.pass(waited).await;

    let read = fx
        .store
        .get_with(&t, &n, &kept, refresh())
        .await?
        .context("refreshing get returned nothing")?;
    let new_deadline = read.expires_at.context("refreshed item has no expiry")?;
    ensure!(
        new_deadline.0 + 2 >= old_deadline.0 + waited.as_millis() as u64,
        "expiry moved from {} to {}, less than the {waited:?} that passed",
        old_deadline.0,
        new_deadline.0
    );
    ensure!(
        new_deadline.0 <= old_deadline.0 + ttl.as_millis() as u64 * 10,
        "expiry moved from {} to {}: not by the item's TTL",
        old_deadline.0,
        new_deadline.0
    );
    ensure!(
        (read.version, read.updated_at, read.created_at, &read.value)
            == (
                before.version,
                before.updated_at,
                before.created_at,
                &before.value
            ),
        "a refresh changed more than the expiry: {before:?} became {read:?}"
    );
    ensure!(
        expiry(fx, &t, &n, &kept).await? == new_deadline,
        "the refreshed expiry was not stored"
    );
    ensure!(
        expiry(fx, &t, &n, &sibling).await? < new_deadline,
        "a plain get or a refresh of another key moved the sibling's expiry"
    );

    // Past the old deadline: the sibling is gone (and purged), the refreshed item lives.
    fx.pass(ttl * 3 / 5).await;
    fx.maintenance.purge_expired().await?;
    ensure!(
        fx.store.get(&t, &n, &sibling).await?.is_none(),
        "the unrefreshed sibling outlived its TTL"
    );
    let survivor = fx.store.get(&t, &n, &kept).await?;
    ensure!(
        survivor.is_some_and(|i| i.version == 1),
        "the refreshed item did not outlive its old deadline and a purge"
    );
    Ok(())
}

/// A refresh restarts the TTL of the item's last write (a put or patch that changed the
/// TTL sets the new one); an item without TTL is returned untouched; an absent or expired
/// item is `None` and is not brought back.
pub async fn store_refresh_uses_latest_ttl_and_skips_untimed(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["refresh-ttl"]));
    let (k, untimed, gone) = (item_key("k"), item_key("untimed"), item_key("gone"));
    let ttl = check_ttl(fx);
    fx.store
        .put(
            &t,
            &n,
            &k,
            env(json!({"a": 1})),
            PutItemOptions::default().with_ttl(fx.long_ttl()),
        )
        .await?;
    let patched = PatchItemOptions::default().with_ttl(ttl);
    fx.store.patch(&t, &n, &k, json!({"b": 2}), patched).await?;
    let set = expiry(fx, &t, &n, &k).await?;
    fx.pass(Duration::from_millis(300)).await;
    let refreshed = fx
        .store
        .get_with(&t, &n, &k, refresh())
        .await?
        .context("item missing")?;
    let deadline = refreshed.expires_at.context("no expiry")?;
    ensure!(
        deadline > set && deadline.0 < set.0 + fx.long_ttl().as_millis() as u64 / 2,
        "after a patch set a TTL of {ttl:?}, a refresh moved the expiry from {} to {} \
         (the put's TTL of {:?}, not the patch's)",
        set.0,
        deadline.0,
        fx.long_ttl()
    );

    fx.store
        .put(&t, &n, &untimed, env(json!(1)), PutItemOptions::default())
        .await?;
    let item = fx.store.get_with(&t, &n, &untimed, refresh()).await?;
    ensure!(
        item.as_ref()
            .is_some_and(|i| i.expires_at.is_none() && i.version == 1),
        "an item without TTL came back as {item:?}"
    );
    ensure!(
        fx.store
            .get_with(&t, &n, &item_key("absent"), refresh())
            .await?
            .is_none(),
        "an absent item was found"
    );

    fx.store
        .put(
            &t,
            &n,
            &gone,
            env(json!(1)),
            PutItemOptions::default().with_ttl(fx.short_ttl()),
        )
        .await?;
    fx.expire().await;
    ensure!(
        fx.store.get_with(&t, &n, &gone, refresh()).await?.is_none(),
        "an expired item was returned by a refreshing get"
    );
    ensure!(
        fx.store.get(&t, &n, &gone).await?.is_none(),
        "a refreshing get brought an expired item back"
    );
    Ok(())
}

fn keys(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.key.to_string()).collect()
}

/// A refreshing search restarts the TTL of exactly the items it returns: not of those
/// it skipped (`offset`), left beyond `limit`, filtered out or in another namespace.
pub async fn store_search_refreshes_returned_items(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let (n, other) = (ns(&["refresh-search"]), ns(&["refresh-other"]));
    let ttl = PutItemOptions::default().with_ttl(check_ttl(fx));
    for (key, kind) in [("a", "hit"), ("b", "hit"), ("c", "hit"), ("d", "miss")] {
        fx.store
            .put(&t, &n, &item_key(key), env(json!({"kind": kind})), ttl)
            .await?;
    }
    fx.store
        .put(
            &t,
            &n,
            &item_key("e"),
            env(json!({"kind": "hit"})),
            PutItemOptions::default(),
        )
        .await?;
    fx.store
        .put(&t, &other, &item_key("a"), env(json!({"kind": "hit"})), ttl)
        .await?;
    let mut before = Vec::new();
    for key in ["a", "b", "c", "d"] {
        before.push(expiry(fx, &t, &n, &item_key(key)).await?);
    }
    let other_before = expiry(fx, &t, &other, &item_key("a")).await?;
    fx.pass(Duration::from_millis(300)).await;

    let query = SearchItems::default()
        .with_namespace_prefix(n.clone())
        .with_filter(Filter::from_json(&json!({"kind": "hit"}))?)
        .with_offset(1)
        .with_limit(2)
        .with_refresh_ttl(true);
    let found = fx.store.search(&t, query).await?;
    ensure!(
        keys(&found) == ["b", "c"],
        "search found {:?}",
        keys(&found)
    );
    for (item, old) in found.iter().zip(&before[1..3]) {
        let new = item.expires_at.context("no expiry")?;
        ensure!(
            new.0 >= old.0 + 298 && new == expiry(fx, &t, &n, &item.key).await?,
            "item {} returned with expiry {} (was {}), stored {:?}",
            item.key,
            new.0,
            old.0,
            fx.store.get(&t, &n, &item.key).await?.map(|i| i.expires_at)
        );
    }
    for (key, old) in [("a", before[0]), ("d", before[3])] {
        let now = expiry(fx, &t, &n, &item_key(key)).await?;
        ensure!(now == old, "item {key} not returned but its expiry moved");
    }
    ensure!(
        expiry(fx, &t, &other, &item_key("a")).await? == other_before,
        "an item outside the namespace prefix was refreshed"
    );

    // Items without TTL come back as they are.
    let query = SearchItems::default()
        .with_namespace_prefix(n.clone())
        .with_filter(Filter::from_json(&json!({"kind": "hit"}))?)
        .with_offset(3)
        .with_refresh_ttl(true);
    let found = fx.store.search(&t, query).await?;
    ensure!(
        keys(&found) == ["e"] && found[0].expires_at.is_none(),
        "search found {found:?}"
    );
    Ok(())
}
