//! Tenancy: nothing written under one tenant is visible, listable, deletable or
//! overwritable under another, whatever the ids contain.

use anyhow::{Result, ensure};
use persistence_core::{
    AppendOptions, CheckpointSelector as Sel, ItemKey, ListNamespaces, Namespace,
    PutCheckpointOptions, PutItemOptions, PutWrites, SearchItems, SessionKey, TenantId, ThreadKey,
    serde_json::json,
};

use super::{
    HOSTILE_IDS, all_item_pages, all_namespace_pages, all_session_pages, all_thread_pages, cp, env,
    events, item_key, lock_key, ns, session, session_lease, task, tenant, thread, thread_lease,
    write,
};
use crate::Fixture;

/// Two tenants with the same thread id see nothing of each other's checkpoints.
pub async fn tenancy_checkpoints_isolated(fx: &Fixture) -> Result<()> {
    let (a, b, th) = (tenant("alpha"), tenant("beta"), thread("shared-id"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&a, &th, c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &a,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("o", 1)]),
        )
        .await?;
    ensure!(
        fx.checkpointer.get(&b, &th, Sel::Latest).await?.is_none(),
        "B read A's latest"
    );
    ensure!(
        fx.checkpointer.get(&b, &th, Sel::Id(c.id)).await?.is_none(),
        "B read A's checkpoint by id"
    );
    ensure!(
        fx.checkpointer
            .list(&b, &th, Default::default())
            .await?
            .items
            .is_empty()
    );
    ensure!(
        all_thread_pages(fx, &b, 10).await?.is_empty(),
        "B listed A's thread"
    );
    ensure!(
        !fx.checkpointer.delete_thread(&b, &th).await?,
        "B deleted A's thread"
    );
    ensure!(fx.checkpointer.prune(&b, &th, 1).await? == 0);
    ensure!(
        fx.checkpointer
            .copy_thread(&b, &th, &thread("stolen"))
            .await
            .is_err(),
        "B copied A's thread"
    );
    let writes = fx
        .checkpointer
        .put_writes(
            &b,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("o", 2)]),
        )
        .await;
    ensure!(writes.is_err(), "B wrote against A's checkpoint");
    // B writing the same checkpoint id is its own, and A's stays as it was.
    let mut mine = c.clone();
    mine.state = env(json!({"tenant": "beta"}));
    fx.checkpointer
        .put(&b, &th, mine, Default::default())
        .await?;
    let a_view = fx
        .checkpointer
        .get(&a, &th, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("A lost its checkpoint"))?;
    ensure!(
        a_view.checkpoint.same_as(&c) && a_view.pending_writes.len() == 1,
        "A changed: {a_view:?}"
    );
    Ok(())
}

/// Two tenants with the same session id have separate logs and ordinals.
pub async fn tenancy_sessions_isolated(fx: &Fixture) -> Result<()> {
    let (a, b, s) = (tenant("alpha"), tenant("beta"), session("shared-id"));
    fx.sessions
        .append(&a, &s, events(0..5), Default::default())
        .await?;
    ensure!(fx.sessions.head(&b, &s).await? == 0);
    ensure!(fx.sessions.read(&b, &s, 0, 10).await?.is_empty());
    ensure!(all_session_pages(fx, &b, 10).await?.is_empty());
    ensure!(!fx.sessions.delete(&b, &s).await?);
    ensure!(fx.sessions.trim_before(&b, &s, 100).await? == 0);
    ensure!(
        fx.sessions
            .append(
                &b,
                &s,
                events(0..1),
                AppendOptions::default().with_expect_head(0)
            )
            .await?
            == 1
    );
    ensure!(fx.sessions.head(&a, &s).await? == 5);
    ensure!(
        super::read_all(fx, &a, &s, 10).await?.len() == 5,
        "A's events touched"
    );
    Ok(())
}

