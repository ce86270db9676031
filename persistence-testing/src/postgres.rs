//! A throwaway PostgreSQL server for tests: `initdb` into a temp dir, `postgres` on a free
//! loopback port with fsync off, as the `postgres` user when run as root. A watchdog shell
//! stops the server and deletes its directory as soon as the test process exits (even by
//! SIGKILL), so no server outlives the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Launcher, START_ATTEMPTS, Server, free_port};

/// Starts one local PostgreSQL per test process, on first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalPostgres;

impl Launcher for LocalPostgres {
    fn launch(&self, server: Server) -> Result<String, String> {
        static PLAIN: OnceLock<Result<String, String>> = OnceLock::new();
        static TLS: OnceLock<Result<String, String>> = OnceLock::new();
        match server {
            Server::Postgres => PLAIN.get_or_init(|| start(Tls::Off)).clone(),
            Server::PostgresTls => TLS.get_or_init(|| start(Tls::Mutual)).clone(),
            _ => Err(format!("LocalPostgres cannot start {server}")),
        }
    }
}

/// The directory holding `initdb` and `postgres`: on PATH, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            // Follow symlinks (e.g. /usr/local/bin/initdb) to the real bin dir, which
            // also holds pg_isready.
            if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
                && let Some(real) = initdb.parent()
                && real.join("postgres").is_file()
                && real.join("pg_isready").is_file()
            {
                return Some(real.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `(uid, gid)` to run the server as: the `postgres` user when we are root.
pub(crate) fn server_user() -> Result<Option<(u32, u32)>, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .ok_or("cannot read own uid")?;
    if uid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    for name in ["postgres", "nobody"] {
        if let Some(line) = passwd.lines().find(|l| l.starts_with(&format!("{name}:"))) {
            let fields: Vec<&str> = line.split(':').collect();
            if let (Some(u), Some(g)) = (fields.get(2), fields.get(3)) {
                return Ok(Some((
                    u.parse().map_err(|_| "bad uid")?,
                    g.parse().map_err(|_| "bad gid")?,
                )));
            }
        }
    }
    Err("running as root and no 'postgres' or 'nobody' user to run the server as".into())
}

pub(crate) fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.gid(gid).uid(uid);
    }
    cmd
}

/// A fresh temp dir (owned by the server user) holding an initialised `data` dir.
pub(crate) fn init_data_dir(bin: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix("persistence-pg-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    if let Err(e) = initdb(bin, &dir.join("data"), user) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// `initdb` of a new cluster in `data` (trust authentication, superuser `postgres`).
pub(crate) fn initdb(bin: &Path, data: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    let out = as_user(&mut Command::new(bin.join("initdb")), user)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Whether a throwaway server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// Plaintext only (`ssl = off`).
    Off,
    /// TLS only, with a client certificate signed by the test CA required
    /// (`hostssl ... clientcert=verify-ca`, `hostnossl ... reject`).
    Mutual,
}

/// `pg_hba.conf` of a TLS server: plaintext TCP is refused, so a test that passes ran
/// over TLS.
const TLS_HBA: &str = "local all all trust
hostssl all all 127.0.0.1/32 trust clientcert=verify-ca
hostnossl all all 127.0.0.1/32 reject
";

fn start(tls: Tls) -> Result<String, String> {
    let bin = find_bin_dir().ok_or("initdb/postgres not found on PATH or under /usr/lib/postgresql (apt-get install postgresql)")?;
    let user = server_user()?;
    let dir = init_data_dir(&bin, user)?;
    let data = dir.join("data");
    let (extra, query) = match tls {
        Tls::Off => (String::new(), String::new()),
        Tls::Mutual => {
            let files = super::tls::generate(&dir, user)?;
            std::fs::write(data.join("pg_hba.conf"), TLS_HBA)
                .map_err(|e| format!("write pg_hba.conf: {e}"))?;
            (
                format!(
                    "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={}",
                    files.server_cert.display(),
                    files.server_key.display(),
                    files.ca.display()
                ),
                format!("?sslmode=verify-full&{}", files.mutual_query()),
            )
        }
    };
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let mut watchdog = spawn_watched(&bin, &dir, &data, port, user, &extra)?;
        match wait_ready(&bin, port, &dir, &mut watchdog) {
            Ok(()) => {
                return Ok(format!(
                    "postgres://postgres@127.0.0.1:{port}/postgres{query}"
                ));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Runs the server under a shell that stops it when this process is gone.
fn spawn_watched(
    bin: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    user: Option<(u32, u32)>,
    extra: &str,
) -> Result<std::process::Child, String> {
    const SCRIPT: &str = r#"
"$PG_BIN/postgres" -D "$PG_DATA" -p "$PG_PORT" -k "$PG_DIR" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
    -c shared_preload_libraries=pg_stat_statements $PG_EXTRA >"$PG_DIR/server.log" 2>&1 &
pg=$!
# /proc works across users, unlike `kill -0` on a root-owned parent.
while [ -d "/proc/$PARENT" ] && kill -0 "$pg" 2>/dev/null; do sleep 0.2; done
kill -INT "$pg" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    kill -0 "$pg" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$pg" 2>/dev/null
wait "$pg"
# A server that did not start (port taken) leaves the directory for the next attempt.
[ -d "/proc/$PARENT" ] || rm -rf "$PG_DIR"
"#;
    as_user(&mut Command::new("sh"), user)
        .args(["-c", SCRIPT])
        .env("PG_BIN", bin)
        .env("PG_DATA", data)
        .env("PG_DIR", dir)
        .env("PG_PORT", port.to_string())
        .env("PG_EXTRA", extra)
        .env("PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))
}

fn wait_ready(
    bin: &Path,
    port: u16,
    dir: &Path,
    watchdog: &mut std::process::Child,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // The watchdog exits as soon as its server does (a port taken, say).
        if watchdog.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("postgres exited at start on port {port}: {log}"));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        // Answering is not enough: it must be our server (its pid file says ready).
        let ours = std::fs::read_to_string(dir.join("data").join("postmaster.pid"))
            .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|l| l.trim() == "ready"));
        if ready && ours {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    Err(format!(
        "postgres did not become ready on port {port}: {log}"
    ))
}
