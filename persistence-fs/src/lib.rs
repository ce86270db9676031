//! Filesystem backend: the embedded default. No server; data lives in one directory,
//! safe against process crashes and shared safely by several processes on one host.
//!
//! ```no_run
//! use persistence_fs::{FsBackend, FsConfig};
//! # fn main() -> persistence_core::Result<()> {
//! let backend = FsBackend::open(FsConfig::new("./data"))?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Versioned under `{root}/v1/`, one directory per tenant; see [`layout`] for the tree
//! and the id encoding (injective, lowercase, never `.`/`..`/`/`, hashed past 200 bytes).
//! Nothing is created outside the root.
//!
//! # Durability
//! With [`Durability::Fsync`] (default) a call returns only once its data is on disk:
//! whole files are replaced atomically (temp file in the same directory, write, fsync,
//! rename, fsync directory); a checkpoint is appended to its thread's redo journal
//! (`checkpoints/.journal`), which is fdatasynced, before its own file is written
//! without a sync: one flush per put instead of two. Each journal record names the
//! host's boot; the first reader or writer of the thread after a reboot replays the
//! journal (rewrites what a power loss took, `syncfs`) before anything is read, the next
//! writer completes a put whose writer died between its sync and its file, and the
//! journal is emptied after a `syncfs` every 64 records and before a prune (so nothing
//! pruned comes back; `syncfs` flushes the whole file system, so on one shared with
//! heavy writers that put also waits for their data). A store on a read-only mount answers `Unavailable` for a thread
//! whose journal needs a replay, until it is opened writable once; a process that
//! cannot read `/proc/sys/kernel/random/boot_id` writes no journal (two flushes per put).
//! Session logs and pending writes are append-only record
//! files (length + CRC32 + header CRC) fsynced after each append. A store item's file is
//! a log of its versions: a put appends one record, fdatasyncs it, then appends a commit
//! byte; readers (who take no lock) see only committed versions, so never a put before it
//! is durable. A record whose writer died before its commit byte counts once the item's
//! lock is free (an unacknowledged put may or may not take effect; once read it stays).
//! Past 64 KiB the file is replaced atomically by its latest version alone. Leases and
//! fence counters are the exception: never fsynced (see Locks for why that is safe).
//!
//! *All or nothing.* One append (or one `put_writes`) is one batch: every record but the
//! last of a batch has the top bit of its length set. After a crash only an incomplete
//! batch is cut (records past the last complete batch, a record running past the end of
//! the file, or an all-zero tail); a failed write (a full disk, an I/O error) is cut back
//! at once, so a retry never duplicates part of a batch.
//!
//! *Corruption is never silent.* A complete-length record whose checksum fails, or damage
//! followed by anything but zeros, is [`ErrorKind::Corrupt`](persistence_core::ErrorKind::Corrupt)
//! naming the file and offset: never skipped, never cut, and the file is not modified. The
//! session index (a cache, not fsynced) is written only after its batch is durable, so an
//! index listing records the log no longer holds (a log emptied or cut behind the
//! backend's back) is `Corrupt` rather than a session restarting at ordinal 1; reads
//! check every record's ordinal and rebuild an index that points elsewhere. A corrupt
//! store item fails listings with its key, and an unconditional put or a delete replaces
//! it. Damage in the middle of a log is found by the reads that reach it, by a full scan
//! after a crash, and by appends: the first append of a process to a session checks
//! every record once, later ones only the records added since (so damage to records a
//! running process has already checked is found by reads and by the next process).
//!
//! *Format.* [`FORMAT_VERSION`] 6: the `v1` tree with batch records (format 2),
//! catalogs (format 3), item logs (format 4), leases emptied on release and written
//! in place (format 5) and checkpoint journals (format 6), marked by an empty `{root}/v6`
//! directory that earlier versions refuse (`SchemaTooNew`): format 5 would not replay a
//! checkpoint journal after a power loss (and could miss acknowledged checkpoints),
//! format 4 would read a released lease as corrupt, format 3 would read an item
//! log as a corrupt item, format 2 would create entries without noting them in the
//! catalogs, format 1 would misread batches. Roots written before read as they are:
//! records without the batch bit are batches of one, each missing catalog is built from
//! one scan of its directory at its first listing, and an item stored whole (a JSON file)
//! reads as one committed version and becomes a log at its next put. Opening an older
//! root with this version adds the marker; do not open it with an older version
//! afterwards.
//!
//! # Concurrency
//! Every read-modify-write holds an flock (`std::fs::File::lock`) on the entry's lock
//! file, so tasks in one process and several processes sharing the root serialize
//! correctly; session ordinals stay gapless across processes. Session reads (`read`,
//! `head`, `list_sessions`) take the lock shared, so readers do not wait for each other;
//! they fall back to the exclusive lock when a torn tail must be repaired first.
//!
//! # Cancellation
//! Every operation runs its file system calls on tokio's blocking pool
//! (`spawn_blocking`). Dropping an operation's future (a `tokio::time::timeout` that
//! fires, a `select!` that takes another branch) stops the caller waiting, not the
//! operation: it runs to its end in the background, and a write may still land and be
//! read afterwards, as if it had finished just after the caller gave up. Callers that
//! give up on a write must treat its outcome as unknown (retry with the same checkpoint
//! id, expected head or CAS version, which make a repeat harmless). The flock an
//! operation holds is released when it ends. A runtime that
//! shuts down waits for running blocking tasks.
//!
//! # Locks
//! Leases are files holding `HOSTNAME@BOOT_ID@PID_NAMESPACE:PID:START_TIME` of the owning
//! process ([`ProcessIdentity`]; the start time from `/proc/<pid>/stat`, so a recycled PID
//! is not mistaken for the owner), a token, a fence and an expiry. A lease is free once
//! expired, or at once when its owner is proven dead: same host name, same boot, same PID
//! namespace, and no such process or only its zombie. A lease from another host, another
//! boot, another PID namespace (a second container of a Kubernetes pod shares the host
//! name, not the PIDs), from a process whose identity could not be read (warned through
//! `tracing`), or written by a version without namespaces, is never broken early. The
//! lock file guarding a lease is waited on for at most 500 ms (its holder may be paused),
//! so `acquire` keeps to its wait. Fence counters are separate files that only grow.
//!
//! Lease and fence files are written in place and never fsynced, whatever the
//! durability: a lock cycle costs no disk flush. A process crash keeps them (they are in
//! the page cache); a power loss or a crash of the host ends every process that could
//! hold one of its leases, and may leave a lease file gone, empty or older (read as
//! free: its holder is gone) and a fence counter gone, empty or older. Fences are
//! therefore one more than the counter and never less than the clock in microseconds,
//! so a fence handed out after the restart is above every fence handed out before,
//! provided the clock was not set back by more than the time since. A thread's or
//! session's highest fence seen is stored with its data (fsynced), so a writer holding
//! a fence from before is refused once the new holder has written (tested in
//! `tests/recovery.rs`). A root shared by processes on several hosts (a network
//! filesystem) gets the same fence guarantee from each host's clock, but a lease lost
//! by the file server's crash frees a lock whose holder still runs: its fenced writes
//! are refused only once the new holder writes.
//!
//! # The root
//! Nothing outside the root is ever written or read through it: a symbolic link below the
//! root (a directory or a session file replaced by a link) is refused with `Corrupt`
//! naming it (the root itself may be a link). The backend makes no link; a thread's
//! `checkpoints/.latest` written as a link by format 5 is read as text, never followed,
//! and replaced by a regular file at the next put. Every file the backend creates gets
//! [`FsConfig::file_mode`] (default `0600`) and every directory [`FsConfig::dir_mode`]
//! (default `0700`), less the process umask: only the owning user by default;
//! `with_modes(0o640, 0o750)` lets a group read (backups, a reporting user). Processes
//! writing one root must run as one user (or share a group and modes that let them). Readers need read access only (session readers open the lock file
//! read-only; a read-only mount reads everything). Entries this backend never writes (a
//! stray file, `.DS_Store`) are skipped by listings. `Maintenance::purge_expired` (run by
//! `persistence gc`) also deletes temp files, trash and staging copies left by
//! interrupted writes once they are ten minutes old, and rebuilds the catalogs from
//! their directories (dropping ids of entries that are gone).
//!
//! # Costs
//! `persistence bench --ops 1000 --tasks 1,8`, 2026-12-04, median of three runs, over
//! `write`+`fdatasync` at the same concurrency measured around each row: session append
//! 0.84× (1 task; 1.05 disk flushes per append) and 0.81× at 8 tasks on 8 sessions,
//! which is 2.9× the one-task raw rate. A process keeps the files of up to 64 sessions
//! it appends to open between appends (`session_log::append`): an append to one of them
//! makes 9 system calls (flock, three `statx` that show the files unchanged, one `pread`
//! of the last record, the write, the sync, the index entry, unlock) where the raw loop
//! makes 2; a first append opens and checks everything (about 36). Checkpoint put 0.18×
//! at one task (runs from 0.18× to 0.46×) and 0.16× at eight (1.04–1.07 flushes,
//! through the journal; it was 0.13× with 2.05 flushes before it): each checkpoint is
//! still a new file, and creating one costs 0.2–1.1 ms on that VM's root ext4 without
//! any sync (`raw new file (no sync)` in the bench; ext4 walks past every inode freed in
//! the last ~30 s to allocate one, and deletions there come by the thousand), against
//! 80–90 µs on a fresh loop-mounted ext4 on the same disk, where a put reached 0.67–0.75×
//! at one task and 0.48–0.54× at eight (three runs); its `.latest` pointer is a regular
//! file overwritten in place (no new inode, no rename, which made ext4 flush a regular
//! file); lock cycle 0.95× and 0.79× (no flush at all, see Locks).
//!
//! `get(Latest)` and `put` read the thread's `.latest` pointer, not its directory: flat
//! from 1 000 to 100 000 checkpoints (see the scale figures below). Listing threads,
//! sessions, namespaces and a namespace's items pages through a catalog (module
//! `catalog`: ids sorted on disk plus a journal of recent changes, folded in every 64
//! KiB), found by bisection: a page costs O(page) reads, memory is bounded by the page,
//! and the directories are not read (a test checks their access times). Each listed
//! entry is still opened to check it is live (a session's lock and log ends, an item's
//! file), which is what a full pass costs. Creating a thread, session or item pays for
//! the catalog: one more small append, fsynced with [`Durability::Fsync`], and a fold
//! of the catalog every few thousand creations. Namespaces are listed the same way,
//! from the tenant's namespace catalog (a namespace is noted with its first item; one
//! that holds only expired or deleted items is skipped by the page's check). A thread's
//! checkpoints are still listed by reading their directory's names for every page.
//! Reading a session from ordinal N seeks through a fixed-width offset index: the cost
//! does not grow with N. Store writes lock one item, not its namespace, and a put is one
//! append and one `fdatasync` (no rename, no directory fsync), so 8 tasks on distinct
//! keys overlap as far as the disk lets appends overlap. Nine `fs_bench --ops 2000`
//! runs on 2026-12-02 (six with `--dir /work`, three under `/tmp`, same ext4 disk): store
//! put from 1 to 8 tasks scaled 3.42× to 5.19× (median 4.18×; about 2 600–3 900/s at 1
//! task, 9 500–13 800/s at 8), while the bare append + fdatasync + commit byte to one of
//! 100 files (the same I/O without the store) scaled 3.39× to 5.33× (median 3.96×) and a
//! bare atomic replace (what a put did before format 4) 1.39–2.10×. A store put at 1
//! task runs at 0.58–0.88× the bare append. On 2026-12-01, with the same disk scaling
//! less (the bare append 2.08–3.45×), store put scaled 2.25–3.11×: the store follows the
//! disk. `fs_bench` prints the disk's flush requests per operation beside each row: 1.10
//! for a store put at 1 task (1.00 for the bare append, 2.00 for the atomic replace) and
//! 0.60–0.77 at 8 tasks (0.53–0.66 for the bare append: ext4 commits several fdatasyncs
//! in one journal flush). Sharing one fdatasync between several keys' puts (group
//! commit) would let 8 tasks go past what the disk gives separate files. The old format
//! measured 1 309/s at 1 task and no gain at 8. TTLs exist for store items and sessions;
//! checkpoint threads have none, so `purge_expired` never touches them.
//!
//! *Scale*, from `fs_bench --scale 100000` (`persistence_bench::scale`, the checks
//! `persistence bench --scale N` runs on every backend; a root without fsync, one task):
//!
//! | check | at 1 000 | at 100 000 | ratio (p50) |
//! |---|---|---|---|
//! | get latest on a thread of N checkpoints | 114 µs | 106 µs | 0.93× |
//! | put on a thread of N checkpoints | 853 µs | 844 µs | 0.99× |
//! | read 100 events after ordinal 1 000 / N − 1 000 | 524 µs | 522 µs | 1.00× |
//!
//! Paging through 100 000 sessions took 1.97 s in pages of 100 and 1.81 s in pages of
//! 1 000; through 100 000 items 1.93 s and 1.81 s (after one unmeasured pass; the first
//! pass after creating them all, with colder caches, takes about twice as long). Before
//! catalogs the pass over sessions took 105 s in pages of 100. A listing checks each
//! session without its lock, through descriptors: the tenant's sessions directory is
//! opened once per page and each session's index and log below it with
//! `openat2(RESOLVE_NO_SYMLINKS)`, the last record read in one `pread` (index entries are
//! written only once their batch is durable; an expired, emptied or inconsistent session
//! goes through the locked check). A catalog's journal is parsed once per process and
//! extended as it grows, so small pages cost little more per entry than large ones.
//! Earlier runs of the same checks gave ratios from 0.76× to 1.25×: within the machine's
//! noise, and within the 1.5× aimed for.
//!
//! # Performance
//! `cargo run --release -p persistence-fs --example fs_bench -- --ops 1000` on the project's
//! 2-core VM (ext4), one task, running the workload every backend runs
//! (`persistence_bench::workload`: checkpoints over 8 threads, store items over 100 keys,
//! a fresh lock name per cycle) beside a raw `write` + `fdatasync` loop of a 182-byte
//! record in the same run:
//!
//! | operation | Fsync ops/s | p50 | None ops/s | p50 |
//! |---|---|---|---|---|
//! | raw write + fdatasync (baseline) | 5 986 | 157 µs | | |
//! | session append, 1 event | 3 447 (0.58× raw) | 243 µs | 7 795 | 113 µs |
//! | session append, 100 events | 1 617 batches | 386 µs | 3 120 batches | 173 µs |
//! | checkpoint put | 777 | 1.31 ms | 1 535 | 690 µs |
//! | checkpoint get latest | 7 167 | 141 µs | 6 679 | 152 µs |
//! | store put (format 3: atomic replace) | 684 | 1.40 ms | 1 308 | 761 µs |
//! | store get | 18 973 | 55 µs | 14 825 | 68 µs |
//! | lock cycle (acquire + release, new lock) | 295 | 3.2 ms | 594 | 1.6 ms |
//!
//! The store put row is from before format 4. In a later run (raw loop at 4 550/s) a
//! store put, now one append, took 2 189/s with fsync (0.48× raw, p50 393 µs) and 7 367/s
//! without (p50 123 µs); store get 13 672/s (p50 70 µs).
//!
//! Reading 100 events after ordinal 999 000 of a 1 000 000-event session costs 0.93× the
//! same read after ordinal 1 000 (p50 276 µs vs 298 µs). An earlier run on a quieter
//! machine measured the raw loop at 9 266/s and the one-event append at 0.59× of it.
//!
//! A store item's log, rewritten once it passes 64 KiB, pays for an atomic replace: file fsync,
//! rename and directory fsync.
//!
//! # Encryption at rest
//! With the `codec` feature, `FsConfig::with_codec` names a `persistence-codec` codec
//! (zstd, AES-256-GCM under per-tenant, per-write keys, each payload bound to its row). The
//! opened backend then sends every [`Checkpointer`](persistence_core::Checkpointer),
//! [`Store`](persistence_core::Store) and [`SessionLog`](persistence_core::SessionLog) call
//! through it, so the backend value used directly stores sealed payloads (raw bytes after
//! each record's JSON): ids, ordinals, timestamps and checkpoint metadata stay in clear
//! (see the codec's docs for the full list and the threat model).
//! `FsBackend::without_codec` reads the stored form.
#![deny(missing_docs)]

