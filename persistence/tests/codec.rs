//! The payload codec on every backend (memory, fs, Postgres, Redis, a Redis Cluster):
//! what the backend holds is sealed; a tampered payload (a flipped byte, one moved to
//! another row, tenant or version, a truncated one, one without its key id or nonce, a
//! plaintext one under `Required`, one sealed under a key the provider no longer has)
//! is a typed `Corrupt` error that affects nothing else; key rotation; no key or
//! plaintext in errors or Debug output.

#![cfg(feature = "codec")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use persistence::codec::EncryptionPolicy;
use persistence::{
    AppendOptions, CheckpointId, CheckpointSelector, Envelope, ErrorKind, Filter, ItemKey,
    Namespace, NewCheckpoint, Persistence, PutItemOptions, SearchItems, SessionKey, TenantId,
    ThreadKey,
};
use serde_json::{Value, json};

mod common;
use common::{K1, K2, codec as config, every_backend};

const SECRET: &str = "the patient's diagnosis";

/// Every backend: its name, and the same storage raw and through a codec of `keys`.
async fn backends(
    keys: &str,
    policy: EncryptionPolicy,
) -> (
    Vec<(&'static str, Persistence, Persistence)>,
    tempfile::TempDir,
) {
    let (backends, dir) = every_backend().await;
    let out = backends
        .into_iter()
        .map(|(name, raw)| {
            let sealed = raw.clone().with_codec(config(keys, policy));
            (name, raw, sealed)
        })
        .collect();
    (out, dir)
}

/// A tenant of this test process alone (servers are shared between test runs).
fn tenant(name: &str) -> TenantId {
    TenantId::new(format!("codec-{name}-{}", std::process::id())).unwrap()
}

fn payload() -> Envelope {
    Envelope::new(3, json!({"note": SECRET, "padding": "x".repeat(400)}))
}

/// The sealed fields of a stored payload.
fn sealed(data: &Value) -> &serde_json::Map<String, Value> {
    data.get("$sealed")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("not sealed: {data}"))
}

/// `stored` with its sealed bytes (salt, then ciphertext and tag) changed by `change`.
/// Every backend here declares `binary_payloads`, so they are raw in the envelope's
/// bytes (the base64 form is covered by the codec's unit tests).
fn with_bytes_changed(stored: &Envelope, change: impl FnOnce(&mut Vec<u8>)) -> Envelope {
    let mut stored = stored.clone();
    change(stored.bytes.as_mut().expect("sealed bytes stored raw"));
    stored
}

/// `stored` with one byte of its ciphertext changed.
fn flipped(stored: &Envelope) -> Envelope {
    with_bytes_changed(stored, |bytes| {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
    })
}

fn assert_corrupt(what: &str, result: persistence::Result<impl std::fmt::Debug>) {
    let err = result.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(SECRET) && !text.contains("AAECAwQF"),
        "{what}: {text}"
    );
}

/// What the backend holds is sealed (no plaintext), with the key id, and compressed
/// when large; the codec reads it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_payloads_are_sealed() {
    let (backends, _dir) = backends(K1, EncryptionPolicy::Required).await;
    for (name, raw, p) in backends {
        let t = tenant("sealed");
        put(&p, &t, "th", CheckpointId::new(), payload()).await;
        let stored = get(&raw, &t, "th", None).await.unwrap().unwrap();
        let fields = sealed(&stored.checkpoint.state.data);
        assert_eq!(fields["k"], "k1", "{name}");
        assert!(
            stored.checkpoint.state.bytes.is_some() && !fields.contains_key("c"),
            "{name}: the ciphertext is stored raw, not as base64"
        );
        assert_eq!(
            fields["z"], 1,
            "{name}: a 400-byte repetitive payload is compressed"
        );
        assert_eq!(
            stored.checkpoint.state.schema_version, 3,
            "{name}: the version stays in clear"
        );
        assert!(
            !stored.checkpoint.state.data.to_string().contains(SECRET),
            "{name}"
        );
        let opened = get(&p, &t, "th", None).await.unwrap().unwrap();
        assert_eq!(opened.checkpoint.state, payload(), "{name}");

        let (ns, key) = (Namespace::new(["n"]).unwrap(), ItemKey::new("k").unwrap());
        p.store
            .put(&t, &ns, &key, payload(), PutItemOptions::default())
            .await
            .unwrap();
        let item = raw.store.get(&t, &ns, &key).await.unwrap().unwrap();
        assert!(!item.value.data.to_string().contains(SECRET), "{name}");
        assert_eq!(
            p.store.get(&t, &ns, &key).await.unwrap().unwrap().value,
            payload(),
            "{name}"
        );

        let s = SessionKey::new("s").unwrap();
        p.sessions
            .append(&t, &s, vec![payload()], AppendOptions::default())
            .await
            .unwrap();
        let event = &raw.sessions.read(&t, &s, 0, 10).await.unwrap()[0];
        assert!(!event.event.data.to_string().contains(SECRET), "{name}");
        assert!(
            !p.capabilities().search,
            "{name}: sealed values cannot be searched"
        );
    }
}

