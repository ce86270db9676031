//! The lock-free check a listing makes of each session: its index's last entry names a
//! valid record that ends a batch and has not expired. Index entries are written only
//! after their batch is durable, so such a record is acknowledged and the session
//! exists; anything else (no index, an emptied log, an expired session, a torn or stale
//! index, damage) sends the listing to the locked check, which repairs or reports it.
//!
//! A page opens the tenant's sessions directory once ([`SessionsDir`]) and opens each
//! session's index and log relative to it with `openat2(RESOLVE_NO_SYMLINKS)`: two short
//! walks per file instead of a check of every component of two long paths, and no link
//! is ever followed (an open through one fails, and the locked check reports the link).
//! Where `openat2` is missing (Linux before 5.6, or refused by a seccomp filter) the
//! same check runs on paths.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use persistence_core::{Result, SessionKey, TenantId, Timestamp};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::recovery::StoredEventMeta;
use super::{INDEX, LOG, SessionDirs, read_index_entry};
use crate::Inner;
use crate::layout::encode;
use crate::records::{self, RecordAt};

/// Bytes read at a session's last record in one `pread`: records longer than this are
/// checked by path (one more read).
const PROBE_READ: usize = 4096;

/// Whether `openat2` failed as unsupported once in this process (then paths are used).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// What the descriptor-relative check found.
pub(super) enum Probe {
    /// Live and acknowledged: list it.
    Listed,
    /// Take the locked check.
    Check,
    /// Not decided here (no directory descriptor, no `openat2`, a long record): check by
    /// path.
    ByPath,
}

/// Whether the last record's `payload` shows a listable session at `now`.
fn listable(payload: &[u8], now: Timestamp) -> bool {
    let (json, _) = persistence_core::backend::split_bytes(payload);
    serde_json::from_slice::<StoredEventMeta>(json)
        .is_ok_and(|meta| meta.seq > 0 && meta.exp.is_none_or(|e| e > now))
}

/// Opens `{session}/{file}` below `dir` without following any link: `None` when
/// `openat2` is unavailable (remembered for the process), `Some(Err)` when the open
/// fails (missing, a link, anything else: the caller's locked check says which).
fn open_below(dir: &OwnedFd, session: &str, file: &str) -> Option<Result<File, ()>> {
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat2(dir, format!("{session}/{file}"), flags, Mode::empty(), how) {
        Ok(fd) => Some(Ok(File::from(fd))),
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            None
        }
        Err(_) => Some(Err(())),
    }
}

/// A tenant's sessions directory, opened once per listed page.
pub(super) struct SessionsDir {
    fd: Option<OwnedFd>,
}

impl SessionsDir {
    /// Opens `path` (checked for links by the caller; a link here is refused too). A
    /// directory that cannot be opened leaves every check to paths.
    pub(super) fn open(path: &Path) -> SessionsDir {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).ok();
        SessionsDir {
            fd: fd.filter(|_| !NO_OPENAT2.load(Ordering::Relaxed)),
        }
    }

    /// The lock-free check of session `s` at `now`.
    pub(super) fn probe(&self, s: &SessionKey, now: Timestamp) -> Probe {
        let Some(dir) = &self.fd else {
            return Probe::ByPath;
        };
        let name = encode(s.as_str());
        let (index, log) = match (open_below(dir, &name, INDEX), open_below(dir, &name, LOG)) {
            (Some(Ok(index)), Some(Ok(log))) => (index, log),
            (None, _) | (_, None) => return Probe::ByPath,
            _ => return Probe::Check,
        };
        let Ok(index_len) = rustix::fs::seek(&index, rustix::fs::SeekFrom::End(0)) else {
            return Probe::Check;
        };
        if index_len == 0 || index_len % 8 != 0 {
            return Probe::Check;
        }
        let Ok(last) = read_index_entry(&index, index_len / 8 - 1) else {
            return Probe::Check;
        };
        let mut buf = [0u8; PROBE_READ];
        let Ok(n) = rustix::io::pread(&log, &mut buf[..], last) else {
            return Probe::Check;
        };
        // Fewer bytes than asked for means the read reached the end of the log.
        match records::parse_record(&buf[..n], 0) {
            RecordAt::Valid {
                payload,
                more: false,
                ..
            } if listable(&buf[payload.clone()], now) => Probe::Listed,
            RecordAt::Torn if n == PROBE_READ => Probe::ByPath,
            _ => Probe::Check,
        }
    }
}

