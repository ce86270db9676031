//! TLS against real servers the harness starts with generated certificates: each
//! misconfiguration is its own documented `Tls` error naming the host and what to set,
//! and an operation costs the server the same commands over TLS as in plaintext.
//! (The whole conformance suite over TLS is in `conformance.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use support::commands_per_operation;

use std::time::Duration;

use persistence_conformance::harness::tls::{TlsFiles, assert_tls_error};
use persistence_conformance::harness::{LocalRedis, Server, server_url};
use persistence_core::{Error, ErrorKind, TlsFailure};
use persistence_redis::{RedisBackend, RedisConfig};

/// The TLS node's URL and files, or `None` (printed) when there is none.
fn tls_node() -> Option<(String, TlsFiles)> {
    let url = server_url(Server::RedisTls, &LocalRedis)?;
    let files = TlsFiles::of_url(&url).expect("TLS test URL names its files");
    Some((url, files))
}

/// `rediss://127.0.0.1:port/` of the TLS node, without its file options.
fn bare(url: &str) -> String {
    url.split_once('?').map_or(url, |(u, _)| u).to_string()
}

async fn connect(config: RedisConfig) -> Result<RedisBackend, Error> {
    let mut config = config;
    config.timeout = Duration::from_secs(3);
    RedisBackend::connect(config).await
}

/// The test CA and client certificate through the config instead of the URL work too.
#[tokio::test]
async fn config_files_work_like_url_options() {
    let Some((url, files)) = tls_node() else {
        return;
    };
    let config = RedisConfig::new(bare(&url))
        .with_tls_root_cert(&files.ca)
        .with_tls_client_cert(&files.client_cert, &files.client_key);
    connect(config)
        .await
        .expect("mutual TLS through the config");
}

/// A server certificate from a CA the client does not trust: `UntrustedCertificate`,
/// also with the system's roots only.
#[tokio::test]
async fn an_untrusted_server_certificate_is_named() {
    let Some((url, files)) = tls_node() else {
        return;
    };
    let host = bare(&url)
        .trim_start_matches("rediss://")
        .trim_end_matches('/')
        .to_string();
    let wrong_ca = RedisConfig::new(bare(&url))
        .with_tls_root_cert(&files.other_ca)
        .with_tls_client_cert(&files.client_cert, &files.client_key);
    let e = connect(wrong_ca).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::UntrustedCertificate, &host, "sslrootcert");
    let system_roots = RedisConfig::new(bare(&url));
    let e = connect(system_roots).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::UntrustedCertificate, &host, "sslrootcert");
}

/// The certificate names 127.0.0.1 only: connecting as `localhost` is a name mismatch.
#[tokio::test]
async fn a_host_name_the_certificate_does_not_list_is_named() {
    let Some((url, _)) = tls_node() else {
        return;
    };
    let by_name = url.replace("127.0.0.1", "localhost");
    let e = connect(RedisConfig::new(by_name)).await.unwrap_err();
    assert_tls_error(&e, TlsFailure::NameMismatch, "localhost", "host name");
}

/// The server requires a client certificate (`tls-auth-clients yes`).
#[tokio::test]
async fn a_missing_client_certificate_is_named() {
    let Some((url, files)) = tls_node() else {
        return;
    };
    let config = RedisConfig::new(bare(&url)).with_tls_root_cert(&files.ca);
    let e = connect(config).await.unwrap_err();
    assert_tls_error(
        &e,
        TlsFailure::ClientCertificateRefused,
        "127.0.0.1",
        "sslcert",
    );
}

/// `rediss://` to a plaintext-only server.
#[tokio::test]
async fn a_plaintext_server_is_named() {
    let Some(plain) = server_url(Server::Redis, &LocalRedis) else {
        return;
    };
    let tls = plain.replace("redis://", "rediss://");
    let e = connect(RedisConfig::new(tls)).await.unwrap_err();
    let host = plain.trim_start_matches("redis://").to_string();
    assert_tls_error(&e, TlsFailure::NotOffered, &host, "redis://");
}

/// TLS files with a plaintext URL, or a file that is missing or not PEM: `InvalidInput`
/// naming the option and the file, before any connection.
#[tokio::test]
async fn bad_tls_options_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            format!("redis://127.0.0.1:1/?sslrootcert={}", not_pem.display()),
            "sslrootcert",
        ),
        (
            format!("rediss://127.0.0.1:1/?sslrootcert={}", missing.display()),
            "missing.pem",
        ),
        (
            format!("rediss://127.0.0.1:1/?sslcert={}", not_pem.display()),
            "sslkey",
        ),
    ];
    for (url, named) in cases {
        let e = connect(RedisConfig::new(&url)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(e.to_string().contains(named), "{url}: {e}");
    }
    let e = connect(RedisConfig::new(format!(
        "rediss://127.0.0.1:1/?sslrootcert={}",
        not_pem.display()
    )))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("PEM"), "{e}");
}

/// Every operation makes the server run the same commands over TLS as in plaintext
/// (where the counting proxy shows one round trip each): TLS adds a handshake per
/// connection, nothing per operation. Counted by the servers (`INFO commandstats`),
/// since no proxy can read TLS traffic.
#[tokio::test]
async fn operations_cost_the_same_commands_over_tls() {
    let (Some((url, files)), Some(plain)) = (tls_node(), server_url(Server::Redis, &LocalRedis))
    else {
        return;
    };
    let tls_backend = connect(RedisConfig::new(&url).with_prefix("rt-tls:"))
        .await
        .unwrap();
    let plain_backend = connect(RedisConfig::new(&plain).with_prefix("rt-plain:"))
        .await
        .unwrap();
    let certs = redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: std::fs::read(&files.client_cert).unwrap(),
            client_key: std::fs::read(&files.client_key).unwrap(),
        }),
        root_cert: Some(std::fs::read(&files.ca).unwrap()),
    };
    let tls_admin = redis::Client::build_with_tls(bare(&url), certs)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let plain_admin = redis::Client::open(plain.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let over_tls = commands_per_operation(&tls_backend, tls_admin).await;
    let in_plaintext = commands_per_operation(&plain_backend, plain_admin).await;
    assert_eq!(over_tls, in_plaintext);
    assert!(over_tls.iter().all(|(_, n)| *n >= 1), "{over_tls:?}");
    println!("server commands per operation, TLS and plaintext: {over_tls:?}");
}
