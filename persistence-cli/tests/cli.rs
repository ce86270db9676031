//! The real `persistence` binary against the filesystem, memory, PostgreSQL and Redis
//! (servers from the harness: env URLs or throwaway local ones).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::str::FromStr;

use common::{fails, json, ok, persistence, stderr, stdout};

use persistence_conformance::harness::{LocalPostgres, LocalRedis, Server, server_url};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// The app role's password in test and bench URLs: what `docker-compose.yml` sets; the
/// throwaway servers trust loopback connections and ignore it.
const APP_PASSWORD: &str = "persistence_app";

/// The demo's checks, on any backend URL: it completes, kills and resumes a worker, is
/// refused the stale write, shows isolation; a second run continues every thread.
fn demo_completes_and_resumes(dir: &Path, url: &str) {
    let first = ok(dir, &["demo", "--url", url]);
    assert!(
        first.contains("killed the worker of acme/billing/run-7"),
        "{first}"
    );
    assert!(first.contains("resumed from checkpoint"), "{first}");
    assert!(first.contains("was refused: fenced"), "{first}");
    assert!(
        first.contains("globex reading acme's billing/run-7: nothing"),
        "{first}"
    );

    let second = ok(dir, &["demo", "--url", url, "--steps", "4"]);
    assert!(second.contains("continued from step 8"), "{second}");

    let status = json(&ok(dir, &["status", "--url", url, "--format", "json"]));
    let tenants = status["tenants"].as_array().unwrap();
    let names: Vec<&str> = tenants
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex"], "{status}");
    for t in tenants {
        assert_eq!(t["threads"], 2, "{status}");
        assert_eq!(t["sessions"], 2, "{status}");
        assert_eq!(t["items"], 2, "{status}");
    }

    let thread = json(&ok(
        dir,
        &[
            "inspect",
            "--url",
            url,
            "thread",
            "--tenant",
            "acme",
            "billing/run-7",
            "--format",
            "json",
        ],
    ));
    let steps: Vec<i64> = thread["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_i64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=12).rev().collect::<Vec<_>>(),
        "gapless history, newest first"
    );

    let session = json(&ok(
        dir,
        &[
            "inspect",
            "--url",
            url,
            "session",
            "--tenant",
            "globex",
            "support/ticket-1",
            "--format",
            "json",
            "--limit",
            "100",
        ],
    ));
    assert_eq!(session["head"], 12, "{session}");
    let memory = ok(
        dir,
        &[
            "inspect",
            "--url",
            url,
            "namespace",
            "--tenant",
            "acme",
            "memory",
            "support/ticket-1",
        ],
    );
    assert!(
        memory.contains("summary") && memory.contains("\"last_step\":12"),
        "{memory}"
    );

    let gc = ok(dir, &["gc", "--url", url]);
    assert!(
        gc.starts_with("removed 0 expired store items and 0 expired sessions"),
        "{gc}"
    );
    gc_removes_expired(dir, url);
}

/// Writes one store item and one session with a short TTL (through the library), lets
/// them expire, and expects `persistence gc` to report removing exactly those.
fn gc_removes_expired(dir: &Path, url: &str) {
    use persistence::{AppendOptions, Envelope, ItemKey, Namespace, PutItemOptions};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A relative file:// URL means the binary's working directory, `dir`.
    let absolute = match url.strip_prefix("file://") {
        Some(path) if !path.starts_with('/') => format!("file://{}/{path}", dir.display()),
        _ => url.to_string(),
    };
    rt.block_on(async {
        let p = persistence::open(&absolute).await.unwrap();
        let t = persistence::TenantId::new("gc-tenant").unwrap();
        let ttl = Some(std::time::Duration::from_millis(50));
        let item = PutItemOptions::default().with_ttl(ttl);
        let (ns, key) = (Namespace::new(["tmp"]).unwrap(), ItemKey::new("k").unwrap());
        let value = Envelope::new(1, serde_json::json!(1));
        p.store.put(&t, &ns, &key, value, item).await.unwrap();
        let append = AppendOptions::default().with_ttl(ttl);
        let session = persistence::SessionKey::new("short").unwrap();
        let event = vec![Envelope::new(1, serde_json::json!(1))];
        p.sessions
            .append(&t, &session, event, append)
            .await
            .unwrap();
        p.close().await;
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let gc = ok(dir, &["gc", "--url", url]);
    assert!(
        gc.starts_with("removed 1 expired store items and 1 expired sessions"),
        "{gc}"
    );
}

#[test]
fn demo_on_the_default_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    demo_completes_and_resumes(dir.path(), "file://.persistence-demo");
    assert!(dir.path().join(".persistence-demo/v1").is_dir());
    // The default URL is the demo's store.
    let status = ok(dir.path(), &["status"]);
    assert!(
        status.contains("backend       fs") && status.contains("acme"),
        "{status}"
    );
}

#[test]
fn demo_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["demo", "--url", "memory://"]);
    assert!(
        out.contains("resumed from checkpoint") && out.contains("refused: fenced"),
        "{out}"
    );
}

