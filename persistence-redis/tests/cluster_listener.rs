//! The cluster's live-tail listener subscribes (`SSUBSCRIBE`) to the channel of each
//! session someone follows and unsubscribes once nobody has followed it for a while, so
//! a long-running process does not keep one subscription per session it ever followed;
//! a session followed again is subscribed to again and its events are pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use persistence_conformance::harness::{LocalRedis, Server, server_url};
use persistence_core::{Envelope, SessionKey, SessionLog, Subscribe, TenantId};
use persistence_redis::keys::Keys;
use persistence_redis::{RedisBackend, RedisConfig};

/// Subscribers of `channel` across the cluster's nodes (`PUBSUB SHARDNUMSUB` on each).
async fn shard_subscribers(nodes: &[String], channel: &str) -> i64 {
    let mut total = 0;
    for node in nodes {
        let client = redis::Client::open(format!("redis://{node}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += reply.1;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfollowed_session_is_unsubscribed_from_and_followed_again() {
    let Some(url) = server_url(Server::RedisCluster, &LocalRedis) else {
        return;
    };
    let nodes: Vec<String> = url
        .trim_start_matches("redis+cluster://")
        .trim_end_matches('/')
        .split(',')
        .map(str::to_owned)
        .collect();
    let prefix = format!("unsub{}:", std::process::id());
    let backend = RedisBackend::connect(RedisConfig::new(&url).with_prefix(&prefix))
        .await
        .unwrap();
    let log: &dyn SessionLog = &backend;
    let (t, s) = (
        TenantId::new("t").unwrap(),
        SessionKey::new("followed").unwrap(),
    );
    let channel = Keys::new(&prefix).session(&t, &s).changes();
    let slow = Subscribe::default().with_poll_interval(Duration::from_secs(30));

    // Follow the session for a moment: its channel is subscribed to.
    let mut tail = log.subscribe(&t, &s, 0, slow.clone());
    let waited = tokio::time::timeout(Duration::from_secs(1), tail.next()).await;
    assert!(waited.is_err(), "an event arrived in an empty session");
    drop(tail);
    assert_eq!(shard_subscribers(&nodes, &channel).await, 1);

    // Nobody follows it any more: unsubscribed within two idle checks (5 s each).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while shard_subscribers(&nodes, &channel).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener kept its subscription to an unfollowed session"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Followed again: subscribed again, and an append is pushed (not polled).
    let mut tail = log.subscribe(&t, &s, 0, slow);
    let writer = {
        let backend = backend.clone();
        let (t, s) = (t.clone(), s.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let event = vec![Envelope::new(1, serde_json::json!(1))];
            backend
                .append(&t, &s, event, Default::default())
                .await
                .unwrap();
        })
    };
    let event = tokio::time::timeout(Duration::from_secs(5), tail.next())
        .await
        .expect("the append to a session followed again was not pushed")
        .unwrap();
    assert_eq!(event.seq, 1);
    writer.await.unwrap();
    backend.delete(&t, &s).await.unwrap();
}
