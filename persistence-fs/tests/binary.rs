//! Envelope bytes are stored raw (`Capabilities::binary_payloads`): a checkpoint state,
//! a pending write, a store value and a session event with 48 KiB of bytes each take
//! about that on disk, not base64's four thirds, and read back whole.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;

use persistence_conformance::checks::binary::write_one_of_each_kind;
use persistence_fs::{FsBackend, FsConfig};

const LEN: usize = 48 << 10;

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
    write_one_of_each_kind(&fs, LEN).await.unwrap();

    // Each payload's file (the checkpoint's journal holds a copy of the last put too)
    // is its bytes and some JSON; as base64 it would be a third bigger.
    let mut sizes = Vec::new();
    file_sizes(dir.path(), &mut sizes);
    let holding: Vec<_> = sizes.iter().filter(|(_, len)| *len >= LEN as u64).collect();
    assert!(holding.len() >= 4, "{sizes:?}");
    for (path, len) in holding {
        assert!(*len < (LEN + 1024) as u64, "{path}: {len} bytes for {LEN}");
    }
    assert!(fs.capabilities().binary_payloads);
}