#[test]
fn bad_urls_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(dir.path(), &["status", "--url", "ftp://example.com/x"]);
    assert!(err.contains("unknown URL scheme \"ftp\""), "{err}");
    // The hint follows from where the error arose (opening the URL), not its wording.
    assert!(err.contains("hint: URLs look like"), "{err}");
    let err = fails(dir.path(), &["demo", "--url", "not a url"]);
    assert!(err.contains("hint: URLs look like"), "{err}");
    let err = fails(
        dir.path(),
        &["status", "--url", "file://x?durability=sometimes"],
    );
    assert!(err.contains("durability"), "{err}");
    let err = fails(dir.path(), &["inspect", "thread", "--tenant", "../x", "t"]);
    assert!(err.contains("--tenant"), "{err}");
    // A usage error is clap's, also non-zero.
    assert!(!persistence(dir.path(), &["frobnicate"]).status.success());
}

#[test]
fn unreachable_servers_fail_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pg = format!("postgres://persistence_app@127.0.0.1:{port}/db");
    let err = fails(dir.path(), &["status", "--url", &pg]);
    assert!(err.contains("docker compose up -d postgres"), "{err}");
    let err = fails(dir.path(), &["migrate", "--url", &pg]);
    assert!(err.contains("hint:"), "{err}");
    let redis = format!("redis://127.0.0.1:{port}");
    let err = fails(dir.path(), &["gc", "--url", &redis]);
    assert!(err.contains("docker compose up -d redis"), "{err}");
}

/// The raw baselines of one concurrency in a bench report: (write, read).
fn baselines_of(report: &Value, tasks: usize) -> (&Value, &Value) {
    let b = report["baselines"]
        .as_array()
        .unwrap_or_else(|| panic!("no baselines: {report}"))
        .iter()
        .find(|b| b["tasks"] == tasks)
        .unwrap_or_else(|| panic!("no baselines at {tasks} tasks: {report}"));
    (&b["write"], &b["read"])
}

/// The raw baseline `kind` (`lock`, `script`, `create`) at `tasks` (`Null` for a
/// backend without one).
fn extra_baseline_of<'a>(report: &'a Value, tasks: usize, kind: &str) -> &'a Value {
    let b = report["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["tasks"] == tasks)
        .unwrap();
    &b[kind]
}

/// The raw lock cycle baseline at `tasks` (`Null` for a backend without one).
fn lock_baseline_of(report: &Value, tasks: usize) -> &Value {
    extra_baseline_of(report, tasks, "lock")
}

