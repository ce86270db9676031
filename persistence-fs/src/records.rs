//! Record files (session logs, pending writes): framing, batches, and the recovery rule
//! that tells a torn tail from corruption.
//!
//! A record is a 12-byte header — payload length (u32 LE; its top bit set means "more
//! records of this batch follow"), CRC32 of the payload (u32 LE), CRC32 of those 8 bytes
//! (u32 LE) — then the payload. A batch (one append, one `put_writes`) is its records up
//! to and including the first one without the top bit: the unit of recovery. Files
//! written before batches existed hold only single-record batches, so they read as before.
//!
//! After a crash, only a batch that never completed may be cut: its records past the
//! last complete batch, a record that runs past the end of the file, or an all-zero tail
//! (what a crash can leave after extending a file). A complete-length record whose
//! checksum fails, and damage with anything but zeros after it, is corruption: reported
//! with the file and offset, never skipped, never cut.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::os::unix::fs::OpenOptionsExt;

use crate::config::{Durability, Writes};

/// Header size of a record.
pub const HEADER: usize = 12;
/// Largest payload accepted in a record.
pub const MAX_RECORD: usize = 64 << 20;
/// The length field's bit meaning "more records of this batch follow".
const MORE: u32 = 1 << 31;

/// Appends the records of one batch (`payloads`, in order) to `out`.
pub fn frame_batch<'a>(payloads: impl ExactSizeIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let last = payloads.len().saturating_sub(1);
    for (i, payload) in payloads.enumerate() {
        frame(payload, i < last, out);
    }
}

fn frame(payload: &[u8], more: bool, out: &mut Vec<u8>) {
    let mut len = u32::try_from(payload.len()).unwrap_or(u32::MAX) & !MORE;
    if more {
        len |= MORE;
    }
    let crc = crc32fast::hash(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What lies at an offset of a record file; `P` is the payload (its bytes, or where
/// they lie in a buffer).
#[derive(Debug)]
pub enum RecordAt<P = Vec<u8>> {
    /// A valid record, the offset after it, and whether its batch continues after it.
    Valid {
        /// The payload.
        payload: P,
        /// Offset of the next record.
        end: u64,
        /// Whether more records of the same batch follow.
        more: bool,
    },
    /// End of file exactly.
    End,
    /// Not a record a crash can leave: corruption.
    Corrupt,
    /// What a crash in the middle of an append leaves: a record running past the end of
    /// the file, or only zeros from here to the end.
    Torn,
}

/// A record header that checks: payload size, whether its batch continues, payload CRC.
struct Header {
    size: usize,
    more: bool,
    crc: u32,
}

/// The header in `head`, or `None` when its own checksum fails.
fn decode_header(head: &[u8; HEADER]) -> Option<Header> {
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if crc32fast::hash(&head[..8]) != word(8) {
        return None;
    }
    let raw = word(0);
    Some(Header {
        size: (raw & !MORE) as usize,
        more: raw & MORE != 0,
        crc: word(4),
    })
}

/// Reads the record at `offset` of a file of length `len`.
pub fn read_record(file: &File, offset: u64, len: u64) -> io::Result<RecordAt> {
    if offset == len {
        return Ok(RecordAt::End);
    }
    if offset + HEADER as u64 > len {
        return Ok(RecordAt::Torn);
    }
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, offset)?;
    let Some(header) = decode_header(&head) else {
        return damaged(file, offset, len);
    };
    let end = offset + (HEADER + header.size) as u64;
    if header.size > MAX_RECORD {
        return Ok(RecordAt::Corrupt);
    }
    if end > len {
        // A valid header promising more bytes than the file has: cut short by a crash.
        return Ok(RecordAt::Torn);
    }
    let mut payload = vec![0u8; header.size];
    file.read_exact_at(&mut payload, offset + HEADER as u64)?;
    if crc32fast::hash(&payload) != header.crc {
        return Ok(RecordAt::Corrupt);
    }
    Ok(RecordAt::Valid {
        payload,
        end,
        more: header.more,
    })
}

/// [`read_record`] over a file already read into `buf`: the same rule, no I/O; the
/// payload is returned as its range in `buf`.
pub fn parse_record(buf: &[u8], offset: usize) -> RecordAt<std::ops::Range<usize>> {
    let rest = buf.get(offset..).unwrap_or_default();
    if rest.is_empty() {
        return RecordAt::End;
    }
    let Some(head) = rest.first_chunk::<HEADER>() else {
        return RecordAt::Torn;
    };
    let Some(header) = decode_header(head) else {
        return if rest.iter().all(|b| *b == 0) {
            RecordAt::Torn
        } else {
            RecordAt::Corrupt
        };
    };
    if header.size > MAX_RECORD {
        return RecordAt::Corrupt;
    }
    let Some(payload) = rest.get(HEADER..HEADER + header.size) else {
        return RecordAt::Torn;
    };
    if crc32fast::hash(payload) != header.crc {
        return RecordAt::Corrupt;
    }
    let start = offset + HEADER;
    RecordAt::Valid {
        payload: start..start + header.size,
        end: (start + header.size) as u64,
        more: header.more,
    }
}

/// A header that does not check: torn when only zeros follow, corrupt otherwise.
fn damaged(file: &File, offset: u64, len: u64) -> io::Result<RecordAt> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = offset;
    while at < len {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(RecordAt::Corrupt);
        }
        at += n as u64;
    }
    Ok(RecordAt::Torn)
}

