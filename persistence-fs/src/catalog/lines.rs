//! The catalog's on-disk lines and how a page walks them: `sorted` lines (`id\tcrc`),
//! journal lines (`\n±id\tcrc\n`), bisection to a page's first line, and the merge of
//! `sorted` with the journal's changes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead};
use std::ops::Bound;
use std::os::unix::fs::FileExt;

use super::Range;
use crate::files;

/// A line of `sorted`: the id and the CRC32 of it, so a read that reaches a damaged
/// line knows (and the catalog is rebuilt from its directory).
pub(super) fn sorted_line(id: &str) -> String {
    format!("{id}\t{:08x}\n", crc32fast::hash(id.as_bytes()))
}

/// The id of a line of `sorted`; `InvalidData` when its checksum fails.
pub(super) fn parse_sorted_line(line: &[u8]) -> io::Result<String> {
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

pub(super) fn journal_line(op: char, id: &str) -> String {
    let body = format!("{op}{id}");
    format!("\n{body}\t{:08x}\n", crc32fast::hash(body.as_bytes()))
}

pub(super) fn parse_journal_line(line: &[u8]) -> Option<(u8, &str)> {
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
pub(super) fn scanned(mut ids: Vec<String>, range: Range<'_>, n: usize) -> Vec<String> {
    ids.retain(|id| !range.before(id) && !range.past(id));
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(n);
    ids
}

/// The byte offset in `sorted` of the first line not before `range`.
pub(super) fn bisect(sorted: &File, range: Range<'_>) -> io::Result<u64> {
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
pub(super) fn line_start_at_or_after(file: &File, from: u64, limit: u64) -> io::Result<u64> {
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
pub(super) fn line_at(file: &File, at: u64) -> io::Result<(String, u64)> {
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
pub(super) fn merge(
    sorted: &File,
    start: u64,
    changes: &BTreeMap<String, bool>,
    range: Range<'_>,
    lines_wanted: usize,
    take: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    // Read about what the page needs (lines are short), not a fixed 64 KiB per page.
    let capacity = lines_wanted.saturating_mul(64).clamp(4 << 10, 64 << 10);
    let mut reader = io::BufReader::with_capacity(
        capacity,
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
pub(super) fn merge_iter(
    base: impl Iterator<Item = io::Result<String>>,
    changes: &BTreeMap<String, bool>,
    range: Range<'_>,
    mut take: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    let mut base = base.peekable();
    // The changes from the range's start on (the filter keeps exactly the range's).
    let start = match range.after {
        Some(after) if after >= range.prefix => Bound::Excluded(after),
        _ => Bound::Included(range.prefix),
    };
    let mut changed = changes
        .range::<str, _>((start, Bound::Unbounded))
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
