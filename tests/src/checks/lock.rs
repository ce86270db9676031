//! Locks: exclusivity, fences, renew, release, acquire with waiting, `with_lock`.

use std::time::Duration;

use anyhow::{Result, ensure};
use persistence_core::{
    AppendOptions, Error, ErrorKind, LockKey, LockOptions, PutCheckpointOptions, with_lock,
};

use super::{lock_key, tenant};
use crate::Fixture;

/// While a lease is live nobody else gets the lock.
pub async fn lock_try_acquire_is_exclusive(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("thread-1"));
    let lease = fx
        .lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("free lock refused"))?;
    ensure!(lease.tenant == t && lease.name == n && !lease.token.is_empty());
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_none(),
        "second holder let in"
    );
    ensure!(
        fx.lock
            .try_acquire(&t, &lock_key("thread-2"), fx.long_ttl())
            .await?
            .is_some(),
        "other name blocked"
    );
    Ok(())
}

/// Releasing frees the lock for the next holder.
pub async fn lock_release_frees(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("rel"));
    let lease = fx
        .lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    ensure!(
        fx.lock.release(&lease).await?,
        "release of a held lease said false"
    );
    ensure!(!fx.lock.release(&lease).await?, "double release said true");
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some(),
        "not free after release"
    );
    Ok(())
}

/// Fences strictly increase across holders, whether the lock was released or expired.
pub async fn lock_fences_strictly_increase(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("fences"));
    let mut last = 0;
    for round in 0..6 {
        let ttl = if round % 2 == 0 {
            fx.long_ttl()
        } else {
            fx.short_ttl()
        };
        let lease = fx
            .lock
            .try_acquire(&t, &n, ttl)
            .await?
            .ok_or_else(|| anyhow::anyhow!("refused in round {round}"))?;
        ensure!(lease.fence.0 > last, "fence {} after {last}", lease.fence.0);
        last = lease.fence.0;
        if round % 2 == 0 {
            fx.lock.release(&lease).await?;
        } else {
            fx.expire().await;
        }
    }
    Ok(())
}

/// An expired lease frees the lock.
pub async fn lock_expired_lease_frees(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("expiry"));
    fx.lock
        .try_acquire(&t, &n, fx.short_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    fx.expire().await;
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some(),
        "expired lease still blocks"
    );
    Ok(())
}

/// Renewing a live lease pushes its expiry out.
pub async fn lock_renew_extends(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("renew"));
    let ttl = fx.short_ttl();
    let lease = fx
        .lock
        .try_acquire(&t, &n, ttl)
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    let renewed = fx.lock.renew(&lease, fx.long_ttl()).await?;
    ensure!(
        renewed.expires_at > lease.expires_at
            && renewed.fence == lease.fence
            && renewed.token == lease.token
    );
    fx.expire().await;
    ensure!(
        fx.lock.try_acquire(&t, &n, ttl).await?.is_none(),
        "renewed lease expired at its old TTL"
    );
    fx.lock.renew(&renewed, ttl).await?;
    Ok(())
}

/// Renewing after expiry fails `LockLost`, even if nobody took over.
pub async fn lock_renew_after_expiry_is_lost(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("late-renew"));
    let lease = fx
        .lock
        .try_acquire(&t, &n, fx.short_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    fx.expire().await;
    ensure_kind!(fx.lock.renew(&lease, fx.long_ttl()).await, LockLost);
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some(),
        "failed renew revived the lease"
    );
    Ok(())
}

/// Renewing after another holder took over fails `LockLost` and leaves the new holder.
pub async fn lock_renew_after_takeover_is_lost(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("takeover"));
    let old = fx
        .lock
        .try_acquire(&t, &n, fx.short_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    fx.expire().await;
    let new = fx
        .lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("takeover refused"))?;
    ensure!(new.fence > old.fence);
    ensure_kind!(fx.lock.renew(&old, fx.long_ttl()).await, LockLost);
    fx.lock.renew(&new, fx.long_ttl()).await?;
    Ok(())
}

