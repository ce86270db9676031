//! TLS failures, named for the person who has to fix them.
//!
//! Both server backends use rustls; a failed handshake surfaces as an I/O error deep in
//! the driver. [`TlsFailure::classify`] reads the error chain and says which of the
//! usual causes it is, and [`Error::tls`] turns that into an [`ErrorKind::Tls`] error
//! naming the host and what to configure, never "is the server running?".
//!
//! The URL options named in the advice (`sslrootcert`, `sslcert`, `sslkey`) are the same
//! for every backend.

use std::fmt;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, ErrorKind};

/// The TLS files of a connection, read and checked (PEM, at least one certificate, a
/// private key) so a wrong path or file is an `InvalidInput` naming the option at
/// connect, not a handshake failure later. `Debug` never shows the key.
#[derive(Clone, Default)]
pub struct TlsPem {
    /// The CA certificates to trust instead of the system's (`sslrootcert`).
    pub root_cert: Option<Vec<u8>>,
    /// The client certificate chain and key for mutual TLS (`sslcert`, `sslkey`).
    pub client: Option<ClientPem>,
}

/// A client certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct ClientPem {
    /// The certificate chain.
    pub cert: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("root_cert", &self.root_cert.as_ref().map(Vec::len))
            .field("client", &self.client.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientPem(<redacted>)")
    }
}

impl TlsPem {
    /// Reads and checks the files named by `sslrootcert`, `sslcert` and `sslkey`.
    ///
    /// # Errors
    /// `InvalidInput` naming the option and path when a file cannot be read, holds no
    /// PEM certificate (or key), or when only one of `sslcert` and `sslkey` is given.
    pub fn read(
        root_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> crate::Result<TlsPem> {
        let root_cert = root_cert
            .map(|path| read_certificates("sslrootcert", path))
            .transpose()?;
        let client = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientPem {
                cert: read_certificates("sslcert", cert)?,
                key: read_key(key)?,
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::invalid_input(
                    "a client certificate needs both sslcert and sslkey (certificate and \
                     private key files)",
                ));
            }
        };
        Ok(TlsPem { root_cert, client })
    }

    /// Whether any file is set.
    pub fn is_empty(&self) -> bool {
        self.root_cert.is_none() && self.client.is_none()
    }
}

fn read_file(option: &str, path: &Path) -> crate::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::invalid_input(format!(
            "{option} file {}: cannot read it: {e}",
            path.display()
        ))
    })
}

