//! What a backend stores when its own config names a codec: every payload sealed.

use anyhow::{Context, Result, ensure};
use persistence_core::serde_json::{Value, json};
use persistence_core::{
    CheckpointId, CheckpointSelector, Checkpointer, Compaction, Envelope, NewCheckpoint,
    PutCheckpointOptions, PutWrites, SessionLog, Store, Write,
};

use crate::checks::{item_key, ns, session, task, tenant, thread};

/// The codec settings of [`Fixture::sealed`](crate::Fixture::sealed), for a backend
/// that takes a codec in its own config (`FsConfig::with_codec`, ...): zstd from 64
/// bytes, encryption required, under fixed test keys (never for real data), the
/// writer's key id `test`.
///
/// # Panics
/// Never: the test keyring is valid.
pub fn sealed_fixture_codec() -> persistence_codec::CodecConfig {
    use persistence_codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
    #[allow(clippy::expect_used)] // a constant that parses
    let keys =
        StaticKeyring::parse(crate::fixture::SEALED_FIXTURE_KEYS).expect("the test keyring parses");
    CodecConfig::default()
        .with_compression(64)
        .with_encryption(std::sync::Arc::new(keys), EncryptionPolicy::Required)
}

/// The start of each test key's base64, which no `Debug` output may show.
pub const SEALED_FIXTURE_KEY_PREFIXES: [&str; 2] = ["AAECAwQF", "HxweHRwb"];

/// A payload naming `what`, recognisable in stored bytes.
fn secret(what: &str) -> Envelope {
    Envelope::new(
        1,
        json!({"secret": format!("plaintext {what} plaintext {what}")}),
    )
}

/// Checks that `raw` (the same storage as `sealed`, without its codec) holds `payload`
/// sealed under the writer's key, the plaintext nowhere in it.
fn sealed_form(what: &str, payload: &Envelope) -> Result<()> {
    ensure!(
        persistence_codec::sealed_key(payload) == Some("test"),
        "{what} is stored unsealed"
    );
    let stored = serde_json::to_string(payload)?;
    ensure!(!stored.contains("plaintext"), "{what} is stored in clear");
    Ok(())
}

/// Writes each kind of payload through `sealed` (a backend whose config names
/// [`sealed_fixture_codec`]): a checkpoint state, a pending write, a store value put
/// then patched, session events appended then compacted. Checks that `sealed` reads
/// each back as written and that `raw`, the same storage opened without the codec,
/// reads each sealed with no plaintext in it.
///
/// # Errors
/// A call that fails, a payload read back changed, or one stored unsealed.
pub async fn every_payload_sealed_below<B>(sealed: &B, raw: &B) -> Result<()>
where
    B: Checkpointer + Store + SessionLog,
{
    let (t, th) = (tenant("codec-below"), thread("codec-below"));
    let id = CheckpointId::new();
    let new = NewCheckpoint::new(id, 0, secret("state"));
    Checkpointer::put(sealed, &t, &th, new, PutCheckpointOptions::default()).await?;
    let write = Write::new(persistence_core::ChannelName::new("c")?, secret("write"));
    sealed
        .put_writes(
            &t,
            &th,
            PutWrites::new(id, task("codec-below"), vec![write]),
        )
        .await?;
    let (n, k) = (ns(&["codec-below"]), item_key("codec-below"));
    Store::put(sealed, &t, &n, &k, secret("value"), Default::default()).await?;
    let patch = json!({"patched": "plaintext patch"});
    Store::patch(sealed, &t, &n, &k, patch, Default::default()).await?;
    let s = session("codec-below");
    let events = vec![secret("event 1"), secret("event 2")];
    sealed.append(&t, &s, events, Default::default()).await?;
    let compaction = Compaction::new(1, vec![secret("summary")]);
    sealed.compact(&t, &s, compaction).await?;

    let opened = Checkpointer::get(sealed, &t, &th, CheckpointSelector::Latest)
        .await?
        .context("the checkpoint reads back")?;
    ensure!(
        opened.checkpoint.state == secret("state"),
        "state read back"
    );
    ensure!(
        opened.pending_writes.first().map(|w| &w.value) == Some(&secret("write")),
        "pending write read back"
    );
    let item = Store::get(sealed, &t, &n, &k).await?.context("the item")?;
    let mut value = secret("value").data;
    persistence_core::merge_patch(&mut value, &json!({"patched": "plaintext patch"}));
    ensure!(item.value.data == value, "patched value read back");
    let read: Vec<Value> = sealed
        .read(&t, &s, 0, 10)
        .await?
        .into_iter()
        .map(|e| e.event.data)
        .collect();
    ensure!(
        read == [secret("event 2").data, secret("summary").data],
        "events read back: {} of 2",
        read.len()
    );

    let stored = Checkpointer::get(raw, &t, &th, CheckpointSelector::Latest)
        .await?
        .context("the checkpoint, raw")?;
    sealed_form("the checkpoint state", &stored.checkpoint.state)?;
    let write = stored.pending_writes.first().context("the write, raw")?;
    sealed_form("the pending write", &write.value)?;
    let item = Store::get(raw, &t, &n, &k)
        .await?
        .context("the item, raw")?;
    sealed_form("the patched store value", &item.value)?;
    let events = raw.read(&t, &s, 0, 10).await?;
    ensure!(events.len() == 2, "two events stored");
    for event in &events {
        sealed_form("a session event", &event.event)?;
    }
    Ok(())
}
