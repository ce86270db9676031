//! `persistence status --keys` on an encrypted store: payloads counted per key id (and
//! those not encrypted) across a key rotation, with the keyring from an environment
//! variable of the command; no key in its output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{command, json, stderr, stdout};
use persistence::codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
use persistence::{
    AppendOptions, CheckpointId, Envelope, ItemKey, Namespace, NewCheckpoint, PutItemOptions,
    SessionKey, TenantId, ThreadKey,
};
use serde_json::json;

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2=HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

fn codec(keys: &str) -> CodecConfig {
    let keys = StaticKeyring::parse(keys).unwrap();
    CodecConfig::default().with_encryption(std::sync::Arc::new(keys), EncryptionPolicy::Optional)
}

#[test]
fn status_counts_payloads_per_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/store", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raw = persistence::open(&url).await.unwrap();
        let t = TenantId::new("acme").unwrap();
        let (ns, value) = (
            Namespace::new(["n"]).unwrap(),
            Envelope::new(1, json!({"v": 1})),
        );
        // One payload written before encryption, three under k1, two under k2.
        raw.store
            .put(
                &t,
                &ns,
                &ItemKey::new("plain").unwrap(),
                value.clone(),
                PutItemOptions::default(),
            )
            .await
            .unwrap();
        let old = raw.clone().with_codec(codec(K1));
        let thread = ThreadKey::new("th").unwrap();
        let checkpoint = NewCheckpoint::new(CheckpointId::new(), 1, value.clone());
        old.checkpointer
            .put(&t, &thread, checkpoint, Default::default())
            .await
            .unwrap();
        let session = SessionKey::new("s").unwrap();
        old.sessions
            .append(
                &t,
                &session,
                vec![value.clone(), value.clone()],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        let new = raw.clone().with_codec(codec(&format!("{K1},{K2}")));
        new.sessions
            .append(&t, &session, vec![value.clone()], AppendOptions::default())
            .await
            .unwrap();
        new.store
            .put(
                &t,
                &ns,
                &ItemKey::new("new").unwrap(),
                value,
                PutItemOptions::default(),
            )
            .await
            .unwrap();
        raw.close().await;
    });
    let keyed_url = format!("{url}?encryption=optional&keyring=env:APP_KEYS");
    let out = command(
        dir.path(),
        &["status", "--keys", "--format", "json", "--url", &keyed_url],
    )
    .env("APP_KEYS", format!("{K1}\n{K2}"))
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&stdout(&out));
    assert_eq!(
        report["keys"],
        json!([{"tenant": "acme", "by_key": {"k1": 3, "k2": 2}, "unencrypted": 1}]),
        "{report}"
    );
    let table = command(dir.path(), &["status", "--keys", "--url", &keyed_url])
        .env("APP_KEYS", K2)
        .output()
        .unwrap();
    let text = stdout(&table);
    assert!(
        text.contains("(not encrypted)") && text.contains("k1"),
        "{text}"
    );
    assert!(
        !text.contains("AAECAwQF") && !stderr(&table).contains("AAECAwQF"),
        "{text}"
    );
}

/// `persistence rekey` after a rotation: a bounded run, then the rest; afterwards
/// `status --keys` counts every payload under the new key, and the old key can leave
/// the keyring. No key in any output.
#[test]
fn rekey_moves_every_payload_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/store", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raw = persistence::open(&url).await.unwrap();
        let t = TenantId::new("acme").unwrap();
        let value = Envelope::new(1, json!({"v": 1}));
        raw.sessions
            .append(
                &t,
                &SessionKey::new("plain").unwrap(),
                vec![value.clone()],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        let old = raw.clone().with_codec(codec(K1));
        for i in 0..4 {
            old.store
                .put(
                    &t,
                    &Namespace::new(["n"]).unwrap(),
                    &ItemKey::new(format!("k{i}")).unwrap(),
                    value.clone(),
                    PutItemOptions::default(),
                )
                .await
                .unwrap();
        }
        raw.close().await;
    });
    let rotated = format!("{url}?encryption=optional&keyring=env:APP_KEYS");
    let both = format!("{K1}\n{K2}");
    let run = |args: &[&str], keys: &str| {
        let out = command(dir.path(), args)
            .env("APP_KEYS", keys)
            .output()
            .unwrap();
        let (text, errors) = (stdout(&out), stderr(&out));
        assert!(out.status.success(), "{errors}");
        assert!(
            !text.contains("AAECAwQF") && !errors.contains("AAECAwQF"),
            "{text}"
        );
        text
    };
    let first = json(&run(
        &[
            "rekey", "--limit", "2", "--batch", "1", "--format", "json", "--url", &rotated,
        ],
        &both,
    ));
    assert_eq!(first["complete"], false, "{first}");
    assert_eq!(first["tenants"][0]["rewritten"], 2, "{first}");
    let table = run(&["rekey", "--url", &rotated], &both);
    assert!(table.contains("acme") && table.contains("k2"), "{table}");
    let status = json(&run(
        &["status", "--keys", "--format", "json", "--url", &rotated],
        K2,
    ));
    assert_eq!(
        status["keys"],
        json!([{"tenant": "acme", "by_key": {"k2": 5}, "unencrypted": 0}]),
        "{status}"
    );
    let again = json(&run(
        &[
            "rekey", "--tenant", "acme", "--format", "json", "--url", &rotated,
        ],
        K2,
    ));
    assert_eq!(again["tenants"][0]["rewritten"], 0, "{again}");
    assert_eq!(again["complete"], true, "{again}");
}
