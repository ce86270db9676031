//! Concurrency: racing tasks never share an ordinal, a lease, a CAS win or a guard win.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use persistence_core::{
    AppendOptions, Envelope, Error, ErrorKind, ExpectLatest, LockOptions, PutCheckpointOptions,
    PutItemOptions, serde_json::json,
};

use super::{cp, env, item_key, lock_key, ns, read_all, session, tenant, thread};
use crate::Fixture;

const TASKS: usize = 16;

async fn join_all<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await?);
    }
    Ok(out)
}

/// 16 tasks appending batches concurrently produce ordinals 1..N with no gap or
/// duplicate, and every batch stays contiguous.
pub async fn concurrency_appenders_gapless(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("race"));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (log, t, s) = (fx.sessions.clone(), t.clone(), s.clone());
        handles.push(tokio::spawn(async move {
            let mut heads = Vec::new();
            for round in 0..8 {
                let size = 1 + (task + round) % 3;
                let batch: Vec<Envelope> = (0..size)
                    .map(|i| Envelope::new(1, json!({"task": task, "round": round, "i": i})))
                    .collect();
                heads.push((
                    size as u64,
                    log.append(&t, &s, batch, AppendOptions::default()).await?,
                ));
            }
            anyhow::Ok(heads)
        }));
    }
    let results = join_all(handles).await?;
    let mut total = 0;
    let mut claimed = BTreeSet::new();
    for heads in results {
        for (size, head) in heads? {
            total += size;
            for seq in head + 1 - size..=head {
                ensure!(claimed.insert(seq), "ordinal {seq} handed out twice");
            }
        }
    }
    let all = read_all(fx, &t, &s, 50).await?;
    ensure!(
        all.len() as u64 == total,
        "{} events stored, {total} appended",
        all.len()
    );
    for (i, e) in all.iter().enumerate() {
        ensure!(
            e.seq == i as u64 + 1,
            "gap or duplicate at {i}: seq {}",
            e.seq
        );
    }
    for e in &all {
        let i = e.event.data["i"].as_u64().unwrap_or(0);
        if i > 0 {
            let prev = &all[(e.seq - 2) as usize].event.data;
            ensure!(
                prev["task"] == e.event.data["task"] && prev["round"] == e.event.data["round"],
                "batch interleaved at {}",
                e.seq
            );
        }
    }
    ensure!(fx.sessions.head(&t, &s).await? == total);
    Ok(())
}

/// 16 tasks racing `try_acquire` give exactly one holder.
pub async fn concurrency_one_lock_holder(fx: &Fixture) -> Result<()> {
    let (t, n) = (tenant("a"), lock_key("race"));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (lock, t, n, ttl) = (fx.lock.clone(), t.clone(), n.clone(), fx.long_ttl());
        handles.push(tokio::spawn(
            async move { lock.try_acquire(&t, &n, ttl).await },
        ));
    }
    let mut holders = 0;
    for r in join_all(handles).await? {
        holders += usize::from(r?.is_some());
    }
    ensure!(holders == 1, "{holders} holders");
    Ok(())
}

