//! Checkpointer: put/get, idempotence, `expect_latest`, history, pending writes,
//! delete/prune/copy, thread listing, fences.

use anyhow::{Result, ensure};
use persistence_core::{
    CheckpointSelector as Sel, ExpectLatest, ListCheckpoints, ListThreads, PutCheckpointOptions,
    PutWrites, TenantId, ThreadKey, serde_json::json,
};

use super::{
    all_checkpoint_pages, all_thread_pages, cp, cp_meta, env, task, tenant, thread, thread_lease,
    write,
};
use crate::Fixture;

fn guard(expect_latest: ExpectLatest) -> PutCheckpointOptions {
    PutCheckpointOptions::default().with_expect_latest(expect_latest)
}
fn fenced(t: &TenantId, th: &ThreadKey, f: u64) -> PutCheckpointOptions {
    PutCheckpointOptions::default().with_lease(&thread_lease(t, th, f))
}

/// A stored checkpoint comes back whole, as latest and by id.
pub async fn checkpoint_put_then_get(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("run-1"));
    let first = cp(None, 0);
    let mut second = cp(Some(first.id), 1);
    second.state =
        env(json!({"messages": ["héllo", {"nested": [1, 2.5, null]}], "big": 9007199254740993u64}));
    second.metadata.insert("source".into(), json!("loop"));
    fx.checkpointer
        .put(&t, &th, first.clone(), Default::default())
        .await?;
    let stored = fx
        .checkpointer
        .put(&t, &th, second.clone(), Default::default())
        .await?;
    ensure!(stored.same_as(&second), "put returned {stored:?}");
    let latest = fx
        .checkpointer
        .get(&t, &th, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no latest"))?;
    ensure!(latest.checkpoint.same_as(&second), "latest is {latest:?}");
    ensure!(latest.checkpoint.parent == Some(first.id));
    let by_id = fx
        .checkpointer
        .get(&t, &th, Sel::Id(first.id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no first"))?;
    ensure!(by_id.checkpoint.same_as(&first), "by id is {by_id:?}");
    ensure!(by_id.pending_writes.is_empty());
    Ok(())
}

/// A thread or checkpoint that does not exist reads as `None`.
pub async fn checkpoint_get_missing_is_none(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("nothing"));
    ensure!(fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none());
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(cp(None, 0).id))
            .await?
            .is_none()
    );
    ensure!(
        fx.checkpointer
            .get(&t, &thread("other"), Sel::Id(c.id))
            .await?
            .is_none()
    );
    Ok(())
}

/// Putting the same checkpoint twice stores it once and succeeds both times.
pub async fn checkpoint_put_is_idempotent(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("idem"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    let all = all_checkpoint_pages(fx, &t, &th, 10).await?;
    ensure!(all.len() == 1, "expected 1 checkpoint, found {}", all.len());
    Ok(())
}

/// The same id with different content is a `Conflict` and leaves the first intact.
pub async fn checkpoint_same_id_other_content_conflicts(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("clash"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    let mut other = c.clone();
    other.state = env(json!({"different": true}));
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, other, Default::default())
            .await,
        Conflict
    );
    let got = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
    ensure!(
        got.is_some_and(|g| g.checkpoint.same_as(&c)),
        "first checkpoint changed"
    );
    Ok(())
}

/// `ExpectLatest::Absent` succeeds on an empty thread only.
pub async fn checkpoint_expect_latest_absent(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("guard-absent"));
    let c1 = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c1.clone(), guard(ExpectLatest::Absent))
        .await?;
    let c2 = cp(Some(c1.id), 1);
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, c2.clone(), guard(ExpectLatest::Absent))
            .await,
        Conflict
    );
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(c2.id))
            .await?
            .is_none(),
        "conflicting put wrote"
    );
    Ok(())
}