/// Sends a trait call to the codec of `FsConfig::with_codec` when the backend has one
/// (it calls this backend again without the codec, storing the sealed payloads).
macro_rules! through_codec {
    ($self:ident . $part:ident () . $method:ident ($($arg:ident),*)) => {
        #[cfg(feature = "codec")]
        if let Some(sealed) = &$self.sealed {
            return sealed.$part().$method($($arg),*).await;
        }
    };
}

mod catalog;
mod checkpointer;
mod config;
mod error;
mod files;
mod item_file;
pub mod layout;
mod lock;
mod maintenance;
mod namespaces;
mod payload_record;
mod records;
mod session_log;
mod store;
mod verified;

use std::sync::Arc;

pub use config::{Durability, FsConfig};
pub use lock::ProcessIdentity;
use persistence_core::backend::FromStored;
use persistence_core::{Capabilities, Error, Result, TenantId};

use crate::error::{BACKEND, IoContext};
use crate::layout::Layout;

/// The on-disk format this code writes: the `v1` layout with batch records (see the
/// crate docs). A root holding a `vN` entry above it is refused with `SchemaTooNew`.
pub const FORMAT_VERSION: u32 = 6;

/// The filesystem backend. Clones share the same root.
#[derive(Clone, Debug)]
pub struct FsBackend {
    inner: Arc<Inner>,
    /// The codec of [`FsConfig::with_codec`], over a clone of this backend without one.
    #[cfg(feature = "codec")]
    sealed: Option<Arc<persistence_codec::SealedBackend>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) layout: Layout,
    pub(crate) durability: crate::config::Writes,
    pub(crate) me: ProcessIdentity,
    /// How much of each session log this process has checked (see [`verified`]).
    pub(crate) verified: verified::VerifiedLogs,
    /// The sessions this process keeps open between appends (see
    /// `session_log::append`).
    pub(crate) open_sessions: session_log::OpenSessions,
    /// What this process knows of each thread's checkpoint journal (see
    /// `checkpointer::journal`).
    pub(crate) journals: checkpointer::Journals,
    /// The sessions this process's live tails follow (see `session_log::changes`).
    pub(crate) changes: session_log::changes::SessionChanges,
}