/// Two tenants with the same namespace and key have separate items and versions: get,
/// list, namespaces, delete and CAS (search, which not every backend has, in
/// [`tenancy_search_isolated`]).
pub async fn tenancy_store_isolated(fx: &Fixture) -> Result<()> {
    let (a, b, n, k) = (tenant("alpha"), tenant("beta"), ns(&["mem"]), item_key("k"));
    put_owned(fx, &a, &n, &k, "alpha").await?;
    put_owned(fx, &a, &n, &k, "alpha").await?;
    ensure!(fx.store.get(&b, &n, &k).await?.is_none());
    ensure!(all_item_pages(fx, &b, &n, None, 10).await?.is_empty());
    ensure!(
        all_namespace_pages(fx, &b, ListNamespaces::default())
            .await?
            .is_empty()
    );
    ensure!(
        !fx.store.delete(&b, &n, &k, None).await?,
        "B deleted A's item"
    );
    let created = fx
        .store
        .put(
            &b,
            &n,
            &k,
            env(json!({"owner": "beta"})),
            PutItemOptions::default().with_if_version(0),
        )
        .await?;
    ensure!(created == 1, "B's item did not start at version 1");
    let a_item = fx
        .store
        .get(&a, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("A lost its item"))?;
    ensure!(
        a_item.version == 2 && a_item.value.data == json!({"owner": "alpha"}),
        "A changed: {a_item:?}"
    );
    Ok(())
}

/// A search never returns another tenant's items, whatever their namespace and value.
pub async fn tenancy_search_isolated(fx: &Fixture) -> Result<()> {
    let (a, b, n, k) = (tenant("alpha"), tenant("beta"), ns(&["mem"]), item_key("k"));
    put_owned(fx, &a, &n, &k, "alpha").await?;
    ensure!(
        fx.store
            .search(&b, SearchItems::default())
            .await?
            .is_empty(),
        "B's search found A's item"
    );
    put_owned(fx, &b, &n, &k, "beta").await?;
    let found = fx.store.search(&b, SearchItems::default()).await?;
    ensure!(
        found.len() == 1 && found[0].value.data == json!({"owner": "beta"}),
        "B's search: {found:?}"
    );
    Ok(())
}

/// Puts `{"owner": owner}` at `n`/`k` for tenant `t`.
async fn put_owned(
    fx: &Fixture,
    t: &TenantId,
    n: &Namespace,
    k: &ItemKey,
    owner: &str,
) -> Result<u64> {
    Ok(fx
        .store
        .put(t, n, k, env(json!({"owner": owner})), Default::default())
        .await?)
}

/// Two tenants with the same lock name hold independent leases and fences.
pub async fn tenancy_locks_isolated(fx: &Fixture) -> Result<()> {
    let (a, b, n) = (tenant("alpha"), tenant("beta"), lock_key("worker"));
    let la = fx
        .lock
        .try_acquire(&a, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("A refused"))?;
    let _held_by_b = fx
        .lock
        .try_acquire(&b, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("B blocked by A"))?;
    // Both are held at once; what a first fence is worth is the backend's business (Redis
    // floors fences at its clock), so only independence is checked, below and in
    // `tenancy_fences_isolated`.
    let mut forged = la.clone();
    forged.tenant = b.clone();
    ensure!(
        !fx.lock.release(&forged).await?,
        "A's token released B's lease"
    );
    ensure!(
        fx.lock.try_acquire(&b, &n, fx.long_ttl()).await?.is_none(),
        "B's lease freed"
    );
    Ok(())
}

/// A high fence seen under one tenant does not fence another tenant's writes.
pub async fn tenancy_fences_isolated(fx: &Fixture) -> Result<()> {
    let (a, b) = (tenant("alpha"), tenant("beta"));
    let (th, s) = (thread("t"), session("s"));
    let high = PutCheckpointOptions::default().with_lease(&thread_lease(&a, &th, 100));
    let low = PutCheckpointOptions::default().with_lease(&thread_lease(&b, &th, 1));
    fx.checkpointer.put(&a, &th, cp(None, 0), high).await?;
    fx.checkpointer.put(&b, &th, cp(None, 0), low).await?;
    fx.sessions
        .append(
            &a,
            &s,
            events(0..1),
            AppendOptions::default().with_lease(&session_lease(&a, &s, 100)),
        )
        .await?;
    fx.sessions
        .append(
            &b,
            &s,
            events(0..1),
            AppendOptions::default().with_lease(&session_lease(&b, &s, 1)),
        )
        .await?;
    Ok(())
}

