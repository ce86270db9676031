//! The whole conformance suite against the in-memory reference backend.

use persistence_conformance::{Fixture, conformance_suite};

conformance_suite!(memory, async { Some(Fixture::memory()) });

#[test]
fn suite_has_at_least_sixty_checks() {
    let n = persistence_conformance::checks::all().len();
    assert!(n >= 60, "only {n} checks");
}

#[test]
fn memory_matches_the_model() {
    persistence_conformance::model::check_model(
        || async { Fixture::memory() },
        persistence_conformance::model::cases_from_env(),
    );
}
