//! Catalogs: the ids of one directory's entries (a tenant's threads or sessions, a
//! namespace's items) kept sorted on disk, so a page of a listing costs O(page) instead
//! of reading and sorting the whole directory every time.
//!
//! A catalog is a directory of three files:
//!
//! - `sorted`: ids in byte order, one per line (ids never hold control characters),
//!   replaced atomically. A page seeks into it by bisection.
//! - `journal`: changes since `sorted` was written, appended (`O_APPEND`) as
//!   `\n{+|-}{id}\t{crc32 hex}\n`: a line whose checksum fails (a torn write) is
//!   ignored, and the leading newline keeps a torn line from swallowing the next one.
//!   The last change of an id wins. Once it passes [`COMPACT_AT`] bytes a writer folds
//!   it into `sorted`.
//! - `lock`: shared by journal writers and readers, exclusive while `sorted` is
//!   rewritten, so no change is lost between reading the journal and emptying it.
//!
//! The directory stays the truth; the catalog is an index that may list too much, never
//! too little. A creation journals its id (fsynced with [`Durability::Fsync`]) *before*
//! the entry is created, and a deletion journals after the entry is gone, so after a
//! crash the catalog may name an entry that does not exist (callers check every id they
//! list) but never misses one that does. Folding the journal into `sorted` is
//! idempotent: a crash between writing `sorted` and emptying the journal replays the
//! same changes. A catalog noted before its directory exists starts empty (no entry can
//! predate it). One whose directory has entries but no `sorted` (a root written by an
//! earlier version) is built from one scan of the directory at its first listing, and
//! its journal is not folded before that (only the scan knows the older entries); a
//! read-only root without one is listed by scanning, as before catalogs. Listing a
//! directory that does not exist returns nothing and creates nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use persistence_core::Result;

use crate::config::{Durability, Writes};
use crate::error::{IoContext, io_error};
use crate::files::{self, FileLock};

mod journal;
mod lines;
use lines::{bisect, journal_line, merge, merge_iter, scanned, sorted_line};

/// Journal size past which a writer folds it into `sorted`.
pub const COMPACT_AT: u64 = 64 << 10;
/// Longest a listing waits to build a missing catalog before scanning instead.
const BUILD_WAIT: Duration = Duration::from_millis(500);

const SORTED: &str = "sorted";
const JOURNAL: &str = "journal";
const LOCK: &str = "lock";

/// The catalog kept in one directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    /// The directory whose entries this catalog lists.
    entries: PathBuf,
    writes: Writes,
}

/// When [`Catalog::build_when`] rewrites `sorted`.
#[derive(Clone, Copy)]
enum Rebuild<'a> {
    /// Only when there is none.
    IfMissing,
    /// When there is none, or it is still this file (found damaged; one another builder
    /// wrote since is kept).
    IfDamaged(&'a File),
    /// In any case.
    Always,
}

/// Which ids a page wants: those after `after` that start with `prefix`.
#[derive(Debug, Clone, Copy)]
pub struct Range<'a> {
    /// Only ids greater than this.
    pub after: Option<&'a str>,
    /// Only ids starting with this.
    pub prefix: &'a str,
}

impl Range<'_> {
    /// Whether `id` sorts before the range (so the range starts after it).
    fn before(&self, id: &str) -> bool {
        self.after.is_some_and(|a| id <= a) || id < self.prefix
    }
    /// Whether `id` sorts past the end of the range.
    fn past(&self, id: &str) -> bool {
        !id.starts_with(self.prefix) && id > self.prefix
    }
}

impl Catalog {
    /// The catalog in `dir` of the entries of directory `entries` (created on first use).
    pub fn new(dir: PathBuf, entries: PathBuf, writes: Writes) -> Self {
        Catalog {
            dir,
            entries,
            writes,
        }
    }

    /// Notes `id` before its entry is created: durable before the creation begins, so a
    /// crash can leave a listed id without an entry, never an entry that is not listed.
    ///
    /// # Errors
    /// I/O errors (a full disk): the creation must not go ahead.
    pub fn add(&self, id: &str) -> Result<()> {
        self.journal('+', id, self.writes.durability == Durability::Fsync)
            .at(&self.dir)
    }

    /// Notes that the entry of `id` is gone. Best effort: if it cannot be written (a full
    /// disk), listings skip the id because its entry does not exist.
    pub fn remove(&self, id: &str) {
        if let Err(e) = self.journal('-', id, false) {
            tracing::debug!(catalog = %self.dir.display(), error = %e, "catalog removal not noted");
        }
    }

