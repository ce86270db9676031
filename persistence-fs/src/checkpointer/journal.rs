//! The redo journal of a thread's checkpoints: what makes a durable put cost one disk
//! flush instead of two.
//!
//! A checkpoint is a file of its own, and a new file costs two flushes to make durable
//! (its data, then its directory entry). Instead, a put appends the checkpoint to the
//! thread's journal (`checkpoints/.journal`, a record file that already exists) and
//! syncs that: one flush. Then it writes the checkpoint's file (temp file and rename, so
//! readers never see part of it) without a sync. Readers read the files.
//!
//! Every record names the boot of the host it was written in
//! (`/proc/sys/kernel/random/boot_id`). Within one boot, a file written without a sync
//! is seen by every process on the host (the page cache), so the files are complete but
//! for one case: a writer that died between its journal sync and its rename. Only the
//! journal's last record can be in that state (every writer first completes the one
//! before it), so the next writer of the thread, under the thread's lock, writes the last
//! record's file if it is missing (redo). A put that died there was never acknowledged;
//! like any write whose outcome the caller did not learn, it may land.
//!
//! After a power loss the host boots again: files written without a sync may be gone,
//! empty or short. The first reader or writer of the thread in the new boot replays the
//! whole journal (the files it holds are rewritten, `syncfs` makes them durable) and
//! empties it before anything is read; a reader takes the thread's lock for that, so a
//! store on a read-only mount answers `Unavailable` for such a thread until it has been
//! opened writable once.
//!
//! The journal is emptied (compacted) after [`COMPACT_RECORDS`] records or
//! [`COMPACT_BYTES`] bytes: `syncfs` makes every file written since durable in one flush,
//! then the journal is truncated and synced. Prune compacts first, so a replay never
//! brings back a pruned checkpoint. A process that cannot read the boot id writes no
//! journal (a put costs its two flushes) and treats any journal it finds as another
//! boot's.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use persistence_core::{CheckpointId, Error, Result};

use crate::config::{Durability, Writes};
use crate::error::{IoContext, corrupt};
use crate::files;
use crate::records::{self, RecordAt, ScanError};

/// The journal's name in a thread's checkpoints directory (hidden: listings skip it).
pub(crate) const JOURNAL: &str = ".journal";
/// Records after which a journal is compacted.
pub(crate) const COMPACT_RECORDS: u32 = 64;
/// Bytes after which a journal is compacted (whatever the count).
const COMPACT_BYTES: u64 = 4 << 20;
/// Journals remembered before the map is cleared (each costs a check on its next use).
const MAX_ENTRIES: usize = 16_384;

/// What this process knows of each journal it has met, by path.
#[derive(Debug, Default)]
pub(crate) struct Journals {
    known: Mutex<HashMap<PathBuf, Known>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Holds no record of another boot (none found, or replayed).
    BootChecked,
    /// Also, as long as the file is still in `state`: its last record's file exists.
    Complete { state: FileState, records: u32 },
}

/// Identifies a journal's content as last seen: a file recreated, written or truncated
/// by another process since differs in one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileState {
    fn of(file: &File) -> std::io::Result<Self> {
        let m = file.metadata()?;
        Ok(FileState {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// One record: the checkpoint `id` whose file content is `bytes`, written in `boot`.
struct Entry<'a> {
    boot: &'a [u8],
    id: CheckpointId,
    bytes: &'a [u8],
}

/// `BOOT ID\n` then the checkpoint file's bytes.
fn encode(boot: &str, id: CheckpointId, bytes: &[u8]) -> Vec<u8> {
    let mut payload = format!("{boot} {id}\n").into_bytes();
    payload.extend_from_slice(bytes);
    payload
}

fn decode(payload: &[u8]) -> Option<Entry<'_>> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let (head, bytes) = (&payload[..newline], &payload[newline + 1..]);
    let space = head.iter().rposition(|&b| b == b' ')?;
    let id = std::str::from_utf8(&head[space + 1..]).ok()?.parse().ok()?;
    Some(Entry {
        boot: &head[..space],
        id,
        bytes,
    })
}

/// `Corrupt` for the journal record at `offset`.
fn damaged(path: &Path, offset: u64) -> Error {
    corrupt(path, format!("damaged journal record at offset {offset}"))
}

/// What a failed [`records::scan`] or [`records::skim`] of the journal is.
fn scan_failed(path: &Path, e: ScanError) -> Error {
    match e {
        ScanError::Io(e) => crate::error::io_error(path, e),
        ScanError::Corrupt(offset) => damaged(path, offset),
    }
}

/// [`decode`], or `Corrupt` naming the journal and the record's offset.
fn decode_at<'a>(path: &Path, offset: u64, payload: &'a [u8]) -> Result<Entry<'a>> {
    decode(payload).ok_or_else(|| {
        corrupt(
            path,
            format!("journal record at offset {offset} is not a checkpoint"),
        )
    })
}

fn foreign(entry: &Entry<'_>, boot: Option<&str>) -> bool {
    boot.is_none_or(|b| entry.boot != b.as_bytes())
}

