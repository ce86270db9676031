//! Envelopes: schema versions survive storage; upcasters run on read; newer versions
//! fail `SchemaTooNew` and change nothing; garbage is `Corrupt`.

use anyhow::{Result, ensure};
use persistence_core::{
    CheckpointSelector as Sel, CheckpointerExt, Envelope, ErrorKind, NewCheckpoint, PutWrites,
    SessionLogExt, StoreExt, Upcaster, Versioned,
    serde_json::{self, Value, json},
};

use super::{cp, item_key, ns, session, tenant, thread};
use crate::Fixture;

/// Version 2 of a test type; version 1 lacked `tags`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct NoteV2 {
    text: String,
    tags: Vec<String>,
}

impl Versioned for NoteV2 {
    const VERSION: u32 = 2;
    const UPCASTERS: &'static [Upcaster] = &[|mut v: Value| {
        v["tags"] = json!(["upcast"]);
        Ok(v)
    }];
}

fn v1(text: &str) -> Envelope {
    Envelope::new(1, json!({"text": text}))
}

/// Every payload kind keeps its `schema_version` through storage.
pub async fn envelope_versions_preserved(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let payload = Envelope::new(7, json!({"v": 7}));
    let mut c = cp(None, 0);
    c.state = payload.clone();
    fx.checkpointer
        .put(&t, &thread("e"), c.clone(), Default::default())
        .await?;
    fx.checkpointer
        .put_writes(
            &t,
            &thread("e"),
            PutWrites::new(
                c.id,
                super::task("x"),
                vec![persistence_core::Write::new(
                    persistence_core::ChannelName::new("ch")?,
                    payload.clone(),
                )],
            ),
        )
        .await?;
    fx.sessions
        .append(&t, &session("e"), vec![payload.clone()], Default::default())
        .await?;
    fx.store
        .put(
            &t,
            &ns(&["e"]),
            &item_key("e"),
            payload.clone(),
            Default::default(),
        )
        .await?;
    let got = fx
        .checkpointer
        .get(&t, &thread("e"), Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(got.checkpoint.state == payload && got.pending_writes[0].value == payload);
    ensure!(fx.sessions.read(&t, &session("e"), 0, 1).await?[0].event == payload);
    ensure!(
        fx.store
            .get(&t, &ns(&["e"]), &item_key("e"))
            .await?
            .is_some_and(|i| i.value == payload)
    );
    Ok(())
}

/// Typed reads run the upcaster chain on older payloads of every kind.
pub async fn envelope_upcasters_run_on_read(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let want = NoteV2 {
        text: "old".into(),
        tags: vec!["upcast".into()],
    };
    let mut c = cp(None, 0);
    c.state = v1("old");
    fx.checkpointer
        .put(&t, &thread("up"), c, Default::default())
        .await?;
    let typed = fx.checkpointer.typed::<NoteV2>();
    let got = typed
        .get(&t, &thread("up"), Sel::Latest)
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(
        got.checkpoint.state == want,
        "checkpoint {:?}",
        got.checkpoint.state
    );

    fx.sessions
        .append(&t, &session("up"), vec![v1("old")], Default::default())
        .await?;
    let events = fx
        .sessions
        .typed::<NoteV2>()
        .read(&t, &session("up"), 0, 10)
        .await?;
    ensure!(events == vec![(1, want.clone())], "events {events:?}");

    fx.store
        .put(
            &t,
            &ns(&["up"]),
            &item_key("k"),
            v1("old"),
            Default::default(),
        )
        .await?;
    let item = fx
        .store
        .typed::<NoteV2>()
        .get(&t, &ns(&["up"]), &item_key("k"))
        .await?;
    ensure!(item == Some((want, 1)), "item {item:?}");
    Ok(())
}

/// A payload from a newer schema fails `SchemaTooNew` on typed reads and stays intact.
pub async fn envelope_schema_too_new_leaves_data(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let newer = Envelope::new(3, json!({"text": "future", "tags": [], "extra": 1}));
    let (n, k) = (ns(&["new"]), item_key("k"));
    fx.store
        .put(&t, &n, &k, newer.clone(), Default::default())
        .await?;
    let err = fx
        .store
        .typed::<NoteV2>()
        .get(&t, &n, &k)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("decoded"))?;
    ensure!(err.kind() == ErrorKind::SchemaTooNew, "got {err}");
    let versions = err
        .schema_versions()
        .ok_or_else(|| anyhow::anyhow!("no versions in error"))?;
    ensure!(versions.found == 3 && versions.supported == 2);
    let raw = fx
        .store
        .get(&t, &n, &k)
        .await?
        .ok_or_else(|| anyhow::anyhow!("item gone"))?;
    ensure!(
        raw.value == newer && raw.version == 1,
        "item changed: {raw:?}"
    );

    let mut c = cp(None, 0);
    c.state = newer.clone();
    fx.checkpointer
        .put(&t, &thread("new"), c.clone(), Default::default())
        .await?;
    ensure_kind!(
        fx.checkpointer
            .typed::<NoteV2>()
            .get(&t, &thread("new"), Sel::Latest)
            .await,
        SchemaTooNew
    );
    let raw = fx.checkpointer.get(&t, &thread("new"), Sel::Latest).await?;
    ensure!(raw.is_some_and(|r| r.checkpoint.same_as(&c)));

    fx.sessions
        .append(&t, &session("new"), vec![newer.clone()], Default::default())
        .await?;
    ensure_kind!(
        fx.sessions
            .typed::<NoteV2>()
            .read(&t, &session("new"), 0, 10)
            .await,
        SchemaTooNew
    );
    ensure!(fx.sessions.read(&t, &session("new"), 0, 10).await?[0].event == newer);
    Ok(())
}

