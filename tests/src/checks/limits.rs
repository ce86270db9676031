//! The edges of the value ranges: fences compared exactly over their whole range
//! (`0..=Fence::MAX`), schema versions up to `u32::MAX`, and JSON numbers a database may
//! print differently. Whatever a write accepts, a read returns; what cannot be returned
//! is refused at write with `InvalidInput`, identically on every backend.

use anyhow::{Result, ensure};
use persistence_core::{
    AppendOptions, CheckpointSelector as Sel, Envelope, ErrorKind, Fence, PutCheckpointOptions,
    PutWrites, SessionKey, TenantId, ThreadKey, serde_json::json,
};

use super::{cp, events, item_key, ns, session, session_lease, task, tenant, thread, thread_lease};
use crate::Fixture;

/// 2^53: above it, adjacent integers are no longer distinct as doubles.
const TWO_POW_53: u64 = 1 << 53;

fn fenced(t: &TenantId, th: &ThreadKey, f: u64) -> PutCheckpointOptions {
    PutCheckpointOptions::default().with_lease(&thread_lease(t, th, f))
}

fn appended(t: &TenantId, s: &SessionKey, f: u64) -> AppendOptions {
    AppendOptions::default().with_lease(&session_lease(t, s, f))
}

/// Checkpoint puts, pending writes and appends compare fences exactly just above 2^53 and
/// at `Fence::MAX`.
pub async fn limits_fences_compare_exactly(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    for (name, high) in [("pow53", TWO_POW_53 + 4), ("max", Fence::MAX.0)] {
        let th = thread(&format!("fence-{name}"));
        let c = cp(None, 0);
        fx.checkpointer
            .put(&t, &th, c.clone(), fenced(&t, &th, high))
            .await?;
        ensure_kind!(
            fx.checkpointer
                .put(&t, &th, cp(None, 1), fenced(&t, &th, high - 1))
                .await,
            Fenced
        );
        ensure_kind!(
            fx.checkpointer
                .put_writes(
                    &t,
                    &th,
                    PutWrites::new(c.id, task("x"), vec![super::write("o", 1)])
                        .with_lease(&thread_lease(&t, &th, high - 1))
                )
                .await,
            Fenced
        );
        fx.checkpointer
            .put(&t, &th, cp(None, 2), fenced(&t, &th, high))
            .await?;

        let s = session(&format!("fence-{name}"));
        fx.sessions
            .append(&t, &s, events(0..1), appended(&t, &s, high))
            .await?;
        ensure_kind!(
            fx.sessions
                .append(&t, &s, events(1..2), appended(&t, &s, high - 1))
                .await,
            Fenced
        );
        fx.sessions
            .append(&t, &s, events(1..2), appended(&t, &s, high))
            .await?;
        ensure!(
            fx.sessions.head(&t, &s).await? == 2,
            "{name}: fenced append wrote"
        );
    }
    Ok(())
}

/// A fence above `Fence::MAX` is `InvalidInput` on every write and writes nothing.
pub async fn limits_fence_above_range_is_invalid(fx: &Fixture) -> Result<()> {
    let (t, th, s) = (tenant("a"), thread("fence-over"), session("fence-over"));
    let over = Fence::MAX.0 + 1;
    let c = cp(None, 0);
    ensure_kind!(
        fx.checkpointer
            .put(&t, &th, c.clone(), fenced(&t, &th, over))
            .await,
        InvalidInput
    );
    ensure!(
        fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none(),
        "refused put wrote"
    );
    fx.checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await?;
    ensure_kind!(
        fx.checkpointer
            .put_writes(
                &t,
                &th,
                PutWrites::new(c.id, task("x"), vec![super::write("o", 1)])
                    .with_lease(&thread_lease(&t, &th, u64::MAX))
            )
            .await,
        InvalidInput
    );
    ensure_kind!(
        fx.sessions
            .append(&t, &s, events(0..1), appended(&t, &s, over))
            .await,
        InvalidInput
    );
    ensure!(fx.sessions.head(&t, &s).await? == 0, "refused append wrote");
    // Nothing was recorded either: a low fence still passes.
    fx.checkpointer
        .put(&t, &th, cp(None, 1), fenced(&t, &th, 1))
        .await?;
    fx.sessions
        .append(&t, &s, events(0..1), appended(&t, &s, 1))
        .await?;
    Ok(())
}