/// A thread's journal, opened by a writer holding the thread's lock, with every record
/// before its end materialized.
pub(crate) struct Journal<'a> {
    journals: &'a Journals,
    path: PathBuf,
    file: File,
    len: u64,
    records: u32,
}

impl Journals {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, path: PathBuf, known: Known) {
        let mut map = self.known();
        if map.len() >= MAX_ENTRIES && !map.contains_key(&path) {
            map.clear();
        }
        map.insert(path, known);
    }

    /// Whether the journal in `cdir` holds records of another boot (or cannot be read
    /// without the writer's checks), so its files may be incomplete: then the caller
    /// takes the thread's lock and [`open`](Self::open)s it, which replays it. Costs one
    /// map lookup once this process has checked the journal.
    ///
    /// # Errors
    /// I/O errors other than a missing journal.
    pub(crate) fn needs_replay(&self, cdir: &Path, boot: Option<&str>) -> Result<bool> {
        let path = cdir.join(JOURNAL);
        if self.known().contains_key(&path) {
            return Ok(false);
        }
        let file = match open_existing(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.remember(path, Known::BootChecked);
                return Ok(false);
            }
            Err(e) => return Err(crate::error::io_error(&path, e)),
        };
        let len = file.metadata().at(&path)?.len();
        let replay = match records::read_record(&file, 0, len).at(&path)? {
            RecordAt::End => false,
            RecordAt::Valid { payload, .. } => decode(&payload).is_none_or(|e| foreign(&e, boot)),
            RecordAt::Torn | RecordAt::Corrupt => true,
        };
        if !replay {
            self.remember(path, Known::BootChecked);
        }
        Ok(replay)
    }

    /// Opens the journal in `cdir` for a writer that holds the thread's lock: cuts a torn
    /// last record, replays records of another boot (see the module docs), or writes the
    /// last record's file if a writer died before it did. After a replay has rewritten
    /// the files, `repoint` points `.latest` anew, before the sync that empties the
    /// journal. Makes the journal if `create`
    /// (then its directory entry is synced) and the writes are synced and this process
    /// knows its boot; otherwise a missing journal is `None`.
    ///
    /// # Errors
    /// `Corrupt` for a damaged journal (nothing is replayed); I/O errors.
    pub(crate) fn open(
        &self,
        cdir: &Path,
        boot: Option<&str>,
        writes: Writes,
        create: bool,
        repoint: &dyn Fn() -> Result<()>,
    ) -> Result<Option<Journal<'_>>> {
        let path = cdir.join(JOURNAL);
        let create = create && writes == Durability::Fsync && boot.is_some();
        let file = match open_existing(&path, true) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let file = make(&path, writes).at(&path)?;
                let journal = Journal {
                    journals: self,
                    path,
                    file,
                    len: 0,
                    records: 0,
                };
                journal.remember()?;
                return Ok(Some(journal));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::io_error(&path, e)),
        };
        let state = FileState::of(&file).at(&path)?;
        if let Some(Known::Complete { state: s, records }) = self.known().get(&path).copied()
            && s == state
        {
            return Ok(Some(Journal {
                journals: self,
                path,
                file,
                len: state.len,
                records,
            }));
        }
        let mut journal = Journal {
            journals: self,
            path,
            file,
            len: state.len,
            records: 0,
        };
        journal.recover(cdir, boot, writes, repoint)?;
        journal.remember()?;
        Ok(Some(journal))
    }
}