/// `ExpectLatest::Is` succeeds only when the latest is the given id; a failed guard
/// writes nothing.
pub async fn checkpoint_expect_latest_is(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("guard-is"));
    let c1 = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c1.clone(), Default::default())
        .await?;
    let c2 = cp(Some(c1.id), 1);
    fx.checkpointer
        .put(&t, &th, c2.clone(), guard(ExpectLatest::Is(c1.id)))
        .await?;
    let stale = cp(Some(c1.id), 1);
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, stale.clone(), guard(ExpectLatest::Is(c1.id)))
            .await,
        Conflict
    );
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(stale.id))
            .await?
            .is_none(),
        "conflicting put wrote"
    );
    let empty = thread("guard-is-empty");
    ensure_kind!(
        fx.checkpointer
            .put(&t, &empty, cp(None, 0), guard(ExpectLatest::Is(c1.id)))
            .await,
        Conflict
    );
    ensure!(
        fx.checkpointer
            .get(&t, &empty, Sel::Latest)
            .await?
            .is_none()
    );
    Ok(())
}

/// Retrying a put whose reply was lost succeeds even though its guard no longer holds.
pub async fn checkpoint_retry_after_guard_moved_is_ok(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("retry"));
    let c1 = cp(None, 0);
    let opts = guard(ExpectLatest::Absent);
    fx.checkpointer
        .put(&t, &th, c1.clone(), opts.clone())
        .await?;
    fx.checkpointer.put(&t, &th, c1.clone(), opts).await?;
    Ok(())
}

/// History lists newest first; "latest" is the greatest id even when put out of order.
pub async fn checkpoint_list_newest_first(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("history"));
    let cs: Vec<_> = (0..5).map(|i| cp(None, i)).collect();
    for i in [2, 0, 4, 1, 3] {
        fx.checkpointer
            .put(&t, &th, cs[i].clone(), Default::default())
            .await?;
    }
    let listed = all_checkpoint_pages(fx, &t, &th, 100).await?;
    let ids: Vec<_> = listed.iter().map(|c| c.id).collect();
    let want: Vec<_> = cs.iter().rev().map(|c| c.id).collect();
    ensure!(ids == want, "order {ids:?} != {want:?}");
    let latest = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
    ensure!(latest.is_some_and(|l| l.checkpoint.id == cs[4].id));
    Ok(())
}

/// `before` returns only older checkpoints; `limit` caps the page.
pub async fn checkpoint_list_before_and_limit(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("before"));
    let cs: Vec<_> = (0..6).map(|i| cp(None, i)).collect();
    for c in &cs {
        fx.checkpointer
            .put(&t, &th, c.clone(), Default::default())
            .await?;
    }
    let page = fx
        .checkpointer
        .list(
            &t,
            &th,
            ListCheckpoints::default()
                .with_before(cs[4].id)
                .with_limit(2),
        )
        .await?;
    let ids: Vec<_> = page.items.iter().map(|c| c.id).collect();
    ensure!(ids == vec![cs[3].id, cs[2].id], "got {ids:?}");
    ensure!(page.next.is_some(), "more pages expected");
    Ok(())
}

/// The metadata filter keeps checkpoints whose metadata has every given key and value.
pub async fn checkpoint_list_metadata_filter(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("meta"));
    let mut want = Vec::new();
    for i in 0..12 {
        let source = if i % 3 == 0 { "input" } else { "loop" };
        let c = cp_meta(i, json!({"source": source, "step": i, "writer": {"id": 7}}));
        if source == "input" {
            want.push(c.id);
        }
        fx.checkpointer.put(&t, &th, c, Default::default()).await?;
    }
    want.reverse();
    let mut query = ListCheckpoints::default().with_limit(2);
    query.metadata.insert("source".into(), json!("input"));
    query.metadata.insert("writer".into(), json!({"id": 7}));
    let mut got = Vec::new();
    for _ in 0..20 {
        let page = fx.checkpointer.list(&t, &th, query.clone()).await?;
        got.extend(page.items.iter().map(|c| c.id));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    ensure!(got == want, "filtered {got:?} != {want:?}");
    let mut none = ListCheckpoints::default();
    none.metadata.insert("source".into(), json!("nope"));
    ensure!(fx.checkpointer.list(&t, &th, none).await?.items.is_empty());
    Ok(())
}