impl Inner {
    /// `path`, once no component below the root is a symbolic link (see
    /// [`Layout::refuse_links`]).
    ///
    /// # Errors
    /// `Corrupt` naming the link.
    pub(crate) fn inside(&self, path: std::path::PathBuf) -> Result<std::path::PathBuf> {
        let root = self.layout.base().parent().unwrap_or(self.layout.base());
        self.inside_below(root, path)
    }

    /// [`Self::inside`] for the components of `path` below `checked`, a directory that
    /// passed it already.
    ///
    /// # Errors
    /// `Corrupt` naming the link.
    pub(crate) fn inside_below(
        &self,
        checked: &std::path::Path,
        path: std::path::PathBuf,
    ) -> Result<std::path::PathBuf> {
        match self.layout.refuse_links_below(checked, &path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(Error::corrupt(e.to_string()))
            }
            Err(e) => Err(crate::error::io_error(&path, e)),
        }
    }
}

impl Inner {
    /// The catalog of a tenant's threads.
    pub(crate) fn thread_catalog(&self, t: &TenantId) -> Result<catalog::Catalog> {
        let tenant = self.inside(self.layout.tenant(t))?;
        self.thread_catalog_in(&tenant, t)
    }
    /// [`Self::thread_catalog`] with the tenant's directory checked already.
    pub(crate) fn thread_catalog_in(
        &self,
        tenant: &std::path::Path,
        t: &TenantId,
    ) -> Result<catalog::Catalog> {
        let dir = self.inside_below(tenant, self.layout.thread_catalog(t))?;
        let entries = self.layout.threads(t);
        Ok(catalog::Catalog::new(dir, entries, self.durability))
    }
    /// The catalog of a tenant's sessions.
    pub(crate) fn session_catalog(&self, t: &TenantId) -> Result<catalog::Catalog> {
        let dir = self.inside(self.layout.session_catalog(t))?;
        let entries = self.layout.sessions(t);
        Ok(catalog::Catalog::new(dir, entries, self.durability))
    }
    /// Rebuilds every catalog of every tenant from scans of their directories (with the
    /// journals' changes on top), dropping ids whose entries are gone: part of
    /// `Maintenance::purge_expired`, so `persistence gc` tidies them.
    ///
    /// # Errors
    /// I/O errors.
    pub(crate) fn rebuild_catalogs(&self) -> Result<()> {
        let tenants = self.inside(self.layout.tenants())?;
        for name in files::list_dirs(&tenants).at(&tenants)? {
            let Ok(t) = TenantId::new(layout::decode(&name).unwrap_or_default()) else {
                continue;
            };
            self.thread_catalog(&t)?
                .rebuild(&|| self.thread_names(&t))?;
            self.session_catalog(&t)?
                .rebuild(&|| self.session_names(&t))?;
            self.rebuild_store_catalogs(&t)?;
        }
        Ok(())
    }