impl Journal<'_> {
    /// The full check of [`Journals::open`]. Reads the records' headers, the first
    /// record and the last: every record shares the first one's boot (a writer replays a
    /// journal of another boot before it appends), and only the last can lack its file.
    /// A replay reads and checks every record.
    fn recover(
        &mut self,
        cdir: &Path,
        boot: Option<&str>,
        writes: Writes,
        repoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let path = self.path.clone();
        let skim = records::skim(&self.file).map_err(|e| scan_failed(&path, e))?;
        if skim.committed_end < skim.len {
            // A torn last record: its put was never acknowledged.
            self.file.set_len(skim.committed_end).at(&path)?;
            self.file.sync_data().at(&path)?;
            self.len = skim.committed_end;
        }
        let (Some(&(first, _)), Some(&(last, _))) = (skim.records.first(), skim.records.last())
        else {
            self.records = 0;
            return Ok(());
        };
        if foreign(&decode_at(&path, first, &self.payload_at(first)?)?, boot) {
            return self.replay(cdir, writes, repoint);
        }
        let payload = self.payload_at(last)?;
        let entry = decode_at(&path, last, &payload)?;
        let target = cdir.join(entry.id.to_string());
        if !target.exists() {
            // Its writer died after the journal's sync: the record is durable.
            files::write_atomic(&target, entry.bytes, writes.no_sync()).at(&target)?;
        }
        self.records = u32::try_from(skim.records.len()).unwrap_or(u32::MAX);
        Ok(())
    }

    /// The checked payload of the record at `offset`.
    fn payload_at(&self, offset: u64) -> Result<Vec<u8>> {
        match records::read_record(&self.file, offset, self.len).at(&self.path)? {
            RecordAt::Valid { payload, .. } => Ok(payload),
            _ => Err(damaged(&self.path, offset)),
        }
    }

    /// Rewrites every file the journal holds (read and checked whole), points `.latest`
    /// anew, then compacts: what a journal of another boot needs.
    fn replay(
        &mut self,
        cdir: &Path,
        writes: Writes,
        repoint: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let path = self.path.clone();
        let scan = records::scan(&self.file).map_err(|e| scan_failed(&path, e))?;
        for (offset, payload) in &scan.records {
            let entry = decode_at(&path, *offset, payload)?;
            let target = cdir.join(entry.id.to_string());
            if files::read_optional(&target).at(&target)?.as_deref() != Some(entry.bytes) {
                files::write_atomic(&target, entry.bytes, writes.no_sync()).at(&target)?;
            }
        }
        // The pointer may have lost its last changes too; fixed before the sync that
        // empties the journal persists it.
        repoint()?;
        self.compact(writes)
    }

    /// Appends the checkpoint `id` (its file's `bytes`) and syncs the journal: from here
    /// the put survives a power loss. On failure the journal is cut back.
    ///
    /// # Errors
    /// I/O errors (a full disk).
    pub(crate) fn append(&mut self, boot: &str, id: CheckpointId, bytes: &[u8]) -> Result<u64> {
        let payload = encode(boot, id, bytes);
        let mut framed = Vec::with_capacity(payload.len() + records::HEADER);
        records::frame_batch(std::iter::once(payload.as_slice()), &mut framed);
        let before = self.len;
        records::append_at(&self.file, before, &framed, Durability::Fsync).at(&self.path)?;
        self.len += framed.len() as u64;
        self.records += 1;
        Ok(before)
    }

    /// Takes back the last [`append`](Self::append) (whose file could not be written),
    /// so that no later writer redoes a put that reported failure.
    ///
    /// # Errors
    /// I/O errors: then the put's outcome is unknown.
    pub(crate) fn cut_back(&mut self, to: u64) -> Result<()> {
        self.file.set_len(to).at(&self.path)?;
        self.file.sync_data().at(&self.path)?;
        self.len = to;
        self.records = self.records.saturating_sub(1);
        self.remember()
    }

    /// Called once the last record's file is written: compacts a full journal, then
    /// remembers where it ends. A failed compaction is logged and tried again by the
    /// next put (the puts are durable either way).
    ///
    /// # Errors
    /// I/O errors reading the journal's state.
    pub(crate) fn finish(mut self, writes: Writes) -> Result<()> {
        if (self.records >= COMPACT_RECORDS || self.len >= COMPACT_BYTES)
            && let Err(e) = self.compact(writes)
        {
            tracing::warn!(error = %e.report(), "persistence-fs: compacting a checkpoint journal failed");
        }
        self.remember()
    }

    /// Makes every file the journal holds durable (`syncfs`: one flush for all of them
    /// and their directory entries), then empties the journal. Caller holds the thread's
    /// lock.
    ///
    /// # Errors
    /// I/O errors; the journal is unchanged unless the sync succeeded.
    pub(crate) fn compact(&mut self, writes: Writes) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        if writes == Durability::Fsync {
            rustix::fs::syncfs(&self.file)
                .map_err(std::io::Error::from)
                .at(&self.path)?;
        }
        self.file.set_len(0).at(&self.path)?;
        if writes == Durability::Fsync {
            self.file.sync_data().at(&self.path)?;
        }
        self.len = 0;
        self.records = 0;
        Ok(())
    }

    fn remember(&self) -> Result<()> {
        let state = FileState::of(&self.file).at(&self.path)?;
        self.journals.remember(
            self.path.clone(),
            Known::Complete {
                state,
                records: self.records,
            },
        );
        Ok(())
    }
}

/// Opens an existing journal without following a link.
fn open_existing(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Makes a new, empty journal and syncs its directory entry.
fn make(path: &Path, writes: Writes) -> std::io::Result<File> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no parent"))?;
    files::ensure_dir(dir, writes)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(writes.file_mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    if writes == Durability::Fsync {
        files::sync_dir(dir)?;
    }
    Ok(file)
}

/// The error a reader meets when a journal of another boot must be replayed and this
/// process may not write (a read-only mount).
pub(crate) fn cannot_replay(cdir: &Path) -> Error {
    Error::unavailable(format!(
        "{}: checkpoints written before the host restarted need recovery, which needs \
         write access; open the store writable once",
        cdir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let id = CheckpointId::new();
        let payload = encode("b00t-1", id, b"{\"a\":\n1}");
        let entry = decode(&payload).unwrap();
        assert_eq!(entry.boot, b"b00t-1");
        assert_eq!(entry.id, id);
        assert_eq!(entry.bytes, b"{\"a\":\n1}");
        assert!(!foreign(&entry, Some("b00t-1")));
        assert!(foreign(&entry, Some("other")));
        assert!(foreign(&entry, None));
        assert!(decode(b"no newline").is_none());
        assert!(decode(b"boot not-an-id\n{}").is_none());
    }
}
