//! The kubelet's HTTPS server (upstream `pkg/kubelet/server`): what the API server reaches
//! on `https://<node>:10250` for `kubectl logs` (and later exec, attach, port-forward).
//!
//! - TLS with the kubelet's serving certificate `<cert_dir>/kubelet.crt|kubelet.key`,
//!   generated on first start like upstream's (a throwaway self-signed CA named
//!   `<node>-ca@<unix time>` that signs the serving certificate; both in `kubelet.crt`).
//! - Callers authenticate with a client certificate issued by the cluster CA
//!   ([`ServerConfig::client_ca_pem`]); a certificate from another CA fails the TLS
//!   handshake, no certificate at all gets 401 on everything but `/healthz`.
//! - Authorization is a simplification of upstream's webhook authorizer (a
//!   SubjectAccessReview for `nodes/proxy` etc.): only the API server's kubelet client
//!   (CN `kube-apiserver-kubelet-client`) and group `system:masters` are allowed; anyone
//!   else gets upstream's `403 Forbidden (user=..., verb=..., resource=nodes,
//!   subresource=...)`.
//! - `GET /containerLogs/{namespace}/{pod}/{container}` reads the container's CRI log file
//!   (located by the kubelet through [`LogLocator`]) with upstream's query parameters and
//!   output format ([`LogOptions`], [`read_logs`]).
//! - `/exec/{namespace}/{pod}/{container}` and `/attach/...`: WebSocket sessions with the
//!   Kubernetes channel protocol (v5/v4) over the kubelet's [`Streams`] ([`remotecommand`]).
//! - `/portForward/{namespace}/{pod}`: `kubectl port-forward`'s SPDY/3.1 session, plain or
//!   tunnelled in a WebSocket (`rudder-portforward`), dialing through [`Streams`].
//! - `/run`: 501 until it is implemented.

mod cert;
mod format;
mod locator;
mod options;
mod portforward_route;
mod reader;
mod remotecommand;
mod server;
mod stream_routes;
mod streams;
mod timestamp;
mod tls;
mod upgrade;

pub use cert::{KUBELET_CERT_FILE, KUBELET_KEY_FILE};
pub use locator::{LocateError, LogFile, LogLocator};
pub use options::{LogOptions, OptionsError, StreamSelection};
pub use reader::{FollowTiming, LogReader, read_logs};
pub use server::{BoundServer, ServerConfig, serve};
pub use streams::{StreamError, Streams};
pub use tls::{APISERVER_KUBELET_CLIENT, Identity, MASTERS_GROUP, authorize};

/// What can keep the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating the kubelet serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("reading PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the client CA bundle holds no certificate")]
    NoClientCa,
}