/// Every row is compared with the raw baseline of its kind (reads with a raw read) at
/// its own concurrency, measured around the row.
fn rows_use_their_own_baselines(report: &Value) {
    for row in report["rows"].as_array().unwrap() {
        let tasks = row["tasks"].as_u64().unwrap() as usize;
        let (write, read) = baselines_of(report, tasks);
        let name = row["name"].as_str().unwrap();
        let lock = lock_baseline_of(report, tasks);
        let want = if name.contains(" get") {
            read
        } else if name.starts_with("lock cycle") && !lock.is_null() {
            lock
        } else {
            write
        };
        assert_eq!(row["baseline"], want["name"], "{row}");
        // The baseline is measured again around each row (the machine's speed drifts
        // over a run), so the ratio divides by that measurement, not the baseline row.
        let around = row["baseline_ops_per_sec"].as_f64().unwrap();
        assert!(around.is_finite() && around > 0.0, "{row}");
        let ratio = row["ops_per_sec"].as_f64().unwrap() / around;
        let vs_raw = row["vs_raw"].as_f64().unwrap();
        assert!((ratio - vs_raw).abs() < 1e-6 * ratio.max(1.0), "{row}");
    }
}

#[test]
fn bench_prints_json_rows_beside_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let report = json(&ok(
        dir.path(),
        &["bench", "--ops", "20", "--tasks", "1,2", "--json"],
    ));
    assert_eq!(report["backend"], "fs");
    for tasks in [1, 2] {
        let (write, read) = baselines_of(&report, tasks);
        assert_eq!(write["name"], "raw write+fdatasync", "{report}");
        assert_eq!(write["tasks"], tasks, "{report}");
        assert_eq!(read["name"], "raw pread", "{report}");
        // What a checkpoint put pays besides its flush: a new file, printed beside.
        let create = extra_baseline_of(&report, tasks, "create");
        assert_eq!(create["name"], "raw new file (no sync)", "{report}");
        assert!(create["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    }
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2 * persistence_bench::workload::Op::ALL.len(),
        "{report}"
    );
    rows_use_their_own_baselines(&report);
    // The disk's own counter, where the scratch directory is on a block device: a
    // durable put costs flushes, a read none.
    let counted = persistence_bench::DeviceFlushes::of(&std::env::temp_dir())
        .count()
        .is_some();
    for row in rows {
        assert!(row["ops_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["p99"].as_f64().unwrap() >= row["p50"].as_f64().unwrap(),
            "{row}"
        );
        if !counted {
            continue;
        }
        let cost = &row["cost"];
        assert_eq!(cost["unit"], "device flushes", "{row}");
        let per_op = cost["per_op"].as_f64().unwrap();
        if row["name"] == "checkpoint put" {
            assert!(per_op >= 0.5, "{row}");
        }
    }
    if !counted {
        eprintln!("device flushes not checked: the temp dir is on no block device with a counter");
    }
    fails(dir.path(), &["bench", "--ops", "20", "--tasks", "0"]);
}

/// `--scale` adds the scale checks: rows at 1 000 and N, growth ratios, and full passes
/// over N sessions and N items that see every one of them; then removes what it wrote.
#[test]
fn bench_scale_checks_flat_costs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Without fsync: the fill is what costs here, not what is measured.
    let url = format!("file://{}?durability=none", store.display());
    let report = json(&ok(
        dir.path(),
        &[
            "bench", "--url", &url, "--ops", "10", "--tasks", "1", "--scale", "2000", "--json",
        ],
    ));
    let scale = &report["scale"];
    assert_eq!(scale["size"], 2000, "{report}");
    let growth: Vec<&str> = scale["growth"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["operation"].as_str().unwrap())
        .collect();
    assert_eq!(growth, ["get latest", "put", "read 100 events"], "{scale}");
    for pass in scale["list_all"].as_array().unwrap() {
        // The sessions: 2 000 and the long one the reads ran on.
        let want = if pass["what"] == "sessions" {
            2001
        } else {
            2000
        };
        assert_eq!(pass["entries"], want, "{pass}");
    }
    assert_eq!(scale["rows"].as_array().unwrap().len(), 6, "{scale}");
}

/// A new, empty database on the harness's server: (admin URL, app-role URL).
fn empty_database() -> Option<(String, String)> {
    empty_database_on(Server::Postgres)
}

/// An empty database on `server` (the plaintext or the TLS Postgres): admin and app URLs.
fn empty_database_on(server: Server) -> Option<(String, String)> {
    let url = server_url(server, &LocalPostgres)?;
    let admin = PgConnectOptions::from_str(&url).unwrap();
    let name = format!(
        "persistence_cli_{}_{}",
        std::process::id(),
        server.name().replace('-', "_")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.unwrap();
        conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
            .await
            .unwrap();
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap();
    });
    let admin_url = admin.clone().database(&name).to_url_lossy().to_string();
    let app_url = admin
        .username("persistence_app")
        .password(APP_PASSWORD)
        .database(&name)
        .to_url_lossy()
        .to_string();
    // sqlx writes TLS files as `file: PATH`; plain paths are what users pass.
    let plain = |url: String| url.replace("file%3A+", "");
    Some((plain(admin_url), plain(app_url)))
}

