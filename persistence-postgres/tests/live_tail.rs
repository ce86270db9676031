//! Live tails on Postgres: a followed session's appends NOTIFY, so a subscriber is woken
//! at once (its poll interval here far longer than the deadline); a session nobody
//! follows never notifies (its commits do not take NOTIFY's lock).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use persistence_core::{Envelope, SessionKey, SessionLog, Subscribe, TenantId};
use persistence_postgres::{PgBackend, PgConfig};
use sqlx::postgres::PgListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_sessions_are_pushed_and_others_never_notify() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let t = TenantId::new("t").unwrap();
    let (quiet, live) = (
        SessionKey::new("quiet").unwrap(),
        SessionKey::new("live").unwrap(),
    );
    let mut raw = PgListener::connect(&db.admin_options_url()).await.unwrap();
    raw.listen("persistence_session_changes").await.unwrap();

    let one = |n: i64| vec![Envelope::new(1, serde_json::json!(n))];
    backend
        .append(&t, &quiet, one(0), Default::default())
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_millis(500), raw.recv()).await;
    assert!(
        heard.is_err(),
        "a session nobody follows notified: {heard:?}"
    );

    let log: &dyn SessionLog = &backend;
    let slow = Subscribe::default().with_poll_interval(Duration::from_secs(30));
    let mut tail = log.subscribe(&t, &live, 0, slow);
    let writer = {
        let backend = backend.clone();
        let (t, live) = (t.clone(), live.clone());
        tokio::spawn(async move {
            for n in 1..=3 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                backend
                    .append(&t, &live, one(n), Default::default())
                    .await
                    .unwrap();
            }
        })
    };
    for want in 1..=3 {
        let event = tokio::time::timeout(Duration::from_secs(5), tail.next())
            .await
            .unwrap_or_else(|_| panic!("event {want} was not pushed"))
            .unwrap();
        assert_eq!(event.seq, want);
    }
    writer.await.unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(2), raw.recv())
        .await
        .expect("the followed session notified")
        .unwrap();
    assert_eq!(notice.payload(), "t/live", "ids only");
}

/// Counts the reads and head looks subscriptions make, passing everything to Postgres.
struct Counted {
    inner: PgBackend,
    looks: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SessionLog for Counted {
    async fn append(
        &self,
        t: &TenantId,
        s: &SessionKey,
        events: Vec<Envelope>,
        options: persistence_core::AppendOptions,
    ) -> persistence_core::Result<u64> {
        self.inner.append(t, s, events, options).await
    }
    async fn read(
        &self,
        t: &TenantId,
        s: &SessionKey,
        after: u64,
        limit: usize,
    ) -> persistence_core::Result<Vec<persistence_core::SessionEvent>> {
        self.looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read(t, s, after, limit).await
    }
    async fn head(&self, t: &TenantId, s: &SessionKey) -> persistence_core::Result<u64> {
        self.looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.head(t, s).await
    }
    async fn trim_before(
        &self,
        t: &TenantId,
        s: &SessionKey,
        seq: u64,
    ) -> persistence_core::Result<u64> {
        self.inner.trim_before(t, s, seq).await
    }
    async fn delete(&self, t: &TenantId, s: &SessionKey) -> persistence_core::Result<bool> {
        SessionLog::delete(&self.inner, t, s).await
    }
    async fn list_sessions(
        &self,
        t: &TenantId,
        q: persistence_core::ListSessions,
    ) -> persistence_core::Result<persistence_core::Page<SessionKey>> {
        self.inner.list_sessions(t, q).await
    }
    async fn wait_for_change(
        &self,
        t: &TenantId,
        s: &SessionKey,
        seen_head: u64,
        timeout: Duration,
    ) -> persistence_core::Result<()> {
        self.inner.wait_for_change(t, s, seen_head, timeout).await
    }
}

/// Subscriptions of one session woken by one notice share their reads: 20 subscribers
/// following 5 appends make far fewer than one read each per event (each made at least
/// two before reads were shared), and every subscriber gets every event in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_one_session_share_their_reads() {
    const SUBSCRIBERS: usize = 20;
    const EVENTS: u64 = 5;
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let backend = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .unwrap();
    let counted = std::sync::Arc::new(Counted {
        inner: backend,
        looks: Default::default(),
    });
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("shared").unwrap(),
    );
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (log, t, s) = (counted.clone(), t.clone(), s.clone());
        readers.push(tokio::spawn(async move {
            let log: &dyn SessionLog = &*log;
            let slow = Subscribe::default().with_poll_interval(Duration::from_secs(30));
            let mut tail = log.subscribe(&t, &s, 0, slow);
            for want in 1..=EVENTS {
                let event = tokio::time::timeout(Duration::from_secs(10), tail.next())
                    .await
                    .expect("an event was not delivered")
                    .unwrap();
                assert_eq!(event.seq, want);
            }
        }));
    }
    // Every subscriber is waiting before the first append.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = counted.looks.load(std::sync::atomic::Ordering::SeqCst);
    for n in 0..EVENTS {
        let event = vec![Envelope::new(1, serde_json::json!(n))];
        counted
            .append(&t, &s, event, Default::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for reader in readers {
        reader.await.unwrap();
    }
    let looks = counted.looks.load(std::sync::atomic::Ordering::SeqCst) - before;
    eprintln!("{looks} reads and head looks for {SUBSCRIBERS} subscribers x {EVENTS} events");
    assert!(
        looks < SUBSCRIBERS * EVENTS as usize / 2,
        "{looks} reads and head looks for {SUBSCRIBERS} subscribers x {EVENTS} events"
    );
}
