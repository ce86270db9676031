//! Store items as logs of their versions: a put appends to its item's file (one write,
//! one fdatasync, no rename), the file is rewritten once it grows, items written by
//! formats 1–3 (a bare JSON file) read and are replaced, and a put that fails on a full
//! disk leaves the item as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use persistence_core::{Envelope, ErrorKind, ItemKey, Namespace, PutItemOptions, Store, TenantId};
use persistence_fs::{FsBackend, FsConfig};
use serde_json::json;

struct Fixture {
    backend: FsBackend,
    t: TenantId,
    ns: Namespace,
    key: ItemKey,
    file: PathBuf,
}

fn fixture(root: &Path) -> Fixture {
    let backend = FsBackend::open(FsConfig::new(root)).unwrap();
    let (t, ns, key) = (
        TenantId::new("t").unwrap(),
        Namespace::new(["ns"]).unwrap(),
        ItemKey::new("k").unwrap(),
    );
    let file = backend.layout().namespace(&t, &ns).join("~items").join("k");
    Fixture {
        backend,
        t,
        ns,
        key,
        file,
    }
}

impl Fixture {
    async fn put(
        &self,
        value: serde_json::Value,
        if_version: Option<u64>,
    ) -> persistence_core::Result<u64> {
        let options = PutItemOptions::default().with_if_version(if_version);
        Store::put(
            &self.backend,
            &self.t,
            &self.ns,
            &self.key,
            Envelope::new(1, value),
            options,
        )
        .await
    }
    async fn get(&self) -> persistence_core::Result<Option<(u64, serde_json::Value)>> {
        Ok(Store::get(&self.backend, &self.t, &self.ns, &self.key)
            .await?
            .map(|i| (i.version, i.value.data)))
    }
}

/// Puts after the first append to the item's file (same inode: no temp file and rename,
/// so no directory fsync), every version reads back, and the file is rewritten with the
/// latest version alone once it has grown: it stays small however many puts it takes.
#[tokio::test]
async fn a_put_appends_to_its_item_file() {
    let root = tempfile::tempdir().unwrap();
    let f = fixture(root.path());
    f.put(json!({"v": 1}), None).await.unwrap();
    let first = std::fs::metadata(&f.file).unwrap();
    for v in 2..=10u64 {
        assert_eq!(f.put(json!({"v": v}), Some(v - 1)).await.unwrap(), v);
        assert_eq!(f.get().await.unwrap(), Some((v, json!({"v": v}))));
    }
    let now = std::fs::metadata(&f.file).unwrap();
    assert_eq!(now.ino(), first.ino(), "a put replaced the file");
    assert!(
        now.len() > first.len() * 5,
        "{} vs {}",
        now.len(),
        first.len()
    );

    let mut inodes = std::collections::BTreeSet::new();
    for v in 11..=1000u64 {
        f.put(json!({"v": v, "pad": "p".repeat(200)}), Some(v - 1))
            .await
            .unwrap();
        let meta = std::fs::metadata(&f.file).unwrap();
        assert!(
            meta.len() < 66 << 10,
            "the item file grew to {}",
            meta.len()
        );
        inodes.insert(meta.ino());
    }
    assert!(inodes.len() > 1, "the file was never rewritten");
    assert!(
        inodes.len() < 50,
        "rewritten {} times in 990 puts",
        inodes.len()
    );
    assert_eq!(f.get().await.unwrap().unwrap().0, 1000);
}

/// An item written by formats 1–3 is a bare JSON file: it reads as it is, and the next
/// put continues its versions.
#[tokio::test]
async fn an_item_of_an_older_format_reads_and_is_replaced() {
    let root = tempfile::tempdir().unwrap();
    let f = fixture(root.path());
    f.put(json!({"v": 1}), None).await.unwrap();
    f.put(json!({"v": 2}), Some(1)).await.unwrap();
    // The latest version's JSON, as format 3 stored it: the whole file.
    let log = std::fs::read(&f.file).unwrap();
    let json_start = log
        .windows(b"{\"namespace\"".len())
        .rposition(|w| w == b"{\"namespace\"")
        .unwrap();
    let json_end = log.len() - 1; // the commit byte
    std::fs::write(&f.file, &log[json_start..json_end]).unwrap();
    assert!(std::fs::read(&f.file).unwrap().starts_with(b"{"));

    assert_eq!(f.get().await.unwrap(), Some((2, json!({"v": 2}))));
    assert_eq!(f.put(json!({"v": 3}), Some(2)).await.unwrap(), 3);
    assert_eq!(f.get().await.unwrap(), Some((3, json!({"v": 3}))));
    assert!(!std::fs::read(&f.file).unwrap().starts_with(b"{"));
}

