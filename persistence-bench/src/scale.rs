//! Scale checks: whether an operation's cost stays flat as data grows, on any backend.
//! Measured in the same run at a small and a large size: `get(Latest)` on a thread of
//! 1 000 and of N checkpoints (and `put` on each), reading 100 events after ordinal 1 000 and after ordinal
//! N − 1 000 of an N-event session, and paging through N sessions and N items (in
//! pages of 100 and of 1 000, after one unmeasured pass so both meet warm caches).
//!
//! Everything is written under [`TENANT`] and deleted by [`cleanup`].

use std::time::{Duration, Instant};

use persistence_core::{
    AppendOptions, CheckpointSelector, Cursor, Envelope, ItemKey, ListItems, ListSessions,
    ListThreads, Namespace, NewCheckpoint, Result, SessionKey, TenantId, ThreadKey,
};
use serde_json::json;

use crate::workload::Stores;
use crate::{Stats, measure};

/// The tenant the scale checks write under.
pub const TENANT: &str = "persistence-bench-scale";
/// The small size every large one is compared with.
pub const SMALL: usize = 1_000;
/// Calls per measured row.
const CALLS: usize = 200;

/// What the scale checks measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleReport {
    /// The large size (checkpoints on a thread, events in a session, sessions, items).
    pub size: usize,
    /// Rows at [`SMALL`] and at `size`.
    pub rows: Vec<Stats>,
    /// p50 at `size` over p50 at [`SMALL`], per operation: 1.0 is flat.
    pub growth: Vec<Growth>,
    /// Full passes over every session and every item.
    pub list_all: Vec<ListAll>,
}

/// How much an operation's p50 grew from [`SMALL`] to the large size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Growth {
    /// The operation.
    pub operation: String,
    /// p50 at the large size over p50 at [`SMALL`].
    pub ratio: f64,
}

/// One full pass of a listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListAll {
    /// `sessions` or `items`.
    pub what: String,
    /// Entries seen.
    pub entries: usize,
    /// Page size.
    pub page: usize,
    /// Wall time of the whole pass.
    pub seconds: f64,
}

impl ScaleReport {
    /// Prints the rows and figures under a table header printed by the caller.
    pub fn print(&self) {
        for row in &self.rows {
            crate::print_row(row, None);
        }
        for g in &self.growth {
            println!(
                "{} at {} vs {SMALL}: {:.2}x (p50)",
                g.operation, self.size, g.ratio
            );
        }
        for l in &self.list_all {
            println!(
                "list all {} {}, pages of {}: {:.2} s",
                l.entries, l.what, l.page, l.seconds
            );
        }
    }
}

fn tenant() -> Result<TenantId> {
    TenantId::new(TENANT)
}

fn namespace() -> Result<Namespace> {
    Namespace::new(["scale"])
}

