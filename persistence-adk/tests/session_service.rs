//! adk-rust's session contract, checked on `LogSessionService` over memory, the
//! filesystem, PostgreSQL, Redis and a Redis Cluster (servers from the harness; required
//! in CI), and beside adk's own in-memory service where they should agree: not-found and
//! invalid-identity errors, app/user/session state scoping with `temp:` keys dropped,
//! the recent-events filters, isolation across apps and users, list paging, and
//! concurrent appends to one session kept gapless.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use adk_core::ErrorCategory;
use adk_session::{
    CreateRequest, DeleteRequest, Event, GetRequest, InMemorySessionService, ListRequest,
    SessionService,
};
use chrono::Utc;
use persistence::{Persistence, TenantId};
use persistence_adk::LogSessionService;
use persistence_conformance::harness::backend_urls;
use serde_json::{Value, json};

/// Every backend the harness offers, opened, with the directory the fs one lives in.
async fn backends() -> (Vec<(&'static str, Persistence)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for backend in backend_urls(dir.path()) {
        if backend.needs_migration {
            persistence::postgres::migrate(&backend.url).await.unwrap();
        }
        out.push((backend.name, persistence::open(&backend.url).await.unwrap()));
    }
    (out, dir)
}

/// A service of this test process alone (servers are shared between test runs).
fn service(p: &Persistence, test: &str) -> LogSessionService {
    let tenant = TenantId::new(format!("adk-{test}-{}", std::process::id())).unwrap();
    LogSessionService::new(p.sessions.clone(), p.store.clone(), tenant)
}

fn create(app: &str, user: &str, id: &str, state: Value) -> CreateRequest {
    CreateRequest {
        app_name: app.into(),
        user_id: user.into(),
        session_id: Some(id.into()),
        state: serde_json::from_value(state).unwrap(),
    }
}

fn get(app: &str, user: &str, id: &str) -> GetRequest {
    GetRequest {
        app_name: app.into(),
        user_id: user.into(),
        session_id: id.into(),
        num_recent_events: None,
        after: None,
    }
}

fn event(n: u64, delta: Value) -> Event {
    let mut event = Event::new(format!("inv-{n}"));
    event.author = "agent".into();
    event.actions.state_delta = serde_json::from_value(delta).unwrap();
    event
}

fn state_of(session: &dyn adk_session::Session) -> HashMap<String, Value> {
    session.state().all()
}

/// Not found is `session.not_found` with the NotFound category; a bad identity is an
/// error too, and neither is reported for the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_invalid_identities() {
    let adk = InMemorySessionService::new();
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let s = service(&p, "missing");
        for svc in [&s as &dyn SessionService, &adk] {
            let err = svc.get(get("app", "u", "nope")).await.err().unwrap();
            assert_eq!(
                (err.code, err.category),
                ("session.not_found", ErrorCategory::NotFound),
                "{name}: {err}"
            );
            let bad = svc.get(get("", "u", "s")).await.err().unwrap();
            assert_ne!(bad.category, ErrorCategory::NotFound, "{name}: {bad}");
            let bad = svc
                .create(create("app", "", "s", json!({})))
                .await
                .err()
                .unwrap();
            assert_ne!(bad.category, ErrorCategory::NotFound, "{name}: {bad}");
        }
        let err = s
            .append_event("nope", event(1, json!({})))
            .await
            .err()
            .unwrap();
        assert!(!err.message.is_empty(), "{name}");
    }
}

/// `app:` state is shared by the app's sessions, `user:` state by the user's, the rest
/// is the session's own; `temp:` keys are dropped, from the state and from the stored
/// event. Both services agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_scoped_and_temp_keys_dropped() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let ours = service(&p, "scopes");
        let adk = InMemorySessionService::new();
        for (which, svc) in [
            ("ours", &ours as &dyn SessionService),
            ("adk", &adk as &dyn SessionService),
        ] {
            for (user, id) in [("u1", "s1"), ("u1", "s2"), ("u2", "s3")] {
                let _ = svc
                    .delete(DeleteRequest {
                        app_name: "app".into(),
                        user_id: user.into(),
                        session_id: id.into(),
                    })
                    .await;
            }
            let initial = json!({"app:theme": "dark", "user:lang": "fr", "k": 1, "temp:x": 2});
            svc.create(create("app", "u1", "s1", initial))
                .await
                .unwrap();
            svc.create(create("app", "u1", "s2", json!({})))
                .await
                .unwrap();
            svc.create(create("app", "u2", "s3", json!({})))
                .await
                .unwrap();
            let delta = json!({"app:a": 1, "user:b": 2, "s": 3, "temp:t": 4});
            svc.append_event("s1", event(1, delta)).await.unwrap();

            let s1 = svc.get(get("app", "u1", "s1")).await.unwrap();
            let want: HashMap<String, Value> = serde_json::from_value(json!({
                "app:theme": "dark", "user:lang": "fr", "k": 1,
                "app:a": 1, "user:b": 2, "s": 3
            }))
            .unwrap();
            assert_eq!(state_of(&*s1), want, "{name} {which}");
            let stored = s1.events().at(0).unwrap();
            assert!(
                !stored.actions.state_delta.contains_key("temp:t"),
                "{name} {which}: a temp: key was stored"
            );

            let s2 = svc.get(get("app", "u1", "s2")).await.unwrap();
            let want: HashMap<String, Value> = serde_json::from_value(json!({
                "app:theme": "dark", "user:lang": "fr", "app:a": 1, "user:b": 2
            }))
            .unwrap();
            assert_eq!(state_of(&*s2), want, "{name} {which}: same user");
            let s3 = svc.get(get("app", "u2", "s3")).await.unwrap();
            let want: HashMap<String, Value> =
                serde_json::from_value(json!({"app:theme": "dark", "app:a": 1})).unwrap();
            assert_eq!(state_of(&*s3), want, "{name} {which}: another user");
        }
    }
}

