//! Merge updates of store items (`Store::patch`, RFC 7396): untouched fields kept,
//! `null` removes, versions guarded, concurrent patches of different fields all kept;
//! and deletion of a namespace subtree (`Store::delete_namespace`).

use anyhow::{Result, ensure};
use persistence_core::serde_json::json;
use persistence_core::{PatchItemOptions, PutItemOptions};

use super::{env, item_key, ns, tenant};
use crate::Fixture;

/// A patch merges into the stored object: untouched fields stay, `null` removes, nested
/// objects merge; the schema version is kept and the version moves by one.
pub async fn store_patch_merges_fields(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["patch"]), item_key("merge"));
    let mut value = env(json!({"a": 1, "b": {"c": 2, "d": 3}, "list": [1, 2]}));
    value.schema_version = 7;
    fx.store
        .put(&t, &n, &k, value, PutItemOptions::default())
        .await?;
    let patch = json!({"b": {"c": null, "e": 4}, "f": "new", "list": [3]});
    let version = fx
        .store
        .patch(&t, &n, &k, patch, PatchItemOptions::default())
        .await?;
    ensure!(version == 2, "patch returned version {version}, not 2");
    let item = fx
        .store
        .get(&t, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("patched item gone"))?;
    ensure!(
        item.value.data == json!({"a": 1, "b": {"d": 3, "e": 4}, "f": "new", "list": [3]}),
        "merged to {}",
        item.value.data
    );
    ensure!(item.value.schema_version == 7, "schema version not kept");
    ensure!(item.version == 2);
    Ok(())
}

/// `if_version` guards a patch like a put: a mismatch is `Conflict` and writes nothing.
/// An absent item is `NotFound`, and so is another tenant's.
pub async fn store_patch_guarded_and_missing(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["patch"]), item_key("guarded"));
    fx.store
        .put(&t, &n, &k, env(json!({"x": 1})), PutItemOptions::default())
        .await?;
    let stale = PatchItemOptions::default().with_if_version(5);
    ensure_kind!(
        fx.store.patch(&t, &n, &k, json!({"x": 2}), stale).await,
        Conflict
    );
    let current = PatchItemOptions::default().with_if_version(1);
    ensure!(fx.store.patch(&t, &n, &k, json!({"y": 2}), current).await? == 2);
    let item = fx.store.get(&t, &n, &k).await?;
    ensure!(
        item.is_some_and(|i| i.value.data == json!({"x": 1, "y": 2})),
        "the refused patch wrote"
    );
    ensure_kind!(
        fx.store
            .patch(
                &t,
                &n,
                &item_key("absent"),
                json!({"x": 1}),
                PatchItemOptions::default()
            )
            .await,
        NotFound
    );
    ensure_kind!(
        fx.store
            .patch(
                &tenant("b"),
                &n,
                &k,
                json!({"x": 9}),
                PatchItemOptions::default()
            )
            .await,
        NotFound
    );
    Ok(())
}

/// An expired item cannot be patched back to life; a patch's TTL is set as by a put.
pub async fn store_patch_expired_is_not_found(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), ns(&["patch-ttl"]));
    let short = PutItemOptions::default().with_ttl(fx.short_ttl());
    fx.store
        .put(&t, &n, &item_key("gone"), env(json!({"x": 1})), short)
        .await?;
    let kept = item_key("kept");
    fx.store
        .put(
            &t,
            &n,
            &kept,
            env(json!({"x": 1})),
            PutItemOptions::default(),
        )
        .await?;
    let expiring = PatchItemOptions::default().with_ttl(fx.short_ttl());
    fx.store
        .patch(&t, &n, &kept, json!({"y": 2}), expiring)
        .await?;
    ensure!(
        fx.store
            .get(&t, &n, &kept)
            .await?
            .is_some_and(|i| i.expires_at.is_some()),
        "the patch's TTL was not set"
    );
    fx.expire().await;
    ensure_kind!(
        fx.store
            .patch(
                &t,
                &n,
                &item_key("gone"),
                json!({"x": 2}),
                PatchItemOptions::default()
            )
            .await,
        NotFound
    );
    ensure!(
        fx.store.get(&t, &n, &kept).await?.is_none(),
        "the item outlived the TTL its patch set"
    );
    Ok(())
}

/// Concurrent patches of different fields all survive, and each moved the version by one.
pub async fn store_patch_concurrent_fields_survive(fx: &Fixture) -> Result<()> {
    const TASKS: u64 = 6;
    const ROUNDS: u64 = 3;
    let (t, n, k) = (tenant("a"), ns(&["patch"]), item_key("busy"));
    fx.store
        .put(
            &t,
            &n,
            &k,
            env(json!({"base": true})),
            PutItemOptions::default(),
        )
        .await?;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, t, n, k) = (fx.store.clone(), t.clone(), n.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let patch = json!({ format!("f{task}"): round });
                store
                    .patch(&t, &n, &k, patch, PatchItemOptions::default())
                    .await?;
            }
            Ok::<_, persistence_core::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let item = fx
        .store
        .get(&t, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("patched item gone"))?;
    let mut want = json!({"base": true});
    for task in 0..TASKS {
        want[format!("f{task}")] = json!(ROUNDS - 1);
    }
    ensure!(item.value.data == want, "lost a patch: {}", item.value.data);
    ensure!(
        item.version == 1 + TASKS * ROUNDS,
        "version {} after {} patches",
        item.version,
        TASKS * ROUNDS
    );
    Ok(())
}

/// `delete_namespace` deletes a namespace and everything below it (whole labels only),
/// counts the items, and touches neither its neighbours nor another tenant's.
pub async fn store_delete_namespace_subtree(fx: &Fixture) -> Result<()> {
    let (t, other) = (tenant("a"), tenant("b"));
    let doomed = [ns(&["tree"]), ns(&["tree", "x"]), ns(&["tree", "x", "y"])];
    let kept = [ns(&["treehouse"]), ns(&["other", "tree"])];
    for (i, n) in doomed.iter().chain(&kept).enumerate() {
        for k in 0..3 {
            let key = item_key(&format!("k{k}"));
            fx.store
                .put(&t, n, &key, env(json!(i)), PutItemOptions::default())
                .await?;
        }
    }
    fx.store
        .put(
            &other,
            &doomed[0],
            &item_key("k0"),
            env(json!(1)),
            PutItemOptions::default(),
        )
        .await?;
    let deleted = fx.store.delete_namespace(&t, &doomed[0]).await?;
    ensure!(deleted == 9, "deleted {deleted} items, not 9");
    for n in &doomed {
        let left = fx.store.list(&t, n, Default::default()).await?;
        ensure!(left.items.is_empty(), "{n:?} still holds items");
    }
    for n in &kept {
        let left = fx.store.list(&t, n, Default::default()).await?;
        ensure!(left.items.len() == 3, "{n:?} lost items");
    }
    ensure!(
        fx.store
            .get(&other, &doomed[0], &item_key("k0"))
            .await?
            .is_some(),
        "another tenant's namespace was deleted"
    );
    ensure!(fx.store.delete_namespace(&t, &doomed[0]).await? == 0);
    Ok(())
}
