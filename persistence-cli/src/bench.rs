//! `persistence bench`: the same workload on any backend, beside raw baselines measured
//! in the same run at the same concurrency (module `bench_raw`: a write and a read of the
//! same durability), with each operation's cost from the storage's own counter (module
//! `bench_cost`) and network round trips per operation counted in a separate pass
//! through a loopback proxy.
//!
//! The workload is `persistence_bench::workload`, the one the backends' examples run;
//! it writes under the tenant `persistence-bench` and deletes what it wrote at the end.

use indicatif::{ProgressBar, ProgressStyle};
use persistence::{Error, Persistence, Result};
use persistence_bench::scale;
use persistence_bench::workload::{self, Op, Stores};
use persistence_bench::{Stats, print_header, print_row};
use serde_json::json;

use crate::bench_cost::CostCounter;
use crate::bench_raw::{self, Baseline, RawOp};
use crate::bench_target::Target;
use crate::output::{Format, print_json, say};

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
    /// Same as `--format json` (kept for scripts written before `--format`).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Also check that costs stay flat as data grows: get latest and put on a thread of
    /// 1 000 and of N checkpoints, reads at ordinal 1 000 and N − 1 000 of an N-event
    /// session, and paging through N sessions and N items (N at least 2 000; filling
    /// takes a while on a server backend).
    #[arg(long, value_name = "N")]
    pub scale: Option<usize>,
    /// Also measure live tails: append-to-delivery latency p50/p99 with 1 and 100
    /// subscribers of one session, beside the append latency.
    #[arg(long)]
    pub live_tail: bool,
    /// Also measure the payload codec: checkpoint puts and gets of 1 KiB, 64 KiB and
    /// 1 MiB agent states stored as they are, compressed, encrypted and both (ops/s,
    /// p50, p99, bytes stored), at the first `--tasks` value.
    #[arg(long)]
    pub codec: bool,
}

/// New connections opened to measure connection setup.
const SETUP_CONNECTIONS: usize = 20;

/// Operations per row in the round-trip pass.
const COUNTED_OPS: usize = 100;

/// One measured row and its ratio to the raw baseline of the same kind (write or read)
/// at the same concurrency.
#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    stats: Stats,
    /// The baseline's name.
    baseline: String,
    /// The baseline's ops/s measured around this row ([`around_row`]).
    baseline_ops_per_sec: f64,
    /// `ops_per_sec / baseline_ops_per_sec`.
    vs_raw: f64,
}

/// The baseline of a row, measured right around it: half the row's operations just
/// before and half just after (the harmonic mean of the two rates, as if run as one).
/// A disk's or a VM's speed drifts over a run by more than the differences measured
/// here; a baseline taken minutes earlier would show that drift as a ratio.
async fn around_row<F: std::future::Future<Output = Result<Stats>>>(
    raw: &Baseline,
    kind: RawOp,
    count: usize,
    tasks: usize,
    row: F,
) -> Result<(Stats, f64)> {
    let half = (count / 2).max(tasks);
    let before = raw.measure(kind, half, tasks).await?;
    raw.publish_stats().await;
    let stats = row.await?;
    let after = raw.measure(kind, half, tasks).await?;
    raw.publish_stats().await;
    let rate = 2.0 / (1.0 / before.ops_per_sec + 1.0 / after.ops_per_sec);
    Ok((stats, rate))
}

/// The raw baselines at one concurrency.
#[derive(serde::Serialize)]
struct Baselines {
    tasks: usize,
    write: Stats,
    read: Stats,
    /// The server's own lock cycle, where it has one ([`Baseline::kinds`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<Stats>,
    /// The least one script costs the server (Redis: a one-command script), printed
    /// beside the rows as the floor of every atomic multi-step operation; no row's
    /// baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<Stats>,
    /// A new file without a sync (the filesystem): what a checkpoint put pays besides
    /// its flush, printed beside the rows; no row's baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    create: Option<Stats>,
}

