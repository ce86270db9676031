//! `persistence demo`: a small multi-tenant agent simulation.
//!
//! Four workers (two tenants, two threads each; both tenants use the thread id
//! `support/ticket-1`) take steps under a per-thread lock: each step appends an event to
//! the thread's session, updates a memory item and checkpoints, with the lease's fence on
//! every write. One worker is killed mid-run (its task aborted, its lease left to expire,
//! as after `kill -9`); a new worker takes the lock with a higher fence, resumes from the
//! latest checkpoint, and a late write with the dead worker's fence is refused. Running
//! the demo again continues every thread where it stopped.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use persistence::{
    AppendOptions, CheckpointId, CheckpointSelector, Envelope, Error, ErrorKind, ExpectLatest,
    Fence, ItemKey, Lease, ListThreads, LockKey, LockOptions, Metadata, Namespace, NewCheckpoint,
    Persistence, PutCheckpointOptions, PutItemOptions, Result, SessionKey, TenantId, ThreadKey,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::output::{Format, print_json, print_table, say};

/// The simulated tenants and their threads.
const THREADS: [(&str, &str); 4] = [
    ("acme", "support/ticket-1"),
    ("acme", "billing/run-7"),
    ("globex", "support/ticket-1"),
    ("globex", "research/agent-3"),
];
/// The worker that gets killed (index into [`THREADS`]).
const VICTIM: usize = 1;
/// Lease TTL: how long the killed worker's lease blocks its thread. Long enough that a
/// live worker's renewals (every third of it) survive a loaded machine's slow fsyncs.
const LEASE_TTL: Duration = Duration::from_secs(4);
/// Simulated work per step (a model or tool call).
const STEP_WORK: Duration = Duration::from_millis(40);

#[derive(Clone)]
struct Worker {
    tenant: TenantId,
    thread: ThreadKey,
    session: SessionKey,
    memory: Namespace,
    lock: LockKey,
}

impl Worker {
    fn new(tenant: &str, thread: &str) -> Result<Self> {
        Ok(Worker {
            tenant: TenantId::new(tenant)?,
            thread: ThreadKey::new(thread)?,
            session: SessionKey::new(thread)?,
            memory: Namespace::new(["memory", thread])?,
            lock: LockKey::for_thread(&ThreadKey::new(thread)?),
        })
    }

    fn label(&self) -> String {
        format!("{}/{}", self.tenant, self.thread)
    }
}

/// A step that was checkpointed, reported by a running worker.
struct Progressed {
    step: i64,
    lease: Lease,
}

/// What the demo tells: printed as it goes, or (`--format json`) gathered into one
/// document `{"url", "backend", "lines": [...], "workers": [...]}` printed at the end.
struct Narration {
    format: Format,
    lines: Vec<String>,
}

impl Narration {
    fn line(&mut self, text: impl Into<String>) {
        let text = text.into();
        match self.format {
            Format::Table => say!("{text}"),
            Format::Json if text.is_empty() => {}
            Format::Json => self.lines.push(text),
        }
    }
}