/// A late release of a lost lease never frees the next holder's lease.
pub async fn lock_late_release_keeps_next_holder(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("late-release"));
    let old = fx
        .lock
        .try_acquire(&t, &n, fx.short_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    fx.expire().await;
    let new = fx
        .lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("takeover refused"))?;
    ensure!(
        !fx.lock.release(&old).await?,
        "late release claimed success"
    );
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_none(),
        "late release freed the new holder"
    );
    fx.lock.renew(&new, fx.long_ttl()).await?;
    Ok(())
}

/// `acquire` gives up with `Timeout` while the lock stays held.
pub async fn lock_acquire_times_out(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("busy"));
    fx.lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    let opts = LockOptions::default()
        .with_ttl(fx.long_ttl())
        .with_wait(Duration::from_millis(150));
    let started = std::time::Instant::now();
    ensure_kind!(fx.lock.acquire(&t, &n, opts).await, Timeout);
    ensure!(
        started.elapsed() >= Duration::from_millis(150),
        "gave up early"
    );
    Ok(())
}

/// `acquire` waits and succeeds once the holder releases.
pub async fn lock_acquire_waits_for_release(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("handoff"));
    let held = fx
        .lock
        .try_acquire(&t, &n, fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    let releaser = {
        let lock = fx.lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            lock.release(&held).await
        })
    };
    let opts = LockOptions::default()
        .with_ttl(fx.long_ttl())
        .with_wait(Duration::from_secs(10));
    let lease = fx.lock.acquire(&t, &n, opts).await?;
    ensure!(releaser.await?.is_ok());
    ensure!(lease.fence.0 >= 2, "fence {}", lease.fence.0);
    Ok(())
}

/// `with_lock` hands the lease to the work, returns its result and releases after.
pub async fn lock_with_lock_runs_and_releases(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("scoped"));
    let opts = LockOptions::default()
        .with_ttl(fx.long_ttl())
        .with_wait(Duration::from_secs(5));
    let inner = fx.clone();
    let (t2, n2) = (t.clone(), n.clone());
    let fence = with_lock(&fx.lock, &t, &n, opts, |lease| async move {
        let blocked = inner
            .lock
            .try_acquire(&t2, &n2, inner.long_ttl())
            .await?
            .is_none();
        if !blocked {
            return Err(Error::conflict("lock was not held during the work"));
        }
        Ok::<_, Error>(lease.fence())
    })
    .await?;
    ensure!(fence.0 >= 1);
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some(),
        "not released after the work"
    );
    Ok(())
}

/// `with_lock` keeps renewing, so work longer than the TTL keeps the lock.
pub async fn lock_with_lock_renews_in_background(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("long-work"));
    // Work of 2.5 TTLs: the lease must be renewed at least twice. A TTL of a second
    // keeps the check meaningful on a loaded machine, where a task can wake 100 ms late.
    let ttl = Duration::from_secs(1);
    let opts = LockOptions::default()
        .with_ttl(ttl)
        .with_wait(Duration::from_secs(5));
    let inner = fx.clone();
    let (t2, n2) = (t.clone(), n.clone());
    fx.lock
        .with_lock(&t, &n, opts, |_lease| async move {
            for _ in 0..10 {
                inner.pass_real(Duration::from_millis(250)).await;
                if inner
                    .lock
                    .try_acquire(&t2, &n2, inner.long_ttl())
                    .await?
                    .is_some()
                {
                    return Err(Error::conflict("lease lapsed while the work ran"));
                }
            }
            Ok::<_, Error>(())
        })
        .await?;
    Ok(())
}

/// A caller that gives up on `with_lock` (a timeout drops its future) frees the lock at
/// once: other workers do not wait out the lease's TTL (an hour here).
pub async fn lock_with_lock_releases_when_dropped(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("abandoned"));
    let opts = LockOptions::default()
        .with_ttl(fx.long_ttl())
        .with_wait(Duration::from_secs(5));
    let (started, work_started) = tokio::sync::oneshot::channel();
    let run = fx.lock.with_lock(&t, &n, opts, |_held| async move {
        let _ = started.send(());
        std::future::pending::<std::result::Result<(), Error>>().await
    });
    tokio::select! {
        _ = run => anyhow::bail!("the work ended on its own"),
        _ = work_started => {}
    }
    // `run` is dropped: what a caller's timeout does.
    for _ in 0..100 {
        if fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the lease is still held after with_lock's future was dropped")
}

