//! The whole conformance suite and the model test against a real PostgreSQL, connected as
//! the application role, one fresh database per test.

mod support;

use persistence_conformance::{conformance_suite, model};

conformance_suite!(postgres, support::fixture());

// Through the payload codec of `PgConfig::with_codec` (compressed, encrypted, bound to
// each row).
#[cfg(feature = "codec")]
conformance_suite!(postgres_sealed, support::sealed_fixture(), lacks[Search]);

// The same suite through PgBouncer in transaction pooling mode (simple queries, no
// prepared statements), as deployments behind a pooler connect.
conformance_suite!(postgres_pgbouncer, support::pgbouncer_fixture());

// The same suite over TLS only (the server refuses plaintext), verify-full, with a
// client certificate (mutual TLS).
conformance_suite!(postgres_tls, support::tls_fixture());

#[cfg(feature = "codec")]
#[test]
fn postgres_sealed_matches_the_model() {
    model::check_model(
        || async {
            support::sealed_fixture()
                .await
                .expect("postgres unavailable for the model test")
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

/// `PgConfig::with_codec` seals every kind of payload in the database.
#[cfg(feature = "codec")]
#[tokio::test]
async fn postgres_codec_in_config_seals_every_payload() {
    use persistence_postgres::{PgBackend, PgConfig};
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let config =
        PgConfig::new(db.app_url()).with_codec(persistence_conformance::sealed_fixture_codec());
    let sealed = PgBackend::connect(config).await.expect("connect");
    assert!(sealed.codec().is_some());
    let shown = format!("{sealed:?}");
    for key in persistence_conformance::SEALED_FIXTURE_KEY_PREFIXES {
        assert!(!shown.contains(key), "a key in Debug: {shown}");
    }
    let raw = PgBackend::connect(PgConfig::new(db.app_url()))
        .await
        .expect("connect");
    assert!(raw.codec().is_none());
    persistence_conformance::every_payload_sealed_below(&sealed, &raw)
        .await
        .expect("every payload sealed");
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let config =
        PgConfig::new(db.app_url()).with_codec(persistence_conformance::sealed_fixture_codec());
    let sealed = PgBackend::connect(config).await.expect("connect");
    persistence_conformance::every_payload_sealed_below(&sealed, &sealed.without_codec())
        .await
        .expect("every payload sealed, read without the codec");
}