/// The committed records of a file, in order, with their offsets.
#[derive(Debug, Default)]
pub struct Scan {
    /// `(offset, payload)` of every record of a complete batch.
    pub records: Vec<(u64, Vec<u8>)>,
    /// End of the last complete batch: where the file should end.
    pub committed_end: u64,
    /// The file's length as found.
    pub len: u64,
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading failed.
    #[error("reading failed")]
    Io(#[from] io::Error),
    /// Corruption at this offset.
    #[error("damaged record at offset {0}")]
    Corrupt(u64),
}

/// Scans a whole record file: every record of a complete batch, and where the last
/// complete batch ends (anything after it is a torn batch or tail, to be cut).
///
/// # Errors
/// [`ScanError::Corrupt`] at the first corrupt record.
pub fn scan(file: &File) -> Result<Scan, ScanError> {
    let len = file.metadata()?.len();
    let mut scan = Scan {
        len,
        ..Scan::default()
    };
    let mut batch = Vec::new();
    let mut offset = 0;
    loop {
        match read_record(file, offset, len)? {
            RecordAt::Valid { payload, end, more } => {
                batch.push((offset, payload));
                offset = end;
                if !more {
                    scan.records.append(&mut batch);
                    scan.committed_end = end;
                }
            }
            RecordAt::End | RecordAt::Torn => return Ok(scan),
            RecordAt::Corrupt => return Err(ScanError::Corrupt(offset)),
        }
    }
}

/// Where the records of a file lie, from their headers alone (payloads are neither read
/// nor checked): see [`skim`].
#[derive(Debug, Default)]
pub struct Skim {
    /// `(offset, payload size)` of every record of a complete batch.
    pub records: Vec<(u64, usize)>,
    /// End of the last complete batch, as [`Scan::committed_end`].
    pub committed_end: u64,
    /// The file's length as found.
    pub len: u64,
}

/// [`scan`] reading only the 12-byte headers: the same records and the same
/// torn-versus-corrupt rule for headers, but damage inside a payload goes unnoticed (the
/// caller reads and checks the payloads it needs with [`read_record`]).
///
/// # Errors
/// [`ScanError::Corrupt`] at the first damaged header.
pub fn skim(file: &File) -> Result<Skim, ScanError> {
    let len = file.metadata()?.len();
    let mut skim = Skim {
        len,
        ..Skim::default()
    };
    let mut batch = Vec::new();
    let mut offset = 0;
    while offset < len {
        if offset + HEADER as u64 > len {
            break;
        }
        let mut head = [0u8; HEADER];
        file.read_exact_at(&mut head, offset)?;
        let Some(header) = decode_header(&head) else {
            return match damaged(file, offset, len)? {
                RecordAt::Corrupt => Err(ScanError::Corrupt(offset)),
                _ => Ok(skim),
            };
        };
        if header.size > MAX_RECORD {
            return Err(ScanError::Corrupt(offset));
        }
        let end = offset + (HEADER + header.size) as u64;
        if end > len {
            break;
        }
        batch.push((offset, header.size));
        offset = end;
        if !header.more {
            skim.records.append(&mut batch);
            skim.committed_end = end;
        }
    }
    Ok(skim)
}

/// The committed records of a small record file (pending writes), cutting a torn batch
/// or tail when `repair` is set. A missing file has none.
///
/// # Errors
/// `Ok(Err(offset))` for corruption; I/O errors.
pub fn read_all(path: &Path, repair: bool) -> io::Result<Result<Vec<Vec<u8>>, u64>> {
    let file = match OpenOptions::new().read(true).write(repair).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(Vec::new())),
        Err(e) => return Err(e),
    };
    let scan = match scan(&file) {
        Ok(scan) => scan,
        Err(ScanError::Io(e)) => return Err(e),
        Err(ScanError::Corrupt(offset)) => return Ok(Err(offset)),
    };
    if repair && scan.committed_end < scan.len {
        file.set_len(scan.committed_end)?;
        file.sync_all()?;
    }
    Ok(Ok(scan.records.into_iter().map(|(_, p)| p).collect()))
}

