//! Push for live tails: a waiter watches the session's directory with inotify (its
//! parent, the tenant's sessions directory, while the session does not exist yet), so
//! an append by any process on the host (a write to `log`), a trim or compaction (a
//! rename into the directory), a close or a delete wakes it at once.
//!
//! The watch is made before the head is looked at, so a change after the look is never
//! missed. Where inotify is not available (another OS, a runtime without I/O, a
//! network filesystem that does not report other hosts' writes: not supported anyway)
//! the wait is the poll interval.

use std::path::Path;
use std::time::Duration;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

/// An inotify descriptor watching `dir` (or, when it does not exist, its parent) for
/// changes of what is in it.
fn watch(dir: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    let flags = WatchFlags::MODIFY
        | WatchFlags::CREATE
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW;
    match inotify::add_watch(&fd, dir, flags) {
        Ok(_) => {}
        Err(rustix::io::Errno::NOENT) => {
            let parent = dir.parent().unwrap_or(dir);
            inotify::add_watch(&fd, parent, flags)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(fd)
}

/// A watch on a session's directory, made before the caller looks at the head.
pub(crate) struct SessionWatch {
    fd: Option<std::os::fd::OwnedFd>,
}

impl SessionWatch {
    /// Starts watching `dir`; without inotify, a watch that only times out.
    pub(crate) fn start(dir: &Path) -> Self {
        SessionWatch {
            fd: watch(dir).ok(),
        }
    }

    /// Waits for a change in the directory, or `timeout`: a `poll(2)` of the inotify
    /// descriptor on a blocking thread (the fs backend's operations run on them too).
    /// Dropping the future leaves that thread to finish its wait, `timeout` at most.
    pub(crate) async fn wait(self, timeout: Duration) {
        let Some(fd) = self.fd else {
            tokio::time::sleep(timeout).await;
            return;
        };
        let waited = tokio::task::spawn_blocking(move || {
            use rustix::event::{PollFd, PollFlags, Timespec};
            let limit = Timespec {
                tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(timeout.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let _ = rustix::event::poll(&mut fds, Some(&limit));
        })
        .await;
        if waited.is_err() {
            tokio::time::sleep(timeout).await;
        }
    }
}
