//! [`SealedBackend`]: the sealed traits of one backend, for a backend whose own config
//! names a codec.

use std::sync::Arc;

use persistence_core::{Checkpointer, Maintenance, SessionLog, Store};

use crate::{
    Codec, CodecConfig, SealedCheckpointer, SealedMaintenance, SealedSessions, SealedStore,
};

/// The payload traits of one backend under one codec: what the built-in backends route
/// every payload call to when their config names a codec (`FsConfig::with_codec`,
/// `PgConfig::with_codec`, `RedisConfig::with_codec`). A third-party backend can offer
/// the same option with it: build one over a clone of itself that has no codec, and
/// send each call of its [`Checkpointer`], [`Store`] and [`SessionLog`] impls (and
/// [`Maintenance::capabilities`]) to it.
#[derive(Clone)]
pub struct SealedBackend {
    checkpointer: SealedCheckpointer,
    store: SealedStore,
    sessions: SealedSessions,
    maintenance: SealedMaintenance,
    codec: Arc<Codec>,
}

impl std::fmt::Debug for SealedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBackend")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl SealedBackend {
    /// `raw` (a backend value whose calls store payloads as given) seen through the
    /// codec of `config`, which stores sealed bytes raw when `raw` declares
    /// [`binary_payloads`](persistence_core::Capabilities::binary_payloads)
    /// ([`Codec::for_backend`]).
    pub fn new<B>(raw: B, config: CodecConfig) -> Self
    where
        B: Checkpointer + Store + SessionLog + Maintenance + Clone + 'static,
    {
        let codec = Codec::for_backend(config, &raw.capabilities());
        SealedBackend {
            checkpointer: SealedCheckpointer::new(Arc::new(raw.clone()), codec.clone()),
            store: SealedStore::new(Arc::new(raw.clone()), codec.clone()),
            sessions: SealedSessions::new(Arc::new(raw.clone()), codec.clone()),
            maintenance: SealedMaintenance::new(Arc::new(raw), codec.clone()),
            codec,
        }
    }

    /// Checkpoint states and pending writes, sealed.
    pub fn checkpointer(&self) -> &SealedCheckpointer {
        &self.checkpointer
    }

    /// Store values, sealed.
    pub fn store(&self) -> &SealedStore {
        &self.store
    }

    /// Session events, sealed.
    pub fn sessions(&self) -> &SealedSessions {
        &self.sessions
    }

    /// What the backend declares through the codec (no `search` when store values are
    /// sealed whole, no `binary_payloads`).
    pub fn maintenance(&self) -> &SealedMaintenance {
        &self.maintenance
    }

    /// The codec, for [`rekey`](crate::rekey) and [`key_usage`](crate::key_usage) (which
    /// read through the backend without it).
    pub fn codec(&self) -> &Arc<Codec> {
        &self.codec
    }
}
