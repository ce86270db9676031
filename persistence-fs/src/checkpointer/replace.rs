//! Replacing a stored payload in place, compared with what was read
//! (`Checkpointer::replace_payload`): what re-encrypting stored rows needs.

use std::path::Path;

use persistence_core::{
    CheckpointId, CheckpointPayload, Envelope, PendingWrite, Result, TaskId, TenantId, ThreadKey,
};

use super::{CHECKPOINTS, StoredCheckpoint, WRITES};
use crate::Inner;
use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::records;

impl Inner {
    /// Under the thread's lock (so no put, prune or copy runs meanwhile), with the
    /// journal emptied first (a later replay must not bring the old payload back):
    /// rewrites the checkpoint file, or the checkpoint's write log, with the payload
    /// replaced, if it is `expected`. Each file is replaced whole by a rename.
    pub(super) fn replace_payload(
        &self,
        t: &TenantId,
        th: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let dir = self.inside(self.layout.thread(t, th))?;
        let cdir = self.inside(dir.join(CHECKPOINTS))?;
        if !cdir.exists() {
            return Ok(false);
        }
        let (lock, _) = self.layout.thread_guards(t, th);
        let _guard = FileLock::exclusive(&lock, self.durability).at(&lock)?;
        if let Some(mut journal) = self.open_journal(&dir, false)? {
            journal.compact(self.durability)?;
            journal.finish(self.durability)?;
        }
        match payload {
            CheckpointPayload::State(id) => self.replace_state(&dir, *id, expected, new),
            CheckpointPayload::Write {
                checkpoint,
                task,
                index,
            } => self.replace_write(&dir, *checkpoint, task, *index, expected, new),
            _ => Ok(false),
        }
    }

    fn replace_state(
        &self,
        dir: &Path,
        id: CheckpointId,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let path = dir.join(CHECKPOINTS).join(id.to_string());
        let Some(bytes) = files::read_optional(&path).at(&path)? else {
            return Ok(false);
        };
        let mut stored: StoredCheckpoint =
            crate::payload_record::decode(&bytes).map_err(|e| corrupt(&path, e))?;
        if stored.state != *expected {
            return Ok(false);
        }
        stored.state = new;
        let bytes = crate::payload_record::encode(&mut stored)?;
        files::write_atomic(&path, &bytes, self.durability).at(&path)?;
        Ok(true)
    }

    fn replace_write(
        &self,
        dir: &Path,
        id: CheckpointId,
        task: &TaskId,
        index: u32,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        let path = dir.join(WRITES).join(id.to_string());
        if !path.exists() {
            return Ok(false);
        }
        // Cuts a torn batch left by a crash, as an append under the lock does.
        let stored = records::read_all(&path, true)
            .at(&path)?
            .map_err(|offset| corrupt(&path, format!("damaged record at offset {offset}")))?;
        let mut records = Vec::with_capacity(stored.len());
        let mut replaced = false;
        let mut seen = false;
        let mut new = Some(new);
        for bytes in stored {
            let mut write: PendingWrite =
                crate::payload_record::decode(&bytes).map_err(|e| corrupt(&path, e))?;
            // The first record of a (task, index) is the write; later ones are retries
            // a reader skips.
            if !seen && write.task_id == *task && write.index == index {
                seen = true;
                if write.value == *expected
                    && let Some(new) = new.take()
                {
                    write.value = new;
                    replaced = true;
                }
                records.push(crate::payload_record::encode(&mut write)?);
            } else {
                records.push(bytes);
            }
        }
        if !replaced {
            return Ok(false);
        }
        let mut framed = Vec::new();
        records::frame_batch(records.iter().map(Vec::as_slice), &mut framed);
        files::write_atomic(&path, &framed, self.durability).at(&path)?;
        Ok(true)
    }
}
