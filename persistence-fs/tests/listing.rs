//! Listings page through catalogs (sorted ids on disk), not through directory scans:
//! a page costs O(page), whatever the number of entries.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use persistence_core::{
    Checkpointer, Envelope, ItemKey, ListItems, ListSessions, ListThreads, Namespace, SessionKey,
    SessionLog, Store, TenantId, ThreadKey,
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
    common::every_listed_id(&f.backend, &f.tenant, &f.ns, limit).await
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

/// Every page of `list_namespaces` for `query`, page size `limit`.
async fn all_namespaces(
    backend: &FsBackend,
    t: &TenantId,
    mut query: persistence_core::ListNamespaces,
    limit: usize,
) -> Vec<Namespace> {
    let mut out = Vec::new();
    query.limit = limit;
    loop {
        let page = Store::list_namespaces(backend, t, query.clone())
            .await
            .unwrap();
        out.extend(page.items);
        query.cursor = page.next;
        if query.cursor.is_none() {
            return out;
        }
    }
}

/// Namespaces page through the tenant's namespace catalog: every page in order, with
/// prefixes and depth limits, namespaces holding only expired items left out, and the
/// store's directories not read once the catalog exists.
#[tokio::test]
async fn namespaces_page_through_their_catalog() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let backend = open(&root);
    let t = TenantId::new("t").unwrap();
    let mut all = Vec::new();
    for i in 0..120 {
        let labels: Vec<String> = match i % 3 {
            0 => vec!["n".into(), format!("{i:03}")],
            1 => vec!["n".into(), format!("{:03}", i - 1), "deep".into()],
            _ => vec![format!("Other{i:03}")],
        };
        all.push(Namespace::new(labels).unwrap());
    }
    for ns in &all {
        let key = ItemKey::new("k").unwrap();
        Store::put(
            &backend,
            &t,
            ns,
            &key,
            Envelope::new(1, json!(1)),
            Default::default(),
        )
        .await
        .unwrap();
    }
    // A namespace whose only item has expired is not listed.
    let expired = Namespace::new(["n", "expired"]).unwrap();
    let options = persistence_core::PutItemOptions::default().with_ttl(Duration::from_millis(1));
    let key = ItemKey::new("k").unwrap();
    Store::put(
        &backend,
        &t,
        &expired,
        &key,
        Envelope::new(1, json!(1)),
        options,
    )
    .await
    .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    all.sort();
    let query = persistence_core::ListNamespaces::default();
    assert_eq!(all_namespaces(&backend, &t, query.clone(), 1000).await, all);
    let store_dirs = [
        backend.layout().store(&t),
        backend
            .layout()
            .namespace(&t, &Namespace::new(["n"]).unwrap()),
    ];
    let reads_visible = reads_are_visible(base.path());
    for dir in &store_dirs {
        set_atime(dir, old_time());
    }
    assert_eq!(all_namespaces(&backend, &t, query.clone(), 7).await, all);
    let n = Namespace::new(["n"]).unwrap();
    let under_n = persistence_core::ListNamespaces::default().with_prefix(n.clone());
    let want: Vec<Namespace> = all
        .iter()
        .filter(|ns| ns.starts_with(&n))
        .cloned()
        .collect();
    assert_eq!(all_namespaces(&backend, &t, under_n.clone(), 4).await, want);
    for depth in [1, 2] {
        let query = persistence_core::ListNamespaces::default().with_max_depth(depth);
        let mut want: Vec<Namespace> = all.iter().map(|ns| ns.truncated(depth)).collect();
        want.dedup();
        for limit in [1, 3, 1000] {
            assert_eq!(
                all_namespaces(&backend, &t, query.clone(), limit).await,
                want,
                "depth {depth}, pages of {limit}"
            );
        }
    }
    if reads_visible {
        for dir in &store_dirs {
            assert_eq!(
                atime(dir),
                old_time(),
                "{} was read to list a page",
                dir.display()
            );
        }
    } else {
        eprintln!("SKIP (atime part): this filesystem does not record directory reads");
    }
}