#[test]
fn postgres_migrate_is_idempotent_and_the_demo_runs_as_the_app_role() {
    let Some((admin_url, app_url)) = empty_database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Before migrating, the app is told what to do (the app role may not exist yet).
    let err = fails(dir.path(), &["status", "--url", &app_url]);
    assert!(err.contains("persistence migrate"), "{err}");
    let err = fails(dir.path(), &["status", "--url", &admin_url]);
    assert!(err.contains("persistence migrate"), "{err}");

    let first = ok(dir.path(), &["migrate", "--url", &admin_url]);
    assert!(
        first.contains("applied 0001") && first.contains("applied 0007"),
        "{first}"
    );
    let second = ok(dir.path(), &["migrate", "--url", &admin_url]);
    assert!(second.contains("already up to date"), "{second}");

    demo_completes_and_resumes(dir.path(), &app_url);
    let status = ok(dir.path(), &["status", "--url", &app_url]);
    let schema = format!("schema version {}", persistence::postgres::SCHEMA_VERSION);
    assert!(status.contains(&schema), "{status}");

    postgres_bench_is_honest(dir.path(), &admin_url, &app_url);
}

/// The Postgres bench: a durable baseline (a WAL flush per insert, from `pg_stat_wal`),
/// one per concurrency, WAL flushes beside every row, round trips counted; and nothing
/// left behind but one lease row per task (fences never go back).
fn postgres_bench_is_honest(dir: &Path, admin_url: &str, app_url: &str) {
    let sql = |sql: &str| -> i64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        })
    };
    // The harness's shared server commits without waiting for the WAL (and never
    // fsyncs: the bench then counts WAL writes); this database commits as a durable
    // server does, so a durable insert shows one WAL flush.
    let database = admin_url
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
            let alter = format!(r#"ALTER DATABASE "{database}" SET synchronous_commit = on"#);
            conn.execute(alter.as_str()).await.unwrap();
        });
    let report = json(&ok(
        dir,
        &[
            "bench", "--url", app_url, "--ops", "20", "--tasks", "1,2", "--json",
        ],
    ));
    let (write, read) = baselines_of(&report, 1);
    assert_eq!(write["name"], "raw INSERT (durable)", "{report}");
    let unit = write["cost"]["unit"].as_str().unwrap();
    assert!(["WAL syncs", "WAL writes"].contains(&unit), "{report}");
    let flushes = write["cost"]["per_op"].as_f64().unwrap();
    assert!(
        flushes >= 0.9,
        "a raw insert should flush the WAL: {report}"
    );
    assert_eq!(write["round_trips"], 1.0, "{report}");
    assert_eq!(read["name"], "raw SELECT by key", "{report}");
    assert_eq!(read["round_trips"], 1.0, "{report}");
    // A lock cycle is compared with the server's own lock: an advisory lock taken and
    // released, two round trips that write nothing.
    let lock = lock_baseline_of(&report, 1);
    assert_eq!(lock["name"], "raw advisory lock cycle", "{report}");
    assert_eq!(lock["round_trips"], 2.0, "{report}");
    rows_use_their_own_baselines(&report);
    for row in report["rows"].as_array().unwrap() {
        let rt = row["round_trips"].as_f64().unwrap();
        assert!(rt > 0.0 && rt <= 2.05, "{row}");
        assert_eq!(row["cost"]["unit"], unit, "{row}");
        // Lease changes commit without waiting for a WAL flush (their fences are
        // floored at the database clock, so a lost lease change never repeats a fence).
        if row["name"].as_str().unwrap().starts_with("lock cycle") {
            let flushes = row["cost"]["per_op"].as_f64().unwrap();
            assert!(flushes < 0.5, "a lock cycle waited for the WAL: {row}");
        }
    }
    // One released lease per task of the widest row, for the lock row and for the
    // guarded put row (their fences never go back), the same names in every run.
    let leases =
        sql("SELECT count(*) FROM persistence.leases WHERE tenant_id = 'persistence-bench'");
    assert!(leases <= 4, "{leases} lease rows left");
    let rows = sql(
        "SELECT (SELECT count(*) FROM persistence.checkpoints WHERE tenant_id LIKE 'persistence-bench%') \
         + (SELECT count(*) FROM persistence.session_events WHERE tenant_id LIKE 'persistence-bench%') \
         + (SELECT count(*) FROM persistence.items WHERE tenant_id LIKE 'persistence-bench%')",
    );
    assert_eq!(rows, 0, "the bench left rows behind");
}

