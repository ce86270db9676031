//! Servers owned by one test, for fault injection: the test may pause (SIGSTOP), resume,
//! restart or kill them, by the PID it started. Never the shared servers of
//! [`server_url`](super::server_url), and never a server from an environment URL.
//!
//! Each server runs as a direct child of the test process in its own temp dir. A reaper
//! shell kills whatever PID the test last recorded (resuming it first) and deletes the
//! dir once the test process is gone, even after SIGKILL; `Drop` does the same at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{as_user, find_bin_dir, init_data_dir, server_user};
use super::{REQUIRE_VAR, Server, free_port, is_required, redis::command};

/// `Some(server)`, or `None` after printing why not when `server` is not required;
/// panics when it is required (`PERSISTENCE_TEST_REQUIRE`).
fn or_skip<T>(server: Server, started: Result<T, String>) -> Option<T> {
    match started {
        Ok(s) => Some(s),
        Err(why) => {
            let spec = std::env::var(REQUIRE_VAR).unwrap_or_default();
            if is_required(&spec, server) {
                panic!("a dedicated {server} is required ({REQUIRE_VAR}={spec}) but: {why}");
            }
            eprintln!("SKIPPED: no dedicated {server} for this fault test: {why}");
            None
        }
    }
}

/// Sends `signal` (e.g. `"STOP"`, `"CONT"`, `"KILL"`) to `pid`, a process the test
/// started.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Kills the recorded PID and removes the dir when the test process is gone.
struct Reaper {
    pid_file: PathBuf,
}

impl Reaper {
    fn spawn(dir: &Path) -> Result<Reaper, String> {
        const SCRIPT: &str = r#"
while [ -d "/proc/$PARENT" ]; do sleep 0.2; done
for p in $(cat "$PID_FILE" 2>/dev/null); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
rm -rf "$DIR"
"#;
        let pid_file = dir.join("reaper.pids");
        Command::new("sh")
            .args(["-c", SCRIPT])
            .env("PID_FILE", &pid_file)
            .env("DIR", dir)
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the reaper: {e}"))?;
        Ok(Reaper { pid_file })
    }

    fn record(&self, pid: u32) {
        let _ = std::fs::write(&self.pid_file, pid.to_string());
    }
}

fn stop_child(child: &mut Child) {
    signal(child.id(), "CONT");
    let _ = child.kill();
    let _ = child.wait();
}

/// A PostgreSQL server owned by one test (fsync off, trust auth, as the `postgres` user
/// when run as root).
pub struct DedicatedPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    reaper: Reaper,
}

impl DedicatedPostgres {
    /// Starts one, or `None` (printing why) when none can be started and Postgres is not
    /// required.
    pub fn start() -> Option<DedicatedPostgres> {
        or_skip(Server::Postgres, Self::try_start())
    }

    fn try_start() -> Result<DedicatedPostgres, String> {
        let bin = find_bin_dir().ok_or("initdb/postgres not found (apt-get install postgresql)")?;
        let user = server_user()?;
        let dir = init_data_dir(&bin, user)?;
        let reaper = Reaper::spawn(&dir)?;
        let mut server = DedicatedPostgres {
            bin,
            dir,
            port: free_port()?,
            user,
            child: None,
            reaper,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .map_err(|e| e.to_string())?;
        let child = as_user(&mut Command::new(self.bin.join("postgres")), self.user)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        self.reaper.record(child.id());
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                return Err(format!("postgres exited at start: {}", self.log()));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("postgres did not become ready: {}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The superuser URL.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL of the app role (created by the migrations) with a password the server
    /// ignores (trust auth), so tests can check it never leaks.
    pub fn app_url(&self, password: &str) -> String {
        format!(
            "postgres://persistence_app:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the server (`mode`: `fast` = SIGINT, `immediate` = SIGQUIT) and starts it
    /// again on the same port and data.
    ///
    /// # Panics
    /// When the server does not come back.
    pub fn restart(&mut self, mode: &str) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), if mode == "immediate" { "QUIT" } else { "INT" });
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("data").join("postmaster.pid"));
        self.spawn().expect("postgres restarts");
    }
}

impl Drop for DedicatedPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server owned by one test, started with the given extra arguments.
pub struct DedicatedRedis {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    reaper: Reaper,
}

impl DedicatedRedis {
    /// Starts one with `args` (e.g. `["--appendonly", "no", "--save", ""]`), or `None`
    /// (printing why) when none can be started and Redis is not required.
    pub fn start(args: &[&str]) -> Option<DedicatedRedis> {
        or_skip(Server::Redis, Self::try_start(args))
    }

    fn try_start(args: &[&str]) -> Result<DedicatedRedis, String> {
        let dir = tempfile::Builder::new()
            .prefix("persistence-redis-dedicated-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let reaper = Reaper::spawn(&dir)?;
        let mut server = DedicatedRedis {
            dir,
            port: free_port()?,
            args: args.iter().map(|a| (*a).to_string()).collect(),
            child: None,
            reaper,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("server.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (apt-get install redis-server): {e}")
            })?;
        self.reaper.record(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let ours = self.dir.to_string_lossy().into_owned();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                return Err("redis-server exited at start".into());
            }
            // LOADING replies count as up: the server is ours and answering.
            if self
                .config_dir()
                .is_some_and(|r| r.contains(&ours) || r.contains("LOADING"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer".into())
    }

    /// The reply to `CONFIG GET dir`, after `AUTH` when the server was started with
    /// `--requirepass`.
    fn config_dir(&self) -> Option<String> {
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1));
        let Some(password) = password else {
            return command(self.port, "CONFIG GET dir");
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        // RESP arrays, so the password needs no quoting.
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        stream.write_all(auth.as_bytes()).ok()?;
        stream.write_all(b"CONFIG GET dir\r\n").ok()?;
        let mut reply = String::new();
        let mut buf = [0u8; 4096];
        for _ in 0..4 {
            let n = stream.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
            if reply.matches("\r\n").count() >= 6 || reply.contains("LOADING") {
                break;
            }
        }
        Some(reply)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL) and leaves it down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Kills the server (SIGKILL: nothing is saved on the way out) and starts it again on
    /// the same port and dir, with what its persistence settings kept.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        self.spawn().expect("redis restarts");
    }
}

impl Drop for DedicatedRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
