//! Where to connect and how: the URL's scheme (single node or cluster, plaintext or TLS),
//! its TLS query options taken out, and the TLS files read once.

use std::path::PathBuf;

use persistence_core::backend::TlsPem;
use persistence_core::{Error, Result, TlsFailure, redact_url};
use redis::{ClientTlsConfig, TlsCertificates};

use crate::RedisConfig;
use crate::error::BACKEND;

/// The URL query options this crate reads (the driver never sees them).
const TLS_OPTIONS: [&str; 3] = ["sslrootcert", "sslcert", "sslkey"];

/// A parsed [`RedisConfig::url`].
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Driver URLs: the node for a single server, every listed node for a cluster.
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub tls: bool,
    /// Files to use instead of the system roots / for mutual TLS (`None`: system roots,
    /// no client certificate).
    pub certs: Option<TlsCertificates>,
    /// `host:port` list, for messages.
    pub hosts: String,
}

impl Endpoint {
    /// Parses the URL, applying its TLS options over the config's.
    ///
    /// # Errors
    /// `InvalidInput` for a URL that does not parse, TLS files that cannot be read or are
    /// not PEM, or TLS files given with a plaintext URL.
    pub(crate) fn parse(config: &RedisConfig) -> Result<Endpoint> {
        let bad = |what: String| {
            Error::invalid_input(what).context(BACKEND, "connect", redact_url(&config.url))
        };
        let (scheme, rest) = config
            .url
            .split_once("://")
            .ok_or_else(|| bad("not a redis:// URL".into()))?;
        let (cluster, tls, node_scheme) = match scheme {
            "redis+cluster" => (true, false, "redis"),
            "rediss+cluster" => (true, true, "rediss"),
            "rediss" => (false, true, "rediss"),
            _ => (false, false, scheme),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut kept = Vec::new();
        let mut root_cert = config.tls_root_cert.clone();
        let mut client_cert = config.tls_client_cert.clone();
        let mut client_key = config.tls_client_key.clone();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let path = || Some(PathBuf::from(&*value));
            match &*key {
                "sslrootcert" => root_cert = path(),
                "sslcert" => client_cert = path(),
                "sslkey" => client_key = path(),
                // The driver's (RESP version); it ignores anything else, so a mistyped
                // option would be lost: refused.
                "protocol" => kept.push((key.into_owned(), value.into_owned())),
                other => {
                    return Err(bad(format!(
                        "unknown URL option {other:?}: expected sslrootcert, sslcert, sslkey \
                         or protocol (and prefix through persistence::open)"
                    )));
                }
            }
        }
        let pem = TlsPem::read(
            root_cert.as_deref(),
            client_cert.as_deref(),
            client_key.as_deref(),
        )
        .map_err(|e| bad(e.message().to_string()))?;
        if !pem.is_empty() && !tls {
            return Err(bad(format!(
                "TLS files ({}) given for a plaintext URL: use rediss:// (or \
                 rediss+cluster://)",
                TLS_OPTIONS.join(", ")
            )));
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish();
            format!("?{encoded}")
        };
        let (nodes, hosts) = if cluster {
            let listed: Vec<&str> = authority.trim_end_matches('/').split(',').collect();
            let nodes = listed
                .iter()
                .map(|n| format!("{node_scheme}://{n}{query}"))
                .collect();
            let hosts = listed
                .iter()
                .map(|n| n.rsplit_once('@').map_or(*n, |(_, h)| h))
                .collect::<Vec<_>>()
                .join(",");
            (nodes, hosts)
        } else {
            let host = authority.split('/').next().unwrap_or(authority);
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h).to_string();
            (vec![format!("{scheme}://{authority}{query}")], host)
        };
        let certs = (!pem.is_empty()).then(|| TlsCertificates {
            client_tls: pem.client.map(|c| ClientTlsConfig {
                client_cert: c.cert,
                client_key: c.key,
            }),
            root_cert: pem.root_cert,
        });
        Ok(Endpoint {
            nodes,
            cluster,
            tls,
            certs,
            hosts,
        })
    }

    /// An [`ErrorKind::Tls`](persistence_core::ErrorKind::Tls) error naming the hosts
    /// when `e` is a TLS failure.
    pub(crate) fn tls_error(&self, e: &redis::RedisError) -> Option<Error> {
        if !self.tls {
            return None;
        }
        let failure = TlsFailure::classify(e)?;
        Some(Error::tls(failure, &self.hosts))
    }
}

impl Endpoint {
    /// After a TLS connect failed without a TLS error (no answer): whether the first
    /// node answers a plaintext `PING` instead, which means it does not offer TLS on that
    /// port (a plaintext Redis waits for a line end that a TLS hello never sends). Costs
    /// one short probe on the failure path only.
    pub(crate) async fn plaintext_probe(&self) -> Option<Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if !self.tls {
            return None;
        }
        let host = self.hosts.split(',').next()?;
        let probe = async {
            let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut first = [0u8; 1];
            stream.read_exact(&mut first).await.ok()?;
            // `+PONG`, or `-NOAUTH ...` / `-ERR ...`: a RESP reply, not a TLS record.
            matches!(first[0], b'+' | b'-').then_some(())
        };
        tokio::time::timeout(std::time::Duration::from_secs(1), probe)
            .await
            .ok()
            .flatten()
            .map(|()| Error::tls(TlsFailure::NotOffered, host))
    }
}

/// rustls needs a process-wide crypto provider when the driver builds its config; install
/// ring's unless the application installed one.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
