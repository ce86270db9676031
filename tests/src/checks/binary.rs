//! Envelope bytes ([`Envelope::bytes`]): a backend that declares
//! `Capabilities::binary_payloads` returns them from every read of every payload kind and
//! compares them when replacing; one that does not either keeps them or refuses the
//! write `InvalidInput`, storing nothing. No backend drops them.

use anyhow::{Result, bail, ensure};
use persistence_core::serde_json::json;
use persistence_core::{
    CheckpointId, CheckpointPayload, CheckpointSelector as Sel, Checkpointer, Envelope, ErrorKind,
    ListCheckpoints, ListItems, NewCheckpoint, PutCheckpointOptions, PutWrites, SessionLog, Store,
    Write,
};

use super::{cp, item_key, ns, session, task, tenant, thread};
use crate::Fixture;

/// Every byte value, and a header in the data the way the codec writes one.
fn binary(n: u8) -> Envelope {
    let bytes: Vec<u8> = (0..=255u8).chain([0, n, b'\n', b'"', 0xff]).collect();
    Envelope::new(3, json!({"$h": {"n": n}})).with_bytes(bytes)
}

/// What a write of an envelope with bytes did: kept them, or was refused as the
/// contract allows a backend without `binary_payloads`.
fn kept<T: std::fmt::Debug>(
    fx: &Fixture,
    what: &str,
    result: persistence_core::Result<T>,
) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::InvalidInput && !fx.capabilities.binary_payloads => {
            Ok(false)
        }
        Err(e) => bail!("{what} with bytes failed: {e}"),
    }
}