/// Puts checkpoint `id` of `thread` with `state` (through whichever side is given).
async fn put(p: &Persistence, t: &TenantId, thread: &str, id: CheckpointId, state: Envelope) {
    let thread = ThreadKey::new(thread).unwrap();
    let checkpoint = NewCheckpoint::new(id, 1, state);
    p.checkpointer
        .put(t, &thread, checkpoint, Default::default())
        .await
        .unwrap();
}

/// Checkpoint `id` of `thread` (the latest for `None`).
async fn get(
    p: &Persistence,
    t: &TenantId,
    thread: &str,
    id: Option<CheckpointId>,
) -> persistence::Result<Option<persistence::CheckpointTuple>> {
    let selector = id.map_or(CheckpointSelector::Latest, CheckpointSelector::Id);
    p.checkpointer
        .get(t, &ThreadKey::new(thread).unwrap(), selector)
        .await
}

/// A flipped byte, a ciphertext moved to another checkpoint, thread or tenant, a
/// truncated one, a changed schema version: `Corrupt`, and the original still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_checkpoints_fail_corrupt() {
    let (backends, _dir) = backends(K1, EncryptionPolicy::Required).await;
    for (name, raw, p) in backends {
        let (t, other_tenant) = (tenant("cp"), tenant("cp-other"));
        let id = CheckpointId::new();
        put(&p, &t, "th", id, payload()).await;
        let stored = get(&raw, &t, "th", Some(id)).await.unwrap().unwrap();
        let state = stored.checkpoint.state;

        // Flipped: the same row, rewritten with one ciphertext byte changed.
        let flip_id = CheckpointId::new();
        put(&p, &t, "flip", flip_id, payload()).await;
        let original = get(&raw, &t, "flip", None).await.unwrap().unwrap();
        let flip_thread = ThreadKey::new("flip").unwrap();
        raw.checkpointer
            .delete_thread(&t, &flip_thread)
            .await
            .unwrap();
        let bad = flipped(&original.checkpoint.state);
        put(&raw, &t, "flip", flip_id, bad).await;
        assert_corrupt(&format!("{name}: flipped"), get(&p, &t, "flip", None).await);

        // Moved: to another id, another thread, another tenant.
        let moved_id = CheckpointId::new();
        put(&raw, &t, "th", moved_id, state.clone()).await;
        assert_corrupt(
            &format!("{name}: other id"),
            get(&p, &t, "th", Some(moved_id)).await,
        );
        put(&raw, &t, "other", id, state.clone()).await;
        assert_corrupt(
            &format!("{name}: other thread"),
            get(&p, &t, "other", None).await,
        );
        put(&raw, &other_tenant, "th", id, state.clone()).await;
        let moved = get(&p, &other_tenant, "th", None).await;
        assert_corrupt(&format!("{name}: other tenant"), moved);

        // Truncated: the ciphertext cut short; the sealed object missing a field.
        let cut = with_bytes_changed(&state, |bytes| bytes.truncate(bytes.len() / 2));
        put(&raw, &t, "cut", id, cut).await;
        assert_corrupt(
            &format!("{name}: truncated"),
            get(&p, &t, "cut", None).await,
        );
        let no_salt = with_bytes_changed(&state, |bytes| drop(bytes.drain(..24)));
        put(&raw, &t, "nonce", id, no_salt).await;
        assert_corrupt(
            &format!("{name}: no nonce"),
            get(&p, &t, "nonce", None).await,
        );

        // The key id removed: read as not encrypted, which `Required` refuses.
        let mut no_key = state.clone();
        no_key.data["$sealed"].as_object_mut().unwrap().remove("k");
        put(&raw, &t, "no-key", id, no_key).await;
        assert_corrupt(
            &format!("{name}: no key id"),
            get(&p, &t, "no-key", None).await,
        );

        // The schema version in clear is bound too.
        let mut bumped = state.clone();
        bumped.schema_version = 4;
        put(&raw, &t, "bumped", id, bumped).await;
        assert_corrupt(
            &format!("{name}: schema version"),
            get(&p, &t, "bumped", None).await,
        );

        // Nothing else is affected: the original still opens.
        let fine = get(&p, &t, "th", Some(id)).await.unwrap().unwrap();
        assert_eq!(fine.checkpoint.state, payload(), "{name}");
    }
}