    fn journal(&self, op: char, id: &str, sync: bool) -> io::Result<()> {
        files::ensure_dir(&self.dir, self.writes)?;
        let line = journal_line(op, id);
        let path = self.dir.join(JOURNAL);
        let (len, can_fold) = {
            let _shared = FileLock::shared(&self.dir.join(LOCK), self.writes)?;
            let sorted = self.dir.join(SORTED);
            let mut can_fold = sorted.exists();
            if !can_fold && !self.entries.exists() {
                // No entry predates this catalog: it starts complete and empty.
                files::write_atomic(&sorted, &[], self.writes)?;
                can_fold = true;
            }
            let existed = path.exists();
            let mut journal = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(self.writes.file_mode)
                .open(&path)?;
            journal.write_all(line.as_bytes())?;
            if sync {
                journal.sync_data()?;
                if !existed {
                    files::sync_dir(&self.dir)?;
                }
            }
            (journal.metadata()?.len(), can_fold)
        };
        // Without `sorted` the entries that predate the catalog are known only to a
        // scan: the first listing builds it; until then the journal only grows.
        if len > COMPACT_AT && can_fold {
            // Whoever gets the lock at once folds the journal; nobody waits for it.
            let lock = self.dir.join(LOCK);
            if let Some(_exclusive) =
                FileLock::exclusive_within(&lock, self.writes, Duration::ZERO)?
            {
                self.fold(None)?;
            }
        }
        Ok(())
    }

    /// Up to `limit + 1` values for the ids of `range`, in id order, keeping the ids for
    /// which `live` returns one (it checks that the entry exists and is visible): a page
    /// and one more to tell whether another page follows. The catalog is read in chunks,
    /// so memory stays bounded by the page. `scan` lists the directory's ids (any order):
    /// used once to build a missing catalog, or on a read-only root that has none.
    ///
    /// # Errors
    /// I/O errors of the catalog's files; errors of `scan` and `live`.
    pub fn collect<T>(
        &self,
        range: Range<'_>,
        limit: usize,
        scan: &dyn Fn() -> Result<Vec<String>>,
        mut live: impl FnMut(&str) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut after = range.after.map(str::to_owned);
        loop {
            let want = (limit + 1 - out.len()).max(16);
            let chunk = Range {
                after: after.as_deref(),
                prefix: range.prefix,
            };
            let ids = self.page(chunk, want, scan)?;
            for id in &ids {
                if let Some(value) = live(id)? {
                    out.push(value);
                    if out.len() > limit {
                        return Ok(out);
                    }
                }
            }
            if ids.len() < want {
                return Ok(out);
            }
            after = ids.last().cloned();
        }
    }