/// Runs the simulation against `url`, `steps` steps per thread.
pub async fn run(url: &str, steps: u64, format: Format) -> Result<()> {
    if steps < 2 {
        return Err(Error::invalid_input(
            "--steps must be at least 2 (one worker is killed mid-run)",
        ));
    }
    let p = persistence::open(url).await?;
    let shown = persistence::redact_url(url);
    let mut out = Narration {
        format,
        lines: Vec::new(),
    };
    out.line(format!(
        "persistence demo on {shown} ({} backend)",
        p.backend_name()
    ));
    let workers = THREADS
        .iter()
        .map(|(t, th)| Worker::new(t, th))
        .collect::<Result<Vec<_>>>()?;
    let mut targets = Vec::new();
    for w in &workers {
        let start = latest_step(&p, w).await?;
        targets.push((start, start + steps as i64));
    }
    let bar = ProgressBar::new(steps * workers.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );

    let (tx, mut victim_progress) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let report = (i == VICTIM).then(|| tx.clone());
        let task = tokio::spawn(work(p.clone(), w.clone(), targets[i], bar.clone(), report));
        handles.push(task);
    }
    drop(tx);

    // Kill the victim once it has checkpointed half of its steps.
    let victim = &workers[VICTIM];
    let kill_at = targets[VICTIM].1 - (steps as i64) / 2;
    let mut killed = None;
    while let Some(Progressed { step, lease }) = victim_progress.recv().await {
        if step >= kill_at {
            handles[VICTIM].abort();
            let fence = lease.fence;
            killed = Some((step, lease));
            bar.suspend(|| {
                out.line(format!(
                    "killed the worker of {} after step {step} (fence {}); dropping its work released its lease",
                    victim.label(),
                    fence.0
                ));
            });
            break;
        }
    }
    let Some((killed_at, dead_lease)) = killed else {
        // The victim stopped on its own: report its error, if it had one.
        join(handles.swap_remove(VICTIM)).await?;
        return Err(Error::backend_error(
            "the worker to be killed finished before it could be killed",
        ));
    };
    let mut outcomes = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        if i == VICTIM {
            outcomes.push(None);
            continue;
        }
        outcomes.push(Some(join(handle).await?));
    }
    bar.set_message(format!("resuming {}", victim.label()));
    let resumed = join(tokio::spawn(work(
        p.clone(),
        victim.clone(),
        targets[VICTIM],
        bar.clone(),
        None,
    )))
    .await?;
    outcomes[VICTIM] = Some(resumed);
    bar.finish_with_message("done");

    let zombie = zombie_write(&p, victim, &dead_lease).await?;
    out.line("");
    let mut rows = Vec::new();
    for (w, outcome) in workers.iter().zip(&outcomes) {
        let Some(o) = outcome else { continue };
        let head = p.sessions.head(&w.tenant, &w.session).await?;
        let note = if o.resumed_from > o.started_at {
            format!(
                "killed after step {killed_at}, resumed from checkpoint {} with fence {}",
                o.resumed_from, o.fence.0
            )
        } else if o.started_at > 0 {
            format!("continued from step {} of an earlier run", o.started_at)
        } else {
            String::new()
        };
        rows.push(vec![
            w.tenant.to_string(),
            w.thread.to_string(),
            o.last_step.to_string(),
            head.to_string(),
            note,
        ]);
    }
    const COLUMNS: [&str; 5] = ["tenant", "thread", "step", "events", "note"];
    if format == Format::Table {
        print_table(&COLUMNS, &rows);
    }
    out.line("");
    out.line(format!(
        "fencing: a late checkpoint from the killed worker (fence {}) was refused: {zombie}",
        dead_lease.fence.0
    ));
    show_isolation(&p, &workers, &mut out).await?;
    out.line("");
    out.line(format!("next: persistence status --url {shown}"));
    out.line(format!(
        "      persistence inspect --url {shown} thread --tenant acme billing/run-7"
    ));
    p.close().await;
    if format == Format::Json {
        let workers: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                serde_json::Value::Object(
                    COLUMNS
                        .iter()
                        .zip(row)
                        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str())))
                        .collect(),
                )
            })
            .collect();
        print_json(&serde_json::json!({
            "url": shown,
            "backend": p.backend_name(),
            "lines": out.lines,
            "workers": workers,
        }));
    }
    Ok(())
}

async fn join(handle: tokio::task::JoinHandle<Result<Outcome>>) -> Result<Outcome> {
    handle
        .await
        .map_err(|e| Error::backend_error(format!("a worker task failed: {e}")))?
}

/// What one worker run did.
struct Outcome {
    /// Latest step when the demo started (earlier runs).
    started_at: i64,
    /// Latest step when this worker took the lock.
    resumed_from: i64,
    last_step: i64,
    fence: Fence,
}

async fn latest_step(p: &Persistence, w: &Worker) -> Result<i64> {
    let latest = p
        .checkpointer
        .get(&w.tenant, &w.thread, CheckpointSelector::Latest)
        .await?;
    Ok(latest.map_or(0, |t| t.checkpoint.step))
}

/// Takes the thread's lock, resumes from its latest checkpoint and steps to `until`.
async fn work(
    p: Persistence,
    w: Worker,
    (started_at, until): (i64, i64),
    bar: ProgressBar,
    report: Option<mpsc::UnboundedSender<Progressed>>,
) -> Result<Outcome> {
    let options = LockOptions::default()
        .with_ttl(LEASE_TTL)
        .with_wait(LEASE_TTL * 5);
    let (lock, tenant, name) = (p.lock.clone(), w.tenant.clone(), w.lock.clone());
    lock.with_lock(&tenant, &name, options, |lease| async move {
        let mut outcome = Outcome {
            started_at,
            resumed_from: latest_step(&p, &w).await?,
            last_step: 0,
            fence: lease.fence(),
        };
        let mut parent = p
            .checkpointer
            .get(&w.tenant, &w.thread, CheckpointSelector::Latest)
            .await?
            .map(|t| t.checkpoint.id);
        let mut step = outcome.resumed_from;
        while step < until {
            step += 1;
            parent = Some(take_step(&p, &w, &lease.lease(), step, parent).await?);
            bar.inc(1);
            if let Some(report) = &report {
                let _ = report.send(Progressed {
                    step,
                    lease: lease.lease(),
                });
            }
        }
        outcome.last_step = step;
        Ok(outcome)
    })
    .await
}

