//! Push for live tails: one watcher per followed session and process watches the
//! session's directory with inotify (its parent, the tenant's sessions directory, while
//! the session does not exist yet), so an append by any process on the host (a write to
//! `log`), a trim or compaction (a rename into the directory), a close or a delete wakes
//! every waiter of the session at once. However many subscribers follow a session, the
//! process has one watch and one thread polling it; the thread ends once nobody has
//! waited for a moment ([`IDLE_EXIT`]).
//!
//! After each change the watcher makes a new watch before it wakes the waiters (so a
//! session created meanwhile is watched itself), and a waiter registers before it looks
//! at the head, so a change after the look is never missed. Where inotify is not
//! available (another OS, a network filesystem that does not report other hosts'
//! writes: not supported anyway) the wait is the poll interval.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use persistence_core::backend::SharedCalls;
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::sync::Notify;

/// How long a watcher polls between looks at whether anyone still waits.
const IDLE_EXIT: Duration = Duration::from_millis(200);

/// An inotify descriptor watching `dir` (or, when it does not exist, its parent) for
/// changes of what is in it.
fn watch(dir: &Path) -> std::io::Result<OwnedFd> {
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

/// Whether `fd` has events within `timeout` (`poll(2)`).
fn readable(fd: &OwnedFd, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let limit = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    matches!(rustix::event::poll(&mut fds, Some(&limit)), Ok(n) if n > 0)
}

/// The waiters of one session's directory.
#[derive(Debug)]
pub(crate) struct SessionWatcher {
    notify: Notify,
    /// Its thread ended for want of a watch: a new waiter makes a new watcher.
    ended: AtomicBool,
}

impl SessionWatcher {
    /// The notifier its waiters register with.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

/// The watchers of the sessions this process follows, by directory, and the head looks
/// their waiters share.
#[derive(Debug, Default)]
pub(crate) struct SessionChanges {
    watchers: Mutex<HashMap<PathBuf, Weak<SessionWatcher>>>,
    /// Head reads of waiters, by session directory: the waiters woken by one change
    /// look at the head once.
    pub(crate) heads: SharedCalls<PathBuf, u64>,
}

impl SessionChanges {
    /// The watcher of `dir`, started if nobody follows it yet; `None` without inotify
    /// (or without a runtime to run its thread on).
    pub(crate) fn watcher(&self, dir: &Path) -> Option<Arc<SessionWatcher>> {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(watcher) = watchers.get(dir).and_then(Weak::upgrade)
            && !watcher.ended.load(Ordering::Acquire)
        {
            return Some(watcher);
        }
        watchers.retain(|_, w| w.strong_count() > 0);
        let fd = watch(dir).ok()?;
        let watcher = Arc::new(SessionWatcher {
            notify: Notify::new(),
            ended: AtomicBool::new(false),
        });
        let (weak, dir_owned) = (Arc::downgrade(&watcher), dir.to_path_buf());
        tokio::runtime::Handle::try_current()
            .ok()?
            .spawn_blocking(move || run(&weak, &dir_owned, fd));
        watchers.insert(dir.to_path_buf(), Arc::downgrade(&watcher));
        Some(watcher)
    }
}

/// A watcher's thread: on each change, a new watch (the session's directory once it
/// exists), then every waiter woken; ends when the watcher is dropped.
fn run(watcher: &Weak<SessionWatcher>, dir: &Path, mut fd: OwnedFd) {
    loop {
        let changed = readable(&fd, IDLE_EXIT);
        let Some(alive) = watcher.upgrade() else {
            return;
        };
        if !changed {
            continue;
        }
        // The new watch first: a change from here on is seen by it.
        match watch(dir) {
            Ok(fresh) => fd = fresh,
            Err(_) => {
                // No watch to be had (the tenant's directory is gone too): the
                // waiters look again, and the next one makes a new watcher.
                alive.ended.store(true, Ordering::Release);
                alive.notify.notify_waiters();
                return;
            }
        }
        alive.notify.notify_waiters();
    }
}