impl Baselines {
    /// The baseline `op`'s row is compared with: reads with the raw read, the lock
    /// cycle with the server's own lock where there is one, the rest with the raw write.
    fn for_op(&self, op: Op) -> (RawOp, &Stats) {
        match (op, &self.lock) {
            (Op::LockCycle, Some(lock)) => (RawOp::LockCycle, lock),
            _ if op.is_read() => (RawOp::Read, &self.read),
            _ => (RawOp::Write, &self.write),
        }
    }

    fn all_mut(&mut self) -> impl Iterator<Item = (RawOp, &mut Stats)> {
        [
            (RawOp::Write, &mut self.write),
            (RawOp::Read, &mut self.read),
        ]
        .into_iter()
        .chain(self.lock.as_mut().map(|s| (RawOp::LockCycle, s)))
        .chain(self.script.as_mut().map(|s| (RawOp::Script, s)))
        .chain(self.create.as_mut().map(|s| (RawOp::Create, s)))
    }
}

/// Runs the benchmark and prints the table (or JSON).
///
/// Timings are taken on direct connections; round trips per operation are counted in
/// a separate pass through the counting proxy (which adds latency to whatever it
/// carries), and each row's storage cost is read from the storage's own counter
/// ([`CostCounter`]) around it, warm-up included.
pub async fn run(mut args: BenchArgs, format: Format) -> Result<()> {
    args.json |= format == Format::Json;
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
    let p = persistence::open(&url).await?;
    let steps = args.tasks.len() * (2 + Op::ALL.len()) + usize::from(target.proxy.is_some());
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ops = args.ops;
    let record_size = serde_json::to_vec(&workload::event().data).map_or(100, |v| v.len() + 16);
    let widest = args.tasks.iter().copied().max().unwrap_or(1);
    let raw = Baseline::connect(&p, &url, record_size, widest).await?;
    let kinds = raw.kinds();
    bar.set_length((steps + args.tasks.len() * (kinds.len() - 2)) as u64);
    let cost = CostCounter::connect(&p, &url).await;
    let stores = stores_of(&p);

    let mut baselines = Vec::new();
    let mut rows = Vec::new();
    for &tasks in &args.tasks {
        let mut measured = Vec::new();
        for &kind in &kinds {
            bar.set_message(format!("{}, {tasks} tasks", raw.name(kind)));
            let before = cost.read().await;
            // Warm-ups are not timed: a connection prepares each statement on first use.
            raw.measure(kind, workload::WARM_UP * tasks, tasks).await?;
            let mut stats = raw.measure(kind, ops, tasks).await?;
            raw.publish_stats().await;
            stats.cost = cost.since(before, ops + workload::WARM_UP * tasks).await;
            measured.push((kind, stats));
            bar.inc(1);
        }
        let mut take = |want: RawOp| {
            let at = measured.iter().position(|(kind, _)| *kind == want)?;
            Some(measured.swap_remove(at).1)
        };
        let (Some(write), Some(read)) = (take(RawOp::Write), take(RawOp::Read)) else {
            return Err(Error::backend_error("bench: a baseline was not measured"));
        };
        let b = Baselines {
            tasks,
            write,
            read,
            lock: take(RawOp::LockCycle),
            script: take(RawOp::Script),
            create: take(RawOp::Create),
        };
        for op in Op::ALL {
            let count = op.count(ops);
            bar.set_message(format!("{}, {tasks} tasks", op.name()));
            // A backend of its own where the counter counts on close (Postgres).
            let own = match cost.counts_on_close() {
                true => Some(persistence::open(&url).await?),
                false => None,
            };
            // The guarded row's leases and threads carry over (and are cleaned up with
            // the main backend).
            let stores = own.as_ref().map_or_else(
                || stores.clone(),
                |own| Stores {
                    guarded: stores.guarded.clone(),
                    ..stores_of(own)
                },
            );
            let (kind, base) = b.for_op(op);
            let (stats, base_rate) = around_row(&raw, kind, count, tasks, async {
                let before = cost.read().await;
                workload::warm_up(&stores, op, tasks).await?;
                let mut stats = workload::measure_op(&stores, op, count, tasks).await?;
                if let Some(own) = own {
                    own.close().await;
                }
                stats.cost = cost.since(before, count + workload::WARM_UP * tasks).await;
                Ok(stats)
            })
            .await?;
            rows.push(Row {
                vs_raw: stats.ops_per_sec / base_rate,
                baseline: base.name.clone(),
                baseline_ops_per_sec: base_rate,
                stats,
            });
            bar.inc(1);
        }
        baselines.push(b);
    }
    // What TLS (and authentication) cost: once per connection, shown beside the
    // per-operation rows.
    let mut setup = if raw.opens_connections() {
        Some(bench_raw::connection_setup(&p, &url, target.tls, SETUP_CONNECTIONS).await?)
    } else {
        None
    };
    if target.proxy.is_some() {
        bar.set_message("round trips, through the counting proxy");
        count_round_trips(
            &target,
            record_size,
            &mut baselines,
            &mut rows,
            &mut setup,
            stores.guarded.clone(),
        )
        .await?;
        bar.inc(1);
    }
    let scale = match args.scale {
        Some(size) => {
            bar.set_length(bar.length().unwrap_or(0) + 1);
            let report = scale::run(&stores, size, &|what| bar.set_message(what.to_owned())).await;
            bar.set_message("cleaning up the scale data");
            scale::cleanup(&stores).await?;
            bar.inc(1);
            Some(report?)
        }
        None => None,
    };
    let live_tail = if args.live_tail {
        bar.set_message("live tail: 1 and 100 subscribers");
        Some(
            persistence_bench::live_tail::run(
                p.sessions.clone(),
                &[1, 100],
                200,
                std::time::Duration::from_millis(5),
            )
            .await?,
        )
    } else {
        None
    };
    let codec = if args.codec {
        bar.set_message("payload codec: none, zstd, aead, zstd+aead");
        let tasks = args.tasks.first().copied().unwrap_or(1);
        Some(persistence_bench::codec::run(p.checkpointer.clone(), &p.capabilities(), tasks).await?)
    } else {
        None
    };
    bar.finish_and_clear();
    workload::cleanup(&stores).await?;
    raw.finish().await?;
    p.close().await;

    let counted = target.proxy.as_ref().map(|_| {
        format!(
            "counted in a separate pass of {COUNTED_OPS} operations per row through a \
             loopback proxy; the timings are on direct connections"
        )
    });
    if args.json {
        print_json(&json!({
            "backend": p.backend_name(),
            "ops": ops,
            "baselines": baselines,
            "connection_setup": setup,
            "tls": target.tls,
            "round_trips": counted,
            "rows": rows,
            "scale": scale,
            "live_tail": live_tail,
            "codec": codec,
        }));
    } else {
        print_table(
            &p,
            ops,
            &baselines,
            &rows,
            setup.as_ref(),
            &target,
            counted.as_deref(),
        );
        if let Some(scale) = &scale {
            scale.print();
        }
        if let Some(rows) = &live_tail {
            persistence_bench::live_tail::print(rows);
        }
        if let Some(rows) = &codec {
            persistence_bench::codec::print(rows);
        }
    }
    Ok(())
}