fn redis_url(server: Server) -> Option<String> {
    let url = server_url(server, &LocalRedis)?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!(
        "{url}{sep}prefix=cli-{}-{}:",
        std::process::id(),
        fastrand_suffix()
    ))
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn redis_demo_status_and_bench() {
    let Some(url) = redis_url(Server::Redis) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    demo_completes_and_resumes(dir.path(), &url);
    // What runs out without a `gc`: Redis expires sessions by itself, not items.
    // Ciphertext is stored raw.
    let status = json(&ok(
        dir.path(),
        &["status", "--url", &url, "--format", "json"],
    ));
    let caps = status["capabilities"].as_array().unwrap();
    assert!(
        caps.contains(&"sessions-expire-by-themselves".into())
            && !caps.contains(&"items-expire-by-themselves".into())
            && caps.contains(&"binary-payloads".into()),
        "{status}"
    );
    redis_bench_is_honest(dir.path(), &url);
}

/// The Redis bench: plain-command baselines per concurrency, the server's CPU and
/// commandstats beside every row; and a second, longer run leaves no more keys than
/// the first (one fence per task's lock name and the tenant's index entries), none of
/// them growing with the operations run.
fn redis_bench_is_honest(dir: &Path, url: &str) {
    let prefix = url.split_once("prefix=").unwrap().1.to_string();
    let keys_left = || -> Vec<String> {
        let client = redis::Client::open(url.split_once('?').unwrap().0).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut conn)
            .unwrap();
        keys.sort();
        keys
    };
    let before = keys_left();
    let bench = |ops: &str| {
        json(&ok(
            dir,
            &[
                "bench", "--url", url, "--ops", ops, "--tasks", "1,2", "--json",
            ],
        ))
    };
    let report = bench("20");
    let (write, read) = baselines_of(&report, 1);
    assert_eq!(write["name"], "raw SET", "{report}");
    assert_eq!(read["name"], "raw GET", "{report}");
    assert_eq!(write["round_trips"], 1.0, "{report}");
    // The floor of every script: one EVALSHA running one SET, with its commandstats.
    let b = report["baselines"].as_array().unwrap();
    let script = &b.iter().find(|b| b["tasks"] == 1).unwrap()["script"];
    assert_eq!(script["name"], "raw EVALSHA of one SET", "{report}");
    assert_eq!(script["round_trips"], 1.0, "{report}");
    let detail = script["cost"]["detail"].as_str().unwrap();
    assert!(detail.contains("evalsha 1.00 calls/op"), "{detail}");
    rows_use_their_own_baselines(&report);
    for row in report["rows"].as_array().unwrap() {
        let cost = &row["cost"];
        assert_eq!(cost["unit"], "server CPU µs", "{row}");
        assert!(cost["per_op"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            cost["detail"].as_str().unwrap().contains("usec_per_call"),
            "{row}"
        );
    }
    let after_one = keys_left();
    bench("60");
    let after_two = keys_left();
    assert_eq!(after_one, after_two, "a longer run left more keys");
    let new: Vec<&String> = after_two.iter().filter(|k| !before.contains(k)).collect();
    // Per task of the widest row: the fence of its lock, of its guarded row's lock and
    // of its guarded thread.
    let fences = new.iter().filter(|k| k.ends_with(":fence")).count();
    assert!(
        fences <= 6,
        "one fence per task's locks and thread: {new:?}"
    );
    assert!(new.len() <= fences + 5, "{new:?}");
}