/// Paging through history returns every checkpoint exactly once.
pub async fn checkpoint_list_pages_exactly_once(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("pages"));
    let mut ids = Vec::new();
    for i in 0..23 {
        let c = cp(None, i);
        ids.push(c.id);
        fx.checkpointer.put(&t, &th, c, Default::default()).await?;
    }
    ids.reverse();
    for limit in [1, 5, 7, 23, 100] {
        let got: Vec<_> = all_checkpoint_pages(fx, &t, &th, limit)
            .await?
            .iter()
            .map(|c| c.id)
            .collect();
        ensure!(
            got == ids,
            "limit {limit}: {} items, order or duplicates wrong",
            got.len()
        );
    }
    Ok(())
}

/// Pending writes come back with their checkpoint, ordered by (task, index).
pub async fn checkpoint_put_writes_returned_with_checkpoint(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("writes"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(
                c.id,
                (task("task-b")).clone(),
                vec![write("out", 1), write("log", 2)],
            ),
        )
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, (task("task-a")).clone(), vec![write("out", 3)]),
        )
        .await?;
    let got = fx
        .checkpointer
        .get(&t, &th, Sel::Id(c.id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    let seen: Vec<_> = got
        .pending_writes
        .iter()
        .map(|w| {
            (
                w.task_id.as_str().to_string(),
                w.index,
                w.channel.as_str().to_string(),
                w.value.data.clone(),
            )
        })
        .collect();
    let want = vec![
        ("task-a".to_string(), 0, "out".to_string(), json!({"w": 3})),
        ("task-b".to_string(), 0, "out".to_string(), json!({"w": 1})),
        ("task-b".to_string(), 1, "log".to_string(), json!({"w": 2})),
    ];
    ensure!(seen == want, "writes {seen:?}");
    let latest = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
    ensure!(latest.is_some_and(|l| l.pending_writes.len() == 3));
    Ok(())
}

/// Writing the same (task, index) again keeps the first write.
pub async fn checkpoint_put_writes_idempotent(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("writes-idem"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("out", 1)]),
        )
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("out", 99), write("more", 2)]),
        )
        .await?;
    let got = fx
        .checkpointer
        .get(&t, &th, Sel::Id(c.id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    let values: Vec<_> = got
        .pending_writes
        .iter()
        .map(|w| w.value.data.clone())
        .collect();
    ensure!(
        values == vec![json!({"w": 1}), json!({"w": 2})],
        "writes {values:?}"
    );
    Ok(())
}

/// Writes against a checkpoint that does not exist fail `NotFound`.
pub async fn checkpoint_put_writes_missing_checkpoint(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("writes-missing"));
    let ghost = cp(None, 0).id;
    ensure_kind!(
        fx.checkpointer
            .put_writes(
                &t,
                &th,
                PutWrites::new(ghost, task("x"), vec![write("o", 1)])
            )
            .await,
        NotFound
    );
    ensure!(fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none());
    Ok(())
}

/// Writes belong to one checkpoint and are not returned with another.
pub async fn checkpoint_writes_belong_to_their_checkpoint(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("writes-scope"));
    let c1 = cp(None, 0);
    let c2 = cp(Some(c1.id), 1);
    fx.checkpointer
        .put(&t, &th, c1.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c1.id, task("x"), vec![write("o", 1)]),
        )
        .await?;
    fx.checkpointer
        .put(&t, &th, c2.clone(), Default::default())
        .await?;
    let latest = fx
        .checkpointer
        .get(&t, &th, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(latest.checkpoint.id == c2.id && latest.pending_writes.is_empty());
    Ok(())
}

/// `delete_thread` removes checkpoints and writes, and says whether there was anything.
pub async fn checkpoint_delete_thread(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("doomed"));
    let keep = thread("kept");
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("o", 1)]),
        )
        .await?;
    fx.checkpointer
        .put(&t, &keep, cp(None, 0), Default::default())
        .await?;
    ensure!(
        fx.checkpointer.delete_thread(&t, &th).await?,
        "delete said nothing existed"
    );
    ensure!(fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none());
    ensure!(
        !fx.checkpointer.delete_thread(&t, &th).await?,
        "second delete said it deleted"
    );
    ensure!(
        fx.checkpointer.get(&t, &keep, Sel::Latest).await?.is_some(),
        "other thread deleted"
    );
    // The thread can be written again afterwards.
    fx.checkpointer
        .put(&t, &th, c.clone(), guard(ExpectLatest::Absent))
        .await?;
    let again = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
    ensure!(
        again.is_some_and(|a| a.pending_writes.is_empty()),
        "old writes came back"
    );
    Ok(())
}

