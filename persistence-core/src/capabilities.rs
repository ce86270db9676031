//! What a backend can do, so callers and the conformance suite can tell "unsupported"
//! from "broken".

/// Features a backend declares. Checks that need a feature are skipped, with a printed
/// reason, on backends that do not declare it; everything else must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Store items and sessions can expire (TTL) and `purge_expired` removes them.
    pub ttl: bool,
    /// `Store::search` with JSON filters is implemented.
    pub search: bool,
    /// Several OS processes may share the same data safely.
    pub multi_process: bool,
    /// Works on a sharded deployment (e.g. Redis Cluster).
    pub cluster_safe: bool,
    /// Acknowledged writes survive a process crash.
    pub durable: bool,
}

impl Capabilities {
    /// Nothing declared; set fields to declare features.
    pub fn none() -> Self {
        Self::default()
    }
}