    /// The catalog of a namespace's items.
    pub(crate) fn item_catalog(
        &self,
        t: &TenantId,
        ns: &persistence_core::Namespace,
    ) -> Result<catalog::Catalog> {
        let dir = self.inside(self.layout.item_catalog(t, ns))?;
        let entries = self.layout.namespace(t, ns).join(layout::ITEMS_DIR);
        Ok(catalog::Catalog::new(dir, entries, self.durability))
    }
}

impl FsBackend {
    /// Opens (creating if needed) a backend rooted at `config.root`.
    ///
    /// # Errors
    /// `SchemaTooNew` if the root was written by a newer layout version; `NotFound` if it
    /// holds no store and [`FsConfig::create_if_missing`] is off (nothing is created);
    /// `Backend` for I/O errors creating it.
    pub fn open(config: FsConfig) -> Result<Self> {
        let opening = |e: Error| {
            if e.backend().is_empty() {
                e.context(BACKEND, "open", config.root.display())
            } else {
                e
            }
        };
        let layout = Layout::new(&config.root);
        for name in files::list_names(&config.root)
            .at(&config.root)
            .map_err(opening)?
        {
            if let Some(v) = name.strip_prefix('v').and_then(|v| v.parse::<u32>().ok())
                && v > FORMAT_VERSION
            {
                return Err(Error::schema_too_new(v, FORMAT_VERSION).context(
                    BACKEND,
                    "open",
                    config.root.display(),
                ));
            }
        }
        if !config.create_if_missing && !layout.base().is_dir() {
            return Err(opening(Error::not_found(format!(
                "no store at {}",
                config.root.display()
            ))));
        }
        let writes = crate::config::Writes::of(&config);
        files::ensure_dir(layout.base(), writes)
            .at(layout.base())
            .map_err(opening)?;
        // The marker that keeps versions before batch records from misreading this root
        // (they refuse any `vN` above 1). A read-only root needs none: nothing writes it.
        let marker = config.root.join(format!("v{FORMAT_VERSION}"));
        if let Err(e) = files::ensure_dir(&marker, writes)
            && !files::cannot_write(&e)
        {
            return Err(opening(crate::error::io_error(&marker, e)));
        }
        let backend = FsBackend {
            inner: Arc::new(Inner {
                layout,
                durability: writes,
                me: ProcessIdentity::current(),
                verified: verified::VerifiedLogs::default(),
                open_sessions: session_log::OpenSessions::default(),
                journals: checkpointer::Journals::default(),
                changes: session_log::changes::SessionChanges::default(),
            }),
            #[cfg(feature = "codec")]
            sealed: None,
        };
        #[cfg(feature = "codec")]
        if let Some(codec) = config.codec {
            let sealed = persistence_codec::SealedBackend::new(backend.clone(), codec);
            return Ok(FsBackend {
                sealed: Some(Arc::new(sealed)),
                ..backend
            });
        }
        Ok(backend)
    }