    /// Up to `n` ids of `range`, in order, as the catalog lists them.
    fn page(
        &self,
        range: Range<'_>,
        n: usize,
        scan: &dyn Fn() -> Result<Vec<String>>,
    ) -> Result<Vec<String>> {
        if !self.entries.exists() {
            // Nothing to list, and a listing creates nothing (no tenant, no namespace).
            return Ok(Vec::new());
        }
        // A root written before catalogs has no catalog directory yet.
        match files::ensure_dir(&self.dir, self.writes) {
            Ok(()) => {}
            Err(e) if files::cannot_write(&e) => {}
            Err(e) => return Err(io_error(&self.dir, e)),
        }
        for _ in 0..2 {
            let lock = match FileLock::shared(&self.dir.join(LOCK), self.writes) {
                Ok(lock) => lock,
                Err(e) if files::cannot_write(&e) => None,
                Err(e) => return Err(io_error(&self.dir, e)),
            };
            let sorted = match File::open(self.dir.join(SORTED)) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if lock.is_none() {
                        // Nothing can write here (read-only): the directory as it is.
                        return Ok(scanned(scan()?, range, n));
                    }
                    drop(lock);
                    if !self.build(scan)? {
                        return Ok(scanned(scan()?, range, n));
                    }
                    continue;
                }
                Err(e) => return Err(io_error(&self.dir, e)),
            };
            let changes = journal::changes(&self.dir.join(JOURNAL), &sorted).at(&self.dir)?;
            let mut out = Vec::with_capacity(n.min(1024));
            let read = bisect(&sorted, range).and_then(|start| {
                merge(&sorted, start, &changes, range, n, |id| {
                    out.push(id.to_owned());
                    out.len() < n
                })
            });
            match read {
                Ok(()) => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // The directory is the truth: rebuild the catalog from it.
                    tracing::warn!(
                        catalog = %self.dir.display(),
                        "damaged catalog: rebuilding it from its directory"
                    );
                    drop(lock);
                    if !self.build_when(scan, Rebuild::IfDamaged(&sorted))? {
                        return Ok(scanned(scan()?, range, n));
                    }
                }
                Err(e) => return Err(io_error(&self.dir, e)),
            }
        }
        Ok(scanned(scan()?, range, n))
    }

    /// Builds a missing catalog from `scan` and the journal; `false` when the lock could
    /// not be had in time (the caller scans instead).
    fn build(&self, scan: &dyn Fn() -> Result<Vec<String>>) -> Result<bool> {
        self.build_when(scan, Rebuild::IfMissing)
    }

    /// Rewrites the catalog from `scan` and the journal whatever it holds: ids in
    /// `sorted` whose entries are gone (what a crash between noting an entry and making
    /// it leaves) are dropped. Run by `persistence gc`. `false` when the lock could not
    /// be had in time; `true` with nothing done when there is nothing to list.
    ///
    /// # Errors
    /// I/O errors; errors of `scan`.
    pub fn rebuild(&self, scan: &dyn Fn() -> Result<Vec<String>>) -> Result<bool> {
        if !self.entries.exists() {
            return Ok(true);
        }
        self.build_when(scan, Rebuild::Always)
    }

    /// [`Self::build`] under the rule `when`.
    fn build_when(
        &self,
        scan: &dyn Fn() -> Result<Vec<String>>,
        when: Rebuild<'_>,
    ) -> Result<bool> {
        let lock = self.dir.join(LOCK);
        let exclusive = files::ensure_dir(&self.dir, self.writes)
            .and_then(|()| FileLock::exclusive_within(&lock, self.writes, BUILD_WAIT));
        let _exclusive = match exclusive {
            Ok(Some(lock)) => lock,
            Ok(None) => return Ok(false),
            // A read-only root or user: nothing writes here, the scan is the truth.
            Err(e) if files::cannot_write(&e) => return Ok(false),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        match (std::fs::metadata(self.dir.join(SORTED)), when) {
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => {}
            (Err(e), _) => return Err(io_error(&self.dir, e)),
            (Ok(_), Rebuild::IfMissing) => return Ok(true),
            (Ok(now), Rebuild::IfDamaged(seen)) => {
                use std::os::unix::fs::MetadataExt;
                let seen = seen.metadata().at(&self.dir)?;
                if (now.dev(), now.ino()) != (seen.dev(), seen.ino()) {
                    return Ok(true);
                }
            }
            (Ok(_), Rebuild::Always) => {}
        }
        let mut ids = scan()?;
        ids.sort_unstable();
        ids.dedup();
        self.fold(Some(ids)).at(&self.dir)?;
        Ok(true)
    }

    /// Rewrites `sorted` as `base` (or the current `sorted`) with the journal applied,
    /// then empties the journal. Caller holds the exclusive lock.
    fn fold(&self, base: Option<Vec<String>>) -> io::Result<()> {
        let changes = journal::read_all(&self.dir.join(JOURNAL))?;
        let mut bytes = Vec::new();
        let push = |id: &str| {
            bytes.extend_from_slice(sorted_line(id).as_bytes());
            true
        };
        let everything = Range {
            after: None,
            prefix: "",
        };
        match base {
            Some(ids) => merge_iter(
                ids.iter().map(|s| Ok(s.clone())),
                &changes,
                everything,
                push,
            )?,
            None => match File::open(self.dir.join(SORTED)) {
                Ok(sorted) => match merge(&sorted, 0, &changes, everything, usize::MAX, push) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        // Damaged: dropped, so the next listing rebuilds it from the
                        // directory (the journal stays and is applied on top).
                        tracing::warn!(
                            catalog = %self.dir.display(),
                            "damaged catalog: removed, the next listing rebuilds it"
                        );
                        return std::fs::remove_file(self.dir.join(SORTED));
                    }
                    Err(e) => return Err(e),
                },
                // Not built yet: only a scan knows the entries that predate it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        files::write_atomic(&self.dir.join(SORTED), &bytes, self.writes)?;
        let journal = self.dir.join(JOURNAL);
        match OpenOptions::new().write(true).open(&journal) {
            Ok(file) => {
                file.set_len(0)?;
                if self.writes.durability == Durability::Fsync {
                    file.sync_data()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
