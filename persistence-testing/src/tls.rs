//! Certificates for TLS tests, generated per server with `rcgen` into the server's own
//! directory (which its watchdog deletes): a test CA, a server certificate for
//! `127.0.0.1` only (so `localhost` is a name mismatch), a client certificate for mutual
//! TLS, and a second, unrelated CA for the "wrong CA" cases.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files of one TLS test server, all PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server's certificate (for `127.0.0.1`) and key.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate signed by [`ca`](Self::ca), for mutual TLS.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail.
    pub other_ca: PathBuf,
}

impl TlsFiles {
    /// The files [`generate`] writes into `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        }
    }

    /// The files of the test server whose URL is `url`: the directory of its
    /// `sslrootcert` option.
    pub fn of_url(url: &str) -> Option<TlsFiles> {
        let parsed = url::Url::parse(url).ok()?;
        let (_, ca) = parsed.query_pairs().find(|(k, _)| k == "sslrootcert")?;
        Some(TlsFiles::in_dir(Path::new(&*ca).parent()?))
    }

    /// `sslrootcert=...&sslcert=...&sslkey=...`: the query that trusts the test CA and
    /// presents the client certificate.
    pub fn mutual_query(&self) -> String {
        format!(
            "sslrootcert={}&sslcert={}&sslkey={}",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }
}

fn ca(name: &str) -> Result<(CertificateParams, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok((params, key))
}

fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: Vec<ExtendedKeyUsagePurpose>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = usage;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Generates [`TlsFiles`] into `dir`, owned by `owner` (uid, gid) when given (Postgres
/// refuses a key file it does not own or that others can read).
///
/// # Errors
/// A human-readable reason when a certificate cannot be made or written.
pub fn generate(dir: &Path, owner: Option<(u32, u32)>) -> Result<TlsFiles, String> {
    let files = TlsFiles::in_dir(dir);
    let made = (|| -> Result<Vec<(PathBuf, String)>, rcgen::Error> {
        let (ca_params, ca_key) = ca("persistence test CA")?;
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_pem, server_key) = leaf(
            vec!["127.0.0.1".into()],
            "127.0.0.1",
            // Cluster nodes present their server certificate as a client on the bus.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            &issuer,
        )?;
        let (client_pem, client_key) = leaf(
            vec!["persistence-test-client".into()],
            "persistence_app",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            &issuer,
        )?;
        let (other_params, other_key) = ca("unrelated CA")?;
        let other_pem = other_params.self_signed(&other_key)?.pem();
        Ok(vec![
            (files.ca.clone(), ca_pem),
            (files.server_cert.clone(), server_pem),
            (files.server_key.clone(), server_key),
            (files.client_cert.clone(), client_pem),
            (files.client_key.clone(), client_key),
            (files.other_ca.clone(), other_pem),
        ])
    })()
    .map_err(|e| format!("cannot generate test certificates: {e}"))?;
    for (path, pem) in made {
        write_private(&path, &pem, owner)?;
    }
    Ok(files)
}

fn write_private(path: &Path, pem: &str, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("write {}: {e}", path.display());
    std::fs::write(path, pem).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

/// Asserts that `e` is the documented TLS error for `failure`: kind `Tls`, not
/// retryable, naming `host` and the `setting` to change, and never suggesting the server
/// is down.
///
/// # Panics
/// When it is not, with the error's text.
pub fn assert_tls_error(
    e: &persistence_core::Error,
    failure: persistence_core::TlsFailure,
    host: &str,
    setting: &str,
) {
    assert_eq!(e.kind(), persistence_core::ErrorKind::Tls, "{e}");
    assert!(!e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains(failure.describe()), "{failure:?}: {text}");
    assert!(text.contains(host), "names the host {host}: {text}");
    assert!(text.contains(setting), "says to set {setting}: {text}");
    assert!(!text.contains("running"), "suggests an outage: {text}");
}
