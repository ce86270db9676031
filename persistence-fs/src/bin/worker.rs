//! Helper process for the crash and multi-process tests of `persistence-fs` (not a user
//! tool). Prints one line per acknowledged write, flushed before the next write starts,
//! so a parent that kills it knows exactly what was acknowledged.
//!
//! ```text
//! persistence-fs-worker crash-loop ROOT            append + checkpoint + CAS item put
//!                                                  until killed
//! persistence-fs-worker append ROOT SESSION N      N single-event appends
//! persistence-fs-worker lock-cycles ROOT N FILE    N lock cycles incrementing FILE
//! persistence-fs-worker hold ROOT LOCK SECONDS      take LOCK (tenant `t`), print
//!                                                  `held FENCE`, keep it SECONDS
//! persistence-fs-worker try ROOT LOCK              print `acquired` or `refused`
//! persistence-fs-worker create ROOT FROM           new session, thread and item
//!                                                  `name(i)` for i = FROM.., each
//!                                                  printing `created i`, until killed
//! ```

use std::io::Write as _;
use std::time::Duration;

use persistence_core::{
    AppendOptions, CheckpointId, Checkpointer, Envelope, ItemKey, Lock, LockKey, LockOptions,
    Namespace, NewCheckpoint, SessionKey, SessionLog, Store, TenantId, ThreadKey,
};
use persistence_fs::{FsBackend, FsConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| fail(e));
    let outcome = runtime.block_on(async {
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["crash-loop", root] => crash_loop(root).await,
            ["append", root, session, n] => append(root, session, n.parse().unwrap_or(0)).await,
            ["lock-cycles", root, n, file] => lock_cycles(root, n.parse().unwrap_or(0), file).await,
            ["hold", root, name, secs] => hold(root, name, secs.parse().unwrap_or(0)).await,
            ["try", root, name] => try_once(root, name).await,
            ["create", root, from] => create(root, from.parse().unwrap_or(0)).await,
            _ => Err(persistence_core::Error::invalid_input(format!(
                "usage: see source; got {args:?}"
            ))),
        }
    });
    if let Err(e) = outcome {
        fail(e);
    }
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("worker: {e}");
    std::process::exit(1)
}

fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    // A parent that stopped reading is no reason to stop writing data.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn crash_loop(root: &str) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let tenant = TenantId::new("crash")?;
    let session = SessionKey::new("log")?;
    let thread = ThreadKey::new("run")?;
    let (ns, key) = (Namespace::new(["crash"])?, ItemKey::new("counter")?);
    let mut version = Store::get(&backend, &tenant, &ns, &key)
        .await?
        .map_or(0, |item| item.version);
    for i in 0u64.. {
        let batch = (0..1 + i % 3)
            .map(|j| Envelope::new(1, serde_json::json!({"i": i, "j": j})))
            .collect();
        let head = backend
            .append(&tenant, &session, batch, AppendOptions::default())
            .await?;
        ack(format!("append {head}"));
        let checkpoint = NewCheckpoint::new(
            CheckpointId::new(),
            i as i64,
            Envelope::new(1, serde_json::json!({"i": i, "pad": "x".repeat(512)})),
        );
        let id = checkpoint.id;
        Checkpointer::put(&backend, &tenant, &thread, checkpoint, Default::default()).await?;
        ack(format!("checkpoint {id}"));
        // Each version's value names it (padded, so the item file is rewritten every few
        // dozen puts): a value read at another version is a lost or torn write.
        let value = serde_json::json!({"version": version + 1, "pad": "x".repeat(400)});
        let options = persistence_core::PutItemOptions::default().with_if_version(version);
        version = Store::put(
            &backend,
            &tenant,
            &ns,
            &key,
            Envelope::new(1, value),
            options,
        )
        .await?;
        ack(format!("item {version}"));
    }
    Ok(())
}

async fn append(root: &str, session: &str, n: u64) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let (tenant, session) = (TenantId::new("multi")?, SessionKey::new(session)?);
    for _ in 0..n {
        let head = backend
            .append(
                &tenant,
                &session,
                vec![Envelope::new(1, serde_json::json!(std::process::id()))],
                AppendOptions::default(),
            )
            .await?;
        ack(format!("append {head}"));
    }
    Ok(())
}

async fn lock_cycles(root: &str, n: u64, file: &str) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let (tenant, name) = (TenantId::new("multi")?, LockKey::new("counter")?);
    let options = LockOptions::default()
        .with_ttl(Duration::from_secs(30))
        .with_wait(Duration::from_secs(120));
    let io = |e: std::io::Error| persistence_core::Error::backend_error(e.to_string());
    for _ in 0..n {
        let lease = backend.acquire(&tenant, &name, options).await?;
        let current: u64 = std::fs::read_to_string(file)
            .map_err(io)?
            .trim()
            .parse()
            .unwrap_or(0);
        std::fs::write(file, (current + 1).to_string()).map_err(io)?;
        ack(format!("fence {}", lease.fence.0));
        backend.release(&lease).await?;
    }
    Ok(())
}

async fn hold(root: &str, name: &str, secs: u64) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let (t, name) = (TenantId::new("t")?, LockKey::new(name)?);
    let lease = backend
        .try_acquire(&t, &name, Duration::from_secs(60))
        .await?
        .ok_or_else(|| persistence_core::Error::conflict("the lock is held"))?;
    ack(format!("held {}", lease.fence.0));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

async fn try_once(root: &str, name: &str) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let (t, name) = (TenantId::new("t")?, LockKey::new(name)?);
    match backend
        .try_acquire(&t, &name, Duration::from_secs(60))
        .await?
    {
        Some(_) => ack("acquired".into()),
        None => ack("refused".into()),
    }
    Ok(())
}

/// The id of the `i`-th entry `create` makes: long (so the catalogs' journals fill and
/// are folded every 128 creations; stored under hashed names) and in creation order.
fn created_name(i: u64) -> String {
    format!("{i:06}-{}", "n".repeat(490))
}

async fn create(root: &str, from: u64) -> persistence_core::Result<()> {
    let backend = FsBackend::open(FsConfig::new(root))?;
    let tenant = TenantId::new("create")?;
    let ns = Namespace::new(["ns"])?;
    for i in from.. {
        let name = created_name(i);
        SessionLog::append(
            &backend,
            &tenant,
            &SessionKey::new(name.clone())?,
            vec![Envelope::new(1, serde_json::json!(i))],
            AppendOptions::default(),
        )
        .await?;
        let checkpoint = NewCheckpoint::new(
            CheckpointId::new(),
            0,
            Envelope::new(1, serde_json::json!(i)),
        );
        let thread = ThreadKey::new(name.clone())?;
        Checkpointer::put(&backend, &tenant, &thread, checkpoint, Default::default()).await?;
        Store::put(
            &backend,
            &tenant,
            &ns,
            &ItemKey::new(name)?,
            Envelope::new(1, serde_json::json!(i)),
            Default::default(),
        )
        .await?;
        ack(format!("created {i}"));
    }
    Ok(())
}
