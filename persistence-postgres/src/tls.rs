//! TLS of Postgres connections: the `sslmode` policy, its files, and failures named for
//! what to fix.

use persistence_core::TlsFailure;

/// How a connection uses TLS, as libpq's `sslmode` (URL option `sslmode=`).
///
/// Only [`VerifyFull`](Self::VerifyFull) protects against a server impersonated on the
/// network: `Prefer` and `Require` encrypt without checking who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not
    /// checked. The default, as in libpq.
    #[default]
    Prefer,
    /// TLS or fail (`Tls` error when the server does not offer it); the certificate is
    /// not checked.
    Require,
    /// TLS, and the server's certificate must be signed by a trusted CA (the
    /// `sslrootcert` file, else the system's roots). libpq does not check the name here;
    /// the driver this crate uses (sqlx 0.8.6 with rustls 0.23.24+) checks it too, so
    /// today `VerifyCa` is as strict as `VerifyFull` (upstream issue
    /// launchbadge/sqlx#3793, fixed after 0.8.6). Stricter, never weaker.
    VerifyCa,
    /// TLS, a trusted certificate, and it must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses a URL's `sslmode` value.
    ///
    /// # Errors
    /// A message naming the accepted values. `allow` is refused: the driver cannot fall
    /// back from plaintext to TLS.
    pub(crate) fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (the driver cannot retry with TLS after a \
                     plaintext attempt): use prefer, or disable"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other:?}: expected disable, prefer, require, verify-ca or \
                     verify-full"
                ));
            }
        })
    }

    pub(crate) fn to_driver(self) -> sqlx::postgres::PgSslMode {
        use sqlx::postgres::PgSslMode;
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

/// A failed TLS setup with a server, carried inside `sqlx::Error::Tls` from the pool's
/// connect to [`crate::error::map`], which turns it into an `ErrorKind::Tls` error. Its
/// cause is its `source()`, not part of its `Display`.
#[derive(Debug, thiserror::Error)]
#[error("TLS to {host}: {failure}")]
pub(crate) struct TlsConnectError {
    pub failure: TlsFailure,
    pub host: String,
    #[source]
    pub cause: sqlx::Error,
}

/// Wraps a connect failure that is a TLS failure (a handshake error, or the server's
/// refusal of a connection without a valid client certificate); other errors pass.
pub(crate) fn name_failure(
    e: sqlx::Error,
    options: &sqlx::postgres::PgConnectOptions,
) -> sqlx::Error {
    if matches!(options.get_ssl_mode(), sqlx::postgres::PgSslMode::Disable) {
        return e;
    }
    let failure = match &e {
        sqlx::Error::Database(db) => TlsFailure::classify_text(db.message())
            .filter(|f| *f == TlsFailure::ClientCertificateRefused),
        sqlx::Error::Tls(_) | sqlx::Error::Io(_) => TlsFailure::classify(&e),
        _ => None,
    };
    match failure {
        Some(failure) => sqlx::Error::Tls(Box::new(TlsConnectError {
            failure,
            host: format!("{}:{}", options.get_host(), options.get_port()),
            cause: e,
        })),
        None => e,
    }
}

/// Applies the config's TLS settings to the driver's options, after checking the files.
///
/// # Errors
/// `InvalidInput` naming the option for a file that cannot be read or is not PEM, or a
/// client certificate without its key.
pub(crate) fn apply(
    mut options: sqlx::postgres::PgConnectOptions,
    config: &crate::PgConfig,
) -> persistence_core::Result<sqlx::postgres::PgConnectOptions> {
    let (root, cert, key) = (
        config.tls_root_cert.as_deref(),
        config.tls_client_cert.as_deref(),
        config.tls_client_key.as_deref(),
    );
    persistence_core::backend::TlsPem::read(root, cert, key).map_err(|e| {
        e.context(
            crate::error::BACKEND,
            "connect",
            persistence_core::redact_url(&config.url),
        )
    })?;
    let mode = match (config.ssl_mode, root) {
        (Some(SslMode::Require), Some(_)) => Some(SslMode::VerifyCa),
        (None, Some(_)) => Some(SslMode::VerifyFull),
        (mode, _) => mode,
    };
    if let Some(mode) = mode {
        options = options.ssl_mode(mode.to_driver());
    }
    if let Some(root) = root {
        options = options.ssl_root_cert(root);
    }
    if let (Some(cert), Some(key)) = (cert, key) {
        options = options.ssl_client_cert(cert).ssl_client_key(key);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause is printed once by a chain walk: it is the source, not in `Display`
    /// (it was both).
    #[test]
    fn a_tls_connect_error_leaves_its_cause_to_source() {
        let e = TlsConnectError {
            failure: TlsFailure::Handshake,
            host: "db.example".into(),
            cause: sqlx::Error::Protocol("the cause text".into()),
        };
        assert!(!e.to_string().contains("the cause text"), "{e}");
        assert!(e.to_string().contains("db.example"), "{e}");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("the cause text")));
    }
}