/// A payload of the right version but the wrong shape is `Corrupt`, never a default.
pub async fn envelope_garbled_is_corrupt(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let garbled = Envelope::new(2, json!({"text": 42}));
    fx.store
        .put(
            &t,
            &ns(&["bad"]),
            &item_key("k"),
            garbled.clone(),
            Default::default(),
        )
        .await?;
    ensure_kind!(
        fx.store
            .typed::<NoteV2>()
            .get(&t, &ns(&["bad"]), &item_key("k"))
            .await,
        Corrupt
    );
    fx.sessions
        .append(&t, &session("bad"), vec![garbled], Default::default())
        .await?;
    ensure_kind!(
        fx.sessions
            .typed::<NoteV2>()
            .read(&t, &session("bad"), 0, 1)
            .await,
        Corrupt
    );
    ensure_kind!(Envelope::from_slice(b"{\"data\": {}}"), Corrupt);
    Ok(())
}

/// Typed writes stamp the current version and read back equal.
pub async fn envelope_typed_roundtrip(fx: &Fixture) -> Result<()> {
    let t = tenant("a");
    let note = NoteV2 {
        text: "now".into(),
        tags: vec!["x".into()],
    };
    let typed = fx.checkpointer.typed::<NoteV2>();
    let id = persistence_core::CheckpointId::new();
    typed
        .put(
            &t,
            &thread("typed"),
            NewCheckpoint::new(id, 0, note.clone()),
            Default::default(),
        )
        .await?;
    let raw = fx
        .checkpointer
        .get(&t, &thread("typed"), Sel::Id(id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(raw.checkpoint.state.schema_version == 2);
    ensure!(raw.checkpoint.state.data == serde_json::to_value(&note)?);
    let head = fx
        .sessions
        .typed::<NoteV2>()
        .append(
            &t,
            &session("typed"),
            &[note.clone(), note.clone()],
            Default::default(),
        )
        .await?;
    ensure!(head == 2);
    let version = fx
        .store
        .typed::<NoteV2>()
        .put(
            &t,
            &ns(&["typed"]),
            &item_key("k"),
            &note,
            Default::default(),
        )
        .await?;
    ensure!(version == 1);
    Ok(())
}
