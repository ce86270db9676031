//! `rekey` on every backend (memory, fs, Postgres, Redis, a Redis Cluster): after a key
//! rotation every stored payload moves to the new key (the old one can then leave the
//! keyring), plaintext rows from before the codec are encrypted, a bounded run resumes
//! where it stopped, and writers running meanwhile lose nothing.

#![cfg(feature = "codec")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use persistence::codec::{CodecConfig, EncryptionPolicy, RekeyOptions, RekeyReport};
use persistence::{
    AppendOptions, ChannelName, CheckpointId, CheckpointSelector, Envelope, ErrorKind, ItemKey,
    Namespace, NewCheckpoint, Persistence, PutItemOptions, PutWrites, SessionKey, TaskId, TenantId,
    ThreadKey, Write,
};
use serde_json::json;

mod common;
use common::{K1, K2, codec, every_backend};

/// `raw` through a codec of `keys` (the last one writes), encryption required.
fn sealed(raw: &Persistence, keys: &str) -> Persistence {
    sealed_with(raw, keys, EncryptionPolicy::Required)
}

fn sealed_with(raw: &Persistence, keys: &str, policy: EncryptionPolicy) -> Persistence {
    raw.clone().with_codec(codec(keys, policy))
}

/// A tenant of this test process alone (servers are shared between test runs).
fn tenant(name: &str) -> TenantId {
    TenantId::new(format!("rekey-{name}-{}", std::process::id())).unwrap()
}

fn state(n: u64) -> Envelope {
    Envelope::new(2, json!({"n": n, "text": "agent state ".repeat(40)}))
}

fn thread(n: u64) -> ThreadKey {
    ThreadKey::new(format!("thread-{n}")).unwrap()
}

fn session(n: u64) -> SessionKey {
    SessionKey::new(format!("session-{n}")).unwrap()
}

fn ns() -> Namespace {
    Namespace::new(["memories"]).unwrap()
}

fn key(n: u64) -> ItemKey {
    ItemKey::new(format!("item-{n}")).unwrap()
}

/// What one tenant holds, read through `p`: checkpoint states and writes, events,
/// items (value and expiry), in a comparable form.
async fn contents(p: &Persistence, t: &TenantId) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let threads = p
        .checkpointer
        .list_threads(t, Default::default())
        .await
        .unwrap();
    for th in threads.items {
        let page = p
            .checkpointer
            .list(
                t,
                &th,
                persistence::ListCheckpoints::default().with_limit(1000),
            )
            .await
            .unwrap();
        for c in page.items {
            let tuple = p
                .checkpointer
                .get(t, &th, CheckpointSelector::Id(c.id))
                .await
                .unwrap()
                .unwrap();
            let writes: Vec<_> = tuple
                .pending_writes
                .iter()
                .map(|w| json!([w.task_id.as_str(), w.index, w.value.data]))
                .collect();
            out.insert(
                format!("{th}/{}", c.id),
                json!([c.state.schema_version, c.state.data, writes]),
            );
        }
    }
    let sessions = p
        .sessions
        .list_sessions(t, Default::default())
        .await
        .unwrap();
    for s in sessions.items {
        for e in p.sessions.read(t, &s, 0, 10_000).await.unwrap() {
            out.insert(
                format!("{s}#{}", e.seq),
                json!([e.event.data, e.appended_at.0]),
            );
        }
    }
    for item in p
        .store
        .list(t, &ns(), persistence::ListItems::default().with_limit(1000))
        .await
        .unwrap()
        .items
    {
        out.insert(format!("item {}", item.key), item.value.data);
    }
    out
}

/// Writes, through `p`, 3 threads of 3 checkpoints (each with 2 pending writes), 3
/// sessions of 4 events and 4 items (one with a TTL); returns how many payloads.
async fn fill(p: &Persistence, t: &TenantId) -> u64 {
    let mut payloads = 0;
    for th in 0..3 {
        for step in 0..3 {
            let id = CheckpointId::new();
            let c = NewCheckpoint::new(id, step, state(th * 10 + step as u64));
            p.checkpointer
                .put(t, &thread(th), c, Default::default())
                .await
                .unwrap();
            let writes = (0..2)
                .map(|i| {
                    Write::new(
                        ChannelName::new("messages").unwrap(),
                        Envelope::new(1, json!({"write": i, "step": step})),
                    )
                })
                .collect();
            let task = TaskId::new("task").unwrap();
            p.checkpointer
                .put_writes(t, &thread(th), PutWrites::new(id, task, writes))
                .await
                .unwrap();
            payloads += 3;
        }
    }
    for s in 0..3 {
        let events = (0..4)
            .map(|i| Envelope::new(1, json!({"role": "user", "turn": i})))
            .collect();
        p.sessions
            .append(t, &session(s), events, AppendOptions::default())
            .await
            .unwrap();
        payloads += 4;
    }
    for i in 0..4 {
        let ttl = (i == 0).then_some(Duration::from_secs(3600));
        let value = Envelope::new(1, json!({"fact": i, "text": "remember ".repeat(50)}));
        p.store
            .put(
                t,
                &ns(),
                &key(i),
                value,
                PutItemOptions::default().with_ttl(ttl),
            )
            .await
            .unwrap();
        payloads += 1;
    }
    payloads
}

