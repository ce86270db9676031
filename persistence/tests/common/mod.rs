//! What this crate's codec test files share: two test keys, the codec they configure and
//! every backend opened on storage of its own.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each file uses some

use std::sync::Arc;

use persistence::Persistence;
use persistence::codec::{CodecConfig, EncryptionPolicy, StaticKeyring};
use persistence_conformance::harness::backend_urls;

/// The first test key (`ID=BASE64`).
pub const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The second test key.
pub const K2: &str = "k2=HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// A codec of `keys` (the last one writes) under `policy`, compressing from 256 bytes.
pub fn codec(keys: &str, policy: EncryptionPolicy) -> CodecConfig {
    let keys = StaticKeyring::parse(keys).unwrap();
    CodecConfig::default()
        .with_compression(256)
        .with_encryption(Arc::new(keys), policy)
}

/// Every backend (memory, fs, Postgres migrated, Redis, a Redis Cluster): its name and
/// its traits without a codec; the directory holds the filesystem backend's data.
pub async fn every_backend() -> (Vec<(&'static str, Persistence)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for backend in backend_urls(dir.path()) {
        if backend.needs_migration {
            persistence::postgres::migrate(&backend.url).await.unwrap();
        }
        out.push((backend.name, persistence::open(&backend.url).await.unwrap()));
    }
    (out, dir)
}
