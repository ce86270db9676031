//! Envelope bytes are stored raw (`Capabilities::binary_payloads`): a checkpoint state,
//! a pending write, a store value and a session event with 48 KiB of bytes each take
//! about that on disk, not base64's four thirds, and read back whole.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;

use persistence_core::{
    ChannelName, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey, Namespace,
    NewCheckpoint, PutWrites, SessionKey, SessionLog, Store, TaskId, TenantId, ThreadKey, Write,
};
use persistence_fs::{FsBackend, FsConfig};
use serde_json::json;

const LEN: usize = 48 << 10;

fn payload(seed: u8) -> Envelope {
    // Bytes that do not compress (an LCG's high bits), as ciphertext.
    let mut state = u64::from(seed);
    let bytes: Vec<u8> = (0..LEN)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    Envelope::new(1, json!({"$h": seed})).with_bytes(bytes)
}

/// The sizes of the files below `dir`.
fn file_sizes(dir: &Path, out: &mut Vec<(String, u64)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            file_sizes(&entry.path(), out);
        } else {
            out.push((entry.path().display().to_string(), meta.len()));
        }
    }
}

#[tokio::test]
async fn bytes_are_stored_raw_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(FsConfig::new(dir.path())).unwrap();
    let (t, th) = (TenantId::new("t").unwrap(), ThreadKey::new("th").unwrap());
    let id = CheckpointId::new();
    let new = NewCheckpoint::new(id, 0, payload(1));
    Checkpointer::put(&fs, &t, &th, new, Default::default())
        .await
        .unwrap();
    let write = Write::new(ChannelName::new("c").unwrap(), payload(2));
    let writes = PutWrites::new(id, TaskId::new("task").unwrap(), vec![write]);
    fs.put_writes(&t, &th, writes).await.unwrap();
    let (ns, key) = (Namespace::new(["n"]).unwrap(), ItemKey::new("k").unwrap());
    Store::put(&fs, &t, &ns, &key, payload(3), Default::default())
        .await
        .unwrap();
    let session = SessionKey::new("s").unwrap();
    fs.append(&t, &session, vec![payload(4)], Default::default())
        .await
        .unwrap();

    // Each payload's file (the checkpoint's journal holds a copy of the last put too)
    // is its bytes and some JSON; as base64 it would be a third bigger.
    let mut sizes = Vec::new();
    file_sizes(dir.path(), &mut sizes);
    let holding: Vec<_> = sizes.iter().filter(|(_, len)| *len >= LEN as u64).collect();
    assert!(holding.len() >= 4, "{sizes:?}");
    for (path, len) in holding {
        assert!(*len < (LEN + 1024) as u64, "{path}: {len} bytes for {LEN}");
    }

    let got = Checkpointer::get(&fs, &t, &th, CheckpointSelector::Latest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.checkpoint.state, payload(1));
    assert_eq!(got.pending_writes[0].value, payload(2));
    let item = Store::get(&fs, &t, &ns, &key).await.unwrap().unwrap();
    assert_eq!(item.value, payload(3));
    let events = fs.read(&t, &session, 0, 10).await.unwrap();
    assert_eq!(events[0].event, payload(4));
    assert!(fs.capabilities().binary_payloads);
}