/// `prune` keeps the newest N checkpoints and drops the writes of the rest.
pub async fn checkpoint_prune_keeps_latest(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("prune"));
    let cs: Vec<_> = (0..6).map(|i| cp(None, i)).collect();
    for c in &cs {
        fx.checkpointer
            .put(&t, &th, c.clone(), Default::default())
            .await?;
        fx.checkpointer
            .put_writes(
                &t,
                &th,
                PutWrites::new(c.id, task("x"), vec![write("o", 1)]),
            )
            .await?;
    }
    ensure!(fx.checkpointer.prune(&t, &th, 2).await? == 4, "prune count");
    let left: Vec<_> = all_checkpoint_pages(fx, &t, &th, 10)
        .await?
        .iter()
        .map(|c| c.id)
        .collect();
    ensure!(left == vec![cs[5].id, cs[4].id], "left {left:?}");
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(cs[0].id))
            .await?
            .is_none()
    );
    ensure!(fx.checkpointer.prune(&t, &th, 2).await? == 0);
    ensure_kind!(fx.checkpointer.prune(&t, &th, 0).await, InvalidInput);
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(cs[4].id))
            .await?
            .is_some_and(|c| c.pending_writes.len() == 1)
    );
    Ok(())
}

/// `copy_thread` forks history and writes; the copies evolve independently.
pub async fn checkpoint_copy_thread(fx: &Fixture) -> Result<()> {
    let (t, src, dst) = (tenant("a"), thread("src"), thread("fork"));
    let c1 = cp(None, 0);
    let c2 = cp(Some(c1.id), 1);
    fx.checkpointer
        .put(&t, &src, c1.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put(&t, &src, c2.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &src,
            PutWrites::new(c2.id, task("x"), vec![write("o", 5)]),
        )
        .await?;
    ensure!(fx.checkpointer.copy_thread(&t, &src, &dst).await? == 2);
    let forked = fx
        .checkpointer
        .get(&t, &dst, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("fork empty"))?;
    ensure!(
        forked.checkpoint.same_as(&c2) && forked.pending_writes.len() == 1,
        "fork {forked:?}"
    );
    let c3 = cp(Some(c2.id), 2);
    fx.checkpointer
        .put(&t, &dst, c3.clone(), Default::default())
        .await?;
    let src_latest = fx.checkpointer.get(&t, &src, Sel::Latest).await?;
    ensure!(
        src_latest.is_some_and(|s| s.checkpoint.id == c2.id),
        "fork wrote into source"
    );
    Ok(())
}

/// Copying from an empty thread is `NotFound`; onto a non-empty one is `Conflict`.
pub async fn checkpoint_copy_thread_errors(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let (full, other) = (thread("full"), thread("other"));
    ensure_kind!(
        fx.checkpointer
            .copy_thread(&t, &thread("void"), &other)
            .await,
        NotFound
    );
    fx.checkpointer
        .put(&t, &full, cp(None, 0), Default::default())
        .await?;
    let o = cp(None, 0);
    fx.checkpointer
        .put(&t, &other, o.clone(), Default::default())
        .await?;
    ensure_kind!(
        fx.checkpointer.copy_thread(&t, &full, &other).await,
        Conflict
    );
    let left: Vec<_> = all_checkpoint_pages(fx, &t, &other, 10)
        .await?
        .iter()
        .map(|c| c.id)
        .collect();
    ensure!(left == vec![o.id], "target changed: {left:?}");
    Ok(())
}

/// `list_threads` pages through every thread exactly once, in id order.
pub async fn checkpoint_list_threads_paginated(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let mut want: Vec<String> = (0..17).map(|i| format!("thread-{i:02}")).collect();
    want.push("../odd/ünï".into());
    for name in &want {
        fx.checkpointer
            .put(&t, &thread(name), cp(None, 0), Default::default())
            .await?;
    }
    want.sort();
    for limit in [1, 4, 18, 50] {
        let got: Vec<String> = all_thread_pages(fx, &t, limit)
            .await?
            .iter()
            .map(|k| k.to_string())
            .collect();
        ensure!(got == want, "limit {limit}: {got:?}");
    }
    fx.checkpointer
        .delete_thread(&t, &thread("thread-03"))
        .await?;
    ensure!(
        all_thread_pages(fx, &t, 5).await?.len() == want.len() - 1,
        "deleted thread still listed"
    );
    Ok(())
}

/// A put with a fence lower than one already seen fails `Fenced` and writes nothing;
/// equal and higher fences pass.
pub async fn checkpoint_fenced_put(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("fenced"));
    fx.checkpointer
        .put(&t, &th, cp(None, 0), fenced(&t, &th, 5))
        .await?;
    fx.checkpointer
        .put(&t, &th, cp(None, 1), fenced(&t, &th, 5))
        .await?;
    let stale = cp(None, 2);
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, stale.clone(), fenced(&t, &th, 4))
            .await,
        Fenced
    );
    ensure!(
        fx.checkpointer
            .get(&t, &th, Sel::Id(stale.id))
            .await?
            .is_none(),
        "fenced put wrote"
    );
    fx.checkpointer
        .put(&t, &th, cp(None, 3), fenced(&t, &th, 6))
        .await?;
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, cp(None, 4), fenced(&t, &th, 5))
            .await,
        Fenced
    );
    Ok(())
}