/// Writes `payload` as every payload kind and reads each back. `Ok(None)` when every
/// write was refused with `InvalidInput` (and nothing was stored); an error when a write
/// was accepted and did not come back equal, or when the kinds disagree.
async fn round_trip_every_kind(
    fx: &Fixture,
    label: &str,
    payload: &Envelope,
) -> Result<Option<()>> {
    let t = tenant("a");
    let (th, s) = (
        thread(&format!("rt-{label}")),
        session(&format!("rt-{label}")),
    );
    let (n, k) = (ns(&["rt"]), item_key(label));
    let mut c = cp(None, 0);
    c.state = payload.clone();
    let put = fx
        .checkpointer
        .put(&t, &th, c.clone(), Default::default())
        .await;
    let item = fx
        .store
        .put(&t, &n, &k, payload.clone(), Default::default())
        .await;
    let appended = fx
        .sessions
        .append(&t, &s, vec![payload.clone()], Default::default())
        .await;
    let refused = |r: Option<&persistence_core::Error>| {
        r.is_some_and(|e| e.kind() == ErrorKind::InvalidInput)
    };
    if refused(put.as_ref().err())
        && refused(item.as_ref().err())
        && refused(appended.as_ref().err())
    {
        ensure!(
            fx.checkpointer.get(&t, &th, Sel::Latest).await?.is_none()
                && fx.store.get(&t, &n, &k).await?.is_none()
                && fx.sessions.head(&t, &s).await? == 0,
            "{label}: a refused write stored something"
        );
        return Ok(None);
    }
    put?;
    item?;
    appended?;
    // A checkpoint that holds the payload accepts it as a pending write too.
    let write =
        persistence_core::Write::new(persistence_core::ChannelName::new("ch")?, payload.clone());
    fx.checkpointer
        .put_writes(&t, &th, PutWrites::new(c.id, task("x"), vec![write]))
        .await?;
    let got = fx
        .checkpointer
        .get(&t, &th, Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{label}: checkpoint missing"))?;
    ensure!(
        got.checkpoint.state == *payload,
        "{label}: checkpoint state came back as {:?}",
        got.checkpoint.state
    );
    ensure!(
        got.pending_writes.first().map(|w| &w.value) == Some(payload),
        "{label}: pending write came back as {:?}",
        got.pending_writes
    );
    let item = fx.store.get(&t, &n, &k).await?;
    ensure!(
        item.as_ref().map(|i| &i.value) == Some(payload),
        "{label}: item came back as {item:?}"
    );
    let read = fx.sessions.read(&t, &s, 0, 1).await?;
    ensure!(
        read.first().map(|e| &e.event) == Some(payload),
        "{label}: event came back as {read:?}"
    );
    Ok(Some(()))
}

/// `schema_version` is a `u32`: `u32::MAX` and `2^31` are stored and read back on every
/// payload kind.
pub async fn limits_schema_version_full_range(fx: &Fixture) -> Result<()> {
    for version in [u32::MAX, 1 << 31] {
        let payload = Envelope::new(version, json!({"v": version}));
        let stored = round_trip_every_kind(fx, &format!("v{version}"), &payload).await?;
        ensure!(stored.is_some(), "schema version {version} was refused");
    }
    Ok(())
}

/// Extreme JSON numbers either come back exactly or are refused with `InvalidInput`
/// at write; never accepted and then unreadable or changed.
pub async fn limits_extreme_numbers_round_trip_or_are_refused(fx: &Fixture) -> Result<()> {
    let numbers = [
        ("f64max", json!(f64::MAX)),
        ("f64min", json!(f64::MIN)),
        ("tiny", json!(f64::MIN_POSITIVE)),
        ("subnormal", json!(5e-324)),
        ("e300", json!(1e300)),
        ("neg-e-300", json!(-1.5e-300)),
        ("tenth", json!(0.1)),
        ("u64max", json!(u64::MAX)),
        ("i64min", json!(i64::MIN)),
        ("pow53plus1", json!(TWO_POW_53 + 1)),
        (
            "nested",
            json!({"a": [f64::MAX, {"b": 1e-300}], "c": 123_456_789.123_456_79}),
        ),
    ];
    for (label, value) in numbers {
        round_trip_every_kind(fx, label, &Envelope::new(1, value)).await?;
    }
    Ok(())
}
