//! Shared test pieces: the SPDY client, pod-side TCP servers on loopback, a dialer mapping
//! pod ports to them, and a session harness.
#![allow(dead_code)]

pub mod client;
pub mod fake_apiserver;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use rudder_portforward::{BoxStream, Dialer, Error, Options};

#[allow(unused_imports)]
pub use client::{Client, ConnEvent, StreamEvent, WAIT};

/// Maps pod ports to loopback addresses; other ports fail like a refused connection.
pub struct MapDialer {
    pub ports: HashMap<u16, SocketAddr>,
    pub dials: AtomicUsize,
}

impl MapDialer {
    pub fn new(ports: &[(u16, SocketAddr)]) -> Arc<MapDialer> {
        Arc::new(MapDialer { ports: ports.iter().copied().collect(), dials: AtomicUsize::new(0) })
    }
}

#[async_trait::async_trait]
impl Dialer for MapDialer {
    async fn dial(&self, port: u16) -> Result<BoxStream, String> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let addr = self.ports.get(&port).ok_or_else(|| format!("no listener for port {port}"))?;
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Ok(Box::pin(stream))
    }
}

/// A TCP echo server: echoes everything, half-closes when the client does.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A server that reads until EOF, then answers with how many bytes it got.
pub async fn count_then_reply_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = conn.read_to_end(&mut all).await;
                let _ = conn.write_all(format!("got {} bytes", all.len()).as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// A server that greets first (as SSH, SMTP or MySQL servers do), then echoes.
pub async fn banner_server(banner: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = conn.write_all(banner).await;
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A server that hands each accepted connection to the test.
pub async fn handing_server() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            if tx.send(conn).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Options for tests: real defaults, except that half-closed connections stay open
/// (so transfers never depend on timing) and the names used in messages.
pub fn options() -> Options {
    Options {
        pod_name: "web-0".into(),
        pod_uid: "uid-1".into(),
        half_close_linger: None,
        ..Options::default()
    }
}

pub struct Session {
    pub client: Client,
    pub server: JoinHandle<Result<(), Error>>,
}

impl Session {
    /// Starts `serve` on one end of an in-memory pipe and a client on the other.
    pub fn start(dialer: Arc<dyn Dialer>, options: Options) -> Session {
        let (server_io, client_io) = tokio::io::duplex(256 << 10);
        let server = tokio::spawn(rudder_portforward::serve(server_io, dialer, options));
        let (read, write) = tokio::io::split(client_io);
        Session { client: Client::new(read, write), server }
    }

    /// Waits for `serve` to return.
    pub async fn result(self) -> Result<(), Error> {
        let Session { client, server } = self;
        let result = tokio::time::timeout(WAIT, server)
            .await
            .expect("serve did not return")
            .expect("serve panicked");
        drop(client);
        result
    }
}

/// A deterministic byte pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed).collect()
}
