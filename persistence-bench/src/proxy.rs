//! A TCP proxy on loopback that counts request flights from client to server: for a
//! request/response protocol (PostgreSQL, Redis) each flight is one network round trip.
//! Used to check and report "round trips per operation".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy. Dropping it stops accepting; open connections live on until closed.
#[derive(Debug)]
pub struct CountingProxy {
    /// Address clients connect to, `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
    flights: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    ///
    /// # Errors
    /// If the listener cannot bind.
    pub async fn start(upstream: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let flights = Arc::new(AtomicU64::new(0));
        let counter = flights.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, counter).await;
                    }
                });
            }
        });
        Ok(CountingProxy {
            addr,
            flights,
            task,
        })
    }

    /// Client-to-server flights so far.
    pub fn flights(&self) -> u64 {
        self.flights.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; a flight is a client write that follows a server reply (or starts
/// the connection), so a request split over several TCP reads still counts once.
async fn forward(client: TcpStream, server: TcpStream, flights: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let replied = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let replied_up = replied.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if replied_up.swap(false, Ordering::SeqCst) {
                flights.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            replied.store(true, Ordering::SeqCst);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}
