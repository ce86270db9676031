//! TLS against real servers the harness starts with generated certificates (a TLS-only
//! server requiring a client certificate, and the plaintext one): each misconfiguration
//! is its own documented `Tls` error naming the host and what to set, and an operation
//! runs the same statements over TLS as in plaintext. (The whole conformance suite over
//! TLS is in `conformance.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use persistence_conformance::harness::Server;
use persistence_conformance::harness::counted_per_operation;
use persistence_conformance::harness::tls::{TlsFiles, assert_tls_error};
use persistence_core::{Error, ErrorKind, TlsFailure};
use persistence_postgres::{PgBackend, PgConfig, SslMode, migrate};
use sqlx::{ConnectOptions, Connection};

/// A fresh database on the TLS server, its app URL without TLS options, and the files.
async fn tls_db() -> Option<(support::TestDb, String, TlsFiles)> {
    let db = support::fresh_db_on(Server::PostgresTls).await?;
    let url = db.app_url();
    let files = TlsFiles::of_url(&url.replace("file%3A+", "")).expect("TLS URL names its files");
    let bare = url
        .split_once('?')
        .map_or(url.as_str(), |(u, _)| u)
        .to_string();
    Some((db, bare, files))
}

async fn connect(config: PgConfig) -> Result<PgBackend, Error> {
    PgBackend::connect(config.with_operation_timeout(Duration::from_secs(10))).await
}

fn mutual(config: PgConfig, files: &TlsFiles) -> PgConfig {
    config.with_tls_client_cert(&files.client_cert, &files.client_key)
}

/// `url` under `mode`, trusting `ca`, with the client certificate.
fn verified(url: &str, mode: SslMode, ca: &std::path::Path, files: &TlsFiles) -> PgConfig {
    mutual(PgConfig::new(url), files)
        .with_ssl_mode(mode)
        .with_tls_root_cert(ca)
}

/// verify-full with the right CA and a client certificate, through the config or the
/// URL; require (no verification) works with the client certificate alone.
#[tokio::test]
async fn verified_mutual_tls_connects() {
    let Some((_db, bare, files)) = tls_db().await else {
        return;
    };
    let config = verified(&bare, SslMode::VerifyFull, &files.ca, &files);
    connect(config)
        .await
        .expect("verify-full through the config");
    let url = format!("{bare}?sslmode=verify-full&{}", files.mutual_query());
    connect(PgConfig::new(url))
        .await
        .expect("verify-full through the URL");
    let require = mutual(PgConfig::new(&bare), &files).with_ssl_mode(SslMode::Require);
    connect(require)
        .await
        .expect("require, certificate not checked");
}

/// A CA that did not sign the server's certificate: `UntrustedCertificate`.
#[tokio::test]
async fn an_untrusted_server_certificate_is_named() {
    let Some((_db, bare, files)) = tls_db().await else {
        return;
    };
    let config = verified(&bare, SslMode::VerifyFull, &files.other_ca, &files);
    let e = connect(config).await.unwrap_err();
    assert_tls_error(
        &e,
        TlsFailure::UntrustedCertificate,
        "127.0.0.1",
        "sslrootcert",
    );
}

/// The certificate names 127.0.0.1 only: `localhost` fails verify-full with
/// `NameMismatch`. verify-ca checks the CA, and (with this sqlx, see `SslMode::VerifyCa`)
/// the name too: never weaker than documented.
#[tokio::test]
async fn a_host_name_mismatch_is_named() {
    let Some((_db, bare, files)) = tls_db().await else {
        return;
    };
    let by_name = bare.replace("127.0.0.1", "localhost");
    let full = verified(&by_name, SslMode::VerifyFull, &files.ca, &files);
    let e = connect(full).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::NameMismatch, "localhost", "host name");
    let ca_only = verified(&by_name, SslMode::VerifyCa, &files.ca, &files);
    let e = connect(ca_only).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::NameMismatch, "localhost", "host name");
    let ca_right_name = verified(&bare, SslMode::VerifyCa, &files.ca, &files);
    connect(ca_right_name).await.expect("verify-ca with the CA");
    let ca_wrong = verified(&bare, SslMode::VerifyCa, &files.other_ca, &files);
    let e = connect(ca_wrong).await.unwrap_err();
    assert_tls_error(
        &e,
        TlsFailure::UntrustedCertificate,
        "127.0.0.1",
        "sslrootcert",
    );
}