/// A flipped byte in an item's log is `Corrupt` naming the key, not an older version;
/// an unconditional put replaces the damage, a conditional one is refused.
#[tokio::test]
async fn damage_to_an_item_log_is_corrupt_and_can_be_replaced() {
    let root = tempfile::tempdir().unwrap();
    let f = fixture(root.path());
    for v in 1..=3u64 {
        f.put(json!({"v": v}), None).await.unwrap();
    }
    let mut bytes = std::fs::read(&f.file).unwrap();
    let at = bytes.len() - 4; // inside the last version's JSON
    bytes[at] ^= 0x20;
    std::fs::write(&f.file, &bytes).unwrap();
    let e = f.get().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("\"k\""), "{e}");
    let e = f.put(json!({"v": 4}), Some(3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(f.put(json!({"v": "new"}), None).await.unwrap(), 1);
    assert_eq!(f.get().await.unwrap(), Some((1, json!({"v": "new"}))));
}

/// On a full disk a put fails and the item is as it was, then puts work again once
/// space is free, continuing the versions (no half-written version is ever read).
#[tokio::test]
async fn a_failed_put_on_a_full_disk_leaves_the_item() {
    let Some(disk) = common::SmallDisk::mount("1m") else {
        return;
    };
    let f = fixture(&disk.path().join("store"));
    f.put(json!({"v": 1}), None).await.unwrap();
    f.put(json!({"v": 2}), Some(1)).await.unwrap();
    let before = std::fs::read(&f.file).unwrap();
    let filler = common::fill(disk.path());
    let big = json!({"v": 3, "pad": "z".repeat(12_000)});
    let e = f.put(big.clone(), Some(2)).await.unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Corrupt, "{e}");
    // The part of the record that landed was cut back: the file is as it was.
    assert_eq!(std::fs::read(&f.file).unwrap(), before);
    assert_eq!(f.get().await.unwrap(), Some((2, json!({"v": 2}))));
    std::fs::remove_file(filler).unwrap();
    assert_eq!(f.get().await.unwrap(), Some((2, json!({"v": 2}))));
    assert_eq!(f.put(big.clone(), Some(2)).await.unwrap(), 3);
    assert_eq!(f.get().await.unwrap(), Some((3, big)));
}

/// An item written with a TTL before the TTL was stored (no `ttl_ms`) refreshes by the
/// time from its last write to its expiry, which was its TTL; the refresh stores it.
#[tokio::test]
async fn an_item_written_before_ttls_were_stored_refreshes_by_its_old_ttl() {
    use persistence_core::{GetItemOptions, Timestamp};

    let root = tempfile::tempdir().unwrap();
    let f = fixture(root.path());
    f.put(json!({"v": 1}), None).await.unwrap();
    let now = Timestamp::now().0;
    let (updated, expires) = (now - 50_000, now + 10_000);
    let old = json!({
        "namespace": ["ns"], "key": "k", "value": {"schema_version": 1, "data": {"v": 1}},
        "version": 1, "created_at": updated, "updated_at": updated, "expires_at": expires,
    });
    std::fs::write(&f.file, serde_json::to_vec(&old).unwrap()).unwrap();

    let refresh = GetItemOptions::default().with_refresh_ttl(true);
    let item = f
        .backend
        .get_with(&f.t, &f.ns, &f.key, refresh)
        .await
        .unwrap()
        .unwrap();
    let moved_to = item.expires_at.unwrap().0;
    assert!(
        (now + 59_000..now + 70_000).contains(&moved_to),
        "a 60 s TTL moved the expiry to now + {} ms",
        moved_to as i64 - now as i64
    );
    assert_eq!((item.version, item.updated_at.0), (1, updated));
    let stored = std::fs::read(&f.file).unwrap();
    assert!(
        stored
            .windows(b"\"ttl_ms\":60000".len())
            .any(|w| w == b"\"ttl_ms\":60000"),
        "the refresh did not store the TTL"
    );
}
