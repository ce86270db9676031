//! A throwaway PgBouncer in transaction pooling mode in front of a Postgres server, for
//! running the suite the way many deployments connect. A watchdog shell stops it and
//! deletes its directory once the test process is gone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::postgres::{as_user, server_user};
use super::{REQUIRE_VAR, START_ATTEMPTS, Server, free_port, is_required};

/// Server connections PgBouncer keeps per database and user: few, so that consecutive
/// transactions of one client land on different server connections.
pub const POOL_SIZE: u32 = 3;

/// The port of a PgBouncer (one per test process) in transaction mode in front of the
/// Postgres server at `host:port`, or `None` after printing why (panicking instead
/// when `PERSISTENCE_TEST_REQUIRE` names postgres).
pub fn pgbouncer_port(host: &str, port: u16) -> Option<u16> {
    static STARTED: OnceLock<Result<u16, String>> = OnceLock::new();
    match STARTED.get_or_init(|| start(host, port)).clone() {
        Ok(port) => Some(port),
        Err(why) => {
            let spec = std::env::var(REQUIRE_VAR).unwrap_or_default();
            if is_required(&spec, Server::Postgres) {
                panic!("a PgBouncer is required with postgres ({REQUIRE_VAR}={spec}) but: {why}");
            }
            eprintln!("SKIPPED: no PgBouncer: {why}");
            None
        }
    }
}

fn find_pgbouncer() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let sbin = Path::new("/usr/sbin/pgbouncer");
        sbin.is_file().then(|| sbin.to_path_buf())
    })
}

fn start(host: &str, pg_port: u16) -> Result<u16, String> {
    let bin = find_pgbouncer().ok_or("pgbouncer not found (apt-get install pgbouncer)")?;
    let user = server_user()?;
    let dir = tempfile::Builder::new()
        .prefix("persistence-pg-bouncer-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    std::fs::write(
        dir.join("users.txt"),
        "\"postgres\" \"\"\n\"persistence_app\" \"\"\n",
    )
    .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let config = format!(
            "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\nmax_client_conn = 1000\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n",
            dir = dir.display()
        );
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            for f in ["pgbouncer.ini", "users.txt"] {
                let _ = std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid));
            }
        }
        match spawn_watched(&bin, &ini, &dir, port, user) {
            Ok(()) => return Ok(port),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn spawn_watched(
    bin: &Path,
    ini: &Path,
    dir: &Path,
    port: u16,
    user: Option<(u32, u32)>,
) -> Result<(), String> {
    const SCRIPT: &str = r#"
"$PGB_BIN" "$PGB_INI" >"$PGB_DIR/stdout.log" 2>&1 &
pb=$!
while [ -d "/proc/$PARENT" ] && kill -0 "$pb" 2>/dev/null; do sleep 0.2; done
kill -TERM "$pb" 2>/dev/null
sleep 0.2
kill -KILL "$pb" 2>/dev/null
[ -d "/proc/$PARENT" ] || rm -rf "$PGB_DIR"
"#;
    let mut watchdog = as_user(&mut Command::new("sh"), user)
        .args(["-c", SCRIPT])
        .env("PGB_BIN", bin)
        .env("PGB_INI", ini)
        .env("PGB_DIR", dir)
        .env("PARENT", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start pgbouncer: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if watchdog.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            return Err(format!("pgbouncer exited at start on port {port}: {log}"));
        }
        let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
        if log.contains("process up") && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("pgbouncer did not start on port {port}"))
}
