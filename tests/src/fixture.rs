//! What a check runs against: the four trait objects of one backend and a way to let
//! time pass.

use std::sync::Arc;
use std::time::Duration;

use persistence_core::{
    Capabilities, Checkpointer, Lock, Maintenance, ManualClock, MemoryBackend, SessionLog, Store,
};

/// The keyring of [`Fixture::sealed`]: test keys, never for real data.
pub(crate) const SEALED_FIXTURE_KEYS: &str = "old=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,\
     test=HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// How a check makes time pass.
#[derive(Debug, Clone)]
pub enum TimeControl {
    /// The backend reads this clock: advancing it expires leases and TTLs at once.
    Manual(ManualClock),
    /// The backend uses a real clock (its own or the server's): checks sleep.
    Real,
}

/// One backend under test. Every check gets a fresh fixture; checks use their own
/// tenants and ids but may assume no other test writes to the same fixture.
#[derive(Clone)]
pub struct Fixture {
    /// Backend name, for messages.
    pub name: String,
    /// The checkpointer.
    pub checkpointer: Arc<dyn Checkpointer>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The session log.
    pub sessions: Arc<dyn SessionLog>,
    /// The lock service.
    pub lock: Arc<dyn Lock>,
    /// Cross-tenant upkeep (purge of expired data).
    pub maintenance: Arc<dyn Maintenance>,
    /// What the backend declares.
    pub capabilities: Capabilities,
    /// How to make time pass.
    pub time: TimeControl,
    /// Resources that must live as long as the fixture (a temp dir, a database guard).
    resources: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Fixture {
    /// A fixture from one value implementing the four data traits and [`Maintenance`].
    pub fn new<B>(name: &str, backend: B, capabilities: Capabilities, time: TimeControl) -> Self
    where
        B: Checkpointer + Store + SessionLog + Lock + Maintenance + Clone + 'static,
    {
        Fixture {
            name: name.to_string(),
            checkpointer: Arc::new(backend.clone()),
            store: Arc::new(backend.clone()),
            sessions: Arc::new(backend.clone()),
            lock: Arc::new(backend.clone()),
            maintenance: Arc::new(backend),
            capabilities,
            time,
            resources: Vec::new(),
        }
    }

    /// Keeps `resource` alive while any clone of the fixture lives: e.g. the temp
    /// directory of a filesystem backend, deleted when the check ends.
    pub fn holding(mut self, resource: impl std::any::Any + Send + Sync) -> Self {
        self.resources.push(Arc::new(resource));
        self
    }

    /// The same backend behind the payload codec (`persistence-codec`): compression of
    /// payloads of 64 bytes and more, encryption required, under a fixed test key. The
    /// codec seals store values whole, so `search` is declared off (its checks skip).
    /// The codec's wrappers over the fixture's traits, for a backend without a codec
    /// option of its own (the memory backend runs the suite through it a second time);
    /// the built-in backends run it through their config's `with_codec` with
    /// [`sealed_fixture_codec`](crate::sealed_fixture_codec) instead.
    pub fn sealed(mut self) -> Self {
        use persistence_codec::{
            Codec, SealedCheckpointer, SealedMaintenance, SealedSessions, SealedStore,
        };
        let codec = Codec::for_backend(crate::sealed_fixture_codec(), &self.capabilities);
        self.name = format!("{}-sealed", self.name);
        self.checkpointer = Arc::new(SealedCheckpointer::new(self.checkpointer, codec.clone()));
        self.store = Arc::new(SealedStore::new(self.store, codec.clone()));
        self.sessions = Arc::new(SealedSessions::new(self.sessions, codec.clone()));
        self.maintenance = Arc::new(SealedMaintenance::new(self.maintenance, codec));
        self.capabilities.search = false;
        self.capabilities.binary_payloads = false;
        self
    }

    /// A fresh [`MemoryBackend`] on a manual clock.
    pub fn memory() -> Self {
        let (backend, clock) = MemoryBackend::with_manual_clock();
        let caps = backend.capabilities();
        Fixture::new("memory", backend, caps, TimeControl::Manual(clock))
    }

    /// A TTL that [`Fixture::expire`] outlives: long for a manual clock (nothing expires
    /// by accident), short for a real one (the check must sleep through it).
    pub fn short_ttl(&self) -> Duration {
        match self.time {
            TimeControl::Manual(_) => Duration::from_secs(30),
            TimeControl::Real => Duration::from_millis(400),
        }
    }

    /// A TTL that never runs out during a check.
    pub fn long_ttl(&self) -> Duration {
        Duration::from_secs(3600)
    }

    /// Lets `d` pass for the backend: advances a manual clock, or sleeps.
    pub async fn pass(&self, d: Duration) {
        match &self.time {
            TimeControl::Manual(clock) => clock.advance(d),
            TimeControl::Real => tokio::time::sleep(d).await,
        }
    }

    /// Lets `d` pass in real time and for the backend (both sleep and advance), for checks
    /// where background tasks (lease renewal) must run meanwhile.
    pub async fn pass_real(&self, d: Duration) {
        tokio::time::sleep(d).await;
        if let TimeControl::Manual(clock) = &self.time {
            clock.advance(d);
        }
    }

    /// Lets a [`Fixture::short_ttl`] run out, with a margin.
    pub async fn expire(&self) {
        let ttl = self.short_ttl();
        self.pass(ttl + ttl / 2 + Duration::from_millis(50)).await;
    }
}
