//! One connection type over a single node (auto-reconnecting `ConnectionManager`) or a
//! cluster, chosen from the URL scheme.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::tls::Endpoint;

/// A cloneable, multiplexed connection: concurrent requests share it.
#[derive(Clone)]
pub enum Conn {
    /// A single Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects to `endpoint`: a cluster or a single node, with TLS when its URL said so.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> redis::RedisResult<Conn> {
        if endpoint.tls {
            crate::tls::ensure_crypto_provider();
        }
        if endpoint.cluster {
            // The same bounds as a single node: a paused or lost master fails its callers
            // in about `timeout` instead of holding them for the whole outage.
            let mut builder = redis::cluster::ClusterClient::builder(endpoint.nodes.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .max_retry_wait(500);
            if let Some(certs) = &endpoint.certs {
                builder = builder.certs(certs.clone());
            }
            let client = builder.build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let client = single_client(endpoint)?;
        // Reconnect attempts are bounded so a down server fails calls in about `timeout`
        // instead of holding them; the manager keeps reconnecting in the background.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(Conn::Single(
            client.get_connection_manager_with_config(config).await?,
        ))
    }
}

/// A cluster client whose connections speak RESP3 and hand pushes (sharded pub/sub
/// messages, disconnect notices) to `pushes`: what the live-tail listener uses.
pub fn cluster_push_client(
    endpoint: &Endpoint,
    timeout: Duration,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    let mut builder = redis::cluster::ClusterClient::builder(endpoint.nodes.clone())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes);
    if let Some(certs) = &endpoint.certs {
        builder = builder.certs(certs.clone());
    }
    builder.build()
}

/// A client of a single node (the first, on a cluster), TLS as the URL said.
pub fn single_client(endpoint: &Endpoint) -> redis::RedisResult<redis::Client> {
    let url = endpoint.nodes.first().map_or("", String::as_str);
    match &endpoint.certs {
        Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
        None => redis::Client::open(url),
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
