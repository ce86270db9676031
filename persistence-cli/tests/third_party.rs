//! A backend defined here, outside the workspace's crates, through the published API
//! only: it passes the published conformance suite (its missing search shown as ignored
//! checks), opens through `persistence::open` once its URL scheme is registered, and the
//! `persistence` command works on it.
//!
//! `Ledger` keeps its data in a `MemoryBackend` (any storage would do); what it shows is
//! that the traits, result constructors and helpers a backend needs are all public, and
//! that the facade and the CLI reach a backend only through the traits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use async_trait::async_trait;
use persistence::backend::validate_limit;
use persistence::{
    AppendOptions, Capabilities, Checkpoint, CheckpointSelector, CheckpointTuple, Checkpointer,
    Envelope, Error, Item, ItemKey, Lease, ListCheckpoints, ListItems, ListNamespaces,
    ListSessions, ListThreads, Lock, LockKey, Maintenance, MemoryBackend, Namespace, NewCheckpoint,
    OpenRequest, Page, Persistence, PurgeCounts, PutCheckpointOptions, PutItemOptions, PutWrites,
    Result, SearchItems, SessionEvent, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use persistence_conformance::{Fixture, TimeControl, conformance_suite};

/// The third-party backend: everything but search.
#[derive(Clone)]
struct Ledger(MemoryBackend);

const LEDGER: Capabilities = Capabilities::none().with_ttl(true);

#[async_trait]
impl Checkpointer for Ledger {
    async fn put(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        c: NewCheckpoint,
        o: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        Checkpointer::put(&self.0, t, th, c, o).await
    }
    async fn get(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        s: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        Checkpointer::get(&self.0, t, th, s).await
    }
    async fn list(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        q: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        Checkpointer::list(&self.0, t, th, q).await
    }
    async fn put_writes(&self, t: &TenantId, th: &ThreadKey, r: PutWrites) -> Result<()> {
        self.0.put_writes(t, th, r).await
    }
    async fn delete_thread(&self, t: &TenantId, th: &ThreadKey) -> Result<bool> {
        self.0.delete_thread(t, th).await
    }
    async fn prune(&self, t: &TenantId, th: &ThreadKey, keep: usize) -> Result<u64> {
        self.0.prune(t, th, keep).await
    }
    async fn copy_thread(&self, t: &TenantId, from: &ThreadKey, to: &ThreadKey) -> Result<u64> {
        self.0.copy_thread(t, from, to).await
    }
    async fn list_threads(&self, t: &TenantId, q: ListThreads) -> Result<Page<ThreadKey>> {
        self.0.list_threads(t, q).await
    }
}

#[async_trait]
impl Store for Ledger {
    async fn put(
        &self,
        t: &TenantId,
        ns: &Namespace,
        k: &ItemKey,
        v: Envelope,
        o: PutItemOptions,
    ) -> Result<u64> {
        Store::put(&self.0, t, ns, k, v, o).await
    }
    async fn get(&self, t: &TenantId, ns: &Namespace, k: &ItemKey) -> Result<Option<Item>> {
        Store::get(&self.0, t, ns, k).await
    }
    async fn delete(
        &self,
        t: &TenantId,
        ns: &Namespace,
        k: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        Store::delete(&self.0, t, ns, k, if_version).await
    }
    async fn list(&self, t: &TenantId, ns: &Namespace, q: ListItems) -> Result<Page<Item>> {
        Store::list(&self.0, t, ns, q).await
    }
    async fn list_namespaces(&self, t: &TenantId, q: ListNamespaces) -> Result<Page<Namespace>> {
        self.0.list_namespaces(t, q).await
    }
    /// Not supported: `LEDGER` does not declare search.
    async fn search(&self, _: &TenantId, q: SearchItems) -> Result<Vec<Item>> {
        validate_limit(q.limit)?;
        Err(Error::unsupported("the ledger backend has no search"))
    }
}

#[async_trait]
impl SessionLog for Ledger {
    async fn append(
        &self,
        t: &TenantId,
        s: &SessionKey,
        e: Vec<Envelope>,
        o: AppendOptions,
    ) -> Result<u64> {
        self.0.append(t, s, e, o).await
    }
    async fn read(
        &self,
        t: &TenantId,
        s: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SessionEvent>> {
        self.0.read(t, s, after, limit).await
    }
    async fn head(&self, t: &TenantId, s: &SessionKey) -> Result<u64> {
        self.0.head(t, s).await
    }
    async fn trim_before(&self, t: &TenantId, s: &SessionKey, seq: u64) -> Result<u64> {
        self.0.trim_before(t, s, seq).await
    }
    async fn delete(&self, t: &TenantId, s: &SessionKey) -> Result<bool> {
        SessionLog::delete(&self.0, t, s).await
    }
    async fn list_sessions(&self, t: &TenantId, q: ListSessions) -> Result<Page<SessionKey>> {
        self.0.list_sessions(t, q).await
    }
}

#[async_trait]
impl Lock for Ledger {
    async fn try_acquire(
        &self,
        t: &TenantId,
        name: &LockKey,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        self.0.try_acquire(t, name, ttl).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.0.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        self.0.release(lease).await
    }
}

#[async_trait]
impl Maintenance for Ledger {
    fn backend_name(&self) -> &str {
        "ledger"
    }
    fn capabilities(&self) -> Capabilities {
        LEDGER
    }
    fn schema(&self) -> String {
        "ledger v1".to_string()
    }
    async fn tenants(&self) -> Result<Vec<TenantId>> {
        Ok(self.0.tenants())
    }
    async fn purge_expired(&self) -> Result<PurgeCounts> {
        Ok(self.0.purge_expired())
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

fn ledger_fixture() -> Fixture {
    let (memory, clock) = MemoryBackend::with_manual_clock();
    Fixture::new("ledger", Ledger(memory), LEDGER, TimeControl::Manual(clock))
}

conformance_suite!(
    ledger,
    async { Some(ledger_fixture()) },
    lacks[Search, Lifecycle, Replace]
);

/// Registers `ledger://` once per test process; every URL opens the same ledger.
fn register() -> Ledger {
    static LEDGER_DATA: std::sync::OnceLock<Ledger> = std::sync::OnceLock::new();
    let mut first = false;
    let ledger = LEDGER_DATA
        .get_or_init(|| {
            first = true;
            Ledger(MemoryBackend::new())
        })
        .clone();
    if first {
        let opened = ledger.clone();
        persistence::register_scheme("ledger", move |request: OpenRequest| {
            let ledger = opened.clone();
            async move {
                if !request.url.starts_with("ledger://") {
                    return Err(Error::invalid_input("not a ledger URL"));
                }
                Ok(Persistence::from_backend(ledger))
            }
        })
        .unwrap();
    }
    ledger
}

#[tokio::test]
async fn a_registered_scheme_opens_the_third_party_backend() {
    let ledger = register();
    let p = persistence::open("ledger://books").await.unwrap();
    assert_eq!(p.backend_name(), "ledger");
    assert_eq!(p.capabilities(), LEDGER);
    assert!(
        p.backend::<Ledger>().is_some(),
        "the backend given comes back"
    );
    let (t, s) = (
        TenantId::new("acme").unwrap(),
        SessionKey::new("s").unwrap(),
    );
    let head = p
        .sessions
        .append(
            &t,
            &s,
            vec![Envelope::new(1, serde_json::json!("hi"))],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(head, 1);
    assert_eq!(ledger.0.head(&t, &s).await.unwrap(), 1, "written through");
    assert!(p.tenants().await.unwrap().contains(&t));
    p.health().await.unwrap();
    assert!(persistence::known_schemes().contains(&"ledger".to_string()));

    // Built-in schemes cannot be taken over, nor a scheme registered twice.
    let taken = persistence::register_scheme("postgres", |_| async {
        Ok(Persistence::from_backend(MemoryBackend::new()))
    });
    assert_eq!(
        taken.unwrap_err().kind(),
        persistence::ErrorKind::InvalidInput
    );
    let twice = persistence::register_scheme("ledger", |_| async {
        Ok(Persistence::from_backend(MemoryBackend::new()))
    });
    assert_eq!(twice.unwrap_err().kind(), persistence::ErrorKind::Conflict);
    let bad = persistence::register_scheme("Led ger", |_| async {
        Ok(Persistence::from_backend(MemoryBackend::new()))
    });
    assert_eq!(
        bad.unwrap_err().kind(),
        persistence::ErrorKind::InvalidInput
    );
}

#[test]
fn the_cli_runs_on_the_third_party_backend() {
    register();
    let status = persistence_cli::run_from(["persistence", "status", "--url", "ledger://books"]);
    assert_eq!(status, 0, "status on ledger://");
    let gc = persistence_cli::run_from(["persistence", "gc", "--url", "ledger://books"]);
    assert_eq!(gc, 0, "gc on ledger://");
    let unknown = persistence_cli::run_from(["persistence", "status", "--url", "nowhere://x"]);
    assert_eq!(unknown, 1, "an unregistered scheme fails");
    let usage = persistence_cli::run_from(["persistence", "status", "--no-such-flag"]);
    assert_eq!(usage, 2, "a usage error");
}
