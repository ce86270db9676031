//! Several processes and SIGKILL: the worker binary writes, the test kills it or runs
//! several at once, then checks what is on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use persistence_core::{
    CheckpointId, CheckpointSelector, Checkpointer, ItemKey, Namespace, SessionKey, SessionLog,
    TenantId, ThreadKey,
};
use persistence_fs::{FsBackend, FsConfig};

const WORKER: &str = env!("CARGO_BIN_EXE_persistence-fs-worker");

/// Kills per run of the crash test: `PERSISTENCE_FS_CRASH_KILLS` (default 200).
fn kills() -> usize {
    std::env::var("PERSISTENCE_FS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Every acknowledged write survives SIGKILL at random moments; ordinals stay gapless and
/// every file stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let (tenant, session, thread) = (
        TenantId::new("crash").unwrap(),
        SessionKey::new("log").unwrap(),
        ThreadKey::new("run").unwrap(),
    );
    let mut acked_head = 0u64;
    let mut acked_checkpoints: Vec<CheckpointId> = Vec::new();
    let mut acked_item = 0u64;
    let (ns, key) = (
        Namespace::new(["crash"]).unwrap(),
        ItemKey::new("counter").unwrap(),
    );
    let started = Instant::now();
    for round in 0..kills() {
        let mut child = Command::new(WORKER)
            .args(["crash-loop", root.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it run a random while (a few writes, sometimes none), then SIGKILL.
        std::thread::sleep(Duration::from_millis(fastrand_ms(round)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            if let Some(head) = line.strip_prefix("append ") {
                acked_head = acked_head.max(head.parse().unwrap());
            } else if let Some(id) = line.strip_prefix("checkpoint ") {
                acked_checkpoints.push(id.parse().unwrap());
            } else if let Some(version) = line.strip_prefix("item ") {
                acked_item = acked_item.max(version.parse().unwrap());
            }
        }
        // Reopen like a restarted process and check everything acknowledged is there.
        let backend = FsBackend::open(FsConfig::new(root.path())).unwrap();
        let head = backend.head(&tenant, &session).await.unwrap();
        assert!(
            head >= acked_head,
            "round {round}: head {head} < acknowledged {acked_head}"
        );
        let events = backend.read(&tenant, &session, 0, 10_000).await.unwrap();
        assert_eq!(events.len() as u64, head, "round {round}: events missing");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "round {round}: gap at {i}");
        }
        acked_head = head;
        let item = persistence_core::Store::get(&backend, &tenant, &ns, &key)
            .await
            .unwrap();
        let version = item.as_ref().map_or(0, |i| i.version);
        assert!(
            version >= acked_item,
            "round {round}: item version {version} < acknowledged {acked_item}"
        );
        if let Some(item) = item {
            assert_eq!(
                item.value.data["version"], version,
                "round {round}: the value of another version"
            );
        }
        acked_item = version;
        for id in &acked_checkpoints {
            let got = backend
                .get(&tenant, &thread, CheckpointSelector::Id(*id))
                .await
                .unwrap();
            assert!(
                got.is_some(),
                "round {round}: acknowledged checkpoint {id} lost"
            );
        }
        let all = backend.list(
            &tenant,
            &thread,
            persistence_core::ListCheckpoints::default().with_limit(10_000),
        );
        all.await
            .unwrap_or_else(|e| panic!("round {round}: unreadable checkpoints: {e}"));
    }
    assert!(
        acked_head > 0 && !acked_checkpoints.is_empty() && acked_item > 0,
        "the worker never acknowledged a write"
    );
    eprintln!(
        "{} kills in {:?}: {} events, {} checkpoints, {} item versions",
        kills(),
        started.elapsed(),
        acked_head,
        acked_checkpoints.len(),
        acked_item
    );
}

/// SIGKILLs while a process creates sessions, threads and items (long ids, so the
/// catalogs' journals are folded into their sorted files several times): every entry
/// whose creation was acknowledged is listed, in order, exactly once, page after page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_creating_never_hides_an_entry() {
    let root = tempfile::tempdir().unwrap();
    let tenant = TenantId::new("create").unwrap();
    let ns = persistence_core::Namespace::new(["ns"]).unwrap();
    let mut next = 0u64;
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..kills() / 2 {
        let mut child = Command::new(WORKER)
            .args(["create", root.path().to_str().unwrap(), &next.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("created ")
                        .map(|i| i.parse::<u64>().unwrap())
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(5 * fastrand_ms(round)));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let created = reader.join().unwrap();
        // The next run starts past the entry the killed one may have begun.
        next = created.last().map_or(next, |i| i + 1) + 1;
        acked.extend(created);
    }
    // Unfolded, the journal would hold a ~510-byte line per creation; a fold empties it.
    let journal = root
        .path()
        .join("v1/tenants/create/catalogs/sessions/journal");
    let journal_len = std::fs::metadata(journal).map_or(0, |m| m.len()) as usize;
    let folded = journal_len < 500 * acked.len();
    let backend = FsBackend::open(FsConfig::new(root.path())).unwrap();
    let [sessions, threads, items] = common::every_listed_id(&backend, &tenant, &ns, 7).await;
    for (kind, listed) in [
        ("session", &sessions),
        ("thread", &threads),
        ("item", &items),
    ] {
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(&sorted, listed, "{kind}s out of order or listed twice");
        for i in &acked {
            let name = format!("{i:06}-{}", "n".repeat(490));
            assert!(
                listed.binary_search(&name).is_ok(),
                "acknowledged {kind} {i} is not listed ({} listed, first {:?})",
                listed.len(),
                listed.first().map(|n| &n[..6])
            );
        }
    }
    eprintln!(
        "{} kills: {} acknowledged creations, journal folded: {folded}",
        kills() / 2,
        acked.len(),
    );
    // A journal line is ~510 bytes here: 128 creations fill one.
    if acked.len() > 140 {
        assert!(
            folded,
            "{} creations and the journal never folded",
            acked.len()
        );
    }
}

/// A deterministic spread of kill delays, 1..=40 ms, varying per round.
fn fastrand_ms(round: usize) -> u64 {
    1 + (round as u64 * 2_654_435_761 % 40)
}

fn run_workers(args: &[Vec<String>]) -> Vec<String> {
    let children: Vec<_> = args
        .iter()
        .map(|a| {
            Command::new(WORKER)
                .args(a)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let mut lines = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

/// 4 processes × 500 appends to one session: 2000 gapless ordinals, none handed out twice.
#[tokio::test]
async fn four_processes_append_gaplessly() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap().to_string();
    let args: Vec<Vec<String>> = (0..4)
        .map(|_| vec!["append".into(), r.clone(), "shared".into(), "500".into()])
        .collect();
    let lines = run_workers(&args);
    let mut heads: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("append ")?.parse().ok())
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        (1..=2000).collect::<Vec<_>>(),
        "ordinals handed out twice or skipped"
    );
    let backend = FsBackend::open(FsConfig::new(root.path())).unwrap();
    let (t, s) = (
        TenantId::new("multi").unwrap(),
        SessionKey::new("shared").unwrap(),
    );
    let events = backend.read(&t, &s, 0, 10_000).await.unwrap();
    assert_eq!(events.len(), 2000);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq == i as u64 + 1)
    );
}

