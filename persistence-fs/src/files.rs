//! File primitives: atomic replace, durable directories, flock guards, record logs,
//! counters.
//!
//! Record format (session logs, pending writes): a 12-byte header — payload length
//! (u32 LE), CRC32 of the payload (u32 LE), CRC32 of those 8 bytes (u32 LE) — then the
//! payload. A damaged record is a torn tail when nothing valid follows it (a crash in the
//! middle of an append), and corruption otherwise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::config::Durability;

/// Header size of a record.
pub const HEADER: usize = 12;
/// Largest payload accepted in a record.
pub const MAX_RECORD: usize = 64 << 20;

/// Creates `dir` and any missing parents, fsyncing each new entry's parent.
pub fn ensure_dir(dir: &Path, durability: Durability) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    // A relative path ends in "" (the current directory), which exists.
    while !cur.as_os_str().is_empty() && !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let (Durability::Fsync, Some(parent)) = (durability, d.parent()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// fsyncs a directory so entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // The parent of a one-component relative path is "", the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically: temp file in the same directory, write,
/// fsync, rename, fsync the directory. Readers see the old or the new content, never a
/// mix.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let dir = parent(path)?;
    ensure_dir(dir, durability)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if durability == Durability::Fsync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durability == Durability::Fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes a directory tree so that it vanishes at once: renamed to a hidden trash name
/// first (atomic), then deleted. Returns whether it existed.
pub fn remove_dir_atomic(dir: &Path, durability: Durability) -> io::Result<bool> {
    if !dir.exists() {
        return Ok(false);
    }
    let parent = parent(dir)?;
    let trash = parent.join(format!(".trash-{:016x}", fastrand_u64()));
    match fs::rename(dir, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    if durability == Durability::Fsync {
        sync_dir(parent)?;
    }
    fs::remove_dir_all(&trash)?;
    Ok(true)
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))
}

/// Reads a whole file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An flock held until drop. Other processes and other open files in this process
/// exclude each other.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes an exclusive lock on `path` (created if missing), blocking until free.
    pub fn exclusive(path: &Path, durability: Durability) -> io::Result<FileLock> {
        let file = Self::open(path, durability)?;
        file.lock()?;
        Ok(FileLock { _file: file })
    }

    /// Takes a shared lock on `path` (created if missing), blocking while an exclusive
    /// holder has it. Readers share it; writers wait for them.
    pub fn shared(path: &Path, durability: Durability) -> io::Result<FileLock> {
        let file = Self::open(path, durability)?;
        file.lock_shared()?;
        Ok(FileLock { _file: file })
    }

    /// The lock file, created (with its directory) if missing.
    fn open(path: &Path, durability: Durability) -> io::Result<File> {
        ensure_dir(parent(path)?, durability)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }
}

/// Frames `payload` as a record.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What lies at an offset of a record file.
#[derive(Debug)]
pub enum RecordAt {
    /// A valid record and the offset after it.
    Valid { payload: Vec<u8>, end: u64 },
    /// End of file exactly.
    End,
    /// Not a valid record.
    Damaged,
}

/// Reads the record at `offset` of a file of length `len`.
pub fn read_record(file: &File, offset: u64, len: u64) -> io::Result<RecordAt> {
    if offset == len {
        return Ok(RecordAt::End);
    }
    if offset + HEADER as u64 > len {
        return Ok(RecordAt::Damaged);
    }
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, offset)?;
    let stored_head_crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if crc32fast::hash(&head[..8]) != stored_head_crc {
        return Ok(RecordAt::Damaged);
    }
    let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let end = offset + (HEADER + size) as u64;
    if size > MAX_RECORD || end > len {
        return Ok(RecordAt::Damaged);
    }
    let mut payload = vec![0u8; size];
    file.read_exact_at(&mut payload, offset + HEADER as u64)?;
    if crc32fast::hash(&payload) != crc {
        return Ok(RecordAt::Damaged);
    }
    Ok(RecordAt::Valid { payload, end })
}

/// Whether a valid record starts anywhere in `file` at or after `from`: if so, damage at
/// `from` is corruption in the middle, not a torn tail.
pub fn valid_record_after(file: &File, from: u64, len: u64) -> io::Result<bool> {
    let mut offset = from + 1;
    while offset + HEADER as u64 <= len {
        if let RecordAt::Valid { .. } = read_record(file, offset, len)? {
            return Ok(true);
        }
        offset += 1;
    }
    Ok(false)
}

/// All records of a small record file (pending writes), truncating a torn tail when
/// `repair` is set.
///
/// # Errors
/// `Err(Some(offset))` for damage before the tail; I/O errors as `Err(None)` with the
/// error returned separately via `io`.
pub fn read_all_records(path: &Path, repair: bool) -> io::Result<Result<Vec<Vec<u8>>, u64>> {
    let file = match OpenOptions::new().read(true).write(repair).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(Vec::new())),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        match read_record(&file, offset, len)? {
            RecordAt::Valid { payload, end } => {
                out.push(payload);
                offset = end;
            }
            RecordAt::End => return Ok(Ok(out)),
            RecordAt::Damaged => {
                if valid_record_after(&file, offset, len)? {
                    return Ok(Err(offset));
                }
                if repair {
                    file.set_len(offset)?;
                    file.sync_all()?;
                }
                return Ok(Ok(out));
            }
        }
    }
}

/// Appends bytes to a file (created if missing) and fsyncs its data.
pub fn append(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let dir = parent(path)?;
    ensure_dir(dir, durability)?;
    let existed = path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(bytes)?;
    if durability == Durability::Fsync {
        file.sync_data()?;
        if !existed {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// A durable u64 counter in a text file (fences). Missing means 0.
pub fn read_counter(path: &Path) -> io::Result<Result<u64, String>> {
    Ok(match read_optional(path)? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("{} does not hold a number", path.display())),
    })
}

/// Writes a counter atomically.
pub fn write_counter(path: &Path, value: u64, durability: Durability) -> io::Result<()> {
    write_atomic(path, value.to_string().as_bytes(), durability)
}

/// Names in a directory, sorted, without temp files (`.…`); empty if it does not exist.
pub fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string()
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