/// The server requires a client certificate (`clientcert=verify-ca` in pg_hba.conf).
#[tokio::test]
async fn a_missing_client_certificate_is_named() {
    let Some((_db, bare, files)) = tls_db().await else {
        return;
    };
    let config = PgConfig::new(&bare)
        .with_ssl_mode(SslMode::VerifyFull)
        .with_tls_root_cert(&files.ca);
    let e = connect(config).await.unwrap_err();
    assert_tls_error(
        &e,
        TlsFailure::ClientCertificateRefused,
        "127.0.0.1",
        "sslcert",
    );
}

/// `sslmode=require` against a plaintext-only server: `NotOffered`, from connect and
/// from migrate alike.
#[tokio::test]
async fn require_against_a_plaintext_server_is_named() {
    let Some(db) = support::fresh_db().await else {
        return;
    };
    let url = format!(
        "{}?sslmode=require",
        db.app_url().split('?').next().unwrap()
    );
    let e = connect(PgConfig::new(&url)).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::NotOffered, "127.0.0.1", "sslmode=prefer");
    let admin = db.admin_options().to_url_lossy().to_string();
    let admin = format!("{}?sslmode=require", admin.split('?').next().unwrap());
    let e = migrate(&admin).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::NotOffered, "127.0.0.1", "sslmode=prefer");
}

/// Bad TLS options are `InvalidInput` naming the option, before any connection.
#[tokio::test]
async fn bad_tls_options_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let base = "postgres://u@127.0.0.1:1/db";
    let cases = [
        (format!("{base}?sslmode=allow"), "sslmode=allow"),
        (format!("{base}?sslmode=strict"), "verify-full"),
        (format!("{base}?sslrootcert={}", not_pem.display()), "PEM"),
        (
            format!("{base}?sslrootcert={}/nope.pem", dir.path().display()),
            "nope.pem",
        ),
        (format!("{base}?sslcert={}", not_pem.display()), "sslkey"),
    ];
    for (url, named) in cases {
        let e = connect(PgConfig::new(&url)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(e.to_string().contains(named), "{url}: {e}");
    }
}

/// Statements the server ran for this database, without the counting query itself.
async fn statements_run(
    admin: &sqlx::postgres::PgConnectOptions,
    db: &str,
) -> persistence_core::Result<u64> {
    const CALLS: &str = "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) \
        AND query NOT LIKE '%pg_stat_statements%'";
    let mut conn = sqlx::PgConnection::connect_with(admin)
        .await
        .map_err(|e| Error::backend_error(e.to_string()))?;
    let n: i64 = sqlx::query_scalar(CALLS)
        .bind(db)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Error::backend_error(e.to_string()))?;
    let _ = conn.close().await;
    Ok(n as u64)
}

async fn statements_per_operation(db: &support::TestDb, url: String) -> Vec<(&'static str, u64)> {
    let mut conn = sqlx::PgConnection::connect_with(&db.admin_options())
        .await
        .unwrap();
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await
        .unwrap();
    let backend = connect(PgConfig::new(url)).await.unwrap();
    let admin = db.admin_options();
    counted_per_operation(&backend, || statements_run(&admin, &db.name))
        .await
        .expect("operations")
}

/// Every operation runs the same statements over TLS as in plaintext (where the
/// counting proxy shows one round trip each): TLS costs a handshake per connection,
/// nothing per operation. Counted by the servers (`pg_stat_statements`), since no proxy
/// can read TLS traffic.
#[tokio::test]
async fn operations_run_the_same_statements_over_tls() {
    let (Some(plain), Some(tls)) = (
        support::fresh_db().await,
        support::fresh_db_on(Server::PostgresTls).await,
    ) else {
        return;
    };
    let in_plaintext = statements_per_operation(&plain, plain.app_url()).await;
    let over_tls = statements_per_operation(&tls, tls.app_url()).await;
    assert_eq!(over_tls, in_plaintext);
    assert!(over_tls.iter().all(|(_, n)| *n == 1), "{over_tls:?}");
    println!("statements per operation, TLS and plaintext: {over_tls:?}");
}
