//! `persistence bench`: the same workload on any backend, beside a raw baseline measured
//! in the same run (a plain `write` + `fdatasync` for files, one plain `INSERT` over one
//! connection for Postgres, one plain `EVAL` for Redis), with network round trips per
//! operation counted by a loopback proxy.
//!
//! It writes under the tenant `persistence-bench` and deletes what it wrote at the end.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use persistence::{
    AppendOptions, CheckpointId, CheckpointSelector, Envelope, Error, ItemKey, LockKey, Namespace,
    NewCheckpoint, Persistence, PutItemOptions, Result, SessionKey, TenantId, ThreadKey,
};
use persistence_bench::{CountingProxy, Stats, measure, print_header, print_row};
use serde_json::json;

use crate::bench_raw::Baseline;
use crate::output::print_json;

/// Arguments of `persistence bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Backend URL. Default: a fresh temporary directory (file://, fsync on).
    #[arg(long, env = "PERSISTENCE_URL")]
    pub url: Option<String>,
    /// Operations per row (100-event appends run a tenth of this).
    #[arg(long, default_value_t = 2000)]
    pub ops: usize,
    /// Concurrent tasks, one set of rows per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub tasks: Vec<usize>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the benchmark writes.
const TENANT: &str = "persistence-bench";
/// Unmeasured calls before each row, per task.
const WARM_UP: usize = 3;
/// Threads, sessions and locks are spread over this many ids.
const SPREAD: usize = 8;

/// The operations measured, one row each per task count.
#[derive(Clone, Copy, Debug)]
enum Op {
    CheckpointPut,
    CheckpointGetLatest,
    AppendOne,
    AppendHundred,
    StorePut,
    StoreGet,
    LockCycle,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::CheckpointPut,
        Op::CheckpointGetLatest,
        Op::AppendOne,
        Op::AppendHundred,
        Op::StorePut,
        Op::StoreGet,
        Op::LockCycle,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::CheckpointPut => "checkpoint put",
            Op::CheckpointGetLatest => "checkpoint get latest",
            Op::AppendOne => "session append 1 event",
            Op::AppendHundred => "session append 100 events",
            Op::StorePut => "store put",
            Op::StoreGet => "store get",
            Op::LockCycle => "lock cycle (acquire+release)",
        }
    }

    /// Operations in a row of `--ops N`: 100-event batches run a tenth as many.
    fn count(self, ops: usize) -> usize {
        match self {
            Op::AppendHundred => ops / 10,
            _ => ops,
        }
    }
}

/// One measured row and its ratio to the raw baseline.
#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    stats: Stats,
    vs_raw: Option<f64>,
}

