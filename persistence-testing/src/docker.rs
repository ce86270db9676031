//! The same servers as containers, through the `testcontainers` crate, for machines
//! where a Docker engine answers (feature `testcontainers`).
//!
//! Not exercised by this project's CI: its machines have no Docker engine, so the test
//! of this module is `#[ignore]`d there (run it with `--ignored` where Docker answers).
//! The local servers of the crate root need no Docker and are what the project tests
//! with.

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// A server in a container, removed when this is dropped.
pub struct DockerServer {
    url: String,
    _container: ContainerAsync<GenericImage>,
}

impl std::fmt::Debug for DockerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerServer")
            .field("url", &self.url)
            .finish()
    }
}

impl DockerServer {
    /// Its URL on the host.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// PostgreSQL 16 (`postgres:16-alpine`), superuser `postgres` with trust authentication.
///
/// # Errors
/// Why the container could not be started (no Docker engine, no image, ...).
pub async fn postgres() -> Result<DockerServer, String> {
    let image = GenericImage::new("postgres", "16-alpine")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust");
    let container = image.start().await.map_err(|e| e.to_string())?;
    let (host, port) = host_port(&container, 5432).await?;
    Ok(DockerServer {
        url: format!("postgres://postgres@{host}:{port}/postgres"),
        _container: container,
    })
}

/// Redis 7 (`redis:7-alpine`) without persistence.
///
/// # Errors
/// Why the container could not be started (no Docker engine, no image, ...).
pub async fn redis() -> Result<DockerServer, String> {
    let image = GenericImage::new("redis", "7-alpine")
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_cmd(["redis-server", "--save", "", "--appendonly", "no"]);
    let container = image.start().await.map_err(|e| e.to_string())?;
    let (host, port) = host_port(&container, 6379).await?;
    Ok(DockerServer {
        url: format!("redis://{host}:{port}"),
        _container: container,
    })
}

async fn host_port(
    container: &ContainerAsync<GenericImage>,
    port: u16,
) -> Result<(String, u16), String> {
    let host = container.get_host().await.map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(port.tcp())
        .await
        .map_err(|e| e.to_string())?;
    Ok((host.to_string(), port))
}
