//! Every operation is a span with backend, operation, tenant and duration; errors are
//! recorded; payloads never are.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use persistence::{
    AppendOptions, Envelope, ErrorKind, ItemKey, Namespace, PutItemOptions, SessionKey, TenantId,
    open,
};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

type SpanFields = (Id, BTreeMap<String, String>);

/// Fields of every span, in creation order, plus every event's text.
#[derive(Clone, Default)]
struct Recorded {
    spans: Arc<Mutex<Vec<SpanFields>>>,
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorded {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        fields.insert("name".to_string(), attrs.metadata().name().to_string());
        attrs.record(&mut Fields(&mut fields));
        self.spans.lock().unwrap().push((id.clone(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some((_, fields)) = spans.iter_mut().rev().find(|(i, _)| i == id) {
            values.record(&mut Fields(fields));
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(format!("{fields:?}"));
    }
}

#[tokio::test]
async fn operations_are_spans_without_payloads() {
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let p = open("memory://").await.unwrap();
    let t = TenantId::new("acme").unwrap();
    let secret = "SECRET-PAYLOAD-1234";
    let s = SessionKey::new("chat").unwrap();
    p.sessions
        .append(
            &t,
            &s,
            vec![Envelope::new(1, json!({"text": secret}))],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    let (ns, key) = (Namespace::new(["m"]).unwrap(), ItemKey::new("k").unwrap());
    p.store
        .put(
            &t,
            &ns,
            &key,
            Envelope::new(1, json!(secret)),
            PutItemOptions::default(),
        )
        .await
        .unwrap();
    let stale = PutItemOptions::default().with_if_version(7);
    let e = p
        .store
        .put(&t, &ns, &key, Envelope::new(1, json!(secret)), stale)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    p.purge_expired().await.unwrap();
    p.health().await.unwrap();

    let spans = recorded.spans.lock().unwrap().clone();
    let ops: Vec<&str> = spans.iter().map(|(_, f)| f["operation"].as_str()).collect();
    assert_eq!(
        ops,
        [
            "session.append",
            "store.put",
            "store.put",
            "maintenance.purge_expired",
            "maintenance.health"
        ]
    );
    for (_, f) in &spans {
        assert_eq!(f["name"], "persistence");
        assert_eq!(f["backend"], "memory");
        assert!(f["duration_us"].parse::<u64>().is_ok(), "{f:?}");
    }
    assert_eq!(spans[0].1["tenant"], "acme");
    assert!(
        !spans[3].1.contains_key("tenant"),
        "purge spans all tenants"
    );
    assert!(!spans[1].1.contains_key("error_kind"));
    assert_eq!(spans[2].1["error_kind"], "conflict");
    assert!(spans[2].1["error"].contains("version"), "{:?}", spans[2].1);

    let everything = format!("{spans:?}{:?}", recorded.events.lock().unwrap());
    assert!(
        !everything.contains(secret),
        "a payload was recorded: {everything}"
    );
}

/// Runs the whole conformance suite through `open(url)` (so through the traced wrapper)
/// under a recording subscriber, and returns every span, event and failure as text.
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn suite_output(url_for_check: impl Fn(usize) -> String) -> (String, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let recorded = Recorded::default();
    let subscriber = tracing_subscriber::registry().with(recorded.clone());
    // Global: the suite's checks spawn tasks onto other threads.
    let _ = tracing::subscriber::set_global_default(subscriber);
    let counter = AtomicUsize::new(0);
    let report = persistence_conformance::run_suite(|| async {
        let url = url_for_check(counter.fetch_add(1, Ordering::SeqCst));
        let p = open(&url).await.unwrap_or_else(|e| panic!("open: {e}"));
        let (backend, clock) = persistence::MemoryBackend::with_manual_clock();
        let caps = backend.capabilities();
        let mut fx = persistence_conformance::Fixture::new(
            "facade",
            backend,
            caps,
            persistence_conformance::TimeControl::Manual(clock),
        );
        fx.checkpointer = p.checkpointer.clone();
        fx.store = p.store.clone();
        fx.sessions = p.sessions.clone();
        fx.lock = p.lock.clone();
        fx.capabilities = p.capabilities();
        fx.time = persistence_conformance::TimeControl::Real;
        fx
    })
    .await;
    let text = format!(
        "{:?}{:?}{:?}",
        recorded.spans.lock().unwrap(),
        recorded.events.lock().unwrap(),
        report.failed
    );
    (text, report.passed.len())
}

/// With a password the server really checks (`requirepass`), nothing the whole suite
/// produces (spans, events, errors) contains it.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_any_span_or_error_of_the_suite_on_redis() {
    const SECRET: &str = "suite-redis-secret-7f3a";
    use persistence_conformance::harness::dedicated::DedicatedRedis;
    let Some(server) = DedicatedRedis::start(&["--save", "", "--requirepass", SECRET]) else {
        return;
    };
    let port = server.port();
    let (text, passed) =
        suite_output(|i| format!("redis://:{SECRET}@127.0.0.1:{port}/0?prefix=suite{i}:")).await;
    assert!(passed > 50, "the suite did not run: {passed} checks passed");
    assert!(!text.contains(SECRET), "the password was recorded");
}