/// A store value put back at a later version, or under another key; a session event
/// appended again at another ordinal or in another session: `Corrupt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_items_and_events_fail_corrupt() {
    let (backends, _dir) = backends(K1, EncryptionPolicy::Required).await;
    for (name, raw, p) in backends {
        let t = tenant("replay");
        let (ns, key) = (Namespace::new(["n"]).unwrap(), ItemKey::new("k").unwrap());
        p.store
            .put(
                &t,
                &ns,
                &key,
                Envelope::new(1, json!({"balance": 10})),
                PutItemOptions::default(),
            )
            .await
            .unwrap();
        let v1 = raw.store.get(&t, &ns, &key).await.unwrap().unwrap();
        p.store
            .put(
                &t,
                &ns,
                &key,
                Envelope::new(1, json!({"balance": 0})),
                PutItemOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            p.store.get(&t, &ns, &key).await.unwrap().unwrap().version,
            2,
            "{name}"
        );
        // Rolled back: version 1's ciphertext written as version 3.
        raw.store
            .put(&t, &ns, &key, v1.value.clone(), PutItemOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: older version"),
            p.store.get(&t, &ns, &key).await,
        );
        let other = ItemKey::new("other").unwrap();
        raw.store
            .put(&t, &ns, &other, v1.value.clone(), PutItemOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: other key"),
            p.store.get(&t, &ns, &other).await,
        );
        let fine = ItemKey::new("fine").unwrap();
        p.store
            .put(&t, &ns, &fine, payload(), PutItemOptions::default())
            .await
            .unwrap();
        assert_eq!(
            p.store.get(&t, &ns, &fine).await.unwrap().unwrap().value,
            payload(),
            "{name}"
        );

        let s = SessionKey::new("s").unwrap();
        p.sessions
            .append(&t, &s, vec![payload(), payload()], AppendOptions::default())
            .await
            .unwrap();
        let first = raw.sessions.read(&t, &s, 0, 1).await.unwrap().remove(0);
        raw.sessions
            .append(&t, &s, vec![first.event.clone()], AppendOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: other ordinal"),
            p.sessions.read(&t, &s, 2, 10).await,
        );
        assert_eq!(
            p.sessions.read(&t, &s, 0, 2).await.unwrap().len(),
            2,
            "{name}: events 1-2 still read"
        );
        let s2 = SessionKey::new("s2").unwrap();
        raw.sessions
            .append(&t, &s2, vec![first.event], AppendOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: other session"),
            p.sessions.read(&t, &s2, 0, 10).await,
        );
    }
}

