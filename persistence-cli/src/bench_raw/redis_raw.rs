//! The Redis baseline's client, key prefix and one-command script.

use persistence::Result;

use super::raw_error;

/// The script of [`RawOp::Script`](super::RawOp::Script): one `SET`, the least an atomic script does.
pub(super) const ONE_SET: &str = "return redis.call('SET', KEYS[1], ARGV[1])";

/// Its SHA1, for `EVALSHA` (loaded at connect).
pub(super) static ONE_SET_SHA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| redis::Script::new(ONE_SET).get_hash().to_owned());

/// The URL's `prefix=` option (the backend's key prefix), or the default.
pub(super) fn redis_prefix(url: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("prefix="))
        .map_or_else(|| "persistence:".to_string(), str::to_string)
}

/// A client of the first node of a Redis URL (an `EVAL` without keys runs on any node of
/// a cluster), with the URL's TLS files (`sslrootcert`, `sslcert`, `sslkey`) applied.
pub fn redis_client(url: &str) -> Result<redis::Client> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let node = match base.split_once("+cluster://") {
        Some((scheme, nodes)) => format!(
            "{scheme}://{}",
            nodes
                .split(',')
                .next()
                .unwrap_or(nodes)
                .trim_end_matches('/')
        ),
        None => base.to_string(),
    };
    let option = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(std::path::PathBuf::from)
    };
    let (root, cert, key) = (option("sslrootcert"), option("sslcert"), option("sslkey"));
    let pem = persistence::backend::TlsPem::read(root.as_deref(), cert.as_deref(), key.as_deref())?;
    if pem.is_empty() {
        return redis::Client::open(node.as_str()).map_err(|e| raw_error("url", e));
    }
    let certs = redis::TlsCertificates {
        client_tls: pem.client.map(|c| redis::ClientTlsConfig {
            client_cert: c.cert,
            client_key: c.key,
        }),
        root_cert: pem.root_cert,
    };
    redis::Client::build_with_tls(node.as_str(), certs).map_err(|e| raw_error("url", e))
}