impl Inner {
    /// Whether a listing can show session `s` without taking its lock: its index's last
    /// entry names a valid record that ends a batch within the log and has not expired.
    /// Index entries are written only after their batch is durable, so such a record is
    /// acknowledged and the session exists. `false` sends the caller to the locked check
    /// (no index, an emptied log, an expired session, a torn or stale index, damage).
    ///
    /// # Errors
    /// A symbolic link below the root (`Corrupt`), as every access.
    pub(super) fn listed_unlocked(
        &self,
        dirs: &SessionDirs,
        t: &TenantId,
        s: &SessionKey,
    ) -> Result<bool> {
        let dir = self.inside_below(&dirs.sessions, self.layout.session(t, s))?;
        let index_path = self.inside_below(&dir, dir.join(INDEX))?;
        let log_path = self.inside_below(&dir, dir.join(LOG))?;
        let (Ok(index), Ok(log)) = (File::open(&index_path), File::open(&log_path)) else {
            return Ok(false);
        };
        let (Ok(index_len), Ok(log_len)) = (
            index.metadata().map(|m| m.len()),
            log.metadata().map(|m| m.len()),
        ) else {
            return Ok(false);
        };
        if index_len == 0 || index_len % 8 != 0 {
            return Ok(false);
        }
        let Ok(last) = read_index_entry(&index, index_len / 8 - 1) else {
            return Ok(false);
        };
        let Ok(RecordAt::Valid {
            payload,
            end,
            more: false,
        }) = records::read_record(&log, last, log_len)
        else {
            return Ok(false);
        };
        Ok(end <= log_len && listable(&payload, Timestamp::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use persistence_core::{AppendOptions, Envelope, ErrorKind, SessionLog};

    use super::*;
    use crate::{FsBackend, FsConfig};

    /// The descriptor-relative check agrees with the check by path on every kind of
    /// session a listing meets, and falls back to paths where it cannot decide.
    #[tokio::test]
    async fn the_descriptor_check_agrees_with_the_path_check() {
        let root = tempfile::tempdir().unwrap();
        let backend = FsBackend::open(FsConfig::new(root.path())).unwrap();
        let t = TenantId::new("t").unwrap();
        let key = |name: &str| SessionKey::new(name).unwrap();
        let append = |s: SessionKey, data: serde_json::Value, ttl: Option<Duration>| {
            let backend = backend.clone();
            let t = t.clone();
            async move {
                let options = AppendOptions::default().with_ttl(ttl);
                backend
                    .append(&t, &s, vec![Envelope::new(1, data)], options)
                    .await
                    .unwrap();
            }
        };
        append(key("live"), serde_json::json!(1), None).await;
        append(
            key("ttl"),
            serde_json::json!(1),
            Some(Duration::from_secs(3600)),
        )
        .await;
        append(key("long"), serde_json::json!("x".repeat(PROBE_READ)), None).await;
        append(key("outside"), serde_json::json!(1), None).await;
        let inner = &backend.inner;
        let dirs = inner.session_dirs(&t).unwrap();
        // A session directory replaced by a link to one outside the root.
        let outside = tempfile::tempdir().unwrap();
        let linked = inner.layout.session(&t, &key("outside"));
        std::fs::rename(&linked, outside.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("moved"), &linked).unwrap();

        let fds = SessionsDir::open(&dirs.sessions);
        let now = Timestamp::now();
        let later = now.saturating_add(Duration::from_secs(7200));
        for (name, at, want) in [
            ("live", now, Some(true)),
            ("live", later, Some(true)),
            ("ttl", now, Some(true)),
            ("ttl", later, Some(false)),
            ("long", now, None),
            ("outside", now, Some(false)),
            ("missing", now, Some(false)),
        ] {
            let got = match fds.probe(&key(name), at) {
                Probe::Listed => Some(true),
                Probe::Check => Some(false),
                Probe::ByPath => None,
            };
            assert_eq!(got, want, "{name}");
        }
        for name in ["live", "ttl", "long", "missing"] {
            let by_path = inner.listed_unlocked(&dirs, &t, &key(name)).unwrap();
            assert_eq!(by_path, name != "missing", "{name}");
        }
        let e = inner
            .listed_unlocked(&dirs, &t, &key("outside"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        // Without `openat2`, every check goes by path.
        NO_OPENAT2.store(true, Ordering::Relaxed);
        assert!(matches!(
            SessionsDir::open(&dirs.sessions).probe(&key("live"), now),
            Probe::ByPath
        ));
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }
}
