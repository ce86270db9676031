//! rig conversations saved and loaded on memory, the filesystem, PostgreSQL, Redis and a
//! Redis Cluster (servers from the harness; required in CI): a conversation built with
//! rig's own edits, saved in parts and reloaded, is `==` the live one; a long one loads
//! from its latest snapshot; two writers of one conversation cannot both save.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use persistence::{CheckpointSelector, ErrorKind, Persistence, TenantId, ThreadKey};
use persistence_conformance::harness::backend_urls;
use persistence_rig::ConversationStore;
use rig_core::conversation::{Aside, Author, Conversation, Halt};
use rig_core::message::Message;
use serde_json::json;

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

fn store(p: &Persistence, test: &str) -> ConversationStore {
    let tenant = TenantId::new(format!("rig-{test}-{}", std::process::id())).unwrap();
    ConversationStore::new(p.sessions.clone(), p.checkpointer.clone(), tenant)
}

/// Built with rig's edits (pushes, a splice by a plugin, a halt, an aside), saved after
/// each part, reloaded: equal to the live conversation, and editable and savable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_saved_and_reloaded_is_equal() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let store = store(&p, "equal");
        store.delete("chat").await.unwrap();
        let mut live = Conversation::new();
        live.push(Message::user("What is the capital of France?"));
        live.push(Message::assistant("Paris."));
        assert_eq!(store.save("chat", &mut live).await.unwrap(), 2, "{name}");
        assert!(live.unsaved().is_empty());

        let mut first = live.entry(0).unwrap();
        first.message = Message::user("What is the capital of France, please?").into();
        live.splice(0..1, [first], Author::plugin("polite"));
        live.add_aside(Aside::new(
            "note",
            Author::plugin("memo"),
            json!({"topic": "geography"}),
        ));
        live.push(Message::user("And of Italy?"));
        live.halt(Halt::Kept);
        store.save("chat", &mut live).await.unwrap();

        let mut loaded = store.load("chat").await.unwrap().expect("saved");
        assert_eq!(loaded, live, "{name}");
        loaded.push(Message::assistant("Rome."));
        store.save("chat", &mut loaded).await.unwrap();
        assert_eq!(store.load("chat").await.unwrap().unwrap(), loaded, "{name}");

        assert!(store.delete("chat").await.unwrap());
        assert!(store.load("chat").await.unwrap().is_none(), "{name}");
    }
}

/// A long conversation loads from its latest snapshot plus the changes after it, and
/// equals the one built live; a value that does not continue the log (built apart) is
/// refused, but starts an empty log whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_loads_from_its_snapshot() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let store = store(&p, "long").with_snapshot_every(10);
        store.delete("long").await.unwrap();
        let mut live = Conversation::new();
        for n in 0..45 {
            live.push(Message::user(format!("message {n}")));
            if n % 4 == 3 {
                store.save("long", &mut live).await.unwrap();
            }
        }
        assert_eq!(store.save("long", &mut live).await.unwrap(), 45, "{name}");
        let thread = ThreadKey::new("rig/long").unwrap();
        let snapshot = p
            .checkpointer
            .get(store.tenant(), &thread, CheckpointSelector::Latest)
            .await
            .unwrap()
            .expect("a snapshot");
        assert!(
            (40..=46).contains(&snapshot.checkpoint.step),
            "{name}: latest snapshot at head {}",
            snapshot.checkpoint.step
        );
        assert_eq!(store.load("long").await.unwrap().unwrap(), live, "{name}");

        let mut apart = Conversation::new();
        apart.push(Message::user("another conversation"));
        let refused = store.save("long", &mut apart).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Conflict, "{name}: {refused}");
        assert_eq!(apart.unsaved().len(), 1, "the outbox is kept");

        let mut detached: Conversation =
            serde_json::from_value(serde_json::to_value(&live).unwrap()).unwrap();
        store.delete("copy").await.unwrap();
        store.save("copy", &mut detached).await.unwrap();
        assert_eq!(store.load("copy").await.unwrap().unwrap(), live, "{name}");
        store.delete("copy").await.unwrap();
        store.delete("long").await.unwrap();
    }
}

/// Two writers that loaded the same conversation: the first save lands, the second
/// fails `Conflict` and stores nothing; loading again and redoing the edit saves. Also
/// with both saving at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_detected() {
    let (backends, _dir) = backends().await;
    for (name, p) in backends {
        let store = store(&p, "race");
        store.delete("race").await.unwrap();
        let mut start = Conversation::new();
        start.push(Message::user("hi"));
        store.save("race", &mut start).await.unwrap();

        let mut a = store.load("race").await.unwrap().unwrap();
        let mut b = store.load("race").await.unwrap().unwrap();
        a.push(Message::assistant("from a"));
        b.push(Message::assistant("from b"));
        let (ra, rb) = tokio::join!(store.save("race", &mut a), store.save("race", &mut b));
        let (winner, loser) = match (&ra, &rb) {
            (Ok(_), Err(e)) if e.kind() == ErrorKind::Conflict => (a, b),
            (Err(e), Ok(_)) if e.kind() == ErrorKind::Conflict => (b, a),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(store.load("race").await.unwrap().unwrap(), winner, "{name}");
        assert_eq!(loser.unsaved().len(), 1, "{name}: the loser keeps its edit");

        let mut again = store.load("race").await.unwrap().unwrap();
        again.push(Message::assistant("redone"));
        store.save("race", &mut again).await.unwrap();
        let stored = store.load("race").await.unwrap().unwrap();
        assert_eq!(stored.messages().len(), 3, "{name}");
        store.delete("race").await.unwrap();
    }
}
