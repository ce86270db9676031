//! The journal's changes as a page reads them, parsed once per process: a page of a
//! listing needs every change of its catalog's journal (up to [`super::COMPACT_AT`]
//! bytes, a few thousand lines), and parsing them for every page made small pages cost
//! several times their entries. The parsed changes are kept per journal and extended
//! with the lines appended since.
//!
//! Why a cached prefix stays right: between folds the journal only grows (`O_APPEND`).
//! A fold rewrites `sorted` (a new file) and then empties the journal, all under the
//! catalog's exclusive lock, and readers hold the shared lock; so a reader that finds
//! `sorted` unchanged (same device, inode, size and modification time) and the journal
//! no shorter knows that what it parsed before is still the journal's start. Only
//! complete lines are taken (up to the last newline), so a line being appended while it
//! is read is parsed whole next time.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::lines::parse_journal_line;

/// Journal changes: id → present, the last change of each id winning.
pub type Changes = BTreeMap<String, bool>;

/// Journals kept parsed at most; past it the cache starts over.
const CACHED: usize = 64;

/// Identity of a file's version: device, inode, size, modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// A journal parsed up to `parsed` bytes, against one version of `sorted`.
struct Parsed {
    sorted: Stamp,
    journal: (u64, u64),
    parsed: u64,
    changes: Arc<Changes>,
}

static CACHE: Mutex<Option<HashMap<PathBuf, Parsed>>> = Mutex::new(None);

/// Applies every valid line of `bytes` to `changes`.
fn insert_lines(bytes: &[u8], changes: &mut Changes) {
    for line in bytes.split(|b| *b == b'\n') {
        if let Some((op, id)) = parse_journal_line(line) {
            changes.insert(id.to_owned(), op == b'+');
        }
    }
}

/// Applies the complete lines of `bytes` to `changes`; returns how many bytes they span
/// (up to and including the last newline).
fn apply(bytes: &[u8], changes: &mut Changes) -> u64 {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    insert_lines(&bytes[..complete], changes);
    complete as u64
}

/// Every change of the journal at `path`, for a reader holding the catalog's shared lock
/// with `sorted` open.
///
/// # Errors
/// I/O errors reading either file.
pub fn changes(path: &Path, sorted: &File) -> io::Result<Arc<Changes>> {
    let journal = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Arc::default()),
        Err(e) => return Err(e),
    };
    let sorted = Stamp::of(&sorted.metadata()?);
    let meta = journal.metadata()?;
    let (identity, len) = ((meta.dev(), meta.ino()), meta.len());
    let cached = {
        let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.as_ref().and_then(|c| c.get(path)).and_then(|p| {
            (p.sorted == sorted && p.journal == identity && p.parsed <= len)
                .then(|| (p.parsed, Arc::clone(&p.changes)))
        })
    };
    let (from, mut changes) = match cached {
        Some((parsed, changes)) if parsed == len => return Ok(changes),
        Some((parsed, changes)) => (parsed, Changes::clone(&changes)),
        None => (0, Changes::new()),
    };
    let mut bytes = Vec::new();
    let mut tail = crate::files::PositionedReader {
        file: &journal,
        offset: from,
    };
    io::Read::read_to_end(&mut tail, &mut bytes)?;
    let parsed = from + apply(&bytes, &mut changes);
    let changes = Arc::new(changes);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CACHED && !cache.contains_key(path) {
        cache.clear();
    }
    cache.insert(
        path.to_path_buf(),
        Parsed {
            sorted,
            journal: identity,
            parsed,
            changes: Arc::clone(&changes),
        },
    );
    Ok(changes)
}

/// Every change of the journal at `path`, parsed now (a fold, under the exclusive lock).
///
/// # Errors
/// I/O errors reading it.
pub fn read_all(path: &Path) -> io::Result<Changes> {
    let bytes = crate::files::read_optional(path)?.unwrap_or_default();
    let mut changes = Changes::new();
    // A fold takes every line, the last one too even without its final newline.
    insert_lines(&bytes, &mut changes);
    Ok(changes)
}