/// `num_recent_events` keeps the last N, `after` those at or after a time, both
/// together as adk applies them; events come back as appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_event_filters() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let s = service(&p, "recent");
        let _ = s
            .delete(DeleteRequest {
                app_name: "app".into(),
                user_id: "u".into(),
                session_id: "r".into(),
            })
            .await;
        s.create(create("app", "u", "r", json!({}))).await.unwrap();
        let start = Utc::now();
        let mut times = Vec::new();
        for n in 0..5u64 {
            let mut e = event(n, json!({"n": n}));
            e.timestamp = start + chrono::Duration::seconds(n as i64);
            times.push(e.timestamp);
            s.append_event("r", e).await.unwrap();
        }
        let all = s.get(get("app", "u", "r")).await.unwrap();
        let ids: Vec<String> = all
            .events()
            .all()
            .iter()
            .map(|e| e.invocation_id.clone())
            .collect();
        assert_eq!(ids, ["inv-0", "inv-1", "inv-2", "inv-3", "inv-4"], "{name}");
        assert_eq!(all.state().get("n"), Some(json!(4)), "{name}");
        assert_eq!(all.last_update_time(), times[4], "{name}");

        let mut recent = get("app", "u", "r");
        recent.num_recent_events = Some(2);
        let got = s.get(recent.clone()).await.unwrap();
        let ids: Vec<String> = got
            .events()
            .all()
            .iter()
            .map(|e| e.invocation_id.clone())
            .collect();
        assert_eq!(ids, ["inv-3", "inv-4"], "{name}");
        assert_eq!(
            got.state().get("n"),
            Some(json!(4)),
            "{name}: state of every event"
        );

        let mut after = get("app", "u", "r");
        after.after = Some(times[2]);
        let got = s.get(after).await.unwrap();
        assert_eq!(got.events().len(), 3, "{name}");
        recent.after = Some(times[4]);
        assert_eq!(s.get(recent).await.unwrap().events().len(), 1, "{name}");
    }
}

/// The same session id under two apps and two users names four sessions; `list` pages
/// one user's, newest update first; `delete` and `delete_all_sessions` remove only what
/// they name; creating an existing session fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_listing_and_deletion() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let s = service(&p, "isolation");
        for app in ["a1", "a/2"] {
            for user in ["u1", "u%2"] {
                s.delete_all_sessions(app, user).await.unwrap();
                s.create(create(
                    app,
                    user,
                    "same",
                    json!({"who": format!("{app}:{user}")}),
                ))
                .await
                .unwrap();
            }
        }
        for app in ["a1", "a/2"] {
            for user in ["u1", "u%2"] {
                let got = s.get(get(app, user, "same")).await.unwrap();
                assert_eq!(
                    got.state().get("who"),
                    Some(json!(format!("{app}:{user}"))),
                    "{name}"
                );
            }
        }
        let again = s.create(create("a1", "u1", "same", json!({}))).await;
        assert!(again.is_err(), "{name}: created over an existing session");

        for n in 0..4 {
            s.create(create("a1", "u1", &format!("p{n}"), json!({})))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.append_event_for_identity(adk_session::AppendEventRequest {
            identity: adk_core::AdkIdentity {
                app_name: adk_core::AppName::try_from("a1").unwrap(),
                user_id: adk_core::UserId::try_from("u1").unwrap(),
                session_id: adk_core::SessionId::try_from("p0").unwrap(),
            },
            event: event(9, json!({})),
        })
        .await
        .unwrap();
        let page = |offset, limit| {
            s.list(ListRequest {
                app_name: "a1".into(),
                user_id: "u1".into(),
                limit: Some(limit),
                offset: Some(offset),
            })
        };
        let first: Vec<String> = page(0, 2)
            .await
            .unwrap()
            .iter()
            .map(|x| x.id().to_string())
            .collect();
        let rest: Vec<String> = page(2, 10)
            .await
            .unwrap()
            .iter()
            .map(|x| x.id().to_string())
            .collect();
        assert_eq!(first[0], "p0", "{name}: newest update first: {first:?}");
        assert_eq!(first.len() + rest.len(), 5, "{name}: {first:?} {rest:?}");

        s.delete(DeleteRequest {
            app_name: "a1".into(),
            user_id: "u1".into(),
            session_id: "same".into(),
        })
        .await
        .unwrap();
        let gone = s.get(get("a1", "u1", "same")).await.err().unwrap();
        assert_eq!(gone.code, "session.not_found", "{name}");
        assert!(s.get(get("a/2", "u1", "same")).await.is_ok(), "{name}");
        s.delete_all_sessions("a1", "u1").await.unwrap();
        assert!(page(0, 10).await.unwrap().is_empty(), "{name}");
    }
}

/// Eight tasks appending to one session at once: every event is kept, once, and every
/// task's state delta is in the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_gapless() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let s = Arc::new(service(&p, "concurrent"));
        let _ = s
            .delete(DeleteRequest {
                app_name: "app".into(),
                user_id: "u".into(),
                session_id: "c".into(),
            })
            .await;
        s.create(create("app", "u", "c", json!({}))).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..5u64 {
                    let key = format!("t{t}n{n}");
                    s.append_event("c", event(t * 10 + n, json!({ key: n })))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let got = s.get(get("app", "u", "c")).await.unwrap();
        assert_eq!(got.events().len(), 40, "{name}");
        let mut ids: Vec<String> = got
            .events()
            .all()
            .iter()
            .map(|e| e.invocation_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 40, "{name}: an event twice");
        assert_eq!(got.state().all().len(), 40, "{name}: a state delta lost");
    }
}
