//! File primitives: atomic replace, durable directories, flock guards, counters. Record
//! files are in [`crate::records`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use crate::config::{Durability, Writes};

/// Whether `e` says this process may not write here: a missing directory, a read-only
/// file system, or no permission.
pub fn cannot_write(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Creates `dir` and any missing parents, fsyncing each new entry's parent.
pub fn ensure_dir(dir: &Path, durability: Writes) -> io::Result<()> {
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
        match fs::DirBuilder::new().mode(durability.dir_mode).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let (Durability::Fsync, Some(parent)) = (durability.durability, d.parent()) {
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
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Writes) -> io::Result<()> {
    let dir = parent(path)?;
    ensure_dir(dir, durability)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .permissions(fs::Permissions::from_mode(durability.file_mode))
        .tempfile_in(dir)?;
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

/// Overwrites a small file in place, without a temp file or a rename (so without the
/// directory and journal work they cost): `bytes` in one positioned write at offset 0,
/// then spaces up to the file's previous length, so a reader that ignores trailing
/// whitespace sees exactly `bytes`; empty `bytes` truncate the file, also one call. One
/// write of a few hundred bytes completes in the page cache or not at all, so a process
/// crash leaves the old or the new content. Never fsynced (whatever `writes` says): a
/// power loss may leave the file empty, older or gone, so only for files where that is
/// tolerated (leases and their fence counters, whose fences are floored at the clock).
pub fn overwrite_in_place(path: &Path, bytes: &[u8], writes: Writes) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let writes = writes.no_sync();
    ensure_dir(parent(path)?, writes)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(writes.file_mode)
        .open(path)?;
    if bytes.is_empty() {
        return file.set_len(0);
    }
    let previous = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let mut content = bytes.to_vec();
    if previous > content.len() && previous <= 64 * 1024 {
        content.resize(previous, b' ');
    }
    file.write_all_at(&content, 0)?;
    if previous > content.len() {
        file.set_len(content.len() as u64)?;
    }
    Ok(())
}

/// Removes a directory tree so that it vanishes at once: renamed to a hidden trash name
/// first (atomic), then deleted. Returns whether it existed.
pub fn remove_dir_atomic(dir: &Path, durability: Writes) -> io::Result<bool> {
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

/// The whole content of a file just opened (read from its current position, the start).
pub fn read_all(mut file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// An flock held until drop. Other processes and other open files in this process
/// exclude each other.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Takes an exclusive lock on `path` (created if missing), blocking until free.
    pub fn exclusive(path: &Path, durability: Writes) -> io::Result<FileLock> {
        let file = Self::open(path, durability)?;
        file.lock()?;
        Ok(FileLock { file })
    }

    /// The locked file, still locked: the lock is released by [`File::unlock`] or by
    /// closing it.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Takes an exclusive lock on `path` (created if missing) within `wait`: `None` when
    /// another holder keeps it longer (a paused process, say), so no caller waits without
    /// limit on a lock file.
    pub fn exclusive_within(
        path: &Path,
        durability: Writes,
        wait: std::time::Duration,
    ) -> io::Result<Option<FileLock>> {
        let file = Self::open(path, durability)?;
        let deadline = std::time::Instant::now() + wait;
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FileLock { file })),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }

    /// Takes a shared lock on `path`, blocking while an exclusive holder has it. Readers
    /// share it; writers wait for them. The lock file is opened read-only, so a reader
    /// needs no write access; `None` (no lock needed) when there is no lock file and none
    /// can be made (its directory missing, a read-only root or a read-only user): then no
    /// writer can be writing either.
    pub fn shared(path: &Path, writes: Writes) -> io::Result<Option<FileLock>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let created = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(writes.file_mode)
                    .open(path);
                match created {
                    Ok(file) => file,
                    Err(e) if cannot_write(&e) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        file.lock_shared()?;
        Ok(Some(FileLock { file }))
    }

    /// The lock file, created (with its directory) if missing.
    fn open(path: &Path, durability: Writes) -> io::Result<File> {
        ensure_dir(parent(path)?, durability)?;
        open_rw(path, durability)
    }
}

/// Opens `path` for reading and writing, creating it (with the configured file mode)
/// if missing and keeping its content.
pub fn open_rw(path: &Path, durability: Writes) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(durability.file_mode)
        .open(path)
}

/// Reads a file from an offset without moving a cursor shared with other readers.
pub struct PositionedReader<'a> {
    /// The file.
    pub file: &'a File,
    /// Where the next read starts.
    pub offset: u64,
}

impl io::Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
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
pub fn write_counter(path: &Path, value: u64, durability: Writes) -> io::Result<()> {
    write_atomic(path, value.to_string().as_bytes(), durability)
}

/// Names of the subdirectories of `dir`, sorted, without hidden ones (`.…`): entries a
/// user or a tool left there (a stray file, `.DS_Store`) are not ours and are skipped.
pub fn list_dirs(dir: &Path) -> io::Result<Vec<String>> {
    list(dir, true)
}

/// Names in a directory, sorted, without temp files (`.…`); empty if it does not exist.
pub fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    list(dir, false)
}

fn list(dir: &Path, dirs_only: bool) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if dirs_only && !entry.file_type()?.is_dir() {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string()
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// How old a temp file or staging directory must be before [`remove_leftovers`] deletes
/// it: a live writer keeps one for milliseconds; one this old was left by a process that
/// died (or is paused so long that its unacknowledged write may fail).
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes what interrupted writes leave under `dir`, recursively: temp files of atomic
/// replaces (`.tmp*`), trash of atomic deletes (`.trash-*`) and staging copies
/// (`.copy-*`) older than [`LEFTOVER_AGE`]. Symbolic links are neither followed nor
/// removed. Returns how many entries were removed.
pub fn remove_leftovers(dir: &Path) -> io::Result<u64> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover =
            name.starts_with(".tmp") || name.starts_with(".trash-") || name.starts_with(".copy-");
        if !leftover {
            if kind.is_dir() {
                removed += remove_leftovers(&entry.path())?;
            }
            continue;
        }
        let old = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= LEFTOVER_AGE);
        if !old {
            continue;
        }
        let gone = if kind.is_dir() {
            fs::remove_dir_all(entry.path())
        } else {
            fs::remove_file(entry.path())
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