/// Under `Required` a plaintext payload is refused; under `Optional` it reads. A
/// payload sealed under a key the provider no longer has is `Corrupt` naming the key id.
/// Adding a key rotates writes to it while the old one still opens what it sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_missing_keys_and_rotation() {
    let (backends, _dir) = backends(K1, EncryptionPolicy::Required).await;
    for (name, raw, required) in backends {
        let t = tenant("policy");
        let (ns, plain, old) = (
            Namespace::new(["n"]).unwrap(),
            ItemKey::new("plain").unwrap(),
            ItemKey::new("old").unwrap(),
        );
        raw.store
            .put(
                &t,
                &ns,
                &plain,
                Envelope::new(1, json!({"legacy": true})),
                PutItemOptions::default(),
            )
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: plaintext under Required"),
            required.store.get(&t, &ns, &plain).await,
        );
        let optional = raw
            .clone()
            .with_codec(config(K1, EncryptionPolicy::Optional));
        assert_eq!(
            optional
                .store
                .get(&t, &ns, &plain)
                .await
                .unwrap()
                .unwrap()
                .value
                .data,
            json!({"legacy": true}),
            "{name}: plaintext under Optional"
        );

        required
            .store
            .put(&t, &ns, &old, payload(), PutItemOptions::default())
            .await
            .unwrap();
        let rotated = raw
            .clone()
            .with_codec(config(&format!("{K1},{K2}"), EncryptionPolicy::Required));
        let new = ItemKey::new("new").unwrap();
        rotated
            .store
            .put(&t, &ns, &new, payload(), PutItemOptions::default())
            .await
            .unwrap();
        let stored = raw.store.get(&t, &ns, &new).await.unwrap().unwrap();
        assert_eq!(
            sealed(&stored.value.data)["k"],
            "k2",
            "{name}: the added key writes"
        );
        assert_eq!(
            rotated
                .store
                .get(&t, &ns, &old)
                .await
                .unwrap()
                .unwrap()
                .value,
            payload(),
            "{name}: k1 still opens"
        );

        let retired = raw
            .clone()
            .with_codec(config(K2, EncryptionPolicy::Required));
        let err = retired.store.get(&t, &ns, &old).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        assert!(err.to_string().contains("key id k1"), "{name}: {err}");
        assert_eq!(
            retired
                .store
                .get(&t, &ns, &new)
                .await
                .unwrap()
                .unwrap()
                .value,
            payload(),
            "{name}"
        );

        // A tenant's key is its own: the same master key derives another for another tenant.
        let stolen = raw.store.get(&t, &ns, &new).await.unwrap().unwrap();
        let thief = tenant("policy-thief");
        raw.store
            .put(&thief, &ns, &new, stolen.value, PutItemOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: other tenant"),
            rotated.store.get(&thief, &ns, &new).await,
        );
        assert!(
            !format!("{rotated:?} {:?}", config(K1, EncryptionPolicy::Required))
                .contains("AAECAwQF")
        );
    }
}

/// The codec's URL options, on any scheme: taken off before the backend sees the URL,
/// with the keyring from an environment variable or a file; bad ones are refused
/// without echoing a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_options_turn_the_codec_on() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keys");
    std::fs::write(&keyring, format!("# test keys\n{K1}\n")).unwrap();
    let store = dir.path().join("store");
    let raw_url = format!("file://{}?durability=none", store.display());
    let url = format!(
        "{raw_url}&encryption=required&keyring=file:{}&compress_above=64",
        keyring.display()
    );
    let p = persistence::open(&url).await.unwrap();
    let raw = persistence::open(&raw_url).await.unwrap();
    let t = tenant("url");
    let s = SessionKey::new("s").unwrap();
    p.sessions
        .append(&t, &s, vec![payload()], AppendOptions::default())
        .await
        .unwrap();
    let stored = &raw.sessions.read(&t, &s, 0, 1).await.unwrap()[0].event;
    assert_eq!(sealed(&stored.data)["k"], "k1");
    assert_eq!(
        p.sessions.read(&t, &s, 0, 1).await.unwrap()[0].event,
        payload()
    );
    assert!(!p.capabilities().search);

    let searchable = persistence::open("memory://?compress_above=10&clear_fields=kind,user")
        .await
        .unwrap();
    assert!(searchable.capabilities().search, "clear fields keep search");
    assert!(
        !persistence::open("memory://?compress_above=10")
            .await
            .unwrap()
            .capabilities()
            .search
    );

    for (options, needle) in [
        ("encryption=required", "needs keyring"),
        ("keyring=env:X", "without encryption"),
        (
            "encryption=maybe&keyring=env:X",
            "expected required or optional",
        ),
        (
            "encryption=required&keyring=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "never go in a URL",
        ),
        (
            "encryption=required&keyring=env:PERSISTENCE_TEST_CODEC_UNSET",
            "unset",
        ),
        ("compress_above=lots", "number of bytes"),
    ] {
        let err = persistence::open(&format!("memory://?{options}"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{options}: {err}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(needle), "{options}: {text}");
        assert!(!text.contains("AAECAwQF"), "{options}: {text}");
    }
}

