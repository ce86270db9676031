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

/// Settings of [`FsBackend`](crate::FsBackend).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Directory holding all data; created if missing. Nothing is written outside it.
    pub root: PathBuf,
    /// Default [`Durability::Fsync`].
    pub durability: Durability,
}

impl FsConfig {
    /// Durable settings for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsConfig {
            root: root.into(),
            durability: Durability::Fsync,
        }
    }
    /// Same root, other durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}
