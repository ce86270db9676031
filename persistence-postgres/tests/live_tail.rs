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
