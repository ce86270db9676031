//! Configuration of the filesystem backend.

use std::path::PathBuf;

/// Whether writes wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every acknowledged write is on disk: files and directories are fsynced before a
    /// call returns. The default.
    #[default]
    Fsync,
    /// No fsync: a power loss or kernel crash can lose recent writes (a process crash
    /// cannot; the OS still has them). For tests and benchmarks.
    None,
}

/// Settings of [`FsBackend`](crate::FsBackend). Build with [`FsConfig::new`] and the
/// `with_*` methods (fields may be added).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FsConfig {
    /// Directory holding all data; created if missing (see
    /// [`create_if_missing`](Self::create_if_missing)). Nothing is written outside it.
    pub root: PathBuf,
    /// Default [`Durability::Fsync`].
    pub durability: Durability,
    /// Permission bits of every file the backend creates (before the umask). Default
    /// `0o600`: only the owner. `0o640` lets a group read the store (backups, a
    /// read-only reporting user).
    pub file_mode: u32,
    /// Permission bits of every directory the backend creates (before the umask).
    /// Default `0o700`.
    pub dir_mode: u32,
    /// Whether opening a root that holds no store makes one (the default). `false`
    /// makes [`FsBackend::open`](crate::FsBackend::open) answer `NotFound` instead and
    /// create nothing: for tools that only read, where a mistyped path should say so
    /// rather than show an empty store.
    pub create_if_missing: bool,
    /// The payload codec every call of the backend goes through (compression,
    /// encryption at rest; see [`with_codec`](Self::with_codec)). Default `None`:
    /// payloads are stored as given.
    #[cfg(feature = "codec")]
    pub codec: Option<persistence_codec::CodecConfig>,
}

impl FsConfig {
    /// Durable settings for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsConfig {
            root: root.into(),
            durability: Durability::Fsync,
            file_mode: 0o600,
            dir_mode: 0o700,
            create_if_missing: true,
            #[cfg(feature = "codec")]
            codec: None,
        }
    }
    /// Same settings, every payload (checkpoint state, pending write, store value,
    /// session event) compressed and encrypted by `config` on its way to disk and
    /// opened on its way back, bound to its row: every [`Checkpointer`], [`Store`] and
    /// [`SessionLog`] call of the opened backend goes through the codec (see
    /// `persistence-codec` for the format, what stays in clear and the threat model).
    /// The backend then declares no `search` unless `config` keeps fields in clear,
    /// and no `binary_payloads`. [`FsBackend::without_codec`](crate::FsBackend::without_codec)
    /// reads the stored form (for rekeying).
    ///
    /// [`Checkpointer`]: persistence_core::Checkpointer
    /// [`Store`]: persistence_core::Store
    /// [`SessionLog`]: persistence_core::SessionLog
    #[cfg(feature = "codec")]
    #[must_use]
    pub fn with_codec(mut self, config: persistence_codec::CodecConfig) -> Self {
        self.codec = Some(config);
        self
    }
    /// Same settings; whether a missing store is made (see
    /// [`create_if_missing`](Self::create_if_missing)).
    #[must_use]
    pub fn with_create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }
    /// Same root, other durability.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Same settings, other permission bits for new files and directories (see
    /// [`file_mode`](Self::file_mode), [`dir_mode`](Self::dir_mode)).
    #[must_use]
    pub fn with_modes(mut self, file_mode: u32, dir_mode: u32) -> Self {
        self.file_mode = file_mode;
        self.dir_mode = dir_mode;
        self
    }
}

/// How the file primitives write: sync or not, and the modes of what they create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Writes {
    pub durability: Durability,
    pub file_mode: u32,
    pub dir_mode: u32,
}

impl Writes {
    pub(crate) fn of(config: &FsConfig) -> Self {
        Writes {
            durability: config.durability,
            file_mode: config.file_mode,
            dir_mode: config.dir_mode,
        }
    }
    /// The same modes without syncing (for caches such as the session index).
    pub(crate) fn no_sync(self) -> Self {
        Writes {
            durability: Durability::None,
            ..self
        }
    }
}

impl PartialEq<Durability> for Writes {
    fn eq(&self, other: &Durability) -> bool {
        self.durability == *other
    }
}
