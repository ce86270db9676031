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
    /// Sessions have a life cycle: [`SessionLog::session_info`],
    /// [`SessionLog::close_session`] and [`SessionLog::compact`] work (they fail
    /// `Unsupported` otherwise).
    ///
    /// [`SessionLog::session_info`]: crate::SessionLog::session_info
    /// [`SessionLog::close_session`]: crate::SessionLog::close_session
    /// [`SessionLog::compact`]: crate::SessionLog::compact
    pub session_lifecycle: bool,
}

impl Capabilities {
    /// Nothing declared; declare features with the `with_*` builders, in a `const` too
    /// (a backend outside this workspace builds its own this way):
    ///
    /// ```
    /// use persistence_core::Capabilities;
    ///
    /// const MINE: Capabilities = Capabilities::none()
    ///     .with_ttl(true)
    ///     .with_durable(true);
    /// assert!(MINE.ttl && MINE.durable && !MINE.search);
    /// ```
    pub const fn none() -> Self {
        Capabilities {
            ttl: false,
            search: false,
            multi_process: false,
            cluster_safe: false,
            durable: false,
            session_lifecycle: false,
        }
    }
    /// Same, with [`ttl`](Self::ttl) set to `on`.
    #[must_use]
    pub const fn with_ttl(mut self, on: bool) -> Self {
        self.ttl = on;
        self
    }
    /// Same, with [`search`](Self::search) set to `on`.
    #[must_use]
    pub const fn with_search(mut self, on: bool) -> Self {
        self.search = on;
        self
    }
    /// Same, with [`multi_process`](Self::multi_process) set to `on`.
    #[must_use]
    pub const fn with_multi_process(mut self, on: bool) -> Self {
        self.multi_process = on;
        self
    }
    /// Same, with [`cluster_safe`](Self::cluster_safe) set to `on`.
    #[must_use]
    pub const fn with_cluster_safe(mut self, on: bool) -> Self {
        self.cluster_safe = on;
        self
    }
    /// Same, with [`durable`](Self::durable) set to `on`.
    #[must_use]
    pub const fn with_durable(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }
    /// Same, with [`session_lifecycle`](Self::session_lifecycle) set to `on`.
    #[must_use]
    pub const fn with_session_lifecycle(mut self, on: bool) -> Self {
        self.session_lifecycle = on;
        self
    }
}
