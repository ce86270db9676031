//! Model-based test: random operation sequences run against a backend and against
//! [`MemoryBackend`], compared result by result.
//!
//! Ids come from small pools so operations collide often (same thread, same key, same
//! lock). Results are normalized before comparison: timestamps, lease tokens and cursor
//! encodings differ between backends by design, so pages are compared by their items and
//! leases by their fences. When the backend runs on a [`TimeControl::Manual`] clock the
//! sequences also advance time (expiring TTLs and leases); on a real clock they only use
//! long TTLs, so results never depend on timing.
//!
//! `purge_expired` results are compared only as success: its counts are checked by the
//! conformance suite. The number of cases comes from `PERSISTENCE_MODEL_CASES`
//! (default 24).
//!
//! Runs are deterministic: the random sequences come from a fixed seed, so CI and every
//! rerun test the same cases (a flaky model test would block landings at random). Set
//! `PERSISTENCE_MODEL_SEED` to another number to explore other sequences, or to `random`
//! for a fresh seed each run; a divergence names the seed that reproduces it.

use std::future::Future;
use std::time::Duration;

use persistence_core::{
    AppendOptions, CheckpointId, CheckpointSelector, CloseSession, Compaction, Envelope,
    ExpectLatest, Filter, ItemKey, Lease, ListCheckpoints, ListItems, ListNamespaces, ListSessions,
    ListThreads, LockKey, ManualClock, MemoryBackend, Namespace, NewCheckpoint, PatchItemOptions,
    PutCheckpointOptions, PutItemOptions, PutWrites, SearchItems, SessionKey, TaskId, TenantId,
    ThreadKey, Write, serde_json::json,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::{Fixture, TimeControl};

const TENANTS: &[&str] = &["t1", "t2"];
const THREADS: &[&str] = &["main", "../side", "a:b"];
const SESSIONS: &[&str] = &["s", "{s}", "s/2"];
const KEYS: &[&str] = &["k1", "k2", "k:3", "kk"];
/// Fields a `Store::patch` of the model sets or removes ("v" is the one search filters on).
const PATCH_FIELDS: &[&str] = &["v", "w"];
const NAMESPACES: &[&[&str]] = &[&["u"], &["u", "m"], &["u", "n"], &["v"]];
const LOCKS: &[&str] = &["l1", "l/2"];
const ID_SLOTS: usize = 6;
const LEASE_SLOTS: usize = 3;

/// One operation of a sequence. Fields index into the pools above.
#[derive(Debug, Clone)]
enum Op {
    /// `Checkpointer::put`.
    CpPut {
        t: usize,
        th: usize,
        id: usize,
        step: i64,
        guard: Option<Option<usize>>,
        fence: Option<u64>,
    },
    /// `Checkpointer::get`.
    CpGet {
        t: usize,
        th: usize,
        id: Option<usize>,
    },
    /// `Checkpointer::list`, drained.
    CpList {
        t: usize,
        th: usize,
        limit: usize,
        before: Option<usize>,
        even_steps: bool,
    },
    /// `Checkpointer::put_writes`.
    CpWrites {
        t: usize,
        th: usize,
        id: usize,
        task: usize,
        n: usize,
        fence: Option<u64>,
    },
    /// `Checkpointer::delete_thread`.
    CpDelete { t: usize, th: usize },
    /// `Checkpointer::prune`.
    CpPrune { t: usize, th: usize, keep: usize },
    /// `Checkpointer::copy_thread`.
    CpCopy { t: usize, from: usize, to: usize },
    /// `Checkpointer::prune_through`.
    CpPruneThrough { t: usize, th: usize, id: usize },
    /// `Checkpointer::list_threads`, drained.
    CpThreads { t: usize, limit: usize },
    /// `SessionLog::append`.
    Append {
        t: usize,
        s: usize,
        n: usize,
        expect_head: Option<u64>,
        fence: Option<u64>,
        ttl: bool,
    },
    /// `SessionLog::read`.
    Read {
        t: usize,
        s: usize,
        after: u64,
        limit: usize,
    },
    /// `SessionLog::head`.
    Head { t: usize, s: usize },
    /// `SessionLog::trim_before`.
    Trim { t: usize, s: usize, seq: u64 },
    /// `SessionLog::delete`.
    SessionDelete { t: usize, s: usize },
    /// `SessionLog::compact` with `n` summary events (0: refused).
    Compact {
        t: usize,
        s: usize,
        through: u64,
        n: usize,
        expect_head: Option<u64>,
    },
    /// `SessionLog::close_session`.
    Close { t: usize, s: usize, remove: bool },
    /// `SessionLog::session_info` (head, oldest and closed: times differ by backend).
    Info { t: usize, s: usize },
    /// `SessionLog::list_sessions`, drained.
    Sessions { t: usize, limit: usize },
    /// `Store::put`.
    Put {
        t: usize,
        ns: usize,
        k: usize,
        v: i64,
        if_version: Option<u64>,
        ttl: bool,
    },
    /// `Store::get`.
    Get { t: usize, ns: usize, k: usize },
    /// `Store::patch` of one field (`None`: remove it).
    Patch {
        t: usize,
        ns: usize,
        k: usize,
        field: usize,
        value: Option<i64>,
        if_version: Option<u64>,
    },
    /// `Store::delete`.
    Delete {
        t: usize,
        ns: usize,
        k: usize,
        if_version: Option<u64>,
    },
    /// `Store::list`, drained.
    List {
        t: usize,
        ns: usize,
        prefix: bool,
        limit: usize,
    },
    /// `Store::list_namespaces`, drained.
    Namespaces {
        t: usize,
        depth: Option<usize>,
        limit: usize,
    },
    /// `Store::search` with `v >= min` (no filter for `i64::MIN`).
    Search {
        t: usize,
        prefix: Option<usize>,
        min: i64,
        limit: usize,
        offset: usize,
    },
    /// `Maintenance::purge_expired`.
    Purge,
    /// `Lock::try_acquire` into a lease slot.
    TryAcquire {
        t: usize,
        l: usize,
        slot: usize,
        short: bool,
    },
    /// `Lock::renew` of a lease slot.
    Renew { slot: usize },
    /// `Lock::release` of a lease slot.
    Release { slot: usize },
    /// Let time pass (manual clocks only).
    Advance { secs: u64 },
}

fn op_strategy(manual_time: bool) -> impl Strategy<Value = Op> {
    let t = 0..TENANTS.len();
    let fence = prop::option::of(0u64..4);
    let ttl = if manual_time {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    };
    let advance = if manual_time {
        (1u64..90).boxed()
    } else {
        Just(0u64).boxed()
    };
    prop_oneof![
        (
            t.clone(),
            0..THREADS.len(),
            0..ID_SLOTS,
            0i64..5,
            prop::option::of(prop::option::of(0..ID_SLOTS)),
            fence.clone()
        )
            .prop_map(|(t, th, id, step, guard, fence)| Op::CpPut {
                t,
                th,
                id,
                step,
                guard,
                fence
            }),
        (t.clone(), 0..THREADS.len(), prop::option::of(0..ID_SLOTS))
            .prop_map(|(t, th, id)| Op::CpGet { t, th, id }),
        (
            t.clone(),
            0..THREADS.len(),
            1usize..4,
            prop::option::of(0..ID_SLOTS),
            any::<bool>()
        )
            .prop_map(|(t, th, limit, before, even_steps)| Op::CpList {
                t,
                th,
                limit,
                before,
                even_steps
            }),
        (
            t.clone(),
            0..THREADS.len(),
            0..ID_SLOTS,
            0usize..2,
            0usize..3,
            fence.clone()
        )
            .prop_map(|(t, th, id, task, n, fence)| Op::CpWrites {
                t,
                th,
                id,
                task,
                n,
                fence
            }),
        (t.clone(), 0..THREADS.len()).prop_map(|(t, th)| Op::CpDelete { t, th }),
        (t.clone(), 0..THREADS.len(), 0usize..3).prop_map(|(t, th, keep)| Op::CpPrune {
            t,
            th,
            keep
        }),
        (t.clone(), 0..THREADS.len(), 0..THREADS.len()).prop_map(|(t, from, to)| Op::CpCopy {
            t,
            from,
            to
        }),
        (t.clone(), 1usize..3).prop_map(|(t, limit)| Op::CpThreads { t, limit }),
        (t.clone(), 0..THREADS.len(), 0..ID_SLOTS).prop_map(|(t, th, id)| Op::CpPruneThrough {
            t,
            th,
            id
        }),
        (
            t.clone(),
            0..SESSIONS.len(),
            0usize..4,
            prop::option::of(0u64..6),
            fence,
            ttl.clone()
        )
            .prop_map(|(t, s, n, expect_head, fence, ttl)| Op::Append {
                t,
                s,
                n,
                expect_head,
                fence,
                ttl
            }),
        (t.clone(), 0..SESSIONS.len(), 0u64..8, 0usize..4)
            .prop_map(|(t, s, after, limit)| Op::Read { t, s, after, limit }),
        (t.clone(), 0..SESSIONS.len()).prop_map(|(t, s)| Op::Head { t, s }),
        (t.clone(), 0..SESSIONS.len(), 0u64..8).prop_map(|(t, s, seq)| Op::Trim { t, s, seq }),
        (t.clone(), 0..SESSIONS.len()).prop_map(|(t, s)| Op::SessionDelete { t, s }),
        (
            t.clone(),
            0..SESSIONS.len(),
            0u64..8,
            0usize..3,
            prop::option::of(0u64..6)
        )
            .prop_map(|(t, s, through, n, expect_head)| Op::Compact {
                t,
                s,
                through,
                n,
                expect_head
            }),
        (t.clone(), 0..SESSIONS.len(), any::<bool>()).prop_map(|(t, s, remove)| Op::Close {
            t,
            s,
            remove
        }),
        (t.clone(), 0..SESSIONS.len()).prop_map(|(t, s)| Op::Info { t, s }),
        (t.clone(), 1usize..3).prop_map(|(t, limit)| Op::Sessions { t, limit }),
        (
            t.clone(),
            0..NAMESPACES.len(),
            0..KEYS.len(),
            0i64..10,
            prop::option::of(0u64..4),
            ttl
        )
            .prop_map(|(t, ns, k, v, if_version, ttl)| Op::Put {
                t,
                ns,
                k,
                v,
                if_version,
                ttl
            }),
        (t.clone(), 0..NAMESPACES.len(), 0..KEYS.len()).prop_map(|(t, ns, k)| Op::Get { t, ns, k }),
        (
            t.clone(),
            0..NAMESPACES.len(),
            0..KEYS.len(),
            0usize..PATCH_FIELDS.len(),
            prop::option::of(0i64..10),
            prop::option::of(0u64..4)
        )
            .prop_map(|(t, ns, k, field, value, if_version)| Op::Patch {
                t,
                ns,
                k,
                field,
                value,
                if_version
            }),
        (
            t.clone(),
            0..NAMESPACES.len(),
            0..KEYS.len(),
            prop::option::of(0u64..4)
        )
            .prop_map(|(t, ns, k, if_version)| Op::Delete {
                t,
                ns,
                k,
                if_version
            }),
        (t.clone(), 0..NAMESPACES.len(), any::<bool>(), 1usize..4).prop_map(
            |(t, ns, prefix, limit)| Op::List {
                t,
                ns,
                prefix,
                limit
            }
        ),
        (t.clone(), prop::option::of(0usize..3), 1usize..4)
            .prop_map(|(t, depth, limit)| Op::Namespaces { t, depth, limit }),
        (
            t.clone(),
            prop::option::of(0..NAMESPACES.len()),
            0i64..10,
            0usize..4,
            0usize..3
        )
            .prop_map(|(t, prefix, min, limit, offset)| Op::Search {
                t,
                prefix,
                min,
                limit,
                offset
            }),
        Just(Op::Purge),
        (t, 0..LOCKS.len(), 0..LEASE_SLOTS, any::<bool>())
            .prop_map(|(t, l, slot, short)| Op::TryAcquire { t, l, slot, short }),
        (0..LEASE_SLOTS).prop_map(|slot| Op::Renew { slot }),
        (0..LEASE_SLOTS).prop_map(|slot| Op::Release { slot }),
        advance.prop_map(|secs| Op::Advance { secs }),
    ]
}

/// Runs `cases` random sequences against fixtures from `setup` and the model.
///
/// # Panics
/// On the first divergence, with the shrunk operation sequence.
pub fn check_model<F, Fut>(setup: F, cases: u32)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    check_model_with_seed(setup, cases, seed_from_env());
}

