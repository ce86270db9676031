//! The file of one store item: a log of its versions, so a put is one append and one
//! `fdatasync` (no temp file, rename or directory fsync), and puts of different keys
//! overlap as far as the disk allows.
//!
//! Layout: [`MAGIC`], then one record per put ([`crate::records`] framing: length and
//! checksums, then the item's JSON), each followed by a commit byte `C` written only once
//! the record is durable. Readers take no lock and see the last committed record, so they
//! never see a put before it is durable, nor one whose write failed (it is cut back).
//!
//! A complete record without its commit byte is a put in progress (its writer holds the
//! item lock) or one whose writer died after writing it. When the item lock is free it is
//! synced and counted as committed, by readers and by the next put: an unacknowledged
//! put may or may not take effect, and once seen it stays. A torn record (a crash in the
//! middle of a write) is ignored. A complete record whose checksum fails, or a byte after
//! a record that is neither a commit byte nor the zeros a crash can leave, is corruption.
//!
//! A put appends while the file stays under [`COMPACT_AT`]; past it, when the file's tail
//! is not clean, or when it holds an item of formats 1–3 (a bare JSON file, read as one
//! committed version), the put replaces the file atomically with its own record alone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::{Durability, Writes};
use crate::files;
use crate::layout::ITEM_LOCKS_DIR;
use crate::records::{self, RecordAt};

/// The first bytes of an item log (a JSON item of formats 1–3 starts with `{`).
pub const MAGIC: &[u8; 8] = b"\0pitem4\n";
/// Follows a record once it is durable.
const COMMIT: u8 = b'C';
/// A put appends while the file stays within this size; past it, the put rewrites the
/// file with its own record alone, so reads stay O(one version) on average.
pub const COMPACT_AT: usize = 64 << 10;

/// What an item file holds, as a reader or a writer sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Latest {
    /// No file.
    Absent,
    /// The bytes (JSON) of the latest version.
    Item(Vec<u8>),
    /// The file cannot be read as an item: what is wrong with it.
    Damaged(String),
}

/// Where the versions of an item log lie.
#[derive(Debug, Default)]
struct Log {
    /// The last committed record's payload.
    committed: Option<Range<usize>>,
    /// A complete record after it without its commit byte.
    uncommitted: Option<Range<usize>>,
    /// The end of the last commit byte: where the next record goes.
    end: usize,
}

/// Reads an item file's layout; `Ok(None)` for a bare JSON item (formats 1–3).
///
/// # Errors
/// The offset of the damage.
fn parse(bytes: &[u8]) -> Result<Option<Log>, usize> {
    if !bytes.starts_with(MAGIC) {
        return Ok(None);
    }
    let mut log = Log {
        end: MAGIC.len(),
        ..Log::default()
    };
    loop {
        match records::parse_record(bytes, log.end) {
            RecordAt::End | RecordAt::Torn => return Ok(Some(log)),
            // A put writes one record: a batch of several is not ours.
            RecordAt::Corrupt | RecordAt::Valid { more: true, .. } => return Err(log.end),
            RecordAt::Valid { payload, end, .. } => {
                let end = end as usize;
                match bytes.get(end) {
                    Some(&COMMIT) => {
                        log.committed = Some(payload);
                        log.end = end + 1;
                    }
                    Some(_) if bytes[end..].iter().any(|b| *b != 0) => return Err(end),
                    // The end of the file, or zeros a crash left: not committed yet.
                    _ => {
                        log.uncommitted = Some(payload);
                        return Ok(Some(log));
                    }
                }
            }
        }
    }
}

/// The latest version of `bytes` for the holder of the item lock, who knows no put is
/// in progress: an uncommitted record counts.
fn latest_of(bytes: &[u8], parsed: &Result<Option<Log>, usize>) -> Latest {
    match parsed {
        Err(offset) => Latest::Damaged(format!("damaged at byte {offset}")),
        Ok(None) => Latest::Item(bytes.to_vec()),
        Ok(Some(log)) => match log.uncommitted.as_ref().or(log.committed.as_ref()) {
            Some(range) => Latest::Item(bytes[range.clone()].to_vec()),
            None => Latest::Damaged("holds no complete version".into()),
        },
    }
}

/// The lock file of the item at `path` (`{namespace}/~locks/{name}.lock`).
fn lock_of(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let ns_dir = path.parent()?.parent()?;
    Some(ns_dir.join(ITEM_LOCKS_DIR).join(format!("{name}.lock")))
}