/// Listing what does not exist (a tenant, a namespace) finds nothing and creates
/// nothing: no tenant appears in `tenants()` because something listed it.
#[tokio::test]
async fn listing_creates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let backend = open(&base.path().join("store"));
    let ghost = TenantId::new("ghost").unwrap();
    let ns = Namespace::new(["nowhere"]).unwrap();
    assert!(
        backend
            .list_sessions(&ghost, ListSessions::default().with_limit(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        backend
            .list_threads(&ghost, ListThreads::default().with_limit(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let items = Store::list(&backend, &ghost, &ns, ListItems::default())
        .await
        .unwrap();
    assert!(items.items.is_empty());
    let query = persistence_core::ListNamespaces::default();
    let namespaces = Store::list_namespaces(&backend, &ghost, query)
        .await
        .unwrap();
    assert!(namespaces.items.is_empty());
    assert!(backend.tenants().await.unwrap().is_empty());
    assert!(!backend.layout().tenant(&ghost).exists());
}

/// The ids a catalog's `sorted` file holds.
fn catalogued(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("sorted"))
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit_once('\t').map(|(id, _)| id.to_owned()))
        .collect()
}

/// `gc` (`Maintenance::purge_expired`) rebuilds the catalogs from their directories: an id
/// whose entry vanished behind the catalog's back is dropped (after two rounds at most:
/// the first folds the journal, which may hold a creation still in flight), and every
/// other entry stays listed.
#[tokio::test]
async fn gc_drops_ids_whose_entries_are_gone() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let mut f = filled(&root).await;
    let gone = f.ids.remove(3);
    let layout = f.backend.layout();
    std::fs::remove_dir_all(layout.session(&f.tenant, &SessionKey::new(gone.as_str()).unwrap()))
        .unwrap();
    std::fs::remove_dir_all(layout.thread(&f.tenant, &ThreadKey::new(gone.as_str()).unwrap()))
        .unwrap();
    let items = layout.namespace(&f.tenant, &f.ns).join("~items");
    std::fs::remove_file(items.join(persistence_fs::layout::encode(&gone))).unwrap();
    for _ in 0..2 {
        persistence_core::Maintenance::purge_expired(&f.backend)
            .await
            .unwrap();
    }
    let catalogs = [
        layout.base().join("tenants/t/catalogs/sessions"),
        layout.base().join("tenants/t/catalogs/threads"),
        layout.namespace(&f.tenant, &f.ns).join("~catalog"),
    ];
    for dir in &catalogs {
        assert_eq!(catalogued(dir), f.ids, "{}", dir.display());
    }
    let namespaces = catalogued(&layout.base().join("tenants/t/catalogs/namespaces"));
    assert_eq!(namespaces, ["ns"]);
    assert_eq!(
        all_pages(&f, 50).await,
        [f.ids.clone(), f.ids.clone(), f.ids.clone()]
    );
}

/// Sessions a listing reads without their lock or with it: a live one, one whose TTL
/// ran out (hidden, though nothing read it since), one trimmed empty (still listed: its
/// ordinals are kept), one whose index is stale (listed after the locked check repairs
/// it).
#[tokio::test]
async fn listed_sessions_are_exactly_the_live_ones() {
    let base = tempfile::tempdir().unwrap();
    let backend = open(&base.path().join("store"));
    let t = TenantId::new("t").unwrap();
    let append = async |name: &str, ttl: Option<Duration>| {
        let options = persistence_core::AppendOptions::default().with_ttl(ttl);
        let events = vec![Envelope::new(1, json!(1)), Envelope::new(1, json!(2))];
        backend
            .append(&t, &SessionKey::new(name).unwrap(), events, options)
            .await
            .unwrap();
    };
    append("live", None).await;
    append("expiring", Some(Duration::from_millis(50))).await;
    append("trimmed", None).await;
    append("stale-index", None).await;
    let trimmed = SessionKey::new("trimmed").unwrap();
    backend.trim_before(&t, &trimmed, 3).await.unwrap();
    let stale = SessionKey::new("stale-index").unwrap();
    let index = backend.layout().session(&t, &stale).join("index");
    std::fs::write(&index, 7u64.to_le_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    let listed: Vec<String> = common::every_page(async |c| {
        backend
            .list_sessions(&t, ListSessions::default().with_cursor(c).with_limit(2))
            .await
            .unwrap()
    })
    .await
    .iter()
    .map(|k| k.as_str().to_owned())
    .collect();
    assert_eq!(listed, ["live", "stale-index", "trimmed"]);
}