#[test]
fn redis_cluster_demo() {
    let Some(url) = redis_url(Server::RedisCluster) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    demo_completes_and_resumes(dir.path(), &url);
}

/// No password of a URL reaches the terminal, whatever fails.
#[test]
fn passwords_in_urls_are_never_printed() {
    const SECRET: &str = "hunter2-cli-secret";
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("postgres://postgres:{SECRET}@127.0.0.1:1/db?connect_timeout_ms=300"),
        format!("postgres://u:{SECRET}@127.0.0.1:1/db?operation_timeout_ms=soon"),
        format!("redis://:{SECRET}@127.0.0.1:1/0"),
        format!("u:{SECRET}@127.0.0.1:1"),
    ] {
        for command in ["status", "demo", "gc"] {
            let o = persistence(dir.path(), &[command, "--url", &url]);
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(!o.status.success(), "{command} {url}: {all}");
            assert!(
                !all.contains(SECRET),
                "{command} printed the password: {all}"
            );
        }
    }
}

/// A Postgres address that accepts connections and never answers: `status` fails within
/// the connect deadline instead of hanging.
#[test]
fn status_against_a_silent_server_ends() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(held);
    });
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = fails(
        dir.path(),
        &[
            "status",
            "--url",
            &format!("postgres://persistence_app@127.0.0.1:{port}/db"),
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "status took {elapsed:?}: {err}"
    );
}

/// A bench report's checks for a TLS URL: it says TLS, shows connection setup apart,
/// and its operations cost what they cost in plaintext (counted by the proxy, which
/// forwards TLS records unread: the certificate names 127.0.0.1).
fn bench_over_tls_shows_setup_apart(dir: &Path, url: &str) {
    let report = json(&ok(
        dir,
        &[
            "bench", "--url", url, "--ops", "20", "--tasks", "1", "--json",
        ],
    ));
    assert_eq!(report["tls"], true, "{report}");
    let setup = &report["connection_setup"];
    assert!(setup["name"].as_str().unwrap().contains("TLS"), "{report}");
    assert!(setup["round_trips"].as_f64().unwrap() >= 2.0, "{report}");
    assert_eq!(baselines_of(&report, 1).0["round_trips"], 1.0, "{report}");
    for row in report["rows"].as_array().unwrap() {
        let rt = row["round_trips"].as_f64().unwrap();
        assert!(rt > 0.0 && rt <= 2.05, "{row}");
    }
}

#[test]
fn redis_over_tls_status_demo_and_bench() {
    let Some(url) = redis_url(Server::RedisTls) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = ok(dir.path(), &["status", "--url", &url]);
    assert!(status.contains("redis"), "{status}");
    demo_completes_and_resumes(dir.path(), &url);
    bench_over_tls_shows_setup_apart(dir.path(), &url);
    // The wrong CA: the TLS error and a TLS hint, not "is Redis running?".
    let files = persistence_conformance::harness::tls::TlsFiles::of_url(&url).unwrap();
    let wrong = url.replace(
        &files.ca.display().to_string(),
        &files.other_ca.display().to_string(),
    );
    let err = fails(dir.path(), &["status", "--url", &wrong]);
    assert!(err.contains("TLS to 127.0.0.1"), "{err}");
    assert!(err.contains("hint: TLS URL options"), "{err}");
    assert!(!err.contains("docker compose"), "{err}");
}