fn read_certificates(option: &str, path: &Path) -> crate::Result<Vec<u8>> {
    let pem = read_file(option, path)?;
    let mut certificates = CertificateDer::pem_slice_iter(&pem);
    match certificates.next() {
        Some(Ok(_)) if certificates.all(|c| c.is_ok()) => Ok(pem),
        _ => Err(Error::invalid_input(format!(
            "{option} file {}: expected PEM certificates (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))),
    }
}

fn read_key(path: &Path) -> crate::Result<Vec<u8>> {
    let pem = read_file("sslkey", path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(_) => Err(Error::invalid_input(format!(
            "sslkey file {}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ))),
    }
}

/// Why a TLS connection could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not signed by a trusted CA (or is expired, or not yet
    /// valid).
    UntrustedCertificate,
    /// The server's certificate does not name the host connected to.
    NameMismatch,
    /// The server does not speak TLS (on that port), though TLS was required.
    NotOffered,
    /// The server refused the connection for want of a client certificate it trusts
    /// (mutual TLS).
    ClientCertificateRefused,
    /// Any other handshake failure (protocol versions, ciphers, a malformed record).
    Handshake,
}

impl TlsFailure {
    /// Which failure `error` (with its whole `source()` chain) reports, or `None` when it
    /// is not a TLS failure.
    ///
    /// The drivers wrap rustls errors in I/O errors (whose `source()` skips the wrapped
    /// error), so the chain's `Display` and `Debug` texts are read, not its types.
    pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
        let mut text = String::new();
        let mut next = Some(error);
        while let Some(e) = next {
            text.push_str(&format!("{e} | {e:?} | "));
            next = e.source();
        }
        Self::classify_text(&text)
    }

    /// [`classify`](Self::classify) of an error's text.
    pub fn classify_text(text: &str) -> Option<TlsFailure> {
        let t = text.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
        if any(&["notvalidforname", "not valid for name"]) {
            Some(TlsFailure::NameMismatch)
        } else if any(&[
            "unknownissuer",
            "unknown issuer",
            "badsignature",
            "expired",
            "notvalidyet",
            "invalid peer certificate",
        ]) {
            Some(TlsFailure::UntrustedCertificate)
        } else if any(&[
            "certificaterequired",
            "certificate required",
            "requires a valid client certificate",
            "badcertificate",
            "unknownca",
            "alert: certificateunknown",
        ]) {
            Some(TlsFailure::ClientCertificateRefused)
        } else if any(&[
            "server does not support tls",
            "invalidcontenttype",
            "corrupt message",
            "wrong version number",
        ]) {
            Some(TlsFailure::NotOffered)
        } else if any(&["tls", "rustls", "handshake", "peer sent no certificates"]) {
            Some(TlsFailure::Handshake)
        } else {
            None
        }
    }

    /// What went wrong, in words.
    pub fn describe(self) -> &'static str {
        match self {
            TlsFailure::UntrustedCertificate => {
                "the server's certificate is not trusted (not signed by a known CA, expired or \
                 not yet valid)"
            }
            TlsFailure::NameMismatch => "the server's certificate is not valid for that host name",
            TlsFailure::NotOffered => "the server does not offer TLS on that port",
            TlsFailure::ClientCertificateRefused => {
                "the server requires a client certificate it trusts (mutual TLS) and refused \
                 the connection"
            }
            TlsFailure::Handshake => "the TLS handshake failed",
        }
    }

    /// What to configure, with the URL option names every backend shares.
    pub fn advice(self) -> &'static str {
        match self {
            TlsFailure::UntrustedCertificate => {
                "set sslrootcert=<file> in the URL (or the config's root certificate) to the \
                 CA that signed the server's certificate, or renew an expired certificate"
            }
            TlsFailure::NameMismatch => {
                "connect with a host name (or IP address) the certificate lists"
            }
            TlsFailure::NotOffered => {
                "enable TLS on the server, connect to its TLS port, or connect without TLS \
                 (Postgres: sslmode=prefer or disable; Redis: redis:// instead of rediss://)"
            }
            TlsFailure::ClientCertificateRefused => {
                "set sslcert=<file> and sslkey=<file> in the URL (or the config's client \
                 certificate) to a certificate signed by a CA the server trusts"
            }
            TlsFailure::Handshake => {
                "check that the server's TLS settings (versions, ciphers) accept a TLS 1.2+ \
                 client"
            }
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Error {
    /// [`ErrorKind::Tls`]: a TLS connection to `host` failed for `failure`. The message
    /// names the host and what to configure.
    pub fn tls(failure: TlsFailure, host: &str) -> Self {
        Error::new(
            ErrorKind::Tls,
            format!(
                "TLS to {host}: {}; {}",
                failure.describe(),
                failure.advice()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts rustls and the servers produce for each case (the end-to-end cases are
    /// in the backends' TLS tests).
    #[test]
    fn classifies_the_usual_causes() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                Some(TlsFailure::UntrustedCertificate),
            ),
            (
                "invalid peer certificate: certificate not valid for name \"localhost\"; \
                 certificate is only valid for IpAddress(127.0.0.1)",
                Some(TlsFailure::NameMismatch),
            ),
            (
                "InvalidCertificate(NotValidForNameContext { expected: DnsName(\"x\") })",
                Some(TlsFailure::NameMismatch),
            ),
            (
                "invalid peer certificate: Expired",
                Some(TlsFailure::UntrustedCertificate),
            ),
            ("server does not support TLS", Some(TlsFailure::NotOffered)),
            (
                "received corrupt message of type InvalidContentType",
                Some(TlsFailure::NotOffered),
            ),
            (
                "received fatal alert: CertificateRequired",
                Some(TlsFailure::ClientCertificateRefused),
            ),
            (
                "connection requires a valid client certificate",
                Some(TlsFailure::ClientCertificateRefused),
            ),
            ("connection refused", None),
            ("timed out", None),
        ];
        for (text, want) in cases {
            assert_eq!(TlsFailure::classify_text(text), want, "{text}");
        }
    }

    /// Missing, non-PEM and half-given files are `InvalidInput` naming option and path;
    /// the key never shows in `Debug`.
    #[test]
    fn tls_files_are_checked_at_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("junk.pem"), "not a certificate").unwrap();
        let cert =
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUP4U=\n-----END CERTIFICATE-----\n";
        std::fs::write(path("cert.pem"), cert).unwrap();
        let key =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        std::fs::write(path("key.pem"), key).unwrap();
        // (sslrootcert, sslcert, sslkey, what the message must say)
        type Case = (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
        );
        let cases: [Case; 5] = [
            (Some("missing.pem"), None, None, "sslrootcert file"),
            (Some("junk.pem"), None, None, "expected PEM certificates"),
            (None, Some("cert.pem"), None, "both sslcert and sslkey"),
            (None, None, Some("key.pem"), "both sslcert and sslkey"),
            (None, Some("cert.pem"), Some("junk.pem"), "sslkey file"),
        ];
        for (root, cert, key, want) in cases {
            let (root, cert, key) = (root.map(path), cert.map(path), key.map(path));
            let e = TlsPem::read(root.as_deref(), cert.as_deref(), key.as_deref()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains(want), "{want}: {e}");
        }
        let read = TlsPem::read(
            Some(&path("cert.pem")),
            Some(&path("cert.pem")),
            Some(&path("key.pem")),
        )
        .unwrap();
        assert!(!read.is_empty());
        let shown = format!("{read:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(TlsPem::read(None, None, None).unwrap().is_empty());
    }

    #[test]
    fn the_message_names_host_and_option() {
        let e = Error::tls(TlsFailure::UntrustedCertificate, "db.example:5432");
        assert_eq!(e.kind(), ErrorKind::Tls);
        assert!(!e.is_retryable());
        assert!(e.message().contains("db.example:5432"), "{e}");
        assert!(e.message().contains("sslrootcert"), "{e}");
    }
}
