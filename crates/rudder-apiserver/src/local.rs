//! In-process connections to the API server. The scheduler and the controller manager inside
//! `rudder server` are API clients like any other, but they reach this server through an
//! in-memory pipe instead of loopback TCP: the pipe carries the same TLS (the component's
//! client certificate is its identity) and the same HTTP, it only skips the kernel's TCP
//! stack. [`LocalConnector`] is what a client's HTTP stack connects with.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

/// Bytes a pipe buffers each way before the writer waits for the reader.
const PIPE_BUFFER: usize = 256 * 1024;
/// Connections handed over but not yet taken by the server's accept loop.
pub(crate) const ACCEPT_QUEUE: usize = 64;

/// Opens in-process connections to the server that made it (a `tower::Service<Uri>`, as
/// hyper's client connectors are; the URI is not used). Fails once that server stopped.
#[derive(Clone, Debug)]
pub struct LocalConnector {
    tx: mpsc::Sender<DuplexStream>,
}

impl LocalConnector {
    /// A connector and the server's end: the pipes to accept.
    pub(crate) fn new() -> (Self, mpsc::Receiver<DuplexStream>) {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        (LocalConnector { tx }, rx)
    }
}

impl tower::Service<http::Uri> for LocalConnector {
    type Response = TokioIo<LocalStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let tx = self.tx.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(PIPE_BUFFER);
            tx.send(server).await.map_err(|_| {
                io::Error::new(io::ErrorKind::ConnectionRefused, "the API server has stopped")
            })?;
            Ok(TokioIo::new(LocalStream(client)))
        })
    }
}

/// The client's end of an in-process connection.
#[derive(Debug)]
pub struct LocalStream(DuplexStream);

impl Connection for LocalStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for LocalStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for LocalStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