/// A checkpoint's state and pending writes keep their bytes through `get` and `list`.
pub async fn binary_checkpoint_bytes_kept_or_refused(fx: &Fixture) -> Result<()> {
    let (t, th) = (tenant("a"), thread("bytes"));
    let mut new = cp(None, 0);
    new.state = binary(1);
    let put = fx
        .checkpointer
        .put(&t, &th, new.clone(), PutCheckpointOptions::default())
        .await;
    if !kept(fx, "checkpoint put", put)? {
        ensure!(
            fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none(),
            "a refused checkpoint was stored"
        );
        return Ok(());
    }
    let writes = vec![Write::new(
        persistence_core::ChannelName::new("c")?,
        binary(2),
    )];
    let put_writes = fx
        .checkpointer
        .put_writes(&t, &th, PutWrites::new(new.id, task("t"), writes))
        .await;
    let writes_kept = kept(fx, "put_writes", put_writes)?;
    let got = fx
        .checkpointer
        .get(&t, &th, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the checkpoint is missing"))?;
    ensure!(
        got.checkpoint.state == binary(1),
        "get: {:?}",
        got.checkpoint.state
    );
    if writes_kept {
        ensure!(
            got.pending_writes.len() == 1 && got.pending_writes[0].value == binary(2),
            "pending writes: {:?}",
            got.pending_writes
        );
    } else {
        ensure!(got.pending_writes.is_empty(), "a refused write was stored");
    }
    let listed = fx
        .checkpointer
        .list(&t, &th, ListCheckpoints::default())
        .await?;
    ensure!(
        listed.items.len() == 1 && listed.items[0].state == binary(1),
        "list: {:?}",
        listed.items
    );
    if fx.capabilities.replace {
        let slot = CheckpointPayload::State(new.id);
        let same_data = Envelope::new(3, json!({"$h": {"n": 1}}));
        ensure!(
            !fx.checkpointer
                .replace_payload(&t, &th, &slot, &same_data, binary(9))
                .await?,
            "replaced a state whose bytes were not the ones expected"
        );
        ensure!(
            fx.checkpointer
                .replace_payload(&t, &th, &slot, &binary(1), binary(3))
                .await?,
            "did not replace the state expected"
        );
        let got = fx.checkpointer.get(&t, &th, Sel::Latest).await?;
        ensure!(
            got.is_some_and(|g| g.checkpoint.state == binary(3)),
            "the replaced state lost its bytes"
        );
    }
    Ok(())
}

/// A store item keeps its bytes through `get` and `list`.
pub async fn binary_item_bytes_kept_or_refused(fx: &Fixture) -> Result<()> {
    let (t, n, k) = (tenant("a"), ns(&["bytes"]), item_key("k"));
    let put = fx
        .store
        .put(&t, &n, &k, binary(4), Default::default())
        .await;
    if !kept(fx, "store put", put)? {
        ensure!(
            fx.store.get(&t, &n, &k).await?.is_none(),
            "a refused item was stored"
        );
        return Ok(());
    }
    let got = fx.store.get(&t, &n, &k).await?;
    ensure!(
        got.as_ref().is_some_and(|i| i.value == binary(4)),
        "get: {got:?}"
    );
    let listed = fx.store.list(&t, &n, ListItems::default()).await?;
    ensure!(
        listed.items.len() == 1 && listed.items[0].value == binary(4),
        "list: {:?}",
        listed.items
    );
    Ok(())
}

/// A session event keeps its bytes through `read`, and `replace_event` compares them.
pub async fn binary_event_bytes_kept_or_refused(fx: &Fixture) -> Result<()> {
    let (t, s) = (tenant("a"), session("bytes"));
    let appended = fx
        .sessions
        .append(&t, &s, vec![binary(5), binary(6)], Default::default())
        .await;
    if !kept(fx, "append", appended)? {
        ensure!(
            fx.sessions.read(&t, &s, 0, 10).await?.is_empty(),
            "refused events were stored"
        );
        return Ok(());
    }
    let read = fx.sessions.read(&t, &s, 0, 10).await?;
    ensure!(
        read.iter().map(|e| &e.event).eq([&binary(5), &binary(6)]),
        "read: {read:?}"
    );
    if fx.capabilities.replace {
        let same_data = Envelope::new(3, json!({"$h": {"n": 5}}));
        ensure!(
            !fx.sessions
                .replace_event(&t, &s, 1, &same_data, binary(9))
                .await?,
            "replaced an event whose bytes were not the ones expected"
        );
        ensure!(
            fx.sessions
                .replace_event(&t, &s, 1, &binary(5), binary(7))
                .await?,
            "did not replace the event expected"
        );
        let read = fx.sessions.read(&t, &s, 0, 1).await?;
        ensure!(
            read.first().is_some_and(|e| e.event == binary(7)),
            "the replaced event lost its bytes: {read:?}"
        );
    }
    Ok(())
}

/// `len` bytes that do not compress (an LCG's high bits, seeded: the same every run),
/// as ciphertext, beside a small header.
pub fn incompressible(seed: u8, len: usize) -> Envelope {
    let mut state = u64::from(seed);
    let bytes = (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect();
    Envelope::new(1, json!({"$h": seed})).with_bytes(bytes)
}

/// Writes a checkpoint state (seed 1), a pending write (2), a store value (3) and a
/// session event (4) of `len` [`incompressible`] bytes each under tenant `binary`, and
/// checks they read back whole: for a backend's own tests, which then look at how much
/// it stored.
///
/// # Errors
/// A write or read that fails, or a payload that does not read back.
pub async fn write_one_of_each_kind<B>(backend: &B, len: usize) -> Result<()>
where
    B: Checkpointer + Store + SessionLog,
{
    let (t, th) = (tenant("binary"), thread("binary"));
    let id = CheckpointId::new();
    let new = NewCheckpoint::new(id, 0, incompressible(1, len));
    Checkpointer::put(backend, &t, &th, new, PutCheckpointOptions::default()).await?;
    let write = Write::new(
        persistence_core::ChannelName::new("c")?,
        incompressible(2, len),
    );
    let writes = PutWrites::new(id, task("binary"), vec![write]);
    backend.put_writes(&t, &th, writes).await?;
    let (n, k) = (ns(&["binary"]), item_key("binary"));
    Store::put(
        backend,
        &t,
        &n,
        &k,
        incompressible(3, len),
        Default::default(),
    )
    .await?;
    let s = session("binary");
    let event = vec![incompressible(4, len)];
    backend.append(&t, &s, event, Default::default()).await?;

    let got = Checkpointer::get(backend, &t, &th, Sel::Latest).await?;
    let got = got.ok_or_else(|| anyhow::anyhow!("the checkpoint is missing"))?;
    ensure!(got.checkpoint.state == incompressible(1, len), "state");
    ensure!(got.pending_writes.first().map(|w| &w.value) == Some(&incompressible(2, len)));
    let item = Store::get(backend, &t, &n, &k).await?;
    ensure!(
        item.is_some_and(|i| i.value == incompressible(3, len)),
        "item"
    );
    let events = backend.read(&t, &s, 0, 10).await?;
    ensure!(
        events.first().map(|e| &e.event) == Some(&incompressible(4, len)),
        "event"
    );
    Ok(())
}
