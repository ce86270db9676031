//! Listings page through catalogs (sorted ids on disk), not through directory scans:
//! a page costs O(page), whatever the number of entries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use persistence_core::{
    Checkpointer, Cursor, Envelope, ItemKey, ListItems, Namespace, SessionKey, SessionLog, Store,
    TenantId, ThreadKey,
};
use persistence_fs::{Durability, FsBackend, FsConfig};
use serde_json::json;

const N: usize = 300;

fn old_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800) // 2000-01-01
}

fn set_atime(dir: &Path, at: SystemTime) {
    let file = std::fs::File::open(dir).unwrap();
    file.set_times(std::fs::FileTimes::new().set_accessed(at))
        .unwrap();
}

fn atime(dir: &Path) -> SystemTime {
    std::fs::metadata(dir).unwrap().accessed().unwrap()
}

/// Whether reading a directory updates its access time here (not on `noatime` mounts).
fn reads_are_visible(base: &Path) -> bool {
    let probe = base.join("probe");
    std::fs::create_dir_all(probe.join("x")).unwrap();
    set_atime(&probe, old_time());
    let _ = std::fs::read_dir(&probe).unwrap().count();
    atime(&probe) != old_time()
}

struct Filled {
    backend: FsBackend,
    tenant: TenantId,
    ns: Namespace,
    ids: Vec<String>,
}

fn open(root: &Path) -> FsBackend {
    // Listing does not depend on durability; fsyncs would only slow the fill down.
    FsBackend::open(FsConfig::new(root).with_durability(Durability::None)).unwrap()
}

async fn filled(root: &Path) -> Filled {
    let backend = open(root);
    let tenant = TenantId::new("t").unwrap();
    let ns = Namespace::new(["ns"]).unwrap();
    // Mixed case and punctuation: the ids' byte order, not their file names' order.
    let mut ids: Vec<String> = (0..N)
        .map(|i| format!("{}{i:04}/x", ["a", "B", "c.", "Z_"][i % 4]))
        .collect();
    for id in &ids {
        backend
            .append(
                &tenant,
                &SessionKey::new(id.as_str()).unwrap(),
                vec![Envelope::new(1, json!(1))],
                Default::default(),
            )
            .await
            .unwrap();
        common::first_checkpoint(&backend, &tenant, &ThreadKey::new(id.as_str()).unwrap()).await;
        Store::put(
            &backend,
            &tenant,
            &ns,
            &ItemKey::new(id.as_str()).unwrap(),
            Envelope::new(1, json!(1)),
            Default::default(),
        )
        .await
        .unwrap();
    }
    ids.sort();
    Filled {
        backend,
        tenant,
        ns,
        ids,
    }
}

/// Every page of every listing, page size `limit`, as ids.
async fn all_pages(f: &Filled, limit: usize) -> [Vec<String>; 3] {
    let mut sessions = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = f
            .backend
            .list_sessions(&f.tenant, cursor, limit)
            .await
            .unwrap();
        sessions.extend(page.items.iter().map(|k| k.as_str().to_owned()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let mut threads = Vec::new();
    loop {
        let page = f
            .backend
            .list_threads(&f.tenant, cursor, limit)
            .await
            .unwrap();
        threads.extend(page.items.iter().map(|k| k.as_str().to_owned()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let mut items = Vec::new();
    loop {
        let query = ListItems {
            cursor,
            limit,
            ..Default::default()
        };
        let page = Store::list(&f.backend, &f.tenant, &f.ns, query)
            .await
            .unwrap();
        items.extend(page.items.iter().map(|i| i.key.as_str().to_owned()));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    [sessions, threads, items]
}

/// After the first listing (which builds each catalog from one scan), paging through
/// 300 sessions, threads and items 10 at a time never reads their directories: the
/// directories' access times stay put. The pages hold every entry once, in id order.
#[tokio::test]
async fn pages_do_not_read_the_directory() {
    let base = tempfile::tempdir().unwrap();
    if !reads_are_visible(base.path()) {
        eprintln!("SKIP: this filesystem does not record directory reads (noatime)");
        return;
    }
    let root = base.path().join("store");
    let f = filled(&root).await;
    assert_eq!(
        all_pages(&f, 1000).await,
        [f.ids.clone(), f.ids.clone(), f.ids.clone()]
    );
    let layout = f.backend.layout();
    let dirs = [
        layout.sessions(&f.tenant),
        layout.threads(&f.tenant),
        layout.namespace(&f.tenant, &f.ns).join("~items"),
    ];
    for dir in &dirs {
        set_atime(dir, old_time());
    }
    let [sessions, threads, items] = all_pages(&f, 10).await;
    for (kind, listed) in [
        ("sessions", sessions),
        ("threads", threads),
        ("items", items),
    ] {
        assert_eq!(listed, f.ids, "{kind}");
    }
    for dir in &dirs {
        assert_eq!(
            atime(dir),
            old_time(),
            "{} was read to list a page",
            dir.display()
        );
    }
}

/// A root written before catalogs (none on disk) lists everything: each catalog is
/// built from one scan of its directory; the same after a catalog is deleted.
#[tokio::test]
async fn a_root_without_catalogs_lists_everything() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let f = filled(&root).await;
    let layout = f.backend.layout();
    std::fs::remove_dir_all(layout.base().join("tenants/t/catalogs")).unwrap();
    std::fs::remove_dir_all(layout.namespace(&f.tenant, &f.ns).join("~catalog")).unwrap();
    let reopened = Filled {
        backend: open(&root),
        ..f
    };
    assert_eq!(
        all_pages(&reopened, 7).await,
        [
            reopened.ids.clone(),
            reopened.ids.clone(),
            reopened.ids.clone()
        ]
    );
    let layout = reopened.backend.layout();
    for built in [
        layout.base().join("tenants/t/catalogs/sessions/sorted"),
        layout.base().join("tenants/t/catalogs/threads/sorted"),
        layout
            .namespace(&reopened.tenant, &reopened.ns)
            .join("~catalog/sorted"),
    ] {
        assert!(built.is_file(), "{} was not built", built.display());
    }
}

/// Deleted entries leave the listings; a catalog line naming an entry that does not
/// exist (what a crash between noting a creation and making it leaves) is skipped.
#[tokio::test]
async fn deleted_and_unmade_entries_are_not_listed() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let mut f = filled(&root).await;
    let gone = f.ids.remove(0);
    SessionLog::delete(
        &f.backend,
        &f.tenant,
        &SessionKey::new(gone.as_str()).unwrap(),
    )
    .await
    .unwrap();
    f.backend
        .delete_thread(&f.tenant, &ThreadKey::new(gone.as_str()).unwrap())
        .await
        .unwrap();
    Store::delete(
        &f.backend,
        &f.tenant,
        &f.ns,
        &ItemKey::new(gone.as_str()).unwrap(),
        None,
    )
    .await
    .unwrap();
    // An entry noted but never made: remove its directory behind the catalog's back.
    let unmade = f.ids.remove(5);
    let layout = f.backend.layout();
    std::fs::remove_dir_all(layout.session(&f.tenant, &SessionKey::new(unmade.as_str()).unwrap()))
        .unwrap();
    std::fs::remove_dir_all(layout.thread(&f.tenant, &ThreadKey::new(unmade.as_str()).unwrap()))
        .unwrap();
    let item = layout
        .namespace(&f.tenant, &f.ns)
        .join("~items")
        .join(persistence_fs::layout::encode(&unmade));
    std::fs::remove_file(item).unwrap();
    assert_eq!(
        all_pages(&f, 3).await,
        [f.ids.clone(), f.ids.clone(), f.ids.clone()]
    );
}