/// Hostile ids (path tricks, separators, globs, unicode, 512 bytes) under two tenants
/// never collide: every (tenant, id) reads back exactly its own value.
pub async fn tenancy_hostile_ids_never_collide(fx: &Fixture) -> Result<()> {
    let tenants = [
        tenant("alpha"),
        tenant("alpha.x"),
        tenant("alpha_x"),
        tenant("x"),
    ];
    let mut written = Vec::new();
    for t in &tenants {
        for (i, id) in HOSTILE_IDS.iter().enumerate() {
            let tag = json!({"tenant": t.as_str(), "id": i});
            let th = ThreadKey::new(*id)?;
            let mut c = cp(None, i as i64);
            c.state = env(tag.clone());
            fx.checkpointer.put(t, &th, c, Default::default()).await?;
            fx.sessions
                .append(
                    t,
                    &SessionKey::new(*id)?,
                    vec![env(tag.clone())],
                    Default::default(),
                )
                .await?;
            fx.store
                .put(
                    t,
                    &Namespace::new([*id])?,
                    &ItemKey::new(*id)?,
                    env(tag.clone()),
                    Default::default(),
                )
                .await?;
            written.push((t.clone(), *id, tag));
        }
    }
    for (t, id, tag) in &written {
        let got = fx
            .checkpointer
            .get(t, &ThreadKey::new(*id)?, Sel::Latest)
            .await?;
        ensure!(
            got.is_some_and(|g| &g.checkpoint.state.data == tag),
            "checkpoint of {t}/{id:?} collided"
        );
        let events = fx.sessions.read(t, &SessionKey::new(*id)?, 0, 10).await?;
        ensure!(
            events.len() == 1 && &events[0].event.data == tag,
            "session of {t}/{id:?} collided: {events:?}"
        );
        let item = fx
            .store
            .get(t, &Namespace::new([*id])?, &ItemKey::new(*id)?)
            .await?;
        ensure!(
            item.is_some_and(|i| &i.value.data == tag && i.version == 1),
            "item of {t}/{id:?} collided"
        );
    }
    for t in &tenants {
        ensure!(
            all_thread_pages(fx, t, 7).await?.len() == HOSTILE_IDS.len(),
            "thread listing of {t}"
        );
        ensure!(
            all_session_pages(fx, t, 7).await?.len() == HOSTILE_IDS.len(),
            "session listing of {t}"
        );
    }
    Ok(())
}

/// Hostile lock names are distinct locks, per tenant.
pub async fn tenancy_hostile_lock_names(fx: &Fixture) -> Result<()> {
    for t in [tenant("alpha"), tenant("beta")] {
        for id in HOSTILE_IDS {
            let lease = fx
                .lock
                .try_acquire(&t, &lock_key(id), fx.long_ttl())
                .await?;
            // Every earlier name is still held: a collision would refuse this one.
            ensure!(lease.is_some(), "lock {t}/{id:?} collided with another");
        }
        for id in HOSTILE_IDS {
            let again = fx
                .lock
                .try_acquire(&t, &lock_key(id), fx.long_ttl())
                .await?;
            ensure!(again.is_none(), "lock {t}/{id:?} was handed out twice");
        }
    }
    Ok(())
}

/// Validation rejects tenant ids that could escape or alias, before any backend call.
pub async fn tenancy_rejects_bad_tenant_ids(_fx: &Fixture) -> Result<()> {
    for bad in [
        "", ".", "..", "../x", "a/b", "a:b", "a\0b", "a b", "ü", "{x}", "*",
    ] {
        let err = TenantId::new(bad)
            .err()
            .ok_or_else(|| anyhow::anyhow!("tenant {bad:?} accepted"))?;
        ensure!(err.kind() == persistence_core::ErrorKind::InvalidInput);
    }
    Ok(())
}
