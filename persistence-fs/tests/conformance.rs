//! The whole conformance suite and the model test against the filesystem backend with
//! `Durability::Fsync`, each test on its own fresh root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use persistence_conformance::{Fixture, TimeControl, conformance_suite, model};
use persistence_fs::{FsBackend, FsConfig};

async fn fixture() -> Fixture {
    let root = tempfile::tempdir().expect("temp dir");
    let backend = FsBackend::open(FsConfig::new(root.path())).expect("open fs backend");
    let capabilities = backend.capabilities();
    Fixture::new("fs", backend, capabilities, TimeControl::Real).holding(root)
}

conformance_suite!(fs, async { Some(fixture().await) });

/// A backend whose own config names the payload codec (compressed, encrypted, bound
/// to each row): every call of its traits goes through it.
#[cfg(feature = "codec")]
async fn sealed_fixture() -> Fixture {
    let root = tempfile::tempdir().expect("temp dir");
    let config =
        FsConfig::new(root.path()).with_codec(persistence_conformance::sealed_fixture_codec());
    let backend = FsBackend::open(config).expect("open fs backend");
    let capabilities = backend.capabilities();
    Fixture::new("fs-sealed", backend, capabilities, TimeControl::Real).holding(root)
}

#[cfg(feature = "codec")]
conformance_suite!(
    fs_sealed,
    async { Some(sealed_fixture().await) },
    lacks[Search]
);

#[cfg(feature = "codec")]
#[test]
fn fs_sealed_matches_the_model() {
    model::check_model(sealed_fixture, model::cases_from_env());
}

/// `FsConfig::with_codec` seals every kind of payload on disk.
#[cfg(feature = "codec")]
#[tokio::test]
async fn fs_codec_in_config_seals_every_payload() {
    let root = tempfile::tempdir().expect("temp dir");
    let config =
        FsConfig::new(root.path()).with_codec(persistence_conformance::sealed_fixture_codec());
    let sealed = FsBackend::open(config).expect("open fs backend");
    assert!(sealed.codec().is_some());
    let shown = format!("{sealed:?}");
    for key in persistence_conformance::SEALED_FIXTURE_KEY_PREFIXES {
        assert!(!shown.contains(key), "a key in Debug: {shown}");
    }
    let raw = FsBackend::open(FsConfig::new(root.path())).expect("open fs backend");
    assert!(raw.codec().is_none());
    persistence_conformance::every_payload_sealed_below(&sealed, &raw)
        .await
        .unwrap();
    // `without_codec` reads the same root as stored.
    let root = tempfile::tempdir().expect("temp dir");
    let config =
        FsConfig::new(root.path()).with_codec(persistence_conformance::sealed_fixture_codec());
    let sealed = FsBackend::open(config).expect("open fs backend");
    persistence_conformance::every_payload_sealed_below(&sealed, &sealed.without_codec())
        .await
        .unwrap();
}

#[test]
fn fs_matches_the_model() {
    model::check_model(fixture, model::cases_from_env());
}
