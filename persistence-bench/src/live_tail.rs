//! Live tail latency: how long an appended event takes to reach its subscribers
//! (append start to `Subscription::next` returning it), with 1 and with many
//! subscribers, beside the append's own latency. Appends are spaced apart, so each
//! delivery is measured on its own rather than caught up in a batch.
//!
//! Everything is written under [`TENANT`] and deleted at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persistence_core::{
    AppendOptions, Envelope, Result, SessionKey, SessionLog, Subscribe, Subscription, TenantId,
};
use serde_json::json;

/// The tenant the live tail check writes under.
pub const TENANT: &str = "persistence-bench-tail";

/// One measured configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TailRow {
    /// Subscribers of the session.
    pub subscribers: usize,
    /// Events appended (one per append).
    pub events: usize,
    /// Median append latency.
    #[serde(serialize_with = "micros")]
    pub append_p50: Duration,
    /// Median append-to-delivery latency, over every subscriber's deliveries.
    #[serde(serialize_with = "micros")]
    pub delivery_p50: Duration,
    /// 99th percentile of the same.
    #[serde(serialize_with = "micros")]
    pub delivery_p99: Duration,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

/// Measures each subscriber count in `subscribers` with `events` appends spaced by
/// `spacing`.
///
/// # Errors
/// Whatever an append, a read or the cleanup fails with; a subscriber that sees no
/// event for 30 s fails `Timeout`.
pub async fn run(
    sessions: Arc<dyn SessionLog>,
    subscribers: &[usize],
    events: usize,
    spacing: Duration,
) -> Result<Vec<TailRow>> {
    let tenant = TenantId::new(TENANT)?;
    let mut rows = Vec::new();
    for (n, &count) in subscribers.iter().enumerate() {
        let session = SessionKey::new(format!("tail-{n}"))?;
        sessions.delete(&tenant, &session).await?;
        let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; events + 1]));
        let mut readers = Vec::new();
        for _ in 0..count {
            let (sessions, tenant, session, sent) = (
                sessions.clone(),
                tenant.clone(),
                session.clone(),
                sent.clone(),
            );
            readers.push(tokio::spawn(async move {
                let mut tail =
                    Subscription::new(&*sessions, &tenant, &session, 0, Subscribe::default());
                let mut latencies = Vec::with_capacity(events);
                for _ in 0..events {
                    let event = tokio::time::timeout(Duration::from_secs(30), tail.next())
                        .await
                        .map_err(|_| {
                            persistence_core::Error::timeout("live tail: no event for 30 s")
                        })??;
                    let arrived = Instant::now();
                    let began = lock(&sent)
                        .get(event.seq as usize)
                        .copied()
                        .flatten()
                        .unwrap_or(arrived);
                    latencies.push(arrived - began);
                }
                Result::Ok(latencies)
            }));
        }
        // The subscribers are waiting before the first append.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut appends = Vec::with_capacity(events);
        for seq in 1..=events {
            let began = Instant::now();
            if let Some(slot) = lock(&sent).get_mut(seq) {
                *slot = Some(began);
            }
            let event = vec![Envelope::new(1, json!({"seq": seq}))];
            sessions
                .append(&tenant, &session, event, AppendOptions::default())
                .await?;
            appends.push(began.elapsed());
            tokio::time::sleep(spacing).await;
        }
        let mut deliveries = Vec::with_capacity(events * count);
        for reader in readers {
            let latencies = reader
                .await
                .map_err(|e| persistence_core::Error::backend_error(e.to_string()))??;
            deliveries.extend(latencies);
        }
        sessions.delete(&tenant, &session).await?;
        appends.sort();
        deliveries.sort();
        rows.push(TailRow {
            subscribers: count,
            events,
            append_p50: quantile(&appends, 50),
            delivery_p50: quantile(&deliveries, 50),
            delivery_p99: quantile(&deliveries, 99),
        });
    }
    Ok(rows)
}

/// Prints the rows as a table.
pub fn print(rows: &[TailRow]) {
    println!();
    println!("live tail (append to delivery, one event per append)");
    println!(
        "{:>12} {:>7} {:>12} {:>14} {:>14}",
        "subscribers", "events", "append p50", "delivery p50", "delivery p99"
    );
    for r in rows {
        println!(
            "{:>12} {:>7} {:>10.2}ms {:>12.2}ms {:>12.2}ms",
            r.subscribers,
            r.events,
            r.append_p50.as_secs_f64() * 1e3,
            r.delivery_p50.as_secs_f64() * 1e3,
            r.delivery_p99.as_secs_f64() * 1e3,
        );
    }
}

fn quantile(sorted: &[Duration], q: usize) -> Duration {
    sorted
        .get((sorted.len() * q / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
