//! Servers a later test run reuses: started once under a name, found again by it, kept
//! until [`NamedServer::stop`].
//!
//! A throwaway server costs a second or two per test process (`initdb` dominates); a
//! named one costs that once, then a check that it still answers. Names are validated
//! (`[a-z0-9][a-z0-9-]{0,31}`) and every directory is
//! `$TMPDIR/persistence-testing-{postgres|redis}-NAME`, so a name can never reach a path
//! or process this module did not make: before reusing a server it checks that the one
//! answering on the recorded port is the one whose directory it is (Postgres: the data
//! directory's `postmaster.pid`; Redis: `CONFIG GET dir`). One process at a time starts
//! or stops a given name (an exclusive `flock` beside the directory).
//!
//! Unlike the throwaway servers of [`LocalPostgres`](crate::LocalPostgres) and
//! [`LocalRedis`](crate::LocalRedis), a named server outlives the test process by
//! design: stop it with [`NamedServer::stop`] (or by deleting its directory after
//! stopping its process) when you are done. Fsync is off, as for throwaway servers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::{as_user, find_bin_dir, initdb, server_user};
use crate::redis::command as redis_command;
use crate::{START_ATTEMPTS, free_port};

/// Prefix of every directory (and so of every name visible on the machine).
pub const PREFIX: &str = "persistence-testing-";

/// Which server a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamedKind {
    /// A PostgreSQL cluster (superuser `postgres`, trust authentication on loopback).
    Postgres,
    /// A single Redis node without persistence.
    Redis,
}

impl NamedKind {
    fn label(self) -> &'static str {
        match self {
            NamedKind::Postgres => "postgres",
            NamedKind::Redis => "redis",
        }
    }
}

/// A server found or started under a name.
#[derive(Debug)]
pub struct NamedServer {
    kind: NamedKind,
    name: String,
    url: String,
    port: u16,
    dir: PathBuf,
    reused: bool,
}

impl NamedServer {
    /// Its URL (`postgres://postgres@127.0.0.1:PORT/postgres`, `redis://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Whether it was already running (started by an earlier call or run).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Stops the server and deletes its directory.
    ///
    /// # Errors
    /// Why the server could not be stopped or its directory not deleted.
    pub fn stop(self) -> Result<(), String> {
        let _guard = name_lock(self.kind, &self.name)?;
        stop_in(self.kind, &self.dir, self.port)?;
        std::fs::remove_dir_all(&self.dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| format!("delete {}: {e}", self.dir.display()))
    }
}

/// Checks a name: 1 to 32 of `a-z`, `0-9` and `-`, starting with a letter or digit.
///
/// # Errors
/// What is wrong with it.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a server name: 1 to 32 of a-z, 0-9 and '-', starting with a \
             letter or digit"
        ))
    }
}

/// The PostgreSQL server named `name`, started if it is not running.
///
/// # Errors
/// An invalid name, or why no server could be found or started (no `initdb`, ...).
pub fn postgres(name: &str) -> Result<NamedServer, String> {
    find_or_start(NamedKind::Postgres, name)
}

/// The Redis server named `name`, started if it is not running.
///
/// # Errors
/// An invalid name, or why no server could be found or started (no `redis-server`, ...).
pub fn redis(name: &str) -> Result<NamedServer, String> {
    find_or_start(NamedKind::Redis, name)
}

fn dir_of(kind: NamedKind, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}{}-{name}", kind.label()))
}

