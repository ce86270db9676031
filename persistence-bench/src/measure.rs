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
    let ops_per_sec = samples.len() as f64 / start.elapsed().as_secs_f64();
    stats_of(name, tasks, samples, ops_per_sec)
}

/// Runs `ops` operations of each of `kinds` kinds, split over `tasks` concurrent tasks
/// that take the kinds in turn operation by operation (task `t` starting at kind `t`):
/// every kind meets the same moments of the machine and the server, so their
/// difference is not drift between two runs. `op(kind, i)` runs operation `i` (unique
/// over all kinds) of `kind`. One [`Stats`] per kind, whose ops/s is `tasks` over its
/// mean latency (the kinds share the wall clock).
pub async fn measure_alternating<F, Fut>(
    names: &[String],
    ops: usize,
    tasks: usize,
    op: F,
) -> Vec<Stats>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let (kinds, tasks) = (names.len().max(1), tasks.max(1));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut samples = vec![Vec::new(); kinds];
            let mut i = t;
            while i < ops * kinds {
                let kind = (t + i / tasks) % kinds;
                let began = Instant::now();
                op(kind, i).await;
                samples[kind].push(began.elapsed());
                i += tasks;
            }
            samples
        }));
    }
    let mut samples = vec![Vec::with_capacity(ops); kinds];
    for h in handles {
        for (all, mine) in samples.iter_mut().zip(h.await.unwrap_or_default()) {
            all.extend(mine);
        }
    }
    names
        .iter()
        .zip(samples)
        .map(|(name, samples)| {
            let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len().max(1) as f64;
            let ops_per_sec = if mean > 0.0 { tasks as f64 / mean } else { 0.0 };
            stats_of(name, tasks, samples, ops_per_sec)
        })
        .collect()
}

/// The stats of `samples` (latencies of one kind of operation).
fn stats_of(name: &str, tasks: usize, mut samples: Vec<Duration>, ops_per_sec: f64) -> Stats {
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
        ops_per_sec,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Every kind gets its `ops` operations, each task takes the kinds in turn, and the
    /// operation numbers cover `0..ops * kinds` once.
    #[tokio::test]
    async fn alternating_kinds_take_turns_in_every_task() {
        for tasks in [1, 2, 4, 8] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
            let log = seen.clone();
            let stats = measure_alternating(&names, 10, tasks, move |kind, i| {
                log.lock().unwrap().push((kind, i));
                async {}
            })
            .await;
            assert_eq!(stats.len(), 4);
            let seen = seen.lock().unwrap().clone();
            let mut numbers: Vec<usize> = seen.iter().map(|(_, i)| *i).collect();
            numbers.sort_unstable();
            assert_eq!(numbers, (0..40).collect::<Vec<_>>(), "tasks {tasks}");
            for kind in 0..4 {
                let count = seen.iter().filter(|(k, _)| *k == kind).count();
                assert_eq!(count, 10, "tasks {tasks}, kind {kind}");
            }
            // Within one task (operations t, t + tasks, ...), consecutive operations
            // are of different kinds.
            for t in 0..tasks {
                let mine: Vec<usize> = (t..40)
                    .step_by(tasks)
                    .map(|i| seen.iter().find(|(_, n)| *n == i).unwrap().0)
                    .collect();
                assert!(
                    mine.windows(2).all(|w| w[0] != w[1]),
                    "tasks {tasks}: {mine:?}"
                );
            }
        }
    }
}
