//! Retention of checkpoints: `prune_through` and `apply_retention` (count, age, thread
//! TTL), never the latest of a live thread, safe next to writers and fences.
//!
//! Ages come from the ids (UUIDv7 time) and the `now` the check passes, so the checks
//! mint ids at chosen times instead of waiting.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use persistence_core::serde_json::json;
use persistence_core::{
    CheckpointId, CheckpointSelector, ListThreads, NewCheckpoint, PutCheckpointOptions, PutWrites,
    Retention, Timestamp,
};

use super::{all_checkpoint_pages, env, task, tenant, thread, thread_lease, write};
use crate::Fixture;

const HOUR: u64 = 3_600_000;
const MINUTE: u64 = 60_000;

/// A checkpoint whose id was minted `ago` milliseconds before `now`.
fn minted(now: Timestamp, ago: u64, step: i64) -> NewCheckpoint {
    NewCheckpoint::new(
        CheckpointId::last_of(Timestamp(now.0 - ago)),
        step,
        env(json!({"step": step})),
    )
}

async fn ids_of(
    fx: &Fixture,
    t: &persistence_core::TenantId,
    th: &persistence_core::ThreadKey,
) -> Result<Vec<CheckpointId>> {
    Ok(all_checkpoint_pages(fx, t, th, 100)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// `prune_through` deletes the checkpoints up to an id, with their writes, and keeps
/// newer ones and other tenants' threads of the same id.
pub async fn retention_prune_through_keeps_newer(fx: &Fixture) -> Result<()> {
    let (t, th, now) = (tenant("a"), thread("through"), Timestamp::now());
    let mut ids = Vec::new();
    for (i, ago) in [3 * HOUR, 2 * HOUR, HOUR, 0].into_iter().enumerate() {
        let c = minted(now, ago, i as i64);
        ids.push(c.id);
        fx.checkpointer
            .put(&t, &th, c.clone(), PutCheckpointOptions::default())
            .await?;
        fx.checkpointer
            .put(&tenant("b"), &th, c, PutCheckpointOptions::default())
            .await?;
    }
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(ids[1], task("t"), vec![write("c", 1)]),
        )
        .await?;
    let removed = fx.checkpointer.prune_through(&t, &th, &ids[1]).await?;
    ensure!(removed == 2, "prune_through removed {removed}, not 2");
    let left = ids_of(fx, &t, &th).await?;
    ensure!(left == [ids[3], ids[2]], "left {left:?}");
    ensure!(
        fx.checkpointer
            .get(&t, &th, CheckpointSelector::Id(ids[1]))
            .await?
            .is_none(),
        "a pruned checkpoint is still readable"
    );
    ensure!(
        ids_of(fx, &tenant("b"), &th).await?.len() == 4,
        "tenant b was pruned"
    );
    ensure!(
        fx.checkpointer.prune_through(&t, &th, &ids[1]).await? == 0,
        "pruning again removed more"
    );
    Ok(())
}

/// `keep_last` keeps the newest n; `max_age` drops older checkpoints and never the
/// latest, even when every checkpoint is too old.
pub async fn retention_count_and_age(fx: &Fixture) -> Result<()> {
    let (t, th, now) = (tenant("a"), thread("age"), Timestamp::now());
    let mut ids = Vec::new();
    for (i, ago) in [5 * HOUR, 3 * HOUR, 2 * HOUR, 10 * MINUTE, MINUTE]
        .into_iter()
        .enumerate()
    {
        let c = minted(now, ago, i as i64);
        ids.push(c.id);
        fx.checkpointer
            .put(&t, &th, c, PutCheckpointOptions::default())
            .await?;
    }
    let hour = Duration::from_millis(HOUR);
    let out = fx
        .checkpointer
        .apply_retention(&t, &th, &Retention::default().with_max_age(hour), now)
        .await?;
    ensure!(out.checkpoints == 3 && !out.thread_deleted, "{out:?}");
    ensure!(ids_of(fx, &t, &th).await? == [ids[4], ids[3]]);

    let out = fx
        .checkpointer
        .apply_retention(&t, &th, &Retention::default().with_keep_last(1), now)
        .await?;
    ensure!(out.checkpoints == 1, "{out:?}");
    ensure!(ids_of(fx, &t, &th).await? == [ids[4]]);

    // Far in the future every checkpoint is too old: the latest stays.
    let later = Timestamp(now.0 + 1000 * HOUR);
    let out = fx
        .checkpointer
        .apply_retention(&t, &th, &Retention::default().with_max_age(hour), later)
        .await?;
    ensure!(out.checkpoints == 0, "{out:?}");
    ensure!(
        ids_of(fx, &t, &th).await? == [ids[4]],
        "the latest was dropped"
    );

    for bad in [
        Retention::default().with_keep_last(0),
        Retention::default().with_max_age(Duration::ZERO),
        Retention::default().with_thread_ttl(Duration::ZERO),
    ] {
        ensure_kind!(
            fx.checkpointer.apply_retention(&t, &th, &bad, now).await,
            InvalidInput
        );
    }
    Ok(())
}

/// A thread idle past its TTL is deleted with its pending writes; a live one is not;
/// a fenced writer keeps its fence: a stale lease is still refused afterwards and the
/// holder's lease writes again.
pub async fn retention_thread_ttl_deletes_idle_threads(fx: &Fixture) -> Result<()> {
    let (t, now) = (tenant("a"), Timestamp::now());
    let (idle, live) = (thread("idle"), thread("live"));
    let lease = thread_lease(&t, &idle, 7);
    let old = minted(now, 3 * HOUR, 1);
    fx.checkpointer
        .put(
            &t,
            &idle,
            old.clone(),
            PutCheckpointOptions::default().with_lease(&lease),
        )
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &idle,
            PutWrites::new(old.id, task("t"), vec![write("c", 1)]).with_lease(&lease),
        )
        .await?;
    fx.checkpointer
        .put(
            &t,
            &live,
            minted(now, 3 * HOUR, 1),
            PutCheckpointOptions::default(),
        )
        .await?;
    fx.checkpointer
        .put(
            &t,
            &live,
            minted(now, MINUTE, 2),
            PutCheckpointOptions::default(),
        )
        .await?;

    let policy = Retention::default().with_thread_ttl(Duration::from_millis(HOUR));
    let out = fx
        .checkpointer
        .apply_retention(&t, &idle, &policy, now)
        .await?;
    ensure!(out.thread_deleted && out.checkpoints == 1, "{out:?}");
    ensure!(
        fx.checkpointer
            .get(&t, &idle, CheckpointSelector::Latest)
            .await?
            .is_none(),
        "the idle thread is still there"
    );
    let out = fx
        .checkpointer
        .apply_retention(&t, &live, &policy, now)
        .await?;
    ensure!(!out.thread_deleted && out.checkpoints == 0, "{out:?}");
    ensure!(
        ids_of(fx, &t, &live).await?.len() == 2,
        "the live thread lost checkpoints"
    );
    let threads = fx
        .checkpointer
        .list_threads(&t, ListThreads::default())
        .await?
        .items;
    ensure!(
        threads.contains(&live) && !threads.contains(&idle),
        "listed threads {threads:?}"
    );

    ensure_kind!(
        fx.checkpointer
            .put(
                &t,
                &idle,
                minted(now, 0, 2),
                PutCheckpointOptions::default().with_lease(&thread_lease(&t, &idle, 6))
            )
            .await,
        Fenced
    );
    fx.checkpointer
        .put(
            &t,
            &idle,
            minted(now, 0, 2),
            PutCheckpointOptions::default().with_lease(&lease),
        )
        .await
        .context("the lease holder could not write after its thread was reaped")?;
    Ok(())
}