    /// The codec of [`FsConfig::with_codec`], if any: for
    /// [`rekey`](persistence_codec::rekey) and [`key_usage`](persistence_codec::key_usage)
    /// with [`without_codec`](Self::without_codec).
    #[cfg(feature = "codec")]
    pub fn codec(&self) -> Option<&Arc<persistence_codec::Codec>> {
        self.sealed.as_ref().map(|s| s.codec())
    }

    /// The same root without the codec of [`FsConfig::with_codec`]: its calls store and
    /// return payloads as given, so it reads what the codec stored (sealed).
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn without_codec(&self) -> Self {
        FsBackend {
            inner: self.inner.clone(),
            sealed: None,
        }
    }

    /// TTL, search, multi-process, session life cycle, replacing payloads and binary
    /// payloads (stored raw after a record's JSON); durable with [`Durability::Fsync`].
    ///
    /// Through a codec (`FsConfig::with_codec`): no `binary_payloads`, and no
    /// `search` unless the codec keeps fields in clear.
    pub fn capabilities(&self) -> Capabilities {
        #[cfg(feature = "codec")]
        if let Some(sealed) = &self.sealed {
            use persistence_core::Maintenance;
            return sealed.maintenance().capabilities();
        }
        let mut caps = Capabilities::none();
        caps.lifecycle = true;
        caps.replace = true;
        caps.binary_payloads = true;
        caps.ttl = true;
        caps.search = true;
        caps.multi_process = true;
        caps.durable = self.inner.durability == Durability::Fsync;
        caps
    }

