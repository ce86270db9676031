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

// Through the payload codec (compressed, encrypted, bound to each row).
conformance_suite!(
    fs_sealed,
    async { Some(fixture().await.sealed()) },
    lacks[Search]
);

#[test]
fn fs_sealed_matches_the_model() {
    model::check_model(
        || async { fixture().await.sealed() },
        model::cases_from_env(),
    );
}

#[test]
fn fs_matches_the_model() {
    model::check_model(fixture, model::cases_from_env());
}