fn ignore(_: &RekeyReport) {}

/// After a rotation, rekey moves every payload to the new key: the old key can leave
/// the keyring and everything still reads the same, an item's expiry included. Rows
/// written before the codec are encrypted too. A second run rewrites nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_moves_every_payload_to_the_writer_key() {
    let (backends, _dir) = every_backend().await;
    for (name, raw) in backends {
        let t = tenant("all");
        let old = sealed(&raw, K1);
        let mut payloads = fill(&old, &t).await;
        // A row from before the codec.
        raw.sessions
            .append(
                &t,
                &session(9),
                vec![Envelope::new(1, json!({"plain": true}))],
                AppendOptions::default(),
            )
            .await
            .unwrap();
        payloads += 1;
        let before = contents(
            &sealed_with(&raw, &format!("{K1},{K2}"), EncryptionPolicy::Optional),
            &t,
        )
        .await;
        let expiry = raw
            .store
            .get(&t, &ns(), &key(0))
            .await
            .unwrap()
            .unwrap()
            .expires_at;

        let rotated = sealed(&raw, &format!("{K1},{K2}"));
        let mut reports = Vec::new();
        let report = rotated
            .rekey(&t, RekeyOptions::default().with_batch(4), &mut |r| {
                reports.push(r.clone())
            })
            .await
            .unwrap();
        assert!(report.complete, "{name}: {report:?}");
        assert_eq!(report.key, "k2", "{name}");
        assert_eq!(report.rewritten, payloads, "{name}: {report:?}");
        assert_eq!(report.changed_meanwhile, 0, "{name}: {report:?}");
        assert!(
            reports.len() > 5 && reports.windows(2).all(|w| w[0].rewritten <= w[1].rewritten),
            "{name}: progress after each batch: {reports:?}"
        );

        let usage = rotated.key_usage(&t).await.unwrap();
        assert_eq!(usage.unencrypted, 0, "{name}: {usage:?}");
        assert_eq!(
            usage.by_key.into_iter().collect::<Vec<_>>(),
            vec![("k2".to_string(), payloads)],
            "{name}"
        );
        // k1 retired: everything still reads, the same.
        let retired = sealed(&raw, K2);
        assert_eq!(contents(&retired, &t).await, before, "{name}");
        let after = raw.store.get(&t, &ns(), &key(0)).await.unwrap().unwrap();
        let (was, is) = (expiry.unwrap().0, after.expires_at.unwrap().0);
        assert!(was.abs_diff(is) < 5_000, "{name}: expiry {was} became {is}");

        let again = rotated
            .rekey(&t, RekeyOptions::default(), &mut ignore)
            .await
            .unwrap();
        assert_eq!(
            (again.rewritten, again.examined, again.complete),
            (0, payloads, true),
            "{name}"
        );
    }
}

/// A bounded run stops after its limit, and running again finishes the rest: nothing
/// records where it stopped, payloads under the writer key are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_resumes_where_it_stopped() {
    let (backends, _dir) = every_backend().await;
    for (name, raw) in backends {
        let t = tenant("resume");
        let payloads = fill(&sealed(&raw, K1), &t).await;
        let rotated = sealed(&raw, &format!("{K1},{K2}"));
        let first = rotated
            .rekey(&t, RekeyOptions::default().with_limit(10), &mut ignore)
            .await
            .unwrap();
        assert_eq!((first.rewritten, first.complete), (10, false), "{name}");
        let usage = rotated.key_usage(&t).await.unwrap();
        assert_eq!(usage.by_key.get("k1"), Some(&(payloads - 10)), "{name}");
        assert_eq!(usage.not_under("k2"), payloads - 10, "{name}");

        let rest = rotated
            .rekey(&t, RekeyOptions::default(), &mut ignore)
            .await
            .unwrap();
        assert_eq!(
            (rest.rewritten, rest.complete),
            (payloads - 10, true),
            "{name}"
        );
        let usage = rotated.key_usage(&t).await.unwrap();
        assert_eq!(usage.not_under("k2"), 0, "{name}: {usage:?}");
    }
}