/// Fields kept in clear (`with_clear_fields`): a search filters on them on every
/// backend (Postgres in SQL), returns the values whole, refuses a filter on a sealed
/// field; a clear field changed in the row fails the read `Corrupt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_fields_are_searchable_and_bound() {
    let (backends, _dir) = every_backend().await;
    for (name, raw) in backends {
        let p = raw
            .clone()
            .with_codec(config(K1, EncryptionPolicy::Required).with_clear_fields(["kind"]));
        assert!(
            p.capabilities().search,
            "{name}: a clear field can be searched"
        );
        let t = tenant("clear");
        let ns = Namespace::new(["memories"]).unwrap();
        for (key, kind) in [("a", "note"), ("b", "fact"), ("c", "note")] {
            let value = Envelope::new(1, json!({"kind": kind, "text": SECRET}));
            let key = ItemKey::new(key).unwrap();
            p.store
                .put(&t, &ns, &key, value, PutItemOptions::default())
                .await
                .unwrap();
        }
        let stored = raw
            .store
            .get(&t, &ns, &ItemKey::new("a").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.value.data["kind"], "note", "{name}: kept in clear");
        assert!(!stored.value.data.to_string().contains(SECRET), "{name}");

        let notes = SearchItems::default()
            .with_filter(Filter::from_json(&json!({"kind": "note"})).unwrap());
        let found = p.store.search(&t, notes).await.unwrap();
        let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"], "{name}");
        assert_eq!(
            found[0].value.data,
            json!({"kind": "note", "text": SECRET}),
            "{name}"
        );
        let sealed_field = SearchItems::default()
            .with_filter(Filter::from_json(&json!({"text": SECRET})).unwrap());
        let err = p.store.search(&t, sealed_field).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{name}: {err}");
        assert!(!err.to_string().contains(SECRET), "{name}: {err}");

        // The clear field is bound: relabelled in the row (at the same version), it fails.
        let key = ItemKey::new("b").unwrap();
        let mut relabelled = raw.store.get(&t, &ns, &key).await.unwrap().unwrap().value;
        relabelled.data["kind"] = json!("note");
        raw.store.delete(&t, &ns, &key, None).await.unwrap();
        raw.store
            .put(&t, &ns, &key, relabelled, PutItemOptions::default())
            .await
            .unwrap();
        assert_corrupt(
            &format!("{name}: relabelled"),
            p.store.get(&t, &ns, &key).await,
        );
    }
}

/// The audit log is sealed like every other session, whichever of `with_codec` and
/// `with_lifecycle_audit` comes first: an audit event written in plaintext would fail
/// `Corrupt` under `Required` (and tell a reader of the rows what happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_sealed_in_either_order() {
    let backend = persistence::MemoryBackend::new();
    let raw = Persistence::from_backend(backend.clone());
    let t = tenant("audit");
    let audit = SessionKey::new(persistence::AUDIT_SESSION).unwrap();
    let orders = [
        raw.clone()
            .with_codec(config(K1, EncryptionPolicy::Required))
            .with_lifecycle_audit(),
        raw.clone()
            .with_lifecycle_audit()
            .with_codec(config(K1, EncryptionPolicy::Required)),
    ];
    for (i, p) in orders.into_iter().enumerate() {
        let chat = SessionKey::new(format!("chat-{i}")).unwrap();
        p.sessions
            .append(&t, &chat, vec![payload()], AppendOptions::default())
            .await
            .unwrap();
        let events = p.sessions.read(&t, &audit, 0, 100).await.unwrap();
        let created: Vec<_> = events
            .iter()
            .filter(|e| e.event.data["session"] == json!(chat.as_str()))
            .collect();
        assert_eq!(
            created.len(),
            1,
            "order {i}: one event, recorded once: {events:?}"
        );
        let stored = raw.sessions.read(&t, &audit, 0, 100).await.unwrap();
        assert!(
            stored.iter().all(|e| e.event.data.get("$sealed").is_some()),
            "order {i}: {stored:?}"
        );
    }
}
