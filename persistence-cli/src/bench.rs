//! `persistence bench`: the same workload on any backend, beside a raw baseline measured
//! in the same run (a plain `write` + `fdatasync` for files, one plain `INSERT` over one
//! connection for Postgres, one plain `EVAL` for Redis), with network round trips per
//! operation counted by a loopback proxy.
//!
//! The workload is `persistence_bench::workload`, the one the backends' examples run;
//! it writes under the tenant `persistence-bench` and deletes what it wrote at the end.

use indicatif::{ProgressBar, ProgressStyle};
use persistence::{Error, Result};
use persistence_bench::scale;
use persistence_bench::workload::{self, Op, Stores};
use persistence_bench::{CountingProxy, Stats, print_header, print_row};
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
    /// Also check that costs stay flat as data grows: get latest and put on a thread of
    /// 1 000 and of N checkpoints, reads at ordinal 1 000 and N − 1 000 of an N-event
    /// session, and paging through N sessions and N items (N at least 2 000; filling
    /// takes a while on a server backend).
    #[arg(long, value_name = "N")]
    pub scale: Option<usize>,
}

/// New connections opened to measure connection setup.
const SETUP_CONNECTIONS: usize = 20;

/// One measured row and its ratio to the raw baseline.
#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    stats: Stats,
    vs_raw: f64,
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
    bar.set_message("raw baseline");
    let record_size = serde_json::to_vec(&workload::event().data).map_or(100, |v| v.len() + 16);
    let raw = Baseline::connect(&p, &target, record_size).await?;
    // Warm-ups are not measured: a connection prepares each statement on first use.
    raw.measure(workload::WARM_UP).await?;
    let raw_stats = target.counted(ops, raw.measure(ops)).await?;
    // What TLS (and authentication) cost: once per connection, shown beside the
    // per-operation rows.
    let setup = if raw.opens_connections() {
        let count = SETUP_CONNECTIONS;
        Some(
            target
                .counted(count, raw.connection_setup(&target, count))
                .await?,
        )
    } else {
        None
    };
    bar.inc(1);

    let stores = Stores {
        checkpointer: p.checkpointer.clone(),
        store: p.store.clone(),
        sessions: p.sessions.clone(),
        lock: p.lock.clone(),
    };
    let mut rows = Vec::new();
    let base = raw_stats.ops_per_sec;
    for &tasks in &args.tasks {
        for op in Op::ALL {
            let count = op.count(ops);
            bar.set_message(format!("{}, {tasks} tasks", op.name()));
            workload::warm_up(&stores, op, tasks).await?;
            let run = workload::measure_op(&stores, op, count, tasks);
            let stats = target.counted(count, run).await?;
            rows.push(Row {
                vs_raw: stats.ops_per_sec / base,
                stats,
            });
            bar.inc(1);
        }
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
    bar.finish_and_clear();
    workload::cleanup(&stores).await?;
    raw.finish().await;
    p.close().await;

    if args.json {
        print_json(&json!({
            "backend": p.backend_name(),
            "ops": ops,
            "baseline": raw_stats,
            "connection_setup": setup,
            "tls": target.tls,
            "rows": rows,
            "scale": scale,
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
        if let Some(scale) = &scale {
            scale.print();
        }
        if let Some(setup) = &setup {
            print_row(setup, None);
            println!(
                "(a pool opens a connection once{}: the rows above are per operation on open \
                 connections)",
                if target.tls {
                    ", TLS handshake included"
                } else {
                    ""
                }
            );
        }
        if target.proxy.is_none() {
            println!(
                "(round trips are counted for single-node postgres:// and redis[s]:// URLs; \
                 TLS only when the host is 127.0.0.1, which the certificate must name)"
            );
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
    /// Counts round trips; `None` for files, memory, clusters and TLS to a host other
    /// than `127.0.0.1` (the proxy's address would not match its certificate).
    pub proxy: Option<CountingProxy>,
    /// Whether the URL asks for TLS (`rediss://`, or a Postgres `sslmode` other than
    /// `disable`/`prefer`, or a root certificate).
    pub tls: bool,
}

impl Target {
    async fn prepare(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        let tls = scheme.starts_with("rediss")
            || query.split('&').any(|kv| {
                kv.starts_with("sslrootcert=")
                    || ["require", "verify-ca", "verify-full"]
                        .iter()
                        .any(|m| kv == format!("sslmode={m}"))
            });
        let upstream = match scheme {
            "postgres" | "postgresql" | "redis" | "rediss" => authority(url),
            _ => None,
        }
        // Through the proxy a TLS client checks the certificate against 127.0.0.1.
        .filter(|(host, ..)| !tls || host == "127.0.0.1");
        let Some((host, port, start, end)) = upstream else {
            return Ok(Target {
                open_url: url.to_string(),
                proxy: None,
                tls,
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
            tls,
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
