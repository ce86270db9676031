//! `rekey` against a writer that gets in between its read and its rewrite, at a chosen
//! moment (the backend is the real memory backend; the wrappers only perform a real
//! write first): the writer's payload stays, and the run counts it as changed meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use persistence_codec::{
    Codec, CodecConfig, EncryptionPolicy, RekeyOptions, SealedSessions, SealedStore, StaticKeyring,
    Stored, key_usage, rekey,
};
use persistence_core::{
    AppendOptions, Envelope, Item, ItemKey, ListItems, ListNamespaces, ListSessions, MemoryBackend,
    Namespace, Page, PutItemOptions, Result, SearchItems, SessionEvent, SessionKey, SessionLog,
    Store, TenantId,
};
use serde_json::json;

const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2=HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

fn codec(keys: &str) -> Arc<Codec> {
    let keys = StaticKeyring::parse(keys).unwrap();
    Codec::new(CodecConfig::default().with_encryption(Arc::new(keys), EncryptionPolicy::Required))
}

fn tenant() -> TenantId {
    TenantId::new("t").unwrap()
}

/// The memory store; before the first conditional put (rekey's rewrite) a writer puts
/// `writer_value` through `writer`.
struct WriterFirstStore {
    inner: MemoryBackend,
    writer: SealedStore,
    writer_value: Envelope,
    done: AtomicBool,
}

#[async_trait]
impl Store for WriterFirstStore {
    async fn put(
        &self,
        t: &TenantId,
        n: &Namespace,
        k: &ItemKey,
        v: Envelope,
        o: PutItemOptions,
    ) -> Result<u64> {
        if o.if_version.is_some() && !self.done.swap(true, Ordering::SeqCst) {
            let value = self.writer_value.clone();
            self.writer
                .put(t, n, k, value, PutItemOptions::default())
                .await?;
        }
        self.inner.put(t, n, k, v, o).await
    }
    async fn get(&self, t: &TenantId, n: &Namespace, k: &ItemKey) -> Result<Option<Item>> {
        self.inner.get(t, n, k).await
    }
    async fn delete(
        &self,
        t: &TenantId,
        n: &Namespace,
        k: &ItemKey,
        if_version: Option<u64>,
    ) -> Result<bool> {
        Store::delete(&self.inner, t, n, k, if_version).await
    }
    async fn list(&self, t: &TenantId, n: &Namespace, q: ListItems) -> Result<Page<Item>> {
        self.inner.list(t, n, q).await
    }
    async fn list_namespaces(&self, t: &TenantId, q: ListNamespaces) -> Result<Page<Namespace>> {
        self.inner.list_namespaces(t, q).await
    }
    async fn search(&self, t: &TenantId, q: SearchItems) -> Result<Vec<Item>> {
        self.inner.search(t, q).await
    }
}

/// The memory session log; before each replace, the event goes (a trim).
struct TrimFirstSessions(MemoryBackend);

#[async_trait]
impl SessionLog for TrimFirstSessions {
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
    async fn replace_event(
        &self,
        t: &TenantId,
        s: &SessionKey,
        seq: u64,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        self.0.trim_before(t, s, seq + 1).await?;
        self.0.replace_event(t, s, seq, expected, new).await
    }
}

/// A store item overwritten between rekey's read and its put keeps the writer's value
/// (the put is conditional on the version read), and is under the new key.
#[tokio::test]
async fn an_item_written_meanwhile_keeps_the_writers_value() {
    let memory = MemoryBackend::new();
    let t = tenant();
    let (ns, key) = (Namespace::new(["n"]).unwrap(), ItemKey::new("k").unwrap());
    let old = SealedStore::new(Arc::new(memory.clone()), codec(K1));
    old.put(
        &t,
        &ns,
        &key,
        Envelope::new(1, json!({"v": "old"})),
        Default::default(),
    )
    .await
    .unwrap();

    let rotated = codec(&format!("{K1},{K2}"));
    let writer = SealedStore::new(Arc::new(memory.clone()), rotated.clone());
    let store = WriterFirstStore {
        inner: memory.clone(),
        writer: writer.clone(),
        writer_value: Envelope::new(1, json!({"v": "writer"})),
        done: AtomicBool::new(false),
    };
    let stored = Stored {
        checkpointer: &memory,
        store: &store,
        sessions: &memory,
    };
    let report = rekey(stored, &rotated, &t, RekeyOptions::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.rewritten, report.changed_meanwhile),
        (0, 1),
        "{report:?}"
    );
    let item = writer.get(&t, &ns, &key).await.unwrap().unwrap();
    assert_eq!(item.value.data, json!({"v": "writer"}));
    let usage = key_usage(&memory, &memory, &memory, &t).await.unwrap();
    assert_eq!(usage.not_under("k2"), 0, "{usage:?}");
}

/// An event trimmed between rekey's read and its replace is not brought back.
#[tokio::test]
async fn an_event_removed_meanwhile_stays_removed() {
    let memory = MemoryBackend::new();
    let t = tenant();
    let s = SessionKey::new("s").unwrap();
    let old = SealedSessions::new(Arc::new(memory.clone()), codec(K1));
    let events = (0..3)
        .map(|i| Envelope::new(1, json!({"turn": i})))
        .collect();
    old.append(&t, &s, events, AppendOptions::default())
        .await
        .unwrap();

    let rotated = codec(&format!("{K1},{K2}"));
    let sessions = TrimFirstSessions(memory.clone());
    let stored = Stored {
        checkpointer: &memory,
        store: &memory,
        sessions: &sessions,
    };
    let report = rekey(stored, &rotated, &t, RekeyOptions::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.rewritten, report.changed_meanwhile),
        (0, 3),
        "{report:?}"
    );
    assert!(memory.read(&t, &s, 0, 10).await.unwrap().is_empty());
    assert_eq!(memory.head(&t, &s).await.unwrap(), 3);
}