fn stores_of(p: &Persistence) -> Stores {
    Stores {
        checkpointer: p.checkpointer.clone(),
        store: p.store.clone(),
        sessions: p.sessions.clone(),
        lock: p.lock.clone(),
        guarded: Default::default(),
    }
}

/// The round-trip pass: the same rows, [`COUNTED_OPS`] operations each at their own
/// concurrency, through the target's proxy (none: nothing to count); fills in
/// `round_trips` of every row.
async fn count_round_trips(
    target: &Target,
    record_size: usize,
    baselines: &mut [Baselines],
    rows: &mut [Row],
    setup: &mut Option<Stats>,
    guarded: workload::GuardedThreads,
) -> Result<()> {
    let (Some(proxy), Some(proxy_url)) = (&target.proxy, &target.proxy_url) else {
        return Ok(());
    };
    let counted = persistence::open(proxy_url).await?;
    // The guarded row's leases are held by the timed pass: this pass continues them.
    let stores = Stores {
        guarded,
        ..stores_of(&counted)
    };
    let widest = baselines.iter().map(|b| b.tasks).max().unwrap_or(1);
    let raw = Baseline::connect(&counted, proxy_url, record_size, widest).await?;
    let flights = |before: u64| Some((proxy.flights() - before) as f64 / COUNTED_OPS as f64);
    for b in baselines.iter_mut() {
        let tasks = b.tasks;
        for (kind, stats) in b.all_mut() {
            raw.measure(kind, workload::WARM_UP * tasks, tasks).await?;
            let before = proxy.flights();
            raw.measure(kind, COUNTED_OPS, tasks).await?;
            stats.round_trips = flights(before);
        }
    }
    for row in rows.iter_mut() {
        let Some(op) = Op::ALL.into_iter().find(|op| row.stats.name == op.name()) else {
            continue;
        };
        let tasks = row.stats.tasks;
        workload::warm_up(&stores, op, tasks).await?;
        let before = proxy.flights();
        workload::measure_op(&stores, op, COUNTED_OPS, tasks).await?;
        row.stats.round_trips = flights(before);
    }
    if let Some(setup) = setup {
        let count = 5;
        let before = proxy.flights();
        bench_raw::connection_setup(&counted, proxy_url, target.tls, count).await?;
        setup.round_trips = Some((proxy.flights() - before) as f64 / count as f64);
    }
    workload::cleanup(&stores).await?;
    raw.finish().await?;
    counted.close().await;
    Ok(())
}

