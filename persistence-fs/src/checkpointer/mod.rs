//! Checkpoints: one JSON file per checkpoint, made durable through the thread's redo
//! journal ([`journal`]), pending writes in a record log per checkpoint, fences in the
//! thread's guard file.

mod journal;
mod latest;
mod put;
mod replace;
mod retention;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use persistence_core::backend::{
    CursorExt, ListCheckpointsExt, PageExt, thread_fence, validate_limit,
};
use persistence_core::{
    Checkpoint, CheckpointId, CheckpointPayload, CheckpointSelector, CheckpointTuple, Checkpointer,
    Cursor, Envelope, Error, Fence, ListCheckpoints, ListThreads, Metadata, NewCheckpoint, Page,
    PendingWrite, PutCheckpointOptions, PutWrites, Result, TenantId, ThreadKey, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Range};
use crate::config::Durability;
use crate::error::{IoContext, corrupt};
use crate::files::{self, FileLock};
use crate::layout::{ID_FILE, decode};
use crate::records;
use crate::{FsBackend, Inner};

pub(crate) use journal::Journals;
use journal::{Journal, cannot_replay};

const CHECKPOINTS: &str = "checkpoints";
/// In a thread's checkpoints directory: the id of its greatest checkpoint, so
/// `get(Latest)` and `put` read one small file instead of the directory (see
/// [`Inner::latest_id`]). Hidden (`.`) so listings skip it.
const LATEST: &str = ".latest";
const WRITES: &str = "writes";

#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    id: CheckpointId,
    parent: Option<CheckpointId>,
    step: i64,
    state: Envelope,
    metadata: Metadata,
    created_at: Timestamp,
}

impl crate::payload_record::PayloadRecord for StoredCheckpoint {
    fn payload_mut(&mut self) -> &mut Envelope {
        &mut self.state
    }
}

impl From<StoredCheckpoint> for Checkpoint {
    fn from(s: StoredCheckpoint) -> Self {
        Checkpoint::from_new(
            NewCheckpoint::new(s.id, s.step, s.state)
                .with_parent(s.parent)
                .with_metadata(s.metadata),
            s.created_at,
        )
    }
}

/// Checks `fence` against the high-water mark in `path`; returns the value to record.
pub(crate) fn check_fence(path: &Path, fence: Option<Fence>) -> Result<Option<u64>> {
    let Some(Fence(presented)) = persistence_core::backend::validate_fence(fence)? else {
        return Ok(None);
    };
    let highest = files::read_counter(path)
        .at(path)?
        .map_err(|m| corrupt(path, m))?;
    if presented < highest {
        return Err(Error::fenced(presented, highest));
    }
    Ok((presented > highest).then_some(presented))
}

/// Records a fence returned by [`check_fence`].
pub(crate) fn record_fence(
    path: &Path,
    raise_to: Option<u64>,
    durability: crate::config::Writes,
) -> Result<()> {
    match raise_to {
        Some(v) => files::write_counter(path, v, durability).at(path),
        None => Ok(()),
    }
}

/// Reads the id stored in an entry directory (for names that do not decode).
pub(crate) fn entry_id(dir: &Path, name: &str) -> Result<Option<String>> {
    if let Some(id) = decode(name) {
        return Ok(Some(id));
    }
    if name.starts_with('=') {
        let path = dir.join(name).join(ID_FILE);
        return Ok(files::read_optional(&path)
            .at(&path)?
            .and_then(|b| String::from_utf8(b).ok()));
    }
    Ok(None)
}

/// Writes the `~id` file of a new entry directory, first noting the id in the catalog
/// `catalog` returns (an entry is never created unlisted; the catalog is opened only
/// for a new entry).
pub(crate) fn ensure_entry(
    dir: &Path,
    id: &str,
    durability: crate::config::Writes,
    catalog: impl FnOnce() -> Result<Option<Catalog>>,
) -> Result<()> {
    let path = dir.join(ID_FILE);
    if !path.exists() {
        if let Some(catalog) = catalog()? {
            catalog.add(id)?;
        }
        files::write_atomic(&path, id.as_bytes(), durability).at(&path)?;
    }
    Ok(())
}

