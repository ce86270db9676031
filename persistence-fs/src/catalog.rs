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

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use persistence_core::Result;

use crate::config::{Durability, Writes};
use crate::error::{IoContext, io_error};
use crate::files::{self, FileLock};

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
            let changes = self.read_journal().at(&self.dir)?;
            let mut out = Vec::with_capacity(n.min(1024));
            let read = bisect(&sorted, range).and_then(|start| {
                merge(&sorted, start, &changes, range, |id| {
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
                    if !self.build_replacing(scan, Some(&sorted))? {
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
        self.build_replacing(scan, None)
    }

    /// [`Self::build`], also when `sorted` exists but is `damaged` (the file found
    /// damaged; one replaced since by another builder is kept).
    fn build_replacing(
        &self,
        scan: &dyn Fn() -> Result<Vec<String>>,
        damaged: Option<&File>,
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
        match (std::fs::metadata(self.dir.join(SORTED)), damaged) {
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => {}
            (Err(e), _) => return Err(io_error(&self.dir, e)),
            (Ok(_), None) => return Ok(true),
            (Ok(now), Some(seen)) => {
                use std::os::unix::fs::MetadataExt;
                let seen = seen.metadata().at(&self.dir)?;
                if (now.dev(), now.ino()) != (seen.dev(), seen.ino()) {
                    return Ok(true);
                }
            }
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
        let changes = self.read_journal()?;
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
                Ok(sorted) => match merge(&sorted, 0, &changes, everything, push) {
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

    /// The journal's changes: id → present, the last change of each id winning.
    fn read_journal(&self) -> io::Result<BTreeMap<String, bool>> {
        let bytes = files::read_optional(&self.dir.join(JOURNAL))?.unwrap_or_default();
        let mut changes = BTreeMap::new();
        for line in bytes.split(|b| *b == b'\n') {
            if let Some((op, id)) = parse_journal_line(line) {
                changes.insert(id.to_owned(), op == b'+');
            }
        }
        Ok(changes)
    }
}

/// A line of `sorted`: the id and the CRC32 of it, so a read that reaches a damaged
/// line knows (and the catalog is rebuilt from its directory).
fn sorted_line(id: &str) -> String {
    format!("{id}\t{:08x}\n", crc32fast::hash(id.as_bytes()))
}

/// The id of a line of `sorted`; `InvalidData` when its checksum fails.
fn parse_sorted_line(line: &[u8]) -> io::Result<String> {
    let damaged = || io::Error::new(io::ErrorKind::InvalidData, "damaged catalog line");
    let tab = line.iter().rposition(|b| *b == b'\t').ok_or_else(damaged)?;
    let (id, crc) = (&line[..tab], &line[tab + 1..]);
    let crc = std::str::from_utf8(crc)
        .ok()
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or_else(damaged)?;
    if crc32fast::hash(id) != crc {
        return Err(damaged());
    }
    String::from_utf8(id.to_vec()).map_err(|_| damaged())
}

fn journal_line(op: char, id: &str) -> String {
    let body = format!("{op}{id}");
    format!("\n{body}\t{:08x}\n", crc32fast::hash(body.as_bytes()))
}

fn parse_journal_line(line: &[u8]) -> Option<(u8, &str)> {
    let tab = line.iter().rposition(|b| *b == b'\t')?;
    let (body, crc) = (&line[..tab], &line[tab + 1..]);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32fast::hash(body) != crc || body.is_empty() {
        return None;
    }
    let op = body[0];
    let id = std::str::from_utf8(&body[1..]).ok()?;
    matches!(op, b'+' | b'-').then_some((op, id))
}

/// The ids of a directory scan in `range`, sorted, at most `n`.
fn scanned(mut ids: Vec<String>, range: Range<'_>, n: usize) -> Vec<String> {
    ids.retain(|id| !range.before(id) && !range.past(id));
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(n);
    ids
}

/// The byte offset in `sorted` of the first line not before `range`.
fn bisect(sorted: &File, range: Range<'_>) -> io::Result<u64> {
    let len = sorted.metadata()?.len();
    // Invariant: every line starting before `lo` is before the range, every line
    // starting at or after `hi` is not; `lo` is a line start.
    let (mut lo, mut hi) = (0u64, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = line_start_at_or_after(sorted, mid, hi)?;
        let at = if start < hi { start } else { lo };
        let (id, end) = line_at(sorted, at)?;
        if range.before(&id) {
            lo = end;
        } else {
            hi = at;
        }
    }
    Ok(lo)
}

/// The first line start in `[from, limit)`, or `limit` when none starts there.
fn line_start_at_or_after(file: &File, from: u64, limit: u64) -> io::Result<u64> {
    if from == 0 {
        return Ok(0);
    }
    let mut buf = [0u8; 512];
    let mut at = from - 1;
    while at < limit {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok((at + i as u64 + 1).min(limit));
        }
        at += n as u64;
    }
    Ok(limit)
}

/// The id on the line starting at `at` and the offset after the line.
fn line_at(file: &File, at: u64) -> io::Result<(String, u64)> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    let mut pos = at;
    loop {
        let n = file.read_at(&mut buf, pos)?;
        if n == 0 {
            return Ok((parse_sorted_line(&line)?, pos));
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..i]);
            return Ok((parse_sorted_line(&line)?, pos + i as u64 + 1));
        }
        line.extend_from_slice(&buf[..n]);
        pos += n as u64;
    }
}

/// Walks `sorted` from byte `start` merged with `changes`, calling `take` with each id
/// of `range` the catalog lists, in order, until it returns `false`.
fn merge(
    sorted: &File,
    start: u64,
    changes: &BTreeMap<String, bool>,
    range: Range<'_>,
    take: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    let mut reader = io::BufReader::with_capacity(
        64 << 10,
        files::PositionedReader {
            file: sorted,
            offset: start,
        },
    );
    let lines = std::iter::from_fn(move || {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                }
                Some(parse_sorted_line(&line))
            }
            Err(e) => Some(Err(e)),
        }
    });
    merge_iter(lines, changes, range, take)
}