/// Holds the name's lock file (beside its directory) exclusively.
fn name_lock(kind: NamedKind, name: &str) -> Result<File, String> {
    let path = std::env::temp_dir().join(format!("{PREFIX}{}-{name}.lock", kind.label()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("lock {}: {e}", path.display()))?;
    Ok(file)
}

fn find_or_start(kind: NamedKind, name: &str) -> Result<NamedServer, String> {
    validate_name(name)?;
    let _guard = name_lock(kind, name)?;
    let dir = dir_of(kind, name);
    let server = |port: u16, reused: bool| NamedServer {
        kind,
        name: name.to_string(),
        url: match kind {
            NamedKind::Postgres => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            NamedKind::Redis => format!("redis://127.0.0.1:{port}"),
        },
        port,
        dir: dir.clone(),
        reused,
    };
    if let Some(port) = recorded_port(&dir)
        && is_ours(kind, &dir, port)
    {
        return Ok(server(port, true));
    }
    // Whatever is left (a server that died, a half-made directory) is ours to clear:
    // stop what still runs from it, then start afresh.
    if dir.exists() {
        if let Some(port) = recorded_port(&dir) {
            let _ = stop_in(kind, &dir, port);
        }
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clear {}: {e}", dir.display()))?;
    }
    let port = match kind {
        NamedKind::Postgres => start_postgres(&dir)?,
        NamedKind::Redis => start_redis(&dir)?,
    };
    std::fs::write(dir.join("port"), port.to_string())
        .map_err(|e| format!("record the port in {}: {e}", dir.display()))?;
    Ok(server(port, false))
}

fn recorded_port(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the server answering on `port` runs from `dir`.
fn is_ours(kind: NamedKind, dir: &Path, port: u16) -> bool {
    match kind {
        // Line 4 of postmaster.pid is the port, line 8 the status.
        NamedKind::Postgres => {
            std::fs::read_to_string(dir.join("data/postmaster.pid")).is_ok_and(|pid| {
                let lines: Vec<&str> = pid.lines().collect();
                lines.get(3).is_some_and(|l| l.trim() == port.to_string())
                    && lines.get(7).is_some_and(|l| l.trim() == "ready")
                    && pid_alive(lines.first().copied())
            })
        }
        NamedKind::Redis => redis_command(port, "CONFIG GET dir")
            .is_some_and(|reply| reply.contains(&*dir.to_string_lossy())),
    }
}

fn pid_alive(pid: Option<&str>) -> bool {
    pid.and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(running)
}

/// Whether process `pid` runs (a zombie, exited but not yet reaped by its parent, does
/// not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not become ready within 30 s"))
}

fn start_postgres(dir: &Path) -> Result<u16, String> {
    let bin = find_bin_dir().ok_or(
        "initdb/postgres not found on PATH or under /usr/lib/postgresql (apt-get install postgresql)",
    )?;
    let user = server_user()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    initdb(&bin, &data, user)?;
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let log = File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
        }
        let mut child = detached(as_user(&mut Command::new(bin.join("postgres")), user))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let started = wait_until("postgres", || {
            child.try_wait().ok().flatten().is_some() || is_ours(NamedKind::Postgres, dir, port)
        });
        if started.is_ok() && is_ours(NamedKind::Postgres, dir, port) {
            return Ok(port);
        }
        let _ = child.kill();
        last = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    }
    Err(format!("postgres did not start: {last}"))
}

fn start_redis(dir: &Path) -> Result<u16, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let status = detached(&mut Command::new("redis-server"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .arg("--logfile")
            .arg(dir.join("server.log"))
            .stdout(Stdio::null())
            .status()
            .map_err(|e| {
                format!("redis-server not found on PATH (apt-get install redis-server): {e}")
            })?;
        if status.success() && wait_until("redis", || is_ours(NamedKind::Redis, dir, port)).is_ok()
        {
            return Ok(port);
        }
        last = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    }
    Err(format!("redis-server did not start: {last}"))
}

/// In a process group of its own, so a signal to the test's group (Ctrl-C) leaves it.
fn detached(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null()).process_group(0)
}

/// Stops the server running from `dir` (nothing if none does).
fn stop_in(kind: NamedKind, dir: &Path, port: u16) -> Result<(), String> {
    let pid_file = match kind {
        NamedKind::Postgres => dir.join("data/postmaster.pid"),
        NamedKind::Redis => dir.join("redis.pid"),
    };
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    // Only a server that is ours: its directory's server on its recorded port.
    if !is_ours(kind, dir, port) {
        return Ok(());
    }
    let signal = match kind {
        NamedKind::Postgres => "-INT", // fast shutdown
        NamedKind::Redis => "-TERM",
    };
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    wait_until("shutdown", || !running(pid))
        .map_err(|_| format!("{} server (pid {pid}) did not stop", kind.label()))
}
