//! The whole conformance suite against the in-memory reference backend.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use persistence_conformance::{Fixture, TimeControl, conformance_suite};

conformance_suite!(memory, async { Some(Fixture::memory()) });

// Through the payload codec (compressed, encrypted, bound to each row).
conformance_suite!(
    memory_sealed,
    async { Some(Fixture::memory().sealed()) },
    lacks[Search]
);

// The same backend on the system clock: the checks' real-time variants (short TTLs and
// sleeps), which the server and filesystem backends use.
conformance_suite!(memory_real_clock, async {
    let backend = persistence_core::MemoryBackend::new();
    let capabilities = backend.capabilities();
    Some(Fixture::new(
        "memory-real-clock",
        backend,
        capabilities,
        TimeControl::Real,
    ))
});

#[test]
fn suite_has_at_least_sixty_checks() {
    let n = persistence_conformance::checks::all().len();
    assert!(n >= 60, "only {n} checks");
}

#[test]
fn memory_sealed_matches_the_model() {
    persistence_conformance::model::check_model(
        || async { Fixture::memory().sealed() },
        persistence_conformance::model::cases_from_env(),
    );
}

#[test]
fn memory_matches_the_model() {
    persistence_conformance::model::check_model(
        || async { Fixture::memory() },
        persistence_conformance::model::cases_from_env(),
    );
}