/// [`merge`] over any sorted sequence of ids.
fn merge_iter(
    base: impl Iterator<Item = io::Result<String>>,
    changes: &BTreeMap<String, bool>,
    range: Range<'_>,
    mut take: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    let mut base = base.peekable();
    let mut changed = changes
        .iter()
        .filter(|(id, _)| !range.before(id))
        .peekable();
    loop {
        if let Some(Err(_)) = base.peek()
            && let Some(Err(e)) = base.next()
        {
            return Err(e);
        }
        let order = match (base.peek(), changed.peek()) {
            (None, None) => return Ok(()),
            (Some(Ok(b)), Some((c, _))) => c.as_str().cmp(b.as_str()),
            (Some(_), _) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
        };
        let (id, present) = if order == Ordering::Greater {
            match base.next() {
                Some(Ok(id)) => (id, true),
                _ => return Ok(()),
            }
        } else {
            if order == Ordering::Equal {
                base.next();
            }
            match changed.next() {
                Some((id, present)) => (id.clone(), *present),
                None => return Ok(()),
            }
        };
        if range.before(&id) {
            continue;
        }
        if range.past(&id) {
            return Ok(());
        }
        if present && !take(&id) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes() -> Writes {
        Writes {
            durability: Durability::Fsync,
            file_mode: 0o600,
            dir_mode: 0o700,
        }
    }

    fn all(c: &Catalog, range: Range<'_>) -> Vec<String> {
        c.collect(range, usize::MAX - 1, &|| Ok(Vec::new()), |id| {
            Ok(Some(id.to_owned()))
        })
        .unwrap()
    }

    /// Pages through a folded and an unfolded catalog agree with a sorted set, for every
    /// cursor and prefix, and a torn journal line is ignored without losing the next.
    #[test]
    fn pages_match_a_sorted_set() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
        // The first note of a catalog whose directory does not exist yet starts it empty
        // (and foldable); then the directory appears.
        c.remove("nothing");
        assert!(c.dir.join(SORTED).exists());
        std::fs::create_dir(tmp.path().join("entries")).unwrap();
        let mut model = std::collections::BTreeSet::new();
        let ids: Vec<String> = (0..300)
            .map(|i| format!("k{:03}", (i * 7919) % 1000))
            .collect();
        for (n, id) in ids.iter().enumerate() {
            c.add(id).unwrap();
            model.insert(id.clone());
            if n % 3 == 0 {
                c.remove(&ids[n / 2]);
                model.remove(&ids[n / 2]);
            }
            if n == 150 {
                let _x = FileLock::exclusive(&c.dir.join(LOCK), writes()).unwrap();
                c.fold(None).unwrap();
            }
        }
        // A torn line (no checksum, no newline) followed by a whole one.
        let mut j = OpenOptions::new()
            .append(true)
            .open(c.dir.join(JOURNAL))
            .unwrap();
        j.write_all(b"\n-k1").unwrap();
        c.add("k999x").unwrap();
        model.insert("k999x".into());
        let want: Vec<String> = model.iter().cloned().collect();
        assert_eq!(
            all(
                &c,
                Range {
                    after: None,
                    prefix: ""
                }
            ),
            want
        );
        for after in ["", "k0", "k5", "k500", "k999", "z"] {
            for prefix in ["", "k", "k1", "k99", "x"] {
                let got = all(
                    &c,
                    Range {
                        after: Some(after),
                        prefix,
                    },
                );
                let expect: Vec<String> = want
                    .iter()
                    .filter(|id| id.as_str() > after && id.starts_with(prefix))
                    .cloned()
                    .collect();
                assert_eq!(got, expect, "after {after:?} prefix {prefix:?}");
            }
        }
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut page = c
                .collect(
                    Range {
                        after: after.as_deref(),
                        prefix: "",
                    },
                    7,
                    &|| Ok(Vec::new()),
                    |id| Ok(Some(id.to_owned())),
                )
                .unwrap();
            page.truncate(7);
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            paged.extend(page);
        }
        assert_eq!(paged, want);
    }

    /// A missing catalog is built from the scan, with the journal applied on top.
    #[test]
    fn a_missing_catalog_is_built_from_the_scan() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("entries")).unwrap();
        let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
        c.add("new").unwrap();
        assert!(
            !c.dir.join(SORTED).exists(),
            "entries exist: only a scan can build it"
        );
        c.remove("gone");
        let got = c
            .collect(
                Range {
                    after: None,
                    prefix: "",
                },
                10,
                &|| Ok(vec!["b".into(), "gone".into(), "a".into()]),
                |id| Ok(Some(id.to_owned())),
            )
            .unwrap();
        assert_eq!(got, ["a", "b", "new"]);
        assert!(c.dir.join(SORTED).exists());
    }

    /// A damaged line of `sorted` is noticed by the page that reads it, which rebuilds
    /// the catalog from the directory: the listing stays complete. A fold that meets
    /// damage drops `sorted`, so the next listing rebuilds it.
    #[test]
    fn a_damaged_catalog_is_rebuilt_from_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("entries")).unwrap();
        let c = Catalog::new(tmp.path().join("cat"), tmp.path().join("entries"), writes());
        let ids: Vec<String> = (0..50).map(|i| format!("id{i:02}")).collect();
        let scan = || Ok(ids.clone());
        let everything = Range {
            after: None,
            prefix: "",
        };
        let list = |c: &Catalog| {
            c.collect(everything, 1000, &scan, |id| Ok(Some(id.to_owned())))
                .unwrap()
        };
        assert_eq!(list(&c), ids);
        let sorted = c.dir.join(SORTED);
        let mut bytes = std::fs::read(&sorted).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x04;
        std::fs::write(&sorted, &bytes).unwrap();
        assert_eq!(list(&c), ids);
        assert_ne!(std::fs::read(&sorted).unwrap(), bytes, "not rebuilt");
        std::fs::write(&sorted, &bytes).unwrap();
        {
            let _x = FileLock::exclusive(&c.dir.join(LOCK), writes()).unwrap();
            c.fold(None).unwrap();
        }
        assert!(!sorted.exists());
        assert_eq!(list(&c), ids);
    }
}