/// Runs the benchmark and prints the table (or JSON).
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.ops < 10 {
        return Err(Error::invalid_input("--ops must be at least 10"));
    }
    if args.tasks.iter().any(|t| *t == 0 || *t > 1024) {
        return Err(Error::invalid_input(
            "--tasks takes counts between 1 and 1024, e.g. 1,8",
        ));
    }
    // Without --url: a scratch directory, removed when `_scratch` drops.
    let (url, _scratch) = match args.url.clone() {
        Some(url) => (url, None),
        None => {
            let dir = tempfile_dir()?;
            (format!("file://{}", dir.path().display()), Some(dir))
        }
    };
    let target = Target::prepare(&url).await?;
    let p = persistence::open(&target.open_url).await?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((1 + Op::ALL.len() * args.tasks.len()) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ops = args.ops;
    let event = Envelope::new(1, json!({"role": "assistant", "text": "x".repeat(64)}));
    bar.set_message("raw baseline");
    let record_size = serde_json::to_vec(&event.data).map_or(100, |v| v.len() + 16);
    let raw = Baseline::connect(&p, &target, record_size).await?;
    // Warm-ups are not measured: a connection prepares each statement on first use.
    raw.measure(WARM_UP).await?;
    let raw_stats = target.counted(ops, raw.measure(ops)).await?;
    bar.inc(1);

    let mut rows = Vec::new();
    let base = raw_stats.ops_per_sec;
    for &tasks in &args.tasks {
        for op in Op::ALL {
            let count = op.count(ops);
            bar.set_message(format!("{}, {tasks} tasks", op.name()));
            operation(&p, op, WARM_UP * tasks, tasks, &event).await?;
            let run = operation(&p, op, count, tasks, &event);
            let stats = target.counted(count, run).await?;
            rows.push(Row {
                vs_raw: Some(stats.ops_per_sec / base),
                stats,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    cleanup(&p).await?;
    raw.finish().await;
    p.close().await;

    if args.json {
        print_json(&json!({
            "backend": p.backend_name(),
            "ops": ops,
            "baseline": raw_stats,
            "rows": rows,
        }));
    } else {
        println!(
            "{} backend, {ops} ops per row; ratio = ops/s over the raw baseline's ops/s",
            p.backend_name()
        );
        print_header();
        print_row(&raw_stats, None);
        for row in &rows {
            print_row(&row.stats, Some(base));
        }
        if target.proxy.is_none() {
            println!("(round trips are counted for postgres:// and redis:// URLs only)");
        }
    }
    Ok(())
}

fn tempfile_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("persistence-bench-")
        .tempdir()
        .map_err(|e| Error::backend_error(format!("cannot create a temporary directory: {e}")))
}

/// The URL to open (through the counting proxy where the protocol allows).
pub struct Target {
    /// The URL the backend and the baseline connect to.
    pub open_url: String,
    /// Counts round trips; `None` for files, memory, TLS and clusters.
    pub proxy: Option<CountingProxy>,
}

impl Target {
    async fn prepare(url: &str) -> Result<Self> {
        let (scheme, _) = url.split_once("://").unwrap_or(("", ""));
        let upstream = match scheme {
            "postgres" | "postgresql" | "redis" => authority(url),
            _ => None,
        };
        let Some((host, port, start, end)) = upstream else {
            return Ok(Target {
                open_url: url.to_string(),
                proxy: None,
            });
        };
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::unavailable(format!("cannot resolve {host}:{port}")))?;
        let proxy = CountingProxy::start(addr)
            .await
            .map_err(|e| Error::backend_error(format!("cannot start the counting proxy: {e}")))?;
        let open_url = format!(
            "{}127.0.0.1:{}{}",
            &url[..start],
            proxy.addr.port(),
            &url[end..]
        );
        Ok(Target {
            open_url,
            proxy: Some(proxy),
        })
    }

    /// Runs `measured` and fills in round trips per operation when a proxy counts them.
    async fn counted(
        &self,
        ops: usize,
        measured: impl std::future::Future<Output = Result<Stats>>,
    ) -> Result<Stats> {
        let before = self.proxy.as_ref().map(CountingProxy::flights);
        let mut stats = measured.await?;
        if let (Some(proxy), Some(before)) = (&self.proxy, before) {
            stats.round_trips = Some((proxy.flights() - before) as f64 / ops as f64);
        }
        Ok(stats)
    }
}

/// Host, port and the byte range of `host[:port]` in a `scheme://[user@]host[:port]/...`
/// URL. `None` when there is no single host (clusters, sockets).
fn authority(url: &str) -> Option<(String, u16, usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    let hostport = &url[host_start..end];
    if hostport.is_empty() || hostport.contains(',') || hostport.starts_with('[') {
        return None;
    }
    let default_port = if url.starts_with("redis") { 6379 } else { 5432 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (hostport.to_string(), default_port),
    };
    Some((host, port, host_start, end))
}

fn key(kind: &str, i: usize) -> String {
    format!("{kind}-{}", i % SPREAD)
}

/// Measures one row of the workload. A failed call fails the whole benchmark: figures
/// of failing operations would be meaningless.
async fn operation(
    p: &Persistence,
    op: Op,
    ops: usize,
    tasks: usize,
    event: &Envelope,
) -> Result<Stats> {
    let tenant = Arc::new(TenantId::new(TENANT)?);
    let (p, event) = (p.clone(), event.clone());
    let failure = Arc::new(std::sync::Mutex::new(None::<Error>));
    let seen = failure.clone();
    let stats = measure(op.name(), ops, tasks, move |i| {
        let (p, t, event, seen) = (p.clone(), tenant.clone(), event.clone(), seen.clone());
        async move {
            if let Err(e) = step(&p, &t, op, i, event).await {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    })
    .await;
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

async fn step(p: &Persistence, t: &TenantId, op: Op, i: usize, event: Envelope) -> Result<()> {
    let thread = ThreadKey::new(key("thread", i))?;
    match op {
        Op::CheckpointPut => {
            let state = json!({"messages": [{"role": "user", "text": "x".repeat(200)}]});
            let c = NewCheckpoint {
                id: CheckpointId::new(),
                parent: None,
                step: i as i64,
                state: Envelope::new(1, state),
                metadata: Default::default(),
            };
            p.checkpointer
                .put(t, &thread, c, Default::default())
                .await?;
        }
        Op::CheckpointGetLatest => {
            p.checkpointer
                .get(t, &thread, CheckpointSelector::Latest)
                .await?;
        }
        Op::AppendOne | Op::AppendHundred => {
            let size = if matches!(op, Op::AppendOne) { 1 } else { 100 };
            let session = SessionKey::new(key(&format!("session-{size}"), i))?;
            p.sessions
                .append(t, &session, vec![event; size], AppendOptions::default())
                .await?;
        }
        Op::StorePut => {
            let key = ItemKey::new(format!("k{}", i % 100))?;
            p.store
                .put(t, &namespace()?, &key, event, PutItemOptions::default())
                .await?;
        }
        Op::StoreGet => {
            let key = ItemKey::new(format!("k{}", i % 100))?;
            p.store.get(t, &namespace()?, &key).await?;
        }
        Op::LockCycle => {
            let name = LockKey::new(format!("lock-{i}"))?;
            let lease = p
                .lock
                .try_acquire(t, &name, Duration::from_secs(30))
                .await?
                .ok_or_else(|| Error::conflict(format!("bench lock {name} is held")))?;
            p.lock.release(&lease).await?;
        }
    }
    Ok(())
}

fn namespace() -> Result<Namespace> {
    Namespace::new(["bench", "items"])
}

/// Deletes what the workload wrote (leases expire by themselves).
async fn cleanup(p: &Persistence) -> Result<()> {
    let t = TenantId::new(TENANT)?;
    for i in 0..SPREAD {
        p.checkpointer
            .delete_thread(&t, &ThreadKey::new(key("thread", i))?)
            .await?;
        for size in [1, 100] {
            let session = SessionKey::new(key(&format!("session-{size}"), i))?;
            p.sessions.delete(&t, &session).await?;
        }
    }
    for i in 0..100 {
        p.store
            .delete(&t, &namespace()?, &ItemKey::new(format!("k{i}"))?, None)
            .await?;
    }
    Ok(())
}
