//! Helpers shared by this crate's integration tests.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses some of them

use persistence_core::{
    AppendOptions, CheckpointId, Checkpointer, Cursor, Envelope, ListItems, ListSessions,
    ListThreads, Namespace, NewCheckpoint, Page, SessionKey, SessionLog, Store, TenantId,
    ThreadKey,
};
use persistence_fs::FsBackend;

/// A new checkpoint (fresh id) with `state`.
pub fn checkpoint(
    parent: Option<CheckpointId>,
    step: i64,
    state: serde_json::Value,
) -> NewCheckpoint {
    NewCheckpoint::new(Default::default(), step, Envelope::new(1, state)).with_parent(parent)
}

/// Puts an empty first checkpoint on `th` and returns its id.
pub async fn first_checkpoint(backend: &FsBackend, t: &TenantId, th: &ThreadKey) -> CheckpointId {
    let c = checkpoint(None, 0, serde_json::json!({}));
    let id = c.id;
    Checkpointer::put(backend, t, th, c, Default::default())
        .await
        .unwrap();
    id
}

/// Tenant `t`, session `s`, holding one event.
pub async fn one_event_session(backend: &FsBackend) -> (TenantId, SessionKey) {
    let (t, s) = (TenantId::new("t").unwrap(), SessionKey::new("s").unwrap());
    backend
        .append(
            &t,
            &s,
            vec![Envelope::new(1, serde_json::json!(1))],
            AppendOptions::default(),
        )
        .await
        .unwrap();
    (t, s)
}

/// Every item of a listing, page after page (`page` lists from a cursor).
pub async fn every_page<T>(mut page: impl AsyncFnMut(Option<Cursor>) -> Page<T>) -> Vec<T> {
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let p = page(cursor).await;
        out.extend(p.items);
        cursor = p.next;
        if cursor.is_none() {
            return out;
        }
    }
}

/// The ids `list_sessions`, `list_threads` and `Store::list` of `ns` show for `t`,
/// paging `limit` at a time.
pub async fn every_listed_id(
    backend: &FsBackend,
    t: &TenantId,
    ns: &Namespace,
    limit: usize,
) -> [Vec<String>; 3] {
    let sessions = every_page(async |c| {
        backend
            .list_sessions(t, ListSessions::default().with_cursor(c).with_limit(limit))
            .await
            .unwrap()
    })
    .await;
    let threads = every_page(async |c| {
        backend
            .list_threads(t, ListThreads::default().with_cursor(c).with_limit(limit))
            .await
            .unwrap()
    })
    .await;
    let items = every_page(async |cursor| {
        let query = ListItems::default().with_cursor(cursor).with_limit(limit);
        Store::list(backend, t, ns, query).await.unwrap()
    })
    .await;
    [
        sessions.iter().map(|k| k.as_str().to_owned()).collect(),
        threads.iter().map(|k| k.as_str().to_owned()).collect(),
        items.iter().map(|i| i.key.as_str().to_owned()).collect(),
    ]
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop; `None` (printed)
/// where this process cannot mount.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mut mount = std::process::Command::new("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path());
        run_or_skip(mount, "mount a tmpfs (needs root)").then_some(SmallDisk { dir })
    }
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Runs `command`; on failure prints `SKIP: cannot {what}` with its error and returns
/// false.
fn run_or_skip(mut command: std::process::Command, what: &str) -> bool {
    match command.output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIP: cannot {what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIP: cannot {what}: {e}");
            false
        }
    }
}

/// A small ext4 file system on a loop device of its own, mounted at a fresh directory
/// and unmounted on drop: a disk whose flush counter only this test moves. `None`
/// (printed) where this process cannot make or mount one.
pub struct LoopExt4 {
    mount: tempfile::TempDir,
    _image: tempfile::TempDir,
}

impl LoopExt4 {
    pub fn mount() -> Option<LoopExt4> {
        let image_dir = tempfile::tempdir().ok()?;
        let image = image_dir.path().join("disk.img");
        std::fs::File::create(&image).ok()?.set_len(64 << 20).ok()?;
        let mut mkfs = std::process::Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F"]).arg(&image);
        if !run_or_skip(mkfs, "make an ext4 file system (e2fsprogs)") {
            return None;
        }
        let mount = tempfile::tempdir().ok()?;
        let mut loop_mount = std::process::Command::new("mount");
        loop_mount
            .args(["-o", "loop"])
            .arg(&image)
            .arg(mount.path());
        run_or_skip(loop_mount, "mount a loop device (needs root)").then_some(LoopExt4 {
            mount,
            _image: image_dir,
        })
    }
    pub fn path(&self) -> &std::path::Path {
        self.mount.path()
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.mount.path())
            .status();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the disk with a file until writes fail, then frees 8 KiB, so a batch of
/// several 3 KB records starts to land and then fails part way (a short write and
/// `ENOSPC`). Returns the file, to free the rest.
pub fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(8192)).unwrap();
    path
}
