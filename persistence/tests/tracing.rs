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
    let stale = PutItemOptions {
        if_version: Some(7),
        ..PutItemOptions::default()
    };
    let e = p
        .store
        .put(&t, &ns, &key, Envelope::new(1, json!(secret)), stale)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    p.purge_expired().await.unwrap();

    let spans = recorded.spans.lock().unwrap().clone();
    let ops: Vec<&str> = spans.iter().map(|(_, f)| f["operation"].as_str()).collect();
    assert_eq!(
        ops,
        [
            "session.append",
            "store.put",
            "store.put",
            "store.purge_expired",
            "session.purge_expired"
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
