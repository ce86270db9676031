//! What a backend can do, so callers and the conformance suite can tell "unsupported"
//! from "broken".

/// Who deletes data whose time is up: expired items and sessions, checkpoints past their
/// retention. Expired data is hidden from every read at once either way; this says when
/// its storage is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Enforcement {
    /// A sweep deletes it: the facade's `Sweeper`, `persistence gc`,
    /// [`Maintenance::purge_expired`](crate::Maintenance::purge_expired) or
    /// [`Checkpointer::apply_retention`](crate::Checkpointer::apply_retention). Until one
    /// runs, it keeps its space.
    #[default]
    Sweeper,
    /// The backend (or its server) deletes it by itself, e.g. Redis key expiry; a sweep
    /// only tidies what it leaves behind (index entries) and names what went.
    Backend,
}

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
    /// Sessions have a life cycle and checkpoints a retention: [`SessionLog::session_info`],
    /// [`SessionLog::close_session`], [`SessionLog::compact`] and
    /// [`Checkpointer::prune_through`] (which age and TTL retention need) and store reads
    /// that restart an item's TTL ([`GetItemOptions::refresh_ttl`],
    /// [`SearchItems::refresh_ttl`]) work; they fail `Unsupported` otherwise.
    ///
    /// [`SessionLog::session_info`]: crate::SessionLog::session_info
    /// [`SessionLog::close_session`]: crate::SessionLog::close_session
    /// [`SessionLog::compact`]: crate::SessionLog::compact
    /// [`Checkpointer::prune_through`]: crate::Checkpointer::prune_through
    /// [`Checkpointer::apply_retention`]: crate::Checkpointer::apply_retention
    /// [`GetItemOptions::refresh_ttl`]: crate::GetItemOptions::refresh_ttl
    /// [`SearchItems::refresh_ttl`]: crate::SearchItems::refresh_ttl
    pub lifecycle: bool,
    /// Stored payloads can be replaced in place, compared with what was read:
    /// [`Checkpointer::replace_payload`](crate::Checkpointer::replace_payload) and
    /// [`SessionLog::replace_event`](crate::SessionLog::replace_event) work (they fail
    /// `Unsupported` otherwise). What re-encrypting stored rows (the codec's rekey)
    /// needs.
    pub replace: bool,
    /// Every write keeps an [`Envelope::bytes`](crate::Envelope::bytes) as raw bytes
    /// (not base64 in JSON) and every read returns them: the codec stores ciphertext
    /// there, a third smaller than as base64. Without it the codec keeps its ciphertext
    /// as base64 in the envelope's data, and the backend keeps bytes in a larger
    /// encoding or refuses them `InvalidInput` (the conformance suite checks it never
    /// drops them).
    pub binary_payloads: bool,
    /// Who deletes expired store items.
    pub item_expiry: Enforcement,
    /// Who deletes expired sessions.
    pub session_expiry: Enforcement,
    /// Who deletes checkpoints and threads past their [`Retention`](crate::Retention):
    /// no built-in backend does it by itself.
    pub checkpoint_retention: Enforcement,
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
            lifecycle: false,
            replace: false,
            binary_payloads: false,
            item_expiry: Enforcement::Sweeper,
            session_expiry: Enforcement::Sweeper,
            checkpoint_retention: Enforcement::Sweeper,
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
    /// Same, with [`lifecycle`](Self::lifecycle) set to `on`.
    #[must_use]
    pub const fn with_lifecycle(mut self, on: bool) -> Self {
        self.lifecycle = on;
        self
    }
    /// Same, with [`replace`](Self::replace) set to `on`.
    #[must_use]
    pub const fn with_replace(mut self, on: bool) -> Self {
        self.replace = on;
        self
    }
    /// Same, with [`binary_payloads`](Self::binary_payloads) set to `on`.
    #[must_use]
    pub const fn with_binary_payloads(mut self, on: bool) -> Self {
        self.binary_payloads = on;
        self
    }
    /// Same, with [`item_expiry`](Self::item_expiry) enforced by `by`.
    #[must_use]
    pub const fn with_item_expiry(mut self, by: Enforcement) -> Self {
        self.item_expiry = by;
        self
    }
    /// Same, with [`session_expiry`](Self::session_expiry) enforced by `by`.
    #[must_use]
    pub const fn with_session_expiry(mut self, by: Enforcement) -> Self {
        self.session_expiry = by;
        self
    }
    /// Same, with [`checkpoint_retention`](Self::checkpoint_retention) enforced by `by`.
    #[must_use]
    pub const fn with_checkpoint_retention(mut self, by: Enforcement) -> Self {
        self.checkpoint_retention = by;
        self
    }
}