/// Runs the scale checks at `size` (at least [`SMALL`]`+ 1 000`); `progress` is told
/// what is being filled or measured.
///
/// # Errors
/// The first failed operation.
pub async fn run(stores: &Stores, size: usize, progress: &dyn Fn(&str)) -> Result<ScaleReport> {
    let size = size.max(SMALL + 1_000);
    let t = tenant()?;
    let mut rows = Vec::new();
    let mut growth = Vec::new();

    let (mut latest, mut puts) = (Vec::new(), Vec::new());
    for n in [SMALL, size] {
        progress(&format!("filling a thread with {n} checkpoints"));
        let th = ThreadKey::new(format!("scale-thread-{n}"))?;
        for step in 0..n {
            let c = NewCheckpoint::new(
                Default::default(),
                step as i64,
                Envelope::new(1, json!({ "step": step })),
            );
            stores
                .checkpointer
                .put(&t, &th, c, Default::default())
                .await?;
        }
        let (s, t2, th2) = (stores.clone(), t.clone(), th.clone());
        let stats = measure(
            &format!("get latest, {n} checkpoints"),
            CALLS,
            1,
            move |_| {
                let (s, t, th) = (s.clone(), t2.clone(), th2.clone());
                async move {
                    // A failure shows as a slow row; the fill above proved the thread works.
                    let _ = s
                        .checkpointer
                        .get(&t, &th, CheckpointSelector::Latest)
                        .await;
                }
            },
        )
        .await;
        latest.push(stats.p50);
        rows.push(stats);
        let (s, t2, th2) = (stores.clone(), t.clone(), th.clone());
        let stats = measure(&format!("put, {n} checkpoints"), CALLS, 1, move |i| {
            let (s, t, th) = (s.clone(), t2.clone(), th2.clone());
            async move {
                let c = NewCheckpoint::new(
                    Default::default(),
                    (n + i) as i64,
                    Envelope::new(1, json!({ "step": n + i })),
                );
                let _ = s.checkpointer.put(&t, &th, c, Default::default()).await;
            }
        })
        .await;
        puts.push(stats.p50);
        rows.push(stats);
    }
    growth.push(Growth {
        operation: "get latest".into(),
        ratio: ratio(latest[1], latest[0]),
    });
    growth.push(Growth {
        operation: "put".into(),
        ratio: ratio(puts[1], puts[0]),
    });

    progress(&format!("filling a session with {size} events"));
    let long = SessionKey::new("scale-long")?;
    let mut left = size;
    while left > 0 {
        let batch = left.min(1_000);
        let events = vec![crate::workload::event(); batch];
        stores
            .sessions
            .append(&t, &long, events, AppendOptions::default())
            .await?;
        left -= batch;
    }
    let mut reads = Vec::new();
    for after in [SMALL as u64, (size - SMALL) as u64] {
        let (s, t2, long) = (stores.clone(), t.clone(), long.clone());
        let stats = measure(
            &format!("read 100 events after #{after}"),
            CALLS,
            1,
            move |_| {
                let (s, t, long) = (s.clone(), t2.clone(), long.clone());
                async move {
                    let _ = s.sessions.read(&t, &long, after, 100).await;
                }
            },
        )
        .await;
        reads.push(stats.p50);
        rows.push(stats);
    }
    growth.push(Growth {
        operation: "read 100 events".into(),
        ratio: ratio(reads[1], reads[0]),
    });

    progress(&format!("creating {size} sessions and {size} items"));
    let ns = namespace()?;
    for i in 0..size {
        let s = SessionKey::new(format!("scale-s{i:08}"))?;
        stores
            .sessions
            .append(
                &t,
                &s,
                vec![crate::workload::event()],
                AppendOptions::default(),
            )
            .await?;
        let key = ItemKey::new(format!("scale-k{i:08}"))?;
        stores
            .store
            .put(&t, &ns, &key, crate::workload::event(), Default::default())
            .await?;
    }
    // One unmeasured pass first, so both page sizes meet the same (warm) caches: the
    // first pass after creating N entries also pays for reading them back in.
    progress("paging through everything once, unmeasured");
    list_sessions(stores, &t, 1_000).await?;
    list_items(stores, &t, &ns, 1_000).await?;
    let mut list_all = Vec::new();
    for page in [100usize, 1_000] {
        progress(&format!("paging through everything, pages of {page}"));
        let started = Instant::now();
        let entries = list_sessions(stores, &t, page).await?;
        list_all.push(ListAll {
            what: "sessions".into(),
            entries,
            page,
            seconds: started.elapsed().as_secs_f64(),
        });
        let started = Instant::now();
        let entries = list_items(stores, &t, &ns, page).await?;
        list_all.push(ListAll {
            what: "items".into(),
            entries,
            page,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(ScaleReport {
        size,
        rows,
        growth,
        list_all,
    })
}

/// Pages through every session of `t`, `page` at a time; returns how many there were.
async fn list_sessions(stores: &Stores, t: &TenantId, page: usize) -> Result<usize> {
    let (mut cursor, mut entries): (Option<Cursor>, usize) = (None, 0);
    loop {
        let p = stores
            .sessions
            .list_sessions(
                t,
                ListSessions::default().with_cursor(cursor).with_limit(page),
            )
            .await?;
        entries += p.items.len();
        cursor = p.next;
        if cursor.is_none() {
            return Ok(entries);
        }
    }
}

/// Pages through every item of `ns`, `page` at a time; returns how many there were.
async fn list_items(stores: &Stores, t: &TenantId, ns: &Namespace, page: usize) -> Result<usize> {
    let (mut cursor, mut entries): (Option<Cursor>, usize) = (None, 0);
    loop {
        let query = ListItems::default().with_cursor(cursor).with_limit(page);
        let p = stores.store.list(t, ns, query).await?;
        entries += p.items.len();
        cursor = p.next;
        if cursor.is_none() {
            return Ok(entries);
        }
    }
}

fn ratio(large: Duration, small: Duration) -> f64 {
    large.as_secs_f64() / small.as_secs_f64().max(1e-9)
}

/// Deletes everything [`run`] wrote (threads, sessions, items of [`TENANT`]).
///
/// # Errors
/// The first failed delete.
pub async fn cleanup(stores: &Stores) -> Result<()> {
    let t = tenant()?;
    let mut cursor = None;
    loop {
        let page = stores
            .checkpointer
            .list_threads(
                &t,
                ListThreads::default().with_cursor(cursor).with_limit(1_000),
            )
            .await?;
        for th in &page.items {
            stores.checkpointer.delete_thread(&t, th).await?;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    loop {
        // Deleting while paging: always take the first page again.
        let page = stores
            .sessions
            .list_sessions(&t, ListSessions::default().with_limit(1_000))
            .await?;
        for s in &page.items {
            stores.sessions.delete(&t, s).await?;
        }
        if page.next.is_none() {
            break;
        }
    }
    let ns = namespace()?;
    loop {
        let query = ListItems::default().with_limit(1_000);
        let page = stores.store.list(&t, &ns, query).await?;
        for item in &page.items {
            stores.store.delete(&t, &ns, &item.key, None).await?;
        }
        if page.next.is_none() {
            break;
        }
    }
    Ok(())
}