/// Checkpoints put while a thread TTL reaps the thread survive: they are newer than
/// the latest the reaper saw.
pub async fn retention_keeps_checkpoints_put_meanwhile(fx: &Fixture) -> Result<()> {
    let (t, th, now) = (tenant("a"), thread("race"), Timestamp::now());
    fx.checkpointer
        .put(
            &t,
            &th,
            minted(now, 3 * HOUR, 0),
            PutCheckpointOptions::default(),
        )
        .await?;
    let writer = {
        let (fx, t, th) = (fx.clone(), t.clone(), th.clone());
        tokio::spawn(async move {
            let mut put = Vec::new();
            for step in 1..=20 {
                let c = NewCheckpoint::new(CheckpointId::new(), step, env(json!({"step": step})));
                put.push(c.id);
                fx.checkpointer
                    .put(&t, &th, c, PutCheckpointOptions::default())
                    .await?;
            }
            anyhow::Ok(put)
        })
    };
    let policy = Retention::default().with_thread_ttl(Duration::from_millis(HOUR));
    for _ in 0..10 {
        fx.checkpointer
            .apply_retention(&t, &th, &policy, Timestamp::now())
            .await?;
    }
    let put = writer.await??;
    let left = ids_of(fx, &t, &th).await?;
    for id in &put {
        ensure!(
            left.contains(id),
            "checkpoint {id} put during retention is gone"
        );
    }
    Ok(())
}

/// A fork (`copy_thread`) follows the policy applied to it; its origin keeps its own.
pub async fn retention_of_a_fork_is_its_own(fx: &Fixture) -> Result<()> {
    let (t, now) = (tenant("a"), Timestamp::now());
    let (origin, fork) = (thread("origin"), thread("fork"));
    for (i, ago) in [3 * HOUR, 2 * HOUR, MINUTE].into_iter().enumerate() {
        fx.checkpointer
            .put(
                &t,
                &origin,
                minted(now, ago, i as i64),
                PutCheckpointOptions::default(),
            )
            .await?;
    }
    fx.checkpointer.copy_thread(&t, &origin, &fork).await?;
    let out = fx
        .checkpointer
        .apply_retention(
            &t,
            &fork,
            &Retention::default().with_max_age(Duration::from_millis(HOUR)),
            now,
        )
        .await?;
    ensure!(out.checkpoints == 2, "{out:?}");
    ensure!(ids_of(fx, &t, &fork).await?.len() == 1);
    ensure!(
        ids_of(fx, &t, &origin).await?.len() == 3,
        "the origin was pruned"
    );
    Ok(())
}
