//! Leases bound to their lock: a fenced write accepts only a lease of the written
//! thread's or session's own lock ([`LockKey::for_thread`], [`LockKey::for_session`]).

use anyhow::{Result, ensure};
use persistence_core::{AppendOptions, Lease, LockKey, PutCheckpointOptions, PutWrites, TenantId};

use super::{lock_key, tenant};
use crate::Fixture;

/// A lease fences only what its lock owns: a lease of another lock (however high its
/// fence) or of another tenant is `InvalidInput` on checkpoint puts, pending writes and
/// appends, writes nothing, and leaves the rightful holder able to write.
pub async fn lock_lease_of_another_lock_refused(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let (th, s) = (super::thread("owned"), super::session("owned"));
    let own_thread = acquire(fx, &t, &LockKey::for_thread(&th)).await?;
    let own_session = acquire(fx, &t, &LockKey::for_session(&s)).await?;
    // Another lock whose fence has outgrown the rightful holders' fences.
    let other = lock_key("other");
    let mut foreign = acquire(fx, &t, &other).await?;
    for _ in 0..3 {
        fx.lock.release(&foreign).await?;
        foreign = acquire(fx, &t, &other).await?;
    }
    ensure!(
        foreign.fence > own_thread.fence && foreign.fence > own_session.fence,
        "the other lock's fence {:?} did not outgrow {:?} / {:?}",
        foreign.fence,
        own_thread.fence,
        own_session.fence
    );
    // The same names under another tenant.
    let elsewhere = tenant("b");
    let other_tenant = acquire(fx, &elsewhere, &LockKey::for_thread(&th)).await?;
    let other_tenant_session = acquire(fx, &elsewhere, &LockKey::for_session(&s)).await?;
    // A thread's lock does not fence the session of the same id, nor the reverse.
    let wrong_for_thread = [&foreign, &other_tenant, &own_session];
    let wrong_for_session = [&foreign, &other_tenant_session, &own_thread];

    let first = super::cp(None, 0);
    for lease in wrong_for_thread {
        let options = PutCheckpointOptions::default().with_lease(lease);
        ensure_kind!(
            fx.checkpointer.put(&t, &th, first.clone(), options).await,
            InvalidInput
        );
    }
    ensure!(
        fx.checkpointer
            .get(&t, &th, persistence_core::CheckpointSelector::Latest)
            .await?
            .is_none(),
        "a refused put wrote"
    );
    let options = PutCheckpointOptions::default().with_lease(&own_thread);
    fx.checkpointer.put(&t, &th, first.clone(), options).await?;
    for lease in wrong_for_thread {
        let request = PutWrites::new(first.id, super::task("x"), vec![super::write("o", 1)])
            .with_lease(lease);
        ensure_kind!(
            fx.checkpointer.put_writes(&t, &th, request).await,
            InvalidInput
        );
    }
    let request = PutWrites::new(first.id, super::task("x"), vec![super::write("o", 1)])
        .with_lease(&own_thread);
    fx.checkpointer.put_writes(&t, &th, request).await?;
    let options = PutCheckpointOptions::default().with_lease(&own_thread);
    fx.checkpointer
        .put(&t, &th, super::cp(Some(first.id), 1), options)
        .await?;

    for lease in wrong_for_session {
        let options = AppendOptions::default().with_lease(lease);
        ensure_kind!(
            fx.sessions
                .append(&t, &s, super::events(0..1), options)
                .await,
            InvalidInput
        );
    }
    ensure!(
        fx.sessions.head(&t, &s).await? == 0,
        "a refused append wrote"
    );
    let options = AppendOptions::default().with_lease(&own_session);
    ensure!(
        fx.sessions
            .append(&t, &s, super::events(0..1), options)
            .await?
            == 1
    );

    // The own lock of the longest id (its name is longer than a lock name given by hand
    // may be) is stored and fences like any other.
    let longest = super::HOSTILE_IDS
        .iter()
        .copied()
        .max_by_key(|id| id.len())
        .ok_or_else(|| anyhow::anyhow!("no hostile ids"))?;
    let long_thread = super::thread(longest);
    let long_lock = LockKey::for_thread(&long_thread);
    ensure!(long_lock.as_str().len() > persistence_core::MAX_KEY_BYTES);
    let held = acquire(fx, &t, &long_lock).await?;
    let options = PutCheckpointOptions::default().with_lease(&held);
    fx.checkpointer
        .put(&t, &long_thread, super::cp(None, 0), options)
        .await?;
    ensure!(
        fx.lock
            .try_acquire(&t, &long_lock, fx.long_ttl())
            .await?
            .is_none(),
        "the long lock is not exclusive"
    );
    ensure!(
        fx.lock.release(&held).await?,
        "the long lock was not released"
    );
    Ok(())
}

async fn acquire(fx: &Fixture, t: &TenantId, name: &LockKey) -> Result<Lease> {
    fx.lock
        .try_acquire(t, name, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("lock {name} refused"))
}