/// `put_writes` honours fences like `put`.
pub async fn checkpoint_fenced_put_writes(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("fenced-writes"));
    let c = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, c.clone(), fenced(&t, &th, 3))
        .await?;
    ensure_kind!(
        fx.checkpointer
            .put_writes(
                &t,
                &th,
                PutWrites::new(c.id, task("x"), vec![write("o", 1)])
                    .with_lease(&thread_lease(&t, &th, 2))
            )
            .await,
        Fenced
    );
    let got = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
    ensure!(
        got.is_some_and(|g| g.pending_writes.is_empty()),
        "fenced writes stored"
    );
    fx.checkpointer
        .put_writes(
            &t,
            &th,
            PutWrites::new(c.id, task("x"), vec![write("o", 1)])
                .with_lease(&thread_lease(&t, &th, 3)),
        )
        .await?;
    Ok(())
}

/// Deleting a thread does not reset its fence: a zombie writer stays fenced out.
pub async fn checkpoint_fence_survives_delete(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("fence-delete"));
    fx.checkpointer
        .put(&t, &th, cp(None, 0), fenced(&t, &th, 9))
        .await?;
    fx.checkpointer.delete_thread(&t, &th).await?;
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, cp(None, 1), fenced(&t, &th, 8))
            .await,
        Fenced
    );
    Ok(())
}

/// A zero or huge limit and a foreign cursor are `InvalidInput`.
pub async fn checkpoint_invalid_list_arguments(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("args"));
    fx.checkpointer
        .put(&t, &th, cp(None, 0), Default::default())
        .await?;
    ensure_kind!(
        fx.checkpointer
            .list(&t, &th, ListCheckpoints::default().with_limit(0))
            .await,
        InvalidInput
    );
    ensure_kind!(
        fx.checkpointer
            .list(&t, &th, ListCheckpoints::default().with_limit(1_000_000))
            .await,
        InvalidInput
    );
    let bogus = persistence_core::Cursor::new("\u{1}not a cursor{");
    ensure_kind!(
        fx.checkpointer
            .list(
                &t,
                &th,
                ListCheckpoints::default().with_cursor(bogus.clone())
            )
            .await,
        InvalidInput
    );
    ensure_kind!(
        fx.checkpointer
            .list_threads(
                &t,
                ListThreads::default()
                    .with_cursor(Some(bogus))
                    .with_limit(10)
            )
            .await,
        InvalidInput
    );
    ensure_kind!(
        fx.checkpointer
            .list_threads(&t, ListThreads::default().with_limit(0))
            .await,
        InvalidInput
    );
    Ok(())
}
