//! A thread's `.latest` pointer: the id of its greatest checkpoint, kept so that
//! `get(Latest)` and `put` read one small file instead of the directory.

use std::path::Path;

use persistence_core::{CheckpointId, Result};

use super::{CHECKPOINTS, LATEST};
use crate::Inner;
use crate::error::IoContext;
use crate::files;

impl Inner {
    /// The greatest checkpoint id, from the `.latest` pointer when it names a checkpoint
    /// that exists, else from a scan of the directory.
    ///
    /// The pointer never lags: `put` replaces it (atomically, not fsynced) *before* it
    /// writes a greater checkpoint. A process crash keeps it (the page cache). What a
    /// power loss does to it is mended before anything is read: a journal with records
    /// is replayed, pointing it anew, and an empty journal was emptied after a `syncfs`
    /// that persisted it (a put without a journal persists it with the directory fsync
    /// of its checkpoint file). It may name a checkpoint whose write failed (then the
    /// scan answers) or hold garbage (the scan again).
    pub(super) fn latest_id(&self, dir: &Path) -> Result<Option<CheckpointId>> {
        if let Some(id) = self.latest_pointer(dir)
            && dir.join(CHECKPOINTS).join(id.to_string()).is_file()
        {
            return Ok(Some(id));
        }
        self.scan_latest_id(dir)
    }

    /// The id `.latest` names: the content of a regular file, or a symbolic link's target
    /// (as format 5 wrote it; never followed).
    pub(super) fn latest_pointer(&self, dir: &Path) -> Option<CheckpointId> {
        use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
        let path = dir.join(CHECKPOINTS).join(LATEST);
        // Opened without following a link (a link swapped in meanwhile is refused, never
        // read through); ELOOP: a link, whose target is read instead.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path);
        let text = match opened {
            Ok(file) => {
                // An id and a newline at most; anything longer is not an id.
                let mut buf = [0u8; 64];
                let n = file.read_at(&mut buf, 0).ok()?;
                String::from_utf8(buf.get(..n)?.to_vec()).ok()?
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                std::fs::read_link(&path)
                    .ok()?
                    .into_os_string()
                    .into_string()
                    .ok()?
            }
            Err(_) => return None,
        };
        text.trim().parse().ok()
    }

    /// Points `.latest` at `id`. Caller holds the thread lock.
    ///
    /// A regular file overwritten in place, one `pwrite` of the id (ids all have the same
    /// length): no new inode and no rename. Creating a file (a temp file, or the symbolic
    /// link of format 5) costs more than a flush on some file systems, and ext4 flushes
    /// a regular file renamed over another. A reader racing the write may read a mix of
    /// two ids, which names no checkpoint: then the directory scan answers. A link found
    /// here (format 5's, or one planted) is removed first, never written through.
    pub(super) fn set_latest_pointer(&self, dir: &Path, id: CheckpointId) -> Result<()> {
        use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
        let cdir = dir.join(CHECKPOINTS);
        let path = cdir.join(LATEST);
        files::ensure_dir(&cdir, self.durability).at(&cdir)?;
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(self.durability.file_mode)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
        };
        let file = match open() {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                std::fs::remove_file(&path).at(&path)?;
                open().at(&path)?
            }
            Err(e) => return Err(crate::error::io_error(&path, e)),
        };
        let text = id.to_string();
        file.write_all_at(text.as_bytes(), 0).at(&path)?;
        if file.metadata().at(&path)?.len() > text.len() as u64 {
            file.set_len(text.len() as u64).at(&path)?;
        }
        Ok(())
    }

    /// The greatest checkpoint id by listing the directory: the greatest file name
    /// (hyphenated UUIDs sort like the UUIDs), parsed alone.
    pub(super) fn scan_latest_id(&self, dir: &Path) -> Result<Option<CheckpointId>> {
        let cdir = dir.join(CHECKPOINTS);
        let entries = match std::fs::read_dir(&cdir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::io_error(&cdir, e)),
        };
        let mut latest: Option<CheckpointId> = None;
        for entry in entries {
            let name = entry.at(&cdir)?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(id) = name.parse::<CheckpointId>() else {
                continue;
            };
            if latest.is_none_or(|l| id > l) {
                latest = Some(id);
            }
        }
        Ok(latest)
    }
}
