//! Benchmark of the filesystem backend beside a raw baseline measured in the same run.
//!
//! `cargo run --release -p persistence-fs --example bench -- [--ops N] [--dir PATH]`
//!
//! Prints ops/s, p50 and p99 latency for each operation with `Durability::Fsync` and
//! `Durability::None`, the raw baseline (a plain `write` + `fdatasync` loop of the same
//! record size as a one-event append), and reading 100 events at ordinal 1 000 versus
//! ordinal 1 000 000 of a 1 000 000-event session.

use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, Instant};

use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, Checkpointer, Envelope, ItemKey, Lock,
    LockKey, Namespace, NewCheckpoint, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use persistence_fs::{Durability, FsBackend, FsConfig};
use serde_json::json;

struct Stats {
    name: String,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure<F, Fut>(name: &str, ops: usize, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(i).await;
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    samples.sort();
    Stats {
        name: name.to_string(),
        ops_per_sec: ops as f64 / total.as_secs_f64(),
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    }
}

fn print(s: &Stats, baseline: Option<f64>) {
    let ratio = baseline.map_or(String::new(), |b| format!("{:.2}x raw", s.ops_per_sec / b));
    println!(
        "{:<34} {:>10.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs  {ratio}",
        s.name,
        s.ops_per_sec,
        s.p50.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6
    );
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> persistence_core::Result<()> {
    let ops: usize = arg("--ops").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let parent = arg("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(&parent)
        .map_err(|e| persistence_core::Error::backend_error(e.to_string()))?;
    let t = TenantId::new("bench")?;
    let event = Envelope::new(1, json!({"role": "assistant", "text": "x".repeat(64)}));
    let record_size = serde_json::to_vec(&event)
        .map(|v| v.len() + 60)
        .unwrap_or(128);

    let raw_path = scratch.path().join("raw");
    let mut raw = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .map_err(|e| persistence_core::Error::backend_error(e.to_string()))?;
    let record = vec![b'r'; record_size];
    let raw_stats = measure(&format!("raw write+fdatasync {record_size} B"), ops, |_| {
        raw.write_all(&record).expect("raw write");
        raw.sync_data().expect("raw fdatasync");
        async {}
    })
    .await;
    println!(
        "persistence-fs benchmark, {ops} ops per line, root under {}",
        parent.display()
    );
    print(&raw_stats, None);

    for durability in [Durability::Fsync, Durability::None] {
        let root = scratch.path().join(format!("{durability:?}"));
        let backend = FsBackend::open(FsConfig::new(&root).with_durability(durability))?;
        let base = (durability == Durability::Fsync).then_some(raw_stats.ops_per_sec);
        let label = |op: &str| format!("{op} ({durability:?})");
        let thread = ThreadKey::new("thread")?;
        let s = measure(&label("checkpoint put"), ops, |i| {
            let c = NewCheckpoint {
                id: CheckpointId::new(),
                parent: None,
                step: i as i64,
                state: event.clone(),
                metadata: Default::default(),
            };
            let b = backend.clone();
            let (t, th) = (t.clone(), thread.clone());
            async move {
                Checkpointer::put(&b, &t, &th, c, Default::default())
                    .await
                    .expect("put");
            }
        })
        .await;
        print(&s, base);
        let s = measure(&label("checkpoint get latest"), ops, |_| async {
            Checkpointer::get(&backend, &t, &thread, CheckpointSelector::Latest)
                .await
                .expect("get");
        })
        .await;
        print(&s, None);
        let session = SessionKey::new("session")?;
        let s = measure(&label("session append 1 event"), ops, |_| async {
            backend
                .append(&t, &session, vec![event.clone()], AppendOptions::default())
                .await
                .expect("append");
        })
        .await;
        print(&s, base);
        let batch: Vec<Envelope> = (0..100).map(|_| event.clone()).collect();
        let s = measure(&label("session append 100 events"), ops / 10, |_| async {
            backend
                .append(&t, &session, batch.clone(), AppendOptions::default())
                .await
                .expect("append");
        })
        .await;
        print(&s, base);
        let ns = Namespace::new(["users", "u1"])?;
        let s = measure(&label("store put"), ops, |i| {
            let key = ItemKey::new(format!("k{}", i % 100)).expect("key");
            let (b, t, ns, e) = (backend.clone(), t.clone(), ns.clone(), event.clone());
            async move {
                Store::put(&b, &t, &ns, &key, e, Default::default())
                    .await
                    .expect("put");
            }
        })
        .await;
        print(&s, base);
        let s = measure(&label("store get"), ops, |i| {
            let key = ItemKey::new(format!("k{}", i % 100)).expect("key");
            let (b, t, ns) = (backend.clone(), t.clone(), ns.clone());
            async move {
                Store::get(&b, &t, &ns, &key).await.expect("get");
            }
        })
        .await;
        print(&s, None);
        let name = LockKey::new("lock")?;
        let s = measure(&label("lock cycle (acquire+release)"), ops, |_| async {
            let lease = backend
                .try_acquire(&t, &name, Duration::from_secs(30))
                .await
                .expect("acquire")
                .expect("free");
            backend.release(&lease).await.expect("release");
        })
        .await;
        print(&s, None);
    }

    let backend = FsBackend::open(
        FsConfig::new(scratch.path().join("long")).with_durability(Durability::None),
    )?;
    let long = SessionKey::new("million")?;
    let chunk: Vec<Envelope> = (0..1000).map(|_| event.clone()).collect();
    for _ in 0..1000 {
        backend
            .append(&t, &long, chunk.clone(), AppendOptions::default())
            .await?;
    }
    let mut reads = Vec::new();
    for at in [1_000u64, 999_000] {
        let s = measure(&format!("read 100 events after #{at}"), 500, |_| async {
            backend.read(&t, &long, at, 100).await.expect("read");
        })
        .await;
        print(&s, None);
        reads.push(s.p50);
    }
    println!(
        "read cost at 1 000 000 vs 1 000: {:.2}x (p50)",
        reads[1].as_secs_f64() / reads[0].as_secs_f64()
    );
    Ok(())
}
