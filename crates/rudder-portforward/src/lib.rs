//! The kubelet side of `kubectl port-forward`: SPDY/3.1 with the `portforward.k8s.io`
//! stream protocol on top, served on a connection the HTTP layer has already upgraded.
//!
//! Upstream behaviour followed: kubelet `cri/streaming/portforward/httpstream.go` (stream
//! checks, pairing by `requestid`, error messages), apimachinery `util/httpstream/spdy`
//! (the upgrade and stream acceptance), moby/spdystream (framing, header compression,
//! PING, GOAWAY, no flow control), containerd's port-forward copy loop (1 s linger).
//!
//! # What the HTTP layer does before calling [`serve`]
//!
//! Plain SPDY (`POST /portForward/{namespace}/{pod}[/{uid}]`, what kubectl falls back to):
//! 1. Check `X-Stream-Protocol-Version` (comma-separated, possibly repeated) offers
//!    [`PROTOCOL_V1`]. Missing: upstream only logs "unable to upgrade:
//!    X-Stream-Protocol-Version is required" and writes no error (Go then answers an empty
//!    200); a 400 with that text is the sensible equivalent. No match: 403 with header
//!    `X-Accepted-Stream-Protocol-Versions: portforward.k8s.io` and body "unable to upgrade:
//!    unable to negotiate protocol: client supports [..], server accepts
//!    [portforward.k8s.io]".
//! 2. Check `Connection` contains "upgrade" and `Upgrade` contains "spdy/3.1"
//!    (case-insensitive); else 400 "unable to upgrade: missing upgrade headers in request: ...".
//! 3. Answer `101 Switching Protocols` with `Connection: Upgrade`, `Upgrade: SPDY/3.1`,
//!    `X-Stream-Protocol-Version: portforward.k8s.io` (the client refuses any other
//!    protocol), then pass the raw connection (including any bytes already buffered after
//!    the request head) to [`serve`].
//!
//! WebSocket tunnel (kubectl 1.31+ tries it first: `GET`, `Sec-WebSocket-Protocol:
//! SPDY/3.1+portforward.k8s.io`): upstream's API server terminates the WebSocket and sends
//! the kubelet a plain SPDY upgrade as above. Whoever terminates it picks the offered
//! subprotocols that start with [`WEBSOCKET_TUNNEL_PREFIX`] and end with `.k8s.io`, strips
//! the prefix and negotiates as in step 1 (none offered: 400 "unable to upgrade: no
//! tunneling spdy protocols provided", which makes kubectl fall back to plain SPDY);
//! answers 101 with `Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io`
//! ([`WEBSOCKET_TUNNEL_PROTOCOL`]); then the SPDY bytes are the concatenated payloads of
//! binary messages each way (boundaries mean nothing: one frame may span messages), a
//! text message is an error, a close frame is EOF.

mod compress;
mod dictionary;
mod error;
mod forward;
mod frame;
mod reader;
mod session;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

pub use dictionary::SPDY3_DICTIONARY;
pub use error::Error;
pub use rudder_runtime::BoxStream;

/// The port-forward stream protocol (`X-Stream-Protocol-Version`).
pub const PROTOCOL_V1: &str = "portforward.k8s.io";
/// Header carrying the client's offered stream protocols, and the server's choice.
pub const HEADER_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// Header listing what the server accepts, on a 403 after a failed negotiation.
pub const HEADER_ACCEPTED_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
/// The `Upgrade` token (request and 101 response).
pub const UPGRADE_SPDY_31: &str = "SPDY/3.1";
/// The `Connection` value of the 101 response.
pub const CONNECTION_UPGRADE: &str = "Upgrade";
/// Prefix of WebSocket subprotocols that tunnel SPDY.
pub const WEBSOCKET_TUNNEL_PREFIX: &str = "SPDY/3.1+";
/// The WebSocket subprotocol kubectl offers for port-forward over a tunnel.
pub const WEBSOCKET_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Opens connections to the pod's ports.
#[async_trait::async_trait]
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `port` inside the pod (the runtime enters the pod's network namespace).
    /// The error text ends up after "error forwarding port P to pod N, uid U: " on the
    /// client's error stream.
    async fn dial(&self, port: u16) -> Result<BoxStream, String>;
}

/// Limits and names for one session.
#[derive(Clone, Debug)]
pub struct Options {
    /// Pod named in error messages. Upstream's CRI streaming server passes the pod
    /// sandbox id here.
    pub pod_name: String,
    /// Pod uid in error messages (upstream's CRI streaming server leaves it empty).
    pub pod_uid: String,
    /// The connection ends after this long without a frame either way (upstream
    /// streamIdleTimeout, 4 h; kubectl pings every 5 to 10 s, so only dead clients hit it).
    pub idle_timeout: Duration,
    /// How long the second stream of a pair may take to follow the first (upstream 30 s).
    pub stream_creation_timeout: Duration,
    /// Streams open at once on the connection (two per forwarded connection); more are
    /// refused with RST_STREAM REFUSED_STREAM. Upstream has no limit.
    pub max_streams: usize,
    /// Bound on one [`Dialer::dial`].
    pub dial_timeout: Duration,
    /// After one direction of a forwarded connection finished cleanly, how long the other
    /// may go on before both are closed. `Some(1 s)` is what containerd and CRI-O do;
    /// `None` keeps a half-closed connection open until the other side closes too.
    pub half_close_linger: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pod_name: String::new(),
            pod_uid: String::new(),
            idle_timeout: Duration::from_secs(4 * 60 * 60),
            stream_creation_timeout: Duration::from_secs(30),
            max_streams: 1024,
            dial_timeout: Duration::from_secs(30),
            half_close_linger: Some(Duration::from_secs(1)),
        }
    }
}

/// Serves port-forward on `io`, an HTTP connection already upgraded to SPDY/3.1 (or the
/// byte stream of a WebSocket tunnel), until the client closes it (`Ok`), sends
/// something invalid, goes idle, or the connection fails (`Err`). Every pod connection
/// opened through `dialer` is closed when this returns.
pub async fn serve<S>(io: S, dialer: Arc<dyn Dialer>, options: Options) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::debug_span!("port_forward", pod = %options.pod_name);
    session::serve(io, dialer, options).instrument(span).await
}