    /// Tenants with a directory under the root, ascending.
    ///
    /// # Errors
    /// `Backend` if the directory cannot be read; `Corrupt` for a name that does not
    /// decode to a valid tenant id.
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        self.run("tenants", String::new(), |inner| {
            let dir = inner.inside(inner.layout.tenants())?;
            let mut tenants = Vec::new();
            // Files and names this backend never writes (`.DS_Store`, a stray file) are
            // not tenants; a directory named like one whose id is invalid is corrupt.
            for name in files::list_dirs(&dir).at(&dir)? {
                let Some(decoded) = layout::decode(&name) else {
                    continue;
                };
                tenants.push(TenantId::from_stored(decoded).map_err(|e| {
                    Error::corrupt(format!(
                        "{name:?} in {} is not a valid tenant id: {}",
                        dir.display(),
                        e.message()
                    ))
                })?);
            }
            tenants.sort();
            Ok(tenants)
        })
        .await
    }

    /// The root's versioned layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Runs blocking file work off the async runtime and labels its errors.
    pub(crate) async fn run<T, F>(&self, operation: &'static str, key: String, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let outcome = tokio::task::spawn_blocking(move || work(&inner)).await;
        let result = outcome.unwrap_or_else(|e| {
            Err(Error::backend_error(format!(
                "file operation did not complete: {e}"
            )))
        });
        result.map_err(|e| {
            if e.backend().is_empty() {
                e.context(BACKEND, operation, key)
            } else {
                e
            }
        })
    }
}