impl Inner {
    /// The thread's directory, once its checkpoint files can be read: a journal left by
    /// another boot of the host is replayed first (under the thread's lock; see
    /// [`journal`]).
    ///
    /// # Errors
    /// `Unavailable` when a replay is due and this process may not write; `Corrupt` for
    /// a link below the root or a damaged journal; I/O errors.
    fn readable_thread(&self, t: &TenantId, th: &ThreadKey) -> Result<PathBuf> {
        let dir = self.inside(self.layout.thread(t, th))?;
        let cdir = self.inside_below(&dir, dir.join(CHECKPOINTS))?;
        if self
            .journals
            .needs_replay(&cdir, self.me.boot_id.as_deref())?
        {
            let (lock, _) = self.layout.thread_guards(t, th);
            let _guard = match FileLock::exclusive(&lock, self.durability) {
                Ok(guard) => guard,
                Err(e) if files::cannot_write(&e) => return Err(cannot_replay(&cdir)),
                Err(e) => return Err(crate::error::io_error(&lock, e)),
            };
            self.open_journal(&dir, false)?;
        }
        Ok(dir)
    }

    /// Opens the thread's journal; the caller holds the thread's lock. Replays or redoes
    /// what the journal holds first, pointing `.latest` anew after a replay. `create`
    /// makes a missing journal (a put that syncs).
    fn open_journal(&self, dir: &Path, create: bool) -> Result<Option<Journal<'_>>> {
        let cdir = dir.join(CHECKPOINTS);
        let repoint = || match self.scan_latest_id(dir)? {
            Some(id) => self.set_latest_pointer(dir, id),
            None => Ok(()),
        };
        self.journals.open(
            &cdir,
            self.me.boot_id.as_deref(),
            self.durability,
            create,
            &repoint,
        )
    }

    fn checkpoint_ids(&self, dir: &Path) -> Result<Vec<CheckpointId>> {
        let cdir = dir.join(CHECKPOINTS);
        let names = files::list_names(&cdir).at(&cdir)?;
        // A name that is not a checkpoint id is not ours (a stray file): skipped.
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn load_checkpoint(&self, dir: &Path, id: CheckpointId) -> Result<Option<Checkpoint>> {
        let path = dir.join(CHECKPOINTS).join(id.to_string());
        match files::read_optional(&path).at(&path)? {
            None => Ok(None),
            Some(bytes) => {
                let stored: StoredCheckpoint =
                    crate::payload_record::decode(&bytes).map_err(|e| corrupt(&path, e))?;
                Ok(Some(stored.into()))
            }
        }
    }

    fn load_writes(&self, dir: &Path, id: CheckpointId) -> Result<Vec<PendingWrite>> {
        let path = dir.join(WRITES).join(id.to_string());
        let records = records::read_all(&path, false)
            .at(&path)?
            .map_err(|offset| corrupt(&path, format!("damaged record at offset {offset}")))?;
        let mut writes = Vec::with_capacity(records.len());
        for r in records {
            let w: PendingWrite =
                crate::payload_record::decode(&r).map_err(|e| corrupt(&path, e))?;
            if !writes
                .iter()
                .any(|x: &PendingWrite| x.task_id == w.task_id && x.index == w.index)
            {
                writes.push(w);
            }
        }
        writes.sort_by(|a, b| (&a.task_id, a.index).cmp(&(&b.task_id, b.index)));
        Ok(writes)
    }

    fn tuple(&self, dir: &Path, c: Checkpoint) -> Result<CheckpointTuple> {
        let pending_writes = self.load_writes(dir, c.id)?;
        Ok(CheckpointTuple::new(c, pending_writes))
    }

    /// The ids of a tenant's threads from a scan of its directory (any order): what its
    /// thread catalog is built from.
    pub(crate) fn thread_names(&self, t: &TenantId) -> Result<Vec<String>> {
        Ok(self
            .thread_ids(t)?
            .iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect())
    }

    fn thread_ids(&self, t: &TenantId) -> Result<Vec<(ThreadKey, PathBuf)>> {
        let dir = self.inside(self.layout.threads(t))?;
        let mut out = Vec::new();
        for name in files::list_dirs(&dir).at(&dir)? {
            let Some(id) = entry_id(&dir, &name)? else {
                continue;
            };
            let Ok(key) = ThreadKey::new(id) else {
                continue;
            };
            out.push((key, dir.join(&name)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn cursor_id<T: std::str::FromStr>(cursor: &Option<Cursor>) -> Result<Option<T>> {
    cursor
        .as_ref()
        .map(|c| c.as_str().parse::<T>().map_err(|_| c.invalid()))
        .transpose()
}

#[async_trait]
impl Checkpointer for FsBackend {
    async fn put(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        checkpoint: NewCheckpoint,
        options: PutCheckpointOptions,
    ) -> Result<Checkpoint> {
        through_codec!(self.checkpointer().put(tenant, thread, checkpoint, options));
        let (t, th) = (tenant.clone(), thread.clone());
        self.run("checkpoint.put", format!("{tenant}/{thread}"), move |i| {
            i.put_checkpoint(&t, &th, checkpoint, options)
        })
        .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        selector: CheckpointSelector,
    ) -> Result<Option<CheckpointTuple>> {
        through_codec!(self.checkpointer().get(tenant, thread, selector));
        let (t, th) = (tenant.clone(), thread.clone());
        self.run("checkpoint.get", format!("{tenant}/{thread}"), move |i| {
            let dir = i.readable_thread(&t, &th)?;
            let id = match selector {
                CheckpointSelector::Id(id) => id,
                CheckpointSelector::Latest => match i.latest_id(&dir)? {
                    Some(id) => id,
                    None => return Ok(None),
                },
            };
            i.load_checkpoint(&dir, id)?
                .map(|c| i.tuple(&dir, c))
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        query: ListCheckpoints,
    ) -> Result<Page<Checkpoint>> {
        through_codec!(self.checkpointer().list(tenant, thread, query));
        let (t, th) = (tenant.clone(), thread.clone());
        self.run("checkpoint.list", format!("{tenant}/{thread}"), move |i| {
            let limit = validate_limit(query.limit)?;
            let upper = query.upper_bound()?;
            let dir = i.readable_thread(&t, &th)?;
            let mut items = Vec::new();
            for id in i.checkpoint_ids(&dir)?.into_iter().rev() {
                if upper.is_some_and(|u| id >= u) {
                    continue;
                }
                let Some(c) = i.load_checkpoint(&dir, id)? else {
                    continue;
                };
                if query.matches(&c.metadata) {
                    items.push(c);
                    if items.len() > limit {
                        break;
                    }
                }
            }
            Ok(Page::from_overfetch(items, limit, |c| {
                Cursor::new(c.id.to_string())
            }))
        })
        .await
    }

    async fn put_writes(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        request: PutWrites,
    ) -> Result<()> {
        through_codec!(self.checkpointer().put_writes(tenant, thread, request));
        let (t, th) = (tenant.clone(), thread.clone());
        let PutWrites {
            checkpoint,
            task,
            writes,
            lease,
            ..
        } = request;
        self.run(
            "checkpoint.put_writes",
            format!("{tenant}/{thread}/{checkpoint}"),
            move |i| {
                let fence = thread_fence(&t, &th, lease.as_ref())?;
                i.put_writes(&t, &th, checkpoint, &task, writes, fence)
            },
        )
        .await
    }

    async fn delete_thread(&self, tenant: &TenantId, thread: &ThreadKey) -> Result<bool> {
        through_codec!(self.checkpointer().delete_thread(tenant, thread));
        let (t, th) = (tenant.clone(), thread.clone());
        self.run(
            "checkpoint.delete_thread",
            format!("{tenant}/{thread}"),
            move |i| {
                let (lock, _) = i.layout.thread_guards(&t, &th);
                let _guard = FileLock::exclusive(&lock, i.durability).at(&lock)?;
                let dir = i.inside(i.layout.thread(&t, &th))?;
                i.inside(dir.join(CHECKPOINTS))?;
                let had = !i.checkpoint_ids(&dir)?.is_empty();
                files::remove_dir_atomic(&dir, i.durability).at(&dir)?;
                i.thread_catalog(&t)?.remove(th.as_str());
                Ok(had)
            },
        )
        .await
    }

    async fn prune(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        keep_latest: usize,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().prune(tenant, thread, keep_latest));
        let (t, th) = (tenant.clone(), thread.clone());
        self.run("checkpoint.prune", format!("{tenant}/{thread}"), move |i| {
            if keep_latest == 0 {
                return Err(Error::invalid_input(
                    "keep_latest must be at least 1; use delete_thread to remove all",
                ));
            }
            let (lock, _) = i.layout.thread_guards(&t, &th);
            let _guard = FileLock::exclusive(&lock, i.durability).at(&lock)?;
            let dir = i.inside(i.layout.thread(&t, &th))?;
            i.inside(dir.join(CHECKPOINTS))?;
            // Emptied first: a replay must never bring back what is pruned below.
            if let Some(mut journal) = i.open_journal(&dir, false)? {
                journal.compact(i.durability)?;
                journal.finish(i.durability)?;
            }
            let ids = i.checkpoint_ids(&dir)?;
            let doomed = ids.len().saturating_sub(keep_latest);
            i.remove_checkpoints(&dir, &ids[..doomed])
        })
        .await
    }

    async fn prune_through(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        through: &CheckpointId,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().prune_through(tenant, thread, through));
        let (t, th, through) = (tenant.clone(), thread.clone(), *through);
        self.run(
            "checkpoint.prune_through",
            format!("{tenant}/{thread}"),
            move |i| i.prune_through(&t, &th, through),
        )
        .await
    }

    async fn copy_thread(
        &self,
        tenant: &TenantId,
        from: &ThreadKey,
        to: &ThreadKey,
    ) -> Result<u64> {
        through_codec!(self.checkpointer().copy_thread(tenant, from, to));
        let (t, from, to) = (tenant.clone(), from.clone(), to.clone());
        self.run(
            "checkpoint.copy_thread",
            format!("{tenant}/{from}->{to}"),
            move |i| {
                let src = i.inside(i.layout.thread(&t, &from))?;
                let dst = i.inside(i.layout.thread(&t, &to))?;
                let (src_lock, _) = i.layout.thread_guards(&t, &from);
                let (dst_lock, _) = i.layout.thread_guards(&t, &to);
                // Lock in path order so two opposite copies cannot deadlock.
                let _first =
                    FileLock::exclusive((&src_lock).min(&dst_lock), i.durability).at(&src_lock)?;
                let _second = if src_lock != dst_lock {
                    Some(
                        FileLock::exclusive((&src_lock).max(&dst_lock), i.durability)
                            .at(&dst_lock)?,
                    )
                } else {
                    None
                };
                i.inside(src.join(CHECKPOINTS))?;
                i.inside(dst.join(CHECKPOINTS))?;
                i.open_journal(&src, false)?;
                i.open_journal(&dst, false)?;
                let ids = i.checkpoint_ids(&src)?;
                if ids.is_empty() {
                    return Err(Error::not_found(format!("thread {from} has no checkpoint")));
                }
                if !i.checkpoint_ids(&dst)?.is_empty() {
                    return Err(Error::conflict(format!("target thread {to} is not empty")));
                }
                // Build the copy beside the target and rename it into place in one step.
                let parent = i.inside(i.layout.threads(&t))?;
                let staging = parent.join(format!(".copy-{}", CheckpointId::new()));
                for sub in [CHECKPOINTS, WRITES] {
                    for name in files::list_names(&src.join(sub)).at(&src)? {
                        let from_path = src.join(sub).join(&name);
                        let Some(bytes) = files::read_optional(&from_path).at(&from_path)? else {
                            continue;
                        };
                        let to_path = staging.join(sub).join(&name);
                        files::write_atomic(&to_path, &bytes, i.durability).at(&to_path)?;
                    }
                }
                if let Some(latest) = ids.last() {
                    i.set_latest_pointer(&staging, *latest)?;
                }
                files::write_atomic(&staging.join(ID_FILE), to.as_str().as_bytes(), i.durability)
                    .at(&staging)?;
                i.thread_catalog(&t)?.add(to.as_str())?;
                files::remove_dir_atomic(&dst, i.durability).at(&dst)?;
                std::fs::rename(&staging, &dst).at(&dst)?;
                if i.durability == Durability::Fsync {
                    files::sync_dir(&parent).at(&parent)?;
                }
                Ok(ids.len() as u64)
            },
        )
        .await
    }

    async fn replace_payload(
        &self,
        tenant: &TenantId,
        thread: &ThreadKey,
        payload: &CheckpointPayload,
        expected: &Envelope,
        new: Envelope,
    ) -> Result<bool> {
        through_codec!(
            self.checkpointer()
                .replace_payload(tenant, thread, payload, expected, new)
        );
        let (t, th, payload, expected) = (
            tenant.clone(),
            thread.clone(),
            payload.clone(),
            expected.clone(),
        );
        self.run(
            "checkpoint.replace_payload",
            format!("{tenant}/{thread}"),
            move |i| i.replace_payload(&t, &th, &payload, &expected, new),
        )
        .await
    }

    async fn list_threads(&self, tenant: &TenantId, query: ListThreads) -> Result<Page<ThreadKey>> {
        through_codec!(self.checkpointer().list_threads(tenant, query));
        let t = tenant.clone();
        let ListThreads { cursor, limit, .. } = query;
        self.run("checkpoint.list_threads", tenant.to_string(), move |i| {
            let limit = validate_limit(limit)?;
            let after: Option<ThreadKey> = cursor_id(&cursor)?;
            let range = Range {
                after: after.as_ref().map(ThreadKey::as_str),
                prefix: "",
            };
            let scan = || i.thread_names(&t);
            let items = i.thread_catalog(&t)?.collect(range, limit, &scan, |id| {
                let Ok(key) = ThreadKey::new(id) else {
                    return Ok(None);
                };
                let dir = i.readable_thread(&t, &key)?;
                Ok(i.latest_id(&dir)?.map(|_| key))
            })?;
            Ok(Page::from_overfetch(items, limit, |k| {
                Cursor::new(k.as_str())
            }))
        })
        .await
    }
}
