//! The whole conformance suite and the model test against a real PostgreSQL, connected as
//! the application role, one fresh database per test.

mod support;

use persistence_conformance::{conformance_suite, model};

conformance_suite!(postgres, support::fixture());

// Through the payload codec (compressed, encrypted, bound to each row).
conformance_suite!(
    postgres_sealed,
    async { support::fixture().await.map(|f| f.sealed()) },
    lacks[Search]
);

// The same suite through PgBouncer in transaction pooling mode (simple queries, no
// prepared statements), as deployments behind a pooler connect.
conformance_suite!(postgres_pgbouncer, support::pgbouncer_fixture());

// The same suite over TLS only (the server refuses plaintext), verify-full, with a
// client certificate (mutual TLS).
conformance_suite!(postgres_tls, support::tls_fixture());

#[test]
fn postgres_sealed_matches_the_model() {
    model::check_model(
        || async {
            support::fixture()
                .await
                .expect("postgres unavailable for the model test")
                .sealed()
        },
        model::cases_from_env(),
    );
}

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
