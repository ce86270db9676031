//! Round trips per operation, counted by a [`CountingProxy`] between a backend and its
//! server: the Postgres and Redis tests assert each operation is one.

use std::time::Duration;

use persistence_core::{
    AppendOptions, ChannelName, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey,
    Lock, LockKey, Namespace, NewCheckpoint, PutWrites, Result, SessionKey, SessionLog, Store,
    TaskId, TenantId, ThreadKey, Write,
};
use serde_json::json;

use super::CountingProxy;

/// Runs each operation three times on `backend` (connected through `proxy`) and returns
/// the network flights of each in the third round, once statements are prepared, scripts
/// loaded and entities indexed.
///
/// # Errors
/// The first failed operation.
pub async fn round_trips_per_operation<B>(
    backend: &B,
    proxy: &CountingProxy,
) -> Result<Vec<(&'static str, u64)>>
where
    B: Checkpointer + Store + SessionLog + Lock,
{
    counted_per_operation(backend, || async { Ok(proxy.flights()) }).await
}

/// [`round_trips_per_operation`] with any monotonic counter read by `counter`: the
/// server's own statistics (Redis `INFO commandstats`, Postgres `pg_stat_statements`)
/// where a proxy cannot read the traffic (TLS). Returns the counter's growth across
/// each operation of the third round.
///
/// # Errors
/// The first failed operation or counter read.
pub async fn counted_per_operation<B, F, Fut>(
    backend: &B,
    counter: F,
) -> Result<Vec<(&'static str, u64)>>
where
    B: Checkpointer + Store + SessionLog + Lock,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let t = TenantId::new("rt")?;
    let (th, s) = (ThreadKey::new("th")?, SessionKey::new("s")?);
    let (ns, k, l) = (
        Namespace::new(["n"])?,
        ItemKey::new("k")?,
        LockKey::new("l")?,
    );
    let ttl = Duration::from_secs(30);
    let mut report = Vec::new();
    for round in 0..3 {
        macro_rules! count {
            ($name:expr, $before:expr) => {
                if round == 2 {
                    report.push(($name, counter().await?.saturating_sub($before)));
                }
            };
        }
        let c = NewCheckpoint::new(CheckpointId::new(), round, Envelope::new(1, json!({})));
        let id = c.id;
        let n = counter().await?;
        Checkpointer::put(backend, &t, &th, c, Default::default()).await?;
        count!("checkpoint put", n);
        let n = counter().await?;
        Checkpointer::get(backend, &t, &th, CheckpointSelector::Latest).await?;
        count!("checkpoint get latest", n);
        let n = counter().await?;
        let w = Write::new(ChannelName::new("c")?, Envelope::new(1, json!(1)));
        let task = TaskId::new("task")?;
        backend
            .put_writes(&t, &th, PutWrites::new(id, task.clone(), vec![w]))
            .await?;
        count!("checkpoint put_writes", n);
        let n = counter().await?;
        let events = vec![Envelope::new(1, json!(1))];
        backend
            .append(&t, &s, events, AppendOptions::default())
            .await?;
        count!("session append", n);
        let n = counter().await?;
        backend.read(&t, &s, 0, 10).await?;
        count!("session read", n);
        let n = counter().await?;
        let value = Envelope::new(1, json!(1));
        Store::put(backend, &t, &ns, &k, value, Default::default()).await?;
        count!("store put", n);
        let n = counter().await?;
        Store::get(backend, &t, &ns, &k).await?;
        count!("store get", n);
        let n = counter().await?;
        let lease = backend
            .try_acquire(&t, &l, ttl)
            .await?
            .ok_or_else(|| persistence_core::Error::conflict("round-trip lock is held"))?;
        count!("lock acquire", n);
        let n = counter().await?;
        backend.renew(&lease, ttl).await?;
        count!("lock renew", n);
        let n = counter().await?;
        backend.release(&lease).await?;
        count!("lock release", n);
    }
    Ok(report)
}