/// The work sees the lease as renewed: its expiry moves on (the lease handed out at
/// acquire kept the first expiry, stale after the first renewal).
pub async fn lock_with_lock_sees_renewals(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("renewed"));
    let opts = LockOptions::default()
        .with_ttl(Duration::from_secs(1))
        .with_wait(Duration::from_secs(5));
    let inner = fx.clone();
    let (first, later) = fx
        .lock
        .with_lock(&t, &n, opts, |held| async move {
            let first = held.expires_at();
            // Past two renewal periods (a third of the TTL each).
            for _ in 0..3 {
                inner.pass_real(Duration::from_millis(250)).await;
            }
            ensure!(!held.is_lost(), "lease lost while renewed");
            Ok::<_, anyhow::Error>((first, held.expires_at()))
        })
        .await?;
    ensure!(
        later > first,
        "expiry did not move on: {first:?} then {later:?}"
    );
    Ok(())
}

/// When the lease is lost mid-work, `with_lock` stops the work and reports `LockLost`.
pub async fn lock_with_lock_reports_loss(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("stolen"));
    let ttl = Duration::from_millis(300);
    let opts = LockOptions::default()
        .with_ttl(ttl)
        .with_wait(Duration::from_secs(5));
    let inner = fx.clone();
    let (t2, n2) = (t.clone(), n.clone());
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = finished.clone();
    let result = fx
        .lock
        .with_lock(&t, &n, opts, |lease| async move {
            // Lose the lease: release it behind with_lock's back and let a rival in.
            inner.lock.release(&lease.lease()).await?;
            inner.lock.try_acquire(&t2, &n2, inner.long_ttl()).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Error>(())
        })
        .await;
    match result {
        Err(e) if e.kind() == ErrorKind::LockLost => {}
        other => anyhow::bail!("expected LockLost, got {other:?}"),
    }
    ensure!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "work ran on after the loss"
    );
    Ok(())
}

/// A zero TTL is `InvalidInput`; a 1 ms TTL works and lapses.
pub async fn lock_ttl_bounds(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("ttl"));
    ensure_kind!(
        fx.lock.try_acquire(&t, &n, Duration::ZERO).await,
        InvalidInput
    );
    let tiny = fx
        .lock
        .try_acquire(&t, &n, Duration::from_millis(1))
        .await?;
    ensure!(tiny.is_some(), "1 ms lease refused");
    fx.pass(Duration::from_millis(20)).await;
    ensure!(
        fx.lock.try_acquire(&t, &n, fx.long_ttl()).await?.is_some(),
        "1 ms lease did not lapse"
    );
    Ok(())
}

/// Holding a thread's or session's own lock never blocks the writes its lease fences.
pub async fn lock_held_does_not_block_writes(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let (s, th) = (super::session("same"), super::thread("same"));
    let session_lease = fx
        .lock
        .try_acquire(&t, &LockKey::for_session(&s), fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    let opts = AppendOptions::default().with_lease(&session_lease);
    let write = fx.sessions.append(&t, &s, super::events(0..1), opts);
    let head = tokio::time::timeout(Duration::from_secs(10), write).await??;
    ensure!(head == 1);
    let thread_lease = fx
        .lock
        .try_acquire(&t, &LockKey::for_thread(&th), fx.long_ttl())
        .await?
        .ok_or_else(|| anyhow::anyhow!("refused"))?;
    let opts = PutCheckpointOptions::default().with_lease(&thread_lease);
    let put = fx.checkpointer.put(&t, &th, super::cp(None, 0), opts);
    tokio::time::timeout(Duration::from_secs(10), put).await??;
    Ok(())
}