/// Appends one batch of records to `path` (created if missing) and syncs it. On any
/// failure (a full disk, an I/O error) the file is cut back to its previous length, so
/// a failed batch leaves nothing behind.
pub fn append(path: &Path, bytes: &[u8], durability: Writes) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    crate::files::ensure_dir(dir, durability)?;
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(durability.file_mode)
        .open(path)?;
    let before = file.metadata()?.len();
    append_at(&file, before, bytes, durability.durability)?;
    if durability == Durability::Fsync && !existed {
        crate::files::sync_dir(dir)?;
    }
    Ok(())
}

/// What an append writes through: a [`File`], or in tests a writer that fails on cue
/// (a short write, `EIO`, a failing sync), so the cut-back path runs against real files.
pub trait RecordWriter {
    /// Writes some of `buf` at `offset`, returning how much (as `pwrite`).
    ///
    /// # Errors
    /// The write's I/O error.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes written data durable (`fdatasync`).
    ///
    /// # Errors
    /// The sync's I/O error.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len`.
    ///
    /// # Errors
    /// The truncate's I/O error.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl RecordWriter for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Writes all of `bytes` at `offset`, resuming after short writes.
pub fn write_all_at(file: &impl RecordWriter, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        match file.write_at(bytes, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file accepted no more bytes",
                ));
            }
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` at `offset` (the file's end) and syncs them; on failure (a short write
/// that cannot finish, `EIO`, `ENOSPC`, a failing sync) cuts the file back to `offset`
/// and returns the original error.
pub fn append_at(
    file: &impl RecordWriter,
    offset: u64,
    bytes: &[u8],
    durability: Durability,
) -> io::Result<()> {
    let written = write_all_at(file, bytes, offset).and_then(|()| {
        if durability == Durability::Fsync {
            file.sync_data()
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        // Best effort: if even this fails, recovery cuts the incomplete batch (a full
        // disk can always shrink a file).
        if file.set_len(offset).is_ok() && durability == Durability::Fsync {
            let _ = file.sync_data();
        }
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, bytes).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    fn batch(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_batch(payloads.iter().copied(), &mut out);
        out
    }

    /// Cutting a 3-record batch anywhere leaves exactly the earlier batches.
    #[test]
    fn a_torn_batch_is_cut_at_every_offset() {
        let mut bytes = batch(&[b"one"]);
        bytes.extend(batch(&[b"two", b"three"]));
        let committed = bytes.len();
        bytes.extend(batch(&[b"four", b"five", b"six"]));
        for cut in committed..bytes.len() {
            let (_tmp, file) = file_with(&bytes[..cut]);
            let scan = scan(&file).unwrap();
            let payloads: Vec<&[u8]> = scan.records.iter().map(|(_, p)| &p[..]).collect();
            assert_eq!(payloads, [&b"one"[..], b"two", b"three"], "cut at {cut}");
            assert_eq!(scan.committed_end, committed as u64, "cut at {cut}");
            let skim = skim(&file).unwrap();
            let offsets: Vec<u64> = scan.records.iter().map(|(o, _)| *o).collect();
            let skimmed: Vec<u64> = skim.records.iter().map(|(o, _)| *o).collect();
            assert_eq!(skimmed, offsets, "cut at {cut}");
            assert_eq!(skim.committed_end, committed as u64, "cut at {cut}");
        }
        let (_tmp, file) = file_with(&bytes);
        assert_eq!(scan(&file).unwrap().records.len(), 6);
    }

    /// A flipped byte in the last record is corruption, not a torn tail; trailing zeros
    /// are a torn tail.
    #[test]
    fn damage_at_the_end_is_corrupt_and_zeros_are_torn() {
        let mut bytes = batch(&[b"one"]);
        let last = bytes.len() as u64;
        bytes.extend(batch(&[b"two"]));
        for at in last as usize..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let (_tmp, file) = file_with(&damaged);
            assert!(
                matches!(scan(&file), Err(ScanError::Corrupt(o)) if o == last),
                "flip at {at}"
            );
        }
        let mut zeros = bytes.clone();
        zeros.extend([0u8; 100]);
        let (_tmp, file) = file_with(&zeros);
        let scan = scan(&file).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.committed_end, bytes.len() as u64);
    }

    /// A writer over a real file that accepts `accept` bytes (in pieces of at most
    /// `piece`, so short writes happen), then fails its writes with `EIO`; or fails its
    /// first sync.
    struct Faulty {
        file: File,
        accept: std::cell::Cell<usize>,
        piece: usize,
        fail_sync: std::cell::Cell<bool>,
    }

    impl RecordWriter for Faulty {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let left = self.accept.get();
            if left == 0 {
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
            let n = buf.len().min(left).min(self.piece);
            let n = FileExt::write_at(&self.file, &buf[..n], offset)?;
            self.accept.set(left - n);
            Ok(n)
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.fail_sync.replace(false) {
                return Err(io::Error::from_raw_os_error(5));
            }
            self.file.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }
    }

    /// A batch whose write fails part way (after short writes, with `EIO`) or whose sync
    /// fails leaves the file exactly as before, at every cut point; a retry then lands
    /// once.
    #[test]
    fn a_failed_write_or_sync_is_cut_back_at_every_point() {
        let committed = batch(&[b"one", b"two"]);
        let failed = batch(&[b"three", b"four", b"five"]);
        let cases = (0..failed.len()).map(|accept| (accept, false));
        for (accept, fail_sync) in cases.chain([(failed.len(), true)]) {
            let (tmp, _) = file_with(&committed);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(tmp.path())
                .unwrap();
            let faulty = Faulty {
                file,
                accept: accept.into(),
                piece: 7,
                fail_sync: fail_sync.into(),
            };
            let offset = committed.len() as u64;
            let err = append_at(&faulty, offset, &failed, Durability::Fsync).unwrap_err();
            assert_eq!(
                err.raw_os_error(),
                Some(5),
                "accept {accept}, sync {fail_sync}"
            );
            assert_eq!(
                std::fs::read(tmp.path()).unwrap(),
                committed,
                "accept {accept}"
            );
            faulty.accept.set(usize::MAX);
            append_at(&faulty, offset, &failed, Durability::Fsync).unwrap();
            let reread = File::open(tmp.path()).unwrap();
            let payloads: Vec<Vec<u8>> = scan(&reread)
                .unwrap()
                .records
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            assert_eq!(payloads, [&b"one"[..], b"two", b"three", b"four", b"five"]);
        }
    }

    /// A writer that accepts nothing at all is `WriteZero`, not a loop.
    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        struct Full(File);
        impl RecordWriter for Full {
            fn write_at(&self, _: &[u8], _: u64) -> io::Result<usize> {
                Ok(0)
            }
            fn sync_data(&self) -> io::Result<()> {
                self.0.sync_data()
            }
            fn set_len(&self, len: u64) -> io::Result<()> {
                self.0.set_len(len)
            }
        }
        let (tmp, _) = file_with(&batch(&[b"one"]));
        let full = Full(OpenOptions::new().write(true).open(tmp.path()).unwrap());
        let err = append_at(&full, 15, &batch(&[b"two"]), Durability::Fsync).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert_eq!(std::fs::read(tmp.path()).unwrap(), batch(&[b"one"]));
    }
}
