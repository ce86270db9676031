//! The whole conformance suite and the model test against a real PostgreSQL, connected as
//! the application role, one fresh database per test.

mod support;

use persistence_conformance::{conformance_suite, model};

conformance_suite!(postgres, support::fixture());

#[test]
fn postgres_matches_the_model() {
    model::check_model(
        || async {
            support::fixture()
                .await
                .expect("postgres unavailable for the model test")
        },
        model::cases_from_env(),
    );
}
