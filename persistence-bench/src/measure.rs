//! Concurrent measurement of one operation and the table it is printed in.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Result of one measured operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// What was measured.
    pub name: String,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Throughput over all tasks.
    pub ops_per_sec: f64,
    /// Median latency.
    #[serde(serialize_with = "micros")]
    pub p50: Duration,
    /// 99th percentile latency.
    #[serde(serialize_with = "micros")]
    pub p99: Duration,
    /// Network round trips per operation, when measured.
    pub round_trips: Option<f64>,
    /// What each operation cost the storage, from its own counter, when read.
    pub cost: Option<crate::Cost>,
}

/// Latencies serialize as microseconds (`p50_us`-style numbers).
fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

/// Runs `op(i)` for `i in 0..ops`, split over `tasks` concurrent tasks.
pub async fn measure<F, Fut>(name: &str, ops: usize, tasks: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let tasks = tasks.max(1);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = t;
            while i < ops {
                let began = Instant::now();
                op(i).await;
                samples.push(began.elapsed());
                i += tasks;
            }
            samples
        }));
    }
    let mut samples = Vec::with_capacity(ops);
    for h in handles {
        samples.extend(h.await.unwrap_or_default());
    }
    let total = start.elapsed();
    samples.sort();
    let pick = |q: usize| {
        samples
            .get((samples.len() * q / 100).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        name: name.to_string(),
        tasks,
        ops_per_sec: samples.len() as f64 / total.as_secs_f64(),
        p50: pick(50),
        p99: pick(99),
        round_trips: None,
        cost: None,
    }
}

/// Prints the table header.
pub fn print_header() {
    println!(
        "{:<36} {:>5} {:>11} {:>11} {:>11} {:>7} {:>9}  cost/op (the storage's counter)",
        "operation", "tasks", "ops/s", "p50 µs", "p99 µs", "rt/op", "vs raw"
    );
}

/// Prints one row; `baseline` is the raw baseline's ops/s to compare with.
pub fn print_row(s: &Stats, baseline: Option<f64>) {
    let rt = s.round_trips.map_or("-".to_string(), |r| format!("{r:.2}"));
    let ratio = baseline.map_or(String::new(), |b| format!("{:.2}x", s.ops_per_sec / b));
    let cost = s.cost.as_ref().map_or(String::new(), crate::Cost::short);
    println!(
        "{:<36} {:>5} {:>11.0} {:>11.1} {:>11.1} {:>7} {:>9}  {}",
        s.name,
        s.tasks,
        s.ops_per_sec,
        s.p50.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        rt,
        ratio,
        cost
    );
}

/// The value of `--name VALUE` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
