//! Deleting old checkpoints: what `prune` and `prune_through` share.

use std::path::Path;

use persistence_core::{CheckpointId, Result, TenantId, ThreadKey};

use super::{CHECKPOINTS, WRITES};
use crate::Inner;
use crate::config::Durability;
use crate::error::IoContext;
use crate::files::{self, FileLock};

impl Inner {
    /// Removes checkpoints and their writes from a thread's directory (the caller holds
    /// the thread lock and compacted the journal). Returns how many.
    pub(super) fn remove_checkpoints(&self, dir: &Path, ids: &[CheckpointId]) -> Result<u64> {
        for id in ids {
            for sub in [WRITES, CHECKPOINTS] {
                let path = dir.join(sub).join(id.to_string());
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(crate::error::io_error(&path, e)),
                }
            }
        }
        if !ids.is_empty() && self.durability == Durability::Fsync {
            let cdir = dir.join(CHECKPOINTS);
            files::sync_dir(&cdir).at(&cdir)?;
        }
        Ok(ids.len() as u64)
    }

    /// Deletes the thread's checkpoints with ids up to `through` under the thread's lock
    /// (a put waits for it), the journal emptied first; a thread left with none goes.
    pub(super) fn prune_through(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        through: CheckpointId,
    ) -> Result<u64> {
        let (lock, _) = self.layout.thread_guards(t, th);
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        let dir = self.inside(self.layout.thread(t, th))?;
        self.inside(dir.join(CHECKPOINTS))?;
        if let Some(mut journal) = self.open_journal(&dir, false)? {
            journal.compact(self.durability)?;
            journal.finish(self.durability)?;
        }
        let ids = self.checkpoint_ids(&dir)?;
        let doomed = ids.partition_point(|id| *id <= through);
        let removed = self.remove_checkpoints(&dir, &ids[..doomed])?;
        if doomed == ids.len() && doomed > 0 {
            // Nothing left: the thread goes, as with delete_thread.
            files::remove_dir_atomic(&dir, self.durability).at(&dir)?;
            self.thread_catalog(t)?.remove(th.as_str());
        }
        Ok(removed)
    }
}
