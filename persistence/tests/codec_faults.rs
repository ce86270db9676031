//! The codec on a Redis server this test owns, paused and killed: calls through the
//! codec (its compare-and-swap and head-read loops included) end within the backend's
//! deadline with a typed error that shows no payload or key, work again once the server
//! is back, and what was acknowledged before a kill -9 (with `appendfsync always`)
//! reads back and can be rekeyed.

#![cfg(all(feature = "codec", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use persistence::codec::{EncryptionPolicy, RekeyOptions};
use persistence::redis::{RedisBackend, RedisConfig};
use persistence::{
    AppendOptions, CheckpointId, CheckpointSelector, Envelope, ErrorKind, ItemKey, Namespace,
    NewCheckpoint, Persistence, PutItemOptions, SessionKey, TenantId, ThreadKey,
};
use persistence_conformance::harness::dedicated::{DedicatedRedis, signal};
use serde_json::json;

mod common;
use common::{K1, K2, codec};
const SECRET: &str = "the patient's diagnosis";
const TIMEOUT: Duration = Duration::from_millis(800);

async fn sealed(url: String, keys: &str) -> Persistence {
    let backend = RedisBackend::connect(RedisConfig::new(url).with_timeout(TIMEOUT))
        .await
        .unwrap();
    Persistence::from_backend(backend).with_codec(codec(keys, EncryptionPolicy::Required))
}

fn value() -> Envelope {
    Envelope::new(1, json!({"note": SECRET}))
}

/// Runs `call`, which must fail within a few deadlines with a kind a paused server
/// gives, and show neither the payload nor a key.
async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = persistence::Result<T>>,
) {
    let started = Instant::now();
    let err = call.await.expect_err(what);
    let elapsed = started.elapsed();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Unavailable),
        "{what}: {err}"
    );
    assert!(elapsed < TIMEOUT * 6, "{what}: failed after {elapsed:?}");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(SECRET) && !text.contains("AAECAwQF"),
        "{what}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_fails_codec_calls_in_time_and_they_work_after() {
    let Some(server) = DedicatedRedis::start(&["--save", "", "--appendonly", "no"]) else {
        return;
    };
    let p = sealed(server.url(), K1).await;
    let t = TenantId::new("faults").unwrap();
    let (th, s) = (ThreadKey::new("th").unwrap(), SessionKey::new("s").unwrap());
    let (ns, key) = (Namespace::new(["n"]).unwrap(), ItemKey::new("k").unwrap());
    p.store
        .put(&t, &ns, &key, value(), PutItemOptions::default())
        .await
        .unwrap();

    signal(server.pid(), "STOP");
    let checkpoint = NewCheckpoint::new(CheckpointId::new(), 1, value());
    fails_in_time(
        "checkpoint put",
        p.checkpointer.put(&t, &th, checkpoint, Default::default()),
    )
    .await;
    // Without if_version the codec reads the version first, then puts by CAS.
    fails_in_time(
        "item put",
        p.store
            .put(&t, &ns, &key, value(), PutItemOptions::default()),
    )
    .await;
    // Without expect_head the codec reads the head first, then appends by it.
    fails_in_time(
        "append",
        p.sessions
            .append(&t, &s, vec![value()], AppendOptions::default()),
    )
    .await;
    fails_in_time("item get", p.store.get(&t, &ns, &key)).await;
    signal(server.pid(), "CONT");

    let head = p
        .sessions
        .append(&t, &s, vec![value()], AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(head, 1, "the refused append wrote nothing");
    let version = p
        .store
        .put(&t, &ns, &key, value(), PutItemOptions::default())
        .await
        .unwrap();
    assert_eq!(version, 2, "the refused put wrote nothing");
    assert_eq!(
        p.store.get(&t, &ns, &key).await.unwrap().unwrap().value,
        value()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sealed_writes_survive_kill_9_and_rekey_after() {
    let Some(mut server) = DedicatedRedis::start(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]) else {
        return;
    };
    let t = TenantId::new("faults").unwrap();
    let th = ThreadKey::new("th").unwrap();
    let s = SessionKey::new("s").unwrap();
    let p = sealed(server.url(), K1).await;
    let id = CheckpointId::new();
    p.checkpointer
        .put(
            &t,
            &th,
            NewCheckpoint::new(id, 1, value()),
            Default::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        p.sessions
            .append(&t, &s, vec![value()], AppendOptions::default())
            .await
            .unwrap();
    }
    p.close().await;

    server.kill_and_restart();
    let rotated = sealed(server.url(), &format!("{K1},{K2}")).await;
    let got = rotated
        .checkpointer
        .get(&t, &th, CheckpointSelector::Id(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.checkpoint.state, value());
    let report = rotated
        .rekey(&t, RekeyOptions::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!((report.rewritten, report.complete), (4, true), "{report:?}");

    server.kill_and_restart();
    let retired = sealed(server.url(), K2).await;
    let events = retired.sessions.read(&t, &s, 0, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.event == value()));
    let usage = retired.key_usage(&t).await.unwrap();
    assert_eq!(usage.not_under("k2"), 0, "{usage:?}");
}
