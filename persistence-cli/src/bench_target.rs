//! Where `persistence bench` sends its traffic: the URL's server, and a counting proxy in
//! front of it for the round-trip pass where the protocol allows.

use persistence::{Error, Result};
use persistence_bench::CountingProxy;

/// The counting proxy in front of the URL's server, where the protocol allows.
pub struct Target {
    /// Counts round trips; `None` for files, memory, clusters and TLS to a host other
    /// than `127.0.0.1` (the proxy's address would not match its certificate).
    pub proxy: Option<CountingProxy>,
    /// The URL with the proxy's address in place of the server's.
    pub proxy_url: Option<String>,
    /// Whether the URL asks for TLS (`rediss://`, or a Postgres `sslmode` other than
    /// `disable`/`prefer`, or a root certificate).
    pub tls: bool,
}

impl Target {
    /// Starts the proxy for `url` where it applies.
    ///
    /// # Errors
    /// `Unavailable` when the host does not resolve; `Backend` when the proxy cannot
    /// listen.
    pub async fn prepare(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        let tls = scheme.starts_with("rediss")
            || query.split('&').any(|kv| {
                kv.starts_with("sslrootcert=")
                    || ["require", "verify-ca", "verify-full"]
                        .iter()
                        .any(|m| kv == format!("sslmode={m}"))
            });
        let upstream = match scheme {
            "postgres" | "postgresql" | "redis" | "rediss" => authority(url),
            _ => None,
        }
        // Through the proxy a TLS client checks the certificate against 127.0.0.1.
        .filter(|(host, ..)| !tls || host == "127.0.0.1");
        let Some((host, port, start, end)) = upstream else {
            return Ok(Target {
                proxy: None,
                proxy_url: None,
                tls,
            });
        };
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::unavailable(format!("cannot resolve {host}:{port}")))?;
        let proxy = CountingProxy::start(addr)
            .await
            .map_err(|e| Error::backend_error(format!("cannot start the counting proxy: {e}")))?;
        let proxy_url = format!(
            "{}127.0.0.1:{}{}",
            &url[..start],
            proxy.addr.port(),
            &url[end..]
        );
        Ok(Target {
            proxy: Some(proxy),
            proxy_url: Some(proxy_url),
            tls,
        })
    }
}

/// Host, port and the byte range of `host[:port]` in a `scheme://[user@]host[:port]/...`
/// URL. `None` when there is no single host (clusters, sockets).
fn authority(url: &str) -> Option<(String, u16, usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    let hostport = &url[host_start..end];
    if hostport.is_empty() || hostport.contains(',') || hostport.starts_with('[') {
        return None;
    }
    let default_port = if url.starts_with("redis") { 6379 } else { 5432 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()?),
        None => (hostport.to_string(), default_port),
    };
    Some((host, port, host_start, end))
}