/// One agent step: log an event, update memory, checkpoint. Returns the checkpoint id.
async fn take_step(
    p: &Persistence,
    w: &Worker,
    lease: &Lease,
    step: i64,
    parent: Option<CheckpointId>,
) -> Result<CheckpointId> {
    tokio::time::sleep(STEP_WORK).await;
    let event = Envelope::new(
        1,
        json!({"step": step, "kind": "tool_result", "fence": lease.fence.0}),
    );
    // The checkpoint below is the fenced write (the lease is the thread's lock); the
    // event log is appended unfenced, like a transcript anyone may add to.
    let append = AppendOptions::default();
    let head = p
        .sessions
        .append(&w.tenant, &w.session, vec![event], append)
        .await?;
    let memory = Envelope::new(
        1,
        json!({"last_step": step, "summary": format!("{} handled {step} steps", w.thread)}),
    );
    let key = ItemKey::new("summary")?;
    p.store
        .put(
            &w.tenant,
            &w.memory,
            &key,
            memory,
            PutItemOptions::default(),
        )
        .await?;
    let mut metadata = Metadata::new();
    metadata.insert("source".into(), json!("loop"));
    metadata.insert("fence".into(), json!(lease.fence.0));
    let checkpoint = NewCheckpoint::new(
        CheckpointId::new(),
        step,
        Envelope::new(1, json!({"step": step, "events": head})),
    )
    .with_parent(parent)
    .with_metadata(metadata);
    let id = checkpoint.id;
    let options = PutCheckpointOptions::default()
        .with_expect_latest(parent.map_or(ExpectLatest::Absent, ExpectLatest::Is))
        .with_lease(lease);
    p.checkpointer
        .put(&w.tenant, &w.thread, checkpoint, options)
        .await?;
    Ok(id)
}

/// The killed worker wakes up and writes with its old fence: it must be refused.
async fn zombie_write(p: &Persistence, w: &Worker, lease: &Lease) -> Result<String> {
    let checkpoint = NewCheckpoint::new(
        CheckpointId::new(),
        -1,
        Envelope::new(1, json!({"zombie": true})),
    );
    let options = PutCheckpointOptions::default().with_lease(lease);
    match p
        .checkpointer
        .put(&w.tenant, &w.thread, checkpoint, options)
        .await
    {
        Err(e) if e.kind() == ErrorKind::Fenced => Ok(e.kind().to_string()),
        Err(e) => Err(e),
        Ok(_) => Err(Error::backend_error(
            "a write with a stale fence was accepted",
        )),
    }
}

/// Same ids under two tenants: separate histories, and nothing crosses over.
async fn show_isolation(p: &Persistence, workers: &[Worker], out: &mut Narration) -> Result<()> {
    let shared = ThreadKey::new("support/ticket-1")?;
    let acme = &workers[0].tenant;
    let globex = &workers[2].tenant;
    let a = p
        .checkpointer
        .get(acme, &shared, CheckpointSelector::Latest)
        .await?;
    let g = p
        .checkpointer
        .get(globex, &shared, CheckpointSelector::Latest)
        .await?;
    let id = |t: Option<persistence::CheckpointTuple>| {
        t.map_or("none".to_string(), |t| t.checkpoint.id.to_string())
    };
    out.line(format!("isolation: both tenants have a thread {shared}:"));
    out.line(format!("  acme   latest checkpoint {}", id(a)));
    out.line(format!("  globex latest checkpoint {}", id(g)));
    let leaked = p
        .checkpointer
        .get(globex, &workers[VICTIM].thread, CheckpointSelector::Latest)
        .await?;
    let listed = p
        .checkpointer
        .list_threads(globex, ListThreads::default().with_limit(100))
        .await?;
    let names: Vec<String> = listed.items.iter().map(ToString::to_string).collect();
    out.line(format!(
        "  globex reading acme's {}: {}; globex lists only its own threads: {}",
        workers[VICTIM].thread,
        if leaked.is_none() {
            "nothing"
        } else {
            "FOUND (isolation broken)"
        },
        names.join(", ")
    ));
    if leaked.is_some() || listed.items.contains(&workers[VICTIM].thread) {
        return Err(Error::backend_error(
            "tenant isolation broken: globex sees acme's thread",
        ));
    }
    Ok(())
}