/// Of 16 puts guarded on the same latest checkpoint, exactly one wins.
pub async fn concurrency_expect_latest_one_winner(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("race"));
    let root = cp(None, 0);
    fx.checkpointer
        .put(&t, &th, root.clone(), Default::default())
        .await?;
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (cpr, t, th) = (fx.checkpointer.clone(), t.clone(), th.clone());
        let c = cp(Some(root.id), 1 + i as i64);
        let opts = PutCheckpointOptions::default().with_expect_latest(ExpectLatest::Is(root.id));
        handles.push(tokio::spawn(async move { cpr.put(&t, &th, c, opts).await }));
    }
    let mut wins = 0;
    for r in join_all(handles).await? {
        match r {
            Ok(_) => wins += 1,
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(wins == 1, "{wins} winners");
    let all = super::all_checkpoint_pages(fx, &t, &th, 100).await?;
    ensure!(all.len() == 2, "{} checkpoints stored", all.len());
    Ok(())
}

/// Of 16 CAS puts on the same version, exactly one wins.
pub async fn concurrency_store_cas_one_winner(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["race"]), item_key("k"));
    fx.store
        .put(&t, &n, &k, env(json!(0)), Default::default())
        .await?;
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let (store, t, n, k) = (fx.store.clone(), t.clone(), n.clone(), k.clone());
        let opts = PutItemOptions::default().with_if_version(1);
        handles.push(tokio::spawn(async move {
            store.put(&t, &n, &k, env(json!(i)), opts).await
        }));
    }
    let mut wins = 0;
    for r in join_all(handles).await? {
        match r {
            Ok(v) => {
                ensure!(v == 2);
                wins += 1;
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(wins == 1, "{wins} winners");
    Ok(())
}

/// Of 16 appends expecting the same head, exactly one wins.
pub async fn concurrency_expect_head_one_winner(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("race-head"));
    fx.sessions
        .append(&t, &s, super::events(0..1), Default::default())
        .await?;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (log, t, s) = (fx.sessions.clone(), t.clone(), s.clone());
        let opts = AppendOptions::default().with_expect_head(1);
        handles.push(tokio::spawn(async move {
            log.append(&t, &s, super::events(1..3), opts).await
        }));
    }
    let mut wins = 0;
    for r in join_all(handles).await? {
        match r {
            Ok(head) => {
                ensure!(head == 3);
                wins += 1;
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(wins == 1, "{wins} winners");
    ensure!(fx.sessions.head(&t, &s).await? == 3);
    Ok(())
}

/// Workers in `with_lock` exclude each other: a read-modify-write counter under the lock
/// loses no increment, and fences of successive holders increase.
pub async fn concurrency_with_lock_mutual_exclusion(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["counter"]), item_key("c"));
    let name = lock_key("counter");
    let fences = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (fx, t, n, k, name, fences) = (
            fx.clone(),
            t.clone(),
            n.clone(),
            k.clone(),
            name.clone(),
            fences.clone(),
        );
        handles.push(tokio::spawn(async move {
            for _ in 0..5 {
                let opts = LockOptions::default()
                    .with_ttl(Duration::from_secs(30))
                    .with_wait(Duration::from_secs(60));
                let (store, t2, n2, k2, fences) = (
                    fx.store.clone(),
                    t.clone(),
                    n.clone(),
                    k.clone(),
                    fences.clone(),
                );
                fx.lock
                    .with_lock(&t, &name, opts, |lease| async move {
                        let current = store
                            .get(&t2, &n2, &k2)
                            .await?
                            .map_or(0, |i| i.value.data.as_u64().unwrap_or(0));
                        tokio::task::yield_now().await;
                        store
                            .put(&t2, &n2, &k2, env(json!(current + 1)), Default::default())
                            .await?;
                        fences
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(lease.fence().0);
                        Ok::<_, Error>(())
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for r in join_all(handles).await? {
        r?;
    }
    let total = fx
        .store
        .get(&t, &n, &k)
        .await?
        .and_then(|i| i.value.data.as_u64());
    ensure!(total == Some(40), "counter is {total:?}, expected 40");
    let fences = fences.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ensure!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not increasing: {fences:?}"
    );
    Ok(())
}

/// Merge updates by read-modify-write under CAS never lose a field: 8 tasks each add
/// their own field to one item, retrying on `Conflict`; every field survives.
pub async fn concurrency_cas_merges_keep_every_field(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["merge"]), item_key("profile"));
    fx.store
        .put(&t, &n, &k, env(json!({"base": true})), Default::default())
        .await?;
    let mut handles = Vec::new();
    for task in 0..8 {
        let (store, t, n, k) = (fx.store.clone(), t.clone(), n.clone(), k.clone());
        handles.push(tokio::spawn(async move {
            for attempt in 0.. {
                let item = store
                    .get(&t, &n, &k)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("item vanished"))?;
                let mut data = item.value.data.clone();
                data[format!("f{task}")] = json!(task);
                let opts = PutItemOptions::default().with_if_version(item.version);
                match store.put(&t, &n, &k, env(data), opts).await {
                    Ok(_) => return anyhow::Ok(()),
                    Err(e) if e.kind() == ErrorKind::Conflict && attempt < 1000 => {
                        tokio::task::yield_now().await
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }));
    }
    for r in join_all(handles).await? {
        r?;
    }
    let item = fx
        .store
        .get(&t, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item gone"))?;
    for task in 0..8 {
        ensure!(
            item.value.data[format!("f{task}")] == json!(task),
            "field f{task} lost: {}",
            item.value.data
        );
    }
    ensure!(
        item.value.data["base"] == json!(true) && item.version == 9,
        "item {item:?}"
    );
    Ok(())
}