/// The latest committed version of the item at `path`, for a reader holding no lock.
///
/// # Errors
/// I/O errors reading the file or its lock, or syncing a record a dead writer left.
pub fn read_latest(path: &Path) -> io::Result<Latest> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Latest::Absent),
        Err(e) => return Err(e),
    };
    let parsed = parse(&bytes);
    let committed = match &parsed {
        Ok(None) => return Ok(Latest::Item(bytes)),
        Ok(Some(log)) if log.uncommitted.is_some() => log.committed.clone(),
        _ => return Ok(latest_of(&bytes, &parsed)),
    };
    match settle(path)? {
        Some(latest) => Ok(latest),
        // A put is in progress: its record is not durable yet.
        None => Ok(match committed {
            Some(range) => Latest::Item(bytes[range].to_vec()),
            None => Latest::Damaged("holds no committed version".into()),
        }),
    }
}

/// The latest version of an item file with an uncommitted record, when no put holds the
/// item's lock: the file read again under the shared lock, with an uncommitted record
/// synced (its writer died) and counted. `None` while a put holds the lock, or when this
/// reader can neither take the lock nor sync the record.
fn settle(path: &Path) -> io::Result<Option<Latest>> {
    let lock = match lock_of(path).map(File::open) {
        Some(Ok(file)) => match file.try_lock_shared() {
            Ok(()) => Some(file),
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        },
        // No lock file: no put can be writing.
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => None,
        // A reader that may not open the lock cannot know: the committed version.
        Some(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Latest::Absent)),
        Err(e) => return Err(e),
    };
    let bytes = files::read_all(&file)?;
    let parsed = parse(&bytes);
    // Counted only once durable; a reader that cannot sync it (a read-only mount that
    // refuses) keeps to the committed version.
    if matches!(&parsed, Ok(Some(log)) if log.uncommitted.is_some()) && file.sync_data().is_err() {
        return Ok(None);
    }
    drop(lock);
    Ok(Some(latest_of(&bytes, &parsed)))
}

/// An item file opened by a put holding the item's lock.
pub struct ItemFile {
    file: Option<File>,
    bytes: Vec<u8>,
    parsed: Result<Option<Log>, usize>,
}

