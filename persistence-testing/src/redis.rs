//! Throwaway Redis servers for tests: a single node, and a 3-master cluster joined with
//! `redis-cli --cluster create`, on free loopback ports in a temp dir. A watchdog shell per
//! server stops it and deletes its directory once the test process is gone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::tls::TlsFiles;
use super::{Launcher, START_ATTEMPTS, Server, free_port};

/// Starts one local Redis (or one local cluster) per test process, on first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRedis;

impl Launcher for LocalRedis {
    fn launch(&self, server: Server) -> Result<String, String> {
        static SINGLE: OnceLock<Result<String, String>> = OnceLock::new();
        static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();
        static SINGLE_TLS: OnceLock<Result<String, String>> = OnceLock::new();
        static CLUSTER_TLS: OnceLock<Result<String, String>> = OnceLock::new();
        match server {
            Server::Redis => SINGLE.get_or_init(start_single).clone(),
            Server::RedisCluster => CLUSTER.get_or_init(|| start_cluster(false)).clone(),
            Server::RedisTls => SINGLE_TLS.get_or_init(start_single_tls).clone(),
            Server::RedisClusterTls => CLUSTER_TLS.get_or_init(|| start_cluster(true)).clone(),
            Server::Postgres | Server::PostgresTls => {
                Err(format!("LocalRedis cannot start {server}"))
            }
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

/// A started server: its plaintext port (the harness's own checks use it) and, for a TLS
/// server, its TLS port and certificate files.
struct Started {
    port: u16,
    tls: Option<(u16, TlsFiles)>,
}

/// Where a TLS server takes its certificates from.
enum TlsSetup<'a> {
    /// Plaintext only.
    Off,
    /// Generate new files into the server's directory.
    Generate,
    /// Use these (the other nodes of a cluster).
    Files(&'a TlsFiles),
}

/// Starts a watched `redis-server` in a fresh temp dir on a free port, retrying on
/// another port when it does not come up (e.g. a concurrent test process took the port).
/// A TLS server also listens on a TLS port and requires a client certificate signed by
/// the test CA (`tls-auth-clients yes`).
fn start_server(label: &str, extra: &[&str], tls: TlsSetup<'_>) -> Result<Started, String> {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let dir = temp_dir(label)?;
        let port = free_port()?;
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_string()).collect();
        let tls = match &tls {
            TlsSetup::Off => None,
            TlsSetup::Generate => Some((free_port()?, super::tls::generate(&dir, None)?)),
            TlsSetup::Files(files) => Some((free_port()?, (*files).clone())),
        };
        if let Some((tls_port, files)) = &tls {
            for (flag, value) in [
                ("--tls-port", tls_port.to_string()),
                ("--tls-cert-file", files.server_cert.display().to_string()),
                ("--tls-key-file", files.server_key.display().to_string()),
                ("--tls-ca-cert-file", files.ca.display().to_string()),
                ("--tls-auth-clients", "yes".into()),
            ] {
                args.push(flag.into());
                args.push(value);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match spawn_watched(&dir, port, &args) {
            Ok(()) => return Ok(Started { port, tls }),
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

/// The output of `child`, killed if it has not exited within `limit`.
fn wait_with_deadline(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<std::process::Output, String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Err(format!(
        "did not finish within {limit:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    ))
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
    let started = start_server("single", &[], TlsSetup::Off)?;
    Ok(format!("redis://127.0.0.1:{}", started.port))
}

fn start_single_tls() -> Result<String, String> {
    redis_server()?;
    let started = start_server("single-tls", &[], TlsSetup::Generate)?;
    let (tls_port, files) = started.tls.ok_or("TLS server without TLS port")?;
    Ok(format!(
        "rediss://127.0.0.1:{tls_port}/?{}",
        files.mutual_query()
    ))
}

/// A 3-master cluster; with `tls`, clients and the cluster bus speak TLS only
/// (`tls-cluster yes`), and the URL names the nodes' TLS ports.
fn start_cluster(tls: bool) -> Result<String, String> {
    redis_server()?;
    let mut nodes: Vec<Started> = Vec::new();
    let mut extra = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    ];
    if tls {
        extra.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
    }
    let mut files: Option<TlsFiles> = None;
    for _ in 0..3 {
        // Each node has its own directory, so one config file name serves all.
        let setup = match (&files, tls) {
            (_, false) => TlsSetup::Off,
            (None, true) => TlsSetup::Generate,
            (Some(files), true) => TlsSetup::Files(files),
        };
        let started = start_server("cluster", &extra, setup)?;
        if let Some((_, made)) = &started.tls {
            files.get_or_insert_with(|| made.clone());
        }
        nodes.push(started);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    // Clients reach the nodes on their TLS ports when there are some.
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.tls.as_ref().map_or(n.port, |(p, _)| *p)))
        .collect();
    let mut create = Command::new("redis-cli");
    if let Some(files) = &files {
        create.arg("--tls").arg("--cacert").arg(&files.ca);
        create.arg("--cert").arg(&files.client_cert);
        create.arg("--key").arg(&files.client_key);
    }
    // `redis-cli --cluster create` waits for the nodes to join without a limit.
    let out = create
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    let out = wait_with_deadline(out, Duration::from_secs(60))
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
            return Ok(match &files {
                None => format!("redis+cluster://{}", addrs.join(",")),
                Some(files) => format!(
                    "rediss+cluster://{}/?{}",
                    addrs.join(","),
                    files.mutual_query()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the local cluster did not reach cluster_state:ok".into())
}
