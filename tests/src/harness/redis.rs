//! Throwaway Redis servers for tests: a single node, and a 3-master cluster joined with
//! `redis-cli --cluster create`, on free loopback ports in a temp dir. A watchdog shell per
//! server stops it and deletes its directory once the test process is gone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Launcher, START_ATTEMPTS, Server, free_port};

/// Starts one local Redis (or one local cluster) per test process, on first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRedis;

impl Launcher for LocalRedis {
    fn launch(&self, server: Server) -> Result<String, String> {
        static SINGLE: OnceLock<Result<String, String>> = OnceLock::new();
        static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();
        match server {
            Server::Redis => SINGLE.get_or_init(start_single).clone(),
            Server::RedisCluster => CLUSTER.get_or_init(start_cluster).clone(),
            Server::Postgres => Err("LocalRedis cannot start postgres".into()),
        }
    }
}

fn redis_server() -> Result<(), String> {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("redis-server not found on PATH (apt-get install redis-server)".into())
    }
}

/// Sends one inline command and returns the reply's first chunk.
pub fn command(port: u16, cmd: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Starts a watched `redis-server` in a fresh temp dir on a free port, retrying on
/// another port when it does not come up (e.g. a concurrent test process took the port).
/// Returns the port.
fn start_server(label: &str, extra: &[&str]) -> Result<u16, String> {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let dir = temp_dir(label)?;
        let port = free_port()?;
        match spawn_watched(&dir, port, extra) {
            Ok(()) => return Ok(port),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn spawn_watched(dir: &Path, port: u16, extra: &[&str]) -> Result<(), String> {
    const SCRIPT: &str = r#"
redis-server --port "$R_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$R_DIR" \
    --logfile "$R_DIR/server-$R_PORT.log" $R_EXTRA &
rs=$!
while [ -d "/proc/$PARENT" ] && kill -0 "$rs" 2>/dev/null; do sleep 0.2; done
kill -TERM "$rs" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$rs" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$rs" 2>/dev/null
wait "$rs"
rm -rf "$R_DIR"
"#;
    let mut watchdog = Command::new("sh")
        .args(["-c", SCRIPT])
        .env("R_DIR", dir)
        .env("R_PORT", port.to_string())
        .env("R_EXTRA", extra.join(" "))
        .env("PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let ours = dir.to_string_lossy().into_owned();
    while Instant::now() < deadline {
        // The watchdog exits as soon as its server does (a port taken, say).
        if watchdog.try_wait().ok().flatten().is_some() {
            return Err(format!("redis-server on port {port} exited at start"));
        }
        // Answering is not enough: it must be our server, not another process's.
        if command(port, "CONFIG GET dir").is_some_and(|r| r.contains(&ours)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = watchdog.kill();
    Err(format!("redis-server on port {port} did not answer PING"))
}

/// A fresh server directory, on `/dev/shm` where it exists: a cluster node rewrites and
/// fsyncs `nodes.conf` on every configuration change, and on a busy disk (parallel Postgres
/// tests) one such fsync stalls the single-threaded server for seconds, long enough for a
/// client's 5 s response timeout. The tests are about our client, not the test host's disk.
fn temp_dir(label: &str) -> Result<std::path::PathBuf, String> {
    let mut builder = tempfile::Builder::new();
    let prefix = format!("persistence-redis-{label}-");
    builder.prefix(&prefix);
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        builder.tempdir_in(shm).or_else(|_| builder.tempdir())
    } else {
        builder.tempdir()
    };
    Ok(dir.map_err(|e| e.to_string())?.keep())
}

fn start_single() -> Result<String, String> {
    redis_server()?;
    let port = start_server("single", &[])?;
    Ok(format!("redis://127.0.0.1:{port}"))
}

fn start_cluster() -> Result<String, String> {
    redis_server()?;
    let mut ports = Vec::new();
    for _ in 0..3 {
        // Each node has its own directory, so one config file name serves all.
        let port = start_server(
            "cluster",
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ],
        )?;
        ports.push(port);
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ports
            .iter()
            .all(|p| command(*p, "CLUSTER INFO").is_some_and(|r| r.contains("cluster_state:ok")))
        {
            return Ok(format!("redis+cluster://{}", nodes.join(",")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the local cluster did not reach cluster_state:ok".into())
}