impl ItemFile {
    /// Opens and reads the item file at `path` (absent is fine).
    ///
    /// # Errors
    /// I/O errors opening or reading it.
    pub fn open(path: &Path) -> io::Result<ItemFile> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(ItemFile {
                    file: None,
                    bytes: Vec::new(),
                    parsed: Ok(None),
                });
            }
            Err(e) => return Err(e),
        };
        let bytes = files::read_all(&file)?;
        let parsed = parse(&bytes);
        Ok(ItemFile {
            file: Some(file),
            bytes,
            parsed,
        })
    }

    /// The latest version: an uncommitted record counts, since the caller holds the lock
    /// (its writer died).
    pub fn latest(&self) -> Latest {
        if self.file.is_none() {
            return Latest::Absent;
        }
        latest_of(&self.bytes, &self.parsed)
    }

    /// Writes `payload` as the item's new version: appended (one write, one sync, the
    /// commit byte) when the file is a clean log with room, else the file replaced
    /// atomically with this version alone.
    ///
    /// # Errors
    /// I/O errors; the file is then as it was.
    pub fn write(self, path: &Path, payload: &[u8], writes: Writes) -> io::Result<()> {
        let mut framed = Vec::with_capacity(payload.len() + records::HEADER + MAGIC.len() + 1);
        if let (Some(file), Ok(Some(log))) = (&self.file, &self.parsed)
            && log.uncommitted.is_none()
            && log.end == self.bytes.len()
            && log.end + records::HEADER + payload.len() < COMPACT_AT
        {
            records::frame_batch(std::iter::once(payload), &mut framed);
            let at = log.end as u64;
            records::append_at(file, at, &framed, writes.durability)?;
            if let Err(e) = records::write_all_at(file, &[COMMIT], at + framed.len() as u64) {
                if file.set_len(at).is_ok() && writes.durability == Durability::Fsync {
                    let _ = file.sync_data();
                }
                return Err(e);
            }
            return Ok(());
        }
        framed.extend_from_slice(MAGIC);
        records::frame_batch(std::iter::once(payload), &mut framed);
        framed.push(COMMIT);
        files::write_atomic(path, &framed, writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(versions: &[&[u8]], commit_last: bool) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (i, v) in versions.iter().enumerate() {
            records::frame_batch(std::iter::once(*v), &mut out);
            if commit_last || i + 1 < versions.len() {
                out.push(COMMIT);
            }
        }
        out
    }

    fn item(bytes: &[u8], parsed: &Result<Option<Log>, usize>) -> Option<Vec<u8>> {
        match latest_of(bytes, parsed) {
            Latest::Item(b) => Some(b),
            _ => None,
        }
    }

    #[test]
    fn a_log_cut_anywhere_reads_a_version_it_held() {
        let versions: [&[u8]; 3] = [b"{\"v\":1}", b"{\"v\":2}", b"{\"v\":3}"];
        let full = log_of(&versions, true);
        for cut in MAGIC.len() + 1..=full.len() {
            let bytes = &full[..cut];
            let parsed = parse(bytes);
            let log = parsed.as_ref().expect("a cut log is not damage");
            let log = log.as_ref().expect("a log");
            let seen = log.committed.clone().map(|r| bytes[r].to_vec());
            // The committed version is the last whose commit byte survived the cut.
            let expect = versions
                .iter()
                .enumerate()
                .rev()
                .find(|(i, _)| log_of(&versions[..=*i], true).len() <= cut)
                .map(|(_, v)| v.to_vec());
            assert_eq!(seen, expect, "cut at {cut}");
        }
    }

    #[test]
    fn an_uncommitted_record_counts_for_the_lock_holder_only() {
        let bytes = log_of(&[b"{\"v\":1}", b"{\"v\":2}"], false);
        let parsed = parse(&bytes);
        let log = parsed
            .as_ref()
            .ok()
            .and_then(|l| l.as_ref())
            .expect("a log");
        assert_eq!(
            log.committed.clone().map(|r| &bytes[r]),
            Some(&b"{\"v\":1}"[..])
        );
        assert_eq!(item(&bytes, &parsed).as_deref(), Some(&b"{\"v\":2}"[..]));
        // Zeros a crash left where the commit byte would be: still uncommitted, not damage.
        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0; 5]);
        assert_eq!(
            item(&zeroed, &parse(&zeroed)).as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
    }

    /// A reader never waits for a put and never sees its record before the commit byte;
    /// once no put holds the lock, a record without one (its writer died) counts.
    #[test]
    fn readers_see_an_uncommitted_record_only_when_no_put_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (items, locks) = (dir.path().join("~items"), dir.path().join(ITEM_LOCKS_DIR));
        fs::create_dir_all(&items).unwrap();
        fs::create_dir_all(&locks).unwrap();
        let path = items.join("k");
        fs::write(&path, log_of(&[b"{\"v\":1}", b"{\"v\":2}"], false)).unwrap();
        let lock = File::create(locks.join("k.lock")).unwrap();
        lock.lock().unwrap();
        assert_eq!(
            read_latest(&path).unwrap(),
            Latest::Item(b"{\"v\":1}".to_vec())
        );
        drop(lock);
        assert_eq!(
            read_latest(&path).unwrap(),
            Latest::Item(b"{\"v\":2}".to_vec())
        );
        fs::remove_file(locks.join("k.lock")).unwrap();
        assert_eq!(
            read_latest(&path).unwrap(),
            Latest::Item(b"{\"v\":2}".to_vec())
        );
        // The next put counts it too, and appends after it only once it is committed.
        let file = ItemFile::open(&path).unwrap();
        assert_eq!(file.latest(), Latest::Item(b"{\"v\":2}".to_vec()));
        let writes = Writes::of(&crate::FsConfig::new(dir.path()));
        file.write(&path, b"{\"v\":3}", writes).unwrap();
        assert_eq!(
            read_latest(&path).unwrap(),
            Latest::Item(b"{\"v\":3}".to_vec())
        );
    }

    #[test]
    fn damage_anywhere_is_reported_never_skipped() {
        let bytes = log_of(&[b"{\"v\":1}", b"{\"v\":2}", b"{\"v\":3}"], true);
        for at in MAGIC.len()..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let parsed = parse(&damaged);
            // Flipping a commit byte into another byte, or any record byte, is damage;
            // nothing reads an older version silently.
            assert!(parsed.is_err(), "flip at {at} not reported: {parsed:?}");
        }
        // A format-1–3 item is the whole file.
        assert!(matches!(parse(b"{\"v\":1}"), Ok(None)));
    }
}