/// 4 processes × 200 lock cycles incrementing a plain counter file under the lock: the
/// total is exact and every holder got its own fence.
#[test]
fn four_processes_exclude_each_other_under_the_lock() {
    let root = tempfile::tempdir().unwrap();
    let counter = root.path().join("counter.txt");
    std::fs::write(&counter, "0").unwrap();
    let data = root.path().join("data");
    let args: Vec<Vec<String>> = (0..4)
        .map(|_| {
            vec![
                "lock-cycles".into(),
                data.to_str().unwrap().into(),
                "200".into(),
                counter.to_str().unwrap().into(),
            ]
        })
        .collect();
    let lines = run_workers(&args);
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        "800",
        "lost increments"
    );
    let mut fences: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("fence ")?.parse().ok())
        .collect();
    // 800 leases, 800 different fences (floored at the clock, so not 1..=800).
    assert_eq!(fences.len(), 800, "fences missing");
    fences.sort();
    fences.dedup();
    assert_eq!(fences.len(), 800, "fences repeated");
}

/// Runs the worker with `args`, in a new PID namespace when `own_pid_namespace` (as a
/// container would), and returns it once it printed its first line (that line too).
fn spawn_worker(args: &[&str], own_pid_namespace: bool) -> Option<(std::process::Child, String)> {
    let mut cmd = if own_pid_namespace {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc", WORKER]);
        c
    } else {
        Command::new(WORKER)
    };
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    if line.is_empty() {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        let _ = child.wait();
        eprintln!("SKIP: cannot run a worker in a new PID namespace (needs root): {err}");
        return None;
    }
    Some((child, line.trim().to_string()))
}

/// A holder in another PID namespace on the same host (another container of the same
/// pod: same host name, its own PIDs) keeps its lease: a process outside cannot prove it
/// dead by looking its PID up in its own /proc, and the reverse holds too.
#[test]
fn a_holder_in_another_pid_namespace_keeps_its_lease() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_str().unwrap();
    let Some((mut holder, line)) = spawn_worker(&["hold", dir, "inside", "30"], true) else {
        return;
    };
    assert!(line.starts_with("held "), "{line}");
    let (mut outside, verdict) = spawn_worker(&["try", dir, "inside"], false).unwrap();
    outside.wait().unwrap();
    assert_eq!(
        verdict, "refused",
        "a live holder in a container lost its lease"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();

    let (mut holder, line) = spawn_worker(&["hold", dir, "outside", "30"], false).unwrap();
    assert!(line.starts_with("held "), "{line}");
    let (mut inside, verdict) = spawn_worker(&["try", dir, "outside"], true).unwrap();
    inside.wait().unwrap();
    assert_eq!(verdict, "refused", "a container took a live holder's lease");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// A holder killed but not yet reaped (a zombie) is dead: its lease is taken over at
/// once, not when its parent gets round to `wait`.
#[test]
fn a_zombie_holder_is_dead() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_str().unwrap();
    let (mut holder, line) = spawn_worker(&["hold", dir, "z", "30"], false).unwrap();
    assert!(line.starts_with("held "), "{line}");
    holder.kill().unwrap();
    // Not reaped: wait until the kernel shows it as a zombie.
    let stat = format!("/proc/{}/stat", holder.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "the worker did not become a zombie"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut taker, verdict) = spawn_worker(&["try", dir, "z"], false).unwrap();
    taker.wait().unwrap();
    assert_eq!(verdict, "acquired", "a zombie's lease was not taken over");
    holder.wait().unwrap();
}
