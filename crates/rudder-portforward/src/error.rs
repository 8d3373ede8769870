use std::time::Duration;

/// Why a port-forward session ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from or writing to the upgraded connection failed.
    #[error("port-forward connection I/O: {0}")]
    Io(#[source] std::io::Error),
    /// The client sent something that is not valid SPDY/3.1 (or exceeds our limits).
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// A header block could not be compressed or decompressed.
    #[error("SPDY header compression: {0}")]
    Compression(String),
    /// No frame went either way for the idle timeout (upstream's streamIdleTimeout).
    #[error("port-forward connection idle for {0:?}")]
    IdleTimeout(Duration),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