/// Rotation under load: writers append to the sessions, put checkpoints and writes in
/// the threads and overwrite the items that rekey is rewriting, through the rotated
/// codec. They are all running before the rekey starts, and after its first batch the
/// rekey waits for them to finish three more rounds, so writes land in the middle of
/// the run on every backend. Afterwards every payload is under the new key and every
/// acknowledged write reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_loses_no_write() {
    let (backends, _dir) = every_backend().await;
    for (name, raw) in backends {
        let t = tenant("load");
        fill(&sealed(&raw, K1), &t).await;
        let rotated = sealed(&raw, &format!("{K1},{K2}"));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..3u64 {
            let (p, t, stop, rounds) = (rotated.clone(), t.clone(), stop.clone(), rounds.clone());
            writers.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || round < 5 {
                    round += 1;
                    let event = Envelope::new(1, json!({"writer": w, "round": round}));
                    let head = p
                        .sessions
                        .append(
                            &t,
                            &session(w),
                            vec![event.clone()],
                            AppendOptions::default(),
                        )
                        .await
                        .unwrap();
                    acknowledged.push((format!("{}#{head}", session(w)), event.data));
                    let id = CheckpointId::new();
                    let c = NewCheckpoint::new(id, 100 + round as i64, state(round));
                    p.checkpointer
                        .put(&t, &thread(w), c, Default::default())
                        .await
                        .unwrap();
                    acknowledged.push((format!("{}/{id}", thread(w)), state(round).data));
                    let value = Envelope::new(1, json!({"writer": w, "round": round}));
                    p.store
                        .put(&t, &ns(), &key(w), value.clone(), PutItemOptions::default())
                        .await
                        .unwrap();
                    acknowledged.push((format!("item {}", key(w)), value.data));
                    rounds.fetch_add(1, Ordering::SeqCst);
                }
                acknowledged
            }));
        }
        wait_for(&rounds, 3, name).await;
        let mut first_batch = None;
        let mut writes_meanwhile = |so_far: &RekeyReport| {
            if first_batch.is_none() {
                first_batch = Some(so_far.examined);
                let seen = rounds.load(Ordering::SeqCst);
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                // A blocking wait (the callback is not async); block_in_place keeps
                // it from holding up tasks queued on the thread it blocks.
                tokio::task::block_in_place(|| {
                    while rounds.load(Ordering::SeqCst) < seen + 3 {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "{name}: writers stalled"
                        );
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
            }
        };
        let report = rotated
            .rekey(
                &t,
                RekeyOptions::default().with_batch(2),
                &mut writes_meanwhile,
            )
            .await
            .unwrap();
        let first_batch = first_batch.unwrap_or(report.examined);
        assert!(
            report.examined > first_batch,
            "{name}: payloads were examined after the writes in the middle ({first_batch} of {report:?})"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        for writer in writers {
            acknowledged.extend(writer.await.unwrap());
        }
        assert!(report.complete, "{name}: {report:?}");

        let usage = rotated.key_usage(&t).await.unwrap();
        assert_eq!(
            usage.not_under("k2"),
            0,
            "{name}: {usage:?} after {report:?}"
        );
        let now = contents(&sealed(&raw, K2), &t).await;
        // The last acknowledged value of each item; every event and checkpoint.
        let mut expected = BTreeMap::new();
        for (place, data) in acknowledged {
            expected.insert(place, data);
        }
        for (place, data) in expected {
            let stored = now
                .get(&place)
                .unwrap_or_else(|| panic!("{name}: acknowledged {place} is gone"));
            let stored = if place.starts_with("item ") {
                stored
            } else if place.contains('#') {
                &stored[0]
            } else {
                &stored[1]
            };
            assert_eq!(stored, &data, "{name}: {place}");
        }
    }
}

/// Waits until `rounds` reaches `at_least` (the writers are running).
async fn wait_for(rounds: &AtomicU64, at_least: u64, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rounds.load(Ordering::SeqCst) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: writers stalled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Without a codec that encrypts, rekey says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_needs_an_encrypting_codec() {
    let raw = persistence::open("memory://").await.unwrap();
    let t = tenant("none");
    let err = raw
        .rekey(&t, RekeyOptions::default(), &mut ignore)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let compressing = raw
        .clone()
        .with_codec(CodecConfig::default().with_compression(10));
    let err = compressing
        .rekey(&t, RekeyOptions::default(), &mut ignore)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = sealed(&raw, K1)
        .rekey(&t, RekeyOptions::default().with_batch(0), &mut ignore)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// A codec named in the backend's own config (`FsConfig::with_codec`) is the one
/// `key_usage` and `rekey` see: payloads are counted as stored, and a rotation moves
/// them all to the new key.
#[cfg(feature = "fs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_sees_a_codec_in_the_backend_config() {
    use persistence::fs::{FsBackend, FsConfig};
    let dir = tempfile::tempdir().unwrap();
    let open = |keys: &str| {
        let config = FsConfig::new(dir.path()).with_codec(codec(keys, EncryptionPolicy::Required));
        Persistence::from_backend(FsBackend::open(config).unwrap())
    };
    let t = tenant("config");
    let old = open(K1);
    let payloads = fill(&old, &t).await;
    let before = contents(&old, &t).await;
    let usage = old.key_usage(&t).await.unwrap();
    assert_eq!(
        (
            usage.by_key.into_iter().collect::<Vec<_>>(),
            usage.unencrypted
        ),
        (vec![("k1".to_string(), payloads)], 0),
        "counted as stored"
    );

    let rotated = open(&format!("{K1},{K2}"));
    let report = rotated
        .rekey(&t, RekeyOptions::default().with_batch(4), &mut ignore)
        .await
        .unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.rewritten, payloads, "{report:?}");
    let usage = rotated.key_usage(&t).await.unwrap();
    assert_eq!(
        usage.by_key.into_iter().collect::<Vec<_>>(),
        vec![("k2".to_string(), payloads)]
    );
    assert_eq!(contents(&open(K2), &t).await, before, "k1 retired");
}