/// [`check_model`] from a given seed, whatever the environment says: for tests that must
/// see the same sequences every time (the suite's own bite tests).
///
/// # Panics
/// On the first divergence, with the shrunk operation sequence.
pub fn check_model_with_seed<F, Fut>(setup: F, cases: u32, seed: u64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    };
    let manual = matches!(runtime.block_on(setup()).time, TimeControl::Manual(_));
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let strategy = prop::collection::vec(op_strategy(manual), 1..60);
    let result = runner.run(&strategy, |ops| {
        let fixture = runtime.block_on(setup());
        runtime
            .block_on(run_sequence(&fixture, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("model test diverged (PERSISTENCE_MODEL_SEED={seed} reproduces it): {e}");
    }
}

/// The seed used when `PERSISTENCE_MODEL_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x005e_ed0f_ba5e;

/// `PERSISTENCE_MODEL_SEED`: a number, `random` (printed), or [`DEFAULT_SEED`].
pub fn seed_from_env() -> u64 {
    match std::env::var("PERSISTENCE_MODEL_SEED").ok().as_deref() {
        Some("random") => {
            let seed = fastrand::u64(..);
            eprintln!("model test: PERSISTENCE_MODEL_SEED={seed}");
            seed
        }
        Some(n) => n.parse().unwrap_or_else(|_| {
            panic!("PERSISTENCE_MODEL_SEED={n:?}: expected a number or `random`")
        }),
        None => DEFAULT_SEED,
    }
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let word = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Number of model cases: `PERSISTENCE_MODEL_CASES`, default 24.
pub fn cases_from_env() -> u32 {
    std::env::var("PERSISTENCE_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

struct Side {
    fx: Fixture,
    leases: Vec<Option<persistence_core::Lease>>,
    /// Per (tenant, lock): the last fence handed out and how many leases so far. Fences
    /// are compared by order, not value: backends may floor them at a clock.
    fences: std::collections::HashMap<(usize, usize), (u64, u32)>,
}

async fn run_sequence(backend: &Fixture, ops: &[Op]) -> Result<(), String> {
    let (model_backend, model_clock) = MemoryBackend::with_manual_clock();
    let caps = model_backend.capabilities();
    let model = Fixture::new(
        "model",
        model_backend,
        caps,
        TimeControl::Manual(model_clock.clone()),
    );
    let ids: Vec<CheckpointId> = (0..ID_SLOTS).map(|_| CheckpointId::new()).collect();
    let mut sides = [
        Side {
            fx: model,
            leases: vec![None; LEASE_SLOTS],
            fences: std::collections::HashMap::new(),
        },
        Side {
            fx: backend.clone(),
            leases: vec![None; LEASE_SLOTS],
            fences: std::collections::HashMap::new(),
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        if let Op::Advance { secs } = op {
            advance(&model_clock, &backend.time, *secs);
            continue;
        }
        // A backend without search by fields (one behind the payload codec) is asked
        // the same search without its filter, on both sides.
        let unfiltered;
        let op = match op {
            Op::Search {
                t,
                prefix,
                limit,
                offset,
                ..
            } if !backend.capabilities.search => {
                unfiltered = Op::Search {
                    t: *t,
                    prefix: *prefix,
                    min: i64::MIN,
                    limit: *limit,
                    offset: *offset,
                };
                &unfiltered
            }
            other => other,
        };
        let expected = apply(&mut sides[0], op, &ids).await;
        let actual = apply(&mut sides[1], op, &ids).await;
        if expected != actual {
            return Err(format!(
                "op #{i} {op:?}\n  model:   {expected}\n  {}: {actual}",
                backend.name
            ));
        }
    }
    Ok(())
}

fn advance(model: &ManualClock, backend: &TimeControl, secs: u64) {
    if let TimeControl::Manual(clock) = backend {
        model.advance(Duration::from_secs(secs));
        clock.advance(Duration::from_secs(secs));
    }
}

fn id<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("pool id rejected: {e:?}"),
    }
}

/// A lease of thread `th`'s own lock with fence `f` (the model picks fences freely).
fn thread_lease(t: usize, th: usize, f: u64) -> Lease {
    crate::checks::thread_lease(&tenant(t), &thread(th), f)
}
/// A lease of session `s`'s own lock with fence `f`.
fn session_lease(t: usize, s: usize, f: u64) -> Lease {
    crate::checks::session_lease(&tenant(t), &session(s), f)
}

fn tenant(i: usize) -> TenantId {
    id(TenantId::new(TENANTS[i]))
}
fn thread(i: usize) -> ThreadKey {
    id(ThreadKey::new(THREADS[i]))
}
fn session(i: usize) -> SessionKey {
    id(SessionKey::new(SESSIONS[i]))
}
fn key(i: usize) -> ItemKey {
    id(ItemKey::new(KEYS[i]))
}
fn namespace(i: usize) -> Namespace {
    id(Namespace::new(NAMESPACES[i].iter().copied()))
}

/// Applies `op` to one side and renders the outcome in a backend-neutral form.
async fn apply(side: &mut Side, op: &Op, ids: &[CheckpointId]) -> String {
    let fx = side.fx.clone();
    let ttl_for = |short: bool| {
        if short {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(3600)
        }
    };
    let out: persistence_core::Result<String> = async {
        Ok(match op {
            Op::CpPut {
                t,
                th,
                id,
                step,
                guard,
                fence,
            } => {
                let expect_latest = match guard {
                    None => ExpectLatest::Any,
                    Some(None) => ExpectLatest::Absent,
                    Some(Some(slot)) => ExpectLatest::Is(ids[*slot]),
                };
                let mut metadata = persistence_core::Metadata::new();
                metadata.insert("even".into(), json!(step % 2 == 0));
                let c =
                    NewCheckpoint::new(ids[*id], *step, Envelope::new(1, json!({"step": step})))
                        .with_metadata(metadata);
                let mut opts = PutCheckpointOptions::default().with_expect_latest(expect_latest);
                opts.lease = fence.map(|f| thread_lease(*t, *th, f));
                let stored = fx
                    .checkpointer
                    .put(&tenant(*t), &thread(*th), c, opts)
                    .await?;
                format!("{} step {}", slot_of(ids, stored.id), stored.step)
            }
            Op::CpGet { t, th, id } => {
                let sel = id.map_or(CheckpointSelector::Latest, |s| {
                    CheckpointSelector::Id(ids[s])
                });
                match fx.checkpointer.get(&tenant(*t), &thread(*th), sel).await? {
                    None => "none".into(),
                    Some(tuple) => format!(
                        "{} step {} state {} writes {:?}",
                        slot_of(ids, tuple.checkpoint.id),
                        tuple.checkpoint.step,
                        tuple.checkpoint.state.data,
                        tuple
                            .pending_writes
                            .iter()
                            .map(|w| (w.task_id.to_string(), w.index, w.value.data.to_string()))
                            .collect::<Vec<_>>()
                    ),
                }
            }
            Op::CpList {
                t,
                th,
                limit,
                before,
                even_steps,
            } => {
                let mut query = ListCheckpoints::default()
                    .with_limit(*limit)
                    .with_before(before.map(|s| ids[s]));
                if *even_steps {
                    query.metadata.insert("even".into(), json!(true));
                }
                let mut seen = Vec::new();
                loop {
                    let page = fx
                        .checkpointer
                        .list(&tenant(*t), &thread(*th), query.clone())
                        .await?;
                    seen.extend(page.items.iter().map(|c| slot_of(ids, c.id)));
                    match page.next {
                        Some(next) => query.cursor = Some(next),
                        None => break,
                    }
                }
                format!("{seen:?}")
            }
            Op::CpWrites {
                t,
                th,
                id,
                task,
                n,
                fence,
            } => {
                let writes = (0..*n)
                    .map(|i| {
                        Write::new(
                            persistence_core::ChannelName::new("ch")
                                .unwrap_or_else(|_| unreachable!()),
                            Envelope::new(1, json!(i)),
                        )
                    })
                    .collect();
                let task = TaskId::new(format!("task{task}"))?;
                let mut request = PutWrites::new(ids[*id], task, writes);
                request.lease = fence.map(|f| thread_lease(*t, *th, f));
                fx.checkpointer
                    .put_writes(&tenant(*t), &thread(*th), request)
                    .await?;
                "ok".into()
            }
            Op::CpDelete { t, th } => fx
                .checkpointer
                .delete_thread(&tenant(*t), &thread(*th))
                .await?
                .to_string(),
            Op::CpPrune { t, th, keep } => fx
                .checkpointer
                .prune(&tenant(*t), &thread(*th), *keep)
                .await?
                .to_string(),
            Op::CpCopy { t, from, to } => fx
                .checkpointer
                .copy_thread(&tenant(*t), &thread(*from), &thread(*to))
                .await?
                .to_string(),
            Op::CpPruneThrough { t, th, id } => fx
                .checkpointer
                .prune_through(&tenant(*t), &thread(*th), &ids[*id])
                .await?
                .to_string(),
            Op::CpThreads { t, limit } => {
                let mut seen = Vec::new();
                let mut cursor = None;
                loop {
                    let page = fx
                        .checkpointer
                        .list_threads(
                            &tenant(*t),
                            ListThreads::default()
                                .with_cursor(cursor)
                                .with_limit(*limit),
                        )
                        .await?;
                    seen.extend(page.items.iter().map(ToString::to_string));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                format!("{seen:?}")
            }
            Op::Append {
                t,
                s,
                n,
                expect_head,
                fence,
                ttl,
            } => {
                let events = (0..*n).map(|i| Envelope::new(1, json!(i))).collect();
                let mut opts = AppendOptions::default()
                    .with_expect_head(*expect_head)
                    .with_ttl(ttl.then(|| ttl_for(true)));
                opts.lease = fence.map(|f| session_lease(*t, *s, f));
                fx.sessions
                    .append(&tenant(*t), &session(*s), events, opts)
                    .await?
                    .to_string()
            }
            Op::Read { t, s, after, limit } => {
                let events = fx
                    .sessions
                    .read(&tenant(*t), &session(*s), *after, *limit)
                    .await?;
                format!(
                    "{:?}",
                    events
                        .iter()
                        .map(|e| (e.seq, e.event.data.to_string()))
                        .collect::<Vec<_>>()
                )
            }
            Op::Head { t, s } => fx
                .sessions
                .head(&tenant(*t), &session(*s))
                .await?
                .to_string(),
            Op::Trim { t, s, seq } => fx
                .sessions
                .trim_before(&tenant(*t), &session(*s), *seq)
                .await?
                .to_string(),
            Op::SessionDelete { t, s } => fx
                .sessions
                .delete(&tenant(*t), &session(*s))
                .await?
                .to_string(),
            Op::Compact {
                t,
                s,
                through,
                n,
                expect_head,
            } => {
                let summary = (0..*n)
                    .map(|i| Envelope::new(1, json!({"summary": i})))
                    .collect();
                let compaction = Compaction::new(*through, summary).with_expect_head(*expect_head);
                fx.sessions
                    .compact(&tenant(*t), &session(*s), compaction)
                    .await?
                    .to_string()
            }
            Op::Close { t, s, remove } => {
                let options = if *remove {
                    CloseSession::default().with_events_removed()
                } else {
                    CloseSession::default()
                };
                let info = fx
                    .sessions
                    .close_session(&tenant(*t), &session(*s), options)
                    .await?;
                format!("{:?}", (info.head, info.oldest, info.is_closed()))
            }
            Op::Info { t, s } => {
                let info = fx.sessions.session_info(&tenant(*t), &session(*s)).await?;
                format!(
                    "{:?}",
                    info.map(|i| (i.head, i.oldest, i.is_closed(), i.expires_at.is_some()))
                )
            }
            Op::Sessions { t, limit } => {
                let mut seen = Vec::new();
                let mut cursor = None;
                loop {
                    let page = fx
                        .sessions
                        .list_sessions(
                            &tenant(*t),
                            ListSessions::default()
                                .with_cursor(cursor)
                                .with_limit(*limit),
                        )
                        .await?;
                    seen.extend(page.items.iter().map(ToString::to_string));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                format!("{seen:?}")
            }
            Op::Put {
                t,
                ns,
                k,
                v,
                if_version,
                ttl,
            } => {
                let opts = PutItemOptions::default()
                    .with_ttl(ttl.then(|| ttl_for(true)))
                    .with_if_version(*if_version);
                fx.store
                    .put(
                        &tenant(*t),
                        &namespace(*ns),
                        &key(*k),
                        Envelope::new(1, json!({"v": v})),
                        opts,
                    )
                    .await?
                    .to_string()
            }
            Op::Patch {
                t,
                ns,
                k,
                field,
                value,
                if_version,
            } => {
                let patch = json!({ PATCH_FIELDS[*field]: value });
                let opts = PatchItemOptions::default().with_if_version(*if_version);
                fx.store
                    .patch(&tenant(*t), &namespace(*ns), &key(*k), patch, opts)
                    .await?
                    .to_string()
            }
            Op::Get { t, ns, k } => {
                match fx.store.get(&tenant(*t), &namespace(*ns), &key(*k)).await? {
                    None => "none".into(),
                    Some(i) => format!(
                        "v{} {} ttl {}",
                        i.version,
                        i.value.data,
                        i.expires_at.is_some()
                    ),
                }
            }
            Op::Delete {
                t,
                ns,
                k,
                if_version,
            } => fx
                .store
                .delete(&tenant(*t), &namespace(*ns), &key(*k), *if_version)
                .await?
                .to_string(),
            Op::List {
                t,
                ns,
                prefix,
                limit,
            } => {
                let mut query = ListItems::default()
                    .with_key_prefix(prefix.then(|| "k".to_string()))
                    .with_cursor(None)
                    .with_limit(*limit);
                let mut seen = Vec::new();
                loop {
                    let page = fx
                        .store
                        .list(&tenant(*t), &namespace(*ns), query.clone())
                        .await?;
                    seen.extend(
                        page.items
                            .iter()
                            .map(|i| format!("{}={} v{}", i.key, i.value.data, i.version)),
                    );
                    match page.next {
                        Some(next) => query.cursor = Some(next),
                        None => break,
                    }
                }
                format!("{seen:?}")
            }
            Op::Namespaces { t, depth, limit } => {
                let mut query = ListNamespaces::default()
                    .with_max_depth(*depth)
                    .with_limit(*limit);
                let mut seen = Vec::new();
                loop {
                    let page = fx.store.list_namespaces(&tenant(*t), query.clone()).await?;
                    seen.extend(page.items.iter().map(ToString::to_string));
                    match page.next {
                        Some(next) => query.cursor = Some(next),
                        None => break,
                    }
                }
                format!("{seen:?}")
            }
            Op::Search {
                t,
                prefix,
                min,
                limit,
                offset,
            } => {
                let filter = if *min == i64::MIN {
                    Filter::all()
                } else {
                    Filter::from_json(&json!({"v": {"$gte": min}}))?
                };
                let query = SearchItems::default()
                    .with_namespace_prefix(prefix.map(namespace))
                    .with_filter(filter)
                    .with_limit(*limit)
                    .with_offset(*offset);
                let found = fx.store.search(&tenant(*t), query).await?;
                format!(
                    "{:?}",
                    found
                        .iter()
                        .map(|i| format!("{}/{}", i.namespace, i.key))
                        .collect::<Vec<_>>()
                )
            }
            Op::Purge => {
                // Counts are checked by the conformance suite, not compared here: a backend
                // may count bookkeeping it cleans (Redis counts stale index entries).
                fx.maintenance.purge_expired().await?;
                "purged".into()
            }
            Op::TryAcquire { t, l, slot, short } => {
                let name = LockKey::new(LOCKS[*l])?;
                let lease = fx
                    .lock
                    .try_acquire(&tenant(*t), &name, ttl_for(*short))
                    .await?;
                let Some(lease) = lease else {
                    return Ok("held".to_string());
                };
                let (last, count) = side.fences.entry((*t, *l)).or_insert((0, 0));
                let rendered = if lease.fence.0 > *last {
                    *count += 1;
                    format!("lease #{count}")
                } else {
                    format!("fence {} not above {last}", lease.fence.0)
                };
                *last = lease.fence.0;
                side.leases[*slot] = Some(lease);
                rendered
            }
            Op::Renew { slot } => match side.leases[*slot].clone() {
                None => "no lease".into(),
                Some(lease) => {
                    let renewed = fx.lock.renew(&lease, ttl_for(true)).await?;
                    if renewed.fence == lease.fence {
                        "renewed, same fence".to_string()
                    } else {
                        format!("renew changed the fence to {}", renewed.fence.0)
                    }
                }
            },
            Op::Release { slot } => match side.leases[*slot].clone() {
                None => "no lease".into(),
                Some(lease) => fx.lock.release(&lease).await?.to_string(),
            },
            Op::Advance { .. } => "advanced".into(),
        })
    }
    .await;
    match out {
        Ok(s) => s,
        Err(e) => format!("error {:?}", e.kind()),
    }
}

fn slot_of(ids: &[CheckpointId], id: CheckpointId) -> String {
    ids.iter()
        .position(|i| *i == id)
        .map_or_else(|| format!("unknown {id}"), |p| format!("#{p}"))
}