fn print_table(
    p: &Persistence,
    ops: usize,
    baselines: &[Baselines],
    rows: &[Row],
    setup: Option<&Stats>,
    target: &Target,
    counted: Option<&str>,
) {
    say!(
        "{} backend, {ops} ops per row; vs raw = ops/s over the raw baseline's (a write, \
         a read or a lock cycle, at the same concurrency, measured again around each \
         row: half before, half after)",
        p.backend_name()
    );
    print_header();
    let mut disk_detail = None;
    for b in baselines {
        for stats in [
            Some(&b.write),
            Some(&b.read),
            b.lock.as_ref(),
            b.script.as_ref(),
            b.create.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            print_row(stats, None);
            if let Some(cost) = &stats.cost
                && cost.unit != "device flushes"
                && !cost.detail.is_empty()
            {
                say!("{:<6}{}", "", cost.detail);
            }
        }
        for row in rows.iter().filter(|r| r.stats.tasks == b.tasks) {
            print_row(&row.stats, Some(row.baseline_ops_per_sec));
            if let Some(cost) = &row.stats.cost {
                if cost.unit == "device flushes" {
                    disk_detail.get_or_insert_with(|| cost.detail.clone());
                } else if !cost.detail.is_empty() {
                    say!("{:<6}{}", "", cost.detail);
                }
            }
        }
    }
    if let Some(setup) = setup {
        print_row(setup, None);
        say!(
            "(a pool opens a connection once{}: the rows above are per operation on open \
             connections)",
            if target.tls {
                ", TLS handshake included"
            } else {
                ""
            }
        );
    }
    if let Some(detail) = disk_detail {
        say!("(cost: the disk's flush requests per operation, warm-up included: {detail})");
    }
    match counted {
        Some(how) => say!("(round trips {how})"),
        None => say!(
            "(round trips are counted for single-node postgres:// and redis[s]:// URLs; \
             TLS only when the host is 127.0.0.1, which the certificate must name)"
        ),
    }
}

fn tempfile_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("persistence-bench-")
        .tempdir()
        .map_err(|e| Error::backend_error(format!("cannot create a temporary directory: {e}")))
}