#[test]
fn redis_cluster_over_tls_demo() {
    let Some(url) = redis_url(Server::RedisClusterTls) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    demo_completes_and_resumes(dir.path(), &url);
}

#[test]
fn postgres_over_tls_migrate_status_and_bench() {
    let Some((admin_url, app_url)) = empty_database_on(Server::PostgresTls) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = ok(dir.path(), &["migrate", "--url", &admin_url]);
    assert!(first.contains("applied 0007"), "{first}");
    let status = ok(dir.path(), &["status", "--url", &app_url]);
    let schema = format!("schema version {}", persistence::postgres::SCHEMA_VERSION);
    assert!(status.contains(&schema), "{status}");
    bench_over_tls_shows_setup_apart(dir.path(), &app_url);
    // Without the client certificate the server refuses: a TLS error naming sslcert.
    let bare = format!("{}?sslmode=require", app_url.split('?').next().unwrap());
    let err = fails(dir.path(), &["status", "--url", &bare]);
    assert!(err.contains("sslcert"), "{err}");
    assert!(!err.contains("docker compose"), "{err}");
}

/// `gc` with retention options prunes every thread, reports counts (JSON too), and
/// `inspect audit` shows what it removed and the sweeper's round; `inspect session`
/// shows a session's life cycle.
#[test]
fn gc_applies_retention_and_inspect_audit_shows_it() {
    use persistence::{CheckpointId, CloseSession, Envelope, NewCheckpoint, SessionKey, ThreadKey};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("store").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = persistence::open(&url).await.unwrap();
        let t = persistence::TenantId::new("acme").unwrap();
        for thread in ["one", "two"] {
            for step in 0..3 {
                let c = NewCheckpoint::new(
                    CheckpointId::new(),
                    step,
                    Envelope::new(1, serde_json::json!({"step": step})),
                );
                p.checkpointer
                    .put(&t, &ThreadKey::new(thread).unwrap(), c, Default::default())
                    .await
                    .unwrap();
            }
        }
        let s = SessionKey::new("chat").unwrap();
        let event = vec![Envelope::new(1, serde_json::json!("hi"))];
        p.sessions
            .append(&t, &s, event, Default::default())
            .await
            .unwrap();
        p.sessions
            .close_session(&t, &s, CloseSession::default())
            .await
            .unwrap();
        p.close().await;
    });
    let gc = json(&ok(
        dir.path(),
        &["gc", "--url", &url, "--keep-last", "1", "--format", "json"],
    ));
    assert_eq!(gc["ran"], true, "{gc}");
    assert_eq!(
        (gc["threads"].as_u64(), gc["checkpoints"].as_u64()),
        (Some(2), Some(4)),
        "{gc}"
    );

    let audit = json(&ok(
        dir.path(),
        &[
            "inspect", "--url", &url, "audit", "--tenant", "acme", "--format", "json",
        ],
    ));
    let kinds: Vec<(String, String)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["event"];
            (
                e["kind"].as_str().unwrap().into(),
                e["thread"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("thread.pruned".into(), "one".into()),
            ("thread.pruned".into(), "two".into())
        ],
        "{audit}"
    );
    let rounds = ok(
        dir.path(),
        &[
            "inspect",
            "--url",
            &url,
            "audit",
            "--tenant",
            "persistence.system",
        ],
    );
    assert!(rounds.contains("sweep.round"), "{rounds}");
    let text = ok(dir.path(), &["gc", "--url", &url, "--max-age", "7d"]);
    assert!(
        text.contains("retention: 2 threads visited, 0 checkpoints deleted"),
        "{text}"
    );

    let session = ok(
        dir.path(),
        &[
            "inspect", "--url", &url, "session", "--tenant", "acme", "chat",
        ],
    );
    assert!(
        session.contains("head 1") && session.contains("closed 20"),
        "{session}"
    );
    let bad = persistence(dir.path(), &["gc", "--url", &url, "--max-age", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--max-age"), "{}", stderr(&bad));
}
